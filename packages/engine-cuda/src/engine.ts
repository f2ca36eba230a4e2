/** CudaEngine: the Engine contract on top of the native addon. */
import {
  ENGINE_CONTRACT_VERSION, EngineCapacityError, SequenceTable, checkModelSupported,
  type Engine, type EngineCapabilities, type EngineOptions, type EngineProvider, type ForwardRequest, type ForwardResult, type ModelInfo,
  type SequenceHandle,
} from '@fast-dllm/scheduler';
import { openModel, schedulerModelInfo, type ModelDescription } from '@fast-dllm/model';
import { ADDON_PATH, EMULATOR_ADDON_PATH, loadBinding, type NativeBinding, type NativeModel } from './binding.js';
import { checkFits, planWeights, toBf16 } from './plan.js';
import { MODE_CODE, sourceRows } from './marshal.js';

/** The kernels use cp.async and bf16 tensor cores: compute capability 8.0 (Ampere) or newer. */
const MIN_COMPUTE_MAJOR = 8;

/** Largest head dimension the attention kernel handles (AHD in native/kernels.cu). */
export const MAX_HEAD_DIM = 128;

/** Canvas length (tokens) the load-time memory check plans for. */
export const FIT_CHECK_CANVAS = 2048;

export interface CudaEngineOptions extends EngineOptions {
  /**
   * K/V cache storage: 'bf16' halves the bytes every attention step reads (default with bf16 weights); 'f32' for
   * strict conformance (default with f32 weights).
   */
  kvDType?: 'bf16' | 'f32';
}

/**
 * One sequence at a time for now: the native model holds one K/V cache, so an engine opens one sequence and
 * passes carry one request (contract version 2 with maxBatch 1). Many sequences per pass come with the
 * batched kernels.
 */
export const CUDA_CAPABILITIES: EngineCapabilities = {
  contractVersion: ENGINE_CONTRACT_VERSION,
  modes: ['full', 'prefix', 'dual'],
  reports: { top2: true, entropy: true, logits: true },
  sampling: true,
  maxBatch: 1,
  blockCausal: false,
};


/** Probe result: the addon (at `addonPath`) and a device, or the reason there is none. Never throws. */
export function probeCuda(addonPath = ADDON_PATH): { available: true; binding: NativeBinding } | { available: false; reason: string } {
  const b = loadBinding(addonPath);
  if (!b.ok) return { available: false, reason: b.reason };
  const info = b.binding.deviceInfo();
  if (!info.available) return { available: false, reason: info.reason };
  if (Number(info.computeCapability.split('.')[0]) < MIN_COMPUTE_MAJOR) {
    return { available: false, reason: `${info.name} has compute capability ${info.computeCapability}; the kernels need 8.0 or newer (cp.async, bf16 tensor cores)` };
  }
  return { available: true, binding: b.binding };
}

export class CudaEngine implements Engine {
  readonly capabilities = CUDA_CAPABILITIES;
  private native: NativeModel | undefined;
  private queue: Promise<unknown> = Promise.resolve();
  /** The one sequence whose cache the device holds; checked in queue order, as the device runs them. */
  private readonly sequences: SequenceTable<null>;

  /**
   * `name` is 'cuda', or 'cuda-emulator' for the CPU build of the same addon; `kvDType` is the cache's storage on
   * the device.
   */
  constructor(
    readonly model: ModelInfo, native: NativeModel, private readonly desc: ModelDescription, readonly name = 'cuda',
    readonly kvDType: 'bf16' | 'f32' = 'f32',
  ) {
    this.native = native;
    checkModelSupported(name, model, this.capabilities);
    this.sequences = new SequenceTable(name, model.maxPositions);
  }

  sequenceBytes(maxLength: number): number {
    return 2 * this.desc.numLayers * maxLength * this.desc.numKvHeads * this.desc.headDim * (this.kvDType === 'bf16' ? 2 : 4);
  }

  sequenceCapacity(): number {
    return this.native && this.sequences.size === 0 ? 1 : 0;
  }

