// AssemblyScript kernels of the WASM engine. Every pointer is a byte offset into linear memory that the host
// (src/kernels.ts) laid out; nothing here allocates. Each SIMD kernel has a scalar twin (suffix `Scalar`)
// with the same arguments, so a SIMD bug can be isolated by switching the host's `simd` option.
// Shapes are given as (rows, cols) of f32 unless said otherwise.

/** First free byte after the module's static data: where the host may start its own layout. */
export function heapBase(): usize {
  return __heap_base;
}

// ---------------------------------------------------------------- matmul  y = x · Wᵀ (+ b), packed W

// Weights are packed once at load time (src/kernels.ts packWeight) into panels of NR = 8 output columns:
//   f32:  Wp[p][k][c]  = W[8p + c][k]                       (panels, inDim, 8) f32
//   bf16: Wp[p][k][2l] = W[8p + l][k], Wp[p][k][2l+1] = W[8p + 4 + l][k]   (panels, inDim, 8) u16
// so one k step of a panel is one contiguous 32-byte (f32) or 16-byte (bf16) load, and the bf16 interleave
// widens to two f32x4 with one shift and one mask. Columns past `out` in the last panel are zero.
// The microkernel is an outer product: 4 x-rows (broadcast) × 8 W columns = 8 f32x4 accumulators.

import { NR, storeTile } from './panel';
export { NR };
/** K-block length: an x block of (MC, KC) f32 (64 KiB) stays in L2 while a (KC, 8) W slice (8 KiB) sits in L1. */
const KC: i32 = 256;
/** Rows of x per cache block. */
const MC: i32 = 64;

/** c + a·b: one fused multiply-add where the build has relaxed SIMD (FMA), else a multiply then an add. */
// @ts-ignore: decorator
@inline function madd(a: v128, b: v128, c: v128): v128 {
  if (ASC_FEATURE_RELAXED_SIMD) return f32x4.relaxed_madd(a, b, c);
  return f32x4.add(c, f32x4.mul(a, b));
}

/** y (n, out) = x (n, inDim) · W (out, inDim)ᵀ + b (out,), W packed as f32 panels; b optional (0 = none). */
export function matmulF32(x: usize, wp: usize, b: usize, y: usize, n: i32, inDim: i32, out: i32): void {
  matmulPacked<f32>(x, wp, b, y, n, inDim, out);
}

/** As matmulF32 with W packed as bf16 panels (f32 arithmetic; widening bf16 → f32 is exact). */
export function matmulBF16(x: usize, wp: usize, b: usize, y: usize, n: i32, inDim: i32, out: i32): void {
  matmulPacked<u16>(x, wp, b, y, n, inDim, out);
}

// @ts-ignore: decorator
@inline function matmulPacked<T>(x: usize, wp: usize, b: usize, y: usize, n: i32, inDim: i32, out: i32): void {
  const panels = (out + NR - 1) / NR;
  const panelBytes = <usize>inDim * <usize>NR * sizeof<T>();
  for (let k0 = 0; k0 < inDim; k0 += KC) {
    const kc = min(KC, inDim - k0);
    const first = k0 == 0; // the first K block stores (+ bias), later ones accumulate into y
    for (let i0 = 0; i0 < n; i0 += MC) {
      const i1 = min(n, i0 + MC);
      for (let p = 0; p < panels; p++) {
        const wk = wp + <usize>p * panelBytes + <usize>k0 * <usize>NR * sizeof<T>();
        const j = p * NR;
        const cols = min(NR, out - j);
        let i = i0;
        for (; i + 4 <= i1; i += 4) tile4<T>(x, wk, b, y, i, j, cols, k0, kc, inDim, out, first);
        for (; i < i1; i++) tile1<T>(x, wk, b, y, i, j, cols, k0, kc, inDim, out, first);
      }
    }
  }
}

/** The 8 W columns of one k step of a panel as two f32x4 (columns 0-3, 4-7). */
// @ts-ignore: decorator
@inline function loadW0<T>(wk: usize, k: i32): v128 {
  if (sizeof<T>() == 2) return i32x4.shl(v128.load(wk + (<usize>k << 4)), 16);
  return v128.load(wk + (<usize>k << 5));
}
// @ts-ignore: decorator
@inline function loadW1<T>(wk: usize, k: i32): v128 {
  if (sizeof<T>() == 2) return v128.and(v128.load(wk + (<usize>k << 4)), i32x4.splat(0xffff0000));
  return v128.load(wk + (<usize>k << 5), 16);
}

