/**
 * A request body → the scheduler's GenerationRequest and what the response needs (DESIGN §2–4, §9).
 *
 * - `max_tokens` (or `max_completion_tokens`) caps the answer's tokens. The canvas gets `max_tokens` rounded up
 *   to a multiple of the block length (a dLLM decodes whole blocks); the answer is cut at `max_tokens` tokens
 *   and at the first stop token or stop string, so the rounding never shows in the text. Absent: the server's
 *   default, lowered to what the model's positions leave after the prompt.
 * - Decoding defaults are the model family's Fast-dLLM recipe (scheduler `defaultRecipe`); `strategy`,
 *   `threshold`, `factor`, `cache`, `block_length` and `steps` override them.
 * - Block-diffusion models (Fast-dLLM v2, SDAR; DESIGN §8) decode in their own blocks: `max_tokens` is the cap on new
 *   tokens (no rounding), the recipe is the family's, and their own fields override it: `threshold` (both),
 *   `sub_block_length` and `block_cache` (v2), `steps_per_block` and `remasking` (SDAR). LLaDA/Dream's fields
 *   (`strategy`, `factor`, `cache`, `block_length`, `steps`) are refused for them, and theirs for LLaDA/Dream.
 * - The scheduler's `checkGenerationRequest` has the last word, so the CLI and the server refuse the same things.
 */
import { randomInt } from 'node:crypto';
import {
  SchedulerConfigError, checkGenerationRequest, defaultRecipe, describeDecoding,
  type EngineTarget, type GenerationRequest, type Strategy,
} from '@fast-dllm/scheduler';
import type { ChatMessage, TextTokenizer } from '@fast-dllm/model';
import { badRequest } from './errors.js';
import type { ChatBody, CompletionBody, DecodingBody } from './schema.js';

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

/** Chat messages → prompt ids through the model's chat template (one assistant turn to be generated). */
export function chatPrompt(tokenizer: TextTokenizer, body: ChatBody): Int32Array {
  const messages: ChatMessage[] = body.messages.map((m) => ({
    // Templates know 'system'; OpenAI's newer 'developer' role is the same instruction channel.
    role: m.role === 'developer' ? 'system' : m.role,
    content: typeof m.content === 'string' ? m.content : m.content.map((p) => p.text).join('\n'),
  }));
  let text: string;
  try {
    text = tokenizer.applyChatTemplate(messages, { addGenerationPrompt: true });
  } catch (e) {
    throw badRequest('messages', `the model's chat template refused these messages: ${(e as Error).message.split('\n')[0]}`);
  }
  const ids = tokenizer.encode(text, { addSpecial: false });
  if (ids.length === 0) throw badRequest('messages', 'the messages encode to no tokens');
  return Int32Array.from(ids);
}

