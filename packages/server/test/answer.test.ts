/**
 * AnswerText: the streamed deltas only grow, never pass a stop string, and join into exactly the final text;
 * the final text is cut at stop strings, max_tokens and the stop token.
 */
import { describe, expect, it } from 'vitest';
import { loadTokenizer } from '@fast-dllm/model';
import { defaultModelDir } from '@fast-dllm/default-model';
import { AnswerText } from '../src/answer.js';

/** A toy vocabulary: id → piece; concatenation is the decoding (byte pieces for the multi-byte cases below). */
const PIECES = ['a', 'b', 'c', ' ', 'S', 'T', 'OP', 'x', '\n', '😀', 'é'];
const concat = (ids: Int32Array) => Array.from(ids, (i) => PIECES[i]).join('');

/** Feeds the ids one commit at a time; returns the deltas and the end. */
function stream(a: AnswerText, ids: number[], stoppedAtEnd: boolean) {
  const deltas: string[] = [];
  for (let n = 1; n <= ids.length; n++) {
    const last = n === ids.length;
    const u = a.update(Int32Array.from(ids.slice(0, n)), last && stoppedAtEnd, false);
    deltas.push(u.delta);
    if (u.end) return { deltas, end: u.end };
  }
  const u = a.update(Int32Array.from(ids), stoppedAtEnd, !stoppedAtEnd);
  deltas.push(u.delta);
  return { deltas, end: u.end };
}

