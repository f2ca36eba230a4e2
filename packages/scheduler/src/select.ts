/**
 * The pure pieces of DESIGN §2–3: block partitioning, the fixed schedule and the token-selection rules.
 * Every rule takes candidates as parallel arrays (absolute positions ascending, one confidence each) and
 * returns the chosen positions ascending. Ranking is by confidence descending, ties to the lower position.
 */

export interface Block {
  index: number;
  /** Absolute canvas positions [start, end). */
  start: number;
  end: number;
}

/** Splits the generation [promptLength, promptLength + genLength) into blocks of blockLength. */
export function partitionBlocks(promptLength: number, genLength: number, blockLength: number): Block[] {
  const blocks: Block[] = [];
  for (let b = 0; b * blockLength < genLength; b++) {
    const start = promptLength + b * blockLength;
    blocks.push({ index: b, start, end: Math.min(start + blockLength, promptLength + genLength) });
  }
  return blocks;
}

/** DESIGN §2: with m masks and n steps, step j unmasks floor(m/n) plus one for the first m mod n steps. (n,) counts. */
export function fixedScheduleCounts(masks: number, steps: number): Int32Array {
  const counts = new Int32Array(steps); // (steps,) tokens to unmask at each step
  const base = Math.floor(masks / steps);
  const extra = masks % steps;
  for (let j = 0; j < steps; j++) counts[j] = base + (j < extra ? 1 : 0);
  return counts;
}

/** Candidate indices sorted by confidence descending, ties to the lower position (positions are ascending). */
export function rankCandidates(confidences: ArrayLike<number>): Int32Array {
  const order = Int32Array.from({ length: confidences.length }, (_, i) => i); // (n,) candidate indices
  // Stable sort keeps the ascending-position order among equal confidences.
  const sorted = Array.from(order).sort((a, b) => {
    const ca = confidences[a];
    const cb = confidences[b];
    return ca === cb ? a - b : cb > ca ? 1 : -1;
  });
  return Int32Array.from(sorted);
}

function pick(positions: Int32Array, ranked: Int32Array, count: number): Int32Array {
  const out = Int32Array.from(ranked.subarray(0, count), (i) => positions[i]);
  return out.sort();
}

/** Fixed schedule: the k most confident candidates. */
export function selectFixed(positions: Int32Array, confidences: ArrayLike<number>, k: number): Int32Array {
  const ranked = rankCandidates(confidences);
  return pick(positions, ranked, Math.min(k, positions.length));
}

/** Threshold rule: every candidate with confidence >= tau, and always the single most confident one. */
export function selectThreshold(positions: Int32Array, confidences: ArrayLike<number>, tau: number): Int32Array {
  if (positions.length === 0) return new Int32Array(0);
  const ranked = rankCandidates(confidences);
  let count = 1; // the always-one rule
  while (count < ranked.length && confidences[ranked[count]] >= tau) count++;
  return pick(positions, ranked, count);
}

export interface FactorOptions {
  /**
   * The reference implementation's quirk: when every rank passes except the very last one, the last is
   * taken too. Off by default (DESIGN §3); offered only to reproduce reference runs.
   */
  factorLastRankQuirk?: boolean;
}

/** Factor rule: the longest prefix of ranks r with c[r] >= 1 - f/(r+2) (rank 0 always passes). */
export function selectFactor(
  positions: Int32Array,
  confidences: ArrayLike<number>,
  factor: number,
  options: FactorOptions = {},
): Int32Array {
  const n = positions.length;
  if (n === 0) return new Int32Array(0);
  const ranked = rankCandidates(confidences);
  let count = 1;
  while (count < n && confidences[ranked[count]] >= 1 - factor / (count + 2)) count++;
  if (options.factorLastRankQuirk && count === n - 1 && n >= 2) count = n;
  return pick(positions, ranked, count);
}

/** Dream's step schedule t = linspace(1, eps, n+1) (eps = 1e-3); (n+1,) float64. */
export function dreamTimesteps(steps: number, eps = 1e-3): Float64Array {
  const t = new Float64Array(steps + 1); // (steps+1,) diffusion times, 1 down to eps
  for (let i = 0; i <= steps; i++) t[i] = 1 + (eps - 1) * (i / steps);
  return t;
}

/**
 * Dream's number_transfer_tokens: at step j of n with `masks` masks left, int(masks * (1 - s/t)) with
 * t = timesteps[j], s = timesteps[j+1]; the last step (j >= n-1) takes every remaining mask.
 */
