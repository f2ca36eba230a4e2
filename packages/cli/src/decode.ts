/**
 * The decoding flags shared by generate, chat, bench and eval, and how they become a scheduler request. What the
 * user leaves out comes from the model family's published Fast-dLLM recipe (the scheduler's defaultRecipe), so
 * the default is fast; every other setting is reachable with explicit flags. Validation is the scheduler's
 * (checkGenerationRequest), so the CLI and the server refuse the same things in the same words.
 */
import { Command, Option } from 'commander';
import {
  SchedulerConfigError, blockStrategyKindFor, checkGenerationRequest, defaultRecipe, describeDecoding, isBlockStrategy,
  type CacheMode, type GenerationRequest, type Strategy,
} from '@fast-dllm/scheduler';
import { schedulerModelInfo, type ModelDescription } from '@fast-dllm/model';
import { ENGINE_CHOICES } from './engines.js';
import { UsageError } from './errors.js';
import { choiceArg, floatArg, intArg } from './parse.js';

export const STRATEGY_CHOICES = ['fixed', 'threshold', 'factor'] as const;
/** none | prefix | dual: LLaDA/Dream's approximate cache; none | block: Fast-dLLM v2's DualCache inside the block. */
export const CACHE_CHOICES = ['none', 'prefix', 'dual', 'block'] as const;
/** low_confidence | random: LLaDA/Dream's fixed schedule; low_confidence_dynamic | low_confidence_static: SDAR's. */
export const REMASKING_CHOICES = ['low_confidence', 'random', 'low_confidence_dynamic', 'low_confidence_static'] as const;
/** LLaDA/Dream's block length when neither the flag nor the model gives one. */
export const DEFAULT_BLOCK_LENGTH = 32;

export interface DecodeFlags {
  model?: string;
  engine: (typeof ENGINE_CHOICES)[number];
  genLength: number;
  /** LLaDA/Dream (default 32); block-diffusion models take theirs from the model (a different value is refused). */
  blockLength?: number;
  steps?: number;
  strategy?: (typeof STRATEGY_CHOICES)[number];
  threshold?: number;
  factor?: number;
  cache?: (typeof CACHE_CHOICES)[number];
  remasking?: (typeof REMASKING_CHOICES)[number];
  alg?: 'entropy' | 'topk_margin' | 'maskgit_plus' | 'origin';
  /** Fast-dLLM v2. */
  subBlockLength?: number;
  /** SDAR. */
  stepsPerBlock?: number;
  temperature: number;
  seed: number;
  earlyStop?: boolean;
  refreshEvery?: number;
  threads?: number;
  dtype?: (typeof DTYPE_CHOICES)[number];
}

/** Weight storage choices of --dtype (EngineOptions.weightDType); unset: each engine's default. */
export const DTYPE_CHOICES = ['f32', 'bf16', 'int8'] as const;

