import { joinPath as join, nodeFs } from './nodefs.js';
import { ModelFormatError } from './errors.js';
import type { A2dInfo, Architecture, ModelDescription, SchedulerModelInfo, SpecialTokens } from './types.js';

type Json = Record<string, unknown>;

export interface ConfigExtras {
  /** Label of config.json in errors (defaults to "config.json"). */
  file?: string;
  /** generation_config.json, which may carry eos/bos/pad/mask ids. */
  generationConfig?: Json;
  /** tokenizer_config.json; its added_tokens_decoder may name the special tokens. */
  tokenizerConfig?: Json;
  /** tokenizer.json; its added_tokens name the mask of an A2D checkpoint when tokenizer_config.json does not. */
  tokenizerJson?: Json;
  /** The model directory's path or folder name: an A2D checkpoint's name says mdlm or bd3lm (DESIGN §15). */
  path?: string;
  /** DESIGN §15: the explicit A2D setting (FAST_DLLM_A2D_VARIANT / FAST_DLLM_A2D_BLOCK_SIZE for readModelConfig). */
  a2d?: A2dSetting;
}

/** DESIGN §15: how to decode an A2D checkpoint, which its config.json does not say. */
export interface A2dSetting {
  variant?: string;
  blockSize?: number;
  /** Names the setting in errors and in `A2dInfo` (defaults to "the a2d setting"). */
  source?: string;
}

/** DESIGN §15: dllm's BD3LM sampler and trainer default block size. */
export const A2D_DEFAULT_BLOCK_SIZE = 32;

/** DESIGN §1/§8 defaults, used only when no file gives the id and the vocab is big enough to hold it. */
const DEFAULT_IDS: Record<Architecture, { mask?: number; eos: number; endOfTurn?: number; bos?: number }> = {
  llada: { mask: 126336, eos: 126081, endOfTurn: 126348, bos: 126080 },
  // LLaDA-MoE's tokenizer (shared with LLaDA2): ids from its published generate() defaults.
  llada_moe: { mask: 156895, eos: 156892 },
  dream: { mask: 151666, eos: 151643, endOfTurn: 151645 },
  fast_dllm_v2: { mask: 151665, eos: 151643, endOfTurn: 151645 },
  sdar: { mask: 151669, eos: 151643, endOfTurn: 151645 },
  // DESIGN §15: <|mask|> is appended to the base tokenizer, so its id depends on it: read, never defaulted.
  a2d_mdlm: { eos: 151643, endOfTurn: 151645 },
  a2d_bd3lm: { eos: 151643, endOfTurn: 151645 },
  llada2_moe: { mask: 156895, eos: 156892 },
};
/** Special token strings looked up in tokenizer_config.json's added_tokens_decoder. */
const TOKEN_TEXT: Record<Architecture, Partial<Record<keyof SpecialTokens, string>>> = {
  llada: { mask: '<|mdm_mask|>', eos: '<|endoftext|>', endOfTurn: '<|eot_id|>', bos: '<|startoftext|>' },
  llada_moe: { mask: '<|mask|>', eos: '<|endoftext|>', endOfTurn: '<|role_end|>' },
  dream: { mask: '<|mask|>', eos: '<|endoftext|>', endOfTurn: '<|im_end|>' },
  fast_dllm_v2: { mask: '|<MASK>|', eos: '<|endoftext|>', endOfTurn: '<|im_end|>' },
  sdar: { mask: '<|MASK|>', eos: '<|endoftext|>', endOfTurn: '<|im_end|>' },
  a2d_mdlm: { mask: '<|mask|>', eos: '<|endoftext|>', endOfTurn: '<|im_end|>' },
  a2d_bd3lm: { mask: '<|mask|>', eos: '<|endoftext|>', endOfTurn: '<|im_end|>' },
  llada2_moe: { mask: '<|mask|>', eos: '<|endoftext|>', endOfTurn: '<|role_end|>' },
};
/** Token strings that end a turn in the Qwen chat format (DESIGN §8): stop tokens of the block-diffusion models. */
const QWEN_STOP_TEXT = ['<|endoftext|>', '<|im_end|>'];

/** config.json model_type (lower-cased) of each architecture. */
const MODEL_TYPES: Record<string, Architecture> = {
  llada: 'llada', lladamoe: 'llada_moe', dream: 'dream', fast_dllm_qwen: 'fast_dllm_v2', sdar: 'sdar', llada2_moe: 'llada2_moe',
};

/** DESIGN §13.1: LLaDA2's published sampler's block length, where config.json names none. */
export const LLADA2_DEFAULT_BLOCK_SIZE = 32;

