/**
 * Fast-dLLM generation (SPEC §2–5): semi-autoregressive blocks, the approximate KV-cache policy and the
 * token-selection rules, driven against any Engine. Policy only: the engine does every forward pass.
 */
import { ENGINE_CONTRACT_VERSION, type Engine, type ForwardMode, type ForwardRequest, type ForwardResult } from './engine.js';
import { SchedulerConfigError, abortError } from './errors.js';
import { planForward, type CacheMode } from './plan.js';
import { LANE_DREAM_ORIGIN, LANE_REMASK_RANDOM, counterUniform, normaliseSeed } from './rng.js';
import {
  dreamOriginProbability,
  dreamTransferCount,
  fixedScheduleCounts,
  partitionBlocks,
  selectDreamOrigin,
  selectFactor,
  selectFixed,
  selectThreshold,
} from './select.js';

export type DreamAlg = 'entropy' | 'topk_margin' | 'maskgit_plus' | 'origin';

export type Strategy =
  /** Fixed schedule (SPEC §2): k tokens per step; `random` remasking ranks by a seeded uniform instead. */
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

export interface StepRecord {
  block: number;
  /** Step index inside the block, 0-based. */
  step: number;
  mode: ForwardMode;
  /** (k,) absolute positions committed at this step, ascending, and their tokens. */
  positions: Int32Array;
  tokens: Int32Array;
  /** NFE so far, this forward included. */
  nfe: number;
}

export interface GenerationStats {
  nfe: number;
  forwardsByMode: Record<ForwardMode, number>;
  /** Generated positions committed per forward pass (genLength / nfe without early stop). */
  tokensPerForward: number;
  wallTimeMs: number;
  /** Generated tokens that are not EOS padding (SPEC §5), and their rate. */
  contentTokens: number;
  tokensPerSecond: number;
}

export interface GenerationResult {
  /** (P + genLength,) the final canvas. */
  canvas: Int32Array;
  /** (genLength,) the generated part. */
  tokens: Int32Array;
  stats: GenerationStats;
  steps: StepRecord[];
  /** True when earlyStop ended the run before every block was decoded. */
  stoppedEarly: boolean;
}

export type GenerationEvent =
  | ({ type: 'step' } & StepRecord)
  | { type: 'block'; block: number; start: number; end: number; nfe: number }
  | { type: 'done'; result: GenerationResult };

export interface GenerateOptions {
  signal?: AbortSignal;
  onEvent?: (event: GenerationEvent) => void;
}

function positiveInt(name: string, v: unknown): number {
  if (typeof v !== 'number' || !Number.isInteger(v) || v <= 0) {
    throw new SchedulerConfigError(`${name} must be a positive integer; got ${String(v)}`);
  }
  return v;
}

interface Resolved {
  cache: CacheMode;
  temperature: number;
  seed: number;
  stepsPerBlock: number;
  refreshEvery?: number;
}

