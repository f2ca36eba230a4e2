/**
 * One generation as a resumable object (DESIGN §2–5, §7–9): it says which forward pass it needs next and
 * takes that pass's result, so a driver can advance many generations together. Policy only; no engine here.
 *
 *   const g = new Generation(engine, request);
 *   for (let reqs = g.next(); reqs; reqs = g.next()) g.advance(await engine.forward(reqs.map((r) => ({ ...r, sequence }))));
 *
 * The generation owns the canvas, the NFE count, the step records and the events; the decoding procedure — masked
 * diffusion for LLaDA/Dream, block diffusion for Fast-dLLM v2/SDAR — is a Decoder (decoders/) it delegates to.
 * A generation never looks at other sequences: its tokens, NFE and step records are the same alone or in a batch.
 */
import type { ForwardMode, ForwardRequest, ForwardResult, ModelInfo } from '@fast-dllm/engine-contract';
import { checkGenerationRequest, type EngineTarget, type GenerationRequest, type ResolvedRequest } from './request.js';
import { committedPrefix, stopIdsOf } from './stop.js';
import { BlockDiffusionDecoder } from './decoders/block.js';
import type { Decoder, PlannedForward } from './decoders/decoder.js';
import { MaskedDiffusionDecoder } from './decoders/masked.js';

export { committedPrefix, stopIdsOf } from './stop.js';

/** A forward pass a generation needs: a ForwardRequest without the sequence, which the driver supplies. */
export type StepRequest = Omit<ForwardRequest, 'sequence'>;

export interface StepRecord {
  block: number;
  /** Step index inside the block, 0-based. */
  step: number;
  mode: ForwardMode;
  /** (k,) absolute positions committed at this step, ascending, and their tokens. */
  positions: Int32Array;
  tokens: Int32Array;
  /** NFE so far, this forward included. */
  nfe: number;
}

export interface GenerationStats {
  nfe: number;
  forwardsByMode: Record<ForwardMode, number>;
  /** Generated positions committed per forward pass (genLength / nfe without early stop). */
  tokensPerForward: number;
  /** From the generation's first forward request to its last result, ms (time waiting in a queue excluded). */
  wallTimeMs: number;
  /** Generated tokens that are not EOS padding (DESIGN §5), and their rate. */
  contentTokens: number;
  tokensPerSecond: number;
}

export interface GenerationResult {
  /** (P + n,) the final canvas: the prompt and the answer. */
  canvas: Int32Array;
  /**
   * (n,) the generated part: n = genLength for masked diffusion; for block diffusion up to and including the stop
   * token (n <= genLength, the cap).
   */
  tokens: Int32Array;
  stats: GenerationStats;
  steps: StepRecord[];
  /** True when a stop rule (earlyStop; a block-diffusion stop token) ended the run before the cap. */
  stoppedEarly: boolean;
}

export type GenerationEvent =
  | ({ type: 'step' } & StepRecord)
  | { type: 'block'; block: number; start: number; end: number; nfe: number }
  | { type: 'done'; result: GenerationResult };

export class Generation {
  readonly request: GenerationRequest;
  readonly resolved: ResolvedRequest;
  /** Longest canvas this generation uses: what its engine sequence must reserve. */
  readonly maxLength: number;
  private readonly model: ModelInfo;
  private readonly canvas: Int32Array; // (P + genLength,) token ids: prompt ++ generated, masks where not yet decoded
  private readonly decoder: Decoder;
  private pending: { plans: PlannedForward[]; reqs: StepRequest[] } | null = null;
  private nfe = 0;
  private readonly byMode: Record<ForwardMode, number> = { full: 0, prefix: 0, dual: 0, extend: 0 };
  private readonly records: StepRecord[] = [];
  private stoppedEarly = false;
  private finished: GenerationResult | null = null;
  private t0 = -1;

  /** Validates the request against the engine (SchedulerConfigError) and lays out the canvas; no forward yet. */
  constructor(target: EngineTarget, request: GenerationRequest) {
    this.resolved = checkGenerationRequest(request, target);
    this.request = request;
    this.model = target.model;
    this.maxLength = this.resolved.maxLength;
    this.canvas = new Int32Array(this.maxLength).fill(this.model.maskId);
    this.canvas.set(request.prompt);
    this.decoder = this.resolved.family === 'block'
      ? new BlockDiffusionDecoder(this.model, request, this.resolved, this.canvas)
      : new MaskedDiffusionDecoder(this.model, request, this.resolved, this.canvas);
  }

  get done(): boolean {
    return this.finished !== null;
  }

  /** Forward passes spent so far. */
  get forwards(): number {
    return this.nfe;
  }

  /** The canvas as decoded so far (a copy; masks where nothing is committed yet). */
  snapshot(): Int32Array {
    return this.canvas.slice();
  }

