// int8 matmul y = x · Wᵀ (+ b) with W in the int8 format of @fast-dllm/model (int8.ts): 7-bit weight blocks of 32
// along inDim, 8-bit activation blocks quantized per row at run time, one f32 scale per block. Re-exported by
// kernels.ts (SIMD builds) and scalar.ts (scalar build).
//
// Every block's dot product is an exact integer in every build (no lowering of the relaxed instruction can round
// or saturate, see dotQuad); only the epilogue acc += f32(block sum) · (dx · dw) rounds, in block order, the same
// in every build and for every tile. So the SIMD, relaxed-SIMD (either dot form) and scalar kernels give
// bit-identical y, and a row's result does not depend on which rows share the call or the thread (DESIGN §7).
//
// Packed W (src/kernels.ts packInt8), panels of NR = 8 output columns; per panel, per block of 32 k, 288 bytes:
//   bytes   0..255  8 k-quads t of 32 bytes: [cols 0-3 × k 4t..4t+3][cols 4-7 × k 4t..4t+3], byte = q + 64 ∈ [1, 127]
//   bytes 256..287  the 8 columns' f32 scales
// so one quad of 4 columns is one v128 whose i32 lanes are the 4 columns, as the dot instructions reduce them.
// Columns past `out` and k past inDim hold q = 0 (byte 64) and scale 0.
//
// Quantized x (quantizeRowsI8), per row, per block of 32, 40 bytes (X_BLOCK_BYTES):
//   bytes 0..31 q ∈ [-127, 127] (zero past inDim) · 32..35 f32 scale dx · 36..39 i32 −64·Σq
// The last word turns Σ (q_w + 64)·q_x into the true Σ q_w·q_x: it is where each block's accumulator starts.

import { NR, storeTile } from './panel';

/** Bytes of one packed weight block of a panel (8 quads of 32 bytes, 8 f32 scales). */
const W_BLOCK_BYTES: usize = 288;
/** Bytes of one block of one quantized activation row. */
const X_BLOCK_BYTES: usize = 40;

/** Bytes of one quantized activation row of `inDim` values (scratch the host allocates per matmul). */
export function i8RowBytes(inDim: i32): usize {
  return <usize>((inDim + 31) >> 5) * X_BLOCK_BYTES;
}

// ---------------------------------------------------------------- activation quantization

/** x (n, inDim) f32 → quantized rows at xq (n, i8RowBytes(inDim)) bytes: per block d = amax / 127, q = nearest(x / d). */
export function quantizeRowsI8(x: usize, xq: usize, n: i32, inDim: i32): void {
  const blocks = (inDim + 31) >> 5;
  for (let i = 0; i < n; i++) {
    const xr = x + ((<usize>i * <usize>inDim) << 2);
    let qb = xq + <usize>i * i8RowBytes(inDim);
    for (let b = 0; b < blocks; b++) {
      const k0 = b << 5;
      if (inDim - k0 >= 32) quantizeBlock32(xr + (<usize>k0 << 2), qb);
      else quantizeBlockScalar(xr + (<usize>k0 << 2), inDim - k0, qb);
      qb += X_BLOCK_BYTES;
    }
  }
}

/** Scalar twin of quantizeRowsI8. */
export function quantizeRowsI8Scalar(x: usize, xq: usize, n: i32, inDim: i32): void {
  const blocks = (inDim + 31) >> 5;
  for (let i = 0; i < n; i++) {
    const xr = x + ((<usize>i * <usize>inDim) << 2);
    let qb = xq + <usize>i * i8RowBytes(inDim);
    for (let b = 0; b < blocks; b++) {
      const k0 = b << 5;
      quantizeBlockScalar(xr + (<usize>k0 << 2), min(32, inDim - k0), qb);
      qb += X_BLOCK_BYTES;
    }
  }
}

