/**
 * `fast-dllm generate`: one generation on a model directory, streamed as blocks complete, as one JSON object
 * (--json), or as a step-by-step view of the canvas being unmasked (--visual).
 */
import { Command, Option } from 'commander';
import { performance } from 'node:perf_hooks';
import cliProgress from 'cli-progress';
import type { Engine, GenerationEvent, LoadProgress, GenerationRequest, GenerationResult, Strategy } from '@fast-dllm/scheduler';
import { ENGINE_CHOICES, openEngine } from './engines.js';
import { UsageError } from './errors.js';
import { choiceArg, floatArg, idsArg, intArg } from './parse.js';
import { openModelDir, type ModelDir } from './modeldir.js';
import type { Io } from './main.js';

export interface DecodeFlags {
  model?: string;
  engine: (typeof ENGINE_CHOICES)[number];
  genLength: number;
  blockLength: number;
  steps?: number;
  threshold?: number;
  factor?: number;
  cache: 'none' | 'prefix' | 'dual';
  remasking?: 'low_confidence' | 'random';
  alg?: 'entropy' | 'topk_margin' | 'maskgit_plus' | 'origin';
  temperature: number;
  seed: number;
  earlyStop?: boolean;
  refreshEvery?: number;
  threads?: number;
  dtype?: (typeof DTYPE_CHOICES)[number];
}

/** Weight storage choices of --dtype (EngineOptions.weightDType); unset: each engine's default. */
export const DTYPE_CHOICES = ['f32', 'bf16', 'int8'] as const;

/** The decoding flags shared by generate and chat. */
export function addDecodeOptions(cmd: Command): Command {
  return cmd
    .option('--model <dir>', 'Hugging Face model directory (default: the bundled model)')
    .addOption(new Option('--engine <name>', 'engine: auto tries cuda, wasm, reference').argParser(choiceArg('--engine', ENGINE_CHOICES)).default('auto'))
    .addOption(new Option('--gen-length <n>', 'tokens to generate').argParser(intArg('--gen-length', 1)).default(128))
    .addOption(new Option('--block-length <n>', 'semi-autoregressive block length; divides --gen-length').argParser(intArg('--block-length', 1)).default(32))
    .addOption(new Option('--steps <n>', 'total steps (default: --gen-length); a multiple of the block count').argParser(intArg('--steps', 1)))
    .addOption(new Option('--threshold <tau>', 'confidence-aware parallel decoding with threshold tau').argParser(floatArg('--threshold', 0, 1)))
    .addOption(new Option('--factor <f>', 'factor rule with f > 0').argParser(floatArg('--factor', 0, 1e9, true)))
    .addOption(new Option('--cache <mode>', 'approximate KV cache').argParser(choiceArg('--cache', ['none', 'prefix', 'dual'] as const)).default('none'))
    .addOption(new Option('--remasking <rule>', 'fixed-schedule ranking').argParser(choiceArg('--remasking', ['low_confidence', 'random'] as const)))
    .addOption(new Option('--alg <alg>', "Dream's confidence rule").argParser(choiceArg('--alg', ['entropy', 'topk_margin', 'maskgit_plus', 'origin'] as const)))
    .addOption(new Option('--temperature <t>', '0: greedy; > 0: Gumbel-max sampling').argParser(floatArg('--temperature', 0, 1e6)).default(0))
    .addOption(new Option('--seed <n>', 'u32 seed for sampling and random remasking').argParser(intArg('--seed', 0, 0xffffffff)).default(0))
    .option('--early-stop', 'stop once everything after the first EOS is EOS')
    .addOption(new Option('--refresh-every <n>', 'with --cache: an extra full forward every n steps inside a block').argParser(intArg('--refresh-every', 1)))
    .addOption(new Option('--threads <n>', 'worker threads for CPU engines').argParser(intArg('--threads', 1, 1024)))
    .addOption(new Option('--dtype <type>', "weight storage: f32, bf16, or int8 (CPU engines: a quarter of f32's memory, integer dot products); default: the engine's")
      .argParser(choiceArg('--dtype', DTYPE_CHOICES)));
}

