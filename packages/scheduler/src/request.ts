/**
 * A generation request and its validation (DESIGN §2–4, §8). Validation needs no engine: with only the request it
 * checks everything the request says about itself; given a model and an engine's capabilities it also checks
 * what depends on them. The CLI, the server and the batch driver all call this one function.
 */
import { ENGINE_CONTRACT_VERSION, type EngineCapabilities, type ForwardMode, type ModelInfo } from '@fast-dllm/engine-contract';
import { SchedulerConfigError, type ChoiceField, type ChoiceProblem } from './errors.js';
import type { CacheMode } from './plan.js';
import { normaliseSeed } from '@fast-dllm/engine-contract';
import { DEFAULT_ENTROPY_BOUND } from './select.js';

/** Elastic-Cache's attention-similarity threshold gamma when the user names none (DESIGN §16; the paper's 0.9). */
export const DEFAULT_ELASTIC_GAMMA = 0.9;

export type DreamAlg = 'entropy' | 'topk_margin' | 'maskgit_plus' | 'origin';

/** SDAR's rules (DESIGN §8): `low_confidence_dynamic` commits every confidence > threshold when there are k_j of them. */
export type SdarRemasking = 'low_confidence_dynamic' | 'low_confidence_static';

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
  | { kind: 'dream'; alg: DreamAlg; threshold?: number }
  /**
   * EB-Sampler (DESIGN §16): each step commits the lowest-entropy masked positions of the block while their entropy
   * sum minus the largest stays <= gamma (default 0.1 nats), and always one. Needs the engine's entropy report.
   */
  | { kind: 'entropy_bound'; gamma?: number }
  /**
   * Fast-dLLM v2's block decoding (DESIGN §8), for `fast_dllm_v2` models: sub-blocks of `subBlockLength` (default
   * 8, or the block size when 8 does not divide it) decoded left to right; each step commits every masked sub-block
   * position with confidence > threshold (strict; default 0.9) and always the most confident one. `blockCache`
   * (default false, the published default): DualCache inside the block.
   */
  | { kind: 'fast_dllm_v2'; subBlockLength?: number; threshold?: number; blockCache?: boolean }
  /**
   * SDAR's block decoding (DESIGN §8), for `sdar` models: `stepsPerBlock` denoising steps per block (default the
   * block size B, at most B); step j commits k_j (the fixed schedule of B over the steps) tokens, or with
   * `low_confidence_dynamic` (default) every confidence > threshold (default 0.85) when there are at least k_j.
   */
  | { kind: 'sdar'; stepsPerBlock?: number; remasking?: SdarRemasking; threshold?: number };

/** Strategies of block-diffusion models, each for its own architecture. */
export const BLOCK_STRATEGY_KINDS = ['fast_dllm_v2', 'sdar'] as const;

/**
 * The block-diffusion procedure that decodes a block-diffusion architecture: its own, and for A2D BD3LM (DESIGN §15)
 * and LLaDA2 (DESIGN §13.1) SDAR's — B steps per block, the threshold rule with a per-step floor.
 */
export function blockStrategyKindFor(architecture: string): (typeof BLOCK_STRATEGY_KINDS)[number] {
  return architecture === 'fast_dllm_v2' ? 'fast_dllm_v2' : 'sdar';
}

/** Whether a strategy is one of the block-diffusion procedures (the others are masked diffusion's). */
export function isBlockStrategy(s: Strategy): s is Extract<Strategy, { kind: 'fast_dllm_v2' | 'sdar' }> {
  return s?.kind === 'fast_dllm_v2' || s?.kind === 'sdar';
}

/** Fast-dLLM v2's published sub-block length, where it divides the block (DESIGN §8). */
export const DEFAULT_SUB_BLOCK = 8;

/** The sub-block length a fast_dllm_v2 strategy uses in blocks of B: its own, else 8 where 8 divides B, else B. */
export function subBlockLengthFor(s: { subBlockLength?: number }, blockSize: number): number {
  return s.subBlockLength ?? (blockSize % DEFAULT_SUB_BLOCK === 0 ? DEFAULT_SUB_BLOCK : blockSize);
}

