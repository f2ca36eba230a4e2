/**
 * Prometheus metrics of one server, in its own registry (two servers in one process never mix counts). Built on
 * prom-client: it writes the text format (escaping, histogram buckets with _sum and _count) and the process
 * metrics (resident memory, heap, event-loop lag) that capacity planning needs, which a hand-written exporter
 * would have to restate.
 *
 * What to autoscale on: `fast_dllm_queue_depth` (requests waiting for a place in the batch) and
 * `fast_dllm_active_sequences` (sequences being decoded; at most the batch size).
 */
import { Counter, Gauge, Histogram, Registry, collectDefaultMetrics } from 'prom-client';
import type { PassInfo } from '@fast-dllm/scheduler';

export type Endpoint = 'chat' | 'completions';

/** How a completion request ended, as counted in fast_dllm_requests_total. */
export type Outcome =
  | 'stop' | 'length' // answered
  | 'invalid' // 4xx before decoding
  | 'queue_full' | 'unavailable' | 'unauthorized'
  | 'timeout' | 'disconnected' | 'shutdown' | 'error';

export interface LiveState {
  queued(): number;
  active(): number;
  ready(): boolean;
}

export class ServerMetrics {
  readonly registry = new Registry();
  readonly passes: Counter;
  readonly forwards: Counter;
  readonly committedTokens: Counter;
  readonly promptTokens: Counter;
  readonly completionTokens: Counter;
  readonly requests: Counter<'endpoint' | 'outcome'>;
  readonly passSeconds: Histogram;
  readonly passSequences: Histogram;
  readonly requestSeconds: Histogram<'endpoint'>;
  readonly queueSeconds: Histogram;
  readonly firstTextSeconds: Histogram;
  /** Bytes of engine memory reserved by open sequences (their K/V caches). */
  readonly cacheBytes: Gauge;

  constructor(live: LiveState, opts: { processMetrics: boolean }) {
    const registers = [this.registry];
    new Gauge({ name: 'fast_dllm_queue_depth', help: 'Requests waiting for a place in the batch.', registers, collect() { this.set(live.queued()); } });
    new Gauge({ name: 'fast_dllm_active_sequences', help: 'Sequences being decoded (each holds its K/V cache).', registers, collect() { this.set(live.active()); } });
    new Gauge({ name: 'fast_dllm_ready', help: '1 when the server takes new requests (model loaded, not draining).', registers, collect() { this.set(live.ready() ? 1 : 0); } });
    this.cacheBytes = new Gauge({ name: 'fast_dllm_cache_reserved_bytes', help: 'Engine memory reserved by the K/V caches of open sequences.', registers });
    this.passes = new Counter({ name: 'fast_dllm_passes_total', help: 'Forward passes run (each over one or more sequences).', registers });
    this.forwards = new Counter({ name: 'fast_dllm_forwards_total', help: 'Function evaluations (NFE) summed over sequences: one per sequence per pass.', registers });
    this.committedTokens = new Counter({ name: 'fast_dllm_committed_tokens_total', help: 'Generated positions committed by decoding (answer, stop tokens and padding).', registers });
    this.promptTokens = new Counter({ name: 'fast_dllm_prompt_tokens_total', help: 'Prompt tokens of answered requests.', registers });
    this.completionTokens = new Counter({ name: 'fast_dllm_completion_tokens_total', help: 'Answer tokens returned (usage.completion_tokens summed).', registers });
    this.requests = new Counter({ name: 'fast_dllm_requests_total', help: 'Completion requests by endpoint and outcome.', labelNames: ['endpoint', 'outcome'], registers });
    this.passSeconds = new Histogram({
      name: 'fast_dllm_pass_seconds', help: 'Wall time of one forward pass.', registers,
      buckets: [0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1, 2.5, 5, 10],
    });
    this.passSequences = new Histogram({ name: 'fast_dllm_pass_sequences', help: 'Sequences per forward pass.', registers, buckets: [1, 2, 4, 8, 16, 32, 64] });
    this.requestSeconds = new Histogram({
      name: 'fast_dllm_request_seconds', help: 'Time from a request\'s arrival to its last byte (queue wait included).', labelNames: ['endpoint'], registers,
      buckets: [0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1, 2.5, 5, 10, 30, 60, 120, 300],
    });
    this.queueSeconds = new Histogram({
      name: 'fast_dllm_queue_wait_seconds', help: 'Time a request waited for a place in the batch.', registers,
      buckets: [0.001, 0.01, 0.05, 0.1, 0.25, 0.5, 1, 2.5, 5, 10, 30, 60],
    });
    this.firstTextSeconds = new Histogram({
      name: 'fast_dllm_time_to_first_text_seconds', help: 'Time from arrival to the first committed answer text.', registers,
      buckets: [0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1, 2.5, 5, 10, 30, 60],
    });
    if (opts.processMetrics) collectDefaultMetrics({ register: this.registry });
  }

  pass(p: PassInfo): void {
    this.passes.inc();
    this.forwards.inc(p.sequences);
    this.passSeconds.observe(p.ms / 1000);
    this.passSequences.observe(p.sequences);
  }

  text(): Promise<string> {
    return this.registry.metrics();
  }

  get contentType(): string {
    return this.registry.contentType;
  }
}
