/**
 * Kernel-level conformance of the cuda engine: the GEMMs and attention against a float64 reference on fresh
 * random inputs, at shapes the model fixtures never reach (split k, k not a multiple of 8, many k steps, partial
 * tiles, GQA, long canvases, block-causal masks, several sequences in one pass), and batch invariance (DESIGN §7):
 * a row computed in a pass of 32 rows and in a pass of 512 rows, or alone and beside other sequences, and under
 * either schedule of the split sums, has the same bits. Runs on the GPU addon where there is a device and on the
 * CPU emulator build everywhere; a backend that is missing reports "not supported" with its reason, except that
 * FAST_DLLM_REQUIRE_GPU=1 turns a missing GPU into a failure (bench/cuda/device-run.sh sets it).
 */
import { describe, expect, it } from 'vitest';
import { bf16ToF32 } from '@fast-dllm/model';
import {
  ADDON_PATH, attentionChunk, EMULATOR_ADDON_PATH, gemmSplits, loadBinding, toBf16,
  type AttentionProbeSequence, type KernelProbes, type Schedule,
} from '../src/index.js';

const REQUIRE_GPU = process.env.FAST_DLLM_REQUIRE_GPU === '1';

function backend(path: string): [string, KernelProbes | undefined, string] {
  const b = loadBinding(path);
  const name = path === EMULATOR_ADDON_PATH ? 'emulator' : 'gpu';
  if (!b.ok) return [name, undefined, `not supported: ${b.reason}`];
  const info = b.binding.deviceInfo();
  if (!info.available) return [name, undefined, `not supported: ${info.reason}`];
  return [name, b.binding.kernels, ''];
}
const BACKENDS = [backend(ADDON_PATH), backend(EMULATOR_ADDON_PATH)];

/** Deterministic uniform [-1, 1) values (xorshift32), so a failure names a seed that reproduces it. */
function random(count: number, seed: number): Float32Array {
  let s = seed >>> 0 || 1;
  const out = new Float32Array(count);
  for (let i = 0; i < count; i++) {
    s ^= s << 13;
    s >>>= 0;
    s ^= s >>> 17;
    s ^= s << 5;
    s >>>= 0;
    out[i] = s / 2 ** 31 - 1;
  }
  return out;
}

/** x rounded to bf16 and back, as the device stores it. */
const roundBf16 = (x: Float32Array) => Float32Array.from(toBf16(x), bf16ToF32);

/**
 * Checks got against want element by element with |got - want| <= tol * scale[i] + 1e-7, where scale is the sum of
 * |products| that made the element (the size of f32 rounding in it). Prints the first mismatches, llm.c style.
 */
function expectClose(label: string, got: Float32Array, want: Float64Array, scale: Float64Array, tol: number) {
  expect(got.length).toBe(want.length);
  const bad: string[] = [];
  let worst = 0;
  for (let i = 0; i < want.length; i++) {
    expect(Number.isFinite(got[i]), `${label}: element ${i} is ${got[i]}`).toBe(true);
    const err = Math.abs(got[i] - want[i]) / (scale[i] + 1e-7);
    worst = Math.max(worst, err);
    if (err > tol && bad.length < 5) bad.push(`NOT OK [${i}] ${got[i]} vs ${want[i]}`);
  }
  expect(bad, `${label}: worst scaled error ${worst.toExponential(2)}\n${bad.join('\n')}`).toEqual([]);
}

/** Bit-for-bit equality of two f32 arrays, naming the first element that differs. */
function expectSameBits(label: string, got: Float32Array, want: Float32Array) {
  expect(got.length, label).toBe(want.length);
  const g = new Uint32Array(got.buffer, got.byteOffset, got.length);
  const w = new Uint32Array(want.buffer, want.byteOffset, want.length);
  const i = g.findIndex((x, j) => x !== w[j]);
  expect(i, i < 0 ? label : `${label}: element ${i} is ${got[i]}, expected ${want[i]} bit for bit`).toBe(-1);
}

