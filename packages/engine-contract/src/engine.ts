/**
 * The engine contract: the one boundary between policy (this package: which span to compute, when the cache
 * is rebuilt, which tokens to commit) and mechanism (an engine: weights, K/V layout, kernels).
 * docs/DESIGN.md §4 (cache modes) and §7 (many sequences) explain the rules stated here.
 *
 * An engine holds the weights of one model and the K/V caches of many sequences. A sequence is opened with the
 * longest canvas it will ever have (its cache is reserved then, or refused with EngineCapacityError) and closed
 * when it is done. One `forward` call is one pass over the weights that computes rows of one or more sequences;
 * it is one NFE for each of them.
 *
 * Versioned: an engine states the contract version it implements; the scheduler refuses a mismatch.
 * Helpers that every engine needs (cache bookkeeping, Dream's row shift, laying a pass out, assembling results)
 * live beside this file in engine-kit.ts.
 */

/**
 * Bumped on any change that an existing engine would get wrong. 2: many sequences per engine, `extend`. 3: one
 * sequence in several `prefix` requests of a pass (a verify pass's draft canvases, DESIGN §16).
 */
export const ENGINE_CONTRACT_VERSION = 3;

/**
 * What one forward pass computes for one sequence, and what it does to that sequence's cache (DESIGN §4, §8).
 * L = canvas.length; the cache holds valid K/V for positions [0, C) (C = 0 after opening).
 * - `full`:   compute [0, L); store K/V of all L positions: C := L. `start` 0, `end` L.
 * - `prefix`: compute [start, L) attending to cached [0, start) and the fresh [start, L); the cache is not
 *             modified. `end` L, and start <= C.
 * - `dual`:   compute [start, end) attending to cached [0, start) and [end, L) and the fresh [start, end),
 *             which then overwrite the cache slots [start, end). Needs C = L.
 * - `extend`: as `prefix`, but the fresh K/V of [start, L) are written: C := L. How block-diffusion models grow
 *             their exact cache one block at a time. `end` L, and start <= C.
 * Whether cached K/V is stale is the scheduler's business (that is the approximation).
 * Attention is bidirectional, or block-causal when `ModelInfo.blockSize` is set: position i sees key j only
 * when floor(j / B) <= floor(i / B).
 */
export type ForwardMode = 'full' | 'prefix' | 'dual' | 'extend';

/**
 * a2d_mdlm / a2d_bd3lm: dllm's A2D checkpoints decoded as masked or as block diffusion (DESIGN §15); llada2_moe:
 * LLaDA2.x, block diffusion decoded by SDAR's procedure (DESIGN §13.1).
 */
export type Architecture = 'llada' | 'dream' | 'fast_dllm_v2' | 'sdar' | 'a2d_mdlm' | 'a2d_bd3lm' | 'llada2_moe';

/** What the scheduler needs to know of a model. Engines fill it from the model's config. */
export interface ModelInfo {
  architecture: Architecture;
  vocabSize: number;
  /** Longest canvas (prompt + generation) the model's positions allow. */
  maxPositions: number;
  /** Never proposed as a token (DESIGN §3): engines leave it out of the argmax and of the Gumbel-max draw. */
  maskId: number;
  /** End of sequence; also the padding the model writes after its answer. */
  eosId: number;
  /** End of turn (`<|eot_id|>`, `<|im_end|>`), when the model has one. */
  endOfTurnId?: number;
  /**
   * The prediction for absolute position p is read from the hidden row of p-1 when p-1 lies inside the
   * computed span [start, end), and from p's own row otherwise (Dream, Fast-dLLM v2; DESIGN §1). Such a model
   * may also ask for p = end: the row end-1 predicts the position just past the span.
   */
  shiftLogits: boolean;
  /** Block-causal attention with blocks of this many positions (block-diffusion models, DESIGN §8). */
  blockSize?: number;
  /**
   * Generated ids that end an answer (DESIGN §8–9): EOS, end of turn, and for block-diffusion models every stop id
   * the model's config, generation config and tokenizer name. Absent: [eosId, endOfTurnId].
   */
  stopIds?: readonly number[];
}

