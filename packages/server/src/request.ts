/**
 * A request body → the scheduler's GenerationRequest and what the response needs (DESIGN §2–4, §9).
 *
 * - `max_tokens` (or `max_completion_tokens`) caps the answer's tokens. The canvas gets `max_tokens` rounded up
 *   to a multiple of the block length (a dLLM decodes whole blocks); the answer is cut at `max_tokens` tokens
 *   and at the first stop token or stop string, so the rounding never shows in the text. Absent: the server's
 *   default, lowered to what the model's positions leave after the prompt.
 * - Every decoding field maps to the scheduler's neutral choices (choicesOf), which its resolver (resolveDecoding)
 *   turns into the model family's recipe with the request's fields over it, and refuses by field (DESIGN §11): a
 *   field of another family (LLaDA/Dream's `strategy`, `factor`, `alg`, `cache`, `block_length`, `steps`,
 *   `refresh_every`, `early_stop`: false, `entropy_bound`, `suffix_window`, `early_commit`, `draft_verify`, `elastic_cache`; Fast-dLLM v2's `sub_block_length`, `block_cache`; SDAR's
 *   `steps_per_block`, `remasking`) is refused naming it, as the CLI refuses its flag.
 * - Block-diffusion models (Fast-dLLM v2, SDAR; DESIGN §8) decode in their own blocks: `max_tokens` is the cap on new
 *   tokens (no rounding).
 * - The scheduler's `checkGenerationRequest` has the last word on the request with its prompt.
 */
import { randomInt } from 'node:crypto';
import {
  SchedulerConfigError, checkGenerationRequest, requestOf, resolveDecoding,
  type DecodingChoices, type DecodingPlan, type EngineTarget, type FieldNames, type GenerationRequest,
} from '@fast-dllm/scheduler';
import type { ChatMessage } from '@fast-dllm/model';
import { badRequest } from './errors.js';
import type { ChatBody, CompletionBody, DecodingBody } from './schema.js';
import { TokenizeError, type PromptEncoder } from './tokenize.js';

export interface RequestDefaults {
  /** Answer tokens when the request names none (default 128). */
  maxTokens: number;
  /** Block length when the request names none (default 32). */
  blockLength: number;
}

/** What one request asks of the server, checked. */
export interface Job {
  prompt: Int32Array;
  /** Body field that held the prompt, for errors about it. */
  promptParam: 'messages' | 'prompt';
  request: GenerationRequest;
  maxTokens: number;
  stops: string[];
  stream: boolean;
  includeUsage: boolean;
  canvas: boolean;
  /** Seconds before the request is cancelled (the server's limit, or less when the request asks). */
  timeoutMs: number;
  /** Human description of the decoding, e.g. "dual cache, threshold 0.9". */
  decoding: string;
}

const present = <T>(v: T | null | undefined): v is T => v !== null && v !== undefined;

/** What the prompt checks need of the model: its positions, its vocabulary and its longest token. */
export interface PromptLimits {
  maxPositions: number;
  vocabSize: number;
  /** The most UTF-8 bytes one token stands for (TextTokenizer.maxTokenBytes). */
  maxTokenBytes: number;
}

/**
 * Refuses text that cannot fit before it is tokenized (DESIGN §10): no token stands for more than maxTokenBytes
 * bytes, so a text of B bytes is at least B / maxTokenBytes tokens.
 */
function checkTextSize(param: 'messages' | 'prompt', bytes: number, limits: PromptLimits): void {
  const least = Math.floor(bytes / limits.maxTokenBytes);
  if (least >= limits.maxPositions) {
    throw badRequest(param, `the ${param === 'messages' ? 'messages are' : 'prompt is'} ${bytes} bytes, at least ${least} tokens (no token of this model is longer than ${limits.maxTokenBytes} bytes); the model takes at most ${limits.maxPositions} positions, prompt and answer together`, 'context_length_exceeded');
  }
}

/**
 * Chat messages → prompt ids through the model's chat template (one assistant turn to be generated), with
 * special-token text inside the messages encoded as text (encodeChat: no role spoofing).
 */
