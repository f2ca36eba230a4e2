/**
 * A generation request and its validation (DESIGN §2–4). Validation needs no engine: with only the request it
 * checks everything the request says about itself; given a model and an engine's capabilities it also checks
 * what depends on them. The CLI, the server and the batch driver all call this one function.
 */
import { ENGINE_CONTRACT_VERSION, type EngineCapabilities, type ForwardMode, type ModelInfo } from './engine.js';
import { SchedulerConfigError } from './errors.js';
import type { CacheMode } from './plan.js';
import { normaliseSeed } from './rng.js';

export type DreamAlg = 'entropy' | 'topk_margin' | 'maskgit_plus' | 'origin';

export type Strategy =
  /** Fixed schedule (DESIGN §2): k tokens per step; `random` remasking ranks by a seeded uniform instead. */
  | { kind: 'fixed'; remasking?: 'low_confidence' | 'random' }
  /** Confidence-aware parallel decoding: every confidence >= threshold (default 0.9), and always the best one. */
  | { kind: 'threshold'; threshold?: number }
  /** Factor rule with f (default 1); `factorLastRankQuirk` reproduces the reference's last-rank quirk. */
  | { kind: 'factor'; factor?: number; factorLastRankQuirk?: boolean }
  /**
   * Dream's sampler: confidence by `alg`, k per step from Dream's timestep schedule (number_transfer_tokens).
   * With `threshold`, the threshold rule replaces the schedule, applied to the alg's confidence
   * (topk_margin: top1 - top2; maskgit_plus: top1 probability, Fast-dLLM's Dream rule). `entropy` (-entropy <= 0)
   * and `origin` take no threshold.
   */
  | { kind: 'dream'; alg: DreamAlg; threshold?: number };

export interface GenerationRequest {
  /** (P,) int32 prompt token ids, P >= 1, no mask token. */
  prompt: Int32Array;
  genLength: number;
  blockLength: number;
  /** Total steps over all blocks; steps / numBlocks per block (a budget for fixed/Dream schedules). */
  steps: number;
  strategy: Strategy;
  cache?: CacheMode;
  /** Extra full forward every r steps inside a block (cached modes only). */
  refreshEvery?: number;
  /** 0 (default): greedy. > 0: Gumbel-max sampling in the engine with forwardIndex = NFE - 1. */
  temperature?: number;
  /** u32; keys the sampling noise, `random` remasking and Dream `origin`. Default 0. */
  seed?: number;
  /** Stop once a completed block leaves only EOS after the first EOS; the rest is filled with EOS. Off by default. */
  earlyStop?: boolean;
}

/** A request with its defaults filled in. */
export interface ResolvedRequest {
  cache: CacheMode;
  temperature: number;
  seed: number;
  stepsPerBlock: number;
  refreshEvery?: number;
  /** Longest canvas the generation will use (prompt + genLength): what its sequence reserves. */
  maxLength: number;
}

/** The engine a request will run on: what validation needs of it. */
export interface EngineTarget {
  name: string;
  model: ModelInfo;
  capabilities: EngineCapabilities;
}

function positiveInt(name: string, v: unknown): number {
  if (typeof v !== 'number' || !Number.isInteger(v) || v <= 0) {
    throw new SchedulerConfigError(`${name} must be a positive integer; got ${String(v)}`);
  }
  return v;
}

function checkTau(tau: unknown): void {
  if (typeof tau !== 'number' || !(tau > 0 && tau <= 1)) throw new SchedulerConfigError(`threshold must be in (0, 1]; got ${String(tau)}`);
}

/** The forward modes a request's cache setting needs. */
export function modesFor(cache: CacheMode): ForwardMode[] {
  return cache === 'none' ? ['full'] : ['full', cache];
}

/**
 * Checks a request (DESIGN §2–4); throws SchedulerConfigError naming the problem. Without `target`, only what
 * the request says about itself (the prompt is checked for emptiness only: its ids need the model).
 */