/** A completion prompt → ids: text is encoded with the tokenizer's special tokens (BOS), ids are taken as they are. */
export function completionPrompt(tokenizer: TextTokenizer, body: CompletionBody): Int32Array {
  let p: CompletionBody['prompt'] | string | number[] = body.prompt;
  if (Array.isArray(p)) {
    if (p.every((x) => typeof x === 'number')) {
      return Int32Array.from(p as number[]);
    }
    if (p.length !== 1) throw badRequest('prompt', `only one prompt per request is supported; got ${p.length} (send one request per prompt: the server batches them)`, 'unsupported_value');
    p = p[0] as string | number[];
    if (Array.isArray(p)) return Int32Array.from(p);
    if (typeof p !== 'string') throw badRequest('prompt', 'prompt must be a string, an array of token ids, or a one-element array of either');
  }
  if (p.length === 0) throw badRequest('prompt', 'prompt is empty');
  const ids = tokenizer.encode(p, { addSpecial: true });
  if (ids.length === 0) throw badRequest('prompt', 'the prompt encodes to no tokens');
  return Int32Array.from(ids);
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

/** The request's strategy: its own fields, else the recipe's. `threshold` / `factor` imply their strategy. */
function strategyOf(body: DecodingBody, target: EngineTarget): Strategy {
  const recipe = defaultRecipe(target.model);
  const kind = body.strategy ?? (present(body.threshold) ? 'threshold' : present(body.factor) ? 'factor' : null);
  if (present(body.threshold) && present(body.factor)) throw badRequest('factor', 'threshold and factor are two different rules; send one', 'conflicting_values');
  if (present(body.threshold) && kind !== 'threshold') throw badRequest('threshold', `threshold applies to strategy 'threshold', not '${kind}'`, 'conflicting_values');
  if (present(body.factor) && kind !== 'factor') throw badRequest('factor', `factor applies to strategy 'factor', not '${kind}'`, 'conflicting_values');
  const dream = target.model.architecture === 'dream';
  switch (kind) {
    case null:
      return recipe.strategy;
    case 'threshold': {
      const tau = body.threshold ?? undefined;
      // Dream's Fast-dLLM rule thresholds its maskgit_plus confidence (the top-1 probability).
      return dream ? { kind: 'dream', alg: 'maskgit_plus', threshold: tau ?? 0.9 } : { kind: 'threshold', ...(tau !== undefined ? { threshold: tau } : {}) };
    }
    case 'factor':
      return { kind: 'factor', ...(present(body.factor) ? { factor: body.factor } : {}) };
    case 'fixed':
      return dream ? { kind: 'dream', alg: 'maskgit_plus' } : { kind: 'fixed', remasking: 'low_confidence' };
  }
}

/** The fields of each family that the other refuses. */
const MASKED_ONLY = ['strategy', 'factor', 'cache', 'block_length', 'steps'] as const;
const V2_ONLY = ['sub_block_length', 'block_cache'] as const;
const SDAR_ONLY = ['steps_per_block', 'remasking'] as const;

/** Refuses the fields that do not apply to this model's family, naming the first one. */
function refuseOtherFamily(body: DecodingBody, arch: string): void {
  // A2D BD3LM takes SDAR's fields (DESIGN §15).
  const block = arch === 'fast_dllm_v2' || arch === 'sdar' || arch === 'a2d_bd3lm';
  const wrong: readonly (keyof DecodingBody)[] = block ? [...MASKED_ONLY, ...(arch !== 'fast_dllm_v2' ? V2_ONLY : SDAR_ONLY)] : [...V2_ONLY, ...SDAR_ONLY];
  for (const f of wrong) {
    if (!present(body[f])) continue;
    const whose = (MASKED_ONLY as readonly string[]).includes(f) ? 'LLaDA/Dream' : (V2_ONLY as readonly string[]).includes(f) ? 'Fast-dLLM v2' : 'SDAR';
    throw badRequest(f, `${f} is a ${whose} setting; this model is a ${arch} model`, 'unsupported_value');
  }
}

/** A block-diffusion model's strategy: its recipe, with the request's own fields over it. */
function blockStrategyOf(body: DecodingBody, target: EngineTarget): Strategy {
  const recipe = defaultRecipe(target.model).strategy;
  if (recipe.kind === 'fast_dllm_v2') {
    return {
      ...recipe,
      ...(present(body.threshold) ? { threshold: body.threshold } : {}),
      ...(present(body.sub_block_length) ? { subBlockLength: body.sub_block_length } : {}),
      ...(present(body.block_cache) ? { blockCache: body.block_cache } : {}),
    };
  }
  if (recipe.kind === 'sdar') {
    const remasking = body.remasking ?? recipe.remasking;
    if (present(body.threshold) && remasking !== 'low_confidence_dynamic') {
      throw badRequest('threshold', 'threshold applies to SDAR\'s low_confidence_dynamic rule, not low_confidence_static', 'conflicting_values');
    }
    const { threshold: recipeThreshold, ...rest } = recipe;
    return {
      ...rest, remasking,
      ...(present(body.steps_per_block) ? { stepsPerBlock: body.steps_per_block } : {}),
      ...(remasking === 'low_confidence_dynamic' ? { threshold: body.threshold ?? recipeThreshold } : {}),
    };
  }
  return recipe;
}

/** Which body field a SchedulerConfigError is about, from its message. */
function paramOfSchedulerError(message: string, promptParam: string): string | null {
  const rules: [RegExp, string][] = [
    [/^genLength|genLength \(/, 'max_tokens'], [/^blockLength/, 'block_length'], [/^steps/, 'steps'],
    [/subBlockLength|sub-block/, 'sub_block_length'], [/stepsPerBlock|steps per block/, 'steps_per_block'],
    [/threshold/, 'threshold'], [/^factor/, 'factor'], [/^temperature|temperature sampling/, 'temperature'],
    [/^seed/, 'seed'], [/cache mode|forward mode/, 'cache'], [/prompt/, promptParam],
  ];
  return rules.find(([re]) => re.test(message))?.[1] ?? null;
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
  refuseOtherFamily(body, target.model.architecture);
  if (target.model.blockSize !== undefined) return buildBlockJob(body, prompt, promptParam, target, limits, room, asked);
  let blockLength = body.block_length ?? limits.defaults.blockLength;
  let maxTokens: number;
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
  const genLength = Math.ceil(maxTokens / blockLength) * blockLength;
  if (genLength > room) {
    const param = asked !== null ? (present(body.max_completion_tokens) ? 'max_completion_tokens' : 'max_tokens') : promptParam;
    throw badRequest(param,
      `prompt (${prompt.length} tokens) + ${maxTokens} answer tokens (${genLength} positions: whole blocks of ${blockLength}) exceed the model's ${target.model.maxPositions} positions; shorten the prompt or lower max_tokens`,
      'context_length_exceeded');
  }
  const strategy = strategyOf(body, target);
  const temperature = body.temperature ?? 0;
  // Sampling without a seed draws a fresh one, as OpenAI's API samples afresh each call; greedy needs none.
  const seed = body.seed ?? (temperature > 0 ? randomInt(0, 2 ** 32 - 1) : 0);
  const cache = body.cache ?? defaultRecipe(target.model).cache;
  const request: GenerationRequest = {
    prompt, genLength, blockLength, steps: body.steps ?? genLength, strategy, cache, temperature, seed, earlyStop: false,
  };
  try {
    checkGenerationRequest(request, target);
  } catch (e) {
    if (e instanceof SchedulerConfigError) throw badRequest(paramOfSchedulerError(e.message, promptParam), e.message);
    throw e;
  }
  return finishJob(body, prompt, promptParam, request, maxTokens, limits, describeDecoding(strategy, cache));
}

/** A block-diffusion model's job: max_tokens is the cap on new tokens; the family's strategy (DESIGN §8). */
function buildBlockJob(
  body: ChatBody & CompletionBody, prompt: Int32Array, promptParam: 'messages' | 'prompt', target: EngineTarget, limits: JobLimits,
  room: number, asked: number | null,
): Job {
  const maxTokens = asked ?? Math.min(limits.defaults.maxTokens, room);
  if (maxTokens > room) {
    const param = present(body.max_completion_tokens) ? 'max_completion_tokens' : 'max_tokens';
    throw badRequest(param, `prompt (${prompt.length} tokens) + ${maxTokens} answer tokens exceed the model's ${target.model.maxPositions} positions; shorten the prompt or lower max_tokens`, 'context_length_exceeded');
  }
  const strategy = blockStrategyOf(body, target);
  const temperature = body.temperature ?? 0;
  const seed = body.seed ?? (temperature > 0 ? randomInt(0, 2 ** 32 - 1) : 0);
  const request: GenerationRequest = { prompt, genLength: maxTokens, strategy, temperature, seed };
  try {
    checkGenerationRequest(request, target);
  } catch (e) {
    if (e instanceof SchedulerConfigError) throw badRequest(paramOfSchedulerError(e.message, promptParam), e.message);
    throw e;
  }
  return finishJob(body, prompt, promptParam, request, maxTokens, limits, describeDecoding(strategy, 'none'));
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

