/**
 * The OpenAI-compatible HTTP server: Fastify routes over one engine and one BatchDriver (continuous batching,
 * DESIGN §7). Requests join and leave the batch between forward passes; each answer is the one the request gets
 * alone. Streaming sends committed text only (DESIGN §9) as OpenAI chunks over server-sent events.
 *
 *   POST /v1/chat/completions   POST /v1/completions   GET /v1/models   GET /v1/models/:id
 *   GET /health (liveness)      GET /health/ready (readiness)           GET /metrics (Prometheus)
 *
 * The server holds no state between requests. It owns the driver, not the engine: the caller disposes the engine
 * after `fastDllm.shutdown()`.
 */
import { createServer as createHttpServer } from 'node:http';
import { isIP } from 'node:net';
import { basename } from 'node:path';
import { createHash, randomUUID, timingSafeEqual } from 'node:crypto';
import Fastify, { type FastifyInstance, type FastifyReply, type FastifyRequest, type FastifyServerOptions } from 'fastify';
import { fastifySSE } from '@fastify/sse';
import { fastifyCors } from '@fastify/cors';
import { BatchDriver, type Engine } from '@fast-dllm/scheduler';
import type { ModelDescription, TextTokenizer } from '@fast-dllm/model';
import { ApiError, toApiError } from './errors.js';
import { ServerMetrics, type Endpoint, type Outcome } from './metrics.js';
import { buildJob, chatPrompt, checkMaxTokens, completionPrompt, type Job, type PromptLimits, type RequestDefaults } from './request.js';
import { TokenizerThread, inThread, type PromptEncoder } from './tokenize.js';
import { JobError, runJob, shutdownError, type JobContext, type JobResult, type JobUpdate } from './job.js';
import { chatSchema, completionSchema, type ChatBody, type CompletionBody } from './schema.js';

export interface ServedModel {
  /** The name clients send as `model` (default: the model directory's name). */
  id?: string;
  description: ModelDescription;
  tokenizer: TextTokenizer;
  /** Model directory, for the default id and /v1/models. */
  dir?: string;
}

export interface ServerOptions {
  /** The engine, or a promise of it: while it loads, readiness is false and completions answer 503. */
  engine: Engine | Promise<Engine>;
  model: ServedModel;
  /** Most sequences per forward pass (default: the driver's, min(engine maxBatch, 8)). */
  batch?: number;
  /** Most requests waiting for a place in the batch; more get 429 with Retry-After (default 256). */
  maxQueue?: number;
  /** When set, /v1/* needs `Authorization: Bearer <apiKey>` (401 otherwise). Health and metrics stay open. */
  apiKey?: string;
  /** Deadline of every request from its arrival, ms; 0 for none (default 600 000). A request may ask for less. */
  requestTimeoutMs?: number;
  /** Answer tokens and block length when a request names none (default 128 and 32). */
  defaults?: Partial<RequestDefaults>;
  /** Largest request body, bytes (default 1 MiB). */
  bodyLimit?: number;
  /** Origins allowed to call from a browser (CORS), e.g. ['http://localhost:5173'] or ['*']; none by default. */
  corsOrigins?: string[];
  /** Most answer tokens one request may ask for; more is a 400 (default 2048). */
  maxTokensLimit?: number;
  /**
   * Host-header names accepted besides IP literals and localhost (DNS-rebinding defence: a web page that rebinds
   * its own name to this address still sends that name). ['*'] accepts any. Default: none.
   */
  allowedHosts?: string[];
  /** A client must send its headers within this many ms, and the whole request within bodyTimeoutMs (defaults 10 000 and 30 000). */
  headersTimeoutMs?: number;
  bodyTimeoutMs?: number;
  /** Tokenize prompts in a worker thread (default: when the model has a directory to load the tokenizer from). */
  tokenizerThread?: boolean;
  /** A prompt still tokenizing after this many ms is refused and the thread replaced (default 30 000). */
  tokenizeTimeoutMs?: number;
  /** Fastify's logger option (default: off). */
  logger?: FastifyServerOptions['logger'];
  /** Export process metrics (memory, heap, event-loop lag) on /metrics (default true). */
  processMetrics?: boolean;
}

