/**
 * Each model family's published recipe (DESIGN §6, §8): what a generation uses when the caller names no strategy or
 * cache. LLaDA: DualCache + confidence threshold 0.9. Dream: the same, with Dream's maskgit_plus confidence (its
 * top-1 probability). Fast-dLLM v2: sub-blocks of 8 with threshold 0.9, block cache off (the published default).
 * SDAR: B denoising steps per block, low_confidence_dynamic with threshold 0.85. A2D (DESIGN §15): MDLM takes LLaDA's
 * recipe; BD3LM SDAR's procedure with B steps per block and Fast-dLLM's threshold 0.9 (one token at least per step).
 * LLaDA2 (DESIGN §13.1): SDAR's procedure, which its published sampler is, with B steps and its threshold 0.95.
 */
import type { ModelInfo } from '@fast-dllm/engine-contract';
import type { CacheMode } from './plan.js';
import { subBlockLengthFor, type Strategy } from './request.js';
import { DEFAULT_ENTROPY_BOUND } from './select.js';

export interface Recipe {
  strategy: Strategy;
  cache: CacheMode;
  /** One line naming what runs, e.g. "Fast-dLLM (dual cache, threshold 0.9)". */
  description: string;
}

/** Published thresholds: Fast-dLLM's (LLaDA, Dream, Fast-dLLM v2) and SDAR's dynamic rule (DESIGN §8). */
export const DEFAULT_THRESHOLD = 0.9;
export const SDAR_THRESHOLD = 0.85;
/** LLaDA2's published sampler's threshold (DESIGN §13.1). */
export const LLADA2_THRESHOLD = 0.95;

/** The family's recipe; block-diffusion models need `blockSize` (their sub-block and step counts follow it). */
export function defaultRecipe(model: Pick<ModelInfo, 'architecture'> & { blockSize?: number }): Recipe {
  switch (model.architecture) {
    case 'dream':
      return {
        strategy: { kind: 'dream', alg: 'maskgit_plus', threshold: DEFAULT_THRESHOLD }, cache: 'dual',
        description: `Fast-dLLM for Dream (dual cache, maskgit_plus threshold ${DEFAULT_THRESHOLD})`,
      };
    case 'fast_dllm_v2': {
      const B = blockSizeOf(model);
      const strategy: Strategy = { kind: 'fast_dllm_v2', subBlockLength: subBlockLengthFor({}, B), threshold: DEFAULT_THRESHOLD, blockCache: false };
      return { strategy, cache: 'none', description: `Fast-dLLM v2 (${describeDecoding(strategy, 'none')})` };
    }
    case 'sdar': {
      const B = blockSizeOf(model);
      const strategy: Strategy = { kind: 'sdar', stepsPerBlock: B, remasking: 'low_confidence_dynamic', threshold: SDAR_THRESHOLD };
      return { strategy, cache: 'none', description: `SDAR (${describeDecoding(strategy, 'none')})` };
    }
    case 'a2d_bd3lm': {
      const B = blockSizeOf(model);
      const strategy: Strategy = { kind: 'sdar', stepsPerBlock: B, remasking: 'low_confidence_dynamic', threshold: DEFAULT_THRESHOLD };
      return { strategy, cache: 'none', description: `A2D BD3LM (${describeDecoding(strategy, 'none')})` };
    }
    case 'llada2_moe': {
      const B = blockSizeOf(model);
      const strategy: Strategy = { kind: 'sdar', stepsPerBlock: B, remasking: 'low_confidence_dynamic', threshold: LLADA2_THRESHOLD };
      return { strategy, cache: 'none', description: `LLaDA2 (${describeDecoding(strategy, 'none')})` };
    }
    default:
      return { strategy: { kind: 'threshold', threshold: DEFAULT_THRESHOLD }, cache: 'dual', description: `Fast-dLLM (dual cache, threshold ${DEFAULT_THRESHOLD})` };
  }
}

function blockSizeOf(model: { architecture: string; blockSize?: number }): number {
  if (model.blockSize === undefined) throw new Error(`defaultRecipe: a ${model.architecture} model needs its blockSize`);
  return model.blockSize;
}

/** A short human description of a strategy and cache, for logs and reports. */
export function describeDecoding(strategy: Strategy, cache: CacheMode): string {
  const c = cache === 'none' ? 'no cache' : `${cache} cache`;
  switch (strategy.kind) {
    case 'fixed': return `${c}, fixed schedule${strategy.remasking === 'random' ? ' (random remasking)' : ''}`;
    case 'threshold': return `${c}, threshold ${strategy.threshold ?? DEFAULT_THRESHOLD}`;
    case 'factor': return `${c}, factor ${strategy.factor ?? 1}`;
    case 'entropy_bound': return `${c}, EB-Sampler entropy bound ${strategy.gamma ?? DEFAULT_ENTROPY_BOUND}`;
    case 'dream': return `${c}, Dream ${strategy.alg}${strategy.threshold !== undefined ? ` threshold ${strategy.threshold}` : ' schedule'}`;
    case 'fast_dllm_v2':
      return `sub-blocks of ${strategy.subBlockLength ?? 'the default'}, threshold ${strategy.threshold ?? DEFAULT_THRESHOLD}, ` +
        `${strategy.blockCache ? 'block cache' : 'no block cache'}`;
    case 'sdar':
      return `${strategy.stepsPerBlock ?? 'B'} steps per block, ${strategy.remasking ?? 'low_confidence_dynamic'}` +
        `${(strategy.remasking ?? 'low_confidence_dynamic') === 'low_confidence_dynamic' ? ` threshold ${strategy.threshold ?? SDAR_THRESHOLD}` : ''}`;
  }
}
