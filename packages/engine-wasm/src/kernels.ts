/**
 * Host side of the AssemblyScript kernels: instantiates a compiled module (bytes supplied by a loader, so
 * this file runs in Node and in browsers alike) and exposes typed views and the kernels with f32 arrays.
 *
 * Linear memory is laid out above the module's static data:
 *
 *   0 ............ heapBase   AssemblyScript static data (constants of the kernels)
 *   heapBase ..... top        host regions, 16-byte aligned: `alloc` bumps `top` (weights, loaded once);
 *                             `allocBlock` / `freeBlock` reuse freed blocks first-fit (sequence caches and
 *                             pass scratch, which come and go), bumping `top` only when none fits
 *
 * Everything a kernel reads or writes is a (ptr, length) region of this memory; no copies inside kernels.
 */

import { EngineCapacityError, f32ToBF16 } from '@fast-dllm/scheduler';

export { f32ToBF16 };

/** wasm32 addresses 4 GiB at most; 65536 pages of 64 KiB. */
export const WASM32_MAX_BYTES = 4 * 1024 * 1024 * 1024;
const PAGE = 65536;

/** Exports of the SIMD builds (release, release-fma, threads, threads-fma) and of build/scalar.wasm (scalar twins only). Pointers are byte offsets. */
export interface KernelExports {
  memory: WebAssembly.Memory;
  heapBase(): number;
  matmulF32?(x: number, w: number, b: number, y: number, n: number, inDim: number, out: number): void;
  matmulF32Scalar(x: number, w: number, b: number, y: number, n: number, inDim: number, out: number): void;
  matmulBF16?(x: number, w: number, b: number, y: number, n: number, inDim: number, out: number): void;
  matmulBF16Scalar(x: number, w: number, b: number, y: number, n: number, inDim: number, out: number): void;
  rmsnorm?(x: number, g: number, y: number, n: number, d: number, eps: number): void;
  rmsnormScalar(x: number, g: number, y: number, n: number, d: number, eps: number): void;
  ropeNeox(x: number, pos: number, n: number, heads: number, hd: number, theta: number): void;
  swiglu(gate: number, up: number, out: number, count: number): void;
  attention?(q: number, k: number, v: number, out: number, scores: number, nq: number, nk: number, H: number, KVH: number, hd: number, scale: number): void;
  attentionScalar(q: number, k: number, v: number, out: number, scores: number, nq: number, nk: number, H: number, KVH: number, hd: number, scale: number): void;
  counterHash(seed: number, forwardIndex: number, position: number, lane: number): number;
  counterGumbel(seed: number, forwardIndex: number, position: number, lane: number): number;
  reduceRow(logits: number, vocab: number, res: number, temperature: number, seed: number, forwardIndex: number, position: number, exclude: number): void;
  reduceRows(logits: number, vocab: number, res: number, keys: number, temps: number, n: number, exclude: number): void;
}

/** One region of linear memory: byte offset and length in f32 (or i32) elements. */
export interface Region {
  ptr: number;
  length: number;
}

/** Storage of a linear weight: f32, or bf16 with f32 arithmetic (half the bytes). */
export type WeightDType = 'f32' | 'bf16';

/**
 * A linear weight W (out, inDim) packed for the matmul kernels: ceil(out/8) panels of (inDim, 8), `length`
 * elements of `dtype` (see packWeight); columns past `out` in the last panel are zero.
 */
export interface PackedWeight extends Region {
  out: number;
  inDim: number;
  dtype: WeightDType;
}

/** Smallest matmul (n·inDim·out multiply-adds) that is split over the worker threads. */
const PARALLEL_MIN_MACS = 1 << 19;

/** Output columns per panel of a packed weight (NR of assembly/kernels.ts). */
export const NR = 8;

/** Lane of column c (0..7) inside a panel's k step: bf16 interleaves columns l and 4 + l. */
function panelLane(c: number, dtype: WeightDType): number {
  return dtype === 'bf16' ? (c < 4 ? 2 * c : 2 * (c - 4) + 1) : c;
}

/** Elements of a packed (out, inDim) weight. */
export function packedLength(out: number, inDim: number): number {
  return Math.ceil(out / NR) * NR * inDim;
}

