/**
 * The loading bar and the engine line as a person sees them. On a terminal the bar shows while the engine loads
 * and is erased, and the `engine:` line stands whole on its own line (it was written into the bar and cut at the
 * terminal's width, and the bar stayed after the answer); on a pipe nothing of the bar is written. Without
 * --verbose a skip reason is its cause only, short enough for an 80-column terminal.
 */
import { afterEach, describe, expect, it } from 'vitest';
import { Terminal, noTmux } from './tty.js';
import { runCli } from './run.js';

const ENGINE_LINE = /^engine: (cuda|wasm|reference)(?: \(skipped (.*)\))?$/;
let term: Terminal | undefined;
afterEach(() => term?.close());

describe.skipIf(noTmux !== null)(`generate on a terminal${noTmux ? ` (skipped: ${noTmux})` : ''}`, () => {
  it('the bar is gone after loading; the engine line is whole, on its own line', async () => {
    term = new Terminal(['generate', '--prompt', 'What is 23 + 48 ?'], { cols: 100 });
    const s = await term.waitFor(/\[exit 0\]/);
    const lines = s.split('\n');
    expect(lines[0], s).toBe('decoding: Fast-dLLM (dual cache, threshold 0.9)');
    expect(lines[1], s).toMatch(ENGINE_LINE);
    expect(lines[1].length, s).toBeLessThan(100); // not wrapped: the whole line is on the screen
    expect(lines[2], s).toBe('3 + 8 = 11 carry 1, 2 + 4 + 1 = 7, answer: 71');
    expect(lines[3], s).toMatch(/^nfe 1, /);
    expect(s).not.toMatch(/loading|tensors|█|░/);
  });
});

describe('on a pipe', () => {
  it('nothing of the bar; --verbose gives the skip reasons in full', async () => {
    const r = await runCli(['generate', '--prompt', 'What is 23 + 48 ?']);
    expect(r.code).toBe(0);
    expect(r.stderr).not.toMatch(/loading|tensors|\r|\x1b/);
    const line = r.stderr.split('\n').find((l) => l.startsWith('engine:'))!;
    expect(line).toMatch(ENGINE_LINE);
    const v = await runCli(['generate', '--verbose', '--prompt', 'What is 23 + 48 ?']);
    const full = v.stderr.split('\n').find((l) => l.startsWith('engine:'))!;
    if (line.endsWith('; --verbose for details)')) {
      expect(full.length).toBeGreaterThan(line.length - '; --verbose for details'.length);
      expect(full).not.toMatch(/--verbose for details/);
    } else {
      expect(full).toBe(line); // nothing was cut
    }
    // Where the addon finds no driver, the line leads with that (the CUDA error only with --verbose).
    if (/libcuda/.test(full)) {
      expect(line).toMatch(/^engine: \w+ \(skipped cuda: no NVIDIA driver: libcuda\.so\.1 was not found; --verbose for details\)$/);
      expect(full).toMatch(/skipped cuda: no NVIDIA driver: libcuda\.so\.1 was not found \(cudaError\w+: /);
    }
  });
});
