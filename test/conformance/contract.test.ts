/**
 * The contract checks that @fast-dllm/engine-contract exports for any engine (checkEngineContract: batch invariance,
 * Elastic-Cache's refresh and attention report alone and in a pair, refused sequences, capacity, disposal), run on every registered engine's first variant, on a masked- and a
 * block-diffusion fixture. Engines that take a cache budget are given room for two sequences, so that the capacity
 * check refuses a third.
 */
import { describe, expect, it } from 'vitest';
import { checkEngineContract } from '@fast-dllm/engine-contract';
import { engineEntries, openOrSkip, type EngineEntry } from './engines.js';

const L = 16;
const firstOfEach = (entries: EngineEntry[]) => entries.filter((e, i) => entries.findIndex((x) => x.provider.name === e.provider.name) === i);

for (const entry of firstOfEach(await engineEntries())) {
  describe(`${entry.label}: the contract checks`, () => {
    for (const model of ['llada-tiny-f32', 'fast-dllm-v2-tiny-f32']) {
      it(model, async (ctx) => {
        if (entry.unavailable) return ctx.skip(entry.unavailable);
        const probe = await openOrSkip(entry, model);
        if (probe.skip) return ctx.skip(probe.skip);
        const bytes = probe.engine!.sequenceBytes(L);
        await probe.engine!.dispose();
        const { engine } = await openOrSkip({ ...entry, options: { ...entry.options, cacheBudgetBytes: Math.floor(2.5 * bytes) } }, model);
        const budgeted = engine!.sequenceCapacity(L) <= 2;
        const results = await checkEngineContract(engine!, { canvasLength: L });
        expect(results.filter((r) => !r.ok), JSON.stringify(results)).toEqual([]);
        expect(results.map((r) => r.name)).toHaveLength(5);
        // The reference engine honours the budget, so its capacity check refused a sequence for real.
        if (entry.provider.name === 'reference') expect(budgeted).toBe(true);
      });
    }
  });
}
