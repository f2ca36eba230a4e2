/**
 * Kernel-level conformance of the cuda engine: the GEMMs and attention against a float64 reference on fresh
 * random inputs, at shapes the model fixtures never reach (split k, k not a multiple of 8, many k steps, partial
 * tiles, GQA). Runs on the GPU addon where there is a device and on the CPU emulator build everywhere; a backend
 * that is missing reports "not supported" with its reason.
 */
import { describe, expect, it } from 'vitest';
import { bf16ToF32 } from '@fast-dllm/model';
import { ADDON_PATH, EMULATOR_ADDON_PATH, loadBinding, toBf16, type KernelProbes } from '../src/index.js';

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

describe.each(BACKENDS)('cuda kernels on %s', (_name, kernels, skip) => {
  // [m, n, k, splits, accumulate]: partial row/column tiles; k % 8 != 0 (scalar loads); several k steps; split k
  // that divides unevenly; more splits asked for than k allows; the residual-add mode with and without split k.
  const GEMMS: [number, number, number, number, boolean][] = [
    [1, 20, 24, 1, false], [33, 130, 200, 1, false], [7, 40, 77, 1, false], [17, 64, 520, 3, false], [3, 16, 64, 4, false],
    [40, 136, 136, 2, true], [9, 24, 96, 1, true],
    // 128-row block tiles (m >= 96): partial row and column tiles; with split k, scalar loads and the residual add
    [130, 136, 136, 1, false], [100, 40, 77, 2, true],
  ];
  it.for(GEMMS)('gemmBf16 m=%i n=%i k=%i splits=%i accumulate=%s', async ([m, n, k, splits, accumulate], ctx) => {
    if (!kernels) return ctx.skip(skip);
    const seed = m * 1000003 + n * 1009 + k;
    const A = random(m * k, seed);
    const W = toBf16(random(n * k, seed + 1));
    const bias = random(n, seed + 2);
    const C0 = accumulate ? random(m * n, seed + 3) : null;
    const C = await kernels.gemmBf16(A, W, bias, m, n, k, splits, C0);
    const A16 = toBf16(A); // the kernel rounds A to bf16 on the device
    const want = new Float64Array(m * n);
    const scale = new Float64Array(m * n);
    for (let r = 0; r < m; r++) for (let c = 0; c < n; c++) {
      let acc = bias[c] + (C0 ? C0[r * n + c] : 0);
      let mag = Math.abs(acc);
      for (let i = 0; i < k; i++) {
        const p = bf16ToF32(A16[r * k + i]) * bf16ToF32(W[c * k + i]);
        acc += p;
        mag += Math.abs(p);
      }
      want[r * n + c] = acc;
      scale[r * n + c] = mag;
    }
    // Products of bf16 values are exact in f32; only the f32 sums round (k <= 520: worst ~k * 2^-24).
    expectClose(`gemmBf16 seed ${seed}`, C, want, scale, 4e-5);
  });

  it.for([[19, 37, 45, false], [1, 3, 200, false], [64, 16, 16, true]] as const)('gemmF32 m=%i n=%i k=%i accumulate=%s', async ([m, n, k, accumulate], ctx) => {
    if (!kernels) return ctx.skip(skip);
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

  // [nq, L, H, KV, hd, n0]: GQA 2:1 with a segment boundary inside a key tile; one query over many tiles; several
  // query chunks with a partial last one and hd = 128 (four dims per lane); every key in segment 1; tiny L.
  const ATTENTION: [number, number, number, number, number, number][] = [
    [3, 37, 4, 2, 16, 20], [1, 300, 2, 1, 72, 300], [35, 70, 2, 2, 128, 64], [5, 40, 1, 1, 8, 0], [2, 1, 2, 1, 32, 1],
  ];
  it.for(ATTENTION)('attention nq=%i L=%i H=%i KV=%i hd=%i n0=%i', async ([nq, L, H, KV, hd, n0], ctx) => {
    if (!kernels) return ctx.skip(skip);
    const seed = nq * 100 + L * 10 + hd;
    const q = random(nq * H * hd, seed).map((x) => 3 * x); // sharper softmax than uniform noise gives
    const k = random(L * KV * hd, seed + 1);
    const v = random(L * KV * hd, seed + 2);
    const out = await kernels.attention(q, k, v, nq, L, H, KV, hd, n0);
    const want = new Float64Array(nq * H * hd);
    const scale = new Float64Array(nq * H * hd);
    for (let i = 0; i < nq; i++) for (let h = 0; h < H; h++) {
      const kvh = Math.floor(h / (H / KV));
      const s = new Float64Array(L);
      for (let j = 0; j < L; j++) {
        for (let t = 0; t < hd; t++) s[j] += q[(i * H + h) * hd + t] * k[(j * KV + kvh) * hd + t];
        s[j] /= Math.sqrt(hd);
      }
      const mx = Math.max(...s);
      let z = 0;
      for (let j = 0; j < L; j++) z += (s[j] = Math.exp(s[j] - mx));
      for (let t = 0; t < hd; t++) {
        const o = (i * H + h) * hd + t;
        for (let j = 0; j < L; j++) {
          want[o] += (s[j] / z) * v[(j * KV + kvh) * hd + t];
          scale[o] += (s[j] / z) * Math.abs(v[(j * KV + kvh) * hd + t]);
        }
      }
    }
    expectClose(`attention seed ${seed}`, out, want, scale, 1e-5);
  });

  it('attention with head_dim over 128 is refused, naming the call', async (ctx) => {
    if (!kernels) return ctx.skip(skip);
    const hd = 160;
    await expect(kernels.attention(new Float32Array(hd), new Float32Array(4 * hd), new Float32Array(4 * hd), 1, 4, 1, 1, hd, 2))
      .rejects.toThrow(/fdl::attention.*invalid argument/);
  });

  it('mismatched sizes are a RangeError, before any device work', (ctx) => {
    if (!kernels) return ctx.skip(skip);
    expect(() => kernels.gemmF32(new Float32Array(5), new Float32Array(6), null, 2, 3, 2)).toThrow(/A holds 5 elements, expected 4/);
    expect(() => kernels.attention(new Float32Array(8), new Float32Array(8), new Float32Array(8), 1, 1, 1, 1, 8, 2)).toThrow(/n0 must be in/);
  });
});
