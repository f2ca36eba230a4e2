/**
 * The engine contract (DESIGN §0, §7): what an engine is (engine.ts, contract version 2), the bookkeeping every
 * engine does the same way (engine-kit.ts) and the counter RNG that keys sampling (rng.ts). Engines depend on this
 * package only, never on the scheduler (policy), which re-exports it.
 */
export * from './engine.js';
export * from './engine-kit.js';
export * from './rng.js';
export * from './conformance.js';