export type ServerState = 'loading' | 'ready' | 'draining' | 'closed' | 'failed';

export interface ServerControl {
  readonly state: ServerState;
  readonly modelId: string;
  readonly metrics: ServerMetrics;
  /** Resolves with the engine once loaded (rejects when loading failed). */
  readonly engineReady: Promise<Engine>;
  /** The batch driver, once the engine is loaded. */
  driver(): BatchDriver | undefined;
  /**
   * Graceful stop: readiness turns false and new requests get 503; queued and active requests may finish within
   * `graceMs`, then the rest are cancelled (their clients get a 503 error); then the HTTP server closes.
   * Resolves with how many requests had to be cancelled.
   */
  shutdown(opts?: { graceMs?: number }): Promise<{ cancelled: number }>;
}

export type FastDllmServer = FastifyInstance & { fastDllm: ServerControl };

const DEFAULTS = { maxQueue: 256, requestTimeoutMs: 600_000, maxTokens: 128, blockLength: 32, bodyLimit: 1 << 20, maxTokensLimit: 2048, headersTimeoutMs: 10_000, bodyTimeoutMs: 30_000 };

/** sha256 of a key: equal-length digests for timingSafeEqual, whatever the lengths of the keys. */
const digest = (s: string) => createHash('sha256').update(s).digest();

