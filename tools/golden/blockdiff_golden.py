"""Golden data for the block-diffusion models (DESIGN §8) from the independent PyTorch model in blockdiff_model.py.

1. Golden logits (test/fixtures/golden/<model>.json, the format of make_golden.py): block-causal full forwards,
   prefill + extend, block steps against a cache of finished blocks, sub-block dual steps over a kept block cache.
   A small emulation of the engine contract's cache (full / prefix / extend / dual) replays each case's set-up.
2. Golden token sequences (test/fixtures/golden/scheduler/<model>.json): the two decoding procedures written here
   from DESIGN §8 and the published code (Fast-dLLM v2's sub-block loop with its optional block cache; SDAR's
   denoising loop), with their own cache of finished blocks, greedy, for prompts shorter than a block, a multiple
   of it (P == B included: the published v2 code skips the prefill there, DESIGN §8 does not), and neither. Each case
   records the tokens (cut after the stop token), the NFE and `minGap`, the smallest decision margin met (top-1/top-2
   probability margin of a reported row, a confidence's distance to the threshold, the gap at a top-k cut or
   between the two most confident): a case whose margin is below a test's delta is ambiguous, not wrong.

LLaDA2.x (DESIGN §13.1, model_type "llada2_moe") runs in llada2_model.py, which has BlockDiffModel's interface, and is
decoded by SDAR's procedure (its recipe: B steps per block, low_confidence_dynamic at the published threshold 0.95).

Run: /usr/bin/python3 tools/golden/blockdiff_golden.py [model ...]   (after tools/fixtures/make_fixtures.py and
make_moe_fixtures.py; with model names, only those are regenerated)
"""
import base64
import json
import math
import os
import sys

import numpy as np
import torch

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
from blockdiff_model import BlockDiffModel, Context, config_of  # noqa: E402
from llada2_model import Llada2Model  # noqa: E402
from make_golden import canvases  # noqa: E402  (the same two canvases as the LLaDA/Dream golden cases)
from torch_model import mask_id as mask_of  # noqa: E402

ROOT = os.path.abspath(os.path.join(os.path.dirname(__file__), '..', '..'))
MODELS = os.path.join(ROOT, 'test', 'fixtures', 'models')
GOLDEN = os.path.join(ROOT, 'test', 'fixtures', 'golden')
NAMES = ['fast-dllm-v2-tiny-f32', 'fast-dllm-v2-tiny-bf16', 'sdar-tiny-f32', 'sdar-tiny-bf16',
         'a2d-qwen2-bd3lm-tiny-f32', 'a2d-qwen3-bd3lm-tiny-f32', 'a2d-qwen3-bd3lm-tiny-bf16', 'llada2-moe-tiny-f32']
TOKEN_NAMES = ['fast-dllm-v2-tiny-f32', 'sdar-tiny-f32', 'a2d-qwen2-bd3lm-tiny-f32', 'a2d-qwen3-bd3lm-tiny-f32',
               'llada2-moe-tiny-f32']


def load_model(name):
    d = os.path.join(MODELS, name)
    return Llada2Model(d) if config_of(d)['model_type'] == 'llada2_moe' else BlockDiffModel(d)
L = 40


# ---------------------------------------------------------------- 1. golden logits through a contract emulation

class ContractSequence:
    """One sequence's cache under the engine contract's modes (its definitions, restated here in Python)."""

    def __init__(self, model):
        self.m = model
        self.cache = Context(model.nl)  # K/V of the positions [0, C)

    def run(self, canvas, mode, start, end):
        ids, pos = canvas[start:end], torch.arange(start, end)
        if mode == 'full':
            rows, fresh = self.m.forward(ids, pos)
            self.cache = Context(self.m.nl)
            self.cache.append(fresh, pos)
        elif mode in ('prefix', 'extend'):
            ctx = self.cache.without(start, 1 << 30)
            rows, fresh = self.m.forward(ids, pos, ctx)
            if mode == 'extend':
                ctx.append(fresh, pos)
                self.cache = ctx
        elif mode == 'dual':
            ctx = self.cache.without(start, end)
            rows, fresh = self.m.forward(ids, pos, ctx)
            ctx.append(fresh, pos)
            self.cache = ctx
        else:
            raise ValueError(mode)
        return self.m.reported(rows, start)