/** The float64 reference of bf16(A) @ W^T + bias + C0, and the magnitude of the terms of each element. */
function gemmReference(A: Float32Array, W: Uint16Array, bias: Float32Array | null, C0: Float32Array | null, m: number, n: number, k: number) {
  const A16 = toBf16(A); // the kernel rounds A to bf16 on the device
  const want = new Float64Array(m * n);
  const scale = new Float64Array(m * n);
  for (let r = 0; r < m; r++) for (let c = 0; c < n; c++) {
    let acc = (bias ? bias[c] : 0) + (C0 ? C0[r * n + c] : 0);
    let mag = Math.abs(acc);
    for (let i = 0; i < k; i++) {
      const p = bf16ToF32(A16[r * k + i]) * bf16ToF32(W[c * k + i]);
      acc += p;
      mag += Math.abs(p);
    }
    want[r * n + c] = acc;
    scale[r * n + c] = mag;
  }
  return { want, scale };
}

/** The float64 reference of one attention pass over `seqs` (K/V rounded to bf16 when kvBf16), with masks. */
function attentionReference(q: Float32Array, seqs: AttentionProbeSequence[], H: number, KV: number, hd: number, kvBf16: boolean) {
  const rows = seqs.reduce((a, s) => a + s.nq, 0);
  const want = new Float64Array(rows * H * hd);
  const scale = new Float64Array(rows * H * hd);
  let q0 = 0;
  for (const sq of seqs) {
    const k = kvBf16 ? roundBf16(sq.k) : sq.k;
    const v = kvBf16 ? roundBf16(sq.v) : sq.v;
    const L = k.length / (KV * hd);
    const B = sq.causalBlock ?? 0;
    for (let i = 0; i < sq.nq; i++) for (let h = 0; h < H; h++) {
      const pos = (sq.pos0 ?? 0) + i;
      const visible = B > 0 ? Math.min(L, (Math.floor(pos / B) + 1) * B) : L;
      const kvh = Math.floor(h / (H / KV));
      const s = new Float64Array(visible);
      for (let j = 0; j < visible; j++) {
        for (let t = 0; t < hd; t++) s[j] += q[((q0 + i) * H + h) * hd + t] * k[(j * KV + kvh) * hd + t];
        s[j] /= Math.sqrt(hd);
      }
      const mx = s.reduce((a, b) => Math.max(a, b), -Infinity);
      let z = 0;
      for (let j = 0; j < visible; j++) z += (s[j] = Math.exp(s[j] - mx));
      for (let t = 0; t < hd; t++) {
        const o = ((q0 + i) * H + h) * hd + t;
        for (let j = 0; j < visible; j++) {
          want[o] += (s[j] / z) * v[(j * KV + kvh) * hd + t];
          scale[o] += (s[j] / z) * Math.abs(v[(j * KV + kvh) * hd + t]);
        }
      }
    }
    q0 += sq.nq;
  }
  return { want, scale };
}

/** A sequence of L random keys/values with nq queries at pos0 (q is made by the caller). */
function sequence(L: number, KV: number, hd: number, seed: number, over: Partial<AttentionProbeSequence> & { nq: number }): AttentionProbeSequence {
  return { k: random(L * KV * hd, seed), v: random(L * KV * hd, seed + 1), n0: L, ...over };
}

