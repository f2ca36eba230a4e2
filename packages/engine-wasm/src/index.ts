export { WasmKernels, WASM32_MAX_BYTES, type Region, type KernelOptions, type RowReduction } from './kernels.js';
export { loadKernels, kernelModulePath, type KernelBuild } from './node.js';
