// Every WASM kernel (SIMD and scalar builds) against a plain TypeScript reference on fresh random inputs.
// Order of checks per case: no NaN/Inf, guard values around the output untouched, then NMSE under a
// tolerance stated next to the case with the measured spread that justified it. Seeds are fixed and printed.
import { describe, expect, it } from 'vitest';
import { counterGumbel, counterHash } from '@fast-dllm/scheduler';
import { dequantizeInt8Row, quantizeInt8Activations, quantizeInt8Weight } from '@fast-dllm/model';
import { referenceInt8Matmul } from '@fast-dllm/engine-reference';
import {
  ATTENTION_SCORE_ROWS, checkLoadOptions, chooseFma, f32ToBF16, loadKernels as loadBuild, loadThreadedKernels, relaxedSimdAvailable,
  type WasmKernels, type Region, type WeightDType,
} from '../src/index.js';
import { ParallelOp, parallelJob } from '../src/kernels.js';
import { rowSlice } from '../src/pool.js';

/** Small deterministic generator for test inputs (mulberry32); not the engine RNG. */
function rand(seed: number): () => number {
  let a = seed >>> 0;
  return () => {
    a = (a + 0x6d2b79f5) >>> 0;
    let t = a;
    t = Math.imul(t ^ (t >>> 15), t | 1);
    t ^= t + Math.imul(t ^ (t >>> 7), t | 61);
    return ((t ^ (t >>> 14)) >>> 0) / 4294967296;
  };
}
function randn(n: number, seed: number, scale = 1): Float32Array {
  const r = rand(seed);
  const out = new Float32Array(n);
  for (let i = 0; i < n; i++) out[i] = (r() * 2 - 1) * scale;
  return out;
}

const GUARD = 12345.678;

/** Allocates out with one guard element on each side; returns the inner region. */
function allocGuarded(k: WasmKernels, length: number): Region {
  const outer = k.allocF32(length + 8);
  const f = k.f32(outer);
  f.fill(GUARD);
  return { ptr: outer.ptr + 16, length };
}
function guardsIntact(k: WasmKernels, r: Region): boolean {
  const before = new Float32Array(k.memory.buffer, r.ptr - 16, 4);
  const after = new Float32Array(k.memory.buffer, r.ptr + r.length * 4, 4);
  return [...before, ...after].every((v) => Math.fround(v) === Math.fround(GUARD));
}

function nmse(got: ArrayLike<number>, want: ArrayLike<number>): number {
  let num = 0;
  let den = 0;
  for (let i = 0; i < want.length; i++) {
    num += (got[i] - want[i]) ** 2;
    den += want[i] ** 2;
  }
  return num / Math.max(den, 1e-30);
}

function check(label: string, seed: number, got: Float32Array, want: ArrayLike<number>, tol: number): void {
  const bad = got.findIndex((v) => !Number.isFinite(v));
  expect(bad, `${label} seed=${seed}: non-finite at ${bad}`).toBe(-1);
  const e = nmse(got, want); if (process.env.PRINT_NMSE) console.log(label, seed, e);
  if (!(e <= tol)) {
    const pairs = Array.from({ length: Math.min(5, want.length) }, (_, i) =>
      `${Math.abs(got[i] - want[i]) <= 1e-4 * Math.max(1, Math.abs(want[i])) ? 'ok' : 'NOT OK'} ${got[i]} ${want[i]}`);
    throw new Error(`${label} seed=${seed}: NMSE ${e} > ${tol}\n${pairs.join('\n')}`);
  }
}

// ---- plain TS references (f64 accumulation)
function refMatmul(x: Float32Array, w: Float32Array, b: Float32Array | null, n: number, k: number, m: number): Float64Array {
  const y = new Float64Array(n * m);
  for (let i = 0; i < n; i++)
    for (let j = 0; j < m; j++) {
      let s = b ? b[j] : 0;
      for (let t = 0; t < k; t++) s += x[i * k + t] * w[j * k + t];
      y[i * m + j] = s;
    }
  return y;
}
function refRms(x: Float32Array, g: Float32Array, n: number, d: number, eps: number): Float64Array {
  const y = new Float64Array(n * d);
  for (let i = 0; i < n; i++) {
    let ss = 0;
    for (let c = 0; c < d; c++) ss += x[i * d + c] ** 2;
    const r = 1 / Math.sqrt(ss / d + eps);
    for (let c = 0; c < d; c++) y[i * d + c] = x[i * d + c] * r * g[c];
  }
  return y;
}
function refRope(x: Float32Array, pos: Int32Array, n: number, H: number, hd: number, theta: number): Float64Array {
  const y = Float64Array.from(x);
  const half = hd / 2;
  for (let i = 0; i < n; i++)
    for (let h = 0; h < H; h++)
      for (let c = 0; c < half; c++) {
        const ang = pos[i] * theta ** (-2 * c / hd);
        const o = (i * H + h) * hd;
        const a = x[o + c], bb = x[o + c + half];
        y[o + c] = a * Math.cos(ang) - bb * Math.sin(ang);
        y[o + c + half] = bb * Math.cos(ang) + a * Math.sin(ang);
      }
  return y;
}
function refAttention(q: Float32Array, k: Float32Array, v: Float32Array, nq: number, nk: number, H: number, KVH: number, hd: number, scale: number): Float64Array {
  const out = new Float64Array(nq * H * hd);
  const g = H / KVH;
  for (let i = 0; i < nq; i++)
    for (let h = 0; h < H; h++) {
      const kh = Math.floor(h / g);
      const s = new Float64Array(nk);
      for (let t = 0; t < nk; t++) {
        let d = 0;
        for (let c = 0; c < hd; c++) d += q[(i * H + h) * hd + c] * k[(t * KVH + kh) * hd + c];
        s[t] = d * scale;
      }
      const mx = Math.max(...s);
      let z = 0;
      for (let t = 0; t < nk; t++) z += (s[t] = Math.exp(s[t] - mx));
      for (let c = 0; c < hd; c++) {
        let a = 0;
        for (let t = 0; t < nk; t++) a += (s[t] / z) * v[(t * KVH + kh) * hd + c];
        out[(i * H + h) * hd + c] = a;
      }
    }
  return out;
}

