/**
 * The native addon's surface (native/addon.cc), declared once, and its loader. The .node file exists only
 * when `npm run build` found nvcc; `loadBinding` says why it is missing instead of throwing.
 */
import { createRequire } from 'node:module';
import { existsSync } from 'node:fs';
import { fileURLToPath } from 'node:url';
import { dirname, join } from 'node:path';
import type { ModelDescription } from '@fast-dllm/model';
import type { ForwardResult } from '@fast-dllm/scheduler';

export type DeviceInfo =
  | { available: true; name: string; computeCapability: string; totalBytes: number; freeBytes: number }
  | { available: false; reason: string };

/** Shapes the native model is built for (a subset of ModelDescription plus the weight mode). */
export type NativeConfig = Pick<
  ModelDescription,
  | 'hiddenSize' | 'numLayers' | 'numHeads' | 'numKvHeads' | 'headDim' | 'intermediateSize'
  | 'vocabSize' | 'maxPositions' | 'rmsNormEps' | 'ropeTheta' | 'qkvBias'
> & {
  /** true: matrices (and the embedding) in bf16 on tensor cores; false: everything f32. */
  bf16: boolean;
  /** The mask token: never proposed by the LM-head reduction (DESIGN §3). */
  maskId: number;
};

export interface NativeForwardOptions {
  sample: boolean;
  temperature: number;
  seed: number;
  forwardIndex: number;
  top2: boolean;
  entropy: boolean;
  logits: boolean;
}

/** The addon fills the contract's result fields directly. */
export type NativeForwardResult = ForwardResult;

export interface NativeModel {
  /**
   * async upload(slot, data): copies one weight tensor to the device (slot numbering: plan.ts `slotOf`).
   * `data` is bf16 bits (Uint16Array) for matrices in bf16 mode, f32 otherwise.
   * @throws rejects with "cudaMalloc: out of memory" and the like, naming the CUDA call.
   */
  upload(slot: number, data: Uint16Array | Float32Array): Promise<void>;
  /**
   * async randomize(seed, scale): allocates every slot and fills it on the device with uniform noise in
   * [-scale, scale) (norm weights near 1). For benchmarks: no host traffic.
   * @throws rejects naming the failing CUDA call.
   */
  randomize(seed: number, scale: number): Promise<void>;
  /**
   * async forward(canvas, mode, start, end, srcRows, positions, opts): one NFE over [start, end);
   * mode 0 full, 1 prefix, 2 dual. srcRows (n,) are the computed-span rows whose hidden state predicts
   * positions (n,) (the Dream shift is applied by the caller, see marshal.ts).
   * @throws rejects naming the failing CUDA call, or when prefix/dual comes without a full of the same length.
   */
  forward(
    canvas: Int32Array, mode: number, start: number, end: number,
    srcRows: Int32Array, positions: Int32Array, opts: NativeForwardOptions,
  ): Promise<NativeForwardResult>;
  /** free(): releases device memory (after in-flight calls finish). Synchronous; never throws. */
  free(): void;
}

