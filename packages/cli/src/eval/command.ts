/**
 * `fast-dllm eval`: a benchmark (GSM8K, MATH, HumanEval, MBPP) read from its official file, prompted and scored
 * as lm-evaluation-harness does, decoded with the chosen settings or the paper's rows (DESIGN §6); prints the
 * paper's table and writes per-problem records with --out.
 */
import { writeFile } from 'node:fs/promises';
import os from 'node:os';
import { performance } from 'node:perf_hooks';
import type { Command } from 'commander';
import { Option } from 'commander';
import cliProgress from 'cli-progress';
import type { GenerationResult } from '@fast-dllm/scheduler';
import { checkBlockTableFlags, machineInfo, rowBase, markdownTable, rowsWithSpeedups, tablePlan, type BenchRow, type ExtraColumn, type RowPlan, type RowTotals } from '../bench.js';
import { addDecodeOptions, asUsage, checkFlags, checkRequest, decodingFrom, requestFrom, type DecodeFlags } from '../decode.js';
import { UsageError } from '../errors.js';
import { answerIds, withEngine } from '../generate.js';
import type { Io } from '../io.js';
import { openModelDir, type ModelDir } from '../modeldir.js';
import { choiceArg, intArg } from '../parse.js';
import { TASKS, readRecords, type Located, type TaskName } from './datasets.js';
import { decodeAll } from './decode.js';
import type { PromptStyle } from './prompts.js';
import { openSandbox, type Sandbox } from './sandbox.js';
import { humanevalSampleProgram, mbppSampleProgram, parseSamples, passAt1, scoreSamples } from './samples.js';
import { TASK_INFO, buildTask, parseProblems, type EvalTask, type ProblemScore } from './tasks.js';

interface EvalFlags extends DecodeFlags {
  task?: TaskName;
  data?: string;
  shots?: number;
  limit?: number;
  fewshotData?: string;
  promptStyle: PromptStyle;
  chatTemplate: boolean;
  rows: 'single' | 'paper';
  batch: number;
  out?: string;
  allowCodeExecution?: boolean;
  allowUnisolatedExecution?: boolean;
  samples?: string;
  python?: string;
  execTimeout: number;
  execMemory: number;
}

/** One problem in --out. */
export interface ProblemRecord extends ProblemScore {
  id: string;
  nfe: number;
  /** This generation's own wall time (with --batch > 1 it overlaps the others'). */
  wallMs: number;
  /** The generation as scored (decoded up to EOS, cut at the task's stop sequences). */
  output: string;
}

export interface EvalRow extends BenchRow {
  /** Every metric of the task as a fraction of problems (the first equals `accuracy`). */
  metrics: Record<string, number>;
  records: ProblemRecord[];
}

/**
 * The text of generated ids up to EOS / end-of-turn. Where the tokenizer cannot tell "16" and "1 6" apart (both encode
 * to the same ids; the bundled word-level tokenizer decodes them as "1 6"), the spaces between digits are
 * removed: the ids cannot say which was meant, and a number is the reading every scorer expects.
 */
export function textDecoder(md: ModelDir): (tokens: Int32Array) => string {
  const tok = md.tokenizer!;
  const same = (a: number[], b: number[]) => a.length === b.length && a.every((x, i) => x === b[i]);
  const spaced = same(tok.encode('1 6', { addSpecial: false }), tok.encode('16', { addSpecial: false })) && tok.decode(tok.encode('16', { addSpecial: false })) !== '16';
  const { stopIds } = md.description;
  return (tokens) => {
    const text = tok.decode(answerIds(tokens, stopIds), { skipSpecial: true });
    return spaced ? text.replace(/(?<=\d) (?=\d)/g, '') : text;
  };
}

/** Runs `fn` over 0..n-1 with at most `jobs` at once. */
async function pool(n: number, jobs: number, fn: (i: number) => Promise<void>): Promise<void> {
  let next = 0;
  const worker = async () => {
    while (next < n) await fn(next++);
  };
  await Promise.all(Array.from({ length: Math.min(jobs, n) }, worker));
}

