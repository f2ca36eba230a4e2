import { mkdtempSync, readFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { fileURLToPath } from 'node:url';
import { describe, expect, it } from 'vitest';
import { runCli } from '../../cli/test/run.js';
import { isEvalPair, loadEvalSet, scoreExactMatch } from '@fast-dllm/default-model';

const chainEvalPath = fileURLToPath(new URL('../eval/eval.jsonl', import.meta.url));

/** The task's rule (train/task.py): the first 27 numbers of a, a + b, a + 2b, ... modulo 1000, three digits each. */
const sequence = (a: number, b: number) => Array.from({ length: 27 }, (_, k) => String((a + k * b) % 1000).padStart(3, '0'));

describe('chain model eval set', () => {
  const items = loadEvalSet(chainEvalPath);
  it('has 200 held-out problems whose answers follow the rule and score as whole lists', () => {
    expect(items.length).toBe(200);
    expect(new Set(items.map((x) => x.id)).size).toBe(200);
    for (const it of items) {
      const [a, b] = it.operands;
      expect(it.prompt).toBe(`Count from ${a} by ${b}`);
      expect(it.answer).toBe(sequence(a, b).join(','));
      expect(it.score).toBe('number_list');
      // Every pair is in the held-out partition (the bundled model's hash), so none was trained on.
      expect(isEvalPair(a, b)).toBe(true);
      expect(scoreExactMatch(sequence(a, b).join(', '), it)).toBe(1);
      expect(scoreExactMatch(sequence(a, b).slice(0, 26).join(', '), it)).toBe(0);
    }
  });
});

/**
 * The trained model in this runtime: `fast-dllm bench` on the WASM engine decodes the first held-out problems one
 * token per step (the baseline) and with draft and verify, which must give the same answers in fewer passes.
 */
describe('the trained chain model', () => {
  const model = fileURLToPath(new URL('../model', import.meta.url));
  it('answers held-out problems one token per step; draft and verify gives the same answers in fewer passes', async () => {
    const dir = mkdtempSync(join(tmpdir(), 'chain-model-'));
    const out = join(dir, 'rows.json');
    const r = await runCli(['bench', '--model', model, '--eval', chainEvalPath, '--engine', 'wasm', '--limit', '8', '--gen-length', '128',
      '--block-length', '32', '--rows', 'baseline,draft-verify', '--policies', '--out', out], { timeoutMs: 110_000 });
    expect(r.code, r.stderr).toBe(0);
    const rows = JSON.parse(readFileSync(out, 'utf8')).rows as Array<{ name: string; accuracy: number; nfe: number }>;
    expect(rows.map((x) => x.name)).toEqual(['baseline', '+ draft and verify (4 canvases)']);
    expect(rows[0].accuracy).toBeGreaterThanOrEqual(0.75);
    expect(rows[1].accuracy).toBe(rows[0].accuracy);
    expect(rows[1].nfe).toBeLessThan(rows[0].nfe / 2);
  });

  // Trained on canvases cut short (train/task.py CANVAS), the model answers when a suffix window shows it only 32
  // positions past the block of a 256-position canvas; a model trained on full canvases only ends its answers early
  // there (the first version of this model: 25.5 % on the held-out set).
  it('answers under a suffix window as on the whole canvas', async () => {
    const dir = mkdtempSync(join(tmpdir(), 'chain-model-'));
    const out = join(dir, 'rows.json');
    const r = await runCli(['bench', '--model', model, '--eval', chainEvalPath, '--engine', 'wasm', '--limit', '16', '--gen-length', '256',
      '--block-length', '32', '--threshold', '0.99', '--rows', 'dual-parallel,dual-window', '--policies', '--suffix-window', '32', '--out', out],
    { timeoutMs: 110_000 });
    expect(r.code, r.stderr).toBe(0);
    const rows = JSON.parse(readFileSync(out, 'utf8')).rows as Array<{ name: string; accuracy: number; nfe: number }>;
    expect(rows.map((x) => x.name)).toEqual(['+ dual cache + parallel (threshold 0.99)', '+ dual cache + parallel (threshold 0.99) + suffix window 32']);
    expect(rows[1].accuracy).toBeGreaterThanOrEqual(0.75);
    expect(rows[1].accuracy).toBeGreaterThanOrEqual(rows[0].accuracy - 0.125);
  });
});
