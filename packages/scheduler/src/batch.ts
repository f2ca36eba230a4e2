/**
 * Continuous batching (DESIGN §7): many generations share each forward pass of one engine. Between passes the
 * driver admits queued requests (while the engine has room for their caches), drops cancelled ones, and packs
 * the next step of every active generation into one pass; a finished generation leaves and frees its cache at
 * once. Each generation is advanced only by its own results, so its tokens, NFE and step records are those it
 * gets alone (the engine guarantees the arithmetic of a row does not depend on the other rows).
 */
import type { Engine, ForwardMode, ForwardRequest, SequenceHandle } from '@fast-dllm/engine-contract';
import { EngineCapacityError } from '@fast-dllm/engine-contract';
import { abortError } from './errors.js';
import { Generation, type GenerationEvent, type GenerationResult } from './generation.js';
import type { GenerationRequest } from './request.js';

/** submit() when the queue already holds `maxQueue` requests. */
export class QueueFullError extends Error {
  override readonly name = 'QueueFullError';
}

/** submit() after close(), or a queued/active request that close({ cancel: true }) ended. */
export class DriverClosedError extends Error {
  override readonly name = 'DriverClosedError';
}

export interface BatchDriverOptions {
  /** Most sequences in one pass; default the engine's maxBatch, at most 8. */
  maxBatch?: number;
  /** Most requests waiting for a place; submit() rejects with QueueFullError past it. Default: no limit. */
  maxQueue?: number;
  /** Called after every pass, for metrics. */
  onPass?: (pass: PassInfo) => void;
}

export interface PassInfo {
  /** Sequences in the pass, and their computed rows. */
  sequences: number;
  rows: number;
  ms: number;
  modes: Record<ForwardMode, number>;
}

export interface SubmitOptions {
  /** Cancels the request: removed at once while queued, between passes while active (its cache freed then). */
  signal?: AbortSignal;
  /** Every event, with the generation it came from (its committed() text, its snapshot() canvas). */
  onEvent?: (event: GenerationEvent, generation: Generation) => void;
  /** The request left the queue and got its engine sequence. */
  onStart?: () => void;
}

interface Entry {
  gen: Generation;
  opts: SubmitOptions;
  resolve: (r: GenerationResult) => void;
  reject: (e: unknown) => void;
  sequence?: SequenceHandle;
  unlisten?: () => void;
}

export interface DriverCounters {
  passes: number;
  /** Forward passes summed over sequences (each sequence in a pass is one NFE). */
  forwards: number;
  /** Generated positions committed. */
  committedTokens: number;
  completed: number;
  failed: number;
  cancelled: number;
}

export class BatchDriver {
  readonly maxBatch: number;
  readonly maxQueue: number;
  readonly counters: DriverCounters = { passes: 0, forwards: 0, committedTokens: 0, completed: 0, failed: 0, cancelled: 0 };
  private readonly queue: Entry[] = [];
  /** Requests by the signal that cancels them, and how to remove that signal's one listener. */
  private readonly watched = new Map<AbortSignal, Set<Entry>>();
  private readonly unwatch = new Map<AbortSignal, () => void>();
  private readonly running: Entry[] = [];
  private loop: Promise<void> | null = null;
  private closed = false;
  /** Sequences per pass after the engine ran out of scratch memory for a bigger one (halved each time). */
  private passLimit: number;
  private rotate = 0;

  constructor(private readonly engine: Engine, private readonly options: BatchDriverOptions = {}) {
    const cap = engine.capabilities.maxBatch;
    const want = options.maxBatch ?? Math.min(cap, 8);
    if (!(Number.isInteger(want) && want >= 1)) throw new Error(`BatchDriver: maxBatch must be a positive integer; got ${want}`);
    if (want > cap) throw new Error(`BatchDriver: maxBatch ${want} is more than engine '${engine.name}' takes in one pass (${cap})`);
    this.maxBatch = want;
    this.passLimit = want;
    this.maxQueue = options.maxQueue ?? Infinity;
  }

  /** Requests waiting for a place. */
  get queued(): number {
    return this.queue.length;
  }

  /** Generations being decoded. */
  get active(): number {
    return this.running.length;
  }

