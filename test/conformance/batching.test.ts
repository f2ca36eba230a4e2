/**
 * Batch invariance (DESIGN §7) on every engine that runs several sequences per pass: a sequence decoded beside
 * others gives exactly the tokens, NFE and per-step commits it gives alone — for every strategy and cache mode,
 * greedy and seeded, with different prompt and generation lengths, mixed modes in one pass, sequences joining and
 * finishing mid-way, and one cancelled while the others run; masked diffusion also under DESIGN §16's policies.
 * Equality here is exact: same engine, same rows.
 */
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { BatchDriver, decodeMany, generate, type Engine, type GenerationRequest, type GenerationResult, type PassInfo, type Strategy } from '@fast-dllm/scheduler';
import { summary, testPrompt } from './cases.js';
import { engineEntries, lacks, openOrSkip } from './engines.js';

const STRATEGIES: Record<string, Strategy[]> = {
  'llada-tiny-f32': [
    { kind: 'fixed' }, { kind: 'fixed', remasking: 'random' }, { kind: 'threshold', threshold: 0.9 }, { kind: 'threshold', threshold: 0.3 },
    { kind: 'factor', factor: 1 },
  ],
  'dream-tiny-f32': [
    { kind: 'dream', alg: 'maskgit_plus' }, { kind: 'dream', alg: 'entropy' }, { kind: 'dream', alg: 'topk_margin' },
    { kind: 'dream', alg: 'maskgit_plus', threshold: 0.3 }, { kind: 'dream', alg: 'origin' },
  ],
  // LLaDA-MoE (DESIGN §13): a row's experts must not depend on the other rows of the pass.
  'llada-moe-tiny-f32': [{ kind: 'fixed' }, { kind: 'threshold', threshold: 0.9 }, { kind: 'threshold', threshold: 0.3 }, { kind: 'factor', factor: 1 }],
  // Block diffusion (DESIGN §8): prompts shorter than a block, a multiple and neither; caps with a short last block.
  'fast-dllm-v2-tiny-f32': [
    { kind: 'fast_dllm_v2' }, { kind: 'fast_dllm_v2', subBlockLength: 4, threshold: 0.3 },
    { kind: 'fast_dllm_v2', subBlockLength: 4, threshold: 0.3, blockCache: true }, { kind: 'fast_dllm_v2', threshold: 1, blockCache: true },
  ],
  'sdar-tiny-f32': [
    { kind: 'sdar' }, { kind: 'sdar', stepsPerBlock: 2, threshold: 0.3 }, { kind: 'sdar', stepsPerBlock: 2, remasking: 'low_confidence_static' },
    { kind: 'sdar', stepsPerBlock: 1 },
  ],
  // dllm's A2D (DESIGN §15): MDLM under masked diffusion's rules, BD3LM under SDAR's procedure.
  'a2d-qwen3-mdlm-tiny-f32': [{ kind: 'fixed' }, { kind: 'threshold', threshold: 0.9 }, { kind: 'threshold', threshold: 0.3 }, { kind: 'factor', factor: 1 }],
  'a2d-qwen2-bd3lm-tiny-f32': [
    { kind: 'sdar', threshold: 0.9 }, { kind: 'sdar', stepsPerBlock: 4, threshold: 0.3 }, { kind: 'sdar', stepsPerBlock: 2, remasking: 'low_confidence_static' },
    { kind: 'sdar', stepsPerBlock: 1 },
  ],
  // LLaDA2 (DESIGN §13.1): block diffusion with mixture layers; a row's group-limited routing must not depend on the others.
  'llada2-moe-tiny-f32': [
    { kind: 'sdar', threshold: 0.95 }, { kind: 'sdar', stepsPerBlock: 4, threshold: 0.3 }, { kind: 'sdar', stepsPerBlock: 2, remasking: 'low_confidence_static' },
    { kind: 'sdar', stepsPerBlock: 1 },
  ],
};

const isBlock = (model: string) => model.startsWith('fast-dllm-v2') || model.startsWith('sdar') || model.includes('-bd3lm-') || model.startsWith('llada2-');

/** Every strategy × cache mode × (greedy, seeded), each with its own prompt and generation length. */
function requests(model: string, vocab: number): GenerationRequest[] {
  const out: GenerationRequest[] = [];
  let i = 0;
  if (isBlock(model)) {
    // Block diffusion has no cache modes: three prompt/cap shapes per strategy and temperature instead.
    for (const strategy of STRATEGIES[model]) {
      for (const temperature of [0, 0.8]) {
        for (let v = 0; v < 3; v++) {
          const P = [3, 8, 13, 16, 5, 11][i % 6];
          out.push({
            prompt: testPrompt(i, P, vocab),
            genLength: [9, 16, 21][(i + v) % 3], strategy, temperature, seed: 100 + i,
          });
          i++;
        }
      }
    }
    return out;
  }
  for (const strategy of STRATEGIES[model]) {
    for (const cache of ['none', 'prefix', 'dual'] as const) {
      for (const temperature of [0, 0.8]) {
        const P = 2 + (i % 7);
        const [gen, block] = [[8, 4], [16, 8], [12, 4]][i % 3];
        out.push({
          prompt: testPrompt(i, P, vocab),
          genLength: gen, blockLength: block, steps: gen / 2, strategy, cache, temperature, seed: 100 + i,
        });
        i++;
      }
    }
  }
  // DESIGN §16's policies stacked under each cache: EB-Sampler or a low threshold, a suffix window (0: the block
  // alone), and early commit, whose full forwards report the masks past the block too.
  const policies = [[{ kind: 'entropy_bound', gamma: 0.3 }, 4], [{ kind: 'threshold', threshold: 0.3 }, 0]] as const;
  for (const [strategy, suffixWindow] of policies) {
    for (const cache of ['none', 'prefix', 'dual'] as const) {
      const P = 2 + (i % 7);
      const [gen, block] = [[8, 4], [16, 8], [12, 4]][i % 3];
      out.push({
        prompt: testPrompt(i, P, vocab),
        genLength: gen, blockLength: block, steps: gen / 2, strategy, cache, temperature: i % 2 ? 0.8 : 0, seed: 100 + i,
        suffixWindow, earlyCommit: true,
      });
      i++;
    }
  }
  // FreeDave's draft and verify (DESIGN §16): several prefix canvases of one sequence in a pass, without a cache
  // (prefix steps from position 0) and with the prefix cache; one token per step and a threshold.
  for (const [strategy, draftVerify] of [[{ kind: 'fixed' }, 3], [{ kind: 'threshold', threshold: 0.9 }, 4]] as const) {
    for (const cache of ['none', 'prefix'] as const) {
      const P = 2 + (i % 7);
      const [gen, block] = [[8, 4], [16, 8], [12, 4]][i % 3];
      out.push({
        prompt: testPrompt(i, P, vocab),
        genLength: gen, blockLength: block, steps: gen, strategy, cache, temperature: 0, seed: 100 + i, draftVerify,
      });
      i++;
    }
  }
  return out;
}

