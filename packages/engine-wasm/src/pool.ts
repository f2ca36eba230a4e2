/**
 * Worker pool for the matmuls (Node: worker_threads). Rows of x/y are split between the calling thread and
 * threads-1 workers that share the engine's WebAssembly.Memory; the caller blocks on Atomics.wait until every
 * worker is done, so a forward pass stays synchronous. Other kernels run on the calling thread.
 *
 * Control block (Int32, shared): gen (bumped per job) · op (0 f32, 1 bf16, -1 quit) · x, w, b, y (u32 byte
 * offsets) · n, inDim, out · done (workers finished this job).
 */
import { Worker } from 'node:worker_threads';

export const CTRL = { gen: 0, op: 1, x: 2, w: 3, b: 4, y: 5, n: 6, inDim: 7, out: 8, done: 9, size: 10 } as const;

export class MatmulPool {
  private readonly c: Int32Array;
  private readonly u: Uint32Array;
  private constructor(private readonly workers: Worker[], ctrl: SharedArrayBuffer, readonly threads: number) {
    this.c = new Int32Array(ctrl);
    this.u = new Uint32Array(ctrl);
  }

  /** Starts threads-1 workers on `module` (the threads build) over the shared `memory`. */
  static async create(module: WebAssembly.Module, memory: WebAssembly.Memory, threads: number): Promise<MatmulPool> {
    const ctrl = new SharedArrayBuffer(CTRL.size * 4);
    const url = new URL('../dist/worker.js', import.meta.url);
    const workers: Worker[] = [];
    for (let i = 1; i < threads; i++) {
      const w = new Worker(url, { workerData: { module, memory, ctrl, index: i, threads } });
      await new Promise<void>((resolve, reject) => { w.once('online', resolve); w.once('error', reject); });
      w.on('error', (e) => { console.error(`engine-wasm worker ${i} failed: ${e.message}`); });
      w.unref(); // an undisposed engine must not keep the process alive
      workers.push(w);
    }
    return new MatmulPool(workers, ctrl, threads);
  }

  /** Runs y = x·Wᵀ + b over all threads; `self` runs the caller's rows (slice 0) with the same kernel. */
  run(op: 0 | 1, x: number, w: number, b: number, y: number, n: number, inDim: number, out: number,
    self: (x: number, y: number, rows: number) => void): void {
    const c = this.c;
    this.u[CTRL.x] = x; this.u[CTRL.w] = w; this.u[CTRL.b] = b; this.u[CTRL.y] = y;
    c[CTRL.op] = op; c[CTRL.n] = n; c[CTRL.inDim] = inDim; c[CTRL.out] = out;
    Atomics.store(c, CTRL.done, 0);
    Atomics.add(c, CTRL.gen, 1);
    Atomics.notify(c, CTRL.gen);
    const per = Math.ceil(n / this.threads / 4) * 4;
    const mine = Math.min(n, per);
    if (mine > 0) self(x, y, mine);
    for (let d = Atomics.load(c, CTRL.done); d < this.threads - 1; d = Atomics.load(c, CTRL.done)) Atomics.wait(c, CTRL.done, d);
  }

  async dispose(): Promise<void> {
    this.c[CTRL.op] = -1;
    Atomics.add(this.c, CTRL.gen, 1);
    Atomics.notify(this.c, CTRL.gen);
    await Promise.all(this.workers.map((w) => w.terminate()));
  }
}