  /**
   * Queues a generation. Rejects at once with SchedulerConfigError for a bad request, QueueFullError when the
   * queue is full, DriverClosedError after close(); later with AbortError when cancelled, EngineCapacityError
   * when its cache can never fit, or the engine's error when a pass it was in failed.
   */
  submit(request: GenerationRequest, opts: SubmitOptions = {}): Promise<GenerationResult> {
    if (this.closed) return Promise.reject(new DriverClosedError('the batch driver is closed; no new requests are taken'));
    let gen: Generation;
    try {
      gen = new Generation(this.engine, request);
    } catch (e) {
      return Promise.reject(e);
    }
    if (opts.signal?.aborted) return Promise.reject(abortError(opts.signal.reason));
    if (this.queue.length >= this.maxQueue) return Promise.reject(new QueueFullError(`the queue is full (${this.maxQueue} requests waiting); retry later`));
    return new Promise<GenerationResult>((resolve, reject) => {
      const entry: Entry = { gen, opts, resolve, reject };
      if (opts.signal) this.watch(opts.signal, entry);
      this.queue.push(entry);
      this.kick();
    });
  }

  /**
   * One abort listener per signal, however many requests share it (decodeMany gives all its requests one): on
   * abort, queued requests leave at once; active ones at the next pass boundary (the loop checks the signal).
   */
  private watch(signal: AbortSignal, entry: Entry): void {
    let entries = this.watched.get(signal);
    if (!entries) {
      const set = new Set<Entry>();
      entries = set;
      const onAbort = () => {
        for (const e of [...set]) {
          const i = this.queue.indexOf(e);
          if (i >= 0) {
            this.queue.splice(i, 1);
            this.fail(e, abortError(signal.reason), 'cancelled');
          }
        }
      };
      signal.addEventListener('abort', onAbort, { once: true });
      this.watched.set(signal, set);
      this.unwatch.set(signal, () => signal.removeEventListener('abort', onAbort));
    }
    entries.add(entry);
    entry.unlisten = () => {
      entries!.delete(entry);
      if (entries!.size === 0) {
        this.unwatch.get(signal)?.();
        this.unwatch.delete(signal);
        this.watched.delete(signal);
      }
    };
  }

  /** Resolves once nothing is queued or active. */
  async idle(): Promise<void> {
    while (this.loop) await this.loop;
  }

  /**
   * Stops taking requests. Without `cancel`, waits for queued and active generations to finish; with it, ends
   * them with DriverClosedError (active ones at the next pass boundary).
   */
  async close(opts: { cancel?: boolean } = {}): Promise<void> {
    this.closed = true;
    if (opts.cancel) {
      const err = new DriverClosedError('the batch driver was closed before this request finished');
      for (const e of this.queue.splice(0)) this.fail(e, err, 'cancelled');
      this.cancelActive = err;
    }
    await this.idle();
  }

  private cancelActive: Error | null = null;

  private kick(): void {
    if (this.loop) return;
    this.loop = this.run().finally(() => {
      this.loop = null;
      if (this.queue.length > 0) this.kick();
    });
  }

  private async run(): Promise<void> {
    for (;;) {
      this.admit();
      if (this.running.length === 0) return;
      // Between passes: let I/O, timers and aborts land (a CPU engine's pass blocks the event loop), then take in
      // what arrived meanwhile, so a burst of requests shares its first pass.
      await yieldToEventLoop();
      this.dropCancelled();
      this.admit();
      if (this.running.length === 0) continue;
      await this.pass();
    }
  }

  /** Moves queued requests into the running set while there is a place in the pass and room for their cache. */
  private admit(): void {
    while (this.queue.length > 0 && this.running.length < this.maxBatch) {
      const e = this.queue[0];
      if (e.opts.signal?.aborted) {
        this.queue.shift();
        this.fail(e, abortError(e.opts.signal.reason), 'cancelled');
        continue;
      }
      const need = e.gen.maxLength;
      if (this.engine.sequenceCapacity(need) < 1 && this.running.length > 0) return; // wait for a place
      try {
        e.sequence = this.engine.openSequence(need);
      } catch (err) {
        if (err instanceof EngineCapacityError && this.running.length > 0) return; // wait for a place
        this.queue.shift();
        this.fail(e, err, 'failed'); // it can never fit, even alone
        continue;
      }
      this.queue.shift();
      this.running.push(e);
      try {
        e.opts.onStart?.();
      } catch (err) {
        this.remove(e);
        this.fail(e, err, 'failed');
      }
    }
  }

  private dropCancelled(): void {
    for (const e of [...this.running]) {
      const s = e.opts.signal;
      if (s?.aborted) {
        this.remove(e);
        this.fail(e, abortError(s.reason), 'cancelled');
      } else if (this.cancelActive) {
        this.remove(e);
        this.fail(e, this.cancelActive, 'cancelled');
      }
    }
  }

