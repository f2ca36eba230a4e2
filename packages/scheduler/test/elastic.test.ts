import { describe, expect, it } from 'vitest';
import type { AttentionReport, ForwardRequest } from '@fast-dllm/engine-contract';
import { generate, type GenerationRequest } from '../src/generate.js';
import { checkGenerationRequest } from '../src/request.js';
import { resolveDecoding, requestOf } from '../src/resolve.js';
import { cosineSimilarity, firstDriftLayer } from '../src/elastic.js';
import { MockEngine, byPos } from './mock-engine.js';

// DESIGN §16: Elastic-Cache's refresh decisions, on a scripted engine of 3 layers.
const LAYERS = 3;
const prompt = Int32Array.of(1, 5, 6); // P = 3: blocks [3,7), [7,11)
const base = (over: Partial<GenerationRequest> = {}): GenerationRequest => ({
  prompt, genLength: 8, blockLength: 4, steps: 8, strategy: { kind: 'threshold', threshold: 0.9 }, cache: 'dual', elasticCache: 0.9, ...over,
});
const describePass = (r: ForwardRequest) =>
  `${r.mode}[${r.start},${r.end})${r.refresh ? ` refresh@${r.refresh.fromLayer}[${r.refresh.start},${r.refresh.end})` : ''}` +
  ` rows[${r.attention?.start},${r.attention?.end})${r.attention?.keys ? ` keys ${Array.from(r.attention.keys)}` : ''}`;

/** Every layer's most attended key is 0 + layer; the rows give it 0.5 each, except where `drift` says otherwise. */
const report = (drift: (fi: number, layer: number) => number[] | null) => (req: ForwardRequest, fi: number): AttentionReport => {
  const n = req.attention!.end - req.attention!.start;
  const out: AttentionReport = { top: Int32Array.from({ length: LAYERS }, (_, l) => l), atTop: new Float64Array(LAYERS * n).fill(0.5), tracked: new Float64Array(LAYERS * n) };
  for (let l = 0; l < LAYERS; l++) {
    const d = drift(fi, l);
    for (let r = 0; r < n; r++) out.tracked[l * n + r] = d ? d[r] : 0.5;
  }
  return out;
};
const caps = { elasticCache: { layers: LAYERS } };

