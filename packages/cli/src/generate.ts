/**
 * `fast-dllm generate`: one generation on a model directory, streamed as its committed text grows, as one JSON
 * object (--json), or as a step-by-step view of the canvas being unmasked (--visual); or many prompts from a JSONL
 * file (--prompts-file), decoded batched, one JSON object per line in input order.
 */
import { readFile } from 'node:fs/promises';
import { Command, Option } from 'commander';
import { performance } from 'node:perf_hooks';
import cliProgress from 'cli-progress';
import { CommittedTextStream, committedPrefix, type Engine, type Generation, type GenerationEvent, type LoadProgress, type GenerationResult } from '@fast-dllm/scheduler';
import { openEngine } from './engines.js';
import { UsageError } from './errors.js';
import { idsArg, intArg } from './parse.js';
import { openModelDir, type ModelDir } from './modeldir.js';
import { addDecodeOptions, checkFlags, checkRequest, decodingFrom, requestFrom, settingsOf, type DecodeFlags, type Decoding } from './decode.js';
import type { Io } from './io.js';

/** Generated ids up to (not including) the first stop token (the model's stopIds: EOS, end of turn; DESIGN §8–9). */
export function answerIds(tokens: Int32Array, stopIds: readonly number[]): Int32Array {
  return committedPrefix(tokens, NO_MASK, stopIds).ids; // a finished answer holds no mask
}

/** No token id: a finished generation has no mask left to stop the committed prefix at. */
const NO_MASK = -1;

/**
 * Prints the committed text as it grows (DESIGN §9: the longest mask-free prefix of the answer, cut at the first
 * stop token); never retracts what it printed.
 */
export function textStreamer(md: ModelDir, write: (s: string) => void) {
  const tokenizer = md.tokenizer;
  if (!tokenizer) return () => undefined;
  // The scheduler's committed-text stream: a character split across tokens is printed once it is whole.
  const stream = new CommittedTextStream((ids) => tokenizer.decode(ids, { skipSpecial: true }));
  return (_ev: GenerationEvent, g: Generation) => {
    const c = g.committed();
    const delta = stream.update(c.ids, c.stopped || g.done);
    if (delta) write(delta);
  };
}

/**
 * One line per step: a map of the generation (`.` masked, `#` committed before, `^` committed now, `_` a stop
 * token committed before: EOS padding after the answer) and the new tokens. A run of 8 or more masked or padding
 * cells is written once with its length (`_{96}`, `.{64}`), as is a run of the same stop token in the token list
 * (`32-63:"<|endoftext|>"`): at the default 128 positions most of the canvas is padding, which was a wall of
 * cells wider than a terminal.
 */
export function visualizer(md: ModelDir, promptLength: number, genLength: number, write: (s: string) => void) {
  const state = new Uint8Array(genLength); // (genLength,) 0 masked, 1 committed, 2 committed stop token
  const stops = new Set(md.description.stopIds);
  const text = (t: number) => (md.tokenizer ? JSON.stringify(md.tokenizer.decode([t])) : String(t));
  return (ev: GenerationEvent) => {
    if (ev.type !== 'step') return;
    const now = new Map<number, number>(); // position in the answer -> token committed now
    ev.positions.forEach((p, i) => now.set(p - promptLength, ev.tokens[i]));
    let map = '';
    for (let i = 0; i < genLength;) {
      const cell = (k: number): [string, boolean] => {
        const t = now.get(k);
        if (t !== undefined) return ['^', stops.has(t)];
        return state[k] === 2 ? ['_', true] : state[k] === 1 ? ['#', false] : ['.', true];
      };
      const [ch, collapsible] = cell(i);
      let j = i + 1;
      while (j < genLength && cell(j)[0] === ch && cell(j)[1] === collapsible) j++;
      map += collapsible && j - i >= 8 ? `${ch}{${j - i}}` : ch.repeat(j - i);
      i = j;
    }
    now.forEach((t, i) => (state[i] = stops.has(t) ? 2 : 1));
    const order = [...now.entries()].sort((a, b) => a[0] - b[0]);
    const words: string[] = [];
    for (let k = 0; k < order.length;) {
      let e = k + 1;
      if (stops.has(order[k][1])) while (e < order.length && order[e][1] === order[k][1] && order[e][0] === order[e - 1][0] + 1) e++;
      words.push(e - k >= 3 ? `${order[k][0]}-${order[e - 1][0]}:${text(order[k][1])}` : order.slice(k, e).map(([p, t]) => `${p}:${text(t)}`).join(' '));
      k = e;
    }
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
    sequenceBytes: (n) => engine.sequenceBytes(n),
    sequenceCapacity: (n) => engine.sequenceCapacity(n),
    openSequence: (n) => engine.openSequence(n),
    closeSequence: (s) => engine.closeSequence(s),
    forward: async (batch, signal) => {
      await new Promise<void>((r) => setImmediate(r));
      signal?.throwIfAborted();
      return engine.forward(batch, signal);
    },
    dispose: () => engine.dispose(),
  };
}

