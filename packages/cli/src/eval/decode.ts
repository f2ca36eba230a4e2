/**
 * Every generation of `fast-dllm eval` goes through `decodeAll`: the scheduler's batch driver (`decodeMany`,
 * DESIGN §7) with up to `batch` sequences in each forward pass. Batch invariance (SPEC §7) keeps each problem's
 * tokens and NFE what they are alone, so --batch changes the time, not the scores.
 */
import { setMaxListeners } from 'node:events';
import { decodeMany, SchedulerConfigError, type Engine, type GenerationRequest, type GenerationResult } from '@fast-dllm/scheduler';
import { UsageError } from '../errors.js';

export interface DecodeAllOptions {
  /** Sequences decoded together (1: one at a time); the engine's maxBatch caps it. */
  batch: number;
  signal?: AbortSignal;
  /** Called as each request finishes, with its index in `requests`. */
  onResult?: (index: number, result: GenerationResult) => void;
}

/** Results in input order. */
export async function decodeAll(engine: Engine, requests: readonly GenerationRequest[], o: DecodeAllOptions): Promise<GenerationResult[]> {
  // The driver listens on the signal once per submitted request; a benchmark submits hundreds, which Node would
  // report as a listener leak. A per-call signal that follows the caller's carries them.
  const local = new AbortController();
  setMaxListeners(requests.length + 16, local.signal);
  const follow = () => local.abort(o.signal?.reason);
  if (o.signal?.aborted) follow();
  else o.signal?.addEventListener('abort', follow, { once: true });
  try {
    return await decodeMany(engine, requests, { batch: o.batch, signal: local.signal, onResult: o.onResult });
  } catch (e) {
    if (e instanceof SchedulerConfigError) throw new UsageError(e.message);
    throw e;
  } finally {
    o.signal?.removeEventListener('abort', follow);
  }
}
