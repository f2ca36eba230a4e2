import { mkdtempSync, readFileSync, rmSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { fileURLToPath } from 'node:url';
import { afterAll, describe, expect, it } from 'vitest';
import { runCli } from './run.js';
import { tablePlan, wilsonInterval } from '../src/bench.js';

const LLADA = fileURLToPath(new URL('../../../test/fixtures/models/llada-tiny-f32', import.meta.url));
const dir = mkdtempSync(join(tmpdir(), 'fast-dllm-bench-'));
afterAll(() => rmSync(dir, { recursive: true, force: true }));

describe('wilsonInterval', () => {
  it('gives the 95% Wilson score interval, closed at 0 and n', () => {
    const [lo, hi] = wilsonInterval(5, 10);
    expect(lo).toBeCloseTo(0.2366, 4);
    expect(hi).toBeCloseTo(0.7634, 4);
    expect(wilsonInterval(0, 20)[0]).toBe(0);
    expect(wilsonInterval(20, 20)[1]).toBe(1);
    expect(wilsonInterval(200, 200)[0]).toBeCloseTo(0.9812, 4);
  });
});

describe('fast-dllm bench', () => {
  it('prints the ablation table and writes consistent JSON rows', async () => {
    const evalPath = join(dir, 'eval.jsonl');
    writeFileSync(evalPath, ['hello', 'world', 'third one'].map((p, i) => JSON.stringify({ id: `t${i}`, prompt: p, answer: '1' })).join('\n'));
    const out = join(dir, 'bench.json');
    const r = await runCli(['bench', '--model', LLADA, '--engine', 'reference', '--eval', evalPath, '--limit', '2',
      '--gen-length', '16', '--block-length', '8', '--out', out]);
    expect(r.stderr).toMatch(/^engine: reference/);
    expect(r.code).toBe(0);
    const lines = r.stdout.trim().split('\n');
    expect(lines[0]).toBe('| setting | accuracy % | 95% CI | NFE | tokens/forward | tokens/s | speedup | wall s | wall speedup |');
    expect(lines).toHaveLength(2 + 6);
    const j = JSON.parse(readFileSync(out, 'utf8'));
    expect(j.settings).toMatchObject({ engine: 'reference', genLength: 16, blockLength: 8, problems: 2, threads: 1 });
    expect(j.settings.machine.cores).toBeGreaterThan(0);
    const rows = j.rows as Array<{ name: string; nfe: number; tokensPerForward: number; speedup: number; problems: number; accuracy: number }>;
    expect(rows.map((x) => x.name)).toEqual(['baseline', '+ prefix cache', '+ dual cache', '+ parallel (threshold 0.9)',
      '+ dual cache + parallel (threshold 0.9)', '+ dual cache + parallel (factor 1)']);
    // The fixed schedule spends one forward per token whatever the cache; parallel rows never spend more.
    for (const row of rows.slice(0, 3)) {
      expect(row.nfe).toBe(16);
      expect(row.tokensPerForward).toBe(1);
    }
    for (const row of rows.slice(3)) {
      expect(row.nfe).toBeLessThanOrEqual(16);
      expect(row.tokensPerForward).toBeCloseTo(16 / row.nfe, 9);
    }
    expect(rows[0].speedup).toBe(1);
    const walls = j.rows as Array<{ wallTimeMs: number; wallSpeedup: number }>;
    expect(walls[0].wallSpeedup).toBe(1);
    for (const w of walls) {
      expect(w.wallTimeMs).toBeGreaterThan(0);
      expect(w.wallSpeedup).toBeCloseTo(walls[0].wallTimeMs / w.wallTimeMs, 9);
    }
    expect(rows.every((x) => x.problems === 2 && x.accuracy >= 0 && x.accuracy <= 1)).toBe(true);
  });

  it('--sweep-taus with --sweep-only runs just those rows, with no speedup (no baseline)', async () => {
    const evalPath = join(dir, 'eval2.jsonl');
    writeFileSync(evalPath, JSON.stringify({ id: 'a', prompt: 'hi', answer: '2' }));
    const out = join(dir, 'sweep.json');
    const r = await runCli(['bench', '--model', LLADA, '--engine', 'reference', '--eval', evalPath, '--gen-length', '8', '--block-length', '8',
      '--sweep-taus', '0.1,0.3', '--sweep-only', '--out', out]);
    expect(r.code).toBe(0);
    const lines = r.stdout.trim().split('\n');
    expect(lines).toHaveLength(2 + 2);
    const caches = await runCli(['bench', '--model', LLADA, '--engine', 'reference', '--eval', evalPath, '--gen-length', '8', '--block-length', '8',
      '--sweep-taus', '0.5', '--sweep-cache', 'prefix,dual', '--sweep-only']);
    expect(caches.code).toBe(0);
    expect(caches.stdout).toContain('| sweep: prefix cache, threshold 0.5 |');
    expect(caches.stdout).toContain('| sweep: dual cache, threshold 0.5 |');
    expect(lines[2]).toMatch(/^\| sweep: dual cache, threshold 0.1 \|.*\| — \| [\d.]+ \| — \|$/);
    const rows = JSON.parse(readFileSync(out, 'utf8')).rows as Array<{ speedup: null; wallSpeedup: null }>;
    expect(rows.map((x) => [x.speedup, x.wallSpeedup])).toEqual([[null, null], [null, null]]);
  });

  it('--rows runs only the named rows in table order (no baseline: no speedup); --dtype reaches the engine and the JSON', async () => {
    const evalPath = join(dir, 'eval3.jsonl');
    writeFileSync(evalPath, JSON.stringify({ id: 'a', prompt: 'hi', answer: '2' }));
    const out = join(dir, 'rows.json');
    const r = await runCli(['bench', '--model', LLADA, '--engine', 'wasm', '--dtype', 'int8', '--eval', evalPath, '--gen-length', '8',
      '--block-length', '8', '--rows', 'dual-factor,prefix', '--out', out]);
    expect(r.code).toBe(0);
    const j = JSON.parse(readFileSync(out, 'utf8'));
    expect(j.settings).toMatchObject({ engine: 'wasm', dtype: 'int8' });
    const rows = j.rows as Array<{ name: string; speedup: null }>;
    expect(rows.map((x) => [x.name, x.speedup])).toEqual([['+ prefix cache', null], ['+ dual cache + parallel (factor 1)', null]]);
  });

  it('--policies adds the DESIGN §16 rows with their gamma and window; their flags need it; the CI brackets the accuracy', async () => {
    const evalPath = join(dir, 'eval4.jsonl');
    writeFileSync(evalPath, ['a', 'b', 'c'].map((p, i) => JSON.stringify({ id: `p${i}`, prompt: p, answer: '1' })).join('\n'));
    const out = join(dir, 'policies.json');
    const r = await runCli(['bench', '--model', LLADA, '--engine', 'wasm', '--eval', evalPath, '--gen-length', '16', '--block-length', '8',
      '--policies', '--entropy-bound', '0.3', '--suffix-window', '8', '--draft-verify', '3', '--out', out]);
    expect(r.code).toBe(0);
    const rows = JSON.parse(readFileSync(out, 'utf8')).rows as Array<{ name: string; strategy: Record<string, unknown>; accuracy: number; accuracyCi: [number, number]; nfe: number }>;
    expect(rows.map((x) => x.name).slice(6)).toEqual([
      '+ dual cache + EB-Sampler (gamma 0.3)', '+ dual cache + parallel (threshold 0.9) + suffix window 8', '+ dual cache + parallel (threshold 0.9) + early commit',
      '+ dual cache + parallel (threshold 0.9) + Elastic-Cache (gamma 0.9)',
      '+ draft and verify (3 canvases)', '+ prefix cache + parallel (threshold 0.9) + draft and verify 3',
      'stack: dual cache + threshold 0.9 + suffix window 8 + early commit', 'stack: dual cache + EB-Sampler (gamma 0.3) + suffix window 8 + early commit',
      'stack: dual cache + EB-Sampler (gamma 0.3) + suffix window 8',
      'stack: dual cache + threshold 0.9 + suffix window 8 + early commit + Elastic-Cache 0.9',
      'stack: prefix cache + threshold 0.9 + suffix window 8 + draft and verify 3',
    ]);
    expect(rows[6].strategy).toEqual({ kind: 'entropy_bound', gamma: 0.3 });
    // Draft and verify gives the baseline's answers (one token per step, no cache) in fewer passes.
    expect(rows[10].accuracy).toBe(rows[0].accuracy);
    expect(rows[10].nfe).toBeLessThanOrEqual(rows[0].nfe);
    for (const row of rows) {
      expect(row.accuracyCi[0]).toBeLessThanOrEqual(row.accuracy);
      expect(row.accuracyCi[1]).toBeGreaterThanOrEqual(row.accuracy);
      expect(row.nfe).toBeGreaterThan(0);
    }
    const noPolicies = await runCli(['bench', '--model', LLADA, '--eval', evalPath, '--suffix-window', '8']);
    expect(noPolicies.code).toBe(2);
    expect(noPolicies.stderr).toMatch(/--suffix-window sets the policy rows; add --policies/);
    const noPolicies2 = await runCli(['bench', '--model', LLADA, '--eval', evalPath, '--draft-verify', '3']);
    expect(noPolicies2.stderr).toMatch(/--draft-verify sets the policy rows; add --policies/);
    const row = await runCli(['bench', '--model', LLADA, '--eval', evalPath, '--rows', 'stack-eb']);
    expect(row.code).toBe(2);
    expect(row.stderr).toMatch(/'stack-eb' is a policy row; add --policies/);
  });

  it('--sweep adds one row per threshold; bad flags exit 2', async () => {
    const evalPath = join(dir, 'eval1.jsonl');
    writeFileSync(evalPath, JSON.stringify({ id: 'a', prompt: 'hi', answer: '2' }));
    const r = await runCli(['bench', '--model', LLADA, '--engine', 'reference', '--eval', evalPath, '--gen-length', '8', '--block-length', '8', '--sweep']);
    expect(r.code).toBe(0);
    expect(r.stdout.trim().split('\n')).toHaveLength(2 + 6 + 7);
    expect(r.stdout).toContain('| sweep: dual cache, threshold 0.95 |');
    const bad = await runCli(['bench', '--model', LLADA, '--eval', join(dir, 'missing.jsonl')]);
    expect(bad.code).toBe(2);
    expect(bad.stderr).toMatch(/cannot read the eval set/);
    const lim = await runCli(['bench', '--limit', '0']);
    expect(lim.code).toBe(2);
    const taus = await runCli(['bench', '--sweep-taus', '0.2,1.5']);
    expect(taus.code).toBe(2);
    expect(taus.stderr).toMatch(/--sweep-taus: expected a number in \[0, 1\], got '1.5'/);
    const only = await runCli(['bench', '--sweep-only']);
    expect(only.code).toBe(2);
    expect(only.stderr).toMatch(/--sweep-only needs --sweep or --sweep-taus/);
  });
});

describe('fast-dllm bench on block-diffusion models', () => {
  const V2 = fileURLToPath(new URL('../../../test/fixtures/models/fast-dllm-v2-tiny-f32', import.meta.url));
  const SDAR = fileURLToPath(new URL('../../../test/fixtures/models/sdar-tiny-f32', import.meta.url));
  const evalFile = () => {
    const p = join(dir, 'block-eval.jsonl');
    writeFileSync(p, ['hello there', 'what is up'].map((q, i) => JSON.stringify({ id: `b${i}`, prompt: q, answer: '1' })).join('\n'));
    return p;
  };
  type Row = { name: string; nfe: number; tokensPerForward: number; speedup: number; wallSpeedup: number; tokensPerSecond: number; wallTimeMs: number; strategy: Record<string, unknown> };

  it('Fast-dLLM v2: the threshold × sub-block grid and the block cache at the recipe, against one token per step', async () => {
    const out = join(dir, 'v2.json');
    const r = await runCli(['bench', '--model', V2, '--engine', 'reference', '--eval', evalFile(), '--gen-length', '16', '--out', out]);
    expect(r.code).toBe(0);
    const j = JSON.parse(readFileSync(out, 'utf8'));
    expect(j.settings).toMatchObject({ architecture: 'fast_dllm_v2', blockSize: 8, genLength: 16, problems: 2, engine: 'reference',
      baselineRow: 'baseline: sub-block 8, threshold 1 (one token per step)' });
    const rows = j.rows as Row[];
    // B = 8: sub-blocks 4 and 8 (= B), five thresholds each, then the block cache row.
    expect(rows.map((x) => x.name)).toEqual([
      ...[1, 0.95, 0.9, 0.7, 0.5].map((t) => `sub-block 4, threshold ${t}`),
      'baseline: sub-block 8, threshold 1 (one token per step)', ...[0.95, 0.9, 0.7, 0.5].map((t) => `sub-block 8, threshold ${t}`),
      'sub-block 8, threshold 0.9, block cache',
    ]);
    expect(rows[10].strategy).toEqual({ kind: 'fast_dllm_v2', subBlockLength: 8, threshold: 0.9, blockCache: true });
    const base = rows[5];
    expect([base.speedup, base.wallSpeedup]).toEqual([1, 1]);
    for (const row of rows) {
      expect(row.speedup).toBeCloseTo(row.tokensPerSecond / base.tokensPerSecond, 9);
      expect(row.wallSpeedup).toBeCloseTo(base.wallTimeMs / row.wallTimeMs, 9);
    }
    // tau = 1: every denoising step commits one token, the prefill and block-end passes at most one each, so a
    // problem commits at most one token per pass and at least one less than its passes (the prefill may commit none).
    for (const row of rows.filter((x) => x.strategy.threshold === 1)) {
      expect(row.tokensPerForward).toBeLessThanOrEqual(1);
      expect(row.tokensPerForward * row.nfe).toBeGreaterThanOrEqual(row.nfe - 1 - 1e-9);
    }
    expect(Math.min(...rows.map((x) => x.nfe))).toBeLessThan(base.nfe);
  });

  it('SDAR: steps per block × static / dynamic remasking; the static rule with n = B is the baseline', async () => {
    const out = join(dir, 'sdar.json');
    const r = await runCli(['bench', '--model', SDAR, '--engine', 'reference', '--eval', evalFile(), '--gen-length', '12', '--sweep-taus', '0.5,0.85', '--out', out]);
    expect(r.code).toBe(0);
    const rows = JSON.parse(readFileSync(out, 'utf8')).rows as Row[];
    expect(rows.map((x) => x.name)).toEqual([
      'baseline: 4 steps per block, static (one token per step)', '4 steps per block, dynamic threshold 0.5', '4 steps per block, dynamic threshold 0.85',
      '2 steps per block, static', '2 steps per block, dynamic threshold 0.5', '2 steps per block, dynamic threshold 0.85',
      '1 step per block, static', '1 step per block, dynamic threshold 0.5', '1 step per block, dynamic threshold 0.85',
    ]);
    expect(rows[0].speedup).toBe(1);
    expect(rows[0].tokensPerForward).toBeLessThanOrEqual(1);
    // One step per block commits the whole block at once: more than one token per pass, fewer passes.
    expect(rows[6].tokensPerForward).toBeGreaterThan(1);
    expect(rows[6].nfe).toBeLessThan(rows[0].nfe);
  });

  it('refuses what the table sweeps itself and the other family\'s flags, by name', async () => {
    const ev = evalFile();
    const cases: Array<[string[], RegExp]> = [
      [[V2, '--sub-block-length', '4'], /--sub-block-length: on a block-diffusion model bench runs the family's own table/],
      [[V2, '--sweep'], /--sweep: on a block-diffusion model bench runs the family's own table .*--sweep-taus/],
      [[SDAR, '--steps-per-block', '2'], /--steps-per-block: on a block-diffusion model bench runs the family's own table/],
      [[V2, '--steps', '4'], /--steps applies to LLaDA\/Dream \(masked diffusion\)/],
      [[SDAR, '--factor', '1'], /--factor applies to LLaDA\/Dream/],
    ];
    for (const [args, msg] of cases) {
      const r = await runCli(['bench', '--model', args[0], '--engine', 'reference', '--eval', ev, '--gen-length', '8', ...args.slice(1)]);
      expect(r.code, args.join(' ')).toBe(2);
      expect(r.stderr).toMatch(msg);
    }
  });
});

describe("bench's table is the family's rules (the scheduler's resolver)", () => {
  it('on a Dream model the fixed rows run Dream\'s schedule and the threshold rows its maskgit_plus rule; LLaDA keeps its own', () => {
    const dream = tablePlan({ architecture: 'dream' }, {}, { genLength: 32, blockLength: 8 });
    expect(dream.rows.map((r) => [r.name, r.strategy, r.cache])).toEqual([
      ['baseline', { kind: 'dream', alg: 'maskgit_plus' }, 'none'],
      ['+ prefix cache', { kind: 'dream', alg: 'maskgit_plus' }, 'prefix'],
      ['+ dual cache', { kind: 'dream', alg: 'maskgit_plus' }, 'dual'],
      ['+ parallel (threshold 0.9)', { kind: 'dream', alg: 'maskgit_plus', threshold: 0.9 }, 'none'],
      ['+ dual cache + parallel (threshold 0.9)', { kind: 'dream', alg: 'maskgit_plus', threshold: 0.9 }, 'dual'],
      ['+ dual cache + parallel (factor 1)', { kind: 'factor', factor: 1 }, 'dual'],
    ]);
    const llada = tablePlan({ architecture: 'llada' }, { threshold: 0.7 }, { genLength: 32, blockLength: 8 });
    expect(llada.rows.map((r) => r.strategy)).toEqual([
      { kind: 'fixed', remasking: 'low_confidence' }, { kind: 'fixed', remasking: 'low_confidence' }, { kind: 'fixed', remasking: 'low_confidence' },
      { kind: 'threshold', threshold: 0.7 }, { kind: 'threshold', threshold: 0.7 }, { kind: 'factor', factor: 1 },
    ]);
    expect(dream.rows.every((r) => r.decoding.earlyStop && r.decoding.blockLength === 8 && r.decoding.steps === 32)).toBe(true);
  });
});
