/**
 * The published package's install step (scripts/install.mjs) and its loader (src/binding.ts), on a copy of what
 * `npm pack` ships (dist, scripts, prebuilds, package.json) in a temporary directory: which addon the loader
 * picks, what the install step does with the prebuilt addon on this machine, and that a missing addon is
 * explained by what actually happened. Building from source is not run here (minutes of nvcc); the README says
 * how it was checked.
 */
import { spawnSync } from 'node:child_process';
import { cpSync, existsSync, mkdirSync, mkdtempSync, readFileSync, rmSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { afterAll, describe, expect, it } from 'vitest';
import { PREBUILT_ADDON_PATH } from '../src/index.js';

const PKG = join(import.meta.dirname, '..');
const PLATFORM = `${process.platform}-${process.arch}`;
const made: string[] = [];

/** A copy of the package as installed: no src/, so install.mjs acts as in a user's node_modules. */
function installedCopy(withPrebuilt: boolean): string {
  const dir = mkdtempSync(join(tmpdir(), 'fdl-cuda-install-'));
  made.push(dir);
  for (const f of ['dist', 'scripts', 'package.json']) cpSync(join(PKG, f), join(dir, f), { recursive: true });
  if (withPrebuilt) cpSync(join(PKG, 'prebuilds'), join(dir, 'prebuilds'), { recursive: true });
  return dir;
}

function install(dir: string, env: Record<string, string> = {}) {
  const r = spawnSync(process.execPath, ['scripts/install.mjs'], { cwd: dir, encoding: 'utf8', env: { ...process.env, ...env } });
  const status = existsSync(join(dir, 'build', 'status.json')) ? JSON.parse(readFileSync(join(dir, 'build', 'status.json'), 'utf8')) : undefined;
  return { code: r.status, out: r.stdout + r.stderr, status };
}

/** What the copy's loader says: the addon path it picks and, when it cannot load one, why. */
function loader(dir: string): { path: string; ok: boolean; reason?: string } {
  const code = `import('./dist/binding.js').then((b) => { const r = b.loadBinding(); console.log(JSON.stringify({ path: b.ADDON_PATH, ok: r.ok, reason: r.reason })); });`;
  const r = spawnSync(process.execPath, ['-e', code], { cwd: dir, encoding: 'utf8' });
  expect(r.status, r.stderr).toBe(0);
  return JSON.parse(r.stdout);
}

afterAll(() => {
  for (const d of made) rmSync(d, { recursive: true, force: true });
});

describe('installed package (a copy of the packed files)', () => {
  const hasPrebuilt = existsSync(PREBUILT_ADDON_PATH);

  it('loads the prebuilt addon when nothing was built, and a built one before it', (ctx) => {
    if (!hasPrebuilt) return ctx.skip(`not supported: no prebuilt addon (${PREBUILT_ADDON_PATH}): the build found no nvcc`);
    const dir = installedCopy(true);
    expect(loader(dir).path).toBe(join(dir, 'prebuilds', PLATFORM, 'fast_dllm_cuda.node'));
    mkdirSync(join(dir, 'build', 'Release'), { recursive: true });
    cpSync(join(dir, 'prebuilds', PLATFORM, 'fast_dllm_cuda.node'), join(dir, 'build', 'Release', 'fast_dllm_cuda.node'));
    expect(loader(dir).path).toBe(join(dir, 'build', 'Release', 'fast_dllm_cuda.node'));
  });

  it('install keeps the prebuilt addon and reports what it sees (no build)', (ctx) => {
    if (!hasPrebuilt) return ctx.skip(`not supported: no prebuilt addon (${PREBUILT_ADDON_PATH}): the build found no nvcc`);
    const dir = installedCopy(true);
    const r = install(dir);
    expect(r.code, r.out).toBe(0);
    expect(r.status.step).toBe('install');
    expect(r.status.result, r.out).toBe('prebuilt');
    expect(r.out).toMatch(/@fast-dllm\/engine-cuda: (using|installed) the prebuilt addon \(CUDA \d+\.\d+\.\d+ runtime, sm_80, sm_90, compute_90 \(PTX\)\)/);
    expect(existsSync(join(dir, 'build', 'Release'))).toBe(false);
  });

  it('without a prebuilt addon and without nvcc: exits 0 and the loader says exactly that', () => {
    const dir = installedCopy(false);
    const r = install(dir, { FAST_DLLM_CUDA_NVCC: 'none' });
    expect(r.code, r.out).toBe(0);
    expect(r.out).toContain(`this package has no prebuilt addon for ${PLATFORM}, and a build from source is not possible: no nvcc (looked in nowhere: FAST_DLLM_CUDA_NVCC=none)`);
    expect(r.status).toMatchObject({ step: 'install', result: 'no-nvcc' });
    const l = loader(dir);
    expect(l.ok).toBe(false);
    expect(l.reason).toMatch(/^native addon not built: when the package was installed \(.+\): this package has no prebuilt addon for linux-x64; no nvcc \(looked in nowhere: FAST_DLLM_CUDA_NVCC=none\); put nvcc/);
  });

  it('a prebuilt addon that does not load, and no nvcc: exits 0, saying why', () => {
    const dir = installedCopy(false);
    mkdirSync(join(dir, 'prebuilds', PLATFORM), { recursive: true });
    writeFileSync(join(dir, 'prebuilds', PLATFORM, 'fast_dllm_cuda.node'), 'not an ELF file\n'.repeat(300));
    const r = install(dir, { FAST_DLLM_CUDA_NVCC: 'none' });
    expect(r.code, r.out).toBe(0);
    expect(r.out).toMatch(/the prebuilt addon \(CUDA \? runtime, \?\) does not load here \(.*invalid ELF header.*\), and a build from source is not possible: no nvcc/);
    const l = loader(dir);
    expect(l.reason).toMatch(/^native addon .*fast_dllm_cuda\.node failed to load \(.*invalid ELF header.*\); build it from source with nvcc on PATH/);
  });

  it('a loader with no status file and no addon says no build ran, not that nvcc is missing', () => {
    const dir = installedCopy(false);
    const l = loader(dir);
    expect(l.reason).toMatch(/^native addon not built: no prebuilt addon for linux-x64 in this package and no build here/);
    expect(l.reason).not.toMatch(/no nvcc/);
  });

  it('does nothing in the repository checkout (the root prepare builds it)', () => {
    const r = spawnSync(process.execPath, ['scripts/install.mjs'], { cwd: PKG, encoding: 'utf8' });
    expect(r.status).toBe(0);
    expect(r.stdout + r.stderr).toBe('');
  });
});