function checkEvalFlags(o: EvalFlags): { task: TaskName; shots: number } {
  if (!o.task) throw new UsageError(`eval needs --task (${TASKS.join(', ')})`);
  if (!o.data) throw new UsageError(`eval needs --data FILE: the ${o.task} test file (JSONL, .jsonl.gz, Parquet or JSON)`);
  const info = TASK_INFO[o.task];
  if (info.code && !o.allowCodeExecution) {
    throw new UsageError(`--task ${o.task} runs the code the model writes, with its tests, on this machine; pass --allow-code-execution to accept that (each program runs in python3 isolated by bubblewrap: its own PID, mount and network namespaces, a time, memory and process limit, nothing writable but its own directory)`);
  }
  if (o.samples !== undefined && !info.code) throw new UsageError(`--samples scores code completions (--task humaneval or mbpp); --task ${o.task} is scored from a model's generations`);
  if (o.promptStyle === 'bare') {
    if (!info.bare) throw new UsageError(`--prompt-style bare applies to gsm8k and math; ${o.task}'s prompt is fixed`);
    if (o.shots !== undefined && o.shots > 0) throw new UsageError('--prompt-style bare is zero-shot (the question alone); drop --shots or use --prompt-style labeled');
    if (o.fewshotData) throw new UsageError('--prompt-style bare takes no --fewshot-data (it is zero-shot)');
  }
  const shots = o.promptStyle === 'bare' ? 0 : o.shots ?? info.defaultShots;
  if (o.rows === 'paper') {
    // As bench: the rows bring their own strategies and caches; --threshold and --factor set the rows' tau and f.
    if (o.strategy || o.cache || o.remasking || o.alg) throw new UsageError('--rows paper runs its own rows (strategies and caches); drop --strategy / --cache / --remasking / --alg');
    checkFlags({ ...o, threshold: undefined, factor: undefined });
  } else {
    checkFlags(o);
  }
  return { task: o.task, shots };
}