/** 32 f32 at src → one quantized block at dst. A scale that is not > 0 (zero block, NaN) leaves q = 0, like the reference. */
// @ts-ignore: decorator
@inline function quantizeBlock32(src: usize, dst: usize): void {
  const v0 = v128.load(src), v1 = v128.load(src, 16), v2 = v128.load(src, 32), v3 = v128.load(src, 48);
  const v4 = v128.load(src, 64), v5 = v128.load(src, 80), v6 = v128.load(src, 96), v7 = v128.load(src, 112);
  const m = f32x4.max(
    f32x4.max(f32x4.max(f32x4.abs(v0), f32x4.abs(v1)), f32x4.max(f32x4.abs(v2), f32x4.abs(v3))),
    f32x4.max(f32x4.max(f32x4.abs(v4), f32x4.abs(v5)), f32x4.max(f32x4.abs(v6), f32x4.abs(v7))),
  ); // f32x4.max and f32.max propagate NaN, as Math.max does
  const amax = max(max(f32x4.extract_lane(m, 0), f32x4.extract_lane(m, 1)), max(f32x4.extract_lane(m, 2), f32x4.extract_lane(m, 3)));
  const d: f32 = amax / 127;
  store<f32>(dst, d, 32);
  if (!(d > 0)) {
    v128.store(dst, i32x4.splat(0));
    v128.store(dst, i32x4.splat(0), 16);
    store<i32>(dst, 0, 36);
    return;
  }
  const vd = f32x4.splat(d);
  // nearest rounds ties to even (the reference's roundHalfEven); |x / d| ≤ 127 so the narrowing never saturates.
  const q0 = i32x4.trunc_sat_f32x4_s(f32x4.nearest(f32x4.div(v0, vd))), q1 = i32x4.trunc_sat_f32x4_s(f32x4.nearest(f32x4.div(v1, vd)));
  const q2 = i32x4.trunc_sat_f32x4_s(f32x4.nearest(f32x4.div(v2, vd))), q3 = i32x4.trunc_sat_f32x4_s(f32x4.nearest(f32x4.div(v3, vd)));
  const q4 = i32x4.trunc_sat_f32x4_s(f32x4.nearest(f32x4.div(v4, vd))), q5 = i32x4.trunc_sat_f32x4_s(f32x4.nearest(f32x4.div(v5, vd)));
  const q6 = i32x4.trunc_sat_f32x4_s(f32x4.nearest(f32x4.div(v6, vd))), q7 = i32x4.trunc_sat_f32x4_s(f32x4.nearest(f32x4.div(v7, vd)));
  const s = i32x4.add(i32x4.add(i32x4.add(q0, q1), i32x4.add(q2, q3)), i32x4.add(i32x4.add(q4, q5), i32x4.add(q6, q7)));
  const sum = i32x4.extract_lane(s, 0) + i32x4.extract_lane(s, 1) + i32x4.extract_lane(s, 2) + i32x4.extract_lane(s, 3);
  v128.store(dst, i8x16.narrow_i16x8_s(i16x8.narrow_i32x4_s(q0, q1), i16x8.narrow_i32x4_s(q2, q3)));
  v128.store(dst, i8x16.narrow_i16x8_s(i16x8.narrow_i32x4_s(q4, q5), i16x8.narrow_i32x4_s(q6, q7)), 16);
  store<i32>(dst, -64 * sum, 36);
}

/** `len` (≤ 32) f32 at src → one quantized block at dst, zeros past len. Same arithmetic as quantizeBlock32. */
function quantizeBlockScalar(src: usize, len: i32, dst: usize): void {
  let amax: f32 = 0;
  for (let k = 0; k < len; k++) amax = max(amax, Mathf.abs(load<f32>(src + (<usize>k << 2))));
  const d: f32 = amax / 127;
  store<f32>(dst, d, 32);
  let sum = 0;
  for (let k = 0; k < 32; k++) {
    let q = 0;
    if (d > 0 && k < len) {
      const v = nearest<f32>(load<f32>(src + (<usize>k << 2)) / d); // ties to even
      q = v != v ? 0 : <i32>min<f32>(max<f32>(v, <f32>-127), <f32>127); // NaN → 0, as trunc_sat and the reference
    }
    store<i8>(dst + <usize>k, <i8>q);
    sum += q;
  }
  store<i32>(dst, -64 * sum, 36);
}

