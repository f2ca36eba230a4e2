/**
 * The decoding settings of the page: their values, the panel that edits them (declared here as sections of
 * fields, drawn by page/ui/settings-panel.ts), and their mapping to the scheduler's neutral choices (choicesOf).
 * What the choices mean — the family's recipe, the rules, the checks — is the scheduler's resolver (DESIGN §11),
 * as for the CLI and the server; a model's first values are its recipe (recipeSettings).
 *
 * A new family of settings is one more section whose `visible` looks at the model, plus its keys in
 * DecodeSettings and in choicesOf.
 */
import {
  DEFAULT_BLOCK_LENGTH, DEFAULT_ELASTIC_GAMMA, DEFAULT_ENTROPY_BOUND, DEFAULT_GEN_LENGTH, DEFAULT_SUB_BLOCK, DEFAULT_THRESHOLD, MAX_DRAFT_VERIFY, SDAR_THRESHOLD, SchedulerConfigError, blockStrategyKindFor, requestOf, resolveDecoding,
  type DecodingChoices, type DecodingPlan, type FieldNames, type GenerationRequest,
} from '@fast-dllm/scheduler';

export type CacheChoice = 'none' | 'prefix' | 'dual';
export type RuleChoice = 'threshold' | 'factor' | 'fixed' | 'entropy_bound';

export interface DecodeSettings {
  /** Approximate KV cache (DESIGN §4). */
  cache: CacheChoice;
  /** Token selection (DESIGN §3): confidence threshold, factor rule, or the fixed schedule. */
  rule: RuleChoice;
  threshold: number;
  factor: number;
  /** EB-Sampler's bound gamma in nats (DESIGN §16), with the rule entropy_bound. */
  entropyBound: number;
  /** DESIGN §16: a suffix window of `suffixWindow` positions past the block (off: the whole canvas), and early commit. */
  suffixWindowOn: boolean;
  suffixWindow: number;
  earlyCommit: boolean;
  /** DESIGN §16 (FreeDave): verify passes of `draftVerify` canvases (off: one canvas per pass). */
  draftVerifyOn: boolean;
  draftVerify: number;
  /** DESIGN §16: Elastic-Cache under the dual cache, with its attention-similarity threshold γ. */
  elasticCacheOn: boolean;
  elasticGamma: number;
  /** Total steps of the fixed schedule (a multiple of the number of blocks). */
  steps: number;
  blockLength: number;
  genLength: number;
  /** 0: greedy; > 0: Gumbel-max sampling (DESIGN §3). */
  temperature: number;
  seed: number;
  /** Stop once a completed block leaves only EOS after the first EOS (DESIGN §5); off: the paper's NFE. */
  earlyStop: boolean;
  /** A pause before each forward pass, to watch the canvas; excluded from the timings. */
  slowMotionMs: number;
  /** Send the earlier turns of the chat with each message (off: every message is a conversation of its own). */
  multiTurn: boolean;
  /** Fast-dLLM v2 (DESIGN §8): sub-block length (divides the model's block), strict threshold, DualCache in the block. */
  subBlockLength: number;
  v2Threshold: number;
  blockCache: boolean;
  /** SDAR (DESIGN §8): denoising steps per block (0: the block size), the remasking rule, the dynamic rule's threshold. */
  stepsPerBlock: number;
  sdarRemasking: 'low_confidence_dynamic' | 'low_confidence_static';
  sdarThreshold: number;
}

/**
 * The page's first values: LLaDA's recipe (the scheduler's plan with no choices; a loaded model's own recipe replaces
 * it, recipeSettings), the block-diffusion recipes' published values for their section, and the view's own.
 */
export const DEFAULT_SETTINGS: DecodeSettings = {
  cache: 'dual', rule: 'threshold', threshold: DEFAULT_THRESHOLD, factor: 1, entropyBound: DEFAULT_ENTROPY_BOUND, suffixWindowOn: false, suffixWindow: DEFAULT_BLOCK_LENGTH,
  earlyCommit: false, draftVerifyOn: false, draftVerify: 4, elasticCacheOn: false, elasticGamma: DEFAULT_ELASTIC_GAMMA, steps: DEFAULT_GEN_LENGTH, blockLength: DEFAULT_BLOCK_LENGTH, genLength: DEFAULT_GEN_LENGTH,
  temperature: 0, seed: 0, earlyStop: true, slowMotionMs: 0, multiTurn: false,
  subBlockLength: DEFAULT_SUB_BLOCK, v2Threshold: DEFAULT_THRESHOLD, blockCache: false, stepsPerBlock: 0, sdarRemasking: 'low_confidence_dynamic', sdarThreshold: SDAR_THRESHOLD,
};

