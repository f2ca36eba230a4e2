/**
 * CudaEngine: the Engine contract (DESIGN §4, §7, §8) on top of the native addon. Many sequences per engine, each
 * with its K/V cache block in device arenas (cache-pool.ts); a forward is one native pass over the concatenated rows
 * of every request (marshal.ts), checked as a whole by engine-kit's SequenceTable before any kernel runs.
 */
import {
  ENGINE_CONTRACT_VERSION, EngineCapacityError, SequenceTable, assembleResults, checkModelSupported, ModelNotSupportedError,
  type AttentionReport, type Engine, type EngineCapabilities, type EngineOptions, type EngineProvider, type ForwardRequest, type ForwardResult, type ModelInfo,
  type SequenceHandle,
} from '@fast-dllm/engine-contract';
import {
  isMoeLayer, missingLayerFeatures, openModel, routeRows, routingRule, schedulerModelInfo, storedTensorName, type ModelDescription,
  type RoutingRule, type SafetensorsArchive,
} from '@fast-dllm/model';
import {
  ADDON_PATH, EMULATOR_ADDON_PATH, loadBinding, type NativeBinding, type NativeForwardResult, type NativeModel, type NativePass,
} from './binding.js';
import { BLOCK_ALIGN, CachePool, type CacheBlock } from './cache-pool.js';
import { PASS_ROWS, cacheBlockBytes, checkFits, passScratchBytes, planWeights, reportChunk, toBf16 } from './plan.js';
import { nativePass } from './marshal.js';

/** The kernels use cp.async and bf16 tensor cores: compute capability 8.0 (Ampere) or newer. */
const MIN_COMPUTE_MAJOR = 8;

/** Largest head dimension the attention kernel handles (AHD in native/kernels.cu). */
export const MAX_HEAD_DIM = 128;

/** Canvas length (tokens) the load-time memory check plans for. */
export const FIT_CHECK_CANVAS = 2048;

/** Device memory left unclaimed beside weights, caches and scratch (the CUDA context's growth, fragmentation). */
const MEMORY_MARGIN_BYTES = 256 * 2 ** 20;

export interface CudaEngineOptions extends EngineOptions {
  /**
   * K/V cache storage: 'bf16' halves the bytes every attention step reads (default with bf16 weights); 'f32' for
   * strict conformance (default with f32 weights).
   */
  kvDType?: 'bf16' | 'f32';
}

/**
 * Sequences per pass: the scratch holds PASS_ROWS rows (64 DualCache steps of 32 rows); a pass over more rows is
 * refused with EngineCapacityError, so a driver retries it with fewer sequences.
 */
export const CUDA_CAPABILITIES: EngineCapabilities = {
  contractVersion: ENGINE_CONTRACT_VERSION,
  modes: ['full', 'prefix', 'dual', 'extend'],
  reports: { top2: true, entropy: true, logits: true },
  sampling: true,
  maxBatch: 64,
  blockCausal: true,
};

/** Device memory the engine may use beside its weights, measured when it was loaded. */
export interface DeviceBudget {
  /** Bytes for sequence caches and pass scratch together (free memory after the weights, less a margin). */
  memoryBytes: number;
  /** EngineOptions.cacheBudgetBytes: a further cap on the caches alone. */
  cacheBudgetBytes?: number;
  /** Multiprocessors (bounds attention's split partial sums, plan.ts passScratchBytes). */
  sms: number;
}

/**
 * The addon says `no CUDA device (<cudaError>: <its text>; <cause>)` when it knows the cause (no driver, or a
 * driver older than its runtime). The cause is what a person can act on, so it leads and the CUDA error follows in
 * parentheses: `no NVIDIA driver: libcuda.so.1 was not found (cudaErrorInsufficientDriver: …)`.
 */
export function causeFirst(reason: string): string {
  const m = /^no CUDA device \((cuda\w+: [^;]*); (.+)\)$/.exec(reason);
  return m ? `${m[2]} (${m[1]})` : reason;
}

