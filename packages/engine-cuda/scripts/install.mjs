// Install step of the published @fast-dllm/engine-cuda (npm runs it as the package's `install` script). Never
// fails the install: a machine without a GPU, driver or nvcc gets a package whose provider says why the engine is
// unavailable (FAST_DLLM_CUDA_STRICT=1 makes a failed build fatal). In order:
// 1. the prebuilt addon for this platform (prebuilds/<platform>-<arch>/), when it loads and this machine's driver
//    runs its CUDA runtime: nothing to build;
// 2. else, with nvcc (CUDACXX, PATH, $CUDA_HOME/bin, $CUDA_PATH/bin, /usr/local/cuda/bin) plus cmake and a C++
//    compiler: a build from source into build/Release/, which the loader prefers;
// 3. else: a message saying which of those is missing; the prebuilt addon stays, for a driver installed later.
// FAST_DLLM_CUDA_BUILD_FROM_SOURCE=1 skips step 1. In the repository (src/ exists) the root `npm install` builds
// the package through `prepare` (scripts/build.mjs), so this does nothing there.
import { spawnSync } from 'node:child_process';
import { existsSync } from 'node:fs';
import { join } from 'node:path';
import {
  PKG_DIR, PLATFORM, PREBUILT_ADDON, buildCudaAddon, cudaNumber, findNvcc, hasHostToolchain, nvccVersion,
  readPrebuildInfo, writeStatus,
} from './native.mjs';

if (existsSync(join(PKG_DIR, 'src'))) process.exit(0);

const say = (msg) => console.log(`@fast-dllm/engine-cuda: ${msg}`);

/** Loads the prebuilt addon in a child process (a crash there cannot break the install): its deviceInfo(). */
function probePrebuilt() {
  const code = `let b;
    try { b = require(${JSON.stringify(PREBUILT_ADDON)}); } catch (e) { process.stdout.write(JSON.stringify({ loadError: e.message })); process.exit(0); }
    process.stdout.write(JSON.stringify({ info: b.deviceInfo() }));`;
  const r = spawnSync(process.execPath, ['-e', code], { encoding: 'utf8', timeout: 60_000 });
  let out;
  try {
    out = JSON.parse(r.stdout);
  } catch {
    return { loaded: false, error: `the probe process ended with ${r.signal ?? `exit ${r.status}`}: ${(r.stderr || r.error?.message || '').trim().split('\n').at(-1)}` };
  }
  return out.loadError ? { loaded: false, error: out.loadError } : { loaded: true, info: out.info };
}

let why; // why the prebuilt addon is not enough here (undefined: it is, or there is none)
const prebuilt = readPrebuildInfo();
if (process.env.FAST_DLLM_CUDA_BUILD_FROM_SOURCE === '1') {
  why = 'FAST_DLLM_CUDA_BUILD_FROM_SOURCE=1';
} else if (!existsSync(PREBUILT_ADDON)) {
  why = `this package has no prebuilt addon for ${PLATFORM}`;
} else {
  const what = `prebuilt addon (CUDA ${prebuilt?.cuda ?? '?'} runtime, ${prebuilt?.archs?.join(', ') ?? '?'})`;
  const p = probePrebuilt();
  if (!p.loaded) {
    why = `the ${what} does not load here (${p.error}${prebuilt?.glibc ? `; it needs glibc ${prebuilt.glibc}` : ''})`;
  } else if (p.info.available) {
    say(`using the ${what}: ${p.info.name}, compute capability ${p.info.computeCapability}, driver CUDA ${p.info.driverVersion}`);
    writeStatus('install', 'prebuilt', `${what} loads and sees ${p.info.name}`);
    process.exit(0);
  } else if (cudaNumber(p.info.driverVersion) < cudaNumber(p.info.runtimeVersion)) {
    why = `the ${what} needs a driver for CUDA ${prebuilt?.minDriverCuda ?? p.info.runtimeVersion} or newer; this machine's driver supports CUDA ${p.info.driverVersion}`;
  } else {
    // No GPU or no driver: nothing a build from source would change.
    say(`installed the ${what}; it finds no GPU here: ${p.info.reason}`);
    writeStatus('install', 'prebuilt', `${what} installed; at install time: ${p.info.reason}`);
    process.exit(0);
  }
}

const nvcc = findNvcc();
if (!nvcc.path || !hasHostToolchain()) {
  const missing = !nvcc.path ? `no nvcc (looked in ${nvcc.searched})` : 'no cmake or C++ compiler on PATH';
  say(`${why}, and a build from source is not possible: ${missing}. The cuda engine is unavailable; the other engines work.`);
  writeStatus('install', nvcc.path ? 'no-toolchain' : 'no-nvcc', `${why}; ${missing}`);
  process.exit(0);
}
const version = nvccVersion(nvcc.path) ?? 'unknown version';
say(`${why}: building from source with nvcc ${version} (${nvcc.path}); this takes a few minutes`);
const r = buildCudaAddon(nvcc.path, { echo: false });
if (r.ok) {
  say(`built build/Release/fast_dllm_cuda.node with nvcc ${version} for ${r.archs}`);
  writeStatus('install', 'built', `${why}; built from source with nvcc ${version} (${nvcc.path})`);
} else {
  say(`the build from source FAILED (log: ${r.logFile}); the cuda engine is unavailable. Last lines:\n${r.log.trim().split('\n').slice(-15).join('\n')}`);
  writeStatus('install', 'failed', `${why}; the build from source with nvcc ${version} failed; log: ${r.logFile}`);
  if (process.env.FAST_DLLM_CUDA_STRICT === '1') process.exit(1);
}
