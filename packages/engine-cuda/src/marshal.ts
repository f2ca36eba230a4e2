/** Request marshalling between the Engine contract and the native pass (binding.ts NativePass). Pure TS. */
import type { ForwardMode, ForwardRequest, PassLayout } from '@fast-dllm/engine-contract';
import type { NativePass } from './binding.js';
import type { CacheBlock } from './cache-pool.js';

/** native/addon.cc `enum Mode`. */
export const MODE_CODE: Record<ForwardMode, number> = { full: 0, prefix: 1, dual: 2, extend: 3 };

/** Numbers per sequence in NativePass.seqs. */
export const PASS_SEQ_FIELDS = 8;

/**
 * The native pass of a checked batch: each request's computed rows (canvas[start, end)) in order, its cache block
 * (`blocks[i]`, holding `sequence.maxLength` positions) and mode, and every report with its own sampling key, as
 * engine-kit's layoutPass placed them.
 */
export function nativePass(batch: readonly ForwardRequest[], layout: PassLayout, blocks: readonly CacheBlock[]): NativePass {
  const ids = new Int32Array(layout.rows); // (rows,)
  const seqs = new Float64Array(batch.length * PASS_SEQ_FIELDS); // (batch, 8)
  batch.forEach((r, i) => {
    ids.set(r.canvas.subarray(r.start, r.end), layout.rowOffset[i]);
    seqs.set([blocks[i].arena, blocks[i].offset, r.sequence.maxLength, MODE_CODE[r.mode], r.start, r.end - r.start, r.canvas.length,
      layout.rowOffset[i]], i * PASS_SEQ_FIELDS);
  });
  return {
    ids, seqs,
    reportRow: layout.reportRow, position: layout.position, temperature: layout.temperature, seed: layout.seed, forwardIndex: layout.forwardIndex,
    top2: batch.some((r) => r.want?.top2), entropy: batch.some((r) => r.want?.entropy), logits: batch.some((r) => r.want?.logits),
  };
}