/** Probe result: the addon (at `addonPath`) and a device, or the reason there is none. Never throws. */
export function probeCuda(addonPath = ADDON_PATH): { available: true; binding: NativeBinding } | { available: false; reason: string } {
  const b = loadBinding(addonPath);
  if (!b.ok) return { available: false, reason: b.reason };
  const info = b.binding.deviceInfo();
  if (!info.available) return { available: false, reason: causeFirst(info.reason) };
  if (Number(info.computeCapability.split('.')[0]) < MIN_COMPUTE_MAJOR) {
    return { available: false, reason: `${info.name} has compute capability ${info.computeCapability}; the kernels need 8.0 or newer (cp.async, bf16 tensor cores)` };
  }
  return { available: true, binding: b.binding };
}

export class CudaEngine implements Engine {
  readonly capabilities: EngineCapabilities;
  private native: NativeModel | undefined;
  private queue: Promise<unknown> = Promise.resolve();
  /** The model's routing rule (softmax, or LLaDA2's sigmoid group-limited), applied on the host; null without mixtures. */
  private readonly rule: RoutingRule | null;
  /** Open sequences and their cache blocks; a pass is checked in queue order, as the device runs them. */
  private readonly sequences: SequenceTable<CacheBlock>;
  private readonly pool: CachePool;
  /** Rows of pass scratch reserved: PASS_ROWS, or the longest canvas opened when longer (its full forward). */
  private passRows = PASS_ROWS;

  /**
   * `name` is 'cuda', or 'cuda-emulator' for the CPU build of the same addon; `kvDType` is the cache's storage on
   * the device, `weightDType` the matrices'; `budget` what the device had free after the weights.
   */
  constructor(
    readonly model: ModelInfo, native: NativeModel, private readonly desc: ModelDescription, readonly name: string,
    readonly kvDType: 'bf16' | 'f32', readonly weightDType: 'bf16' | 'f32', private readonly budget: DeviceBudget,
    /** (E) each mixture layer's expert bias, or null (none, or a dense layer); routing runs on the host. */
    private readonly expertBias: readonly (Float32Array | null)[] = [],
  ) {
    this.native = native;
    this.rule = desc.moe ? routingRule(desc.moe) : null;
    // Elastic-Cache (DESIGN §16): the attention report (host-side, addon.cc AttentionReports) and refresh forwards.
    this.capabilities = { ...CUDA_CAPABILITIES, elasticCache: { layers: desc.numLayers } };
    checkModelSupported(name, model, this.capabilities);
    this.sequences = new SequenceTable(name, model.maxPositions);
    this.pool = new CachePool((bytes) => native.allocArena(bytes));
  }

  sequenceBytes(maxLength: number): number {
    return Math.ceil(cacheBlockBytes(this.desc, maxLength, this.kvDType) / BLOCK_ALIGN) * BLOCK_ALIGN;
  }

  /**
   * Bytes the caches may take in all once a sequence of `maxLength` is open: the budget less the pass scratch for
   * max(passRows, maxLength) rows, within cacheBudgetBytes when set.
   */
  private cacheLimit(maxLength: number): number {
    const rows = Math.max(this.passRows, maxLength);
    const scratch = passScratchBytes(this.desc, rows, rows, this.weightDType, this.kvDType, this.budget.sms);
    return Math.min(this.budget.memoryBytes - scratch, this.budget.cacheBudgetBytes ?? Infinity);
  }

  sequenceCapacity(maxLength: number): number {
    if (!this.native || !(Number.isInteger(maxLength) && maxLength > 0 && maxLength <= this.model.maxPositions)) return 0;
    return this.pool.capacity(this.sequenceBytes(maxLength), this.cacheLimit(maxLength));
  }

  openSequence(maxLength: number): SequenceHandle {
    if (!this.native) throw new Error('openSequence: the engine was disposed');
    return this.sequences.open(maxLength, () => {
      const block = this.pool.reserve(this.sequenceBytes(maxLength), this.cacheLimit(maxLength), () => `${this.name} engine: a sequence of ${maxLength} tokens`);
      this.passRows = Math.max(this.passRows, maxLength);
      return block;
    });
  }

