// Build of @fast-dllm/engine-cuda: the CPU emulator addon (any C++ compiler), the CUDA addon when nvcc is on
// PATH (both through cmake-js), then the TypeScript.
// A machine without CUDA still gets a working package whose provider reports why the engine is unavailable;
// this script never fails for lack of CUDA (the root `npm install` runs it through `prepare`).
import { spawnSync } from 'node:child_process';
import { existsSync } from 'node:fs';
import { delimiter, join, dirname } from 'node:path';
import { fileURLToPath } from 'node:url';
import { createRequire } from 'node:module';

const pkgDir = join(dirname(fileURLToPath(import.meta.url)), '..');
const require = createRequire(import.meta.url);

function findOnPath(exe) {
  for (const dir of (process.env.PATH ?? '').split(delimiter)) {
    if (dir && existsSync(join(dir, exe))) return join(dir, exe);
  }
  return undefined;
}

function run(cmd, args) {
  const r = spawnSync(cmd, args, { cwd: pkgDir, stdio: 'inherit' });
  return r.status === 0;
}

const cmakeJs = require.resolve('cmake-js/bin/cmake-js');
const compile = (out, extra = []) =>
  run(process.execPath, [cmakeJs, 'compile', '--out', out, '--config', 'Release', '--parallel', '2', ...extra]);

// The emulator build (host compiler only) lets the conformance suite run the CUDA engine's code without a GPU.
if (!findOnPath('cmake') || !(findOnPath('c++') || findOnPath('g++') || findOnPath('clang++'))) {
  console.log('engine-cuda: skipped emulator build: no cmake or C++ compiler on PATH');
} else if (!compile('build-emu', ['--CDFDL_CUDA_EMULATOR=ON'])) {
  console.warn('engine-cuda: emulator build FAILED (see the cmake output above); its conformance tests will be skipped');
}

const nvcc = findOnPath('nvcc');
if (!nvcc) {
  console.log('engine-cuda: skipped native build: no nvcc on PATH');
} else {
  // CUDACXX tells CMake which nvcc to use when the CUDA root is not on its default search path.
  process.env.CUDACXX ??= nvcc;
  if (!compile('build')) {
    // Strict mode is for CI on GPU machines; elsewhere a broken native build must not break the install.
    const msg = 'engine-cuda: native build FAILED (see the cmake output above); the cuda engine will report "native addon not built"';
    if (process.env.FAST_DLLM_CUDA_STRICT === '1') {
      console.error(msg);
      process.exit(1);
    }
    console.warn(msg);
  }
}

const tsc = require.resolve('typescript/bin/tsc');
if (!run(process.execPath, [tsc, '--build'])) process.exit(1);