/** The decoding flags shared by generate, chat, bench and eval. */
export function addDecodeOptions(cmd: Command): Command {
  return cmd
    .option('--model <dir>', 'Hugging Face model directory (default: the bundled model)')
    .addOption(new Option('--engine <name>', 'engine: auto tries cuda, wasm, reference').argParser(choiceArg('--engine', ENGINE_CHOICES)).default('auto'))
    .addOption(new Option('--gen-length <n>', 'tokens to generate (Fast-dLLM v2 / SDAR: the cap on new tokens; a stop token ends the answer earlier)').argParser(intArg('--gen-length', 1)).default(128))
    .addOption(new Option('--block-length <n>', `LLaDA/Dream: semi-autoregressive block length, divides --gen-length (default ${DEFAULT_BLOCK_LENGTH}); Fast-dLLM v2 / SDAR use the model's`).argParser(intArg('--block-length', 1)))
    .addOption(new Option('--steps <n>', 'LLaDA/Dream: total steps (default: --gen-length); a multiple of the block count').argParser(intArg('--steps', 1)))
    .addOption(new Option('--strategy <rule>', 'LLaDA/Dream token selection (default: the model\'s Fast-dLLM recipe, threshold 0.9)').argParser(choiceArg('--strategy', STRATEGY_CHOICES)))
    .addOption(new Option('--threshold <tau>', 'confidence threshold: LLaDA/Dream parallel decoding (implies --strategy threshold); Fast-dLLM v2 (> tau, default 0.9); SDAR dynamic rule (default 0.85)').argParser(floatArg('--threshold', 0, 1)))
    .addOption(new Option('--factor <f>', 'LLaDA/Dream: factor rule with f > 0 (implies --strategy factor)').argParser(floatArg('--factor', 0, 1e9, true)))
    .addOption(new Option('--cache <mode>', 'LLaDA/Dream: approximate KV cache none|prefix|dual (default dual); Fast-dLLM v2: none|block (DualCache inside the block, default none)').argParser(choiceArg('--cache', CACHE_CHOICES)))
    .addOption(new Option('--remasking <rule>', 'LLaDA/Dream fixed-schedule ranking low_confidence|random (implies --strategy fixed); SDAR low_confidence_dynamic (default)|low_confidence_static').argParser(choiceArg('--remasking', REMASKING_CHOICES)))
    .addOption(new Option('--alg <alg>', "Dream's confidence rule").argParser(choiceArg('--alg', ['entropy', 'topk_margin', 'maskgit_plus', 'origin'] as const)))
    .addOption(new Option('--sub-block-length <b>', 'Fast-dLLM v2: sub-block length, divides the model\'s block (default 8)').argParser(intArg('--sub-block-length', 1)))
    .addOption(new Option('--steps-per-block <n>', 'SDAR: denoising steps per block, at most the block size (default: the block size)').argParser(intArg('--steps-per-block', 1)))
    .addOption(new Option('--temperature <t>', '0: greedy; > 0: Gumbel-max sampling').argParser(floatArg('--temperature', 0, 1e6)).default(0))
    .addOption(new Option('--seed <n>', 'u32 seed for sampling and random remasking').argParser(intArg('--seed', 0, 0xffffffff)).default(0))
    .option('--early-stop', 'LLaDA/Dream: stop once everything after the first EOS is EOS (block-diffusion models always stop at a stop token)')
    .addOption(new Option('--refresh-every <n>', 'LLaDA/Dream with a cache: an extra full forward every n steps inside a block').argParser(intArg('--refresh-every', 1)))
    .addOption(new Option('--threads <n>', 'worker threads for CPU engines').argParser(intArg('--threads', 1, 1024)))
    .addOption(new Option('--dtype <type>', "weight storage: f32, bf16, or int8 (CPU engines: a quarter of f32's memory, integer dot products); default: the engine's")
      .argParser(choiceArg('--dtype', DTYPE_CHOICES)));
}

const SDAR_REMASKING: readonly string[] = ['low_confidence_dynamic', 'low_confidence_static'];

/** Flags given that only LLaDA/Dream (masked diffusion) take. --block-length is not one: a block model takes its own B. */
function maskedOnlyFlags(f: DecodeFlags): string[] {
  const out: string[] = [];
  if (f.steps !== undefined) out.push('--steps');
  if (f.strategy !== undefined) out.push('--strategy');
  if (f.factor !== undefined) out.push('--factor');
  if (f.alg !== undefined) out.push('--alg');
  if (f.refreshEvery !== undefined) out.push('--refresh-every');
  if (f.earlyStop) out.push('--early-stop');
  if (f.remasking !== undefined && !SDAR_REMASKING.includes(f.remasking)) out.push(`--remasking ${f.remasking}`);
  if (f.cache === 'prefix' || f.cache === 'dual') out.push(`--cache ${f.cache}`);
  return out;
}

/** Flags given that only Fast-dLLM v2 takes, and those only SDAR takes. */
function v2OnlyFlags(f: DecodeFlags): string[] {
  return [...(f.subBlockLength !== undefined ? ['--sub-block-length'] : []), ...(f.cache === 'block' ? ['--cache block'] : [])];
}
function sdarOnlyFlags(f: DecodeFlags): string[] {
  return [...(f.stepsPerBlock !== undefined ? ['--steps-per-block'] : []), ...(f.remasking !== undefined && SDAR_REMASKING.includes(f.remasking) ? [`--remasking ${f.remasking}`] : [])];
}

