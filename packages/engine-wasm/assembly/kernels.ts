// AssemblyScript kernels of the WASM engine. Every pointer is a byte offset into linear memory that the host
// (src/kernels.ts) laid out; nothing here allocates. Each SIMD kernel has a scalar twin (suffix `Scalar`)
// with the same arguments, so a SIMD bug can be isolated by switching the host's `simd` option.
// Shapes are given as (rows, cols) of f32 unless said otherwise.

/** First free byte after the module's static data: where the host may start its own layout. */
export function heapBase(): usize {
  return __heap_base;
}

// ---------------------------------------------------------------- matmul  y = x · Wᵀ (+ b)

/** K-block length of matmulF32: an x panel of (n, KC) f32 stays in L2 while the W rows pass over it. */
const KC: i32 = 256;

/**
 * y (n, out) = x (n, inDim) · W (out, inDim)ᵀ + b (out,), b optional (0 = none).
 * Cache blocking over `inDim` in KC-float panels (partial sums accumulate into y), and inside a panel a register
 * tile of 2 x-rows × 4 W-rows (8 f32x4 accumulators).
 */
export function matmulF32(x: usize, w: usize, b: usize, y: usize, n: i32, inDim: i32, out: i32): void {
  for (let k0 = 0; k0 < inDim; k0 += KC) {
    const kc = min(KC, inDim - k0);
    const o = <usize>k0 << 2;
    matmulPanel(x + o, w + o, k0 == 0 ? b : 0, y, n, inDim, kc, out, k0 > 0);
  }
}

/** One K panel: y (+)= x[:, k0:k0+kc] · W[:, k0:k0+kc]ᵀ (+ b); rows of x and W are `inDim` floats apart. */
function matmulPanel(x: usize, w: usize, b: usize, y: usize, n: i32, inDim: i32, kc: i32, out: i32, acc: bool): void {
  const K4 = kc & ~3;
  let j = 0;
  for (; j + 4 <= out; j += 4) {
    const w0 = w + (<usize>j * <usize>inDim << 2);
    const w1 = w0 + (<usize>inDim << 2);
    const w2 = w1 + (<usize>inDim << 2);
    const w3 = w2 + (<usize>inDim << 2);
    let i = 0;
    // 2 x-rows × 4 W-rows: 8 accumulators + 4 W + 1 x vectors fit the 16 SIMD registers of x86-64 (a 4×4
    // tile needs 21 and spills in V8).
    for (; i + 2 <= n; i += 2) {
      const x0 = x + (<usize>i * <usize>inDim << 2);
      const x1 = x0 + (<usize>inDim << 2);
      let a00 = f32x4.splat(0), a01 = f32x4.splat(0), a02 = f32x4.splat(0), a03 = f32x4.splat(0);
      let a10 = f32x4.splat(0), a11 = f32x4.splat(0), a12 = f32x4.splat(0), a13 = f32x4.splat(0);
      for (let k = 0; k < K4; k += 4) {
        const o = <usize>k << 2;
        const vw0 = v128.load(w0 + o), vw1 = v128.load(w1 + o), vw2 = v128.load(w2 + o), vw3 = v128.load(w3 + o);
        let vx = v128.load(x0 + o);
        a00 = f32x4.add(a00, f32x4.mul(vx, vw0)); a01 = f32x4.add(a01, f32x4.mul(vx, vw1));
        a02 = f32x4.add(a02, f32x4.mul(vx, vw2)); a03 = f32x4.add(a03, f32x4.mul(vx, vw3));
        vx = v128.load(x1 + o);
        a10 = f32x4.add(a10, f32x4.mul(vx, vw0)); a11 = f32x4.add(a11, f32x4.mul(vx, vw1));
        a12 = f32x4.add(a12, f32x4.mul(vx, vw2)); a13 = f32x4.add(a13, f32x4.mul(vx, vw3));
      }
      storeRow4(y, b, i, j, out, x0, w0, w1, w2, w3, K4, kc, acc, a00, a01, a02, a03);
      storeRow4(y, b, i + 1, j, out, x1, w0, w1, w2, w3, K4, kc, acc, a10, a11, a12, a13);
    }
    for (; i < n; i++) {
      const xr = x + (<usize>i * <usize>inDim << 2);
      let a0 = f32x4.splat(0), a1 = f32x4.splat(0), a2 = f32x4.splat(0), a3 = f32x4.splat(0);
      for (let k = 0; k < K4; k += 4) {
        const o = <usize>k << 2;
        const vx = v128.load(xr + o);
        a0 = f32x4.add(a0, f32x4.mul(vx, v128.load(w0 + o)));
        a1 = f32x4.add(a1, f32x4.mul(vx, v128.load(w1 + o)));
        a2 = f32x4.add(a2, f32x4.mul(vx, v128.load(w2 + o)));
        a3 = f32x4.add(a3, f32x4.mul(vx, v128.load(w3 + o)));
      }
      storeRow4(y, b, i, j, out, xr, w0, w1, w2, w3, K4, kc, acc, a0, a1, a2, a3);
    }
  }
  // Leftover W rows (out % 4): one output column at a time.
  for (; j < out; j++) {
    const wr = w + (<usize>j * <usize>inDim << 2);
    for (let i = 0; i < n; i++) {
      const xr = x + (<usize>i * <usize>inDim << 2);
      let va = f32x4.splat(0);
      for (let k = 0; k < K4; k += 4) {
        const o = <usize>k << 2;
        va = f32x4.add(va, f32x4.mul(v128.load(xr + o), v128.load(wr + o)));
      }
      let s = hsum(va);
      for (let k = K4; k < kc; k++) s += load<f32>(xr + (<usize>k << 2)) * load<f32>(wr + (<usize>k << 2));
      if (b != 0) s += load<f32>(b + (<usize>j << 2));
      const yp = y + ((<usize>i * <usize>out + <usize>j) << 2);
      store<f32>(yp, acc ? load<f32>(yp) + s : s);
    }
  }
}

