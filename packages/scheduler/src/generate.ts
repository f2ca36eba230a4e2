/**
 * generate(): one generation on an engine, alone — a short loop over a Generation (generation.ts) with one
 * engine sequence. For many generations at once use the BatchDriver (batch.ts); the results are the same.
 */
import type { Engine } from '@fast-dllm/engine-contract';
import { abortError } from './errors.js';
import { Generation, type GenerationEvent, type GenerationResult } from './generation.js';
import type { GenerationRequest } from './request.js';

export interface GenerateOptions {
  signal?: AbortSignal;
  /** Every event, with the generation it came from (its committed() text, its snapshot() canvas). */
  onEvent?: (event: GenerationEvent, generation: Generation) => void;
}

/** Decodes `genLength` tokens after the prompt; resolves with the canvas, statistics and the step record. */
export async function generate(engine: Engine, request: GenerationRequest, options: GenerateOptions = {}): Promise<GenerationResult> {
  const { signal, onEvent } = options;
  const g = new Generation(engine, request);
  if (signal?.aborted) throw abortError(signal.reason);
  const sequence = engine.openSequence(g.maxLength);
  try {
    for (let reqs = g.next(); reqs; reqs = g.next()) {
      if (signal?.aborted) throw abortError(signal.reason);
      let res;
      try {
        res = await engine.forward(reqs.map((r) => ({ ...r, sequence })), signal);
      } catch (e) {
        if (signal?.aborted) throw abortError(signal.reason);
        throw e;
      }
      if (signal?.aborted) throw abortError(signal.reason);
      for (const ev of g.advance(res)) onEvent?.(ev, g);
    }
    return g.result();
  } finally {
    engine.closeSequence(sequence);
  }
}
