/**
 * Conformance of the cuda engine, run on a GPU machine: kernel level (logits against the float64 PyTorch golden
 * data, like the reference engine) and end to end (the scheduler's tokens equal the reference engine's).
 * Without a GPU every case reports "not supported: no CUDA device" from the provider's probe at run time.
 * On a GPU: `npm run conformance -w @fast-dllm/engine-cuda`. UNVERIFIED: written without a GPU.
 */
import { join } from 'node:path';
import { describe, expect, it } from 'vitest';
import { createReferenceEngine } from '@fast-dllm/engine-reference';
import { cudaProvider } from '@fast-dllm/engine-cuda';
import { generate, type Engine, type EngineOptions, type ForwardMode, type Strategy } from '@fast-dllm/scheduler';

import { decodeLogits, FIXTURES, loadGolden, relError, replayGoldenCase } from './golden.js';
const probe = await cudaProvider.probe();
const skipReason = probe.available
  ? undefined
  : `not supported: ${/no CUDA device/.test(probe.reason) ? probe.reason : `no CUDA device (${probe.reason})`}`;

// f32 weights: only summation order differs from the float64 golden (expected ~1e-6). bf16 weights round every
// matrix and activation fed to the tensor cores to 8 mantissa bits (expected ~1e-2). Not yet measured on a GPU.
const MODES: [string, EngineOptions['weightDType'], number][] = [['f32', 'f32', 1e-4], ['bf16', 'bf16', 5e-2]];
const MODELS = ['llada-tiny-f32', 'llada-tiny-bf16', 'llada-tiny-sharded', 'dream-tiny-f32', 'dream-tiny-bf16'];

describe.each(MODELS)('cuda kernels vs PyTorch golden: %s', (model) => {
  const golden = loadGolden(model);
  describe.each(MODES)('%s weights', (_label, weightDType, tolerance) => {
    it.for(golden.cases.map((c) => [c.name, c] as const))('%s', async ([, c], ctx) => {
      if (skipReason) return ctx.skip(skipReason);
      const engine = await cudaProvider.create(join(FIXTURES, 'models', model), { weightDType });
      try {
        const r = await replayGoldenCase(engine, c, { top2: true, entropy: true });
        const got = r.logits!;
        const want = decodeLogits(c.logits);
        expect(got.length).toBe(want.length);
        const err = relError(got, want);
        console.log(`${model} / ${weightDType} / ${c.name}: relative error ${err.toExponential(2)}`);
        expect(err).toBeLessThanOrEqual(tolerance);
        const V = golden.vocabSize;
        for (let i = 0; i < c.end - c.start; i++) {
          const row = want.subarray(i * V, i * V + V);
          const sorted = Array.from(row).sort((x, y) => y - x);
          if (sorted[0] - sorted[1] > 1e-2) expect(r.tokens[i]).toBe(row.indexOf(sorted[0]));
          expect(r.top1Probs![i]).toBeGreaterThanOrEqual(r.top2Probs![i]);
          expect(r.entropy![i]).toBeGreaterThanOrEqual(0);
        }
      } finally {
        await engine.dispose();
      }
    });
  });
});

const E2E: [string, Strategy][] = [
  ['llada-tiny-f32', { kind: 'fixed' }],
  ['llada-tiny-f32', { kind: 'threshold', threshold: 0.9 }],
  ['dream-tiny-f32', { kind: 'dream', alg: 'entropy' }],
  ['dream-tiny-f32', { kind: 'dream', alg: 'maskgit_plus' }],
];

describe.each(E2E)('cuda end to end vs reference tokens: %s %j', (model, strategy) => {
  it.for(['none', 'prefix', 'dual'] as const)('cache %s, greedy and sampled', async (cache, ctx) => {
    if (skipReason) return ctx.skip(skipReason);
    const dir = join(FIXTURES, 'models', model);
    const engines: Engine[] = [await createReferenceEngine(dir), await cudaProvider.create(dir, { weightDType: 'f32' })];
    try {
      for (const temperature of [0, 0.8]) {
        const runs = [];
        for (const e of engines) {
          const v = e.model.vocabSize;
          const prompt = Int32Array.of(3, 17 % v, 42 % v, 101 % v);
          runs.push(await generate(e, { prompt, genLength: 16, blockLength: 8, steps: 8, strategy, cache, temperature, seed: 7 }));
        }
        expect(Array.from(runs[1].tokens)).toEqual(Array.from(runs[0].tokens));
        expect(runs[1].stats.nfe).toBe(runs[0].stats.nfe);
      }
    } finally {
      for (const e of engines) await e.dispose();
    }
  });
});