/**
 * W (out, inDim) row-major → panels: f32 Wp[p][k][c] = W[8p + c][k]; bf16 Wp[p][k][2l] = W[8p + l][k],
 * Wp[p][k][2l + 1] = W[8p + 4 + l][k] (so the kernel widens 8 bf16 to two f32x4 with one shift and one mask).
 */
export function packWeight(w: Float32Array, out: number, inDim: number, dtype: WeightDType): Float32Array | Uint16Array {
  const panels = Math.ceil(out / NR);
  if (dtype === 'f32') {
    const p = new Float32Array(panels * inDim * NR); // (panels, inDim, 8)
    for (let r = 0; r < out; r++) {
      const base = Math.floor(r / NR) * inDim * NR + panelLane(r % NR, 'f32');
      for (let k = 0; k < inDim; k++) p[base + k * NR] = w[r * inDim + k];
    }
    return p;
  }
  const bits = f32ToBF16(w); // (out, inDim) bf16
  const p = new Uint16Array(panels * inDim * NR); // (panels, inDim, 8), columns interleaved l, 4 + l
  for (let r = 0; r < out; r++) {
    const base = Math.floor(r / NR) * inDim * NR + panelLane(r % NR, 'bf16');
    for (let k = 0; k < inDim; k++) p[base + k * NR] = bits[r * inDim + k];
  }
  return p;
}

/**
 * Checks the loader options shared by Node and browsers; returns the thread count (default 1) and the weight
 * dtype (default f32). Errors say what to pass instead.
 */
export function checkLoadOptions(o: { threads?: number; simd?: boolean; weightDType?: string }): { threads: number; dtype: WeightDType } {
  const threads = o.threads ?? 1;
  if (!Number.isInteger(threads) || threads < 1) throw new Error(`engine-wasm: threads must be a positive integer; got ${threads}`);
  if (threads > 1 && o.simd === false) throw new Error('engine-wasm: threads > 1 needs the SIMD threads build; use simd: true or threads: 1');
  const dtype = o.weightDType ?? 'f32';
  if (dtype !== 'f32' && dtype !== 'bf16') throw new Error(`engine-wasm: weightDType '${dtype}' is not supported yet; use 'f32' or 'bf16'`);
  return { threads, dtype };
}

/** The FMA (relaxed SIMD) choice: `requested` true demands it, false refuses it, unset takes it where it runs. */
export function chooseFma(requested: boolean | undefined, available: boolean): boolean {
  if (requested === true && !available) throw new Error('engine-wasm: fma requested but this runtime has no WebAssembly relaxed SIMD; use fma: false');
  return requested ?? available;
}

/** Kernels that split by rows over the worker threads; the argument order of each is in parallelJob. */
export const ParallelOp = { MatmulF32: 0, MatmulBF16: 1, Attention: 2, ReduceRows: 3 } as const;
export type ParallelOp = (typeof ParallelOp)[keyof typeof ParallelOp];

/** Runs a row-split kernel over threads (src/pool.ts implements it in Node); absent: single thread. */
export interface ParallelKernels {
  readonly threads: number;
  /** Posts `op` with `args` to the workers, runs the caller's slice with `self(lo, hi)`, and waits for all. */
  run(op: ParallelOp, args: readonly number[], n: number, grain: number, self: (lo: number, hi: number) => void): void;
  dispose(): Promise<void>;
}

/**
 * One row-split job: its row count, split grain, and how thread `index` runs rows [lo, hi). Shared by the
 * caller (index 0) and the workers, so both cut the same slices.
 *   MatmulF32/BF16: [x, w, b, y, n, inDim, out]
 *   Attention:      [q, k, v, out, scores, nq, nk, H, KVH, hd, scale]; thread i uses scores + i·nk f32
 *   ReduceRows:     [logits, vocab, res, keys, temps, n, exclude]; keys (n, 3) u32, temps (n,) f64
 */