export interface GenerationRequest {
  /** (P,) int32 prompt token ids, P >= 1, no mask token. */
  prompt: Int32Array;
  /**
   * Masked diffusion: tokens to generate. Block diffusion: the cap on new tokens (the canvas ends at P + genLength,
   * the last block may be shorter; a stop token ends the answer earlier).
   */
  genLength: number;
  /** Masked diffusion only (required there). Block-diffusion models take B from the model; a different value is refused. */
  blockLength?: number;
  /** Masked diffusion only (required there): total steps over all blocks; steps / numBlocks per block. */
  steps?: number;
  strategy: Strategy;
  /** Masked diffusion's approximate cache (default none). Block diffusion's exact cache is always on: none or absent. */
  cache?: CacheMode;
  /** Extra full forward every r steps inside a block (masked diffusion, cached modes only). */
  refreshEvery?: number;
  /** 0 (default): greedy. > 0: Gumbel-max sampling in the engine with forwardIndex = NFE - 1. */
  temperature?: number;
  /** u32; keys the sampling noise, `random` remasking and Dream `origin`. Default 0. */
  seed?: number;
  /**
   * Masked diffusion: stop once a completed block leaves only EOS after the first EOS; the rest is filled with EOS.
   * Off by default. Block-diffusion models always stop at a stop token (DESIGN §8); this option is refused there.
   */
  earlyStop?: boolean;
  /**
   * Masked diffusion (DESIGN §16, suffix window): a pass sees the canvas only up to this many positions past the
   * current block's end; the masks beyond are neither computed nor attended to until their turn comes. Absent: the
   * whole canvas. 0: the prompt, the decoded answer and the block.
   */
  suffixWindow?: number;
  /**
   * Masked diffusion (DESIGN §16, Prophet's early commit): at each full forward, when the mean top-1/top-2
   * log-probability gap over every masked position the pass sees reaches the schedule's gap for the answer's
   * progress, all of them are committed at once. Needs the engine's top-2 report.
   */
  earlyCommit?: boolean;
  /**
   * Masked diffusion (DESIGN §16, FreeDave's draft and verify): each pass carries up to this many canvases (>= 2) —
   * the canvas and the next steps drafted from the last result — and keeps the longest run the step-by-step decode
   * confirms, so the answer is the one decoding without it gives, in fewer passes. Cache none or prefix.
   */
  draftVerify?: number;
  /**
   * Masked diffusion under the dual cache (DESIGN §16, Elastic-Cache): gamma in (0, 1]. Only the first pass is a full
   * forward; every later step is a dual step unless the attention the block's rows give each layer's most-attended
   * key drifted (cosine similarity below gamma at some layer) since the step before, in which case the next pass is a
   * refresh from the first such layer down. Needs the engine's Elastic-Cache capability.
   */
  elasticCache?: number;
}

/** Most canvases one verify pass may carry (DESIGN §16). */
export const MAX_DRAFT_VERIFY = 16;

/** A request with its defaults filled in. */
export interface ResolvedRequest {
  /** Which decoding procedure runs: masked diffusion (LLaDA, Dream) or block diffusion (Fast-dLLM v2, SDAR). */
  family: 'masked' | 'block';
  cache: CacheMode;
  temperature: number;
  seed: number;
  /** Positions per block: blockLength (masked), the model's block size B (block; 0 when checked without a model). */
  blockLength: number;
  /** Masked: steps / numBlocks. SDAR: denoising steps per block. Fast-dLLM v2: 0 (its steps follow the threshold). */
  stepsPerBlock: number;
  /** Fast-dLLM v2: the sub-block length b. */
  subBlockLength?: number;
  refreshEvery?: number;
  /** Masked diffusion: positions a pass sees past the current block's end (absent: the whole canvas). */
  suffixWindow?: number;
  /** Masked diffusion: Prophet's early commit at full forwards. */
  earlyCommit: boolean;
  /** Masked diffusion: canvases per verify pass (FreeDave); absent: one canvas, no drafts. */
  draftVerify?: number;
  /** Masked diffusion: Elastic-Cache's gamma (absent: the cache plan of DESIGN §4). */
  elasticCache?: number;
  /** Longest canvas the generation will use (prompt + genLength): what its sequence reserves. */
  maxLength: number;
}