/** What the panel knows of the model, to show only the settings that apply to it. */
export interface ModelCaps {
  architecture: string;
  maxPositions: number;
  /** Block-diffusion models (Fast-dLLM v2, SDAR): their block size; absent for LLaDA/Dream. */
  blockSize?: number;
}

/** A block-diffusion model: its own settings section, and the LLaDA/Dream ones hidden. */
export const isBlockModel = (m: ModelCaps | null): boolean => m?.blockSize !== undefined;
/** SDAR, A2D BD3LM (DESIGN §15) and LLaDA2 (§13.1) decode with SDAR's procedure and settings. */
/** Block-diffusion models that decode with SDAR's procedure and settings (SDAR, A2D BD3LM): the scheduler's mapping. */
const sdarDecoded = (m: ModelCaps | null): boolean => m?.blockSize !== undefined && blockStrategyKindFor(m.architecture) === 'sdar';
const masked = (m: ModelCaps | null) => !isBlockModel(m);

export type FieldInput =
  | { kind: 'select'; options: readonly { value: string; label: string }[] }
  | { kind: 'number'; min: number; max?: number; step: number; integer: boolean }
  | { kind: 'checkbox' };

export interface FieldSpec {
  key: keyof DecodeSettings;
  label: string;
  /** One line shown as the field's tooltip. */
  help: string;
  input: FieldInput;
  visible?: (s: DecodeSettings, m: ModelCaps | null) => boolean;
  /** Sent to `fast-dllm serve` too (the server decides the others). */
  remote?: boolean;
}

export interface SectionSpec {
  title: string;
  fields: FieldSpec[];
  visible?: (m: ModelCaps | null) => boolean;
}

const int = (min: number, max?: number, step = 1): FieldInput => ({ kind: 'number', min, max, step, integer: true });