const FAMILY_NAME: Record<string, string> = { llada: 'LLaDA', dream: 'Dream', fast_dllm_v2: 'Fast-dLLM v2', sdar: 'SDAR', a2d_mdlm: 'A2D MDLM', a2d_bd3lm: 'A2D BD3LM' };

/** What the flags ask for, before the model is known: only the rules the flags break among themselves. */
function explicitStrategy(f: DecodeFlags): (typeof STRATEGY_CHOICES)[number] | undefined {
  const remasking = f.remasking !== undefined && !SDAR_REMASKING.includes(f.remasking) ? f.remasking : undefined;
  if (f.threshold !== undefined && f.factor !== undefined) throw new UsageError('--threshold and --factor are two different rules; pass one');
  if (remasking && (f.threshold !== undefined || f.factor !== undefined || f.alg)) {
    throw new UsageError('--remasking applies to the fixed schedule only; drop it with --threshold, --factor or --alg');
  }
  const implied = f.threshold !== undefined ? 'threshold' : f.factor !== undefined ? 'factor' : remasking ? 'fixed' : undefined;
  if (f.strategy && implied && f.strategy !== implied) {
    const flag = f.threshold !== undefined ? '--threshold' : f.factor !== undefined ? '--factor' : '--remasking';
    throw new UsageError(`${flag} implies --strategy ${implied}; it does not combine with --strategy ${f.strategy}`);
  }
  if (f.alg) {
    if (f.factor !== undefined || f.strategy === 'factor') throw new UsageError('--alg (Dream) does not combine with the factor rule; use --threshold or the schedule');
    if (f.alg === 'origin' && f.threshold !== undefined) throw new UsageError('--alg origin takes no --threshold');
    if (f.alg === 'entropy' && f.threshold !== undefined) {
      throw new UsageError("--alg entropy scores -entropy (<= 0), which no --threshold in (0, 1] reaches; Fast-dLLM's Dream threshold rule is --alg maskgit_plus --threshold tau");
    }
  }
  return f.strategy ?? implied;
}

export interface Decoding {
  strategy: Strategy;
  cache: CacheMode;
  /** The line printed on stderr: what runs, and whether it is the family's recipe. */
  description: string;
  /** Block-diffusion models: the model's block size (DESIGN §8). */
  blockSize?: number;
}

/**
 * The model family the flags (and the model, when known) select: masked diffusion (LLaDA, Dream) or one of the
 * block-diffusion models; flags of another family are refused, naming the flag and the model.
 */
function familyOf(f: DecodeFlags, model?: ModelDescription): 'masked' | 'fast_dllm_v2' | 'sdar' {
  const masked = maskedOnlyFlags(f), v2 = v2OnlyFlags(f), sdar = sdarOnlyFlags(f);
  if (model) {
    // A2D BD3LM decodes with SDAR's procedure and flags (DESIGN §15).
    const arch = blockStrategyKindFor(model.architecture);
    const name = FAMILY_NAME[model.architecture] ?? model.architecture;
    if (model.blockSize === undefined) {
      const wrong = [...v2, ...sdar];
      if (wrong.length) throw new UsageError(`${wrong[0]} applies to block-diffusion models (Fast-dLLM v2 / SDAR); this is a ${name} model`);
      return 'masked';
    }
    if (masked.length) {
      throw new UsageError(`${masked[0]} applies to LLaDA/Dream (masked diffusion); this ${name} model decodes block by block ` +
        `(${arch === 'sdar' ? '--steps-per-block, --remasking low_confidence_dynamic|low_confidence_static' : '--sub-block-length, --cache none|block'}, --threshold, --gen-length as the cap)`);
    }
    const other = arch === 'sdar' ? v2 : sdar;
    if (other.length) throw new UsageError(`${other[0]} applies to ${arch === 'sdar' ? 'Fast-dLLM v2' : 'SDAR'} models; this is a ${name} model`);
    if (f.blockLength !== undefined && f.blockLength !== model.blockSize) {
      throw new UsageError(`--block-length ${f.blockLength}: this ${name} model decodes in the blocks of ${model.blockSize} it was trained with; drop --block-length`);
    }
    return arch === 'sdar' ? 'sdar' : 'fast_dllm_v2';
  }
  const given = [masked.length && masked[0], v2.length && v2[0], sdar.length && sdar[0]].filter((x): x is string => Boolean(x));
  if (given.length > 1) throw new UsageError(`${given[0]} and ${given[1]} belong to different model families; pass the flags of one`);
  return v2.length ? 'fast_dllm_v2' : sdar.length ? 'sdar' : 'masked';
}

