import { describe, expect, it } from 'vitest';
import { INVALID, flexibleExtract, normalizeGsm8k, scoreGsm8k, strictMatch } from '../src/eval/score/gsm8k.js';
import { extractMathAnswer, hendrycksNormalize, lastBoxed, mathEquivalent, minervaNormalize, scoreMath } from '../src/eval/score/math.js';
import { dropExampleCode, fencedCode, humanevalProgram, mbppProgram } from '../src/eval/score/code.js';
import { cutAtStop, gsm8kPrompt, mathPrompt, mbppPrompt, STOP_SEQUENCES } from '../src/eval/prompts.js';
import { GSM8K_SHOTS, MATH_SHOTS, MBPP_SHOTS } from '../src/eval/exemplars.js';
import type { HumanEvalProblem, MbppProblem } from '../src/eval/datasets.js';
import { textDecoder } from '../src/eval/command.js';
import type { ModelDir } from '../src/modeldir.js';

describe('GSM8K extraction (strict-match and flexible-extract)', () => {
  it('strict-match reads the number after the first "#### "', () => {
    expect(strictMatch('so she makes 18 dollars.\n#### 18')).toBe('18');
    expect(strictMatch('#### -3.5 and later #### 7')).toBe('-3.5');
    expect(strictMatch('The answer is 18.')).toBe(INVALID);
    expect(strictMatch('####18')).toBe(INVALID); // the harness's regex wants the space
  });

  it('flexible-extract takes the last number-like run, with $ and commas', () => {
    expect(flexibleExtract('He pays $1,200 and then $35.')).toBe('$35.');
    expect(flexibleExtract('first 12 then 7')).toBe('7');
    expect(flexibleExtract('a loss of -40 dollars')).toBe('-40');
    expect(flexibleExtract('no digits here')).toBe(INVALID);
  });

  it('normalises commas, currency, "#### " prefixes and one trailing dot on both sides', () => {
    expect(normalizeGsm8k('$1,234.')).toBe('1234');
    expect(normalizeGsm8k('Step one.\n#### 70,000')).toBe('70000');
    expect(normalizeGsm8k('12.50')).toBe('12.50'); // only a trailing dot goes, not decimals
  });

  it('scores commas and currency in the output against the reference answer', () => {
    const ref = 'He made 200,000-130,000=$<<200000-130000=70000>>70,000\n#### 70000';
    expect(scoreGsm8k('So he made a profit of $70,000.', ref)).toMatchObject({ flexible: '$70,000.', flexibleCorrect: true, strictCorrect: false });
    expect(scoreGsm8k('profit = 70,000\n#### 70,000', ref)).toMatchObject({ strict: '70,000', strictCorrect: true, flexibleCorrect: true });
    expect(scoreGsm8k('#### 70000\nQuestion 2 has 5 parts', ref)).toMatchObject({ strictCorrect: true, flexibleCorrect: false });
    expect(scoreGsm8k('It is 7000.', ref).flexibleCorrect).toBe(false);
    expect(scoreGsm8k('about -18', '#### 18').flexibleCorrect).toBe(false);
  });

  it('the built-in exemplars are well formed: the #### answer is the last calculator result', () => {
    expect(GSM8K_SHOTS).toHaveLength(8);
    for (const s of GSM8K_SHOTS) {
      const calcs = [...s.answer.matchAll(/<<[^=]+=([^>]+)>>/g)].map((m) => m[1]);
      expect(normalizeGsm8k(s.answer)).toBe(calcs[calcs.length - 1]);
    }
  });
});

