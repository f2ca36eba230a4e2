import { joinPath as join, nodeFs } from './nodefs.js';
import { Tokenizer } from '@huggingface/tokenizers';
import { Template } from '@huggingface/jinja';
import { ModelFormatError } from './errors.js';
import { readModelConfig } from './config.js';

export interface ChatMessage {
  role: string;
  content: string;
}

export interface TextTokenizer {
  /** Ids the tokenizer can produce: max id + 1 over the vocab and added tokens. */
  readonly vocabSize: number;
  encode(text: string, opts?: { addSpecial?: boolean }): number[];
  decode(ids: ArrayLike<number>, opts?: { skipSpecial?: boolean }): string;
  /** The prompt text for a conversation, from tokenizer_config.json's chat_template. */
  applyChatTemplate(messages: ChatMessage[], opts?: { addGenerationPrompt?: boolean }): string;
  /** Id of a token string (special tokens included), when it exists. */
  tokenToId(token: string): number | undefined;
}

export interface TokenizerSources {
  /** Parsed tokenizer.json. */
  tokenizer: unknown;
  /** Parsed tokenizer_config.json ({} when absent). */
  tokenizerConfig: Record<string, unknown>;
  /** The model's vocab size; a tokenizer that can produce a larger id is refused. */
  modelVocabSize?: number;
  /** Directory label used in errors. */
  dir?: string;
  /** Extra chat-template variables: `enable_thinking: false` for dllm's A2D models (DESIGN §15). */
  templateVariables?: Record<string, unknown>;
}

/** DESIGN §15: dllm renders an A2D model's chat prompt with enable_thinking false (Qwen3: an empty think block). */
export function chatTemplateVariables(modelType: unknown): Record<string, unknown> | undefined {
  return typeof modelType === 'string' && modelType.toLowerCase().startsWith('a2d-') ? { enable_thinking: false } : undefined;
}

/** `bos_token` etc. in tokenizer_config.json are a string or an AddedToken object with `content`. */
function tokenText(v: unknown): string | undefined {
  if (typeof v === 'string') return v;
  if (v && typeof v === 'object' && typeof (v as { content?: unknown }).content === 'string') return (v as { content: string }).content;
  return undefined;
}