/** 4 rows × 8 columns over one K block. */
// @ts-ignore: decorator
@inline function tile4<T>(
  x: usize, wk: usize, b: usize, y: usize, i: i32, j: i32, cols: i32, k0: i32, kc: i32, inDim: i32, out: i32, first: bool,
): void {
  const xs = <usize>inDim << 2;
  const x0 = x + ((<usize>i * <usize>inDim + <usize>k0) << 2);
  const x1 = x0 + xs, x2 = x1 + xs, x3 = x2 + xs;
  let a00 = f32x4.splat(0), a01 = f32x4.splat(0), a10 = f32x4.splat(0), a11 = f32x4.splat(0);
  let a20 = f32x4.splat(0), a21 = f32x4.splat(0), a30 = f32x4.splat(0), a31 = f32x4.splat(0);
  for (let k = 0; k < kc; k++) {
    const o = <usize>k << 2;
    const w0 = loadW0<T>(wk, k), w1 = loadW1<T>(wk, k);
    let v = v128.load32_splat(x0 + o);
    a00 = madd(v, w0, a00); a01 = madd(v, w1, a01);
    v = v128.load32_splat(x1 + o);
    a10 = madd(v, w0, a10); a11 = madd(v, w1, a11);
    v = v128.load32_splat(x2 + o);
    a20 = madd(v, w0, a20); a21 = madd(v, w1, a21);
    v = v128.load32_splat(x3 + o);
    a30 = madd(v, w0, a30); a31 = madd(v, w1, a31);
  }
  const ys = <usize>out << 2;
  const y0 = y + ((<usize>i * <usize>out + <usize>j) << 2);
  storeTile(y0, b, j, cols, first, a00, a01);
  storeTile(y0 + ys, b, j, cols, first, a10, a11);
  storeTile(y0 + 2 * ys, b, j, cols, first, a20, a21);
  storeTile(y0 + 3 * ys, b, j, cols, first, a30, a31);
}

/** 1 row × 8 columns over one K block (rows left over from the 4-row tiles). */
// @ts-ignore: decorator
@inline function tile1<T>(
  x: usize, wk: usize, b: usize, y: usize, i: i32, j: i32, cols: i32, k0: i32, kc: i32, inDim: i32, out: i32, first: bool,
): void {
  const x0 = x + ((<usize>i * <usize>inDim + <usize>k0) << 2);
  let a0 = f32x4.splat(0), a1 = f32x4.splat(0);
  for (let k = 0; k < kc; k++) {
    const v = v128.load32_splat(x0 + (<usize>k << 2));
    a0 = madd(v, loadW0<T>(wk, k), a0); a1 = madd(v, loadW1<T>(wk, k), a1);
  }
  storeTile(y + ((<usize>i * <usize>out + <usize>j) << 2), b, j, cols, first, a0, a1);
}

// @ts-ignore: decorator
@inline function hsum(v: v128): f32 {
  return f32x4.extract_lane(v, 0) + f32x4.extract_lane(v, 1) + f32x4.extract_lane(v, 2) + f32x4.extract_lane(v, 3);
}

/** Packed-layout offset (in elements) of W[col][k]; the bf16 panels interleave columns l and 4 + l. */
// @ts-ignore: decorator
@inline function packedIndex(col: i32, k: i32, inDim: i32, bf16: bool): usize {
  const p = col / NR, c = col % NR;
  const lane = bf16 ? (c < 4 ? 2 * c : 2 * (c - 4) + 1) : c;
  return (<usize>p * <usize>inDim + <usize>k) * <usize>NR + <usize>lane;
}

/** Scalar twin of matmulF32: same packed W, plain f32 dot products in k order. */
export function matmulF32Scalar(x: usize, wp: usize, b: usize, y: usize, n: i32, inDim: i32, out: i32): void {
  for (let i = 0; i < n; i++) {
    const xr = x + (<usize>i * <usize>inDim << 2);
    for (let j = 0; j < out; j++) {
      let s: f32 = 0;
      for (let k = 0; k < inDim; k++) s += load<f32>(xr + (<usize>k << 2)) * load<f32>(wp + (packedIndex(j, k, inDim, false) << 2));
      if (b != 0) s += load<f32>(b + (<usize>j << 2));
      store<f32>(y + ((<usize>i * <usize>out + <usize>j) << 2), s);
    }
  }
}

/** Scalar twin of matmulBF16. */
export function matmulBF16Scalar(x: usize, wp: usize, b: usize, y: usize, n: i32, inDim: i32, out: i32): void {
  for (let i = 0; i < n; i++) {
    const xr = x + (<usize>i * <usize>inDim << 2);
    for (let j = 0; j < out; j++) {
      let s: f32 = 0;
      for (let k = 0; k < inDim; k++) {
        const w = reinterpret<f32>(<u32>load<u16>(wp + (packedIndex(j, k, inDim, true) << 1)) << 16);
        s += load<f32>(xr + (<usize>k << 2)) * w;
      }
      if (b != 0) s += load<f32>(b + (<usize>j << 2));
      store<f32>(y + ((<usize>i * <usize>out + <usize>j) << 2), s);
    }
  }
}

// ---------------------------------------------------------------- RMSNorm

/** y (n, d) = x / sqrt(mean(x²) + eps) * g (d,). In-place allowed (y == x). Mean of squares in f32. */
export function rmsnorm(x: usize, g: usize, y: usize, n: i32, d: i32, eps: f32): void {
  const D4 = d & ~3;
  for (let i = 0; i < n; i++) {
    const xr = x + (<usize>i * <usize>d << 2);
    const yr = y + (<usize>i * <usize>d << 2);
    let acc = f32x4.splat(0);
    for (let k = 0; k < D4; k += 4) {
      const v = v128.load(xr + (<usize>k << 2));
      acc = f32x4.add(acc, f32x4.mul(v, v));
    }
    let ss = hsum(acc);
    for (let k = D4; k < d; k++) { const v = load<f32>(xr + (<usize>k << 2)); ss += v * v; }
    const r = <f32>1.0 / Mathf.sqrt(ss / <f32>d + eps);
    const vr = f32x4.splat(r);
    for (let k = 0; k < D4; k += 4) {
      const o = <usize>k << 2;
      v128.store(yr + o, f32x4.mul(f32x4.mul(v128.load(xr + o), vr), v128.load(g + o)));
    }
    for (let k = D4; k < d; k++) {
      const o = <usize>k << 2;
      store<f32>(yr + o, load<f32>(xr + o) * r * load<f32>(g + o));
    }
  }
}