export async function chatPrompt(encoder: PromptEncoder, body: ChatBody, limits: PromptLimits): Promise<Int32Array> {
  const messages: ChatMessage[] = body.messages.map((m) => ({
    // Templates know 'system'; OpenAI's newer 'developer' role is the same instruction channel.
    role: m.role === 'developer' ? 'system' : m.role,
    content: typeof m.content === 'string' ? m.content : m.content.map((p) => p.text).join('\n'),
  }));
  checkTextSize('messages', messages.reduce((n, m) => n + Buffer.byteLength(m.content) + Buffer.byteLength(m.role), 0), limits);
  let ids;
  try {
    ids = await encoder.encodeChat(messages);
  } catch (e) {
    if (e instanceof TokenizeError && (e.template || e.timedOut)) {
      throw badRequest('messages', e.timedOut ? e.message : `the model's chat template refused these messages: ${e.message.split('\n')[0]}`);
    }
    throw e;
  }
  if (ids.length === 0) throw badRequest('messages', 'the messages encode to no tokens');
  return Int32Array.from(ids);
}

/** Token ids as sent: each an integer id of the vocabulary (a larger one would wrap in an Int32Array). */
function checkedIds(ids: number[], limits: PromptLimits): Int32Array {
  if (ids.length >= limits.maxPositions) {
    throw badRequest('prompt', `the prompt has ${ids.length} tokens; the model takes at most ${limits.maxPositions} positions, prompt and answer together`, 'context_length_exceeded');
  }
  const bad = ids.findIndex((x) => !Number.isInteger(x) || x < 0 || x >= limits.vocabSize);
  if (bad >= 0) throw badRequest('prompt', `token id ${ids[bad]} at position ${bad} is not in the model's vocabulary (ids 0 to ${limits.vocabSize - 1})`, 'invalid_value');
  return Int32Array.from(ids);
}

/** A completion prompt → ids: text is encoded with the tokenizer's special tokens (BOS), ids are checked and taken as they are. */
export async function completionPrompt(encoder: PromptEncoder, body: CompletionBody, limits: PromptLimits): Promise<Int32Array> {
  let p: CompletionBody['prompt'] | string | number[] = body.prompt;
  if (Array.isArray(p)) {
    if (p.every((x) => typeof x === 'number')) {
      return checkedIds(p as number[], limits);
    }
    if (p.length !== 1) throw badRequest('prompt', `only one prompt per request is supported; got ${p.length} (send one request per prompt: the server batches them)`, 'unsupported_value');
    p = p[0] as string | number[];
    if (Array.isArray(p)) return checkedIds(p as number[], limits);
    if (typeof p !== 'string') throw badRequest('prompt', 'prompt must be a string, an array of token ids, or a one-element array of either');
  }
  if (p.length === 0) throw badRequest('prompt', 'prompt is empty');
  checkTextSize('prompt', Buffer.byteLength(p), limits);
  let ids;
  try {
    ids = await encoder.encode(p, true);
  } catch (e) {
    if (e instanceof TokenizeError && e.timedOut) throw badRequest('prompt', e.message);
    throw e;
  }
  if (ids.length === 0) throw badRequest('prompt', 'the prompt encodes to no tokens');
  return Int32Array.from(ids);
}

/**
 * The server's cap on one request's answer tokens (--max-tokens-limit): a generation's passes grow with its
 * canvas, and a pass is the work done between two deadline checks.
 */
export function checkMaxTokens(body: ChatBody & CompletionBody, cap: number): void {
  const asked = body.max_completion_tokens ?? body.max_tokens;
  if (present(asked) && asked > cap) {
    const param = present(body.max_completion_tokens) ? 'max_completion_tokens' : 'max_tokens';
    throw badRequest(param, `${param} ${asked} is more than this server allows per request (${cap}; its --max-tokens-limit); ask for at most ${cap}`, 'invalid_value');
  }
}

