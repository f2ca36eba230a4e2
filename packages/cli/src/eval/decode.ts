/**
 * Every generation of `fast-dllm eval` goes through `decodeAll`: the scheduler's batch driver (`decodeMany`,
 * DESIGN §7, through the model dir's runMany) with up to `batch` sequences in each forward pass. Batch
 * invariance (DESIGN §7) keeps each problem's tokens and NFE what they are alone, so --batch changes the time, not
 * the scores.
 */
import type { Engine, GenerationRequest, GenerationResult } from '@fast-dllm/scheduler';
import type { ModelDir } from '../modeldir.js';

export interface DecodeAllOptions {
  /** Sequences decoded together (1: one at a time); the engine's maxBatch caps it. */
  batch: number;
  signal?: AbortSignal;
  /** Called as each request finishes, with its index in `requests`. */
  onResult?: (index: number, result: GenerationResult) => void;
}

/** Results in input order. */
export async function decodeAll(md: ModelDir, engine: Engine, requests: readonly GenerationRequest[], o: DecodeAllOptions): Promise<GenerationResult[]> {
  return md.runMany(engine, requests, { batch: o.batch, signal: o.signal, onResult: o.onResult });
}
