/**
 * Elastic-Cache (DESIGN §16) on every engine: the attention report and the refresh forward against the float64
 * reference engine and against the engine's own full forward, then whole generations under the policy — the same
 * tokens, NFE, refreshes and per-step commits as the reference engine (entries with exact-enough arithmetic), and
 * the same alone as in a batch (every entry).
 */
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { createReferenceEngine } from '@fast-dllm/engine-reference';
import { BatchDriver, generate, type Engine, type ForwardRequest, type ForwardResult, type GenerationRequest, type Strategy } from '@fast-dllm/scheduler';
import { forward1, relError } from '../golden.js';
import { summary, testCanvas, testPrompt } from './cases.js';
import { engineEntries, lacks, modelDir, openOrSkip } from './engines.js';

const MODELS = ['llada-tiny-f32', 'dream-tiny-f32', 'llada-moe-tiny-f32', 'a2d-qwen3-mdlm-tiny-f32'];
const L = 40;
const span = (a: number, b: number) => Int32Array.from({ length: b - a }, (_, i) => a + i);

/** Deterministic canvas: a prompt of 12, then masks with a few tokens decoded. */
const canvasFor = (e: Engine, seed: number): Int32Array => testCanvas(e, seed, L, 12);

/** Elastic-Cache requests: several gammas (low ones rarely refresh, 1 at any change), rules, a suffix window, early commit, sampling. */
function requests(model: string, vocab: number): GenerationRequest[] {
  const dream = model.startsWith('dream');
  const rules: Strategy[] = dream
    ? [{ kind: 'dream', alg: 'maskgit_plus', threshold: 0.3 }, { kind: 'dream', alg: 'maskgit_plus' }]
    : [{ kind: 'threshold', threshold: 0.3 }, { kind: 'fixed' }, { kind: 'entropy_bound', gamma: 0.3 }];
  const out: GenerationRequest[] = [];
  let i = 0;
  for (const strategy of rules) {
    for (const elasticCache of [0.5, 0.9, 0.99, 1]) {
      const P = 2 + (i % 7);
      const [gen, block] = [[16, 8], [12, 4], [16, 4]][i % 3];
      out.push({
        prompt: testPrompt(i, P, vocab),
        genLength: gen, blockLength: block, steps: gen, strategy, cache: 'dual', elasticCache, seed: 100 + i,
        ...(i % 4 === 1 ? { suffixWindow: 4 } : {}), ...(i % 4 === 2 ? { earlyCommit: true } : {}), ...(i % 5 === 3 ? { temperature: 0.8 } : {}),
      });
      i++;
    }
  }
  return out;
}

