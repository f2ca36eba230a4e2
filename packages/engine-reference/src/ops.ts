/**
 * The reference kernels: plain loops over row-major arrays, float64 accumulation. Fast engines compare their
 * kernels with these on random inputs, so every function states its shapes and never mutates its inputs.
 */

import type { Int8Matrix } from '@fast-dllm/model';
import { isInt8, referenceInt8Matmul } from './quant.js';

export type FloatArray = Float32Array | Float64Array;

/**
 * y = x · wᵀ (+ bias). x (n, k), w (m, k) as PyTorch stores linear weights, bias (m)? → y (n, m) float64.
 * A weight in the int8 format runs the int8 op (quant.ts), so the forward pass is the same for every dtype.
 */
export function referenceMatmul(x: FloatArray, w: FloatArray | Int8Matrix, n: number, k: number, m: number, bias?: FloatArray): Float64Array {
  if (isInt8(w)) return referenceInt8Matmul(x, w, n, k, m, bias);
  if (x.length !== n * k) throw new Error(`referenceMatmul: x has ${x.length} values, expected n*k = ${n * k}`);
  if (w.length !== m * k) throw new Error(`referenceMatmul: w has ${w.length} values, expected m*k = ${m * k}`);
  const y = new Float64Array(n * m); // (n, m)
  for (let i = 0; i < n; i++) {
    const xo = i * k;
    for (let j = 0; j < m; j++) {
      const wo = j * k;
      let s = bias ? bias[j] : 0;
      for (let t = 0; t < k; t++) s += x[xo + t] * w[wo + t];
      y[i * m + j] = s;
    }
  }
  return y;
}

/** RMSNorm per row: x · rsqrt(mean(x²) + eps) · weight. x (n, d), weight (d) → (n, d) float64. */
export function referenceRmsNorm(x: FloatArray, weight: FloatArray, n: number, d: number, eps: number): Float64Array {
  const y = new Float64Array(n * d); // (n, d)
  for (let i = 0; i < n; i++) {
    let ss = 0;
    for (let t = 0; t < d; t++) ss += x[i * d + t] * x[i * d + t];
    const r = 1 / Math.sqrt(ss / d + eps);
    for (let t = 0; t < d; t++) y[i * d + t] = x[i * d + t] * r * weight[t];
  }
  return y;
}

/**
 * NeoX-style rotary embedding (rotate halves, not interleaved). x (n, heads*headDim), positions (n) absolute;
 * pair (j, j + headDim/2) of each head rotates by angle pos · theta^(-2j/headDim). Returns a new (n, heads*headDim).
 */
export function referenceRope(
  x: FloatArray, positions: ArrayLike<number>, n: number, heads: number, headDim: number, theta: number,
): Float64Array {
  const half = headDim / 2;
  const width = heads * headDim;
  const y = new Float64Array(n * width); // (n, heads*headDim)
  for (let i = 0; i < n; i++) {
    const pos = positions[i];
    for (let j = 0; j < half; j++) {
      const angle = pos * Math.pow(theta, (-2 * j) / headDim);
      const c = Math.cos(angle);
      const s = Math.sin(angle);
      for (let h = 0; h < heads; h++) {
        const o = i * width + h * headDim;
        const a = x[o + j];
        const b = x[o + j + half];
        y[o + j] = a * c - b * s;
        y[o + j + half] = b * c + a * s;
      }
    }
  }
  return y;
}

/**
 * Softmax attention with grouped K/V heads: query head h reads kv head floor(h / (heads / kvHeads)).
 * q (n, heads*headDim), k and v (m, kvHeads*headDim) → (n, heads*headDim) float64. Scores are scaled by
 * 1/sqrt(headDim). Query i sees keys [0, keyLimit[i]) (block-causal attention, DESIGN §8); all m without it.
 */
export function referenceAttention(
  q: FloatArray, k: FloatArray, v: FloatArray, n: number, m: number, heads: number, kvHeads: number, headDim: number,
  keyLimit?: ArrayLike<number>,
): Float64Array {
  if (heads % kvHeads !== 0) throw new Error(`referenceAttention: ${heads} heads is not a multiple of ${kvHeads} kv heads`);
  const group = heads / kvHeads;
  const qw = heads * headDim;
  const kw = kvHeads * headDim;
  const scale = 1 / Math.sqrt(headDim);
  const out = new Float64Array(n * qw); // (n, heads*headDim)
  const scores = new Float64Array(m); // (m) one query row's scores
  for (let h = 0; h < heads; h++) {
    const kh = Math.floor(h / group) * headDim;
    for (let i = 0; i < n; i++) {
      const qo = i * qw + h * headDim;
      const mi = keyLimit ? keyLimit[i] : m; // keys this query sees
      let max = -Infinity;
      for (let j = 0; j < mi; j++) {
        let s = 0;
        for (let t = 0; t < headDim; t++) s += q[qo + t] * k[j * kw + kh + t];
        s *= scale;
        scores[j] = s;
        if (s > max) max = s;
      }
      let sum = 0;
      for (let j = 0; j < mi; j++) {
        scores[j] = Math.exp(scores[j] - max);
        sum += scores[j];
      }
      for (let j = 0; j < mi; j++) {
        const p = scores[j] / sum;
        for (let t = 0; t < headDim; t++) out[qo + t] += p * v[j * kw + kh + t];
      }
    }
  }
  return out;
}

/** silu(gate) · up elementwise; gate and up (n) → (n) float64. */
export function referenceSwiglu(gate: FloatArray, up: FloatArray): Float64Array {
  if (gate.length !== up.length) throw new Error(`referenceSwiglu: gate has ${gate.length} values, up has ${up.length}`);
  const y = new Float64Array(gate.length); // same shape as gate
  for (let i = 0; i < gate.length; i++) {
    const g = gate[i];
    y[i] = (g / (1 + Math.exp(-g))) * up[i];
  }
  return y;
}