def golden_logits(name):
    m = load_model(name)
    mask = mask_id(name)
    a, b = canvases(mask, 11)
    ab = a[:16] + b[16:]  # the prompt's blocks of a, a different active block
    cases = []

    def add(case_name, setup, canvas, mode, start, end):
        seq = ContractSequence(m)
        for c in setup:
            seq.run(c['canvas'], c['mode'], c['start'], c['end'])
        lg = seq.run(canvas, mode, start, end).numpy().astype('<f4')
        cases.append({'name': case_name, 'setup': setup, 'canvas': canvas, 'mode': mode, 'start': start, 'end': end,
                      'logits': base64.b64encode(lg.tobytes()).decode()})

    def step(canvas, mode, start, end):
        return {'canvas': canvas, 'mode': mode, 'start': start, 'end': end}

    add('block-causal full forward A', [], a, 'full', 0, L)
    add('block-causal full forward B', [], b, 'full', 0, L)
    add('prefill [0, 16) then extend [16, 24)', [step(a[:16], 'full', 0, 16)], a[:24], 'extend', 16, 24)
    add('prefill [0, 16) then a block step [16, 24) (prefix)', [step(a[:16], 'full', 0, 16)], ab[:24], 'prefix', 16, 24)
    add('prefill, extends [8, 16) and [16, 24), then a block step [24, 32)',
        [step(a[:8], 'full', 0, 8), step(a[:16], 'extend', 8, 16), step(a[:24], 'extend', 16, 24)], a[:32], 'prefix', 24, 32)
    add('block cache: extend [16, 24) of A kept, then a sub-block step [20, 24) of B (dual)',
        [step(a[:16], 'full', 0, 16), step(a[:24], 'extend', 16, 24)], ab[:24], 'dual', 20, 24)
    add('block cache: a sub-block step [16, 20) after another [20, 24) was written back',
        [step(a[:16], 'full', 0, 16), step(ab[:24], 'extend', 16, 24), step(a[:24], 'dual', 20, 24)], ab[:24], 'dual', 16, 20)
    add('extend of a whole canvas from position 0', [], a, 'extend', 0, L)
    out = {'model': name, 'vocabSize': int(m.vocab), 'generator': 'tools/golden/blockdiff_golden.py', 'cases': cases}
    with open(os.path.join(GOLDEN, name + '.json'), 'w') as f:
        json.dump(out, f)
        f.write('\n')
    print('wrote golden logits for', name)


# ---------------------------------------------------------------- 2. the decoding procedures

def mask_id(name):
    """config.json's mask_token_id, the A2D or LLaDA2 tokenizer's <|mask|>, else v2's |<MASK>| (290, named only by its
    tokenizer)."""
    d = os.path.join(MODELS, name)
    if config_of(d)['model_type'].startswith('a2d-') or config_of(d)['model_type'] == 'llada2_moe':
        return mask_of(d)
    return config_of(d).get('mask_token_id') or 290


def stop_ids(name):
    """DESIGN §8: EOS and end of turn from config, generation_config and tokenizer (the fixtures name 280 and 282;
    LLaDA2's end of turn is its chat format's <|role_end|>)."""
    d = os.path.join(MODELS, name)
    ids = set()
    ends = ('<|endoftext|>', '<|im_end|>') + (('<|role_end|>',) if config_of(d)['model_type'] == 'llada2_moe' else ())
    for f in ('config.json', 'generation_config.json'):
        v = json.load(open(os.path.join(d, f))).get('eos_token_id')
        ids.update(v if isinstance(v, list) else [v] if v is not None else [])
    tc = json.load(open(os.path.join(d, 'tokenizer_config.json')))
    for i, t in tc['added_tokens_decoder'].items():
        if t['content'] in ends + (tc.get('eos_token'),):
            ids.add(int(i))
    return ids


class Decisions:
    """Greedy proposals of reported rows and the smallest decision margin met."""

    def __init__(self, mask):
        self.mask = mask
        self.gap = math.inf

    def see(self, g):
        self.gap = min(self.gap, abs(g))

    def propose(self, rows):
        """rows (n, V) float64 -> tokens (argmax without the mask, ties low), clean probabilities of them."""
        rows = rows.numpy()
        ex = np.exp(rows - rows.max(-1, keepdims=True))
        probs = ex / ex.sum(-1, keepdims=True)
        masked = probs.copy()
        masked[:, self.mask] = -1
        tok = masked.argmax(-1)
        top2 = np.sort(masked, -1)[:, -2:]
        for g in top2[:, 1] - top2[:, 0]:
            self.see(g)
        return [int(t) for t in tok], [float(probs[i, tok[i]]) for i in range(len(tok))]


def ranked(conf, pos):
    return sorted(range(len(pos)), key=lambda i: (-conf[i], pos[i]))


