/**
 * The WASM engine: the forward pass of DESIGN §1 with the cache modes of DESIGN §4, many sequences per pass
 * (DESIGN §7), every heavy step in the AssemblyScript kernels (f32 activations; f32, bf16 or int8 weights). No Node API
 * here: the caller supplies the kernels (src/node.ts loads them in Node) and the opened model.
 *
 * Linear memory layout (d = hiddenSize, H/KV heads, hd = headDim, kw = KV*hd, ff = intermediateSize,
 * V = vocabSize):
 *
 *   heapBase ┬──────────────────────────────────────────────────────────────────────┐
 *            │ WEIGHTS (loaded once; norms, biases, embed f32; linear W f32/bf16/int8)│
 *            │   embed (V, d) · per layer: attnNorm (d), q (H*hd, d), k/v (kw, d),    │
 *            │   q/k/v bias (H*hd / kw, Qwen2), q/k norm (hd, Qwen3), o (d, H*hd),    │
 *            │   ffnNorm (d), gate/up (ff, d), down (d, ff) — a MoE layer: router     │
 *            │   (E, d) f32 and per expert gate/up (es, d), down (d, es), shared too  │
 *            │   · finalNorm (d) · lmHead                                             │
 *            │   (V, d); linear W (out, in) packed in panels (ceil(out/8), in, 8)     │
 *            │   (int8: 288 bytes per panel and block of 32 in; src/kernels.ts)       │
 *            │   (tied: no embed copy; its rows are read from the packed lmHead, f32, │
 *            │   bf16 or int8 dequantized — 0.9 GiB saved for 151936 × 1536)          │
 *   weightsEnd├─────────────────────────────────────────────────────────────────────┤  ← blocks, first-fit
 *            │ SEQUENCE CACHES, one block per open sequence of longest canvas M:     │    (allocBlock/freeBlock)
 *            │   per layer l: K_l (M, kw) f32 then V_l (M, kw) f32; row p = position p │
 *            │   (K after RoPE at absolute positions)                                 │
 *            │ PASS SCRATCH, one block sized for the largest pass so far (Scratch;    │
 *            │   int8: it holds the matmuls' quantized rows too, WasmKernels.int8Scratch)│
 *            └──────────────────────────────────────────────────────────────────────┘
 */
import {
  ENGINE_CONTRACT_VERSION, EngineCapacityError, SequenceTable, addAttentionLayer, assembleResults, checkModelSupported, keyValueWrites, ModelNotSupportedError,
  newAttentionReport, newPassReductions, reportedRows, type AttentionReport,
  type Engine, type EngineCapabilities, type ForwardRequest, type ForwardResult, type ModelInfo, type PassLayout,
  type SequenceHandle,
} from '@fast-dllm/engine-contract';
import {
  isMoeLayer, missingLayerFeatures, routeRows, routingRule, schedulerModelInfo, type ModelDescription, type ModelTensorNames, type RoutingRule,
  type SwigluTensorNames,
} from '@fast-dllm/model';
import { ATTENTION_SCORE_ROWS, WASM32_MAX_BYTES, int8ScratchBytes, packedBytes, type PackedWeight, type Region, type WasmKernels, type WeightDType } from './kernels.js';

/** Reads one tensor as f32, whatever its stored dtype (the archive of @fast-dllm/model does). */
export type TensorReader = (name: string) => Promise<Float32Array>;

/** One SwiGLU FFN: gate (w, d), up (w, d), down (d, w) packed, w its inner width. */
interface SwigluRegions { gate: PackedWeight; up: PackedWeight; down: PackedWeight }

/** A mixture-of-experts FFN (DESIGN §13). */
interface MoeRegions {
  router: PackedWeight; // (E, d) f32 whatever the weight dtype: top-k is a discrete choice
  experts: SwigluRegions[]; // E, inner width expertSize
  shared: SwigluRegions | null; // inner width sharedExpertSize
  bias: Float32Array | null; // (E) expert bias, read on the host where routing happens
  rule: RoutingRule; // softmax (LLaDA-MoE) or sigmoid group-limited (LLaDA2), applied on the host
}

interface LayerRegions {
  attnNorm: Region; q: PackedWeight; k: PackedWeight; v: PackedWeight;
  qBias: Region | null; kBias: Region | null; vBias: Region | null;
  qNorm: Region | null; kNorm: Region | null; // (hd) Qwen3 per-head q/k RMSNorm weights
  o: PackedWeight; oBias: Region | null; // (d) LLaDA2's use_bias
  ffnNorm: Region;
  ffn: { kind: 'dense'; w: SwigluRegions } | { kind: 'moe'; w: MoeRegions };
}

/** Reported rows reduced at once: bounds the logits scratch (chunk, V) for big vocabularies. */
const REPORT_CHUNK = 64;

/** The size a pass's scratch is laid out for. */
interface ScratchShape {
  rows: number; // computed rows of all sequences
  keys: number; // longest canvas in the pass
  reports: number; // reported rows reduced at once (<= REPORT_CHUNK)
}

