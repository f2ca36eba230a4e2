/**
 * Masked diffusion (LLaDA, Dream; DESIGN §2–4): the canvas prompt ++ [MASK] * genLength is decoded in
 * semi-autoregressive blocks; each step is a full, prefix or dual forward (the approximate cache plan, plan.ts) and
 * commits the masked in-block positions the strategy picks. DESIGN §16's policies compose with that: a suffix
 * window shortens the canvas a pass sees, EB-Sampler is one more selection rule, early commit may take every
 * masked position a full forward sees at once, Elastic-Cache (elastic.ts) plans the cache instead of planForward, and
 * draft and verify sends canvases drafted from the last result beside the real one and keeps what they confirm.
 */
import type { ForwardResult, ModelInfo } from '@fast-dllm/engine-contract';
import { planForward } from '../plan.js';
import type { GenerationRequest, ResolvedRequest, Strategy } from '../request.js';
import { LANE_DREAM_ORIGIN, LANE_REMASK_RANDOM, counterUniform } from '@fast-dllm/engine-contract';
import {
  DEFAULT_ENTROPY_BOUND, dreamOriginProbability, dreamTransferCount, earlyCommitGap, fixedScheduleCounts, meanLogGap, partitionBlocks, selectDreamOrigin,
  selectEntropyBound, selectFactor, selectFixed, selectThreshold, type Block,
} from '../select.js';
import { commit, maskedIn, type Decoder, type DecoderOutcome, type PlannedForward } from './decoder.js';
import { ElasticCachePolicy, type ElasticPass } from '../elastic.js';

/** The strategies of masked diffusion. */
export type MaskedStrategy = Extract<Strategy, { kind: 'fixed' | 'threshold' | 'factor' | 'dream' | 'entropy_bound' }>;

interface MaskedPlan extends PlannedForward {
  /** Dream under a cache: the block's full forward commits only its first position (DESIGN §4). */
  dreamFirst: boolean;
  /** Early commit: this full forward reports every masked position it sees, the block's and those after it. */
  lookAhead: boolean;
  /** Draft and verify: the drafted step that made this canvas from the one before it in the pass. */
  draft?: { positions: Int32Array; tokens: Int32Array };
  /** Elastic-Cache: the policy's pass (its attention report is handed back to the policy). */
  elastic?: ElasticPass;
}

export class MaskedDiffusionDecoder implements Decoder {
  private readonly strategy: MaskedStrategy;
  private readonly blocks: Block[];
  private readonly want: PlannedForward['want'];
  private blockIndex = 0;
  private step = 0;
  private masks = 0; // masks left in the current block
  private schedule: Int32Array = new Int32Array(0); // (stepsPerBlock,) fixed-schedule k per step
  private stepForwards = 0; // forwards step-by-step decoding would have spent so far (draft and verify)
  /** Draft and verify: the last result kept, on the block it came from; the next drafts are read from it. */
  private last: { block: number; positions: Int32Array; res: ForwardResult } | null = null;
  /** DESIGN §16's Elastic-Cache, when the request asks for it: it plans the cache instead of planForward. */
  private readonly elastic: ElasticCachePolicy | null;

  constructor(
    private readonly model: ModelInfo,
    private readonly request: GenerationRequest,
    private readonly resolved: ResolvedRequest,
    /** (P + genLength,) token ids, shared with the generation: prompt ++ generated, masks where not yet decoded. */
    private readonly canvas: Int32Array,
  ) {
    this.strategy = request.strategy as MaskedStrategy;
    this.blocks = partitionBlocks(request.prompt.length, request.genLength, resolved.blockLength);
    const s = this.strategy;
    const top2 = (s.kind === 'dream' && s.alg === 'topk_margin') || resolved.earlyCommit;
    const entropy = (s.kind === 'dream' && s.alg === 'entropy') || s.kind === 'entropy_bound';
    this.want = top2 || entropy ? { ...(top2 ? { top2 } : {}), ...(entropy ? { entropy } : {}) } : undefined;
    this.elastic = resolved.elasticCache !== undefined ? new ElasticCachePolicy(resolved.elasticCache, model.shiftLogits) : null;
    this.enterBlock();
  }

  outputLength(): number {
    return this.request.genLength;
  }

  plan(): MaskedPlan[] {
    const first = this.planStep(this.canvas, this.step);
    const K = this.resolved.draftVerify;
    return K === undefined ? [first] : this.draftPlans(first, K);
  }

