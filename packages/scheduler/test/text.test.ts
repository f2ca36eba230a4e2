// DESIGN §9: the committed-text stream appends only what no later commit can change.
import { describe, expect, it } from 'vitest';
import { CommittedTextStream, provisionalTokens, stableText } from '../src/text.js';

/** A toy byte-level decoder: each id is one UTF-8 byte; an unfinished character decodes as U+FFFD. */
const decode = (ids: Int32Array) => new TextDecoder().decode(Uint8Array.from(ids));
const bytes = (s: string) => Int32Array.from(new TextEncoder().encode(s));

describe('CommittedTextStream', () => {
  it('holds back the last token and a split character until final, then sends the rest; never retracts', () => {
    const ids = bytes('café 🙂');
    const s = new CommittedTextStream(decode);
    let out = '';
    for (let n = 0; n <= ids.length; n++) out += s.update(ids.subarray(0, n), false);
    expect(out).toBe('café '); // the emoji's last byte is the held-back token
    expect(s.update(ids, true)).toBe('🙂');
    expect(s.text).toBe('café 🙂');
    expect(s.diverged).toBe(false);
  });

  it('a decoder that rewrites more than the last token: nothing is taken back, and the stream says it diverged', () => {
    const texts = ['ab', 'abc', 'xbcd'];
    const s = new CommittedTextStream((ids) => texts[ids.length - 1]);
    expect(s.update(Int32Array.of(0, 0), false)).toBe('ab'); // the text of the first id, the second held back
    expect(s.update(Int32Array.of(0, 0, 0), true)).toBe('');
    expect(s.diverged).toBe(true);
    expect(s.text).toBe('ab');
  });

  it('stableText never ends in a lone high surrogate or U+FFFD before the end', () => {
    expect(stableText(decode, bytes('a🙂b').subarray(0, 4), false)).toBe('a');
    expect(stableText(() => 'x\uD83D', Int32Array.of(1, 2), false)).toBe('x');
    expect(stableText(decode, new Int32Array(0), true)).toBe('');
  });

  it('provisionalTokens: null for masks, the token text elsewhere', () => {
    expect(provisionalTokens(Int32Array.of(5, 9, 6), 9, (id) => `<${id}>`)).toEqual(['<5>', null, '<6>']);
  });
});
