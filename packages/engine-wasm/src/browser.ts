/**
 * Browser loader (no Node API): compiles the kernel builds from URLs, starts module Web Workers for threads,
 * and builds a WasmEngine from model files already in memory (config.json parsed, safetensors bytes).
 *
 *   const engine = await createBrowserWasmEngine({ config, weights }, { threads: 2 });
 *
 * Threads need SharedArrayBuffer, i.e. a cross-origin-isolated page (COOP: same-origin, COEP: require-corp),
 * and the engine must itself run in a Web Worker: a forward blocks on Atomics.wait while the workers compute,
 * and browsers do not let the main thread block. One thread works anywhere, the main thread included.
 */
import { SafetensorsArchive, blobSource, bufferSource, checkLayerCount, checkTensors, normaliseConfig, tensorNames, type ByteSource } from '@fast-dllm/model';
import type { EngineOptions } from '@fast-dllm/engine-contract';
import { WasmEngine } from './engine.js';
import { WasmKernels, checkLoadOptions, chooseFma, type WeightDType } from './kernels.js';
import { WorkerPool, type SpawnWorker } from './pool.js';

export interface BrowserKernelOptions {
  /** Kernel threads (default 1); > 1 needs the conditions in this file's header. */
  threads?: number;
  /** Relaxed-SIMD FMA kernels: default where the browser validates them (Chrome 114+); false for plain SIMD. */
  fma?: boolean;
  /** false: the scalar debug build. */
  simd?: boolean;
  /** Folder URL of the .wasm builds; default: this package's build/ next to dist/. */
  buildUrl?: string | URL;
  /** URL of dist/browser-worker.js; default: next to this file. */
  workerUrl?: string | URL;
}

const defaultBuildUrl = (): URL => new URL('../build/', import.meta.url);

async function compileFrom(base: string | URL, name: string): Promise<WebAssembly.Module> {
  const url = new URL(`${name}.wasm`, base);
  const res = await fetch(url);
  if (!res.ok) throw new Error(`engine-wasm: fetching ${url} failed (${res.status} ${res.statusText}); serve this package's build/ folder or pass buildUrl`);
  return WebAssembly.compile(await res.arrayBuffer());
}

/** The release-fma build's bytes when this browser validates them (relaxed SIMD), else null. */
async function fmaBytes(base: string | URL): Promise<ArrayBuffer | null> {
  const res = await fetch(new URL('release-fma.wasm', base));
  if (!res.ok) return null;
  const bytes = await res.arrayBuffer();
  return WebAssembly.validate(bytes) ? bytes : null;
}

/** Can this thread block on Atomics.wait? False on a browser's main thread. */
function canBlock(): boolean {
  try {
    Atomics.wait(new Int32Array(new SharedArrayBuffer(4)), 0, 1, 0);
    return true;
  } catch {
    return false;
  }
}

/** Loads the kernels in a browser (or any runtime with fetch and, for threads, module Web Workers). */
export async function loadBrowserKernels(options: BrowserKernelOptions = {}): Promise<WasmKernels> {
  const { threads } = checkLoadOptions(options);
  const base = options.buildUrl ?? defaultBuildUrl();
  if (options.simd === false) {
    return WasmKernels.instantiate(await compileFrom(base, 'scalar'), { simd: false, build: 'scalar' });
  }
  const fmaBuild = await fmaBytes(base);
  const fma = chooseFma(options.fma, fmaBuild !== null);
  if (threads === 1) {
    const build = fma ? 'release-fma' : 'release';
    const module = fma ? await WebAssembly.compile(fmaBuild!) : await compileFrom(base, build); // fma: the bytes just validated
    return WasmKernels.instantiate(module, { simd: true, build });
  }
  if (typeof SharedArrayBuffer === 'undefined') {
    throw new Error('engine-wasm: threads > 1 needs SharedArrayBuffer: serve the page cross-origin isolated (COOP: same-origin, COEP: require-corp), or use threads: 1');
  }
  if (!canBlock()) {
    throw new Error('engine-wasm: threads > 1 must run in a Web Worker (the main thread may not block on Atomics.wait); move the engine into a worker, or use threads: 1');
  }
  const build = fma ? 'threads-fma' : 'threads';
  const module = await compileFrom(base, build);
  const memory = new WebAssembly.Memory({ initial: 1, maximum: 65536, shared: true });
  const kernels = await WasmKernels.instantiate(module, { simd: true, build }, memory);
  const workerUrl = options.workerUrl ?? new URL('./browser-worker.js', import.meta.url);
  const spawn: SpawnWorker = (data) => new Promise((resolve, reject) => {
    const w = new Worker(workerUrl, { type: 'module' });
    w.onmessage = () => resolve(w);
    w.onerror = (e) => reject(new Error(`engine-wasm: kernel worker ${data.index} failed to start: ${e.message}`));
    w.postMessage(data);
  });
  kernels.parallel = await WorkerPool.create(spawn, module, memory, threads);
  return kernels;
}

