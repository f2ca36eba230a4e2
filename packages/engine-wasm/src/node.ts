/** Node-only loader: reads the compiled kernel modules from this package's build/ folder. */
import { readFile } from 'node:fs/promises';
import { fileURLToPath } from 'node:url';
import { WasmKernels, type KernelOptions } from './kernels.js';

/** Which compiled module: 'release' (SIMD128) or 'scalar' (debug build, no SIMD). */
export type KernelBuild = 'release' | 'scalar';

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
