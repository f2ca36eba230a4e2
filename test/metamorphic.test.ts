/**
 * Properties of the reference engine that need no golden data: cached steps over a fresh cache equal a full
 * forward, and the engine contract's rejections and determinism.
 */
import { join } from 'node:path';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { createReferenceEngine, referenceProvider, type ReferenceEngine } from '@fast-dllm/engine-reference';
import { counterGumbel, type ForwardRequest } from '@fast-dllm/scheduler';

const MODELS = join(import.meta.dirname, 'fixtures', 'models');
const L = 48;

function canvasFor(e: ReferenceEngine, seed: number): Int32Array {
  const c = new Int32Array(L); // (L) token ids: a prompt, then masks with a few tokens decoded
  let s = seed;
  for (let i = 0; i < L; i++) {
    s = (Math.imul(s, 1103515245) + 12345) >>> 0;
    c[i] = i >= 16 && s % 3 !== 0 ? e.model.maskId : s % 96;
  }
  return c;
}

const span = (a: number, b: number) => Int32Array.from({ length: b - a }, (_, i) => a + i);

function maxRelDiff(a: Float32Array, b: Float32Array): number {
  let d = 0;
  let s = 0;
  for (let i = 0; i < a.length; i++) {
    d = Math.max(d, Math.abs(a[i] - b[i]));
    s = Math.max(s, Math.abs(b[i]));
  }
  return d / s;
}

// Same arithmetic on the same cached K/V, only the set of rows computed differs: measured 0 on both models.
// Tolerance 1e-6 allows float32 rounding flips of the reported logits.
const TOL = 1e-6;

describe.each(['llada-tiny-f32', 'dream-tiny-f32'])('cache metamorphic: %s', (model) => {
  let e: ReferenceEngine;
  beforeAll(async () => { e = await createReferenceEngine(join(MODELS, model)); });
  afterAll(async () => { await e.dispose(); });

  it('prefix and dual over a cache built from the same canvas match the full forward', async () => {
    const canvas = canvasFor(e, 11);
    const full = await e.forward({ canvas, mode: 'full', start: 0, end: L, positions: span(0, L), want: { logits: true } });
    const V = e.model.vocabSize;
    // A shifted model reads the first row of a cached window from its own hidden state (the documented quirk),
    // so compare from the second position of the window for Dream.
    const skip = e.model.shiftLogits ? 1 : 0;
    const pre = await e.forward({ canvas, mode: 'prefix', start: 16, end: L, positions: span(16 + skip, L), want: { logits: true } });
    expect(maxRelDiff(pre.logits!, full.logits!.subarray((16 + skip) * V, L * V))).toBeLessThanOrEqual(TOL);
    const dual = await e.forward({ canvas, mode: 'dual', start: 24, end: 32, positions: span(24 + skip, 32), want: { logits: true } });
    expect(maxRelDiff(dual.logits!, full.logits!.subarray((24 + skip) * V, 32 * V))).toBeLessThanOrEqual(TOL);
    expect(Array.from(dual.tokens)).toEqual(Array.from(full.tokens.subarray(24 + skip, 32)));
  });

  it('a stale cache changes the logits, and a dual step writes its fresh K/V into the cache', async () => {
    const a = canvasFor(e, 11);
    const b = canvasFor(e, 99);
    const V = e.model.vocabSize;
    const fullA = await e.forward({ canvas: a, mode: 'full', start: 0, end: L, positions: span(0, L), want: { logits: true } });
    await e.forward({ canvas: b, mode: 'full', start: 0, end: L, positions: new Int32Array([0]) });
    const stale = await e.forward({ canvas: a, mode: 'dual', start: 16, end: 24, positions: span(17, 24), want: { logits: true } });
    expect(maxRelDiff(stale.logits!, fullA.logits!.subarray(17 * V, 24 * V))).toBeGreaterThan(1e-3);
    // After dual over [16, 24) with canvas a, a prefix step from 16 over canvas b sees b's K/V only in [0, 16):
    // its rows recompute [16, L) fresh, so it equals a prefix step after a plain full forward on b.
    const afterDual = await e.forward({ canvas: b, mode: 'prefix', start: 16, end: L, positions: span(20, L), want: { logits: true } });
    await e.forward({ canvas: b, mode: 'full', start: 0, end: L, positions: new Int32Array([0]) });
    const clean = await e.forward({ canvas: b, mode: 'prefix', start: 16, end: L, positions: span(20, L), want: { logits: true } });
    expect(maxRelDiff(afterDual.logits!, clean.logits!)).toBeLessThanOrEqual(TOL);
    // …whereas a dual step over [0, 8) with canvas a changes what a later step attending to [0, 8) sees.
    await e.forward({ canvas: a, mode: 'dual', start: 0, end: 8, positions: span(0, 8) });
    const dirty = await e.forward({ canvas: b, mode: 'prefix', start: 16, end: L, positions: span(20, L), want: { logits: true } });
    expect(maxRelDiff(dirty.logits!, clean.logits!)).toBeGreaterThan(1e-4);
  });
});

