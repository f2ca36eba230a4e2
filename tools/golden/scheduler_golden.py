"""Golden token sequences for the scheduler, from an independent PyTorch driver written from DESIGN §2-4.

Reuses tools/golden/torch_model.py's float64 forward (with its own pre-RoPE K/V cache) and re-implements the
block loop, the cache plan and the greedy selection rules here, so that the TS scheduler on the TS reference
engine is checked against code that shares neither the driver nor the forward pass.

Each case records the generated tokens, the NFE and `min_gap`: the smallest decision margin met on the way
(top-1/top-2 probability margin of a committed token, the confidence gap at the fixed-schedule cut, the distance
of a confidence to the threshold / factor bar). A case whose min_gap is below the test's delta is ambiguous:
float rounding may legitimately flip it, and the test says so instead of failing.

Run: /usr/bin/python3 tools/golden/scheduler_golden.py   (writes test/fixtures/golden/scheduler/*.json)
"""
import json
import math
import os
import sys

import numpy as np

sys.path.insert(0, os.path.dirname(__file__))
from torch_model import mask_id, open_model  # noqa: E402

ROOT = os.path.abspath(os.path.join(os.path.dirname(__file__), '..', '..'))
MODELS = os.path.join(ROOT, 'test', 'fixtures', 'models')
OUT = os.path.join(ROOT, 'test', 'fixtures', 'golden', 'scheduler')


