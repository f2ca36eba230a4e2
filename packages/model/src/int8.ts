/**
 * The int8 format of the CPU engines (`weightDType: 'int8'`): one definition of the quantized values, shared by
 * the reference engine (its int8 matmul, float64 after exact integer sums) and the WASM engine (which packs these
 * values for its integer dot-product kernels and re-implements the activation rule in AssemblyScript, checked
 * bit for bit against `quantizeInt8Activations`).
 *
 * Linear weights W (out, inDim), at load: each row is cut into blocks of INT8_BLOCK = 32 along inDim (the last
 * block padded with zeros); per block a float32 scale d = f32(amax / 63) and values
 * q = roundHalfEven(f32(w / d)) in [-63, 63] (an all-zero block has d = 0 and q = 0).
 * Activations x (n, inDim), at run time, before each matmul: each row rounded to float32 and cut the same way, with
 * d = f32(amax / 127) and q in [-127, 127].
 * Then y[i][j] = sum over blocks b of (sum_k qx·qw) · dx[i][b] · dw[j][b]: the block sums are exact integers.
 *
 * Why weights get 7 bits and activations 8: WebAssembly's relaxed integer dot product
 * (`i16x8.relaxed_dot_i8x16_i7x16_s`, one `pmaddubsw` on x86, `sdot`-class code on Arm) multiplies a signed byte by
 * a byte whose top bit must be clear; a byte with the top bit set is read as signed on some CPUs and unsigned on
 * others, so the engines' promise of the same tokens on every machine needs one operand in [0, 127]. Weights in
 * [-63, 63] are stored as q + 64 in [1, 127] (the kernels subtract 64·sum(qx) per block), so every lowering gives
 * the same exact integers. Activations keep 8 bits because they carry the outliers: on the bundled model, 7-bit
 * activations multiplied the logit NMSE against float32 by 8.5, 7-bit weights by 2.1 (both against 8/8 bits).
 */

/** Values per block (one scale each) along the input dimension. */
export const INT8_BLOCK = 32;
/** Largest |q| of a weight (7 bits, see the header). */
export const INT8_WEIGHT_MAX = 63;
/** Largest |q| of an activation. */
export const INT8_ACTIVATION_MAX = 127;

/** A linear weight (out, inDim) in the int8 format. */
export interface Int8Matrix {
  readonly dtype: 'int8';
  readonly out: number;
  readonly inDim: number;
  /** (out, blocks·32) int8 values in [-63, 63], zero past inDim. */
  readonly q: Int8Array;
  /** (out, blocks) float32 scales. */
  readonly scale: Float32Array;
}

/** Blocks of INT8_BLOCK covering `inDim`. */
export function int8Blocks(inDim: number): number {
  return Math.ceil(inDim / INT8_BLOCK);
}

/** Round to the nearest integer, ties to even (WebAssembly's `nearest`; Math.round sends ties up). */
export function roundHalfEven(v: number): number {
  const r = Math.round(v);
  return r - v === 0.5 && (r & 1) !== 0 ? r - 1 : r;
}

/**
 * One row of float32 values (src at `srcOff`) → blocks: q (blocks·32) int8 at `qOff`, scale (blocks) at `sOff`.
 * Scales and quotients are float32 operations (Math.fround).
 */
function quantizeRow(
  src: Float32Array, srcOff: number, inDim: number, max: number, q: Int8Array, qOff: number, scale: Float32Array, sOff: number,
): void {
  const blocks = int8Blocks(inDim);
  for (let b = 0; b < blocks; b++) {
    const k0 = srcOff + b * INT8_BLOCK;
    const k1 = Math.min(srcOff + inDim, k0 + INT8_BLOCK);
    let amax = 0;
    for (let k = k0; k < k1; k++) amax = Math.max(amax, Math.abs(src[k])); // NaN propagates
    const d = Math.fround(amax / max);
    scale[sOff + b] = d;
    const o = qOff + b * INT8_BLOCK - k0;
    // A zero block (d = 0) quantizes to zeros; a NaN scale leaves zeros too and the NaN reaches y through d.
    if (!(d > 0)) {
      for (let k = k0; k < k1; k++) q[o + k] = 0;
      continue;
    }
    for (let k = k0; k < k1; k++) {
      const v = Math.fround(src[k] / d);
      // roundHalfEven(v), inlined (this loop runs once per weight at load, ~2x faster so): for a float32 v, v + 0.5
      // is exact in double wherever it can reach an integer, so floor(v + 0.5) is Math.round(v).
      let r = Math.floor(v + 0.5);
      if (r - v === 0.5 && (r & 1) !== 0) r -= 1;
      q[o + k] = r > max ? max : r < -max ? -max : r; // NaN (from an infinite scale) stores 0, as before
    }
  }
}

/** Quantizes a linear weight W (out, inDim) row-major (float32 values, as every checkpoint dtype widens to). */
export function quantizeInt8Weight(w: Float32Array, out: number, inDim: number): Int8Matrix {
  if (w.length !== out * inDim) throw new Error(`quantizeInt8Weight: ${w.length} values is not ${out}×${inDim}`);
  const blocks = int8Blocks(inDim);
  const q = new Int8Array(out * blocks * INT8_BLOCK); // (out, blocks·32)
  const scale = new Float32Array(out * blocks); // (out, blocks)
  for (let r = 0; r < out; r++) quantizeRow(w, r * inDim, inDim, INT8_WEIGHT_MAX, q, r * blocks * INT8_BLOCK, scale, r * blocks);
  return { dtype: 'int8', out, inDim, q, scale };
}

/** Row `row` of an int8 weight as float32 values q·d (inDim,) into dst at `offset`: how a tied LM head serves as the embedding. */
export function dequantizeInt8Row(m: Int8Matrix, row: number, dst: Float32Array | Float64Array, offset = 0): void {
  if (!(row >= 0 && row < m.out)) throw new Error(`dequantizeInt8Row: row ${row} outside 0..${m.out - 1}`);
  const blocks = int8Blocks(m.inDim);
  for (let k = 0; k < m.inDim; k++) {
    dst[offset + k] = Math.fround(m.q[row * blocks * INT8_BLOCK + k] * m.scale[row * blocks + Math.floor(k / INT8_BLOCK)]);
  }
}

/** Activations x (n, inDim) quantized per row and block: q (n, blocks·32), scale (n, blocks). */
export interface Int8Activations {
  q: Int8Array;
  scale: Float32Array;
}

/** Quantizes activation rows; each value is first rounded to float32 (the engines' activation precision). */
export function quantizeInt8Activations(x: ArrayLike<number>, n: number, inDim: number): Int8Activations {
  if (x.length !== n * inDim) throw new Error(`quantizeInt8Activations: ${x.length} values is not ${n}×${inDim}`);
  const blocks = int8Blocks(inDim);
  const q = new Int8Array(n * blocks * INT8_BLOCK); // (n, blocks·32)
  const scale = new Float32Array(n * blocks); // (n, blocks)
  const row = new Float32Array(inDim); // (inDim) one row rounded to float32
  for (let i = 0; i < n; i++) {
    for (let k = 0; k < inDim; k++) row[k] = x[i * inDim + k];
    quantizeRow(row, 0, inDim, INT8_ACTIVATION_MAX, q, i * blocks * INT8_BLOCK, scale, i * blocks);
  }
  return { q, scale };
}