/** The engine a request will run on: what validation needs of it (without capabilities: the model only). */
export interface EngineTarget {
  name: string;
  model: ModelInfo;
  capabilities?: EngineCapabilities;
}

/** A refusal about one field; `say` names fields through `n` so each front-end reads them in its own names. */
const bad = (field: ChoiceField | null, say: (n: (f: ChoiceField) => string) => string, problem: ChoiceProblem = 'invalid') =>
  new SchedulerConfigError(say, field, problem);

function positiveInt(name: ChoiceField, v: unknown): number {
  if (typeof v !== 'number' || !Number.isInteger(v) || v <= 0) throw bad(name, (n) => `${n(name)} must be a positive integer; got ${String(v)}`);
  return v;
}

function checkTau(tau: unknown): void {
  if (typeof tau !== 'number' || !(tau > 0 && tau <= 1)) throw bad('threshold', (n) => `${n('threshold')} must be in (0, 1]; got ${String(tau)}`);
}

/** The forward modes a request's cache setting needs. */
export function modesFor(cache: CacheMode): ForwardMode[] {
  return cache === 'none' ? ['full'] : ['full', cache];
}

/**
 * Checks a request (DESIGN §2–4, §8); throws SchedulerConfigError naming the problem. Without `target`, only what
 * the request says about itself (the prompt is checked for emptiness only: its ids need the model).
 */
export function checkGenerationRequest(req: GenerationRequest, target?: EngineTarget): ResolvedRequest {
  const contract = target?.capabilities?.contractVersion;
  if (contract !== undefined && contract !== ENGINE_CONTRACT_VERSION) {
    throw bad('engine', () =>
      `engine '${target!.name}' implements contract version ${contract}, the scheduler needs ${ENGINE_CONTRACT_VERSION}; rebuild the engine against this scheduler`);
  }
  if (!(req.prompt instanceof Int32Array)) throw bad('prompt', () => 'prompt must be an Int32Array of token ids');
  if (req.prompt.length === 0) throw bad('prompt', () => 'empty prompt: generation needs at least one prompt token (e.g. BOS)');
  const gen = positiveInt('genLength', req.genLength);
  const temperature = req.temperature ?? 0;
  if (typeof temperature !== 'number' || !Number.isFinite(temperature) || temperature < 0) {
    throw bad('temperature', (n) => `${n('temperature')} must be a finite number >= 0; got ${String(temperature)}`);
  }
  let seed: number;
  try {
    seed = normaliseSeed(req.seed ?? 0);
  } catch (e) {
    throw bad('seed', () => (e as Error).message);
  }
  checkStrategy(req.strategy);
  const maxLength = req.prompt.length + gen;
  if (target) checkFamily(req.strategy, target.model);
  const resolved = isBlockStrategy(req.strategy)
    ? resolveBlock(req, req.strategy, target?.model, temperature, seed, maxLength)
    : resolveMasked(req, gen, temperature, seed, maxLength);
  if (target) checkAgainstEngine(req, target, resolved);
  return resolved;
}