  closeSequence(sequence: SequenceHandle): void {
    const block = this.sequences.close(sequence);
    // Back to the pool at once: a pass still queued for it runs before any later pass on the block's next owner.
    if (block && this.native) this.pool.release(block);
  }

  async forward(batch: readonly ForwardRequest[], signal?: AbortSignal): Promise<ForwardResult[]> {
    const native = this.native;
    if (!native) throw new Error('forward: the engine was disposed');
    signal?.throwIfAborted();
    // One stream: passes run in order even if a caller does not await, and each is checked against the caches as
    // the passes before it left them.
    const run = this.queue.then(() => this.sequences.pass(this.model, this.capabilities, batch, signal, {
      reserve: (layout) => {
        if (layout.rows > this.passRows) {
          throw new EngineCapacityError(
            `${this.name} engine: a pass of ${layout.rows} rows is more than the ${this.passRows} rows of scratch it reserves; run fewer sequences per pass`);
        }
      },
      compute: (blocks, layout) => this.runPass(native, nativePass(batch, layout, blocks, this.desc.numLayers)),
      results: (r, layout) => {
        const none = new Float64Array(0);
        return assembleResults(batch, layout, {
          token: r.tokens, prob: r.probs, top1: r.top1Probs ?? none, top2: r.top2Probs ?? none, entropy: r.entropy ?? none, logits: r.logits,
        }, this.model.vocabSize, splitAttention(batch, r.attention, this.desc.numLayers));
      },
    }));
    this.queue = run.catch(() => undefined);
    return run;
  }

  /**
   * One native pass; a model with mixture layers stops at each for its routing, done here with the one rule every
   * engine shares (@fast-dllm/model routeRows, DESIGN §13): from each row's own router logits, so batch invariant.
   */
  private async runPass(native: NativeModel, pass: NativePass): Promise<NativeForwardResult> {
    let step = await native.forward(pass);
    while ('route' in step) {
      const moe = this.desc.moe;
      if (!moe || !this.rule) throw new Error(`${this.name} engine: the addon asked to route a model without mixture layers`);
      const { layer, logits } = step.route;
      const rows = logits.length / moe.numExperts;
      const { experts, weights } = routeRows(logits, rows, moe.numExperts, moe.topK, this.expertBias[layer] ?? null, this.rule);
      step = await native.route(experts, weights);
    }
    return step;
  }

  async dispose(): Promise<void> {
    const native = this.native;
    this.native = undefined; // later calls are refused at once; queued passes still finish
    await this.queue;
    native?.free();
  }
}