/** Config keys that mark LLaDA-MoE: its published remote code says model_type "llada", some tools "lladamoe". */
const LLADA_MOE_KEYS = ['num_experts', 'num_experts_per_tok', 'expert_intermediate_size'];
/** DESIGN §15: dllm's A2D model types; the architecture is the variant's (a2d_mdlm / a2d_bd3lm). */
const A2D_MODEL_TYPES: Record<string, A2dInfo['base']> = { 'a2d-qwen2': 'qwen2', 'a2d-qwen3': 'qwen3' };

/**
 * Turns a LLaDA, Dream, Fast-dLLM v2, SDAR or A2D (DESIGN §15) config.json (+ optional generation/tokenizer configs) into a
 * ModelDescription. Variants the engines do not implement (sliding-window attention, rope_scaling, mixtures of
 * experts, Qwen3 attention biases) are refused here, naming the field.
 */
export function normaliseConfig(config: Json, extras: ConfigExtras = {}): ModelDescription {
  const file = extras.file ?? 'config.json';
  const fail = (msg: string) => new ModelFormatError(msg, { file });
  const modelType = config.model_type;
  const a2dBase = typeof modelType === 'string' ? A2D_MODEL_TYPES[modelType.toLowerCase()] : undefined;
  const a2d = a2dBase ? resolveA2d(a2dBase, config, extras, fail) : undefined;
  let arch = a2d ? (a2d.info.variant === 'mdlm' ? 'a2d_mdlm' : 'a2d_bd3lm')
    : typeof modelType === 'string' ? MODEL_TYPES[modelType.toLowerCase()] : undefined;
  // DESIGN §13: MoE is told from dense by the config's expert fields, not by the name alone.
  if (arch === 'llada' && LLADA_MOE_KEYS.some((k) => config[k] !== undefined && config[k] !== null)) arch = 'llada_moe';
  if (!arch) {
    const hint = typeof modelType === 'string' && /moe/i.test(modelType) ? ' (of the mixture-of-experts models only LLaDA-MoE, "lladamoe", and LLaDA2, "llada2_moe", are supported)' : '';
    throw fail(`unknown architecture: model_type ${JSON.stringify(modelType)}${hint}; supported are "llada" (LLaDA), "lladamoe" (LLaDA-MoE), "llada2_moe" (LLaDA2), ` +
      '"Dream" (Dream/Qwen2), "Fast_dLLM_Qwen" (Fast-dLLM v2/Qwen2.5), "sdar" (SDAR/Qwen3) and "a2d-qwen2" / "a2d-qwen3" (dllm\'s A2D MDLM and BD3LM)');
  }
  // Qwen2 layers: Dream, Fast-dLLM v2, a2d-qwen2; Qwen3 layers: SDAR, a2d-qwen3.
  const qwen3 = arch === 'sdar' || a2dBase === 'qwen3';

  const posInt = (key: string, fallback?: unknown): number => {
    const v = config[key] ?? fallback;
    if (v === undefined || v === null) throw fail(`missing field "${key}" (required for ${arch}); add it to config.json`);
    if (typeof v !== 'number' || !Number.isInteger(v) || v <= 0) throw fail(`field "${key}" must be a positive integer, got ${JSON.stringify(v)}`);
    return v;
  };
  const posNum = (key: string, fallback?: number): number => {
    const v = config[key] ?? fallback;
    if (v === undefined || v === null) throw fail(`missing field "${key}" (required for ${arch}); add it to config.json`);
    if (typeof v !== 'number' || !(v > 0)) throw fail(`field "${key}" must be a positive number, got ${JSON.stringify(v)}`);
    return v;
  };

  let d: Omit<ModelDescription, 'special' | 'headDim' | 'stopIds'>;
  if (arch === 'llada') {
    const numHeads = posInt('n_heads');
    d = {
      architecture: arch,
      hiddenSize: posInt('d_model'),
      numLayers: posInt('n_layers'),
      numHeads,
      // LLaDA's OLMo-derived config leaves n_kv_heads null for plain multi-head attention.
      numKvHeads: posInt('n_kv_heads', numHeads),
      intermediateSize: posInt('mlp_hidden_size'),
      // The embedding rows are embedding_size (vocab padded up); the LM head has as many rows.
      vocabSize: posInt('embedding_size', config.vocab_size),
      maxPositions: posInt('max_sequence_length'),
      rmsNormEps: posNum('rms_norm_eps', 1e-5),
      ropeTheta: posNum('rope_theta'),
      qkvBias: config.include_qkv_bias === true || config.include_bias === true,
      tiedEmbeddings: config.weight_tying === true,
      shiftLogits: false,
      qkNorm: false,
    };
    if (typeof config.vocab_size === 'number' && config.vocab_size > d.vocabSize)
      throw fail(`vocab_size ${config.vocab_size} is larger than embedding_size ${d.vocabSize}; fix one of them`);
  } else if (arch === 'llada_moe') {
    d = lladaMoeDescription(config, posInt, posNum, fail);
  } else if (arch === 'llada2_moe') {
    d = llada2Description(config, posInt, posNum, fail);
  } else {
    refuseQwenVariants(qwen3, config, fail);
    d = {
      architecture: arch,
      hiddenSize: posInt('hidden_size'),
      numLayers: posInt('num_hidden_layers'),
      numHeads: posInt('num_attention_heads'),
      numKvHeads: posInt('num_key_value_heads', config.num_attention_heads),
      intermediateSize: posInt('intermediate_size'),
      vocabSize: posInt('vocab_size'),
      maxPositions: posInt('max_position_embeddings'),
      rmsNormEps: posNum('rms_norm_eps', 1e-6),
      ropeTheta: posNum('rope_theta'),
      // Qwen2/Qwen2.5 always carry q/k/v biases; Qwen3 has none (attention_bias: true is refused above).
      qkvBias: !qwen3,
      tiedEmbeddings: config.tie_word_embeddings === true,
      // Dream and Fast-dLLM v2 shift; SDAR and A2D (DESIGN §15) predict each position from its own row.
      shiftLogits: arch === 'dream' || arch === 'fast_dllm_v2',
      qkNorm: qwen3,
      // DESIGN §8: Fast-dLLM v2 names its block size bd_size, SDAR block_size; A2D BD3LM's is a setting (§15).
      ...(arch === 'fast_dllm_v2' ? { blockSize: posInt('bd_size') } : arch === 'sdar' ? { blockSize: posInt('block_size') }
        : a2d?.blockSize !== undefined ? { blockSize: a2d.blockSize } : {}),
      ...(a2d ? { a2d: a2d.info } : {}),
    };
  }
  const [hk, nh, nkv] = arch === 'llada' ? ['d_model', 'n_heads', 'n_kv_heads'] : ['hidden_size', 'num_attention_heads', 'num_key_value_heads'];
  if (d.numHeads % d.numKvHeads !== 0) throw fail(`contradictory config: ${nkv} ${d.numKvHeads} does not divide ${nh} ${d.numHeads}`);
  let headDim: number;
  if (arch !== 'llada' && arch !== 'llada_moe' && config.head_dim !== undefined && config.head_dim !== null) {
    // Qwen3 states head_dim, which need not be hidden_size / num_attention_heads (q/o map d to H*hd).
    headDim = posInt('head_dim');
    if (headDim % 2 !== 0) throw fail(`contradictory config: head_dim ${headDim} must be even for RoPE`);
  } else {
    if (d.hiddenSize % d.numHeads !== 0) throw fail(`contradictory config: ${nh} ${d.numHeads} does not divide ${hk} ${d.hiddenSize}`);
    headDim = d.hiddenSize / d.numHeads;
    if (headDim % 2 !== 0) throw fail(`contradictory config: head dim ${headDim} (${hk} / ${nh}) must be even for RoPE`);
  }

  if (arch === 'llada_moe') {
    // partial_rotary_factor: RoPE turns the first headDim · factor dims of each head (rounded down to even, as the
    // published rotary table's arange(0, dim, 2) does).
    const factor = config.partial_rotary_factor ?? 1;
    if (typeof factor !== 'number' || !(factor > 0 && factor <= 1)) throw fail(`field "partial_rotary_factor" must be in (0, 1], got ${JSON.stringify(factor)}`);
    const rotary = 2 * Math.floor((headDim * factor) / 2);
    if (rotary === 0) throw fail(`field "partial_rotary_factor" ${factor} leaves no rotary dimension of head dim ${headDim}`);
    if (rotary !== headDim) d = { ...d, rotaryDim: rotary };
  }
  if (arch === 'llada2_moe') {
    // The published rotary table is int(head_dim · partial_rotary_factor) wide (default 0.5): an odd width would turn
    // one dim more than the factor says, which no engine here does.
    const factor = config.partial_rotary_factor ?? 0.5;
    if (typeof factor !== 'number' || !(factor > 0 && factor <= 1)) throw fail(`field "partial_rotary_factor" must be in (0, 1], got ${JSON.stringify(factor)}`);
    const rotary = Math.floor(headDim * factor);
    if (rotary === 0 || rotary % 2 !== 0) throw fail(`field "partial_rotary_factor" ${factor} gives ${rotary} rotary dims of head dim ${headDim}; it must be a positive even number`);
    if (rotary !== headDim) d = { ...d, rotaryDim: rotary };
  }

  const special = resolveSpecial(arch, d.vocabSize, config, extras, file);
  // A2D models answer in the Qwen chat format whichever way they decode (DESIGN §15).
  const stopIds = d.blockSize === undefined && !a2d
    ? [special.eos, ...(special.endOfTurn !== undefined ? [special.endOfTurn] : [])]
    : qwenStopIds(special, d.vocabSize, config, extras);
  return { ...d, headDim, special, stopIds: [...new Set(stopIds)].sort((a, b) => a - b) };
}

