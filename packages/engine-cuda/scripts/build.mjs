// Build of @fast-dllm/engine-cuda in the repository (the root `npm install` runs it through `prepare`, and
// `npm run build -w @fast-dllm/engine-cuda`): the CPU emulator addon (any C++ compiler), the CUDA addon when nvcc
// is found (scripts/native.mjs findNvcc), copied to prebuilds/<platform>-<arch>/ so that `npm pack` ships it,
// then the TypeScript. A machine without CUDA still gets a working package whose provider says why the engine is
// unavailable: this script never fails for lack of CUDA; FAST_DLLM_CUDA_STRICT=1 makes a missing or failed CUDA
// build fatal (CI that publishes the package).
import { spawnSync } from 'node:child_process';
import { existsSync, rmSync } from 'node:fs';
import { join } from 'node:path';
import { createRequire } from 'node:module';
import {
  PKG_DIR, PLATFORM, PREBUILD_PLATFORMS, PREBUILT_DIR, buildCudaAddon, cmakeCompile, findNvcc, hasHostToolchain,
  nvccVersion, writePrebuild, writeStatus,
} from './native.mjs';

const require = createRequire(import.meta.url);
const strict = process.env.FAST_DLLM_CUDA_STRICT === '1';
const fail = (msg) => {
  if (strict) {
    console.error(`${msg} (FAST_DLLM_CUDA_STRICT=1)`);
    process.exit(1);
  }
  console.warn(msg);
};

// Each step says what it builds before it starts (they take minutes on a small machine) and how long it took; the
// compiler's output is printed only when a step fails, and the CUDA build's is kept in build/cuda-build.log.
const seconds = (t0) => `${((performance.now() - t0) / 1000).toFixed(0)} s`;

// The emulator build (host compiler only) lets the conformance suite run the CUDA engine's code without a GPU.
if (!hasHostToolchain()) {
  console.log('engine-cuda: skipped emulator build: no cmake or C++ compiler on PATH');
} else {
  console.log('engine-cuda: building the CPU emulator addon (build-emu/, for the tests)');
  const t0 = performance.now();
  const r = cmakeCompile('build-emu', { FDL_CUDA_EMULATOR: 'ON' }, { echo: false });
  if (r.ok) console.log(`engine-cuda: emulator addon built in ${seconds(t0)}`);
  else console.warn(`${r.log}\nengine-cuda: emulator build FAILED (the cmake output is above); its conformance tests will be skipped`);
}

const nvcc = findNvcc();
if (!nvcc.path) {
  const detail = `no nvcc found (looked in ${nvcc.searched})`;
  writeStatus('build', 'no-nvcc', detail);
  // A prebuilt addon left from an earlier build with nvcc would be packed as if it matched these sources.
  rmSync(PREBUILT_DIR, { recursive: true, force: true });
  fail(`engine-cuda: skipped the CUDA build: ${detail}`);
} else {
  const version = nvccVersion(nvcc.path) ?? 'unknown version';
  console.log(`engine-cuda: building the CUDA addon with nvcc ${version} (${nvcc.path}, found via ${nvcc.via}); FAST_DLLM_CUDA_NVCC=none skips it`);
  const t0 = performance.now();
  const r = buildCudaAddon(nvcc.path, { echo: false });
  if (r.ok) console.log(`engine-cuda: CUDA addon built in ${seconds(t0)} (log: ${r.logFile})`);
  if (!r.ok) {
    console.warn(r.log);
    writeStatus('build', 'failed', `the CUDA build with nvcc ${version} (${nvcc.path}) failed; log: ${r.logFile}`);
    rmSync(PREBUILT_DIR, { recursive: true, force: true });
    fail(`engine-cuda: CUDA build FAILED (log ${r.logFile}); the cuda engine will report "native addon not built"`);
  } else {
    writeStatus('build', 'built', `built with nvcc ${version} (${nvcc.path}) for ${r.archs}`);
    if (PREBUILD_PLATFORMS.includes(PLATFORM)) {
      const info = writePrebuild(nvcc.path, r.archs);
      console.log(`engine-cuda: prebuilt addon ${join('prebuilds', PLATFORM)}: CUDA ${info.cuda}, ${info.archs.join(', ')}, glibc ${info.glibc}`);
    }
  }
}

const tsc = require.resolve('typescript/bin/tsc');
if (spawnSync(process.execPath, [tsc, '--build'], { cwd: PKG_DIR, stdio: 'inherit' }).status !== 0) process.exit(1);
if (!existsSync(join(PKG_DIR, 'dist', 'index.js'))) process.exit(1);
