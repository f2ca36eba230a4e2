/**
 * End-to-end tokens on every engine: the TS scheduler driving the engine against the independent PyTorch driver
 * (tools/golden/scheduler_golden.py; regenerate with `/usr/bin/python3 tools/golden/scheduler_golden.py`), every
 * strategy under every cache mode, greedy. Tokens and NFE must match exactly unless the case met a decision
 * margin below the entry's delta on the way (recorded as minGap by the generator): such a case is reported as
 * ambiguous, not compared. Sampled runs are compared with the reference engine's.
 * Block-diffusion models (DESIGN §8) against tools/golden/blockdiff_golden.py's own decoders: Fast-dLLM v2 (sub-blocks,
 * threshold, block cache on and off) and SDAR (dynamic and static; also for A2D BD3LM and LLaDA2), prompts shorter than
 * a block, one block, a multiple and neither; tokens cut after the stop token, and the NFE.
 */
import { readFileSync } from 'node:fs';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { createReferenceEngine } from '@fast-dllm/engine-reference';
import { generate, type CacheMode, type Engine, type GenerationRequest, type Strategy } from '@fast-dllm/scheduler';
import { FIXTURES, engineEntries, lacks, modelDir, open, openOrSkip } from './engines.js';

interface GoldenRun {
  prompt: number[];
  genLength: number;
  blockLength: number;
  steps: number;
  strategy: Strategy;
  cache: CacheMode;
  tokens: number[];
  nfe: number;
  minGap: number;
}

const MODELS = ['llada-tiny-f32', 'dream-tiny-f32', 'llada-tiny-maskpref', 'llada-moe-tiny-f32', 'llada-moe-tiny-partial', 'a2d-qwen2-mdlm-tiny-f32', 'a2d-qwen3-mdlm-tiny-f32'];
const SAMPLED: Record<string, Strategy[]> = {
  'llada-tiny-f32': [{ kind: 'fixed' }, { kind: 'threshold', threshold: 0.9 }],
  'dream-tiny-f32': [{ kind: 'dream', alg: 'entropy' }, { kind: 'dream', alg: 'maskgit_plus' }],
  'llada-tiny-maskpref': [{ kind: 'fixed' }, { kind: 'threshold', threshold: 0.9 }],
  'llada-moe-tiny-f32': [{ kind: 'fixed' }, { kind: 'threshold', threshold: 0.9 }],
  'llada-moe-tiny-partial': [{ kind: 'fixed' }, { kind: 'threshold', threshold: 0.9 }],
  'a2d-qwen2-mdlm-tiny-f32': [{ kind: 'threshold', threshold: 0.9 }],
  'a2d-qwen3-mdlm-tiny-f32': [{ kind: 'fixed' }, { kind: 'threshold', threshold: 0.9 }],
};

for (const entry of await engineEntries()) {
  describe.each(MODELS)(`${entry.label}: tokens on %s`, (model) => {
    const golden = JSON.parse(readFileSync(`${FIXTURES}/golden/scheduler/${model}.json`, 'utf8')) as { cases: GoldenRun[] };
    let e: Engine | undefined;
    let skip = entry.unavailable ?? (entry.delta === Infinity ? 'not compared: lossy arithmetic (bf16 activations) is checked against itself only' : undefined);
    beforeAll(async () => {
      if (skip) return;
      ({ engine: e, skip } = await openOrSkip(entry, model));
      if (e) skip = lacks(e.capabilities, { modes: ['full', 'prefix', 'dual'] });
    });
    afterAll(async () => e?.dispose());

    it.for(golden.cases.map((c, i) => [`${i}: ${JSON.stringify(c.strategy)} cache ${c.cache} gen ${c.genLength}/${c.blockLength}`, c] as const))(
      'vs the PyTorch driver, %s',
      async ([, c], ctx) => {
        if (skip) return ctx.skip(skip);
        if (c.minGap < entry.delta) return ctx.skip(`ambiguous: the run meets a decision margin of ${c.minGap.toExponential(1)} < ${entry.delta}`);
        const r = await generate(e!, {
          prompt: Int32Array.from(c.prompt), genLength: c.genLength, blockLength: c.blockLength, steps: c.steps, strategy: c.strategy, cache: c.cache,
        });
        expect(Array.from(r.tokens)).toEqual(c.tokens);
        expect(r.stats.nfe).toBe(c.nfe);
      },
    );

    it.for(['none', 'prefix', 'dual'] as const)('sampled (T = 0.8, seed 7) equals the reference engine, cache %s', async (cache, ctx) => {
      if (skip) return ctx.skip(skip);
      if (entry.label === 'reference') return ctx.skip('is the reference');
      const ref = await createReferenceEngine(modelDir(model));
      try {
        for (const strategy of SAMPLED[model]) {
          const v = e!.model.vocabSize;
          const req: GenerationRequest = { prompt: Int32Array.of(3, 17 % v, 42 % v, 101 % v), genLength: 16, blockLength: 8, steps: 8, strategy, cache, temperature: 0.8, seed: 7 };
          const [got, want] = [await generate(e!, req), await generate(ref, req)];
          expect(Array.from(got.tokens), JSON.stringify(strategy)).toEqual(Array.from(want.tokens));
          expect(got.stats.nfe).toBe(want.stats.nfe);
        }
      } finally {
        await ref.dispose();
      }
    });
  });
}