/**
 * LLaDA-MoE (DESIGN §13): OLMoE-style layers (per-head q/k RMSNorm, optional clip_qkv and partial rotary), a dense
 * SwiGLU FFN where moe_layer_freq[l] is 0 and a routed mixture (softmax router, top-k, optional shared expert and
 * expert bias) elsewhere; full attention, unshifted logits: it decodes as LLaDA.
 */
function lladaMoeDescription(
  config: Json, posInt: (key: string, fallback?: unknown) => number, posNum: (key: string, fallback?: number) => number,
  fail: (msg: string) => ModelFormatError,
): Omit<ModelDescription, 'special' | 'headDim' | 'stopIds'> {
  refuseRopeScaling(config, fail);
  if (config.attention_bias === true) throw fail('"attention_bias": true is not supported; LLaDA-MoE checkpoints have no attention biases');
  refuseActivation(config, fail);
  const score = config.moe_router_score_function;
  // The published code always takes the softmax, whatever this field says; a different scorer would be a different model.
  if (score !== undefined && score !== null && score !== 'softmax') throw fail(`"moe_router_score_function": ${JSON.stringify(score)} is not supported; LLaDA-MoE routes by softmax`);
  for (const key of ['router_num_group', 'router_topk_group']) {
    const v = config[key];
    if (typeof v === 'number' && v > 1) throw fail(`"${key}": ${v} (group-limited routing) is not supported; LLaDA-MoE routes over all experts`);
  }
  const numLayers = posInt('num_hidden_layers');
  const numExperts = posInt('num_experts');
  const topK = posInt('num_experts_per_tok');
  if (topK > numExperts) throw fail(`contradictory config: num_experts_per_tok ${topK} exceeds num_experts ${numExperts}`);
  const freq = config.moe_layer_freq;
  let moeLayers: boolean[];
  if (freq === undefined || freq === null) moeLayers = Array.from({ length: numLayers }, () => true);
  else if (Array.isArray(freq) && freq.length === numLayers && freq.every((f) => f === 0 || f === 1)) moeLayers = freq.map((f) => f === 1);
  else throw fail(`field "moe_layer_freq" must list 0 (dense) or 1 (mixture) for each of the ${numLayers} layers, got ${JSON.stringify(freq)}`);
  const shared = config.shared_expert_intermediate_size;
  const sharedExpertSize = shared === undefined || shared === null ? undefined : posInt('shared_expert_intermediate_size');
  const clip = config.clip_qkv;
  if (clip !== undefined && clip !== null && !(typeof clip === 'number' && clip > 0)) throw fail(`field "clip_qkv" must be a positive number or null, got ${JSON.stringify(clip)}`);
  const numHeads = posInt('num_attention_heads');
  return {
    architecture: 'llada_moe',
    hiddenSize: posInt('hidden_size'),
    numLayers,
    numHeads,
    numKvHeads: posInt('num_key_value_heads', numHeads),
    // Dense layers' SwiGLU width; a config whose layers are all mixtures may leave it unset.
    intermediateSize: moeLayers.every((m) => m) && (config.dense_intermediate_size ?? -1) === -1 ? 0 : posInt('dense_intermediate_size'),
    vocabSize: posInt('vocab_size'),
    maxPositions: posInt('max_position_embeddings'),
    rmsNormEps: posNum('rms_norm_eps', 1e-5),
    ropeTheta: posNum('rope_theta'),
    qkvBias: false,
    tiedEmbeddings: config.tie_word_embeddings === true,
    shiftLogits: false,
    qkNorm: config.qk_layernorm === true,
    ...(typeof clip === 'number' ? { clipQkv: clip } : {}),
    moe: {
      numExperts, topK, expertSize: posInt('expert_intermediate_size'),
      ...(sharedExpertSize !== undefined ? { sharedExpertSize } : {}),
      normTopK: false,
      expertBias: config.moe_router_enable_expert_bias === true,
      moeLayers,
    },
  };
}

