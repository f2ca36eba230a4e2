/** What ends an answer and what of it is committed (DESIGN §8–9), shared by the generation and the decoders. */
import type { ModelInfo } from '@fast-dllm/engine-contract';

/**
 * DESIGN §9: the committed ids of a generated region: its longest prefix without a mask, cut before the first
 * stop token. `stopped` says whether a stop token was reached (nothing after it will ever be shown).
 */
export function committedPrefix(generated: Int32Array, maskId: number, stopIds: readonly number[]): { ids: Int32Array; stopped: boolean } {
  let n = 0;
  while (n < generated.length && generated[n] !== maskId) {
    if (stopIds.includes(generated[n])) return { ids: generated.subarray(0, n), stopped: true };
    n++;
  }
  return { ids: generated.subarray(0, n), stopped: false };
}

/** The ids that end an answer: the model's stopIds, else EOS and the end-of-turn token. */
export function stopIdsOf(model: ModelInfo): readonly number[] {
  if (model.stopIds !== undefined) return model.stopIds;
  return model.endOfTurnId === undefined ? [model.eosId] : [model.eosId, model.endOfTurnId];
}