/** One safetensors file: its bytes, a Blob (a picked File, a downloaded body) or any ByteSource; read tensor by tensor. */
export type WeightFile = Uint8Array | ArrayBuffer | Blob | ByteSource;

/** A model in the browser: config.json parsed, and its safetensors file or shards. */
export interface BrowserModelFiles {
  config: unknown;
  /**
   * model.safetensors, or the shards of a sharded checkpoint by file name (every file that
   * model.safetensors.index.json names); tensor names must be unique across the shards.
   */
  weights: WeightFile | ReadonlyMap<string, WeightFile>;
  generationConfig?: unknown;
  tokenizerConfig?: unknown;
  /** An A2D checkpoint's tokenizer.json (its <|mask|>) and folder name (mdlm or bd3lm), DESIGN §15. */
  tokenizerJson?: unknown;
  path?: string;
}

function byteSource(w: WeightFile, label: string): ByteSource {
  if (w instanceof Uint8Array) return bufferSource(w);
  if (w instanceof ArrayBuffer) return bufferSource(new Uint8Array(w));
  if (typeof Blob !== 'undefined' && w instanceof Blob) return blobSource(w, label);
  return w as ByteSource;
}

export interface BrowserEngineOptions extends BrowserKernelOptions, Pick<EngineOptions, 'onProgress'> {
  weightDType?: WeightDType;
}

/** Checks the config and every tensor (names, shapes), then copies the weights into the engine. */
export async function createBrowserWasmEngine(files: BrowserModelFiles, options: BrowserEngineOptions = {}): Promise<WasmEngine> {
  const { dtype } = checkLoadOptions(options); // before any parsing: a bad option fails first
  type Json = Record<string, unknown>;
  const desc = normaliseConfig(files.config as Json, {
    file: 'config.json', generationConfig: files.generationConfig as Json | undefined, tokenizerConfig: files.tokenizerConfig as Json | undefined,
    tokenizerJson: files.tokenizerJson as Json | undefined, path: files.path,
  });
  const w = files.weights;
  const weightFiles = w instanceof Map ? w as ReadonlyMap<string, WeightFile> : new Map([['model.safetensors', w as WeightFile]]);
  if (weightFiles.size === 0) throw new Error('engine-wasm: no safetensors file given; pass model.safetensors or every shard');
  const archive = await SafetensorsArchive.openFiles([...weightFiles.keys()], async (f) => byteSource(weightFiles.get(f)!, f));
  // A config with more layers than the weights hold is refused before its names are built (DESIGN §10).
  checkLayerCount(desc, archive, [...weightFiles.keys()].join(', '));
  const names = tensorNames(desc);
  try {
    checkTensors(desc, archive, names, [...weightFiles.keys()].join(', '));
    const kernels = await loadBrowserKernels(options);
    const total = archive.tensors.size;
    let done = 0;
    return await WasmEngine.load(desc, names, async (name) => {
      const t = await archive.readF32(name);
      options.onProgress?.({ phase: 'loading weights', done: ++done, total, unit: 'tensors' });
      return t;
    }, kernels, dtype);
  } finally {
    await archive.close();
  }
}