/** Regions of one scratch block, laid out for a ScratchShape. */
interface Scratch extends ScratchShape {
  block: number;
  x: Region; h: Region; tmp: Region; // (rows, d) residual stream, normed input, projection output
  q: Region; att: Region; // (rows, H*hd)
  kNew: Region; vNew: Region; // (rows, kw) fresh K/V of every row
  kTmp: Region; vTmp: Region; // (keys, kw) a prefix step's keys: the cache with its fresh rows written in
  gate: Region; up: Region; // (rows, widest FFN: ff, expert or shared expert width)
  moeX: Region; moeY: Region; // (rows, d) MoE: the rows routed to one expert, gathered; that expert's output
  router: Region; // (rows, E) MoE router logits
  rot: Region; // (rows, max(H, KV), rotaryDim) partial rotary: the rotated dims of every head, gathered
  scores: Region; // (threads, ATTENTION_SCORE_ROWS, keys) attention score rows per kernel thread (query rows go in blocks)
  pos: Region; // (rows,) i32 absolute position of each row
  sel: Region; // (reports, d) rows whose hidden states predict the reports
  logits: Region; // (reports, V)
  res: Region; // (reports, 5) f64 per-row reductions
  keysU32: Region; // (reports, 3) u32 [position, seed, forwardIndex]
  temps: Region; // (reports,) f64 temperature
  xq: Region; // int8 weights: (max(rows, reports), 40 bytes per block of 32 of the widest input) quantized rows; length in bytes
}

/**
 * Bytes of the weights of a model as loaded: checked against wasm32's 4 GiB before anything is read. Linear
 * weights and the LM head in `dtype`; norms, biases and an untied embedding in f32 (a tied one is read from the
 * LM head: exact for f32/bf16, dequantized for int8).
 */
export function weightBytes(m: ModelDescription, dtype: WeightDType = 'f32'): number {
  let bytes = globalWeightBytes(m, dtype);
  for (let l = 0; l < m.numLayers; l++) bytes += layerWeightBytes(m, l, dtype);
  return bytes;
}

/** Bytes of layer l's weights: attention, norms, biases and its FFN (dense, or the mixture of DESIGN §13). */
export function layerWeightBytes(m: ModelDescription, l: number, dtype: WeightDType = 'f32'): number {
  const { hiddenSize: d, numHeads: H, numKvHeads: KV, headDim: hd, intermediateSize: ff } = m;
  const P = (out: number, inDim: number) => packedBytes(out, inDim, dtype); // panels round `out` up to a multiple of 8
  const swiglu = (w: number) => 2 * P(w, d) + P(d, w);
  const moe = m.moe?.moeLayers[l] ? m.moe : undefined;
  // A mixture: the f32 router, every expert, the shared expert; its expert bias lives on the host.
  const ffn = moe ? packedBytes(moe.numExperts, d, 'f32') + moe.numExperts * swiglu(moe.expertSize) + (moe.sharedExpertSize ? swiglu(moe.sharedExpertSize) : 0) : swiglu(ff);
  const f32 = 2 * d + (m.qkvBias ? H * hd + 2 * KV * hd : 0) + (m.qkNorm ? 2 * hd : 0) + (m.outputBias ? d : 0);
  return P(H * hd, d) + 2 * P(KV * hd, d) + P(d, H * hd) + ffn + 4 * f32;
}

/** Bytes of the weights outside the layers: LM head, final norm, and an untied embedding in f32. */
function globalWeightBytes(m: ModelDescription, dtype: WeightDType): number {
  const embedF32 = m.tiedEmbeddings ? 0 : m.vocabSize * m.hiddenSize; // tied: embedding rows come from the packed LM head
  return packedBytes(m.vocabSize, m.hiddenSize, dtype) + 4 * (m.hiddenSize + embedF32);
}

/** Bytes of f32 K/V one sequence of longest canvas `maxLength` reserves (over `layers` layers: a shard's). */
export function sequenceCacheBytes(m: Pick<ModelDescription, 'numLayers' | 'numKvHeads' | 'headDim'>, maxLength: number, layers = m.numLayers): number {
  return 2 * layers * maxLength * m.numKvHeads * m.headDim * 4;
}

/** Element counts of every scratch region, in layout order (f32 / i32 / u32 elements; f64 regions count 2). */
function scratchParts(m: ModelDescription, s: ScratchShape, threads: number, dtype: WeightDType): Array<[keyof Scratch, number, number]> {
  const { hiddenSize: d, numHeads: H, numKvHeads: KV, headDim: hd, vocabSize: V } = m;
  const ff = Math.max(m.intermediateSize, m.moe?.expertSize ?? 0, m.moe?.sharedExpertSize ?? 0); // widest FFN
  const E = m.moe ? m.moe.numExperts : 0;
  const RM = m.moe ? s.rows : 0; // MoE gather/scatter rows
  const rot = m.rotaryDim ?? 0, RH = Math.max(H, KV); // partial rotary's gathered dims
  const kw = KV * hd;
  const R = s.rows, Lk = s.keys, C = s.reports;
  const xq = dtype === 'int8' ? int8ScratchBytes(Math.max(R, C), Math.max(d, ff, H * hd)) : 0; // bytes
  // [name, 4-byte words, elements reported as the region's length]
  return [
    ['x', R * d, R * d], ['h', R * d, R * d], ['tmp', R * d, R * d], ['q', R * H * hd, R * H * hd], ['att', R * H * hd, R * H * hd],
    ['kNew', R * kw, R * kw], ['vNew', R * kw, R * kw], ['kTmp', Lk * kw, Lk * kw], ['vTmp', Lk * kw, Lk * kw],
    ['gate', R * ff, R * ff], ['up', R * ff, R * ff], ['moeX', RM * d, RM * d], ['moeY', RM * d, RM * d], ['router', R * E, R * E],
    ['rot', R * RH * rot, R * RH * rot],
    ['scores', ATTENTION_SCORE_ROWS * threads * Lk, ATTENTION_SCORE_ROWS * threads * Lk], ['pos', R, R],
    ['sel', C * d, C * d], ['logits', C * V, C * V], ['res', 2 * C * 5, C * 5], ['keysU32', C * 3, C * 3], ['temps', 2 * C, C],
    ['xq', Math.ceil(xq / 4), xq],
  ];
}