const engines = await engineEntries();
for (const entry of engines) {
  describe.each(MODELS)(`${entry.label}: Elastic-Cache on %s`, (model) => {
    let e: Engine | undefined;
    let ref: Engine | undefined;
    let skip = entry.unavailable;
    beforeAll(async () => {
      if (skip) return;
      ({ engine: e, skip } = await openOrSkip(entry, model));
      if (!e) return;
      skip = lacks(e.capabilities, { modes: ['full', 'dual'], batch: 4, logits: true })
        ?? (e.capabilities.elasticCache ? undefined : 'not supported: Elastic-Cache (attention report and refresh forwards)');
      if (!skip) ref = await createReferenceEngine(modelDir(model));
    });
    afterAll(async () => {
      await e?.dispose();
      await ref?.dispose();
    });

    /** A full forward on canvas a, then `next` on canvas b (the same prompt, a few positions decoded), on one engine. */
    const twoPasses = async (engine: Engine, next: (b: Int32Array) => Omit<ForwardRequest, 'sequence'>): Promise<ForwardResult> => {
      const seq = engine.openSequence(L);
      try {
        const a = canvasFor(engine, 5);
        await forward1(engine, { sequence: seq, canvas: a, mode: 'full', start: 0, end: L, positions: span(0, 1) });
        const b = a.slice();
        for (const p of [14, 17, 20, 31]) b[p] = 40 + p;
        return await forward1(engine, { sequence: seq, ...next(b) });
      } finally {
        engine.closeSequence(seq);
      }
    };
    const layers = () => e!.capabilities.elasticCache!.layers;
    const keys = () => Int32Array.from({ length: layers() }, (_, l) => (l === 1 ? -1 : 3 * l));

    it('the attention report of a dual step agrees with the reference engine', async (ctx) => {
      if (skip) return ctx.skip(skip);
      expect(layers()).toBe(ref!.capabilities.elasticCache!.layers);
      const step = (b: Int32Array): Omit<ForwardRequest, 'sequence'> => ({ canvas: b, mode: 'dual', start: 16, end: 24, positions: span(16, 24), attention: { start: 17, end: 24, keys: keys() } });
      const [got, want] = [await twoPasses(e!, step), await twoPasses(ref!, step)];
      const a = got.attention!, w = want.attention!;
      expect(Array.from(a.top)).toEqual(Array.from(w.top));
      expect(a.atTop.length).toBe(layers() * 7);
      const err = (x: Float64Array, y: Float64Array) => Math.max(...x.map((v, i) => Math.abs(v - y[i])));
      expect(err(a.atTop, w.atTop)).toBeLessThanOrEqual(10 * entry.tolerance);
      expect(err(a.tracked, w.tracked)).toBeLessThanOrEqual(10 * entry.tolerance);
      for (let r = 0; r < 7; r++) expect(a.tracked[1 * 7 + r]).toBe(0); // key -1: none
      for (const v of a.atTop) expect(v > 0 && v <= 1).toBe(true);
    });

    it('a refresh forward agrees with the reference engine; from layer 0, or over a cache of the same canvas, it is the full forward', async (ctx) => {
      if (skip) return ctx.skip(skip);
      const V = e!.model.vocabSize;
      const want = { logits: true } as const;
      for (const fromLayer of [1, layers() - 1]) {
        const refresh = (b: Int32Array): Omit<ForwardRequest, 'sequence'> => ({
          canvas: b, mode: 'full', start: 0, end: L, positions: span(0, L), want, refresh: { fromLayer, start: 16, end: 24 },
        });
        const [got, exp] = [await twoPasses(e!, refresh), await twoPasses(ref!, refresh)];
        expect(relError(got.logits!, exp.logits!), `from layer ${fromLayer}`).toBeLessThanOrEqual(entry.tolerance);
        // A stale shallow cache outside the span changes the answer (the policy's approximation is real).
        const full = await twoPasses(ref!, (b) => ({ canvas: b, mode: 'full', start: 0, end: L, positions: span(0, L), want }));
        expect(relError(exp.logits!, full.logits!)).toBeGreaterThan(1e-6);
      }
      const full = await twoPasses(e!, (b) => ({ canvas: b, mode: 'full', start: 0, end: L, positions: span(0, L), want }));
      const zero = await twoPasses(e!, (b) => ({ canvas: b, mode: 'full', start: 0, end: L, positions: span(0, L), want, refresh: { fromLayer: 0, start: 16, end: 24 } }));
      expect(relError(zero.logits!, full.logits!)).toBe(0);
      // Over a cache built from this very canvas nothing is stale: the refresh is the full forward.
      const seq = e!.openSequence(L);
      try {
        const c = canvasFor(e!, 9);
        const f = await forward1(e!, { sequence: seq, canvas: c, mode: 'full', start: 0, end: L, positions: span(0, L), want });
        const r = await forward1(e!, { sequence: seq, canvas: c, mode: 'full', start: 0, end: L, positions: span(0, L), want, refresh: { fromLayer: layers() - 1, start: 20, end: 28 } });
        expect(relError(r.logits!, f.logits!)).toBeLessThanOrEqual(Math.min(entry.tolerance, 1e-5));
      } finally {
        e!.closeSequence(seq);
      }
      expect(V).toBeGreaterThan(0);
    });

    it('decodes as the reference engine does, alone and 4 at a time', async (ctx) => {
      if (skip) return ctx.skip(skip);
      const reqs = requests(model, e!.model.vocabSize);
      const alone: ReturnType<typeof summary>[] = [];
      for (const r of reqs) alone.push(summary(await generate(e!, r)));
      const driver = new BatchDriver(e!, { maxBatch: 4 });
      const batched = await Promise.all(reqs.map((r) => driver.submit(r)));
      batched.forEach((r, i) => expect(summary(r), `request ${i} batched`).toEqual(alone[i]));
      // The policy refreshed somewhere (gamma 1 refreshes at any change), and not everywhere.
      const fulls = alone.map((s) => s.steps.filter((x) => x.includes(' full ')).length);
      expect(Math.max(...fulls)).toBeGreaterThan(1);
      expect(fulls.some((n, i) => n < alone[i].nfe / 2)).toBe(true);
      if (entry.delta === Infinity) return; // lossy arithmetic: held to itself only
      for (let i = 0; i < reqs.length; i++) expect(alone[i], `request ${i} vs the reference engine`).toEqual(summary(await generate(ref!, reqs[i])));
    });
  });
}
