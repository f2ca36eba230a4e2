import { fileURLToPath } from 'node:url';
import { describe, expect, it } from 'vitest';
import { isEvalPair, loadEvalSet, scoreExactMatch } from '@fast-dllm/default-model';

const chainEvalPath = fileURLToPath(new URL('../eval/eval.jsonl', import.meta.url));

/** The task's rule (train/task.py): the first 36 numbers of a, a + b, a + 2b, ... modulo 100, two digits each. */
const sequence = (a: number, b: number) => Array.from({ length: 36 }, (_, k) => String((a + k * b) % 100).padStart(2, '0'));

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
      expect(scoreExactMatch(sequence(a, b).slice(0, 35).join(', '), it)).toBe(0);
    }
  });
});