/** Bytes of the scratch of one pass of `rows` computed rows over canvases of at most `keys` positions. */
export function scratchBytes(m: ModelDescription, rows: number, keys: number, threads = 1, dtype: WeightDType = 'f32'): number {
  return scratchParts(m, { rows, keys, reports: Math.min(rows + 1, REPORT_CHUNK) }, threads, dtype)
    .reduce((a, [, words]) => a + 16 * Math.ceil((4 * words) / 16), 0);
}

/** Longest canvas (and rows of a pass) the load-time check makes sure fit beside the weights. */
const LOAD_CHECK_LENGTH = 64;

/**
 * Weight bytes one shard may hold when a model is split over several memories (DESIGN §14): the rest of its 4 GiB
 * is left for the sequences' caches and the pass scratch.
 */
export const SHARD_WEIGHT_BYTES = 3 * 2 ** 30;

/**
 * One wasm32 memory's share of a model (DESIGN §14): its kernels (instance, memory and worker pool), a run of
 * consecutive layers with their part of every sequence's cache, and a pass scratch. The last shard also holds
 * the LM head, the final norm and an untied embedding.
 */
interface Shard {
  K: WasmKernels;
  first: number; // index of its first layer
  layers: LayerRegions[];
  scratch: Scratch | null;
}

/**
 * The layer runs [first, end) of each shard: layers packed in order while a shard's weights stay under `budget`,
 * the head's weights counted in the last shard (a shard of its own when they do not fit beside the last layers).
 */
export function planShards(m: ModelDescription, dtype: WeightDType, budget = SHARD_WEIGHT_BYTES, maxLayers = Infinity): Array<[number, number]> {
  const plan: Array<[number, number]> = [];
  let first = 0, bytes = 0;
  for (let l = 0; l < m.numLayers; l++) {
    const b = layerWeightBytes(m, l, dtype);
    if (b > budget) throw new Error(`wasm engine: layer ${l} alone holds ${(b / 2 ** 30).toFixed(2)} GiB of ${dtype} weights, over a shard's ${(budget / 2 ** 30).toFixed(2)} GiB; use int8 weights or the cuda engine`);
    if ((bytes + b > budget || l - first >= maxLayers) && l > first) {
      plan.push([first, l]);
      first = l;
      bytes = 0;
    }
    bytes += b;
  }
  const head = globalWeightBytes(m, dtype);
  if (head > budget) throw new Error(`wasm engine: the embedding and LM head hold ${(head / 2 ** 30).toFixed(2)} GiB, over a shard's ${(budget / 2 ** 30).toFixed(2)} GiB`);
  plan.push([first, m.numLayers]);
  if (bytes + head > budget && m.numLayers > first) plan.push([m.numLayers, m.numLayers]);
  return plan;
}

/** How WasmEngine.load may split a model over several memories (DESIGN §14). */
export interface ShardingOptions {
  /** Makes the kernels of one more memory (Node); without it a model over 4 GiB is refused. */
  moreKernels?: () => Promise<WasmKernels>;
  /** At most this many layers per memory, whatever the model's size: splits small models too (tests, and a user's choice). */
  layersPerShard?: number;
}

export class WasmEngine implements Engine {
  readonly name = 'wasm';
  readonly model: ModelInfo;
  readonly capabilities: EngineCapabilities = {
    contractVersion: ENGINE_CONTRACT_VERSION,
    modes: ['full', 'prefix', 'dual', 'extend'],
    reports: { top2: true, entropy: true, logits: true },
    sampling: true,
    maxBatch: 64,
    blockCausal: true,
  };
  /** Each open sequence's cache block (byte offset) in each shard; -1 in a shard without layers. */
  private readonly sequences: SequenceTable<number[]>;
  /** The shard that holds the embedding, LM head and final norm: the last. */
  private readonly head: Shard;
  private disposed = false;

  private constructor(
    readonly desc: ModelDescription,
    private readonly shards: Shard[],
    /** (V, d) f32 row-major in the head shard, or null when the rows are read from the tied LM head (f32, bf16 or int8). */
    private readonly embed: Region | null,
    private readonly finalNorm: Region,
    private readonly lmHead: PackedWeight,
    readonly weightDType: WeightDType,
  ) {
    this.model = schedulerModelInfo(desc);
    this.capabilities.elasticCache = { layers: desc.numLayers };
    checkModelSupported(this.name, this.model, this.capabilities);
    this.sequences = new SequenceTable(this.name, this.model.maxPositions);
    this.head = shards[shards.length - 1];
  }