for (const entry of await engineEntries()) {
  describe.each(Object.keys(STRATEGIES))(`${entry.label}: batching on %s`, (model) => {
    let e: Engine | undefined;
    let skip = entry.unavailable;
    let reqs: GenerationRequest[] = [];
    let alone: ReturnType<typeof summary>[] = [];
    beforeAll(async () => {
      if (skip) return;
      ({ engine: e, skip } = await openOrSkip(entry, model));
      if (!e) return;
      skip = lacks(e.capabilities, { modes: isBlock(model) ? ['full', 'prefix', 'extend', 'dual'] : ['full', 'prefix', 'dual'], batch: 4 });
      if (skip) return;
      reqs = requests(model, e.model.vocabSize);
      alone = [];
      for (const r of reqs) alone.push(summary(await generate(e, r)));
    });
    afterAll(async () => e?.dispose());

    it('every request decoded 8 at a time gives what it gives alone; passes mix modes', async (ctx) => {
      if (skip) return ctx.skip(skip);
      const passes: PassInfo[] = [];
      const driver = new BatchDriver(e!, { maxBatch: 8, onPass: (p) => passes.push(p) });
      const got = await Promise.all(reqs.map((r) => driver.submit(r)));
      got.forEach((r, i) => expect(summary(r), `request ${i}: ${JSON.stringify(reqs[i].strategy)} ${reqs[i].cache} T=${reqs[i].temperature}`).toEqual(alone[i]));
      expect(Math.max(...passes.map((p) => p.sequences))).toBe(8);
      expect(passes.some((p) => Object.values(p.modes).filter((n) => n > 0).length > 1)).toBe(true);
      expect(passes.length).toBeLessThan(alone.reduce((a, s) => a + s.nfe, 0) / 3);
    });

    it('draft and verify gives the answer of step-by-step decoding, in fewer passes', async (ctx) => {
      if (skip) return ctx.skip(skip);
      const verified = reqs.map((r, i) => [r, i] as const).filter(([r]) => r.draftVerify !== undefined);
      if (isBlock(model)) return expect(verified).toHaveLength(0);
      expect(verified.length).toBe(4);
      let fewer = 0;
      for (const [r, i] of verified) {
        const { draftVerify: _, ...stepwise } = r;
        const ref = await generate(e!, stepwise);
        expect(alone[i].tokens, `${JSON.stringify(r.strategy)} ${r.cache} k=${r.draftVerify}`).toEqual(Array.from(ref.tokens));
        expect(alone[i].nfe).toBeLessThanOrEqual(ref.stats.nfe);
        if (alone[i].nfe < ref.stats.nfe) fewer++;
      }
      expect(fewer).toBeGreaterThan(0);
    });

    it('sequences joining and finishing mid-way, and one cancelled, leave the others unchanged', async (ctx) => {
      if (skip) return ctx.skip(skip);
      const driver = new BatchDriver(e!, { maxBatch: 4 });
      const pick = [0, 7, 14, 21, 3, 10];
      const results: Promise<GenerationResult>[] = [];
      const ac = new AbortController();
      let victimSteps = 0;
      const victim = expect(driver.submit(isBlock(model) ? { ...reqs[5], genLength: 40 } : { ...reqs[5], genLength: 16, blockLength: 8, steps: 16 }, {
        signal: ac.signal, onEvent: (ev) => { if (ev.type === 'step' && ++victimSteps === 3) ac.abort(new Error('client went away')); },
      })).rejects.toMatchObject({ name: 'AbortError' });
      for (const i of pick) {
        results.push(driver.submit(reqs[i]));
        await new Promise((r) => setImmediate(r)); // later ones arrive while earlier ones are being decoded
      }
      await victim;
      const got = await Promise.all(results);
      got.forEach((r, k) => expect(summary(r), `request ${pick[k]}`).toEqual(alone[pick[k]]));
      expect(victimSteps).toBe(3);
      // Every cache was freed: the engine has room for as many sequences as before.
      const L = 64;
      const before = e!.sequenceCapacity(L);
      await decodeMany(e!, reqs.slice(0, 2));
      expect(e!.sequenceCapacity(L)).toBe(before);
    });
  });
}