export async function createServer(opts: ServerOptions): Promise<FastDllmServer> {
  const maxQueue = opts.maxQueue ?? DEFAULTS.maxQueue;
  const timeoutMs = opts.requestTimeoutMs ?? DEFAULTS.requestTimeoutMs;
  const defaults: RequestDefaults = { maxTokens: opts.defaults?.maxTokens ?? DEFAULTS.maxTokens, blockLength: opts.defaults?.blockLength ?? DEFAULTS.blockLength };
  const maxTokensLimit = opts.maxTokensLimit ?? DEFAULTS.maxTokensLimit;
  const headersTimeoutMs = opts.headersTimeoutMs ?? DEFAULTS.headersTimeoutMs;
  const bodyTimeoutMs = opts.bodyTimeoutMs ?? DEFAULTS.bodyTimeoutMs;
  for (const [name, v, min] of [['maxQueue', maxQueue, 0], ['requestTimeoutMs', timeoutMs, 0], ['defaults.maxTokens', defaults.maxTokens, 1], ['defaults.blockLength', defaults.blockLength, 1],
    ['maxTokensLimit', maxTokensLimit, 1], ['headersTimeoutMs', headersTimeoutMs, 1], ['bodyTimeoutMs', bodyTimeoutMs, 1]] as const) {
    if (!Number.isInteger(v) || v < min) throw new Error(`createServer: ${name} must be an integer >= ${min}; got ${v}`);
  }
  if (defaults.maxTokens > maxTokensLimit) throw new Error(`createServer: defaults.maxTokens (${defaults.maxTokens}) is above maxTokensLimit (${maxTokensLimit})`);
  const hostAllowed = hostCheck(opts.allowedHosts ?? []);
  if (opts.apiKey !== undefined && opts.apiKey.length === 0) throw new Error('createServer: apiKey is empty; omit it to serve without a key');
  const tokenizer = opts.model.tokenizer;
  const promptLimits: PromptLimits = { maxPositions: opts.model.description.maxPositions, vocabSize: opts.model.description.vocabSize, maxTokenBytes: tokenizer.maxTokenBytes };
  const thread = opts.model.dir !== undefined && opts.tokenizerThread !== false ? new TokenizerThread(opts.model.dir, opts.model.description.vocabSize, opts.tokenizeTimeoutMs ?? 30_000) : undefined;
  if (thread) await thread.start();
  const encoder: PromptEncoder = thread ?? inThread(tokenizer);
  const modelId = opts.model.id ?? (opts.model.dir ? basename(opts.model.dir) : 'model');
  const created = Math.floor(Date.now() / 1000);

  let state: ServerState = 'loading';
  let engine: Engine | undefined;
  let driver: BatchDriver | undefined;
  let requestSecondsAvg = 1; // moving average of answered requests' seconds, for Retry-After
  const metrics = new ServerMetrics(
    { queued: () => driver?.queued ?? 0, active: () => driver?.active ?? 0, ready: () => state === 'ready' },
    { processMetrics: opts.processMetrics ?? true },
  );

  const start = (e: Engine) => {
    engine = e;
    driver = new BatchDriver(e, { maxBatch: opts.batch, maxQueue, onPass: (p) => metrics.pass(p) });
    if (state === 'loading') state = 'ready';
    return e;
  };
  let engineReady: Promise<Engine>;
  if (opts.engine instanceof Promise) {
    engineReady = opts.engine.then(start, (err: unknown) => {
      if (state === 'loading') state = 'failed';
      throw err;
    });
    engineReady.catch(() => undefined); // observed by the caller through fastDllm.engineReady
  } else {
    engineReady = Promise.resolve(start(opts.engine)); // a bad batch size throws here, from createServer
  }

  const tokenTexts = new Map<number, string>();
  const ctx = (): JobContext => ({
    driver: driver!,
    engine: engine!,
    metrics,
    decode: (ids) => (ids.length === 0 ? '' : tokenizer.decode(ids, { skipSpecial: true })),
    tokenText: (id) => {
      let t = tokenTexts.get(id);
      if (t === undefined) tokenTexts.set(id, (t = tokenizer.decode([id], { skipSpecial: false })));
      return t;
    },
  });

  const app = Fastify({
    logger: opts.logger ?? false,
    // A client that stalls its headers or its body is dropped (checked every second) instead of holding a socket.
    serverFactory: (handler) => createHttpServer({ headersTimeout: headersTimeoutMs, requestTimeout: Math.max(bodyTimeoutMs, headersTimeoutMs), connectionsCheckingInterval: 1000 }, handler),
    bodyLimit: opts.bodyLimit ?? DEFAULTS.bodyLimit,
    // Validate as written: no type coercion, no silently dropped fields, no defaults filled in.
    ajv: { customOptions: { coerceTypes: false, removeAdditional: false, useDefaults: false, allErrors: false, allowUnionTypes: true } },
  });
  app.removeContentTypeParser('text/plain'); // bodies are JSON; anything else is a 415
  await app.register(fastifySSE, { heartbeatInterval: 15_000, serializer: (d: unknown) => (typeof d === 'string' ? d : JSON.stringify(d)) });
  if (opts.corsOrigins?.length) {
    await app.register(fastifyCors, { origin: opts.corsOrigins.includes('*') ? '*' : opts.corsOrigins, methods: ['GET', 'POST', 'OPTIONS'] });
  }

  const endpointOf = (req: FastifyRequest): Endpoint | null =>
    req.routeOptions.url === '/v1/chat/completions' ? 'chat' : req.routeOptions.url === '/v1/completions' ? 'completions' : null;
  const count = (req: FastifyRequest, outcome: Outcome) => {
    const endpoint = endpointOf(req);
    if (endpoint) metrics.requests.inc({ endpoint, outcome });
  };

  app.setErrorHandler((err, req, reply) => {
    const api = toApiError(err);
    if (api.status >= 500) req.log.error({ err }, 'request failed');
    count(req, outcomeOf(api));
    return reply.code(api.status).headers(api.headers).send(api.body());
  });
  app.setNotFoundHandler((req, reply) => {
    const api = new ApiError(404, `no route ${req.method} ${req.url.split('?')[0]}; this server has POST /v1/chat/completions, POST /v1/completions, GET /v1/models, /health, /health/ready, /metrics`, 'not_found_error', null, 'not_found');
    return reply.code(404).send(api.body());
  });

  app.addHook('onRequest', async (req) => {
    const host = req.headers.host;
    if (host !== undefined && !hostAllowed(host)) {
      throw new ApiError(403, `Host '${host}' is not allowed here (DNS-rebinding protection); start the server with --allowed-hosts ${hostName(host)} to accept it`, 'permission_error', null, 'host_not_allowed');
    }
  });
  if (opts.apiKey !== undefined) {
    const want = digest(opts.apiKey);
    app.addHook('onRequest', async (req) => {
      // The matched route, not the raw URL: '/%761/models' routes to /v1/models too.
      if (!req.routeOptions.url?.startsWith('/v1/') || req.method === 'OPTIONS') return;
      const m = /^Bearer\s+(.+)$/i.exec(req.headers.authorization ?? '');
      if (!m || !timingSafeEqual(digest(m[1].trim()), want)) {
        throw new ApiError(401, m ? 'invalid API key' : 'missing API key: send the header Authorization: Bearer <key>', 'authentication_error', null, 'invalid_api_key', { 'WWW-Authenticate': 'Bearer' });
      }
    });
  }
  app.addHook('onResponse', async (req, reply) => {
    const endpoint = endpointOf(req);
    if (endpoint) metrics.requestSeconds.observe({ endpoint }, reply.elapsedTime / 1000);
  });

  app.get('/health', async (_req, reply) => reply.code(state === 'failed' ? 503 : 200).send({ status: state }));
  app.get('/health/ready', async (_req, reply) => reply.code(state === 'ready' ? 200 : 503).send({ status: state }));
  app.get('/metrics', async (_req, reply) => reply.type(metrics.contentType).send(await metrics.text()));

  const modelCard = () => ({
    id: modelId, object: 'model', created, owned_by: 'fast-dllm',
    fast_dllm: {
      architecture: opts.model.description.architecture, max_positions: opts.model.description.maxPositions,
      // Block-diffusion models' block size (null for LLaDA/Dream): with the architecture, which decoding fields apply.
      block_size: opts.model.description.blockSize ?? null, engine: engine?.name ?? null,
    },
  });
  app.get('/v1/models', async () => ({ object: 'list', data: [modelCard()] }));
  app.get<{ Params: { id: string } }>('/v1/models/:id', async (req) => {
    if (req.params.id !== modelId) throw unknownModel(req.params.id, modelId, null);
    return modelCard();
  });

  /** Checks a body into a Job; throws ApiError. */
  const admit = async (endpoint: Endpoint, body: ChatBody & CompletionBody): Promise<Job> => {
    if (state !== 'ready') throw unavailable(state);
    if (body.model !== modelId) throw unknownModel(body.model, modelId, 'model');
    checkMaxTokens(body, maxTokensLimit);
    const prompt = endpoint === 'chat' ? await chatPrompt(encoder, body, promptLimits) : await completionPrompt(encoder, body, promptLimits);
    const job = buildJob(body, prompt, endpoint === 'chat', engine!, { defaults, timeoutMs });
    if (driver!.queued >= maxQueue) {
      throw new ApiError(429, `the queue is full (${maxQueue} requests waiting); retry after a moment`, 'rate_limit_error', null, 'queue_full',
        { 'Retry-After': String(Math.min(60, Math.max(1, Math.ceil(requestSecondsAvg)))) });
    }
    return job;
  };

  const complete = async (endpoint: Endpoint, req: FastifyRequest, reply: FastifyReply) => {
    const arrival = performance.now();
    // Requests being tokenized when a shutdown starts are still let in: the shutdown waits for them (admitting).
    const admission = admit(endpoint, req.body as ChatBody & CompletionBody);
    admitting.add(admission);
    let job: Job;
    try {
      job = await admission;
    } finally {
      admitting.delete(admission);
    }
    const gone = new AbortController();
    reply.raw.on('close', () => {
      if (!reply.raw.writableFinished) gone.abort();
    });
    const id = `${endpoint === 'chat' ? 'chatcmpl' : 'cmpl'}-${randomUUID().replace(/-/g, '')}`;
    const shape = new ResponseShape(endpoint, id, modelId, job);
    const learn = (r: JobResult) => {
      requestSecondsAvg = 0.8 * requestSecondsAvg + 0.2 * ((performance.now() - arrival) / 1000);
      metrics.promptTokens.inc(r.usage.prompt_tokens);
      metrics.completionTokens.inc(r.usage.completion_tokens);
      count(req, r.finishReason);
    };

    if (!job.stream) {
      const r = await runJob(ctx(), job, { signal: gone.signal, arrival });
      learn(r);
      return reply.send(shape.whole(r));
    }

    // Streaming: chunks are written in order; a slow reader holds back only its own writes.
    let writes = Promise.resolve();
    const write = (data: unknown) => {
      writes = writes.then(() => reply.sse.send(typeof data === 'string' ? data : { data })).catch(() => undefined);
    };
    write(shape.first());
    try {
      const r = await runJob(ctx(), job, { signal: gone.signal, arrival, onUpdate: (u) => write(shape.update(u)) });
      learn(r);
      write(shape.last(r));
      if (job.includeUsage) write(shape.usage(r));
      write('[DONE]');
    } catch (e) {
      const api = toApiError(e);
      count(req, outcomeOf(api));
      if (api.status >= 500 && !(e instanceof JobError)) req.log.error({ err: e }, 'stream failed');
      // An error event as OpenAI sends one mid-stream (its SDKs raise it); no [DONE] after it.
      if (!gone.signal.aborted) write(api.body());
    }
    await writes;
  };

  app.post('/v1/chat/completions', { schema: { body: chatSchema }, sse: 'manual' }, (req, reply) => complete('chat', req, reply));
  app.post('/v1/completions', { schema: { body: completionSchema }, sse: 'manual' }, (req, reply) => complete('completions', req, reply));

  const admitting = new Set<Promise<Job>>();
  let stopping: Promise<{ cancelled: number }> | null = null;
  /** Shortens the grace period of a shutdown under way (a second SIGTERM). */
  let hurry: ((ms: number) => void) | undefined;
  const control: ServerControl = {
    get state() {
      return state;
    },
    modelId,
    metrics,
    engineReady,
    driver: () => driver,
    shutdown({ graceMs = 30_000 } = {}) {
      if (stopping) hurry?.(graceMs);
      stopping ??= (async () => {
        state = 'draining';
        let cancelled = 0;
        if (admitting.size) await Promise.allSettled([...admitting]);
        if (driver) {
          const d = driver;
          const finished = d.close().then(() => true);
          const inTime = await Promise.race([finished, new Promise<boolean>((r) => {
            const at = performance.now() + graceMs;
            let t = setTimeout(() => r(false), graceMs).unref();
            hurry = (ms) => {
              if (performance.now() + ms >= at) return;
              clearTimeout(t);
              t = setTimeout(() => r(false), ms).unref();
            };
          })]);
          if (!inTime) {
            cancelled = d.queued + d.active;
            await d.close({ cancel: true });
          }
        }
        // Handlers end once the driver is idle; a client that stops reading cannot hold the process past 5 s.
        const force = setTimeout(() => app.server.closeAllConnections(), 5_000);
        await app.close();
        clearTimeout(force);
        await thread?.close();
        state = 'closed';
        return { cancelled };
      })();
      return stopping;
    },
  };
  app.decorate('fastDllm', control);
  return app as unknown as FastDllmServer;
}

