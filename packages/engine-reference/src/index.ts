export { ReferenceEngine, createReferenceEngine, referenceCacheBytes, referenceProvider } from './engine.js';
export {
  referenceAttention, referenceMatmul, referenceMoe, referenceRmsNorm, referenceRope, referenceRoute, referenceSwiglu, referenceSwigluFfn, type FloatArray, type MoeWeights, type SwigluWeights,
} from './ops.js';
export { loadReferenceModel, type ReferenceDType, type ReferenceLayer, type ReferenceWeights } from './load.js';
export { referenceInt8Matmul, referenceQuantize, isInt8, type LinearWeight } from './quant.js';
