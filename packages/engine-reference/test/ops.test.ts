import { describe, expect, it } from 'vitest';
import {
  referenceAttention, referenceMatmul, referenceRmsNorm, referenceRope, referenceSwiglu,
} from '../src/ops.js';

/** Deterministic pseudo-random values in [-1, 1) (LCG), so failures reproduce. */
function rand(n: number, seed: number): Float64Array {
  const out = new Float64Array(n);
  let s = seed >>> 0;
  for (let i = 0; i < n; i++) {
    s = (Math.imul(s, 1664525) + 1013904223) >>> 0;
    out[i] = s / 2 ** 31 - 1;
  }
  return out;
}

describe('reference kernels', () => {
  it('matmul is x · wᵀ + bias with PyTorch weight layout', () => {
    // x (2, 3), w (2, 3) → (2, 2)
    const y = referenceMatmul(Float64Array.from([1, 2, 3, 4, 5, 6]), Float32Array.from([1, 0, -1, 0.5, 0.5, 0.5]), 2, 3, 2, Float32Array.from([10, 20]));
    expect(Array.from(y)).toEqual([1 - 3 + 10, 3 + 20, 4 - 6 + 10, 7.5 + 20]);
    expect(() => referenceMatmul(new Float64Array(5), new Float64Array(6), 2, 3, 2)).toThrow(/expected n\*k = 6/);
  });

  it('rmsnorm scales each row to unit RMS then by the weight', () => {
    const y = referenceRmsNorm(Float64Array.from([3, 4, 0, 0]), Float64Array.from([1, 2]), 2, 2, 0);
    expect(y[0]).toBeCloseTo(3 / Math.sqrt(12.5), 14);
    expect(y[1]).toBeCloseTo((2 * 4) / Math.sqrt(12.5), 14);
    const eps = referenceRmsNorm(Float64Array.from([0, 0]), Float64Array.from([1, 1]), 1, 2, 1e-5);
    expect(Array.from(eps)).toEqual([0, 0]); // eps keeps a zero row finite
  });

  it('rope is NeoX-style: identity at position 0, rotates halves, scores depend on relative position only', () => {
    const hd = 8;
    const x = rand(2 * hd, 3); // (1, 2 heads * 8)
    expect(Array.from(referenceRope(x, [0], 1, 2, hd, 10000))).toEqual(Array.from(x));
    // Pair (0, hd/2) at position 1 rotates by exactly 1 radian.
    const e = new Float64Array(hd);
    e[0] = 1;
    const r = referenceRope(e, [1], 1, 1, hd, 10000);
    expect(r[0]).toBeCloseTo(Math.cos(1), 14);
    expect(r[hd / 2]).toBeCloseTo(Math.sin(1), 14);
    expect(r[1]).toBe(0); // not interleaved: the partner of 0 is hd/2, not 1
    const q = rand(hd, 5);
    const k = rand(hd, 6);
    const dot = (p: number, s: number) => {
      const a = referenceRope(q, [p], 1, 1, hd, 500000);
      const b = referenceRope(k, [s], 1, 1, hd, 500000);
      return a.reduce((acc, v, i) => acc + v * b[i], 0);
    };
    expect(dot(7, 3)).toBeCloseTo(dot(104, 100), 10);
    expect(Math.abs(dot(7, 3) - dot(7, 4))).toBeGreaterThan(1e-6);
  });

  it('attention: one key returns its value; GQA maps query head h to kv head h / group', () => {
    const hd = 4;
    const v1 = rand(2 * hd, 9); // (1 key, 2 kv heads * 4)
    const out = referenceAttention(rand(4 * hd, 1), rand(2 * hd, 2), v1, 1, 1, 4, 2, hd);
    for (let h = 0; h < 4; h++) {
      for (let t = 0; t < hd; t++) expect(out[h * hd + t]).toBeCloseTo(v1[Math.floor(h / 2) * hd + t], 14);
    }
    // Two keys: softmax(q·k / sqrt(hd)) weighting, checked by hand for one head.
    const q = Float64Array.from([1, 0, 0, 0]);
    const k = Float64Array.from([2, 0, 0, 0, 0, 0, 0, 0]); // (2, 4)
    const v = Float64Array.from([1, 1, 1, 1, 3, 3, 3, 3]); // (2, 4)
    const w0 = Math.exp(1) / (Math.exp(1) + 1); // scores 2/2 = 1 and 0
    const y = referenceAttention(q, k, v, 1, 2, 1, 1, hd);
    expect(y[0]).toBeCloseTo(w0 * 1 + (1 - w0) * 3, 14);
    expect(() => referenceAttention(q, k, v, 1, 2, 3, 2, hd)).toThrow(/not a multiple/);
  });

  it('swiglu is silu(gate) · up', () => {
    const y = referenceSwiglu(Float64Array.from([0, 2, -30]), Float64Array.from([5, 3, 1]));
    expect(y[0]).toBe(0);
    expect(y[1]).toBeCloseTo((2 / (1 + Math.exp(-2))) * 3, 14);
    expect(Math.abs(y[2])).toBeLessThan(1e-11);
  });
});