// ---------------------------------------------------------------- block dot products

/**
 * The two instruction forms of the relaxed build's dot, as a compile-time type parameter D. Both give the same
 * exact integers; which is faster depends on the runtime, so the host times both once and keeps the faster
 * (src/kernels.ts). Measured on this project's Xeon: Node 20's V8 lowers the fused form to five instructions
 * (pmaddubsw, pmaddwd, paddd, and two to rebuild a ones vector each time) and runs the split form 1.4–1.8×
 * faster; Chromium 156 runs the fused form 1.4–1.7× faster than the split one.
 */
type SplitDot = u8; // i16x8.relaxed_dot_i8x16_i7x16_s, then i32x4.dot_i16x8_s with ones, then i32x4.add
type FusedDot = u16; // i32x4.relaxed_dot_i8x16_i7x16_add_s

/**
 * acc + Σ of 4 products per i32 lane: x (4 bytes of one row, splat, signed) times w (one quad: 4 columns × 4 k,
 * bytes in [1, 127]). Exact for every lowering of either form: w's top bit is clear (a byte with it set may be
 * read as signed or unsigned) and a pair sum is at most 2·127·127 < 2^15 (an i16 intermediate cannot saturate).
 */
// @ts-ignore: decorator
@inline function dotQuad<D>(acc: v128, x: v128, w: v128): v128 {
  if (sizeof<D>() == sizeof<FusedDot>()) return i32x4.relaxed_dot_i8x16_i7x16_add_s(x, w, acc);
  return i32x4.add(acc, i32x4.dot_i16x8_s(i16x8.relaxed_dot_i8x16_i7x16_s(x, w), i16x8.splat(1)));
}

/**
 * SIMD128 twin of dotQuad for half a quad: w8 = 8 bytes (2 columns × 4 k) widened to i16, x = the row's 4 values
 * widened to i16 and repeated; the i32 lanes are (col 0: k 0-1, k 2-3, col 1: k 0-1, k 2-3), summed per column by
 * pairSums at the end of the block.
 */
// @ts-ignore: decorator
@inline function dotHalfQuad(acc: v128, x16: v128, w8: v128): v128 {
  return i32x4.add(acc, i32x4.dot_i16x8_s(x16, w8));
}

/** [a0 + a1, a2 + a3, b0 + b1, b2 + b3]: the column sums of two dotHalfQuad accumulators. */
// @ts-ignore: decorator
@inline function pairSums(a: v128, b: v128): v128 {
  return i32x4.add(v128.shuffle<i32>(a, b, 0, 2, 4, 6), v128.shuffle<i32>(a, b, 1, 3, 5, 7));
}

/** acc + f32(isum) · (dx · dw): the one rounding step, in the same order in every build. */
// @ts-ignore: decorator
@inline function scaleAdd(acc: v128, isum: v128, dx: v128, dw: v128): v128 {
  return f32x4.add(acc, f32x4.mul(f32x4.convert_i32x4_s(isum), f32x4.mul(dx, dw)));
}

// ---------------------------------------------------------------- matmul

/**
 * y (n, out) = x (n, inDim) · Wᵀ + b with W packed in the int8 format; b optional (0 = none). xq: scratch of
 * n · i8RowBytes(inDim) bytes for the quantized rows (quantized once, used for every panel).
 * Loops: panels outer (a panel, blocks × 288 bytes, stays in L1 while all rows stream past it), rows inner in
 * tiles (relaxed build: 4 rows × 8 columns; SIMD128: 2 × 8) with f32 accumulators held over all of K.
 */
export function matmulI8(x: usize, xq: usize, wp: usize, b: usize, y: usize, n: i32, inDim: i32, out: i32): void {
  matmulI8With<SplitDot>(x, xq, wp, b, y, n, inDim, out);
}

