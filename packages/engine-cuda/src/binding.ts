/**
 * The native addon's surface (native/addon.cc), declared once, and its loader. The addon is either built here
 * (build/Release: `npm run build` with nvcc, or the install step building from source) or the prebuilt one this
 * package ships (prebuilds/<platform>-<arch>/), in that order, as node-gyp-build picks them; `loadBinding` says
 * why neither loads instead of throwing.
 */
import { createRequire } from 'node:module';
import { existsSync, readFileSync } from 'node:fs';
import { fileURLToPath } from 'node:url';
import { dirname, join } from 'node:path';
import type { ModelDescription, MoeDescription } from '@fast-dllm/model';
import type { ForwardResult } from '@fast-dllm/engine-contract';

/** Versions as "13.0", or "none" (no driver; the emulator reports "none" for both). */
interface CudaVersions {
  /** The installed driver's CUDA version (cudaDriverGetVersion). */
  driverVersion: string;
  /** The CUDA runtime the addon was built with (cudaRuntimeGetVersion; linked statically). */
  runtimeVersion: string;
}
export type DeviceInfo = CudaVersions & (
  | { available: true; name: string; computeCapability: string; totalBytes: number; freeBytes: number; multiprocessors: number }
  | { available: false; reason: string }
);

/** Shapes the native model is built for (a subset of ModelDescription plus the weight mode). */
export type NativeConfig = Pick<
  ModelDescription,
  | 'hiddenSize' | 'numLayers' | 'numHeads' | 'numKvHeads' | 'headDim' | 'intermediateSize'
  | 'vocabSize' | 'maxPositions' | 'rmsNormEps' | 'ropeTheta' | 'qkvBias'
> & {
  /** true: matrices (and the embedding) in bf16 on tensor cores; false: everything f32. */
  bf16: boolean;
  /** true: the K/V cache (and a prefix step's fresh K/V rows) in bf16; false: f32. */
  kvBf16: boolean;
  /** The mask token: never proposed by the LM-head reduction (DESIGN §3). */
  maskId: number;
  /** Qwen3 (SDAR): per-head RMSNorm of q and k (slots qNorm, kNorm) before RoPE. Default false. */
  qkNorm?: boolean;
  /** Block-causal attention with blocks of this many positions (DESIGN §8); 0 or absent: bidirectional. */
  blockSize?: number;
  /** Reported rows per LM-head GEMM (plan.ts reportChunk); default 256. */
  reportChunk?: number;
  /** RoPE turns the first rotaryDim dims of each head (LLaDA-MoE's partial rotary; even, <= headDim); default headDim. */
  rotaryDim?: number;
  /** q, k and v clamped to [-clipQkv, clipQkv] after their head norms, before RoPE (LLaDA-MoE); absent: no clamp. */
  clipQkv?: number;
  /** The attention output projection adds its bias (slot oBias; LLaDA2's use_bias). Default false. */
  outputBias?: boolean;
  /**
   * Mixture-of-experts layers (LLaDA-MoE, DESIGN §13): a pass stops at each mixture layer for the host's routing
   * (NativeModel.route); intermediateSize is then the dense layers' FFN width. Slots: plan.ts moeSlotOf.
   */
  moe?: Pick<MoeDescription, 'numExperts' | 'topK' | 'expertSize' | 'sharedExpertSize' | 'moeLayers'>;
};

/**
 * One forward pass over several sequences (DESIGN §7), as src/marshal.ts lays it out from the ForwardRequests.
 * Rows are the computed spans of the sequences concatenated in order; reports are every reported position.
 */
