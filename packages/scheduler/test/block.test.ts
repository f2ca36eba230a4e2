/**
 * Block diffusion (DESIGN §8) on a scripted engine: the forward plan (prefill, block steps, sub-blocks, the block
 * cache, block-end extends and v2's next-token step), NFE accounting, the stop rules, events and the committed text,
 * and the request checks that keep masked- and block-diffusion options apart.
 */
import { describe, expect, it } from 'vitest';
import { generate } from '../src/generate.js';
import { Generation, type GenerationEvent } from '../src/generation.js';
import { defaultRecipe } from '../src/recipe.js';
import { familyName, resolveDecoding } from '../src/resolve.js';
import { checkGenerationRequest, type GenerationRequest } from '../src/request.js';
import { MASK, MockEngine, type Script } from './mock-engine.js';

const prompt = (n: number) => Int32Array.from({ length: n }, (_, i) => 40 + i);
const plan = (e: MockEngine) => e.requests.map((r) => `${r.mode} [${r.start}, ${r.end}) L${r.canvas.length} @${Array.from(r.positions)}`);
const byPos = (prob: (p: number) => number, token: (p: number) => number = (p) => 10 + p): Script => (p) => ({ token: token(p), prob: prob(p) });

describe('Fast-dLLM v2 decoding', () => {
  it('P == B: prefill of the prompt block commits position P, sub-blocks, a block-end extend with the next token, no extend after the last block', async () => {
    const e = new MockEngine(byPos(() => 0.95), { architecture: 'fast_dllm_v2' });
    const events: string[] = [];
    const r = await generate(e, { prompt: prompt(8), genLength: 12, strategy: { kind: 'fast_dllm_v2', subBlockLength: 4 } }, {
      onEvent: (ev) => events.push(ev.type === 'step' ? `step ${ev.block}.${ev.step} ${ev.mode} ${Array.from(ev.positions)}` : ev.type === 'block' ? `block ${ev.block} [${ev.start}, ${ev.end})` : 'done'),
    });
    expect(plan(e)).toEqual([
      'full [0, 8) L8 @8',
      'prefix [8, 16) L16 @9,10,11',
      'prefix [8, 16) L16 @12,13,14,15',
      'extend [8, 16) L16 @16',
      'prefix [16, 20) L20 @17,18,19',
    ]);
    expect(Array.from(r.tokens)).toEqual(Array.from({ length: 12 }, (_, i) => 18 + i));
    expect(r.stats.nfe).toBe(5);
    expect(r.stats.forwardsByMode).toEqual({ full: 1, prefix: 3, dual: 0, extend: 1 });
    expect(r.stoppedEarly).toBe(false);
    expect(events).toEqual([
      'step 0.0 full 8', 'step 0.1 prefix 9,10,11', 'step 0.2 prefix 12,13,14,15', 'block 0 [8, 16)',
      'step 1.0 extend 16', 'step 1.1 prefix 17,18,19', 'block 1 [16, 20)', 'done',
    ]);
  });

  it('threshold is strict: a confidence equal to tau is not taken, only the most confident one', async () => {
    const e = new MockEngine(byPos(() => 0.9), { architecture: 'fast_dllm_v2' });
    const r = await generate(e, { prompt: prompt(16), genLength: 4, strategy: { kind: 'fast_dllm_v2', threshold: 0.9 } });
    expect(r.steps.map((s) => Array.from(s.positions))).toEqual([[16], [17], [18], [19]]);
    expect(r.stats.nfe).toBe(4);
  });

  it('stops once a committed stop token has no mask before it; the answer ends with the stop token', async () => {
    const prob = (p: number) => (p === 5 ? 0.99 : p === 4 ? 0.6 : 0.5 - p * 0.01);
    const e = new MockEngine(byPos(prob, (p) => (p === 5 ? 3 : 10 + p)), { architecture: 'fast_dllm_v2' });
    const g = new Generation(e, { prompt: prompt(3), genLength: 13, strategy: { kind: 'fast_dllm_v2', subBlockLength: 4 } });
    const seq = e.openSequence(g.maxLength);
    const committed: number[][] = [];
    for (let step = g.next(); step; step = g.next()) {
      g.advance(await e.forward(step.map((r) => ({ ...r, sequence: seq }))));
      committed.push(Array.from(g.committed().ids));
    }
    const r = g.result();
    // [3] (sub-block [0, 4)), then 5 (the stop, 0.99 > 0.9) with 4 still masked, then 4: the answer is complete.
    expect(r.steps.map((s) => Array.from(s.positions))).toEqual([[3], [5], [4]]);
    expect(Array.from(r.tokens)).toEqual([13, 14, 3]);
    expect(Array.from(r.canvas)).toEqual([40, 41, 42, 13, 14, 3]);
    expect(r.stats.nfe).toBe(3);
    expect(r.stats.forwardsByMode.extend).toBe(0);
    expect(r.stoppedEarly).toBe(true);
    expect(committed).toEqual([[13], [13], [13, 14]]);
    expect(g.committed().stopped).toBe(true);
  });

  it('the block cache: a whole-block extend keeps the block while the sub-block\'s first position is masked, dual steps after', async () => {
    const e = new MockEngine(byPos(() => 0.5), { architecture: 'fast_dllm_v2' });
    const r = await generate(e, { prompt: prompt(5), genLength: 11, strategy: { kind: 'fast_dllm_v2', subBlockLength: 4, blockCache: true } });
    expect(plan(e)).toEqual([
      'extend [0, 8) L8 @5,6,7', 'dual [4, 8) L8 @6,7', 'dual [4, 8) L8 @7',
      'extend [0, 8) L8 @8',
      'extend [8, 16) L16 @9,10,11', 'dual [8, 12) L16 @10,11', 'dual [8, 12) L16 @11',
      'extend [8, 16) L16 @12,13,14,15', 'dual [12, 16) L16 @13,14,15', 'dual [12, 16) L16 @14,15', 'dual [12, 16) L16 @15',
    ]);
    expect(Array.from(r.tokens)).toEqual(Array.from({ length: 11 }, (_, i) => 15 + i));
    expect(r.stats.nfe).toBe(11);
  });
});