/** matmulI8 with the fused form of the relaxed dot (the same results; the SIMD128 build has one form only). */
export function matmulI8Fused(x: usize, xq: usize, wp: usize, b: usize, y: usize, n: i32, inDim: i32, out: i32): void {
  matmulI8With<FusedDot>(x, xq, wp, b, y, n, inDim, out);
}

/** 1 where this build has relaxed SIMD (the i8×i7 dot, both forms), 0 in the SIMD128 and scalar builds. */
export const relaxedSimd: i32 = ASC_FEATURE_RELAXED_SIMD ? 1 : 0;

// @ts-ignore: decorator
@inline function matmulI8With<D>(x: usize, xq: usize, wp: usize, b: usize, y: usize, n: i32, inDim: i32, out: i32): void {
  quantizeRowsI8(x, xq, n, inDim);
  const blocks = (inDim + 31) >> 5;
  const rowBytes = i8RowBytes(inDim);
  const panels = (out + NR - 1) / NR;
  for (let p = 0; p < panels; p++) {
    const wpan = wp + <usize>p * <usize>blocks * W_BLOCK_BYTES;
    const j = p * NR;
    const cols = min(NR, out - j);
    let i = 0;
    if (ASC_FEATURE_RELAXED_SIMD) {
      for (; i + 4 <= n; i += 4) tile4Relaxed<D>(xq + <usize>i * rowBytes, rowBytes, wpan, blocks, b, y + ((<usize>i * <usize>out + <usize>j) << 2), out, j, cols);
    } else {
      for (; i + 2 <= n; i += 2) tile2Simd(xq + <usize>i * rowBytes, rowBytes, wpan, blocks, b, y + ((<usize>i * <usize>out + <usize>j) << 2), out, j, cols);
    }
    for (; i < n; i++) tile1<D>(xq + <usize>i * rowBytes, wpan, blocks, b, y + ((<usize>i * <usize>out + <usize>j) << 2), j, cols);
  }
}

/** 4 quantized rows (xr, rs bytes apart) × one panel over all blocks; relaxed build. */
// @ts-ignore: decorator
@inline function tile4Relaxed<D>(xr: usize, rs: usize, wb: usize, blocks: i32, b: usize, yr: usize, out: i32, j: i32, cols: i32): void {
  let f00 = f32x4.splat(0), f01 = f32x4.splat(0), f10 = f32x4.splat(0), f11 = f32x4.splat(0);
  let f20 = f32x4.splat(0), f21 = f32x4.splat(0), f30 = f32x4.splat(0), f31 = f32x4.splat(0);
  let x0 = xr;
  for (let blk = 0; blk < blocks; blk++) {
    const x1 = x0 + rs, x2 = x1 + rs, x3 = x2 + rs;
    let c = v128.load32_splat(x0, 36);
    let a00 = c, a01 = c;
    c = v128.load32_splat(x1, 36);
    let a10 = c, a11 = c;
    c = v128.load32_splat(x2, 36);
    let a20 = c, a21 = c;
    c = v128.load32_splat(x3, 36);
    let a30 = c, a31 = c;
    for (let t: usize = 0; t < 32; t += 4) {
      const wq = wb + (t << 3); // quad t/4: 32 bytes
      const w0 = v128.load(wq), w1 = v128.load(wq, 16);
      let v = v128.load32_splat(x0 + t);
      a00 = dotQuad<D>(a00, v, w0); a01 = dotQuad<D>(a01, v, w1);
      v = v128.load32_splat(x1 + t);
      a10 = dotQuad<D>(a10, v, w0); a11 = dotQuad<D>(a11, v, w1);
      v = v128.load32_splat(x2 + t);
      a20 = dotQuad<D>(a20, v, w0); a21 = dotQuad<D>(a21, v, w1);
      v = v128.load32_splat(x3 + t);
      a30 = dotQuad<D>(a30, v, w0); a31 = dotQuad<D>(a31, v, w1);
    }
    const s0 = v128.load(wb, 256), s1 = v128.load(wb, 272);
    let d = v128.load32_splat(x0, 32);
    f00 = scaleAdd(f00, a00, d, s0); f01 = scaleAdd(f01, a01, d, s1);
    d = v128.load32_splat(x1, 32);
    f10 = scaleAdd(f10, a10, d, s0); f11 = scaleAdd(f11, a11, d, s1);
    d = v128.load32_splat(x2, 32);
    f20 = scaleAdd(f20, a20, d, s0); f21 = scaleAdd(f21, a21, d, s1);
    d = v128.load32_splat(x3, 32);
    f30 = scaleAdd(f30, a30, d, s0); f31 = scaleAdd(f31, a31, d, s1);
    x0 += X_BLOCK_BYTES;
    wb += W_BLOCK_BYTES;
  }
  const ys = <usize>out << 2;
  storeTile(yr, b, j, cols, true, f00, f01);
  storeTile(yr + ys, b, j, cols, true, f10, f11);
  storeTile(yr + 2 * ys, b, j, cols, true, f20, f21);
  storeTile(yr + 3 * ys, b, j, cols, true, f30, f31);
}

