/**
 * The decoding flags shared by generate, chat, bench and eval: only their syntax. What they mean is the
 * scheduler's resolver (resolveDecoding: the model family's recipe with the user's choices over it, DESIGN §11); a
 * refusal comes back naming the field, which is shown as its flag (FLAG_NAMES). The server and the web page map
 * their own fields to the same choices, so all three decode and refuse alike.
 */
import { Command, Option } from 'commander';
import {
  DEFAULT_BLOCK_LENGTH, DEFAULT_ELASTIC_GAMMA, DEFAULT_ENTROPY_BOUND, DEFAULT_GEN_LENGTH, DEFAULT_THRESHOLD, MAX_DRAFT_VERIFY, SDAR_THRESHOLD, SchedulerConfigError, checkChoices, checkGenerationRequest, requestOf,
  resolveDecoding, type DecodingChoices, type DecodingPlan, type FieldNames, type GenerationRequest,
} from '@fast-dllm/scheduler';
import { schedulerModelInfo, type ModelDescription } from '@fast-dllm/model';
import { AUTO_ORDER, ENGINE_CHOICES } from './engines.js';
import { UsageError } from './errors.js';
import { choiceArg, floatArg, intArg } from './parse.js';

export const STRATEGY_CHOICES = ['fixed', 'threshold', 'factor', 'entropy_bound'] as const;
/** none | prefix | dual: LLaDA/Dream's approximate cache; none | block: Fast-dLLM v2's DualCache inside the block. */
export const CACHE_CHOICES = ['none', 'prefix', 'dual', 'block'] as const;
/** low_confidence | random: LLaDA/Dream's fixed schedule; low_confidence_dynamic | low_confidence_static: SDAR's. */
export const REMASKING_CHOICES = ['low_confidence', 'random', 'low_confidence_dynamic', 'low_confidence_static'] as const;

export interface DecodeFlags {
  model?: string;
  engine: (typeof ENGINE_CHOICES)[number];
  genLength?: number;
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
  temperature?: number;
  seed?: number;
  /** Unset: the scheduler's default (on); --no-early-stop: false. */
  earlyStop?: boolean;
  refreshEvery?: number;
  /** DESIGN §16's policies (LLaDA/Dream). */
  entropyBound?: number;
  suffixWindow?: number;
  earlyCommit?: boolean;
  draftVerify?: number;
  /** Elastic-Cache's gamma (DESIGN §16). */
  elasticCache?: number;
  threads?: number;
  dtype?: (typeof DTYPE_CHOICES)[number];
}

/** Weight storage choices of --dtype (EngineOptions.weightDType); unset: each engine's default. */
export const DTYPE_CHOICES = ['f32', 'bf16', 'int8'] as const;

