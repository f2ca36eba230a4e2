/**
 * Block diffusion (Fast-dLLM v2, SDAR; DESIGN §8). Attention is block-causal, so finished blocks never change:
 * their K/V sit in an exact cache that grows one block at a time and is never recomputed.
 *
 *   prefill   (P >= B)  one `full` forward over the prompt's whole blocks [0, s0), s0 = floor(P/B)·B; for v2 with
 *                       P a multiple of B its last row predicts position P, committed at once
 *   block [s, e)        denoising steps over the active block against the cached [0, s), e = min(s + B, P + G):
 *     v2                sub-blocks of b left to right; a `prefix` forward of the block (or, with the block cache,
 *                       an `extend` of the block that keeps its K/V, then `dual` steps over the sub-block); commit
 *                       every masked sub-block position with confidence > τ and always the most confident one
 *     SDAR              n `prefix` steps; step j commits k_j of the fixed schedule of B over n (dynamic: every
 *                       confidence > τ when there are at least k_j)
 *   block end           one `extend` forward of [s, e) writes its K/V (skipped after the last block); v2 commits
 *                       the prediction of its last row for position e at once — it is step 0 of the next block
 *   stop                v2: a committed stop token with no mask before it; SDAR: a finished block holding one.
 *                       The answer is cut after the stop token.
 *   NFE                 one per pass: the prefill (when P >= B), every denoising step, every block-end extend
 *                       (none after the last block). Records: the prefill is step 0 of block 0, a block-end
 *                       extend is step 0 of the block it opens; the `block` event comes when a block has no mask.
 *
 * The canvas a pass sees ends at the active block's end: block-causal attention makes later positions invisible.
 */
import type { ForwardMode, ForwardResult, ModelInfo } from '@fast-dllm/engine-contract';
import { stopIdsOf } from '../stop.js';
import { DEFAULT_THRESHOLD, SDAR_THRESHOLD } from '../recipe.js';
import type { GenerationRequest, ResolvedRequest, Strategy } from '../request.js';
import { fixedScheduleCounts, selectAboveThreshold, selectSdar } from '../select.js';
import { commit, maskedIn, type Decoder, type DecoderOutcome, type PlannedForward } from './decoder.js';

export type BlockStrategy = Extract<Strategy, { kind: 'fast_dllm_v2' | 'sdar' }>;

type Phase = 'prefill' | 'denoise' | 'blockEnd';

export class BlockDiffusionDecoder implements Decoder {
  private readonly strategy: BlockStrategy;
  private readonly P: number;
  /** Canvas end P + G: the cap on new tokens. */
  private readonly capEnd: number;
  private readonly B: number;
  private readonly stop: ReadonlySet<number>;
  private phase: Phase;
  private blockIndex = 0;
  private start = 0; // active block [start, end)
  private end = 0;
  private step = 0; // step inside the active block (records)
  private denoised = 0; // SDAR: denoising steps done in the active block
  private schedule: Int32Array = new Int32Array(0); // SDAR: (n,) k_j, the fixed schedule of B over n steps
  private blockKept = false; // v2 block cache: a whole-block forward kept the active block's K/V
  private output: number;

  constructor(
    private readonly model: ModelInfo,
    request: GenerationRequest,
    private readonly resolved: ResolvedRequest,
    /** (P + G,) token ids, shared with the generation: prompt ++ generated, masks where not yet decoded. */
    private readonly canvas: Int32Array,
  ) {
    this.strategy = request.strategy as BlockStrategy;
    this.P = request.prompt.length;
    this.capEnd = this.P + request.genLength;
    this.output = request.genLength;
    this.B = resolved.blockLength;
    this.stop = new Set(stopIdsOf(model));
    const s0 = Math.floor(this.P / this.B) * this.B;
    this.phase = s0 > 0 ? 'prefill' : 'denoise';
    this.enterBlock(s0);
    if (this.strategy.kind === 'sdar') this.schedule = fixedScheduleCounts(this.B, resolved.stepsPerBlock);
  }

  private get v2(): boolean {
    return this.strategy.kind === 'fast_dllm_v2';
  }

  outputLength(): number {
    return this.output;
  }

  plan(): PlannedForward[] {
    return [this.nextPass()];
  }