  /** The pass step-by-step decoding runs on `canvas` at step `step` of the current block. */
  private planStep(canvas: Int32Array, step: number): MaskedPlan {
    const block = this.blocks[this.blockIndex];
    const { cache, refreshEvery, suffixWindow, earlyCommit } = this.resolved;
    // The suffix window: the same length for every pass of a block, so a dual step matches the cache its block's
    // full forward wrote (the contract's C = L).
    const L = suffixWindow === undefined ? canvas.length : Math.min(canvas.length, block.end + suffixWindow);
    // Elastic-Cache plans the cache instead of planForward (it needs the dual cache, which draft and verify refuses,
    // so this runs once per pass).
    const elastic = this.elastic?.plan(block, L);
    const span = elastic ?? planForward(cache, step, block, L, refreshEvery);
    // Keyed on the model's shifted logits, not on the strategy: the cached window would give the block's
    // first position its own, unshifted row. (Elastic-Cache's dual rows start one before the block instead.)
    const dreamFirst = !elastic && this.model.shiftLogits && cache !== 'none' && step === 0 && canvas[block.start] === this.model.maskId;
    const lookAhead = earlyCommit && span.mode === 'full' && !dreamFirst;
    const positions = dreamFirst ? Int32Array.of(block.start) : maskedIn(canvas, block.start, lookAhead ? L : block.end, this.model.maskId); // (n,) ascending
    return {
      length: L, mode: span.mode, start: span.start, end: span.end, positions,
      ...(this.want && !dreamFirst ? { want: this.want } : {}),
      ...(elastic ? { attention: elastic.attention, ...(elastic.refresh ? { refresh: elastic.refresh } : {}), elastic } : {}),
      block: block.index, step, dreamFirst, lookAhead,
    };
  }

  /**
   * Draft and verify (DESIGN §16, FreeDave): the canvas, then up to K - 1 canvases each one step further, the step
   * the rule takes on the last result as if it still held. Every canvas is a `prefix` step (no cache: prefix steps
   * from position 0), so the engine runs them in one pass against the same cache. Drafts stay inside the block and
   * stop before a step that must rebuild the cache (a block's first step or a refresh).
   */
  private draftPlans(first: MaskedPlan, K: number): MaskedPlan[] {
    first.forwardIndex = this.stepForwards;
    const last = this.last;
    const block = this.blocks[this.blockIndex];
    const none = this.resolved.cache === 'none';
    if (!last || last.block !== block.index || first.dreamFirst || (!none && first.mode !== 'prefix')) return [first];
    const plans = [first];
    for (let j = 1, cur = first; j < K; j++) {
      const positions = cur.positions; // (n,) the block's masks in cur's canvas, all reported by the last result
      const stale = restrictResult(last.res, last.positions, positions);
      if (!stale) break; // the last result did not report every mask left (Dream's first-position pass)
      const fi = this.stepForwards + j - 1;
      const chosen = this.decide(cur, stale, fi, positions.length); // the rule, as apply runs it on cur's real result
      if (chosen.length >= positions.length) break; // the draft would finish the block: nothing left to verify there
      const canvas = (cur.canvas ?? this.canvas).slice(); // (P + genLength,) cur's canvas and the drafted step
      const tokens = commit(canvas, positions, stale, chosen);
      const next = this.planStep(canvas, this.step + j);
      if (!none && next.mode !== 'prefix') break;
      next.canvas = canvas;
      next.forwardIndex = fi + 1;
      next.draft = { positions: chosen, tokens };
      plans.push(next);
      cur = next;
    }
    if (plans.length > 1 && none) for (const p of plans) p.mode = 'prefix'; // [0, L) without writing the cache
    return plans;
  }

