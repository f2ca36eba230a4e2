/**
 * The reference's int8 matmul: the format of @fast-dllm/model's int8.ts (7-bit weight blocks and 8-bit activation
 * blocks of 32, one float32 scale each), computed as plainly as possible: the activations are quantized with the
 * same rule as the engines, each block's dot product is an exact integer, and everything after is float64. The WASM
 * engine's int8 kernels must give these integers exactly; they differ from this op only in their float32 epilogue.
 */
import { INT8_BLOCK, int8Blocks, quantizeInt8Activations, quantizeInt8Weight, type Int8Matrix } from '@fast-dllm/model';
import type { FloatArray } from './ops.js';

/** A linear weight as the reference holds it: float32 (from any checkpoint dtype) or the int8 format. */
export type LinearWeight = Float32Array | Int8Matrix;

export function isInt8(w: LinearWeight | FloatArray): w is Int8Matrix {
  return (w as Int8Matrix).dtype === 'int8';
}

/** W (out, inDim) float32 → the int8 format. */
export function referenceQuantize(w: Float32Array, out: number, inDim: number): Int8Matrix {
  return quantizeInt8Weight(w, out, inDim);
}

/**
 * y = x · wᵀ (+ bias) with w in the int8 format: x (n, k) is quantized per row and block, each block's dot product
 * is an exact integer, then y[i][j] = Σ_b sum · dx[i][b] · dw[j][b] (+ bias[j]) in float64. → y (n, m).
 */
export function referenceInt8Matmul(x: FloatArray, w: Int8Matrix, n: number, k: number, m: number, bias?: FloatArray): Float64Array {
  if (w.out !== m || w.inDim !== k) throw new Error(`referenceInt8Matmul: weight is ${w.out}×${w.inDim}, the call needs ${m}×${k}`);
  if (x.length !== n * k) throw new Error(`referenceInt8Matmul: x has ${x.length} values, expected n*k = ${n * k}`);
  const blocks = int8Blocks(k);
  const row = blocks * INT8_BLOCK; // padded row length of both quantized operands
  const xa = quantizeInt8Activations(x, n, k);
  const y = new Float64Array(n * m); // (n, m)
  for (let i = 0; i < n; i++) {
    for (let j = 0; j < m; j++) {
      let s = 0;
      for (let b = 0; b < blocks; b++) {
        let dot = 0; // exact: |dot| ≤ 32·127·63
        for (let t = b * INT8_BLOCK; t < (b + 1) * INT8_BLOCK; t++) dot += xa.q[i * row + t] * w.q[j * row + t];
        s += dot * xa.scale[i * blocks + b] * w.scale[j * blocks + b];
      }
      y[i * m + j] = bias ? s + bias[j] : s;
    }
  }
  return y;
}
