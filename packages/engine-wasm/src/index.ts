// Node entry: everything in ./core plus the fs-based loader, createWasmEngine and the CLI provider.
export * from './core.js';
export {
  loadKernels, loadThreadedKernels, relaxedSimdAvailable, kernelModulePath, createWasmEngine, wasmProvider,
  type KernelBuild, type LoadOptions, type WasmEngineOptions,
} from './node.js';