describe('SDAR decoding', () => {
  const sdar = (script: Script) => new MockEngine(script, { architecture: 'sdar', model: { blockSize: 4, shiftLogits: false } });

  it('dynamic: every confidence > tau when there are k_j of them, else the k_j most confident; a block-end extend between blocks', async () => {
    const prob = (p: number) => (p < 4 ? 0.95 : p === 4 ? 0.9 : 0.5 - p * 0.01);
    const e = sdar(byPos(prob));
    const r = await generate(e, { prompt: prompt(2), genLength: 6, strategy: { kind: 'sdar' } });
    expect(plan(e)).toEqual([
      'prefix [0, 4) L4 @2,3', 'extend [0, 4) L4 @',
      'prefix [4, 8) L8 @4,5,6,7', 'prefix [4, 8) L8 @5,6,7', 'prefix [4, 8) L8 @6,7', 'prefix [4, 8) L8 @7',
    ]);
    expect(r.steps.map((s) => Array.from(s.positions))).toEqual([[2, 3], [], [4], [5], [6], [7]]);
    expect(r.stats.nfe).toBe(6);
  });

  it('static takes k_j, clamped to the masks left; P == B prefills without a next-token step', async () => {
    const e = sdar(byPos(() => 0.99));
    const r = await generate(e, { prompt: prompt(4), genLength: 5, strategy: { kind: 'sdar', stepsPerBlock: 2, remasking: 'low_confidence_static' } });
    expect(plan(e)).toEqual([
      'full [0, 4) L4 @', 'prefix [4, 8) L8 @4,5,6,7', 'prefix [4, 8) L8 @6,7', 'extend [4, 8) L8 @', 'prefix [8, 9) L9 @8',
    ]);
    expect(r.tokens).toHaveLength(5);
  });

  it('stops after the block that committed a stop token, cut after it', async () => {
    const e = sdar(byPos((p) => 0.99 - p * 0.01, (p) => (p === 5 ? 2 : 10 + p)));
    const r = await generate(e, { prompt: prompt(2), genLength: 14, strategy: { kind: 'sdar', stepsPerBlock: 1 } });
    expect(Array.from(r.tokens)).toEqual([12, 13, 14, 2]);
    expect(r.stats.nfe).toBe(3); // block [0, 4), its extend, block [4, 8): no extend after the stop
    expect(r.stoppedEarly).toBe(true);
  });
});

