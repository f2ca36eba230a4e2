/**
 * The one front door for decoding settings (DESIGN §6, §8, §11): a model's family recipe plus the user's choices, in
 * neutral names, give one validated DecodingPlan, or a SchedulerConfigError whose `field` names the choice. The
 * CLI, the server, the web page, bench and eval only map their own syntax (flags, JSON fields, form fields) to
 * DecodingChoices and the error's field back; none fills a default of its own.
 */
import type { ModelInfo } from '@fast-dllm/engine-contract';
import { SchedulerConfigError, type ChoiceField, type ChoiceProblem } from './errors.js';
import type { CacheMode } from './plan.js';
import { DEFAULT_THRESHOLD, SDAR_THRESHOLD, defaultRecipe, describeDecoding } from './recipe.js';
import { DEFAULT_ENTROPY_BOUND } from './select.js';
import {
  blockStrategyKindFor, checkGenerationRequest, checkRequestForFamily, isBlockStrategy, type BlockModel, type DreamAlg, type GenerationRequest, type SdarRemasking, type Strategy,
} from './request.js';

/** LLaDA/Dream's published block length (DESIGN §6), when the user names none. */
export const DEFAULT_BLOCK_LENGTH = 32;
/** Positions generated (masked diffusion) or the cap on new tokens (block diffusion) when the user names none. */
export const DEFAULT_GEN_LENGTH = 128;
/**
 * Masked diffusion's token rules (DESIGN §3, §16: EB-Sampler's entropy bound); Dream's sampler is the first three
 * with its own confidence (`alg`).
 */
export const RULES = ['threshold', 'factor', 'fixed', 'entropy_bound'] as const;
export type Rule = (typeof RULES)[number];
export const MASKED_REMASKING = ['low_confidence', 'random'] as const;
export const SDAR_REMASKING = ['low_confidence_dynamic', 'low_confidence_static'] as const;

/**
 * What a user may choose, each optional (absent: the family's recipe or the scheduler's default). Every field is
 * a ChoiceField, the name errors use.
 */
export interface DecodingChoices {
  /**
   * LLaDA/Dream: which rule picks tokens. `threshold`, `factor` and `entropyBound` imply their rule, LLaDA's
   * `remasking` the fixed one.
   */
  rule?: Rule;
  /** Confidence threshold: LLaDA/Dream's rule (>=), Fast-dLLM v2's (>), SDAR's dynamic rule (>). */
  threshold?: number;
  factor?: number;
  /** LLaDA/Dream: EB-Sampler's bound gamma in nats (DESIGN §16). */
  entropyBound?: number;
  /** LLaDA/Dream: positions a pass sees past the current block (DESIGN §16); absent: the whole canvas. */
  suffixWindow?: number;
  /** LLaDA/Dream: Prophet's early commit at full forwards (DESIGN §16); default off. */
  earlyCommit?: boolean;
  /**
   * LLaDA/Dream: FreeDave's draft and verify with this many canvases per pass (DESIGN §16): the answer decoding
   * without it gives, in fewer passes. Cache none or prefix (prefix when no cache is chosen).
   */
  draftVerify?: number;
  /** LLaDA/Dream under the dual cache: Elastic-Cache's attention-similarity threshold gamma (DESIGN §16); absent: off. */
  elasticCache?: number;
  /** LLaDA's fixed-schedule ranking (low_confidence | random), or SDAR's rule (low_confidence_dynamic | low_confidence_static). */
  remasking?: (typeof MASKED_REMASKING)[number] | SdarRemasking;
  /** Dream's confidence. */
  alg?: DreamAlg;
  /** LLaDA/Dream's approximate cache; block-diffusion models keep an exact one ('none' is accepted there). */
  cache?: CacheMode;
  /** Fast-dLLM v2: DualCache inside the block. */
  blockCache?: boolean;
  genLength?: number;
  /** LLaDA/Dream; a block-diffusion model's own B is accepted, any other value refused. */
  blockLength?: number;
  /** LLaDA/Dream: total steps (default genLength). */
  steps?: number;
  subBlockLength?: number;
  stepsPerBlock?: number;
  refreshEvery?: number;
  /**
   * LLaDA/Dream: stop once a finished block leaves only EOS after the first EOS (DESIGN §5); default on, as it
   * cannot change the answer. Off: every position is decoded (the paper's NFE). Block-diffusion models always stop.
   */
  earlyStop?: boolean;
  temperature?: number;
  seed?: number;
}

/** What the resolver needs of a model: its family, and a block-diffusion model's block size. */
export type DecodingModel = BlockModel;