export interface NativePass {
  /** (rows,) int32 token of each computed row. */
  ids: Int32Array;
  /**
   * (batch, 13) float64 per sequence: arena, byte offset of its cache block in the arena, positions the block holds
   * (its maxLength), mode (0 full, 1 prefix, 2 dual, 3 extend), start, rows (end - start), canvas length L, first row
   * in the pass; then Elastic-Cache's (DESIGN §16) refresh fromLayer (0: none) and span start, end, and the attention
   * report's rows start, end (-1, -1: none). The block is K (layers, cap, KV, hd) then V (layers, cap, KV, hd) in the
   * cache dtype.
   */
  seqs: Float64Array;
  /** (batch, layers) int32: each sequence's tracked key per layer for its attention report, -1 for none. */
  attentionKeys: Int32Array;
  /** (reports,) int32 pass row whose hidden state predicts each report (Dream's shift applied). */
  reportRow: Int32Array;
  /** (reports,) int32 absolute position of each report (the sampling counter's `position`). */
  position: Int32Array;
  /** (reports,) float64 sampling temperature; 0 = greedy. */
  temperature: Float64Array;
  /** (reports,) uint32 seed and forward index of the report's sequence. */
  seed: Uint32Array;
  forwardIndex: Uint32Array;
  /** Reports wanted by any sequence of the pass (computed for all reports). */
  top2: boolean;
  entropy: boolean;
  logits: boolean;
}

/**
 * The reductions of every report of a pass, in report order (engine-kit assembleResults splits them): the
 * contract's ForwardResult fields, each over all the pass's reports rather than one request's.
 */
export type NativeForwardResult = Omit<ForwardResult, 'attention'> & {
  /** The attention reports of the sequences that asked, concatenated in pass order: (layers,) top, (layers, rows) the others. */
  attention?: { top: Int32Array; atTop: Float64Array; tracked: Float64Array };
};

/**
 * A pass of a model with mixture layers, stopped at one for its routing: the layer and its router logits (rows, E)
 * f32 over every row of the pass. The host routes them (@fast-dllm/model routeRows) and hands the result to
 * NativeModel.route, which resolves with the next stop or the reports.
 */
export interface NativeRouteRequest {
  route: { layer: number; logits: Float32Array };
}

/** What forward and route resolve with: the reports, or (mixture layers only) a routing to do first. */
export type NativePassStep = NativeForwardResult | NativeRouteRequest;

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
   * allocArena(bytes): synchronously allocates a device arena for sequence caches (src/cache-pool.ts places each
   * sequence's block in one) and returns its index. Arenas are freed with the model.
   * @throws "cudaMalloc(<bytes> bytes): out of memory" and the like; RangeError on a bad size.
   */
  allocArena(bytes: number): number;
  /**
   * async forward(pass): one pass over the rows of every sequence in `pass`; each sequence's fresh K/V go into its
   * cache block (full, dual, extend) or only serve this pass (prefix). Resolves with the reductions of every report,
   * or, in a model with mixture layers, with the first mixture layer's router logits to route (NativeRouteRequest).
   * Starting a pass abandons one still waiting for its routing.
   * @throws RangeError on an inconsistent pass (bad span, row offsets, a row or token out of range); rejects naming
   * the failing CUDA call, or a cache block outside its arena.
   */
  forward(pass: NativePass): Promise<NativePassStep>;
  /**
   * async route(experts, weights): the routing of the mixture layer the pending pass stopped at, experts (rows, topK)
   * int32 ascending per row, weights (rows, topK) float64 (routeRows' output); runs that layer's experts and goes on.
   * Resolves as forward does: the next mixture layer's logits, or the reports.
   * @throws when no pass waits for routing; RangeError on arrays of the wrong size or experts not distinct,
   * ascending and under numExperts; rejects naming the failing CUDA call.
   */
  route(experts: Int32Array, weights: Float64Array): Promise<NativePassStep>;
  /** free(): releases device memory (after in-flight calls finish). Synchronous; never throws. */
  free(): void;
}

/**
 * How split sums are scheduled (native/kernels.h `Schedule`): 0 the engine's choice, 1 parallel (one block per
 * split, a merge pass), 2 serial (one block walks every split). Never changes a bit of the result.
 */
