/**
 * What is particular to the reference engine (the shared contract checks run for every engine in
 * test/conformance): its model description, provider, load progress, and that its sampling and reports agree
 * with the logits it returns.
 */
import { fileURLToPath } from 'node:url';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { counterGumbel, type ForwardRequest } from '@fast-dllm/scheduler';
import { createReferenceEngine, referenceProvider, type ReferenceEngine } from '../src/index.js';

const model = (name: string) => fileURLToPath(new URL(`../../../test/fixtures/models/${name}`, import.meta.url));
const L = 48;
const span = (a: number, b: number) => Int32Array.from({ length: b - a }, (_, i) => a + i);

describe('reference engine', () => {
  let e: ReferenceEngine;
  beforeAll(async () => { e = await createReferenceEngine(model('llada-tiny-f32')); });
  afterAll(async () => { await e.dispose(); });

  it('describes the model from its config', async () => {
    expect(e.model).toMatchObject({ architecture: 'llada', vocabSize: 320, maxPositions: 512, maskId: 310, eosId: 301, endOfTurnId: 302, shiftLogits: false });
    const d = await createReferenceEngine(model('dream-tiny-bf16'));
    expect(d.model).toMatchObject({ architecture: 'dream', vocabSize: 288, maskId: 280, eosId: 270, endOfTurnId: 272, shiftLogits: true });
    await d.dispose();
    expect(referenceProvider.name).toBe('reference');
    expect(await referenceProvider.probe()).toEqual({ available: true });
  });

  it('reports load progress and refuses work after dispose', async () => {
    for (const m of ['dream-tiny-f32', 'llada-tiny-sharded']) {
      const seen: number[] = [];
      const other = await createReferenceEngine(model(m), { onProgress: (p) => seen.push(p.done / p.total) });
      const seq = other.openSequence(8);
      await other.dispose();
      expect(seen.at(-1)).toBe(1);
      await expect(other.forward([{ sequence: seq, canvas: new Int32Array(8), mode: 'full', start: 0, end: 8, positions: span(0, 1) }])).rejects.toThrow(/disposed/);
      expect(() => other.openSequence(8)).toThrow(/disposed/);
    }
  });

  it('samples deterministically with the shared counter RNG, never proposes the mask, and reports consistent probabilities', async () => {
    const canvas = Int32Array.from({ length: L }, (_, i) => (i < 16 ? (i * 7) % 96 : e.model.maskId));
    const sequence = e.openSequence(L);
    const req: ForwardRequest = {
      sequence, canvas, mode: 'full', start: 0, end: L, positions: span(16, L), want: { logits: true, top2: true, entropy: true },
      sampling: { temperature: 2, seed: 1234, forwardIndex: 3 },
    };
    const one = async (r: ForwardRequest) => (await e.forward([r]))[0];
    const r1 = await one(req);
    const r2 = await one(req);
    expect(Array.from(r1.tokens)).toEqual(Array.from(r2.tokens));
    const r3 = await one({ ...req, sampling: { temperature: 2, seed: 1235, forwardIndex: 3 } });
    expect(Array.from(r3.tokens)).not.toEqual(Array.from(r1.tokens));
    const greedy = await one({ ...req, sampling: undefined });
    const V = e.model.vocabSize;
    const mask = e.model.maskId;
    for (let i = 0; i < req.positions.length; i++) {
      const row = Array.from(r1.logits!.subarray(i * V, i * V + V));
      // The sample is the Gumbel-max of the reported logits with the position's noise, the mask left out (the engine
      // works in float64; the float32 logits can only flip near-exact ties, which these seeds do not hit).
      const scores = row.map((x, v) => (v === mask ? -Infinity : x / 2 + counterGumbel(1234, 3, req.positions[i], v)));
      expect(r1.tokens[i]).toBe(scores.indexOf(Math.max(...scores)));
      const proposable = row.map((x, v) => (v === mask ? -Infinity : x));
      expect(greedy.tokens[i]).toBe(proposable.indexOf(Math.max(...proposable)));
      const max = Math.max(...row);
      const z = row.reduce((s, x) => s + Math.exp(x - max), 0);
      expect(r1.probs[i]).toBeCloseTo(Math.exp(row[r1.tokens[i]] - max) / z, 6);
      expect(greedy.probs[i]).toBeCloseTo(r1.top1Probs![i], 12);
      expect(r1.top2Probs![i]).toBeLessThanOrEqual(r1.top1Probs![i]);
      expect(r1.entropy![i]).toBeGreaterThan(0);
    }
    e.closeSequence(sequence);
  });
});