// @ts-ignore: decorator
@inline function hsum(v: v128): f32 {
  return f32x4.extract_lane(v, 0) + f32x4.extract_lane(v, 1) + f32x4.extract_lane(v, 2) + f32x4.extract_lane(v, 3);
}

// @ts-ignore: decorator
@inline function tail(xr: usize, wr: usize, K4: i32, kc: i32): f32 {
  let s: f32 = 0;
  for (let k = K4; k < kc; k++) s += load<f32>(xr + (<usize>k << 2)) * load<f32>(wr + (<usize>k << 2));
  return s;
}

// @ts-ignore: decorator
@inline function storeRow4(
  y: usize, b: usize, i: i32, j: i32, out: i32, xr: usize, w0: usize, w1: usize, w2: usize, w3: usize,
  K4: i32, kc: i32, acc: bool, a0: v128, a1: v128, a2: v128, a3: v128,
): void {
  const yr = y + ((<usize>i * <usize>out + <usize>j) << 2);
  let s0 = hsum(a0) + tail(xr, w0, K4, kc), s1 = hsum(a1) + tail(xr, w1, K4, kc);
  let s2 = hsum(a2) + tail(xr, w2, K4, kc), s3 = hsum(a3) + tail(xr, w3, K4, kc);
  if (acc) {
    s0 += load<f32>(yr); s1 += load<f32>(yr, 4); s2 += load<f32>(yr, 8); s3 += load<f32>(yr, 12);
  }
  if (b != 0) {
    const br = b + (<usize>j << 2);
    s0 += load<f32>(br); s1 += load<f32>(br, 4); s2 += load<f32>(br, 8); s3 += load<f32>(br, 12);
  }
  store<f32>(yr, s0); store<f32>(yr, s1, 4); store<f32>(yr, s2, 8); store<f32>(yr, s3, 12);
}

