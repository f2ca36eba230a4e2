import { describe, expect, it } from 'vitest';
import { generate, type GenerationRequest } from '../src/generate.js';
import { checkGenerationRequest } from '../src/request.js';
import { resolveDecoding, requestOf } from '../src/resolve.js';
import { SchedulerConfigError } from '../src/errors.js';
import { earlyCommitGap, meanLogGap, selectEntropyBound } from '../src/select.js';
import { MockEngine, MASK, byPos, type Script } from './mock-engine.js';
import { decodeMany } from '../src/batch.js';

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

describe('draft and verify (FreeDave)', () => {
  // A model that knows every token (10 + p mod 20) and is the surer the nearer the decoded text on its left: a
  // position right after a decoded one has 0.94, two after 0.89, … So step-by-step decoding at τ 0.9 takes one
  // position per step, left to right, and the stale result of the last pass drafts exactly the next steps.
  const nearLeft: Script = (p, _fi, req) => {
    let q = p - 1;
    while (q >= 0 && req.canvas[q] === MASK) q--;
    const dist = p - q;
    return { token: 10 + (p % 20), prob: 0.99 - 0.05 * dist, entropy: 0.01 * dist };
  };
  // A chain: a position's token follows from its left neighbour once that is decoded (then it is sure), and is a
  // guess that changes with the canvas otherwise; drafts from a stale result are then often wrong.
  const chain: Script = (p, _fi, req) => {
    const left = req.canvas[p - 1];
    if (left !== MASK) return { token: ((left * 3 + p) % 50) + 10, prob: 0.95 - 0.001 * p, entropy: 0.2 };
    let decoded = 0;
    for (const t of req.canvas) if (t !== MASK) decoded++;
    return { token: 10 + ((p + decoded) % 7), prob: 0.3 + 0.01 * ((p * 7) % 5) + 0.001 * decoded, entropy: 2 - 0.01 * ((p * 7) % 5) };
  };
  const run = async (script: Script, over: Partial<GenerationRequest>) => {
    const e = new MockEngine(script);
    const r = await generate(e, base({ genLength: 16, blockLength: 8, steps: 16, ...over }));
    return { e, r };
  };
  const cases: [string, Partial<GenerationRequest>][] = [
    ['threshold, no cache', { strategy: { kind: 'threshold', threshold: 0.9 } }],
    ['threshold, prefix cache', { strategy: { kind: 'threshold', threshold: 0.9 }, cache: 'prefix' }],
    ['one token per step, prefix cache with a refresh every 3 steps', { strategy: { kind: 'fixed' }, cache: 'prefix', refreshEvery: 3 }],
    ['EB-Sampler, suffix window 2', { strategy: { kind: 'entropy_bound', gamma: 0.005 }, suffixWindow: 2 }],
    ['factor rule, no early stop', { strategy: { kind: 'factor', factor: 0.2 }, earlyStop: false }],
  ];
  for (const [name, over] of cases) {
    for (const [sname, script] of [['a model its drafts agree with', nearLeft], ['a chain its drafts often miss', chain]] as const) {
      it(`gives step-by-step decoding's answer in fewer passes: ${name}, ${sname}`, async () => {
        const ref = await run(script, over);
        for (const k of [2, 4, 16]) {
          const fd = await run(script, { ...over, draftVerify: k });
          expect(arr(fd.r.tokens)).toEqual(arr(ref.r.tokens));
          expect(fd.r.stats.nfe).toBeLessThanOrEqual(ref.r.stats.nfe);
          // Every pass is one canvas, or several prefix steps of the one sequence; each commits at least one position.
          for (const pass of fd.e.passes) {
            expect(pass.length).toBeLessThanOrEqual(k);
            if (pass.length > 1) expect(pass.every((q) => q.mode === 'prefix')).toBe(true);
          }
          expect(fd.r.steps.every((s) => s.positions.length >= 1)).toBe(true);
          const committed = fd.r.steps.flatMap((s) => arr(s.positions));
          expect(new Set(committed).size).toBe(committed.length);
          // A refresh every 3 steps is a full forward, which no draft may cross.
          if (script === nearLeft && k === 4 && !over.refreshEvery) expect(fd.r.stats.nfe).toBeLessThan(ref.r.stats.nfe / 2);
        }
      });
    }
  }
  it("Dream under the prefix cache: the block's first-position pass drafts nothing, the passes after it do", async () => {
    for (const script of [nearLeft, chain]) {
      const req = base({ genLength: 16, blockLength: 8, steps: 16, cache: 'prefix', strategy: { kind: 'dream', alg: 'maskgit_plus', threshold: 0.9 } });
      const ref = await generate(new MockEngine(script, { architecture: 'dream' }), req);
      const e = new MockEngine(script, { architecture: 'dream' });
      const fd = await generate(e, { ...req, draftVerify: 4 });
      expect(arr(fd.tokens)).toEqual(arr(ref.tokens));
      expect(fd.stats.nfe).toBeLessThanOrEqual(ref.stats.nfe);
      expect(e.passes[1]).toHaveLength(1); // after the block's first position alone, no result covers the other masks
    }
  });
  it('drafts stay in the block and stop before a pass that rebuilds the cache', async () => {
    const { e, r } = await run(nearLeft, { strategy: { kind: 'threshold', threshold: 0.9 }, cache: 'prefix', draftVerify: 4 });
    const shape = e.passes.map((p) => p.map((q) => `${q.mode}[${q.start},${q.end})`).join(' '));
    // Block [3,11): the full forward (one canvas: nothing to draft from yet) commits 3; the next pass drafts from
    // its result, 4 canvases for 4 steps; then 3 masks are left, so 3 canvases (a fourth draft would finish the
    // block, leaving nothing to verify). Block [11,19) likewise, after its own full forward.
    const four = Array(4).fill('prefix[3,19)').join(' ');
    expect(shape).toEqual([
      'full[0,19)', four, Array(3).fill('prefix[3,19)').join(' '),
      'full[0,19)', Array(4).fill('prefix[11,19)').join(' '), Array(3).fill('prefix[11,19)').join(' '),
    ]);
    expect(r.stats.nfe).toBe(6);
    expect(r.steps.map((st) => st.positions.length)).toEqual([1, 4, 3, 1, 4, 3]);
  });
  it('keys sampling on the step each canvas stands for, and stays the same in a batch', async () => {
    const reqs = [
      base({ genLength: 16, blockLength: 8, steps: 16, cache: 'prefix', draftVerify: 3 }),
      base({ genLength: 16, blockLength: 8, steps: 16, draftVerify: 4 }),
      base({ genLength: 16, blockLength: 8, steps: 16 }),
    ];
    const alone = [];
    for (const q of reqs) alone.push(await generate(new MockEngine(chain), q));
    const e = new MockEngine(chain, { caps: { maxBatch: 5 } });
    const together = await decodeMany(e, reqs);
    together.forEach((t, i) => {
      expect(arr(t.tokens)).toEqual(arr(alone[i].tokens));
      expect(t.stats.nfe).toBe(alone[i].stats.nfe);
    });
    expect(Math.max(...e.passes.map((p) => p.length))).toBeLessThanOrEqual(5);
    // Sampling: canvas j of a pass carries the forward index step-by-step decoding would give it.
    const s = new MockEngine(nearLeft);
    await generate(s, base({ genLength: 16, blockLength: 8, steps: 16, temperature: 0.7, seed: 5, cache: 'prefix', draftVerify: 4 }));
    const keys = s.passes.map((p) => p.map((q) => q.sampling!.forwardIndex));
    expect(keys).toEqual([[0], [1, 2, 3, 4], [5, 6, 7], [8], [9, 10, 11, 12], [13, 14, 15]]);
  });
  it('is refused with a dual cache, with early commit, out of range, past the engine maxBatch and for block diffusion', async () => {
    const field = (f: () => unknown) => { try { f(); } catch (e) { return [(e as SchedulerConfigError).field, (e as Error).message]; } return null; };
    expect(field(() => checkGenerationRequest(base({ cache: 'dual', draftVerify: 4 })))).toEqual(['draftVerify', expect.stringMatching(/cache none or prefix/)]);
    expect(field(() => checkGenerationRequest(base({ earlyCommit: true, draftVerify: 4 })))?.[0]).toBe('draftVerify');
    expect(field(() => checkGenerationRequest(base({ draftVerify: 1 })))?.[1]).toMatch(/draftVerify must be an integer from 2 to 16/);
    expect(field(() => checkGenerationRequest(base({ draftVerify: 2.5 })))?.[0]).toBe('draftVerify');
    await expect(generate(new MockEngine(nearLeft, { caps: { maxBatch: 2 } }), base({ draftVerify: 4 }))).rejects.toThrow(/4 is more canvases than engine 'mock' takes in one pass \(2\)/);
    expect(field(() => resolveDecoding({ architecture: 'sdar', blockSize: 4 }, { draftVerify: 4 }))?.[0]).toBe('draftVerify');
    // The resolver: draft and verify picks the prefix cache when none is chosen, and says so.
    const plan = resolveDecoding({ architecture: 'llada' }, { draftVerify: 4 });
    expect(plan.cache).toBe('prefix');
    expect(plan.description).toBe('prefix cache, threshold 0.9, draft and verify 4');
    expect(requestOf(plan, Int32Array.of(1)).draftVerify).toBe(4);
    expect(field(() => resolveDecoding({ architecture: 'llada' }, { draftVerify: 4, cache: 'dual' }))?.[0]).toBe('draftVerify');
  });
});
