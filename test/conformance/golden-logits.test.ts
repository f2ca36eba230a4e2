/**
 * Every engine against golden logits of the independent float64 PyTorch model (tools/golden/torch_model.py;
 * regenerate with `/usr/bin/python3 tools/golden/make_golden.py`): full, prefix and dual forwards over fresh and
 * stale caches. Checks, in order: finite logits, the normalised error under the entry's tolerance, greedy tokens
 * equal to the golden argmax wherever the golden top-2 margin is not ambiguous, and the engine's own reduction
 * (token, probability, top-1/top-2, entropy) equal to one recomputed in float64 from the logits it returned.
 */
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import type { Engine } from '@fast-dllm/scheduler';
import { decodeLogits, loadGolden, relError, replayGoldenCase } from '../golden.js';
import { MODELS, engineEntries, lacks, open } from './engines.js';

/** Token (never the mask, ties to the lowest id), its probability, top-1/top-2 (mask excluded) and entropy of a row. */
export function headStats(row: Float32Array, mask: number) {
  let token = -1;
  let max = -Infinity;
  for (let v = 0; v < row.length; v++) {
    if (row[v] > max) max = row[v];
    if (v !== mask && (token < 0 || row[v] > row[token])) token = v;
  }
  let second = -Infinity;
  for (let v = 0; v < row.length; v++) if (v !== token && v !== mask && row[v] > second) second = row[v];
  let z = 0;
  let ez = 0;
  for (let v = 0; v < row.length; v++) {
    const e = Math.exp(row[v] - max);
    z += e;
    ez += e * (row[v] - max);
  }
  const p = (x: number) => Math.exp(x - max) / z;
  return { token, prob: p(row[token]), top1: p(row[token]), top2: p(second), entropy: Math.log(z) - ez / z };
}

for (const entry of await engineEntries()) {
  describe(`${entry.label}: logits vs PyTorch golden`, () => {
    describe.each(MODELS)('%s', (model) => {
      const golden = loadGolden(model);
      let engine: Engine | undefined;
      let skip = entry.unavailable;
      beforeAll(async () => {
        if (skip) return;
        engine = await open(entry, model);
        skip = lacks(engine.capabilities, { modes: ['full', 'prefix', 'dual'], logits: true });
      });
      afterAll(async () => engine?.dispose());

      it.for(golden.cases.map((c) => [c.name, c] as const))('%s', async ([, c], ctx) => {
        if (skip) return ctx.skip(skip);
        const e = engine!;
        const r = await replayGoldenCase(e, c, { top2: true, entropy: true });
        const got = r.logits!;
        const want = decodeLogits(c.logits);
        expect(got.length).toBe(want.length);
        expect(got.every(Number.isFinite), 'non-finite logits').toBe(true);
        const err = relError(got, want);
        if (process.env.PRINT_ERRORS || err > entry.tolerance) console.log(`${entry.label} / ${model} / ${c.name}: relative error ${err.toExponential(2)}`);
        expect(err, `tolerance ${entry.tolerance} (${entry.measured})`).toBeLessThanOrEqual(entry.tolerance);
        const V = golden.vocabSize;
        const mask = e.model.maskId;
        // An argmax can only flip where the top-2 margin is at most twice the largest logit error.
        let maxAbs = 0;
        for (let i = 0; i < got.length; i++) maxAbs = Math.max(maxAbs, Math.abs(got[i] - want[i]));
        for (let i = 0; i < c.end - c.start; i++) {
          const gold = headStats(want.subarray(i * V, i * V + V), mask);
          const row = Array.from(want.subarray(i * V, i * V + V)).filter((_, v) => v !== mask).sort((x, y) => y - x);
          if (row[0] - row[1] > 2 * maxAbs + 1e-6) expect(r.tokens[i], `token at ${c.start + i}`).toBe(gold.token);
          const own = headStats(got.subarray(i * V, i * V + V), mask);
          expect(r.tokens[i]).toBe(own.token);
          expect(r.tokens[i]).not.toBe(mask);
          expect(r.probs[i]).toBeCloseTo(own.prob, 6);
          expect(r.top1Probs![i]).toBeCloseTo(own.top1, 6);
          expect(r.top2Probs![i]).toBeCloseTo(own.top2, 6);
          expect(r.entropy![i]).toBeCloseTo(own.entropy, 5);
        }
      });
    });
  });
}
