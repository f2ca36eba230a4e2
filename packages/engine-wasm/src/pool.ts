/**
 * Worker pool (Node worker_threads or browser Web Workers, started by the caller's `spawn`) for the kernels
 * that split by rows: matmul (x/y rows), attention (query rows) and the logits-row reduction. Rows are split between the calling thread (slice 0) and threads-1
 * workers that share the engine's WebAssembly.Memory; the caller blocks on Atomics.wait until every worker is
 * done, so a forward pass stays synchronous.
 *
 * Control block (shared): Int32 [gen (bumped per job), op (ParallelOp, -1 quit), done (workers finished)],
 * then from byte 16 the job's arguments as Float64 (pointers, sizes and float parameters are all exact in f64).
 */
import type { ParallelKernels, ParallelOp } from './kernels.js';
import type { WorkerData } from './worker-loop.js';

/** A started worker, as far as the pool needs one. */
export interface WorkerHandle {
  terminate(): unknown;
}

/** Starts one worker running serveJobs(data) and resolves once it is up (src/node.ts, src/browser.ts). */
export type SpawnWorker = (data: WorkerData) => Promise<WorkerHandle>;

export const CTRL = { gen: 0, op: 1, done: 2, argsByte: 16, maxArgs: 12, bytes: 16 + 12 * 8 } as const;

/** Rows [lo, hi) of thread `index` out of `threads`, in multiples of `grain` (the matmul's 4-row tile). */
export function rowSlice(n: number, threads: number, index: number, grain: number): [number, number] {
  const per = Math.ceil(n / threads / grain) * grain;
  return [Math.min(n, index * per), Math.min(n, (index + 1) * per)];
}

export class WorkerPool implements ParallelKernels {
  private readonly c: Int32Array; // (3,) gen, op, done
  private readonly args: Float64Array; // (maxArgs,)
  private constructor(private readonly workers: WorkerHandle[], ctrl: SharedArrayBuffer, readonly threads: number) {
    this.c = new Int32Array(ctrl, 0, 3);
    this.args = new Float64Array(ctrl, CTRL.argsByte, CTRL.maxArgs);
  }

  /** Starts threads-1 workers with `spawn` on `module` (a threads build) over the shared `memory`. */
  static async create(spawn: SpawnWorker, module: WebAssembly.Module, memory: WebAssembly.Memory, threads: number): Promise<WorkerPool> {
    const ctrl = new SharedArrayBuffer(CTRL.bytes);
    const workers: WorkerHandle[] = [];
    try {
      for (let i = 1; i < threads; i++) workers.push(await spawn({ module, memory, ctrl, index: i, threads }));
    } catch (e) {
      await Promise.all(workers.map((w) => w.terminate()));
      throw e;
    }
    return new WorkerPool(workers, ctrl, threads);
  }

  /** Runs `op` over all threads; `self(lo, hi)` runs the caller's rows (slice 0) with the same kernel. */
  run(op: ParallelOp, args: readonly number[], n: number, grain: number, self: (lo: number, hi: number) => void): void {
    const c = this.c;
    this.args.set(args);
    c[CTRL.op] = op;
    Atomics.store(c, CTRL.done, 0);
    Atomics.add(c, CTRL.gen, 1);
    Atomics.notify(c, CTRL.gen);
    const [lo, hi] = rowSlice(n, this.threads, 0, grain);
    if (hi > lo) self(lo, hi);
    for (let d = Atomics.load(c, CTRL.done); d < this.threads - 1; d = Atomics.load(c, CTRL.done)) Atomics.wait(c, CTRL.done, d);
  }

  async dispose(): Promise<void> {
    this.c[CTRL.op] = -1;
    Atomics.add(this.c, CTRL.gen, 1);
    Atomics.notify(this.c, CTRL.gen);
    await Promise.all(this.workers.map((w) => w.terminate()));
  }
}