interface BlockGoldenRun {
  prompt: number[];
  genLength: number;
  strategy: Strategy;
  tokens: number[];
  nfe: number;
  minGap: number;
}

const BLOCK_SAMPLED: Record<string, Strategy[]> = {
  'fast-dllm-v2-tiny-f32': [{ kind: 'fast_dllm_v2', subBlockLength: 4, threshold: 0.3 }, { kind: 'fast_dllm_v2', subBlockLength: 4, threshold: 0.3, blockCache: true }],
  'sdar-tiny-f32': [{ kind: 'sdar', stepsPerBlock: 2, threshold: 0.3 }, { kind: 'sdar', remasking: 'low_confidence_static' }],
  // A2D BD3LM (DESIGN §15) decodes with SDAR's procedure: the recipe's threshold 0.9 and the static rule.
  'a2d-qwen2-bd3lm-tiny-f32': [{ kind: 'sdar', threshold: 0.9 }],
  'a2d-qwen3-bd3lm-tiny-f32': [{ kind: 'sdar', threshold: 0.9 }, { kind: 'sdar', stepsPerBlock: 2, remasking: 'low_confidence_static' }],
  // LLaDA2 (DESIGN §13.1) decodes with SDAR's procedure: its recipe's threshold 0.95 and the static rule.
  'llada2-moe-tiny-f32': [{ kind: 'sdar', threshold: 0.95 }, { kind: 'sdar', stepsPerBlock: 2, remasking: 'low_confidence_static' }],
};

for (const entry of await engineEntries()) {
  describe.each(Object.keys(BLOCK_SAMPLED))(`${entry.label}: tokens on %s`, (model) => {
    const golden = JSON.parse(readFileSync(`${FIXTURES}/golden/scheduler/${model}.json`, 'utf8')) as { cases: BlockGoldenRun[] };
    let e: Engine | undefined;
    let skip = entry.unavailable ?? (entry.delta === Infinity ? 'not compared: lossy arithmetic (bf16 activations) is checked against itself only' : undefined);
    beforeAll(async () => {
      if (skip) return;
      ({ engine: e, skip } = await openOrSkip(entry, model));
      if (e) skip = lacks(e.capabilities, { modes: ['full', 'prefix', 'extend', 'dual'] });
    });
    afterAll(async () => e?.dispose());

    it.for(golden.cases.map((c, i) => [`${i}: ${JSON.stringify(c.strategy)} P ${c.prompt.length} cap ${c.genLength}`, c] as const))(
      'vs the PyTorch driver, %s',
      async ([, c], ctx) => {
        if (skip) return ctx.skip(skip);
        if (c.minGap < entry.delta) return ctx.skip(`ambiguous: the run meets a decision margin of ${c.minGap.toExponential(1)} < ${entry.delta}`);
        const r = await generate(e!, { prompt: Int32Array.from(c.prompt), genLength: c.genLength, strategy: c.strategy });
        expect(Array.from(r.tokens)).toEqual(c.tokens);
        expect(r.stats.nfe).toBe(c.nfe);
      },
    );

    it('sampled (T = 0.8, seed 7) equals the reference engine', async (ctx) => {
      if (skip) return ctx.skip(skip);
      if (entry.label === 'reference') return ctx.skip('is the reference');
      const ref = await createReferenceEngine(modelDir(model));
      try {
        for (const strategy of BLOCK_SAMPLED[model]) {
          for (const P of [3, 9]) {
            const req: GenerationRequest = { prompt: Int32Array.from({ length: P }, (_, i) => (5 + 11 * i) % 90), genLength: 19, strategy, temperature: 0.8, seed: 7 };
            const [got, want] = [await generate(e!, req), await generate(ref, req)];
            expect(Array.from(got.tokens), JSON.stringify(strategy)).toEqual(Array.from(want.tokens));
            expect(got.stats.nfe).toBe(want.stats.nfe);
          }
        }
      } finally {
        await ref.dispose();
      }
    });
  });
}