/** OpenAI settings this server cannot honour: refused unless neutral. */
function refuseUnsupported(body: ChatBody & CompletionBody, chat: boolean): void {
  const no = (param: string, why: string) => {
    throw badRequest(param, `${param}: ${why}`, 'unsupported_value');
  };
  if (present(body.n) && body.n !== 1) no('n', 'only one choice per request is supported (n = 1); send n requests, the server batches them');
  if (present(body.presence_penalty) && body.presence_penalty !== 0) no('presence_penalty', 'penalties are not supported by diffusion decoding here; send 0 or omit it');
  if (present(body.frequency_penalty) && body.frequency_penalty !== 0) no('frequency_penalty', 'penalties are not supported by diffusion decoding here; send 0 or omit it');
  if (present(body.logit_bias) && Object.keys(body.logit_bias).length > 0) no('logit_bias', 'logit bias is not supported; omit it');
  if (present(body.top_p) && body.top_p !== 1 && (body.temperature ?? 0) > 0) no('top_p', 'nucleus sampling is not supported; sampling uses the whole distribution (send top_p 1 or omit it)');
  if (chat) {
    if ((body as ChatBody).logprobs === true) no('logprobs', 'log probabilities are not reported; omit it or send false');
    if (present(body.top_logprobs) && body.top_logprobs > 0) no('top_logprobs', 'log probabilities are not reported; omit it');
    if (present(body.response_format) && body.response_format.type !== 'text') no('response_format', "only { type: 'text' } is supported");
    if (present(body.tools) && body.tools.length > 0) no('tools', 'tool calls are not supported');
    if (present(body.tool_choice) && body.tool_choice !== 'none' && body.tool_choice !== 'auto') no('tool_choice', 'tool calls are not supported');
  } else {
    if (present(body.logprobs) && (body.logprobs as unknown as number) > 0) no('logprobs', 'log probabilities are not reported; omit it or send 0');
    if (body.echo === true) no('echo', 'echo is not supported; omit it or send false');
    if (present(body.best_of) && body.best_of !== 1) no('best_of', 'only best_of = 1 is supported');
    if (present(body.suffix) && body.suffix !== '') no('suffix', 'suffix (insertion) is not supported');
  }
}

/** Each decoding choice as this API spells it: the body field a scheduler error is about (`param`), named in its message. */
export const BODY_FIELDS: FieldNames = {
  genLength: 'max_tokens', blockLength: 'block_length', steps: 'steps', rule: 'strategy', threshold: 'threshold', factor: 'factor',
  remasking: 'remasking', alg: 'alg', cache: 'cache', blockCache: 'block_cache', subBlockLength: 'sub_block_length',
  stepsPerBlock: 'steps_per_block', refreshEvery: 'refresh_every', earlyStop: 'early_stop', entropyBound: 'entropy_bound', suffixWindow: 'suffix_window',
  earlyCommit: 'early_commit', draftVerify: 'draft_verify', elasticCache: 'elastic_cache', temperature: 'temperature', seed: 'seed', engine: 'model',
};

/** A body's decoding fields as the scheduler's neutral choices (null and absent alike: not chosen). */
export function choicesOf(body: DecodingBody): DecodingChoices {
  const c: DecodingChoices = {};
  const set = <K extends keyof DecodingChoices>(k: K, v: DecodingChoices[K] | null | undefined) => {
    if (present(v)) c[k] = v;
  };
  set('rule', body.strategy); set('threshold', body.threshold); set('factor', body.factor); set('cache', body.cache);
  set('blockLength', body.block_length); set('steps', body.steps); set('subBlockLength', body.sub_block_length);
  set('blockCache', body.block_cache); set('stepsPerBlock', body.steps_per_block); set('remasking', body.remasking); set('alg', body.alg);
  set('refreshEvery', body.refresh_every); set('earlyStop', body.early_stop); set('temperature', body.temperature); set('seed', body.seed);
  set('entropyBound', body.entropy_bound); set('suffixWindow', body.suffix_window); set('earlyCommit', body.early_commit);
  set('draftVerify', body.draft_verify);
  set('elasticCache', body.elastic_cache);
  return c;
}

/** The scheduler's refusal as a 400 naming the body field (the prompt's field for prompt errors). */
export function fromScheduler(e: unknown, promptParam: string): unknown {
  if (!(e instanceof SchedulerConfigError)) return e;
  const param = e.field === 'prompt' ? promptParam : e.field ? BODY_FIELDS[e.field] ?? e.field : null;
  const code = e.problem === 'conflict' ? 'conflicting_values' : e.problem === 'unsupported' ? 'unsupported_value' : 'invalid_value';
  return badRequest(param, e.messageWith({ ...BODY_FIELDS, prompt: promptParam }), code);
}

/** The scheduler's plan for this body on this model (the family's recipe with the body's fields over it). */
function planOf(choices: DecodingChoices, target: EngineTarget, promptParam: string): DecodingPlan {
  try {
    return resolveDecoding(target.model, choices);
  } catch (e) {
    throw fromScheduler(e, promptParam);
  }
}

export interface JobLimits {
  defaults: RequestDefaults;
  /** The server's deadline for every request, ms (0: none). */
  timeoutMs: number;
}

/**
 * Builds and checks a Job. Throws ApiError (400) naming the field for anything the model, the engine or this
 * server cannot do.
 */
