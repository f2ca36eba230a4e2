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

import { INT8_BLOCK, int8Blocks, quantizeInt8Weight } from '@fast-dllm/model';
import { EngineCapacityError, f32ToBF16 } from '@fast-dllm/engine-contract';

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
  /** int8 W; xq: scratch of n · i8RowBytes(inDim) bytes for the quantized rows (assembly/int8.ts). */
  matmulI8?(x: number, xq: number, w: number, b: number, y: number, n: number, inDim: number, out: number): void;
  /** matmulI8 with the fused form of the relaxed dot: the same results, faster on some runtimes. */
  matmulI8Fused?(x: number, xq: number, w: number, b: number, y: number, n: number, inDim: number, out: number): void;
  /** 1 in the builds with relaxed SIMD (the i8×i7 dot), else 0; absent from the scalar build. */
  relaxedSimd?: WebAssembly.Global;
  /** Query rows per block of the SIMD attention kernel (ATTENTION_SCORE_ROWS); absent from the scalar build. */
  attentionRows?: WebAssembly.Global;
  matmulI8Scalar(x: number, xq: number, w: number, b: number, y: number, n: number, inDim: number, out: number): void;
  quantizeRowsI8?(x: number, xq: number, n: number, inDim: number): void;
  quantizeRowsI8Scalar(x: number, xq: number, n: number, inDim: number): void;
  rmsnorm?(x: number, g: number, y: number, n: number, d: number, eps: number): void;
  rmsnormScalar(x: number, g: number, y: number, n: number, d: number, eps: number): void;
  ropeNeox(x: number, pos: number, n: number, heads: number, hd: number, theta: number): void;
  ropeTable(cos: number, sin: number, from: number, to: number, hd: number, theta: number): void;
  ropeNeoxTable?(x: number, pos: number, n: number, heads: number, hd: number, cos: number, sin: number): void;
  ropeNeoxTableScalar(x: number, pos: number, n: number, heads: number, hd: number, cos: number, sin: number): void;
  swiglu?(gate: number, up: number, out: number, count: number): void;
  swigluScalar(gate: number, up: number, out: number, count: number): void;
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

/**
 * Storage of a linear weight: f32, bf16 with f32 arithmetic (half the bytes), or int8 (@fast-dllm/model int8.ts:
 * 7-bit blocks of 32 with an f32 scale, integer dot products; 1.125 bytes per weight).
 */
export type WeightDType = 'f32' | 'bf16' | 'int8';

/**
 * A linear weight W (out, inDim) packed for the matmul kernels: ceil(out/8) panels, `length` elements of `dtype`
 * (int8: bytes; see packWeight); columns past `out` in the last panel are zero.
 */
export interface PackedWeight extends Region {
  out: number;
  inDim: number;
  dtype: WeightDType;
}

/** Smallest matmul (n·inDim·out multiply-adds) that is split over the worker threads. */
const PARALLEL_MIN_MACS = 1 << 19;
/** SwiGLU splits over the threads from this many elements, in slices of SWIGLU_GRAIN (a multiple of 4). */
const SWIGLU_PARALLEL_MIN = 1 << 16;
const SWIGLU_GRAIN = 4096;

/** Output columns per panel of a packed weight (NR of assembly/kernels.ts). */
export const NR = 8;

/** Query rows per block of the SIMD attention kernel (assembly/kernels.ts ATTENTION_ROWS): score rows per thread. */
export const ATTENTION_SCORE_ROWS = 16;

/** Lane of column c (0..7) inside a panel's k step: bf16 interleaves columns l and 4 + l. */
function panelLane(c: number, dtype: WeightDType): number {
  return dtype === 'bf16' ? (c < 4 ? 2 * c : 2 * (c - 4) + 1) : c;
}

/** Elements of a packed (out, inDim) f32 or bf16 weight. */
export function packedLength(out: number, inDim: number): number {
  return Math.ceil(out / NR) * NR * inDim;
}

/** Bytes of one int8 panel block (8 k-quads of 32 bytes, 8 f32 scales): the layout of assembly/int8.ts. */
const I8_W_BLOCK_BYTES = 288;
/** Bytes per block of 32 values of one quantized activation row (32 values, f32 scale, i32 correction). */
const I8_X_BLOCK_BYTES = 40;