/** 2 quantized rows × one panel over all blocks; SIMD128 build (i32x4.dot_i16x8_s on widened bytes). */
// @ts-ignore: decorator
@inline function tile2Simd(xr: usize, rs: usize, wb: usize, blocks: i32, b: usize, yr: usize, out: i32, j: i32, cols: i32): void {
  let f00 = f32x4.splat(0), f01 = f32x4.splat(0), f10 = f32x4.splat(0), f11 = f32x4.splat(0);
  let x0 = xr;
  for (let blk = 0; blk < blocks; blk++) {
    const x1 = x0 + rs;
    // Per row: columns 0-1, 2-3, 4-5, 6-7, two i32 lanes each (dotHalfQuad).
    let a0 = i32x4.splat(0), a1 = i32x4.splat(0), a2 = i32x4.splat(0), a3 = i32x4.splat(0);
    let e0 = i32x4.splat(0), e1 = i32x4.splat(0), e2 = i32x4.splat(0), e3 = i32x4.splat(0);
    for (let t: usize = 0; t < 32; t += 4) {
      const wq = wb + (t << 3);
      const w0 = v128.load8x8_u(wq), w1 = v128.load8x8_u(wq, 8), w2 = v128.load8x8_u(wq, 16), w3 = v128.load8x8_u(wq, 24);
      let v = i16x8.extend_low_i8x16_s(v128.load32_splat(x0 + t));
      a0 = dotHalfQuad(a0, v, w0); a1 = dotHalfQuad(a1, v, w1); a2 = dotHalfQuad(a2, v, w2); a3 = dotHalfQuad(a3, v, w3);
      v = i16x8.extend_low_i8x16_s(v128.load32_splat(x1 + t));
      e0 = dotHalfQuad(e0, v, w0); e1 = dotHalfQuad(e1, v, w1); e2 = dotHalfQuad(e2, v, w2); e3 = dotHalfQuad(e3, v, w3);
    }
    const s0 = v128.load(wb, 256), s1 = v128.load(wb, 272);
    let c = v128.load32_splat(x0, 36);
    let d = v128.load32_splat(x0, 32);
    f00 = scaleAdd(f00, i32x4.add(c, pairSums(a0, a1)), d, s0); f01 = scaleAdd(f01, i32x4.add(c, pairSums(a2, a3)), d, s1);
    c = v128.load32_splat(x1, 36);
    d = v128.load32_splat(x1, 32);
    f10 = scaleAdd(f10, i32x4.add(c, pairSums(e0, e1)), d, s0); f11 = scaleAdd(f11, i32x4.add(c, pairSums(e2, e3)), d, s1);
    x0 += X_BLOCK_BYTES;
    wb += W_BLOCK_BYTES;
  }
  storeTile(yr, b, j, cols, true, f00, f01);
  storeTile(yr + (<usize>out << 2), b, j, cols, true, f10, f11);
}

