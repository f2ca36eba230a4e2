import { joinPath as join, nodeFs } from './nodefs.js';
import { ModelFormatError } from './errors.js';
import type { Architecture, ModelDescription, SchedulerModelInfo, SpecialTokens } from './types.js';

type Json = Record<string, unknown>;

export interface ConfigExtras {
  /** Label of config.json in errors (defaults to "config.json"). */
  file?: string;
  /** generation_config.json, which may carry eos/bos/pad/mask ids. */
  generationConfig?: Json;
  /** tokenizer_config.json; its added_tokens_decoder may name the special tokens. */
  tokenizerConfig?: Json;
}

/** DESIGN §1/§8 defaults, used only when no file gives the id and the vocab is big enough to hold it. */
const DEFAULT_IDS: Record<Architecture, { mask: number; eos: number; endOfTurn?: number; bos?: number }> = {
  llada: { mask: 126336, eos: 126081, endOfTurn: 126348, bos: 126080 },
  // LLaDA-MoE's tokenizer (shared with LLaDA2): ids from its published generate() defaults.
  llada_moe: { mask: 156895, eos: 156892 },
  dream: { mask: 151666, eos: 151643, endOfTurn: 151645 },
  fast_dllm_v2: { mask: 151665, eos: 151643, endOfTurn: 151645 },
  sdar: { mask: 151669, eos: 151643, endOfTurn: 151645 },
};
/** Special token strings looked up in tokenizer_config.json's added_tokens_decoder. */
const TOKEN_TEXT: Record<Architecture, Partial<Record<keyof SpecialTokens, string>>> = {
  llada: { mask: '<|mdm_mask|>', eos: '<|endoftext|>', endOfTurn: '<|eot_id|>', bos: '<|startoftext|>' },
  llada_moe: { mask: '<|mask|>', eos: '<|endoftext|>', endOfTurn: '<|role_end|>' },
  dream: { mask: '<|mask|>', eos: '<|endoftext|>', endOfTurn: '<|im_end|>' },
  fast_dllm_v2: { mask: '|<MASK>|', eos: '<|endoftext|>', endOfTurn: '<|im_end|>' },
  sdar: { mask: '<|MASK|>', eos: '<|endoftext|>', endOfTurn: '<|im_end|>' },
};
/** Token strings that end a turn in the Qwen chat format (DESIGN §8): stop tokens of the block-diffusion models. */
const QWEN_STOP_TEXT = ['<|endoftext|>', '<|im_end|>'];

/** config.json model_type (lower-cased) of each architecture. */
const MODEL_TYPES: Record<string, Architecture> = { llada: 'llada', lladamoe: 'llada_moe', dream: 'dream', fast_dllm_qwen: 'fast_dllm_v2', sdar: 'sdar' };

/** Config keys that mark LLaDA-MoE: its published remote code says model_type "llada", some tools "lladamoe". */
const LLADA_MOE_KEYS = ['num_experts', 'num_experts_per_tok', 'expert_intermediate_size'];

/**
 * Turns a LLaDA, Dream, Fast-dLLM v2 or SDAR config.json (+ optional generation/tokenizer configs) into a
 * ModelDescription. Variants the engines do not implement (sliding-window attention, rope_scaling, mixtures of
 * experts, Qwen3 attention biases) are refused here, naming the field.
 */
