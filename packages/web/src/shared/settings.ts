/**
 * The decoding settings of the page: their values, the panel that edits them (declared here as sections of
 * fields, drawn by page/ui/settings-panel.ts) and the scheduler request they make.
 *
 * A new family of settings (issue #15: the block-diffusion models' sub-block size and their own rules) is one
 * more section whose `visible` looks at the model, plus its keys in DecodeSettings and in toRequest.
 */
import { SDAR_THRESHOLD, describeDecoding, type GenerationRequest, type Strategy } from '@fast-dllm/scheduler';

export type CacheChoice = 'none' | 'prefix' | 'dual';
export type RuleChoice = 'threshold' | 'factor' | 'fixed';

export interface DecodeSettings {
  /** Approximate KV cache (DESIGN §4). */
  cache: CacheChoice;
  /** Token selection (DESIGN §3): confidence threshold, factor rule, or the fixed schedule. */
  rule: RuleChoice;
  threshold: number;
  factor: number;
  /** Total steps of the fixed schedule (a multiple of the number of blocks). */
  steps: number;
  blockLength: number;
  genLength: number;
  /** 0: greedy; > 0: Gumbel-max sampling (DESIGN §3). */
  temperature: number;
  seed: number;
  /** Stop once a completed block leaves only EOS after the first EOS (DESIGN §5). */
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

/** Fast-dLLM's recipe (dual cache, threshold 0.9) at LLaDA's usual block and generation lengths. */
export const DEFAULT_SETTINGS: DecodeSettings = {
  cache: 'dual', rule: 'threshold', threshold: 0.9, factor: 1, steps: 128, blockLength: 32, genLength: 128,
  temperature: 0, seed: 0, earlyStop: false, slowMotionMs: 0, multiTurn: false,
  // Block-diffusion models' published recipes (the scheduler's defaultRecipe): v2 sub-blocks of 8, τ 0.9, no block
  // cache; SDAR B steps per block, dynamic, τ 0.85.
  subBlockLength: 8, v2Threshold: 0.9, blockCache: false, stepsPerBlock: 0, sdarRemasking: 'low_confidence_dynamic', sdarThreshold: SDAR_THRESHOLD,
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
/** SDAR and A2D BD3LM (DESIGN §15) decode with SDAR's procedure and settings. */
const sdarDecoded = (m: ModelCaps | null): boolean => m?.architecture === 'sdar' || m?.architecture === 'a2d_bd3lm';
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
        key: 'rule', label: 'Unmasking rule', help: 'DESIGN §3: threshold / factor = confidence-aware parallel decoding; fixed = k tokens per step',
        input: { kind: 'select', options: [{ value: 'threshold', label: 'threshold τ' }, { value: 'factor', label: 'factor f' }, { value: 'fixed', label: 'fixed schedule' }] }, remote: true,
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
        input: int(1), visible: (_s, m) => m?.architecture === 'fast_dllm_v2',
      },
      {
        key: 'v2Threshold', label: 'τ (>)', help: 'Fast-dLLM v2: commit every masked sub-block position with confidence strictly above τ, and always the most confident one',
        input: { kind: 'number', min: 0, max: 1, step: 0.05, integer: false }, visible: (_s, m) => m?.architecture === 'fast_dllm_v2',
      },
      {
        key: 'blockCache', label: 'Block cache', help: 'Fast-dLLM v2: keep the block\'s K/V and compute only the sub-block\'s rows (DualCache inside the block)',
        input: { kind: 'checkbox' }, visible: (_s, m) => m?.architecture === 'fast_dllm_v2',
      },
      {
        key: 'stepsPerBlock', label: 'Steps per block', help: 'SDAR: denoising steps per block, at most the block size (0: the block size)',
        input: int(0), visible: (_s, m) => sdarDecoded(m),
      },
      {
        key: 'sdarRemasking', label: 'Remasking', help: 'SDAR: dynamic commits every confidence above τ when there are enough, else the schedule\'s most confident; static always the schedule\'s',
        input: { kind: 'select', options: [{ value: 'low_confidence_dynamic', label: 'dynamic' }, { value: 'low_confidence_static', label: 'static' }] },
        visible: (_s, m) => sdarDecoded(m),
      },
      {
        key: 'sdarThreshold', label: 'τ (>)', help: 'SDAR dynamic rule: positions with confidence above τ',
        input: { kind: 'number', min: 0, max: 1, step: 0.05, integer: false }, visible: (s, m) => sdarDecoded(m) && s.sdarRemasking === 'low_confidence_dynamic',
      },
    ],
  },
  {
    title: 'Sampling',
    fields: [
      { key: 'temperature', label: 'Temperature', help: '0: greedy; > 0: Gumbel-max sampling', input: { kind: 'number', min: 0, max: 10, step: 0.1, integer: false }, remote: true },
      { key: 'seed', label: 'Seed', help: 'u32 seed of the sampling noise', input: int(0, 0xffffffff), remote: true },
      { key: 'earlyStop', label: 'Early stop', help: 'stop once a block ends with only EOS after the first EOS', input: { kind: 'checkbox' }, visible: (_s, m) => masked(m) },
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

/** What is wrong with these settings for this model (empty when they can run); one sentence each. */
export function settingsProblems(s: DecodeSettings, m: ModelCaps | null, promptLength = 0): string[] {
  const out: string[] = [];
  const posInt = (v: number) => Number.isInteger(v) && v > 0;
  if (!posInt(s.genLength)) out.push('Generation length must be a positive integer.');
  if (m?.blockSize !== undefined) {
    const B = m.blockSize;
    if (m.architecture === 'fast_dllm_v2') {
      if (!posInt(s.subBlockLength) || B % s.subBlockLength !== 0) out.push(`The sub-block length must divide the model's block size ${B}.`);
      if (!(s.v2Threshold >= 0 && s.v2Threshold <= 1)) out.push('τ must be in [0, 1].');
    } else {
      if (!(Number.isInteger(s.stepsPerBlock) && s.stepsPerBlock >= 0 && s.stepsPerBlock <= B)) out.push(`Steps per block must be 0 (the block size) to ${B}.`);
      if (!(s.sdarThreshold >= 0 && s.sdarThreshold <= 1)) out.push('τ must be in [0, 1].');
    }
    if (!(s.temperature >= 0)) out.push('Temperature must be ≥ 0.');
    if (!(Number.isInteger(s.seed) && s.seed >= 0 && s.seed <= 0xffffffff)) out.push('Seed must be an integer in [0, 4294967295].');
    if (posInt(s.genLength) && promptLength + s.genLength > m.maxPositions) out.push(`The conversation plus the generation length exceeds the model's ${m.maxPositions} positions.`);
    return out;
  }
  if (!posInt(s.blockLength)) out.push('Block length must be a positive integer.');
  if (posInt(s.genLength) && posInt(s.blockLength) && s.genLength % s.blockLength !== 0) {
    out.push(`Generation length ${s.genLength} is not a multiple of block length ${s.blockLength}.`);
  }
  if (s.rule === 'threshold' && !(s.threshold > 0 && s.threshold <= 1)) out.push('τ must be in (0, 1].');
  if (s.rule === 'factor' && !(s.factor > 0)) out.push('f must be > 0.');
  if (s.rule === 'fixed' && posInt(s.genLength) && posInt(s.blockLength) && s.genLength % s.blockLength === 0) {
    const blocks = s.genLength / s.blockLength;
    if (!posInt(s.steps) || s.steps % blocks !== 0) out.push(`Steps must be a positive multiple of the number of blocks (${blocks}).`);
  }
  if (!(s.temperature >= 0)) out.push('Temperature must be ≥ 0.');
  if (!(Number.isInteger(s.seed) && s.seed >= 0 && s.seed <= 0xffffffff)) out.push('Seed must be an integer in [0, 4294967295].');
  if (!(Number.isInteger(s.slowMotionMs) && s.slowMotionMs >= 0)) out.push('Slow motion must be a whole number of milliseconds ≥ 0.');
  if (m && posInt(s.genLength) && promptLength + s.genLength > m.maxPositions) {
    out.push(promptLength > 0
      ? `The conversation (${promptLength} tokens) plus the generation length ${s.genLength} exceeds the model's ${m.maxPositions} positions; start a new chat or shorten the generation.`
      : `Generation length ${s.genLength} exceeds the model's ${m.maxPositions} positions.`);
  }
  return out;
}

export function strategyOf(s: DecodeSettings, m: ModelCaps | null = null): Strategy {
  if (m?.architecture === 'fast_dllm_v2') return { kind: 'fast_dllm_v2', subBlockLength: s.subBlockLength, threshold: s.v2Threshold, blockCache: s.blockCache };
  if (sdarDecoded(m)) {
    const dynamic = s.sdarRemasking === 'low_confidence_dynamic';
    return { kind: 'sdar', ...(s.stepsPerBlock > 0 ? { stepsPerBlock: s.stepsPerBlock } : {}), remasking: s.sdarRemasking, ...(dynamic ? { threshold: s.sdarThreshold } : {}) };
  }
  if (s.rule === 'threshold') return { kind: 'threshold', threshold: s.threshold };
  if (s.rule === 'factor') return { kind: 'factor', factor: s.factor };
  return { kind: 'fixed', remasking: 'low_confidence' };
}

/**
 * The scheduler request for a prompt; steps = genLength for the parallel rules (one per position at most). For a
 * block-diffusion model: its own strategy, genLength as the cap, the model's block.
 */
export function toRequest(s: DecodeSettings, prompt: Int32Array, m: ModelCaps | null = null): GenerationRequest {
  if (isBlockModel(m)) return { prompt, genLength: s.genLength, strategy: strategyOf(s, m), temperature: s.temperature, seed: s.seed };
  return {
    prompt, genLength: s.genLength, blockLength: s.blockLength, steps: s.rule === 'fixed' ? s.steps : s.genLength,
    strategy: strategyOf(s), cache: s.cache, temperature: s.temperature, seed: s.seed, earlyStop: s.earlyStop,
  };
}

/** One line describing the decoding (the scheduler's words for cache and rule), for the stats line. */
export function describeSettings(s: DecodeSettings, m: ModelCaps | null = null): string {
  if (isBlockModel(m)) return `${m!.architecture === 'sdar' ? 'SDAR' : m!.architecture === 'a2d_bd3lm' ? 'A2D BD3LM' : 'Fast-dLLM v2'}: ${describeDecoding(strategyOf(s, m), 'none')} · block ${m!.blockSize} · up to ${s.genLength} new tokens`;
  const steps = s.rule === 'fixed' ? ` · ${s.steps} steps` : '';
  return `${describeDecoding(strategyOf(s), s.cache)}${steps} · block ${s.blockLength} · gen ${s.genLength}`;
}
