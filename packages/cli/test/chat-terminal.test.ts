/**
 * `fast-dllm chat` as a person uses it: in a terminal, on the bundled model, two questions. What is typed stays on
 * the screen beside the prompt, the second question is answered as well as the first, and Ctrl-C ends the chat.
 */
import { afterEach, describe, expect, it } from 'vitest';
import { Terminal, noTmux } from './tty.js';

let term: Terminal | undefined;
afterEach(() => term?.close());

describe.skipIf(noTmux !== null)(`chat in a terminal${noTmux ? ` (skipped: ${noTmux})` : ''}`, () => {
  it('echoes each question after "> " and answers both; Ctrl-C stops it', async () => {
    term = new Terminal(['chat', '--engine', 'wasm'], { cols: 200 });
    await term.waitFor(/^>$/m);
    term.type('What is 23 + 48 ?');
    await term.waitFor(/answer: 71\n>$/m);
    term.type('What is 60 + 42 ?');
    const s = await term.waitFor(/answer: 102\n>$/m);
    const lines = s.split('\n');
    const q1 = lines.indexOf('> What is 23 + 48 ?');
    expect(q1, s).toBeGreaterThanOrEqual(0);
    expect(lines[q1 + 1]).toBe('3 + 8 = 11 carry 1, 2 + 4 + 1 = 7, answer: 71');
    const q2 = lines.indexOf('> What is 60 + 42 ?');
    expect(q2, s).toBeGreaterThan(q1);
    expect(lines[q2 + 1]).toMatch(/^note: this model was trained on single questions/); // said once, at the second turn
    expect(lines[q2 + 2]).toBe('0 + 2 = 2, 6 + 4 = 10 carry 1, answer: 102');
    term.key('C-c');
    await term.waitFor(/\[exit \d+\]/, 10_000);
  });
});