  openSequence(maxLength: number): SequenceHandle {
    if (!this.native) throw new Error('openSequence: the engine was disposed');
    return this.sequences.open(maxLength, () => {
      if (this.sequences.size > 0) throw new EngineCapacityError(`${this.name} engine: holds one sequence at a time; close the open one first`);
      return null;
    });
  }

  closeSequence(sequence: SequenceHandle): void {
    this.sequences.close(sequence);
  }

  async forward(batch: readonly ForwardRequest[], signal?: AbortSignal): Promise<ForwardResult[]> {
    const native = this.native;
    if (!native) throw new Error('forward: the engine was disposed');
    signal?.throwIfAborted();
    // One stream, one cache: calls run in order even if a caller does not await.
    const run = this.queue.then(async () => {
      this.sequences.check(this.model, this.capabilities, batch); // the same rejections, in the same words, as the other engines
      const req = batch[0];
      const rows = sourceRows(req.positions, req.start, this.model.shiftLogits);
      const s = req.sampling;
      const opts = {
        sample: s !== undefined,
        temperature: s?.temperature ?? 1,
        seed: s?.seed ?? 0,
        forwardIndex: s?.forwardIndex ?? 0,
        top2: req.want?.top2 ?? false,
        entropy: req.want?.entropy ?? false,
        logits: req.want?.logits ?? false,
      };
      try {
        const r = await native.forward(req.canvas, MODE_CODE[req.mode as keyof typeof MODE_CODE] /* capabilities exclude 'extend' */, req.start, req.end, rows, req.positions, opts);
        this.sequences.commit(batch);
        return r;
      } catch (e) {
        this.sequences.invalidate(batch); // a forward that failed part-way left the cache half written
        throw e;
      }
    });
    this.queue = run.catch(() => undefined);
    const r = await run;
    const out: ForwardResult = { tokens: r.tokens, probs: r.probs };
    if (r.top1Probs && r.top2Probs) { out.top1Probs = r.top1Probs; out.top2Probs = r.top2Probs; }
    if (r.entropy) out.entropy = r.entropy;
    if (r.logits) out.logits = r.logits;
    return [out];
  }

  async dispose(): Promise<void> {
    await this.queue;
    this.native?.free();
    this.native = undefined;
  }
}

/** Loads a Hugging Face model directory onto the GPU (weights streamed tensor by tensor). */
export async function createCudaEngine(modelDir: string, options: CudaEngineOptions = {}): Promise<CudaEngine> {
  return createOn(ADDON_PATH, 'cuda', modelDir, options);
}

/**
 * The same engine on the CPU emulator build of the addon (native/emu): identical host code and kernel source,
 * run by fibers on the CPU. For conformance tests where there is no GPU; thousands of times slower than WASM.
 */
export async function createCudaEmulatorEngine(modelDir: string, options: CudaEngineOptions = {}): Promise<CudaEngine> {
  return createOn(EMULATOR_ADDON_PATH, 'cuda-emulator', modelDir, options);
}

