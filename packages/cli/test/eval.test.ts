import { mkdtempSync, readFileSync, rmSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { fileURLToPath } from 'node:url';
import { afterAll, describe, expect, it } from 'vitest';
import { PYTHON, RUN_CODE_TESTS } from './python.js';
import { runCli } from './run.js';

const LLADA = fileURLToPath(new URL('../../../test/fixtures/models/llada-tiny-f32', import.meta.url));
/** The trained Fast-dLLM v2 model (packages/bd-model): its task is the bundled one. */
const BD_MODEL = fileURLToPath(new URL('../../bd-model/model', import.meta.url));
const FIXTURES = fileURLToPath(new URL('./fixtures/eval/', import.meta.url));
const fx = (f: string) => join(FIXTURES, f);
const dir = mkdtempSync(join(tmpdir(), 'fast-dllm-eval-'));
afterAll(() => rmSync(dir, { recursive: true, force: true }));
const python = PYTHON ? ['--python', PYTHON] : [];

interface Row { name: string; accuracy: number; nfe: number; tokensPerForward: number; speedup: number | null; problems: number; metrics: Record<string, number>;
  records: Array<{ id: string; correct: boolean; extracted: string | null; nfe: number; output: string; detail?: Record<string, unknown> }> }

describe('fast-dllm eval --rows paper on a block-diffusion model', () => {
  it("runs bench's grid for the family, with speedups against its baseline row (not the first)", async () => {
    const out = join(dir, 'v2-paper.json');
    const r = await runCli(['eval', '--task', 'gsm8k', '--data', fx('default-model-gsm8k.jsonl'), '--shots', '0', '--chat-template', '--prompt-style', 'bare',
      '--model', BD_MODEL, '--engine', 'wasm', '--gen-length', '32', '--limit', '4', '--rows', 'paper', '--out', out], { timeoutMs: 120_000 });
    expect(r.code, r.stderr).toBe(0);
    const rows = JSON.parse(readFileSync(out, 'utf8')).rows as Row[];
    // B = 16: sub-blocks 4, 8 and 16 at five thresholds each, then the block cache at the recipe.
    expect(rows.map((x) => x.name)).toEqual([
      ...[4, 8, 16].flatMap((b) => [1, 0.95, 0.9, 0.7, 0.5].map((t) => (b === 8 && t === 1 ? 'baseline: sub-block 8, threshold 1 (one token per step)' : `sub-block ${b}, threshold ${t}`))),
      'sub-block 8, threshold 0.9, block cache',
    ]);
    expect(rows[5].speedup).toBe(1);
    expect(rows[0].speedup).not.toBe(1);
    for (const row of rows) expect(row.records).toHaveLength(4);
    // The trained model answers its own task in every row.
    expect(rows.every((x) => x.accuracy === 1)).toBe(true);
  });

  it('refuses what the grid sweeps itself, by name', async () => {
    const r = await runCli(['eval', '--task', 'gsm8k', '--data', fx('default-model-gsm8k.jsonl'), '--shots', '0', '--prompt-style', 'bare',
      '--model', BD_MODEL, '--engine', 'wasm', '--limit', '2', '--rows', 'paper', '--sub-block-length', '4']);
    expect(r.code).toBe(2);
    expect(r.stderr).toMatch(/--sub-block-length: on a block-diffusion model eval --rows paper runs the family's own table/);
  });
});

describe('fast-dllm eval', () => {
  it("the bundled model on its task in GSM8K format, 0-shot with the chat template: the accuracy and mean NFE of bench on the same problems", async () => {
    const recipe = ['--engine', 'wasm', '--limit', '20'];
    const out = join(dir, 'gsm8k.json');
    const r = await runCli(['eval', '--task', 'gsm8k', '--data', fx('default-model-gsm8k.jsonl'), '--shots', '0', '--chat-template', '--prompt-style', 'bare',
      '--cache', 'dual', '--threshold', '0.9', '--out', out, ...recipe], { timeoutMs: 120_000 });
    expect(r.stderr).toMatch(/^decoding: dual cache, threshold 0.9\nengine: wasm/);
    expect(r.code).toBe(0);
    const lines = r.stdout.trim().split('\n');
    expect(lines[0]).toBe('| setting | accuracy % | 95% CI | strict-match % | NFE | tokens/forward | tokens/s | speedup | wall s | wall speedup |');
    expect(lines).toHaveLength(3);
    expect(lines[2]).toMatch(/^\| dual cache, threshold 0.9 \| [\d.]+ \| [\d.]+–[\d.]+ \| 0.0 \|/);
    const j = JSON.parse(readFileSync(out, 'utf8'));
    expect(j.settings).toMatchObject({ task: 'gsm8k', problems: 20, shots: 0, chatTemplate: true, promptStyle: 'bare', engine: 'wasm', accuracyMetric: 'flexible-extract' });
    expect(j.settings.machine.cores).toBeGreaterThan(0);
    expect(Date.parse(j.settings.date)).toBeGreaterThan(0);
    const row = j.rows[0] as Row;
    expect(row.records).toHaveLength(20);
    expect(row.records.filter((x) => x.correct).length).toBe(Math.round(row.accuracy * 20));
    expect(row.records.reduce((s, x) => s + x.nfe, 0) / 20).toBeCloseTo(row.nfe, 9);
    expect(row.metrics['strict-match']).toBe(0); // the model never writes "#### N"
    // The answer digits are one number (eval-score.test.ts covers a tokenizer that decodes them as "1 6 8").
    expect(row.records[0]).toMatchObject({ id: 'gsm8k-0', extracted: '168', correct: true });

    const benchOut = join(dir, 'bench.json');
    const b = await runCli(['bench', '--eval', fileURLToPath(new URL('../../default-model/eval/eval.jsonl', import.meta.url)), '--sweep-taus', '0.9', '--sweep-only',
      '--out', benchOut, ...recipe], { timeoutMs: 120_000 });
    expect(b.code).toBe(0);
    const bench = JSON.parse(readFileSync(benchOut, 'utf8')).rows[0] as Row;
    expect(bench.name).toBe('sweep: dual cache, threshold 0.9');
    expect(row.accuracy).toBe(bench.accuracy);
    expect(row.nfe).toBe(bench.nfe);
    expect(row.accuracy).toBeGreaterThanOrEqual(0.9); // the bundled model solves its task: equality is not 0 = 0

    // Batched through the scheduler's driver: the same outputs, NFE and scores, problem by problem (DESIGN §7).
    const batchedOut = join(dir, 'gsm8k-batch4.json');
    const batched = await runCli(['eval', '--task', 'gsm8k', '--data', fx('default-model-gsm8k.jsonl'), '--shots', '0', '--prompt-style', 'bare',
      '--cache', 'dual', '--threshold', '0.9', '--batch', '4', '--out', batchedOut, ...recipe], { timeoutMs: 120_000 });
    expect(batched.code).toBe(0);
    expect(batched.stderr).not.toMatch(/Warning/);
    const j4 = JSON.parse(readFileSync(batchedOut, 'utf8'));
    expect(j4.settings.batch).toBe(4);
    const pick = (x: Row['records'][number]) => [x.id, x.output, x.nfe, x.correct];
    expect((j4.rows[0] as Row).records.map(pick)).toEqual(row.records.map(pick));
  });

  it.skipIf(!RUN_CODE_TESTS)('--rows paper runs bench\'s rows with speedups against the baseline; MBPP from Parquet, code run in the sandbox', async () => {
    const out = join(dir, 'mbpp.json');
    const r = await runCli(['eval', '--task', 'mbpp', '--data', fx('mbpp-sample.parquet'), '--shots', '0', '--allow-code-execution', ...python,
      '--model', LLADA, '--engine', 'wasm', '--gen-length', '8', '--block-length', '8', '--no-chat-template', '--rows', 'paper', '--limit', '2', '--out', out]);
    expect(r.code).toBe(0);
    expect(r.stderr).toMatch(/sandbox: .*python.* \(Python 3\.\d+\.\d+\), isolated by bubblewrap/);
    expect(r.stdout.trim().split('\n')).toHaveLength(2 + 6);
    const j = JSON.parse(readFileSync(out, 'utf8'));
    expect(j.settings).toMatchObject({ task: 'mbpp', shots: 0, fewshot: 'none', chatTemplate: false });
    expect(j.settings.sandbox.memoryBytes).toBe(2048 * 1024 * 1024);
    const rows = j.rows as Row[];
    expect(rows.map((x) => x.name)).toEqual(['baseline', '+ prefix cache', '+ dual cache', '+ parallel (threshold 0.9)',
      '+ dual cache + parallel (threshold 0.9)', '+ dual cache + parallel (factor 1)']);
    expect(rows[0].speedup).toBe(1);
    for (const row of rows) {
      expect(row.records.map((x) => x.id)).toEqual(['11', '12']);
      // A random model writes no passing program; each record says how its program ended.
      for (const rec of row.records) expect(['failed', 'timeout', 'memory']).toContain(rec.detail!.status);
      expect(row.accuracy).toBe(0);
    }
  });

  it('HumanEval from .jsonl.gz: each record has the program status', async () => {
    const out = join(dir, 'he.json');
    const r = await runCli(['eval', '--task', 'humaneval', '--data', fx('humaneval-sample.jsonl.gz'), '--allow-code-execution', ...python,
      '--model', LLADA, '--engine', 'wasm', '--gen-length', '8', '--block-length', '8', '--no-chat-template', '--out', out]);
    expect(r.code).toBe(0);
    const row = JSON.parse(readFileSync(out, 'utf8')).rows[0] as Row;
    expect(row.records.map((x) => x.id)).toEqual(['Sample/0', 'Sample/1']);
    expect(row.records.every((x) => typeof x.detail!.status === 'string' && typeof x.detail!.wallMs === 'number')).toBe(true);
  });

  const base = ['eval', '--model', LLADA, '--engine', 'reference'];
  const usage: Array<[string, string[], RegExp]> = [
    ['no task', ['eval', '--data', fx('gsm8k-sample.jsonl')], /eval needs --task \(gsm8k, math, humaneval, mbpp\)/],
    ['no data', ['eval', '--task', 'gsm8k'], /eval needs --data FILE/],
    ['bad task', ['eval', '--task', 'arc'], /--task: expected one of gsm8k, math, humaneval, mbpp/],
    ['code without consent', ['eval', '--task', 'humaneval', '--data', fx('humaneval-sample.jsonl')], /--task humaneval runs the code the model writes.*pass --allow-code-execution/],
    ['bare with shots', ['eval', '--task', 'gsm8k', '--data', fx('gsm8k-sample.jsonl'), '--prompt-style', 'bare', '--shots', '5'], /--prompt-style bare is zero-shot/],
    ['bare for code', ['eval', '--task', 'mbpp', '--data', fx('mbpp-sample.jsonl'), '--allow-code-execution', '--prompt-style', 'bare'], /--prompt-style bare applies to gsm8k and math/],
    ['paper rows with a cache', ['eval', '--task', 'gsm8k', '--data', fx('gsm8k-sample.jsonl'), '--rows', 'paper', '--cache', 'dual'], /--rows paper runs its own rows \(strategies and caches\); drop --strategy \/ --cache/],
    ['too many shots', [...base, '--task', 'math', '--data', fx('math-sample'), '--shots', '5'], /--shots 5: only 4 built-in exemplars/],
    ['missing file', [...base, '--task', 'gsm8k', '--data', join(dir, 'nope.jsonl')], /nope.jsonl: no such file or directory/],
    ['wrong task for the file', [...base, '--task', 'math', '--data', fx('gsm8k-sample.jsonl')], /gsm8k-sample.jsonl:1: a MATH record needs a string field "problem"/],
    ['prompt too long', ['eval', '--task', 'gsm8k', '--data', fx('default-model-gsm8k.jsonl')], /problem gsm8k-0: prompt \(\d+\) \+ --gen-length \(128\) exceeds the model's 256 positions; shorten one \(fewer --shots make the prompt shorter\)/],
    ['missing python', [...base, '--task', 'humaneval', '--data', fx('humaneval-sample.jsonl'), '--allow-code-execution', '--python', '/nonexistent/python3'], /\/nonexistent\/python3 not found: code tasks run each program with Python 3/],
  ];
  it.each(usage)('%s: exit 2, one line', async (_name, args, pattern) => {
    const r = await runCli(args);
    expect(r.stderr).toMatch(pattern);
    expect(r.code).toBe(2);
    expect(r.stderr.trim().split('\n')).toHaveLength(1);
    expect(r.stdout).toBe('');
  });
});