/** Single-kernel entry points for tests (native/kernel_probe.cc); the engine does not use them. */
export interface KernelProbes {
  /**
   * async gemmBf16(A, W, bias, m, n, k, splits, C0?): C (m, n) f32 = bf16(A (m, k) f32) @ W^T (+ C0), W (n, k) bf16
   * bits, optional bias (n); `splits` k splits (clamped to what k allows); C0 (m, n) exercises the residual-add mode.
   * @throws RangeError on mismatched sizes; rejects naming the failing CUDA call.
   */
  gemmBf16(A: Float32Array, W: Uint16Array, bias: Float32Array | null, m: number, n: number, k: number, splits: number, C0?: Float32Array | null): Promise<Float32Array>;
  /** async gemmF32(A, W, bias, m, n, k, C0?): the strict-mode GEMM, all f32. @throws as gemmBf16. */
  gemmF32(A: Float32Array, W: Float32Array, bias: Float32Array | null, m: number, n: number, k: number, C0?: Float32Array | null): Promise<Float32Array>;
  /**
   * async attention(q, k, v, nq, L, H, KV, hd, n0): out (nq, H, hd) of queries q (nq, H, hd) over k, v (L, KV, hd),
   * no mask, GQA head h reads KV head h / (H / KV). Rows [0, n0) and [n0, L) go to the device as two segments, as
   * in a prefix step. @throws RangeError on mismatched sizes; rejects naming the CUDA call (e.g. hd > 128).
   */
  attention(q: Float32Array, k: Float32Array, v: Float32Array, nq: number, L: number, H: number, KV: number, hd: number, n0: number): Promise<Float32Array>;
  /**
   * async timeGemmBf16(m, n, k, splits, iters): milliseconds per launch of the bf16 GEMM on device-resident random
   * data (CUDA events, after one warm-up); splits 0 = the engine's own choice for this device, reported back with
   * the SM count. For bench/cuda/gemm-sweep.mjs. @throws RangeError on a bad shape; rejects naming the CUDA call.
   */
  timeGemmBf16(m: number, n: number, k: number, splits: number, iters: number): Promise<{ msPerLaunch: number; splits: number; sms: number }>;
}

export interface NativeBinding {
  /** deviceInfo(): cheap probe; never throws. No driver or no GPU gives {available: false, reason: "no CUDA device (…)"}. */
  deviceInfo(): DeviceInfo;
  /** counterHash(seed, forwardIndex, position, lane): the CUDA port of rng.ts's hash, run on the host. Never throws. */
  counterHash(seed: number, forwardIndex: number, position: number, lane: number): number;
  /**
   * async copyBandwidth(bytes, iters): times `iters` device-to-device copies of `bytes`; resolves with bytes/s
   * counting read + write. @throws rejects naming the failing CUDA call (e.g. no device).
   */
  copyBandwidth(bytes: number, iters: number): Promise<number>;
  /** new CudaModel(config): creates a stream; weights come with upload/randomize. @throws on a CUDA error. */
  CudaModel: new (config: NativeConfig) => NativeModel;
  kernels: KernelProbes;
}

/** Where the build puts the addon. */
export const ADDON_PATH = join(dirname(fileURLToPath(import.meta.url)), '..', 'build', 'Release', 'fast_dllm_cuda.node');
/**
 * The same kernels and addon compiled for the CPU against native/emu (built on every machine with a C++
 * compiler): conformance tests run the CUDA engine's logic on it where there is no GPU. Far too slow for use.
 * FAST_DLLM_CUDA_EMULATOR_ADDON points it at another build (scripts/test-asan.mjs uses a sanitizer build).
 */
export const EMULATOR_ADDON_PATH =
  process.env.FAST_DLLM_CUDA_EMULATOR_ADDON ?? join(dirname(fileURLToPath(import.meta.url)), '..', 'build-emu', 'Release', 'fast_dllm_cuda_emu.node');

export type BindingLoad = { ok: true; binding: NativeBinding } | { ok: false; reason: string };

const cache = new Map<string, BindingLoad>();

/** Loads an addon once per path; never throws. */
export function loadBinding(path = ADDON_PATH): BindingLoad {
  const hit = cache.get(path);
  if (hit) return hit;
  const what = path === EMULATOR_ADDON_PATH ? 'emulator addon' : 'native addon';
  let r: BindingLoad;
  if (!existsSync(path)) {
    r = path === EMULATOR_ADDON_PATH
      ? { ok: false, reason: `${what} not built: no C++ compiler or cmake at install time (expected ${path}; run \`npm run build -w @fast-dllm/engine-cuda\`)` }
      : { ok: false, reason: `${what} not built: no nvcc at install time (expected ${path}; install the CUDA toolkit and run \`npm run build -w @fast-dllm/engine-cuda\`)` };
  } else {
    try {
      r = { ok: true, binding: createRequire(import.meta.url)(path) as NativeBinding };
    } catch (e) {
      r = { ok: false, reason: `${what} failed to load (${(e as Error).message}); rebuild it with \`npm run build -w @fast-dllm/engine-cuda\`` };
    }
  }
  cache.set(path, r);
  return r;
}
