/**
 * One generation as a resumable object (DESIGN §2–5, §7, §9): it says which forward pass it needs next and
 * takes that pass's result, so a driver can advance many generations together. Policy only; no engine here.
 *
 *   const g = new Generation(engine, request);
 *   for (let step = g.next(); step; step = g.next()) g.advance((await engine.forward([{ ...step, sequence }]))[0]);
 *
 * A generation never looks at other sequences: its tokens, NFE and step records are the same alone or in a batch.
 */
import type { ForwardMode, ForwardRequest, ForwardResult, ModelInfo } from './engine.js';
import { planForward } from './plan.js';
import { checkGenerationRequest, type EngineTarget, type GenerationRequest, type ResolvedRequest, type Strategy } from './request.js';
import { LANE_DREAM_ORIGIN, LANE_REMASK_RANDOM, counterUniform } from './rng.js';
import {
  dreamOriginProbability, dreamTransferCount, fixedScheduleCounts, partitionBlocks, selectDreamOrigin, selectFactor,
  selectFixed, selectThreshold, type Block,
} from './select.js';

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
  /** (P + genLength,) the final canvas. */
  canvas: Int32Array;
  /** (genLength,) the generated part. */
  tokens: Int32Array;
  stats: GenerationStats;
  steps: StepRecord[];
  /** True when earlyStop ended the run before every block was decoded. */
  stoppedEarly: boolean;
}

export type GenerationEvent =
  | ({ type: 'step' } & StepRecord)
  | { type: 'block'; block: number; start: number; end: number; nfe: number }
  | { type: 'done'; result: GenerationResult };

/**
 * DESIGN §9: the committed ids of a generated region: its longest prefix without a mask, cut before the first
 * stop token. `stopped` says whether a stop token was reached (nothing after it will ever be shown).
 */
export function committedPrefix(generated: Int32Array, maskId: number, stopIds: readonly number[]): { ids: Int32Array; stopped: boolean } {
  let n = 0;
  while (n < generated.length && generated[n] !== maskId) {
    if (stopIds.includes(generated[n])) return { ids: generated.subarray(0, n), stopped: true };
    n++;
  }
  return { ids: generated.subarray(0, n), stopped: false };
}

/** The ids that end an answer: EOS and the end-of-turn token. */
export function stopIdsOf(model: ModelInfo): number[] {
  return model.endOfTurnId === undefined ? [model.eosId] : [model.eosId, model.endOfTurnId];
}

interface Pending {
  req: StepRequest;
  /** Dream under a cache: the block's full forward commits only its first position (DESIGN §4). */
  dreamFirst: boolean;
}

export class Generation {
  readonly request: GenerationRequest;
  readonly resolved: ResolvedRequest;
  /** Longest canvas this generation uses: what its engine sequence must reserve. */
  readonly maxLength: number;
  private readonly model: ModelInfo;
  private readonly canvas: Int32Array; // (L,) token ids: prompt ++ generated, masks where not yet decoded
  private readonly blocks: Block[];
  private readonly want: StepRequest['want'];
  private blockIndex = 0;
  private step = 0;
  private masks = 0; // masks left in the current block
  private schedule: Int32Array = new Int32Array(0); // (stepsPerBlock,) fixed-schedule k per step
  private pending: Pending | null = null;
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
    const P = request.prompt.length;
    this.canvas = new Int32Array(this.maxLength).fill(this.model.maskId);
    this.canvas.set(request.prompt);
    this.blocks = partitionBlocks(P, request.genLength, request.blockLength);
    const s = request.strategy;
    this.want = s.kind === 'dream' && s.alg === 'topk_margin' ? { top2: true } : s.kind === 'dream' && s.alg === 'entropy' ? { entropy: true } : undefined;
    this.enterBlock();
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
   * The forward pass this generation needs next, or null once it is done. Asking again before `advance`
   * returns the same request.
   */
  next(): StepRequest | null {
    if (this.finished) return null;
    if (this.pending) return this.pending.req;
    if (this.t0 < 0) this.t0 = performance.now();
    const block = this.blocks[this.blockIndex];
    const L = this.canvas.length;
    const { cache, refreshEvery, temperature, seed } = this.resolved;
    const span = planForward(cache, this.step, block, L, refreshEvery);
    // Keyed on the model's shifted logits, not on the strategy: the cached window would give the block's
    // first position its own, unshifted row.
    const dreamFirst = this.model.shiftLogits && cache !== 'none' && this.step === 0 && this.canvas[block.start] === this.model.maskId;
    const positions = dreamFirst ? Int32Array.of(block.start) : maskedIn(this.canvas, block.start, block.end, this.model.maskId); // (n,) ascending
    const req: StepRequest = {
      canvas: this.canvas.slice(),
      mode: span.mode,
      start: span.start,
      end: span.end,
      positions,
      ...(this.want && !dreamFirst ? { want: this.want } : {}),
      ...(temperature > 0 ? { sampling: { temperature, seed, forwardIndex: this.nfe } } : {}),
    };
    this.pending = { req, dreamFirst };
    return req;
  }