/** Scalar twin of rmsnorm. */
export function rmsnormScalar(x: usize, g: usize, y: usize, n: i32, d: i32, eps: f32): void {
  for (let i = 0; i < n; i++) {
    const xr = x + (<usize>i * <usize>d << 2);
    const yr = y + (<usize>i * <usize>d << 2);
    let ss: f32 = 0;
    for (let k = 0; k < d; k++) { const v = load<f32>(xr + (<usize>k << 2)); ss += v * v; }
    const r = <f32>1.0 / Mathf.sqrt(ss / <f32>d + eps);
    for (let k = 0; k < d; k++) {
      const o = <usize>k << 2;
      store<f32>(yr + o, load<f32>(xr + o) * r * load<f32>(g + o));
    }
  }
}

// ---------------------------------------------------------------- RoPE (NeoX: rotate halves)

/**
 * In place on x (n, heads, hd): for pair (c, c + hd/2) of each head, angle = pos[i] · theta^(-2c/hd),
 * computed in f64 then rounded to f32 like the reference. pos: (n,) i32 absolute positions.
 */
export function ropeNeox(x: usize, pos: usize, n: i32, heads: i32, hd: i32, theta: f64): void {
  const half = hd >> 1;
  for (let i = 0; i < n; i++) {
    const p = <f64>load<i32>(pos + (<usize>i << 2));
    for (let c = 0; c < half; c++) {
      const ang = p * Math.pow(theta, -2.0 * <f64>c / <f64>hd);
      const cs = <f32>Math.cos(ang), sn = <f32>Math.sin(ang);
      for (let h = 0; h < heads; h++) {
        const base = x + (((<usize>i * <usize>heads + <usize>h) * <usize>hd) << 2);
        const a = load<f32>(base + (<usize>c << 2));
        const b = load<f32>(base + (<usize>(c + half) << 2));
        store<f32>(base + (<usize>c << 2), a * cs - b * sn);
        store<f32>(base + (<usize>(c + half) << 2), b * cs + a * sn);
      }
    }
  }
}

/**
 * The rotation of every position in [from, to): cos (positions, hd/2) f32 and sin likewise, row p at p·hd/2,
 * computed exactly as ropeNeox does (so a rotation through the table gives ropeNeox's bits).
 */
export function ropeTable(cos: usize, sin: usize, from: i32, to: i32, hd: i32, theta: f64): void {
  const half = hd >> 1;
  for (let p = from; p < to; p++) {
    for (let c = 0; c < half; c++) {
      const ang = <f64>p * Math.pow(theta, -2.0 * <f64>c / <f64>hd);
      const o = (<usize>p * <usize>half + <usize>c) << 2;
      store<f32>(cos + o, <f32>Math.cos(ang));
      store<f32>(sin + o, <f32>Math.sin(ang));
    }
  }
}

/** ropeNeox with the angles read from a ropeTable (no transcendental per call), four pairs at a time. */
export function ropeNeoxTable(x: usize, pos: usize, n: i32, heads: i32, hd: i32, cos: usize, sin: usize): void {
  const half = hd >> 1;
  const half4 = half & ~3;
  for (let i = 0; i < n; i++) {
    const row = <usize>load<i32>(pos + (<usize>i << 2)) * <usize>half;
    for (let h = 0; h < heads; h++) {
      const base = x + (((<usize>i * <usize>heads + <usize>h) * <usize>hd) << 2);
      let c = 0;
      for (; c < half4; c += 4) {
        const o = <usize>c << 2;
        const cs = v128.load(cos + (row << 2) + o), sn = v128.load(sin + (row << 2) + o);
        const a = v128.load(base + o), b = v128.load(base + o + (<usize>half << 2));
        v128.store(base + o, f32x4.sub(f32x4.mul(a, cs), f32x4.mul(b, sn)));
        v128.store(base + o + (<usize>half << 2), f32x4.add(f32x4.mul(b, cs), f32x4.mul(a, sn)));
      }
      for (; c < half; c++) rotatePair(base, c, half, load<f32>(cos + ((row + <usize>c) << 2)), load<f32>(sin + ((row + <usize>c) << 2)));
    }
  }
}

/** Scalar twin of ropeNeoxTable. */
export function ropeNeoxTableScalar(x: usize, pos: usize, n: i32, heads: i32, hd: i32, cos: usize, sin: usize): void {
  const half = hd >> 1;
  for (let i = 0; i < n; i++) {
    const row = <usize>load<i32>(pos + (<usize>i << 2)) * <usize>half;
    for (let h = 0; h < heads; h++) {
      const base = x + (((<usize>i * <usize>heads + <usize>h) * <usize>hd) << 2);
      for (let c = 0; c < half; c++) rotatePair(base, c, half, load<f32>(cos + ((row + <usize>c) << 2)), load<f32>(sin + ((row + <usize>c) << 2)));
    }
  }
}