/**
 * LLaDA2.x (DESIGN §13.1), from the published LLaDA2MoeConfig and modeling code (its defaults where a field is
 * absent): fused q/k/v, per-head q/k RMSNorm (use_qk_norm), partial rotary, dense SwiGLU layers below
 * first_k_dense_replace and mixtures above (sigmoid router with expert bias, group-limited top-k, routed_scaling_factor,
 * shared experts of moe_intermediate_size · num_shared_experts); block-causal attention, unshifted logits.
 */
function llada2Description(
  config: Json, posInt: (key: string, fallback?: unknown) => number, posNum: (key: string, fallback?: number) => number,
  fail: (msg: string) => ModelFormatError,
): Omit<ModelDescription, 'special' | 'headDim' | 'stopIds'> {
  refuseRopeScaling(config, fail);
  if (config.use_sliding_window === true) throw fail('"use_sliding_window": true (sliding-window attention) is not supported');
  refuseActivation(config, fail);
  // The published code always scores by sigmoid and never normalises the LM head, whatever these say: refuse a config
  // that asks for something else instead of running a different model.
  const score = config.score_function;
  if (score !== undefined && score !== null && score !== 'sigmoid') throw fail(`"score_function": ${JSON.stringify(score)} is not supported; LLaDA2 routes by sigmoid`);
  if (config.norm_head === true) throw fail('"norm_head": true is not supported; the published LLaDA2 code has no normalised head');
  const numLayers = posInt('num_hidden_layers');
  const numHeads = posInt('num_attention_heads');
  const hiddenSize = posInt('hidden_size');
  const fk = config.first_k_dense_replace ?? 0;
  if (typeof fk !== 'number' || !Number.isInteger(fk) || fk < 0) throw fail(`field "first_k_dense_replace" must be a non-negative integer, got ${JSON.stringify(fk)}`);
  const dense = Math.min(numLayers, fk); // layers [0, dense) are dense SwiGLUs
  // num_experts null: every layer dense, as the published decoder layer builds it; absent: the config class's 16.
  const experts = config.num_experts === null ? undefined : posInt('num_experts', 16);
  let moe: ModelDescription['moe'];
  if (experts !== undefined && dense < numLayers) {
    const topK = posInt('num_experts_per_tok', 2);
    const groups = posInt('n_group', 8);
    const topGroups = posInt('topk_group', 4);
    const size = experts / groups;
    if (!Number.isInteger(size) || size < 2) throw fail(`contradictory config: n_group ${groups} must divide num_experts ${experts} into groups of at least 2 (a group scores by its two best experts)`);
    if (topGroups > groups) throw fail(`contradictory config: topk_group ${topGroups} exceeds n_group ${groups}`);
    if (topK > topGroups * size) throw fail(`contradictory config: num_experts_per_tok ${topK} exceeds the ${topGroups * size} experts of topk_group ${topGroups} groups`);
    const shared = config.num_shared_experts;
    if (shared !== undefined && shared !== null && !(typeof shared === 'number' && Number.isInteger(shared) && shared >= 0)) {
      throw fail(`field "num_shared_experts" must be a non-negative integer, got ${JSON.stringify(shared)}`);
    }
    const expertSize = posInt('moe_intermediate_size');
    const scale = config.routed_scaling_factor ?? 2.5;
    if (typeof scale !== 'number' || !Number.isFinite(scale)) throw fail(`field "routed_scaling_factor" must be a number, got ${JSON.stringify(scale)}`);
    moe = {
      numExperts: experts, topK, expertSize,
      // num_shared_experts 0 builds an empty shared MLP, which adds nothing.
      ...(typeof shared === 'number' && shared > 0 ? { sharedExpertSize: expertSize * shared } : {}),
      normTopK: true,
      // The published gate always holds an expert_bias buffer (zeros when untrained), saved with the weights.
      expertBias: true,
      sigmoidRouting: { groups, topGroups, scale },
      moeLayers: Array.from({ length: numLayers }, (_, l) => l >= dense),
    };
  }
  const bs = config.block_size;
  if (bs !== undefined && bs !== null && !(typeof bs === 'number' && Number.isInteger(bs) && bs > 0)) throw fail(`field "block_size" must be a positive integer, got ${JSON.stringify(bs)}`);
  return {
    architecture: 'llada2_moe',
    hiddenSize,
    numLayers,
    numHeads,
    numKvHeads: posInt('num_key_value_heads'),
    // Dense layers' SwiGLU width; unused (0) when every layer is a mixture.
    intermediateSize: moe && dense === 0 && (config.intermediate_size ?? null) === null ? 0 : posInt('intermediate_size'),
    vocabSize: posInt('vocab_size'),
    maxPositions: posInt('max_position_embeddings', 16384),
    rmsNormEps: posNum('rms_norm_eps', 1e-5),
    ropeTheta: posNum('rope_theta', 10000),
    // Published defaults: use_qkv_bias false, use_qk_norm true, use_bias (the output projection's) true.
    qkvBias: config.use_qkv_bias === true,
    tiedEmbeddings: config.tie_word_embeddings === true,
    shiftLogits: false,
    qkNorm: config.use_qk_norm !== false,
    ...(config.use_bias !== false ? { outputBias: true } : {}),
    ...(moe ? { moe } : {}),
    blockSize: typeof bs === 'number' ? bs : LLADA2_DEFAULT_BLOCK_SIZE,
  };
}