  /** Takes the result of the request `next()` returned; returns the events it caused (step, block, done). */
  advance(res: ForwardResult): GenerationEvent[] {
    const pending = this.pending;
    if (!pending) throw new Error('Generation.advance: no forward request is outstanding (call next() first)');
    checkResult(pending.req, res);
    this.pending = null;
    const { req, dreamFirst } = pending;
    const forwardIndex = this.nfe;
    this.nfe++;
    this.byMode[req.mode]++;
    const block = this.blocks[this.blockIndex];
    const strategy = this.request.strategy;
    const { stepsPerBlock } = this.resolved;

    let chosen: Int32Array; // (k,) absolute positions to commit, ascending
    if (dreamFirst) {
      chosen = req.positions;
      // The fixed schedule then spreads the remaining masks over the remaining steps (step j uses index j).
      if (stepsPerBlock > 1) this.schedule = Int32Array.of(0, ...fixedScheduleCounts(this.masks - 1, stepsPerBlock - 1));
    } else {
      const conf = confidences(strategy, res, req.positions, this.resolved.seed, forwardIndex);
      chosen = choose(strategy, req.positions, conf, this.step, this.resolved, this.schedule, this.masks, forwardIndex);
    }
    const tokens = new Int32Array(chosen.length); // (k,) committed token ids
    for (let i = 0, j = 0; i < req.positions.length && j < chosen.length; i++) {
      if (req.positions[i] === chosen[j]) {
        tokens[j] = res.tokens[i];
        this.canvas[chosen[j]] = res.tokens[i];
        j++;
      }
    }
    this.masks -= chosen.length;
    const rec: StepRecord = { block: block.index, step: this.step, mode: req.mode, positions: chosen, tokens, nfe: this.nfe };
    this.records.push(rec);
    const events: GenerationEvent[] = [{ type: 'step', ...rec }];
    this.step++;
    if (this.masks > 0) return events;

    events.push({ type: 'block', block: block.index, start: block.start, end: block.end, nfe: this.nfe });
    const L = this.canvas.length;
    const P = this.request.prompt.length;
    if (this.request.earlyStop && block.end < L && onlyEosAfterFirstEos(this.canvas, P, block.end, this.model.eosId)) {
      this.canvas.fill(this.model.eosId, block.end);
      this.stoppedEarly = true;
    } else if (this.blockIndex + 1 < this.blocks.length) {
      this.blockIndex++;
      this.enterBlock();
      return events;
    }
    this.finished = this.finish();
    events.push({ type: 'done', result: this.finished });
    return events;
  }

  private enterBlock(): void {
    const block = this.blocks[this.blockIndex];
    let masks = 0;
    for (let p = block.start; p < block.end; p++) if (this.canvas[p] === this.model.maskId) masks++;
    this.masks = masks;
    this.step = 0;
    this.schedule = fixedScheduleCounts(masks, this.resolved.stepsPerBlock);
  }