  /**
   * Copies the weights into linear memory. A model that fits one wasm32 memory (4 GiB) goes into `K`; a larger one is
   * split by layers over several memories (DESIGN §14), each from `moreKernels`, when the caller can make them
   * (Node); without it (the browser) it is refused before anything is read.
   */
  static async load(
    desc: ModelDescription, names: ModelTensorNames, read: TensorReader, K: WasmKernels, weightDType: WeightDType = 'f32',
    sharding?: ShardingOptions,
  ): Promise<WasmEngine> {
    const moreKernels = sharding?.moreKernels;
    const missing = missingLayerFeatures(desc, { moe: true, partialRotary: true, clipQkv: true, sigmoidRouting: true, outputBias: true });
    if (missing) throw new ModelNotSupportedError(`wasm engine: ${missing}; use --engine reference`);
    const L = Math.min(desc.maxPositions, LOAD_CHECK_LENGTH);
    const scratch = scratchBytes(desc, L, L, K.threads, weightDType);
    const need = K.usedBytes + weightBytes(desc, weightDType) + sequenceCacheBytes(desc, L) + scratch;
    let plan: Array<[number, number]> = [[0, desc.numLayers]];
    if (sharding?.layersPerShard !== undefined) {
      if (!moreKernels) throw new Error('wasm engine: layersPerShard needs moreKernels to make the other memories');
      plan = planShards(desc, weightDType, SHARD_WEIGHT_BYTES, sharding.layersPerShard);
    } else if (need > WASM32_MAX_BYTES) {
      if (!moreKernels) {
        throw new Error(
          `wasm engine: this model needs ${(need / 2 ** 30).toFixed(2)} GiB of linear memory (${weightDType} weights + one ${L}-token sequence) ` +
            `but wasm32 addresses at most 4 GiB (in Node the engine splits larger models over several memories; a browser cannot); ` +
            `${weightDType === 'int8' ? '' : "use int8 weights (weightDType 'int8', --dtype int8), "}the cuda engine or a smaller model`,
        );
      }
      plan = planShards(desc, weightDType);
    }
    const shards: Shard[] = [];
    try {
      for (const [first, end] of plan) {
        const SK = shards.length === 0 ? K : await moreKernels!();
        shards.push({ K: SK, first, layers: await WasmEngine.loadLayers(desc, names, read, SK, weightDType, first, end), scratch: null });
      }
      const HK = shards[shards.length - 1].K;
      const put = async (name: string): Promise<Region> => {
        const data = await read(name);
        return HK.allocF32(data.length, data);
      };
      // Tied: the embedding is the LM head, whose packed rows weightRow reads back (bf16 widened exactly, int8 dequantized).
      const embed = names.lmHead === names.embed ? null : await put(names.embed);
      const finalNorm = await put(names.finalNorm);
      const lmHead = await packLinear(HK, read, names.lmHead, desc.vocabSize, desc.hiddenSize, weightDType);
      return new WasmEngine(desc, shards, embed, finalNorm, lmHead, weightDType);
    } catch (e) {
      for (const sh of shards.slice(1)) await sh.K.parallel?.dispose(); // the caller owns K
      throw e;
    }
  }

  /** Layers [first, end) into K's memory. */
  private static async loadLayers(
    desc: ModelDescription, names: ModelTensorNames, read: TensorReader, K: WasmKernels, weightDType: WeightDType, first: number, end: number,
  ): Promise<LayerRegions[]> {
    const put = async (name: string): Promise<Region> => {
      const data = await read(name);
      return K.allocF32(data.length, data);
    };
    const { hiddenSize: d, numHeads: H, numKvHeads: KV, headDim: hd, intermediateSize: ff } = desc;
    const putLinear = (name: string, out: number, inDim: number) => packLinear(K, read, name, out, inDim, weightDType);
    const swiglu = async (s: SwigluTensorNames, width: number): Promise<SwigluRegions> =>
      ({ gate: await putLinear(s.gate, width, d), up: await putLinear(s.up, width, d), down: await putLinear(s.down, d, width) });
    const layers: LayerRegions[] = [];
    for (const n of names.layers.slice(first, end)) {
      let ffn: LayerRegions['ffn'];
      if (isMoeLayer(n)) {
        const moe = desc.moe!;
        const routerData = await read(n.router);
        const experts: SwigluRegions[] = [];
        for (const e of n.experts) experts.push(await swiglu(e, moe.expertSize));
        ffn = {
          kind: 'moe', w: {
            router: K.allocWeight(routerData, moe.numExperts, d, 'f32'), experts,
            shared: n.shared ? await swiglu(n.shared, moe.sharedExpertSize!) : null, bias: n.expertBias ? await read(n.expertBias) : null,
            rule: routingRule(moe),
          },
        };
      } else ffn = { kind: 'dense', w: await swiglu(n, ff) };
      layers.push({
        attnNorm: await put(n.attnNorm), q: await putLinear(n.q, H * hd, d), k: await putLinear(n.k, KV * hd, d),
        v: await putLinear(n.v, KV * hd, d),
        qBias: n.qBias ? await put(n.qBias) : null, kBias: n.kBias ? await put(n.kBias) : null,
        vBias: n.vBias ? await put(n.vBias) : null,
        qNorm: n.qNorm ? await put(n.qNorm) : null, kNorm: n.kNorm ? await put(n.kNorm) : null,
        o: await putLinear(n.o, d, H * hd), oBias: n.oBias ? await put(n.oBias) : null, ffnNorm: await put(n.ffnNorm), ffn,
      });
    }
    return layers;
  }

  /**
   * Linear memory as it stands, over every shard: `linearBytes` the WebAssembly.Memories' sizes (what the process
   * holds, at most 4 GiB each), `usedBytes` the allocators' tops (weights, open sequences' caches, pass scratch),
   * `weightBytes` the weights' share, `shards` how many memories hold the model.
   */
  memoryUsage(): { linearBytes: number; usedBytes: number; weightBytes: number; shards: number } {
    return {
      linearBytes: this.shards.reduce((a, sh) => a + sh.K.memory.buffer.byteLength, 0),
      usedBytes: this.shards.reduce((a, sh) => a + sh.K.usedBytes, 0),
      weightBytes: weightBytes(this.desc, this.weightDType), shards: this.shards.length,
    };
  }

