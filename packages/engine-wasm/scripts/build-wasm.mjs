// Compiles the AssemblyScript kernels to the five WebAssembly variants in build/ (the package's `build`, run by the
// root `npm install` through `prepare`), one line per variant as it finishes.
//
// Where the time went (2026-12-07, 2-core machine shared with three other builds): each variant was its own
// `npm run asbuild:*` and `asc` process, one after another: npm's start, asc's load (~2 s) and its parse and compile
// (~2.5 s) paid five times, and Binaryen's -O3 optimize (~6 s, 2/3 of each) on one core while the other idled.
// Here asc loads once per worker and the variants compile on up to FAST_DLLM_BUILD_JOBS (default 2) workers; the
// arguments, and so the .wasm bytes, are those of the old scripts.
import { availableParallelism } from 'node:os';
import { join, resolve } from 'node:path';
import { fileURLToPath } from 'node:url';
import { Worker, isMainThread, parentPort, workerData } from 'node:worker_threads';

const PKG_DIR = fileURLToPath(new URL('..', import.meta.url));
const STUB = ['--runtime', 'stub', '--initialMemory', '1'];
const THREADS = ['--enable', 'threads', '--sharedMemory', '--importMemory', '--maximumMemory', '65536'];

/** Output file -> asc arguments. */
export const VARIANTS = {
  'build/release.wasm': ['assembly/kernels.ts', '--enable', 'simd', '-O3', ...STUB],
  'build/release-fma.wasm': ['assembly/kernels.ts', '--enable', 'simd', '--enable', 'relaxed-simd', '-O3', ...STUB],
  'build/threads.wasm': ['assembly/kernels.ts', '--enable', 'simd', ...THREADS, '-O3', ...STUB],
  'build/threads-fma.wasm': ['assembly/kernels.ts', '--enable', 'simd', '--enable', 'relaxed-simd', ...THREADS, '-O3', ...STUB],
  'build/scalar.wasm': ['assembly/scalar.ts', '--disable', 'simd', '--debug', ...STUB],
};

// Run as a script (the package's build), it builds; imported (test/pack-install.test.ts reads VARIANTS), it does not.
const asScript = isMainThread && process.argv[1] !== undefined && resolve(process.argv[1]) === fileURLToPath(import.meta.url);

if (asScript) {
  // `build-wasm.mjs [--out DIR] [build/x.wasm ...]`: some variants, or into another folder (test/build-wasm.test.ts).
  const args = process.argv.slice(2);
  let outDir = PKG_DIR;
  const picked = [];
  for (let i = 0; i < args.length; i++) {
    if (args[i] === '--out' && args[i + 1]) outDir = resolve(args[++i]);
    else picked.push(args[i]);
  }
  const unknown = picked.filter((o) => !(o in VARIANTS));
  if (unknown.length) {
    console.error(`engine-wasm: no variant ${unknown.join(', ')}; the variants are ${Object.keys(VARIANTS).join(', ')}`);
    process.exit(2);
  }
  const outputs = picked.length ? picked : Object.keys(VARIANTS);
  const jobs = Math.max(1, Math.min(outputs.length, Number(process.env.FAST_DLLM_BUILD_JOBS ?? 2) || 1, availableParallelism()));
  const t0 = performance.now();
  process.chdir(PKG_DIR); // the workers' paths are the package's (workers share this process's directory)
  console.log(`engine-wasm: compiling ${outputs.length} WebAssembly variant${outputs.length === 1 ? "" : "s"} with AssemblyScript, ${jobs} at a time`);
  let next = 0;
  let failed = false;
  const worker = () =>
    new Promise((resolve, reject) => {
      const w = new Worker(fileURLToPath(import.meta.url), { workerData: null });
      const feed = () => {
        if (next >= outputs.length || failed) return void w.postMessage(null);
        const out = outputs[next++];
        w.postMessage({ out, file: join(outDir, out) });
      };
      w.on('message', (m) => {
        if (m.error) {
          failed = true;
          console.error(`engine-wasm: ${m.out} FAILED:\n${m.stderr}${m.error}`);
        } else {
          console.log(`engine-wasm: ${m.out} (${(m.ms / 1000).toFixed(1)} s)`);
        }
        feed();
      });
      w.on('error', reject);
      w.on('exit', () => resolve());
      feed();
    });
  await Promise.all(Array.from({ length: jobs }, worker));
  if (failed) process.exit(1);
  console.log(`engine-wasm: WebAssembly built in ${((performance.now() - t0) / 1000).toFixed(1)} s`);
} else if (!isMainThread) {
  void workerData;
  const { default: asc } = await import('assemblyscript/asc');
  parentPort.on('message', async (job) => {
    if (job === null) return void parentPort.close();
    const { out, file } = job;
    const t = performance.now();
    let stderr = '';
    const sink = { write: (s) => ((stderr += s), true) };
    const r = await asc.main([...VARIANTS[out], '-o', file], { stdout: sink, stderr: sink });
    parentPort.postMessage({ out, ms: performance.now() - t, error: r.error ? String(r.error.message ?? r.error) : null, stderr });
  });
}
