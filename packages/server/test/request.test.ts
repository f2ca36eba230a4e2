/** Request bodies → GenerationRequest: defaults from the recipe, max_tokens rounding, Dream's rules, limits. */
import { describe, expect, it } from 'vitest';
import { ENGINE_CONTRACT_VERSION, type EngineTarget } from '@fast-dllm/scheduler';
import { ApiError } from '../src/errors.js';
import { buildJob } from '../src/request.js';
import type { ChatBody, CompletionBody } from '../src/schema.js';

const target = (architecture: 'llada' | 'dream', maxPositions = 256): EngineTarget => ({
  name: 'test',
  model: { architecture, vocabSize: 100, maxPositions, maskId: 99, eosId: 1, endOfTurnId: 2, shiftLogits: architecture === 'dream' },
  capabilities: {
    contractVersion: ENGINE_CONTRACT_VERSION, modes: ['full', 'prefix', 'dual', 'extend'], reports: { top2: true, entropy: true, logits: true },
    sampling: true, maxBatch: 8, blockCausal: false,
  },
});
const limits = { defaults: { maxTokens: 128, blockLength: 32 }, timeoutMs: 600_000 };
const prompt = (n: number) => Int32Array.from({ length: n }, (_, i) => 3 + (i % 90));
const job = (body: object, arch: 'llada' | 'dream' = 'llada', P = 16, maxPositions = 256) =>
  buildJob({ model: 'm', messages: [], ...body } as unknown as ChatBody & CompletionBody, prompt(P), true, target(arch, maxPositions), limits);

function refusal(f: () => unknown): ApiError {
  try {
    f();
  } catch (e) {
    if (e instanceof ApiError) return e;
    throw e;
  }
  throw new Error('expected an ApiError');
}

describe('buildJob', () => {
  it("defaults: the family's recipe, 128 answer tokens in blocks of 32, greedy, seed 0", () => {
    const j = job({});
    expect(j.request).toMatchObject({ genLength: 128, blockLength: 32, steps: 128, cache: 'dual', strategy: { kind: 'threshold', threshold: 0.9 }, temperature: 0, seed: 0 });
    expect(j.maxTokens).toBe(128);
    expect(j.decoding).toBe('Fast-dLLM (dual cache, threshold 0.9)'); // the plan's words, as the CLI prints them
    expect(job({}, 'dream').request.strategy).toEqual({ kind: 'dream', alg: 'maskgit_plus', threshold: 0.9 });
  });

  it('max_tokens is rounded up to whole blocks for the canvas and kept as the answer cap', () => {
    const j = job({ max_tokens: 40, block_length: 16 });
    expect(j.request.genLength).toBe(48);
    expect(j.maxTokens).toBe(40);
    expect(job({ max_completion_tokens: 5 }).request.genLength).toBe(32);
  });

  it('without max_tokens the default shrinks to the whole blocks left after the prompt; with it, too long is a 400', () => {
    expect(job({}, 'llada', 200).request.genLength).toBe(32); // 56 positions left: one block of 32
    expect(job({}, 'llada', 240).request).toMatchObject({ genLength: 16, blockLength: 16 }); // less than a block left: one block of it
    expect(refusal(() => job({ block_length: 32 }, 'llada', 240)).code).toBe('context_length_exceeded');
    const e = refusal(() => job({ max_tokens: 64 }, 'llada', 200));
    expect([e.status, e.param, e.code]).toEqual([400, 'max_tokens', 'context_length_exceeded']);
    const p = refusal(() => job({}, 'llada', 256));
    expect([p.status, p.param, p.code]).toEqual([400, 'messages', 'context_length_exceeded']);
  });

  it('strategy fields: threshold and factor imply theirs; fixed; Dream thresholds its maskgit_plus confidence', () => {
    expect(job({ threshold: 0.7 }).request.strategy).toEqual({ kind: 'threshold', threshold: 0.7 });
    expect(job({ factor: 2 }).request.strategy).toEqual({ kind: 'factor', factor: 2 });
    expect(job({ strategy: 'factor' }).request.strategy).toEqual({ kind: 'factor', factor: 1 });
    expect(job({ strategy: 'fixed', cache: 'none' }).request).toMatchObject({ strategy: { kind: 'fixed', remasking: 'low_confidence' }, cache: 'none' });
    expect(job({ threshold: 0.8 }, 'dream').request.strategy).toEqual({ kind: 'dream', alg: 'maskgit_plus', threshold: 0.8 });
    expect(job({ strategy: 'fixed' }, 'dream').request.strategy).toEqual({ kind: 'dream', alg: 'maskgit_plus' });
    expect(refusal(() => job({ strategy: 'factor', threshold: 0.5 })).param).toBe('threshold');
  });

  it('sampling without a seed draws one; a given seed is kept', () => {
    const seeds = new Set(Array.from({ length: 8 }, () => job({ temperature: 0.5 }).request.seed));
    expect(seeds.size).toBeGreaterThan(1);
    expect(job({ temperature: 0.5, seed: 42 }).request.seed).toBe(42);
  });

  it("the scheduler's refusals come back as 400s naming the field", () => {
    const e = refusal(() => job({ max_tokens: 64, block_length: 32, steps: 3 }));
    expect([e.status, e.param]).toEqual([400, 'steps']);
    expect(e.message).toMatch(/multiple of the number of blocks/);
  });

  it('the deadline: the server limit, or less when the request asks', () => {
    expect(job({}).timeoutMs).toBe(600_000);
    expect(job({ fast_dllm: { timeout: 2 } }).timeoutMs).toBe(2000);
    expect(job({ fast_dllm: { timeout: 1e6 } }).timeoutMs).toBe(600_000);
  });
});

