/**
 * DESIGN §9: the committed text of a generation, streamed — one implementation for the CLI, the server and the page.
 *
 * The committed ids only grow (Generation.committed()), but the text of a growing id prefix may still change at its
 * end: a byte-level tokenizer (Qwen's) splits a multi-byte UTF-8 character across tokens, and a prefix that ends
 * inside one decodes to U+FFFD until its last byte arrives; a decoder may also join a token's text with the next
 * one's. So until the ids are final the text of the last committed token is held back, with any trailing U+FFFD
 * and a lone high surrogate; what is left is a prefix of every later text, and the stream only appends.
 */

/** ids → text (special tokens skipped); never called with an empty list. */
export type DecodeIds = (ids: Int32Array) => string;

/**
 * The part of the text of committed `ids` that no later commit can change; with `final` (the ids will not grow:
 * the generation is done or a stop token follows them) the whole text.
 */
export function stableText(decode: DecodeIds, ids: Int32Array, final: boolean): string {
  if (final) return ids.length === 0 ? '' : decode(ids);
  if (ids.length <= 1) return '';
  let text = decode(ids.subarray(0, ids.length - 1)).replace(/\uFFFD+$/, '');
  const last = text.charCodeAt(text.length - 1);
  if (last >= 0xd800 && last <= 0xdbff) text = text.slice(0, -1); // never split a surrogate pair
  return text;
}

/** The text sent so far and the deltas that extend it: the committed-text stream of one generation. */
export class CommittedTextStream {
  private sent = '';
  /**
   * True when the final text did not start with what was already sent (a tokenizer that rewrites its past beyond
   * the last token). The stream cannot take text back; not seen with any tokenizer the project ships or tests.
   */
  diverged = false;

  constructor(private readonly decode: DecodeIds) {}

  /** Everything sent so far. */
  get text(): string {
    return this.sent;
  }

  /**
   * Takes the committed ids (Generation.committed().ids) and whether they are final (committed().stopped, or the
   * generation is done); returns the new text ('' when nothing new is stable).
   */
  update(ids: Int32Array, final: boolean): string {
    const text = stableText(this.decode, ids, final);
    if (!text.startsWith(this.sent)) {
      if (final) this.diverged = true;
      return '';
    }
    const delta = text.slice(this.sent.length);
    this.sent = text;
    return delta;
  }
}

/**
 * The provisional view of a generation's canvas (DESIGN §9), for visualisers: each generated position's token text
 * (special tokens as their text), null while masked. `generated` is the (G,) generated region of the canvas.
 */
export function provisionalTokens(generated: Int32Array, maskId: number, tokenText: (id: number) => string): (string | null)[] {
  return Array.from(generated, (id) => (id === maskId ? null : tokenText(id)));
}