/** Checks flag combinations that need no model; returns the strategy. */
export function strategyFrom(f: DecodeFlags, model?: ModelDir): Strategy {
  if (f.threshold !== undefined && f.factor !== undefined) throw new UsageError('--threshold and --factor are two different rules; pass one');
  if (f.remasking && (f.threshold !== undefined || f.factor !== undefined || f.alg)) {
    throw new UsageError('--remasking applies to the fixed schedule only; drop it with --threshold, --factor or --alg');
  }
  if (f.refreshEvery !== undefined && f.cache === 'none') {
    throw new UsageError('--refresh-every refreshes a cache; add --cache prefix or --cache dual (without a cache every step is already a full forward)');
  }
  if (f.genLength % f.blockLength !== 0) throw new UsageError(`--gen-length ${f.genLength} is not a multiple of --block-length ${f.blockLength}`);
  const blocks = f.genLength / f.blockLength;
  const steps = f.steps ?? f.genLength;
  if (steps % blocks !== 0) throw new UsageError(`--steps ${steps} is not a multiple of the number of blocks (${blocks} = gen-length / block-length)`);
  if (f.alg) {
    if (f.factor !== undefined) throw new UsageError('--alg (Dream) does not combine with --factor; use --threshold or the schedule');
    if (f.alg === 'origin' && f.threshold !== undefined) throw new UsageError("--alg origin takes no --threshold");
    if (f.alg === 'entropy' && f.threshold !== undefined) {
      throw new UsageError("--alg entropy scores -entropy (<= 0), which no --threshold in (0, 1] reaches; Fast-dLLM's Dream threshold rule is --alg maskgit_plus --threshold tau");
    }
    if (model && model.description.architecture !== 'dream') throw new UsageError(`--alg is Dream's rule; ${model.dir} is a ${model.description.architecture} model`);
    return { kind: 'dream', alg: f.alg, threshold: f.threshold };
  }
  if (f.threshold !== undefined) return { kind: 'threshold', threshold: f.threshold };
  if (f.factor !== undefined) return { kind: 'factor', factor: f.factor };
  return { kind: 'fixed', remasking: f.remasking ?? 'low_confidence' };
}

export function requestFrom(f: DecodeFlags, prompt: Int32Array, strategy: Strategy): GenerationRequest {
  return {
    prompt, genLength: f.genLength, blockLength: f.blockLength, steps: f.steps ?? f.genLength, strategy,
    cache: f.cache, temperature: f.temperature, seed: f.seed, earlyStop: f.earlyStop ?? false,
    ...(f.refreshEvery !== undefined ? { refreshEvery: f.refreshEvery } : {}),
  };
}

export function settingsOf(f: DecodeFlags, strategy: Strategy): Record<string, unknown> {
  return {
    genLength: f.genLength, blockLength: f.blockLength, steps: f.steps ?? f.genLength, cache: f.cache, strategy,
    temperature: f.temperature, seed: f.seed, earlyStop: f.earlyStop ?? false, refreshEvery: f.refreshEvery ?? null,
    threads: f.threads ?? null, dtype: f.dtype ?? null,
  };
}

/** Generated ids up to (not including) the first EOS / end-of-turn. */
export function answerIds(tokens: Int32Array, eos: number, eot?: number): Int32Array {
  let n = 0;
  while (n < tokens.length && tokens[n] !== eos && tokens[n] !== eot) n++;
  return tokens.subarray(0, n);
}

/**
 * Prints text as blocks complete: after each block, the decoded answer so far minus what was printed.
 * Stops at the first EOS / end-of-turn.
 */