/** Checks a request against SPEC §2 and the engine's capabilities; throws SchedulerConfigError. */
export function validateGeneration(engine: Engine, req: GenerationRequest): Resolved {
  const caps = engine.capabilities;
  const model = engine.model;
  if (caps.contractVersion !== ENGINE_CONTRACT_VERSION) {
    throw new SchedulerConfigError(
      `engine '${engine.name}' implements contract version ${caps.contractVersion}, the scheduler needs ${ENGINE_CONTRACT_VERSION}; rebuild the engine against this scheduler`,
    );
  }
  if (!(req.prompt instanceof Int32Array)) throw new SchedulerConfigError('prompt must be an Int32Array of token ids');
  if (req.prompt.length === 0) throw new SchedulerConfigError('empty prompt: generation needs at least one prompt token (e.g. BOS)');
  for (let i = 0; i < req.prompt.length; i++) {
    const t = req.prompt[i];
    if (t === model.maskId) throw new SchedulerConfigError(`the prompt holds the mask token ${t} at position ${i}; remove it`);
    if (t < 0 || t >= model.vocabSize) throw new SchedulerConfigError(`prompt token ${t} at position ${i} is outside the vocabulary (${model.vocabSize})`);
  }
  const gen = positiveInt('genLength', req.genLength);
  const bl = positiveInt('blockLength', req.blockLength);
  const steps = positiveInt('steps', req.steps);
  if (gen % bl !== 0) throw new SchedulerConfigError(`genLength ${gen} must be a multiple of blockLength ${bl}`);
  const numBlocks = gen / bl;
  if (steps % numBlocks !== 0) throw new SchedulerConfigError(`steps ${steps} must be a multiple of the number of blocks ${numBlocks} (genLength / blockLength)`);
  if (req.prompt.length + gen > model.maxPositions) {
    throw new SchedulerConfigError(`prompt (${req.prompt.length}) + genLength (${gen}) exceeds the model's ${model.maxPositions} positions; shorten one`);
  }
  const cache = req.cache ?? 'none';
  if (cache !== 'none' && cache !== 'prefix' && cache !== 'dual') throw new SchedulerConfigError(`unknown cache mode '${String(cache)}' (none | prefix | dual)`);
  const needModes: ForwardMode[] = cache === 'none' ? ['full'] : ['full', cache];
  for (const m of needModes) {
    if (!caps.modes.includes(m)) throw new SchedulerConfigError(`forward mode '${m}' not supported by engine '${engine.name}'`);
  }
  let refreshEvery: number | undefined;
  if (req.refreshEvery !== undefined) {
    refreshEvery = positiveInt('refreshEvery', req.refreshEvery);
    if (cache === 'none') throw new SchedulerConfigError('refreshEvery needs a cache mode (prefix or dual); without a cache every step is already full');
  }
  const temperature = req.temperature ?? 0;
  if (typeof temperature !== 'number' || !Number.isFinite(temperature) || temperature < 0) {
    throw new SchedulerConfigError(`temperature must be a finite number >= 0; got ${String(temperature)}`);
  }
  if (temperature > 0 && !caps.sampling) throw new SchedulerConfigError(`temperature sampling not supported by engine '${engine.name}'`);
  let seed: number;
  try {
    seed = normaliseSeed(req.seed ?? 0);
  } catch (e) {
    throw new SchedulerConfigError((e as Error).message);
  }
  const s = req.strategy;
  switch (s?.kind) {
    case 'fixed':
      if (s.remasking !== undefined && s.remasking !== 'low_confidence' && s.remasking !== 'random') {
        throw new SchedulerConfigError(`unknown remasking '${String(s.remasking)}' (low_confidence | random)`);
      }
      break;
    case 'threshold':
      checkTau(s.threshold ?? 0.9);
      break;
    case 'factor': {
      const f = s.factor ?? 1;
      if (typeof f !== 'number' || !Number.isFinite(f) || !(f > 0)) throw new SchedulerConfigError(`factor f must be > 0; got ${String(f)}`);
      break;
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
      if (s.alg === 'topk_margin' && !caps.reports.top2) throw new SchedulerConfigError(`top-2 report (Dream topk_margin) not supported by engine '${engine.name}'`);
      if (s.alg === 'entropy' && !caps.reports.entropy) throw new SchedulerConfigError(`entropy report (Dream entropy) not supported by engine '${engine.name}'`);
      break;
    default:
      throw new SchedulerConfigError(`unknown strategy ${JSON.stringify(s)} (fixed | threshold | factor | dream)`);
  }
  return { cache, temperature, seed, stepsPerBlock: steps / numBlocks, refreshEvery };
}

function checkTau(tau: unknown): void {
  if (typeof tau !== 'number' || !(tau > 0 && tau <= 1)) throw new SchedulerConfigError(`threshold must be in (0, 1]; got ${String(tau)}`);
}

/** Confidence of each reported position under the strategy (SPEC §3); (n,) float64. */
function confidences(strategy: Strategy, res: ForwardResult, positions: Int32Array, seed: number, forwardIndex: number): Float64Array {
  const n = positions.length;
  if (strategy.kind === 'fixed' && strategy.remasking === 'random') {
    return Float64Array.from(positions, (p) => counterUniform(seed, forwardIndex, p, LANE_REMASK_RANDOM));
  }
  if (strategy.kind === 'dream') {
    if (strategy.alg === 'entropy') return Float64Array.from(res.entropy!.subarray(0, n), (h) => -h);
    if (strategy.alg === 'topk_margin') return Float64Array.from({ length: n }, (_, i) => res.top1Probs![i] - res.top2Probs![i]);
  }
  return res.probs;
}

function checkResult(engine: Engine, req: ForwardRequest, res: ForwardResult): void {
  const n = req.positions.length;
  if (res.tokens?.length !== n || res.probs?.length !== n) {
    throw new Error(`engine '${engine.name}' returned ${res.tokens?.length} tokens / ${res.probs?.length} probs for ${n} positions`);
  }
  if (req.want?.top2 && (res.top1Probs?.length !== n || res.top2Probs?.length !== n)) throw new Error(`engine '${engine.name}' omitted the top-2 report`);
  if (req.want?.entropy && res.entropy?.length !== n) throw new Error(`engine '${engine.name}' omitted the entropy report`);
}

/** Decodes `genLength` tokens after the prompt; resolves with the canvas, statistics and the step record. */
export async function generate(engine: Engine, request: GenerationRequest, options: GenerateOptions = {}): Promise<GenerationResult> {
  const { signal, onEvent } = options;
  const cfg = validateGeneration(engine, request);
  const { maskId, eosId } = engine.model;
  const strategy = request.strategy;
  const P = request.prompt.length;
  const L = P + request.genLength;
  const canvas = new Int32Array(L).fill(maskId); // (L,) token ids: prompt ++ masks
  canvas.set(request.prompt);
  const isDream = strategy.kind === 'dream';
  const want = isDream && strategy.alg === 'topk_margin' ? { top2: true } : isDream && strategy.alg === 'entropy' ? { entropy: true } : undefined;

  const t0 = performance.now();
  let nfe = 0;
  const byMode: Record<ForwardMode, number> = { full: 0, prefix: 0, dual: 0 };
  const records: StepRecord[] = [];
  let stoppedEarly = false;

  for (const block of partitionBlocks(P, request.genLength, request.blockLength)) {
    let masks = 0;
    for (let p = block.start; p < block.end; p++) if (canvas[p] === maskId) masks++;
    let schedule = fixedScheduleCounts(masks, cfg.stepsPerBlock); // (stepsPerBlock,) fixed-schedule k per step
    for (let step = 0; masks > 0; step++) {
      if (signal?.aborted) throw abortError(signal.reason);
      const span = planForward(cfg.cache, step, block, L, cfg.refreshEvery);
      // Dream under a cache: the block's first full forward commits only the block's first position (SPEC §4).
      // Keyed on the model's shifted logits, not on the strategy: the cached window would give the block's
      // first position its own, unshifted row.
      const dreamFirst = engine.model.shiftLogits && cfg.cache !== 'none' && step === 0 && canvas[block.start] === maskId;
      const positions = dreamFirst ? Int32Array.of(block.start) : maskedIn(canvas, block.start, block.end, maskId); // (n,) ascending
      const forwardIndex = nfe;
      const req: ForwardRequest = {
        canvas: canvas.slice(),
        mode: span.mode,
        start: span.start,
        end: span.end,
        positions,
        ...(want && !dreamFirst ? { want } : {}),
        ...(cfg.temperature > 0 ? { sampling: { temperature: cfg.temperature, seed: cfg.seed, forwardIndex } } : {}),
      };
      let res: ForwardResult;
      try {
        res = await engine.forward(req, signal);
      } catch (e) {
        if (signal?.aborted) throw abortError(signal.reason);
        throw e;
      }
      nfe++;
      byMode[span.mode]++;
      checkResult(engine, req, res);
      if (signal?.aborted) throw abortError(signal.reason);

      let chosen: Int32Array; // (k,) absolute positions to commit, ascending
      if (dreamFirst) {
        chosen = positions;
        // The fixed schedule then spreads the remaining masks over the remaining steps (step j uses index j).
        if (cfg.stepsPerBlock > 1) schedule = Int32Array.of(0, ...fixedScheduleCounts(masks - 1, cfg.stepsPerBlock - 1));
      } else {
        const conf = confidences(strategy, res, positions, cfg.seed, forwardIndex);
        chosen = choose(strategy, positions, conf, step, cfg, schedule, masks, forwardIndex);
      }
      const tokens = new Int32Array(chosen.length); // (k,) committed token ids
      let j = 0;
      for (let i = 0; i < positions.length && j < chosen.length; i++) {
        if (positions[i] === chosen[j]) {
          tokens[j] = res.tokens[i];
          canvas[chosen[j]] = res.tokens[i];
          j++;
        }
      }
      masks -= chosen.length;
      const rec: StepRecord = { block: block.index, step, mode: span.mode, positions: chosen, tokens, nfe };
      records.push(rec);
      onEvent?.({ type: 'step', ...rec });
    }
    onEvent?.({ type: 'block', block: block.index, start: block.start, end: block.end, nfe });
    if (request.earlyStop && block.end < L && onlyEosAfterFirstEos(canvas, P, block.end, eosId)) {
      canvas.fill(eosId, block.end);
      stoppedEarly = true;
      break;
    }
  }

  const wallTimeMs = performance.now() - t0;
  const tokens = canvas.slice(P); // (genLength,)
  let contentTokens = 0;
  for (const t of tokens) if (t !== eosId) contentTokens++;
  const committed = records.reduce((a, r) => a + r.positions.length, 0);
  const result: GenerationResult = {
    canvas,
    tokens,
    stats: {
      nfe,
      forwardsByMode: byMode,
      tokensPerForward: nfe > 0 ? committed / nfe : 0,
      wallTimeMs,
      contentTokens,
      tokensPerSecond: wallTimeMs > 0 ? (contentTokens * 1000) / wallTimeMs : 0,
    },
    steps: records,
    stoppedEarly,
  };
  onEvent?.({ type: 'done', result });
  return result;
}

function maskedIn(canvas: Int32Array, start: number, end: number, maskId: number): Int32Array {
  const out: number[] = [];
  for (let p = start; p < end; p++) if (canvas[p] === maskId) out.push(p);
  return Int32Array.from(out);
}

/** True when [from, to) holds an EOS and every position after the first EOS in it is EOS. */
function onlyEosAfterFirstEos(canvas: Int32Array, from: number, to: number, eosId: number): boolean {
  let p = from;
  while (p < to && canvas[p] !== eosId) p++;
  if (p === to) return false;
  for (; p < to; p++) if (canvas[p] !== eosId) return false;
  return true;
}

function choose(
  strategy: Strategy,
  positions: Int32Array,
  conf: Float64Array,
  step: number,
  cfg: Resolved,
  schedule: Int32Array,
  masks: number,
  forwardIndex: number,
): Int32Array {
  switch (strategy.kind) {
    case 'fixed':
      // Steps past the budget cannot happen (the counts sum to the block's masks); guard with "all".
      return selectFixed(positions, conf, step < schedule.length ? schedule[step] : masks);
    case 'threshold':
      return selectThreshold(positions, conf, strategy.threshold ?? 0.9);
    case 'factor':
      return selectFactor(positions, conf, strategy.factor ?? 1, { factorLastRankQuirk: strategy.factorLastRankQuirk });
    case 'dream': {
      if (strategy.threshold !== undefined) return selectThreshold(positions, conf, strategy.threshold);
      // Under a cache, step 0 was the first-position commit; the schedule continues at step 1 of n, and a
      // block whose budget is spent finishes in one last step.
      const n = cfg.stepsPerBlock;
      if (strategy.alg === 'origin') {
        const u = Float64Array.from(positions, (p) => counterUniform(cfg.seed, forwardIndex, p, LANE_DREAM_ORIGIN)); // (n,) uniforms
        return selectDreamOrigin(positions, u, dreamOriginProbability(step, n));
      }
      return selectFixed(positions, conf, dreamTransferCount(masks, step, n));
    }
  }
}