  /** The kernel build every shard runs ('release', 'threads-fma', …). */
  get build(): string {
    return this.head.K.build;
  }

  sequenceBytes(maxLength: number): number {
    return sequenceCacheBytes(this.desc, maxLength);
  }

  /** A shard's part of one sequence's cache: K/V of its own layers. */
  private shardSequenceBytes(sh: Shard, maxLength: number): number {
    return sequenceCacheBytes(this.desc, maxLength, sh.layers.length);
  }

  sequenceCapacity(maxLength: number): number {
    if (this.disposed) return 0;
    const fits = this.shards.filter((sh) => sh.layers.length > 0).map((sh) => sh.K.blocksThatFit(this.shardSequenceBytes(sh, maxLength)));
    return Math.min(...fits);
  }

  openSequence(maxLength: number): SequenceHandle {
    if (this.disposed) throw new Error('openSequence: the engine was disposed');
    return this.sequences.open(maxLength, () => {
      const blocks: number[] = [];
      try {
        for (const sh of this.shards) blocks.push(sh.layers.length ? sh.K.allocBlock(this.shardSequenceBytes(sh, maxLength)) : -1);
      } catch (e) {
        blocks.forEach((b, i) => { if (b >= 0) this.shards[i].K.freeBlock(b); });
        throw e;
      }
      return blocks;
    });
  }

  closeSequence(sequence: SequenceHandle): void {
    const blocks = this.sequences.close(sequence);
    if (blocks !== undefined && !this.disposed) blocks.forEach((b, i) => { if (b >= 0) this.shards[i].K.freeBlock(b); });
  }

  async forward(batch: readonly ForwardRequest[], signal?: AbortSignal): Promise<ForwardResult[]> {
    if (this.disposed) throw new Error('forward: the engine was disposed');
    return this.sequences.pass(this.model, this.capabilities, batch, signal, {
      reserve: (layout) => {
        const keys = batch.reduce((a, r) => Math.max(a, r.canvas.length), 0);
        for (const sh of this.shards) this.ensureScratch(sh, { rows: layout.rows, keys, reports: Math.min(Math.max(layout.reports, 1), REPORT_CHUNK) });
      },
      compute: (caches, layout) => this.layersForward(batch, caches, layout, signal),
      results: (done, layout) => this.report(batch, layout, done),
    });
  }

  /** Grows a shard's scratch block to hold a pass of this shape; throws EngineCapacityError (nothing changed) when it cannot. */
  private ensureScratch(sh: Shard, need: ScratchShape): void {
    const s = sh.scratch;
    if (s && s.rows >= need.rows && s.keys >= need.keys && s.reports >= need.reports) return;
    const shape: ScratchShape = {
      rows: Math.max(need.rows, s?.rows ?? 0), keys: Math.max(need.keys, s?.keys ?? 0), reports: Math.max(need.reports, s?.reports ?? 0),
    };
    const parts = scratchParts(this.desc, shape, sh.K.threads, this.weightDType);
    const bytes = parts.reduce((a, [, words]) => a + 16 * Math.ceil((4 * words) / 16), 0);
    if (s) sh.K.freeBlock(s.block);
    sh.scratch = null;
    sh.K.int8Scratch = null;
    let block: number;
    try {
      block = sh.K.allocBlock(bytes);
    } catch (e) {
      throw e instanceof EngineCapacityError
        ? new EngineCapacityError(`wasm engine: a pass of ${need.rows} rows over canvases of up to ${need.keys} tokens needs ${(bytes / 2 ** 20).toFixed(1)} MiB of scratch that wasm32's 4 GiB cannot hold beside the open sequences; run fewer sequences per pass`)
        : e;
    }
    const out = { ...shape, block } as Scratch;
    let ptr = block;
    for (const [name, words, length] of parts) {
      (out as unknown as Record<string, Region>)[name] = { ptr, length };
      ptr += 16 * Math.ceil((4 * words) / 16);
    }
    sh.scratch = out;
    if (this.weightDType === 'int8') sh.K.int8Scratch = out.xq; // the int8 matmuls' quantized rows
  }

  /** Cache region of a shard's local layer l's keys (v: values) for a sequence's cache block there, rows [0, rows). */
  private cacheRegion(block: number, maxLength: number, l: number, v: boolean, rows: number): Region {
    const kw = this.desc.numKvHeads * this.desc.headDim;
    return { ptr: block + ((2 * l + (v ? 1 : 0)) * maxLength * kw) * 4, length: rows * kw };
  }

