/**
 * One description of a diffusion LM, whatever config.json it came from (LLaDA, Dream/Qwen2, Fast-dLLM v2/Qwen2.5,
 * SDAR/Qwen3). Every engine builds from this and from the canonical tensor roles below, never from raw config keys.
 */
import type { ModelInfo } from '@fast-dllm/engine-contract';

/**
 * Masked diffusion (llada, llada_moe, dream, a2d_mdlm: bidirectional) and block diffusion (fast_dllm_v2, sdar,
 * a2d_bd3lm: block-causal, DESIGN §8). llada_moe is LLaDA-MoE's checkpoint layout (OLMoE-style layers, DESIGN §13);
 * it decodes as LLaDA. dllm's A2D checkpoints (model_type a2d-qwen2 / a2d-qwen3, DESIGN §15) are one or the other
 * by a setting, not by their config.json. llada2_moe is LLaDA2.x (DESIGN §13.1): mixture-of-experts layers with
 * block-causal attention, decoded by SDAR's block procedure.
 */
export type Architecture = 'llada' | 'llada_moe' | 'dream' | 'fast_dllm_v2' | 'sdar' | 'a2d_mdlm' | 'a2d_bd3lm' | 'llada2_moe';

/** DESIGN §15: how an A2D checkpoint is decoded, and where that choice came from (for inspect and errors). */
export interface A2dInfo {
  /** The Qwen generation of the layers: qwen2 (q/k/v biases) or qwen3 (q/k norms, head_dim from config). */
  base: 'qwen2' | 'qwen3';
  variant: 'mdlm' | 'bd3lm';
  /** e.g. "the directory name", "FAST_DLLM_A2D_VARIANT", "the default". */
  variantSource: string;
  /** BD3LM only: where the block size came from. */
  blockSizeSource?: string;
}

/**
 * A mixture-of-experts FFN (DESIGN §13): a router picks `topK` of `numExperts` SwiGLU experts per row; their
 * outputs, weighted by the router's softmax probabilities, are summed, plus a shared expert where there is one.
 */
export interface MoeDescription {
  numExperts: number;
  /** Experts each row is routed to. */
  topK: number;
  /** SwiGLU inner width of one routed expert. */
  expertSize: number;
  /** Inner width of the shared expert every row also runs; absent: none. */
  sharedExpertSize?: number;
  /** Renormalise the k chosen probabilities to sum to 1 (off in LLaDA-MoE's published code, whatever the config says). */
  normTopK: boolean;
  /**
   * A per-expert bias added to the scores before top-k: kept in the weights by the softmax rule (as LLaDA-MoE's
   * published code does), used for the choice only by the sigmoid rule.
   */
  expertBias: boolean;
  /**
   * LLaDA2's router (DESIGN §13.1) instead of the softmax: sigmoid scores, top-k limited to the `topGroups` best of
   * `groups` contiguous expert groups, weights normalised over the chosen (normTopK does not apply) times `scale`.
   * Absent: the softmax rule. @fast-dllm/model's routeRows implements both.
   */
  sigmoidRouting?: { groups: number; topGroups: number; scale: number };
  /** Per layer: true where the FFN is the mixture, false where it is a dense SwiGLU of `intermediateSize`. */
  moeLayers: boolean[];
}

export interface SpecialTokens {
  /** The [MASK] token the canvas starts with. */
  mask: number;
  /** End of sequence, also the padding written after an answer. */
  eos: number;
  /** End of turn (`<|eot_id|>` for LLaDA, `<|im_end|>` for Dream), when known. */
  endOfTurn?: number;
  /** Beginning of sequence, when the model uses one. */
  bos?: number;
  pad?: number;
}