export async function withEngine<T>(f: DecodeFlags, md: ModelDir, io: Io, fn: (e: Engine, loadMs: number) => Promise<T>): Promise<T> {
  const t0 = performance.now();
  // Loading a large checkpoint takes a while: show the engine's progress on a terminal only (nothing of it reaches
  // a pipe). The bar is erased before anything else is written, so the engine line stands whole on its own line.
  let bar: cliProgress.SingleBar | undefined;
  let loaded = false;
  const endBar = () => {
    loaded = true;
    bar?.stop(); // clearOnComplete: erases the bar's line
    bar = undefined;
  };
  const onProgress = process.stderr.isTTY
    ? (p: LoadProgress) => {
        if (loaded) return;
        if (!bar) {
          bar = new cliProgress.SingleBar(
            { stream: process.stderr, format: ' loading {bar} {value}/{total} {unit} | {phase}', clearOnComplete: true, hideCursor: true },
            cliProgress.Presets.shades_classic,
          );
          bar.start(p.total, p.done, { phase: p.phase, unit: p.unit });
        }
        bar.setTotal(p.total);
        bar.update(p.done, { phase: p.phase, unit: p.unit });
      }
    : undefined;
  let engine: Engine;
  try {
    engine = await openEngine(f.engine, md.dir, { threads: f.threads, weightDType: f.dtype, onProgress }, (l) => {
      endBar();
      io.stderr(`${l}\n`);
    });
  } finally {
    endBar();
  }
  const loadMs = performance.now() - t0;
  try {
    return await fn(yielding(engine), loadMs);
  } finally {
    await engine.dispose();
  }
}

/** The JSON object `generate --json` prints for one result (fields in packages/cli/README.md). */
export function resultJson(md: ModelDir, engine: Engine, f: DecodeFlags, d: Decoding, prompt: Int32Array, result: GenerationResult, loadMs: number): Record<string, unknown> {
  const answer = answerIds(result.tokens, md.description.stopIds);
  return {
    engine: engine.name,
    model: md.dir,
    settings: settingsOf(f, d),
    promptIds: Array.from(prompt),
    outputIds: Array.from(result.tokens),
    answerIds: Array.from(answer),
    text: md.tokenizer ? md.tokenizer.decode(answer, { skipSpecial: true }) : null,
    nfe: result.stats.nfe,
    forwardsByMode: result.stats.forwardsByMode,
    steps: result.steps.map((s) => ({ block: s.block, step: s.step, mode: s.mode, nfe: s.nfe, positions: Array.from(s.positions), tokens: Array.from(s.tokens) })),
    stoppedEarly: result.stoppedEarly,
    timings: { loadMs, generateMs: result.stats.wallTimeMs },
    stats: { tokensPerForward: result.stats.tokensPerForward, contentTokens: result.stats.contentTokens, tokensPerSecond: result.stats.tokensPerSecond },
  };
}

/**
 * One prompt of a --prompts-file: text (through the chat template unless --no-chat-template) or token ids; its
 * line number in the file and the line's own "id", when it has one, go into its output line.
 */
