export * from './types.js';
export * from './errors.js';
export * from './bytesource.js';
export * from './dtype.js';
export * from './safetensors.js';
export * from './config.js';
export * from './load.js';
export * from './tokenizer.js';
