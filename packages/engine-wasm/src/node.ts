/** Node-only loader: reads the compiled kernel modules from this package's build/ folder. */
import { readFileSync } from 'node:fs';
import { readFile } from 'node:fs/promises';
import v8 from 'node:v8';
import { fileURLToPath } from 'node:url';
import { openModel } from '@fast-dllm/model';
import type { EngineOptions, EngineProvider } from '@fast-dllm/engine-contract';
import { WasmEngine, planShards, scratchBytes, sequenceCacheBytes, weightBytes } from './engine.js';
import { Worker } from 'node:worker_threads';
import { WorkerPool, type SpawnWorker } from './pool.js';
import { WASM32_MAX_BYTES, WasmKernels, checkLoadOptions, chooseFma, type KernelOptions, type WeightDType } from './kernels.js';

/**
 * Which compiled module: 'release' (SIMD128), 'release-fma' (SIMD128 + relaxed-SIMD fused multiply-add),
 * their shared-memory twins 'threads' / 'threads-fma', or 'scalar' (debug build, no SIMD).
 */
export type KernelBuild = 'release' | 'release-fma' | 'threads' | 'threads-fma' | 'scalar';

const cache = new Map<KernelBuild, Promise<WebAssembly.Module>>();

export function kernelModulePath(build: KernelBuild): string {
  return fileURLToPath(new URL(`../build/${build}.wasm`, import.meta.url));
}

async function readBuild(build: KernelBuild): Promise<Uint8Array<ArrayBuffer>> {
  const path = kernelModulePath(build);
  try {
    return new Uint8Array(await readFile(path)); // a copy: its own (non-shared) ArrayBuffer
  } catch {
    throw new Error(`engine-wasm: ${path} is missing; run \`npm run build -w @fast-dllm/engine-wasm\``);
  }
}

function compiled(build: KernelBuild): Promise<WebAssembly.Module> {
  let m = cache.get(build);
  if (!m) {
    m = readBuild(build).then((bytes) => WebAssembly.compile(bytes));
    cache.set(build, m);
  }
  return m;
}

/**
 * V8 settings for the kernels, set once before the first compile (they apply to modules compiled after):
 * - --no-liftoff: compile with the optimising tier up front. With the default dynamic tiering a kernel runs
 *   Liftoff's baseline code until it has run "enough", which made the small matmuls of a short generation
 *   3–4× slower (measured: 40×64×64 at 11 GFLOP/s under Liftoff vs 47 optimised).
 * - --experimental-wasm-relaxed-simd: Node 20's V8 has relaxed SIMD behind this flag (on by default since
 *   Chrome 114), needed by the -fma builds. Set only where the -fma build does not validate without it: later
 *   V8s (Node 24) no longer know the flag and print an error for it.
 */
function configureV8(): boolean {
  setFlag('--no-liftoff');
  if (validatesSync('release-fma')) return true;
  setFlag('--experimental-wasm-relaxed-simd');
  return validatesSync('release-fma');
}

function setFlag(flag: string): void {
  try {
    v8.setFlagsFromString(flag);
  } catch {
    // not a V8 that knows the flag: the defaults stay
  }
}

function validatesSync(build: KernelBuild): boolean {
  try {
    return WebAssembly.validate(readFileSync(kernelModulePath(build)));
  } catch {
    return false; // missing build: compiled() reports it
  }
}

/** Whether the -fma build validates here, once the flags are set: decided once, at load. */
const relaxedOk = configureV8();

/**
 * Whether this runtime runs relaxed SIMD (f32x4.relaxed_madd → one FMA instruction), decided by validating
 * the -fma build itself.
 */
export function relaxedSimdAvailable(): Promise<boolean> {
  return Promise.resolve(relaxedOk);
}

/** Kernel choice: `fma` true demands the relaxed-SIMD build, false refuses it, unset takes it where it runs. */
export interface LoadOptions extends KernelOptions {
  build?: KernelBuild;
  fma?: boolean;
}

async function pickFma(fma: boolean | undefined): Promise<boolean> {
  return chooseFma(fma, await relaxedSimdAvailable());
}

/** Loads and instantiates the kernels; `simd: false` uses the scalar debug build. */
export async function loadKernels(options: LoadOptions = {}): Promise<WasmKernels> {
  const build = options.build ?? (options.simd === false ? 'scalar' : (await pickFma(options.fma)) ? 'release-fma' : 'release');
  return WasmKernels.instantiate(await compiled(build), { simd: options.simd ?? build !== 'scalar', build });
}

/** A worker_threads worker running dist/worker.js; resolves when it is online. */
const spawnNodeWorker: SpawnWorker = async (data) => {
  const w = new Worker(new URL('../dist/worker.js', import.meta.url), { workerData: data });
  await new Promise<void>((resolve, reject) => { w.once('online', resolve); w.once('error', reject); });
  w.on('error', (e) => { console.error(`engine-wasm worker ${data.index} failed: ${e.message}`); });
  w.unref(); // an undisposed engine must not keep the process alive
  return w;
};