describe('Elastic-Cache', () => {
  it('runs dual steps after the first full forward and refreshes from the first layer whose attention drifted', async () => {
    // Forward 2 (block 0, step 2): layer 1's rows put their attention on its tracked key elsewhere (cosine 0.5 < 0.9);
    // layer 2 drifts too, but the refresh starts at the shallowest drifting layer.
    const e = new MockEngine(byPos(() => 0.5), { caps, attention: report((fi, l) => (fi === 2 && l >= 1 ? [2, 0, 0, 0] : null)) });
    const r = await generate(e, base());
    expect(e.requests.map(describePass)).toEqual([
      'full[0,11) rows[3,7)',
      'dual[3,7) rows[3,7) keys 0,1,2',
      'dual[3,7) rows[3,7) keys 0,1,2', // drift seen here
      'full[0,11) refresh@1[3,7) rows[3,7) keys 0,1,2', // the step after it refreshes layers 1 and 2 of every position
      'dual[7,11) rows[7,11) keys 0,1,2', // a new block: other rows, nothing to compare with
      'dual[7,11) rows[7,11) keys 0,1,2',
      'dual[7,11) rows[7,11) keys 0,1,2',
      'dual[7,11) rows[7,11) keys 0,1,2',
    ]);
    expect(r.stats.nfe).toBe(8);
    expect(r.stats.forwardsByMode).toMatchObject({ full: 2, dual: 6 });
    expect(Array.from(r.tokens)).toEqual(Array.from({ length: 8 }, (_, i) => 13 + i));
  });

  it('compares a step with the one before it only: no drift, no refresh; a refresh sets a new baseline', async () => {
    const quiet = new MockEngine(byPos(() => 0.5), { caps, attention: report(() => null) });
    await generate(quiet, base());
    expect(quiet.requests.filter((r) => r.mode === 'full')).toHaveLength(1);
    // Drift at every dual step of block 0: refresh, then a dual step that compares with the refresh, and so on.
    const busy = new MockEngine(byPos(() => 0.5), { caps, attention: report((fi, l) => (l === 0 && fi % 2 === 1 ? [1, 0, 0, 0] : null)) });
    await generate(busy, base({ genLength: 4, steps: 4 }));
    expect(busy.requests.map((r) => r.refresh?.fromLayer ?? r.mode)).toEqual(['full', 'dual', 0, 'dual']);
  });

  it('gamma 1 refreshes at any change; a shifted-logits model computes the row before its block', async () => {
    const e = new MockEngine(byPos(() => 0.5), { architecture: 'dream', caps, attention: report((fi, l) => (fi === 1 && l === 2 ? [0.5, 0.5, 0.5, 0.5, 0.6] : null)) });
    await generate(e, base({ genLength: 4, steps: 4, strategy: { kind: 'dream', alg: 'maskgit_plus', threshold: 0.9 }, elasticCache: 1 }));
    expect(e.requests.map(describePass)).toEqual([
      'full[0,7) rows[2,7)',
      'dual[2,7) rows[2,7) keys 0,1,2',
      'full[0,7) refresh@2[2,7) rows[2,7) keys 0,1,2',
      'dual[2,7) rows[2,7) keys 0,1,2',
    ]);
    // Every block position is predicted from the row before it: no Dream first-position commit under Elastic-Cache.
    expect(Array.from(e.requests[1].positions)).toEqual([4, 5, 6]);
  });

  it('cosine similarity and the first drifting layer', () => {
    expect(cosineSimilarity([1, 0], [0, 1], 0, 2)).toBe(0);
    expect(cosineSimilarity([0, 0, 3, 4], [9, 9, 6, 8], 2, 2)).toBeCloseTo(1, 12);
    expect(cosineSimilarity([0, 0], [1, 1], 0, 2)).toBe(1);
    expect(firstDriftLayer(Float64Array.of(1, 1, 1, 0, 1, 0), Float64Array.of(1, 1, 1, 0, 0, 1), 2, 0.9)).toBe(2);
    expect(firstDriftLayer(Float64Array.of(1, 1), Float64Array.of(2, 2), 2, 0.9)).toBe(null);
  });

  it('is validated, needs the dual cache and the engine capability, and is refused for block diffusion', async () => {
    expect(() => checkGenerationRequest(base({ elasticCache: 0 }))).toThrow(/elasticCache \(Elastic-Cache's gamma\) must be in \(0, 1\]/);
    expect(() => checkGenerationRequest(base({ cache: 'prefix' }))).toThrow(expect.objectContaining({ field: 'elasticCache', problem: 'conflict' }));
    expect(() => checkGenerationRequest(base({ refreshEvery: 2 }))).toThrow(expect.objectContaining({ field: 'elasticCache', problem: 'conflict' }));
    expect(() => checkGenerationRequest({ prompt, genLength: 8, strategy: { kind: 'sdar' }, elasticCache: 0.9 }))
      .toThrow(expect.objectContaining({ field: 'elasticCache', problem: 'unsupported' }));
    await expect(generate(new MockEngine(byPos(() => 0.5)), base())).rejects.toMatchObject({ field: 'elasticCache', message: /Elastic-Cache .* not supported by engine 'mock'/ });
    const plan = resolveDecoding({ architecture: 'llada' }, { elasticCache: 0.8 });
    expect(plan).toMatchObject({ elasticCache: 0.8, cache: 'dual', isRecipe: false });
    expect(plan.description).toMatch(/Elastic-Cache gamma 0.8/);
    expect(requestOf(plan, prompt).elasticCache).toBe(0.8);
    expect(resolveDecoding({ architecture: 'llada' }, {}).elasticCache).toBe(null);
    expect(() => resolveDecoding({ architecture: 'sdar', blockSize: 4 }, { elasticCache: 0.9 })).toThrow(expect.objectContaining({ field: 'elasticCache', problem: 'unsupported' }));
    expect(() => resolveDecoding({ architecture: 'llada' }, { elasticCache: 0.9, cache: 'none' })).toThrow(expect.objectContaining({ field: 'elasticCache' }));
  });
});
