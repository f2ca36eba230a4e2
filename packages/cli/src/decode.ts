/**
 * The decoding flags shared by generate, chat, bench and eval, and how they become a scheduler request. What the
 * user leaves out comes from the model family's published Fast-dLLM recipe (the scheduler's defaultRecipe), so
 * the default is fast; every other setting is reachable with explicit flags. Validation is the scheduler's
 * (checkGenerationRequest), so the CLI and the server refuse the same things in the same words.
 */
import { Command, Option } from 'commander';
import {
  SchedulerConfigError, checkGenerationRequest, defaultRecipe, describeDecoding,
  type CacheMode, type GenerationRequest, type Strategy,
} from '@fast-dllm/scheduler';
import { schedulerModelInfo, type ModelDescription } from '@fast-dllm/model';
import { ENGINE_CHOICES } from './engines.js';
import { UsageError } from './errors.js';
import { choiceArg, floatArg, intArg } from './parse.js';

export const STRATEGY_CHOICES = ['fixed', 'threshold', 'factor'] as const;
export const CACHE_CHOICES = ['none', 'prefix', 'dual'] as const;

export interface DecodeFlags {
  model?: string;
  engine: (typeof ENGINE_CHOICES)[number];
  genLength: number;
  blockLength: number;
  steps?: number;
  strategy?: (typeof STRATEGY_CHOICES)[number];
  threshold?: number;
  factor?: number;
  cache?: CacheMode;
  remasking?: 'low_confidence' | 'random';
  alg?: 'entropy' | 'topk_margin' | 'maskgit_plus' | 'origin';
  temperature: number;
  seed: number;
  earlyStop?: boolean;
  refreshEvery?: number;
  threads?: number;
}

/** The decoding flags shared by generate, chat, bench and eval. */
export function addDecodeOptions(cmd: Command): Command {
  return cmd
    .option('--model <dir>', 'Hugging Face model directory (default: the bundled model)')
    .addOption(new Option('--engine <name>', 'engine: auto tries cuda, wasm, reference').argParser(choiceArg('--engine', ENGINE_CHOICES)).default('auto'))
    .addOption(new Option('--gen-length <n>', 'tokens to generate').argParser(intArg('--gen-length', 1)).default(128))
    .addOption(new Option('--block-length <n>', 'semi-autoregressive block length; divides --gen-length').argParser(intArg('--block-length', 1)).default(32))
    .addOption(new Option('--steps <n>', 'total steps (default: --gen-length); a multiple of the block count').argParser(intArg('--steps', 1)))
    .addOption(new Option('--strategy <rule>', 'token selection (default: the model\'s Fast-dLLM recipe, threshold 0.9)').argParser(choiceArg('--strategy', STRATEGY_CHOICES)))
    .addOption(new Option('--threshold <tau>', 'confidence-aware parallel decoding with threshold tau (implies --strategy threshold)').argParser(floatArg('--threshold', 0, 1)))
    .addOption(new Option('--factor <f>', 'factor rule with f > 0 (implies --strategy factor)').argParser(floatArg('--factor', 0, 1e9, true)))
    .addOption(new Option('--cache <mode>', 'approximate KV cache (default: the recipe\'s, dual)').argParser(choiceArg('--cache', CACHE_CHOICES)))
    .addOption(new Option('--remasking <rule>', 'fixed-schedule ranking (implies --strategy fixed)').argParser(choiceArg('--remasking', ['low_confidence', 'random'] as const)))
    .addOption(new Option('--alg <alg>', "Dream's confidence rule").argParser(choiceArg('--alg', ['entropy', 'topk_margin', 'maskgit_plus', 'origin'] as const)))
    .addOption(new Option('--temperature <t>', '0: greedy; > 0: Gumbel-max sampling').argParser(floatArg('--temperature', 0, 1e6)).default(0))
    .addOption(new Option('--seed <n>', 'u32 seed for sampling and random remasking').argParser(intArg('--seed', 0, 0xffffffff)).default(0))
    .option('--early-stop', 'stop once everything after the first EOS is EOS')
    .addOption(new Option('--refresh-every <n>', 'with a cache: an extra full forward every n steps inside a block').argParser(intArg('--refresh-every', 1)))
    .addOption(new Option('--threads <n>', 'worker threads for CPU engines').argParser(intArg('--threads', 1, 1024)));
}

