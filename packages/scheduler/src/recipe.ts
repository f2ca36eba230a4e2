/**
 * Each model family's published Fast-dLLM recipe (DESIGN §6): what a generation uses when the caller names no
 * strategy or cache. LLaDA: DualCache + confidence threshold 0.9. Dream: the same, with Dream's maskgit_plus
 * confidence (its top-1 probability).
 */
import type { ModelInfo } from './engine.js';
import type { CacheMode } from './plan.js';
import type { Strategy } from './request.js';

export interface Recipe {
  strategy: Strategy;
  cache: CacheMode;
  /** One line naming what runs, e.g. "Fast-dLLM (dual cache, threshold 0.9)". */
  description: string;
}

export const DEFAULT_THRESHOLD = 0.9;

export function defaultRecipe(model: Pick<ModelInfo, 'architecture'>): Recipe {
  if (model.architecture === 'dream') {
    return {
      strategy: { kind: 'dream', alg: 'maskgit_plus', threshold: DEFAULT_THRESHOLD }, cache: 'dual',
      description: `Fast-dLLM for Dream (dual cache, maskgit_plus threshold ${DEFAULT_THRESHOLD})`,
    };
  }
  return { strategy: { kind: 'threshold', threshold: DEFAULT_THRESHOLD }, cache: 'dual', description: `Fast-dLLM (dual cache, threshold ${DEFAULT_THRESHOLD})` };
}

/** A short human description of a strategy and cache, for logs and reports. */
export function describeDecoding(strategy: Strategy, cache: CacheMode): string {
  const c = cache === 'none' ? 'no cache' : `${cache} cache`;
  switch (strategy.kind) {
    case 'fixed': return `${c}, fixed schedule${strategy.remasking === 'random' ? ' (random remasking)' : ''}`;
    case 'threshold': return `${c}, threshold ${strategy.threshold ?? DEFAULT_THRESHOLD}`;
    case 'factor': return `${c}, factor ${strategy.factor ?? 1}`;
    case 'dream': return `${c}, Dream ${strategy.alg}${strategy.threshold !== undefined ? ` threshold ${strategy.threshold}` : ' schedule'}`;
  }
}