describe('buildJob on block-diffusion models (DESIGN §8)', () => {
  const blockTarget = (architecture: 'fast_dllm_v2' | 'sdar', blockSize: number): EngineTarget => ({
    name: 'test',
    model: { architecture, vocabSize: 100, maxPositions: 256, maskId: 99, eosId: 1, endOfTurnId: 2, shiftLogits: architecture === 'fast_dllm_v2', blockSize, stopIds: [1, 2] },
    capabilities: {
      contractVersion: ENGINE_CONTRACT_VERSION, modes: ['full', 'prefix', 'dual', 'extend'], reports: { top2: true, entropy: true, logits: true },
      sampling: true, maxBatch: 8, blockCausal: true,
    },
  });
  const bjob = (body: object, arch: 'fast_dllm_v2' | 'sdar' = 'fast_dllm_v2', B = 8) =>
    buildJob({ model: 'm', messages: [], ...body } as unknown as ChatBody & CompletionBody, prompt(13), true, blockTarget(arch, B), limits);

  it('max_tokens is the cap on new tokens (no rounding); the recipe is the family\'s; their own fields override it', () => {
    expect(bjob({ max_tokens: 21 }).request).toMatchObject({ genLength: 21, strategy: { kind: 'fast_dllm_v2', subBlockLength: 8, threshold: 0.9, blockCache: false } });
    expect(bjob({ max_tokens: 21 }).request.blockLength).toBeUndefined();
    expect(bjob({ threshold: 0.5, sub_block_length: 4, block_cache: true }).request.strategy).toEqual({ kind: 'fast_dllm_v2', subBlockLength: 4, threshold: 0.5, blockCache: true });
    expect(bjob({}, 'sdar', 4).request.strategy).toEqual({ kind: 'sdar', stepsPerBlock: 4, remasking: 'low_confidence_dynamic', threshold: 0.85 });
    expect(bjob({ remasking: 'low_confidence_static', steps_per_block: 2 }, 'sdar', 4).request.strategy).toEqual({ kind: 'sdar', stepsPerBlock: 2, remasking: 'low_confidence_static' });
    expect(bjob({}).request.genLength).toBe(128);
  });

  it.each([
    [{ steps: 8 }, 'fast_dllm_v2', 'steps', /steps applies to LLaDA\/Dream \(masked diffusion\); this Fast-dLLM v2 model/],
    [{ cache: 'dual' }, 'sdar', 'cache', /cache dual applies to LLaDA\/Dream/],
    [{ remasking: 'low_confidence_static' }, 'fast_dllm_v2', 'remasking', /remasking low_confidence_static applies to SDAR models; this is a Fast-dLLM v2 model/],
    [{ block_cache: true }, 'sdar', 'block_cache', /block_cache applies to Fast-dLLM v2 models; this is a SDAR model/],
    [{ sub_block_length: 3 }, 'fast_dllm_v2', 'sub_block_length', /sub/i],
    [{ remasking: 'low_confidence_static', threshold: 0.5 }, 'sdar', 'threshold', /low_confidence_dynamic/],
    [{ max_tokens: 500 }, 'fast_dllm_v2', 'max_tokens', /exceed the model's 256 positions/],
  ] as const)('%j on %s: 400 naming %s', (body, arch, param, msg) => {
    const e = refusal(() => bjob(body, arch, arch === 'sdar' ? 4 : 8));
    expect([e.status, e.param]).toEqual([400, param]);
    expect(e.message).toMatch(msg);
  });

  it('LLaDA/Dream refuse the block-diffusion fields', () => {
    const e = refusal(() => job({ sub_block_length: 8 }));
    expect([e.status, e.param]).toEqual([400, 'sub_block_length']);
    expect(e.message).toMatch(/sub_block_length applies to block-diffusion models \(Fast-dLLM v2 \/ SDAR\); this is a LLaDA model/);
  });
});
