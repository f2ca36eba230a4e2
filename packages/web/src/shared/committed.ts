/**
 * DESIGN §9 streaming: the committed text of a generation is the decoded longest mask-free prefix of its generated
 * region, cut at the first EOS / end-of-turn token (the scheduler's Generation.committed() gives those ids); it
 * only grows. This class keeps the decoded text from ever retracting.
 */

/**
 * The text already sent to the reader, and the deltas that extend it. A decoder may rewrite the tail of a text as
 * more tokens arrive (a byte-level tokenizer completing a multi-byte character); such a text is held back until
 * it extends what was sent, so the stream never retracts.
 */
export class CommittedText {
  private sent = '';

  get text(): string {
    return this.sent;
  }

  /** Takes the decoded committed prefix; returns the new part ('' when it did not grow or would retract). */
  update(decoded: string): string {
    if (decoded.length <= this.sent.length || !decoded.startsWith(this.sent)) return '';
    // A trailing U+FFFD is an incomplete character that the next token may complete: wait for it.
    const stable = decoded.endsWith('\uFFFD') ? decoded.replace(/\uFFFD+$/, '') : decoded;
    if (stable.length <= this.sent.length) return '';
    const delta = stable.slice(this.sent.length);
    this.sent = stable;
    return delta;
  }

  /** At the end of the generation: the rest, whatever its last character (nothing will complete it). */
  finish(decoded: string): string {
    if (!decoded.startsWith(this.sent)) return '';
    const delta = decoded.slice(this.sent.length);
    this.sent = decoded;
    return delta;
  }
}