// @ts-ignore: decorator
@inline function rotatePair(base: usize, c: i32, half: i32, cs: f32, sn: f32): void {
  const a = load<f32>(base + (<usize>c << 2));
  const b = load<f32>(base + (<usize>(c + half) << 2));
  store<f32>(base + (<usize>c << 2), a * cs - b * sn);
  store<f32>(base + (<usize>(c + half) << 2), b * cs + a * sn);
}

// ---------------------------------------------------------------- SwiGLU

/** out (count,) = silu(gate) * up; silu(g) = g / (1 + exp(-g)). In-place allowed (out == gate). Four at a time. */
export function swiglu(gate: usize, up: usize, out: usize, count: i32): void {
  const one = f32x4.splat(1.0);
  let k = 0;
  for (; k + 4 <= count; k += 4) {
    const o = <usize>k << 2;
    const g = v128.load(gate + o);
    v128.store(out + o, f32x4.mul(f32x4.div(g, f32x4.add(one, expf4(f32x4.neg(g)))), v128.load(up + o)));
  }
  for (; k < count; k++) {
    const o = <usize>k << 2;
    const g = load<f32>(gate + o);
    store<f32>(out + o, g / (<f32>1.0 + Mathf.exp(-g)) * load<f32>(up + o));
  }
}

/** Scalar twin of swiglu. */
export function swigluScalar(gate: usize, up: usize, out: usize, count: i32): void {
  for (let k = 0; k < count; k++) {
    const o = <usize>k << 2;
    const g = load<f32>(gate + o);
    store<f32>(out + o, g / (<f32>1.0 + Mathf.exp(-g)) * load<f32>(up + o));
  }
}

// ---------------------------------------------------------------- attention over cache segments

/**
 * exp of four f32 at once: Cody–Waite reduction x = n·ln2 + r (|r| <= ln2/2), a degree-6 polynomial for e^r
 * (the classic single-precision minimax coefficients, ~1 ulp), then 2^n put into the exponent bits. Inputs are
 * clamped to [-87, 88] so 2^n stays a normal number (softmax and SiLU only need that range: e^-87 ≈ 1.6e-38).
 */
// @ts-ignore: decorator
@inline function expf4(x: v128): v128 {
  x = f32x4.min(f32x4.max(x, f32x4.splat(-87.0)), f32x4.splat(88.0));
  const n = f32x4.nearest(f32x4.mul(x, f32x4.splat(1.44269504088896341))); // round(x / ln2)
  let r = f32x4.sub(x, f32x4.mul(n, f32x4.splat(0.693359375))); // ln2 split in a part exact in f32 and a rest
  r = f32x4.sub(r, f32x4.mul(n, f32x4.splat(-2.12194440e-4)));
  let p = f32x4.splat(1.9875691500e-4);
  p = f32x4.add(f32x4.mul(p, r), f32x4.splat(1.3981999507e-3));
  p = f32x4.add(f32x4.mul(p, r), f32x4.splat(8.3334519073e-3));
  p = f32x4.add(f32x4.mul(p, r), f32x4.splat(4.1665795894e-2));
  p = f32x4.add(f32x4.mul(p, r), f32x4.splat(1.6666665459e-1));
  p = f32x4.add(f32x4.mul(p, r), f32x4.splat(5.0000001201e-1));
  p = f32x4.add(f32x4.add(f32x4.mul(p, f32x4.mul(r, r)), r), f32x4.splat(1.0)); // e^r
  const pow2n = i32x4.shl(i32x4.add(i32x4.trunc_sat_f32x4_s(n), i32x4.splat(127)), 23); // bits of 2^n
  return f32x4.mul(p, pow2n);
}

/** scores (nk,) f32 ← softmax: exp(scores - mx) / Σ, in place, four at a time (the SIMD attention's). */
function softmaxInPlaceSimd(scores: usize, nk: i32, mx: f32): void {
  const vmx = f32x4.splat(mx);
  let vsum = f32x4.splat(0);
  let t = 0;
  for (; t + 4 <= nk; t += 4) {
    const o = <usize>t << 2;
    const e = expf4(f32x4.sub(v128.load(scores + o), vmx));
    v128.store(scores + o, e);
    vsum = f32x4.add(vsum, e);
  }
  let sum = hsum(vsum);
  for (; t < nk; t++) {
    const e = Mathf.exp(load<f32>(scores + (<usize>t << 2)) - mx);
    store<f32>(scores + (<usize>t << 2), e);
    sum += e;
  }
  const inv = f32x4.splat(<f32>1.0 / sum);
  t = 0;
  for (; t + 4 <= nk; t += 4) v128.store(scores + (<usize>t << 2), f32x4.mul(v128.load(scores + (<usize>t << 2)), inv));
  const s1 = <f32>1.0 / sum;
  for (; t < nk; t++) store<f32>(scores + (<usize>t << 2), load<f32>(scores + (<usize>t << 2)) * s1);
}

