/**
 * Kernel worker (worker_threads): instantiates a threads build over the engine's shared memory and runs its
 * slice of rows of each job posted in the control block. Protocol and argument order: src/pool.ts and
 * `parallelJob` in src/kernels.ts (the same function cuts the caller's slice).
 */
import { workerData } from 'node:worker_threads';
import { CTRL, rowSlice } from './pool.js';
import { parallelJob, type KernelExports, type ParallelOp } from './kernels.js';

interface Data { module: WebAssembly.Module; memory: WebAssembly.Memory; ctrl: SharedArrayBuffer; index: number; threads: number }

const { module, memory, ctrl, index, threads } = workerData as Data;
const ex = new WebAssembly.Instance(module, {
  env: { memory, abort: () => { throw new Error('wasm kernel aborted in a worker'); } },
}).exports as unknown as KernelExports;
const c = new Int32Array(ctrl, 0, 3); // gen, op, done
const args = new Float64Array(ctrl, CTRL.argsByte, CTRL.maxArgs);
let gen = 0;
for (;;) {
  Atomics.wait(c, CTRL.gen, gen);
  gen = Atomics.load(c, CTRL.gen);
  const op = c[CTRL.op] as ParallelOp | -1;
  if (op === -1) break;
  const job = parallelJob(ex, op, args, index);
  const [lo, hi] = rowSlice(job.n, threads, index, job.grain);
  if (hi > lo) job.run(lo, hi);
  if (Atomics.add(c, CTRL.done, 1) + 1 === threads - 1) Atomics.notify(c, CTRL.done);
}
