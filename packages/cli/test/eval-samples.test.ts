import { mkdtempSync, readFileSync, rmSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { fileURLToPath } from 'node:url';
import { afterAll, describe, expect, it } from 'vitest';
import { PYTHON, RUN_CODE_TESTS } from './python.js';
import { runCli } from './run.js';

const FIXTURES = fileURLToPath(new URL('./fixtures/eval/', import.meta.url));
const dir = mkdtempSync(join(tmpdir(), 'fast-dllm-samples-'));
afterAll(() => rmSync(dir, { recursive: true, force: true }));
const python = PYTHON ? ['--python', PYTHON] : [];
const jsonl = (rows: object[]) => rows.map((r) => JSON.stringify(r)).join('\n') + '\n';
const he = readFileSync(join(FIXTURES, 'humaneval-sample.jsonl'), 'utf8').trim().split('\n').map((l) => JSON.parse(l) as { task_id: string; canonical_solution: string });
const mbpp = readFileSync(join(FIXTURES, 'mbpp-sample.jsonl'), 'utf8').trim().split('\n').map((l) => JSON.parse(l) as { task_id: number; code: string });

describe.skipIf(!RUN_CODE_TESTS)('fast-dllm eval --samples (scoring existing completions, no model)', () => {
  it('HumanEval: one record per sample with task_id and passed; early exits and wrong code fail', async () => {
    const samples = join(dir, 'he.jsonl');
    writeFileSync(samples, jsonl([
      { task_id: he[0].task_id, completion: he[0].canonical_solution },
      { task_id: he[1].task_id, completion: he[1].canonical_solution },
      { task_id: he[0].task_id, completion: '    return []\n' },
      { task_id: he[1].task_id, completion: '    import os\n    os._exit(0)\n' },
      { task_id: he[1].task_id, completion: '    import os\n    os._exit(0)\nimport os\nos._exit(0)\n' },
    ]));
    const out = join(dir, 'he.json');
    const r = await runCli(['eval', '--task', 'humaneval', '--data', join(FIXTURES, 'humaneval-sample.jsonl'), '--samples', samples,
      '--allow-code-execution', ...python, '--exec-timeout', '5', '--out', out]);
    expect(r.code, r.stderr).toBe(0);
    expect(r.stderr).toMatch(/isolated by bubblewrap/);
    expect(r.stdout).toMatch(/humaneval: 2\/5 samples passed, pass@1 41\.7% over 2 tasks/);
    const j = JSON.parse(readFileSync(out, 'utf8'));
    expect(j.records.map((x: { task_id: string; passed: boolean }) => [x.task_id, x.passed])).toEqual([
      [he[0].task_id, true], [he[1].task_id, true], [he[0].task_id, false], [he[1].task_id, false], [he[1].task_id, false],
    ]);
    expect(j.settings.sandbox.isolation).toBe('bubblewrap');
  });

  it('MBPP with numeric task ids; an unknown task_id or a malformed line is a usage error before anything runs', async () => {
    const samples = join(dir, 'mbpp.jsonl');
    writeFileSync(samples, jsonl(mbpp.map((p) => ({ task_id: p.task_id, completion: p.code }))));
    const out = join(dir, 'mbpp.json');
    const r = await runCli(['eval', '--task', 'mbpp', '--data', join(FIXTURES, 'mbpp-sample.jsonl'), '--samples', samples, '--allow-code-execution', ...python, '--out', out]);
    expect(r.code, r.stderr).toBe(0);
    expect(JSON.parse(readFileSync(out, 'utf8')).records.every((x: { passed: boolean }) => x.passed)).toBe(true);
    writeFileSync(samples, jsonl([{ task_id: 99999, completion: 'pass' }]));
    const bad = await runCli(['eval', '--task', 'mbpp', '--data', join(FIXTURES, 'mbpp-sample.jsonl'), '--samples', samples, '--allow-code-execution', ...python]);
    expect(bad.code).toBe(2);
    expect(bad.stderr).toMatch(/task_id "99999" is not in --data/);
    writeFileSync(samples, jsonl([{ task_id: 11 }]));
    const noCompletion = await runCli(['eval', '--task', 'mbpp', '--data', join(FIXTURES, 'mbpp-sample.jsonl'), '--samples', samples, '--allow-code-execution', ...python]);
    expect(noCompletion.stderr).toMatch(/needs "completion", a string/);
    const gsm = await runCli(['eval', '--task', 'gsm8k', '--data', join(FIXTURES, 'gsm8k-sample.jsonl'), '--samples', samples]);
    expect(gsm.stderr).toMatch(/--samples scores code completions/);
  });
});