/** Builds a TextTokenizer from already-parsed files (no fs, so a browser loader can reuse it). */
export function createTokenizer(src: TokenizerSources): TextTokenizer {
  const file = src.dir ? join(src.dir, 'tokenizer.json') : 'tokenizer.json';
  const cfgFile = src.dir ? join(src.dir, 'tokenizer_config.json') : 'tokenizer_config.json';
  const tj = src.tokenizer as { model?: { type?: unknown } } | null;
  if (typeof tj !== 'object' || tj === null || typeof tj.model !== 'object' || tj.model === null)
    throw new ModelFormatError('tokenizer.json has no "model" object; it is not a Hugging Face tokenizer file, re-download it', { file });
  let tok: Tokenizer;
  try {
    tok = new Tokenizer(src.tokenizer as object, src.tokenizerConfig);
  } catch (e) {
    throw new ModelFormatError(`cannot build the tokenizer (${(e as Error).message}); re-download tokenizer.json`, { file });
  }
  let maxId = -1;
  for (const id of tok.get_vocab(true).values()) if (id > maxId) maxId = id;
  const vocabSize = maxId + 1;
  const unkName = (tj.model as { unk_token?: unknown }).unk_token;
  const unkId = typeof unkName === 'string' ? tok.token_to_id(unkName) : undefined;
  if (vocabSize === 0) throw new ModelFormatError('tokenizer.json has an empty vocabulary; re-download it', { file });
  if (src.modelVocabSize !== undefined && vocabSize > src.modelVocabSize)
    throw new ModelFormatError(
      `tokenizer can produce id ${maxId} but the model's vocab has only ${src.modelVocabSize} entries; tokenizer.json and config.json belong to different models`,
      { file },
    );

  const cfg = src.tokenizerConfig;
  let templateText: string | undefined;
  if (typeof cfg.chat_template === 'string') templateText = cfg.chat_template;
  else if (Array.isArray(cfg.chat_template)) {
    // Newer configs hold a list of named templates; the one named "default" is the chat template.
    const named = cfg.chat_template as { name?: string; template?: string }[];
    templateText = (named.find((t) => t.name === 'default') ?? named[0])?.template;
  }
  let template: Template | undefined;
  const specials = {
    bos_token: tokenText(cfg.bos_token) ?? '',
    eos_token: tokenText(cfg.eos_token) ?? '',
    pad_token: tokenText(cfg.pad_token) ?? '',
    unk_token: tokenText(cfg.unk_token) ?? '',
  };

  return {
    vocabSize,
    encode(text, opts = {}) {
      const ids = tok.encode(text, { add_special_tokens: opts.addSpecial ?? false }).ids;
      // @huggingface/tokenizers 0.2 leaves unknown words as undefined ids for WordLevel; an engine must never see one.
      for (let i = 0; i < ids.length; i++) {
        if (ids[i] !== undefined) continue;
        if (unkId === undefined)
          throw new ModelFormatError(`text has a piece the vocabulary lacks (token ${i}) and the tokenizer has no unk_token`, { file });
        ids[i] = unkId;
      }
      return ids;
    },
    decode(ids, opts = {}) {
      // An empty answer (the model wrote EOS at once) is empty text; the library refuses an empty id list.
      if (ids.length === 0) return '';
      return tok.decode(Array.from(ids), { skip_special_tokens: opts.skipSpecial ?? false, clean_up_tokenization_spaces: false });
    },
    applyChatTemplate(messages, opts = {}) {
      if (templateText === undefined)
        throw new ModelFormatError(
          'tokenizer_config.json has no chat_template; add one (copy it from the base model) or build the prompt text yourself',
          { file: cfgFile },
        );
      if (!template) {
        try {
          template = new Template(templateText);
        } catch (e) {
          throw new ModelFormatError(`chat_template does not parse as Jinja (${(e as Error).message}); fix it`, { file: cfgFile });
        }
      }
      return template.render({ ...src.templateVariables, messages, add_generation_prompt: opts.addGenerationPrompt ?? true, ...specials });
    },
    tokenToId(token) {
      return tok.token_to_id(token);
    },
  };
}

async function readJson(path: string, required: boolean): Promise<unknown> {
  let text: string;
  try {
    text = await (await nodeFs()).readFile(path, 'utf8');
  } catch {
    if (!required) return undefined;
    throw new ModelFormatError('tokenizer file is missing; a model directory needs tokenizer.json', { file: path });
  }
  try {
    return JSON.parse(text);
  } catch (e) {
    throw new ModelFormatError(`not valid JSON (${(e as Error).message}); re-download it`, { file: path });
  }
}

/**
 * Loads tokenizer.json + tokenizer_config.json from a model directory. The model vocab to check against is
 * `opts.modelVocabSize`, else config.json's when the directory has one.
 */
export async function loadTokenizer(dir: string, opts: { modelVocabSize?: number } = {}): Promise<TextTokenizer> {
  const tokenizer = await readJson(join(dir, 'tokenizer.json'), true);
  const tokenizerConfig = ((await readJson(join(dir, 'tokenizer_config.json'), false)) ?? {}) as Record<string, unknown>;
  let modelVocabSize = opts.modelVocabSize;
  const config = (await readJson(join(dir, 'config.json'), false)) as Record<string, unknown> | undefined;
  if (modelVocabSize === undefined && config !== undefined) modelVocabSize = (await readModelConfig(dir)).vocabSize;
  const templateVariables = chatTemplateVariables(config?.model_type);
  return createTokenizer({ tokenizer, tokenizerConfig, modelVocabSize, dir, ...(templateVariables ? { templateVariables } : {}) });
}
