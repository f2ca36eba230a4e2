/**
 * The reference kernels: plain loops over row-major arrays, float64 accumulation. Fast engines compare their
 * kernels with these on random inputs, so every function states its shapes and never mutates its inputs.
 */

import { routeRows, type Int8Matrix, type RoutingRule } from '@fast-dllm/model';
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
 * the first `rotaryDim` dims of each head rotate (all of them by default; fewer is LLaDA-MoE's partial rotary):
 * pair (j, j + rotaryDim/2) by angle pos · theta^(-2j/rotaryDim); the rest pass through. Returns a new array.
 */
export function referenceRope(
  x: FloatArray, positions: ArrayLike<number>, n: number, heads: number, headDim: number, theta: number, rotaryDim = headDim,
): Float64Array {
  const half = rotaryDim / 2;
  const width = heads * headDim;
  const y = Float64Array.from(x); // (n, heads*headDim); dims past rotaryDim keep their values
  for (let i = 0; i < n; i++) {
    const pos = positions[i];
    for (let j = 0; j < half; j++) {
      const angle = pos * Math.pow(theta, (-2 * j) / rotaryDim);
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

/** One SwiGLU FFN's weights: gate (ff, d), up (ff, d), down (d, ff). */
export interface SwigluWeights {
  gate: FloatArray | Int8Matrix;
  up: FloatArray | Int8Matrix;
  down: FloatArray | Int8Matrix;
}

/** down(silu(gate x) · up x). x (n, d) → (n, d) float64; ff the inner width. */
export function referenceSwigluFfn(x: FloatArray, w: SwigluWeights, n: number, d: number, ff: number): Float64Array {
  return referenceMatmul(referenceSwiglu(referenceMatmul(x, w.gate, n, d, ff), referenceMatmul(x, w.up, n, d, ff)), w.down, n, ff, d);
}

/** A mixture-of-experts FFN (DESIGN §13). */
export interface MoeWeights {
  router: FloatArray | Int8Matrix; // (E, d)
  experts: SwigluWeights[]; // E, each of inner width expertSize
  shared?: SwigluWeights; // inner width sharedSize
  expertBias?: FloatArray; // (E)
  topK: number;
  expertSize: number;
  sharedSize?: number;
  /** LLaDA-MoE's softmax rule or LLaDA2's sigmoid group-limited one (@fast-dllm/model's routeRows). */
  rule: RoutingRule;
}

/**
 * Which experts each row goes to, and with what weight (DESIGN §13, §13.1): the router logits router · x in float64,
 * then the layer's routing rule (routeRows: softmax + bias, or sigmoid with the bias for the choice only and
 * group-limited top-k), ties to the lower expert. A row's choice depends on that row alone.
 * x (n, d) → experts (n, k) ascending by expert id, weights (n, k) float64.
 */
export function referenceRoute(x: FloatArray, w: MoeWeights, n: number, d: number): { experts: Int32Array; weights: Float64Array } {
  const E = w.experts.length;
  const logits = referenceMatmul(x, w.router, n, d, E); // (n, E)
  return routeRows(logits, n, E, w.topK, w.expertBias ?? null, w.rule);
}

/**
 * The mixture's output: Σ over a row's chosen experts, in ascending expert order, of weight · expert(x), then
 * + shared(x). Each expert runs once over all the rows routed to it (its weights read once per pass), and a row's
 * sum never depends on the other rows. x (n, d) → (n, d) float64.
 */
export function referenceMoe(x: FloatArray, w: MoeWeights, n: number, d: number): Float64Array {
  const { experts, weights } = referenceRoute(x, w, n, d);
  const k = w.topK;
  const parts = new Float64Array(n * k * d); // (n, k, d) each row's weighted expert outputs, in its rank order
  for (let e = 0; e < w.experts.length; e++) {
    const slots: number[] = []; // (row·k + rank) of the rows routed to e
    for (let s = 0; s < n * k; s++) if (experts[s] === e) slots.push(s);
    if (slots.length === 0) continue;
    const xs = new Float64Array(slots.length * d); // (rows routed to e, d)
    slots.forEach((s, j) => xs.set(x.subarray(Math.floor(s / k) * d, (Math.floor(s / k) + 1) * d), j * d));
    const ys = referenceSwigluFfn(xs, w.experts[e], slots.length, d, w.expertSize);
    slots.forEach((s, j) => {
      for (let t = 0; t < d; t++) parts[s * d + t] = weights[s] * ys[j * d + t];
    });
  }
  const y = new Float64Array(n * d); // (n, d)
  for (let i = 0; i < n; i++) for (let r = 0; r < k; r++) for (let t = 0; t < d; t++) y[i * d + t] += parts[(i * k + r) * d + t];
  if (w.shared) {
    const sh = referenceSwigluFfn(x, w.shared, n, d, w.sharedSize!);
    for (let i = 0; i < y.length; i++) y[i] += sh[i];
  }
  return y;
}