export const SECTIONS: readonly SectionSpec[] = [
  {
    title: 'Decoding',
    fields: [
      {
        key: 'cache', label: 'KV cache', help: 'DESIGN §4: none = every step a full forward; prefix = cache the prompt and earlier blocks; dual = also the later blocks (DualCache)',
        input: { kind: 'select', options: [{ value: 'dual', label: 'dual' }, { value: 'prefix', label: 'prefix' }, { value: 'none', label: 'none' }] }, remote: true,
        visible: (_s, m) => masked(m),
      },
      {
        key: 'rule', label: 'Unmasking rule', help: 'DESIGN §3: threshold / factor = confidence-aware parallel decoding; fixed = k tokens per step; §16: EB-Sampler = an entropy bound',
        input: {
          kind: 'select',
          options: [{ value: 'threshold', label: 'threshold τ' }, { value: 'factor', label: 'factor f' }, { value: 'fixed', label: 'fixed schedule' }, { value: 'entropy_bound', label: 'EB-Sampler γ' }],
        },
        remote: true,
        visible: (_s, m) => masked(m),
      },
      {
        key: 'threshold', label: 'τ', help: 'commit every masked position of the block with confidence ≥ τ, and always the most confident one',
        input: { kind: 'number', min: 0.01, max: 1, step: 0.05, integer: false }, visible: (s, m) => masked(m) && s.rule === 'threshold', remote: true,
      },
      {
        key: 'factor', label: 'f', help: 'factor rule: the largest prefix of ranks r with confidence ≥ 1 − f/(r+2)',
        input: { kind: 'number', min: 0.01, max: 100, step: 0.1, integer: false }, visible: (s, m) => masked(m) && s.rule === 'factor', remote: true,
      },
      {
        key: 'entropyBound', label: 'γ', help: 'EB-Sampler: commit the lowest-entropy positions while their entropy sum minus the largest stays within γ nats',
        input: { kind: 'number', min: 0, max: 100, step: 0.05, integer: false }, visible: (s, m) => masked(m) && s.rule === 'entropy_bound', remote: true,
      },
      {
        key: 'suffixWindowOn', label: 'Suffix window', help: 'DESIGN §16: a forward sees only the next positions past the block; the masks beyond are not computed',
        input: { kind: 'checkbox' }, visible: (_s, m) => masked(m), remote: true,
      },
      { key: 'suffixWindow', label: 'Window', help: 'positions past the block a forward sees', input: int(0), visible: (s, m) => masked(m) && s.suffixWindowOn, remote: true },
      {
        key: 'earlyCommit', label: 'Early commit', help: 'DESIGN §16 (Prophet): a full forward commits every mask it sees when the top-1/top-2 gap is wide',
        input: { kind: 'checkbox' }, visible: (_s, m) => masked(m), remote: true,
      },
      {
        key: 'draftVerifyOn', label: 'Draft and verify', help: 'DESIGN §16 (FreeDave): each pass verifies canvases drafted from the last result; the same answer in fewer passes (KV cache none or prefix)',
        input: { kind: 'checkbox' }, visible: (_s, m) => masked(m), remote: true,
      },
      { key: 'draftVerify', label: 'Canvases', help: 'canvases per verify pass', input: int(2, MAX_DRAFT_VERIFY), visible: (s, m) => masked(m) && s.draftVerifyOn, remote: true },
      {
        key: 'elasticCacheOn', label: 'Elastic-Cache', help: 'DESIGN §16: refresh the dual cache only when the attention on the most-attended token drifts, from the layer where it does',
        input: { kind: 'checkbox' }, visible: (s, m) => masked(m) && s.cache === 'dual', remote: true,
      },
      {
        key: 'elasticGamma', label: 'Elastic γ', help: 'refresh when a layer\'s cosine similarity to the step before falls below γ (1: at any change)',
        input: { kind: 'number', min: 0.01, max: 1, step: 0.01, integer: false }, visible: (s, m) => masked(m) && s.cache === 'dual' && s.elasticCacheOn, remote: true,
      },
      {
        key: 'steps', label: 'Steps', help: 'total steps over all blocks; a multiple of the number of blocks',
        input: int(1), visible: (s, m) => masked(m) && s.rule === 'fixed', remote: true,
      },
      { key: 'blockLength', label: 'Block length', help: 'semi-autoregressive block length (DESIGN §2); divides the generation length', input: int(1), remote: true, visible: (_s, m) => masked(m) },
      { key: 'genLength', label: 'Generation length', help: 'positions generated (the canvas after the prompt); block-diffusion models: the cap on new tokens (a stop token ends the answer earlier)', input: int(1), remote: true },
    ],
  },
  {
    title: 'Block diffusion',
    visible: (m) => isBlockModel(m),
    fields: [
      {
        key: 'subBlockLength', label: 'Sub-block', help: 'Fast-dLLM v2: sub-blocks decoded left to right inside the block; divides the model\'s block size',
        input: int(1), visible: (_s, m) => m?.architecture === 'fast_dllm_v2', remote: true,
      },
      {
        key: 'v2Threshold', label: 'τ (>)', help: 'Fast-dLLM v2: commit every masked sub-block position with confidence strictly above τ, and always the most confident one',
        input: { kind: 'number', min: 0, max: 1, step: 0.05, integer: false }, visible: (_s, m) => m?.architecture === 'fast_dllm_v2', remote: true,
      },
      {
        key: 'blockCache', label: 'Block cache', help: 'Fast-dLLM v2: keep the block\'s K/V and compute only the sub-block\'s rows (DualCache inside the block)',
        input: { kind: 'checkbox' }, visible: (_s, m) => m?.architecture === 'fast_dllm_v2', remote: true,
      },
      {
        key: 'stepsPerBlock', label: 'Steps per block', help: 'SDAR: denoising steps per block, at most the block size (0: the block size)',
        input: int(0), visible: (_s, m) => sdarDecoded(m), remote: true,
      },
      {
        key: 'sdarRemasking', label: 'Remasking', help: 'SDAR: dynamic commits every confidence above τ when there are enough, else the schedule\'s most confident; static always the schedule\'s',
        input: { kind: 'select', options: [{ value: 'low_confidence_dynamic', label: 'dynamic' }, { value: 'low_confidence_static', label: 'static' }] },
        visible: (_s, m) => sdarDecoded(m), remote: true,
      },
      {
        key: 'sdarThreshold', label: 'τ (>)', help: 'SDAR dynamic rule: positions with confidence above τ',
        input: { kind: 'number', min: 0, max: 1, step: 0.05, integer: false }, visible: (s, m) => sdarDecoded(m) && s.sdarRemasking === 'low_confidence_dynamic', remote: true,
      },
    ],
  },
  {
    title: 'Sampling',
    fields: [
      { key: 'temperature', label: 'Temperature', help: '0: greedy; > 0: Gumbel-max sampling', input: { kind: 'number', min: 0, max: 10, step: 0.1, integer: false }, remote: true },
      { key: 'seed', label: 'Seed', help: 'u32 seed of the sampling noise', input: int(0, 0xffffffff), remote: true },
      { key: 'earlyStop', label: 'Early stop', help: 'stop once a block ends with only EOS after the first EOS (it cannot change the answer); off: decode every position, the paper\'s NFE', input: { kind: 'checkbox' }, visible: (_s, m) => masked(m), remote: true },
    ],
  },
  {
    title: 'Chat',
    fields: [
      {
        key: 'multiTurn', label: 'Send earlier turns', remote: true, input: { kind: 'checkbox' },
        help: 'send the whole conversation with each message; off: each message stands alone (the bundled model was trained on single questions)',
      },
    ],
  },
  {
    title: 'View',
    fields: [
      { key: 'slowMotionMs', label: 'Slow motion (ms/step)', help: 'wait this long before each forward pass to watch the canvas; not counted in the timings', input: int(0, 5000, 50) },
    ],
  },
];