export function registerEval(program: Command, io: Io, signal: AbortSignal): void {
  const cmd = program
    .command('eval')
    .description("a benchmark from its official file (GSM8K, MATH, HumanEval, MBPP), scored as lm-evaluation-harness does, with the paper's table")
    .addOption(new Option('--task <name>', 'benchmark').argParser(choiceArg('--task', TASKS)))
    .option('--data <file>', 'the test split: JSONL, .jsonl.gz, Parquet, JSON, or the MATH release directory')
    .addOption(new Option('--shots <k>', 'few-shot exemplars (default: gsm8k 5, math 4, humaneval 0, mbpp 3)').argParser(intArg('--shots', 0)))
    .option('--fewshot-data <file>', 'exemplars from this file (the train split; MBPP: the prompt split) instead of the built-in ones')
    .addOption(new Option('--prompt-style <style>', "labeled: the harness's Question:/Answer: (Problem:/Solution:) format; bare: the question alone, zero-shot").argParser(choiceArg('--prompt-style', ['labeled', 'bare'] as const)).default('labeled'))
    .addOption(new Option('--limit <n>', 'first N problems').argParser(intArg('--limit', 1)))
    .addOption(new Option('--chat-template', "wrap each prompt in the model's chat template as one user turn").default(true))
    .option('--no-chat-template', 'feed the prompt text as it is (base models)')
    .addOption(new Option('--rows <which>', "single: the decode flags' setting (default: the model's Fast-dLLM recipe); paper: bench's table (baseline, caches, parallel, both; a block-diffusion model's own grid)").argParser(choiceArg('--rows', ['single', 'paper'] as const)).default('single'))
    .addOption(new Option('--batch <n>', "problems decoded together in each forward pass (1: the paper's batch-1 setting)").argParser(intArg('--batch', 1, 64)).default(1))
    .option('--out <file>', 'also write settings, machine, date, rows and per-problem records as JSON')
    .option('--allow-code-execution', 'humaneval/mbpp: run the generated programs and their tests (untrusted code)')
    .option('--allow-unisolated-execution', 'code tasks: run the programs even where bubblewrap cannot isolate them (they can then read your files and reach the network)')
    .option('--samples <file>', 'humaneval/mbpp: score these completions ({"task_id", "completion"} lines) instead of a model\'s; no model is loaded')
    .option('--python <path>', 'interpreter for code tasks (default: python3 on PATH)')
    .addOption(new Option('--exec-timeout <s>', 'wall-time limit per program, seconds').argParser(intArg('--exec-timeout', 1, 3600)).default(10))
    .addOption(new Option('--exec-memory <MB>', 'address-space limit per program, MiB').argParser(intArg('--exec-memory', 64, 1 << 20)).default(2048));
  addDecodeOptions(cmd).action(async (opts: EvalFlags) => {
    const { task: taskName, shots } = checkEvalFlags(opts);
    const records = await readRecords(opts.data!);
    const fewshot = opts.fewshotData ? { records: await readRecords(opts.fewshotData), source: opts.fewshotData } : undefined;
    const task = buildTask(taskName, opts.limit !== undefined ? records.slice(0, opts.limit) : records, { shots, style: opts.promptStyle, fewshot });
    const n = task.problems.length;
    if (n === 0) throw new UsageError(`${opts.data}: no problems`);
    // The sandbox is checked before the model loads: a missing python3 should not cost a model load.
    const sandbox = task.info.code
      ? await openSandbox({ python: opts.python, timeoutMs: opts.execTimeout * 1000, memoryBytes: opts.execMemory * 1024 * 1024, allowUnisolated: opts.allowUnisolatedExecution })
      : undefined;
    if (sandbox) {
      const how = sandbox.isolation === 'bubblewrap' ? 'isolated by bubblewrap (PID, mount and network namespaces)'
        : `NOT isolated (--allow-unisolated-execution), network ${sandbox.network === 'namespace' ? 'cut off by a network namespace' : 'refused by the Python guard only'}`;
      io.stderr(`sandbox: ${sandbox.python} (Python ${sandbox.pythonVersion}), ${how}, user ${sandbox.user}\n`);
    }
    if (opts.samples !== undefined) {
      await runSamples(opts, taskName, records, sandbox!, io, signal);
      return;
    }
    const md = await openModelDir(opts.model, { needTokenizer: true });
    let plan: RowPlan[];
    let baseline: number | null = null;
    if (opts.rows === 'paper') {
      // bench's table for this model: the paper's rows, or a block-diffusion family's own grid.
      if (md.description.blockSize !== undefined) checkBlockTableFlags(opts, md.description, 'eval --rows paper', 'its thresholds are bench\'s defaults');
      try {
        ({ rows: plan, baseline } = tablePlan(md.description, { threshold: opts.threshold, factor: opts.factor }, rowBase(opts)));
      } catch (e) {
        throw asUsage(e);
      }
    } else {
      const d = decodingFrom(opts, md.description);
      plan = [{ name: d.description, cache: d.cache, strategy: d.strategy, decoding: d }];
    }
    const prompts = task.problems.map((p, i) => {
      const ids = md.encodePrompt(task.prompt(i), opts.chatTemplate);
      try {
        checkRequest(requestFrom(plan[0].decoding, ids), md.description);
      } catch (e) {
        throw new UsageError(`problem ${p.id}: ${(e as Error).message}${shots > 0 ? ' (fewer --shots make the prompt shorter)' : ''}`);
      }
      return ids;
    });
    if (opts.rows === 'single') io.stderr(`decoding: ${plan[0].name}\n`);
    const decode = textDecoder(md);
    const totals: RowTotals[] = [];
    const scored: Array<Pick<EvalRow, 'metrics' | 'records'>> = [];
    const bar = process.stderr.isTTY
      ? new cliProgress.SingleBar({ stream: process.stderr, format: ' {bar} {value}/{total} | {row} | {phase}' }, cliProgress.Presets.shades_classic)
      : undefined;
    let engineName = '';
    let maxBatch = 1;
    await withEngine(opts, md, io, async (engine) => {
      engineName = engine.name;
      maxBatch = engine.capabilities.maxBatch;
      if (opts.batch > maxBatch) io.stderr(`note: --batch ${opts.batch}: the ${engine.name} engine takes at most ${maxBatch} sequences per pass\n`);
      // One untimed block of the first problem, so that the first row does not also pay the engine's warm-up.
      const d0 = plan[0].decoding;
      const warm = { ...requestFrom(d0, prompts[0]), genLength: d0.blockLength, ...(d0.steps !== null ? { steps: d0.steps / (d0.genLength / d0.blockLength) } : {}) };
      await decodeAll(md, engine, [warm], { batch: 1, signal });
      bar?.start(plan.length * n, 0, { row: plan[0].name, phase: 'decoding' });
      try {
        for (const p of plan) {
          bar?.update({ row: p.name, phase: 'decoding' });
          const requests = prompts.map((ids) => requestFrom(p.decoding, ids));
          const t0 = performance.now();
          const results = await decodeAll(md, engine, requests, { batch: opts.batch, signal, onResult: () => bar?.increment() });
          const wallMs = performance.now() - t0;
          const records = await scoreRow(task, results, decode, sandbox, signal, (done) => bar?.update({ phase: task.info.code ? `tests ${done}/${n}` : 'scoring' }));
          totals.push(rowTotals(results, records, wallMs));
          scored.push({ metrics: rowMetrics(task, records), records });
        }
      } finally {
        bar?.stop();
      }
    });
    // Speedups against the baseline row once every row is in (a block-diffusion grid's baseline is not its first row).
    const rows: EvalRow[] = rowsWithSpeedups(plan, totals, baseline).map((r, i) => ({ ...r, ...scored[i] }));
    const extra: Array<ExtraColumn<EvalRow>> = task.info.metrics.slice(1).map((m) => ({ header: `${m} %`, cell: (r) => (100 * r.metrics[m]).toFixed(1) }));
    io.stdout(`${markdownTable(rows, extra)}\n`);
    if (opts.out) {
      const settings = {
        task: taskName, data: opts.data, problems: n, shots, fewshot: task.shotsSource, promptStyle: opts.promptStyle, chatTemplate: opts.chatTemplate,
        accuracyMetric: task.info.metrics[0], model: md.dir, engine: engineName, genLength: plan[0].decoding.genLength, blockLength: plan[0].decoding.blockLength,
        steps: plan[0].decoding.steps, earlyStop: plan[0].decoding.earlyStop, temperature: plan[0].decoding.temperature, seed: plan[0].decoding.seed, batch: Math.min(opts.batch, maxBatch),
        threads: opts.threads ?? 1, warmup: 'one untimed block of the first problem before the rows',
        sandbox: sandbox ? { python: sandbox.python, pythonVersion: sandbox.pythonVersion, isolation: sandbox.isolation, network: sandbox.network, user: sandbox.user, ...sandbox.limits } : null,
        date: new Date().toISOString(), machine: { ...machineInfo(), memoryBytes: os.totalmem() },
      };
      await writeFile(opts.out, `${JSON.stringify({ settings, rows }, null, 2)}\n`);
    }
  });
}