  /**
   * Runs the layers over every request's span, shard after shard (the residual rows (n, d) copied from one memory to
   * the next), updating caches as the modes say; leaves final-normed rows in the head shard's scratch.h (only the
   * reported ones when the last layer dropped the others, DESIGN §7). Returns each request's attention report
   * (DESIGN §16) when it asked for one, and the scratch.h row of each report.
   */
  private layersForward(batch: readonly ForwardRequest[], caches: number[][], layout: PassLayout, signal?: AbortSignal): LayersDone {
    const m = this.desc;
    const { hiddenSize: d, numHeads: H, numKvHeads: KV, headDim: hd, intermediateSize: ff } = m;
    const kw = KV * hd;
    const N = layout.rows;
    // Rows still computed: all N until the last layer's K/V, then only the reported ones (DESIGN §7), kept at the
    // front of every scratch buffer in ascending order. An attention report reads every query row of its span, so a
    // pass that asks for one keeps all rows.
    const kept = batch.some((r) => r.attention) ? null : reportedRows(layout);
    const prune = kept !== null && kept.rows.length > 0 && kept.rows.length < N;
    let n = N;
    const sub = (r: Region, offset: number, length: number): Region => ({ ptr: r.ptr + offset * 4, length });
    const rows = (r: Region, width: number) => sub(r, 0, n * width);
    const scale = 1 / Math.sqrt(hd);
    const B = this.model.blockSize;
    const attention = batch.map((req) => (req.attention ? newAttentionReport(m.numLayers, req.attention.end - req.attention.start) : undefined));
    this.shards.forEach((sh, si) => {
      const K = sh.K;
      const ws = sh.scratch!;
      const pos = K.i32(ws.pos);
      const x = K.f32(ws.x);
      batch.forEach((req, b) => {
        for (let p = req.start; p < req.end; p++) pos[layout.rowOffset[b] + p - req.start] = p;
      });
      if (si === 0) {
        const emb = this.embed ? this.head.K.f32(this.embed) : null;
        batch.forEach((req, b) => {
          for (let p = req.start; p < req.end; p++) {
            const row = layout.rowOffset[b] + p - req.start;
            const t = req.canvas[p];
            if (emb) x.set(emb.subarray(t * d, t * d + d), row * d);
            else this.head.K.weightRow(this.lmHead, t, x, row * d);
          }
        });
      } else {
        const prev = this.shards[si - 1];
        x.set(prev.K.f32(prev.scratch!.x).subarray(0, n * d)); // the residual stream moves to this shard's memory
      }
      for (let ll = 0; ll < sh.layers.length; ll++) {
        signal?.throwIfAborted();
        const w = sh.layers[ll];
        const last = prune && sh.first + ll === m.numLayers - 1;
        // Every matrix product runs over the concatenated rows of all sequences: one read of the weights.
        K.rmsnorm(rows(ws.x, d), w.attnNorm, rows(ws.h, d), n, d, m.rmsNormEps);
        K.matmul(rows(ws.h, d), w.k, w.kBias, rows(ws.kNew, kw), n);
        // Qwen3: per-head RMSNorm before RoPE, in place over the (n·KV, hd) rows of k (and (n·H, hd) of q).
        if (w.kNorm) K.rmsnorm(rows(ws.kNew, kw), w.kNorm, rows(ws.kNew, kw), n * KV, hd, m.rmsNormEps);
        this.clip(K, rows(ws.kNew, kw));
        this.rope(sh, rows(ws.kNew, kw), n, KV);
        K.matmul(rows(ws.h, d), w.v, w.vBias, rows(ws.vNew, kw), n);
        this.clip(K, rows(ws.vNew, kw));
        if (last) {
          // From here on only the reported rows: the normed and residual rows and their positions move to the front
          // (kept.rows ascending and kept.rows[j] ≥ j, so copying forward in place is safe).
          const h = K.f32(ws.h), xr = K.f32(ws.x), pos = K.i32(ws.pos);
          kept!.rows.forEach((row, j) => {
            h.copyWithin(j * d, row * d, row * d + d);
            xr.copyWithin(j * d, row * d, row * d + d);
            pos[j] = pos[row];
          });
          n = kept!.rows.length;
        }
        K.matmul(rows(ws.h, d), w.q, w.qBias, rows(ws.q, H * hd), n);
        if (w.qNorm) K.rmsnorm(rows(ws.q, H * hd), w.qNorm, rows(ws.q, H * hd), n * H, hd, m.rmsNormEps);
        this.clip(K, rows(ws.q, H * hd));
        this.rope(sh, rows(ws.q, H * hd), n, H);
        // Attention per sequence, over its own keys by absolute position (L, kw); the fresh rows take their own
        // slots: written into the cache, except for prefix steps, which write into a copy so the cache stays.
        batch.forEach((req, b) => {
          const o = layout.rowOffset[b];
          const span = req.end - req.start;
          const L = req.canvas.length;
          const maxLen = req.sequence.maxLength;
          let keys = this.cacheRegion(caches[b][si], maxLen, ll, false, L);
          let values = this.cacheRegion(caches[b][si], maxLen, ll, true, L);
          if (req.mode === 'prefix') {
            K.f32(sub(ws.kTmp, 0, L * kw)).set(K.f32(keys));
            K.f32(sub(ws.vTmp, 0, L * kw)).set(K.f32(values));
            keys = sub(ws.kTmp, 0, L * kw);
            values = sub(ws.vTmp, 0, L * kw);
          }
          // The rows whose K/V this layer writes: the span, or a refresh's span below its fromLayer (DESIGN §16).
          const { from, to } = keyValueWrites(req, sh.first + ll);
          const wo = o + from - req.start;
          K.f32(sub(keys, from * kw, (to - from) * kw)).set(K.f32(sub(ws.kNew, wo * kw, (to - from) * kw)));
          K.f32(sub(values, from * kw, (to - from) * kw)).set(K.f32(sub(ws.vNew, wo * kw, (to - from) * kw)));
          const a = req.attention;
          if (a) {
            const rows = a.end - a.start;
            addAttentionLayer(attention[b]!, sh.first + ll, a.keys?.[sh.first + ll] ?? -1, K.f32(sub(ws.q, (o + a.start - req.start) * H * hd, rows * H * hd)),
              K.f32(sub(keys, 0, L * kw)), rows, L, H, KV, hd);
          }
          // Rows of one attention call share their visible keys: all L, or (block-causal) up to their block's end.
          // q row qi (of this pass's computed rows) holds position p; on the last layer only the kept rows remain.
          const limitOf = (p: number) => (B === undefined ? L : Math.min(L, (Math.floor(p / B) + 1) * B));
          const attend = (qi: number, count: number, limit: number) => K.attention(sub(ws.q, qi * H * hd, count * H * hd),
            sub(keys, 0, limit * kw), sub(values, 0, limit * kw), sub(ws.att, qi * H * hd, count * H * hd),
            sub(ws.scores, 0, ATTENTION_SCORE_ROWS * limit * K.threads), count, limit, H, KV, hd, scale);
          if (last) {
            const rowsK = kept!.rows;
            let j = 0;
            while (j < rowsK.length && rowsK[j] < o) j++;
            while (j < rowsK.length && rowsK[j] < o + span) {
              const limit = limitOf(req.start + rowsK[j] - o);
              let e = j + 1;
              while (e < rowsK.length && rowsK[e] < o + span && limitOf(req.start + rowsK[e] - o) === limit) e++;
              attend(j, e - j, limit);
              j = e;
            }
            return;
          }
          for (let i = 0; i < span;) {
            const p = req.start + i;
            const count = B === undefined ? span : Math.min(span - i, (Math.floor(p / B) + 1) * B - p);
            attend(o + i, count, limitOf(p));
            i += count;
          }
        });
        K.matmul(rows(ws.att, H * hd), w.o, w.oBias, rows(ws.tmp, d), n);
        addInto(K.f32(ws.x), K.f32(ws.tmp), n * d);
        K.rmsnorm(rows(ws.x, d), w.ffnNorm, rows(ws.h, d), n, d, m.rmsNormEps);
        if (w.ffn.kind === 'moe') this.moe(sh, w.ffn.w, n);
        else this.swigluFfn(sh, w.ffn.w, ws.h, ws.tmp, n, ff);
        addInto(K.f32(ws.x), K.f32(ws.tmp), n * d);
      }
    });
    const hs = this.head.scratch!;
    this.head.K.rmsnorm(rows(hs.x, d), this.finalNorm, rows(hs.h, d), n, d, m.rmsNormEps);
    return { attention, reportRow: prune ? kept!.index : layout.reportRow };
  }