export function parallelJob(ex: KernelExports, op: ParallelOp, a: ArrayLike<number>, index: number): { n: number; grain: number; run(lo: number, hi: number): void } {
  switch (op) {
    case ParallelOp.MatmulF32:
    case ParallelOp.MatmulBF16: {
      const f = op === ParallelOp.MatmulF32 ? ex.matmulF32! : ex.matmulBF16!;
      const [x, w, b, y, n, inDim, out] = Array.from(a);
      return { n, grain: 4, run: (lo, hi) => f(x + lo * inDim * 4, w, b, y + lo * out * 4, hi - lo, inDim, out) };
    }
    case ParallelOp.Attention: {
      const [q, k, v, out, scores, nq, nk, H, KVH, hd, scale] = Array.from(a);
      const row = H * hd * 4; // bytes per query/output row
      return { n: nq, grain: 1, run: (lo, hi) => ex.attention!(q + lo * row, k, v, out + lo * row, scores + index * nk * 4, hi - lo, nk, H, KVH, hd, scale) };
    }
    case ParallelOp.ReduceRows: {
      const [logits, vocab, res, keys, temps, n, exclude] = Array.from(a);
      return { n, grain: 1, run: (lo, hi) => ex.reduceRows(logits + lo * vocab * 4, vocab, res + lo * 40, keys + lo * 12, temps + lo * 8, hi - lo, exclude) };
    }
    default:
      throw new Error(`parallelJob: unknown op ${op as number}`);
  }
}

export interface KernelOptions {
  /** Use the SIMD kernels (default true). False selects the scalar twins of the same module. */
  simd?: boolean;
  /** Name of the compiled build, reported by `build` (for benchmarks and logs). */
  build?: string;
}

/** Result of reduceRow: token id and the clean-softmax statistics of one logits row (float64). */
export interface RowReduction {
  token: number;
  prob: number;
  top1: number;
  top2: number;
  entropy: number;
}

export class WasmKernels {
  readonly memory: WebAssembly.Memory;
  readonly simd: boolean;
  /** Which compiled build runs (e.g. 'release-fma'); 'custom' when the caller did not say. */
  readonly build: string;
  private readonly ex: KernelExports;
  private top: number;
  /** Freed blocks, ascending by ptr (never adjacent: they merge), and the size of every live block. */
  private freeList: { ptr: number; size: number }[] = [];
  private readonly blocks = new Map<number, number>();
  /** Set by the loader when threads > 1. */
  parallel: ParallelKernels | null = null;

  private constructor(ex: KernelExports, simd: boolean, memory: WebAssembly.Memory, build: string) {
    this.ex = ex;
    this.build = build;
    this.memory = memory;
    this.simd = simd;
    this.top = align16(ex.heapBase());
  }

  /** Instantiates a compiled kernel module. `simd: true` needs the release (SIMD) build. */
  static async instantiate(module: WebAssembly.Module, options: KernelOptions = {}, memory?: WebAssembly.Memory): Promise<WasmKernels> {
    const instance = await WebAssembly.instantiate(module, {
      env: {
        ...(memory ? { memory } : {}),
        abort(_msg: number, _file: number, line: number, col: number) {
          throw new Error(`wasm kernel aborted at line ${line}:${col}`);
        },
      },
    });
    const ex = instance.exports as unknown as KernelExports;
    const simd = options.simd ?? true;
    if (simd && !ex.matmulF32) {
      throw new Error('WasmKernels: simd requested but this module is the scalar build; load build/release.wasm or pass simd: false');
    }
    return new WasmKernels(ex, simd, memory ?? ex.memory, options.build ?? 'custom');
  }

  /** Bytes allocated so far (static data included). */
  get usedBytes(): number {
    return this.top;
  }

  /** Current top of the bump allocator; pass it to `release` to free everything allocated after it. */
  mark(): number {
    return this.top;
  }

  /** Frees every region allocated after `mark` (memory is not shrunk; the space is reused). */
  release(mark: number): void {
    if (mark < align16(this.ex.heapBase()) || mark > this.top) throw new Error(`release: bad mark ${mark}`);
    if (this.blocks.size > 0 || this.freeList.length > 0) throw new Error('release: blocks are allocated; free them instead');
    this.top = mark;
  }

  /**
   * Reserves `bytes` (16-byte aligned), growing memory as needed. Throws a message with the total needed
   * when wasm32's 4 GiB would be exceeded, instead of a bare RangeError from memory.grow.
   */
  alloc(bytes: number): number {
    const ptr = this.top;
    const end = align16(ptr + bytes);
    if (end > WASM32_MAX_BYTES) {
      throw new Error(
        `wasm engine: needs ${(end / 2 ** 30).toFixed(2)} GiB of linear memory but wasm32 addresses at most 4 GiB; ` +
          `use a smaller model, bf16 weights, or a shorter canvas`,
      );
    }
    const have = this.memory.buffer.byteLength;
    if (end > have) this.memory.grow(Math.ceil((end - have) / PAGE));
    this.top = end;
    return ptr;
  }