export function dreamTransferCount(masks: number, step: number, steps: number): number {
  if (step >= steps - 1) return masks;
  const ts = dreamTimesteps(steps);
  return Math.floor(masks * (1 - ts[step + 1] / ts[step]));
}

/** Dream's `origin` transfer probability at step j of n: 1 - s/t, and 1 at the last step. */
export function dreamOriginProbability(step: number, steps: number): number {
  if (step >= steps - 1) return 1;
  const ts = dreamTimesteps(steps);
  return 1 - ts[step + 1] / ts[step];
}

/** Dream `origin`: each candidate is unmasked when its uniform draw is below p (draws parallel to positions). */
export function selectDreamOrigin(positions: Int32Array, uniforms: ArrayLike<number>, p: number): Int32Array {
  const out: number[] = [];
  for (let i = 0; i < positions.length; i++) if (uniforms[i] < p) out.push(positions[i]);
  return Int32Array.from(out);
}

/**
 * Fast-dLLM v2's rule (DESIGN §8): every candidate with confidence strictly > tau, and always the single most
 * confident one (so tau = 1 commits one token per step).
 */
export function selectAboveThreshold(positions: Int32Array, confidences: ArrayLike<number>, tau: number): Int32Array {
  if (positions.length === 0) return new Int32Array(0);
  const ranked = rankCandidates(confidences);
  let count = 1; // the always-one rule
  while (count < ranked.length && confidences[ranked[count]] > tau) count++;
  return pick(positions, ranked, count);
}

/**
 * SDAR's rules (DESIGN §8) at a step that must commit k tokens: `dynamic` commits every candidate with confidence
 * strictly > tau when there are at least k of them, else (and always for static) the k most confident.
 */
export function selectSdar(positions: Int32Array, confidences: ArrayLike<number>, k: number, dynamic: boolean, tau: number): Int32Array {
  if (dynamic) {
    const ranked = rankCandidates(confidences);
    let above = 0;
    while (above < ranked.length && confidences[ranked[above]] > tau) above++;
    if (above >= k) return pick(positions, ranked, above);
  }
  return selectFixed(positions, confidences, k);
}

/** EB-Sampler's entropy bound gamma in nats when the user names none (DESIGN §16). */
export const DEFAULT_ENTROPY_BOUND = 0.1;

/**
 * EB-Sampler's rule (arXiv 2505.24857; DESIGN §16): candidates ranked by entropy ascending (ties to the lower
 * position), the longest prefix whose entropy sum minus its largest entropy is <= gamma; always at least one. The
 * sum minus the largest bounds the error the tokens taken together add over taking the riskiest one alone.
 * (n,) entropies in nats.
 */
export function selectEntropyBound(positions: Int32Array, entropies: ArrayLike<number>, gamma: number): Int32Array {
  if (positions.length === 0) return new Int32Array(0);
  const ranked = rankCandidates(Float64Array.from({ length: entropies.length }, (_, i) => -entropies[i]));
  let sum = entropies[ranked[0]];
  let max = sum;
  let count = 1;
  while (count < ranked.length) {
    const h = entropies[ranked[count]];
    if (sum + h - Math.max(max, h) > gamma) break;
    sum += h;
    max = Math.max(max, h);
    count++;
  }
  return pick(positions, ranked, count);
}

/**
 * Prophet's early-commit schedule (arXiv 2508.19982; DESIGN §16): the mean top-1/top-2 log-probability gap a pass
 * must reach to commit every masked position it sees, by the share of the answer already decoded. Stricter early,
 * when the answer has had least context.
 */
export const EARLY_COMMIT_GAPS: readonly { below: number; gap: number }[] = [
  { below: 1 / 3, gap: 7.5 },
  { below: 2 / 3, gap: 5 },
  { below: Infinity, gap: 2.5 },
];

export function earlyCommitGap(progress: number): number {
  return EARLY_COMMIT_GAPS.find((s) => progress < s.below)!.gap;
}

/** Mean of ln(top1 / top2) over (n,) positions: how far, on average, the best token leads the runner-up. */
export function meanLogGap(top1: ArrayLike<number>, top2: ArrayLike<number>): number {
  if (top1.length === 0) return 0;
  let s = 0;
  // A runner-up that underflowed to 0 counts as the smallest double: a large, finite gap.
  for (let i = 0; i < top1.length; i++) s += Math.log(top1[i]) - Math.log(Math.max(top2[i], Number.MIN_VALUE));
  return s / top1.length;
}
