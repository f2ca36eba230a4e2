/**
 * The answer text of one request as its generation commits tokens (DESIGN §9), cut where OpenAI's semantics cut
 * it: at a stop string, after `max_tokens` tokens, or at the stop token (EOS / end of turn) that the scheduler's
 * committed prefix already stops at.
 *
 * Streaming and non-streaming responses both run through `update`, so they end at the same step with the same
 * text. What `update` returns as `delta` only grows the text that was sent and is never retracted:
 * - the text is the scheduler's stableText of the committed ids (the one committed-text rule of the CLI, the
 *   server and the page: the last token's text, a split multi-byte character, held back until final);
 * - a tail that could be the start of a stop string is held back until the next text shows whether it is one.
 */
import { stableText } from '@fast-dllm/scheduler';

export type FinishReason = 'stop' | 'length';

export interface AnswerEnd {
  /** The whole answer text (what a non-streaming response carries). */
  text: string;
  finishReason: FinishReason;
  /** The answer's tokens (stop token not counted; with a stop string, the tokens its text needs). */
  completionTokens: number;
}

export interface AnswerUpdate {
  /** New text to send; '' when nothing new is stable yet. */
  delta: string;
  /** Set once the answer is final: nothing the generation commits later can change it. */
  end?: AnswerEnd;
}

export class AnswerText {
  private sent = '';
  private ended: AnswerEnd | null = null;
  private lastLength = -1;
  private readonly longestStop: number;
  /** True when the final text did not start with what was already sent (a tokenizer that rewrites its past). */
  diverged = false;

  /**
   * @param decode ids → text, special tokens skipped (an empty list decodes to '').
   * @param stops stop strings, each non-empty.
   * @param maxTokens most answer tokens (OpenAI's max_tokens).
   */
  constructor(
    private readonly decode: (ids: Int32Array) => string,
    private readonly stops: readonly string[],
    private readonly maxTokens: number,
  ) {
    this.longestStop = stops.reduce((m, s) => Math.max(m, s.length), 0);
  }

  get end(): AnswerEnd | null {
    return this.ended;
  }

  /** Text sent so far through deltas. */
  get sentText(): string {
    return this.sent;
  }

  /**
   * @param ids the committed answer ids (Generation.committed(): no mask, cut before the first stop token).
   * @param stoppedByToken a stop token follows `ids` (committed().stopped).
   * @param done the generation decoded every position: `ids` will not grow.
   */
  update(ids: Int32Array, stoppedByToken: boolean, done: boolean): AnswerUpdate {
    if (this.ended) return { delta: '' };
    let n = ids.length;
    let reason: FinishReason | null = null;
    if (n > this.maxTokens) {
      n = this.maxTokens;
      reason = 'length';
    } else if (stoppedByToken) {
      reason = 'stop';
    } else if (done) {
      reason = 'length'; // every position decoded and none was a stop token: the answer filled its length
    }
    if (reason === null && n === this.lastLength) return { delta: '' }; // nothing new committed
    this.lastLength = n;
    const answer = ids.subarray(0, n); // (n,) answer ids

    const final = reason !== null;
    const text = stableText(this.decode, answer, final); // DESIGN §9: what no later commit can change

    const cut = this.firstStop(text);
    if (cut >= 0) return this.finish(text.slice(0, cut), 'stop', this.tokensCovering(answer, cut));
    if (final) return this.finish(text, reason!, n);

    let limit = text.length - this.stopPrefixLength(text);
    if (limit > 0 && isHighSurrogate(text.charCodeAt(limit - 1))) limit--; // a held-back stop prefix may start inside a pair
    if (limit <= this.sent.length || !text.startsWith(this.sent)) return { delta: '' };
    const delta = text.slice(this.sent.length, limit);
    this.sent += delta;
    return { delta };
  }

  private finish(text: string, finishReason: FinishReason, completionTokens: number): AnswerUpdate {
    this.ended = { text, finishReason, completionTokens };
    if (!text.startsWith(this.sent)) {
      // Cannot be retracted; the stream keeps what it sent. Not seen with any tokenizer we ship or test.
      this.diverged = true;
      return { delta: '', end: this.ended };
    }
    const delta = text.slice(this.sent.length);
    this.sent = text;
    return { delta, end: this.ended };
  }

  /** Index of the earliest stop string in text, or -1. */
  private firstStop(text: string): number {
    let best = -1;
    for (const s of this.stops) {
      const i = text.indexOf(s);
      if (i >= 0 && (best < 0 || i < best)) best = i;
    }
    return best;
  }

  /** Length of the longest suffix of text that is a proper prefix of some stop string (it may yet become one). */
  private stopPrefixLength(text: string): number {
    for (let k = Math.min(this.longestStop - 1, text.length); k > 0; k--) {
      const tail = text.slice(text.length - k);
      if (this.stops.some((s) => s.length > k && s.startsWith(tail))) return k;
    }
    return 0;
  }

  /** Fewest leading ids whose text reaches `chars` characters (the tokens a text cut at `chars` needs). */
  private tokensCovering(ids: Int32Array, chars: number): number {
    let lo = 0;
    let hi = ids.length;
    while (lo < hi) {
      const mid = (lo + hi) >> 1;
      if (this.decode(ids.subarray(0, mid)).length >= chars) hi = mid;
      else lo = mid + 1;
    }
    return lo;
  }
}

function isHighSurrogate(c: number): boolean {
  return c >= 0xd800 && c <= 0xdbff;
}
