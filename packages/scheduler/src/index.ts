export * from './engine.js';
export * from './rng.js';
export * from './errors.js';
export * from './select.js';
export * from './plan.js';
export * from './generate.js';