  /** Allocates a (length,) f32 region, optionally filled from `src`. */
  allocF32(length: number, src?: ArrayLike<number>): Region {
    const r = { ptr: this.alloc(length * 4), length };
    if (src) this.f32(r).set(src);
    return r;
  }

  /** Allocates a (length,) i32 region, optionally filled from `src`. */
  allocI32(length: number, src?: ArrayLike<number>): Region {
    const r = { ptr: this.alloc(length * 4), length };
    if (src) this.i32(r).set(src);
    return r;
  }

  /** A fresh view (views are invalidated when memory grows, so never keep one across an alloc). */
  f32(r: Region): Float32Array {
    return new Float32Array(this.memory.buffer, r.ptr, r.length);
  }

  i32(r: Region): Int32Array {
    return new Int32Array(this.memory.buffer, r.ptr, r.length);
  }

  /**
   * Packs a linear weight W (out, inDim) row-major into the kernels' panel layout (see packWeight) and copies
   * it into linear memory; `dtype` 'bf16' rounds to bf16 (nearest, ties to even) and halves the bytes.
   */
  allocWeight(w: Float32Array, out: number, inDim: number, dtype: WeightDType = 'f32'): PackedWeight {
    if (w.length !== out * inDim) throw new Error(`allocWeight: ${w.length} values is not ${out}×${inDim}`);
    const packed = packWeight(w, out, inDim, dtype);
    const ptr = this.alloc(packed.byteLength);
    if (dtype === 'bf16') new Uint16Array(this.memory.buffer, ptr, packed.length).set(packed);
    else new Float32Array(this.memory.buffer, ptr, packed.length).set(packed);
    return { ptr, length: packed.length, out, inDim, dtype };
  }

  /** Row `row` of a packed weight as f32 (inDim,) into dst at `offset`: how a tied LM head serves as the embedding. */
  weightRow(w: PackedWeight, row: number, dst: Float32Array, offset = 0): void {
    if (!(row >= 0 && row < w.out)) throw new Error(`weightRow: row ${row} outside 0..${w.out - 1}`);
    const { inDim } = w;
    const p = Math.floor(row / NR), c = row % NR;
    if (w.dtype === 'bf16') {
      const src = new Uint16Array(this.memory.buffer, w.ptr + p * inDim * NR * 2, inDim * NR); // (inDim, 8) bf16
      const lane = panelLane(c, 'bf16');
      const bits = new Uint32Array(1);
      const f = new Float32Array(bits.buffer);
      for (let k = 0; k < inDim; k++) { bits[0] = src[k * NR + lane] << 16; dst[offset + k] = f[0]; }
    } else {
      const src = new Float32Array(this.memory.buffer, w.ptr + p * inDim * NR * 4, inDim * NR); // (inDim, 8) f32
      for (let k = 0; k < inDim; k++) dst[offset + k] = src[k * NR + c];
    }
  }

  /** y (n, w.out) = x (n, w.inDim) · Wᵀ + b; b (w.out,) or null; the kernel follows the weight's dtype. */
  matmul(x: Region, w: PackedWeight, b: Region | null, y: Region, n: number): void {
    const { inDim, out } = w;
    checkLen('matmul x', x, n * inDim);
    checkLen('matmul W', w, packedLength(out, inDim));
    checkLen('matmul y', y, n * out);
    if (b) checkLen('matmul b', b, out);
    const kernel = w.dtype === 'bf16' ? 1 : 0;
    const f = kernel === 0
      ? (this.simd ? this.ex.matmulF32! : this.ex.matmulF32Scalar)
      : (this.simd ? this.ex.matmulBF16! : this.ex.matmulBF16Scalar);
    const bp = b ? b.ptr : 0;
    // Below ~1 MFLOP the wake-up of the workers costs more than the split saves.
    if (this.parallel && n >= 8 && n * inDim * out >= PARALLEL_MIN_MACS) this.split(kernel, [x.ptr, w.ptr, bp, y.ptr, n, inDim, out]);
    else f(x.ptr, w.ptr, bp, y.ptr, n, inDim, out);
  }

