/**
 * The scheduler end to end on the reference engine with the fixture models: every strategy under every cache
 * mode, and the cases where DESIGN §4 makes a cached run equal to the no-cache run.
 */
import { join } from 'node:path';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { createReferenceEngine } from '@fast-dllm/engine-reference';
import { generate, type CacheMode, type Engine, type GenerationRequest, type Strategy } from '@fast-dllm/scheduler';

const FIXTURES = join(import.meta.dirname, 'fixtures');
const MODELS = join(FIXTURES, 'models');
const CACHES: CacheMode[] = ['none', 'prefix', 'dual'];

function request(engine: Engine, strategy: Strategy, over: Partial<GenerationRequest> = {}): GenerationRequest {
  const v = engine.model.vocabSize;
  // (4,) fixed prompt ids well inside the vocabulary and away from the special ids at its top.
  const prompt = Int32Array.of(3, 17 % v, 42 % v, 101 % v);
  return { prompt, genLength: 16, blockLength: 8, steps: 8, strategy, ...over };
}

/** Invariants every finished run must satisfy, whatever the strategy. */
function checkRun(engine: Engine, req: GenerationRequest, r: Awaited<ReturnType<typeof generate>>, cache: CacheMode): void {
  const P = req.prompt.length;
  expect(Array.from(r.canvas.subarray(0, P))).toEqual(Array.from(req.prompt));
  expect(r.tokens.includes(engine.model.maskId)).toBe(false);
  expect(r.stats.nfe).toBe(r.steps.length);
  const committed = r.steps.flatMap((s) => Array.from(s.positions));
  expect(committed.sort((a, b) => a - b)).toEqual(Array.from({ length: req.genLength }, (_, i) => P + i));
  // One full forward opens each block; without refreshEvery no other full forward in cached modes.
  const fulls = r.steps.filter((s) => s.mode === 'full').length;
  expect(fulls).toBe(cache === 'none' ? r.stats.nfe : req.genLength / req.blockLength);
  for (const s of r.steps) {
    if (s.positions.length === 0) continue; // Dream 'origin' may commit nothing at a step
    const b = Math.floor((s.positions[0] - P) / req.blockLength);
    expect(s.positions.every((p) => Math.floor((p - P) / req.blockLength) === b)).toBe(true);
    expect(b).toBe(s.block);
  }
}

describe.each([
  ['llada-tiny-f32', [
    { kind: 'fixed' },
    { kind: 'fixed', remasking: 'random' },
    { kind: 'threshold', threshold: 0.9 },
    { kind: 'threshold', threshold: 0.05 },
    { kind: 'factor', factor: 1 },
    { kind: 'factor', factor: 3, factorLastRankQuirk: true },
  ] as Strategy[]],
  ['dream-tiny-f32', [
    { kind: 'dream', alg: 'maskgit_plus' },
    { kind: 'dream', alg: 'entropy' },
    { kind: 'dream', alg: 'topk_margin' },
    { kind: 'dream', alg: 'origin' },
    { kind: 'dream', alg: 'maskgit_plus', threshold: 0.05 },
    { kind: 'fixed' },
  ] as Strategy[]],
])('%s on the reference engine', (model, strategies) => {
  let engine: Engine;
  beforeAll(async () => {
    engine = await createReferenceEngine(join(MODELS, model));
  });
  afterAll(async () => engine?.dispose());

  for (const strategy of strategies) {
    for (const cache of CACHES) {
      it(`${JSON.stringify(strategy)} with cache ${cache}`, async () => {
        const req = request(engine, strategy, { cache, seed: 5 });
        const r = await generate(engine, req);
        checkRun(engine, req, r, cache);
        if (strategy.kind === 'fixed') expect(r.stats.nfe).toBe(req.steps);
        if (engine.model.shiftLogits && cache !== 'none') {
          // DESIGN §4: each block's full forward commits exactly the block's first position.
          const opening = r.steps.filter((s) => s.mode === 'full').map((s) => Array.from(s.positions));
          expect(opening).toEqual([[4], [12]]);
        }
      });
    }
  }

  it('cached runs equal the no-cache run where every step is a full forward (refreshEvery 1)', async () => {
    const strategy = strategies[0];
    const none = await generate(engine, request(engine, strategy, { cache: 'none' }));
    for (const cache of ['prefix', 'dual'] as const) {
      const r = await generate(engine, request(engine, strategy, { cache, refreshEvery: 1 }));
      // Dream's cached rule is a different rule (first-position commit), so compare tokens for LLaDA only.
      if (engine.model.architecture === 'llada') expect(Array.from(r.tokens)).toEqual(Array.from(none.tokens));
      expect(r.stats.forwardsByMode.full).toBe(r.stats.nfe);
    }
  });

  it('one block over the whole generation: the first step is the same full forward in every cache mode', async () => {
    if (engine.model.architecture === 'dream') return; // the Dream cached opening commits one token by design
    const firsts = [];
    for (const cache of CACHES) {
      const r = await generate(engine, request(engine, strategies[0], { cache, blockLength: 16, steps: 8 }));
      firsts.push({ p: Array.from(r.steps[0].positions), t: Array.from(r.steps[0].tokens) });
    }
    expect(firsts[1]).toEqual(firsts[0]);
    expect(firsts[2]).toEqual(firsts[0]);
  });

  it('temperature sampling is reproducible for a seed', async () => {
    const a = await generate(engine, request(engine, strategies[0], { cache: 'dual', temperature: 0.8, seed: 9 }));
    const b = await generate(engine, request(engine, strategies[0], { cache: 'dual', temperature: 0.8, seed: 9 }));
    expect(Array.from(a.tokens)).toEqual(Array.from(b.tokens));
  });
});
