import { existsSync, readFileSync } from 'node:fs';
import { join } from 'node:path';
import { describe, expect, it } from 'vitest';
import { isEvalPair, loadEvalSet, scoreExactMatch } from '@fast-dllm/default-model';
import { loadTokenizer, readModelConfig } from '@fast-dllm/model';
import { chainEvalPath, chainModelDir } from '../src/index.js';

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

describe('chain model directory', () => {
  it('is a LLaDA checkpoint whose tokenizer writes digits one by one and reads the answers back', async () => {
    for (const f of ['config.json', 'model.safetensors', 'tokenizer.json', 'tokenizer_config.json', 'generation_config.json', 'fast_dllm.json']) {
      expect(existsSync(join(chainModelDir, f)), f).toBe(true);
    }
    const d = await readModelConfig(chainModelDir);
    expect(d.architecture).toBe('llada');
    const tok = await loadTokenizer(chainModelDir);
    const ids = tok.encode('37 , 85 , 03', { addSpecial: false });
    expect(ids.length).toBe(8); // 3 7 , 8 5 , 0 3
    expect(tok.decode(ids, { skipSpecial: true })).toBe('37, 85, 03');
    // The scope file declares the prompts it was trained on (packages/cli/src/scope.ts).
    const scope = JSON.parse(readFileSync(join(chainModelDir, 'fast_dllm.json'), 'utf8'));
    for (const it of loadEvalSet(chainEvalPath)) expect(new RegExp(scope.domain.prompt_pattern).test(it.prompt)).toBe(true);
  });
});