  /** LLaDA-MoE's clip_qkv (DESIGN §13): x clamped to ±clipQkv in place (exact in f32); nothing without it. */
  private clip(K: WasmKernels, x: Region): void {
    const c = this.desc.clipQkv;
    if (c === undefined) return;
    const v = K.f32(x);
    for (let i = 0; i < v.length; i++) v[i] = Math.min(c, Math.max(-c, v[i]));
  }

  /**
   * RoPE in place on x (n, heads, hd) at the rows' positions in scratch.pos. Partial rotary (DESIGN §13) turns only
   * the first rotaryDim dims of each head: they are gathered into scratch.rot as (n, heads, rotaryDim), rotated by the
   * same kernel as a head of that width (angles pos · theta^(-2j/rotaryDim), as partial rotary defines), and put back.
   */
  private rope(sh: Shard, x: Region, n: number, heads: number): void {
    const K = sh.K;
    const ws = sh.scratch!;
    const { headDim: hd, ropeTheta: theta, rotaryDim: rot } = this.desc;
    const pos = { ptr: ws.pos.ptr, length: n };
    if (rot === undefined) {
      K.rope(x, pos, n, heads, hd, theta);
      return;
    }
    const part = { ptr: ws.rot.ptr, length: n * heads * rot };
    const src = K.f32(x), dst = K.f32(part);
    for (let r = 0; r < n * heads; r++) dst.set(src.subarray(r * hd, r * hd + rot), r * rot);
    K.rope(part, pos, n, heads, rot, theta);
    const back = K.f32(part), out = K.f32(x);
    for (let r = 0; r < n * heads; r++) out.set(back.subarray(r * rot, r * rot + rot), r * hd);
  }

  /** y (n, d) = down(silu(gate x) · up x) for x (n, d), through the shard's scratch.gate/up (n, width). */
  private swigluFfn(sh: Shard, w: SwigluRegions, x: Region, y: Region, n: number, width: number): void {
    const K = sh.K;
    const ws = sh.scratch!;
    const d = this.desc.hiddenSize;
    const gate = { ptr: ws.gate.ptr, length: n * width };
    const up = { ptr: ws.up.ptr, length: n * width };
    K.matmul({ ptr: x.ptr, length: n * d }, w.gate, null, gate, n);
    K.matmul({ ptr: x.ptr, length: n * d }, w.up, null, up, n);
    K.swiglu(gate, up, gate, n * width);
    K.matmul(gate, w.down, null, { ptr: y.ptr, length: n * d }, n);
  }

