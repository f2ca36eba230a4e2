/**
 * Conformance of the cuda engine: kernel level (logits against the float64 PyTorch golden data, like the
 * reference engine) and end to end (the scheduler's tokens equal the reference engine's), on two providers:
 * - `cuda`: the real addon on a GPU. Without one every case reports "not supported: no CUDA device" from the
 *   provider's probe at run time. On a GPU: `npm run conformance -w @fast-dllm/engine-cuda`.
 * - `cuda-emulator`: the same kernel source and addon compiled for the CPU (native/emu), so the engine's logic is
 *   checked in every CI run. It cannot show hardware behaviour (real wmma layout, memory model, speed).
 */
import { join } from 'node:path';
import { describe, expect, it } from 'vitest';
import { createReferenceEngine } from '@fast-dllm/engine-reference';
import { cudaEmulatorProvider, cudaProvider } from '@fast-dllm/engine-cuda';
import { generate, type Engine, type EngineOptions, type EngineProvider, type Strategy } from '@fast-dllm/scheduler';

import { decodeLogits, FIXTURES, loadGolden, relError, replayGoldenCase } from './golden.js';
const PROVIDERS: [string, EngineProvider, string | undefined][] = [];
for (const provider of [cudaProvider, cudaEmulatorProvider]) {
  const probe = await provider.probe();
  const skip = probe.available
    ? undefined
    : `not supported: ${/no CUDA device/.test(probe.reason) ? probe.reason : `${provider.name} unavailable (${probe.reason})`}`;
  PROVIDERS.push([provider.name, provider, skip]);
}

// f32 weights: only summation order differs from the float64 golden (emulator: ~1e-6). bf16 weights round every
// matrix and activation fed to the tensor cores to 8 mantissa bits (emulator: ~1e-2). Not yet measured on a GPU.
const MODES: [string, EngineOptions['weightDType'], number][] = [['f32', 'f32', 1e-4], ['bf16', 'bf16', 5e-2]];
/** Greedy token (lowest id on ties), its probability, top-1/top-2 probabilities and entropy of one logits row. */
function headStats(row: Float32Array) {
  let token = 0;
  for (let v = 1; v < row.length; v++) if (row[v] > row[token]) token = v;
  const max = row[token];
  let second = -Infinity;
  for (let v = 0; v < row.length; v++) if (v !== token && row[v] > second) second = row[v];
  let z = 0;
  let ez = 0;
  for (let v = 0; v < row.length; v++) {
    const e = Math.exp(row[v] - max);
    z += e;
    ez += e * (row[v] - max);
  }
  return { token, prob: 1 / z, top1: 1 / z, top2: Math.exp(second - max) / z, entropy: Math.log(z) - ez / z };
}

const MODELS = ['llada-tiny-f32', 'llada-tiny-bf16', 'llada-tiny-sharded', 'dream-tiny-f32', 'dream-tiny-bf16'];

describe.each(PROVIDERS)('%s', (_name, provider, skipReason) => {
describe.each(MODELS)('kernels vs PyTorch golden: %s', (model) => {
  const golden = loadGolden(model);
  describe.each(MODES)('%s weights', (_label, weightDType, tolerance) => {
    it.for(golden.cases.map((c) => [c.name, c] as const))('%s', async ([, c], ctx) => {
      if (skipReason) return ctx.skip(skipReason);
      const engine = await provider.create(join(FIXTURES, 'models', model), { weightDType });
      try {
        const r = await replayGoldenCase(engine, c, { top2: true, entropy: true });
        const got = r.logits!;
        const want = decodeLogits(c.logits);
        expect(got.length).toBe(want.length);
        const err = relError(got, want);
        console.log(`${provider.name} / ${model} / ${weightDType} / ${c.name}: relative error ${err.toExponential(2)}`);
        expect(err).toBeLessThanOrEqual(tolerance);
        const V = golden.vocabSize;
        // An argmax can only flip where the top-2 margin is at most twice the largest logit error.
        let maxAbs = 0;
        for (let i = 0; i < got.length; i++) maxAbs = Math.max(maxAbs, Math.abs(got[i] - want[i]));
        const ambiguous: number[] = [];
        for (let i = 0; i < c.end - c.start; i++) {
          const row = want.subarray(i * V, i * V + V);
          const sorted = Array.from(row).sort((x, y) => y - x);
          if (sorted[0] - sorted[1] > 2 * maxAbs + 1e-6) expect(r.tokens[i]).toBe(row.indexOf(sorted[0]));
          else ambiguous.push(c.start + i);
          // The device reduction against the logits it returned, recomputed in float64.
          const own = headStats(got.subarray(i * V, i * V + V));
          expect(r.tokens[i]).toBe(own.token);
          expect(r.probs[i]).toBeCloseTo(own.prob, 6);
          expect(r.top1Probs![i]).toBeCloseTo(own.top1, 6);
          expect(r.top2Probs![i]).toBeCloseTo(own.top2, 6);
          expect(r.entropy![i]).toBeCloseTo(own.entropy, 5);
        }
        if (ambiguous.length) console.log(`  positions within 2 x ${maxAbs.toExponential(1)} of a tie, token not compared: ${ambiguous.join(', ')}`);
      } finally {
        await engine.dispose();
      }
    });
  });
});

// Spans of 96 rows or more run the GEMMs with 128-row block tiles, which the 40-token golden canvases never reach:
// a 200-token canvas (full, then a prefix step over its last 104 rows) against the reference engine's logits.
describe.each(MODES)('long canvas against the reference engine, %s weights', (_label, weightDType, tolerance) => {
  it.for(['llada-tiny-f32', 'dream-tiny-f32'])('%s', async (model, ctx) => {
    if (skipReason) return ctx.skip(skipReason);
    const dir = join(FIXTURES, 'models', model);
    const engines: Engine[] = [await createReferenceEngine(dir), await provider.create(dir, { weightDType })];
    try {
      const V = engines[0].model.vocabSize;
      const canvas = Int32Array.from({ length: 200 }, (_, i) => (i * 37 + 11) % (V - 16));
      for (const [mode, start] of [['full', 0], ['prefix', 96]] as const) {
        const positions = Int32Array.from({ length: 200 - start }, (_, i) => start + i);
        const [want, got] = await Promise.all(
          engines.map((e) => e.forward({ canvas, mode, start, end: 200, positions, want: { logits: true } })),
        );
        const err = relError(got.logits!, want.logits!);
        console.log(`${provider.name} / ${model} / ${weightDType} / 200-token ${mode}: relative error ${err.toExponential(2)}`);
        expect(err).toBeLessThanOrEqual(tolerance);
      }
    } finally {
      for (const e of engines) await e.dispose();
    }
  });
});

const E2E: [string, Strategy][] = [
  ['llada-tiny-f32', { kind: 'fixed' }],
  ['llada-tiny-f32', { kind: 'threshold', threshold: 0.9 }],
  ['dream-tiny-f32', { kind: 'dream', alg: 'entropy' }],
  ['dream-tiny-f32', { kind: 'dream', alg: 'maskgit_plus' }],
];

describe.each(E2E)('end to end vs reference tokens: %s %j', (model, strategy) => {
  it.for(['none', 'prefix', 'dual'] as const)('cache %s, greedy and sampled', async (cache, ctx) => {
    if (skipReason) return ctx.skip(skipReason);
    const dir = join(FIXTURES, 'models', model);
    const engines: Engine[] = [await createReferenceEngine(dir), await provider.create(dir, { weightDType: 'f32' })];
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
});