describe('MATH extraction and equivalence', () => {
  it('lastBoxed balances nested braces and takes the last box', () => {
    expect(lastBoxed('so $\\boxed{\\frac{1}{2}}$')).toBe('\\frac{1}{2}');
    expect(lastBoxed('first \\boxed{1}, then \\boxed{\\sqrt{2}+{3}}')).toBe('\\sqrt{2}+{3}');
    expect(lastBoxed('\\boxed 5$ done')).toBe('5');
    expect(lastBoxed('\\fbox{x^{2}}')).toBe('x^{2}');
    expect(lastBoxed('cut off \\boxed{\\frac{1}{2')).toBeNull();
    expect(lastBoxed('no box')).toBeNull();
  });

  it('prefers the Minerva final-answer sentence, else the last box', () => {
    expect(extractMathAnswer('... $\\boxed{24}$.\nFinal Answer: The final answer is $24$. I hope it is correct.')).toBe('$24$');
    expect(extractMathAnswer('thus \\boxed{\\dfrac{3}{4}}')).toBe('\\dfrac{3}{4}');
    expect(extractMathAnswer('I do not know')).toBeNull();
    expect(extractMathAnswer('Final Answer: The final answer is $7$. ')).toBe('$7$'); // generation cut before "I hope"
  });

  it('\\frac, \\dfrac, \\tfrac and the shorthand \\frac12 are one answer', () => {
    for (const a of ['\\dfrac{1}{2}', '\\tfrac{1}{2}', '\\frac12', '0.5', '1/2', '$\\frac{1}{2}$', '\\frac{1}{2}']) {
      expect(mathEquivalent(a, '\\frac{1}{2}'), a).toBe(true);
    }
    expect(mathEquivalent('\\frac{2}{4}', '\\frac{1}{2}')).toBe(false); // string equivalence, not arithmetic
  });

  it("the harness's cleanups: \\left/\\right, degrees, percent, units, spaces, x =, leading dot, \\sqrt2, thousands", () => {
    expect(hendrycksNormalize('\\left( 0, 2 \\right]')).toBe('(0,2]');
    expect(hendrycksNormalize('90^\\circ')).toBe('90');
    expect(hendrycksNormalize('90^{\\circ}')).toBe('90');
    expect(hendrycksNormalize('25\\%')).toBe('25');
    expect(hendrycksNormalize('10 \\text{ cm}')).toBe('10');
    expect(hendrycksNormalize('x = 5')).toBe('5');
    expect(hendrycksNormalize('.5')).toBe('\\frac{1}{2}');
    expect(hendrycksNormalize('2\\sqrt3')).toBe('2\\sqrt{3}');
    expect(hendrycksNormalize('\\$4.50')).toBe('4.50');
    expect(minervaNormalize('10,000')).toBe('10000');
    expect(minervaNormalize('\\text{(C)}')).toBe('(C)');
    expect(minervaNormalize('5 \\text{ inches}')).toBe('5');
    expect(minervaNormalize('y = \\frac{3}{4}')).toBe('\\frac{3}{4}');
    expect(mathEquivalent('\\$4.50', '4.50')).toBe(true);
    expect(mathEquivalent('45^\\circ', '45')).toBe(true);
    expect(mathEquivalent('\\left(0,2\\right]', '(0, 2]')).toBe(true);
    expect(mathEquivalent('12 \\text{ inches}', '12')).toBe(true);
    expect(mathEquivalent('3', '4')).toBe(false);
    expect(mathEquivalent('(0,2)', '(0,2]')).toBe(false);
  });

  it('scores an output against the reference box', () => {
    const target = lastBoxed('Both are divisible by 2, so $\\frac{6}{8} = \\boxed{\\frac{3}{4}}$.')!;
    expect(scoreMath('Dividing by two, \\boxed{\\dfrac34}.', target)).toEqual({ extracted: '\\dfrac34', correct: true });
    expect(scoreMath('Final Answer: The final answer is $\\frac{3}{4}$. I hope it is correct.', target).correct).toBe(true);
    expect(scoreMath('The answer is 3/4', target)).toEqual({ extracted: null, correct: false });
  });

  it('the built-in Minerva exemplars box the same answer they state', () => {
    expect(MATH_SHOTS).toHaveLength(4);
    for (const s of MATH_SHOTS) expect(mathEquivalent(lastBoxed(s.solution)!, s.answer)).toBe(true);
  });
});

describe('prompts', () => {
  it('GSM8K: Question/Answer shots separated by a blank line, or the bare question', () => {
    const p = gsm8kPrompt('What is 2 + 2?', GSM8K_SHOTS.slice(0, 2), 'labeled');
    expect(p.startsWith(`Question: ${GSM8K_SHOTS[0].question}\nAnswer: ${GSM8K_SHOTS[0].answer}\n\nQuestion: ${GSM8K_SHOTS[1].question}`)).toBe(true);
    expect(p.endsWith('\n\nQuestion: What is 2 + 2?\nAnswer:')).toBe(true);
    expect(gsm8kPrompt('What is 2 + 2?', [], 'labeled')).toBe('Question: What is 2 + 2?\nAnswer:');
    expect(gsm8kPrompt('What is 2 + 2?', [], 'bare')).toBe('What is 2 + 2?');
  });

  it('MATH: Minerva Problem/Solution shots ending in the final-answer sentence', () => {
    const p = mathPrompt('Compute $1+1$.', MATH_SHOTS, 'labeled');
    expect(p.split('Final Answer: The final answer is').length - 1).toBe(4);
    expect(p).toContain('Final Answer: The final answer is $-\\frac{2}{3}$. I hope it is correct.\n\nProblem:\nCompute $1+1$.\n\nSolution:');
    expect(p.endsWith('Solution:')).toBe(true);
  });

  it('MBPP: tasks 2-4 as [BEGIN]/[DONE] shots, then the task up to [BEGIN]', () => {
    const task: MbppProblem = { id: '11', taskId: 11, text: 'Do X.', code: '', tests: ['assert f(1) == 1', 'assert f(2) == 2'], setup: '', imports: [] };
    const p = mbppPrompt(task, MBPP_SHOTS);
    expect(MBPP_SHOTS.map((s) => s.taskId)).toEqual([2, 3, 4]);
    expect(p.split('[DONE]').length - 1).toBe(3);
    expect(p.endsWith('here is your task: Do X. Your code should pass these tests:\n\nassert f(1) == 1\nassert f(2) == 2\n[BEGIN]\n')).toBe(true);
  });

  it('stop sequences cut at the earliest one', () => {
    expect(cutAtStop('42.\n\nQuestion: next', STOP_SEQUENCES.gsm8k)).toBe('42.\n\n');
    expect(cutAtStop('    return 1\nprint(f())\ndef g(): pass', STOP_SEQUENCES.humaneval)).toBe('    return 1');
    expect(cutAtStop('    if x:\n        return 1\n', STOP_SEQUENCES.humaneval)).toBe('    if x:\n        return 1\n');
  });
});

