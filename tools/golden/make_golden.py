"""Writes golden logits of the independent PyTorch model for every fixture model into test/fixtures/golden/.

Run from the repository root:  /usr/bin/python3 tools/golden/make_golden.py
One JSON per model: cases of (setup forwards that build the cache, then the checked forward); logits are float32 little-endian,
base64, (end-start, vocab) row-major, one row per position of [start, end) as the engine reports them.
"""
import base64
import json
import os
import sys

import numpy as np
import torch

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
from torch_model import mask_id, open_model  # noqa: E402

ROOT = os.path.join(os.path.dirname(os.path.abspath(__file__)), '..', '..', 'test', 'fixtures')
MODELS = ['llada-tiny-f32', 'llada-tiny-bf16', 'llada-tiny-sharded', 'dream-tiny-f32', 'dream-tiny-bf16', 'llada-tiny-maskpref',
          'llada-moe-tiny-f32', 'llada-moe-tiny-partial', 'a2d-qwen2-mdlm-tiny-f32', 'a2d-qwen3-mdlm-tiny-f32']
L = 40


def canvases(mask, seed):
    """Two different canvases of length L: a prompt then masks with a few decoded tokens sprinkled in."""
    rng = np.random.Generator(np.random.PCG64(seed))
    a = [int(t) for t in rng.integers(0, 96, L)]
    b = [int(t) for t in rng.integers(0, 96, L)]
    for i in range(12, L):
        if rng.random() < 0.7:
            a[i] = mask
        if rng.random() < 0.5:
            b[i] = mask
    return a, b


def main():
    torch.set_num_threads(1)
    os.makedirs(os.path.join(ROOT, 'golden'), exist_ok=True)
    for name in MODELS:
        m = open_model(os.path.join(ROOT, 'models', name))
        mask = mask_id(os.path.join(ROOT, 'models', name))
        a, b = canvases(mask, 7)
        cases = []

        def add(case_name, setup, canvas, mode, start, end):
            # setup: forwards run first, to build (and for dual, update) the cache: canvas, or (canvas, mode, s, e)
            setup = [{'canvas': c, 'mode': 'full', 'start': 0, 'end': len(c)} if isinstance(c, list) else
                     {'canvas': c[0], 'mode': c[1], 'start': c[2], 'end': c[3]} for c in setup]
            for c in setup:
                m.forward(c['canvas'], c['mode'], c['start'], c['end'])
            lg = m.reported_logits(canvas, mode, start, end).numpy().astype('<f4')
            cases.append({'name': case_name, 'setup': setup, 'canvas': canvas, 'mode': mode, 'start': start,
                          'end': end, 'logits': base64.b64encode(lg.tobytes()).decode()})

        add('full A', [], a, 'full', 0, L)
        add('full B', [], b, 'full', 0, L)
        add('prefix A after full B (stale cache)', [b], a, 'prefix', 16, L)
        add('dual A after full B (stale cache)', [b], a, 'dual', 16, 24)
        add('dual A at the start after full B', [b], a, 'dual', 0, 8)
        add('prefix A after full A (fresh cache)', [a], a, 'prefix', 24, L)
        add('dual A [24, 32) after full B and dual A [16, 24)', [b, (a, 'dual', 16, 24)], a, 'dual', 24, 32)
        add('prefix B after full B and dual A [0, 8)', [b, (a, 'dual', 0, 8)], b, 'prefix', 16, L)
        out = {'model': name, 'vocabSize': int(m.head.shape[0]), 'generator': 'tools/golden/make_golden.py',
               'cases': cases}
        with open(os.path.join(ROOT, 'golden', name + '.json'), 'w') as f:
            json.dump(out, f)
            f.write('\n')
        print('wrote golden for', name)


if __name__ == '__main__':
    main()