/** scores (nk,) f32 ← softmax: exp(scores - mx) / Σ, in place (the scalar twin's). */
function softmaxInPlace(scores: usize, nk: i32, mx: f32): void {
  let sum: f32 = 0;
  for (let t = 0; t < nk; t++) {
    const e = Mathf.exp(load<f32>(scores + (<usize>t << 2)) - mx);
    store<f32>(scores + (<usize>t << 2), e);
    sum += e;
  }
  const inv = <f32>1.0 / sum;
  for (let t = 0; t < nk; t++) store<f32>(scores + (<usize>t << 2), load<f32>(scores + (<usize>t << 2)) * inv);
}

/** [Σa0, Σa1, Σa2, Σa3]: four horizontal sums at once (a 4×4 transpose folded into adds). */
// @ts-ignore: decorator
@inline function hsum4(a0: v128, a1: v128, a2: v128, a3: v128): v128 {
  const s01 = f32x4.add(v128.shuffle<f32>(a0, a1, 0, 4, 1, 5), v128.shuffle<f32>(a0, a1, 2, 6, 3, 7)); // a0₀₂ a1₀₂ a0₁₃ a1₁₃
  const s23 = f32x4.add(v128.shuffle<f32>(a2, a3, 0, 4, 1, 5), v128.shuffle<f32>(a2, a3, 2, 6, 3, 7));
  return f32x4.add(v128.shuffle<f32>(s01, s23, 0, 1, 4, 5), v128.shuffle<f32>(s01, s23, 2, 3, 6, 7));
}

/** Query rows per attention block: the scores scratch holds this many rows of nk per thread (src/kernels.ts). */
const ATTENTION_ROWS = 16;
export const attentionRows: i32 = ATTENTION_ROWS;

/**
 * out (nq, H, hd) = softmax(q·kᵀ · scale) · v for each query row and head, over nk key rows.
 * q: (nq, H, hd); k, v: (nk, KVH, hd) — the caller lays the visible keys (cached segments and fresh K/V)
 * contiguously; head h reads KV head h / (H / KVH) (GQA). scores: (ATTENTION_ROWS, nk) f32 scratch.
 * Softmax in f32 with max subtraction. Query rows go in blocks of ATTENTION_ROWS, so that each group of 4 keys,
 * and each 16-dim column of the values, is read from memory once per block and then from L1 for every row of it;
 * inside a block rows go two at a time (each vector loaded serves both). Every output lane is the same chain of
 * operations whichever block and pair its row falls in (a dot product in 4-lane steps then the 4×4 transpose
 * sum; exp; a madd per key in key order), so a row's result does not depend on the other rows of the call:
 * batch invariance (DESIGN §7) holds across any split of the rows.
 */
export function attention(
  q: usize, k: usize, v: usize, out: usize, scores: usize, nq: i32, nk: i32, H: i32, KVH: i32, hd: i32, scale: f32,
): void {
  const group = H / KVH;
  const rowBytes = (<usize>H * <usize>hd) << 2; // bytes between query (and output) rows
  const scoreBytes = <usize>nk << 2; // bytes between score rows
  for (let i0 = 0; i0 < nq; i0 += ATTENTION_ROWS) {
    const nb = min(ATTENTION_ROWS, nq - i0);
    for (let h = 0; h < H; h++) {
      const q0 = q + <usize>i0 * rowBytes + ((<usize>h * <usize>hd) << 2);
      const o0 = out + <usize>i0 * rowBytes + ((<usize>h * <usize>hd) << 2);
      const kvOff = (<usize>(h / group) * <usize>hd) << 2;
      scoresBlock(q0, rowBytes, k + kvOff, scores, scoreBytes, nb, nk, KVH, hd, scale);
      for (let r = 0; r < nb; r++) softmaxRowSimd(scores + <usize>r * scoreBytes, nk);
      weightedSumBlock(scores, scoreBytes, v + kvOff, o0, rowBytes, nb, nk, KVH, hd);
    }
  }
}

/** One key's score for query row qr (kr: the key row at its KV head), scaled; the tail of the 4-key groups. */
// @ts-ignore: decorator
@inline function scoreOne(qr: usize, kr: usize, D4: i32, hd: i32, scale: f32): f32 {
  let acc = f32x4.splat(0);
  for (let c = 0; c < D4; c += 4) acc = madd(v128.load(qr + (<usize>c << 2)), v128.load(kr + (<usize>c << 2)), acc);
  return (hsum(acc) + dotTail(qr, kr, D4, hd)) * scale;
}

/** [q·k0, q·k1, q·k2, q·k3] · scale for one query row: four dot products in 4-lane steps, then the transpose sum. */
// @ts-ignore: decorator
@inline function scores4(qr: usize, k0: usize, kvStride: usize, D4: i32, hd: i32, vscale: v128): v128 {
  const k1 = k0 + kvStride, k2 = k1 + kvStride, k3 = k2 + kvStride;
  let a0 = f32x4.splat(0), a1 = f32x4.splat(0), a2 = f32x4.splat(0), a3 = f32x4.splat(0);
  for (let c = 0; c < D4; c += 4) {
    const o = <usize>c << 2;
    const qv = v128.load(qr + o);
    a0 = madd(qv, v128.load(k0 + o), a0); a1 = madd(qv, v128.load(k1 + o), a1);
    a2 = madd(qv, v128.load(k2 + o), a2); a3 = madd(qv, v128.load(k3 + o), a3);
  }
  let s = hsum4(a0, a1, a2, a3);
  if (D4 < hd) {
    s = f32x4.add(s, f32x4(dotTail(qr, k0, D4, hd), dotTail(qr, k1, D4, hd), dotTail(qr, k2, D4, hd), dotTail(qr, k3, D4, hd)));
  }
  return f32x4.mul(s, vscale);
}

