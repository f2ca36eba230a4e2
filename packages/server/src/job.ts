/**
 * One request's generation on the batch driver: submits it, turns each step into answer text (answer.ts) and
 * canvas views, and ends it as soon as its answer is final — a stop token, a stop string or max_tokens reached
 * in the committed text (DESIGN §9: committed tokens never change, so the rest of the canvas cannot change the
 * answer) — unless the request asks to decode every position (`early_stop: false`). Ending early cancels the sequence, whose cache the driver frees at the next pass boundary; so do the
 * deadline and a client that goes away.
 */
import {
  DriverClosedError, EngineCapacityError, QueueFullError, SchedulerConfigError, provisionalTokens,
  type BatchDriver, type Engine, type Generation, type GenerationEvent,
} from '@fast-dllm/scheduler';
import { AnswerText, type AnswerEnd, type FinishReason } from './answer.js';
import { ApiError, badRequest } from './errors.js';
import type { ServerMetrics } from './metrics.js';
import { fromScheduler, type Job } from './request.js';

export interface Usage {
  prompt_tokens: number;
  completion_tokens: number;
  total_tokens: number;
  /** Forward passes (NFE) this request's sequence took part in. */
  nfe: number;
}

/**
 * The provisional canvas after one step (DESIGN §9), for visualisers: the `fast_dllm.canvas` object of a
 * streamed chunk when the request asks with `fast_dllm: { canvas: true }`.
 */
export interface CanvasView {
  /** Denoising steps so far, this one included; 0 for the all-masked view sent when decoding starts. */
  step: number;
  /** Forward passes of this sequence so far, this step's included. */
  nfe: number;
  /** (genLength,) decoded text of each generated position (special tokens as their text); null while masked. */
  tokens: (string | null)[];
  /** Generated-region positions (0-based indices into `tokens`) committed by this step, ascending. */
  committed: number[];
}

export interface JobUpdate {
  /** Newly committed answer text ('' when none). */
  delta: string;
  canvas?: CanvasView;
}

export interface JobResult {
  text: string;
  finishReason: FinishReason;
  usage: Usage;
}

/** What a job needs of the server. */
export interface JobContext {
  driver: BatchDriver;
  engine: Engine;
  metrics: ServerMetrics;
  /** ids → text, special tokens skipped. */
  decode: (ids: Int32Array) => string;
  /** One token's text (special tokens kept), for canvas views. */
  tokenText: (id: number) => string;
}

export interface JobOptions {
  /** Aborted when the client goes away. */
  signal: AbortSignal;
  /** performance.now() when the request arrived; the deadline counts from it. */
  arrival: number;
  onUpdate?: (u: JobUpdate) => void;
}

/** Why a job ended without an answer; `code` is also the metrics outcome. */
export class JobError extends ApiError {}

export const timeoutError = (ms: number) =>
  new JobError(504, `the request did not finish within its deadline of ${ms / 1000} s and was cancelled; raise the deadline (fast_dllm.timeout, up to the server's --timeout) or lower max_tokens`, 'timeout_error', null, 'timeout');
export const disconnectedError = () => new JobError(499, 'the client closed the connection', 'invalid_request_error', null, 'disconnected');
export const shutdownError = () => new JobError(503, 'the server is shutting down; retry (on another replica)', 'service_unavailable', null, 'shutdown');

