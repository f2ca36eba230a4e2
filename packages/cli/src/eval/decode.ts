/**
 * Every generation of `fast-dllm eval` goes through `decodeAll`, so that batching is decided in one place.
 * Today it runs the requests one after another through the scheduler's generate(); when the scheduler's batch
 * driver (`decodeMany`, SPEC §7) is available it hands it the whole list with `batch` sequences in flight.
 */
import type { Engine, GenerationRequest, GenerationResult } from '@fast-dllm/scheduler';
import type { ModelDir } from '../modeldir.js';

export interface DecodeAllOptions {
  /** Sequences decoded together (1: one at a time). */
  batch: number;
  signal?: AbortSignal;
  /** Called as each request finishes, with its index in `requests`. */
  onResult?: (index: number, result: GenerationResult) => void;
}

/** Results in input order. */
export async function decodeAll(md: ModelDir, engine: Engine, requests: readonly GenerationRequest[], o: DecodeAllOptions): Promise<GenerationResult[]> {
  const results: GenerationResult[] = [];
  for (let i = 0; i < requests.length; i++) {
    const r = await md.run(engine, requests[i], { signal: o.signal });
    results.push(r);
    o.onResult?.(i, r);
  }
  return results;
}

/** Whether decodeAll can keep more than one sequence in flight in this build. */
export const BATCHED_DECODING = false;