describe('code programs', () => {
  const he: HumanEvalProblem = { id: 'T/0', prompt: 'def inc(x):\n    """x + 1"""\n', test: 'def check(candidate):\n    assert candidate(1) == 2\n', entryPoint: 'inc' };

  it('HumanEval completion: prompt + completion before the stop sequences, then check(entry_point)', () => {
    const r = humanevalProgram(he, '    return x + 1\n\n\ndef unrelated():\n    pass');
    expect(r.completion).toBe('    return x + 1\n\n');
    expect(r.program).toBe('def inc(x):\n    """x + 1"""\n    return x + 1\n\n\n\ndef check(candidate):\n    assert candidate(1) == 2\n\n\ncheck(inc)\n');
  });

  it('HumanEval chat answer: the fenced function, without its example prints and __main__ block', () => {
    const out = 'Here it is:\n```python\ndef inc(x):\n    return x + 1\n\nprint(inc(1))\nif __name__ == "__main__":\n    inc(3)\n```\nDone.';
    expect(fencedCode(out)).toBe('def inc(x):\n    return x + 1\n\nprint(inc(1))\nif __name__ == "__main__":\n    inc(3)\n');
    const r = humanevalProgram(he, out);
    expect(r.completion).toBe('def inc(x):\n    return x + 1\n\n');
    expect(r.program.startsWith(`${he.prompt}\ndef inc(x):\n    return x + 1\n`)).toBe(true);
    expect(fencedCode('```python\ndef f():\n    return 1')).toBe('def f():\n    return 1'); // unclosed fence
    expect(dropExampleCode('def f():\n    assert True\n    print(1)\nassert f() is None')).toBe('def f():\n    assert True\n    print(1)');
  });

  it('MBPP: the code up to [DONE], setup code, then the asserts', () => {
    const p: MbppProblem = { id: '9', taskId: 9, text: '', code: '', tests: ['assert f() == 10'], setup: 'K = 10', imports: ['import math'] };
    const r = mbppProgram(p, 'def f():\n    return K\n[DONE]\nmore text');
    expect(r.completion).toBe('def f():\n    return K\n');
    expect(r.program).toBe('import math\n\ndef f():\n    return K\n\n\nK = 10\n\nassert f() == 10\n');
    expect(mbppProgram(p, '[BEGIN]\n```python\ndef f(): return K\n```\n[DONE]').completion).toBe('def f(): return K\n');
  });
});

describe('decoded text', () => {
  // A character-level tokenizer that drops whitespace when encoding, like the bundled word-level one did.
  const spacedTokenizer = {
    encode: (t: string) => [...t.replace(/\s+/g, '')].map((c) => c.charCodeAt(0)),
    decode: (ids: ArrayLike<number>) => Array.from(ids, (i) => String.fromCharCode(i)).join(' '),
  };
  const faithfulTokenizer = {
    encode: (t: string) => [...t].map((c) => c.charCodeAt(0)),
    decode: (ids: ArrayLike<number>) => Array.from(ids, (i) => String.fromCharCode(i)).join(''),
  };
  const md = (tokenizer: object) => ({ tokenizer, description: { special: { eos: 1, endOfTurn: 2 }, stopIds: [1, 2] } }) as unknown as ModelDir;
  const ids = (s: string) => Int32Array.from([...s].map((c) => c.charCodeAt(0)));

  it('joins digits only where the tokenizer cannot represent the space between them, and stops at EOS', () => {
    const spaced = textDecoder(md(spacedTokenizer));
    expect(spaced(Int32Array.from([...ids('is168'), 1, ...ids('99')]))).toBe('i s 168');
    expect(flexibleExtract(spaced(ids('answer:168')))).toBe('168');
    const faithful = textDecoder(md(faithfulTokenizer));
    expect(faithful(ids('1 6 8'))).toBe('1 6 8');
  });
});