/**
 * scores (nb, nk) rows sb bytes apart ← q·kᵀ · scale for nb query rows (rs bytes apart) at one head; kh: key 0 at
 * the head's KV head. Key groups outer, rows inner (in pairs): a group's 4 key rows stay in L1 for the block.
 */
// @ts-ignore: decorator
@inline function scoresBlock(q0: usize, rs: usize, kh: usize, scores: usize, sb: usize, nb: i32, nk: i32, KVH: i32, hd: i32, scale: f32): void {
  const D4 = hd & ~3;
  const kvStride = <usize>(KVH * hd) << 2; // bytes between key rows
  const vscale = f32x4.splat(scale);
  let t = 0;
  for (; t + 4 <= nk; t += 4) {
    const k0 = kh + <usize>t * kvStride, k1 = k0 + kvStride, k2 = k1 + kvStride, k3 = k2 + kvStride;
    const st = <usize>t << 2;
    let r = 0;
    for (; r + 2 <= nb; r += 2) {
      const qa = q0 + <usize>r * rs, qb = qa + rs;
      let a0 = f32x4.splat(0), a1 = f32x4.splat(0), a2 = f32x4.splat(0), a3 = f32x4.splat(0);
      let b0 = f32x4.splat(0), b1 = f32x4.splat(0), b2 = f32x4.splat(0), b3 = f32x4.splat(0);
      for (let c = 0; c < D4; c += 4) {
        const o = <usize>c << 2;
        const qva = v128.load(qa + o), qvb = v128.load(qb + o);
        let kv = v128.load(k0 + o);
        a0 = madd(qva, kv, a0); b0 = madd(qvb, kv, b0);
        kv = v128.load(k1 + o);
        a1 = madd(qva, kv, a1); b1 = madd(qvb, kv, b1);
        kv = v128.load(k2 + o);
        a2 = madd(qva, kv, a2); b2 = madd(qvb, kv, b2);
        kv = v128.load(k3 + o);
        a3 = madd(qva, kv, a3); b3 = madd(qvb, kv, b3);
      }
      let s = hsum4(a0, a1, a2, a3);
      let u = hsum4(b0, b1, b2, b3);
      if (D4 < hd) {
        s = f32x4.add(s, f32x4(dotTail(qa, k0, D4, hd), dotTail(qa, k1, D4, hd), dotTail(qa, k2, D4, hd), dotTail(qa, k3, D4, hd)));
        u = f32x4.add(u, f32x4(dotTail(qb, k0, D4, hd), dotTail(qb, k1, D4, hd), dotTail(qb, k2, D4, hd), dotTail(qb, k3, D4, hd)));
      }
      v128.store(scores + <usize>r * sb + st, f32x4.mul(s, vscale));
      v128.store(scores + <usize>(r + 1) * sb + st, f32x4.mul(u, vscale));
    }
    if (r < nb) v128.store(scores + <usize>r * sb + st, scores4(q0 + <usize>r * rs, k0, kvStride, D4, hd, vscale));
  }
  for (; t < nk; t++) {
    const kr = kh + <usize>t * kvStride;
    for (let r = 0; r < nb; r++) store<f32>(scores + <usize>r * sb + (<usize>t << 2), scoreOne(q0 + <usize>r * rs, kr, D4, hd, scale));
  }
}

/** scores (nk,) ← softmax in place: the row's max (4 lanes at a time, then the tail), then softmaxInPlaceSimd. */
// @ts-ignore: decorator
@inline function softmaxRowSimd(scores: usize, nk: i32): void {
  let vmx = f32x4.splat(-Infinity);
  let mx: f32 = -Infinity;
  let t = 0;
  for (; t + 4 <= nk; t += 4) vmx = f32x4.max(vmx, v128.load(scores + (<usize>t << 2)));
  for (; t < nk; t++) mx = max(mx, load<f32>(scores + (<usize>t << 2)));
  softmaxInPlaceSimd(scores, nk, max(mx, max(max(f32x4.extract_lane(vmx, 0), f32x4.extract_lane(vmx, 1)), max(f32x4.extract_lane(vmx, 2), f32x4.extract_lane(vmx, 3)))));
}

/**
 * out rows (nb, hd), rs bytes apart, = Σ_t p_t · v_t for nb rows of softmaxed scores (sb bytes apart); vh: value 0
 * at the head's KV head. 16-dim columns outer, rows inner (in pairs), keys innermost: a column of the values (one
 * 64-byte line per key) stays in L1 while every row of the block runs down it.
 */