  apply(plans: readonly PlannedForward[], results: readonly ForwardResult[], forwardIndex: number): DecoderOutcome {
    const { elastic } = plans[0] as MaskedPlan;
    if (elastic) this.elastic!.observe(elastic, plans[0].length, results[0].attention!);
    const block = this.blocks[this.blockIndex];
    // Verify: canvas j + 1 holds a draft of the step canvas j's result decides; keep going while they agree.
    const kept: { positions: Int32Array; tokens: Int32Array }[] = [];
    let j = 0;
    for (;; j++) {
      const plan = plans[j] as MaskedPlan;
      const chosen = this.decide(plan, results[j], plan.forwardIndex ?? forwardIndex, j === 0 ? this.masks : countBelow(plan.positions, block.end));
      const next = plans[j + 1] as MaskedPlan | undefined;
      if (next?.draft && sameStep(next.draft, chosen, plan.positions, results[j])) {
        kept.push(next.draft);
        continue;
      }
      for (const d of kept) for (let i = 0; i < d.positions.length; i++) this.canvas[d.positions[i]] = d.tokens[i];
      kept.push({ positions: chosen, tokens: commit(this.canvas, plan.positions, results[j], chosen) });
      break;
    }
    const steps = j + 1; // the step-by-step forwards this pass stood for
    if (this.resolved.draftVerify !== undefined) this.last = { block: block.index, positions: plans[j].positions, res: results[j] };
    this.stepForwards += steps;
    const { positions, tokens } = mergeSteps(kept);
    this.masks -= countBelow(positions, block.end);
    this.step += steps;
    const out: DecoderOutcome = { positions, tokens, blocksDone: [], done: false, stoppedEarly: false };
    // A finished block moves on to the next one that still has masks (early commit may have filled some already).
    const P = this.request.prompt.length;
    const L = this.canvas.length;
    while (this.masks === 0) {
      const b = this.blocks[this.blockIndex];
      out.blocksDone.push({ index: b.index, start: b.start, end: b.end });
      if (this.request.earlyStop && b.end < L && onlyEosAfterFirstEos(this.canvas, P, b.end, this.model.eosId)) {
        this.canvas.fill(this.model.eosId, b.end);
        out.stoppedEarly = true;
        out.done = true;
      } else if (this.blockIndex + 1 < this.blocks.length) {
        this.blockIndex++;
        this.enterBlock();
        continue;
      } else {
        out.done = true;
      }
      break;
    }
    return out;
  }

  /** The positions one pass's result commits (ascending), under the rule, at the plan's step with `masks` left in the block. */
  private decide(plan: MaskedPlan, res: ForwardResult, forwardIndex: number, masks: number): Int32Array {
    const block = this.blocks[this.blockIndex];
    const { stepsPerBlock } = this.resolved;
    if (plan.dreamFirst) {
      // The fixed schedule then spreads the remaining masks over the remaining steps (step j uses index j).
      if (stepsPerBlock > 1) this.schedule = Int32Array.of(0, ...fixedScheduleCounts(this.masks - 1, stepsPerBlock - 1));
      return plan.positions;
    }
    if (plan.lookAhead && this.commitsEarly(res)) return plan.positions;
    // The rule sees the block's positions only: under early commit the pass reported those after it too.
    const n = plan.lookAhead ? countBelow(plan.positions, block.end) : plan.positions.length;
    const inBlock = n === plan.positions.length ? res : sliceResult(res, n);
    const positions = plan.positions.subarray(0, n); // (n,) the block's masked positions, ascending
    const conf = confidences(this.strategy, inBlock, positions, this.resolved.seed, forwardIndex);
    return choose(this.strategy, positions, conf, inBlock, plan.step, this.resolved, this.schedule, masks, forwardIndex);
  }

  /**
   * Prophet's test (DESIGN §16): the mean top-1/top-2 log gap over every masked position the pass reported against
   * the schedule's gap for the share of the answer decoded so far.
   */
  private commitsEarly(res: ForwardResult): boolean {
    const P = this.request.prompt.length;
    let left = 0;
    for (let p = P; p < this.canvas.length; p++) if (this.canvas[p] === this.model.maskId) left++;
    const progress = 1 - left / this.request.genLength;
    return meanLogGap(res.top1Probs!, res.top2Probs!) >= earlyCommitGap(progress);
  }

  private enterBlock(): void {
    const block = this.blocks[this.blockIndex];
    let masks = 0;
    for (let p = block.start; p < block.end; p++) if (this.canvas[p] === this.model.maskId) masks++;
    this.masks = masks;
    this.step = 0;
    this.schedule = fixedScheduleCounts(masks, this.resolved.stepsPerBlock);
  }
}