  /**
   * The mixture (DESIGN §13) of the normed rows scratch.h (n, d) into scratch.tmp (n, d): route every row on the
   * host (the layer's rule over the f32 router logits in f64: softmax + expert bias, or LLaDA2's sigmoid group-limited
   * top-k, §13.1; ties to the lower expert), then run each
   * expert once over the rows routed to it, gathered into scratch.moeX, and add its weighted output to each of
   * those rows in ascending expert order, then the shared expert. A row's sum never depends on the other rows.
   */
  private moe(sh: Shard, w: MoeRegions, n: number): void {
    const K = sh.K;
    const ws = sh.scratch!;
    const moe = this.desc.moe!;
    const d = this.desc.hiddenSize;
    const E = moe.numExperts;
    const k = moe.topK;
    K.matmul({ ptr: ws.h.ptr, length: n * d }, w.router, null, { ptr: ws.router.ptr, length: n * E }, n);
    // Routing on the host, in float64 (one place for the rules of every engine: @fast-dllm/model's routeRows).
    const { experts: chosen, weights: weight } = routeRows(K.f32(ws.router), n, E, k, w.bias, w.rule);
    K.f32(ws.tmp).fill(0, 0, n * d); // (n, d) the mixture's output, summed in f32
    const members = new Int32Array(n); // slots (row·k + rank) routed to the current expert
    for (let e = 0; e < E; e++) {
      let count = 0;
      for (let s = 0; s < n * k; s++) if (chosen[s] === e) members[count++] = s;
      if (count === 0) continue;
      const h = K.f32(ws.h);
      const xs = K.f32(ws.moeX);
      for (let j = 0; j < count; j++) {
        const row = Math.floor(members[j] / k);
        xs.set(h.subarray(row * d, row * d + d), j * d);
      }
      this.swigluFfn(sh, w.experts[e], ws.moeX, ws.moeY, count, moe.expertSize);
      const ys = K.f32(ws.moeY); // views taken after the kernels ran: memory may have grown
      const acc = K.f32(ws.tmp);
      for (let j = 0; j < count; j++) {
        const s = members[j];
        const o = Math.floor(s / k) * d;
        const g = weight[s];
        for (let t = 0; t < d; t++) acc[o + t] += g * ys[j * d + t];
      }
    }
    if (w.shared) {
      this.swigluFfn(sh, w.shared, ws.h, ws.moeY, n, moe.sharedExpertSize!);
      addInto(K.f32(ws.tmp), K.f32(ws.moeY), n * d);
    }
  }

  /** Runs the LM head over the rows that predict each report, REPORT_CHUNK at a time, and reduces each row in wasm. */
  private report(batch: readonly ForwardRequest[], layout: PassLayout, { attention, reportRow }: LayersDone): ForwardResult[] {
    const K = this.head.K;
    const ws = this.head.scratch!;
    const d = this.desc.hiddenSize;
    const V = this.desc.vocabSize;
    const n = layout.reports;
    const { token, prob, top1, top2, entropy } = newPassReductions(n); // (n,) each; entropy in nats
    const wantLogits = batch.some((r) => r.want?.logits);
    const logits = wantLogits ? new Float32Array(n * V) : undefined; // (n, V)
    for (let c0 = 0; c0 < n; c0 += ws.reports) {
      const c = Math.min(ws.reports, n - c0);
      const h = K.f32(ws.h);
      const sel = K.f32(ws.sel);
      const keys = new Uint32Array(K.memory.buffer, ws.keysU32.ptr, c * 3); // (c, 3) position, seed, forwardIndex
      const temps = new Float64Array(K.memory.buffer, ws.temps.ptr, c); // (c,)
      for (let i = 0; i < c; i++) {
        const r = c0 + i;
        const row = reportRow[r];
        sel.set(h.subarray(row * d, row * d + d), i * d);
        keys[3 * i] = layout.position[r];
        keys[3 * i + 1] = layout.seed[r];
        keys[3 * i + 2] = layout.forwardIndex[r];
        temps[i] = layout.temperature[r];
      }
      const logitsRegion = { ptr: ws.logits.ptr, length: c * V };
      K.matmul({ ptr: ws.sel.ptr, length: c * d }, this.lmHead, null, logitsRegion, c);
      const red = K.reduceRows(logitsRegion, V, c, ws.keysU32, ws.temps, ws.res, this.model.maskId);
      for (let i = 0; i < c; i++) {
        token[c0 + i] = red[i].token;
        prob[c0 + i] = red[i].prob;
        top1[c0 + i] = red[i].top1;
        top2[c0 + i] = red[i].top2;
        entropy[c0 + i] = red[i].entropy;
      }
      logits?.set(K.f32(logitsRegion), c0 * V);
    }
    return assembleResults(batch, layout, { token, prob, top1, top2, entropy, logits }, V, attention);
  }

  async dispose(): Promise<void> {
    this.disposed = true;
    for (const sh of this.shards) {
      await sh.K.parallel?.dispose();
      sh.K.parallel = null;
      sh.scratch = null;
    }
  }
}

/** Packs a linear weight W (out, inDim) into the matmul kernels' panel layout as it is copied into K's memory. */
async function packLinear(K: WasmKernels, read: TensorReader, name: string, out: number, inDim: number, dtype: WeightDType): Promise<PackedWeight> {
  const data = await read(name);
  if (data.length !== out * inDim) throw new Error(`wasm engine: tensor ${name} has ${data.length} values; expected ${out}×${inDim}`);
  return K.allocWeight(data, out, inDim, dtype);
}

/** What the layers leave for the LM head: each request's attention report, and (reports,) the row of scratch.h holding each report's final-normed hidden state. */
interface LayersDone {
  attention: (AttentionReport | undefined)[];
  reportRow: Int32Array;
}

function addInto(x: Float32Array, y: Float32Array, count: number): void {
  for (let i = 0; i < count; i++) x[i] += y[i];
}
