// checkEngineContract fails an engine that breaks the contract, naming what it saw.
import { describe, expect, it } from 'vitest';
import {
  ENGINE_CONTRACT_VERSION, EngineCapacityError, SequenceTable, checkEngineContract,
  type Engine, type ForwardRequest, type ForwardResult, type ModelInfo, type SequenceHandle,
} from '../src/index.js';

const model: ModelInfo = { architecture: 'llada', vocabSize: 50, maxPositions: 64, maskId: 49, eosId: 1, shiftLogits: false };

/** A toy engine: each position's token is its canvas id; `flaws` break one promise each. */
function toyEngine(flaws: { batchDependent?: boolean; ignoresDispose?: boolean; overcommits?: boolean; capacity?: number; attentionBatchDependent?: boolean }): Engine {
  const table = new SequenceTable<null>('toy', model.maxPositions);
  let disposed = false;
  const capabilities = {
    contractVersion: ENGINE_CONTRACT_VERSION, modes: ['full'] as const, reports: { top2: false, entropy: false, logits: false }, sampling: false, maxBatch: 4, blockCausal: false,
    elasticCache: { layers: 2 },
  };
  return {
    name: 'toy', model, capabilities,
    sequenceBytes: (n) => 8 * n,
    sequenceCapacity: () => (flaws.capacity ?? 2) - table.size,
    openSequence(n): SequenceHandle {
      if (disposed && !flaws.ignoresDispose) throw new Error('disposed');
      return table.open(n, () => {
        if (!flaws.overcommits && table.size >= (flaws.capacity ?? 2)) throw new EngineCapacityError('full');
        return null;
      });
    },
    closeSequence: (s) => void table.close(s),
    async forward(batch: readonly ForwardRequest[]): Promise<ForwardResult[]> {
      if (disposed && !flaws.ignoresDispose) throw new Error('disposed');
      return table.pass(model, capabilities, batch, undefined, {
        compute: () => null,
        results: () => batch.map((r) => ({
          tokens: Int32Array.from(r.positions, (p) => r.canvas[p]),
          probs: Float64Array.from(r.positions, () => (flaws.batchDependent ? 1 / batch.length : 1)),
          ...(r.attention ? {
            attention: {
              top: Int32Array.of(0, 1),
              atTop: new Float64Array(2 * (r.attention.end - r.attention.start)).fill(flaws.attentionBatchDependent ? 1 / batch.length : 0.5),
              tracked: new Float64Array(2 * (r.attention.end - r.attention.start)),
            },
          } : {}),
        })),
      });
    },
    async dispose() {
      disposed = true;
    },
  };
}

describe('checkEngineContract', () => {
  it('passes an engine that keeps the contract', async () => {
    expect((await checkEngineContract(toyEngine({}))).filter((r) => !r.ok)).toEqual([]);
  });

  it('fails batch-dependent results, an engine that works after dispose, and one that opens past its capacity, each alone', async () => {
    const failed = async (flaws: Parameters<typeof toyEngine>[0]) => (await checkEngineContract(toyEngine(flaws))).filter((r) => !r.ok).map((r) => r.name);
    // (the Elastic-Cache check compares a pass of two with each sequence alone too)
    expect(await failed({ batchDependent: true })).toEqual([expect.stringMatching(/batch invariance/), expect.stringMatching(/^Elastic-Cache/)]);
    expect(await failed({ ignoresDispose: true })).toEqual([expect.stringMatching(/after dispose/)]);
    expect(await failed({ overcommits: true })).toEqual([expect.stringMatching(/^capacity/)]);
    expect(await failed({ attentionBatchDependent: true })).toEqual([expect.stringMatching(/^Elastic-Cache/)]);
  });
});