// The three kernel builds a user can get: plain SIMD, SIMD + relaxed-SIMD FMA (skipped where the runtime lacks it),
// and the scalar debug build.
const builds = [
  { label: 'SIMD release build', simd: true, fma: false },
  { label: 'SIMD + FMA (relaxed SIMD) build', simd: true, fma: true },
  { label: 'scalar debug build', simd: false, fma: undefined },
] as const;
const haveFma = await relaxedSimdAvailable();

for (const { label, simd, fma } of builds) {
  describe.skipIf(fma === true && !haveFma)(`wasm kernels (${label})`, () => {
    const loadKernels = (): Promise<WasmKernels> => loadBuild({ simd, fma });
    // Shapes: aligned, ragged (in % 4 != 0, out % 4 != 0, n % 4 != 0), and the fixture/100M-model shapes cut down.
    const mmCases = [
      { n: 8, k: 64, m: 32, seed: 101 },
      { n: 5, k: 37, m: 13, seed: 102 },
      { n: 1, k: 3, m: 1, seed: 103 },
      { n: 33, k: 768, m: 70, seed: 104 },
      { n: 7, k: 601, m: 9, seed: 105 }, // three K blocks (256+256+89), ragged everywhere
      { n: 70, k: 300, m: 24, seed: 106 }, // two row blocks (64 + 6): 4-row tiles and 1-row leftovers
    ];
    for (const c of mmCases) {
      for (const bias of [false, true]) {
        it(`matmul n=${c.n} in=${c.k} out=${c.m} bias=${bias} seed=${c.seed}`, async () => {
          const K = await loadKernels();
          const x = randn(c.n * c.k, c.seed), w = randn(c.m * c.k, c.seed + 1), b = randn(c.m, c.seed + 2);
          const rx = K.allocF32(x.length, x), rw = K.allocWeight(w, c.m, c.k), rb = K.allocF32(b.length, b);
          const ry = allocGuarded(K, c.n * c.m);
          K.matmul(rx, rw, bias ? rb : null, ry, c.n);
          expect(guardsIntact(K, ry), `matmul guards seed=${c.seed}`).toBe(true);
          // f32 accumulation vs f64: measured NMSE 3e-16..2.4e-13 over the SIMD, FMA and scalar builds (worst: scalar,
          // in=768); 1e-11 leaves ~40× headroom.
          check('matmul', c.seed, K.f32(ry), refMatmul(x, w, bias ? b : null, c.n, c.k, c.m), 1e-11);
        });
      }
    }

    // int8 (@fast-dllm/model int8.ts) against the reference's op: the same quantized activations bit for bit, the
    // same integer block sums; only the float epilogue differs (f32 here, f64 there). Shapes as for f32, plus
    // in = 32 exactly and in < 32.
    for (const c of [...mmCases, { n: 4, k: 32, m: 8, seed: 107 }, { n: 3, k: 20, m: 11, seed: 108 }]) {
      it(`int8 matmul n=${c.n} in=${c.k} out=${c.m} seed=${c.seed}`, async () => {
        const K = await loadKernels();
        const x = randn(c.n * c.k, c.seed, 3), w = randn(c.m * c.k, c.seed + 1), b = randn(c.m, c.seed + 2);
        const rx = K.allocF32(x.length, x);
        const got = K.quantizeActivations(rx, c.n, c.k);
        const want = quantizeInt8Activations(x, c.n, c.k);
        expect(Array.from(got.q), `int8 activations seed=${c.seed}`).toEqual(Array.from(want.q));
        expect(Array.from(got.scale), `int8 scales seed=${c.seed}`).toEqual(Array.from(want.scale));
        got.correction.forEach((v, i) => expect(v).toBe(-64 * want.q.subarray(i * 32, i * 32 + 32).reduce((a, q) => a + q, 0) || 0));
        const ry = allocGuarded(K, c.n * c.m);
        K.matmul(rx, K.allocWeight(w, c.m, c.k, 'int8'), K.allocF32(c.m, b), ry, c.n);
        expect(guardsIntact(K, ry), `int8 matmul guards seed=${c.seed}`).toBe(true);
        // f32 epilogue vs f64: measured NMSE 3.9e-16..9.9e-15 over the three builds; 1e-12 leaves ~100× headroom.
        check('int8 matmul', c.seed, K.f32(ry), referenceInt8Matmul(x, quantizeInt8Weight(w, c.m, c.k), c.n, c.k, c.m, b), 1e-12);
        // And the quantization is real: against the float product the error is int8-sized, not f32-sized.
        expect(nmse(K.f32(ry), refMatmul(x, w, b, c.n, c.k, c.m))).toBeGreaterThan(1e-7);
      });
    }

    it('int8 weightRow returns the reference\'s dequantized rows, seed=122', async () => {
      const K = await loadKernels();
      const out = 13, inDim = 45;
      const w = randn(out * inDim, 122);
      const rw = K.allocWeight(w, out, inDim, 'int8');
      const m = quantizeInt8Weight(w, out, inDim);
      const row = new Float32Array(inDim), want = new Float32Array(inDim);
      for (let r = 0; r < out; r++) {
        K.weightRow(rw, r, row);
        dequantizeInt8Row(m, r, want);
        expect(Array.from(row), `row ${r}`).toEqual(Array.from(want));
      }
    });

    it('int8 matmul: a NaN in a row poisons that row only, seed=123', async () => {
      const K = await loadKernels();
      const n = 6, k = 64, m = 16;
      const x = randn(n * k, 123);
      x[2 * k + 40] = NaN;
      const ry = K.allocF32(n * m);
      K.matmul(K.allocF32(x.length, x), K.allocWeight(randn(m * k, 124), m, k, 'int8'), null, ry, n);
      const y = K.f32(ry);
      for (let i = 0; i < n; i++) expect(y.subarray(i * m, i * m + m).every((v) => (i === 2 ? Number.isNaN(v) : Number.isFinite(v))), `row ${i}`).toBe(true);
    });

    for (const dtype of ['f32', 'bf16'] as const) {
      it(`weightRow reads rows back from the packed ${dtype} layout, seed=121`, async () => {
        const K = await loadKernels();
        const out = 13, inDim = 5;
        const w = randn(out * inDim, 121);
        const rw = K.allocWeight(w, out, inDim, dtype);
        const want = dtype === 'bf16' ? new Float32Array(new Uint32Array(Array.from(f32ToBF16(w), (h) => h << 16)).buffer) : w;
        const row = new Float32Array(inDim);
        for (let r = 0; r < out; r++) {
          K.weightRow(rw, r, row);
          expect(Array.from(row), `row ${r}`).toEqual(Array.from(want.subarray(r * inDim, (r + 1) * inDim)));
        }
        expect(() => K.weightRow(rw, out, row)).toThrow(/row 13 outside 0..12/);
      });
    }

    for (const c of [{ n: 9, k: 70, m: 11, seed: 111 }, { n: 32, k: 768, m: 64, seed: 112 }, { n: 6, k: 300, m: 37, seed: 113 }]) {
      it(`matmul bf16 weights n=${c.n} in=${c.k} out=${c.m} seed=${c.seed}`, async () => {
        const K = await loadKernels();
        const x = randn(c.n * c.k, c.seed), w = randn(c.m * c.k, c.seed + 1), b = randn(c.m, c.seed + 2);
        const wq = new Float32Array(new Uint32Array(Array.from(f32ToBF16(w), (h) => h << 16)).buffer); // W rounded to bf16
        const rx = K.allocF32(x.length, x), rw = K.allocWeight(w, c.m, c.k, 'bf16'), rb = K.allocF32(c.m, b);
        const ry = allocGuarded(K, c.n * c.m);
        K.matmul(rx, rw, rb, ry, c.n);
        expect(guardsIntact(K, ry)).toBe(true);
        // Widening bf16 → f32 is exact, so only f32 accumulation differs: same spread as the f32 matmul.
        check('matmulBF16', c.seed, K.f32(ry), refMatmul(x, wq, b, c.n, c.k, c.m), 1e-11);
        // And the rounding is real: against the unrounded W the error is bf16-sized (~1e-6 NMSE), not ~1e-14.
        expect(nmse(K.f32(ry), refMatmul(x, w, b, c.n, c.k, c.m))).toBeGreaterThan(1e-9);
      });
    }

    for (const c of [{ n: 4, d: 64, seed: 201 }, { n: 3, d: 771, seed: 202 }]) {
      it(`rmsnorm n=${c.n} d=${c.d} seed=${c.seed}`, async () => {
        const K = await loadKernels();
        const x = randn(c.n * c.d, c.seed, 3), g = randn(c.d, c.seed + 1);
        const rx = K.allocF32(x.length, x), rg = K.allocF32(g.length, g), ry = allocGuarded(K, x.length);
        K.rmsnorm(rx, rg, ry, c.n, c.d, 1e-5);
        expect(guardsIntact(K, ry)).toBe(true);
        // Measured NMSE ~1e-15 (f32 rounding only).
        check('rmsnorm', c.seed, K.f32(ry), refRms(x, g, c.n, c.d, 1e-5), 1e-12);
      });
    }

    it('rope NeoX, absolute positions, seed=301', async () => {
      const K = await loadKernels();
      const n = 6, H = 3, hd = 16;
      const x = randn(n * H * hd, 301);
      const pos = Int32Array.from([0, 1, 7, 63, 300, 4095]);
      const rx = K.allocF32(x.length, x), rp = K.allocI32(n, pos);
      K.rope(rx, rp, n, H, hd, 10000);
      // Angles in f64, cos/sin rounded to f32: measured NMSE 1.2e-15.
      check('rope', 301, K.f32(rx), refRope(x, pos, n, H, hd, 10000), 1e-12);
    });

    it('rope through the cached cos/sin table gives the direct kernel\'s bits, as the table grows, seed=311', async () => {
      const K = await loadKernels();
      const ex = (K as unknown as { ex: { ropeNeox(x: number, p: number, n: number, h: number, hd: number, t: number): void } }).ex;
      for (const [hd, theta] of [[16, 10000], [20, 1e6], [24, 500000]] as const) {
        for (const positions of [[0, 1, 2, 3], [5, 200, 9, 64], [1000, 3, 4000, 250]]) {
          const n = positions.length, H = 3;
          const x = randn(n * H * hd, 311 + hd);
          const rp = K.allocI32(n, Int32Array.from(positions));
          const viaTable = K.allocF32(x.length, x), direct = K.allocF32(x.length, x);
          K.rope(viaTable, rp, n, H, hd, theta);
          ex.ropeNeox(direct.ptr, rp.ptr, n, H, hd, theta);
          expect(Array.from(K.f32(viaTable)), `hd ${hd} positions ${positions}`).toEqual(Array.from(K.f32(direct)));
        }
      }
      expect(() => K.rope(K.allocF32(16), K.allocI32(1, [-1]), 1, 1, 16, 10000)).toThrow(/position -1 at row 0 is negative/);
    });

    it('swiglu seed=401', async () => {
      const K = await loadKernels();
      const g = randn(97, 401, 8), u = randn(97, 402);
      const rg = K.allocF32(97, g), ru = K.allocF32(97, u), ro = allocGuarded(K, 97);
      K.swiglu(rg, ru, ro, 97);
      expect(guardsIntact(K, ro)).toBe(true);
      const want = Array.from(g, (v, i) => (v / (1 + Math.exp(-v))) * u[i]);
      // SIMD builds: exp by the f32x4 polynomial; scalar build: Mathf.exp. Measured NMSE 2.1e-15 on every build.
      check('swiglu', 401, K.f32(ro), want, 1e-12);
      // The polynomial exp over the whole range SiLU meets, clamps included: relative error of silu(g) vs float64.
      const n = 4001;
      const wide = Float32Array.from({ length: n }, (_, i) => -100 + (200 * i) / (n - 1));
      const rw = K.allocF32(n, wide), ones = K.allocF32(n, new Float32Array(n).fill(1)), rs = K.allocF32(n);
      K.swiglu(rw, ones, rs, n);
      const out = K.f32(rs);
      let worst = 0;
      for (let i = 0; i < n; i++) {
        const x = wide[i], exact = x / (1 + Math.exp(-x));
        worst = Math.max(worst, Math.abs(out[i] - exact) / Math.max(Math.abs(exact), 1e-30));
      }
      // f32 output: a few ulp (2^-23 ≈ 1.2e-7) of relative error at most, over [-100, 100].
      expect(worst, 'silu relative error').toBeLessThan(1e-6);
    });

    // hd 72: four 16-dim register blocks + two 4-dim ones; hd 66: plus a scalar tail; nk % 4 != 0 for the 4-key scores.
    for (const c of [
      { nq: 5, nk: 19, H: 4, KVH: 4, hd: 16, seed: 501 }, { nq: 3, nk: 40, H: 6, KVH: 2, hd: 10, seed: 502 },
      { nq: 4, nk: 37, H: 2, KVH: 1, hd: 72, seed: 503 }, { nq: 2, nk: 9, H: 2, KVH: 2, hd: 66, seed: 504 },
      // Three blocks of query rows (16, 16, 5: an odd row left after the pairs); hd 24: one 16-dim block, two 4-dim.
      { nq: 37, nk: 45, H: 3, KVH: 1, hd: 24, seed: 505 },
    ]) {
      it(`attention nq=${c.nq} nk=${c.nk} H=${c.H} KVH=${c.KVH} hd=${c.hd} seed=${c.seed}`, async () => {
        const K = await loadKernels();
        const q = randn(c.nq * c.H * c.hd, c.seed, 2), k = randn(c.nk * c.KVH * c.hd, c.seed + 1, 2), v = randn(c.nk * c.KVH * c.hd, c.seed + 2);
        const rq = K.allocF32(q.length, q), rk = K.allocF32(k.length, k), rv = K.allocF32(v.length, v);
        const ro = allocGuarded(K, q.length), rs = K.allocF32(ATTENTION_SCORE_ROWS * c.nk);
        const scale = 1 / Math.sqrt(c.hd);
        K.attention(rq, rk, rv, ro, rs, c.nq, c.nk, c.H, c.KVH, c.hd, scale);
        expect(guardsIntact(K, ro)).toBe(true);
        // f32 softmax with max subtraction: measured NMSE 1.6e-14..8.2e-14 over the three builds.
        check('attention', c.seed, K.f32(ro), refAttention(q, k, v, c.nq, c.nk, c.H, c.KVH, c.hd, scale), 1e-12);
      });
    }

    it('counter RNG matches rng.ts bit for bit (hash) and to 1e-12 (gumbel), seed=601', async () => {
      const K = await loadKernels();
      const r = rand(601);
      for (let t = 0; t < 2000; t++) {
        const s = (r() * 2 ** 32) >>> 0, f = (r() * 2 ** 32) >>> 0, p = (r() * 2 ** 32) >>> 0, l = (r() * 2 ** 32) >>> 0;
        expect(K.counterHash(s, f, p, l)).toBe(counterHash(s, f, p, l));
        expect(Math.abs(K.counterGumbel(s, f, p, l) - counterGumbel(s, f, p, l))).toBeLessThan(1e-12);
      }
    });

    it('reduceRow: argmax with ties to lowest id, probs, top2, entropy, Gumbel sample, seed=701', async () => {
      const K = await loadKernels();
      const V = 1000;
      const l = randn(V, 701, 5);
      l[10] = 9; l[500] = 9; // tie: lowest id wins
      const rl = K.allocF32(V, l), res = K.allocF32(10);
      const g = K.reduceRow(rl, V, res);
      const mx = Math.max(...l);
      const z = l.reduce((a, v) => a + Math.exp(v - mx), 0);
      const p = Array.from(l, (v) => Math.exp(v - mx) / z);
      const sorted = [...p].sort((a, b) => b - a);
      expect(g.token).toBe(10);
      expect(g.prob).toBeCloseTo(p[10], 12);
      expect(g.top1).toBeCloseTo(sorted[0], 12);
      expect(g.top2).toBeCloseTo(sorted[1], 12);
      expect(g.entropy).toBeCloseTo(-p.reduce((a, v) => a + (v > 0 ? v * Math.log(v) : 0), 0), 10);
      for (const T of [0.5, 1.3]) {
        const s = K.reduceRow(rl, V, res, T, 42, 3, 77);
        let best = -Infinity, arg = -1;
        for (let v = 0; v < V; v++) {
          const sc = l[v] / T + counterGumbel(42, 3, 77, v);
          if (sc > best) { best = sc; arg = v; }
        }
        expect(s.token).toBe(arg);
        expect(s.prob).toBeCloseTo(p[arg], 12);
      }
      // The mask token (here id 10, a top logit) is never proposed, greedy or sampled, and not ranked in top-1/2;
      // it still counts in the softmax (DESIGN §3).
      const m = K.reduceRow(rl, V, res, 0, 0, 0, 0, 10);
      expect(m.token).toBe(500);
      expect(m.prob).toBeCloseTo(p[500], 12);
      expect(m.top1).toBeCloseTo(p[500], 12);
      expect(m.top2).toBeCloseTo(sorted[2], 12);
      expect(m.entropy).toBeCloseTo(g.entropy, 12);
      const hot = Float32Array.from(l); hot[7] = 50; // a mask that dominates: the draw still never picks it
      const rh = K.allocF32(V, hot);
      for (const T of [0.5, 1.3]) expect(K.reduceRow(rh, V, res, T, 42, 3, 77, 7).token).not.toBe(7);
    });
  });
}