  /** Threads that run the row-split kernels (1 without a pool): scratch regions are sized by it. */
  get threads(): number {
    return this.parallel?.threads ?? 1;
  }

  private split(op: ParallelOp, args: number[]): void {
    const job = parallelJob(this.ex, op, args, 0);
    this.parallel!.run(op, args, job.n, job.grain, job.run);
  }

  /** y (n, d) = RMSNorm(x) * g; y may be x. */
  rmsnorm(x: Region, g: Region, y: Region, n: number, d: number, eps: number): void {
    checkLen('rmsnorm x', x, n * d);
    checkLen('rmsnorm g', g, d);
    checkLen('rmsnorm y', y, n * d);
    (this.simd ? this.ex.rmsnorm! : this.ex.rmsnormScalar)(x.ptr, g.ptr, y.ptr, n, d, eps);
  }

  /** In place on x (n, heads, hd); pos (n,) i32 absolute positions. */
  rope(x: Region, pos: Region, n: number, heads: number, hd: number, theta: number): void {
    checkLen('rope x', x, n * heads * hd);
    checkLen('rope pos', pos, n);
    if (hd % 2 !== 0) throw new Error(`rope: head dim ${hd} must be even`);
    this.ex.ropeNeox(x.ptr, pos.ptr, n, heads, hd, theta);
  }

  /** out = silu(gate) * up, elementwise over `count`; out may be gate. */
  swiglu(gate: Region, up: Region, out: Region, count: number): void {
    checkLen('swiglu gate', gate, count);
    checkLen('swiglu up', up, count);
    checkLen('swiglu out', out, count);
    this.ex.swiglu(gate.ptr, up.ptr, out.ptr, count);
  }

  /**
   * out (nq, H, hd) = softmax(q kᵀ · scale) v; q (nq, H, hd); k, v (nk, KVH, hd) contiguous visible keys;
   * scores (threads · nk,) f32 scratch, one nk slice per thread.
   */
  attention(q: Region, k: Region, v: Region, out: Region, scores: Region, nq: number, nk: number, H: number, KVH: number, hd: number, scale: number): void {
    checkLen('attention q', q, nq * H * hd);
    checkLen('attention k', k, nk * KVH * hd);
    checkLen('attention v', v, nk * KVH * hd);
    checkLen('attention out', out, nq * H * hd);
    checkLen('attention scores', scores, nk * this.threads);
    if (H % KVH !== 0) throw new Error(`attention: ${H} heads is not a multiple of ${KVH} KV heads`);
    if (this.parallel && nq >= 2 && nq * nk * H * hd >= PARALLEL_MIN_MACS) {
      this.split(ParallelOp.Attention, [q.ptr, k.ptr, v.ptr, out.ptr, scores.ptr, nq, nk, H, KVH, hd, scale]);
    } else {
      (this.simd ? this.ex.attention! : this.ex.attentionScalar)(q.ptr, k.ptr, v.ptr, out.ptr, scores.ptr, nq, nk, H, KVH, hd, scale);
    }
  }

  counterHash(seed: number, forwardIndex: number, position: number, lane: number): number {
    return this.ex.counterHash(seed, forwardIndex, position, lane) >>> 0;
  }

  counterGumbel(seed: number, forwardIndex: number, position: number, lane: number): number {
    return this.ex.counterGumbel(seed, forwardIndex, position, lane);
  }

  /**
   * Reduces one logits row (vocab,); res is a (5,) f64 scratch region (length counted in f64). temperature 0 =
   * greedy. Token `exclude` (the mask id; -1: none) is never proposed but counts in the softmax (DESIGN §3).
   */
  reduceRow(logits: Region, vocab: number, res: Region, temperature = 0, seed = 0, forwardIndex = 0, position = 0, exclude = -1): RowReduction {
    checkLen('reduceRow logits', logits, vocab);
    this.ex.reduceRow(logits.ptr, vocab, res.ptr, temperature, seed >>> 0, forwardIndex >>> 0, position >>> 0, exclude);
    const r = new Float64Array(this.memory.buffer, res.ptr, 5);
    return { token: r[0], prob: r[1], top1: r[2], top2: r[3], entropy: r[4] };
  }

