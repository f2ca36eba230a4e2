import { describe, expect, it } from 'vitest';
import {
  dreamTransferCount,
  dreamOriginProbability,
  fixedScheduleCounts,
  partitionBlocks,
  rankCandidates,
  selectDreamOrigin,
  selectFactor,
  selectFixed,
  selectThreshold,
} from '../src/select.js';
import { planForward } from '../src/plan.js';

const pos = (...p: number[]) => Int32Array.from(p);
const arr = (a: Int32Array) => Array.from(a);

describe('blocks and the fixed schedule (DESIGN §2)', () => {
  it('partitions the generation into left-to-right blocks', () => {
    expect(partitionBlocks(3, 8, 4)).toEqual([
      { index: 0, start: 3, end: 7 },
      { index: 1, start: 7, end: 11 },
    ]);
  });
  it('gives floor(m/n) plus one for the first m mod n steps', () => {
    expect(arr(fixedScheduleCounts(10, 4))).toEqual([3, 3, 2, 2]);
    expect(arr(fixedScheduleCounts(8, 4))).toEqual([2, 2, 2, 2]);
    expect(arr(fixedScheduleCounts(2, 4))).toEqual([1, 1, 0, 0]);
    expect(arr(fixedScheduleCounts(7, 1))).toEqual([7]);
  });
});

describe('selection rules (DESIGN §3)', () => {
  it('ranks by confidence descending, ties to the lower position', () => {
    expect(arr(rankCandidates([0.5, 0.9, 0.5, 0.9]))).toEqual([1, 3, 0, 2]);
  });
  it('fixed: the k most confident, returned ascending', () => {
    expect(arr(selectFixed(pos(4, 5, 6, 7), [0.1, 0.8, 0.3, 0.8], 2))).toEqual([5, 7]);
    expect(arr(selectFixed(pos(4, 5, 6, 7), [0.2, 0.2, 0.2, 0.2], 3))).toEqual([4, 5, 6]);
    expect(arr(selectFixed(pos(4, 5), [0.2, 0.3], 0))).toEqual([]);
  });
  it('threshold: everything >= tau, and always the single best', () => {
    expect(arr(selectThreshold(pos(1, 2, 3, 4), [0.95, 0.5, 0.9, 0.89], 0.9))).toEqual([1, 3]);
    // Nothing passes: the most confident one is forced; with a tie, the lower position.
    expect(arr(selectThreshold(pos(1, 2, 3), [0.3, 0.6, 0.6], 0.9))).toEqual([2]);
    expect(arr(selectThreshold(pos(), [], 0.9))).toEqual([]);
  });
  it('factor: the longest prefix with c[r] >= 1 - f/(r+2)', () => {
    // f = 1: thresholds rank1 2/3, rank2 3/4, rank3 4/5.
    expect(arr(selectFactor(pos(0, 1, 2, 3), [0.8, 0.9, 0.76, 0.1], 1))).toEqual([0, 1, 2]);
    // 0.7 at rank 2 misses 3/4: stop there.
    expect(arr(selectFactor(pos(0, 1, 2, 3), [0.7, 0.9, 0.76, 0.1], 1))).toEqual([1, 2]);
    // rank 1 fails (0.6 < 2/3): only the best, even though rank 2 alone would pass a lower bar.
    expect(arr(selectFactor(pos(0, 1, 2), [0.99, 0.6, 0.6], 1))).toEqual([0]);
    // Larger f lowers the bar: f = 2 gives rank1 1/2.
    expect(arr(selectFactor(pos(0, 1, 2), [0.99, 0.6, 0.6], 2))).toEqual([0, 1, 2]);
  });
  it('factor quirk: when only the last rank fails it is taken, and only with the option', () => {
    const c = [0.9, 0.8, 0.1];
    expect(arr(selectFactor(pos(0, 1, 2), c, 1))).toEqual([0, 1]);
    expect(arr(selectFactor(pos(0, 1, 2), c, 1, { factorLastRankQuirk: true }))).toEqual([0, 1, 2]);
    // Two failing ranks: the quirk does not apply.
    expect(arr(selectFactor(pos(0, 1, 2, 3), [0.9, 0.1, 0.1, 0.1], 1, { factorLastRankQuirk: true }))).toEqual([0]);
  });
  it("Dream's transfer counts follow linspace(1, 1e-3, n+1) and the last step takes the rest", () => {
    // n = 4: t = 1, 0.75025, 0.5005, 0.25075, 0.001; step 0: int(8 * (1 - 0.75025)) = 1.
    expect(dreamTransferCount(8, 0, 4)).toBe(1);
    expect(dreamTransferCount(7, 1, 4)).toBe(Math.floor(7 * (1 - 0.5005 / 0.75025)));
    expect(dreamTransferCount(5, 3, 4)).toBe(5);
    expect(dreamOriginProbability(3, 4)).toBe(1);
    expect(arr(selectDreamOrigin(pos(3, 4, 5), [0.1, 0.7, 0.3], 0.5))).toEqual([3, 5]);
  });
});

describe('forward plan per cache mode (DESIGN §4)', () => {
  const b = { start: 4, end: 8 };
  it('none: always full; prefix: full then [s, L); dual: full then [s, e)', () => {
    expect(planForward('none', 2, b, 12)).toEqual({ mode: 'full', start: 0, end: 12 });
    expect(planForward('prefix', 0, b, 12)).toEqual({ mode: 'full', start: 0, end: 12 });
    expect(planForward('prefix', 1, b, 12)).toEqual({ mode: 'prefix', start: 4, end: 12 });
    expect(planForward('dual', 0, b, 12)).toEqual({ mode: 'full', start: 0, end: 12 });
    expect(planForward('dual', 3, b, 12)).toEqual({ mode: 'dual', start: 4, end: 8 });
  });
  it('refreshEvery r: every r-th step inside the block is full', () => {
    const modes = [0, 1, 2, 3, 4].map((s) => planForward('dual', s, b, 12, 2).mode);
    expect(modes).toEqual(['full', 'dual', 'full', 'dual', 'full']);
  });
});