// The threads build with 2 threads: shapes above the split thresholds, so the rows really are divided between
// the caller and a worker (the fixture models are too small to be split).
describe('wasm kernels (threads build, 2 threads, rows split)', () => {
  for (const dtype of ['f32', 'bf16'] as const) {
    it(`matmul ${dtype} n=70 in=300 out=40 seed=801`, async () => {
      const K = await loadThreadedKernels(2);
      try {
        expect(K.threads).toBe(2);
        const x = randn(70 * 300, 801), w = randn(40 * 300, 802), b = randn(40, 803);
        const wq = dtype === 'bf16' ? new Float32Array(new Uint32Array(Array.from(f32ToBF16(w), (h) => h << 16)).buffer) : w;
        const ry = allocGuarded(K, 70 * 40);
        K.matmul(K.allocF32(x.length, x), K.allocWeight(w, 40, 300, dtype), K.allocF32(40, b), ry, 70);
        expect(guardsIntact(K, ry)).toBe(true);
        // Same kernel as one thread on each row slice: same spread as the single-thread cases (<= 2.4e-13).
        check(`threaded matmul ${dtype}`, 801, K.f32(ry), refMatmul(x, wq, b, 70, 300, 40), 1e-11);
      } finally {
        await K.parallel?.dispose();
      }
    });
  }

  it('the scores scratch the host allocates matches the attention kernel\'s block of query rows', async () => {
    for (const fma of [false, ...(await relaxedSimdAvailable() ? [true] : [])]) {
      const K = await loadBuild({ fma });
      expect((K as unknown as { ex: { attentionRows: WebAssembly.Global } }).ex.attentionRows.value).toBe(ATTENTION_SCORE_ROWS);
    }
  });

  it('swiglu split over 2 threads gives the one-thread SIMD kernel\'s values bit for bit (count % 4 != 0)', async () => {
    const count = (1 << 17) + 4099; // several 4096-element slices per thread, and a scalar tail of 3
    const g = randn(count, 821, 4), u = randn(count, 822);
    const one = await loadBuild({ fma: false });
    const ro1 = one.allocF32(count);
    one.swiglu(one.allocF32(count, g), one.allocF32(count, u), ro1, count);
    const K = await loadThreadedKernels(2, { fma: false });
    try {
      const ro2 = allocGuarded(K, count);
      K.swiglu(K.allocF32(count, g), K.allocF32(count, u), ro2, count);
      expect(guardsIntact(K, ro2)).toBe(true);
      expect(Buffer.from(K.f32(ro2).slice().buffer).equals(Buffer.from(one.f32(ro1).slice().buffer))).toBe(true);
      // Equal values alone could hide a slice that ends mid-vector (exp of a few values may agree by chance):
      // every thread's slice must start at a multiple of 4.
      const job = parallelJob({} as never, ParallelOp.SwiGLU, [0, 0, 0, count], 0);
      for (const threads of [2, 3, 4, 7]) {
        for (let i = 0; i < threads; i++) expect(rowSlice(job.n, threads, i, job.grain)[0] % 4).toBe(0);
      }
    } finally {
      await K.parallel?.dispose();
    }
  });

  it('attention nq=21 nk=64 H=4 KVH=2 hd=128 seed=811', async () => {
    const K = await loadThreadedKernels(2);
    try {
      const c = { nq: 21, nk: 64, H: 4, KVH: 2, hd: 128 };
      const q = randn(c.nq * c.H * c.hd, 811, 2), k = randn(c.nk * c.KVH * c.hd, 812, 2), v = randn(c.nk * c.KVH * c.hd, 813);
      const ro = allocGuarded(K, q.length), rs = K.allocF32(c.nk * ATTENTION_SCORE_ROWS * 2);
      const scale = 1 / Math.sqrt(c.hd);
      K.attention(K.allocF32(q.length, q), K.allocF32(k.length, k), K.allocF32(v.length, v), ro, rs, c.nq, c.nk, c.H, c.KVH, c.hd, scale);
      expect(guardsIntact(K, ro)).toBe(true);
      check('threaded attention', 811, K.f32(ro), refAttention(q, k, v, c.nq, c.nk, c.H, c.KVH, c.hd, scale), 1e-12);
      // A block of score rows per thread is required, and a short scratch is refused rather than shared.
      expect(() => K.attention(K.allocF32(q.length, q), K.allocF32(k.length, k), K.allocF32(v.length, v), ro, K.allocF32(c.nk), c.nq, c.nk, c.H, c.KVH, c.hd, scale))
        .toThrow(new RegExp(`attention scores: region holds 64 elements, the call needs ${ATTENTION_SCORE_ROWS * 64 * 2}`));
    } finally {
      await K.parallel?.dispose();
    }
  });

  it('reduceRows over 9 rows × 10000 equals reduceRow row by row (greedy and sampled), seed=821', async () => {
    const K = await loadThreadedKernels(2);
    try {
      const n = 9, V = 10000;
      const l = randn(n * V, 821, 6);
      const rl = K.allocF32(l.length, l), res = { ptr: K.alloc(n * 40), length: n * 5 }, one = { ptr: K.alloc(40), length: 5 };
      // Every row its own key (rows of different sequences share a pass): position, seed, forward index, temperature.
      const keys = Uint32Array.from({ length: 3 * n }, (_, j) => (j % 3 === 0 ? 100 + j : j % 3 === 1 ? 7 + j : 11 * j));
      const temps = Float64Array.from({ length: n }, (_, i) => (i % 3 === 0 ? 0 : 0.4 + 0.1 * i));
      const rk = K.allocI32(3 * n, new Int32Array(keys.buffer)), rt = { ptr: K.alloc(8 * n), length: n };
      new Float64Array(K.memory.buffer, rt.ptr, n).set(temps);
      for (const mask of [-1, 3]) {
        const rows = K.reduceRows(rl, V, n, rk, rt, res, mask);
        for (let i = 0; i < n; i++) {
          const want = K.reduceRow({ ptr: rl.ptr + i * V * 4, length: V }, V, one, temps[i], keys[3 * i + 1], keys[3 * i + 2], keys[3 * i], mask);
          expect(rows[i], `row ${i} mask=${mask}`).toEqual(want);
        }
      }
    } finally {
      await K.parallel?.dispose();
    }
  });
});