describe('block-diffusion requests', () => {
  const v2 = new MockEngine(byPos(() => 1), { architecture: 'fast_dllm_v2' });
  const sdar = new MockEngine(byPos(() => 1), { architecture: 'sdar', model: { blockSize: 4, shiftLogits: false } });
  const llada = new MockEngine(byPos(() => 1));
  const base: GenerationRequest = { prompt: prompt(3), genLength: 10, strategy: { kind: 'fast_dllm_v2' } };
  const check = (target: MockEngine, over: Partial<GenerationRequest>) => () => checkGenerationRequest({ ...base, ...over }, target);

  it('resolves B from the model, the sub-block length and the steps per block', () => {
    expect(checkGenerationRequest(base, v2)).toMatchObject({ family: 'block', blockLength: 8, subBlockLength: 8, maxLength: 13 });
    expect(checkGenerationRequest({ ...base, strategy: { kind: 'sdar' } }, sdar)).toMatchObject({ family: 'block', blockLength: 4, stepsPerBlock: 4 });
    expect(checkGenerationRequest({ ...base, strategy: { kind: 'fast_dllm_v2' } }, new MockEngine(byPos(() => 1), { architecture: 'fast_dllm_v2', model: { blockSize: 12 } })))
      .toMatchObject({ subBlockLength: 12 });
  });

  it('refuses masked-diffusion options on block-diffusion models, by name', () => {
    expect(check(v2, { steps: 10 })).toThrow(/steps is a masked-diffusion \(LLaDA\/Dream\) option/);
    expect(check(v2, { cache: 'dual' })).toThrow(/cache 'dual' is masked diffusion's approximate cache.*blockCache/);
    expect(check(v2, { refreshEvery: 2 })).toThrow(/refreshEvery is a masked-diffusion/);
    expect(check(v2, { earlyStop: true })).toThrow(/earlyStop is a masked-diffusion/);
    expect(check(v2, { blockLength: 16 })).toThrow(/blockLength 16 differs from the fast_dllm_v2 model's block size 8/);
    expect(check(v2, { blockLength: 8 })).not.toThrow();
    expect(check(v2, { strategy: { kind: 'threshold', threshold: 0.9 } })).toThrow(/strategy 'threshold' is masked diffusion.*use strategy 'fast_dllm_v2'/);
    expect(check(v2, { strategy: { kind: 'dream', alg: 'maskgit_plus' } })).toThrow(/use strategy 'fast_dllm_v2'/);
  });

  it('refuses block-diffusion strategies on other models, and bad strategy settings', () => {
    expect(check(llada, { blockLength: 10, steps: 10 })).toThrow(/strategy 'fast_dllm_v2' is a block-diffusion procedure; the llada model is a masked-diffusion model/);
    expect(check(v2, { strategy: { kind: 'sdar' } })).toThrow(/strategy 'sdar' decodes SDAR, A2D BD3LM and LLaDA2 models; this is a fast_dllm_v2 model \(use strategy 'fast_dllm_v2'\)/);
    expect(check(v2, { strategy: { kind: 'fast_dllm_v2', subBlockLength: 3 } })).toThrow(/subBlockLength 3 must divide the model's block size 8/);
    expect(check(v2, { strategy: { kind: 'fast_dllm_v2', threshold: 0 } })).toThrow(/threshold must be in \(0, 1\]/);
    expect(check(sdar, { strategy: { kind: 'sdar', stepsPerBlock: 5 } })).toThrow(/stepsPerBlock 5 exceeds the model's block size 4/);
    expect(check(sdar, { strategy: { kind: 'sdar', remasking: 'low_confidence_static', threshold: 0.5 } })).toThrow(/takes no threshold/);
    expect(check(sdar, { strategy: { kind: 'sdar', remasking: 'random' as never } })).toThrow(/unknown SDAR remasking 'random'/);
    const noExtend = new MockEngine(byPos(() => 1), { architecture: 'fast_dllm_v2', caps: { modes: ['full', 'prefix'] } });
    expect(check(noExtend, {})).toThrow(/forward mode 'extend' not supported/);
    const bidirectional = new MockEngine(byPos(() => 1), { architecture: 'sdar', model: { blockSize: 4 }, caps: { blockCausal: false } });
    expect(check(bidirectional, { strategy: { kind: 'sdar' } })).toThrow(/has no block-causal attention/);
  });

  it('without a model, checks only what the request says (B unknown)', () => {
    expect(checkGenerationRequest(base)).toMatchObject({ family: 'block', blockLength: 0, maxLength: 13 });
    expect(() => checkGenerationRequest({ ...base, steps: 4 })).toThrow(/steps is a masked-diffusion/);
    expect(() => checkGenerationRequest({ ...base, strategy: { kind: 'fast_dllm_v2', blockCache: 'yes' as never } })).toThrow(/blockCache must be true or false/);
  });

  it('each family\'s published recipe', () => {
    expect(defaultRecipe({ architecture: 'fast_dllm_v2', blockSize: 32 })).toMatchObject({
      strategy: { kind: 'fast_dllm_v2', subBlockLength: 8, threshold: 0.9, blockCache: false }, cache: 'none',
      description: 'Fast-dLLM v2 (sub-blocks of 8, threshold 0.9, no block cache)',
    });
    expect(defaultRecipe({ architecture: 'sdar', blockSize: 4 })).toMatchObject({
      strategy: { kind: 'sdar', stepsPerBlock: 4, remasking: 'low_confidence_dynamic', threshold: 0.85 }, cache: 'none',
    });
    expect(() => defaultRecipe({ architecture: 'sdar' })).toThrow(/needs its blockSize/);
    // DESIGN §15: A2D BD3LM runs SDAR's procedure at Fast-dLLM's threshold; A2D MDLM takes LLaDA's recipe.
    expect(defaultRecipe({ architecture: 'a2d_bd3lm', blockSize: 32 })).toMatchObject({
      strategy: { kind: 'sdar', stepsPerBlock: 32, remasking: 'low_confidence_dynamic', threshold: 0.9 }, cache: 'none',
      description: 'A2D BD3LM (32 steps per block, low_confidence_dynamic threshold 0.9)',
    });
    expect(defaultRecipe({ architecture: 'a2d_mdlm' })).toEqual(defaultRecipe({ architecture: 'llada' }));
    // DESIGN §13.1: LLaDA2 runs SDAR's procedure, B steps per block, at its published sampler's threshold 0.95.
    expect(defaultRecipe({ architecture: 'llada2_moe', blockSize: 32 })).toMatchObject({
      strategy: { kind: 'sdar', stepsPerBlock: 32, remasking: 'low_confidence_dynamic', threshold: 0.95 }, cache: 'none',
      description: 'LLaDA2 (32 steps per block, low_confidence_dynamic threshold 0.95)',
    });
  });

  it('LLaDA2 takes SDAR\'s strategy and settings, refuses the others, and is named LLaDA2', () => {
    const m = new MockEngine(byPos(() => 1), { architecture: 'llada2_moe', model: { blockSize: 4 } });
    expect(checkGenerationRequest({ ...base, strategy: { kind: 'sdar' } }, m)).toMatchObject({ family: 'block', blockLength: 4, stepsPerBlock: 4 });
    expect(check(m, {})).toThrow(/strategy 'fast_dllm_v2' decodes Fast-dLLM v2 models; this is a llada2_moe model \(use strategy 'sdar'\)/);
    expect(check(m, { strategy: { kind: 'threshold' } })).toThrow(/llada2_moe is a block-diffusion model: use strategy 'sdar'/);
    expect(familyName('llada2_moe')).toBe('LLaDA2');
    const plan = resolveDecoding({ architecture: 'llada2_moe', blockSize: 32 }, { stepsPerBlock: 8 });
    expect(plan.strategy).toEqual({ kind: 'sdar', stepsPerBlock: 8, remasking: 'low_confidence_dynamic', threshold: 0.95 });
    expect(() => resolveDecoding({ architecture: 'llada2_moe', blockSize: 32 }, { subBlockLength: 8 })).toThrow(/applies to Fast-dLLM v2 models; this is a LLaDA2 model/);
  });

  it('A2D BD3LM takes SDAR\'s strategy and refuses the others, naming the one to use', () => {
    const a2d = new MockEngine(byPos(() => 1), { architecture: 'a2d_bd3lm', model: { blockSize: 4 } });
    expect(checkGenerationRequest({ ...base, strategy: { kind: 'sdar' } }, a2d)).toMatchObject({ family: 'block', blockLength: 4, stepsPerBlock: 4 });
    expect(check(a2d, {})).toThrow(/strategy 'fast_dllm_v2' decodes Fast-dLLM v2 models; this is a a2d_bd3lm model \(use strategy 'sdar'\)/);
    expect(check(a2d, { strategy: { kind: 'threshold' } })).toThrow(/a2d_bd3lm is a block-diffusion model: use strategy 'sdar'/);
  });

  it('a block generation reserves P + cap and its passes see the canvas up to the active block', async () => {
    const e = new MockEngine(byPos(() => 1), { architecture: 'fast_dllm_v2' });
    const g = new Generation(e, { prompt: prompt(11), genLength: 20, strategy: { kind: 'fast_dllm_v2' } });
    expect(g.maxLength).toBe(31);
    expect(g.next()![0].canvas).toHaveLength(8); // the prompt's whole block
    const events: GenerationEvent[] = [];
    const seq = e.openSequence(g.maxLength);
    for (let step = g.next(); step; step = g.next()) events.push(...g.advance(await e.forward(step.map((r) => ({ ...r, sequence: seq })))));
    expect(e.requests.map((r) => r.canvas.length)).toEqual([8, 16, 16, 24, 24, 31]);
    expect(events.filter((ev) => ev.type === 'block').map((ev) => ev.type === 'block' && [ev.start, ev.end])).toEqual([[8, 16], [16, 24], [24, 31]]);
    expect(Array.from(g.snapshot()).includes(MASK)).toBe(false);
  });
});