export interface EngineCapabilities {
  /** ENGINE_CONTRACT_VERSION the engine implements. */
  contractVersion: number;
  /** Forward modes the engine implements; a run that needs a missing one fails with "not supported". */
  modes: readonly ForwardMode[];
  /** Optional reports; `tokens` and `probs` are always supported. */
  reports: { top2: boolean; entropy: boolean; logits: boolean };
  /** Gumbel-max sampling with the shared counter RNG (see rng.ts). */
  sampling: boolean;
  /** Most sequences one forward pass may carry. */
  maxBatch: number;
  /** Block-causal attention (ModelInfo.blockSize); false: only bidirectional models load. */
  blockCausal: boolean;
  /**
   * Elastic-Cache (DESIGN §16): the engine takes `ForwardRequest.attention` (the attention report) and
   * `ForwardRequest.refresh` (a full forward that keeps the shallow layers' cache outside a span). `layers`: the
   * model's transformer layers (the report's length, `refresh.fromLayer`'s bound). Absent: neither is supported.
   */
  elasticCache?: { layers: number };
}

/** Temperature sampling (Gumbel-max) keyed so that every engine draws the same noise, alone or in a batch. */
export interface SamplingSpec {
  /** T > 0. The proposal is argmax_v(logits[v] / T + g(seed, forwardIndex, position, v)), in float64. */
  temperature: number;
  /** u32 seed of the sequence's request. */
  seed: number;
  /** 0-based index of this forward pass within the sequence's own generation (its NFE number minus one). */
  forwardIndex: number;
}

/** A sequence whose K/V cache the engine holds; from `openSequence`, valid until `closeSequence`. */
export interface SequenceHandle {
  readonly id: number;
  /** Longest canvas this sequence may send (its cache was reserved for it). */
  readonly maxLength: number;
}

/** One sequence's part of a forward pass. */
export interface ForwardRequest {
  sequence: SequenceHandle;
  /** (L,) int32 token ids: the whole canvas, prompt ++ generated (masks included); L <= sequence.maxLength. */
  canvas: Int32Array;
  mode: ForwardMode;
  /** Computed span [start, end), absolute positions; see ForwardMode for what each mode allows. */
  start: number;
  end: number;
  /**
   * (n,) int32 absolute positions whose predictions are reported, ascending, each inside [start, end)
   * (or equal to `end` for a model with shifted logits).
   */
  positions: Int32Array;
  /** Extra reports; each must be in the engine's capabilities. */
  want?: { top2?: boolean; entropy?: boolean; logits?: boolean };
  /** Absent: greedy (argmax, ties to the lowest token id). */
  sampling?: SamplingSpec;
  /**
   * The attention report (DESIGN §16, Elastic-Cache; needs `capabilities.elasticCache`): for each layer, what the
   * computed rows [start, end) (absolute positions inside the pass's span) attend to. A row's attention weights
   * over the keys it sees are a_h(j) = softmax_j(q_h · k_j / sqrt(headDim)) per query head h, with the keys as this
   * layer's attention read them (the cache with the pass's fresh rows written in); A(r, j) is their mean over the
   * heads. Per layer l the report gives the key most attended by the rows, argmax_j sum_r A(r, j) (ties to the lower
   * position), A(r, top) and A(r, keys[l]). `keys`: (layers,) one absolute key position < L per layer, or -1 for none
   * (its weights are then 0); absent: none. Only for bidirectional models. Computed in float64 from the engine's
   * query and key rows, one sequence at a time (so batch invariant).
   */
  attention?: { start: number; end: number; keys?: Int32Array };
  /**
   * Elastic-Cache's refresh (DESIGN §16; needs `capabilities.elasticCache`), only with mode `full` on a sequence whose
   * cache holds this canvas (C = L): every position is computed as in a full forward, but the layers below
   * `fromLayer` write the K/V of [start, end) only; the other positions' K/V in those layers are read from the cache
   * (the rows still compute their queries and hidden states) and kept. Layers `fromLayer` and deeper write every
   * position. 0 <= fromLayer < layers; fromLayer 0 is a plain full forward.
   */
  refresh?: { fromLayer: number; start: number; end: number };
}

/** The attention report of one request (ForwardRequest.attention); n = attention.end - attention.start rows. */
export interface AttentionReport {
  /** (layers,) int32: per layer, the key position the rows attend to most (summed over rows, mean over heads). */
  top: Int32Array;
  /** (layers, n) float64 row-major: A(r, top[l]) for each row r. */
  atTop: Float64Array;
  /** (layers, n) float64 row-major: A(r, keys[l]) for each row r (0 where keys[l] is -1 or absent). */
  tracked: Float64Array;
}