describe('int8 matmul: one result whatever the build, the batch or the thread split', () => {
  const n = 70, k = 300, m = 40; // above the split threshold (n·k·m ≥ 2^19), ragged everywhere
  const x = randn(n * k, 901, 2), w = randn(m * k, 902), b = randn(m, 903);
  const run = (K: WasmKernels, dtype: WeightDType, rows: number[][]): Float32Array => {
    const rw = K.allocWeight(w, m, k, dtype), rb = K.allocF32(m, b);
    const y = new Float32Array(n * m); // (n, m)
    for (const [lo, hi] of rows) {
      const ry = K.allocF32((hi - lo) * m);
      K.matmul(K.allocF32((hi - lo) * k, x.subarray(lo * k, hi * k)), rw, rb, ry, hi - lo);
      y.set(K.f32(ry), lo * m);
    }
    return y;
  };
  const bitwise = (a: Float32Array, c: Float32Array) => a.every((v, i) => Object.is(v, c[i]));

  it('SIMD, relaxed-SIMD (both dot forms) and scalar builds give identical int8 results (exact integer sums, one epilogue order), seed=901', async () => {
    const all = [[0, n]];
    const scalar = await loadBuild({ simd: false });
    const want = run(scalar, 'int8', all);
    expect(scalar.int8Dot).toBe('scalar');
    const simd = await loadBuild({ simd: true, fma: false });
    expect(bitwise(run(simd, 'int8', all), want)).toBe(true);
    expect(simd.int8Dot).toBe('simd128');
    if (haveFma) {
      for (const form of ['split', 'fused'] as const) {
        const K = await loadBuild({ simd: true, fma: true });
        K.useInt8Dot(form);
        expect(bitwise(run(K, 'int8', all), want), form).toBe(true);
        expect(K.int8Dot).toBe(`relaxed-${form}`);
      }
      const timed = await loadBuild({ simd: true, fma: true });
      run(timed, 'int8', all);
      expect(timed.int8Dot).toMatch(/^relaxed-(split|fused)$/); // chosen by timing when the first int8 weight was allocated
      const T = await loadThreadedKernels(2);
      try {
        T.useInt8Dot('fused');
        expect(bitwise(run(T, 'int8', all), want), 'fused, 2 threads').toBe(true);
      } finally {
        await T.parallel?.dispose();
      }
    }
  });

  // DESIGN §7: a row's result must not depend on the other rows of the call, on the tile it lands in (4-row tiles,
  // leftover rows) or on the thread that computes it.
  for (const dtype of ['int8', 'f32', 'bf16'] as const) {
    it(`${dtype}: each row alone, in uneven batches and split over 2 threads gives the same bits as one call, seed=901`, async () => {
      const K = await loadBuild();
      const whole = run(K, dtype, [[0, n]]);
      expect(bitwise(run(K, dtype, Array.from({ length: n }, (_, i) => [i, i + 1])), whole), 'rows one at a time').toBe(true);
      expect(bitwise(run(K, dtype, [[0, 3], [3, 13], [13, 70]]), whole), 'batches of 3, 10, 57').toBe(true);
      const T = await loadThreadedKernels(2);
      try {
        expect(bitwise(run(T, dtype, [[0, n]]), whole), '2 threads').toBe(true);
        expect(bitwise(run(T, dtype, [[0, 1], [1, 70]]), whole), '2 threads, 1 + 69 rows').toBe(true);
      } finally {
        await T.parallel?.dispose();
      }
    });
  }
});