export function blockStreamer(md: ModelDir, promptLength: number, genLength: number, write: (s: string) => void) {
  const gen = new Int32Array(genLength).fill(md.description.special.mask); // (genLength,) committed ids, mask elsewhere
  let printed = '';
  return (ev: GenerationEvent) => {
    if (ev.type === 'step') {
      ev.positions.forEach((p, i) => (gen[p - promptLength] = ev.tokens[i]));
    } else if (ev.type === 'block' && md.tokenizer) {
      const done = answerIds(gen.subarray(0, ev.end - promptLength), md.description.special.eos, md.description.special.endOfTurn);
      const text = md.tokenizer.decode(done, { skipSpecial: true });
      if (text.startsWith(printed) && text.length > printed.length) {
        write(text.slice(printed.length));
        printed = text;
      }
    }
  };
}

/** One line per step: a map of the generation (`.` masked, `#` committed before, `^` committed now) and the new tokens. */
export function visualizer(md: ModelDir, promptLength: number, genLength: number, write: (s: string) => void) {
  const state = new Uint8Array(genLength); // (genLength,) 0 masked, 1 committed
  return (ev: GenerationEvent) => {
    if (ev.type !== 'step') return;
    const now = new Set<number>();
    ev.positions.forEach((p) => now.add(p - promptLength));
    let map = '';
    for (let i = 0; i < genLength; i++) map += now.has(i) ? '^' : state[i] ? '#' : '.';
    now.forEach((i) => (state[i] = 1));
    const words = Array.from(ev.positions, (p, i) => {
      const t = ev.tokens[i];
      const s = md.tokenizer ? JSON.stringify(md.tokenizer.decode([t])) : String(t);
      return `${p - promptLength}:${s}`;
    });
    write(`nfe ${String(ev.nfe).padStart(4)} block ${ev.block} step ${ev.step} ${ev.mode.padEnd(6)} |${map}| +${ev.positions.length} ${words.join(' ')}\n`);
  };
}

/**
 * The same engine, but each forward first yields to the event loop. A CPU engine's forward can resolve
 * through microtasks only, which would starve signal delivery: Ctrl-C must reach the AbortController
 * between forward passes, and streamed output must flush.
 */
function yielding(engine: Engine): Engine {
  return {
    name: engine.name,
    model: engine.model,
    capabilities: engine.capabilities,
    forward: async (req, signal) => {
      await new Promise<void>((r) => setImmediate(r));
      signal?.throwIfAborted();
      return engine.forward(req, signal);
    },
    dispose: () => engine.dispose(),
  };
}

export async function withEngine<T>(f: DecodeFlags, md: ModelDir, io: Io, fn: (e: Engine, loadMs: number) => Promise<T>): Promise<T> {
  const t0 = performance.now();
  // Loading a large checkpoint takes a while: show the engine's progress on a terminal.
  let bar: cliProgress.SingleBar | undefined;
  const onProgress = process.stderr.isTTY
    ? (p: LoadProgress) => {
        if (!bar) {
          bar = new cliProgress.SingleBar({ stream: process.stderr, format: ' loading {bar} {value}/{total} {unit} | {phase}' }, cliProgress.Presets.shades_classic);
          bar.start(p.total, p.done, { phase: p.phase, unit: p.unit });
        }
        bar.setTotal(p.total);
        bar.update(p.done, { phase: p.phase, unit: p.unit });
      }
    : undefined;
  let engine: Engine;
  try {
    engine = await openEngine(f.engine, md.dir, { threads: f.threads, weightDType: f.dtype, onProgress }, (l) => io.stderr(`${l}\n`));
  } finally {
    bar?.stop();
  }
  const loadMs = performance.now() - t0;
  try {
    return await fn(yielding(engine), loadMs);
  } finally {
    await engine.dispose();
  }
}