  /** DESIGN §9: the committed answer ids so far; they only grow. */
  committed(): { ids: Int32Array; stopped: boolean } {
    return committedPrefix(this.canvas.subarray(this.request.prompt.length), this.model.maskId, stopIdsOf(this.model));
  }

  /** The final result; throws before the generation is done. */
  result(): GenerationResult {
    if (!this.finished) throw new Error('Generation.result: the generation is not done');
    return this.finished;
  }

  /**
   * The forward pass this generation needs next — one request, or (draft and verify, DESIGN §16) several for its one
   * sequence, which go into the same pass — or null once it is done. Asking again before `advance` returns the same.
   */
  next(): StepRequest[] | null {
    if (this.finished) return null;
    if (this.pending) return this.pending.reqs;
    if (this.t0 < 0) this.t0 = performance.now();
    const plans = this.decoder.plan();
    const { temperature, seed } = this.resolved;
    const reqs = plans.map((plan): StepRequest => ({
      canvas: (plan.canvas ?? this.canvas).slice(0, plan.length),
      mode: plan.mode,
      start: plan.start,
      end: plan.end,
      positions: plan.positions,
      ...(plan.want ? { want: plan.want } : {}),
      ...(plan.attention ? { attention: plan.attention } : {}),
      ...(plan.refresh ? { refresh: plan.refresh } : {}),
      ...(temperature > 0 ? { sampling: { temperature, seed, forwardIndex: plan.forwardIndex ?? this.nfe } } : {}),
    }));
    this.pending = { plans, reqs };
    return reqs;
  }

  /** Takes the results of the requests `next()` returned, in order; returns the events they caused (step, block, done). */
  advance(results: readonly ForwardResult[]): GenerationEvent[] {
    const pending = this.pending;
    if (!pending) throw new Error('Generation.advance: no forward request is outstanding (call next() first)');
    if (results?.length !== pending.reqs.length) throw new Error(`Generation.advance: ${results?.length} results for ${pending.reqs.length} requests`);
    pending.reqs.forEach((req, i) => checkResult(req, results[i]));
    this.pending = null;
    const plan = pending.plans[0];
    const forwardIndex = this.nfe;
    this.nfe++;
    this.byMode[plan.mode]++;
    const out = this.decoder.apply(pending.plans, results, forwardIndex);
    const rec: StepRecord = { block: plan.block, step: plan.step, mode: plan.mode, positions: out.positions, tokens: out.tokens, nfe: this.nfe };
    this.records.push(rec);
    const events: GenerationEvent[] = [{ type: 'step', ...rec }];
    for (const b of out.blocksDone) events.push({ type: 'block', block: b.index, start: b.start, end: b.end, nfe: this.nfe });
    if (out.done) {
      this.stoppedEarly = out.stoppedEarly;
      this.finished = this.finish();
      events.push({ type: 'done', result: this.finished });
    }
    return events;
  }

  private finish(): GenerationResult {
    const wallTimeMs = this.t0 < 0 ? 0 : performance.now() - this.t0;
    const P = this.request.prompt.length;
    const canvas = this.canvas.subarray(0, P + this.decoder.outputLength()); // (P + n,)
    const tokens = canvas.slice(P); // (n,)
    let contentTokens = 0;
    for (const t of tokens) if (t !== this.model.eosId) contentTokens++;
    const committed = this.records.reduce((a, r) => a + r.positions.length, 0);
    return {
      canvas,
      tokens,
      stats: {
        nfe: this.nfe,
        forwardsByMode: { ...this.byMode },
        tokensPerForward: this.nfe > 0 ? committed / this.nfe : 0,
        wallTimeMs,
        contentTokens,
        tokensPerSecond: wallTimeMs > 0 ? (contentTokens * 1000) / wallTimeMs : 0,
      },
      steps: this.records,
      stoppedEarly: this.stoppedEarly,
    };
  }
}

function checkResult(req: StepRequest, res: ForwardResult): void {
  const n = req.positions.length;
  if (res?.tokens?.length !== n || res.probs?.length !== n) {
    throw new Error(`the engine returned ${res?.tokens?.length} tokens / ${res?.probs?.length} probs for ${n} positions`);
  }
  if (req.want?.top2 && (res.top1Probs?.length !== n || res.top2Probs?.length !== n)) throw new Error('the engine omitted the top-2 report');
  if (req.want?.entropy && res.entropy?.length !== n) throw new Error('the engine omitted the entropy report');
  if (req.attention) {
    const a = res.attention;
    const rows = req.attention.end - req.attention.start;
    if (!a || a.atTop?.length !== a.top?.length * rows || a.tracked?.length !== a.top.length * rows) throw new Error('the engine omitted the attention report');
  }
}
