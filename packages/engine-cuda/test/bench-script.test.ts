/**
 * bench/cuda/bench.mjs and gemm-sweep.mjs run end to end on the emulator build (a 2-layer miniature of the LLaDA-8B
 * layout, small GEMM shapes), so the GPU scripts cannot rot between the rare sessions that have a GPU. Their times
 * mean nothing here.
 */
import { spawn, spawnSync } from 'node:child_process';
import { mkdtempSync, readFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { describe, expect, it } from 'vitest';
import { EMULATOR_ADDON_PATH, loadBinding } from '../src/index.js';

const emulator = loadBinding(EMULATOR_ADDON_PATH);

/** Runs a command without blocking the test worker (a minute under ASan would stall vitest's own messages). */
function run(cmd: string, args: string[]): Promise<{ status: number | null; stdout: string; stderr: string }> {
  return new Promise((resolve, reject) => {
    const child = spawn(cmd, args, { stdio: ['ignore', 'pipe', 'pipe'] });
    let stdout = '';
    let stderr = '';
    child.stdout.on('data', (d: Buffer) => (stdout += d.toString()));
    child.stderr.on('data', (d: Buffer) => (stderr += d.toString()));
    child.on('error', reject);
    child.on('close', (status) => resolve({ status, stdout, stderr }));
  });
}
const BENCH = join(import.meta.dirname, '..', '..', '..', 'bench', 'cuda', 'bench.mjs');
const SWEEP = join(import.meta.dirname, '..', '..', '..', 'bench', 'cuda', 'gemm-sweep.mjs');

const TORCH = join(import.meta.dirname, '..', '..', '..', 'bench', 'cuda', 'torch_bench.py');
const SUMMARY = join(import.meta.dirname, '..', '..', '..', 'bench', 'cuda', 'summary.mjs');
/** Debian's python3-torch (the tools' interpreter); the default python3 may have no torch. */
const PYTHON = '/usr/bin/python3';
const hasTorch = spawnSync(PYTHON, ['-c', 'import torch'], { encoding: 'utf8' }).status === 0;

describe('bench/cuda/bench.mjs', () => {
  it('measures full, prefix and dual steps at two canvases and writes its record (emulator)', async (ctx) => {
    if (!emulator.ok) return ctx.skip(`not supported: ${emulator.reason}`);
    const out = join(mkdtempSync(join(tmpdir(), 'fdl-bench-')), 'bench.json');
    const r = await run(process.execPath, [BENCH, '--emulator', '--iters', '1', '--out', out]);
    expect(r.stderr).toBe('');
    expect(r.status).toBe(0);
    expect(r.stdout).toMatch(/canvas +64 dual +median [\d.]+ ms +floor [\d.]+ ms/);
    expect(r.stdout).toMatch(/driver CUDA none, runtime CUDA none/);
    const rec = JSON.parse(readFileSync(out, 'utf8'));
    expect(rec.device).toBe('fast-dllm CUDA emulator (CPU)');
    expect(rec.emulator).toBe(true);
    expect(rec.results.map((x: { canvas: number; step: string }) => `${x.canvas} ${x.step}`)).toEqual([
      '32 full', '32 prefix', '32 dual', '64 full', '64 prefix', '64 dual',
    ]);
    for (const x of rec.results) {
      expect(x.medianMs).toBeGreaterThan(0);
      expect(x.floorMs).toBeGreaterThanOrEqual(x.weightFloorMs); // cached steps also read K/V
    }
    expect(rec.batched).toEqual({ measured: false, reason: 'the native model runs one sequence per pass (engine maxBatch 1)' });
  });

  it('refuses a bad --iters with a message', async () => {
    const r = await run(process.execPath, [BENCH, '--iters', 'zero']);
    expect(r.status).toBe(1);
    expect(r.stderr).toMatch(/--iters must be a positive integer, got zero/);
  });

  it('gemm-sweep.mjs times each shape at the engine\'s choice and at fixed splits under both schedules (emulator)', async (ctx) => {
    if (!emulator.ok) return ctx.skip(`not supported: ${emulator.reason}`);
    const r = await run(process.execPath, [SWEEP, '--emulator', '--iters', '1']);
    expect(r.stderr).toBe('');
    expect(r.status).toBe(0);
    const rec = JSON.parse(r.stdout.trim().split('\n').at(-1)!);
    expect(rec.results.map((x: { name: string; splits: number; parallel: boolean }) => `${x.name}/${x.splits}/${x.parallel}`)).toEqual([
      'qkv/1/false', 'qkv/1/false', 'qkv/2/true', 'qkv/2/false', 'down/2/true', 'down/1/false', 'down/2/true', 'down/2/false',
    ]);
    for (const x of rec.results) expect(x.msPerLaunch).toBeGreaterThan(0);
    expect(r.stdout).toMatch(/qkv +384 x 128 +auto=1 one split/);
    expect(r.stdout).toMatch(/down +128 x 576 +auto=2 parallel/);
  });

  it('torch_bench.py and summary.mjs: the same steps as a CPU miniature, then the side-by-side table and the targets', async (ctx) => {
    if (!emulator.ok) return ctx.skip(`not supported: ${emulator.reason}`);
    if (!hasTorch) return ctx.skip(`not supported: ${PYTHON} has no torch`);
    const dir = mkdtempSync(join(tmpdir(), 'fdl-bench-'));
    const t = await run(PYTHON, [TORCH, '--miniature', '--device', 'cpu', '--iters', '1', '--out', join(dir, 'torch.json')]);
    expect(t.status, t.stderr).toBe(0);
    const rec = JSON.parse(readFileSync(join(dir, 'torch.json'), 'utf8'));
    expect(rec.results.map((x: { canvas: number; step: string }) => `${x.canvas} ${x.step}`)).toEqual([
      '64 full', '64 prefix', '64 dual', '128 full', '128 prefix', '128 dual',
    ]);
    const b = await run(process.execPath, [BENCH, '--emulator', '--iters', '1', '--canvas', '64', '--out', join(dir, 'cuda.json')]);
    expect(b.status, b.stderr).toBe(0);
    const s = await run(process.execPath, [SUMMARY, '--cuda', join(dir, 'cuda.json'), '--torch', join(dir, 'torch.json')]);
    expect(s.status, s.stderr).toBe(0);
    expect(s.stdout).toMatch(/^ +64 dual +[\d.]+ +[\d.]+ +[\d.]+/m);
    expect(s.stdout).toMatch(/(met|missed) +canvas 64: dual step faster than PyTorch/);
    expect(s.stdout).toMatch(/not measured +batch 16 at least 8x the tokens\/s of batch 1/);
  });
});