  /**
   * Reduces n logits rows (n, vocab), each with its own sampling key: keys (n·3,) u32 [position, seed,
   * forwardIndex] and temps (n,) f64 (0 = greedy), as regions whose length counts u32 and f64 elements.
   * res: (n·5,) f64 scratch. Rows are split over the worker threads when there are any.
   */
  reduceRows(logits: Region, vocab: number, n: number, keys: Region, temps: Region, res: Region, exclude = -1): RowReduction[] {
    checkLen('reduceRows logits', logits, n * vocab);
    checkLen('reduceRows keys', keys, n * 3);
    checkLen('reduceRows temps', temps, n);
    checkLen('reduceRows res', res, n * 5);
    const args = [logits.ptr, vocab, res.ptr, keys.ptr, temps.ptr, n, exclude];
    if (this.parallel && n >= 2 && n * vocab >= 1 << 16) this.split(ParallelOp.ReduceRows, args);
    else parallelJob(this.ex, ParallelOp.ReduceRows, args, 0).run(0, n); // all rows here
    const r = new Float64Array(this.memory.buffer, res.ptr, n * 5); // (n, 5) token, prob, top1, top2, entropy
    return Array.from({ length: n }, (_, i) => ({ token: r[i * 5], prob: r[i * 5 + 1], top1: r[i * 5 + 2], top2: r[i * 5 + 3], entropy: r[i * 5 + 4] }));
  }

  /**
   * A block of `bytes` (16-byte aligned) that can be freed: the first freed block that fits, else fresh memory
   * at the top. Throws EngineCapacityError when wasm32's 4 GiB would be exceeded (nothing is allocated then).
   */
  allocBlock(bytes: number): number {
    const size = align16(Math.max(16, bytes));
    for (let i = 0; i < this.freeList.length; i++) {
      const f = this.freeList[i];
      if (f.size < size) continue;
      if (f.size === size) this.freeList.splice(i, 1);
      else this.freeList[i] = { ptr: f.ptr + size, size: f.size - size };
      this.blocks.set(f.ptr, size);
      return f.ptr;
    }
    if (this.top + size > WASM32_MAX_BYTES) {
      throw new EngineCapacityError(
        `wasm engine: needs ${((this.top + size) / 2 ** 30).toFixed(2)} GiB of linear memory but wasm32 addresses at most 4 GiB; ` +
          'use fewer or shorter sequences, a smaller model, or bf16 weights');
    }
    const ptr = this.alloc(size);
    this.blocks.set(ptr, size);
    return ptr;
  }

  /** Returns a block from allocBlock; adjacent free blocks merge, and a free block at the top lowers it. */
  freeBlock(ptr: number): void {
    const size = this.blocks.get(ptr);
    if (size === undefined) throw new Error(`freeBlock: ${ptr} is not an allocated block`);
    this.blocks.delete(ptr);
    let i = 0;
    while (i < this.freeList.length && this.freeList[i].ptr < ptr) i++;
    this.freeList.splice(i, 0, { ptr, size });
    const merge = (a: number) => {
      const x = this.freeList[a], y = this.freeList[a + 1];
      if (x && y && x.ptr + x.size === y.ptr) { x.size += y.size; this.freeList.splice(a + 1, 1); }
    };
    merge(i);
    merge(i - 1);
    const last = this.freeList[this.freeList.length - 1];
    if (last && last.ptr + last.size === this.top) {
      this.top = last.ptr;
      this.freeList.pop();
    }
  }

  /** How many blocks of `bytes` could be allocated now (free blocks, then the room left below 4 GiB). */
  blocksThatFit(bytes: number): number {
    const size = align16(Math.max(16, bytes));
    let n = Math.floor((WASM32_MAX_BYTES - this.top) / size);
    for (const f of this.freeList) n += Math.floor(f.size / size);
    return n;
  }
}

function align16(n: number): number {
  return Math.ceil(n / 16) * 16;
}

function checkLen(what: string, r: Region, need: number): void {
  if (r.length < need) throw new Error(`${what}: region holds ${r.length} elements, the call needs ${need}`);
}