export type Schedule = 0 | 1 | 2;

/** One sequence of an attention probe: its keys/values and query rows (see KernelProbes.attention). */
export interface AttentionProbeSequence {
  /** (L, KV, hd) f32 keys; rows [0, n0) go to segment 0 and [n0, L) to segment 1. */
  k: Float32Array;
  /** (L, KV, hd) f32 values. */
  v: Float32Array;
  n0: number;
  /** Query rows of this sequence: the next nq rows of q. */
  nq: number;
  /** Absolute position of the sequence's first query row (block-causal masks); default 0. */
  pos0?: number;
  /** Block-causal attention with this block size (DESIGN §8); 0 or absent: bidirectional. */
  causalBlock?: number;
}

/** Single-kernel entry points for tests (native/kernel_probe.cc); the engine does not use them. */
export interface KernelProbes {
  /**
   * async gemmBf16(A, W, bias, m, n, k, splits, C0?, schedule?): C (m, n) f32 = bf16(A (m, k) f32) @ W^T (+ C0),
   * W (n, k) bf16 bits, optional bias (n); `splits` k splits (clamped to what k allows; 0: the engine's choice for
   * this weight shape); C0 (m, n) exercises the residual-add mode.
   * @throws RangeError on mismatched sizes or a bad schedule; rejects naming the failing CUDA call.
   */
  gemmBf16(
    A: Float32Array, W: Uint16Array, bias: Float32Array | null, m: number, n: number, k: number, splits: number,
    C0?: Float32Array | null, schedule?: Schedule,
  ): Promise<Float32Array>;
  /** async gemmF32(A, W, bias, m, n, k, C0?): the strict-mode GEMM, all f32. @throws as gemmBf16. */
  gemmF32(A: Float32Array, W: Float32Array, bias: Float32Array | null, m: number, n: number, k: number, C0?: Float32Array | null): Promise<Float32Array>;
  /**
   * async attention(q, sequences, shape): one attention pass of the engine's kernel over several sequences, out
   * (rows, H, hd) f32 for q (rows, H, hd), rows = the sum of the sequences' nq in order. GQA: head h reads KV head
   * h / (H / KV). K/V go to the device in bf16 (rounded to nearest even) when shape.kvBf16, else f32.
   * @throws RangeError on mismatched sizes; rejects naming the CUDA call (e.g. hd > 128 or odd).
   */
  attention(
    q: Float32Array, sequences: AttentionProbeSequence[],
    shape: { H: number; KV: number; hd: number; kvBf16?: boolean; schedule?: Schedule },
  ): Promise<Float32Array>;
  /**
   * async timeGemmBf16(m, n, k, splits, iters, schedule?): milliseconds per launch of the bf16 GEMM on
   * device-resident random data (CUDA events, after one warm-up); splits 0 = the engine's choice for the weight
   * shape, schedule 0 = the engine's choice for this device, both reported back with the SM count. For
   * bench/cuda/gemm-sweep.mjs. @throws RangeError on a bad shape; rejects naming the CUDA call.
   */
  timeGemmBf16(
    m: number, n: number, k: number, splits: number, iters: number, schedule?: Schedule,
  ): Promise<{ msPerLaunch: number; splits: number; parallel: boolean; sms: number }>;
  /** gemmSplits(n, k): the k splits the engine uses for an (n, k) weight (native gemm_bf16_splits). Never throws. */
  gemmSplits(n: number, k: number): number;
  /** attentionChunk(L): keys per attention split for L keys (native attention_chunk). Never throws. */
  attentionChunk(L: number): number;
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

const PKG_DIR = join(dirname(fileURLToPath(import.meta.url)), '..');
/** Where a build in this package puts the addon (scripts/build.mjs, or scripts/install.mjs from source). */
export const BUILT_ADDON_PATH = join(PKG_DIR, 'build', 'Release', 'fast_dllm_cuda.node');
/** The prebuilt addon of this platform, when the package ships one (scripts/native.mjs writePrebuild). */
export const PREBUILT_ADDON_PATH = join(PKG_DIR, 'prebuilds', `${process.platform}-${process.arch}`, 'fast_dllm_cuda.node');
/** The addon the cuda engine loads: the built one when it exists, else the prebuilt one (else the built path). */
export const ADDON_PATH = existsSync(BUILT_ADDON_PATH) || !existsSync(PREBUILT_ADDON_PATH) ? BUILT_ADDON_PATH : PREBUILT_ADDON_PATH;
/** What the last build or install step recorded (scripts/native.mjs writeStatus). */
const STATUS_PATH = join(PKG_DIR, 'build', 'status.json');
/**
 * The same kernels and addon compiled for the CPU against native/emu (built on every machine with a C++
 * compiler): conformance tests run the CUDA engine's logic on it where there is no GPU. Far too slow for use.
 * FAST_DLLM_CUDA_EMULATOR_ADDON points it at another build (scripts/test-asan.mjs uses a sanitizer build).
 */
export const EMULATOR_ADDON_PATH =
  process.env.FAST_DLLM_CUDA_EMULATOR_ADDON ?? join(dirname(fileURLToPath(import.meta.url)), '..', 'build-emu', 'Release', 'fast_dllm_cuda_emu.node');

export type BindingLoad = { ok: true; binding: NativeBinding } | { ok: false; reason: string };

const cache = new Map<string, BindingLoad>();

/** Why there is no CUDA addon, from what the last build or install step recorded. */
function missingAddonReason(): string {
  const none = `no prebuilt addon for ${process.platform}-${process.arch} in this package and no build here`;
  let status: { step?: string; result?: string; detail?: string; at?: string } | undefined;
  try {
    status = JSON.parse(readFileSync(STATUS_PATH, 'utf8')) as typeof status;
  } catch {
    status = undefined;
  }
  const when = status?.step === 'install' ? 'when the package was installed' : 'at the last `npm run build`';
  const fix = 'put nvcc (the CUDA toolkit) on PATH and rebuild: `npm rebuild @fast-dllm/engine-cuda`, or in the repository `npm run build -w @fast-dllm/engine-cuda`';
  if (!status?.detail) return `native addon not built: ${none} (expected ${BUILT_ADDON_PATH}); ${fix}`;
  return `native addon not built: ${when} (${status.at}): ${status.detail}; ${fix}`;
}

/** Loads an addon once per path; never throws. */
export function loadBinding(path = ADDON_PATH): BindingLoad {
  const hit = cache.get(path);
  if (hit) return hit;
  const what = path === EMULATOR_ADDON_PATH ? 'emulator addon' : 'native addon';
  let r: BindingLoad;
  if (!existsSync(path)) {
    if (path === EMULATOR_ADDON_PATH) {
      r = { ok: false, reason: `${what} not built: it is built by \`npm run build -w @fast-dllm/engine-cuda\` in the repository, with cmake and a C++ compiler (expected ${path})` };
    } else if (path === ADDON_PATH) {
      r = { ok: false, reason: missingAddonReason() };
    } else {
      r = { ok: false, reason: `${what} not built: ${path} does not exist` };
    }
  } else {
    try {
      r = { ok: true, binding: createRequire(import.meta.url)(path) as NativeBinding };
    } catch (e) {
      const rebuild = path === EMULATOR_ADDON_PATH
        ? '`npm run build -w @fast-dllm/engine-cuda`'
        : 'with nvcc on PATH: `FAST_DLLM_CUDA_BUILD_FROM_SOURCE=1 npm rebuild @fast-dllm/engine-cuda` (in the repository: `npm run build -w @fast-dllm/engine-cuda`)';
      r = { ok: false, reason: `${what} ${path} failed to load (${(e as Error).message}); build it from source ${rebuild}` };
    }
  }
  cache.set(path, r);
  return r;
}
