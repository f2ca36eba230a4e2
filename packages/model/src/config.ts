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

/** DESIGN §1 defaults, used only when no file gives the id and the vocab is big enough to hold it. */
const DEFAULT_IDS: Record<Architecture, { mask: number; eos: number; endOfTurn: number; bos?: number }> = {
  llada: { mask: 126336, eos: 126081, endOfTurn: 126348, bos: 126080 },
  dream: { mask: 151666, eos: 151643, endOfTurn: 151645 },
};
/** Special token strings looked up in tokenizer_config.json's added_tokens_decoder. */
const TOKEN_TEXT: Record<Architecture, Partial<Record<keyof SpecialTokens, string>>> = {
  llada: { mask: '<|mdm_mask|>', eos: '<|endoftext|>', endOfTurn: '<|eot_id|>', bos: '<|startoftext|>' },
  dream: { mask: '<|mask|>', eos: '<|endoftext|>', endOfTurn: '<|im_end|>' },
};

/** Turns a LLaDA or Dream config.json (+ optional generation/tokenizer configs) into a ModelDescription. */
export function normaliseConfig(config: Json, extras: ConfigExtras = {}): ModelDescription {
  const file = extras.file ?? 'config.json';
  const fail = (msg: string) => new ModelFormatError(msg, { file });
  const modelType = config.model_type;
  let arch: Architecture;
  if (typeof modelType === 'string' && modelType.toLowerCase() === 'llada') arch = 'llada';
  else if (typeof modelType === 'string' && modelType.toLowerCase() === 'dream') arch = 'dream';
  else
    throw fail(`unknown architecture: model_type ${JSON.stringify(modelType)}; supported are "llada" (LLaDA) and "Dream" (Dream/Qwen2)`);

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

  let d: Omit<ModelDescription, 'special' | 'headDim'>;
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
    };
    if (typeof config.vocab_size === 'number' && config.vocab_size > d.vocabSize)
      throw fail(`vocab_size ${config.vocab_size} is larger than embedding_size ${d.vocabSize}; fix one of them`);
  } else {
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
      qkvBias: true,
      tiedEmbeddings: config.tie_word_embeddings === true,
      shiftLogits: true,
    };
  }
  const [hk, nh, nkv] = arch === 'llada' ? ['d_model', 'n_heads', 'n_kv_heads'] : ['hidden_size', 'num_attention_heads', 'num_key_value_heads'];
  if (d.hiddenSize % d.numHeads !== 0) throw fail(`contradictory config: ${nh} ${d.numHeads} does not divide ${hk} ${d.hiddenSize}`);
  if (d.numHeads % d.numKvHeads !== 0) throw fail(`contradictory config: ${nkv} ${d.numKvHeads} does not divide ${nh} ${d.numHeads}`);
  const headDim = d.hiddenSize / d.numHeads;
  if (headDim % 2 !== 0) throw fail(`contradictory config: head dim ${headDim} (${hk} / ${nh}) must be even for RoPE`);

  const special = resolveSpecial(arch, d.vocabSize, config, extras, file);
  return { ...d, headDim, special };
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
    for (const [id, tok] of Object.entries(decoder))
      for (const [role, text] of Object.entries(TOKEN_TEXT[arch])) if (tok?.content === text) fromTok[role as keyof SpecialTokens] = Number(id);
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
  };
}
