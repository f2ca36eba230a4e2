// End-to-end conformance of the WASM engine against the reference engine on the fixture models: every cache
// mode (full, then prefix and dual over a stale cache), SIMD and scalar builds, one thread. Logits must agree in
// NMSE; greedy tokens must be equal wherever the reference's top1-top2 logit margin exceeds DELTA (the test
// prints the ambiguous positions it let through).
import { fileURLToPath } from 'node:url';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { createReferenceEngine, type ReferenceEngine } from '@fast-dllm/engine-reference';
import { createWasmEngine, type WasmEngine } from '@fast-dllm/engine-wasm';
import type { ForwardRequest, ForwardResult } from '@fast-dllm/scheduler';

const MODELS = ['llada-tiny-f32', 'llada-tiny-bf16', 'llada-tiny-sharded', 'dream-tiny-f32', 'dream-tiny-bf16'];
/** Logit margin under which a position counts as ambiguous (f32 vs f64 activations differ by ~1e-5 in logits). */
const DELTA = 1e-3;
const SEED = 20261123;

function modelDir(name: string): string {
  return fileURLToPath(new URL(`./fixtures/models/${name}`, import.meta.url));
}

/** Deterministic canvas: random prompt of P tokens below the special ids, then masks. */
function canvas(L: number, P: number, vocab: number, mask: number, seed: number): Int32Array {
  let a = seed >>> 0;
  const c = new Int32Array(L).fill(mask);
  for (let i = 0; i < P; i++) {
    a = (Math.imul(a, 1664525) + 1013904223) >>> 0;
    c[i] = a % Math.min(vocab, 256);
  }
  return c;
}

function range(a: number, b: number): Int32Array {
  return Int32Array.from({ length: b - a }, (_, i) => a + i);
}

function compare(label: string, got: ForwardResult, want: ForwardResult, req: ForwardRequest, V: number): void {
  const g = got.logits!, w = want.logits!;
  expect(g.every(Number.isFinite), `${label}: non-finite logits`).toBe(true);
  let num = 0, den = 0;
  for (let i = 0; i < w.length; i++) { num += (g[i] - w[i]) ** 2; den += w[i] ** 2; }
  if (process.env.PRINT_NMSE) console.log(`NMSE ${label} ${num / den}`);
  // f32 activations vs the reference's f64: measured NMSE 4.9e-14..2.2e-13 over all cases; 1e-11 leaves ~45× headroom.
  expect(num / den, `${label}: logits NMSE (seed ${SEED})`).toBeLessThan(1e-11);
  const ambiguous: number[] = [];
  for (let i = 0; i < req.positions.length; i++) {
    const row = Array.from(w.subarray(i * V, (i + 1) * V)).sort((a, b) => b - a);
    if (row[0] - row[1] < DELTA) { ambiguous.push(req.positions[i]); continue; }
    expect(got.tokens[i], `${label}: token at position ${req.positions[i]}`).toBe(want.tokens[i]);
    expect(got.probs[i]).toBeCloseTo(want.probs[i], 5);
    expect(got.top1Probs![i]).toBeCloseTo(want.top1Probs![i], 5);
    expect(got.top2Probs![i]).toBeCloseTo(want.top2Probs![i], 5);
    expect(got.entropy![i]).toBeCloseTo(want.entropy![i], 4);
  }
  if (ambiguous.length) console.log(`${label}: ambiguous positions (margin < ${DELTA}) not compared: ${ambiguous.join(', ')}`);
}

const CASES = MODELS.flatMap((model) => [true, false].flatMap((simd) =>
  // bf16 storage is lossless on the bf16 fixtures, so the same tolerance applies.
  (model.endsWith('-bf16') ? (['f32', 'bf16'] as const) : (['f32'] as const)).map((dtype) => ({ model, simd, dtype, threads: 1 }))))
  // Two threads (threads build, shared memory, rows split between the caller and one worker).
  .concat(['llada-tiny-f32', 'dream-tiny-bf16'].map((model) => ({ model, simd: true, dtype: 'f32' as const, threads: 2 })));

for (const { model, simd, dtype, threads } of CASES) {
  {
    describe(`wasm vs reference: ${model}, ${simd ? 'SIMD' : 'scalar'}, ${dtype} weights, ${threads} thread(s)`, () => {
      let ref: ReferenceEngine;
      let wasm: WasmEngine;
      beforeAll(async () => {
        ref = await createReferenceEngine(modelDir(model));
        wasm = await createWasmEngine(modelDir(model), { simd, threads, weightDType: dtype });
      });
      afterAll(async () => {
        await ref?.dispose();
        await wasm?.dispose();
      });

      it('full, then prefix and dual over a stale cache; greedy and sampled', async () => {
        const V = ref.model.vocabSize;
        const L = 40, P = 12;
        const c = canvas(L, P, V, ref.model.maskId, SEED);
        const want = { top2: true, entropy: true, logits: true };
        const run = async (label: string, req: ForwardRequest) => {
          const a = await wasm.forward(req);
          const b = await ref.forward(req);
          compare(`${model} ${simd ? 'simd' : 'scalar'} ${dtype} ${threads}t ${label}`, a, b, req, V);
        };
        await run('full', { canvas: c, mode: 'full', start: 0, end: L, positions: range(0, L), want });
        // Commit a few tokens so that the cache is stale, as the scheduler's approximation does.
        const c2 = c.slice();
        c2[P] = 5; c2[P + 3] = 7; c2[P + 20] = 9;
        await run('prefix', { canvas: c2, mode: 'prefix', start: P, end: L, positions: range(P, L), want });
        await run('dual', { canvas: c2, mode: 'dual', start: P, end: P + 8, positions: range(P, P + 8), want });
        await run('dual again (cache rewritten by the last dual)', { canvas: c2, mode: 'dual', start: P + 8, end: P + 16, positions: range(P + 8, P + 16), want });
        const sampling = { temperature: 0.8, seed: 7, forwardIndex: 3 };
        await run('dual sampled', { canvas: c2, mode: 'dual', start: P, end: P + 8, positions: range(P + 1, P + 7), want, sampling });
      });

      it('rejects cached steps without a matching full forward', async () => {
        const fresh = await createWasmEngine(modelDir(model), { simd });
        const c = canvas(16, 4, ref.model.vocabSize, ref.model.maskId, SEED);
        await expect(fresh.forward({ canvas: c, mode: 'dual', start: 4, end: 8, positions: range(4, 8) })).rejects.toThrow(/prior 'full'/);
        await fresh.forward({ canvas: c, mode: 'full', start: 0, end: 16, positions: range(0, 16) });
        const c3 = canvas(20, 4, ref.model.vocabSize, ref.model.maskId, SEED);
        await expect(fresh.forward({ canvas: c3, mode: 'prefix', start: 4, end: 20, positions: range(4, 20) })).rejects.toThrow(/16 tokens/);
        await fresh.dispose();
      });
    });
  }
}

describe('wasm engine options', () => {
  it('refuses what it does not implement, by name', async () => {
    await expect(createWasmEngine(modelDir('llada-tiny-f32'), { threads: 0 })).rejects.toThrow(/threads must be a positive integer/);
    await expect(createWasmEngine(modelDir('llada-tiny-f32'), { threads: 2, simd: false })).rejects.toThrow(/SIMD threads build/);
    await expect(createWasmEngine(modelDir('llada-tiny-f32'), { weightDType: 'f16' })).rejects.toThrow(/'f16' is not supported yet/);
  });
});