export interface ForwardResult {
  /** (n,) int32: the proposed token for positions[i]: argmax of the clean logits, or the Gumbel-max sample. */
  tokens: Int32Array;
  /** (n,) float64: softmax probability of tokens[i] under the clean logits (no noise, no temperature). */
  probs: Float64Array;
  /** (n,) float64, with want.top2: the largest clean softmax probability. */
  top1Probs?: Float64Array;
  /** (n,) float64, with want.top2: the second largest clean softmax probability. */
  top2Probs?: Float64Array;
  /** (n,) float64, with want.entropy: -sum p ln p of the clean distribution, in nats. */
  entropy?: Float64Array;
  /** (n, vocabSize) float32 row-major, with want.logits: the raw (shifted, for Dream) logits. */
  logits?: Float32Array;
  /** With ForwardRequest.attention: the attention report. */
  attention?: AttentionReport;
}

export interface Engine {
  /** 'reference', 'wasm', 'cuda', … */
  readonly name: string;
  readonly model: ModelInfo;
  readonly capabilities: EngineCapabilities;
  /** Bytes of engine memory one sequence of this longest canvas reserves (its K/V cache). */
  sequenceBytes(maxLength: number): number;
  /** How many more sequences of this longest canvas fit now, beside those already open. */
  sequenceCapacity(maxLength: number): number;
  /** Reserves the cache of one sequence; throws EngineCapacityError when it does not fit (nothing else changes). */
  openSequence(maxLength: number): SequenceHandle;
  /** Frees the sequence's cache at once. Closing a closed sequence does nothing. */
  closeSequence(sequence: SequenceHandle): void;
  /**
   * One forward pass (one NFE for each sequence in it) over the rows of every request, each sequence at most
   * once, except that one sequence may send several `prefix` requests (each its own canvas; none writes the cache,
   * so each sees the cache as it was before the pass); results in request order. A row's arithmetic never depends on the other rows of the pass (DESIGN §7).
   * Rejects, before changing any cache, with an Error naming the problem when a request is bad.
   */
  forward(batch: readonly ForwardRequest[], signal?: AbortSignal): Promise<ForwardResult[]>;
  /** Frees weights, caches and threads. The engine is unusable afterwards. */
  dispose(): Promise<void>;
}

/** Progress of long engine work (loading and converting weights). */
export interface LoadProgress {
  phase: string;
  done: number;
  total: number;
  unit: 'bytes' | 'tensors';
}

export interface EngineOptions {
  /** Worker threads for CPU engines; defaults to the engine's choice. */
  threads?: number;
  /**
   * Weight storage: 'f32' for strict conformance, 'bf16' to halve memory, 'int8' (CPU engines: linear weights
   * in 32-value blocks with one scale each, integer dot products; @fast-dllm/model int8.ts) for a quarter of it.
   * Engine default otherwise.
   */
  weightDType?: 'f32' | 'bf16' | 'int8';
  /** Bytes the engine may use for sequence caches; the engine's own limit otherwise. */
  cacheBudgetBytes?: number;
  onProgress?: (p: LoadProgress) => void;
}

/** The memory an engine would hold for a model, answered without loading any weight. */
export interface MemoryEstimate {
  /** Bytes of the weights as this engine stores them. */
  weightBytes: number;
  /** Bytes of K/V cache of one sequence of the given longest canvas. */
  sequenceBytes: number;
  /** How it stores them, e.g. 'f32', 'bf16'. */
  weightDType: string;
  cacheDType: string;
  /** What the storage keeps wider (e.g. int8's f32 norms and embedding), and whether it fits the engine's limits. */
  note?: string;
}

/**
 * How the CLI finds engines without the scheduler depending on any: each engine package exports one
 * provider. `probe` is cheap and never throws; it says whether the engine can run here and, if not, why.
 */
export interface EngineProvider {
  readonly name: string;
  probe(): Promise<{ available: true } | { available: false; reason: string }>;
  /** Loads a Hugging Face model directory. */
  create(modelDir: string, options?: EngineOptions): Promise<Engine>;
  /** What `create` would hold for this model directory (its config and safetensors headers only). */
  estimateMemory(modelDir: string, options: { maxLength: number; weightDType?: EngineOptions['weightDType'] }): Promise<MemoryEstimate>;
}
