/**
 * DESIGN §7, "the last layer finishes only reported rows": a pass that reports some positions gives, for each of
 * them, the same bits (logits and reductions) as a pass that reports every position, and leaves the same cache
 * behind (the next dual step reads it). Checked on LLaDA, Dream (shifted rows), a block-causal model, LLaDA-MoE and
 * a two-memory split, in every weight format, alone and beside another sequence.
 */
import { describe, expect, it } from 'vitest';
import { fileURLToPath } from 'node:url';
import type { Engine, ForwardRequest, ForwardResult } from '@fast-dllm/scheduler';
import { reportedRows, layoutPass } from '@fast-dllm/engine-contract';
import { createWasmEngine } from '../src/node.js';

const FIXTURES = fileURLToPath(new URL('../../../test/fixtures/models', import.meta.url));
const range = (a: number, b: number) => Int32Array.from({ length: b - a }, (_, i) => a + i);
const bits = (x: ArrayLike<number>) => Buffer.from(Float64Array.from(x).buffer);

/** positions[j] of `all`'s result, as a result of its own. */
function pick(all: ForwardResult, allPositions: Int32Array, positions: Int32Array, V: number) {
  const idx = Array.from(positions, (p) => allPositions.indexOf(p));
  return {
    tokens: idx.map((i) => all.tokens[i]), probs: idx.map((i) => all.probs[i]), top1: idx.map((i) => all.top1Probs![i]),
    top2: idx.map((i) => all.top2Probs![i]), entropy: idx.map((i) => all.entropy![i]),
    logits: Float32Array.from(idx.flatMap((i) => Array.from(all.logits!.subarray(i * V, (i + 1) * V)))),
  };
}

async function compare(e: Engine, fullPositions: Int32Array, some: Int32Array, mode: 'full' | 'prefix', start: number, beside: boolean) {
  const mask = e.model.maskId;
  const L = 40;
  const canvas = Int32Array.from({ length: L }, (_, i) => (i < 12 ? (7 * i + 3) % 90 : mask));
  const other = Int32Array.from({ length: L }, (_, i) => (i < 20 ? (5 * i + 1) % 90 : mask));
  const want = { logits: true, top2: true, entropy: true };
  const run = async (positions: Int32Array) => {
    const seq = e.openSequence(L);
    const seq2 = e.openSequence(L);
    try {
      if (mode === 'prefix') await e.forward([{ sequence: seq, canvas, mode: 'full', start: 0, end: L, positions: range(12, 14) }]);
      const batch: ForwardRequest[] = [{ sequence: seq, canvas, mode, start, end: L, positions, want }];
      if (beside) batch.unshift({ sequence: seq2, canvas: other, mode: 'full', start: 0, end: L, positions: range(20, 22), want });
      const res = (await e.forward(batch))[beside ? 1 : 0];
      // The cache the pass left: a dual step over the first block reads every row's K/V.
      const dual = (await e.forward([{ sequence: seq, canvas, mode: 'dual', start: 12, end: 20, positions: range(12, 20), want: { logits: true } }]))[0];
      return { res, dual: dual.logits! };
    } finally {
      e.closeSequence(seq);
      e.closeSequence(seq2);
    }
  };
  const all = await run(fullPositions);
  const part = await run(some);
  const V = e.model.vocabSize;
  const want2 = pick(all.res, fullPositions, some, V);
  expect(Array.from(part.res.tokens)).toEqual(want2.tokens);
  expect(bits(part.res.probs).equals(bits(want2.probs))).toBe(true);
  expect(bits(part.res.top1Probs!).equals(bits(want2.top1))).toBe(true);
  expect(bits(part.res.top2Probs!).equals(bits(want2.top2))).toBe(true);
  expect(bits(part.res.entropy!).equals(bits(want2.entropy))).toBe(true);
  expect(Buffer.from(part.res.logits!.buffer).equals(Buffer.from(want2.logits.buffer))).toBe(true);
  expect(Buffer.from(part.dual.buffer).equals(Buffer.from(all.dual.buffer))).toBe(true);
}

describe('the last layer finishes only the reported rows (DESIGN §7)', () => {
  it('reportedRows: distinct rows in order, and each report\'s place among them', () => {
    const model = { maskId: 9, vocabSize: 10, shiftLogits: true } as never;
    const layout = layoutPass(model, [
      { canvas: new Int32Array(10), mode: 'full', start: 0, end: 10, positions: Int32Array.of(0, 1, 5) },
      { canvas: new Int32Array(10), mode: 'dual', start: 4, end: 8, positions: Int32Array.of(4, 7) },
    ] as never);
    // Dream's shift: position p is predicted by row p − 1 (position 0 by row 0); the second request's rows start at 10.
    const { rows, index } = reportedRows(layout);
    expect(Array.from(rows)).toEqual([0, 4, 10, 12]);
    expect(Array.from(index)).toEqual([0, 0, 1, 2, 3]);
  });

  it.each([
    ['llada-tiny-f32', 'f32', undefined], ['llada-tiny-f32', 'int8', undefined], ['dream-tiny-f32', 'bf16', undefined],
    ['sdar-tiny-f32', 'f32', undefined], ['llada-moe-tiny-f32', 'int8', undefined], ['dream-tiny-f32', 'int8', 1],
  ] as const)('%s (%s, layers per memory %s): some positions give the bits of every position', async (model, weightDType, layersPerShard) => {
    const e = await createWasmEngine(`${FIXTURES}/${model}`, { weightDType, ...(layersPerShard ? { layersPerShard } : {}) });
    try {
      const some = Int32Array.of(13, 14, 21, 39);
      await compare(e, range(0, 40), some, 'full', 0, false);
      await compare(e, range(0, 40), some, 'full', 0, true);
      await compare(e, range(12, 40), Int32Array.of(12, 30), 'prefix', 12, true);
    } finally {
      await e.dispose();
    }
  });
});