export type PromptLine = ({ prompt: string } | { prompt_ids: number[] }) & { line: number; id?: string | number };

/** Reads a JSONL prompts file; a bad line is a UsageError naming the file and line. */
export async function readPromptsFile(path: string): Promise<PromptLine[]> {
  let text: string;
  try {
    text = await readFile(path, 'utf8');
  } catch (e) {
    throw new UsageError(`--prompts-file: cannot read ${path} (${(e as NodeJS.ErrnoException).code ?? (e as Error).message})`);
  }
  const out: PromptLine[] = [];
  text.split('\n').forEach((line, i) => {
    if (line.trim() === '') return;
    const where = `${path}:${i + 1}`;
    let v: unknown;
    try {
      v = JSON.parse(line);
    } catch {
      throw new UsageError(`--prompts-file ${where}: not a JSON object`);
    }
    const o = v as Record<string, unknown>;
    if (typeof v !== 'object' || v === null || Array.isArray(v)) throw new UsageError(`--prompts-file ${where}: expected an object with "prompt" or "prompt_ids"`);
    const hasText = 'prompt' in o, hasIds = 'prompt_ids' in o;
    if ('id' in o && typeof o.id !== 'string' && typeof o.id !== 'number') throw new UsageError(`--prompts-file ${where}: "id" must be a string or a number`);
    const tag = { line: i + 1, ...(o.id !== undefined ? { id: o.id as string | number } : {}) };
    if (hasText === hasIds) throw new UsageError(`--prompts-file ${where}: give exactly one of "prompt" (text) or "prompt_ids" (token ids)`);
    if (hasText) {
      if (typeof o.prompt !== 'string') throw new UsageError(`--prompts-file ${where}: "prompt" must be a string`);
      out.push({ prompt: o.prompt, ...tag });
    } else {
      const ids = o.prompt_ids;
      if (!Array.isArray(ids) || ids.length === 0 || !ids.every((x) => Number.isInteger(x) && x >= 0 && x <= 0x7fffffff)) {
        throw new UsageError(`--prompts-file ${where}: "prompt_ids" must be a non-empty array of non-negative integer token ids`);
      }
      out.push({ prompt_ids: ids as number[], ...tag });
    }
  });
  if (out.length === 0) throw new UsageError(`--prompts-file ${path}: no prompts in the file`);
  return out;
}

type GenerateOpts = DecodeFlags & {
  prompt?: string; promptIds?: Int32Array; promptsFile?: string; batch: number; chatTemplate: boolean; json?: boolean; visual?: boolean;
};