  private finish(): GenerationResult {
    const wallTimeMs = this.t0 < 0 ? 0 : performance.now() - this.t0;
    const tokens = this.canvas.slice(this.request.prompt.length); // (genLength,)
    let contentTokens = 0;
    for (const t of tokens) if (t !== this.model.eosId) contentTokens++;
    const committed = this.records.reduce((a, r) => a + r.positions.length, 0);
    return {
      canvas: this.canvas,
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

/** Confidence of each reported position under the strategy (DESIGN §3); (n,) float64. */
function confidences(strategy: Strategy, res: ForwardResult, positions: Int32Array, seed: number, forwardIndex: number): Float64Array {
  const n = positions.length;
  if (strategy.kind === 'fixed' && strategy.remasking === 'random') {
    return Float64Array.from(positions, (p) => counterUniform(seed, forwardIndex, p, LANE_REMASK_RANDOM));
  }
  if (strategy.kind === 'dream') {
    if (strategy.alg === 'entropy') return Float64Array.from(res.entropy!.subarray(0, n), (h) => -h);
    if (strategy.alg === 'topk_margin') return Float64Array.from({ length: n }, (_, i) => res.top1Probs![i] - res.top2Probs![i]);
  }
  return res.probs;
}

function checkResult(req: StepRequest, res: ForwardResult): void {
  const n = req.positions.length;
  if (res?.tokens?.length !== n || res.probs?.length !== n) {
    throw new Error(`the engine returned ${res?.tokens?.length} tokens / ${res?.probs?.length} probs for ${n} positions`);
  }
  if (req.want?.top2 && (res.top1Probs?.length !== n || res.top2Probs?.length !== n)) throw new Error('the engine omitted the top-2 report');
  if (req.want?.entropy && res.entropy?.length !== n) throw new Error('the engine omitted the entropy report');
}

function maskedIn(canvas: Int32Array, start: number, end: number, maskId: number): Int32Array {
  const out: number[] = [];
  for (let p = start; p < end; p++) if (canvas[p] === maskId) out.push(p);
  return Int32Array.from(out);
}

/** True when [from, to) holds an EOS and every position after the first EOS in it is EOS. */
function onlyEosAfterFirstEos(canvas: Int32Array, from: number, to: number, eosId: number): boolean {
  let p = from;
  while (p < to && canvas[p] !== eosId) p++;
  if (p === to) return false;
  for (; p < to; p++) if (canvas[p] !== eosId) return false;
  return true;
}

function choose(
  strategy: Strategy,
  positions: Int32Array,
  conf: Float64Array,
  step: number,
  cfg: ResolvedRequest,
  schedule: Int32Array,
  masks: number,
  forwardIndex: number,
): Int32Array {
  switch (strategy.kind) {
    case 'fixed':
      // Steps past the budget cannot happen (the counts sum to the block's masks); guard with "all".
      return selectFixed(positions, conf, step < schedule.length ? schedule[step] : masks);
    case 'threshold':
      return selectThreshold(positions, conf, strategy.threshold ?? 0.9);
    case 'factor':
      return selectFactor(positions, conf, strategy.factor ?? 1, { factorLastRankQuirk: strategy.factorLastRankQuirk });
    case 'dream': {
      if (strategy.threshold !== undefined) return selectThreshold(positions, conf, strategy.threshold);
      // Under a cache, step 0 was the first-position commit; the schedule continues at step 1 of n, and a
      // block whose budget is spent finishes in one last step.
      const n = cfg.stepsPerBlock;
      if (strategy.alg === 'origin') {
        const u = Float64Array.from(positions, (p) => counterUniform(cfg.seed, forwardIndex, p, LANE_DREAM_ORIGIN)); // (n,) uniforms
        return selectDreamOrigin(positions, u, dreamOriginProbability(step, n));
      }
      return selectFixed(positions, conf, dreamTransferCount(masks, step, n));
    }
  }
}