/** Everything a generation's decoding is, validated: a request is this plus a prompt (requestOf). */
export interface DecodingPlan {
  /** The model family the plan is for (llada, dream, fast_dllm_v2, sdar, or another masked-diffusion architecture). */
  architecture: string;
  family: 'masked' | 'block';
  strategy: Strategy;
  /** Masked diffusion's approximate cache; 'none' for block diffusion (whose exact cache is always on). */
  cache: CacheMode;
  genLength: number;
  /** LLaDA/Dream: the block length; block diffusion: the model's B. */
  blockLength: number;
  /** LLaDA/Dream: total steps; null for block diffusion (steps follow the strategy). */
  steps: number | null;
  refreshEvery: number | null;
  /** LLaDA/Dream: positions a pass sees past the current block; null: the whole canvas (DESIGN §16). */
  suffixWindow: number | null;
  /** LLaDA/Dream: Prophet's early commit (DESIGN §16). */
  earlyCommit: boolean;
  /** LLaDA/Dream: canvases per draft-and-verify pass; null: off (DESIGN §16). */
  draftVerify: number | null;
  /** LLaDA/Dream: Elastic-Cache's gamma; null: off (DESIGN §16). */
  elasticCache: number | null;
  /** Whether the run ends at the end of the answer (block diffusion: always). */
  earlyStop: boolean;
  temperature: number;
  seed: number;
  /** True when nothing about the decoding rule or cache was chosen: the family's published recipe runs. */
  isRecipe: boolean;
  /** One line naming what runs, e.g. "Fast-dLLM (dual cache, threshold 0.9)". */
  description: string;
}

const FAMILY_NAME: Record<string, string> = { llada: 'LLaDA', dream: 'Dream', fast_dllm_v2: 'Fast-dLLM v2', sdar: 'SDAR', a2d_mdlm: 'A2D MDLM', a2d_bd3lm: 'A2D BD3LM', llada2_moe: 'LLaDA2' };

/** A family's name for people ("Fast-dLLM v2"), else its architecture string. */
export const familyName = (architecture: string): string => FAMILY_NAME[architecture] ?? architecture;

const bad = (field: ChoiceField, say: (n: (f: ChoiceField) => string) => string, problem: ChoiceProblem = 'invalid') => new SchedulerConfigError(say, field, problem);
const conflict = (field: ChoiceField, say: (n: (f: ChoiceField) => string) => string) => bad(field, say, 'conflict');
const unsupported = (field: ChoiceField, say: (n: (f: ChoiceField) => string) => string) => bad(field, say, 'unsupported');
const given = (v: unknown) => v !== undefined;

/** The choices that only LLaDA/Dream take, only Fast-dLLM v2 and only SDAR, in the order they are reported. */
function maskedOnly(c: DecodingChoices): ChoiceField[] {
  return ([
    ['steps', given(c.steps)], ['rule', given(c.rule)], ['factor', given(c.factor)], ['alg', given(c.alg)],
    ['refreshEvery', given(c.refreshEvery)], ['earlyStop', c.earlyStop === false], ['entropyBound', given(c.entropyBound)],
    ['suffixWindow', given(c.suffixWindow)], ['earlyCommit', c.earlyCommit === true], ['draftVerify', given(c.draftVerify)],
    ['elasticCache', given(c.elasticCache)],
    ['remasking', c.remasking !== undefined && !(SDAR_REMASKING as readonly string[]).includes(c.remasking)],
    ['cache', c.cache !== undefined && c.cache !== 'none'],
  ] as const).filter(([, g]) => g).map(([f]) => f);
}
const v2Only = (c: DecodingChoices): ChoiceField[] => [...(given(c.subBlockLength) ? ['subBlockLength' as const] : []), ...(given(c.blockCache) ? ['blockCache' as const] : [])];
const sdarOnly = (c: DecodingChoices): ChoiceField[] => [
  ...(given(c.stepsPerBlock) ? ['stepsPerBlock' as const] : []),
  ...(c.remasking !== undefined && (SDAR_REMASKING as readonly string[]).includes(c.remasking) ? ['remasking' as const] : []),
];

/** What a choice means to say in an error: the field, with its value where that tells the families apart. */
const shown = (c: DecodingChoices, f: ChoiceField, n: (f: ChoiceField) => string) =>
  f === 'remasking' ? `${n(f)} ${c.remasking}` : f === 'cache' ? `${n(f)} ${c.cache}` : n(f);

/**
 * The family the choices are for: the model's, or without a model (checks before loading one) the one their
 * family-only choices name, LLaDA when none does. Choices of another family are refused, naming the first.
 */
