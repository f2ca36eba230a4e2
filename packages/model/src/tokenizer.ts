import { joinPath as join, nodeFs } from './nodefs.js';
import { Tokenizer } from '@huggingface/tokenizers';
import { Environment, Interpreter, Template } from '@huggingface/jinja';
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
  /**
   * The prompt ids of a conversation: the chat template rendered and encoded, with special-token text inside the
   * messages' content encoded as plain text (a user cannot write a control token such as `<|im_start|>`).
   */
  encodeChat(messages: ChatMessage[], opts?: { addGenerationPrompt?: boolean }): number[];
  /** The most UTF-8 bytes one token stands for (vocabulary and added tokens): bytes / this ≤ tokens. */
  readonly maxTokenBytes: number;
  /** Id of a token string (special tokens included), when it exists. */
  tokenToId(token: string): number | undefined;
  /** The id text outside the vocabulary becomes (tokenizer.json's model.unk_token), when the tokenizer has one. */
  readonly unkId?: number;
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

/**
 * Limits of one chat-template rendering (DESIGN §10). A template comes with the model and runs on every chat
 * request, so it is bounded as transformers' sandboxed Jinja bounds it: range() at 100 000 items, and here also a
 * budget of evaluation steps, a wall-time limit and a cap on any string or list it builds.
 */
export const TEMPLATE_LIMITS = { maxRange: 100_000, maxSteps: 1_000_000, maxMs: 1_000, maxChars: 16 * 1024 * 1024 };

/** A chat template went over TEMPLATE_LIMITS. */
export class TemplateLimitError extends Error {}

/** range() capped at maxRange items, each item charged to the render's step budget. */
function cappedRange(charge: (steps: number) => void) {
  return (start: number, stop?: number, step = 1): number[] => {
    if (stop === undefined) [start, stop] = [0, start];
    if (step === 0) throw new Error('range() step must not be zero');
    const n = Math.max(0, Math.ceil((stop - start) / step));
    if (n > TEMPLATE_LIMITS.maxRange) throw new TemplateLimitError(`the chat template asked for range() of ${n} items; at most ${TEMPLATE_LIMITS.maxRange}`);
    charge(n);
    return Array.from({ length: n }, (_, i) => start + i * step);
  };
}

/**
 * Renders with every evaluation counted: Template.render has no hook, so Interpreter.prototype.evaluate is
 * wrapped for the (synchronous) duration of one render and restored after it.
 */
function boundedRender(template: Template, items: Record<string, unknown>): string {
  const proto = Interpreter.prototype as unknown as { evaluate: (s: unknown, e: unknown) => { value: unknown } };
  const evaluate = proto.evaluate;
  const deadline = performance.now() + TEMPLATE_LIMITS.maxMs;
  let steps = 0;
  let checked = 0;
  const charge = (n: number) => {
    steps += n;
    if (steps > TEMPLATE_LIMITS.maxSteps) throw new TemplateLimitError(`the chat template took more than ${TEMPLATE_LIMITS.maxSteps} evaluation steps`);
    if (steps - checked >= 256) {
      checked = steps;
      if (performance.now() > deadline) throw new TemplateLimitError(`the chat template ran longer than ${TEMPLATE_LIMITS.maxMs} ms`);
    }
  };
  // The built-in range() is declared by render() itself; the capped one replaces it in the interpreter's globals.
  const range = new Environment().set('range', cappedRange(charge));
  proto.evaluate = function (this: { global?: { variables?: Map<string, unknown> } }, statement: unknown, env: unknown) {
    if (steps === 0) this.global?.variables?.set('range', range);
    charge(1);
    const r = evaluate.call(this, statement, env);
    const v = r?.value;
    if ((typeof v === 'string' || Array.isArray(v)) && v.length > TEMPLATE_LIMITS.maxChars) {
      throw new TemplateLimitError(`the chat template built a ${typeof v === 'string' ? 'string' : 'list'} of more than ${TEMPLATE_LIMITS.maxChars} items`);
    }
    return r;
  };
  try {
    return template.render(items);
  } catch (e) {
    // A macro that calls itself ends in V8's stack overflow: a template fault like the others.
    if (e instanceof RangeError) throw new TemplateLimitError(`the chat template failed: ${e.message}`);
    throw e;
  } finally {
    proto.evaluate = evaluate;
  }
}

function utf8Length(s: string): number {
  let n = 0;
  for (let i = 0; i < s.length; i++) {
    const c = s.charCodeAt(i);
    n += c < 0x80 ? 1 : c < 0x800 ? 2 : c >= 0xd800 && c < 0xdc00 ? (i++, 4) : 3;
  }
  return n;
}

/**
 * The first place where `pattern` repeats a group that itself repeats without bound — `(a+)+`, `(\s*x)*`,
 * `(?:a+){2,}` — the shape that backtracks exponentially on a near-miss input; null when there is none. A
 * heuristic: overlapping alternatives such as `(a|a)+` are not caught (the server bounds tokenizing time anyway).
 */