describe.each(BACKENDS)('cuda kernels on %s', (name, kernels, skip) => {
  /** Skips with the reason, or fails it when the run requires a GPU and this is the GPU backend. */
  const unavailable = (ctx: { skip: (note?: string) => void }) => {
    if (REQUIRE_GPU && name === 'gpu') throw new Error(`FAST_DLLM_REQUIRE_GPU=1 but the GPU backend is ${skip}`);
    ctx.skip(skip);
  };

  // [m, n, k, splits, accumulate]: partial row/column tiles; k % 8 != 0 (scalar loads); several k steps; split k
  // that divides unevenly; more splits asked for than k allows; the residual-add mode with and without split k.
  const GEMMS: [number, number, number, number, boolean][] = [
    [1, 20, 24, 1, false], [33, 130, 200, 1, false], [7, 40, 77, 1, false], [17, 64, 520, 3, false], [3, 16, 64, 4, false],
    [40, 136, 136, 2, true], [9, 24, 96, 1, true],
    // 128-row block tiles (m >= 96): partial row and column tiles; with split k, scalar loads and the residual add
    [130, 136, 136, 1, false], [100, 40, 77, 2, true], [96, 72, 600, 3, false],
  ];
  it.for(GEMMS)('gemmBf16 m=%i n=%i k=%i splits=%i accumulate=%s, both schedules', async ([m, n, k, splits, accumulate], ctx) => {
    if (!kernels) return unavailable(ctx);
    const seed = m * 1000003 + n * 1009 + k;
    const A = random(m * k, seed);
    const W = toBf16(random(n * k, seed + 1));
    const bias = random(n, seed + 2);
    const C0 = accumulate ? random(m * n, seed + 3) : null;
    const parallel = await kernels.gemmBf16(A, W, bias, m, n, k, splits, C0, 1);
    const serial = await kernels.gemmBf16(A, W, bias, m, n, k, splits, C0, 2);
    const { want, scale } = gemmReference(A, W, bias, C0, m, n, k);
    // Products of bf16 values are exact in f32; only the f32 sums round (k <= 600: worst ~k * 2^-24).
    expectClose(`gemmBf16 seed ${seed}`, parallel, want, scale, 4e-5);
    expectSameBits(`gemmBf16 seed ${seed}: serial vs parallel schedule`, serial, parallel);
  });

  it('gemmBf16: a row has the same bits in a pass of 512 rows and of 32, under either schedule (DESIGN §7)', async (ctx) => {
    if (!kernels) return unavailable(ctx);
    // (n, k) = (128, 576): the engine splits k in 2 for this weight, whatever the rows.
    const n = 128, k = 576, big = 512, r0 = 200;
    expect(kernels.gemmSplits(n, k)).toBe(2);
    const A = random(big * k, 77);
    const W = toBf16(random(n * k, 78));
    const bias = random(n, 79);
    const C0 = random(big * n, 80);
    const rows = (x: Float32Array, width: number, from: number, count: number) => x.slice(from * width, (from + count) * width);
    const runs: [string, Float32Array][] = [];
    for (const schedule of [1, 2] as Schedule[]) {
      const full = await kernels.gemmBf16(A, W, bias, big, n, k, 0, C0, schedule);
      runs.push([`512 rows, schedule ${schedule}`, rows(full, n, r0, 32)]);
      const part = await kernels.gemmBf16(rows(A, k, r0, 32), W, bias, 32, n, k, 0, rows(C0, n, r0, 32), schedule);
      runs.push([`32 rows, schedule ${schedule}`, part]);
      const one = await kernels.gemmBf16(rows(A, k, r0 + 5, 1), W, bias, 1, n, k, 0, rows(C0, n, r0 + 5, 1), schedule);
      expectSameBits(`1 row, schedule ${schedule}`, one, rows(part, n, 5, 1));
    }
    const sub = rows(A, k, r0, 32);
    const { want, scale } = gemmReference(sub, W, bias, rows(C0, n, r0, 32), 32, n, k);
    expectClose('gemmBf16 512/32 rows', runs[0][1], want, scale, 4e-5);
    for (const [label, got] of runs.slice(1)) expectSameBits(label, got, runs[0][1]);
  });

  it.for([[19, 37, 45, false], [1, 3, 200, false], [64, 16, 16, true]] as const)('gemmF32 m=%i n=%i k=%i accumulate=%s', async ([m, n, k, accumulate], ctx) => {
    if (!kernels) return unavailable(ctx);
    const seed = m * 7919 + n * 31 + k;
    const A = random(m * k, seed);
    const W = random(n * k, seed + 1);
    const C0 = accumulate ? random(m * n, seed + 2) : null;
    const C = await kernels.gemmF32(A, W, null, m, n, k, C0);
    const want = C0 ? Float64Array.from(C0) : new Float64Array(m * n);
    const scale = C0 ? Float64Array.from(C0, Math.abs) : new Float64Array(m * n);
    for (let r = 0; r < m; r++) for (let c = 0; c < n; c++) {
      for (let i = 0; i < k; i++) {
        want[r * n + c] += A[r * k + i] * W[c * k + i];
        scale[r * n + c] += Math.abs(A[r * k + i] * W[c * k + i]);
      }
    }
    expectClose(`gemmF32 seed ${seed}`, C, want, scale, 4e-5);
  });

  // [nq, L, H, KV, hd, n0]: GQA 2:1 with a segment boundary inside a key tile; one query over many tiles and 3 key
  // splits; several query tiles with a partial last one and hd = 128 (four dims per lane); every key in segment 1;
  // tiny L; head sizes whose rows are not whole 16-byte pieces (4-byte copies, zero-padded to 8 dims).
  const ATTENTION: [number, number, number, number, number, number][] = [
    [3, 37, 4, 2, 16, 20], [1, 300, 2, 1, 72, 300], [35, 70, 2, 2, 128, 64], [5, 40, 1, 1, 8, 0], [2, 1, 2, 1, 32, 1],
    [4, 50, 2, 1, 12, 25], [6, 33, 1, 1, 6, 10],
  ];
  describe.each([['f32', false], ['bf16', true]] as const)('K/V in %s', (_dtype, kvBf16) => {
    it.for(ATTENTION)('attention nq=%i L=%i H=%i KV=%i hd=%i n0=%i', async ([nq, L, H, KV, hd, n0], ctx) => {
      if (!kernels) return unavailable(ctx);
      const seed = nq * 100 + L * 10 + hd;
      const q = random(nq * H * hd, seed).map((x) => 3 * x); // sharper softmax than uniform noise gives
      const seqs = [sequence(L, KV, hd, seed + 1, { nq, n0, pos0: L - nq })];
      const out = await kernels.attention(q, seqs, { H, KV, hd, kvBf16 });
      const { want, scale } = attentionReference(q, seqs, H, KV, hd, kvBf16);
      expectClose(`attention seed ${seed}`, out, want, scale, 1e-5);
    });
  });

  // A DualCache step's 32 queries over long canvases: the keys split in 4, 16 and 32 (parallel schedule, then the
  // combine pass), against float64, and the serial schedule gives the same bits. Few heads and small head_dim:
  // the test is about the split logic (the emulator is slow).
  it.for([[512, 512], [2048, 1900], [4096, 4096]] as const)('attention over a canvas of %i (n0 %i), 32 queries, bf16 K/V', async ([L, n0], ctx) => {
    if (!kernels) return unavailable(ctx);
    const H = 2, KV = 1, hd = 16, nq = 32;
    expect(Math.ceil(L / kernels.attentionChunk(L))).toBe({ 512: 4, 2048: 16, 4096: 32 }[L]);
    const q = random(nq * H * hd, L).map((x) => 3 * x);
    const seqs = [sequence(L, KV, hd, L + 1, { nq, n0, pos0: 256 })];
    const parallel = await kernels.attention(q, seqs, { H, KV, hd, kvBf16: true, schedule: 1 });
    const { want, scale } = attentionReference(q, seqs, H, KV, hd, true);
    expectClose(`attention L=${L}`, parallel, want, scale, 1e-5);
    const serial = await kernels.attention(q, seqs, { H, KV, hd, kvBf16: true, schedule: 2 });
    expectSameBits(`attention L=${L}: serial vs parallel`, serial, parallel);
    const auto = await kernels.attention(q, seqs, { H, KV, hd, kvBf16: true });
    expectSameBits(`attention L=${L}: the engine's schedule`, auto, parallel);
  });

  it('attention: a query row has the same bits in a pass of 512 queries and of 32 (DESIGN §7), bidirectional and block-causal', async (ctx) => {
    if (!kernels) return unavailable(ctx);
    const L = 512, H = 4, KV = 2, hd = 32, r0 = 200;
    const q = random(L * H * hd, 5);
    const kv = sequence(L, KV, hd, 6, { nq: L });
    for (const causalBlock of [0, 32]) {
      const all = await kernels.attention(q, [{ ...kv, nq: L, pos0: 0, causalBlock }], { H, KV, hd, kvBf16: true });
      const some = await kernels.attention(q.slice(r0 * H * hd, (r0 + 32) * H * hd), [{ ...kv, nq: 32, pos0: r0, causalBlock }], { H, KV, hd, kvBf16: true });
      expectSameBits(`causalBlock ${causalBlock}: rows ${r0}..${r0 + 31}`, some, all.slice(r0 * H * hd, (r0 + 32) * H * hd));
      const seqs = [{ ...kv, nq: 32, pos0: r0, causalBlock }];
      const { want, scale } = attentionReference(q.slice(r0 * H * hd, (r0 + 32) * H * hd), seqs, H, KV, hd, true);
      expectClose(`causalBlock ${causalBlock}`, some, want, scale, 1e-5);
    }
  });

  it('attention: several sequences in one pass (prefix, dual and block-causal extend shapes) give each one\'s own bits', async (ctx) => {
    if (!kernels) return unavailable(ctx);
    const H = 4, KV = 2, hd = 16;
    const seqs = [
      sequence(300, KV, hd, 11, { n0: 290, nq: 10, pos0: 290 }), // prefix step: cache [0, 290) + 10 fresh rows
      sequence(700, KV, hd, 12, { nq: 32, pos0: 100 }),           // dual step: block [100, 132) in a written cache
      sequence(96, KV, hd, 13, { n0: 32, nq: 64, pos0: 32, causalBlock: 32 }), // extend: two new blocks, block-causal
    ];
    const rows = seqs.reduce((a, s) => a + s.nq, 0);
    const q = random(rows * H * hd, 14).map((x) => 2 * x);
    const together = await kernels.attention(q, seqs, { H, KV, hd, kvBf16: true, schedule: 1 });
    const { want, scale } = attentionReference(q, seqs, H, KV, hd, true);
    expectClose('three sequences', together, want, scale, 1e-5);
    let q0 = 0;
    for (const [i, s] of seqs.entries()) {
      const own = q.slice(q0 * H * hd, (q0 + s.nq) * H * hd);
      const alone = await kernels.attention(own, [s], { H, KV, hd, kvBf16: true, schedule: 2 });
      expectSameBits(`sequence ${i} alone vs in the pass`, alone, together.slice(q0 * H * hd, (q0 + s.nq) * H * hd));
      q0 += s.nq;
    }
  });

  it('attention with head_dim over 128 or odd is refused, naming the call', async (ctx) => {
    if (!kernels) return unavailable(ctx);
    for (const hd of [160, 7]) {
      const seqs = [sequence(4, 1, hd, 1, { nq: 1, n0: 2 })];
      await expect(kernels.attention(new Float32Array(hd), seqs, { H: 1, KV: 1, hd })).rejects.toThrow(/fdl::attention.*invalid argument/);
    }
  });

  it('mismatched sizes are a RangeError, before any device work', (ctx) => {
    if (!kernels) return unavailable(ctx);
    expect(() => kernels.gemmF32(new Float32Array(5), new Float32Array(6), null, 2, 3, 2)).toThrow(/A holds 5 elements, expected 4/);
    const seqs = [{ k: new Float32Array(8), v: new Float32Array(8), n0: 2, nq: 1 }];
    expect(() => kernels.attention(new Float32Array(8), seqs, { H: 1, KV: 1, hd: 8 })).toThrow(/n0 must be in/);
    expect(() => kernels.gemmBf16(new Float32Array(4), new Uint16Array(6), null, 2, 3, 2, 1, null, 3 as Schedule)).toThrow(/schedule must be/);
  });

  it('plan.ts sizes scratch with the kernels\' own split choices', (ctx) => {
    if (!kernels) return unavailable(ctx);
    for (const [n, k] of [[12288, 4096], [4096, 4096], [24576, 4096], [4096, 12288], [126464, 4096], [64, 64], [136, 576]]) {
      expect(gemmSplits(n, k), `${n} x ${k}`).toBe(kernels.gemmSplits(n, k));
    }
    for (const L of [1, 40, 512, 2048, 4096, 4097, 8192, 100000]) expect(attentionChunk(L), `L ${L}`).toBe(kernels.attentionChunk(L));
  });
});
