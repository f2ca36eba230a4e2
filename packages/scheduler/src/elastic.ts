/**
 * Elastic-Cache (arXiv 2510.14973; DESIGN §16) as a cache policy of masked diffusion on top of the dual cache: when
 * to refresh the cache, and from which layer. One generation's decisions read only its own passes' attention
 * reports, so they are batch invariant.
 *
 * The first pass is a full forward; afterwards every step is a dual step over the block, except when the last
 * comparison found drift. Each pass reports, per layer, the key the block's rows attend to most and the attention each
 * row gives it; the next pass reports the attention the rows give that same key. When the two steps computed the same
 * rows, the layers' cosine similarities between the two column vectors are compared with gamma, and the first layer l
 * below it makes the next pass a refresh: a full forward whose layers from l on rewrite every position's K/V while the
 * shallower layers write the block's only (ForwardRequest.refresh). A full or refresh pass sets a new baseline.
 */
import type { AttentionReport, ForwardMode, ForwardRequest } from '@fast-dllm/engine-contract';

/** What one pass of an Elastic-Cache generation is: mode and span, with its attention report and refresh. */
export interface ElasticPass {
  mode: ForwardMode;
  start: number;
  end: number;
  attention: NonNullable<ForwardRequest['attention']>;
  refresh?: ForwardRequest['refresh'];
}

/** Cosine similarity of two (n,) vectors; 1 when either is all zero (no attention to compare). */
export function cosineSimilarity(a: ArrayLike<number>, b: ArrayLike<number>, offset: number, n: number): number {
  let ab = 0, aa = 0, bb = 0;
  for (let i = offset; i < offset + n; i++) {
    ab += a[i] * b[i];
    aa += a[i] * a[i];
    bb += b[i] * b[i];
  }
  return aa === 0 || bb === 0 ? 1 : ab / Math.sqrt(aa * bb);
}

/**
 * The first layer whose similarity falls below gamma, comparing the previous pass's attention on its most-attended
 * keys (`before`, (layers, n)) with this pass's attention on the same keys (`now`, (layers, n)); null when none does.
 */
export function firstDriftLayer(before: Float64Array, now: Float64Array, n: number, gamma: number): number | null {
  const layers = before.length / n;
  for (let l = 0; l < layers; l++) if (cosineSimilarity(before, now, l * n, n) < gamma) return l;
  return null;
}

export class ElasticCachePolicy {
  /** The canvas length the sequence's cache holds (0: no cache yet). */
  private cached = 0;
  /** The last pass's rows and report: the keys the next pass tracks and the attention they had. */
  private baseline: { start: number; end: number; report: AttentionReport } | null = null;
  /** Layer the next pass refreshes from (null: no refresh). */
  private pending: number | null = null;

  constructor(readonly gamma: number, private readonly shiftLogits: boolean) {}

  /**
   * The pass for a block [start, end) on a canvas of length L. A shifted-logits model's rows start one before the
   * block, so that every block position is predicted from the row before it (DESIGN §1) in a dual step too.
   */
  plan(block: { start: number; end: number }, L: number): ElasticPass {
    const start = this.shiftLogits ? block.start - 1 : block.start;
    const end = block.end;
    const b = this.baseline;
    const attention = { start, end, ...(b && this.cached === L ? { keys: b.report.top } : {}) };
    // A cache of another length (the first pass, or a suffix window that grew) is rebuilt by a full forward.
    if (this.cached !== L) return { mode: 'full', start: 0, end: L, attention };
    if (this.pending !== null) return { mode: 'full', start: 0, end: L, attention, refresh: { fromLayer: this.pending, start, end } };
    return { mode: 'dual', start, end, attention };
  }

  /** Takes the pass's attention report: a full pass sets the baseline, a dual step compares with it. */
  observe(pass: ElasticPass, L: number, report: AttentionReport): void {
    const { start, end, keys } = pass.attention;
    const n = end - start;
    if (pass.mode === 'full') {
      this.cached = L;
      this.pending = null;
    } else {
      const b = this.baseline;
      this.pending = b && keys && b.start === start && b.end === end ? firstDriftLayer(b.report.atTop, report.tracked, n, this.gamma) : null;
    }
    this.baseline = { start, end, report };
  }
}