/** The name part of a Host header: without the port, IPv6 brackets kept. */
function hostName(host: string): string {
  const h = host.trim().toLowerCase();
  if (h.startsWith('[')) return h.slice(0, h.indexOf(']') + 1);
  const colon = h.lastIndexOf(':');
  return colon >= 0 && h.indexOf(':') === colon ? h.slice(0, colon) : h;
}

/**
 * Which Host headers are accepted: IP literals (a rebinding page cannot make a browser send one for its own
 * origin), localhost and *.localhost, and the names given; '*' accepts any.
 */
function hostCheck(allowed: string[]): (host: string) => boolean {
  const names = new Set(allowed.map((n) => hostName(n)));
  if (names.has('*')) return () => true;
  return (host) => {
    const name = hostName(host);
    const bare = name.startsWith('[') ? name.slice(1, -1) : name;
    return isIP(bare) !== 0 || name === 'localhost' || name.endsWith('.localhost') || names.has(name);
  };
}

function unavailable(state: ServerState): ApiError {
  if (state === 'loading') return new ApiError(503, 'the model is still loading; retry shortly (GET /health/ready says when)', 'service_unavailable', null, 'loading', { 'Retry-After': '5' });
  if (state === 'failed') return new ApiError(503, 'the model failed to load; see the server log', 'service_unavailable', null, 'load_failed');
  return shutdownError();
}

