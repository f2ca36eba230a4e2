/**
 * Cache semantics (DESIGN §4) on every engine, with no golden data: cached steps over a fresh cache equal a full
 * forward (metamorphic), a stale cache changes the logits and a dual step writes its K/V, `extend` grows the cache,
 * the contract's rejections come in the same words from every engine, and long canvases agree with the reference.
 */
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { createReferenceEngine } from '@fast-dllm/engine-reference';
import type { Engine, ForwardRequest, ForwardResult, SequenceHandle } from '@fast-dllm/scheduler';
import { forward1, relError } from '../golden.js';
import { testCanvas } from './cases.js';
import { BLOCK_MODELS, engineEntries, lacks, modelDir, open, openOrSkip } from './engines.js';

const L = 48;
const span = (a: number, b: number) => Int32Array.from({ length: b - a }, (_, i) => a + i);

/** Deterministic canvas: a prompt of 16, then masks with a few tokens decoded. */
const canvasFor = (e: Engine, seed: number, length = L): Int32Array => testCanvas(e, seed, length, 16);

const want = { logits: true } as const;

for (const entry of await engineEntries()) {
  describe.each(['llada-tiny-f32', 'dream-tiny-f32', 'a2d-qwen3-mdlm-tiny-f32'])(`${entry.label}: cache semantics on %s`, (model) => {
    let e: Engine | undefined;
    let skip = entry.unavailable;
    beforeAll(async () => {
      if (skip) return;
      e = await open(entry, model);
      skip = lacks(e.capabilities, { modes: ['full', 'prefix', 'dual'], logits: true });
    });
    afterAll(async () => e?.dispose());
    // Same arithmetic on the same K/V; only the set of rows computed differs. Engines whose row arithmetic does
    // not depend on the rows computed beside it give equal logits; bf16 activations are compared at their own
    // tolerance.
    const tol = () => Math.min(entry.tolerance, 1e-5);
    const run = (seq: SequenceHandle, req: Omit<ForwardRequest, 'sequence'>): Promise<ForwardResult> => forward1(e!, { ...req, sequence: seq });

    it('prefix and dual over a cache built from the same canvas match the full forward', async (ctx) => {
      if (skip) return ctx.skip(skip);
      const seq = e!.openSequence(L);
      try {
        const canvas = canvasFor(e!, 11);
        const full = await run(seq, { canvas, mode: 'full', start: 0, end: L, positions: span(0, L), want });
        const V = e!.model.vocabSize;
        // A shifted model reads the first row of a cached window from its own hidden state (the documented quirk).
        const skip1 = e!.model.shiftLogits ? 1 : 0;
        const pre = await run(seq, { canvas, mode: 'prefix', start: 16, end: L, positions: span(16 + skip1, L), want });
        expect(relError(pre.logits!, full.logits!.subarray((16 + skip1) * V, L * V))).toBeLessThanOrEqual(tol());
        const dual = await run(seq, { canvas, mode: 'dual', start: 24, end: 32, positions: span(24 + skip1, 32), want });
        expect(relError(dual.logits!, full.logits!.subarray((24 + skip1) * V, 32 * V))).toBeLessThanOrEqual(tol());
        if (entry.delta < Infinity) expect(Array.from(dual.tokens)).toEqual(Array.from(full.tokens.subarray(24 + skip1, 32)));
      } finally {
        e!.closeSequence(seq);
      }
    });

    it('a stale cache changes the logits, and a dual step writes its fresh K/V into the cache', async (ctx) => {
      if (skip) return ctx.skip(skip);
      const seq = e!.openSequence(L);
      try {
        const a = canvasFor(e!, 11);
        const b = canvasFor(e!, 99);
        const V = e!.model.vocabSize;
        const fullA = await run(seq, { canvas: a, mode: 'full', start: 0, end: L, positions: span(0, L), want });
        await run(seq, { canvas: b, mode: 'full', start: 0, end: L, positions: span(0, 1) });
        const stale = await run(seq, { canvas: a, mode: 'dual', start: 16, end: 24, positions: span(17, 24), want });
        expect(relError(stale.logits!, fullA.logits!.subarray(17 * V, 24 * V))).toBeGreaterThan(1e-3);
        // After dual over [16, 24) with canvas a, a prefix step from 16 over canvas b sees b's K/V only in [0, 16):
        // its rows recompute [16, L) fresh, so it equals a prefix step after a plain full forward on b.
        const afterDual = await run(seq, { canvas: b, mode: 'prefix', start: 16, end: L, positions: span(20, L), want });
        await run(seq, { canvas: b, mode: 'full', start: 0, end: L, positions: span(0, 1) });
        const clean = await run(seq, { canvas: b, mode: 'prefix', start: 16, end: L, positions: span(20, L), want });
        expect(relError(afterDual.logits!, clean.logits!)).toBeLessThanOrEqual(tol());
        // …whereas a dual step over [0, 8) with canvas a changes what a later step attending to [0, 8) sees.
        await run(seq, { canvas: a, mode: 'dual', start: 0, end: 8, positions: span(0, 8) });
        const dirty = await run(seq, { canvas: b, mode: 'prefix', start: 16, end: L, positions: span(20, L), want });
        expect(relError(dirty.logits!, clean.logits!)).toBeGreaterThan(1e-4);
      } finally {
        e!.closeSequence(seq);
      }
    });

    it('extend grows the cache block by block and equals the reference engine', async (ctx) => {
      if (skip) return ctx.skip(skip);
      const why = lacks(e!.capabilities, { modes: ['extend'] });
      if (why) return ctx.skip(why);
      const ref = await createReferenceEngine(modelDir(model));
      const seqs = [e!.openSequence(L), ref.openSequence(L)];
      try {
        const canvas = canvasFor(e!, 23);
        const steps: Omit<ForwardRequest, 'sequence'>[] = [
          { canvas: canvas.slice(0, 16), mode: 'extend', start: 0, end: 16, positions: span(0, 16), want },
          { canvas: canvas.slice(0, 32), mode: 'prefix', start: 16, end: 32, positions: span(16, 32), want },
          { canvas: canvas.slice(0, 32), mode: 'extend', start: 16, end: 32, positions: span(16, 32), want },
          { canvas, mode: 'extend', start: 32, end: L, positions: span(32, L), want },
          { canvas, mode: 'dual', start: 40, end: L, positions: span(40, L), want },
        ];
        for (const s of steps) {
          const [got, exp] = [await run(seqs[0], s), await forward1(ref, { ...s, sequence: seqs[1] })];
          expect(relError(got.logits!, exp.logits!), `${s.mode} [${s.start}, ${s.end})`).toBeLessThanOrEqual(entry.tolerance);
        }
        // A prefix step past what the cache holds is refused.
        const fresh = e!.openSequence(L);
        await expect(forward1(e!, { sequence: fresh, canvas, mode: 'extend', start: 16, end: L, positions: span(16, 17) })).rejects.toThrow(/prior 'full'/);
        e!.closeSequence(fresh);
      } finally {
        e!.closeSequence(seqs[0]);
        await ref.dispose();
      }
    });

    it('rejects bad requests in the contract\'s words, and nothing changes', async (ctx) => {
      if (skip) return ctx.skip(skip);
      const closed = e!.openSequence(L);
      e!.closeSequence(closed);
      const seq = e!.openSequence(L);
      try {
        const canvas = canvasFor(e!, 5);
        const ok: ForwardRequest = { sequence: seq, canvas, mode: 'full', start: 0, end: L, positions: span(0, 4) };
        const f = (r: ForwardRequest) => e!.forward([r]);
        await expect(f({ ...ok, mode: 'dual', start: 16, end: 24, positions: span(16, 24) })).rejects.toThrow(/needs a prior 'full' forward/);
        await expect(f({ ...ok, start: 1 })).rejects.toThrow(/full forward computes \[0, L\)/);
        await expect(f({ ...ok, positions: Int32Array.from([3, 2]) })).rejects.toThrow(/ascending/);
        await expect(f({ ...ok, canvas: Int32Array.from([1, 99999]), end: 2, positions: span(0, 1) })).rejects.toThrow(/outside the vocabulary/);
        await expect(f({ ...ok, sampling: { temperature: 0, seed: 1, forwardIndex: 0 } })).rejects.toThrow(/temperature/);
        await expect(f({ ...ok, canvas: new Int32Array(L + 8), end: L + 8 })).rejects.toThrow(/longer than sequence .* reserved 48/);
        await forward1(e!, ok);
        await expect(f({ ...ok, canvas: canvas.slice(0, 40), mode: 'dual', start: 16, end: 24, positions: span(16, 24) })).rejects.toThrow(/cache holds a canvas of 48 tokens, this 'dual' step has 40/);
        if (e!.capabilities.maxBatch > 1) {
          await expect(e!.forward([ok, ok])).rejects.toThrow(/appears twice in one pass/);
        }
        await expect(f({ ...ok, sequence: closed })).rejects.toThrow(/is not open/);
        // The refusals left the cache as the full forward wrote it: a dual step is still served.
        await f({ ...ok, mode: 'dual', start: 16, end: 24, positions: span(16, 24) });
        const aborted = new AbortController();
        aborted.abort(new Error('stopped by the caller'));
        await expect(e!.forward([ok], aborted.signal)).rejects.toThrow(/stopped by the caller/);
      } finally {
        e!.closeSequence(seq);
      }
    });

    it('a 200-token canvas (full, then a prefix step over 104 rows) agrees with the reference engine', async (ctx) => {
      if (skip) return ctx.skip(skip);
      const ref = await createReferenceEngine(modelDir(model));
      const seqs = [e!.openSequence(200), ref.openSequence(200)];
      try {
        const V = e!.model.vocabSize;
        const canvas = Int32Array.from({ length: 200 }, (_, i) => (i * 37 + 11) % (V - 16));
        for (const [mode, start] of [['full', 0], ['prefix', 96]] as const) {
          const req = { canvas, mode, start, end: 200, positions: span(start, 200), want };
          const got = await forward1(e!, { ...req, sequence: seqs[0] });
          const exp = await forward1(ref, { ...req, sequence: seqs[1] });
          expect(relError(got.logits!, exp.logits!), `${mode}`).toBeLessThanOrEqual(entry.tolerance);
        }
      } finally {
        e!.closeSequence(seqs[0]);
        await ref.dispose();
      }
    });
  });
}

