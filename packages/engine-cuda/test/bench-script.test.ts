/**
 * bench/cuda/bench.mjs and gemm-sweep.mjs run end to end on the emulator build (a 2-layer miniature of the LLaDA-8B
 * layout, small GEMM shapes), so the GPU scripts cannot rot between the rare sessions that have a GPU. Their times
 * mean nothing here.
 */
import { spawnSync } from 'node:child_process';
import { mkdtempSync, readFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { describe, expect, it } from 'vitest';
import { EMULATOR_ADDON_PATH, loadBinding } from '../src/index.js';

const emulator = loadBinding(EMULATOR_ADDON_PATH);
const BENCH = join(import.meta.dirname, '..', '..', '..', 'bench', 'cuda', 'bench.mjs');
const SWEEP = join(import.meta.dirname, '..', '..', '..', 'bench', 'cuda', 'gemm-sweep.mjs');

describe('bench/cuda/bench.mjs', () => {
  it('measures full, prefix and dual steps and writes its record (emulator)', (ctx) => {
    if (!emulator.ok) return ctx.skip(`not supported: ${emulator.reason}`);
    const out = join(mkdtempSync(join(tmpdir(), 'fdl-bench-')), 'bench.json');
    const r = spawnSync(process.execPath, [BENCH, '--emulator', '--iters', '1', '--out', out], { encoding: 'utf8' });
    expect(r.stderr).toBe('');
    expect(r.status).toBe(0);
    expect(r.stdout).toMatch(/dual\s+median [\d.]+ ms/);
    const rec = JSON.parse(readFileSync(out, 'utf8'));
    expect(rec.device).toBe('fast-dllm CUDA emulator (CPU)');
    expect(rec.emulator).toBe(true);
    for (const step of ['full', 'prefix', 'dual']) expect(rec.medianMs[step]).toBeGreaterThan(0);
    expect(rec.floorMs).toBeGreaterThan(0);
  });

  it('refuses a bad --iters with a message', () => {
    const r = spawnSync(process.execPath, [BENCH, '--iters', 'zero'], { encoding: 'utf8' });
    expect(r.status).toBe(1);
    expect(r.stderr).toMatch(/--iters must be a positive integer, got zero/);
  });

  it('gemm-sweep.mjs times each shape at the engine\'s split choice and at fixed splits (emulator)', (ctx) => {
    if (!emulator.ok) return ctx.skip(`not supported: ${emulator.reason}`);
    const r = spawnSync(process.execPath, [SWEEP, '--emulator', '--iters', '1'], { encoding: 'utf8' });
    expect(r.stderr).toBe('');
    expect(r.status).toBe(0);
    const rec = JSON.parse(r.stdout.trim().split('\n').at(-1)!);
    expect(rec.results.map((x: { name: string; asked: number }) => `${x.name}/${x.asked}`)).toEqual([
      'qkv/0', 'qkv/1', 'qkv/2', 'down/0', 'down/1', 'down/2',
    ]);
    for (const x of rec.results) expect(x.msPerLaunch).toBeGreaterThan(0);
    expect(r.stdout).toMatch(/qkv +384 x 128 +auto=1/);
  });
});
