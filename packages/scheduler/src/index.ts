// The engine contract lives in its own package (engines depend on it alone); re-exported so that imports of it
// from the scheduler keep working.
export * from '@fast-dllm/engine-contract';
export * from './errors.js';
export * from './select.js';
export * from './plan.js';
export * from './request.js';
export * from './generation.js';
export * from './decoders/decoder.js';
export { MaskedDiffusionDecoder } from './decoders/masked.js';
export { BlockDiffusionDecoder } from './decoders/block.js';
export * from './generate.js';
export * from './batch.js';
export * from './recipe.js';
export * from './resolve.js';
export * from './text.js';