/** The decoding flags shared by generate, chat, bench and eval. */
export function addDecodeOptions(cmd: Command): Command {
  return cmd
    .option('--model <dir>', 'Hugging Face model directory (default: the bundled model)')
    .addOption(new Option('--engine <name>', `engine: auto tries ${AUTO_ORDER.join(', ')}`).argParser(choiceArg('--engine', ENGINE_CHOICES)).default('auto'))
    .addOption(new Option('--gen-length <n>', 'tokens to generate (Fast-dLLM v2 / SDAR: the cap on new tokens; a stop token ends the answer earlier)').argParser(intArg('--gen-length', 1)).default(DEFAULT_GEN_LENGTH))
    .addOption(new Option('--block-length <n>', `LLaDA/Dream: semi-autoregressive block length, divides --gen-length (default ${DEFAULT_BLOCK_LENGTH}); Fast-dLLM v2 / SDAR use the model's`).argParser(intArg('--block-length', 1)))
    .addOption(new Option('--steps <n>', 'LLaDA/Dream: total steps (default: --gen-length); a multiple of the block count').argParser(intArg('--steps', 1)))
    .addOption(new Option('--strategy <rule>', `LLaDA/Dream token selection (default: the model's Fast-dLLM recipe, threshold ${DEFAULT_THRESHOLD})`).argParser(choiceArg('--strategy', STRATEGY_CHOICES)))
    .addOption(new Option('--threshold <tau>', `confidence threshold: LLaDA/Dream parallel decoding (implies --strategy threshold); Fast-dLLM v2 (> tau, default ${DEFAULT_THRESHOLD}); SDAR dynamic rule (default ${SDAR_THRESHOLD})`).argParser(floatArg('--threshold', 0, 1)))
    .addOption(new Option('--factor <f>', 'LLaDA/Dream: factor rule with f > 0 (implies --strategy factor)').argParser(floatArg('--factor', 0, 1e9, true)))
    .addOption(new Option('--cache <mode>', 'LLaDA/Dream: approximate KV cache none|prefix|dual (default dual); Fast-dLLM v2: none|block (DualCache inside the block, default none)').argParser(choiceArg('--cache', CACHE_CHOICES)))
    .addOption(new Option('--remasking <rule>', 'LLaDA/Dream fixed-schedule ranking low_confidence|random (implies --strategy fixed); SDAR low_confidence_dynamic (default)|low_confidence_static').argParser(choiceArg('--remasking', REMASKING_CHOICES)))
    .addOption(new Option('--alg <alg>', "Dream's confidence rule").argParser(choiceArg('--alg', ['entropy', 'topk_margin', 'maskgit_plus', 'origin'] as const)))
    .addOption(new Option('--sub-block-length <b>', 'Fast-dLLM v2: sub-block length, divides the model\'s block (default 8)').argParser(intArg('--sub-block-length', 1)))
    .addOption(new Option('--steps-per-block <n>', 'SDAR: denoising steps per block, at most the block size (default: the block size)').argParser(intArg('--steps-per-block', 1)))
    .addOption(new Option('--temperature <t>', '0: greedy; > 0: Gumbel-max sampling').argParser(floatArg('--temperature', 0, 1e6)))
    .addOption(new Option('--seed <n>', 'u32 seed for sampling and random remasking').argParser(intArg('--seed', 0, 0xffffffff)))
    // Both spellings, so that earlyStop stays unset unless given and the scheduler's default decides.
    .option('--early-stop', 'LLaDA/Dream: stop once a finished block leaves only EOS after the first EOS (the default: it cannot change the answer)')
    .option('--no-early-stop', "LLaDA/Dream: decode every position, for the paper's exact NFE (block-diffusion models always stop at a stop token)")
    .addOption(new Option('--refresh-every <n>', 'LLaDA/Dream with a cache: an extra full forward every n steps inside a block').argParser(intArg('--refresh-every', 1)))
    .addOption(new Option('--entropy-bound <gamma>', `LLaDA/Dream: EB-Sampler, commit the lowest-entropy tokens while their entropy sum minus the largest is <= gamma nats (implies --strategy entropy_bound; default ${DEFAULT_ENTROPY_BOUND})`).argParser(floatArg('--entropy-bound', 0, 1e9)))
    .addOption(new Option('--suffix-window <n>', 'LLaDA/Dream: a forward sees only n positions past the current block; the masks beyond are not computed (default: the whole canvas)').argParser(intArg('--suffix-window', 0)))
    .option('--early-commit', 'LLaDA/Dream: Prophet\'s early commit, every mask a full forward sees at once when the top-1/top-2 gap is wide')
    .addOption(new Option('--draft-verify <k>', `LLaDA/Dream: FreeDave, each pass verifies k canvases drafted from the last result (2..${MAX_DRAFT_VERIFY}); the same answer as without it, in fewer passes (cache none or prefix; default prefix)`).argParser(intArg('--draft-verify', 2, MAX_DRAFT_VERIFY)))
    .addOption(new Option('--elastic-cache <gamma>', `LLaDA/Dream with the dual cache: Elastic-Cache, refresh the cache from the first layer whose attention on its most-attended token drifts below cosine similarity gamma in (0, 1] (paper: ${DEFAULT_ELASTIC_GAMMA}) instead of at every block`).argParser(floatArg('--elastic-cache', 0, 1, true)))
    .addOption(new Option('--threads <n>', 'worker threads for CPU engines').argParser(intArg('--threads', 1, 1024)))
    .addOption(new Option('--dtype <type>', "weight storage: f32, bf16, or int8 (CPU engines: a quarter of f32's memory, integer dot products); default: the engine's")
      .argParser(choiceArg('--dtype', DTYPE_CHOICES)));
}