/**
 * DESIGN §15: whether an A2D checkpoint is MDLM or BD3LM, and BD3LM's block size. config.json says neither, so:
 * the explicit setting, else the directory's name (dllm-hub names every checkpoint "...-mdlm-..." or "...-bd3lm-...";
 * the nearest path component that names one decides), else MDLM — the checkpoint's own forward, full attention. Block
 * size: the setting, else config.json's block_size (where SDAR keeps it), else 32 (dllm's BD3LM default).
 */
function resolveA2d(base: A2dInfo['base'], config: Json, extras: ConfigExtras, fail: (msg: string) => ModelFormatError): { info: A2dInfo; blockSize?: number } {
  const set = extras.a2d ?? {};
  const setting = set.source ?? 'the a2d setting';
  let variant: A2dInfo['variant'];
  let variantSource: string;
  if (set.variant !== undefined) {
    const v = String(set.variant).toLowerCase();
    if (v !== 'mdlm' && v !== 'bd3lm') throw fail(`${setting} is ${JSON.stringify(set.variant)}; an A2D checkpoint is "mdlm" (full attention) or "bd3lm" (block-causal)`);
    variant = v;
    variantSource = setting;
  } else {
    const named = variantFromPath(extras.path);
    if (named?.both) {
      throw fail(`the directory name "${named.part}" says both mdlm and bd3lm; set ${set.source ?? 'FAST_DLLM_A2D_VARIANT'} to mdlm or bd3lm`);
    }
    variant = named?.variant ?? 'mdlm';
    variantSource = named ? `the directory name "${named.part}"` : 'the default: no setting, and the directory name names neither mdlm nor bd3lm';
  }
  const info: A2dInfo = { base, variant, variantSource };
  if (variant === 'mdlm') {
    if (set.blockSize !== undefined) {
      throw fail(`${setting} gives a block size (${set.blockSize}), which only BD3LM checkpoints have; this one is MDLM (from ${variantSource}): ` +
        'drop the block size or choose bd3lm');
    }
    return { info };
  }
  let blockSize: number;
  if (set.blockSize !== undefined) {
    if (!Number.isInteger(set.blockSize) || set.blockSize <= 0) throw fail(`${setting} block size must be a positive integer, got ${String(set.blockSize)}`);
    blockSize = set.blockSize;
    info.blockSizeSource = setting;
  } else if (config.block_size !== undefined && config.block_size !== null) {
    const b = config.block_size;
    if (typeof b !== 'number' || !Number.isInteger(b) || b <= 0) throw fail(`field "block_size" must be a positive integer, got ${JSON.stringify(b)}`);
    blockSize = b;
    info.blockSizeSource = 'config.json block_size';
  } else {
    blockSize = A2D_DEFAULT_BLOCK_SIZE;
    info.blockSizeSource = `the default, dllm's BD3LM block size ${A2D_DEFAULT_BLOCK_SIZE}`;
  }
  return { info, blockSize };
}