/** Scalar twin of matmulF32: same arguments, plain f32 dot products. */
export function matmulF32Scalar(x: usize, w: usize, b: usize, y: usize, n: i32, inDim: i32, out: i32): void {
  for (let i = 0; i < n; i++) {
    const xr = x + (<usize>i * <usize>inDim << 2);
    for (let j = 0; j < out; j++) {
      const wr = w + (<usize>j * <usize>inDim << 2);
      let s: f32 = 0;
      for (let k = 0; k < inDim; k++) s += load<f32>(xr + (<usize>k << 2)) * load<f32>(wr + (<usize>k << 2));
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

// ---------------------------------------------------------------- SwiGLU

/** out (count,) = silu(gate) * up; silu(g) = g / (1 + exp(-g)). In-place allowed (out == gate). */
export function swiglu(gate: usize, up: usize, out: usize, count: i32): void {
  for (let k = 0; k < count; k++) {
    const o = <usize>k << 2;
    const g = load<f32>(gate + o);
    store<f32>(out + o, g / (<f32>1.0 + Mathf.exp(-g)) * load<f32>(up + o));
  }
}

// ---------------------------------------------------------------- attention over cache segments

/** scores (nk,) f32 ← exp(scores - mx) in place; returns 1 / their sum (the softmax normaliser). Shared by both twins: it is scalar code. */
function expShifted(scores: usize, nk: i32, mx: f32): f32 {
  let sum: f32 = 0;
  for (let t = 0; t < nk; t++) {
    const e = Mathf.exp(load<f32>(scores + (<usize>t << 2)) - mx);
    store<f32>(scores + (<usize>t << 2), e);
    sum += e;
  }
  return <f32>1.0 / sum;
}

/**
 * out (nq, H, hd) = softmax(q·kᵀ · scale) · v for each query row and head, over nk key rows.
 * q: (nq, H, hd); k, v: (nk, KVH, hd) — the caller lays the visible keys (cached segments and fresh K/V)
 * contiguously; head h reads KV head h / (H / KVH) (GQA). scores: (nk,) f32 scratch.
 * Softmax in f32 with max subtraction.
 */
export function attention(
  q: usize, k: usize, v: usize, out: usize, scores: usize, nq: i32, nk: i32, H: i32, KVH: i32, hd: i32, scale: f32,
): void {
  const group = H / KVH;
  const D4 = hd & ~3;
  for (let i = 0; i < nq; i++) {
    for (let h = 0; h < H; h++) {
      const qr = q + (((<usize>i * <usize>H + <usize>h) * <usize>hd) << 2);
      const kvh = h / group;
      let mx: f32 = -Infinity;
      for (let t = 0; t < nk; t++) {
        const kr = k + (((<usize>t * <usize>KVH + <usize>kvh) * <usize>hd) << 2);
        let acc = f32x4.splat(0);
        for (let c = 0; c < D4; c += 4) acc = f32x4.add(acc, f32x4.mul(v128.load(qr + (<usize>c << 2)), v128.load(kr + (<usize>c << 2))));
        let s = hsum(acc);
        for (let c = D4; c < hd; c++) s += load<f32>(qr + (<usize>c << 2)) * load<f32>(kr + (<usize>c << 2));
        s *= scale;
        store<f32>(scores + (<usize>t << 2), s);
        if (s > mx) mx = s;
      }
      const inv = expShifted(scores, nk, mx);
      const orow = out + (((<usize>i * <usize>H + <usize>h) * <usize>hd) << 2);
      for (let c = 0; c < hd; c++) store<f32>(orow + (<usize>c << 2), 0);
      for (let t = 0; t < nk; t++) {
        const pw = load<f32>(scores + (<usize>t << 2)) * inv;
        const vp = f32x4.splat(pw);
        const vr = v + (((<usize>t * <usize>KVH + <usize>kvh) * <usize>hd) << 2);
        for (let c = 0; c < D4; c += 4) {
          const o = <usize>c << 2;
          v128.store(orow + o, f32x4.add(v128.load(orow + o), f32x4.mul(vp, v128.load(vr + o))));
        }
        for (let c = D4; c < hd; c++) {
          const o = <usize>c << 2;
          store<f32>(orow + o, load<f32>(orow + o) + pw * load<f32>(vr + o));
        }
      }
    }
  }
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
      const inv = expShifted(scores, nk, mx);
      const orow = out + (((<usize>i * <usize>H + <usize>h) * <usize>hd) << 2);
      for (let c = 0; c < hd; c++) {
        let a: f32 = 0;
        for (let t = 0; t < nk; t++) {
          a += load<f32>(scores + (<usize>t << 2)) * inv * load<f32>(v + (((<usize>t * <usize>KVH + <usize>kvh) * <usize>hd + <usize>c) << 2));
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
 * Reduces one logits row (vocab,) f32 into res (6,) f64:
 *   [0] token: argmax (ties to the lowest id) or, when temperature > 0, argmax_v(l_v / T + gumbel) in f64
 *   [1] clean softmax prob of the token   [2] top-1 prob   [3] top-2 prob   [4] entropy (nats)
 * Softmax in f64 with max subtraction.
 */
export function reduceRow(
  logits: usize, vocab: i32, res: usize, temperature: f64, seed: u32, forwardIndex: u32, position: u32,
): void {
  let m1: f64 = -Infinity, m2: f64 = -Infinity;
  let arg = 0;
  for (let v = 0; v < vocab; v++) {
    const l = <f64>load<f32>(logits + (<usize>v << 2));
    if (l > m1) { m2 = m1; m1 = l; arg = v; } else if (l > m2) m2 = l;
  }
  let z: f64 = 0;
  for (let v = 0; v < vocab; v++) z += Math.exp(<f64>load<f32>(logits + (<usize>v << 2)) - m1);
  let ent: f64 = 0;
  const logZ = Math.log(z);
  for (let v = 0; v < vocab; v++) {
    const lp = <f64>load<f32>(logits + (<usize>v << 2)) - m1 - logZ;
    const p = Math.exp(lp);
    if (p > 0) ent -= p * lp;
  }
  let tok = arg;
  if (temperature > 0) {
    let best: f64 = -Infinity;
    for (let v = 0; v < vocab; v++) {
      const s = <f64>load<f32>(logits + (<usize>v << 2)) / temperature + counterGumbel(seed, forwardIndex, position, <u32>v);
      if (s > best) { best = s; tok = v; }
    }
  }
  store<f64>(res, <f64>tok);
  store<f64>(res, Math.exp(<f64>load<f32>(logits + (<usize>tok << 2)) - m1) / z, 8);
  store<f64>(res, 1.0 / z, 16);
  store<f64>(res, Math.exp(m2 - m1) / z, 24);
  store<f64>(res, ent, 32);
}

// ---------------------------------------------------------------- bf16 weights, f32 arithmetic

/**
 * y (n, out) = x (n, inDim) f32 · W (out, inDim)ᵀ + b, W stored as bf16 (u16, the high half of an f32).
 * Widening is exact: a bf16 shifted left by 16 is its f32. Same 4×4 register tile, one x row block at a time.
 */
export function matmulBF16(x: usize, w: usize, b: usize, y: usize, n: i32, inDim: i32, out: i32): void {
  const K4 = inDim & ~3;
  for (let j = 0; j < out; j++) {
    const wr = w + (<usize>j * <usize>inDim << 1);
    let i = 0;
    for (; i + 4 <= n; i += 4) {
      const x0 = x + (<usize>i * <usize>inDim << 2);
      const x1 = x0 + (<usize>inDim << 2);
      const x2 = x1 + (<usize>inDim << 2);
      const x3 = x2 + (<usize>inDim << 2);
      let a0 = f32x4.splat(0), a1 = f32x4.splat(0), a2 = f32x4.splat(0), a3 = f32x4.splat(0);
      for (let k = 0; k < K4; k += 4) {
        const vw = i32x4.shl(v128.load16x4_u(wr + (<usize>k << 1)), 16);
        const o = <usize>k << 2;
        a0 = f32x4.add(a0, f32x4.mul(v128.load(x0 + o), vw));
        a1 = f32x4.add(a1, f32x4.mul(v128.load(x1 + o), vw));
        a2 = f32x4.add(a2, f32x4.mul(v128.load(x2 + o), vw));
        a3 = f32x4.add(a3, f32x4.mul(v128.load(x3 + o), vw));
      }
      const bj: f32 = b != 0 ? load<f32>(b + (<usize>j << 2)) : 0;
      store<f32>(y + ((<usize>i * <usize>out + <usize>j) << 2), hsum(a0) + tailBF16(x0, wr, K4, inDim) + bj);
      store<f32>(y + ((<usize>(i + 1) * <usize>out + <usize>j) << 2), hsum(a1) + tailBF16(x1, wr, K4, inDim) + bj);
      store<f32>(y + ((<usize>(i + 2) * <usize>out + <usize>j) << 2), hsum(a2) + tailBF16(x2, wr, K4, inDim) + bj);
      store<f32>(y + ((<usize>(i + 3) * <usize>out + <usize>j) << 2), hsum(a3) + tailBF16(x3, wr, K4, inDim) + bj);
    }
    for (; i < n; i++) {
      const xr = x + (<usize>i * <usize>inDim << 2);
      let a = f32x4.splat(0);
      for (let k = 0; k < K4; k += 4) {
        a = f32x4.add(a, f32x4.mul(v128.load(xr + (<usize>k << 2)), i32x4.shl(v128.load16x4_u(wr + (<usize>k << 1)), 16)));
      }
      const bj: f32 = b != 0 ? load<f32>(b + (<usize>j << 2)) : 0;
      store<f32>(y + ((<usize>i * <usize>out + <usize>j) << 2), hsum(a) + tailBF16(xr, wr, K4, inDim) + bj);
    }
  }
}

// @ts-ignore: decorator
@inline function bf16(p: usize): f32 {
  return reinterpret<f32>(<u32>load<u16>(p) << 16);
}

// @ts-ignore: decorator
@inline function tailBF16(xr: usize, wr: usize, K4: i32, inDim: i32): f32 {
  let s: f32 = 0;
  for (let k = K4; k < inDim; k++) s += load<f32>(xr + (<usize>k << 2)) * bf16(wr + (<usize>k << 1));
  return s;
}

/** Scalar twin of matmulBF16. */
export function matmulBF16Scalar(x: usize, w: usize, b: usize, y: usize, n: i32, inDim: i32, out: i32): void {
  for (let i = 0; i < n; i++) {
    const xr = x + (<usize>i * <usize>inDim << 2);
    for (let j = 0; j < out; j++) {
      const wr = w + (<usize>j * <usize>inDim << 1);
      let s: f32 = 0;
      for (let k = 0; k < inDim; k++) s += load<f32>(xr + (<usize>k << 2)) * bf16(wr + (<usize>k << 1));
      if (b != 0) s += load<f32>(b + (<usize>j << 2));
      store<f32>(y + ((<usize>i * <usize>out + <usize>j) << 2), s);
    }
  }
}