// @ts-ignore: decorator
@inline function weightedSumBlock(scores: usize, sb: usize, vh: usize, o0: usize, rs: usize, nb: i32, nk: i32, KVH: i32, hd: i32): void {
  const D4 = hd & ~3;
  const kvStride = <usize>(KVH * hd) << 2;
  let c = 0;
  for (; c + 16 <= D4; c += 16) {
    const o = <usize>c << 2;
    let r = 0;
    for (; r + 2 <= nb; r += 2) {
      const pa = scores + <usize>r * sb, pb = pa + sb;
      let a0 = f32x4.splat(0), a1 = f32x4.splat(0), a2 = f32x4.splat(0), a3 = f32x4.splat(0);
      let b0 = f32x4.splat(0), b1 = f32x4.splat(0), b2 = f32x4.splat(0), b3 = f32x4.splat(0);
      for (let t = 0; t < nk; t++) {
        const wa = v128.load32_splat(pa + (<usize>t << 2)), wb = v128.load32_splat(pb + (<usize>t << 2));
        const vr = vh + <usize>t * kvStride + o;
        let x = v128.load(vr);
        a0 = madd(wa, x, a0); b0 = madd(wb, x, b0);
        x = v128.load(vr, 16);
        a1 = madd(wa, x, a1); b1 = madd(wb, x, b1);
        x = v128.load(vr, 32);
        a2 = madd(wa, x, a2); b2 = madd(wb, x, b2);
        x = v128.load(vr, 48);
        a3 = madd(wa, x, a3); b3 = madd(wb, x, b3);
      }
      const oa = o0 + <usize>r * rs + o, ob = oa + rs;
      v128.store(oa, a0); v128.store(oa, a1, 16); v128.store(oa, a2, 32); v128.store(oa, a3, 48);
      v128.store(ob, b0); v128.store(ob, b1, 16); v128.store(ob, b2, 32); v128.store(ob, b3, 48);
    }
    if (r < nb) {
      const pa = scores + <usize>r * sb;
      let a0 = f32x4.splat(0), a1 = f32x4.splat(0), a2 = f32x4.splat(0), a3 = f32x4.splat(0);
      for (let t = 0; t < nk; t++) {
        const wa = v128.load32_splat(pa + (<usize>t << 2));
        const vr = vh + <usize>t * kvStride + o;
        a0 = madd(wa, v128.load(vr), a0); a1 = madd(wa, v128.load(vr, 16), a1);
        a2 = madd(wa, v128.load(vr, 32), a2); a3 = madd(wa, v128.load(vr, 48), a3);
      }
      const oa = o0 + <usize>r * rs + o;
      v128.store(oa, a0); v128.store(oa, a1, 16); v128.store(oa, a2, 32); v128.store(oa, a3, 48);
    }
  }
  for (let r = 0; r < nb; r++) weightedSumTail(scores + <usize>r * sb, vh, o0 + <usize>r * rs, nk, kvStride, c, D4, hd);
}

/** Dims [c, hd) of one weighted sum: 4 at a time up to D4, then one at a time. */
// @ts-ignore: decorator
@inline function weightedSumTail(p: usize, vh: usize, orow: usize, nk: i32, kvStride: usize, c: i32, D4: i32, hd: i32): void {
  for (; c < D4; c += 4) {
    const o = <usize>c << 2;
    let a = f32x4.splat(0);
    for (let t = 0; t < nk; t++) a = madd(v128.load32_splat(p + (<usize>t << 2)), v128.load(vh + <usize>t * kvStride + o), a);
    v128.store(orow + o, a);
  }
  for (; c < hd; c++) {
    let a: f32 = 0;
    for (let t = 0; t < nk; t++) a += load<f32>(p + (<usize>t << 2)) * load<f32>(vh + <usize>t * kvStride + (<usize>c << 2));
    store<f32>(orow + (<usize>c << 2), a);
  }
}

// @ts-ignore: decorator
@inline function dotTail(a: usize, b: usize, from: i32, to: i32): f32 {
  let s: f32 = 0;
  for (let c = from; c < to; c++) s += load<f32>(a + (<usize>c << 2)) * load<f32>(b + (<usize>c << 2));
  return s;
}

/** Scalar twin of attention. */
export function attentionScalar(
  q: usize, k: usize, v: usize, out: usize, scores: usize, nq: i32, nk: i32, H: i32, KVH: i32, hd: i32, scale: f32,
): void {
  const group = H / KVH;
  for (let i = 0; i < nq; i++) {
    for (let h = 0; h < H; h++) {
      const qr = q + (((<usize>i * <usize>H + <usize>h) * <usize>hd) << 2);
      const kvh = h / group;
      let mx: f32 = -Infinity;
      for (let t = 0; t < nk; t++) {
        const kr = k + (((<usize>t * <usize>KVH + <usize>kvh) * <usize>hd) << 2);
        let s: f32 = 0;
        for (let c = 0; c < hd; c++) s += load<f32>(qr + (<usize>c << 2)) * load<f32>(kr + (<usize>c << 2));
        s *= scale;
        store<f32>(scores + (<usize>t << 2), s);
        if (s > mx) mx = s;
      }
      softmaxInPlace(scores, nk, mx);
      const orow = out + (((<usize>i * <usize>H + <usize>h) * <usize>hd) << 2);
      for (let c = 0; c < hd; c++) {
        let a: f32 = 0;
        for (let t = 0; t < nk; t++) {
          a += load<f32>(scores + (<usize>t << 2)) * load<f32>(v + (((<usize>t * <usize>KVH + <usize>kvh) * <usize>hd + <usize>c) << 2));
        }
        store<f32>(orow + (<usize>c << 2), a);
      }
    }
  }
}

