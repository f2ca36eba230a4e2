// Browser-safe entry (no Node API): the kernels host and the engine. Supply the compiled module yourself,
// e.g. WebAssembly.compileStreaming(fetch('.../build/release.wasm')), then WasmKernels.instantiate(module).
export {
  WasmKernels, WASM32_MAX_BYTES, NR, ATTENTION_SCORE_ROWS, f32ToBF16, packWeight, packedLength, packedBytes, packInt8, int8ScratchBytes,
  checkLoadOptions, chooseFma,
  type Region, type PackedWeight, type WeightDType, type KernelOptions, type RowReduction,
} from './kernels.js';
export { WasmEngine, weightBytes, sequenceCacheBytes, scratchBytes, type TensorReader } from './engine.js';