/** --samples: scores existing completions against --data's problems; no model is loaded. */
async function runSamples(opts: EvalFlags, taskName: TaskName, problems: Located[], sandbox: Sandbox, io: Io, signal: AbortSignal): Promise<void> {
  const samples = parseSamples(await readRecords(opts.samples!));
  if (samples.length === 0) throw new UsageError(`${opts.samples}: no samples`);
  let programOf: (id: string, completion: string) => string | undefined;
  if (taskName === 'humaneval') {
    const byId = new Map(parseProblems('humaneval', problems).map((p) => [p.id, p]));
    programOf = (id, c) => { const p = byId.get(id); return p && humanevalSampleProgram(p, c); };
  } else {
    const byId = new Map(parseProblems('mbpp', problems).map((p) => [p.id, p]));
    programOf = (id, c) => { const p = byId.get(id); return p && mbppSampleProgram(p, c); };
  }
  const jobs = Math.max(1, Math.min(4, os.availableParallelism()));
  const records = await scoreSamples(samples, programOf, sandbox, { jobs, signal });
  const passed = records.filter((r) => r.passed).length;
  const p1 = passAt1(records);
  io.stdout(`${taskName}: ${passed}/${records.length} samples passed, pass@1 ${(100 * p1).toFixed(1)}% over ${new Set(records.map((r) => r.task_id)).size} tasks\n`);
  if (opts.out) {
    const settings = {
      task: taskName, data: opts.data, samples: opts.samples, date: new Date().toISOString(),
      sandbox: { python: sandbox.python, pythonVersion: sandbox.pythonVersion, isolation: sandbox.isolation, network: sandbox.network, user: sandbox.user, ...sandbox.limits },
    };
    await writeFile(opts.out, `${JSON.stringify({ settings, passAt1: p1, records }, null, 2)}\n`);
  }
}

async function scoreRow(
  task: EvalTask, results: GenerationResult[], decode: (t: Int32Array) => string, sandbox: Sandbox | undefined,
  signal: AbortSignal, onProgress: (done: number) => void,
): Promise<ProblemRecord[]> {
  const records: ProblemRecord[] = new Array(results.length);
  let done = 0;
  // Programs run a few at a time: each is one python3 process, mostly waiting on its own tests.
  const jobs = task.info.code ? Math.max(1, Math.min(4, os.availableParallelism())) : 1;
  await pool(results.length, jobs, async (i) => {
    signal.throwIfAborted();
    const output = task.trim(decode(results[i].tokens));
    const s = await task.score(i, output, sandbox, signal);
    records[i] = { id: task.problems[i].id, ...s, nfe: results[i].stats.nfe, wallMs: Math.round(results[i].stats.wallTimeMs * 10) / 10, output };
    onProgress(++done);
  });
  return records;
}

/** A row's sums over its generations and scored records (bench's RowTotals). */
function rowTotals(results: GenerationResult[], records: ProblemRecord[], wallMs: number): RowTotals {
  let nfe = 0, committed = 0, content = 0;
  for (const r of results) {
    nfe += r.stats.nfe;
    committed += r.stats.tokensPerForward * r.stats.nfe;
    content += r.stats.contentTokens;
  }
  return { problems: records.length, correct: records.filter((r) => r.correct).length, nfe, committed, content, wallMs };
}

/** Every metric of the task over a row's records, as a fraction. */
function rowMetrics(task: EvalTask, records: ProblemRecord[]): Record<string, number> {
  return Object.fromEntries(task.info.metrics.map((m) => [m, records.filter((r) => r.metrics[m]).length / records.length]));
}