/** Each decoding choice as the page labels it, for the scheduler's errors (SchedulerConfigError.messageWith). */
export const FIELD_LABELS: FieldNames = {
  genLength: 'Generation length', blockLength: 'Block length', steps: 'Steps', rule: 'Unmasking rule', threshold: 'τ', factor: 'f',
  cache: 'KV cache', blockCache: 'Block cache', subBlockLength: 'Sub-block', stepsPerBlock: 'Steps per block', remasking: 'Remasking',
  earlyStop: 'Early stop', temperature: 'Temperature', seed: 'Seed', prompt: 'The conversation', entropyBound: 'γ', suffixWindow: 'Window',
  earlyCommit: 'Early commit', draftVerify: 'Canvases', elasticCache: 'Elastic γ',
};

/** LLaDA stands in for the model until one is known (the page's first settings, a server not asked yet). */
const STAND_IN: ModelCaps = { architecture: 'llada', maxPositions: Number.MAX_SAFE_INTEGER };

/**
 * The form's values as the scheduler's neutral choices: only the fields that apply to the model's family (those
 * the panel shows), each as the user set it; the scheduler's resolver decides what they mean.
 */
export function choicesOf(s: DecodeSettings, m: ModelCaps | null = null): DecodingChoices {
  const common = { genLength: s.genLength, temperature: s.temperature, seed: s.seed };
  if (m?.architecture === 'fast_dllm_v2') return { ...common, subBlockLength: s.subBlockLength, threshold: s.v2Threshold, blockCache: s.blockCache };
  if (sdarDecoded(m)) {
    const dynamic = s.sdarRemasking === 'low_confidence_dynamic';
    return { ...common, ...(s.stepsPerBlock > 0 ? { stepsPerBlock: s.stepsPerBlock } : {}), remasking: s.sdarRemasking, ...(dynamic ? { threshold: s.sdarThreshold } : {}) };
  }
  return {
    ...common, rule: s.rule, cache: s.cache, blockLength: s.blockLength, earlyStop: s.earlyStop,
    ...(s.rule === 'threshold' ? { threshold: s.threshold } : s.rule === 'factor' ? { factor: s.factor } : s.rule === 'entropy_bound' ? { entropyBound: s.entropyBound } : { steps: s.steps }),
    ...(s.suffixWindowOn ? { suffixWindow: s.suffixWindow } : {}), ...(s.earlyCommit ? { earlyCommit: true } : {}),
    ...(s.draftVerifyOn ? { draftVerify: s.draftVerify } : {}),
    ...(s.elasticCacheOn && s.cache === 'dual' ? { elasticCache: s.elasticGamma } : {}),
  };
}

