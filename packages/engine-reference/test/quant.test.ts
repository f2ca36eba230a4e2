import { fileURLToPath } from 'node:url';
import { describe, expect, it } from 'vitest';
import {
  INT8_BLOCK, dequantizeInt8Row, quantizeInt8Activations, quantizeInt8Weight, roundHalfEven,
} from '@fast-dllm/model';
import { createReferenceEngine, loadReferenceModel } from '../src/index.js';
import { referenceMatmul } from '../src/ops.js';
import { isInt8, referenceInt8Matmul } from '../src/quant.js';

/** Deterministic values in [-scale, scale) (LCG), float32. */
function rand(n: number, seed: number, scale = 1): Float32Array {
  const out = new Float32Array(n);
  let s = seed >>> 0;
  for (let i = 0; i < n; i++) {
    s = (Math.imul(s, 1664525) + 1013904223) >>> 0;
    out[i] = (s / 2 ** 31 - 1) * scale;
  }
  return out;
}

function nmse(got: ArrayLike<number>, want: ArrayLike<number>): number {
  let num = 0, den = 0;
  for (let i = 0; i < want.length; i++) { num += (got[i] - want[i]) ** 2; den += want[i] ** 2; }
  return num / den;
}

describe('int8 format (@fast-dllm/model int8.ts)', () => {
  it('rounds ties to even, like WebAssembly nearest', () => {
    expect([0.5, 1.5, 2.5, -0.5, -1.5, -2.5, 2.4999, -3.5000001].map(roundHalfEven)).toEqual([0, 2, 2, -0, -2, -2, 2, -4]);
  });

  it('weights: 7-bit blocks of 32 with a float32 scale amax/63; a zero block stays zero; the tail is padded', () => {
    // One row of 40 values: block 0 = 0..31, block 1 = 32..39 (+ 24 zeros of padding). amax 31.5 makes d = 0.5
    // exactly, so 1.25 / d = 2.5 and 1.75 / d = 3.5 are true ties.
    const w = new Float32Array(40);
    w.set([-31.5, 1.25, 1.75, -1.25, 0.3]);
    const m = quantizeInt8Weight(w, 1, 40);
    expect(m.scale[0]).toBe(0.5);
    expect(Array.from(m.q.subarray(0, 6))).toEqual([-63, 2, 4, -2, 1, 0]);
    expect(m.scale[1]).toBe(0); // block 1 is all zeros
    expect(Array.from(m.q.subarray(32, 64)).every((v) => v === 0)).toBe(true);
    expect(m.q.length).toBe(64);
    const row = new Float32Array(40);
    dequantizeInt8Row(m, 0, row);
    expect(Array.from(row.subarray(0, 5))).toEqual([-31.5, 1, 2, -1, 0.5]);
    expect(() => dequantizeInt8Row(m, 1, row)).toThrow(/row 1 outside 0..0/);
    expect(() => quantizeInt8Weight(w, 2, 40)).toThrow(/40 values is not 2×40/);
  });

  it('activations: 8-bit blocks (amax/127), each value rounded to float32 first', () => {
    const x = Float64Array.from({ length: 32 }, (_, k) => (k === 5 ? -3 : 0.1 + k * 1e-9)); // not float32 values
    const a = quantizeInt8Activations(x, 1, 32);
    expect(a.scale[0]).toBe(Math.fround(3 / 127));
    expect(a.q[5]).toBe(-127);
    expect(a.q[0]).toBe(roundHalfEven(Math.fround(Math.fround(0.1) / Math.fround(3 / 127))));
    // NaN poisons its block's scale (so the NaN reaches the matmul's output) and leaves zeros.
    const bad = quantizeInt8Activations(Float32Array.from({ length: 32 }, (_, k) => (k === 3 ? NaN : 1)), 1, 32);
    expect(Number.isNaN(bad.scale[0])).toBe(true);
    expect(Array.from(bad.q).every((v) => v === 0)).toBe(true);
  });
});

describe('referenceInt8Matmul', () => {
  // Ragged on purpose: in = 70 is two full blocks and a 6-value tail.
  const n = 5, k = 70, m = 9;
  const x = rand(n * k, 11, 2), w = rand(m * k, 12, 0.3), b = rand(m, 13);

  it('is the float64 product of the dequantized operands (exact integer block sums, seed 11)', () => {
    const wq = quantizeInt8Weight(w, m, k);
    const xa = quantizeInt8Activations(x, n, k);
    const blocks = Math.ceil(k / INT8_BLOCK);
    const deq = (q: Int8Array, s: Float32Array, rows: number) => Float64Array.from({ length: rows * k }, (_, i) => {
      const r = Math.floor(i / k), c = i % k;
      return q[r * blocks * INT8_BLOCK + c] * s[r * blocks + Math.floor(c / INT8_BLOCK)];
    });
    const y = referenceInt8Matmul(x, wq, n, k, m, b);
    const want = referenceMatmul(deq(xa.q, xa.scale, n), deq(wq.q, wq.scale, m), n, k, m, b);
    // Same products, summed in a different order in float64: measured NMSE ~1e-32.
    expect(nmse(y, want)).toBeLessThan(1e-28);
    // And the quantization is real: against the float matmul the error is int8-sized.
    const e = nmse(y, referenceMatmul(x, w, n, k, m, b));
    expect(e).toBeGreaterThan(1e-7);
    expect(e).toBeLessThan(1e-3);
  });

  it('runs through referenceMatmul when the weight is int8, and checks shapes', () => {
    const wq = quantizeInt8Weight(w, m, k);
    expect(isInt8(wq)).toBe(true);
    expect(isInt8(w)).toBe(false);
    expect(Array.from(referenceMatmul(x, wq, n, k, m))).toEqual(Array.from(referenceInt8Matmul(x, wq, n, k, m)));
    expect(() => referenceInt8Matmul(x, wq, n, k, m + 1)).toThrow(/weight is 9×70, the call needs 10×70/);
  });
});

describe('reference engine with weightDType int8', () => {
  const dir = fileURLToPath(new URL('../../../test/fixtures/models/llada-tiny-f32', import.meta.url));

  it('quantizes the linear weights and the LM head; norms and embeddings stay float32', async () => {
    const { weights } = await loadReferenceModel(dir, undefined, 'int8');
    expect(isInt8(weights.layers[0].q) && weights.layers[0].ffn.kind === 'dense' && isInt8(weights.layers[0].ffn.w.down) && isInt8(weights.lmHead)).toBe(true);
    expect(weights.layers[0].attnNorm).toBeInstanceOf(Float32Array);
    expect(weights.embed).toBeInstanceOf(Float32Array);
  });

  it('gives logits near the float32 engine (an int8-sized error, not an f32-sized one)', async () => {
    const f32 = await createReferenceEngine(dir);
    const i8 = await createReferenceEngine(dir, { weightDType: 'int8' });
    const L = 24;
    const canvas = Int32Array.from({ length: L }, (_, i) => (i < 12 ? (i * 37) % 300 : f32.model.maskId));
    const run = async (e: typeof f32) => {
      const sequence = e.openSequence(L);
      const [r] = await e.forward([{ sequence, canvas, mode: 'full', start: 0, end: L, positions: Int32Array.from({ length: L }, (_, i) => i), want: { logits: true } }]);
      e.closeSequence(sequence);
      return r;
    };
    const a = await run(f32);
    const c = await run(i8);
    const e = nmse(c.logits!, a.logits!);
    expect(e).toBeGreaterThan(1e-7);
    expect(e).toBeLessThan(1e-2);
    await f32.dispose();
    await i8.dispose();
  });
});