function familyOf(c: DecodingChoices, model: DecodingModel | undefined): DecodingModel {
  const masked = maskedOnly(c), v2 = v2Only(c), sdar = sdarOnly(c);
  if (!model) {
    const firsts = [masked[0], v2[0], sdar[0]].filter((f): f is ChoiceField => f !== undefined);
    if (firsts.length > 1) {
      throw conflict(firsts[1], (n) => `${shown(c, firsts[0], n)} and ${shown(c, firsts[1], n)} belong to different model families; choose the settings of one`);
    }
    return { architecture: v2.length ? 'fast_dllm_v2' : sdar.length ? 'sdar' : 'llada' };
  }
  const name = familyName(model.architecture);
  // A2D BD3LM and LLaDA2 decode with SDAR's procedure and settings (DESIGN §15, §13.1).
  const arch = model.blockSize === undefined ? model.architecture : blockStrategyKindFor(model.architecture);
  if (model.blockSize === undefined) {
    const wrong = [...v2, ...sdar];
    if (wrong.length) throw unsupported(wrong[0], (n) => `${shown(c, wrong[0], n)} applies to block-diffusion models (Fast-dLLM v2 / SDAR); this is a ${name} model`);
    return model;
  }
  if (masked.length) {
    const own: ChoiceField[] = arch === 'sdar' ? ['stepsPerBlock', 'remasking'] : ['subBlockLength', 'blockCache'];
    throw unsupported(masked[0], (n) => `${shown(c, masked[0], n)} applies to LLaDA/Dream (masked diffusion); this ${name} model decodes block by block ` +
      `(its settings: ${[...own, 'threshold' as const].map((f) => n(f)).join(', ')}, and ${n('genLength')} as the cap on new tokens)` +
      (masked[0] === 'earlyStop' ? '; it always stops at a stop token' : ''));
  }
  const other = arch === 'sdar' ? v2 : sdar;
  if (other.length) throw unsupported(other[0], (n) => `${shown(c, other[0], n)} applies to ${arch === 'sdar' ? 'Fast-dLLM v2' : 'SDAR'} models; this is a ${name} model`);
  if (c.blockLength !== undefined && c.blockLength !== model.blockSize) {
    throw bad('blockLength', (n) => `${n('blockLength')} ${c.blockLength}: this ${name} model decodes in the blocks of ${model.blockSize} it was trained with; drop ${n('blockLength')}`);
  }
  return model;
}

/** LLaDA/Dream's rule from the choices: the one they name or imply, else the recipe's. */
function maskedRule(c: DecodingChoices): Rule | undefined {
  const ranking = c.remasking !== undefined && (MASKED_REMASKING as readonly string[]).includes(c.remasking) ? c.remasking : undefined;
  const ruleFields = (['threshold', 'factor', 'entropyBound'] as const).filter((f) => c[f] !== undefined);
  if (ruleFields.length > 1) throw conflict(ruleFields[1], (n) => `${n(ruleFields[0])} and ${n(ruleFields[1])} are two different rules; choose one`);
  if (ranking && (ruleFields.length || c.alg)) {
    const with_ = ruleFields[0] ?? 'alg';
    throw conflict('remasking', (n) => `${n('remasking')} applies to the fixed schedule only; it does not combine with ${n(with_)}`);
  }
  const implied: Rule | undefined = c.threshold !== undefined ? 'threshold' : c.factor !== undefined ? 'factor' : c.entropyBound !== undefined ? 'entropy_bound' : ranking ? 'fixed' : undefined;
  if (c.rule !== undefined && !(RULES as readonly string[]).includes(c.rule)) {
    throw bad('rule', (n) => `unknown ${n('rule')} '${String(c.rule)}' (${RULES.join(' | ')})`);
  }
  if (c.rule && implied && c.rule !== implied) {
    const f: ChoiceField = ruleFields[0] ?? 'remasking';
    throw conflict(f, (n) => `${n(f)} implies ${n('rule')} ${implied}; it does not combine with ${n('rule')} ${c.rule}`);
  }
  if (c.alg) {
    if (c.factor !== undefined || c.rule === 'factor') throw conflict('alg', (n) => `${n('alg')} (Dream's confidence) does not combine with the factor rule; use the threshold rule or the schedule`);
    if (c.entropyBound !== undefined || c.rule === 'entropy_bound') {
      throw conflict('alg', (n) => `${n('alg')} (Dream's confidence) does not combine with EB-Sampler, which ranks by entropy; drop one`);
    }
    if ((c.alg === 'origin' || c.alg === 'entropy') && (implied === 'threshold' || c.rule === 'threshold')) {
      throw conflict('threshold', (n) => c.alg === 'origin'
        ? `${n('alg')} origin has no confidence to threshold; drop ${n('threshold')} or choose another ${n('alg')}`
        : `${n('alg')} entropy scores -entropy (<= 0), which no ${n('threshold')} in (0, 1] reaches; Fast-dLLM's Dream threshold rule is ${n('alg')} maskgit_plus with a ${n('threshold')}`);
    }
  }
  return c.rule ?? implied;
}