/**
 * The strategy and cache the flags select; what they leave open comes from the model family's recipe.
 * Without a model, the LLaDA recipe stands in (or, when only block-diffusion flags are given, that family's
 * procedure without its block-size defaults), for checks that need no model.
 */
export function decodingFrom(f: DecodeFlags, model?: ModelDescription): Decoding {
  const family = familyOf(f, model);
  if (family !== 'masked') return blockDecodingFrom(f, family, model);
  const kind = explicitStrategy(f);
  if (f.alg && model && model.architecture !== 'dream') throw new UsageError(`--alg is Dream's rule; ${model.architecture === 'llada' ? 'this' : 'the'} model is a ${model.architecture} model`);
  const recipe = defaultRecipe({ architecture: model?.architecture ?? 'llada' });
  const cache = (f.cache as CacheMode | undefined) ?? recipe.cache;
  let strategy: Strategy;
  if (f.alg) {
    strategy = { kind: 'dream', alg: f.alg, ...(kind === 'threshold' ? { threshold: f.threshold ?? 0.9 } : {}) };
  } else if (kind === 'threshold') strategy = { kind: 'threshold', threshold: f.threshold ?? 0.9 };
  else if (kind === 'factor') strategy = { kind: 'factor', factor: f.factor ?? 1 };
  else if (kind === 'fixed') strategy = { kind: 'fixed', remasking: (f.remasking as 'low_confidence' | 'random' | undefined) ?? 'low_confidence' };
  else strategy = recipe.strategy;
  const isRecipe = kind === undefined && !f.alg && f.cache === undefined;
  const description = isRecipe ? recipe.description : describeDecoding(strategy, cache);
  return { strategy, cache, description };
}

/** Fast-dLLM v2 / SDAR (DESIGN §8): the published recipe with the flags' overrides. */
function blockDecodingFrom(f: DecodeFlags, family: 'fast_dllm_v2' | 'sdar', model?: ModelDescription): Decoding {
  const B = model?.blockSize;
  const recipe = B !== undefined ? defaultRecipe({ architecture: model?.architecture ?? family, blockSize: B }) : undefined;
  let strategy: Strategy;
  if (family === 'fast_dllm_v2') {
    const base = recipe?.strategy as Extract<Strategy, { kind: 'fast_dllm_v2' }> | undefined;
    strategy = {
      kind: 'fast_dllm_v2', ...(f.subBlockLength ?? base?.subBlockLength) !== undefined ? { subBlockLength: f.subBlockLength ?? base!.subBlockLength } : {},
      threshold: f.threshold ?? base?.threshold ?? 0.9, blockCache: f.cache === 'block',
    };
  } else {
    const base = recipe?.strategy as Extract<Strategy, { kind: 'sdar' }> | undefined;
    const remasking = (f.remasking as 'low_confidence_dynamic' | 'low_confidence_static' | undefined) ?? 'low_confidence_dynamic';
    if (remasking === 'low_confidence_static' && f.threshold !== undefined) throw new UsageError('--remasking low_confidence_static takes no --threshold (only the dynamic rule thresholds)');
    strategy = {
      kind: 'sdar', ...(f.stepsPerBlock ?? base?.stepsPerBlock) !== undefined ? { stepsPerBlock: f.stepsPerBlock ?? base!.stepsPerBlock } : {}, remasking,
      ...(remasking === 'low_confidence_dynamic' ? { threshold: f.threshold ?? base?.threshold ?? 0.85 } : {}),
    };
  }
  const isRecipe = recipe !== undefined && f.subBlockLength === undefined && f.stepsPerBlock === undefined && f.remasking === undefined && f.threshold === undefined && f.cache === undefined;
  const description = isRecipe ? recipe.description : `${FAMILY_NAME[family]} (${describeDecoding(strategy, 'none')})`;
  return { strategy, cache: 'none', description, ...(B !== undefined ? { blockSize: B } : {}) };
}