export function nestedRepetition(pattern: string): string | null {
  const open: Array<{ start: number; unbounded: boolean }> = [];
  let top = { start: 0, unbounded: false };
  let lastGroup: { start: number; unbounded: boolean } | null = null;
  for (let i = 0; i < pattern.length; i++) {
    const c = pattern[i];
    let quantified: 'unbounded' | 'bounded' | null = null;
    let end = i;
    if (c === '\\') {
      i++;
      lastGroup = null;
      continue;
    }
    if (c === '[') {
      for (i++; i < pattern.length && pattern[i] !== ']'; i++) if (pattern[i] === '\\') i++;
      lastGroup = null;
      continue;
    }
    if (c === '(') {
      open.push(top);
      top = { start: i, unbounded: false };
      lastGroup = null;
      continue;
    }
    if (c === ')') {
      lastGroup = top;
      const inner = top.unbounded;
      top = open.pop() ?? { start: 0, unbounded: false };
      if (inner) top.unbounded = true;
      continue;
    }
    if (c === '+' || c === '*') quantified = 'unbounded';
    else if (c === '{') {
      const m = /^\{(\d*),?(\d*)\}/.exec(pattern.slice(i));
      if (m) {
        quantified = m[0].includes(',') && m[2] === '' ? 'unbounded' : 'bounded';
        end = i + m[0].length - 1;
      }
    }
    if (quantified === null) {
      lastGroup = null;
      continue;
    }
    if (quantified === 'unbounded') {
      if (lastGroup?.unbounded) return pattern.slice(lastGroup.start, end + 1);
      top.unbounded = true;
    }
    i = end;
    lastGroup = null;
  }
  return null;
}

/** Every `pattern.Regex` under a tokenizer.json section (Split pre-tokenizers, Replace normalizers). */
function regexesIn(node: unknown, out: string[] = []): string[] {
  if (Array.isArray(node)) for (const x of node) regexesIn(x, out);
  else if (node && typeof node === 'object') {
    const p = (node as { pattern?: { Regex?: unknown } }).pattern;
    if (p && typeof p.Regex === 'string') out.push(p.Regex);
    for (const v of Object.values(node)) regexesIn(v, out);
  }
  return out;
}

/** Builds a TextTokenizer from already-parsed files (no fs, so a browser loader can reuse it). */
export function createTokenizer(src: TokenizerSources): TextTokenizer {
  const file = src.dir ? join(src.dir, 'tokenizer.json') : 'tokenizer.json';
  const cfgFile = src.dir ? join(src.dir, 'tokenizer_config.json') : 'tokenizer_config.json';
  const tj = src.tokenizer as { model?: { type?: unknown } } | null;
  if (typeof tj !== 'object' || tj === null || typeof tj.model !== 'object' || tj.model === null)
    throw new ModelFormatError('tokenizer.json has no "model" object; it is not a Hugging Face tokenizer file, re-download it', { file });
  for (const section of ['normalizer', 'pre_tokenizer'] as const) {
    for (const re of regexesIn((tj as Record<string, unknown>)[section])) {
      const bad = nestedRepetition(re);
      if (bad) throw new ModelFormatError(`the ${section} expression ${JSON.stringify(re)} repeats a repeated group (${bad}), which can take exponential time on some text; fix the expression`, { file });
    }
  }
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

  const encodeWith = (t: Tokenizer, text: string, addSpecial: boolean) => {
    const ids = t.encode(text, { add_special_tokens: addSpecial }).ids;
    // @huggingface/tokenizers 0.2 leaves unknown words as undefined ids for WordLevel; an engine must never see one.
    for (let i = 0; i < ids.length; i++) {
      if (ids[i] !== undefined) continue;
      if (unkId === undefined)
        throw new ModelFormatError(`text has a piece the vocabulary lacks (token ${i}) and the tokenizer has no unk_token`, { file });
      ids[i] = unkId;
    }
    return ids;
  };
  // Special tokens' text, longest first; and, built when first needed, a tokenizer that reads that text as text.
  const specialTexts = [...tok.get_added_tokens_decoder().values()].filter((t) => t.special && t.content.length > 0).map((t) => t.content).sort((a, b) => b.length - a.length);
  let textOnly: Tokenizer | undefined;
  const plain = (text: string) => {
    if (!textOnly) {
      const added = ((tj as { added_tokens?: Array<{ special?: boolean }> }).added_tokens ?? []).filter((t) => !t.special);
      textOnly = new Tokenizer({ ...(src.tokenizer as object), added_tokens: added }, src.tokenizerConfig);
    }
    return encodeWith(textOnly, text, false);
  };
  let maxTokenBytes = 1;
  for (const t of tok.get_vocab(true).keys()) maxTokenBytes = Math.max(maxTokenBytes, utf8Length(t));

  const self: TextTokenizer = {
    vocabSize,
    maxTokenBytes,
    unkId,
    encode(text, opts = {}) {
      return encodeWith(tok, text, opts.addSpecial ?? false);
    },
    encodeChat(messages, opts = {}) {
      const spoofed = specialTexts.length > 0 && messages.some((m) => specialTexts.some((t) => m.content.includes(t)));
      if (!spoofed) return encodeWith(tok, self.applyChatTemplate(messages, opts), false);
      // Each special-token text in a message becomes a placeholder (private-use characters and a fresh nonce) for
      // the template; the rendering is encoded piece by piece, the placeholders' text as plain text.
      const nonce = Math.random().toString(36).slice(2, 10);
      const found: string[] = [];
      const pattern = new RegExp(specialTexts.map((t) => t.replace(/[.*+?^${}()|[\]\\]/g, '\\$&')).join('|'), 'g');
      const masked = messages.map((m) => ({ ...m, content: m.content.replace(pattern, (t) => `\uE000${nonce}:${found.push(t) - 1}\uE001`) }));
      const rendered = self.applyChatTemplate(masked, opts);
      const parts = rendered.split(new RegExp(`\uE000${nonce}:(\\d+)\uE001`));
      const ids: number[] = [];
      for (let i = 0; i < parts.length; i++) {
        if (i % 2 === 1) ids.push(...plain(found[Number(parts[i])]));
        else if (parts[i]) ids.push(...encodeWith(tok, parts[i], false));
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
      return boundedRender(template, { ...src.templateVariables, messages, add_generation_prompt: opts.addGenerationPrompt ?? true, ...specials });
    },
    tokenToId(token) {
      return tok.token_to_id(token);
    },
  };
  return self;
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
