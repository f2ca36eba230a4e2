/**
 * The packages as a user gets them: `npm pack` of every publishable workspace package, the tarballs installed
 * into an empty project in the OS temp directory (third-party dependencies from the npm registry, nothing from
 * this repository), then `npx fast-dllm generate --json` on the WASM engine with the bundled model, the engine
 * auto-selection, `fast-dllm web` serving the page, and the code examples of the packages' READMEs, all run there.
 * Needs the packages built (the root `npm install` builds them) and the npm registry (or a warm npm cache).
 */
import { spawn } from 'node:child_process';
import { existsSync, lstatSync, mkdirSync, mkdtempSync, readdirSync, readFileSync, realpathSync, rmSync, writeFileSync } from 'node:fs';
import { builtinModules } from 'node:module';
import { tmpdir } from 'node:os';
import { delimiter, dirname, join, relative, resolve, sep } from 'node:path';
import { fileURLToPath } from 'node:url';
// @ts-expect-error: a plain .mjs build script, no types
import { VARIANTS as WASM_VARIANTS } from '../packages/engine-wasm/scripts/build-wasm.mjs';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';

const ROOT = fileURLToPath(new URL('..', import.meta.url)).replace(/[\\/]$/, '');
const INSTALL_TIMEOUT_MS = 300_000; // a cold npm cache downloads ~20 small packages; warm installs take seconds
const RUN_TIMEOUT_MS = 120_000;

interface Pkg {
  name: string;
  dir: string; // workspace path relative to ROOT
  json: PackageJson;
}
interface PackageJson {
  name: string;
  private?: boolean;
  main?: string;
  types?: string;
  exports?: unknown;
  bin?: string | Record<string, string>;
  scripts?: Record<string, string>;
  dependencies?: Record<string, string>;
  optionalDependencies?: Record<string, string>;
  peerDependencies?: Record<string, string>;
  license?: string;
  repository?: { type?: string; url?: string; directory?: string };
}

const isInside = (parent: string, child: string): boolean => {
  const rel = relative(parent, child);
  return rel === '' || (!rel.startsWith('..') && !rel.startsWith(sep) && rel !== '..');
};

/** process.env without what `npm test` adds that points into this repository (npm_* settings, its .bin dirs). */
function isolatedEnv(): NodeJS.ProcessEnv {
  // Registry, cache, proxy and TLS settings a CI machine may pass through the environment are kept.
  const keep = /^npm_config_(cache|registry|cafile|ca|proxy|https?_proxy|noproxy|strict_ssl|userconfig|globalconfig|fetch_[a-z_]+|@[^:]+:registry)$/i;
  const env: NodeJS.ProcessEnv = {};
  for (const [k, v] of Object.entries(process.env)) {
    if ((/^npm_/i.test(k) && !keep.test(k)) || ['INIT_CWD', 'NODE_PATH', 'NODE_OPTIONS'].includes(k) || k.startsWith('VITEST')) continue;
    env[k] = v;
  }
  env.PATH = (process.env.PATH ?? '')
    .split(delimiter)
    .filter((d) => d !== '' && !isInside(ROOT, resolve(d)))
    .join(delimiter);
  return env;
}

interface Ran {
  code: number | null;
  stdout: string;
  stderr: string;
  ms: number;
}

/** Runs a command in its own process group; on timeout the whole group (npm and its install scripts) is killed. */
function run(cmd: string, args: string[], cwd: string, timeoutMs: number): Promise<Ran> {
  const t0 = performance.now();
  return new Promise((resolveRun, reject) => {
    const child = spawn(cmd, args, { cwd, env: isolatedEnv(), stdio: ['ignore', 'pipe', 'pipe'], detached: true });
    let stdout = '';
    let stderr = '';
    child.stdout.on('data', (d: Buffer) => (stdout += d.toString()));
    child.stderr.on('data', (d: Buffer) => (stderr += d.toString()));
    const timer = setTimeout(() => {
      stderr += `\n[pack-install test: killed after ${timeoutMs} ms]`;
      if (child.pid !== undefined) process.kill(-child.pid, 'SIGKILL');
    }, timeoutMs);
    child.on('error', reject);
    child.on('close', (code) => {
      clearTimeout(timer);
      resolveRun({ code, stdout, stderr, ms: performance.now() - t0 });
    });
  });
}

