// The native addon's build steps, shared by scripts/build.mjs (the workspace build, run by the root `npm install`
// through `prepare`) and scripts/install.mjs (the install step of the published package): finding nvcc, building
// with cmake-js, the prebuilt addon (prebuilds/<platform>-<arch>/, as prebuildify lays it out) and the status file
// (build/status.json) from which src/binding.ts tells a user what happened when no addon loads.
import { spawnSync } from 'node:child_process';
import { copyFileSync, existsSync, mkdirSync, readFileSync, rmSync, statSync, writeFileSync } from 'node:fs';
import { delimiter, dirname, join } from 'node:path';
import { fileURLToPath } from 'node:url';
import { createRequire } from 'node:module';

export const PKG_DIR = join(dirname(fileURLToPath(import.meta.url)), '..');
const require = createRequire(import.meta.url);

export const ADDON_FILE = 'fast_dllm_cuda.node';
/** What the loader tries first: an addon built here (`npm run build`, or the install step from source). */
export const BUILT_ADDON = join(PKG_DIR, 'build', 'Release', ADDON_FILE);
export const PLATFORM = `${process.platform}-${process.arch}`;
/** The prebuilt addon of this platform shipped in the package, and its description. */
export const PREBUILT_DIR = join(PKG_DIR, 'prebuilds', PLATFORM);
export const PREBUILT_ADDON = join(PREBUILT_DIR, ADDON_FILE);
export const PREBUILT_INFO = join(PREBUILT_DIR, 'fast_dllm_cuda.json');
export const STATUS_FILE = join(PKG_DIR, 'build', 'status.json');
/** Platforms a prebuilt addon is made for (the CUDA build is Linux-only here). */
export const PREBUILD_PLATFORMS = ['linux-x64'];
/** sm_80 and sm_90 machine code plus compute_90 PTX (CMake CUDA_ARCHITECTURES); CUDA 13 still builds sm_80. */
export const DEFAULT_ARCHS = '80-real;90-real;90-virtual';

const onPath = (exe) =>
  (process.env.PATH ?? '').split(delimiter).filter(Boolean).map((d) => join(d, exe)).find((p) => existsSync(p));

/**
 * Where nvcc was looked for, in order, and the first one found: { path, via, searched } (path undefined: none).
 * FAST_DLLM_CUDA_NVCC names the nvcc to use, or `none` for no CUDA build at all.
 */
export function findNvcc() {
  const forced = process.env.FAST_DLLM_CUDA_NVCC;
  if (forced === 'none') return { path: undefined, via: undefined, searched: 'nowhere: FAST_DLLM_CUDA_NVCC=none' };
  if (forced) return existsSync(forced) ? { path: forced, via: 'FAST_DLLM_CUDA_NVCC', searched: forced } : { path: undefined, via: undefined, searched: `FAST_DLLM_CUDA_NVCC=${forced}, which does not exist` };
  const candidates = [
    ['CUDACXX', process.env.CUDACXX],
    ['PATH', onPath('nvcc')],
    ['CUDA_HOME', process.env.CUDA_HOME && join(process.env.CUDA_HOME, 'bin', 'nvcc')],
    ['CUDA_PATH', process.env.CUDA_PATH && join(process.env.CUDA_PATH, 'bin', 'nvcc')],
    ['/usr/local/cuda', '/usr/local/cuda/bin/nvcc'],
  ];
  const searched = 'CUDACXX, PATH, $CUDA_HOME/bin, $CUDA_PATH/bin, /usr/local/cuda/bin';
  for (const [via, path] of candidates) if (path && existsSync(path)) return { path, via, searched };
  return { path: undefined, via: undefined, searched };
}

/** "13.0.88" from `nvcc --version` ("Cuda compilation tools, release 13.0, V13.0.88"), or undefined. */
export function nvccVersion(nvcc) {
  const r = spawnSync(nvcc, ['--version'], { encoding: 'utf8' });
  return /V(\d+\.\d+\.\d+)/.exec(r.stdout ?? '')?.[1];
}

export const hasHostToolchain = () => !!onPath('cmake') && !!(onPath('c++') || onPath('g++') || onPath('clang++'));

/**
 * cmake-js compile of this package into `out` (Release). Returns { ok, log }: the combined output, also printed
 * when `echo`. A build directory configured elsewhere (a CMakeCache.txt naming another source tree, e.g. copied
 * from another checkout) cannot be reused: it is configured afresh.
 */