/**
 * The threads build over a shared WebAssembly.Memory (max 4 GiB), with a pool of threads-1 workers for the
 * row-split kernels (matmul, attention, logits-row reduction). Norms, RoPE and SwiGLU run on the caller.
 */
export async function loadThreadedKernels(threads: number, options: { fma?: boolean } = {}): Promise<WasmKernels> {
  const build: KernelBuild = (await pickFma(options.fma)) ? 'threads-fma' : 'threads';
  const module = await compiled(build);
  const memory = new WebAssembly.Memory({ initial: 1, maximum: 65536, shared: true });
  const kernels = await WasmKernels.instantiate(module, { simd: true, build }, memory);
  kernels.parallel = await WorkerPool.create(spawnNodeWorker, module, memory, threads);
  return kernels;
}

/** Options of the WASM engine: the contract's EngineOptions plus the kernel build. */
export interface WasmEngineOptions extends EngineOptions {
  /** false: the scalar debug build (isolates a SIMD bug). Default true. */
  simd?: boolean;
  /** Relaxed-SIMD fused multiply-add kernels: default where the runtime has them; false for the plain SIMD build. */
  fma?: boolean;
  /**
   * Split the layers over several wasm memories of at most this many layers each (DESIGN §14). Unset: one memory
   * when the model fits 4 GiB, else as many as its weights need.
   */
  layersPerShard?: number;
}

/**
 * Loads a Hugging Face model directory into a WasmEngine: f32 (default) or bf16 linear weights, 1 or more kernel
 * threads (f16 storage is not implemented yet and is refused rather than silently ignored).
 */
export async function createWasmEngine(modelDir: string, options: WasmEngineOptions = {}): Promise<WasmEngine> {
  const { threads, dtype } = checkLoadOptions(options);
  const per = options.layersPerShard;
  if (per !== undefined && !(Number.isInteger(per) && per > 0)) throw new Error(`engine-wasm: layersPerShard must be a positive integer, got ${per}`);
  // One kernel instance per wasm32 memory: a model over 4 GiB takes several (DESIGN §14), each with its own workers.
  const makeKernels = () => threads > 1
    ? loadThreadedKernels(threads, { fma: options.fma })
    : loadKernels({ simd: options.simd ?? true, fma: options.simd === false ? undefined : options.fma });
  const kernels = await makeKernels();
  const loaded = await openModel(modelDir);
  try {
    const total = loaded.archive.tensors.size;
    let done = 0;
    return await WasmEngine.load(loaded.description, loaded.names, async (name) => {
      const t = await loaded.archive.readF32(name);
      options.onProgress?.({ phase: 'loading weights', done: ++done, total, unit: 'tensors' });
      return t;
    }, kernels, dtype, { moreKernels: makeKernels, ...(options.layersPerShard !== undefined ? { layersPerShard: options.layersPerShard } : {}) });
  } finally {
    await loaded.archive.close();
  }
}

/** Engine provider for the CLI: needs WebAssembly with SIMD128 (Node 20 has it). */
/** What each weight storage keeps how (weightBytes counts the same). */
const WEIGHT_STORAGE: Record<WeightDType, string> = {
  f32: 'all f32 (a tied embedding is read from the LM head)',
  bf16: 'linear weights and LM head bf16; embedding, norms, biases f32 (a tied embedding is read from the head)',
  int8: 'linear weights and LM head int8 (7-bit values, one f32 scale per 32); embedding, norms, biases f32 (a tied embedding is read from the int8 head, dequantized)',
};

export const wasmProvider: EngineProvider = {
  name: 'wasm',
  async probe() {
    try {
      await loadKernels();
      return { available: true };
    } catch (e) {
      return { available: false, reason: (e as Error).message };
    }
  },
  create: createWasmEngine,
  async estimateMemory(modelDir, { maxLength, weightDType }) {
    const { dtype } = checkLoadOptions({ weightDType });
    const { description, archive } = await openModel(modelDir);
    await archive.close();
    const w = weightBytes(description, dtype), seq = sequenceCacheBytes(description, maxLength);
    // What load and the first pass need: weights, one sequence, the scratch of a pass of up to 64 rows.
    const fits = w + seq + scratchBytes(description, Math.min(maxLength, 64), maxLength, 1, dtype) <= WASM32_MAX_BYTES;
    let split = '';
    if (!fits) {
      try {
        split = `over wasm32's 4 GiB: split by layers over ${planShards(description, dtype).length} memories in Node (DESIGN §14); a browser cannot load it`;
      } catch (e) {
        split = (e as Error).message;
      }
    }
    const note = [WEIGHT_STORAGE[dtype], ...(split ? [split] : [])].join('; ');
    return { weightBytes: w, sequenceBytes: seq, weightDType: dtype, cacheDType: 'f32', note };
  },
};
