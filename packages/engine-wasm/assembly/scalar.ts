// Entry of the debug/scalar build (compiled with SIMD disabled): only the scalar twins and the shared
// scalar kernels, so a machine or runtime without SIMD128 can still run the engine and a SIMD bug can be isolated.
export {
  heapBase, matmulF32Scalar, matmulBF16Scalar, rmsnormScalar, ropeNeox, ropeTable, ropeNeoxTableScalar, swigluScalar, attentionScalar, counterHash, counterGumbel, reduceRow, reduceRows,
} from './kernels';
export { matmulI8Scalar, quantizeRowsI8Scalar, i8RowBytes } from './int8';