function resolveMasked(req: GenerationRequest, gen: number, temperature: number, seed: number, maxLength: number): ResolvedRequest {
  const bl = positiveInt('blockLength', req.blockLength);
  const steps = positiveInt('steps', req.steps);
  if (gen % bl !== 0) throw bad('genLength', (n) => `${n('genLength')} ${gen} must be a multiple of ${n('blockLength')} ${bl}`);
  const numBlocks = gen / bl;
  if (steps % numBlocks !== 0) {
    throw bad('steps', (n) => `${n('steps')} ${steps} must be a multiple of the number of blocks ${numBlocks} (${n('genLength')} / ${n('blockLength')})`);
  }
  const cache = req.cache ?? 'none';
  if (cache !== 'none' && cache !== 'prefix' && cache !== 'dual') throw bad('cache', (n) => `unknown ${n('cache')} mode '${String(cache)}' (none | prefix | dual)`);
  let refreshEvery: number | undefined;
  if (req.refreshEvery !== undefined) {
    refreshEvery = positiveInt('refreshEvery', req.refreshEvery);
    if (cache === 'none') {
      throw bad('refreshEvery', (n) => `${n('refreshEvery')} needs a ${n('cache')} mode (prefix or dual); without a cache every step is already a full forward`);
    }
  }
  let suffixWindow: number | undefined;
  if (req.suffixWindow !== undefined) {
    const w = req.suffixWindow;
    if (typeof w !== 'number' || !Number.isInteger(w) || w < 0) throw bad('suffixWindow', (n) => `${n('suffixWindow')} must be an integer >= 0; got ${String(w)}`);
    suffixWindow = w;
  }
  if (req.earlyCommit !== undefined && typeof req.earlyCommit !== 'boolean') {
    throw bad('earlyCommit', (n) => `${n('earlyCommit')} must be true or false; got ${String(req.earlyCommit)}`);
  }
  let draftVerify: number | undefined;
  if (req.draftVerify !== undefined) {
    const k = req.draftVerify;
    if (typeof k !== 'number' || !Number.isInteger(k) || k < 2 || k > MAX_DRAFT_VERIFY) {
      throw bad('draftVerify', (n) => `${n('draftVerify')} must be an integer from 2 to ${MAX_DRAFT_VERIFY} (canvases per verify pass); got ${String(k)}`);
    }
    if (cache === 'dual') {
      throw bad('draftVerify', (n) => `${n('draftVerify')} verifies its drafts with prefix steps, which leave the cache as it is; a dual step ` +
        `rewrites the block's cache rows, so drafts cannot share it (DESIGN §16): use ${n('cache')} none or prefix`, 'unsupported');
    }
    if (req.earlyCommit) {
      throw bad('draftVerify', (n) => `${n('draftVerify')} reproduces step-by-step decoding, which ${n('earlyCommit')} changes: drop one of them`, 'unsupported');
    }
    draftVerify = k;
  }
  let elasticCache: number | undefined;
  if (req.elasticCache !== undefined) {
    const g = req.elasticCache;
    if (typeof g !== 'number' || !(g > 0 && g <= 1)) throw bad('elasticCache', (n) => `${n('elasticCache')} (Elastic-Cache's gamma) must be in (0, 1]; got ${String(g)}`);
    if (cache !== 'dual') {
      throw bad('elasticCache', (n) => `${n('elasticCache')} refreshes the dual cache; it needs ${n('cache')} dual, not ${cache}`, 'conflict');
    }
    if (refreshEvery !== undefined) {
      throw bad('elasticCache', (n) => `${n('elasticCache')} decides when the cache is refreshed; it does not combine with ${n('refreshEvery')}`, 'conflict');
    }
    elasticCache = g;
  }
  return {
    family: 'masked', cache, temperature, seed, blockLength: bl, stepsPerBlock: steps / numBlocks, refreshEvery,
    ...(suffixWindow !== undefined ? { suffixWindow } : {}), earlyCommit: req.earlyCommit === true,
    ...(draftVerify !== undefined ? { draftVerify } : {}),
    ...(elasticCache !== undefined ? { elasticCache } : {}), maxLength,
  };
}