describe('f32ToBF16', () => {
  it('rounds to nearest even and keeps NaN/Inf', () => {
    const src = new Float32Array(new Uint32Array([0x3f808000, 0x3f818000, 0x3f808001, 0x7f800000, 0x7fc00001, 0xff800000]).buffer);
    expect(Array.from(f32ToBF16(src))).toEqual([0x3f80, 0x3f82, 0x3f81, 0x7f80, 0x7fc0, 0xff80]);
  });
});

describe('loader options shared by Node and browsers', () => {
  it('checks threads, simd and dtype, and picks FMA only where it runs', () => {
    expect(checkLoadOptions({})).toEqual({ threads: 1, dtype: 'f32' });
    expect(checkLoadOptions({ threads: 2, weightDType: 'bf16' })).toEqual({ threads: 2, dtype: 'bf16' });
    expect(checkLoadOptions({ weightDType: 'int8' })).toEqual({ threads: 1, dtype: 'int8' });
    expect(() => checkLoadOptions({ threads: 1.5 })).toThrow(/threads must be a positive integer; got 1.5/);
    expect(() => checkLoadOptions({ threads: 2, simd: false })).toThrow(/threads > 1 needs the SIMD threads build/);
    expect(() => checkLoadOptions({ weightDType: 'f16' })).toThrow(/'f16' is not supported yet/);
    expect(chooseFma(undefined, true)).toBe(true);
    expect(chooseFma(undefined, false)).toBe(false);
    expect(chooseFma(false, true)).toBe(false);
    expect(() => chooseFma(true, false)).toThrow(/fma requested but this runtime has no WebAssembly relaxed SIMD/);
  });
});