  private async pass(): Promise<void> {
    const n = Math.min(this.running.length, this.passLimit);
    const start = this.rotate % this.running.length; // when a pass cannot take everyone, take turns
    // A generation may send several requests (a verify pass's drafts, DESIGN §16): the engine's maxBatch bounds
    // the requests of a pass, so the members are those that fit, always at least one.
    const members: Entry[] = [];
    const batch: ForwardRequest[] = [];
    const first: number[] = []; // (members,) index of each member's first request in the batch
    for (let i = 0; i < n; i++) {
      const e = this.running[(start + i) % this.running.length];
      const reqs = e.gen.next()!;
      if (members.length > 0 && batch.length + reqs.length > this.engine.capabilities.maxBatch) break;
      members.push(e);
      first.push(batch.length);
      for (const r of reqs) batch.push({ ...r, sequence: e.sequence! });
    }
    this.rotate = start + members.length;
    const modes: Record<ForwardMode, number> = { full: 0, prefix: 0, dual: 0, extend: 0 };
    let rows = 0;
    for (const r of batch) {
      modes[r.mode]++;
      rows += r.end - r.start;
    }
    const t0 = performance.now();
    let results;
    try {
      results = await this.engine.forward(batch);
    } catch (err) {
      if (err instanceof EngineCapacityError && members.length > 1) {
        // The pass needed more scratch than the engine has: nothing was computed; retry with fewer sequences.
        this.passLimit = Math.max(1, Math.floor(members.length / 2));
        return;
      }
      for (const e of members) {
        this.remove(e);
        this.fail(e, err, 'failed');
      }
      return;
    }
    this.counters.passes++;
    this.counters.forwards += members.length;
    members.forEach((e, i) => {
      let events: GenerationEvent[];
      try {
        events = e.gen.advance(results.slice(first[i], i + 1 < first.length ? first[i + 1] : batch.length));
        for (const ev of events) {
          if (ev.type === 'step') this.counters.committedTokens += ev.positions.length;
          e.opts.onEvent?.(ev, e.gen);
        }
      } catch (err) {
        this.remove(e);
        this.fail(e, err, 'failed');
        return;
      }
      if (e.gen.done) {
        this.remove(e);
        this.counters.completed++;
        e.unlisten?.();
        e.resolve(e.gen.result());
      }
    });
    this.options.onPass?.({ sequences: members.length, rows, ms: performance.now() - t0, modes });
  }

  /** Takes an entry out of the running set and frees its cache. */
  private remove(e: Entry): void {
    const i = this.running.indexOf(e);
    if (i >= 0) this.running.splice(i, 1);
    if (e.sequence) this.engine.closeSequence(e.sequence);
    e.sequence = undefined;
  }

  private fail(e: Entry, err: unknown, kind: 'failed' | 'cancelled'): void {
    this.counters[kind]++;
    e.unlisten?.();
    e.unlisten = undefined;
    e.reject(err);
  }
}

/** Lets pending I/O run: setImmediate in Node, a macrotask elsewhere (browsers have no setImmediate). */
function yieldToEventLoop(): Promise<void> {
  const g = globalThis as { setImmediate?: (f: () => void) => unknown };
  return new Promise((resolve) => (g.setImmediate ? g.setImmediate(resolve) : setTimeout(resolve, 0)));
}

export interface DecodeManyOptions {
  /** Most sequences per pass (default 8, at most the engine's maxBatch). */
  batch?: number;
  signal?: AbortSignal;
  /** Each result as soon as it is ready, with its index in `requests`. */
  onResult?: (index: number, result: GenerationResult) => void;
  onEvent?: (index: number, event: GenerationEvent, generation: Generation) => void;
}

/**
 * Decodes every request, batched, and resolves with the results in input order. The first failure (a bad
 * request, cancellation) rejects, and the others are cancelled.
 */
export async function decodeMany(engine: Engine, requests: readonly GenerationRequest[], opts: DecodeManyOptions = {}): Promise<GenerationResult[]> {
  const driver = new BatchDriver(engine, { maxBatch: Math.min(opts.batch ?? 8, engine.capabilities.maxBatch) });
  const pending = requests.map((r, i) =>
    driver.submit(r, { signal: opts.signal, onEvent: opts.onEvent && ((ev, g) => opts.onEvent!(i, ev, g)) }).then((res) => {
      opts.onResult?.(i, res);
      return res;
    }));
  try {
    return await Promise.all(pending);
  } catch (e) {
    for (const p of pending) p.catch(() => undefined); // the others end with DriverClosedError; only the first error counts
    await driver.close({ cancel: true });
    throw e;
  }
}