/** Block diffusion (DESIGN §8): the masked-diffusion options are refused by name; B comes from the model. */
function resolveBlock(
  req: GenerationRequest, s: Extract<Strategy, { kind: 'fast_dllm_v2' | 'sdar' }>, model: BlockModel | undefined,
  temperature: number, seed: number, maxLength: number,
): ResolvedRequest {
  const who = `strategy '${s.kind}' (block diffusion)`;
  if (req.steps !== undefined) {
    throw bad('steps', (n) => `${n('steps')} is a masked-diffusion (LLaDA/Dream) option; ${who} ${s.kind === 'sdar' ? `takes ${n('stepsPerBlock')}` : 'steps by its threshold'}: drop ${n('steps')}`, 'unsupported');
  }
  if (req.cache !== undefined && req.cache !== 'none') {
    throw bad('cache', (n) => `${n('cache')} '${req.cache}' is masked diffusion's approximate cache; ${who} keeps an exact cache of finished blocks` +
      (s.kind === 'fast_dllm_v2' ? ` (DualCache inside the block is the strategy's ${n('blockCache')} option)` : '') + `: drop ${n('cache')}`, 'unsupported');
  }
  if (req.refreshEvery !== undefined) throw bad('refreshEvery', (n) => `${n('refreshEvery')} is a masked-diffusion (LLaDA/Dream) option; ${who} never refreshes its exact cache: drop it`, 'unsupported');
  if (req.earlyStop) throw bad('earlyStop', (n) => `${n('earlyStop')} is a masked-diffusion (LLaDA/Dream) option; ${who} always stops at a stop token: drop it`, 'unsupported');
  if (req.suffixWindow !== undefined) {
    throw bad('suffixWindow', (n) => `${n('suffixWindow')} is a masked-diffusion (LLaDA/Dream) option; ${who} never computes the blocks after its own: drop it`, 'unsupported');
  }
  if (req.earlyCommit) throw bad('earlyCommit', (n) => `${n('earlyCommit')} is a masked-diffusion (LLaDA/Dream) option; ${who} commits block by block: drop it`, 'unsupported');
  if (req.draftVerify !== undefined) throw bad('draftVerify', (n) => `${n('draftVerify')} is a masked-diffusion (LLaDA/Dream) option; ${who} commits block by block: drop it`, 'unsupported');
  if (req.elasticCache !== undefined) {
    throw bad('elasticCache', (n) => `${n('elasticCache')} is a masked-diffusion (LLaDA/Dream) option; ${who} keeps an exact cache of finished blocks: drop it`, 'unsupported');
  }
  if (req.blockLength !== undefined) positiveInt('blockLength', req.blockLength);
  const B = model?.blockSize;
  if (B !== undefined && req.blockLength !== undefined && req.blockLength !== B) {
    throw bad('blockLength', (n) => `${n('blockLength')} ${req.blockLength} differs from the ${model!.architecture} model's block size ${B} ` +
      `(block-diffusion models decode in the blocks they were trained with); drop ${n('blockLength')}`);
  }
  const base = { family: 'block' as const, cache: 'none' as const, temperature, seed, blockLength: B ?? req.blockLength ?? 0, earlyCommit: false, maxLength };
  if (s.kind === 'fast_dllm_v2') {
    if (B === undefined) return { ...base, stepsPerBlock: 0, ...(s.subBlockLength !== undefined ? { subBlockLength: s.subBlockLength } : {}) };
    const b = subBlockLengthFor(s, B);
    if (B % b !== 0) throw bad('subBlockLength', (n) => `${n('subBlockLength')} ${b} must divide the model's block size ${B}`);
    return { ...base, stepsPerBlock: 0, subBlockLength: b };
  }
  if (B === undefined) return { ...base, stepsPerBlock: s.stepsPerBlock ?? 0 };
  const n = s.stepsPerBlock ?? B;
  if (n > B) throw bad('stepsPerBlock', (f) => `${f('stepsPerBlock')} ${n} exceeds the model's block size ${B}: a step past B would commit nothing (use at most ${B})`);
  return { ...base, stepsPerBlock: n };
}