// ---------------------------------------------------------------- counter RNG (port of scheduler/src/rng.ts)

// @ts-ignore: decorator
@inline function mixBlock(h: u32, k: u32): u32 {
  k *= 0xcc9e2d51;
  k = rotl<u32>(k, 15);
  k *= 0x1b873593;
  h ^= k;
  h = rotl<u32>(h, 13);
  return h * 5 + 0xe6546b64;
}

/** MurmurHash3_x86_32 of the 12 bytes [forwardIndex, position, lane] (little-endian u32) with `seed`. */
export function counterHash(seed: u32, forwardIndex: u32, position: u32, lane: u32): u32 {
  let h = mixBlock(seed, forwardIndex);
  h = mixBlock(h, position);
  h = mixBlock(h, lane);
  h ^= 12;
  h ^= h >>> 16;
  h *= 0x85ebca6b;
  h ^= h >>> 13;
  h *= 0xc2b2ae35;
  h ^= h >>> 16;
  return h;
}

/** Standard Gumbel noise, float64: the formula of rng.ts (AssemblyScript libm log; equal to V8 within ulps). */
export function counterGumbel(seed: u32, forwardIndex: u32, position: u32, lane: u32): f64 {
  const u = (<f64>counterHash(seed, forwardIndex, position, lane) + 0.5) / 4294967296.0;
  return -Math.log(-Math.log(u));
}

// ---------------------------------------------------------------- per-position reduction of a logits row

/**
 * Reduces one logits row (vocab,) f32 into res (5,) f64 (DESIGN §3):
 *   [0] token: argmax (ties to the lowest id) or, when temperature > 0, argmax_v(l_v / T + gumbel) in f64
 *   [1] clean softmax prob of the token   [2] top-1 prob   [3] top-2 prob   [4] entropy (nats)
 * Token `exclude` (the mask) is never proposed and is left out of top-1/top-2, but counts in the softmax and the
 * entropy. Softmax in f64 with max subtraction.
 */
export function reduceRow(
  logits: usize, vocab: i32, res: usize, temperature: f64, seed: u32, forwardIndex: u32, position: u32, exclude: i32,
): void {
  let mx: f64 = -Infinity; // over every token: the softmax's shift
  let a1: f64 = -Infinity, a2: f64 = -Infinity; // best two logits among proposable tokens
  let arg = -1;
  for (let v = 0; v < vocab; v++) {
    const l = <f64>load<f32>(logits + (<usize>v << 2));
    if (l > mx) mx = l;
    if (v == exclude) continue;
    if (l > a1 || arg < 0) { a2 = a1; a1 = l; arg = v; } else if (l > a2) a2 = l;
  }
  // One exp per entry: z = Σ e_v and S = Σ e_v (l_v - mx), e_v = exp(l_v - mx); entropy = log z - S / z.
  let z: f64 = 0, sl: f64 = 0;
  for (let v = 0; v < vocab; v++) {
    const dl = <f64>load<f32>(logits + (<usize>v << 2)) - mx;
    const e = Math.exp(dl);
    z += e;
    sl += e * dl;
  }
  const ent = Math.log(z) - sl / z;
  let tok = arg;
  if (temperature > 0) {
    let best: f64 = -Infinity;
    tok = -1;
    for (let v = 0; v < vocab; v++) {
      if (v == exclude) continue;
      const s = <f64>load<f32>(logits + (<usize>v << 2)) / temperature + counterGumbel(seed, forwardIndex, position, <u32>v);
      if (s > best || tok < 0) { best = s; tok = v; }
    }
  }
  store<f64>(res, <f64>tok);
  store<f64>(res, Math.exp(<f64>load<f32>(logits + (<usize>tok << 2)) - mx) / z, 8);
  store<f64>(res, Math.exp(a1 - mx) / z, 16);
  store<f64>(res, Math.exp(a2 - mx) / z, 24);
  store<f64>(res, ent, 32);
}

/**
 * reduceRow over n rows, each with its own sampling key (rows of different sequences share a pass):
 * logits (n, vocab) f32, res (n, 5) f64, keys (n, 3) u32 [canvas position, seed, forward index],
 * temps (n,) f64 temperature (0 = greedy).
 */
export function reduceRows(
  logits: usize, vocab: i32, res: usize, keys: usize, temps: usize, n: i32, exclude: i32,
): void {
  for (let r = 0; r < n; r++) {
    const key = keys + <usize>r * 12;
    reduceRow(logits + (<usize>r * <usize>vocab << 2), vocab, res + <usize>r * 40, load<f64>(temps + (<usize>r << 3)),
      load<u32>(key, 4), load<u32>(key, 8), load<u32>(key), exclude);
  }
}

// ---------------------------------------------------------------- int8 matmul (int8.ts)

export { matmulI8, matmulI8Fused, matmulI8Scalar, quantizeRowsI8, quantizeRowsI8Scalar, i8RowBytes, relaxedSimd } from './int8';