function unknownModel(asked: string, modelId: string, param: string | null): ApiError {
  return new ApiError(404, `the model '${asked}' is not served here; this server serves '${modelId}' (GET /v1/models)`, 'invalid_request_error', param, 'model_not_found');
}

function outcomeOf(e: ApiError): Outcome {
  if (e.code === 'timeout' || e.code === 'disconnected' || e.code === 'shutdown' || e.code === 'queue_full') return e.code;
  if (e.status === 401) return 'unauthorized';
  if (e.status === 503) return 'unavailable';
  if (e.status < 500) return 'invalid';
  return 'error';
}

/** OpenAI's response and chunk objects for one request. */
class ResponseShape {
  private readonly created = Math.floor(Date.now() / 1000);
  constructor(private readonly endpoint: Endpoint, private readonly id: string, private readonly model: string, private readonly job: Job) {}

  private head(object: string) {
    return { id: this.id, object, created: this.created, model: this.model, system_fingerprint: null };
  }

  /** Usage on every chunk is null except the last one, when the client asked for it (OpenAI's rule). */
  private chunk(choice: Record<string, unknown> | null, extra: Record<string, unknown> = {}) {
    const object = this.endpoint === 'chat' ? 'chat.completion.chunk' : 'text_completion';
    return { ...this.head(object), choices: choice ? [choice] : [], ...(this.job.includeUsage ? { usage: null } : {}), ...extra };
  }