export function requestFrom(f: DecodeFlags, prompt: Int32Array, d: Decoding): GenerationRequest {
  const common = { prompt, genLength: f.genLength, strategy: d.strategy, temperature: f.temperature, seed: f.seed };
  if (isBlockStrategy(d.strategy)) return { ...common, ...(f.blockLength !== undefined ? { blockLength: f.blockLength } : {}) };
  return {
    ...common, blockLength: f.blockLength ?? DEFAULT_BLOCK_LENGTH, steps: f.steps ?? f.genLength, cache: d.cache, earlyStop: f.earlyStop ?? false,
    ...(f.refreshEvery !== undefined ? { refreshEvery: f.refreshEvery } : {}),
  };
}

/**
 * The scheduler's own validation of a request, with the model when there is one (prompt ids, length), as a
 * UsageError; flag names replace the scheduler's field names so the message says what to change.
 */
export function checkRequest(req: GenerationRequest, model?: ModelDescription): void {
  try {
    checkGenerationRequest(req, model ? { name: 'the model', model: schedulerModelInfo(model) } : undefined);
  } catch (e) {
    if (!(e instanceof SchedulerConfigError)) throw e;
    const msg = e.message
      .replace(/^genLength (\d+) must be a multiple of blockLength (\d+)$/, '--gen-length $1 is not a multiple of --block-length $2')
      .replace(/^steps (\d+) must be a multiple of the number of blocks (\d+) \(genLength \/ blockLength\)$/, '--steps $1 is not a multiple of the number of blocks ($2 = gen-length / block-length)')
      .replace(/^refreshEvery needs a cache mode .*$/, '--refresh-every refreshes a cache; add --cache prefix or --cache dual (without a cache every step is already a full forward)')
      .replace(/^subBlockLength (\d+) must divide/, '--sub-block-length $1 must divide')
      .replace(/^stepsPerBlock (\d+) exceeds/, '--steps-per-block $1 exceeds')
      .replace(/genLength \((\d+)\)/, '--gen-length ($1)');
    throw new UsageError(msg);
  }
}

/**
 * Flag checks that need no model (before anything is loaded): conflicting flags, and the scheduler's rules on
 * lengths, steps and refresh, on a stand-in one-token prompt, when a LLaDA/Dream-only flag says which family the
 * model is (a bare --gen-length may be a block-diffusion model's cap).
 */
export function checkFlags(f: DecodeFlags): void {
  const d = decodingFrom(f);
  if (!isBlockStrategy(d.strategy) && maskedOnlyFlags(f).length === 0 && f.blockLength === undefined) return;
  checkRequest(requestFrom(f, Int32Array.of(0), d));
}

export function settingsOf(f: DecodeFlags, d: Decoding): Record<string, unknown> {
  const block = isBlockStrategy(d.strategy);
  return {
    genLength: f.genLength, blockLength: block ? d.blockSize ?? null : f.blockLength ?? DEFAULT_BLOCK_LENGTH, steps: block ? null : f.steps ?? f.genLength,
    cache: block ? (f.cache === 'block' ? 'block' : 'none') : d.cache, strategy: d.strategy,
    decoding: d.description, temperature: f.temperature, seed: f.seed, earlyStop: block ? null : f.earlyStop ?? false,
    refreshEvery: f.refreshEvery ?? null, threads: f.threads ?? null, dtype: f.dtype ?? null,
  };
}
