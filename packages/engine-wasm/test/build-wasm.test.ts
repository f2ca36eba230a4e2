/**
 * The WebAssembly build as `npm install` runs it (scripts/build-wasm.mjs): it says what it compiles, one line per
 * variant as it finishes (the install printed nothing for minutes), and writes the bytes the package ships. Only
 * the scalar variant is compiled here (about a second); every variant's arguments sit in the same VARIANTS table.
 */
import { spawnSync } from 'node:child_process';
import { mkdtempSync, readFileSync, rmSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { fileURLToPath } from 'node:url';
import { afterAll, describe, expect, it } from 'vitest';

const PKG = fileURLToPath(new URL('..', import.meta.url));
const SCRIPT = join(PKG, 'scripts', 'build-wasm.mjs');
const out = mkdtempSync(join(tmpdir(), 'fast-dllm-wasm-build-'));
afterAll(() => rmSync(out, { recursive: true, force: true }));

describe('scripts/build-wasm.mjs', () => {
  it('prints a line per variant and writes the bytes of the package build', () => {
    const r = spawnSync(process.execPath, [SCRIPT, '--out', out, 'build/scalar.wasm'], { encoding: 'utf8', timeout: 120_000 });
    expect(r.status, r.stderr).toBe(0);
    const lines = r.stdout.trim().split('\n');
    expect(lines[0]).toBe('engine-wasm: compiling 1 WebAssembly variant with AssemblyScript, 1 at a time');
    expect(lines[1]).toMatch(/^engine-wasm: build\/scalar\.wasm \(\d+\.\d s\)$/);
    expect(lines[2]).toMatch(/^engine-wasm: WebAssembly built in \d+\.\d s$/);
    expect(readFileSync(join(out, 'build', 'scalar.wasm')).equals(readFileSync(join(PKG, 'build', 'scalar.wasm')))).toBe(true);
  });

  it('refuses a variant it does not know, naming the ones it does', () => {
    const r = spawnSync(process.execPath, [SCRIPT, '--out', out, 'build/nope.wasm'], { encoding: 'utf8', timeout: 60_000 });
    expect(r.status).toBe(2);
    expect(r.stderr).toMatch(/no variant build\/nope\.wasm; the variants are build\/release\.wasm, .*build\/scalar\.wasm/);
  });
});
