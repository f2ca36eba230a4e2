/**
 * Matmul worker (worker_threads): instantiates the threads build over the engine's shared memory and runs its
 * slice of rows whenever the control block's generation changes. Protocol: see src/pool.ts.
 */
import { workerData } from 'node:worker_threads';
import { CTRL } from './pool.js';

interface Data { module: WebAssembly.Module; memory: WebAssembly.Memory; ctrl: SharedArrayBuffer; index: number; threads: number }
type Mm = (x: number, w: number, b: number, y: number, n: number, inDim: number, out: number) => void;

const { module, memory, ctrl, index, threads } = workerData as Data;
const ex = new WebAssembly.Instance(module, {
  env: { memory, abort: () => { throw new Error('wasm kernel aborted in a worker'); } },
}).exports as unknown as Record<string, Mm>;
const c = new Int32Array(ctrl); // (CTRL.size,) control block
const u = new Uint32Array(ctrl); // same block, pointers as u32
let gen = 0;
for (;;) {
  Atomics.wait(c, CTRL.gen, gen);
  gen = Atomics.load(c, CTRL.gen);
  if (c[CTRL.op] < 0) break;
  const [lo, hi] = rowSlice(c[CTRL.n], threads, index);
  if (hi > lo) {
    const inDim = c[CTRL.inDim], out = c[CTRL.out];
    const f = c[CTRL.op] === 1 ? ex.matmulBF16 : ex.matmulF32;
    f(u[CTRL.x] + lo * inDim * 4, u[CTRL.w], u[CTRL.b], u[CTRL.y] + lo * out * 4, hi - lo, inDim, out);
  }
  if (Atomics.add(c, CTRL.done, 1) + 1 === threads - 1) Atomics.notify(c, CTRL.done);
}

/** Rows [lo, hi) of thread `index` out of `threads`, in multiples of 4 (the kernel's register tile). */
export function rowSlice(n: number, threads: number, index: number): [number, number] {
  const per = Math.ceil(n / threads / 4) * 4;
  return [Math.min(n, index * per), Math.min(n, (index + 1) * per)];
}