/** Bytes of a packed (out, inDim) weight of `dtype`. */
export function packedBytes(out: number, inDim: number, dtype: WeightDType): number {
  if (dtype === 'int8') return Math.ceil(out / NR) * int8Blocks(inDim) * I8_W_BLOCK_BYTES;
  return packedLength(out, inDim) * (dtype === 'bf16' ? 2 : 4);
}

/** Scratch bytes an int8 matmul of n rows of inDim takes for its quantized activations (above the allocator's top). */
export function int8ScratchBytes(n: number, inDim: number): number {
  return n * int8Blocks(inDim) * I8_X_BLOCK_BYTES;
}

/**
 * W (out, inDim) → @fast-dllm/model's int8 format → the panels of assembly/int8.ts: per panel of 8 columns and
 * block of 32 k, 8 k-quads t of [cols 0-3 × 4 k][cols 4-7 × 4 k] bytes q + 64, then the 8 columns' f32 scales.
 */
export function packInt8(w: Float32Array, out: number, inDim: number): Uint8Array {
  const m = quantizeInt8Weight(w, out, inDim);
  const blocks = int8Blocks(inDim);
  const row = blocks * INT8_BLOCK; // padded row of m.q
  const panels = Math.ceil(out / NR);
  const bytes = new Uint8Array(panels * blocks * I8_W_BLOCK_BYTES).fill(64); // (panels, blocks, 288): q = 0 is byte 64
  const scales = new Float32Array(bytes.buffer); // the same bytes as f32, for the scale slots
  for (let p = 0; p < panels; p++) {
    for (let b = 0; b < blocks; b++) {
      const base = (p * blocks + b) * I8_W_BLOCK_BYTES;
      for (let c = 0; c < NR; c++) {
        const r = p * NR + c;
        if (r >= out) {
          scales[(base + 256) / 4 + c] = 0;
          continue;
        }
        for (let t = 0; t < INT8_BLOCK; t++) {
          bytes[base + (t >> 2) * 32 + (c >> 2) * 16 + (c & 3) * 4 + (t & 3)] = m.q[r * row + b * INT8_BLOCK + t] + 64;
        }
        scales[(base + 256) / 4 + c] = m.scale[r * blocks + b];
      }
    }
  }
  return bytes;
}

/**
 * W (out, inDim) row-major → panels: f32 Wp[p][k][c] = W[8p + c][k]; bf16 Wp[p][k][2l] = W[8p + l][k],
 * Wp[p][k][2l + 1] = W[8p + 4 + l][k] (so the kernel widens 8 bf16 to two f32x4 with one shift and one mask);
 * int8: packInt8's bytes.
 */
export function packWeight(w: Float32Array, out: number, inDim: number, dtype: WeightDType): Float32Array | Uint16Array | Uint8Array {
  if (dtype === 'int8') return packInt8(w, out, inDim);
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
  if (dtype !== 'f32' && dtype !== 'bf16' && dtype !== 'int8') {
    throw new Error(`engine-wasm: weightDType '${dtype}' is not supported yet; use 'f32', 'bf16' or 'int8'`);
  }
  return { threads, dtype };
}

/** The FMA (relaxed SIMD) choice: `requested` true demands it, false refuses it, unset takes it where it runs. */
export function chooseFma(requested: boolean | undefined, available: boolean): boolean {
  if (requested === true && !available) throw new Error('engine-wasm: fma requested but this runtime has no WebAssembly relaxed SIMD; use fma: false');
  return requested ?? available;
}

