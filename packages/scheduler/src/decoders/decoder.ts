/**
 * The seam between a Generation (canvas, NFE, step records, events; generation.ts) and a decoding procedure (which
 * forward pass runs next, which positions it commits, when the answer is complete). Two procedures implement it:
 * masked diffusion for LLaDA and Dream (masked.ts, DESIGN §2–4) and block diffusion for Fast-dLLM v2 and SDAR
 * (block.ts, DESIGN §8). A decoder only ever sees its own sequence's results, so it is batch-invariant by design.
 */
import type { ForwardMode, ForwardRequest, ForwardResult } from '@fast-dllm/engine-contract';

/** One forward pass a decoder asks for; the generation adds the canvas copy, the sampling key and the sequence. */
export interface PlannedForward {
  /** The pass sees canvas[0, length): the whole canvas, or (block diffusion) the canvas up to the active block's end. */
  length: number;
  mode: ForwardMode;
  /** Computed span [start, end), absolute positions. */
  start: number;
  end: number;
  /** (n,) positions whose predictions are wanted, ascending (may be empty: a pass that only writes the cache). */
  positions: Int32Array;
  want?: ForwardRequest['want'];
  /** Elastic-Cache (DESIGN §16): the attention report this pass asks for, and a full forward's refresh. */
  attention?: ForwardRequest['attention'];
  refresh?: ForwardRequest['refresh'];
  /** For the step record: the block (0-based, in generation order) and the step inside it. */
  block: number;
  step: number;
  /** A draft canvas (DESIGN §16, draft and verify), (length,) token ids; absent: the generation's own canvas. */
  canvas?: Int32Array;
  /**
   * The 0-based index of the forward this pass stands for in step-by-step decoding, which keys its sampling noise
   * and random remasking; absent: the pass's own NFE index. A verify pass's drafts stand for the steps after it.
   */
  forwardIndex?: number;
}

/** What applying a pass's result did. */
export interface DecoderOutcome {
  /** (k,) positions committed into the canvas by this pass, ascending, and their tokens. */
  positions: Int32Array;
  tokens: Int32Array;
  /** Blocks whose every position is now decoded for good, in order (a `block` event each; early commit may finish several). */
  blocksDone: { index: number; start: number; end: number }[];
  /** The generation is complete: no further pass. */
  done: boolean;
  /** A stop rule ended it before every position up to the cap was decoded. */
  stoppedEarly: boolean;
}

export interface Decoder {
  /**
   * The next pass: one canvas, or (draft and verify, DESIGN §16) several, all `prefix` steps, which the engine runs
   * in one pass. Called only while the generation is not done, and once before each apply.
   */
  plan(): PlannedForward[];
  /**
   * Commits what the pass's results (one per planned canvas, in order) decide into the canvas; forwardIndex is the
   * pass's 0-based NFE index.
   */
  apply(plans: readonly PlannedForward[], results: readonly ForwardResult[], forwardIndex: number): DecoderOutcome;
  /** Generated positions the answer keeps: genLength, or fewer when a stop token cut it (block diffusion). */
  outputLength(): number;
}

export function maskedIn(canvas: Int32Array, start: number, end: number, maskId: number): Int32Array {
  const out: number[] = [];
  for (let p = start; p < end; p++) if (canvas[p] === maskId) out.push(p);
  return Int32Array.from(out);
}

/** Writes the chosen positions' tokens (taken from the result row of each) into the canvas; returns the tokens. */
export function commit(canvas: Int32Array, reported: Int32Array, res: ForwardResult, chosen: Int32Array): Int32Array {
  const tokens = new Int32Array(chosen.length); // (k,) committed token ids
  for (let i = 0, j = 0; i < reported.length && j < chosen.length; i++) {
    if (reported[i] === chosen[j]) {
      tokens[j] = res.tokens[i];
      canvas[chosen[j]] = res.tokens[i];
      j++;
    }
  }
  return tokens;
}