/** The nearest path component whose words (split at non-alphanumerics) name mdlm or bd3lm. */
function variantFromPath(path: string | undefined): { variant?: A2dInfo['variant']; both?: boolean; part: string } | undefined {
  if (!path) return undefined;
  const parts = path.split(/[\\/]+/).filter((p) => p.length > 0);
  for (let i = parts.length - 1; i >= 0; i--) {
    const words = parts[i].toLowerCase().split(/[^a-z0-9]+/);
    const m = words.includes('mdlm');
    const b = words.includes('bd3lm');
    if (m && b) return { both: true, part: parts[i] };
    if (m || b) return { variant: m ? 'mdlm' : 'bd3lm', part: parts[i] };
  }
  return undefined;
}

/** DESIGN §15: the A2D setting from the environment (FAST_DLLM_A2D_VARIANT, FAST_DLLM_A2D_BLOCK_SIZE), if any. */
export function a2dSettingFromEnv(env: Record<string, string | undefined>): A2dSetting | undefined {
  const v = env.FAST_DLLM_A2D_VARIANT;
  const b = env.FAST_DLLM_A2D_BLOCK_SIZE;
  if (!v && !b) return undefined;
  const names = [v ? 'FAST_DLLM_A2D_VARIANT' : '', b ? 'FAST_DLLM_A2D_BLOCK_SIZE' : ''].filter(Boolean).join(' / ');
  return { ...(v ? { variant: v } : {}), ...(b ? { blockSize: /^\d+$/.test(b.trim()) ? Number(b) : NaN } : {}), source: names };
}

