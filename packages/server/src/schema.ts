/**
 * JSON schemas of the request bodies (Fastify validates each body with them before a route runs) and the body
 * types they admit. Unknown fields are refused (OpenAI does the same), so a typo such as `max_token` is a 400
 * rather than a setting silently ignored. OpenAI fields this server cannot honour are admitted with their types
 * and refused in code when set to a value other than their neutral one (request.ts says which).
 */

const nullable = (type: string | string[], more: Record<string, unknown> = {}) => ({
  type: [...(Array.isArray(type) ? type : [type]), 'null'],
  ...more,
});

/** Limits that keep a malformed request from costing anything; real bounds come from the model. */
export const LIMITS = {
  maxTokens: 1_000_000,
  stopStrings: 16,
  stopLength: 256,
  messages: 4096,
  steps: 1_000_000,
  blockLength: 1_000_000,
} as const;

/** Decoding settings shared by both endpoints (OpenAI's and this server's extension fields). */
const decodingProperties = {
  model: { type: 'string', minLength: 1, maxLength: 512 },
  max_tokens: nullable('integer', { minimum: 1, maximum: LIMITS.maxTokens }),
  temperature: nullable('number', { minimum: 0, maximum: 2 }),
  seed: nullable('integer', { minimum: 0, maximum: 0xffffffff }),
  stop: nullable(['string', 'array'], {
    minLength: 1, maxLength: LIMITS.stopLength, maxItems: LIMITS.stopStrings,
    items: { type: 'string', minLength: 1, maxLength: LIMITS.stopLength },
  }),
  n: nullable('integer', { minimum: 1, maximum: 128 }),
  stream: nullable('boolean'),
  stream_options: nullable('object', {
    additionalProperties: false,
    properties: { include_usage: { type: 'boolean' }, include_obfuscation: { type: 'boolean' } },
  }),
  top_p: nullable('number', { minimum: 0, maximum: 1 }),
  presence_penalty: nullable('number', { minimum: -2, maximum: 2 }),
  frequency_penalty: nullable('number', { minimum: -2, maximum: 2 }),
  logit_bias: nullable('object', { additionalProperties: { type: 'number', minimum: -100, maximum: 100 } }),
  user: nullable('string', { maxLength: 512 }),
  // Extensions: the Fast-dLLM decoding settings (defaults: the model family's recipe).
  strategy: nullable('string', { enum: ['fixed', 'threshold', 'factor', 'entropy_bound', null] }),
  threshold: nullable('number', { exclusiveMinimum: 0, maximum: 1 }),
  factor: nullable('number', { exclusiveMinimum: 0, maximum: 1e6 }),
  cache: nullable('string', { enum: ['none', 'prefix', 'dual', null] }),
  block_length: nullable('integer', { minimum: 1, maximum: LIMITS.blockLength }),
  steps: nullable('integer', { minimum: 1, maximum: LIMITS.steps }),
  // Block-diffusion models' own settings (DESIGN §8): Fast-dLLM v2's sub-blocks and block cache, SDAR's steps and rule.
  sub_block_length: nullable('integer', { minimum: 1, maximum: LIMITS.blockLength }),
  block_cache: nullable('boolean'),
  steps_per_block: nullable('integer', { minimum: 1, maximum: LIMITS.steps }),
  // LLaDA's fixed-schedule ranking or SDAR's rule; Dream's confidence; LLaDA/Dream's cache refresh and early stop.
  remasking: nullable('string', { enum: ['low_confidence', 'random', 'low_confidence_dynamic', 'low_confidence_static', null] }),
  alg: nullable('string', { enum: ['entropy', 'topk_margin', 'maskgit_plus', 'origin', null] }),
  refresh_every: nullable('integer', { minimum: 1, maximum: LIMITS.steps }),
  early_stop: nullable('boolean'),
  // DESIGN §16's policies (LLaDA/Dream): EB-Sampler's bound, the suffix window, Prophet's early commit, FreeDave's
  // canvases per verify pass, Elastic-Cache's gamma (the scheduler checks their ranges and caches: its refusal names
  // the field).
  entropy_bound: nullable('number', { minimum: 0, maximum: 1e6 }),
  suffix_window: nullable('integer', { minimum: 0, maximum: LIMITS.steps }),
  early_commit: nullable('boolean'),
  draft_verify: nullable('integer', { minimum: 0, maximum: 1024 }),
  elastic_cache: nullable('number'),
  fast_dllm: nullable('object', {
    additionalProperties: false,
    properties: {
      canvas: { type: 'boolean' },
      timeout: { type: 'number', exclusiveMinimum: 0, maximum: 1e7 },
    },
  }),
} as const;

const textPart = {
  type: 'object',
  required: ['type', 'text'],
  additionalProperties: false,
  properties: { type: { type: 'string', enum: ['text'] }, text: { type: 'string' } },
} as const;