async function createOn(addonPath: string, name: string, modelDir: string, options: CudaEngineOptions): Promise<CudaEngine> {
  const probe = probeCuda(addonPath);
  if (!probe.available) throw new Error(`${name} engine unavailable: ${probe.reason}`);
  const info = probe.binding.deviceInfo();
  if (options.weightDType === 'f16') throw new Error("cuda engine: weightDType 'f16' is not supported; use 'bf16' or 'f32'");
  if (options.weightDType === 'int8') throw new Error("cuda engine: weightDType 'int8' is the CPU engines' format; use 'bf16' or 'f32' on the GPU, or the wasm engine for int8");
  const dtype = options.weightDType ?? 'bf16';
  const kvDType = options.kvDType ?? dtype;
  if (kvDType !== 'bf16' && kvDType !== 'f32') throw new Error(`cuda engine: kvDType '${String(kvDType)}' is not supported; use 'bf16' or 'f32'`);
  const loaded = await openModel(modelDir);
  try {
    const d = loaded.description;
    // Refused before any weight is read or uploaded: block-diffusion models need block-causal attention (and SDAR
    // the q/k norms), which these kernels do not implement yet.
    checkModelSupported(name, schedulerModelInfo(d), CUDA_CAPABILITIES);
    if (d.headDim > MAX_HEAD_DIM) {
      throw new Error(`${name} engine: head_dim ${d.headDim} is over the attention kernel's ${MAX_HEAD_DIM}; use the wasm engine for this model`);
    }
    const shapes = new Map([...loaded.archive.tensors].map(([k, t]) => [k, t.shape]));
    // The cache is sized per canvas at the first full forward; check the fit for a typical canvas, not maxPositions
    // (131072 for Dream would demand ~100 GiB of cache and logits that no run uses).
    const plan = planWeights(d, loaded.names, shapes, dtype, Math.min(d.maxPositions, FIT_CHECK_CANVAS), kvDType);
    if (info.available) checkFits(plan, info.freeBytes, info.name);
    const native = new probe.binding.CudaModel({
      hiddenSize: d.hiddenSize, numLayers: d.numLayers, numHeads: d.numHeads, numKvHeads: d.numKvHeads, headDim: d.headDim,
      intermediateSize: d.intermediateSize, vocabSize: d.vocabSize, maxPositions: d.maxPositions, rmsNormEps: d.rmsNormEps,
      ropeTheta: d.ropeTheta, qkvBias: d.qkvBias, bf16: dtype === 'bf16', kvBf16: kvDType === 'bf16', maskId: d.special.mask,
    });
    try {
      let done = 0;
      for (const t of plan.tensors) {
        const src = loaded.archive.tensors.get(t.name);
        if (src?.dtype === 'BF16' && t.deviceDType === 'bf16') {
          // bf16 checkpoint into bf16 slots: upload the bits as stored (copied into an aligned buffer).
          const bytes = await loaded.archive.readBytes(t.name);
          await native.upload(t.slot, new Uint16Array(bytes.slice().buffer, 0, t.elements));
        } else {
          const f32 = await loaded.archive.readF32(t.name);
          await native.upload(t.slot, t.deviceDType === 'bf16' ? toBf16(f32) : f32);
        }
        done += t.bytes;
        options.onProgress?.({ phase: 'upload weights', done, total: plan.weightBytes, unit: 'bytes' });
      }
    } catch (e) {
      native.free();
      throw e;
    }
    return new CudaEngine(schedulerModelInfo(d), native, d, name, kvDType);
  } finally {
    await loaded.archive.close();
  }
}

/** The provider of the engine on the addon at `addonPath`. */
function providerOn(addonPath: string, name: string): EngineProvider {
  return {
    name,
    async probe() {
      const p = probeCuda(addonPath);
      return p.available ? { available: true } : { available: false, reason: p.reason };
    },
    create: (modelDir, options) => createOn(addonPath, name, modelDir, (options ?? {}) as CudaEngineOptions),
    async estimateMemory(modelDir, { maxLength, weightDType }) {
      if (weightDType === 'f16') throw new Error("cuda engine: weightDType 'f16' is not supported; use 'bf16' or 'f32'");
      if (weightDType === 'int8') throw new Error("cuda engine: weightDType 'int8' is the CPU engines' format; use 'bf16' or 'f32' on the GPU, or the wasm engine for int8");
      const dtype = weightDType ?? 'bf16';
      const loaded = await openModel(modelDir);
      try {
        const shapes = new Map([...loaded.archive.tensors].map(([k, t]) => [k, t.shape]));
        const plan = planWeights(loaded.description, loaded.names, shapes, dtype, maxLength, dtype);
        return { weightBytes: plan.weightBytes, sequenceBytes: plan.cacheBytes, weightDType: dtype, cacheDType: dtype };
      } finally {
        await loaded.archive.close();
      }
    },
  };
}

export const cudaProvider: EngineProvider = providerOn(ADDON_PATH, 'cuda');

/** Test-only provider of the emulator build; never part of the CLI's engine list. */
export const cudaEmulatorProvider: EngineProvider = providerOn(EMULATOR_ADDON_PATH, 'cuda-emulator');
