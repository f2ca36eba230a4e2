/**
 * The engine contract: the one boundary between policy (this package: which span to compute, when the cache
 * is rebuilt, which tokens to commit) and mechanism (an engine: weights, K/V layout, kernels).
 *
 * An engine holds the weights of one model and the K/V cache of one sequence (batch 1). The scheduler asks
 * it for forward passes; each call is one NFE, whatever its length.
 *
 * Versioned: an engine states the contract version it implements; the scheduler refuses a mismatch.
 */

/** Bumped on any change that an existing engine would get wrong. */
export const ENGINE_CONTRACT_VERSION = 1;

/**
 * What one forward pass computes, and what it does to the cache (SPEC §4). With L = canvas.length:
 * - `full`:   compute every position [0, L) with full bidirectional attention; (re)build the cache: K/V of
 *             all L positions are stored. `start` must be 0 and `end` must be L.
 * - `prefix`: compute [start, L) (the block and everything after it); queries attend to cached K/V of
 *             [0, start) plus the fresh K/V of [start, L). The cache is not modified. `end` must be L.
 * - `dual`:   compute [start, end) (the block only); queries attend to cached K/V of [0, start) and
 *             [end, L) plus the fresh K/V of [start, end), which then overwrite the cache slots [start, end).
 * `prefix` and `dual` require that the last `full` call was over a canvas of the same length L; an engine
 * throws otherwise. Whether the cached K/V is stale is the scheduler's business (that is the approximation).
 */
export type ForwardMode = 'full' | 'prefix' | 'dual';

/** What the scheduler needs to know of a model. Engines fill it from the model's config. */
export interface ModelInfo {
  architecture: 'llada' | 'dream';
  vocabSize: number;
  /** Longest canvas (prompt + generation) the model's positions allow. */
  maxPositions: number;
  maskId: number;
  /** End of sequence; also the padding the model writes after its answer. */
  eosId: number;
  /** End of turn (`<|eot_id|>`, `<|im_end|>`), when the model has one. */
  endOfTurnId?: number;
  /**
   * Dream predicts position i from the hidden state at i-1. When true, the prediction reported for absolute
   * position p is read from the hidden row of p-1 if p-1 lies inside the computed span [start, end), and from
   * p's own row otherwise (position 0, or the first position of a cached window: the reference's quirk,
   * which the scheduler's Dream rule makes harmless by committing that position at the full forward).
   */
  shiftLogits: boolean;
}

export interface EngineCapabilities {
  /** ENGINE_CONTRACT_VERSION the engine implements. */
  contractVersion: number;
  /** Forward modes the engine implements; a scheduler run that needs a missing one fails with "not supported". */
  modes: readonly ForwardMode[];
  /** Optional reports; `tokens` and `probs` are always supported. */
  reports: { top2: boolean; entropy: boolean; logits: boolean };
  /** Gumbel-max sampling with the shared counter RNG (see rng.ts). */
  sampling: boolean;
}

/** Temperature sampling (Gumbel-max) keyed so that every engine draws the same noise. */
export interface SamplingSpec {
  /** T > 0. The proposal is argmax_v(logits[v] / T + g(seed, forwardIndex, position, v)), in float64. */
  temperature: number;
  /** u32 seed. */
  seed: number;
  /** 0-based index of this forward pass within the generation (its NFE number minus one). */
  forwardIndex: number;
}

export interface ForwardRequest {
  /** (L,) int32 token ids: the whole canvas, prompt ++ generated (masks included). */
  canvas: Int32Array;
  mode: ForwardMode;
  /** Computed span [start, end), absolute positions; see ForwardMode for what each mode allows. */
  start: number;
  end: number;
  /** (n,) int32 absolute positions whose predictions are reported, each inside [start, end), ascending. */
  positions: Int32Array;
  /** Extra reports; each must be in the engine's capabilities. */
  want?: { top2?: boolean; entropy?: boolean; logits?: boolean };
  /** Absent: greedy (argmax, ties to the lowest token id). */
  sampling?: SamplingSpec;
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
}

export interface Engine {
  /** 'reference', 'wasm', 'cuda', … */
  readonly name: string;
  readonly model: ModelInfo;
  readonly capabilities: EngineCapabilities;
  /** One forward pass (one NFE). Rejects with an Error naming the problem on a bad request. */
  forward(request: ForwardRequest, signal?: AbortSignal): Promise<ForwardResult>;
  /** Frees weights, cache and threads. The engine is unusable afterwards. */
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
   * Weight storage: 'f32' for strict conformance, 'bf16'/'f16' to halve memory, 'int8' (CPU engines: linear weights
   * in 32-value blocks with one scale each, integer dot products; @fast-dllm/model int8.ts) for a quarter of it.
   * Engine default otherwise.
   */
  weightDType?: 'f32' | 'bf16' | 'f16' | 'int8';
  onProgress?: (p: LoadProgress) => void;
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
}

/** Validates a request against the contract; engines call it first so every engine rejects the same things. */
export function validateForwardRequest(model: ModelInfo, caps: EngineCapabilities, req: ForwardRequest): void {
  const L = req.canvas.length;
  if (L === 0) throw new Error('forward: empty canvas');
  if (L > model.maxPositions) {
    throw new Error(`forward: canvas of ${L} tokens exceeds the model's ${model.maxPositions} positions`);
  }
  if (!caps.modes.includes(req.mode)) throw new Error(`forward: mode '${req.mode}' not supported by this engine`);
  if (!(Number.isInteger(req.start) && Number.isInteger(req.end) && 0 <= req.start && req.start < req.end && req.end <= L)) {
    throw new Error(`forward: bad span [${req.start}, ${req.end}) for a canvas of ${L}`);
  }
  if (req.mode === 'full' && (req.start !== 0 || req.end !== L)) throw new Error('forward: a full forward computes [0, L)');
  if (req.mode === 'prefix' && req.end !== L) throw new Error('forward: a prefix step computes [start, L)');
  for (let i = 0; i < L; i++) {
    const t = req.canvas[i];
    if (t < 0 || t >= model.vocabSize) throw new Error(`forward: token ${t} at position ${i} is outside the vocabulary (${model.vocabSize})`);
  }
  let prev = -1;
  for (const p of req.positions) {
    if (p < req.start || p >= req.end || p <= prev) {
      throw new Error(`forward: reported positions must be ascending and inside [${req.start}, ${req.end}); got ${p}`);
    }
    prev = p;
  }
  if (req.want?.top2 && !caps.reports.top2) throw new Error('forward: top-2 report not supported by this engine');
  if (req.want?.entropy && !caps.reports.entropy) throw new Error('forward: entropy report not supported by this engine');
  if (req.want?.logits && !caps.reports.logits) throw new Error('forward: logits report not supported by this engine');
  if (req.sampling) {
    if (!caps.sampling) throw new Error('forward: sampling not supported by this engine');
    if (!(req.sampling.temperature > 0)) throw new Error('forward: sampling temperature must be > 0');
  }
}