/** Prompt ids the model cannot take: out of vocabulary, the mask token, or too long with the generation. */
export function checkPrompt(prompt: Int32Array, md: ModelDir, genLength: number): void {
  const d = md.description;
  for (const t of prompt) {
    if (t >= d.vocabSize) throw new UsageError(`prompt token ${t} is outside the model's vocabulary (${d.vocabSize})`);
    if (t === d.special.mask) throw new UsageError(`the prompt contains the mask token ${t}`);
  }
  if (prompt.length + genLength > d.maxPositions) {
    throw new UsageError(`prompt (${prompt.length} tokens) + --gen-length ${genLength} exceeds the model's ${d.maxPositions} positions`);
  }
}

export function registerGenerate(program: Command, io: Io, signal: AbortSignal): void {
  const cmd = program
    .command('generate')
    .description('generate a completion for one prompt')
    .option('--prompt <text>', 'prompt text (wrapped in the chat template unless --no-chat-template)')
    .addOption(new Option('--prompt-ids <ids>', 'comma-separated prompt token ids, used as they are').argParser(idsArg('--prompt-ids')))
    .option('--no-chat-template', 'encode --prompt as plain text')
    .option('--json', 'print one JSON object (fields in packages/cli/README.md)')
    .option('--visual', 'show the canvas being unmasked step by step');
  addDecodeOptions(cmd).action(async (opts: DecodeFlags & { prompt?: string; promptIds?: Int32Array; chatTemplate: boolean; json?: boolean; visual?: boolean }) => {
    if ((opts.prompt === undefined) === (opts.promptIds === undefined)) throw new UsageError('pass exactly one of --prompt TEXT or --prompt-ids 12,34,...');
    if (opts.json && opts.visual) throw new UsageError('--json and --visual are two output formats; pass one');
    strategyFrom(opts); // flag-only checks before touching the model
    const md = await openModelDir(opts.model, { needTokenizer: opts.prompt !== undefined });
    const strategy = strategyFrom(opts, md);
    const prompt = opts.promptIds ?? md.encodePrompt(opts.prompt!, opts.chatTemplate);
    checkPrompt(prompt, md, opts.genLength);
    const request = requestFrom(opts, prompt, strategy);
    await withEngine(opts, md, io, async (engine, loadMs) => {
      const onEvent = opts.json ? undefined : opts.visual
        ? visualizer(md, prompt.length, opts.genLength, io.stdout)
        : blockStreamer(md, prompt.length, opts.genLength, io.stdout);
      const result: GenerationResult = await md.run(engine, request, { signal, onEvent });
      const answer = answerIds(result.tokens, md.description.special.eos, md.description.special.endOfTurn);
      const text = md.tokenizer ? md.tokenizer.decode(answer, { skipSpecial: true }) : null;
      if (opts.json) {
        io.stdout(`${JSON.stringify({
          engine: engine.name,
          model: md.dir,
          settings: settingsOf(opts, strategy),
          promptIds: Array.from(prompt),
          outputIds: Array.from(result.tokens),
          answerIds: Array.from(answer),
          text,
          nfe: result.stats.nfe,
          forwardsByMode: result.stats.forwardsByMode,
          steps: result.steps.map((s) => ({ block: s.block, step: s.step, mode: s.mode, nfe: s.nfe, positions: Array.from(s.positions), tokens: Array.from(s.tokens) })),
          stoppedEarly: result.stoppedEarly,
          timings: { loadMs, generateMs: result.stats.wallTimeMs },
          stats: { tokensPerForward: result.stats.tokensPerForward, contentTokens: result.stats.contentTokens, tokensPerSecond: result.stats.tokensPerSecond },
        })}\n`);
      } else {
        if (opts.visual && text !== null) io.stdout(`${text}`);
        io.stdout('\n');
        io.stderr(`nfe ${result.stats.nfe}, ${result.stats.tokensPerForward.toFixed(2)} tokens/forward, ${result.stats.tokensPerSecond.toFixed(1)} tokens/s\n`);
      }
    });
  });
}