function maskedStrategy(c: DecodingChoices, architecture: string, recipe: Strategy): Strategy {
  const dream = architecture === 'dream';
  if (c.alg && !dream) throw unsupported('alg', (n) => `${n('alg')} is Dream's confidence; this is a ${familyName(architecture)} model`);
  let rule = maskedRule(c);
  // Dream's entropy and origin have no threshold rule: named alone they run Dream's schedule.
  if (rule === undefined && (c.alg === 'entropy' || c.alg === 'origin')) rule = 'fixed';
  const recipeTau = recipe.kind === 'threshold' || recipe.kind === 'dream' ? recipe.threshold ?? DEFAULT_THRESHOLD : DEFAULT_THRESHOLD;
  switch (rule) {
    case undefined:
      return dream && c.alg ? { kind: 'dream', alg: c.alg, threshold: recipeTau } : recipe;
    case 'threshold': {
      const threshold = c.threshold ?? recipeTau;
      // Dream's Fast-dLLM rule thresholds its own confidence (maskgit_plus: the top-1 probability; DESIGN §6).
      return dream ? { kind: 'dream', alg: c.alg ?? 'maskgit_plus', threshold } : { kind: 'threshold', threshold };
    }
    case 'factor':
      return { kind: 'factor', factor: c.factor ?? 1 };
    case 'entropy_bound':
      return { kind: 'entropy_bound', gamma: c.entropyBound ?? DEFAULT_ENTROPY_BOUND };
    case 'fixed':
      // Dream's schedule is its own sampler (the recipe's confidence); random ranking is the one generic ranking it has not.
      if (dream && c.remasking !== 'random') return { kind: 'dream', alg: c.alg ?? 'maskgit_plus' };
      return { kind: 'fixed', remasking: (c.remasking as 'low_confidence' | 'random' | undefined) ?? 'low_confidence' };
  }
}

function blockStrategy(c: DecodingChoices, architecture: 'fast_dllm_v2' | 'sdar', recipe: Strategy | undefined): Strategy {
  if (architecture === 'fast_dllm_v2') {
    const base = recipe?.kind === 'fast_dllm_v2' ? recipe : undefined;
    const sub = c.subBlockLength ?? base?.subBlockLength;
    return { kind: 'fast_dllm_v2', ...(sub !== undefined ? { subBlockLength: sub } : {}), threshold: c.threshold ?? base?.threshold ?? DEFAULT_THRESHOLD, blockCache: c.blockCache ?? base?.blockCache ?? false };
  }
  const base = recipe?.kind === 'sdar' ? recipe : undefined;
  const remasking = (c.remasking as SdarRemasking | undefined) ?? base?.remasking ?? 'low_confidence_dynamic';
  if (remasking === 'low_confidence_static' && c.threshold !== undefined) {
    throw conflict('threshold', (n) => `${n('remasking')} low_confidence_static takes no ${n('threshold')} (only the dynamic rule, low_confidence_dynamic, thresholds)`);
  }
  const steps = c.stepsPerBlock ?? base?.stepsPerBlock;
  return {
    kind: 'sdar', ...(steps !== undefined ? { stepsPerBlock: steps } : {}), remasking,
    ...(remasking === 'low_confidence_dynamic' ? { threshold: c.threshold ?? base?.threshold ?? SDAR_THRESHOLD } : {}),
  };
}

/**
 * The plan for a model (DESIGN §6, §8, §11): the family's recipe with the choices over it, checked with the
 * scheduler's own request rules (checkGenerationRequest) on a stand-in prompt. Throws SchedulerConfigError naming
 * the choice.
 */
export function resolveDecoding(model: DecodingModel, choices: DecodingChoices): DecodingPlan {
  return planFor(familyOf(choices, model), choices);
}

/**
 * What can be checked before the model is known (a front-end's checks before it loads one): choices of two
 * families together and rules that contradict each other, and for a block-diffusion family's choices what its plan
 * needs no block size for. Lengths wait for the model: whether a length must divide by a block length of 32, or is
 * a block-diffusion model's cap, is the model's family's to say (a LLaDA/Dream-only choice on such a model is
 * refused as that, not as a length).
 */
