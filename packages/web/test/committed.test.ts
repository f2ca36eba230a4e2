// DESIGN §9 streaming: a stream of the committed text never retracts.
import { describe, expect, it } from 'vitest';
import { CommittedText } from '../src/shared/committed.js';

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