def schedule(m, n):
    return [m // n + (1 if j < m % n else 0) for j in range(n)]


def dream_count(masks, step, n, eps=1e-3):
    if step >= n - 1:
        return masks
    t = [1 + (eps - 1) * (i / n) for i in range(n + 1)]  # linspace(1, eps, n+1), same arithmetic as the TS side
    return int(math.floor(masks * (1 - t[step + 1] / t[step])))


class Gap:
    def __init__(self):
        self.v = math.inf

    def see(self, g):
        self.v = min(self.v, abs(g))


def ranked(conf, pos):
    """Indices by confidence descending, ties to the lower position."""
    return sorted(range(len(pos)), key=lambda i: (-conf[i], pos[i]))


def choose(strategy, pos, conf, step, spb, masks, counts, gap):
    order = ranked(conf, pos)
    kind = strategy['kind']
    if kind == 'fixed' or (kind == 'dream' and 'threshold' not in strategy):
        k = counts[step] if kind == 'fixed' else dream_count(masks, step, spb)
        k = min(k, len(pos))
        if 0 < k < len(pos):
            gap.see(conf[order[k - 1]] - conf[order[k]])
        return [pos[i] for i in order[:k]]
    if kind in ('threshold', 'dream'):
        tau = strategy.get('threshold', 0.9)
        for i in order[1:]:
            gap.see(conf[i] - tau)
        return [pos[order[0]]] + [pos[i] for i in order[1:] if conf[i] >= tau]
    if kind == 'factor':
        f = strategy.get('factor', 1)
        count = 1
        while count < len(order):
            bar = 1 - f / (count + 2)
            gap.see(conf[order[count]] - bar)
            if conf[order[count]] < bar:
                break
            count += 1
        return [pos[i] for i in order[:count]]
    raise ValueError(kind)


def run(model, cfg_ids, case):
    mask, = cfg_ids
    prompt, gen, bl, steps = case['prompt'], case['genLength'], case['blockLength'], case['steps']
    strategy, cache = case['strategy'], case['cache']
    P, L = len(prompt), len(prompt) + gen
    x = list(prompt) + [mask] * gen
    spb = steps // (gen // bl)
    nfe, gap = 0, Gap()
    for b in range(gen // bl):
        s, e = P + b * bl, P + (b + 1) * bl
        masks = sum(1 for p in range(s, e) if x[p] == mask)
        counts = schedule(masks, spb)
        step = 0
        while masks > 0:
            if cache == 'none' or step == 0:
                mode, a, z = 'full', 0, L
            elif cache == 'prefix':
                mode, a, z = 'prefix', s, L
            else:
                mode, a, z = 'dual', s, e
            logits = model.reported_logits(x, mode, a, z).numpy()  # (z-a, V) float64
            nfe += 1
            pos = [p for p in range(s, e) if x[p] == mask]
            dream_first = model.arch == 'dream' and cache != 'none' and step == 0
            if dream_first:
                pos = [s]
            rows = logits[[p - a for p in pos]]  # (n, V)
            ex = np.exp(rows - rows.max(-1, keepdims=True))
            probs = ex / ex.sum(-1, keepdims=True)  # (n, V) clean softmax, the mask token included
            # DESIGN 3: the mask token is never proposed (out of the argmax), but its probability counts above.
            proposable = probs.copy()
            proposable[:, mask] = -1.0
            tok = proposable.argmax(-1)  # ties to the lowest id
            top2 = np.sort(proposable, -1)[:, -2:]
            for g in top2[:, 1] - top2[:, 0]:
                gap.see(g)
            conf = [float(probs[i, tok[i]]) for i in range(len(pos))]
            chosen = pos if dream_first else choose(strategy, pos, conf, step, spb, masks, counts, gap)
            for p in chosen:
                x[p] = int(tok[pos.index(p)])
            masks -= len(chosen)
            step += 1
    return x[P:], nfe, gap.v


def main():
    os.makedirs(OUT, exist_ok=True)
    plans = {
        'llada-tiny-f32': [{'kind': 'fixed'}, {'kind': 'threshold', 'threshold': 0.3},
                           {'kind': 'factor', 'factor': 2.5}],
        'dream-tiny-f32': [{'kind': 'dream', 'alg': 'maskgit_plus'},
                           {'kind': 'dream', 'alg': 'maskgit_plus', 'threshold': 0.3}],
        # The mask token's raw logit is the largest at ~40% of positions here: the runs hold only if it is never
        # proposed (DESIGN 3).
        'llada-tiny-maskpref': [{'kind': 'fixed'}, {'kind': 'threshold', 'threshold': 0.3}],
        # LLaDA-MoE (DESIGN §13) decodes as LLaDA; its mixture layers are moe_model.py's.
        'llada-moe-tiny-f32': [{'kind': 'fixed'}, {'kind': 'threshold', 'threshold': 0.3}],
        'llada-moe-tiny-partial': [{'kind': 'fixed'}, {'kind': 'threshold', 'threshold': 0.3}],
        # dllm's A2D MDLM (DESIGN §15): unshifted like LLaDA, so the same rules (the recipe is threshold 0.9 + dual).
        'a2d-qwen2-mdlm-tiny-f32': [{'kind': 'fixed'}, {'kind': 'threshold', 'threshold': 0.9}, {'kind': 'threshold', 'threshold': 0.3}],
        'a2d-qwen3-mdlm-tiny-f32': [{'kind': 'fixed'}, {'kind': 'threshold', 'threshold': 0.9}, {'kind': 'threshold', 'threshold': 0.3}],
    }
    only = sys.argv[1:]  # model names to regenerate (default: all)
    for name, strategies in plans.items():
        if only and name not in only:
            continue
        model = open_model(os.path.join(MODELS, name))
        cases = []
        for strategy in strategies:
            for cache in ('none', 'prefix', 'dual'):
                for prompt, gen, bl, steps in (([3, 17, 42, 101], 16, 8, 8), ([5, 9], 12, 6, 8)):
                    case = dict(prompt=prompt, genLength=gen, blockLength=bl, steps=steps, strategy=strategy, cache=cache)
                    tokens, nfe, gap = run(model, (mask_id(os.path.join(MODELS, name)),), case)
                    case.update(tokens=tokens, nfe=nfe, minGap=gap)
                    cases.append(case)
                    print(name, json.dumps(strategy), cache, 'nfe', nfe, 'min_gap %.3g' % gap)
        with open(os.path.join(OUT, name + '.json'), 'w') as f:
            json.dump({'model': name, 'generator': 'tools/golden/scheduler_golden.py', 'cases': cases}, f, indent=1)


if __name__ == '__main__':
    main()