export function checkChoices(choices: DecodingChoices): void {
  const m = familyOf(choices, undefined);
  if (m.architecture !== 'llada') planFor(m, choices);
  else maskedRule(choices);
}

/** The plan for a family; a block-diffusion family without its block size (checkChoices) checks what it can. */
function planFor(m: DecodingModel, choices: DecodingChoices): DecodingPlan {
  const block = m.blockSize !== undefined || m.architecture === 'fast_dllm_v2' || m.architecture === 'sdar';
  const B = m.blockSize;
  // defaultRecipe gives a family it does not name LLaDA's recipe, as masked diffusion.
  const recipe = !block || B !== undefined ? defaultRecipe({ architecture: m.architecture as ModelInfo['architecture'], blockSize: B }) : undefined;
  const strategy = block ? blockStrategy(choices, blockStrategyKindFor(m.architecture), recipe?.strategy) : maskedStrategy(choices, m.architecture, recipe!.strategy);
  const genLength = choices.genLength ?? DEFAULT_GEN_LENGTH;
  // Draft and verify shares the cache between its canvases, which a dual step's writes would not allow (DESIGN §16).
  const cache: CacheMode = block ? 'none' : choices.cache ?? (choices.draftVerify !== undefined ? 'prefix' : recipe!.cache);
  const blockLength = block ? B ?? choices.blockLength ?? 0 : choices.blockLength ?? DEFAULT_BLOCK_LENGTH;
  const isRecipe = recipe !== undefined && ([
    'rule', 'threshold', 'factor', 'entropyBound', 'suffixWindow', 'earlyCommit', 'draftVerify', 'elasticCache', 'remasking', 'alg', 'cache', 'blockCache', 'subBlockLength', 'stepsPerBlock',
  ] as const).every((f) => choices[f] === undefined || (f === 'earlyCommit' && choices[f] === false));
  const suffixWindow = block ? null : choices.suffixWindow ?? null;
  const earlyCommit = !block && choices.earlyCommit === true;
  const draftVerify = block ? null : choices.draftVerify ?? null;
  const elasticCache = block ? null : choices.elasticCache ?? null;
  const policies = [
    ...(suffixWindow !== null ? [`suffix window ${suffixWindow}`] : []), ...(earlyCommit ? ['early commit'] : []),
    ...(draftVerify !== null ? [`draft and verify ${draftVerify}`] : []), ...(elasticCache !== null ? [`Elastic-Cache gamma ${elasticCache}`] : []),
  ];
  const plan: DecodingPlan = {
    architecture: m.architecture, family: block ? 'block' : 'masked', strategy, cache, genLength, blockLength,
    steps: block ? null : choices.steps ?? genLength, refreshEvery: choices.refreshEvery ?? null, suffixWindow, earlyCommit, draftVerify, elasticCache,
    earlyStop: block ? true : choices.earlyStop ?? true, temperature: choices.temperature ?? 0, seed: choices.seed ?? 0, isRecipe,
    description: isRecipe ? recipe!.description : block ? `${familyName(m.architecture)} (${describeDecoding(strategy, 'none')})`
      : [describeDecoding(strategy, cache), ...policies].join(', '),
  };
  // The request rules are checked once, here and at run time, by checkGenerationRequest (DESIGN §2–4, §8).
  const req = requestOf(plan, Int32Array.of(0));
  if (block && B === undefined) checkGenerationRequest({ ...req, ...(choices.blockLength !== undefined ? { blockLength: choices.blockLength } : {}) });
  else checkRequestForFamily(req, m);
  return plan;
}

/** The scheduler request of a plan for one prompt ((P,) int32 ids). */
export function requestOf(plan: DecodingPlan, prompt: Int32Array): GenerationRequest {
  const common = { prompt, genLength: plan.genLength, strategy: plan.strategy, temperature: plan.temperature, seed: plan.seed };
  if (isBlockStrategy(plan.strategy)) return common;
  return {
    ...common, blockLength: plan.blockLength, steps: plan.steps!, cache: plan.cache, earlyStop: plan.earlyStop,
    ...(plan.refreshEvery !== null ? { refreshEvery: plan.refreshEvery } : {}),
    ...(plan.suffixWindow !== null ? { suffixWindow: plan.suffixWindow } : {}), ...(plan.earlyCommit ? { earlyCommit: true } : {}),
    ...(plan.draftVerify !== null ? { draftVerify: plan.draftVerify } : {}),
    ...(plan.elasticCache !== null ? { elasticCache: plan.elasticCache } : {}),
  };
}