/** Kernels that split by rows over the worker threads; the argument order of each is in parallelJob. */
export const ParallelOp = { MatmulF32: 0, MatmulBF16: 1, Attention: 2, ReduceRows: 3, MatmulI8: 4, SwiGLU: 5 } as const;
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
 *   MatmulI8:       [x, xq, w, b, y, n, inDim, out, fused]; xq holds n quantized rows, each thread quantizes its
 *                   own; fused 1 runs matmulI8Fused (the same results)
 *   Attention:      [q, k, v, out, scores, nq, nk, H, KVH, hd, scale]; thread i uses scores + ATTENTION_SCORE_ROWS·i·nk f32
 *   ReduceRows:     [logits, vocab, res, keys, temps, n, exclude]; keys (n, 3) u32, temps (n,) f64
 *   SwiGLU:         [gate, up, out, count]; split in multiples of SWIGLU_GRAIN elements (a multiple of 4), so every
 *                   element takes the SIMD path it takes in one call (only the call's last count % 4 go scalar)
 */
export function parallelJob(ex: KernelExports, op: ParallelOp, a: ArrayLike<number>, index: number): { n: number; grain: number; run(lo: number, hi: number): void } {
  switch (op) {
    case ParallelOp.MatmulF32:
    case ParallelOp.MatmulBF16: {
      const f = op === ParallelOp.MatmulF32 ? ex.matmulF32! : ex.matmulBF16!;
      const [x, w, b, y, n, inDim, out] = Array.from(a);
      return { n, grain: 4, run: (lo, hi) => f(x + lo * inDim * 4, w, b, y + lo * out * 4, hi - lo, inDim, out) };
    }
    case ParallelOp.MatmulI8: {
      const [x, xq, w, b, y, n, inDim, out, fused] = Array.from(a);
      const f = fused ? ex.matmulI8Fused! : ex.matmulI8!;
      const xqRow = int8ScratchBytes(1, inDim);
      return { n, grain: 4, run: (lo, hi) => f(x + lo * inDim * 4, xq + lo * xqRow, w, b, y + lo * out * 4, hi - lo, inDim, out) };
    }
    case ParallelOp.Attention: {
      const [q, k, v, out, scores, nq, nk, H, KVH, hd, scale] = Array.from(a);
      const row = H * hd * 4; // bytes per query/output row
      return { n: nq, grain: 1, run: (lo, hi) => ex.attention!(q + lo * row, k, v, out + lo * row, scores + index * ATTENTION_SCORE_ROWS * nk * 4, hi - lo, nk, H, KVH, hd, scale) };
    }
    case ParallelOp.ReduceRows: {
      const [logits, vocab, res, keys, temps, n, exclude] = Array.from(a);
      return { n, grain: 1, run: (lo, hi) => ex.reduceRows(logits + lo * vocab * 4, vocab, res + lo * 40, keys + lo * 12, temps + lo * 8, hi - lo, exclude) };
    }
    case ParallelOp.SwiGLU: {
      const [gate, up, out, count] = Array.from(a);
      return { n: count, grain: SWIGLU_GRAIN, run: (lo, hi) => ex.swiglu!(gate + lo * 4, up + lo * 4, out + lo * 4, hi - lo) };
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
  /** RoPE cos/sin tables by `${hd}:${theta}` (see ropeAngles). */
  private readonly ropeTables = new Map<string, { block: number; cap: number; cos: number; sin: number }>();
  /** Set by the loader when threads > 1. */
  parallel: ParallelKernels | null = null;
  /** The relaxed dot's form for int8 matmuls (relaxed builds): null until chosen by timing, or set by useInt8Dot. */
  private int8Fused: boolean | null = null;
  /**
   * Where int8 matmuls quantize their input rows (length in bytes): the engine points it into its pass scratch, so
   * the space is counted with the pass. When it is null or too small (kernels used on their own) a call uses the
   * memory just above the allocator's top, growing memory if needed, without allocating it.
   */
  int8Scratch: Region | null = null;

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

  /**
   * `bytes` of memory just above the top for the duration of one call, not allocated (nothing else allocates
   * while a kernel runs): grows memory if needed, which, like alloc, makes typed-array views taken before stale.
   */
  private aboveTop(bytes: number): number {
    const ptr = align16(this.top);
    const end = ptr + bytes;
    if (end > WASM32_MAX_BYTES) {
      throw new EngineCapacityError(`wasm engine: an int8 matmul's ${(bytes / 2 ** 20).toFixed(1)} MiB of scratch does not fit below wasm32's 4 GiB; use fewer or shorter sequences`);
    }
    const have = this.memory.buffer.byteLength;
    if (end > have) this.memory.grow(Math.ceil((end - have) / PAGE));
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
   * it into linear memory; `dtype` 'bf16' rounds to bf16 (nearest, ties to even) and halves the bytes, 'int8'
   * quantizes into @fast-dllm/model's int8 format (1.125 bytes per weight).
   */
  allocWeight(w: Float32Array, out: number, inDim: number, dtype: WeightDType = 'f32'): PackedWeight {
    if (w.length !== out * inDim) throw new Error(`allocWeight: ${w.length} values is not ${out}×${inDim}`);
    // The relaxed dot's form is timed now, at load, rather than at the first int8 matmul inside a forward.
    if (dtype === 'int8' && this.simd && this.relaxed && this.int8Fused === null) this.int8Fused = this.fasterInt8Dot();
    const packed = packWeight(w, out, inDim, dtype);
    const ptr = this.alloc(packed.byteLength);
    new Uint8Array(this.memory.buffer, ptr, packed.byteLength).set(new Uint8Array(packed.buffer, packed.byteOffset, packed.byteLength));
    return { ptr, length: packed.length, out, inDim, dtype };
  }

  /** Row `row` of a packed weight as f32 (inDim,) into dst at `offset`: how a tied LM head serves as the embedding. */
  weightRow(w: PackedWeight, row: number, dst: Float32Array, offset = 0): void {
    if (!(row >= 0 && row < w.out)) throw new Error(`weightRow: row ${row} outside 0..${w.out - 1}`);
    const { inDim } = w;
    const p = Math.floor(row / NR), c = row % NR;
    if (w.dtype === 'int8') {
      const blocks = int8Blocks(inDim);
      const panel = w.ptr + p * blocks * I8_W_BLOCK_BYTES;
      const bytes = new Uint8Array(this.memory.buffer, panel, blocks * I8_W_BLOCK_BYTES); // (blocks, 288)
      const f = new Float32Array(this.memory.buffer, panel, blocks * I8_W_BLOCK_BYTES / 4);
      for (let k = 0; k < inDim; k++) {
        const b = Math.floor(k / INT8_BLOCK), t = k % INT8_BLOCK;
        const q = bytes[b * I8_W_BLOCK_BYTES + (t >> 2) * 32 + (c >> 2) * 16 + (c & 3) * 4 + (t & 3)] - 64;
        dst[offset + k] = Math.fround(q * f[(b * I8_W_BLOCK_BYTES + 256) / 4 + c]); // the reference's dequantizeInt8Row
      }
    } else if (w.dtype === 'bf16') {
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

  /**
   * y (n, w.out) = x (n, w.inDim) · Wᵀ + b; b (w.out,) or null; the kernel follows the weight's dtype. An int8
   * matmul quantizes x into `int8Scratch`, or just above the top when that is unset or too small (see there).
   */
  matmul(x: Region, w: PackedWeight, b: Region | null, y: Region, n: number): void {
    const { inDim, out } = w;
    checkLen('matmul x', x, n * inDim);
    checkLen('matmul W', w, w.dtype === 'int8' ? packedBytes(out, inDim, 'int8') : packedLength(out, inDim));
    checkLen('matmul y', y, n * out);
    if (b) checkLen('matmul b', b, out);
    if (w.dtype === 'int8') {
      this.matmulI8(x, w, b, y, n);
      return;
    }
    const kernel = w.dtype === 'bf16' ? 1 : 0;
    const f = kernel === 0
      ? (this.simd ? this.ex.matmulF32! : this.ex.matmulF32Scalar)
      : (this.simd ? this.ex.matmulBF16! : this.ex.matmulBF16Scalar);
    const bp = b ? b.ptr : 0;
    // Below ~1 MFLOP the wake-up of the workers costs more than the split saves.
    if (this.parallel && n >= 8 && n * inDim * out >= PARALLEL_MIN_MACS) this.split(kernel, [x.ptr, w.ptr, bp, y.ptr, n, inDim, out]);
    else f(x.ptr, w.ptr, bp, y.ptr, n, inDim, out);
  }

  /**
   * The int8 matmul: x's rows are quantized (each thread its own) into the int8 scratch, then multiplied by the
   * int8 panels. The result of a row does not depend on n or on the thread split (assembly/int8.ts).
   */
  private matmulI8(x: Region, w: PackedWeight, b: Region | null, y: Region, n: number): void {
    const { inDim, out } = w;
    const fused = this.int8Fused ? 1 : 0; // chosen when the first int8 weight was allocated
    const bytes = int8ScratchBytes(n, inDim);
    const xq = this.int8Scratch && this.int8Scratch.length >= bytes ? this.int8Scratch.ptr : this.aboveTop(bytes); // (n, i8RowBytes) quantized rows
    const args = [x.ptr, xq, w.ptr, b ? b.ptr : 0, y.ptr, n, inDim, out, fused];
    if (this.parallel && n >= 8 && n * inDim * out >= PARALLEL_MIN_MACS) this.split(ParallelOp.MatmulI8, args);
    else if (this.simd) parallelJob(this.ex, ParallelOp.MatmulI8, args, 0).run(0, n);
    else this.ex.matmulI8Scalar(x.ptr, xq, w.ptr, args[3], y.ptr, n, inDim, out);
  }

  /** Whether this build has relaxed SIMD (the int8 kernels' i8×i7 dot). */
  private get relaxed(): boolean {
    return this.ex.relaxedSimd?.value === 1;
  }

  /**
   * Which instruction form the int8 matmuls use: 'relaxed-split' or 'relaxed-fused' (relaxed builds; chosen by
   * timing when the first int8 weight is allocated, unless set with useInt8Dot), 'simd128' or 'scalar'. All give
   * the same bits.
   */
  get int8Dot(): 'relaxed-split' | 'relaxed-fused' | 'relaxed (not chosen yet)' | 'simd128' | 'scalar' {
    if (!this.simd) return 'scalar';
    if (!this.relaxed) return 'simd128';
    return this.int8Fused === null ? 'relaxed (not chosen yet)' : this.int8Fused ? 'relaxed-fused' : 'relaxed-split';
  }

  /** Sets the relaxed dot's form instead of timing both (tests, benchmarks); a no-op outside the relaxed builds. */
  useInt8Dot(form: 'split' | 'fused'): void {
    if (this.simd && this.relaxed) this.int8Fused = form === 'fused';
  }

  /**
   * Times both forms of the relaxed dot on a 32×768×256 int8 matmul (alternating, best of 8 each, a few ms in
   * all, on the calling thread) and returns whether the fused one is faster. Either choice gives the same bits.
   */
  private fasterInt8Dot(): boolean {
    const n = 32, inDim = 768, out = 256;
    // Operands just above the top for the timing only (nothing is allocated): x (n, inDim) f32, W, xq, y (n, out).
    const wBytes = packedBytes(out, inDim, 'int8'), xBytes = n * inDim * 4, xqBytes = int8ScratchBytes(n, inDim);
    const x = this.aboveTop(xBytes + wBytes + xqBytes + n * out * 4);
    const w = x + xBytes, xq = w + wBytes, y = xq + xqBytes;
    new Float32Array(this.memory.buffer, x, n * inDim).fill(0); // the dot's speed does not depend on the values
    new Uint8Array(this.memory.buffer, w, wBytes).fill(64);
    const best = [Infinity, Infinity]; // split, fused
    for (let r = 0; r < 9; r++) {
      for (const fused of [0, 1]) {
        const t = performance.now();
        (fused ? this.ex.matmulI8Fused! : this.ex.matmulI8!)(x, xq, w, 0, y, n, inDim, out);
        if (r > 0) best[fused] = Math.min(best[fused], performance.now() - t); // r = 0 warms up
      }
    }
    return best[1] < best[0];
  }

  /**
   * The int8 activation quantization of the kernels, read back as @fast-dllm/model's Int8Activations (q (n, blocks·32),
   * scale (n, blocks)) plus each block's correction word (n, blocks) = −64·Σq: for tests against the reference.
   */
  quantizeActivations(x: Region, n: number, inDim: number): { q: Int8Array; scale: Float32Array; correction: Int32Array } {
    checkLen('quantizeActivations x', x, n * inDim);
    const blocks = int8Blocks(inDim);
    const xq = this.aboveTop(int8ScratchBytes(n, inDim));
    (this.simd ? this.ex.quantizeRowsI8! : this.ex.quantizeRowsI8Scalar)(x.ptr, xq, n, inDim);
    const bytes = new Uint8Array(this.memory.buffer.slice(xq, xq + int8ScratchBytes(n, inDim))); // (n, blocks, 40)
    const dv = new DataView(bytes.buffer);
    const q = new Int8Array(n * blocks * INT8_BLOCK), scale = new Float32Array(n * blocks), correction = new Int32Array(n * blocks);
    for (let i = 0; i < n * blocks; i++) {
      q.set(new Int8Array(bytes.buffer, i * I8_X_BLOCK_BYTES, INT8_BLOCK), i * INT8_BLOCK);
      scale[i] = dv.getFloat32(i * I8_X_BLOCK_BYTES + 32, true);
      correction[i] = dv.getInt32(i * I8_X_BLOCK_BYTES + 36, true);
    }
    return { q, scale, correction };
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
    let maxPos = 0;
    const p = this.i32({ ptr: pos.ptr, length: n });
    for (let i = 0; i < n; i++) {
      if (!(p[i] >= 0)) throw new Error(`rope: position ${p[i]} at row ${i} is negative`);
      if (p[i] > maxPos) maxPos = p[i];
    }
    const t = this.ropeAngles(hd, theta, maxPos + 1);
    (this.simd ? this.ex.ropeNeoxTable! : this.ex.ropeNeoxTableScalar)(x.ptr, pos.ptr, n, heads, hd, t.cos, t.sin);
  }

  /**
   * The cos/sin table of a head dim and theta, covering positions [0, positions): (cap, hd/2) f32 each in one
   * block, kept until the kernels go; grown (doubling) when a later call reaches further. The table replaces a
   * pow, a cos and a sin per row and pair on every call with a load, and gives the same bits.
   */
  private ropeAngles(hd: number, theta: number, positions: number): { cos: number; sin: number } {
    const key = `${hd}:${theta}`;
    let t = this.ropeTables.get(key);
    if (!t || t.cap < positions) {
      const cap = Math.max(positions, 2 * (t?.cap ?? 0), 256);
      const half = hd / 2;
      const block = this.allocBlock(2 * cap * half * 4);
      const cos = block, sin = block + cap * half * 4;
      this.ex.ropeTable(cos, sin, 0, cap, hd, theta);
      if (t) this.freeBlock(t.block);
      t = { block, cap, cos, sin };
      this.ropeTables.set(key, t);
    }
    return t;
  }

  /** out = silu(gate) * up, elementwise over `count`; out may be gate. */
  swiglu(gate: Region, up: Region, out: Region, count: number): void {
    checkLen('swiglu gate', gate, count);
    checkLen('swiglu up', up, count);
    checkLen('swiglu out', out, count);
    if (this.simd && this.parallel && count >= SWIGLU_PARALLEL_MIN) this.split(ParallelOp.SwiGLU, [gate.ptr, up.ptr, out.ptr, count]);
    else (this.simd ? this.ex.swiglu! : this.ex.swigluScalar)(gate.ptr, up.ptr, out.ptr, count);
  }

  /**
   * out (nq, H, hd) = softmax(q kᵀ · scale) v; q (nq, H, hd); k, v (nk, KVH, hd) contiguous visible keys;
   * scores (threads · ATTENTION_SCORE_ROWS · nk,) f32 scratch, a block of score rows per thread (the SIMD kernel takes query rows in blocks).
   */
  attention(q: Region, k: Region, v: Region, out: Region, scores: Region, nq: number, nk: number, H: number, KVH: number, hd: number, scale: number): void {
    checkLen('attention q', q, nq * H * hd);
    checkLen('attention k', k, nk * KVH * hd);
    checkLen('attention v', v, nk * KVH * hd);
    checkLen('attention out', out, nq * H * hd);
    checkLen('attention scores', scores, ATTENTION_SCORE_ROWS * nk * this.threads);
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
