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
const DEFAULT_IDS: Record<Architecture, { mask: number; eos: number; endOfTurn: number; bos?: number }> = {
  llada: { mask: 126336, eos: 126081, endOfTurn: 126348, bos: 126080 },
  dream: { mask: 151666, eos: 151643, endOfTurn: 151645 },
  fast_dllm_v2: { mask: 151665, eos: 151643, endOfTurn: 151645 },
  sdar: { mask: 151669, eos: 151643, endOfTurn: 151645 },
};
/** Special token strings looked up in tokenizer_config.json's added_tokens_decoder. */
const TOKEN_TEXT: Record<Architecture, Partial<Record<keyof SpecialTokens, string>>> = {
  llada: { mask: '<|mdm_mask|>', eos: '<|endoftext|>', endOfTurn: '<|eot_id|>', bos: '<|startoftext|>' },
  dream: { mask: '<|mask|>', eos: '<|endoftext|>', endOfTurn: '<|im_end|>' },
  fast_dllm_v2: { mask: '|<MASK>|', eos: '<|endoftext|>', endOfTurn: '<|im_end|>' },
  sdar: { mask: '<|MASK|>', eos: '<|endoftext|>', endOfTurn: '<|im_end|>' },
};
/** Token strings that end a turn in the Qwen chat format (DESIGN §8): stop tokens of the block-diffusion models. */
const QWEN_STOP_TEXT = ['<|endoftext|>', '<|im_end|>'];

/** config.json model_type (lower-cased) of each architecture. */
const MODEL_TYPES: Record<string, Architecture> = { llada: 'llada', dream: 'dream', fast_dllm_qwen: 'fast_dllm_v2', sdar: 'sdar' };

/**
 * Turns a LLaDA, Dream, Fast-dLLM v2 or SDAR config.json (+ optional generation/tokenizer configs) into a
 * ModelDescription. Variants the engines do not implement (sliding-window attention, rope_scaling, mixtures of
 * experts, Qwen3 attention biases) are refused here, naming the field.
 */
export function normaliseConfig(config: Json, extras: ConfigExtras = {}): ModelDescription {
  const file = extras.file ?? 'config.json';
  const fail = (msg: string) => new ModelFormatError(msg, { file });
  const modelType = config.model_type;
  const arch = typeof modelType === 'string' ? MODEL_TYPES[modelType.toLowerCase()] : undefined;
  if (!arch) {
    const hint = typeof modelType === 'string' && /moe/i.test(modelType) ? ' (mixture-of-experts models are not supported)' : '';
    throw fail(`unknown architecture: model_type ${JSON.stringify(modelType)}${hint}; supported are "llada" (LLaDA), "Dream" (Dream/Qwen2), ` +
      '"Fast_dLLM_Qwen" (Fast-dLLM v2/Qwen2.5) and "sdar" (SDAR/Qwen3)');
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
  if (arch !== 'llada' && config.head_dim !== undefined && config.head_dim !== null) {
    // Qwen3 states head_dim, which need not be hidden_size / num_attention_heads (q/o map d to H*hd).
    headDim = posInt('head_dim');
    if (headDim % 2 !== 0) throw fail(`contradictory config: head_dim ${headDim} must be even for RoPE`);
  } else {
    if (d.hiddenSize % d.numHeads !== 0) throw fail(`contradictory config: ${nh} ${d.numHeads} does not divide ${hk} ${d.hiddenSize}`);
    headDim = d.hiddenSize / d.numHeads;
    if (headDim % 2 !== 0) throw fail(`contradictory config: head dim ${headDim} (${hk} / ${nh}) must be even for RoPE`);
  }

  const special = resolveSpecial(arch, d.vocabSize, config, extras, file);
  const stopIds = d.blockSize === undefined
    ? [special.eos, ...(special.endOfTurn !== undefined ? [special.endOfTurn] : [])]
    : qwenStopIds(special, d.vocabSize, config, extras);
  return { ...d, headDim, special, stopIds: [...new Set(stopIds)].sort((a, b) => a - b) };
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
  if (eot < vocab) out.endOfTurn = eot;
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
    architecture: d.architecture,
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
