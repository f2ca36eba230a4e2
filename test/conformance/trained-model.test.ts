/**
 * The trained Fast-dLLM v2 model (packages/bd-model) on every engine: the TS scheduler driving the engine must give
 * the greedy tokens and NFE of the model's own PyTorch decoding (packages/bd-model/train/golden.py: its decode.py in
 * float64, cross-checked there against tools/golden's independent decoder, which also runs the block cache) on
 * held-out problems: one token per step, the recipe, whole-block and small sub-blocks, low thresholds, the block
 * cache. A trained model is confident: many confidences lie within 1e-6 of 1, so probability margins (tokens.test.ts's
 * delta) would call nearly every run ambiguous for float32 engines. Margins are taken in logit units instead (the
 * top-1/top-2 logit gap, the log-odds gap between two confidences or to tau; engines compute the softmax in float64
 * from their logits): an entry whose logits are within `tolerance` × max|logit| of float64 moves a log-odds by at
 * most twice that, so a case is ambiguous for it only when its smallest margin is within 4 × tolerance × max|logit|.
 * Regenerate after retraining: /usr/bin/python3 packages/bd-model/train/golden.py
 */
import { readFileSync } from 'node:fs';
import { fileURLToPath } from 'node:url';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { generate, type Engine, type Strategy } from '@fast-dllm/scheduler';
import { FIXTURES, engineEntries, lacks, openDirOrSkip } from './engines.js';

const MODEL = fileURLToPath(new URL('../../packages/bd-model/model', import.meta.url));

interface Case {
  id: string;
  prompt: number[];
  genLength: number;
  strategy: Strategy;
  tokens: number[];
  nfe: number;
  /** Smallest decision margin met, logit units (golden.py). */
  minMargin: number;
  /** Largest |logit| of a reported row. */
  maxAbsLogit: number;
}
const golden = JSON.parse(readFileSync(`${FIXTURES}/golden/scheduler/bd-model.json`, 'utf8')) as { cases: Case[] };

for (const entry of await engineEntries()) {
  describe(`${entry.label}: the trained Fast-dLLM v2 model`, () => {
    let e: Engine | undefined;
    let skip = entry.unavailable ?? (entry.delta === Infinity ? 'not compared: lossy arithmetic (bf16 activations) is checked against itself only' : undefined);
    beforeAll(async () => {
      if (skip) return;
      ({ engine: e, skip } = await openDirOrSkip(entry, MODEL));
      if (e) skip = lacks(e.capabilities, { modes: ['full', 'prefix', 'extend', 'dual'] });
    });
    afterAll(async () => e?.dispose());

    it.for(golden.cases.map((c) => [`${c.id}: ${JSON.stringify(c.strategy)}`, c] as const))('vs its PyTorch decoding, %s', async ([, c], ctx) => {
      if (skip) return ctx.skip(skip);
      const bound = 4 * entry.tolerance * c.maxAbsLogit;
      if (c.minMargin <= bound) return ctx.skip(`ambiguous: the run meets a decision margin of ${c.minMargin.toExponential(1)} logits <= ${bound.toExponential(1)}`);
      const r = await generate(e!, { prompt: Int32Array.from(c.prompt), genLength: c.genLength, strategy: c.strategy });
      expect(Array.from(r.tokens)).toEqual(c.tokens);
      expect(r.stats.nfe).toBe(c.nfe);
    });
  });
}