/** Only plain RoPE is implemented: a config with rope_scaling is refused, naming it. */
function refuseRopeScaling(config: Json, fail: (msg: string) => ModelFormatError): void {
  if (config.rope_scaling !== undefined && config.rope_scaling !== null) {
    throw fail(`"rope_scaling": ${JSON.stringify(config.rope_scaling)} is not supported; only plain RoPE (rope_scaling null) is implemented`);
  }
}

/** Only SwiGLU (hidden_act silu) is implemented: another activation is refused, naming it. */
function refuseActivation(config: Json, fail: (msg: string) => ModelFormatError): void {
  if (config.hidden_act !== undefined && config.hidden_act !== 'silu') throw fail(`"hidden_act": ${JSON.stringify(config.hidden_act)} is not supported; only "silu" (SwiGLU) is`);
}

/** Refuses the Qwen config variants no engine here implements, naming the field (sliding window, RoPE scaling, MoE). */
function refuseQwenVariants(qwen3: boolean, config: Json, fail: (msg: string) => ModelFormatError): void {
  if (config.use_sliding_window === true) {
    throw fail('"use_sliding_window": true (sliding-window attention) is not supported; only models with full attention in every layer load');
  }
  refuseRopeScaling(config, fail);
  for (const key of ['num_experts', 'num_local_experts', 'n_routed_experts', 'num_experts_per_tok', 'moe_intermediate_size']) {
    const v = config[key];
    if (typeof v === 'number' && v > 0) throw fail(`"${key}": ${v} describes a mixture-of-experts model, which is not supported`);
  }
  if (qwen3 && config.attention_bias === true) {
    throw fail('"attention_bias": true (Qwen3 q/k/v/o biases) is not supported; SDAR and Qwen3 checkpoints have none');
  }
}

/** DESIGN §8: every EOS / end-of-turn id that config.json, generation_config.json and the tokenizer name. */
function qwenStopIds(special: SpecialTokens, vocab: number, config: Json, extras: ConfigExtras): number[] {
  const ids: number[] = [special.eos];
  if (special.endOfTurn !== undefined) ids.push(special.endOfTurn);
  const all = (v: unknown): number[] => (typeof v === 'number' ? [v] : Array.isArray(v) ? v.filter((x): x is number => typeof x === 'number') : []);
  ids.push(...all(config.eos_token_id), ...all(extras.generationConfig?.eos_token_id));
  const decoder = extras.tokenizerConfig?.added_tokens_decoder as Record<string, { content?: string }> | undefined;
  const eosText = tokenString(extras.tokenizerConfig?.eos_token);
  for (const [id, tok] of Object.entries(decoder ?? {})) {
    if (tok?.content !== undefined && (QWEN_STOP_TEXT.includes(tok.content) || tok.content === eosText)) ids.push(Number(id));
  }
  return ids.filter((id) => Number.isInteger(id) && id >= 0 && id < vocab);
}

/** tokenizer_config.json names special tokens as a string or an AddedToken object with `content`. */
function tokenString(v: unknown): string | undefined {
  if (typeof v === 'string') return v;
  if (v && typeof v === 'object' && typeof (v as { content?: unknown }).content === 'string') return (v as { content: string }).content;
  return undefined;
}

function firstId(v: unknown): number | undefined {
  if (typeof v === 'number') return v;
  if (Array.isArray(v) && typeof v[0] === 'number') return v[0];
  return undefined;
}