describe('reference engine contract', () => {
  let e: ReferenceEngine;
  beforeAll(async () => { e = await createReferenceEngine(join(MODELS, 'llada-tiny-f32')); });
  afterAll(async () => { await e.dispose(); });

  it('describes the model from its config', async () => {
    expect(e.model).toMatchObject({ architecture: 'llada', vocabSize: 320, maxPositions: 512, maskId: 310, eosId: 301, endOfTurnId: 302, shiftLogits: false });
    const d = await createReferenceEngine(join(MODELS, 'dream-tiny-bf16'));
    expect(d.model).toMatchObject({ architecture: 'dream', vocabSize: 288, maskId: 280, eosId: 270, endOfTurnId: 272, shiftLogits: true });
    await d.dispose();
    expect(referenceProvider.name).toBe('reference');
    expect(await referenceProvider.probe()).toEqual({ available: true });
  });

  it('rejects bad requests with a message naming the problem', async () => {
    const canvas = canvasFor(e, 5);
    const ok: ForwardRequest = { canvas, mode: 'full', start: 0, end: L, positions: span(0, 4) };
    await expect(e.forward({ ...ok, start: 1 })).rejects.toThrow(/full forward computes \[0, L\)/);
    await expect(e.forward({ ...ok, positions: Int32Array.from([3, 2]) })).rejects.toThrow(/ascending/);
    await expect(e.forward({ ...ok, canvas: Int32Array.from([1, 999]), end: 2, positions: span(0, 1) })).rejects.toThrow(/outside the vocabulary/);
    await expect(e.forward({ ...ok, sampling: { temperature: 0, seed: 1, forwardIndex: 0 } })).rejects.toThrow(/temperature/);
    await expect(e.forward({ ...ok, canvas: new Int32Array(600), end: 600 })).rejects.toThrow(/exceeds/);
  });

  it('honours an aborted signal and reports load progress', async () => {
    const canvas = canvasFor(e, 5);
    const ac = new AbortController();
    ac.abort(new Error('stopped by the caller'));
    await expect(e.forward({ canvas, mode: 'full', start: 0, end: L, positions: span(0, 1) }, ac.signal)).rejects.toThrow(/stopped by the caller/);
    const seen: number[] = [];
    for (const m of ['dream-tiny-f32', 'llada-tiny-sharded']) {
      seen.length = 0;
      const other = await createReferenceEngine(join(MODELS, m), { onProgress: (p) => seen.push(p.done / p.total) });
      await other.dispose();
      expect(seen.at(-1)).toBe(1);
    }
  });

  it('rejects cached steps without a matching full forward', async () => {
    const fresh = await createReferenceEngine(join(MODELS, 'llada-tiny-f32'));
    const canvas = canvasFor(fresh, 5);
    await expect(fresh.forward({ canvas, mode: 'dual', start: 16, end: 24, positions: span(16, 24) })).rejects.toThrow(/prior 'full'/);
    await fresh.forward({ canvas, mode: 'full', start: 0, end: L, positions: span(0, 1) });
    const shorter = canvas.slice(0, 40);
    await expect(fresh.forward({ canvas: shorter, mode: 'prefix', start: 16, end: 40, positions: span(16, 17) })).rejects.toThrow(/cache holds a canvas of 48/);
    await fresh.dispose();
    await expect(fresh.forward({ canvas, mode: 'full', start: 0, end: L, positions: span(0, 1) })).rejects.toThrow(/disposed/);
  });

  it('samples deterministically with the shared counter RNG, and reports consistent probabilities', async () => {
    const canvas = canvasFor(e, 7);
    const req: ForwardRequest = {
      canvas, mode: 'full', start: 0, end: L, positions: span(16, L), want: { logits: true, top2: true, entropy: true },
      sampling: { temperature: 2, seed: 1234, forwardIndex: 3 },
    };
    const r1 = await e.forward(req);
    const r2 = await e.forward(req);
    expect(Array.from(r1.tokens)).toEqual(Array.from(r2.tokens));
    const r3 = await e.forward({ ...req, sampling: { temperature: 2, seed: 1235, forwardIndex: 3 } });
    expect(Array.from(r3.tokens)).not.toEqual(Array.from(r1.tokens));
    const greedy = await e.forward({ ...req, sampling: undefined });
    const V = e.model.vocabSize;
    for (let i = 0; i < req.positions.length; i++) {
      const row = Array.from(r1.logits!.subarray(i * V, i * V + V));
      // The sample is the Gumbel-max of the reported logits with the position's noise (the engine works in float64;
      // the float32 logits can only flip near-exact ties, which these seeds do not hit).
      const scores = row.map((x, v) => x / 2 + counterGumbel(1234, 3, req.positions[i], v));
      expect(r1.tokens[i]).toBe(scores.indexOf(Math.max(...scores)));
      expect(greedy.tokens[i]).toBe(row.indexOf(Math.max(...row)));
      const max = Math.max(...row);
      const z = row.reduce((s, x) => s + Math.exp(x - max), 0);
      expect(r1.probs[i]).toBeCloseTo(Math.exp(row[r1.tokens[i]] - max) / z, 6);
      expect(greedy.probs[i]).toBeCloseTo(r1.top1Probs![i], 12);
      expect(r1.top2Probs![i]).toBeLessThanOrEqual(r1.top1Probs![i]);
      expect(r1.entropy![i]).toBeGreaterThan(0);
    }
  });
});