/** Confidence of each reported position under the strategy (DESIGN §3); (n,) float64. */
function confidences(strategy: MaskedStrategy, res: ForwardResult, positions: Int32Array, seed: number, forwardIndex: number): Float64Array {
  const n = positions.length;
  if (strategy.kind === 'fixed' && strategy.remasking === 'random') {
    return Float64Array.from(positions, (p) => counterUniform(seed, forwardIndex, p, LANE_REMASK_RANDOM));
  }
  if (strategy.kind === 'entropy_bound') return Float64Array.from(res.entropy!.subarray(0, n), (h) => -h);
  if (strategy.kind === 'dream') {
    if (strategy.alg === 'entropy') return Float64Array.from(res.entropy!.subarray(0, n), (h) => -h);
    if (strategy.alg === 'topk_margin') return Float64Array.from({ length: n }, (_, i) => res.top1Probs![i] - res.top2Probs![i]);
  }
  return res.probs;
}

/** True when [from, to) holds an EOS and every position after the first EOS in it is EOS. */
function onlyEosAfterFirstEos(canvas: Int32Array, from: number, to: number, eosId: number): boolean {
  let p = from;
  while (p < to && canvas[p] !== eosId) p++;
  if (p === to) return false;
  for (; p < to; p++) if (canvas[p] !== eosId) return false;
  return true;
}

/** How many of the ascending (n,) positions are below `end`. */
function countBelow(positions: Int32Array, end: number): number {
  let n = 0;
  while (n < positions.length && positions[n] < end) n++;
  return n;
}

/**
 * The reports of `res` (for the ascending `from` positions) at the ascending `to` positions; null when `to` is not a
 * subset of `from` (Dream's first-position pass reports that position only).
 */
function restrictResult(res: ForwardResult, from: Int32Array, to: Int32Array): ForwardResult | null {
  const idx = new Int32Array(to.length); // (m,) index into `from` of each wanted position
  for (let i = 0, k = 0; i < to.length; i++) {
    while (k < from.length && from[k] < to[i]) k++;
    if (k === from.length || from[k] !== to[i]) return null;
    idx[i] = k;
  }
  const pick = (a: Float64Array) => Float64Array.from(idx, (k) => a[k]);
  return {
    tokens: Int32Array.from(idx, (k) => res.tokens[k]), probs: pick(res.probs),
    ...(res.top1Probs ? { top1Probs: pick(res.top1Probs) } : {}),
    ...(res.top2Probs ? { top2Probs: pick(res.top2Probs) } : {}),
    ...(res.entropy ? { entropy: pick(res.entropy) } : {}),
  };
}

/** Whether the rule's `chosen` positions, with the tokens `res` proposes there, are exactly the drafted step. */
function sameStep(draft: { positions: Int32Array; tokens: Int32Array }, chosen: Int32Array, reported: Int32Array, res: ForwardResult): boolean {
  if (draft.positions.length !== chosen.length) return false;
  for (let i = 0, k = 0; i < chosen.length; i++) {
    if (draft.positions[i] !== chosen[i]) return false;
    while (k < reported.length && reported[k] !== chosen[i]) k++; // chosen ⊆ reported
    if (res.tokens[k] !== draft.tokens[i]) return false;
  }
  return true;
}

/** Several steps' commits as one ascending list of positions with their tokens. */
function mergeSteps(steps: { positions: Int32Array; tokens: Int32Array }[]): { positions: Int32Array; tokens: Int32Array } {
  if (steps.length === 1) return steps[0];
  const pairs = steps.flatMap((s) => Array.from(s.positions, (p, i) => [p, s.tokens[i]] as const)).sort((a, b) => a[0] - b[0]);
  return { positions: Int32Array.from(pairs, (x) => x[0]), tokens: Int32Array.from(pairs, (x) => x[1]) };
}

/** The reports of a result's first n positions. */
function sliceResult(res: ForwardResult, n: number): ForwardResult {
  return {
    tokens: res.tokens.subarray(0, n), probs: res.probs.subarray(0, n),
    ...(res.top1Probs ? { top1Probs: res.top1Probs.subarray(0, n) } : {}),
    ...(res.top2Probs ? { top2Probs: res.top2Probs.subarray(0, n) } : {}),
    ...(res.entropy ? { entropy: res.entropy.subarray(0, n) } : {}),
  };
}

function choose(
  strategy: MaskedStrategy,
  positions: Int32Array,
  conf: Float64Array,
  res: ForwardResult,
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
    case 'entropy_bound':
      return selectEntropyBound(positions, res.entropy!, strategy.gamma ?? DEFAULT_ENTROPY_BOUND);
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