export function buildJob(body: ChatBody & CompletionBody, prompt: Int32Array, chat: boolean, target: EngineTarget, limits: JobLimits): Job {
  const promptParam = chat ? 'messages' : 'prompt';
  refuseUnsupported(body, chat);
  if (present(body.max_tokens) && present(body.max_completion_tokens) && body.max_tokens !== body.max_completion_tokens) {
    throw badRequest('max_completion_tokens', 'max_tokens and max_completion_tokens disagree; send one', 'conflicting_values');
  }
  const room = target.model.maxPositions - prompt.length; // positions left for the generation
  const asked = body.max_completion_tokens ?? body.max_tokens ?? null;
  if (room < 1) {
    throw badRequest(promptParam, `the prompt has ${prompt.length} tokens; the model takes at most ${target.model.maxPositions} positions, prompt and answer together`, 'context_length_exceeded');
  }
  const choices = choicesOf(body);
  // Sampling without a seed draws a fresh one, as OpenAI's API samples afresh each call; greedy needs none.
  if (choices.seed === undefined && (choices.temperature ?? 0) > 0) choices.seed = randomInt(0, 2 ** 32 - 1);
  const block = target.model.blockSize !== undefined;
  let maxTokens: number;
  if (block) {
    // max_tokens is the cap on new tokens (DESIGN §8): no rounding.
    maxTokens = asked ?? Math.min(limits.defaults.maxTokens, room);
    if (maxTokens > room) {
      const param = present(body.max_completion_tokens) ? 'max_completion_tokens' : 'max_tokens';
      throw badRequest(param, `prompt (${prompt.length} tokens) + ${maxTokens} answer tokens exceed the model's ${target.model.maxPositions} positions; shorten the prompt or lower max_tokens`, 'context_length_exceeded');
    }
    choices.genLength = maxTokens;
  } else {
    let blockLength = body.block_length ?? limits.defaults.blockLength;
    if (asked !== null) {
      maxTokens = asked;
    } else {
      // Without a max_tokens the default shrinks to the whole blocks that fit after the prompt; when not even one
      // default block fits, to one block of what is left.
      maxTokens = Math.min(limits.defaults.maxTokens, Math.floor(room / blockLength) * blockLength);
      if (maxTokens === 0 && body.block_length == null) maxTokens = blockLength = room;
      if (maxTokens === 0) {
        throw badRequest(promptParam, `the prompt (${prompt.length} tokens) leaves ${room} of the model's ${target.model.maxPositions} positions, less than one block of ${blockLength}; shorten the prompt or lower block_length`, 'context_length_exceeded');
      }
    }
    // The canvas is whole blocks (a dLLM decodes whole blocks); the answer is cut at max_tokens.
    const genLength = Math.ceil(maxTokens / blockLength) * blockLength;
    if (genLength > room) {
      const param = asked !== null ? (present(body.max_completion_tokens) ? 'max_completion_tokens' : 'max_tokens') : promptParam;
      throw badRequest(param,
        `prompt (${prompt.length} tokens) + ${maxTokens} answer tokens (${genLength} positions: whole blocks of ${blockLength}) exceed the model's ${target.model.maxPositions} positions; shorten the prompt or lower max_tokens`,
        'context_length_exceeded');
    }
    choices.genLength = genLength;
    choices.blockLength = blockLength;
  }
  const plan = planOf(choices, target, promptParam);
  const request = requestOf(plan, prompt);
  try {
    checkGenerationRequest(request, target);
  } catch (e) {
    throw fromScheduler(e, promptParam);
  }
  return finishJob(body, prompt, promptParam, request, maxTokens, limits, plan.description);
}

function finishJob(
  body: ChatBody & CompletionBody, prompt: Int32Array, promptParam: 'messages' | 'prompt', request: GenerationRequest, maxTokens: number,
  limits: JobLimits, decoding: string,
): Job {
  const stops = present(body.stop) ? (typeof body.stop === 'string' ? [body.stop] : body.stop) : [];
  let timeoutMs = limits.timeoutMs;
  const asks = body.fast_dllm?.timeout;
  if (asks !== undefined) timeoutMs = timeoutMs > 0 ? Math.min(timeoutMs, asks * 1000) : asks * 1000;
  return {
    prompt, promptParam, request, maxTokens, stops,
    stream: body.stream === true,
    includeUsage: body.stream_options?.include_usage === true,
    canvas: body.fast_dllm?.canvas === true,
    timeoutMs,
    decoding,
  };
}

