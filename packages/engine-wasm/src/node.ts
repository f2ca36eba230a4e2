/** Node-only loader: reads the compiled kernel modules from this package's build/ folder. */
import { readFile } from 'node:fs/promises';
import { fileURLToPath } from 'node:url';
import { openModel } from '@fast-dllm/model';
import type { EngineOptions, EngineProvider } from '@fast-dllm/scheduler';
import { WasmEngine } from './engine.js';
import { MatmulPool } from './pool.js';
import { WasmKernels, type KernelOptions } from './kernels.js';

/** Which compiled module: 'release' (SIMD128) or 'scalar' (debug build, no SIMD). */
export type KernelBuild = 'release' | 'scalar' | 'threads';

const cache = new Map<KernelBuild, Promise<WebAssembly.Module>>();

export function kernelModulePath(build: KernelBuild): string {
  return fileURLToPath(new URL(`../build/${build}.wasm`, import.meta.url));
}

async function compile(build: KernelBuild): Promise<WebAssembly.Module> {
  const path = kernelModulePath(build);
  let bytes: Uint8Array;
  try {
    bytes = await readFile(path);
  } catch {
    throw new Error(`engine-wasm: ${path} is missing; run \`npm run build -w @fast-dllm/engine-wasm\``);
  }
  return WebAssembly.compile(new Uint8Array(bytes));
}

/** Loads and instantiates the kernels; `simd: false` uses the scalar twins of the release build. */
export async function loadKernels(options: KernelOptions & { build?: KernelBuild } = {}): Promise<WasmKernels> {
  const build = options.build ?? (options.simd === false ? 'scalar' : 'release');
  let m = cache.get(build);
  if (!m) {
    m = compile(build);
    cache.set(build, m);
  }
  return WasmKernels.instantiate(await m, { simd: options.simd ?? build === 'release' });
}

/**
 * The threads build over a shared WebAssembly.Memory (max 4 GiB), with a pool of threads-1 workers for the
 * matmuls. The caller's thread runs every other kernel.
 */
export async function loadThreadedKernels(threads: number): Promise<WasmKernels> {
  let m = cache.get('threads');
  if (!m) {
    m = compile('threads');
    cache.set('threads', m);
  }
  const module = await m;
  const memory = new WebAssembly.Memory({ initial: 1, maximum: 65536, shared: true });
  const kernels = await WasmKernels.instantiate(module, { simd: true }, memory);
  kernels.parallel = await MatmulPool.create(module, memory, threads);
  return kernels;
}

/** Options of the WASM engine: the contract's EngineOptions plus the kernel build. */
export interface WasmEngineOptions extends EngineOptions {
  /** false: the scalar debug build (isolates a SIMD bug). Default true. */
  simd?: boolean;
}

/**
 * Loads a Hugging Face model directory into a WasmEngine: f32 (default) or bf16 linear weights, one thread
 * (threads > 1 and f16 storage are not implemented yet and are refused rather than silently ignored).
 */
export async function createWasmEngine(modelDir: string, options: WasmEngineOptions = {}): Promise<WasmEngine> {
  const threads = options.threads ?? 1;
  if (!Number.isInteger(threads) || threads < 1) throw new Error(`engine-wasm: threads must be a positive integer; got ${threads}`);
  if (threads > 1 && options.simd === false) throw new Error('engine-wasm: threads > 1 needs the SIMD threads build; use simd: true or threads: 1');
  const dtype = options.weightDType ?? 'f32';
  if (dtype !== 'f32' && dtype !== 'bf16') {
    throw new Error(`engine-wasm: weightDType '${dtype}' is not supported yet; use 'f32' or 'bf16'`);
  }
  const kernels = threads > 1 ? await loadThreadedKernels(threads) : await loadKernels({ simd: options.simd ?? true });
  const loaded = await openModel(modelDir);
  try {
    const total = loaded.archive.tensors.size;
    let done = 0;
    return await WasmEngine.load(loaded.description, loaded.names, async (name) => {
      const t = await loaded.archive.readF32(name);
      options.onProgress?.({ phase: 'loading weights', done: ++done, total, unit: 'tensors' });
      return t;
    }, kernels, dtype);
  } finally {
    await loaded.archive.close();
  }
}

/** Engine provider for the CLI: needs WebAssembly with SIMD128 (Node 20 has it). */
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
};