describe('wasm memory limits', () => {
  it('refuses more than 4 GiB with the amount needed', async () => {
    const K = await loadBuild();
    expect(() => K.alloc(5 * 2 ** 30)).toThrow(/needs 5\.00 GiB .*at most 4 GiB/);
  });
  it('scalar build refuses simd: true', async () => {
    await expect(loadBuild({ build: 'scalar', simd: true })).rejects.toThrow(/scalar build/);
  });
});

describe('batch invariance of the row kernels (DESIGN §7)', () => {
  // A row's bits must not depend on how many rows share the call or how the rows are split between threads:
  // the same rows computed inside calls of 1, 5 and 37 rows, on 1 and 2 threads, must be bit-identical.
  for (const dtype of ['f32', 'bf16'] as const) {
    it(`matmul ${dtype}: rows alone = rows inside bigger calls, 1 and 2 threads, seed=901`, async () => {
      const inDim = 300, out = 70, n = 37;
      const x = randn(n * inDim, 901), w = randn(out * inDim, 902), b = randn(out, 903);
      const run = (K: WasmKernels, rows: number, from: number) => {
        const ry = K.allocF32(rows * out);
        K.matmul(K.allocF32(rows * inDim, x.subarray(from * inDim, (from + rows) * inDim)), K.allocWeight(w, out, inDim, dtype), K.allocF32(out, b), ry, rows);
        return K.f32(ry).slice();
      };
      const one = await loadBuild();
      const two = await loadThreadedKernels(2);
      try {
        const all1 = run(one, n, 0), all2 = run(two, n, 0), five = run(one, 5, 10);
        for (const r of [0, 3, 12, 36]) {
          const alone = run(one, 1, r);
          expect(Array.from(all1.subarray(r * out, (r + 1) * out)), `row ${r} in 37 rows`).toEqual(Array.from(alone));
          expect(Array.from(all2.subarray(r * out, (r + 1) * out)), `row ${r} in 37 rows, 2 threads`).toEqual(Array.from(alone));
        }
        expect(Array.from(five.subarray(2 * out, 3 * out))).toEqual(Array.from(all1.subarray(12 * out, 13 * out)));
      } finally {
        await two.parallel?.dispose();
      }
    });
  }
});