export function normaliseConfig(config: Json, extras: ConfigExtras = {}): ModelDescription {
  const file = extras.file ?? 'config.json';
  const fail = (msg: string) => new ModelFormatError(msg, { file });
  const modelType = config.model_type;
  let arch = typeof modelType === 'string' ? MODEL_TYPES[modelType.toLowerCase()] : undefined;
  // DESIGN §13: MoE is told from dense by the config's expert fields, not by the name alone.
  if (arch === 'llada' && LLADA_MOE_KEYS.some((k) => config[k] !== undefined && config[k] !== null)) arch = 'llada_moe';
  if (!arch) {
    const hint = typeof modelType === 'string' && /moe/i.test(modelType) ? ' (of the mixture-of-experts models only LLaDA-MoE, "lladamoe", is supported)' : '';
    throw fail(`unknown architecture: model_type ${JSON.stringify(modelType)}${hint}; supported are "llada" (LLaDA), "lladamoe" (LLaDA-MoE), ` +
      '"Dream" (Dream/Qwen2), "Fast_dLLM_Qwen" (Fast-dLLM v2/Qwen2.5) and "sdar" (SDAR/Qwen3)');
  }

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
  } else {
    refuseQwenVariants(arch, config, fail);
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
      qkvBias: arch !== 'sdar',
      tiedEmbeddings: config.tie_word_embeddings === true,
      shiftLogits: arch !== 'sdar',
      qkNorm: arch === 'sdar',
      // DESIGN §8: Fast-dLLM v2 names its block size bd_size, SDAR block_size.
      ...(arch === 'fast_dllm_v2' ? { blockSize: posInt('bd_size') } : arch === 'sdar' ? { blockSize: posInt('block_size') } : {}),
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

  const special = resolveSpecial(arch, d.vocabSize, config, extras, file);
  const stopIds = d.blockSize === undefined
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
  if (config.rope_scaling !== undefined && config.rope_scaling !== null) {
    throw fail(`"rope_scaling": ${JSON.stringify(config.rope_scaling)} is not supported; only plain RoPE (rope_scaling null) is implemented`);
  }
  if (config.attention_bias === true) throw fail('"attention_bias": true is not supported; LLaDA-MoE checkpoints have no attention biases');
  if (config.hidden_act !== undefined && config.hidden_act !== 'silu') throw fail(`"hidden_act": ${JSON.stringify(config.hidden_act)} is not supported; only "silu" (SwiGLU) is`);
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

/** Refuses the Qwen config variants no engine here implements, naming the field (sliding window, RoPE scaling, MoE). */
function refuseQwenVariants(arch: Architecture, config: Json, fail: (msg: string) => ModelFormatError): void {
  if (config.use_sliding_window === true) {
    throw fail('"use_sliding_window": true (sliding-window attention) is not supported; only models with full attention in every layer load');
  }
  if (config.rope_scaling !== undefined && config.rope_scaling !== null) {
    throw fail(`"rope_scaling": ${JSON.stringify(config.rope_scaling)} is not supported; only plain RoPE (rope_scaling null) is implemented`);
  }
  for (const key of ['num_experts', 'num_local_experts', 'n_routed_experts', 'num_experts_per_tok', 'moe_intermediate_size']) {
    const v = config[key];
    if (typeof v === 'number' && v > 0) throw fail(`"${key}": ${v} describes a mixture-of-experts model, which is not supported`);
  }
  if (arch === 'sdar' && config.attention_bias === true) {
    throw fail('"attention_bias": true (Qwen3 q/k/v/o biases) is not supported; SDAR checkpoints have none');
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
  const pick = (role: keyof SpecialTokens, key: string): number | undefined =>
    firstId(config[key]) ?? firstId(gen[key]) ?? fromTok[role] ?? (DEFAULT_IDS[arch] as Partial<SpecialTokens>)[role];
  const out: SpecialTokens = {
    mask: pick('mask', 'mask_token_id')!,
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
  return normaliseConfig(config, {
    file,
    generationConfig: await readJsonIfExists(join(dir, 'generation_config.json')),
    tokenizerConfig: await readJsonIfExists(join(dir, 'tokenizer_config.json')),
  });
}

/** What every engine reports as its `model`: one place that maps a description to the scheduler's view. */
export function schedulerModelInfo(d: ModelDescription): SchedulerModelInfo {
  return {
    // LLaDA-MoE differs from LLaDA in its layers only; the scheduler decodes it as LLaDA (DESIGN §13).
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