const message = {
  type: 'object',
  required: ['role', 'content'],
  additionalProperties: false,
  properties: {
    role: { type: 'string', enum: ['system', 'developer', 'user', 'assistant'] },
    content: { type: ['string', 'array'], maxItems: 1024, items: textPart },
    name: { type: 'string', maxLength: 256 },
  },
} as const;

export const chatSchema = {
  type: 'object',
  required: ['model', 'messages'],
  additionalProperties: false,
  properties: {
    ...decodingProperties,
    messages: { type: 'array', minItems: 1, maxItems: LIMITS.messages, items: message },
    max_completion_tokens: nullable('integer', { minimum: 1, maximum: LIMITS.maxTokens }),
    logprobs: nullable('boolean'),
    top_logprobs: nullable('integer', { minimum: 0, maximum: 20 }),
    response_format: nullable('object', {
      required: ['type'],
      properties: { type: { type: 'string', enum: ['text', 'json_object', 'json_schema'] } },
    }),
    tools: nullable('array', { items: { type: 'object' } }),
    tool_choice: nullable(['string', 'object']),
    parallel_tool_calls: nullable('boolean'),
    store: nullable('boolean'),
    metadata: nullable('object', { additionalProperties: { type: 'string' } }),
    service_tier: nullable('string'),
  },
} as const;

export const completionSchema = {
  type: 'object',
  required: ['model', 'prompt'],
  additionalProperties: false,
  properties: {
    ...decodingProperties,
    // A string, token ids, or a list of either; only one prompt per request is taken (request.ts).
    prompt: { type: ['string', 'array'], minItems: 1, items: { type: ['string', 'integer', 'array'], items: { type: 'integer' } } },
    logprobs: nullable('integer', { minimum: 0, maximum: 5 }),
    echo: nullable('boolean'),
    best_of: nullable('integer', { minimum: 1, maximum: 128 }),
    suffix: nullable('string'),
  },
} as const;

type Opt<T> = T | null | undefined;

export interface TextPart {
  type: 'text';
  text: string;
}

export interface ChatMessageBody {
  role: 'system' | 'developer' | 'user' | 'assistant';
  content: string | TextPart[];
  name?: string;
}

/** The fields both endpoints share, as the schema admits them. */
export interface DecodingBody {
  model: string;
  max_tokens?: Opt<number>;
  temperature?: Opt<number>;
  seed?: Opt<number>;
  stop?: Opt<string | string[]>;
  n?: Opt<number>;
  stream?: Opt<boolean>;
  stream_options?: Opt<{ include_usage?: boolean; include_obfuscation?: boolean }>;
  top_p?: Opt<number>;
  presence_penalty?: Opt<number>;
  frequency_penalty?: Opt<number>;
  logit_bias?: Opt<Record<string, number>>;
  user?: Opt<string>;
  strategy?: Opt<'fixed' | 'threshold' | 'factor' | 'entropy_bound'>;
  threshold?: Opt<number>;
  factor?: Opt<number>;
  cache?: Opt<'none' | 'prefix' | 'dual'>;
  block_length?: Opt<number>;
  steps?: Opt<number>;
  sub_block_length?: Opt<number>;
  block_cache?: Opt<boolean>;
  steps_per_block?: Opt<number>;
  remasking?: Opt<'low_confidence' | 'random' | 'low_confidence_dynamic' | 'low_confidence_static'>;
  alg?: Opt<'entropy' | 'topk_margin' | 'maskgit_plus' | 'origin'>;
  refresh_every?: Opt<number>;
  /** LLaDA/Dream: false decodes every position (the paper's NFE); default on (it cannot change the answer). */
  early_stop?: Opt<boolean>;
  entropy_bound?: Opt<number>;
  suffix_window?: Opt<number>;
  early_commit?: Opt<boolean>;
  draft_verify?: Opt<number>;
  /** LLaDA/Dream with the dual cache: Elastic-Cache's gamma in (0, 1] (DESIGN §16). */
  elastic_cache?: Opt<number>;
  fast_dllm?: Opt<{ canvas?: boolean; timeout?: number }>;
}

export interface ChatBody extends DecodingBody {
  messages: ChatMessageBody[];
  max_completion_tokens?: Opt<number>;
  logprobs?: Opt<boolean>;
  top_logprobs?: Opt<number>;
  response_format?: Opt<{ type: 'text' | 'json_object' | 'json_schema' }>;
  tools?: Opt<object[]>;
  tool_choice?: Opt<string | object>;
  parallel_tool_calls?: Opt<boolean>;
  store?: Opt<boolean>;
  metadata?: Opt<Record<string, string>>;
  service_tier?: Opt<string>;
}

export interface CompletionBody extends DecodingBody {
  prompt: string | (string | number | number[])[];
  logprobs?: Opt<number>;
  echo?: Opt<boolean>;
  best_of?: Opt<number>;
  suffix?: Opt<string>;
}