/** The scheduler's plan for the form's values on the model (throws SchedulerConfigError naming the field). */
export function planOf(s: DecodeSettings, m: ModelCaps | null = null): DecodingPlan {
  const model = m ?? STAND_IN;
  return resolveDecoding({ architecture: model.architecture, blockSize: model.blockSize }, choicesOf(s, m));
}

/** The form's values for a model's published recipe (the scheduler's plan with no choices): what a new model starts with. */
export function recipeSettings(m: ModelCaps): Partial<DecodeSettings> {
  const plan = resolveDecoding({ architecture: m.architecture, blockSize: m.blockSize }, {});
  const st = plan.strategy;
  const common = { genLength: plan.genLength, temperature: plan.temperature, seed: plan.seed };
  switch (st.kind) {
    case 'fast_dllm_v2':
      return { ...common, subBlockLength: st.subBlockLength!, v2Threshold: st.threshold!, blockCache: st.blockCache ?? false };
    case 'sdar':
      return { ...common, stepsPerBlock: 0, sdarRemasking: st.remasking ?? 'low_confidence_dynamic', ...(st.threshold !== undefined ? { sdarThreshold: st.threshold } : {}) };
    default: {
      const tau = st.kind === 'threshold' || st.kind === 'dream' ? st.threshold : undefined;
      const rule: RuleChoice = tau !== undefined ? 'threshold' : st.kind === 'factor' ? 'factor' : st.kind === 'entropy_bound' ? 'entropy_bound' : 'fixed';
      return {
        ...common, rule, cache: plan.cache as CacheChoice, blockLength: plan.blockLength, steps: plan.steps!, earlyStop: plan.earlyStop,
        suffixWindowOn: plan.suffixWindow !== null, earlyCommit: plan.earlyCommit, ...(plan.suffixWindow !== null ? { suffixWindow: plan.suffixWindow } : {}),
        draftVerifyOn: plan.draftVerify !== null, ...(plan.draftVerify !== null ? { draftVerify: plan.draftVerify } : {}),
        elasticCacheOn: plan.elasticCache !== null, ...(plan.elasticCache !== null ? { elasticGamma: plan.elasticCache } : {}),
        ...(tau !== undefined ? { threshold: tau } : {}), ...(st.kind === 'factor' ? { factor: st.factor! } : {}),
      };
    }
  }
}

/** What is wrong with these settings for this model (empty when they can run); one sentence each. */
export function settingsProblems(s: DecodeSettings, m: ModelCaps | null, promptLength = 0): string[] {
  const out: string[] = [];
  if (!(Number.isInteger(s.slowMotionMs) && s.slowMotionMs >= 0)) out.push('Slow motion must be a whole number of milliseconds ≥ 0.');
  let plan: DecodingPlan;
  try {
    plan = planOf(s, m);
  } catch (e) {
    if (!(e instanceof SchedulerConfigError)) throw e;
    out.push(sentence(e.messageWith(FIELD_LABELS)));
    return out;
  }
  if (m && promptLength + plan.genLength > m.maxPositions) {
    out.push(promptLength > 0
      ? `The conversation (${promptLength} tokens) plus the generation length ${plan.genLength} exceeds the model's ${m.maxPositions} positions; start a new chat or shorten the generation.`
      : `Generation length ${plan.genLength} exceeds the model's ${m.maxPositions} positions.`);
  }
  return out;
}

const sentence = (t: string) => `${t.charAt(0).toUpperCase()}${t.slice(1)}${/[.!?]$/.test(t) ? '' : '.'}`;

/** The scheduler request for a prompt: the plan of the form's values on the model. */
export function toRequest(s: DecodeSettings, prompt: Int32Array, m: ModelCaps | null = null): GenerationRequest {
  return requestOf(planOf(s, m), prompt);
}

/** One line describing the decoding (the plan's words), for the stats line. */
export function describeSettings(s: DecodeSettings, m: ModelCaps | null = null): string {
  const plan = planOf(s, m);
  if (plan.family === 'block') return `${plan.description} · block ${plan.blockLength} · up to ${plan.genLength} new tokens`;
  const steps = s.rule === 'fixed' ? ` · ${plan.steps} steps` : '';
  return `${plan.description}${steps} · block ${plan.blockLength} · gen ${plan.genLength}`;
}
