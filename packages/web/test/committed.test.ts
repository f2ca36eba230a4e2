// SPEC §9 streaming: the committed text is the decoded longest mask-free prefix, cut at the first stop token,
// and a stream of it never retracts.
import { describe, expect, it } from 'vitest';
import { CommittedText, committedPrefix } from '../src/shared/committed.js';

const M = 9; // mask id
const EOS = 1;
const EOT = 2;

describe('committedPrefix', () => {
  it('is the mask-free prefix, cut at the first EOS or end-of-turn', () => {
    expect(committedPrefix([M, 4, 4], M, [EOS, EOT])).toEqual({ length: 0, stopped: false });
    expect(committedPrefix([4, 5, M, 6], M, [EOS, EOT])).toEqual({ length: 2, stopped: false });
    expect(committedPrefix([4, 5, 6], M, [EOS, EOT])).toEqual({ length: 3, stopped: false });
    expect(committedPrefix([4, EOT, M, 6], M, [EOS, EOT])).toEqual({ length: 1, stopped: true });
    expect(committedPrefix([4, M, EOS], M, [EOS, EOT])).toEqual({ length: 1, stopped: false }); // a mask before the stop
    expect(committedPrefix([EOS, 4], M, [EOS, EOT])).toEqual({ length: 0, stopped: true });
  });
});

describe('CommittedText', () => {
  it('sends each growth once and never retracts', () => {
    const c = new CommittedText();
    expect(c.update('')).toBe('');
    expect(c.update('3 +')).toBe('3 +');
    expect(c.update('3 +')).toBe('');
    expect(c.update('3 + 8 =')).toBe(' 8 =');
    expect(c.update('3 - 8 = 11')).toBe(''); // would change what was sent: held back
    expect(c.text).toBe('3 + 8 =');
    expect(c.update('3 + 8 = 11')).toBe(' 11');
  });

  it('holds back a trailing incomplete character until the next token completes it, and flushes it at the end', () => {
    const c = new CommittedText();
    expect(c.update('caf\uFFFD')).toBe('caf');
    expect(c.update('café')).toBe('é');
    expect(c.update('café \uFFFD')).toBe(' ');
    expect(c.finish('café \uFFFD')).toBe('\uFFFD');
    expect(c.text).toBe('café \uFFFD');
  });
});
