/**
 * Inputs and summaries the conformance checks share, so that every file builds its canvases and prompts and compares
 * its generations the same way.
 */
import type { Engine, GenerationResult } from '@fast-dllm/scheduler';

/** Deterministic (length,) canvas: `promptLength` tokens, then masks with about a third of positions decoded. */
export function testCanvas(e: Engine, seed: number, length: number, promptLength: number): Int32Array {
  const c = new Int32Array(length);
  let s = seed;
  for (let i = 0; i < length; i++) {
    s = (Math.imul(s, 1103515245) + 12345) >>> 0;
    c[i] = i >= promptLength && s % 3 !== 0 ? e.model.maskId : s % 96;
  }
  return c;
}

/** The i-th request's (length,) prompt: distinct per request, clear of the special ids at the top of the vocabulary. */
export const testPrompt = (i: number, length: number, vocab: number): Int32Array =>
  Int32Array.from({ length }, (_, j) => (7 + 13 * i + 5 * j) % (vocab - 40));

/** What batch invariance compares: tokens, NFE and every step's mode and commits. */
export const summary = (r: GenerationResult) => ({
  tokens: Array.from(r.tokens),
  nfe: r.stats.nfe,
  steps: r.steps.map((s) => `${s.block}.${s.step} ${s.mode} ${Array.from(s.positions)} -> ${Array.from(s.tokens)} @${s.nfe}`),
});
