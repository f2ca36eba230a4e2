export { WasmKernels, WASM32_MAX_BYTES, type Region, type KernelOptions, type RowReduction } from './kernels.js';
export { WasmEngine, weightBytes, workspaceBytes, type TensorReader } from './engine.js';
export { loadKernels, kernelModulePath, createWasmEngine, wasmProvider, type KernelBuild, type WasmEngineOptions } from './node.js';