function checkStrategy(s: Strategy): void {
  switch (s?.kind) {
    case 'fixed':
      if (s.remasking !== undefined && s.remasking !== 'low_confidence' && s.remasking !== 'random') {
        throw bad('remasking', (n) => `unknown ${n('remasking')} '${String(s.remasking)}' (low_confidence | random)`);
      }
      return;
    case 'threshold':
      checkTau(s.threshold ?? 0.9);
      return;
    case 'factor': {
      const f = s.factor ?? 1;
      if (typeof f !== 'number' || !Number.isFinite(f) || !(f > 0)) throw bad('factor', (n) => `${n('factor')} f must be > 0; got ${String(f)}`);
      return;
    }
    case 'dream':
      if (!['entropy', 'topk_margin', 'maskgit_plus', 'origin'].includes(s.alg)) {
        throw bad('alg', (n) => `unknown Dream ${n('alg')} '${String(s.alg)}' (entropy | topk_margin | maskgit_plus | origin)`);
      }
      if (s.threshold !== undefined) {
        if (s.alg === 'origin') throw bad('threshold', (n) => `Dream ${n('alg')} 'origin' has no confidence to threshold; drop the ${n('threshold')} or pick another ${n('alg')}`);
        // -entropy <= 0 never reaches a tau in (0, 1]: every step would silently commit one token.
        if (s.alg === 'entropy') {
          throw bad('threshold', (n) => `Dream ${n('alg')} 'entropy' scores confidence as -entropy (<= 0), which no ${n('threshold')} in (0, 1] reaches; ` +
            `Fast-dLLM's Dream threshold rule thresholds the top-1 probability: use ${n('alg')} 'maskgit_plus' with the ${n('threshold')}`);
        }
        checkTau(s.threshold);
      }
      return;
    case 'entropy_bound': {
      const g = s.gamma ?? DEFAULT_ENTROPY_BOUND;
      if (typeof g !== 'number' || !Number.isFinite(g) || g < 0) throw bad('entropyBound', (n) => `${n('entropyBound')} must be a finite number >= 0 (nats); got ${String(g)}`);
      return;
    }
    case 'fast_dllm_v2':
      if (s.subBlockLength !== undefined) positiveInt('subBlockLength', s.subBlockLength);
      // tau = 1: no confidence is > 1, so one token per step (DESIGN §8).
      if (s.threshold !== undefined) checkTau(s.threshold);
      if (s.blockCache !== undefined && typeof s.blockCache !== 'boolean') throw bad('blockCache', (n) => `${n('blockCache')} must be true or false; got ${String(s.blockCache)}`);
      return;
    case 'sdar':
      if (s.stepsPerBlock !== undefined) positiveInt('stepsPerBlock', s.stepsPerBlock);
      if (s.remasking !== undefined && s.remasking !== 'low_confidence_dynamic' && s.remasking !== 'low_confidence_static') {
        throw bad('remasking', (n) => `unknown SDAR ${n('remasking')} '${String(s.remasking)}' (low_confidence_dynamic | low_confidence_static)`);
      }
      if (s.threshold !== undefined) {
        if (s.remasking === 'low_confidence_static') {
          throw bad('threshold', (n) => `SDAR ${n('remasking')} 'low_confidence_static' takes no ${n('threshold')}; drop it or use 'low_confidence_dynamic'`);
        }
        checkTau(s.threshold);
      }
      return;
    default:
      throw bad('rule', () => `unknown strategy ${JSON.stringify(s)} (fixed | threshold | factor | dream | entropy_bound | fast_dllm_v2 | sdar)`);
  }
}

/** What the family and block checks need of a model (a ModelInfo, or what a front-end knows before loading one). */
export interface BlockModel {
  /** ModelInfo's architecture, or what a front-end knows of it (a string: families it does not know are masked). */
  architecture: string;
  blockSize?: number;
}

/** Each decoding procedure runs on its own model family (DESIGN §8): refuse the others with what to use instead. */
function checkFamily(s: Strategy, model: BlockModel): void {
  const block = model.blockSize !== undefined;
  if (isBlockStrategy(s)) {
    if (!block) {
      throw bad('rule', () => `strategy '${s.kind}' is a block-diffusion procedure; the ${model.architecture} model is a masked-diffusion model ` +
        '(use fixed, threshold, factor, entropy_bound or dream)', 'unsupported');
    }
    const own = blockStrategyKindFor(model.architecture);
    if (s.kind !== own) {
      throw bad('rule', () => `strategy '${s.kind}' decodes ${s.kind === 'sdar' ? 'SDAR, A2D BD3LM and LLaDA2' : 'Fast-dLLM v2'} models; this is a ${model.architecture} model (use strategy '${own}')`, 'unsupported');
    }
  } else if (block) {
    throw bad('rule', () => `strategy '${s?.kind}' is masked diffusion (LLaDA/Dream); ${model.architecture} is a block-diffusion model: ` +
      `use strategy '${blockStrategyKindFor(model.architecture)}'`, 'unsupported');
  }
}