export interface ModelDescription {
  architecture: Architecture;
  /** d_model. */
  hiddenSize: number;
  numLayers: number;
  numHeads: number;
  /** GQA: numHeads % numKvHeads === 0. Equal to numHeads for LLaDA. */
  numKvHeads: number;
  /** Width of one attention head: config `head_dim` where given (Qwen3), else hiddenSize / numHeads. */
  headDim: number;
  /** SwiGLU inner width. */
  intermediateSize: number;
  vocabSize: number;
  /** Longest canvas the model allows (max_sequence_length / max_position_embeddings). */
  maxPositions: number;
  rmsNormEps: number;
  ropeTheta: number;
  /** q/k/v projections carry biases (Dream/Qwen2). */
  qkvBias: boolean;
  /** LM head shares the embedding matrix. */
  tiedEmbeddings: boolean;
  /** Dream, Fast-dLLM v2: logits for position i come from the hidden state at i-1 (DESIGN §1). */
  shiftLogits: boolean;
  /** Qwen3 (SDAR): per-head RMSNorm of q and k (weights of size headDim) before RoPE. */
  qkNorm: boolean;
  /** The attention output projection carries a bias (LLaDA2's use_bias); absent: none. */
  outputBias?: boolean;
  /** RoPE rotates the first `rotaryDim` of each head's dims (partial rotary, LLaDA-MoE); absent: all headDim. */
  rotaryDim?: number;
  /** q, k and v are clamped to [-clipQkv, clipQkv] after their projections (LLaDA-MoE's clip_qkv); absent: no clamp. */
  clipQkv?: number;
  /** Mixture-of-experts FFNs (DESIGN §13); absent: every layer's FFN is dense. */
  moe?: MoeDescription;
  /** Block-diffusion models: block-causal attention with blocks of this size (DESIGN §8); absent: bidirectional. */
  blockSize?: number;
  /** dllm's A2D checkpoints only (DESIGN §15). */
  a2d?: A2dInfo;
  special: SpecialTokens;
  /**
   * Generated ids that end an answer, ascending: EOS and end of turn; for block-diffusion models every EOS /
   * end-of-turn id that config.json, generation_config.json and tokenizer_config.json name (DESIGN §8).
   */
  stopIds: number[];
}

export type DType = 'F32' | 'F16' | 'BF16';

/** One tensor's place in a safetensors file. */
export interface TensorInfo {
  name: string;
  dtype: DType;
  /** Row-major; linear weights are [out_features, in_features] (PyTorch convention). */
  shape: number[];
  /** Path of the .safetensors file that holds it. */
  file: string;
  /** Absolute byte offset of the data in that file (header included). */
  byteOffset: number;
  byteLength: number;
}

/**
 * Canonical roles of a model's tensors, mapped to their names in the checkpoint. Shapes (row-major):
 *   embed      (vocab, d)            finalNorm (d)            lmHead (vocab, d) — the embedding when tied
 *   per layer: attnNorm (d), q (H*hd, d), k (KV*hd, d), v (KV*hd, d), qBias (H*hd)?, kBias (KV*hd)?,
 *              vBias (KV*hd)?, qNorm (hd)?, kNorm (hd)? (Qwen3: per-head RMSNorm of q and k before RoPE),
 *              o (d, H*hd), oBias (d)?, ffnNorm (d), gate (ff, d), up (ff, d), down (d, ff)
 * The MLP is down(silu(gate(x)) * up(x)); LLaDA calls them ff_proj, up_proj, ff_out. A checkpoint that stores q, k
 * and v as one fused projection (LLaDA2's query_key_value) names them as row slices of it (`rowSliceName`), which the
 * archive reads like tensors of their own.
 */
export interface AttentionTensorNames {
  attnNorm: string;
  q: string;
  k: string;
  v: string;
  qBias?: string;
  kBias?: string;
  vBias?: string;
  qNorm?: string;
  kNorm?: string;
  o: string;
  oBias?: string;
  ffnNorm: string;
}

/** One SwiGLU FFN: gate (ff, d), up (ff, d), down (d, ff). */
export interface SwigluTensorNames {
  gate: string;
  up: string;
  down: string;
}

/** A layer with a dense FFN (every family but LLaDA-MoE's mixture layers). */
export interface DenseLayerTensorNames extends AttentionTensorNames, SwigluTensorNames {}

/**
 * A mixture-of-experts layer (DESIGN §13): router (E, d), experts[e] each a SwiGLU of the expert size, shared a
 * SwiGLU of the shared size, expertBias (E).
 */
export interface MoeLayerTensorNames extends AttentionTensorNames {
  router: string;
  experts: SwigluTensorNames[];
  shared?: SwigluTensorNames;
  expertBias?: string;
}

export type LayerTensorNames = DenseLayerTensorNames | MoeLayerTensorNames;

export function isMoeLayer(l: LayerTensorNames): l is MoeLayerTensorNames {
  return 'router' in l;
}

export interface ModelTensorNames {
  embed: string;
  layers: LayerTensorNames[];
  finalNorm: string;
  lmHead: string;
}

/**
 * The fields of a model that the scheduler reads: the engine contract's ModelInfo (the scheduler decodes LLaDA-MoE as
 * 'llada', so `llada_moe` is not among its architectures; LLaDA2 keeps its own name, DESIGN §13.1), with the stop ids
 * always filled in.
 */
export type SchedulerModelInfo = ModelInfo & { stopIds: readonly number[] };