export function cmakeCompile(out, defines = {}, { echo = true, env = process.env } = {}) {
  const cache = join(PKG_DIR, out, 'CMakeCache.txt');
  if (existsSync(cache) && !readFileSync(cache, 'utf8').includes(`CMAKE_HOME_DIRECTORY:INTERNAL=${PKG_DIR}\n`)) {
    rmSync(join(PKG_DIR, out), { recursive: true, force: true });
  }
  const args = [require.resolve('cmake-js/bin/cmake-js'), 'compile', '--out', out, '--config', 'Release', '--parallel', process.env.FAST_DLLM_BUILD_JOBS ?? '2'];
  for (const [k, v] of Object.entries(defines)) args.push(`--CD${k}=${v}`);
  const r = spawnSync(process.execPath, args, { cwd: PKG_DIR, env, encoding: 'utf8', maxBuffer: 64 * 2 ** 20 });
  const log = `${r.stdout ?? ''}${r.stderr ?? ''}${r.error ? `\n${r.error.message}` : ''}`;
  if (echo) process.stdout.write(log);
  return { ok: r.status === 0, log };
}

/** Builds build/Release/fast_dllm_cuda.node with `nvcc`; writes build/cuda-build.log. Returns { ok, log, logFile }. */
export function buildCudaAddon(nvcc, { echo = true } = {}) {
  const env = { ...process.env, CUDACXX: nvcc };
  const archs = process.env.FAST_DLLM_CUDA_ARCHS ?? DEFAULT_ARCHS;
  const r = cmakeCompile('build', { FDL_CUDA_ARCHS: archs }, { echo, env });
  mkdirSync(join(PKG_DIR, 'build'), { recursive: true });
  const logFile = join(PKG_DIR, 'build', 'cuda-build.log');
  writeFileSync(logFile, r.log);
  return { ...r, ok: r.ok && existsSync(BUILT_ADDON), logFile, archs };
}

/** Highest `prefix`x.y[.z] symbol version the file needs (objdump -T), e.g. GLIBC_ -> "2.34"; undefined if unknown. */
function symbolVersionNeeded(file, prefix) {
  const r = spawnSync('objdump', ['-T', file], { encoding: 'utf8', maxBuffer: 64 * 2 ** 20 });
  const versions = [...(r.stdout ?? '').matchAll(new RegExp(`\\b${prefix}(\\d+(?:\\.\\d+)+)`, 'g'))].map((m) => m[1].split('.').map(Number));
  if (!versions.length) return undefined;
  versions.sort((a, b) => { for (let i = 0; i < Math.max(a.length, b.length); i++) if ((a[i] ?? 0) !== (b[i] ?? 0)) return (a[i] ?? 0) - (b[i] ?? 0); return 0; });
  return versions.at(-1).join('.');
}

/**
 * Copies the freshly built addon to prebuilds/<platform>-<arch>/ with a description of what it needs, so that the
 * package carries it (`files`) and installs without a compiler. Returns the description.
 */
export function writePrebuild(nvcc, archs) {
  mkdirSync(PREBUILT_DIR, { recursive: true });
  copyFileSync(BUILT_ADDON, PREBUILT_ADDON);
  const cuda = nvccVersion(nvcc);
  const info = {
    platform: PLATFORM,
    napiVersion: 8,
    cuda,
    // CUDA's rule: a runtime needs a driver at least as new as its major.minor.
    minDriverCuda: cuda?.split('.').slice(0, 2).join('.'),
    archs: archs.split(';').map((a) => (a.endsWith('-virtual') ? `compute_${a.split('-')[0]} (PTX)` : `sm_${a.split('-')[0]}`)),
    cudaRuntime: 'static',
    glibc: symbolVersionNeeded(PREBUILT_ADDON, 'GLIBC_'),
    libstdcxx: symbolVersionNeeded(PREBUILT_ADDON, 'GLIBCXX_'),
    bytes: statSync(PREBUILT_ADDON).size,
    builtAt: new Date().toISOString(),
  };
  writeFileSync(PREBUILT_INFO, JSON.stringify(info, null, 2) + '\n');
  return info;
}

export function readPrebuildInfo() {
  try {
    return JSON.parse(readFileSync(PREBUILT_INFO, 'utf8'));
  } catch {
    return undefined;
  }
}

/**
 * Records what the last build or install step did with the native addon (src/binding.ts reads it to explain a
 * missing addon): { step: 'build' | 'install', result, detail, at }.
 */
export function writeStatus(step, result, detail) {
  mkdirSync(dirname(STATUS_FILE), { recursive: true });
  writeFileSync(STATUS_FILE, JSON.stringify({ step, result, detail, at: new Date().toISOString() }, null, 2) + '\n');
}

/** "13.0" -> 13000 (CUDA's own encoding), or NaN. */
export const cudaNumber = (v) => {
  const m = /^(\d+)\.(\d+)/.exec(v ?? '');
  return m ? Number(m[1]) * 1000 + Number(m[2]) * 10 : NaN;
};