/** 1 quantized row × one panel (rows left over from the tiles), in the build's dot instruction. */
// @ts-ignore: decorator
@inline function tile1<D>(x0: usize, wb: usize, blocks: i32, b: usize, yr: usize, j: i32, cols: i32): void {
  let f0 = f32x4.splat(0), f1 = f32x4.splat(0);
  for (let blk = 0; blk < blocks; blk++) {
    const c = v128.load32_splat(x0, 36);
    let a0 = c, a1 = c;
    if (ASC_FEATURE_RELAXED_SIMD) {
      for (let t: usize = 0; t < 32; t += 4) {
        const v = v128.load32_splat(x0 + t);
        a0 = dotQuad<D>(a0, v, v128.load(wb + (t << 3)));
        a1 = dotQuad<D>(a1, v, v128.load(wb + (t << 3), 16));
      }
    } else {
      let h0 = i32x4.splat(0), h1 = i32x4.splat(0), h2 = i32x4.splat(0), h3 = i32x4.splat(0);
      for (let t: usize = 0; t < 32; t += 4) {
        const wq = wb + (t << 3);
        const v = i16x8.extend_low_i8x16_s(v128.load32_splat(x0 + t));
        h0 = dotHalfQuad(h0, v, v128.load8x8_u(wq)); h1 = dotHalfQuad(h1, v, v128.load8x8_u(wq, 8));
        h2 = dotHalfQuad(h2, v, v128.load8x8_u(wq, 16)); h3 = dotHalfQuad(h3, v, v128.load8x8_u(wq, 24));
      }
      a0 = i32x4.add(a0, pairSums(h0, h1));
      a1 = i32x4.add(a1, pairSums(h2, h3));
    }
    const d = v128.load32_splat(x0, 32);
    f0 = scaleAdd(f0, a0, d, v128.load(wb, 256));
    f1 = scaleAdd(f1, a1, d, v128.load(wb, 272));
    x0 += X_BLOCK_BYTES;
    wb += W_BLOCK_BYTES;
  }
  storeTile(yr, b, j, cols, true, f0, f1);
}

/** Scalar twin of matmulI8: the same quantization, integer block sums and epilogue order, one (row, column) at a time. */
export function matmulI8Scalar(x: usize, xq: usize, wp: usize, b: usize, y: usize, n: i32, inDim: i32, out: i32): void {
  quantizeRowsI8Scalar(x, xq, n, inDim);
  const blocks = (inDim + 31) >> 5;
  const rowBytes = i8RowBytes(inDim);
  const panelBytes = <usize>blocks * W_BLOCK_BYTES;
  for (let i = 0; i < n; i++) {
    for (let col = 0; col < out; col++) {
      const c = col % NR;
      const colByte = (<usize>(c >> 2) << 4) + (<usize>(c & 3) << 2); // byte of (column, first k) in a quad
      let wb = wp + <usize>(col / NR) * panelBytes; // the column's panel, block 0
      let xb = xq + <usize>i * rowBytes;
      let acc: f32 = 0;
      for (let blk = 0; blk < blocks; blk++) {
        let isum = load<i32>(xb, 36);
        for (let k = 0; k < 32; k++) {
          isum += <i32>load<i8>(xb + <usize>k) * <i32>load<u8>(wb + colByte + (<usize>(k >> 2) << 5) + <usize>(k & 3));
        }
        acc += <f32>isum * (load<f32>(xb, 32) * load<f32>(wb + 256 + (<usize>c << 2)));
        xb += X_BLOCK_BYTES;
        wb += W_BLOCK_BYTES;
      }
      if (b != 0) acc += load<f32>(b + (<usize>col << 2));
      store<f32>(y + ((<usize>i * <usize>out + <usize>col) << 2), acc);
    }
  }
}
