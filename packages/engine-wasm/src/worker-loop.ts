/**
 * The body of a kernel worker, shared by the Node worker (src/worker.ts, worker_threads) and the browser one
 * (src/browser-worker.ts, a module Web Worker): instantiate the threads build over the engine's shared memory,
 * then run this thread's slice of rows of every job posted in the control block until told to quit.
 * Protocol: src/pool.ts; argument order per op: `parallelJob` in src/kernels.ts.
 */
import { CTRL, rowSlice } from './pool.js';
import { parallelJob, type KernelExports, type ParallelOp } from './kernels.js';

/** What a worker is started with (structured-cloned: the module and the shared buffers are shared, not copied). */
export interface WorkerData {
  module: WebAssembly.Module;
  memory: WebAssembly.Memory;
  ctrl: SharedArrayBuffer;
  index: number;
  threads: number;
}

/** Blocks the calling worker thread for good (Atomics.wait), serving jobs; returns when the pool quits. */
export function serveJobs({ module, memory, ctrl, index, threads }: WorkerData): void {
  const ex = new WebAssembly.Instance(module, {
    env: { memory, abort: () => { throw new Error('wasm kernel aborted in a worker'); } },
  }).exports as unknown as KernelExports;
  const c = new Int32Array(ctrl, 0, 3); // gen, op, done
  const args = new Float64Array(ctrl, CTRL.argsByte, CTRL.maxArgs); // (maxArgs,) the job's arguments
  let gen = 0;
  for (;;) {
    Atomics.wait(c, CTRL.gen, gen);
    gen = Atomics.load(c, CTRL.gen);
    const op = c[CTRL.op] as ParallelOp | -1;
    if (op === -1) return;
    const job = parallelJob(ex, op, args, index);
    const [lo, hi] = rowSlice(job.n, threads, index, job.grain);
    if (hi > lo) job.run(lo, hi);
    if (Atomics.add(c, CTRL.done, 1) + 1 === threads - 1) Atomics.notify(c, CTRL.done);
  }
}