// DESIGN §8: the exact cache of block-diffusion models. Prefill plus block-by-block `extend` forwards give the logits
// of one block-causal full forward over the whole canvas. For a shifted model (Fast-dLLM v2) each forward also reports
// the position just past its span (row end-1 predicts it: the next-token step), which stands in for the next span's
// first position (whose own row a span reads unshifted).
for (const entry of await engineEntries()) {
  describe.each(BLOCK_MODELS)(`${entry.label}: exact block cache on %s`, (model) => {
    let e: Engine | undefined;
    let skip = entry.unavailable;
    beforeAll(async () => {
      if (skip) return;
      ({ engine: e, skip } = await openOrSkip(entry, model));
      if (e) skip = lacks(e.capabilities, { modes: ['full', 'extend'], logits: true });
    });
    afterAll(async () => e?.dispose());

    it.for([[0, 40], [13, 37], [16, 35]] as const)('prefill of %i tokens plus block-by-block extends over a canvas of %i equal one full forward', async ([prefill, len], ctx) => {
      if (skip) return ctx.skip(skip);
      const B = e!.model.blockSize!;
      const V = e!.model.vocabSize;
      const shift = e!.model.shiftLogits ? 1 : 0;
      const canvas = canvasFor(e!, 31, len);
      const all = span(0, len);
      const one = e!.openSequence(len);
      const seq = e!.openSequence(len);
      try {
        const full = await forward1(e!, { sequence: one, canvas, mode: 'full', start: 0, end: len, positions: all, want });
        // The prompt's whole blocks in one forward, then one block per extend (the last one shorter).
        const cuts = [Math.floor(prefill / B) * B];
        while (cuts[cuts.length - 1] < len) cuts.push(Math.min(len, (Math.floor(cuts[cuts.length - 1] / B) + 1) * B));
        if (cuts[0] === 0) cuts.shift();
        let start = 0;
        for (const end of cuts) {
          const last = shift && end < len ? end : end - 1; // the position past the span, when there is one
          const positions = span(start === 0 ? 0 : start + shift, last + 1);
          const mode = start === 0 ? 'full' : 'extend';
          const r = await forward1(e!, { sequence: seq, canvas: canvas.slice(0, end), mode, start, end, positions, want });
          const exp = full.logits!.subarray(positions[0] * V, (positions[positions.length - 1] + 1) * V);
          expect(relError(r.logits!, exp), `${mode} [${start}, ${end})`).toBeLessThanOrEqual(Math.min(entry.tolerance, 1e-5));
          if (entry.delta < Infinity) expect(Array.from(r.tokens)).toEqual(Array.from(full.tokens.subarray(positions[0], positions[0] + positions.length)));
          start = end;
        }
      } finally {
        e!.closeSequence(one);
        e!.closeSequence(seq);
      }
    });
  });
}

describe('engine capacity', () => {
  it('each engine says how many sequences fit, refuses one that does not, and frees on close', async () => {
    const ref = await createReferenceEngine(modelDir('llada-tiny-f32'), { cacheBudgetBytes: 3 * 2 * 2 * 48 * 64 * 8 });
    expect(ref.sequenceBytes(48)).toBe(2 * 2 * 48 * 64 * 8); // layers × (K, V) × positions × kv width × f64
    expect(ref.sequenceCapacity(48)).toBe(3);
    const a = [ref.openSequence(48), ref.openSequence(48), ref.openSequence(48)];
    expect(ref.sequenceCapacity(48)).toBe(0);
    expect(() => ref.openSequence(48)).toThrow(/needs 98304 bytes of K\/V cache/);
    ref.closeSequence(a[0]);
    ref.closeSequence(a[0]); // closing twice does nothing
    expect(ref.sequenceCapacity(48)).toBe(1);
    await ref.dispose();
  });
});
