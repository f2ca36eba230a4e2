import { describe, expect, it } from 'vitest';
import { generate, type GenerationRequest } from '../src/generate.js';
import { checkGenerationRequest } from '../src/request.js';
import { resolveDecoding, requestOf } from '../src/resolve.js';
import { SchedulerConfigError } from '../src/errors.js';
import { earlyCommitGap, meanLogGap, selectEntropyBound } from '../src/select.js';
import { MockEngine, byPos, type Script } from './mock-engine.js';

// DESIGN §16: the policies that stack on Fast-dLLM.
const prompt = Int32Array.of(1, 5, 6); // P = 3
const base = (over: Partial<GenerationRequest> = {}): GenerationRequest => ({
  prompt, genLength: 12, blockLength: 4, steps: 12, strategy: { kind: 'threshold', threshold: 0.9 }, ...over,
});
const spans = (e: MockEngine) => e.requests.map((r) => `${r.mode}[${r.start},${r.end}) L${r.canvas.length}`);
const arr = (a: ArrayLike<number>) => Array.from(a);

describe('EB-Sampler (entropy bound)', () => {
  const pos = Int32Array.of(10, 11, 12, 13);
  it('takes the lowest-entropy prefix whose sum minus its largest stays within gamma', () => {
    // Ranked 12 (0.01), 10 (0.02), 13 (0.05), 11 (0.5): sums minus max 0, 0.01, 0.03, then 0.08 > 0.05.
    expect(arr(selectEntropyBound(pos, [0.02, 0.5, 0.01, 0.05], 0.05))).toEqual([10, 12, 13]);
    expect(arr(selectEntropyBound(pos, [0.02, 0.5, 0.01, 0.05], 0.1))).toEqual([10, 11, 12, 13]);
    // gamma 0: one token (the always-one rule), the lowest entropy, ties to the lower position.
    expect(arr(selectEntropyBound(pos, [0.3, 0.3, 0.3, 0.3], 0))).toEqual([10]);
    expect(arr(selectEntropyBound(new Int32Array(0), [], 1))).toEqual([]);
  });
  it('decodes through the generation with the engine entropy report', async () => {
    const script: Script = (p, fi) => ({ token: 10 + p, prob: 0.5, entropy: fi === 0 ? (p === 4 ? 0.001 : p === 6 ? 0.002 : 1) : 0.01 * p });
    const e = new MockEngine(script);
    const r = await generate(e, base({ genLength: 4, steps: 4, strategy: { kind: 'entropy_bound', gamma: 0.01 } }));
    expect(e.requests[0].want).toEqual({ entropy: true });
    // Forward 0 ranks 4 (0.001), 6 (0.002), 3 (1), 5 (1): with 3 the sum minus the largest is 0.003 (the riskiest
    // token is not counted), with 5 too it is 1.003 > 0.01. Forward 1: 5 alone is left.
    expect(r.steps.map((s) => arr(s.positions))).toEqual([[3, 4, 6], [5]]);
  });
  it('is refused without the engine entropy report, naming the field', async () => {
    const e = new MockEngine(byPos(() => 0.5), { caps: { reports: { top2: true, entropy: false, logits: false } } });
    await expect(generate(e, base({ strategy: { kind: 'entropy_bound' } }))).rejects.toMatchObject({ field: 'entropyBound' });
    expect(() => checkGenerationRequest(base({ strategy: { kind: 'entropy_bound', gamma: -1 } }))).toThrow(/entropyBound must be a finite number >= 0/);
  });
});

