export { ReferenceEngine, createReferenceEngine, referenceProvider } from './engine.js';
export {
  referenceAttention, referenceMatmul, referenceRmsNorm, referenceRope, referenceSwiglu, type FloatArray,
} from './ops.js';
export {
  readReferenceConfig, readAllTensors, loadReferenceWeights,
  type ReferenceConfig, type ReferenceLayer, type ReferenceWeights,
} from './load.js';