/** Each decoding choice as the CLI spells it, for the scheduler's errors (SchedulerConfigError.messageWith). */
export const FLAG_NAMES: FieldNames = {
  prompt: '--prompt', genLength: '--gen-length', blockLength: '--block-length', steps: '--steps', rule: '--strategy', threshold: '--threshold',
  factor: '--factor', remasking: '--remasking', alg: '--alg', cache: '--cache', blockCache: '--cache block', subBlockLength: '--sub-block-length',
  stepsPerBlock: '--steps-per-block', refreshEvery: '--refresh-every', earlyStop: '--no-early-stop', entropyBound: '--entropy-bound', suffixWindow: '--suffix-window',
  earlyCommit: '--early-commit', draftVerify: '--draft-verify', elasticCache: '--elastic-cache', temperature: '--temperature', seed: '--seed', engine: '--engine',
};

/** The scheduler's refusal in flag names. */
export function asUsage(e: unknown): unknown {
  return e instanceof SchedulerConfigError ? new UsageError(e.messageWith(FLAG_NAMES)) : e;
}

/** The flags as the scheduler's neutral decoding choices (--strategy is the rule; --cache block is v2's block cache). */
export function choicesOf(f: DecodeFlags): DecodingChoices {
  const c: DecodingChoices = {
    rule: f.strategy, threshold: f.threshold, factor: f.factor, remasking: f.remasking, alg: f.alg,
    cache: f.cache === 'block' ? undefined : f.cache, blockCache: f.cache === 'block' ? true : undefined,
    genLength: f.genLength, blockLength: f.blockLength, steps: f.steps, subBlockLength: f.subBlockLength, stepsPerBlock: f.stepsPerBlock,
    refreshEvery: f.refreshEvery, earlyStop: f.earlyStop, entropyBound: f.entropyBound, suffixWindow: f.suffixWindow,
    earlyCommit: f.earlyCommit, draftVerify: f.draftVerify, elasticCache: f.elasticCache, temperature: f.temperature, seed: f.seed,
  };
  for (const k of Object.keys(c) as (keyof DecodingChoices)[]) if (c[k] === undefined) delete c[k];
  return c;
}

/** What runs: the scheduler's plan for the model (its family's recipe with the flags over it). */
export type Decoding = DecodingPlan;

/** The decoding plan the flags select on this model; a refusal is a UsageError naming the flag. */
export function decodingFrom(f: DecodeFlags, model: Pick<ModelDescription, 'architecture' | 'blockSize'>): Decoding {
  try {
    return resolveDecoding({ architecture: model.architecture, blockSize: model.blockSize }, choicesOf(f));
  } catch (e) {
    throw asUsage(e);
  }
}

/** The request of a plan for one prompt. */
export function requestFrom(d: Decoding, prompt: Int32Array): GenerationRequest {
  return requestOf(d, prompt);
}

/** The scheduler's validation of a request against the model (prompt ids, length), as a UsageError in flag names. */
export function checkRequest(req: GenerationRequest, model: ModelDescription): void {
  try {
    checkGenerationRequest(req, { name: 'the model', model: schedulerModelInfo(model) });
  } catch (e) {
    throw asUsage(e);
  }
}

/** Flag checks that need no model (before anything is loaded): the scheduler's checkChoices. */
export function checkFlags(f: DecodeFlags): void {
  try {
    checkChoices(choicesOf(f));
  } catch (e) {
    throw asUsage(e);
  }
}

/** The `settings` object of `--json` (fields in packages/cli/README.md). */
export function settingsOf(f: DecodeFlags, d: Decoding): Record<string, unknown> {
  const block = d.family === 'block';
  const blockCache = d.strategy.kind === 'fast_dllm_v2' && d.strategy.blockCache === true;
  return {
    genLength: d.genLength, blockLength: d.blockLength, steps: d.steps, cache: block ? (blockCache ? 'block' : 'none') : d.cache, strategy: d.strategy,
    decoding: d.description, temperature: d.temperature, seed: d.seed, earlyStop: block ? null : d.earlyStop,
    refreshEvery: d.refreshEvery, suffixWindow: d.suffixWindow, earlyCommit: d.earlyCommit, draftVerify: d.draftVerify, elasticCache: d.elasticCache, threads: f.threads ?? null, dtype: f.dtype ?? null,
  };
}
