/** Request marshalling between the Engine contract and the native pass (binding.ts NativePass). Pure TS. */
import type { ForwardMode, ForwardRequest, PassLayout } from '@fast-dllm/engine-contract';
import type { NativePass } from './binding.js';
import type { CacheBlock } from './cache-pool.js';

/** native/addon.cc `enum Mode`. */
export const MODE_CODE: Record<ForwardMode, number> = { full: 0, prefix: 1, dual: 2, extend: 3 };

/** Numbers per sequence in NativePass.seqs (native/addon.cc kSeqFields). */
export const PASS_SEQ_FIELDS = 13;

/**
 * The native pass of a checked batch: each request's computed rows (canvas[start, end)) in order, its cache block
 * (`blocks[i]`, holding `sequence.maxLength` positions) and mode, and every report with its own sampling key, as
 * engine-kit's layoutPass placed them.
 */
export function nativePass(batch: readonly ForwardRequest[], layout: PassLayout, blocks: readonly CacheBlock[], layers: number): NativePass {
  const ids = new Int32Array(layout.rows); // (rows,)
  const seqs = new Float64Array(batch.length * PASS_SEQ_FIELDS); // (batch, 13)
  const attentionKeys = new Int32Array(batch.length * layers).fill(-1); // (batch, layers)
  batch.forEach((r, i) => {
    ids.set(r.canvas.subarray(r.start, r.end), layout.rowOffset[i]);
    const f = r.refresh, a = r.attention;
    seqs.set([blocks[i].arena, blocks[i].offset, r.sequence.maxLength, MODE_CODE[r.mode], r.start, r.end - r.start, r.canvas.length,
      layout.rowOffset[i], f?.fromLayer ?? 0, f?.start ?? 0, f?.end ?? 0, a?.start ?? -1, a?.end ?? -1], i * PASS_SEQ_FIELDS);
    if (a?.keys) attentionKeys.set(a.keys, i * layers);
  });
  return {
    ids, seqs, attentionKeys,
    reportRow: layout.reportRow, position: layout.position, temperature: layout.temperature, seed: layout.seed, forwardIndex: layout.forwardIndex,
    top2: batch.some((r) => r.want?.top2), entropy: batch.some((r) => r.want?.entropy), logits: batch.some((r) => r.want?.logits),
  };
}