function resolveSpecial(arch: Architecture, vocab: number, config: Json, extras: ConfigExtras, file: string): SpecialTokens {
  const gen = extras.generationConfig ?? {};
  const fromTok: Partial<SpecialTokens> = {};
  const decoder = extras.tokenizerConfig?.added_tokens_decoder as Record<string, { content?: string }> | undefined;
  if (decoder) {
    // tokenizer_config.json's own mask_token (SDAR's "<|MASK|>") names the mask when it is in the decoder.
    const maskText = tokenString(extras.tokenizerConfig?.mask_token);
    for (const [id, tok] of Object.entries(decoder)) {
      for (const [role, text] of Object.entries(TOKEN_TEXT[arch])) if (tok?.content === text) fromTok[role as keyof SpecialTokens] = Number(id);
      if (maskText !== undefined && tok?.content === maskText) fromTok.mask = Number(id);
    }
  }
  if (fromTok.mask === undefined && Array.isArray(extras.tokenizerJson?.added_tokens)) {
    // tokenizer.json's added_tokens: where an A2D checkpoint's <|mask|> always is (DESIGN §15).
    const maskText = tokenString(extras.tokenizerConfig?.mask_token) ?? TOKEN_TEXT[arch].mask;
    for (const t of extras.tokenizerJson.added_tokens as { id?: unknown; content?: unknown }[]) {
      if (t && t.content === maskText && typeof t.id === 'number') fromTok.mask = t.id;
    }
  }
  const pick = (role: keyof SpecialTokens, key: string): number | undefined =>
    firstId(config[key]) ?? firstId(gen[key]) ?? fromTok[role] ?? (DEFAULT_IDS[arch] as Partial<SpecialTokens>)[role];
  const mask = pick('mask', 'mask_token_id');
  if (mask === undefined) {
    throw new ModelFormatError(`no mask token: dllm's A2D checkpoints add "${TOKEN_TEXT[arch].mask}" to the tokenizer, and neither tokenizer_config.json ` +
      'nor tokenizer.json names it (nor does mask_token_id); use the tokenizer files saved with the checkpoint', { file });
  }
  const out: SpecialTokens = {
    mask,
    eos: pick('eos', 'eos_token_id')!,
  };
  const explicit = (key: string) => firstId(config[key]) ?? firstId(gen[key]);
  const eot = fromTok.endOfTurn ?? DEFAULT_IDS[arch].endOfTurn;
  const bos = explicit('bos_token_id') ?? fromTok.bos ?? DEFAULT_IDS[arch].bos;
  const pad = explicit('pad_token_id');
  // Defaults that do not fit the vocab (a tiny test model) are dropped; explicit ids that do not fit are errors.
  if (eot !== undefined && eot < vocab) out.endOfTurn = eot;
  if (bos !== undefined && bos < vocab) out.bos = bos;
  if (pad !== undefined) out.pad = pad;
  for (const [role, key] of [['mask', 'mask_token_id'], ['eos', 'eos_token_id']] as const) {
    const given = explicit(key) ?? fromTok[role];
    if (given === undefined && out[role] >= vocab)
      throw new ModelFormatError(
        `"${key}" is missing and the default ${out[role]} does not fit the vocab of ${vocab}; set ${key} in config.json`,
        { file },
      );
  }
  for (const [role, v] of Object.entries(out)) {
    if (v !== undefined && (!Number.isInteger(v) || v < 0 || v >= vocab))
      throw new ModelFormatError(`contradictory config: special token "${role}" id ${v} is outside the vocab of ${vocab}`, { file });
  }
  return out;
}

async function readJsonIfExists(path: string): Promise<Json | undefined> {
  let text: string;
  try {
    text = await (await nodeFs()).readFile(path, 'utf8');
  } catch {
    return undefined;
  }
  try {
    return JSON.parse(text) as Json;
  } catch (e) {
    throw new ModelFormatError(`not valid JSON (${(e as Error).message}); fix or re-download it`, { file: path });
  }
}

/** Reads config.json (+ generation_config.json, tokenizer_config.json when present) from a model directory. */
export async function readModelConfig(dir: string): Promise<ModelDescription> {
  const file = join(dir, 'config.json');
  const config = await readJsonIfExists(file);
  if (!config) throw new ModelFormatError('config.json is missing; a model directory needs config.json next to its weights', { file });
  const a2d = typeof config.model_type === 'string' && A2D_MODEL_TYPES[config.model_type.toLowerCase()] !== undefined;
  const tokenizerConfig = await readJsonIfExists(join(dir, 'tokenizer_config.json'));
  const env = typeof process !== 'undefined' ? a2dSettingFromEnv(process.env) : undefined;
  return normaliseConfig(config, {
    file,
    generationConfig: await readJsonIfExists(join(dir, 'generation_config.json')),
    tokenizerConfig,
    // DESIGN §15: only an A2D checkpoint needs tokenizer.json here (its <|mask|>), and its path and setting.
    ...(a2d ? { tokenizerJson: await readJsonIfExists(join(dir, 'tokenizer.json')), path: dir, ...(env ? { a2d: env } : {}) } : {}),
  });
}

/** What every engine reports as its `model`: one place that maps a description to the scheduler's view. */
export function schedulerModelInfo(d: ModelDescription): SchedulerModelInfo {
  return {
    // LLaDA-MoE differs from LLaDA in its layers only; the scheduler decodes it as LLaDA (DESIGN §13). LLaDA2 keeps
    // its name: a block-diffusion family of its own, decoded by SDAR's procedure (DESIGN §13.1).
    architecture: d.architecture === 'llada_moe' ? 'llada' : d.architecture,
    vocabSize: d.vocabSize,
    maxPositions: d.maxPositions,
    maskId: d.special.mask,
    eosId: d.special.eos,
    ...(d.special.endOfTurn !== undefined ? { endOfTurnId: d.special.endOfTurn } : {}),
    shiftLogits: d.shiftLogits,
    ...(d.blockSize !== undefined ? { blockSize: d.blockSize } : {}),
    stopIds: d.stopIds,
  };
}