const show = (r: Ran): string => `exit ${r.code}\n--- stdout\n${r.stdout.slice(-4000)}\n--- stderr\n${r.stderr.slice(-4000)}`;

function workspacePackages(): Pkg[] {
  const root = JSON.parse(readFileSync(join(ROOT, 'package.json'), 'utf8')) as { workspaces: string[] };
  return root.workspaces.map((dir) => ({ name: '', dir, json: JSON.parse(readFileSync(join(ROOT, dir, 'package.json'), 'utf8')) as PackageJson }))
    .map((p) => ({ ...p, name: p.json.name }));
}

/** Every path a package.json promises (main, types, export targets, bin); `*` patterns as regexps. */
function promisedPaths(json: PackageJson): (string | RegExp)[] {
  const out: (string | RegExp)[] = [];
  const add = (p: string): void => {
    const clean = p.replace(/^\.\//, '');
    out.push(clean.includes('*') ? new RegExp('^' + clean.split('*').map((s) => s.replace(/[.+?^${}()|[\]\\]/g, '\\$&')).join('.+') + '$') : clean);
  };
  const walk = (v: unknown): void => {
    if (typeof v === 'string') add(v);
    else if (v && typeof v === 'object') Object.values(v).forEach(walk);
  };
  if (json.main) add(json.main);
  if (json.types) add(json.types);
  walk(json.exports);
  walk(json.bin);
  return out;
}

/** Bare module specifiers imported by a JS file (static, dynamic with a literal, require, require.resolve). */
function bareImports(source: string): string[] {
  const re = /(?:\bfrom\s*|\bimport\s*\(\s*|\bimport\s+|\brequire(?:\.resolve)?\s*\(\s*)['"]([^'"]+)['"]/g;
  return [...source.matchAll(re)].map((m) => m[1]).filter((s) => !s.startsWith('.') && !s.startsWith('/'));
}
const packageOf = (spec: string): string => spec.split('/').slice(0, spec.startsWith('@') ? 2 : 1).join('/');
const isBuiltin = (spec: string): boolean => spec.startsWith('node:') || builtinModules.includes(packageOf(spec));

function filesUnder(dir: string, pred: (p: string) => boolean = () => true): string[] {
  if (!existsSync(dir)) return [];
  return readdirSync(dir, { recursive: true, encoding: 'utf8' }).map((f) => join(dir, f)).filter((f) => lstatSync(f).isFile() && pred(f));
}

const publishable = workspacePackages().filter((p) => !p.json.private);
let work = '';
let app = '';
let packed: { name: string; filename: string; files: { path: string }[] }[] = [];

describe('packed packages installed into an empty project', () => {
  beforeAll(async () => {
    work = realpathSync(mkdtempSync(join(tmpdir(), 'fast-dllm-pack-')));
    app = join(work, 'app');
    if (isInside(ROOT, work)) throw new Error(`the temp dir ${work} lies inside the repository; set TMPDIR elsewhere`);
    // Node resolves bare imports through every ancestor's node_modules: none may exist above the project.
    for (let d = dirname(app); ; d = dirname(d)) {
      if (existsSync(join(d, 'node_modules'))) throw new Error(`${join(d, 'node_modules')} exists above the test project and would leak modules into it; remove it or set TMPDIR elsewhere`);
      if (dirname(d) === d) break;
    }
    const tarballs = join(work, 'tarballs');
    mkdirSync(tarballs);
    const pack = await run('npm', ['pack', '--json', '--pack-destination', tarballs, ...publishable.flatMap((p) => ['-w', p.name])], ROOT, RUN_TIMEOUT_MS);
    if (pack.code !== 0) throw new Error(`npm pack failed\n${show(pack)}`);
    packed = JSON.parse(pack.stdout.slice(pack.stdout.indexOf('[')));
    mkdirSync(app);
    writeFileSync(join(app, 'package.json'), JSON.stringify({ name: 'fast-dllm-pack-install-test', version: '0.0.0', private: true, type: 'module' }));
    const install = await run(
      'npm',
      ['install', '--no-audit', '--no-fund', '--prefer-offline', '--loglevel=error', ...packed.map((t) => join(tarballs, t.filename))],
      app,
      INSTALL_TIMEOUT_MS,
    );
    if (install.code !== 0) throw new Error(`npm install of the packed tarballs failed\n${show(install)}`);
    console.log(`pack-install: npm pack ${(pack.ms / 1000).toFixed(1)} s, npm install ${(install.ms / 1000).toFixed(1)} s (${work})`);
  }, INSTALL_TIMEOUT_MS + RUN_TIMEOUT_MS);

  afterAll(() => {
    if (work) rmSync(work, { recursive: true, force: true });
  });

  it('packs exactly the publishable packages, each with its license, README, repository and every promised file', () => {
    expect(publishable.map((p) => p.name)).toEqual(expect.arrayContaining(['@fast-dllm/cli', '@fast-dllm/default-model', '@fast-dllm/engine-wasm', '@fast-dllm/engine-cuda']));
    expect(packed.map((t) => t.name).sort()).toEqual(publishable.map((p) => p.name).sort());
    const rootJson = JSON.parse(readFileSync(join(ROOT, 'package.json'), 'utf8')) as PackageJson;
    for (const p of publishable) {
      const files = new Set(packed.find((t) => t.name === p.name)!.files.map((f) => f.path));
      const missing = promisedPaths(p.json).filter((want) => (typeof want === 'string' ? !files.has(want) : ![...files].some((f) => want.test(f))));
      expect(missing, `${p.name}: package.json promises files its tarball lacks`).toEqual([]);
      expect([...files].filter((f) => /(^|\/)test\/|\.tsbuildinfo$/.test(f)), `${p.name} ships tests or build state`).toEqual([]);
      for (const f of ['LICENSE', 'README.md', 'package.json']) expect(files.has(f), `${p.name} ships ${f}`).toBe(true);
      expect(p.json.license).toBe('Apache-2.0');
      expect(p.json.repository).toEqual({ type: 'git', url: rootJson.repository?.url, directory: p.dir });
      expect(readFileSync(join(ROOT, p.dir, 'LICENSE'), 'utf8'), `${p.dir}/LICENSE`).toBe(readFileSync(join(ROOT, 'LICENSE'), 'utf8'));
    }
    // What the engines load at run time by path rather than by import: every WASM build and the bundled model.
    const wasm = publishable.find((p) => p.name === '@fast-dllm/engine-wasm')!;
    const wasmFiles = packed.find((t) => t.name === wasm.name)!.files.map((f) => f.path);
    const builds = Object.keys(WASM_VARIANTS as Record<string, string[]>); // what scripts/build-wasm.mjs writes
    expect(builds.length).toBeGreaterThan(0);
    expect(builds.filter((b) => !wasmFiles.includes(b))).toEqual([]);
    const dm = publishable.find((p) => p.name === '@fast-dllm/default-model')!;
    const dmFiles = packed.find((t) => t.name === dm.name)!.files.map((f) => f.path);
    const shipped = ['model', 'eval'].flatMap((d) => filesUnder(join(ROOT, dm.dir, d)).map((f) => relative(join(ROOT, dm.dir), f).split(sep).join('/')));
    expect(shipped).toContain('model/model.safetensors');
    expect(shipped.filter((f) => !dmFiles.includes(f))).toEqual([]);
  });

  it('installs from the tarballs only: real directories inside the project, nothing linked or resolved from the repository', async () => {
    const lock = JSON.parse(readFileSync(join(app, 'package-lock.json'), 'utf8')) as { packages: Record<string, { resolved?: string; link?: boolean }> };
    for (const t of packed) expect(lock.packages[`node_modules/${t.name}`]?.resolved, t.name).toMatch(new RegExp(`^file:.*${t.filename.replace(/\./g, '\\.')}$`));
    expect(Object.entries(lock.packages).filter(([k, v]) => v.link || (k.includes('/@fast-dllm/') && !packed.some((t) => k === `node_modules/${t.name}`)))).toEqual([]);
    for (const t of packed) expect(lstatSync(join(app, 'node_modules', t.name)).isSymbolicLink(), t.name).toBe(false);
    // Any symlink (node_modules/.bin) must point inside the project.
    const links = readdirSync(join(app, 'node_modules'), { recursive: true, encoding: 'utf8' }).map((f) => join(app, 'node_modules', f)).filter((f) => lstatSync(f).isSymbolicLink());
    expect(links.filter((l) => !isInside(app, realpathSync(l)))).toEqual([]);
    expect(realpathSync(join(app, 'node_modules', '.bin', 'fast-dllm'))).toBe(join(app, 'node_modules', '@fast-dllm', 'cli', 'bin', 'fast-dllm.js'));
    // Node's resolution from the project, for every package and every dependency they declare.
    const specs = [...new Set(publishable.flatMap((p) => [p.name, ...Object.keys(p.json.dependencies ?? {})]))];
    writeFileSync(join(app, 'resolve.mjs'), `for (const s of ${JSON.stringify(specs)}) console.log(s, import.meta.resolve(s));\n`);
    const r = await run(process.execPath, ['resolve.mjs'], app, RUN_TIMEOUT_MS);
    expect(r.code, show(r)).toBe(0);
    const resolved = r.stdout.trim().split('\n').map((l) => l.split(' '));
    expect(resolved.map(([s]) => s)).toEqual(specs);
    expect(resolved.filter(([, url]) => !isInside(join(app, 'node_modules'), fileURLToPath(url)))).toEqual([]);
  });

  it('imports nothing at run time or install time that the package does not declare as a dependency', () => {
    const problems: string[] = [];
    for (const p of publishable) {
      const dir = join(app, 'node_modules', p.name);
      const allowed = new Set([p.name, ...Object.keys({ ...p.json.dependencies, ...p.json.optionalDependencies, ...p.json.peerDependencies })]);
      // Run-time code: every JS file in the folders that main, exports and bin point into.
      const tops = promisedPaths(p.json).map((x) => (typeof x === 'string' ? x : x.source.slice(1)).split('/'));
      const roots = new Set(tops.filter((parts) => parts.length > 1).map((parts) => parts[0]));
      const files = [...roots].flatMap((d) => filesUnder(join(dir, d), (f) => /\.(m|c)?js$/.test(f)));
      // Install-time code: the scripts npm runs on install, and the files they import.
      const lifecycle = ['preinstall', 'install', 'postinstall'].map((s) => p.json.scripts?.[s]).filter((s): s is string => !!s);
      const queue = lifecycle.flatMap((s) => [...s.matchAll(/\bnode\s+(\S+\.(?:m|c)?js)\b/g)].map((m) => join(dir, m[1])));
      while (queue.length) {
        const f = queue.pop()!;
        if (files.includes(f)) continue;
        files.push(f);
        const rel = [...readFileSync(f, 'utf8').matchAll(/(?:\bfrom\s*|\bimport\s*\(\s*|\bimport\s+)['"](\.[^'"]+)['"]/g)].map((m) => resolve(dirname(f), m[1]));
        queue.push(...rel.filter((r) => existsSync(r)));
      }
      expect(files.length, `${p.name}: no run-time files found`).toBeGreaterThan(0);
      for (const f of files)
        for (const spec of bareImports(readFileSync(f, 'utf8')))
          if (!isBuiltin(spec) && !allowed.has(packageOf(spec))) problems.push(`${p.name}: ${relative(dir, f)} imports '${spec}', which is not in its dependencies`);
    }
    expect(problems).toEqual([]);
  });

  it('npx fast-dllm generate --json runs on the WASM engine with the bundled model', async () => {
    const r = await run('npx', ['--no', 'fast-dllm', 'generate', '--prompt', 'What is 23 + 48 ?', '--engine', 'wasm', '--json'], app, RUN_TIMEOUT_MS);
    console.log(`pack-install: npx fast-dllm generate --engine wasm ${(r.ms / 1000).toFixed(1)} s`);
    expect(r.code, show(r)).toBe(0);
    const j = JSON.parse(r.stdout) as { engine: string; model: string; outputIds: unknown; text: string };
    expect(j.engine).toBe('wasm');
    expect(j.model).toBe(join(app, 'node_modules', '@fast-dllm', 'default-model', 'model'));
    expect(Array.isArray(j.outputIds) && j.outputIds.length > 0 && j.outputIds.every((x) => Number.isInteger(x))).toBe(true);
    expect(j.text).toMatch(/answer: 71\b/);
  });

  it('npx fast-dllm generate with the default engine choice runs (the CUDA package loads or says why not)', async () => {
    const r = await run('npx', ['--no', 'fast-dllm', 'generate', '--prompt', 'What is 23 + 48 ?', '--json'], app, RUN_TIMEOUT_MS);
    expect(r.code, show(r)).toBe(0);
    expect(r.stderr).toMatch(/^engine: /m);
    console.log(`pack-install: auto engine: ${r.stderr.split('\n').find((l) => l.startsWith('engine: '))}`);
    expect(Array.isArray((JSON.parse(r.stdout) as { outputIds: unknown }).outputIds)).toBe(true);
  });

  it('fast-dllm web serves the page, its worker and kernels, and the bundled model from the installed packages', async () => {
    const child = spawn(process.execPath, [join(app, 'node_modules', '@fast-dllm', 'cli', 'bin', 'fast-dllm.js'), 'web', '--port', '0'],
      { cwd: app, env: isolatedEnv(), stdio: ['ignore', 'pipe', 'pipe'] });
    let out = '';
    let err = '';
    child.stderr.on('data', (d: Buffer) => (err += d.toString()));
    const exited = new Promise<number | null>((r) => child.on('close', r));
    try {
      const url = await new Promise<string>((ok, fail) => {
        const timer = setTimeout(() => fail(new Error(`fast-dllm web did not start: ${err}`)), RUN_TIMEOUT_MS);
        child.stdout.on('data', (d: Buffer) => {
          out += d.toString();
          const m = /serving (http:\/\/\S+\/) /.exec(out);
          if (m) {
            clearTimeout(timer);
            ok(m[1]);
          }
        });
        void exited.then((code) => fail(new Error(`fast-dllm web exited with ${code}: ${err}`)));
      });
      for (const path of ['', 'app.js', 'engine-worker.js', 'kernel-worker.js', 'wasm/threads-fma.wasm', 'models/default/config.json']) {
        const r = await fetch(new URL(path, url));
        expect(r.status, path).toBe(200);
        expect(r.headers.get('cross-origin-embedder-policy'), path).toBe('require-corp');
        expect((await r.arrayBuffer()).byteLength, path).toBeGreaterThan(0);
      }
    } finally {
      child.kill('SIGINT');
    }
    expect(await exited).toBe(0);
  });

  it("the READMEs' marked code examples run in the installed project and print what the READMEs quote", async () => {
    const marker = 'pack-install.test.ts runs the next code block';
    let ran = 0;
    for (const p of publishable) {
      const readme = readFileSync(join(ROOT, p.dir, 'README.md'), 'utf8');
      for (let at = readme.indexOf(marker); at >= 0; at = readme.indexOf(marker, at + 1)) {
        const block = /```js\n([\s\S]*?)```/.exec(readme.slice(at));
        expect(block, `${p.dir}/README.md: no \`\`\`js block after the marker`).not.toBeNull();
        const file = join(app, `readme-example-${ran}.mjs`);
        writeFileSync(file, block![1]);
        const r = await run(process.execPath, [file], app, RUN_TIMEOUT_MS);
        expect(r.code, `${p.dir}/README.md example\n${show(r)}`).toBe(0);
        const lines = r.stdout.split('\n').filter((l) => l.trim() !== '');
        expect(lines.length).toBeGreaterThan(0);
        for (const l of lines) expect(readme, `${p.dir}/README.md should quote the line it prints`).toContain('`' + l + '`');
        ran++;
      }
    }
    expect(ran).toBeGreaterThan(0);
  });
});