describe('suffix window', () => {
  it('each pass sees the canvas up to the window past its block; dual steps keep the block full forward length', async () => {
    const e = new MockEngine(byPos((p) => p / 100));
    const r = await generate(e, base({ steps: 6, cache: 'dual', suffixWindow: 2, strategy: { kind: 'fixed' } }));
    // Blocks [3,7), [7,11), [11,15); canvas 15. Windows end at 9, 13, then the canvas end.
    expect(spans(e)).toEqual([
      'full[0,9) L9', 'dual[3,7) L9', 'full[0,13) L13', 'dual[7,11) L13', 'full[0,15) L15', 'dual[11,15) L15',
    ]);
    expect(r.tokens.length).toBe(12);
    expect(arr(r.tokens)).toEqual(Array.from({ length: 12 }, (_, i) => 13 + i));
  });
  it('0 shows only the prompt, the decoded answer and the block; no cache: every step is a shorter full forward', async () => {
    const e = new MockEngine(byPos((p) => p / 100));
    await generate(e, base({ genLength: 8, steps: 4, suffixWindow: 0, strategy: { kind: 'fixed' } }));
    expect(spans(e)).toEqual(['full[0,7) L7', 'full[0,7) L7', 'full[0,11) L11', 'full[0,11) L11']);
  });
  it('is validated, and refused for block diffusion', () => {
    expect(() => checkGenerationRequest(base({ suffixWindow: -1 }))).toThrow(/suffixWindow must be an integer >= 0/);
    expect(() => checkGenerationRequest(base({ suffixWindow: 1.5 }))).toThrow(SchedulerConfigError);
    expect(() => checkGenerationRequest({ prompt, genLength: 8, strategy: { kind: 'sdar' }, suffixWindow: 4 })).toThrow(/suffixWindow is a masked-diffusion/);
  });
});

describe('early commit (Prophet)', () => {
  it('the gap schedule loosens with progress; the mean log gap is finite when the runner-up underflows', () => {
    expect([0, 0.3, 0.34, 0.6, 0.7, 1].map(earlyCommitGap)).toEqual([7.5, 7.5, 5, 5, 2.5, 2.5]);
    expect(meanLogGap([0.9, 0.9], [0.09, 0.009])).toBeCloseTo((Math.log(10) + Math.log(100)) / 2, 12);
    expect(Number.isFinite(meanLogGap([1], [0]))).toBe(true);
  });
  it('a full forward reports every masked position it sees; a wide gap commits them all', async () => {
    // Forward 0: gap ln(0.99/1e-4) ~ 9.2 < 7.5? no: 9.2 >= 7.5 at progress 0 -> everything at once.
    const script: Script = (p) => ({ token: 10 + p, prob: 0.99, top2: 1e-4 });
    const e = new MockEngine(script);
    const r = await generate(e, base({ cache: 'dual', earlyCommit: true }));
    expect(r.stats.nfe).toBe(1);
    expect(arr(e.requests[0].positions)).toEqual(Array.from({ length: 12 }, (_, i) => 3 + i));
    expect(e.requests[0].want).toEqual({ top2: true });
    expect(arr(r.tokens)).toEqual(Array.from({ length: 12 }, (_, i) => 13 + i));
  });
  it('a narrow gap leaves the rule to the block; dual steps report only the block', async () => {
    // Gap ln(0.6/0.3) ~ 0.69: never commits early; the threshold 0.5 takes the block in one step.
    const script: Script = (p) => ({ token: 10 + p, prob: 0.6, top2: 0.3 });
    const e = new MockEngine(script);
    const r = await generate(e, base({ cache: 'dual', earlyCommit: true, strategy: { kind: 'threshold', threshold: 0.5 } }));
    expect(r.stats.nfe).toBe(3);
    expect(r.steps.map((s) => arr(s.positions))).toEqual([[3, 4, 5, 6], [7, 8, 9, 10], [11, 12, 13, 14]]);
    expect(e.requests[0].positions.length).toBe(12); // the look-ahead report
  });
  it('commits early later in the answer, finishing the blocks it fills, with their block events', async () => {
    // Gap 3.0: under 5 and 7.5, over 2.5 once two thirds of the answer is decoded (block 2's full forward: 8 of 12).
    const script: Script = (p) => ({ token: 10 + p, prob: 0.95, top2: 0.95 * Math.exp(-3) });
    const e = new MockEngine(script);
    const events: string[] = [];
    const r = await generate(e, base({ genLength: 12, steps: 12, cache: 'dual', earlyCommit: true, strategy: { kind: 'fixed' } }), {
      onEvent: (ev) => { if (ev.type === 'block') events.push(`${ev.block}@${ev.nfe}`); },
    });
    // Blocks 0 and 1: fixed schedule, 4 steps each (8 NFE); block 2's full forward commits all four at once.
    expect(r.stats.nfe).toBe(9);
    expect(arr(r.steps[8].positions)).toEqual([11, 12, 13, 14]);
    expect(events).toEqual(['0@4', '1@8', '2@9']);
  });
  it('stacks with the suffix window: only what the window shows is committed at once', async () => {
    const script: Script = (p) => ({ token: 10 + p, prob: 0.99, top2: 1e-4 });
    const e = new MockEngine(script);
    const events: number[] = [];
    const r = await generate(e, base({ cache: 'dual', earlyCommit: true, suffixWindow: 4 }), { onEvent: (ev) => { if (ev.type === 'block') events.push(ev.block); } });
    // Window: block 0 and the 4 after it (block 1) -> both committed by forward 0; block 2 by forward 1.
    expect(spans(e)).toEqual(['full[0,11) L11', 'full[0,15) L15']);
    expect(events).toEqual([0, 1, 2]);
    expect(r.stats.nfe).toBe(2);
  });
  it('is refused without the engine top-2 report and for block diffusion', async () => {
    const e = new MockEngine(byPos(() => 0.5), { caps: { reports: { top2: false, entropy: true, logits: false } } });
    await expect(generate(e, base({ earlyCommit: true }))).rejects.toMatchObject({ field: 'earlyCommit' });
    expect(() => checkGenerationRequest({ prompt, genLength: 8, strategy: { kind: 'sdar' }, earlyCommit: true })).toThrow(/earlyCommit is a masked-diffusion/);
  });
});