export function checkGenerationRequest(req: GenerationRequest, target?: EngineTarget): ResolvedRequest {
  if (target && target.capabilities.contractVersion !== ENGINE_CONTRACT_VERSION) {
    throw new SchedulerConfigError(
      `engine '${target.name}' implements contract version ${target.capabilities.contractVersion}, the scheduler needs ${ENGINE_CONTRACT_VERSION}; rebuild the engine against this scheduler`,
    );
  }
  if (!(req.prompt instanceof Int32Array)) throw new SchedulerConfigError('prompt must be an Int32Array of token ids');
  if (req.prompt.length === 0) throw new SchedulerConfigError('empty prompt: generation needs at least one prompt token (e.g. BOS)');
  const gen = positiveInt('genLength', req.genLength);
  const bl = positiveInt('blockLength', req.blockLength);
  const steps = positiveInt('steps', req.steps);
  if (gen % bl !== 0) throw new SchedulerConfigError(`genLength ${gen} must be a multiple of blockLength ${bl}`);
  const numBlocks = gen / bl;
  if (steps % numBlocks !== 0) throw new SchedulerConfigError(`steps ${steps} must be a multiple of the number of blocks ${numBlocks} (genLength / blockLength)`);
  const cache = req.cache ?? 'none';
  if (cache !== 'none' && cache !== 'prefix' && cache !== 'dual') throw new SchedulerConfigError(`unknown cache mode '${String(cache)}' (none | prefix | dual)`);
  let refreshEvery: number | undefined;
  if (req.refreshEvery !== undefined) {
    refreshEvery = positiveInt('refreshEvery', req.refreshEvery);
    if (cache === 'none') throw new SchedulerConfigError('refreshEvery needs a cache mode (prefix or dual); without a cache every step is already full');
  }
  const temperature = req.temperature ?? 0;
  if (typeof temperature !== 'number' || !Number.isFinite(temperature) || temperature < 0) {
    throw new SchedulerConfigError(`temperature must be a finite number >= 0; got ${String(temperature)}`);
  }
  let seed: number;
  try {
    seed = normaliseSeed(req.seed ?? 0);
  } catch (e) {
    throw new SchedulerConfigError((e as Error).message);
  }
  checkStrategy(req.strategy);
  const maxLength = req.prompt.length + gen;
  if (target) checkAgainstEngine(req, target, cache, temperature, maxLength);
  return { cache, temperature, seed, stepsPerBlock: steps / numBlocks, refreshEvery, maxLength };
}

function checkStrategy(s: Strategy): void {
  switch (s?.kind) {
    case 'fixed':
      if (s.remasking !== undefined && s.remasking !== 'low_confidence' && s.remasking !== 'random') {
        throw new SchedulerConfigError(`unknown remasking '${String(s.remasking)}' (low_confidence | random)`);
      }
      return;
    case 'threshold':
      checkTau(s.threshold ?? 0.9);
      return;
    case 'factor': {
      const f = s.factor ?? 1;
      if (typeof f !== 'number' || !Number.isFinite(f) || !(f > 0)) throw new SchedulerConfigError(`factor f must be > 0; got ${String(f)}`);
      return;
    }
    case 'dream':
      if (!['entropy', 'topk_margin', 'maskgit_plus', 'origin'].includes(s.alg)) {
        throw new SchedulerConfigError(`unknown Dream alg '${String(s.alg)}' (entropy | topk_margin | maskgit_plus | origin)`);
      }
      if (s.threshold !== undefined) {
        if (s.alg === 'origin') throw new SchedulerConfigError("Dream alg 'origin' has no confidence to threshold; drop the threshold or pick another alg");
        // -entropy <= 0 never reaches a tau in (0, 1]: every step would silently commit one token.
        if (s.alg === 'entropy') {
          throw new SchedulerConfigError("Dream alg 'entropy' scores confidence as -entropy (<= 0), which no threshold in (0, 1] reaches; " +
            "Fast-dLLM's Dream threshold rule thresholds the top-1 probability: use alg 'maskgit_plus' with the threshold");
        }
        checkTau(s.threshold);
      }
      return;
    default:
      throw new SchedulerConfigError(`unknown strategy ${JSON.stringify(s)} (fixed | threshold | factor | dream)`);
  }
}

function checkAgainstEngine(req: GenerationRequest, target: EngineTarget, cache: CacheMode, temperature: number, maxLength: number): void {
  const { model, capabilities: caps, name } = target;
  for (let i = 0; i < req.prompt.length; i++) {
    const t = req.prompt[i];
    if (t === model.maskId) throw new SchedulerConfigError(`the prompt holds the mask token ${t} at position ${i}; remove it`);
    if (!(t >= 0 && t < model.vocabSize)) throw new SchedulerConfigError(`prompt token ${t} at position ${i} is outside the vocabulary (${model.vocabSize})`);
  }
  if (maxLength > model.maxPositions) {
    throw new SchedulerConfigError(`prompt (${req.prompt.length}) + genLength (${req.genLength}) exceeds the model's ${model.maxPositions} positions; shorten one`);
  }
  for (const m of modesFor(cache)) {
    if (!caps.modes.includes(m)) throw new SchedulerConfigError(`forward mode '${m}' not supported by engine '${name}'`);
  }
  if (temperature > 0 && !caps.sampling) throw new SchedulerConfigError(`temperature sampling not supported by engine '${name}'`);
  const s = req.strategy;
  if (s.kind === 'dream') {
    if (s.alg === 'topk_margin' && !caps.reports.top2) throw new SchedulerConfigError(`top-2 report (Dream topk_margin) not supported by engine '${name}'`);
    if (s.alg === 'entropy' && !caps.reports.entropy) throw new SchedulerConfigError(`entropy report (Dream entropy) not supported by engine '${name}'`);
  }
  if (model.blockSize !== undefined) {
    throw new SchedulerConfigError(`${model.architecture} is a block-diffusion model; its decoding procedure is not available in this scheduler yet`);
  }
}