describe('block allocator (sequence caches and pass scratch)', () => {
  it('reuses freed blocks first-fit, merges neighbours, lowers the top, and counts what fits', async () => {
    const K = await loadBuild();
    const base = K.usedBytes;
    const a = K.allocBlock(1000), b = K.allocBlock(2000), c = K.allocBlock(1000);
    expect(K.usedBytes).toBe(base + 1008 + 2000 + 1008);
    K.freeBlock(b);
    expect(K.allocBlock(500)).toBe(b); // first fit inside the freed block
    const d = K.allocBlock(1400); // the 1504 bytes left behind it
    expect(d).toBe(b + 512);
    K.freeBlock(a); K.freeBlock(b); K.freeBlock(d); // merge into one 3024-byte hole
    expect(K.allocBlock(3000)).toBe(a);
    K.freeBlock(a); K.freeBlock(c);
    expect(K.usedBytes).toBe(base); // everything free: the top comes back down
    expect(K.blocksThatFit(2 ** 30)).toBe(Math.floor((4 * 2 ** 30 - base) / 2 ** 30));
    expect(() => K.allocBlock(5 * 2 ** 30)).toThrow(/wasm32 addresses at most 4 GiB/);
    expect(() => K.freeBlock(a)).toThrow(/not an allocated block/);
  });
});
