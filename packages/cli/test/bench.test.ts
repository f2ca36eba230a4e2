import { mkdtempSync, readFileSync, rmSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { fileURLToPath } from 'node:url';
import { afterAll, describe, expect, it } from 'vitest';
import { runCli } from './run.js';

const LLADA = fileURLToPath(new URL('../../../test/fixtures/models/llada-tiny-f32', import.meta.url));
const dir = mkdtempSync(join(tmpdir(), 'fast-dllm-bench-'));
afterAll(() => rmSync(dir, { recursive: true, force: true }));

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
    expect(lines[0]).toBe('| setting | accuracy % | NFE | tokens/forward | tokens/s | speedup | wall s | wall speedup |');
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