def schedule(m, n):
    return [m // n + (1 if j < m % n else 0) for j in range(n)]


def decode_v2(m, prompt, gen, mask, stops, sub, tau, block_cache):
    """Fast-dLLM v2 (DESIGN §8). Returns (generated tokens cut after the stop token, nfe, min gap)."""
    B, P = m.B, len(prompt)
    cap = P + gen
    x = list(prompt) + [mask] * gen
    dec = Decisions(mask)
    nfe = 0
    past = Context(m.nl)  # the exact cache of finished blocks (and the prompt's whole blocks)

    def stopped():
        """First generated stop token with no mask before it, or None."""
        for p in range(P, cap):
            if x[p] == mask:
                return None
            if x[p] in stops:
                return p
        return None

    s = P // B * B
    if s > 0:  # prefill of the prompt's whole blocks, P == B included
        rows, fresh = m.forward(x[:s], torch.arange(0, s))
        nfe += 1
        past.append(fresh, torch.arange(0, s))
        if s == P:  # the last row predicts position P: the next-token step
            tok, _ = dec.propose(rows[-1:])
            x[P] = tok[0]
    while True:
        e = min(s + B, cap)
        if stopped() is not None:
            break
        kept = None  # the block cache: K/V of [s, e) from the last whole-block forward
        for a in range(s, e, sub):
            z = min(a + sub, e)
            while any(x[p] == mask for p in range(a, z)) and stopped() is None:
                pos = [p for p in range(a, z) if x[p] == mask]
                if block_cache and (kept is None or x[a] == mask):
                    rows, fresh = m.forward(x[s:e], torch.arange(s, e), past)
                    kept = Context(m.nl)
                    kept.append(fresh, torch.arange(s, e))
                    rows, base = m.reported(rows, s), s
                elif block_cache:
                    rows, fresh = m.forward(x[a:z], torch.arange(a, z), past.merged(kept.without(a, z)))
                    kept = kept.without(a, z)
                    kept.append(fresh, torch.arange(a, z))  # the sub-block's fresh K/V written back
                    rows, base = m.reported(rows, a), a
                else:
                    rows, _ = m.forward(x[s:e], torch.arange(s, e), past)
                    rows, base = m.reported(rows, s), s
                nfe += 1
                tok, conf = dec.propose(rows[[p - base for p in pos]])
                order = ranked(conf, pos)
                if len(order) > 1:
                    dec.see(conf[order[0]] - conf[order[1]])
                if tau < 1:  # no confidence is > 1: tau = 1 is no decision boundary
                    for i in order:
                        dec.see(conf[i] - tau)
                chosen = [order[0]] + [i for i in order[1:] if conf[i] > tau]
                for i in chosen:
                    x[pos[i]] = tok[i]
        if stopped() is not None or e == cap:
            break
        # block end: one forward writes the block's K/V; its last row predicts the next block's first position
        rows, fresh = m.forward(x[s:e], torch.arange(s, e), past)
        nfe += 1
        past.append(fresh, torch.arange(s, e))
        tok, _ = dec.propose(rows[-1:])
        x[e] = tok[0]
        s = e
    p = stopped()
    end = cap if p is None else p + 1
    return x[P:end], nfe, dec.gap


def decode_sdar(m, prompt, gen, mask, stops, steps, dynamic, tau):
    """SDAR (DESIGN §8). Returns (generated tokens cut after the first stop token, nfe, min gap)."""
    B, P = m.B, len(prompt)
    cap = P + gen
    x = list(prompt) + [mask] * gen
    dec = Decisions(mask)
    nfe = 0
    past = Context(m.nl)
    s = P // B * B
    if s > 0:
        _, fresh = m.forward(x[:s], torch.arange(0, s))
        nfe += 1
        past.append(fresh, torch.arange(0, s))
    ks = schedule(B, steps)
    while True:
        e = min(s + B, cap)
        j = 0
        while any(x[p] == mask for p in range(s, e)):
            pos = [p for p in range(s, e) if x[p] == mask]
            rows, _ = m.forward(x[s:e], torch.arange(s, e), past)
            nfe += 1
            tok, conf = dec.propose(rows[[p - s for p in pos]])
            k = min(ks[j], len(pos)) if j < steps else len(pos)
            order = ranked(conf, pos)
            high = [i for i in order if conf[i] > tau]
            if dynamic:
                for i in order:
                    dec.see(conf[i] - tau)
            if dynamic and len(high) >= k:
                chosen = high
            else:
                if k < len(order):
                    dec.see(conf[order[k - 1]] - conf[order[k]])
                chosen = order[:k]
            for i in chosen:
                x[pos[i]] = tok[i]
            j += 1
        first_stop = next((p for p in range(P, e) if x[p] in stops), None)
        if first_stop is not None:
            return x[P:first_stop + 1], nfe, dec.gap
        if e == cap:
            return x[P:cap], nfe, dec.gap
        _, fresh = m.forward(x[s:e], torch.arange(s, e), past)  # block end: write the block's K/V
        nfe += 1
        past.append(fresh, torch.arange(s, e))
        s = e


def prompt_of(n, seed):
    rng = np.random.Generator(np.random.PCG64(seed))
    return [int(t) for t in rng.integers(0, 96, n)]


def golden_tokens(name):
    m = load_model(name)
    mask, stops = mask_id(name), stop_ids(name)
    B = m.B
    # Prompts shorter than a block, exactly one block (P == B), a multiple of it, and neither; caps that leave a
    # shorter last block.
    prompts = [(B // 2 + 1, 1), (B, 2), (2 * B, 3), (B + B // 2 + 1, 4)]
    if m.arch == 'fast_dllm_v2':
        strategies = [
            {'kind': 'fast_dllm_v2', 'subBlockLength': 4, 'threshold': 0.9, 'blockCache': False},
            {'kind': 'fast_dllm_v2', 'subBlockLength': 4, 'threshold': 0.3, 'blockCache': False},
            {'kind': 'fast_dllm_v2', 'subBlockLength': 4, 'threshold': 0.3, 'blockCache': True},
            {'kind': 'fast_dllm_v2', 'subBlockLength': 8, 'threshold': 1.0, 'blockCache': True},
        ]
    elif m.arch == 'llada2_moe':
        # DESIGN §13.1: SDAR's procedure; the recipe (B steps, the published threshold 0.95), a lower threshold, static.
        strategies = [
            {'kind': 'sdar', 'stepsPerBlock': B, 'remasking': 'low_confidence_dynamic', 'threshold': 0.95},
            {'kind': 'sdar', 'stepsPerBlock': B // 2, 'remasking': 'low_confidence_dynamic', 'threshold': 0.3},
            {'kind': 'sdar', 'stepsPerBlock': 2, 'remasking': 'low_confidence_static'},
        ]
    elif m.arch == 'a2d_bd3lm':
        # DESIGN §15: SDAR's procedure; the recipe (B steps, Fast-dLLM's 0.9), a lower threshold, the static rule.
        strategies = [
            {'kind': 'sdar', 'stepsPerBlock': B, 'remasking': 'low_confidence_dynamic', 'threshold': 0.9},
            {'kind': 'sdar', 'stepsPerBlock': B // 2, 'remasking': 'low_confidence_dynamic', 'threshold': 0.3},
            {'kind': 'sdar', 'stepsPerBlock': 2, 'remasking': 'low_confidence_static'},
        ]
    else:
        strategies = [
            {'kind': 'sdar', 'stepsPerBlock': 4, 'remasking': 'low_confidence_dynamic', 'threshold': 0.85},
            {'kind': 'sdar', 'stepsPerBlock': 2, 'remasking': 'low_confidence_dynamic', 'threshold': 0.3},
            {'kind': 'sdar', 'stepsPerBlock': 2, 'remasking': 'low_confidence_static'},
        ]
    cases = []
    for strategy in strategies:
        for (plen, seed) in prompts:
            for gen in (3 * B + 3, 2 * B):
                prompt = prompt_of(plen, seed * 7 + gen)
                if strategy['kind'] == 'fast_dllm_v2':
                    tokens, nfe, gap = decode_v2(m, prompt, gen, mask, stops, strategy['subBlockLength'],
                                                 strategy['threshold'], strategy['blockCache'])
                else:
                    tokens, nfe, gap = decode_sdar(m, prompt, gen, mask, stops, strategy['stepsPerBlock'],
                                                   strategy['remasking'] == 'low_confidence_dynamic',
                                                   strategy.get('threshold', 0.85))
                cases.append({'prompt': prompt, 'genLength': gen, 'strategy': strategy, 'tokens': tokens, 'nfe': nfe,
                              'minGap': gap})
                print(name, json.dumps(strategy), 'P', plen, 'gen', gen, '->', len(tokens), 'tokens',
                      'stop' if tokens and tokens[-1] in stops else 'cap', 'nfe', nfe, 'min_gap %.3g' % gap)
    os.makedirs(os.path.join(GOLDEN, 'scheduler'), exist_ok=True)
    with open(os.path.join(GOLDEN, 'scheduler', name + '.json'), 'w') as f:
        json.dump({'model': name, 'generator': 'tools/golden/blockdiff_golden.py', 'cases': cases}, f, indent=1)
        f.write('\n')


def main():
    torch.set_num_threads(1)
    only = set(sys.argv[1:])
    unknown = only - set(NAMES)
    if unknown:
        raise SystemExit(f'unknown model(s): {sorted(unknown)}; known: {NAMES}')
    for name in NAMES:
        if not only or name in only:
            golden_logits(name)
    for name in TOKEN_NAMES:
        if not only or name in only:
            golden_tokens(name)


if __name__ == '__main__':
    main()
