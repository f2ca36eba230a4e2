// End-to-end conformance of the WASM engine against the reference engine on the fixture models: every cache
// mode (full, then prefix and dual over a stale cache), SIMD and scalar builds, one thread. Logits must agree in
// NMSE; greedy tokens must be equal wherever the reference's top1-top2 logit margin exceeds DELTA (the test
// prints the ambiguous positions it let through). int8 weights are compared with the reference in int8 (the same
// quantized weights; activations quantized by the same rule from f32 here and f64 there).
import { copyFileSync, mkdtempSync, readFileSync, rmSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { fileURLToPath } from 'node:url';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { SafetensorsArchive, writeSafetensors } from '@fast-dllm/model';
import { createReferenceEngine, type ReferenceEngine } from '@fast-dllm/engine-reference';
import { createWasmEngine, type WasmEngine } from '@fast-dllm/engine-wasm';
import type { ForwardRequest, ForwardResult } from '@fast-dllm/scheduler';

const MODELS = ['llada-tiny-f32', 'llada-tiny-bf16', 'llada-tiny-sharded', 'dream-tiny-f32', 'dream-tiny-bf16'];
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

/**
 * Tolerances per weight dtype: logits NMSE; `maxDiff`, the largest logit difference; `delta`, the reference's
 * top1-top2 logit margin under which a position counts as ambiguous (its token may differ); `stat`, the largest
 * difference in probs, top-1/top-2 probs (entropy: 10×) at the other positions.
 * - f32/bf16: f32 activations vs the reference's f64: measured NMSE 4.9e-14..2.2e-13 over all cases (1e-11 leaves
 *   ~45× headroom); logits differ by ~1e-5.
 * - int8: the same quantized weights and the same activation rule, but an activation whose f32 value (here) and f64
 *   value (reference) fall on two sides of an int8 rounding step is quantized one step (1/127 of its block's
 *   largest value) apart. Forwards without such a crossing agree like f32 (measured over the 60 int8 forwards here:
 *   47 with NMSE 7.7e-15..3.5e-12, logits within 3e-6) and are held to the f32 bounds; the 13 with one (all on the
 *   bf16 fixtures' weights) measured NMSE 3.7e-6..4.9e-5, logits up to 0.12 apart. A forward whose logits differ by
 *   more than NOISE is such a case: its margin and stat bounds become 3× and 1× its largest logit difference, and
 *   its NMSE and largest difference are capped at ~10× and ~4× the measured.
 */
const NOISE = 1e-4;
const TOLERANCE = {
  f32: { nmse: 1e-11, maxDiff: NOISE, delta: 1e-3, stat: 5e-6 },
  bf16: { nmse: 1e-11, maxDiff: NOISE, delta: 1e-3, stat: 5e-6 },
  int8: { nmse: 5e-4, maxDiff: 0.5, delta: 1e-3, stat: 5e-6 },
} as const;
type Tolerance = (typeof TOLERANCE)[keyof typeof TOLERANCE];

function compare(label: string, got: ForwardResult, want: ForwardResult, req: ForwardRequest, V: number, tol: Tolerance): void {
  const g = got.logits!, w = want.logits!;
  expect(g.every(Number.isFinite), `${label}: non-finite logits`).toBe(true);
  let num = 0, den = 0;
  for (let i = 0; i < w.length; i++) { num += (g[i] - w[i]) ** 2; den += w[i] ** 2; }
  if (process.env.PRINT_NMSE) console.log(`NMSE ${label} ${num / den}`);
  expect(num / den, `${label}: logits NMSE (seed ${SEED})`).toBeLessThan(tol.nmse);
  let maxDiff = 0;
  for (let i = 0; i < w.length; i++) maxDiff = Math.max(maxDiff, Math.abs(g[i] - w[i]));
  expect(maxDiff, `${label}: largest logit difference`).toBeLessThan(tol.maxDiff);
  const crossed = maxDiff > NOISE; // int8 only (maxDiff ≤ NOISE otherwise): an activation crossed a rounding step
  const delta = crossed ? 3 * maxDiff : tol.delta;
  const stat = crossed ? maxDiff : tol.stat;
  if (crossed) console.log(`${label}: an activation crossed an int8 rounding step (largest logit difference ${maxDiff.toPrecision(2)})`);
  const ambiguous: number[] = [];
  for (let i = 0; i < req.positions.length; i++) {
    const row = Array.from(w.subarray(i * V, (i + 1) * V)).sort((a, b) => b - a);
    if (row[0] - row[1] < delta) { ambiguous.push(req.positions[i]); continue; }
    const at = `${label}: position ${req.positions[i]}`;
    expect(got.tokens[i], `${at} token`).toBe(want.tokens[i]);
    expect(Math.abs(got.probs[i] - want.probs[i]), `${at} prob`).toBeLessThan(stat);
    expect(Math.abs(got.top1Probs![i] - want.top1Probs![i]), `${at} top-1 prob`).toBeLessThan(stat);
    expect(Math.abs(got.top2Probs![i] - want.top2Probs![i]), `${at} top-2 prob`).toBeLessThan(stat);
    expect(Math.abs(got.entropy![i] - want.entropy![i]), `${at} entropy`).toBeLessThan(10 * stat);
  }
  if (ambiguous.length) console.log(`${label}: ambiguous positions (margin < ${delta.toPrecision(2)}) not compared: ${ambiguous.join(', ')}`);
}

const CASES = MODELS.flatMap((model) => [true, false].flatMap((simd) =>
  // bf16 storage is lossless on the bf16 fixtures, so the same tolerance applies.
  (model.endsWith('-bf16') ? (['f32', 'bf16', 'int8'] as const) : (['f32', 'int8'] as const)).map((dtype) => ({ model, simd, dtype, threads: 1 }))))
  // Two threads (threads build, shared memory, rows split between the caller and one worker).
  .concat((['llada-tiny-f32', 'dream-tiny-bf16'] as const).flatMap((model) => (['f32', 'int8'] as const).map((dtype) => ({ model, simd: true, dtype, threads: 2 }))));

for (const { model, simd, dtype, threads } of CASES) {
  {
    describe(`wasm vs reference: ${model}, ${simd ? 'SIMD' : 'scalar'}, ${dtype} weights, ${threads} thread(s)`, () => {
      let ref: ReferenceEngine;
      let wasm: WasmEngine;
      beforeAll(async () => {
        ref = await createReferenceEngine(modelDir(model), { weightDType: dtype === 'int8' ? 'int8' : 'f32' });
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
          compare(`${model} ${simd ? 'simd' : 'scalar'} ${dtype} ${threads}t ${label}`, a, b, req, V, TOLERANCE[dtype]);
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

// Tied embeddings (no fixture has them): dream-tiny-f32 re-saved with tie_word_embeddings and no lm_head. f32 reads
// the embedding rows from the LM head exactly; int8 reads them from the int8 head, dequantized, in both engines.
describe('wasm vs reference: tied embeddings (dream-tiny-f32 re-saved tied), f32 and int8', () => {
  const dir = mkdtempSync(join(tmpdir(), 'fast-dllm-tied-'));
  afterAll(() => rmSync(dir, { recursive: true, force: true }));
  beforeAll(async () => {
    const src = modelDir('dream-tiny-f32');
    const config = JSON.parse(readFileSync(join(src, 'config.json'), 'utf8'));
    writeFileSync(join(dir, 'config.json'), JSON.stringify({ ...config, tie_word_embeddings: true }));
    for (const f of ['generation_config.json', 'tokenizer.json', 'tokenizer_config.json']) copyFileSync(join(src, f), join(dir, f));
    const archive = await SafetensorsArchive.open(join(src, 'model.safetensors'));
    const tensors = [];
    for (const [name, t] of archive.tensors) if (name !== 'lm_head.weight') tensors.push({ name, dtype: t.dtype, shape: t.shape, data: await archive.readBytes(name) });
    await archive.close();
    await writeSafetensors(join(dir, 'model.safetensors'), tensors);
  });

  for (const dtype of ['f32', 'int8'] as const) {
    it(`${dtype}: full and dual forwards`, async () => {
      const ref = await createReferenceEngine(dir, { weightDType: dtype });
      const wasm = await createWasmEngine(dir, { weightDType: dtype });
      try {
        const V = ref.model.vocabSize, L = 40, P = 12;
        const c = canvas(L, P, V, ref.model.maskId, SEED);
        const want = { top2: true, entropy: true, logits: true };
        for (const req of [
          { canvas: c, mode: 'full' as const, start: 0, end: L, positions: range(0, L), want },
          { canvas: c, mode: 'dual' as const, start: P, end: P + 8, positions: range(P, P + 8), want },
        ]) compare(`tied dream ${dtype} ${req.mode}`, await wasm.forward(req), await ref.forward(req), req, V, TOLERANCE[dtype]);
      } finally {
        await ref.dispose();
        await wasm.dispose();
      }
    });
  }
});

describe('wasm engine options', () => {
  it('refuses what it does not implement, by name', async () => {
    await expect(createWasmEngine(modelDir('llada-tiny-f32'), { threads: 0 })).rejects.toThrow(/threads must be a positive integer/);
    await expect(createWasmEngine(modelDir('llada-tiny-f32'), { threads: 2, simd: false })).rejects.toThrow(/SIMD threads build/);
    await expect(createWasmEngine(modelDir('llada-tiny-f32'), { weightDType: 'f16' })).rejects.toThrow(/'f16' is not supported yet/);
  });
});