/** Runs a job; resolves with the answer, or rejects with an ApiError saying why there is none. */
export function runJob(ctx: JobContext, job: Job, opts: JobOptions): Promise<JobResult> {
  const { driver, engine, metrics } = ctx;
  const P = job.prompt.length;
  const answer = new AnswerText(ctx.decode, job.stops, job.maxTokens);
  const cancel = new AbortController(); // ends the sequence in the driver
  const bytes = engine.sequenceBytes(P + job.request.genLength);
  let started = false;
  let steps = 0;
  let firstText = true;
  // early_stop false (LLaDA/Dream): the answer is final as soon as it is, but the run decodes every position
  // (the paper's NFE), so the usage's nfe counts them all.
  const runToEnd = job.request.earlyStop === false;
  let final: AnswerEnd | undefined;

  return new Promise<JobResult>((resolve, reject) => {
    let settled = false;
    let timer: NodeJS.Timeout | undefined;
    const settle = () => {
      settled = true;
      clearTimeout(timer);
      opts.signal.removeEventListener('abort', onGone);
      cancel.abort(); // a no-op for a sequence that already left the driver
    };
    const fail = (err: ApiError) => {
      if (settled) return;
      settle();
      reject(err);
    };
    const onGone = () => fail(disconnectedError());
    if (opts.signal.aborted) return fail(disconnectedError());
    opts.signal.addEventListener('abort', onGone, { once: true });
    if (job.timeoutMs > 0) {
      const left = job.timeoutMs - (performance.now() - opts.arrival);
      timer = setTimeout(() => fail(timeoutError(job.timeoutMs)), Math.max(0, left));
    }

    const onEvent = (ev: GenerationEvent, gen: Generation) => {
      if (settled || ev.type === 'block') return;
      if (ev.type === 'step') metrics.committedTokens.inc(ev.positions.length);
      const c = gen.committed();
      const u = answer.update(c.ids, c.stopped, gen.done);
      const canvas = job.canvas && ev.type === 'step' ? canvasView(ctx, gen, P, ++steps, ev.nfe, ev.positions) : undefined;
      if (u.delta && firstText) {
        firstText = false;
        metrics.firstTextSeconds.observe((performance.now() - opts.arrival) / 1000);
      }
      if (u.delta !== '' || canvas) opts.onUpdate?.({ delta: u.delta, canvas });
      final ??= u.end;
      if (final && (!runToEnd || gen.done)) {
        settle();
        const completion = final.completionTokens;
        resolve({
          text: final.text,
          finishReason: final.finishReason,
          usage: { prompt_tokens: P, completion_tokens: completion, total_tokens: P + completion, nfe: gen.forwards },
        });
      }
    };

    driver.submit(job.request, {
      signal: cancel.signal,
      onEvent,
      onStart: () => {
        started = true;
        metrics.cacheBytes.inc(bytes);
        metrics.queueSeconds.observe((performance.now() - opts.arrival) / 1000);
        // The canvas before the first pass: every generated position masked.
        const G = job.request.genLength;
        if (job.canvas && !settled) opts.onUpdate?.({ delta: '', canvas: { step: 0, nfe: 0, tokens: new Array<null>(G).fill(null), committed: [] } });
      },
    }).then(
      () => fail(new ApiError(500, 'the generation ended without a final answer', 'server_error', null, 'internal_error')),
      (err: unknown) => fail(fromDriver(err, job)),
    ).finally(() => {
      // The driver closes a sequence before it settles its promise: its cache is free now.
      if (started) metrics.cacheBytes.dec(bytes);
    });
  });
}

/** The driver's rejections as API errors (a cancellation we asked for never gets here: the job settled first). */
function fromDriver(err: unknown, job: Job): ApiError {
  if (err instanceof ApiError) return err;
  if (err instanceof QueueFullError) return new ApiError(429, err.message, 'rate_limit_error', null, 'queue_full');
  if (err instanceof DriverClosedError) return shutdownError();
  if (err instanceof SchedulerConfigError) return fromScheduler(err, job.promptParam) as ApiError;
  if (err instanceof EngineCapacityError) {
    return badRequest(job.promptParam, `this request's cache does not fit in the engine's memory even alone (${err.message}); shorten the prompt or lower max_tokens`, 'context_length_exceeded');
  }
  return new ApiError(500, `the engine failed: ${(err as Error)?.message?.split('\n')[0] ?? String(err)}`, 'server_error', null, 'engine_error');
}

function canvasView(ctx: JobContext, gen: Generation, P: number, step: number, nfe: number, positions: Int32Array): CanvasView {
  const generated = gen.snapshot().subarray(P); // (genLength,) ids, mask where undecided
  return {
    step,
    nfe,
    tokens: provisionalTokens(generated, ctx.engine.model.maskId, ctx.tokenText),
    committed: Array.from(positions, (p) => p - P),
  };
}