/** What the flags ask for, before the model is known: only the rules the flags break among themselves. */
function explicitStrategy(f: DecodeFlags): (typeof STRATEGY_CHOICES)[number] | undefined {
  if (f.threshold !== undefined && f.factor !== undefined) throw new UsageError('--threshold and --factor are two different rules; pass one');
  if (f.remasking && (f.threshold !== undefined || f.factor !== undefined || f.alg)) {
    throw new UsageError('--remasking applies to the fixed schedule only; drop it with --threshold, --factor or --alg');
  }
  const implied = f.threshold !== undefined ? 'threshold' : f.factor !== undefined ? 'factor' : f.remasking ? 'fixed' : undefined;
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
}

/**
 * The strategy and cache the flags select; what they leave open comes from the model family's recipe.
 * Without a model, the LLaDA recipe stands in (for checks that need no model).
 */
export function decodingFrom(f: DecodeFlags, model?: ModelDescription): Decoding {
  const kind = explicitStrategy(f);
  if (f.alg && model && model.architecture !== 'dream') throw new UsageError(`--alg is Dream's rule; ${model.architecture === 'llada' ? 'this' : 'the'} model is a ${model.architecture} model`);
  const recipe = defaultRecipe({ architecture: model?.architecture ?? 'llada' });
  const cache = f.cache ?? recipe.cache;
  let strategy: Strategy;
  if (f.alg) {
    strategy = { kind: 'dream', alg: f.alg, ...(kind === 'threshold' ? { threshold: f.threshold ?? 0.9 } : {}) };
  } else if (kind === 'threshold') strategy = { kind: 'threshold', threshold: f.threshold ?? 0.9 };
  else if (kind === 'factor') strategy = { kind: 'factor', factor: f.factor ?? 1 };
  else if (kind === 'fixed') strategy = { kind: 'fixed', remasking: f.remasking ?? 'low_confidence' };
  else strategy = recipe.strategy;
  const isRecipe = kind === undefined && !f.alg && f.cache === undefined;
  const description = isRecipe ? recipe.description : describeDecoding(strategy, cache);
  return { strategy, cache, description };
}

export function requestFrom(f: DecodeFlags, prompt: Int32Array, d: Decoding): GenerationRequest {
  return {
    prompt, genLength: f.genLength, blockLength: f.blockLength, steps: f.steps ?? f.genLength, strategy: d.strategy,
    cache: d.cache, temperature: f.temperature, seed: f.seed, earlyStop: f.earlyStop ?? false,
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
      .replace(/genLength \((\d+)\)/, '--gen-length ($1)');
    throw new UsageError(msg);
  }
}

/**
 * Flag checks that need no model (before anything is loaded): conflicting flags and the scheduler's rules on
 * lengths, steps and refresh, on a stand-in one-token prompt.
 */
export function checkFlags(f: DecodeFlags): void {
  const d = decodingFrom(f);
  checkRequest(requestFrom(f, Int32Array.of(0), d));
}

export function settingsOf(f: DecodeFlags, d: Decoding): Record<string, unknown> {
  return {
    genLength: f.genLength, blockLength: f.blockLength, steps: f.steps ?? f.genLength, cache: d.cache, strategy: d.strategy,
    decoding: d.description, temperature: f.temperature, seed: f.seed, earlyStop: f.earlyStop ?? false,
    refreshEvery: f.refreshEvery ?? null, threads: f.threads ?? null,
  };
}
