// The CUDA engine's kernels and forward pass under AddressSanitizer + UBSan, on the CPU emulator: builds the
// emulator addon with -DFDL_SANITIZE=ON into build-asan/, then runs the package's tests and the cuda entries of the
// conformance harness with libasan preloaded into node. Out-of-bounds reads and writes in any kernel, and
// undefined behaviour, stop the run with a report. Slow (minutes); a developer's check, not part of `npm test`:
//   npm run test:asan -w @fast-dllm/engine-cuda
import { spawnSync } from 'node:child_process';
import { existsSync } from 'node:fs';
import { dirname, join } from 'node:path';
import { fileURLToPath } from 'node:url';
import { createRequire } from 'node:module';

const pkgDir = join(dirname(fileURLToPath(import.meta.url)), '..');
const root = join(pkgDir, '..', '..');
const require = createRequire(import.meta.url);
const run = (cmd, args, opts = {}) => spawnSync(cmd, args, { stdio: 'inherit', ...opts }).status ?? 1;

const built = run(process.execPath, [require.resolve('cmake-js/bin/cmake-js'), 'compile', '--out', 'build-asan', '--config', 'Release',
  '--parallel', '2', '--CDFDL_CUDA_EMULATOR=ON', '--CDFDL_SANITIZE=ON'], { cwd: pkgDir });
if (built !== 0) process.exit(built);
const libasan = spawnSync('c++', ['-print-file-name=libasan.so'], { encoding: 'utf8' }).stdout.trim();
if (!libasan || !existsSync(libasan)) {
  console.error(`test:asan: libasan.so not found (c++ -print-file-name=libasan.so said "${libasan}"); install the compiler's sanitizer runtime`);
  process.exit(1);
}
const env = {
  ...process.env,
  LD_PRELOAD: libasan,
  ASAN_OPTIONS: 'detect_leaks=0:abort_on_error=1', // node itself is not instrumented: leak reports would be noise
  UBSAN_OPTIONS: 'halt_on_error=1:print_stacktrace=1',
  FAST_DLLM_CUDA_EMULATOR_ADDON: join(pkgDir, 'build-asan', 'Release', 'fast_dllm_cuda_emu.node'),
};
const vitest = join(root, 'node_modules', 'vitest', 'vitest.mjs');
const unit = run(process.execPath, [vitest, 'run', 'packages/engine-cuda/test'], { cwd: root, env });
if (unit !== 0) process.exit(unit);
// The conformance harness, its cuda entries only (the emulator's; the GPU's report "not supported" here).
process.exit(run(process.execPath, [vitest, 'run', 'test/conformance', '--testNamePattern', 'cuda'], { cwd: root, env }));
