import { mkdtempSync, readFileSync, rmSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { gzipSync } from 'node:zlib';
import { afterAll, describe, expect, it } from 'vitest';
import { readRecords } from '../src/eval/datasets.js';
import { buildTask, parseProblems } from '../src/eval/tasks.js';

const FIXTURES = new URL('./fixtures/eval/', import.meta.url).pathname;
const fx = (f: string) => join(FIXTURES, f);
const dir = mkdtempSync(join(tmpdir(), 'fast-dllm-eval-data-'));
afterAll(() => rmSync(dir, { recursive: true, force: true }));
const tmp = (name: string, content: string | Buffer) => {
  const p = join(dir, name);
  writeFileSync(p, content);
  return p;
};

describe('dataset readers', () => {
  it('GSM8K from JSONL and from the Parquet export (SNAPPY and GZIP pages) give the same problems', async () => {
    const jsonl = parseProblems('gsm8k', await readRecords(fx('gsm8k-sample.jsonl')));
    expect(jsonl.map((p) => p.target)).toEqual(['18', '3', '70000']);
    expect(jsonl[0].id).toBe('gsm8k-0');
    for (const f of ['gsm8k-sample.parquet', 'gsm8k-sample-gzip.parquet']) {
      const pq = parseProblems('gsm8k', await readRecords(fx(f)));
      expect(pq, f).toEqual(jsonl);
    }
  });

  it('HumanEval from .jsonl.gz equals the plain JSONL', async () => {
    const gz = parseProblems('humaneval', await readRecords(fx('humaneval-sample.jsonl.gz')));
    expect(gz.map((p) => [p.id, p.entryPoint])).toEqual([['Sample/0', 'running_max'], ['Sample/1', 'count_vowels']]);
    expect(gz).toEqual(parseProblems('humaneval', await readRecords(fx('humaneval-sample.jsonl'))));
  });

  it('MBPP from JSONL and Parquet (INT32 task_id, a LIST column of tests); sanitized MBPP field names', async () => {
    const jsonl = parseProblems('mbpp', await readRecords(fx('mbpp-sample.jsonl')));
    expect(jsonl.map((p) => [p.id, p.tests.length, p.setup])).toEqual([['11', 3, ''], ['12', 3, ''], ['901', 3, 'OFFSET = 10']]);
    expect(parseProblems('mbpp', await readRecords(fx('mbpp-sample.parquet')))).toEqual(jsonl);
    const sanitized = tmp('sanitized.jsonl', JSON.stringify({ task_id: 7, prompt: 'Do Y.', code: 'pass', test_imports: ['import math'], test_list: ['assert True'] }));
    expect(parseProblems('mbpp', await readRecords(sanitized))[0]).toMatchObject({ text: 'Do Y.', imports: ['import math'] });
  });

  it('MATH: the release directory (natural order, file names as ids), a JSON array, and JSONL exports', async () => {
    const tree = parseProblems('math', await readRecords(fx('math-sample')));
    expect(tree.map((p) => p.id.replace(FIXTURES, ''))).toEqual(['math-sample/test/algebra/2.json', 'math-sample/test/algebra/10.json', 'math-sample/test/prealgebra/7.json']);
    expect(tree.map((p) => p.target)).toEqual(['4', '\\frac{3}{4}', '\\left(0, 2\\right]']);
    const records = tree.map((p) => ({ problem: p.problem, solution: p.solution }));
    const arr = tmp('math.json', JSON.stringify(records));
    expect(parseProblems('math', await readRecords(arr)).map((p) => p.target)).toEqual(tree.map((p) => p.target));
    const lines = tmp('math500.jsonl', JSON.stringify({ problem: 'p', solution: 'no box here', answer: '7', unique_id: 'test/x/1.json' }));
    expect(parseProblems('math', await readRecords(lines))[0]).toMatchObject({ id: 'test/x/1.json', target: '7' });
  });

  it('a malformed JSONL line is reported with its line number', async () => {
    const p = tmp('bad.jsonl', `${JSON.stringify({ question: 'q', answer: '#### 1' })}\n\n{"question": "q", "answer": \n`);
    await expect(readRecords(p)).rejects.toThrow(new RegExp(`${p}:3: not valid JSON`));
    const notObject = tmp('array-line.jsonl', '[1, 2]\n');
    await expect(readRecords(notObject)).rejects.toThrow(/array-line.jsonl:1: expected a JSON object, got an array/);
  });

  it('records without the fields of the task, or without "#### N", are errors naming the place', async () => {
    const noHash = tmp('nohash.jsonl', `${JSON.stringify({ question: 'q', answer: '#### 1' })}\n${JSON.stringify({ question: 'q', answer: 'just 5' })}\n`);
    expect(() => parseProblems('gsm8k', [])).not.toThrow();
    await expect(readRecords(noHash).then((r) => parseProblems('gsm8k', r))).rejects.toThrow(/nohash.jsonl:2: the GSM8K answer has no final "#### N" line/);
    const gsmAsHumaneval = readRecords(fx('gsm8k-sample.jsonl')).then((r) => parseProblems('humaneval', r));
    await expect(gsmAsHumaneval).rejects.toThrow(/gsm8k-sample.jsonl:1: a HumanEval record needs a string field "entry_point" \(its fields: question, answer\); is --task right\?/);
    const noBox = tmp('nobox.jsonl', JSON.stringify({ problem: 'p', solution: 's' }));
    await expect(readRecords(noBox).then((r) => parseProblems('math', r))).rejects.toThrow(/nobox.jsonl:1: the MATH solution has no \\boxed\{\}/);
    const badTests = tmp('badtests.jsonl', JSON.stringify({ task_id: 1, text: 't', code: 'c', test_list: 'assert x' }));
    await expect(readRecords(badTests).then((r) => parseProblems('mbpp', r))).rejects.toThrow(/badtests.jsonl:1: MBPP "test_list" must be a list of strings/);
  });

  it('damaged gzip and Parquet files and missing paths are clear errors', async () => {
    const gz = gzipSync(Buffer.from('{"a": 1}\n'));
    await expect(readRecords(tmp('cut.jsonl.gz', gz.subarray(0, gz.length - 6)))).rejects.toThrow(/cut.jsonl.gz: a damaged gzip file/);
    const pq = readFileSync(fx('gsm8k-sample.parquet'));
    const damaged = Buffer.concat([pq.subarray(0, 4), Buffer.alloc(64), pq.subarray(pq.length - 8)]);
    await expect(readRecords(tmp('damaged.parquet', damaged))).rejects.toThrow(/damaged.parquet: cannot read this Parquet file/);
    await expect(readRecords(join(dir, 'missing.jsonl'))).rejects.toThrow(/missing.jsonl: no such file or directory/);
  });
});

describe('few-shot selection', () => {
  it('GSM8K: built-in exemplars up to 8, --fewshot-data for more or for the exact train text', async () => {
    const test = await readRecords(fx('gsm8k-sample.jsonl'));
    expect(buildTask('gsm8k', test, { shots: 8, style: 'labeled' }).prompt(0).split('Question:').length - 1).toBe(9);
    expect(() => buildTask('gsm8k', test, { shots: 9, style: 'labeled' })).toThrow(/--shots 9: only 8 built-in exemplars; pass --fewshot-data FILE/);
    const t = buildTask('gsm8k', test, { shots: 2, style: 'labeled', fewshot: { records: test, source: 'train.jsonl' } });
    expect(t.shotsSource).toBe('train.jsonl');
    expect(t.prompt(2).startsWith("Question: Janet's ducks")).toBe(true);
    expect(() => buildTask('gsm8k', test, { shots: 4, style: 'labeled', fewshot: { records: test, source: 'train.jsonl' } })).toThrow(/train.jsonl has only 3 usable exemplars/);
  });

  it('MBPP: tasks 2, 3, 4 of a prompt-split file come first; HumanEval takes no shots', async () => {
    const promptSplit = [4, 1, 3, 2, 5].map((id) => ({ record: { task_id: id, text: `task ${id}`, code: 'pass', test_list: ['assert True'] }, where: `p:${id}` }));
    const t = buildTask('mbpp', await readRecords(fx('mbpp-sample.jsonl')), { shots: 3, style: 'labeled', fewshot: { records: promptSplit, source: 'prompt.jsonl' } });
    expect([...t.prompt(0).matchAll(/your task: (task \d)/g)].map((m) => m[1])).toEqual(['task 2', 'task 3', 'task 4']);
    const he = await readRecords(fx('humaneval-sample.jsonl'));
    expect(() => buildTask('humaneval', he, { shots: 1, style: 'labeled' })).toThrow(/HumanEval is zero-shot/);
  });
});