describe('AnswerText', () => {
  it('holds back the last token until the answer is final, then sends the rest', () => {
    const a = new AnswerText(concat, [], 100);
    expect(a.update(Int32Array.of(0), false, false).delta).toBe('');
    expect(a.update(Int32Array.of(0, 1), false, false).delta).toBe('a');
    expect(a.update(Int32Array.of(0, 1), false, false).delta).toBe(''); // nothing new committed
    const u = a.update(Int32Array.of(0, 1, 2), true, false);
    expect(u.delta).toBe('bc');
    expect(u.end).toEqual({ text: 'abc', finishReason: 'stop', completionTokens: 3 });
    expect(a.update(Int32Array.of(0, 1, 2, 3), false, false)).toEqual({ delta: '' }); // ended: nothing more
  });

  it('cuts at the first stop string and never sends a byte of it, even split across tokens', () => {
    // "ab STOP c": the stop string "STOP" arrives as 'S', 'T', 'OP'.
    const ids = [0, 1, 3, 4, 5, 6, 3, 2];
    const a = new AnswerText(concat, ['STOP'], 100);
    const { deltas, end } = stream(a, ids, false);
    expect(end).toEqual({ text: 'ab ', finishReason: 'stop', completionTokens: 3 });
    expect(deltas.join('')).toBe('ab ');
    for (let i = 0; i < deltas.length; i++) expect(deltas.slice(0, i + 1).join('')).not.toMatch(/S/);
  });

  it('releases a held-back stop prefix once the text shows it is not a stop string', () => {
    const a = new AnswerText(concat, ['STOP'], 100);
    const { deltas, end } = stream(a, [0, 4, 5, 7, 1, 1], true); // "aSTxbb": "ST" looked like the start of STOP
    expect(end!.text).toBe('aSTxbb');
    expect(deltas.join('')).toBe('aSTxbb');
    expect(deltas.slice(0, 3).join('')).toBe('a'); // 'S' and 'T' held back while they could start "STOP"
  });

  it('takes the earliest of several stop strings', () => {
    const a = new AnswerText(concat, ['c', 'b'], 100);
    expect(stream(a, [0, 0, 1, 2], true).end).toEqual({ text: 'aa', finishReason: 'stop', completionTokens: 2 });
  });

  it('cuts at max_tokens with finish_reason length, and at the stop token with stop', () => {
    const a = new AnswerText(concat, [], 3);
    const { deltas, end } = stream(a, [0, 1, 2, 0, 1], false);
    expect(end).toEqual({ text: 'abc', finishReason: 'length', completionTokens: 3 });
    expect(deltas.join('')).toBe('abc');
    // Exactly max_tokens tokens and then the stop token: a natural stop.
    expect(stream(new AnswerText(concat, [], 3), [0, 1, 2], true).end).toEqual({ text: 'abc', finishReason: 'stop', completionTokens: 3 });
    // Every position decoded without a stop token: the answer filled its length.
    expect(stream(new AnswerText(concat, [], 10), [0, 1], false).end!.finishReason).toBe('length');
  });

  it('an empty answer ends with empty text', () => {
    const a = new AnswerText((ids) => (ids.length === 0 ? '' : concat(ids)), [], 5);
    expect(a.update(new Int32Array(0), true, false)).toEqual({ delta: '', end: { text: '', finishReason: 'stop', completionTokens: 0 } });
  });

  it('never splits a surrogate pair and holds back U+FFFD of an unfinished multi-byte character', () => {
    // A byte-level decoder: each id is one UTF-8 byte of the text; an unfinished character decodes as U+FFFD.
    const text = 'a😀é b';
    const bytes = [...Buffer.from(text, 'utf8')];
    const decode = (ids: Int32Array) => Buffer.from(Array.from(ids, (i) => bytes[i])).toString('utf8');
    const a = new AnswerText(decode, [], 100);
    const ids = bytes.map((_, i) => i);
    const { deltas, end } = stream(a, ids, true);
    expect(end!.text).toBe(text);
    expect(deltas.join('')).toBe(text);
    for (const d of deltas) {
      expect(d).not.toMatch(/\uFFFD/);
      if (d.length > 0) expect(d.charCodeAt(d.length - 1) >= 0xd800 && d.charCodeAt(d.length - 1) <= 0xdbff).toBe(false);
    }
  });

  it('random answers, stop strings and commit orders: deltas join into the final text, which never holds a stop string', () => {
    let s = 12345;
    const rnd = (n: number) => ((s = (Math.imul(s, 1103515245) + 12345) >>> 0) % n);
    for (let trial = 0; trial < 300; trial++) {
      const ids = Array.from({ length: 1 + rnd(30) }, () => rnd(PIECES.length));
      const stops = Array.from({ length: rnd(3) }, () => concat(Int32Array.from({ length: 1 + rnd(3) }, () => rnd(8))));
      const maxTokens = 1 + rnd(35);
      const stopped = rnd(2) === 0;
      const a = new AnswerText(concat, stops, maxTokens);
      // Commits arrive in jumps of several tokens, as parallel decoding commits them.
      const deltas: string[] = [];
      let end;
      for (let n = 0; n <= ids.length && !end; n += 1 + rnd(4)) {
        const m = Math.min(n, ids.length);
        const last = m === ids.length;
        const u = a.update(Int32Array.from(ids.slice(0, m)), last && stopped, last && !stopped);
        deltas.push(u.delta);
        end = u.end;
      }
      if (!end) {
        const u = a.update(Int32Array.from(ids), stopped, !stopped);
        deltas.push(u.delta);
        end = u.end;
      }
      // Expected, computed independently: cut at max_tokens, then at the earliest stop string.
      let want = concat(Int32Array.from(ids.slice(0, maxTokens)));
      const cuts = stops.map((st) => want.indexOf(st)).filter((i) => i >= 0);
      if (cuts.length) want = want.slice(0, Math.min(...cuts));
      expect(end!.text, JSON.stringify({ ids, stops, maxTokens })).toBe(want);
      expect(deltas.join('')).toBe(want);
      expect(end!.completionTokens).toBeLessThanOrEqual(maxTokens);
    }
  });

  it("the bundled model's tokenizer: decoded prefixes only grow, so the deltas join into the whole answer", async () => {
    const tok = await loadTokenizer(defaultModelDir);
    const decode = (ids: Int32Array) => (ids.length === 0 ? '' : tok.decode(ids, { skipSpecial: true }));
    for (const text of ['7 + 5 = 12 carry 1, 4 + 3 + 1 = 8, answer: 82', '3 + 8 = 11 carry 1, 2 + 4 + 1 = 7, answer: 71', 'answer: 100']) {
      const ids = tok.encode(text);
      const a = new AnswerText(decode, [', 4'], 1000);
      const { deltas, end } = stream(a, ids, true);
      const want = text.includes(', 4') ? text.slice(0, text.indexOf(', 4')) : text;
      expect(end!.text).toBe(want);
      expect(deltas.join('')).toBe(want);
    }
  });
});