/**
 * What checkGenerationRequest checks of a request against a model's family and block size only (no prompt ids, no
 * positions, no engine): what a front-end can check before it loads the model.
 */
export function checkRequestForFamily(req: GenerationRequest, model: BlockModel): ResolvedRequest {
  const resolved = checkGenerationRequest(req);
  checkFamily(req.strategy, model);
  return isBlockStrategy(req.strategy) ? resolveBlock(req, req.strategy, model, resolved.temperature, resolved.seed, resolved.maxLength) : resolved;
}

/** The forward modes a request needs. */
export function modesForRequest(req: GenerationRequest, resolved: ResolvedRequest): ForwardMode[] {
  const s = req.strategy;
  if (resolved.family === 'masked') return modesFor(resolved.cache);
  return s.kind === 'fast_dllm_v2' && s.blockCache ? ['full', 'prefix', 'extend', 'dual'] : ['full', 'prefix', 'extend'];
}

function checkAgainstEngine(req: GenerationRequest, target: EngineTarget, resolved: ResolvedRequest): void {
  const { model, capabilities: caps, name } = target;
  for (let i = 0; i < req.prompt.length; i++) {
    const t = req.prompt[i];
    if (t === model.maskId) throw bad('prompt', () => `the prompt holds the mask token ${t} at position ${i}; remove it`);
    if (!(t >= 0 && t < model.vocabSize)) throw bad('prompt', () => `prompt token ${t} at position ${i} is outside the vocabulary (${model.vocabSize})`);
  }
  if (resolved.maxLength > model.maxPositions) {
    throw bad('genLength', (n) => `prompt (${req.prompt.length}) + ${n('genLength')} (${req.genLength}) exceeds the model's ${model.maxPositions} positions; shorten one`);
  }
  if (!caps) return;
  if (model.blockSize !== undefined && !caps.blockCausal) {
    throw bad('engine', () => `engine '${name}' has no block-causal attention, which ${model.architecture} models need`);
  }
  for (const m of modesForRequest(req, resolved)) {
    if (!caps.modes.includes(m)) throw bad(m === 'full' ? 'engine' : 'cache', () => `forward mode '${m}' not supported by engine '${name}'`);
  }
  if (resolved.temperature > 0 && !caps.sampling) throw bad('temperature', () => `temperature sampling not supported by engine '${name}'`);
  const s = req.strategy;
  if (s.kind === 'dream') {
    if (s.alg === 'topk_margin' && !caps.reports.top2) throw bad('alg', () => `top-2 report (Dream topk_margin) not supported by engine '${name}'`);
    if (s.alg === 'entropy' && !caps.reports.entropy) throw bad('alg', () => `entropy report (Dream entropy) not supported by engine '${name}'`);
  }
  if (s.kind === 'entropy_bound' && !caps.reports.entropy) throw bad('entropyBound', () => `entropy report (EB-Sampler) not supported by engine '${name}'`);
  if (resolved.earlyCommit && !caps.reports.top2) throw bad('earlyCommit', () => `top-2 report (early commit) not supported by engine '${name}'`);
  if (resolved.draftVerify !== undefined) {
    if (!caps.modes.includes('prefix')) throw bad('draftVerify', () => `engine '${name}' has no 'prefix' step, which a verify pass's drafts use`);
    if (resolved.draftVerify > caps.maxBatch) {
      throw bad('draftVerify', (n) => `${n('draftVerify')} ${resolved.draftVerify} is more canvases than engine '${name}' takes in one pass (${caps.maxBatch})`);
    }
  }
  if (resolved.elasticCache !== undefined && !caps.elasticCache) {
    throw bad('elasticCache', () => `Elastic-Cache (the attention report and refresh forwards) not supported by engine '${name}'`);
  }
}