describe('the resolver carries the policies', () => {
  it('entropyBound implies the rule; suffixWindow and earlyCommit reach the request and the description', () => {
    const plan = resolveDecoding({ architecture: 'llada' }, { entropyBound: 0.2, suffixWindow: 32, earlyCommit: true });
    expect(plan.strategy).toEqual({ kind: 'entropy_bound', gamma: 0.2 });
    expect(plan.isRecipe).toBe(false);
    expect(plan.description).toBe('dual cache, EB-Sampler entropy bound 0.2, suffix window 32, early commit');
    const req = requestOf(plan, Int32Array.of(1));
    expect(req.suffixWindow).toBe(32);
    expect(req.earlyCommit).toBe(true);
    expect(resolveDecoding({ architecture: 'llada' }, { rule: 'entropy_bound' }).strategy).toEqual({ kind: 'entropy_bound', gamma: 0.1 });
  });
  it('refuses contradictions and block-diffusion models by field', () => {
    const field = (f: () => unknown) => { try { f(); } catch (e) { return (e as SchedulerConfigError).field; } return null; };
    expect(field(() => resolveDecoding({ architecture: 'llada' }, { threshold: 0.9, entropyBound: 0.1 }))).toBe('entropyBound');
    expect(field(() => resolveDecoding({ architecture: 'dream' }, { alg: 'maskgit_plus', entropyBound: 0.1 }))).toBe('alg');
    expect(field(() => resolveDecoding({ architecture: 'sdar', blockSize: 4 }, { suffixWindow: 8 }))).toBe('suffixWindow');
    expect(field(() => resolveDecoding({ architecture: 'fast_dllm_v2', blockSize: 8 }, { earlyCommit: true }))).toBe('earlyCommit');
    expect(field(() => resolveDecoding({ architecture: 'llada' }, { suffixWindow: -2 }))).toBe('suffixWindow');
  });
});
