export { ReferenceEngine, createReferenceEngine, referenceCacheBytes, referenceProvider } from './engine.js';
export {
  referenceAttention, referenceMatmul, referenceRmsNorm, referenceRope, referenceSwiglu, type FloatArray,
} from './ops.js';
export { loadReferenceModel, type ReferenceLayer, type ReferenceWeights } from './load.js';