  private choice(text: string | null, finish: string | null, role = false) {
    if (this.endpoint === 'chat') {
      const delta: Record<string, unknown> = role ? { role: 'assistant', content: '' } : text ? { content: text } : {};
      return { index: 0, delta, logprobs: null, finish_reason: finish };
    }
    return { index: 0, text: text ?? '', logprobs: null, finish_reason: finish };
  }

  first() {
    return this.endpoint === 'chat' ? this.chunk(this.choice(null, null, true)) : this.chunk(this.choice('', null));
  }

  update(u: JobUpdate) {
    return this.chunk(this.choice(u.delta, null), u.canvas ? { fast_dllm: { canvas: u.canvas } } : {});
  }

  last(r: JobResult) {
    return this.chunk(this.choice(null, r.finishReason));
  }

  usage(r: JobResult) {
    return { ...this.chunk(null), usage: r.usage };
  }

  whole(r: JobResult) {
    const fast_dllm = { decoding: this.job.decoding, gen_length: this.job.request.genLength, block_length: this.job.request.blockLength, seed: this.job.request.seed ?? 0 };
    if (this.endpoint === 'chat') {
      return {
        ...this.head('chat.completion'),
        choices: [{ index: 0, message: { role: 'assistant', content: r.text, refusal: null }, logprobs: null, finish_reason: r.finishReason }],
        usage: r.usage,
        fast_dllm,
      };
    }
    return { ...this.head('text_completion'), choices: [{ index: 0, text: r.text, logprobs: null, finish_reason: r.finishReason }], usage: r.usage, fast_dllm };
  }
}