export function registerGenerate(program: Command, io: Io, signal: AbortSignal): void {
  const cmd = program
    .command('generate')
    .description('generate a completion for one prompt, or for every prompt of a JSONL file (batched)')
    .argument('[prompt...]', 'the prompt text, as --prompt (words are joined with spaces, so quotes are optional)')
    .option('--prompt <text>', 'prompt text (wrapped in the chat template unless --no-chat-template)')
    .addOption(new Option('--prompt-ids <ids>', 'comma-separated prompt token ids, used as they are').argParser(idsArg('--prompt-ids')))
    .option('--prompts-file <file>', 'JSONL, one {"prompt": TEXT} or {"prompt_ids": [IDS]} per line; prints one JSON object per line')
    .addOption(new Option('--batch <n>', 'with --prompts-file: sequences decoded together in each forward pass').argParser(intArg('--batch', 1, 64)).default(8))
    .option('--no-chat-template', 'encode --prompt as plain text')
    .option('--json', 'print one JSON object (fields in packages/cli/README.md)')
    .option('--visual', 'show the canvas being unmasked step by step');
  addDecodeOptions(cmd).action(async (words: string[], opts: GenerateOpts, command: Command) => {
    if (words.length > 0) {
      if (opts.prompt !== undefined) throw new UsageError(`the prompt was given twice, as '${words.join(' ')}' and as --prompt; pass one`);
      opts.prompt = words.join(' ');
    }
    if (command.getOptionValueSource('batch') === 'cli' && opts.promptsFile === undefined) {
      throw new UsageError('--batch N decodes the prompts of a --prompts-file together; one --prompt is one sequence, so drop --batch or pass --prompts-file FILE');
    }
    const sources = [opts.prompt !== undefined, opts.promptIds !== undefined, opts.promptsFile !== undefined].filter(Boolean).length;
    if (sources !== 1) throw new UsageError('pass exactly one of --prompt TEXT, --prompt-ids 12,34,... or --prompts-file FILE');
    if (opts.json && opts.visual) throw new UsageError('--json and --visual are two output formats; pass one');
    if (opts.promptsFile && opts.visual) throw new UsageError('--visual shows one generation; it does not combine with --prompts-file');
    checkFlags(opts); // flag-only checks before touching the model
    const lines = opts.promptsFile ? await readPromptsFile(opts.promptsFile) : null;
    const needTokenizer = opts.prompt !== undefined || (lines?.some((l) => 'prompt' in l) ?? false);
    const md = await openModelDir(opts.model, { needTokenizer });
    const decoding = decodingFrom(opts, md.description);
    const encode = (l: PromptLine): Int32Array => ('prompt' in l ? md.encodePrompt(l.prompt, opts.chatTemplate) : Int32Array.from(l.prompt_ids));
    const prompts = lines ? lines.map(encode) : [opts.promptIds ?? md.encodePrompt(opts.prompt!, opts.chatTemplate)];
    const requests = prompts.map((p, i) => {
      const req = requestFrom(decoding, p);
      try {
        checkRequest(req, md.description);
      } catch (e) {
        throw lines ? new UsageError(`--prompts-file line ${lines[i].line}: ${(e as Error).message}`) : e;
      }
      return req;
    });
    io.stderr(`decoding: ${decoding.description}\n`);
    const texts = lines ? lines.map((l) => ['prompt' in l ? l.prompt : undefined, `--prompts-file line ${l.line}: `] as const) : [[opts.prompt, ''] as const];
    for (const [text, where] of texts) {
      const w = text === undefined ? null : md.warnFor(text);
      if (w) io.stderr(`${where}${w}\n`);
    }
    await withEngine(opts, md, io, async (engine, loadMs) => {
      if (lines) {
        // Results print in input order as soon as every earlier one is done.
        const done: (GenerationResult | undefined)[] = [];
        let next = 0;
        await md.runMany(engine, requests, {
          batch: opts.batch, signal,
          onResult: (i, r) => {
            done[i] = r;
            for (; next < done.length && done[next]; next++) {
              const l = lines[next];
              // Which input line this is, by its line number, its "id" and its text, not only by order.
              const tag = { line: l.line, ...(l.id !== undefined ? { id: l.id } : {}), ...('prompt' in l ? { prompt: l.prompt } : {}) };
              io.stdout(`${JSON.stringify({ ...tag, ...resultJson(md, engine, opts, decoding, prompts[next], done[next]!, loadMs) })}\n`);
            }
          },
        });
        return;
      }
      const prompt = prompts[0];
      const onEvent = opts.json ? undefined : opts.visual ? visualizer(md, prompt.length, decoding.genLength, io.stdout) : textStreamer(md, io.stdout);
      const result = await md.run(engine, requests[0], { signal, onEvent });
      const json = resultJson(md, engine, opts, decoding, prompt, result, loadMs);
      if (opts.json) {
        io.stdout(`${JSON.stringify(json)}\n`);
      } else {
        if (opts.visual && json.text !== null) io.stdout(`${json.text}`);
        io.stdout('\n');
        if (json.text === '') io.stderr('(empty answer: the model ended its answer at once)\n');
        io.stderr(`nfe ${result.stats.nfe}, ${result.stats.tokensPerForward.toFixed(2)} tokens/forward, ${result.stats.tokensPerSecond.toFixed(1)} tokens/s\n`);
      }
    });
  });
}