/** The addon's attention reports (concatenated over the sequences that asked, in pass order) split per request. */
function splitAttention(batch: readonly ForwardRequest[], all: NativeForwardResult['attention'], layers: number): (AttentionReport | undefined)[] {
  let seq = 0, cell = 0;
  return batch.map((req) => {
    const a = req.attention;
    if (!a) return undefined;
    if (!all) throw new Error('cuda engine: the addon returned no attention report');
    const n = layers * (a.end - a.start);
    const out: AttentionReport = {
      top: all.top.slice(seq * layers, (seq + 1) * layers), atTop: all.atTop.slice(cell, cell + n), tracked: all.tracked.slice(cell, cell + n),
    };
    seq++;
    cell += n;
    return out;
  });
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

/**
 * Shapes of the tensors the plan names: stored tensors, and row slices of a fused one (LLaDA2's query_key_value as
 * q, k, v, DESIGN §13.1) with their own rows; undefined for a name the checkpoint lacks.
 */
function shapeLookup(archive: SafetensorsArchive): (name: string) => number[] | undefined {
  return (name) => (archive.tensors.has(storedTensorName(name)) ? archive.info(name).shape : undefined);
}

async function createOn(addonPath: string, name: string, modelDir: string, options: CudaEngineOptions): Promise<CudaEngine> {
  const probe = probeCuda(addonPath);
  if (!probe.available) throw new Error(`${name} engine unavailable: ${probe.reason}`);
  const info = probe.binding.deviceInfo();
  if (options.weightDType === 'int8') throw new Error("cuda engine: weightDType 'int8' is the CPU engines' format; use 'bf16' or 'f32' on the GPU, or the wasm engine for int8");
  const dtype = options.weightDType ?? 'bf16';
  const kvDType = options.kvDType ?? dtype;
  if (kvDType !== 'bf16' && kvDType !== 'f32') throw new Error(`cuda engine: kvDType '${String(kvDType)}' is not supported; use 'bf16' or 'f32'`);
  const loaded = await openModel(modelDir);
  try {
    const d = loaded.description;
    checkModelSupported(name, schedulerModelInfo(d), CUDA_CAPABILITIES);
    const missing = missingLayerFeatures(d, { moe: true, partialRotary: true, clipQkv: true, sigmoidRouting: true, outputBias: true });
    if (missing) throw new ModelNotSupportedError(`${name} engine: ${missing}; use the reference engine`);
    if (d.headDim > MAX_HEAD_DIM) {
      throw new Error(`${name} engine: head_dim ${d.headDim} is over the attention kernel's ${MAX_HEAD_DIM}; use the wasm engine for this model`);
    }
    const sms = info.available ? info.multiprocessors : 1;
    // Caches are reserved per sequence when it opens; check the fit of one sequence of a typical canvas, not of
    // maxPositions (131072 for Dream would demand ~100 GiB of cache that no run uses), with the pass scratch.
    const plan = planWeights(d, loaded.names, shapeLookup(loaded.archive), dtype, Math.min(d.maxPositions, FIT_CHECK_CANVAS), kvDType, sms);
    if (info.available) checkFits(plan, info.freeBytes, info.name);
    const native = new probe.binding.CudaModel({
      hiddenSize: d.hiddenSize, numLayers: d.numLayers, numHeads: d.numHeads, numKvHeads: d.numKvHeads, headDim: d.headDim,
      intermediateSize: d.intermediateSize, vocabSize: d.vocabSize, maxPositions: d.maxPositions, rmsNormEps: d.rmsNormEps,
      ropeTheta: d.ropeTheta, qkvBias: d.qkvBias, bf16: dtype === 'bf16', kvBf16: kvDType === 'bf16', maskId: d.special.mask,
      qkNorm: d.qkNorm, blockSize: d.blockSize ?? 0, reportChunk: reportChunk(d.vocabSize),
      ...(d.rotaryDim !== undefined ? { rotaryDim: d.rotaryDim } : {}), ...(d.clipQkv !== undefined ? { clipQkv: d.clipQkv } : {}),
      ...(d.outputBias ? { outputBias: true } : {}), ...(d.moe ? { moe: d.moe } : {}),
    });
    const expertBias: (Float32Array | null)[] = [];
    try {
      let done = 0;
      for (const t of plan.tensors) {
        const src = loaded.archive.info(t.name); // a row slice (LLaDA2's q, k, v) reads as a tensor of its own
        if (src.dtype === 'BF16' && t.deviceDType === 'bf16') {
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
      // Mixture layers' expert biases stay on the host, where routing runs.
      for (const layer of loaded.names.layers) expertBias.push(isMoeLayer(layer) && layer.expertBias ? await loaded.archive.readF32(layer.expertBias) : null);
    } catch (e) {
      native.free();
      throw e;
    }
    // What the device has for caches and scratch now that the weights are on it.
    const after = probe.binding.deviceInfo();
    const free = after.available ? after.freeBytes : 0;
    const budget: DeviceBudget = { memoryBytes: Math.max(0, free - MEMORY_MARGIN_BYTES), sms };
    if (options.cacheBudgetBytes !== undefined) budget.cacheBudgetBytes = options.cacheBudgetBytes;
    return new CudaEngine(schedulerModelInfo(d), native, d, name, kvDType, dtype, budget, expertBias);
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
      if (weightDType === 'int8') throw new Error("cuda engine: weightDType 'int8' is the CPU engines' format; use 'bf16' or 'f32' on the GPU, or the wasm engine for int8");
      const dtype = weightDType ?? 'bf16';
      const loaded = await openModel(modelDir);
      try {
        const plan = planWeights(loaded.description, loaded.names, shapeLookup(loaded.archive), dtype, maxLength, dtype);
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