  private nextPass(): PlannedForward {
    const { start: s, end: e } = this;
    const none = new Int32Array(0);
    if (this.phase === 'prefill') {
      // The prompt's whole blocks; v2's last row predicts position P when P is a multiple of B.
      const positions = this.v2 && s === this.P ? Int32Array.of(this.P) : none;
      return { length: s, mode: 'full', start: 0, end: s, positions, block: 0, step: 0 };
    }
    if (this.phase === 'blockEnd') {
      // Writes the finished block's K/V; v2's last row predicts the next block's first position.
      return { length: e, mode: 'extend', start: s, end: e, positions: this.v2 ? Int32Array.of(e) : none, block: this.blockIndex + 1, step: 0 };
    }
    const mask = this.model.maskId;
    if (this.strategy.kind === 'sdar') {
      return { length: e, mode: 'prefix', start: s, end: e, positions: maskedIn(this.canvas, s, e, mask), block: this.blockIndex, step: this.step };
    }
    const [a, z] = this.subBlock();
    const positions = maskedIn(this.canvas, a, z, mask);
    let mode: ForwardMode = 'prefix';
    let span = [s, e];
    if (this.strategy.blockCache) {
      // A sub-block-only pass cannot predict its own first position from shifted logits: while that position is
      // masked (or nothing is kept yet) the whole block runs and its K/V are kept (refreshed).
      if (!this.blockKept || this.canvas[a] === mask) mode = 'extend';
      else { mode = 'dual'; span = [a, z]; }
    }
    return { length: e, mode, start: span[0], end: span[1], positions, block: this.blockIndex, step: this.step };
  }

  apply(plans: readonly PlannedForward[], results: readonly ForwardResult[]): DecoderOutcome {
    const plan = plans[0];
    const res = results[0];
    const out: DecoderOutcome = { positions: new Int32Array(0), tokens: new Int32Array(0), blocksDone: [], done: false, stoppedEarly: false };
    const take = (chosen: Int32Array) => {
      out.positions = chosen;
      out.tokens = commit(this.canvas, plan.positions, res, chosen);
    };
    if (this.phase === 'prefill') {
      take(plan.positions); // v2: the next-token step, committed at once
      this.phase = 'denoise';
      this.step = 1;
    } else if (this.phase === 'blockEnd') {
      take(plan.positions);
      this.blockIndex++;
      this.enterBlock(this.end);
      this.phase = 'denoise';
      this.step = 1;
    } else {
      if (plan.mode === 'extend') this.blockKept = true;
      take(this.choose(plan.positions, res.probs));
      this.step++;
    }
    return this.settle(out);
  }

  /** After a commit: the stop rules, the end of the block, the end of the generation. */
  private settle(out: DecoderOutcome): DecoderOutcome {
    const mask = this.model.maskId;
    if (this.v2) {
      // Ends as soon as a stop token is committed and no mask precedes it (DESIGN §8).
      for (let p = this.P; p < this.end && this.canvas[p] !== mask; p++) {
        if (this.stop.has(this.canvas[p])) return this.finish(out, p);
      }
    }
    if (maskedIn(this.canvas, this.start, this.end, mask).length > 0) return out;
    out.blocksDone.push({ index: this.blockIndex, start: this.start, end: this.end });
    if (!this.v2) {
      for (let p = this.P; p < this.end; p++) if (this.stop.has(this.canvas[p])) return this.finish(out, p);
    }
    if (this.end === this.capEnd) {
      out.done = true;
      return out;
    }
    this.phase = 'blockEnd';
    return out;
  }

  /** The answer ends with the stop token at position p. */
  private finish(out: DecoderOutcome, p: number): DecoderOutcome {
    this.output = p + 1 - this.P;
    out.done = true;
    out.stoppedEarly = p + 1 < this.capEnd;
    return out;
  }

  private enterBlock(start: number): void {
    this.start = start;
    this.end = Math.min(start + this.B, this.capEnd);
    this.denoised = 0;
    this.blockKept = false;
  }

  /** The first sub-block [a, z) of the active block that still has a mask (v2). */
  private subBlock(): [number, number] {
    const b = this.resolved.subBlockLength!;
    for (let a = this.start; a < this.end; a += b) {
      const z = Math.min(a + b, this.end);
      for (let p = a; p < z; p++) if (this.canvas[p] === this.model.maskId) return [a, z];
    }
    throw new Error('BlockDiffusionDecoder: no masked sub-block left in the active block');
  }

  private choose(positions: Int32Array, conf: Float64Array): Int32Array {
    const s = this.strategy;
    if (s.kind === 'fast_dllm_v2') return selectAboveThreshold(positions, conf, s.threshold ?? DEFAULT_THRESHOLD);
    const j = this.denoised++;
    // k_j is computed on B (published); clamped to the masks left (a block holding the prompt's tail has fewer).
    const k = j < this.schedule.length ? Math.min(this.schedule[j], positions.length) : positions.length;
    return selectSdar(positions, conf, k, (s.remasking ?? 'low_confidence_dynamic') === 'low_confidence_dynamic', s.threshold ?? SDAR_THRESHOLD);
  }
}
