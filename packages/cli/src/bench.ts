/**
 * `fast-dllm bench`: the paper's ablation table (DESIGN §6) on a model and an eval set: accuracy, NFE, tokens per
 * forward, tokens/s and speedup for the baseline, each cache mode, parallel decoding, and their combination.
 * On a block-diffusion model (DESIGN §8) it runs that family's own table instead: Fast-dLLM v2's threshold ×
 * sub-block grid and its block cache at the published recipe; SDAR's steps per block × static / dynamic
 * remasking. Speedups are against one token per step.
 */
import { writeFile } from 'node:fs/promises';
import os from 'node:os';
import { performance } from 'node:perf_hooks';
import type { Command } from 'commander';
import { Option } from 'commander';
import cliProgress from 'cli-progress';
import {
  DEFAULT_ELASTIC_GAMMA, DEFAULT_ENTROPY_BOUND, requestOf, resolveDecoding, type CacheMode, type DecodingChoices, type DecodingModel, type DecodingPlan, type Strategy,
} from '@fast-dllm/scheduler';
import type { ModelDescription } from '@fast-dllm/model';
import { UsageError } from './errors.js';
import { addDecodeOptions, asUsage, checkRequest, choicesOf, decodingFrom, type DecodeFlags } from './decode.js';
import { answerIds, withEngine } from './generate.js';
import type { Io } from './io.js';
import { openModelDir } from './modeldir.js';
import { choiceArg, floatArg, intArg } from './parse.js';

export const SWEEP_TAUS: readonly number[] = [0.5, 0.6, 0.7, 0.8, 0.9, 0.95, 1.0];

/** --sweep-cache: comma-separated cache modes. */
function cacheList(v: string): CacheMode[] {
  return v.split(',').map((c) => choiceArg('--sweep-cache', ['none', 'prefix', 'dual'] as const)(c.trim()));
}

/** --sweep-taus: comma-separated numbers in [0, 1]. */
function tauList(v: string): number[] {
  return v.split(',').map(floatArg('--sweep-taus', 0, 1));
}

export interface BenchRow {
  name: string;
  cache: CacheMode;
  strategy: Strategy;
  problems: number;
  /** Fraction of problems answered exactly. */
  accuracy: number;
  /** Its 95% Wilson score interval [low, high]: how far the fraction may be from the model's true rate. */
  accuracyCi: [number, number];
  /** Mean forward passes per problem. */
  nfe: number;
  /** Generated positions committed per forward pass, over all problems. */
  tokensPerForward: number;
  /** Non-EOS generated tokens per second of generation time, over all problems (DESIGN §5). */
  tokensPerSecond: number;
  /** tokensPerSecond / the baseline's (null with --sweep-only: no baseline row). */
  speedup: number | null;
  /** Wall time to decode all problems of the row (engine load excluded; batched rows overlap problems), ms. */
  wallTimeMs: number;
  /** The baseline's wallTimeMs / this row's: the same prompts, end to end (null with --sweep-only). */
  wallSpeedup: number | null;
}

interface EvalLike {
  prompt: string;
  answer: string;
}

/** One row of the table before the model is known: a name and the decoding choices that make the row. */
export interface RowSpec {
  name: string;
  choices: DecodingChoices;
}

/** A row on the model: the scheduler's plan for its choices (a Dream model gets Dream's rules), its cache and strategy. */
export interface RowPlan {
  name: string;
  cache: CacheMode;
  strategy: Strategy;
  decoding: DecodingPlan;
}

/** Keys of the table's rows for --rows, in table order: the paper's, then DESIGN §16's policies (with --policies). */
export const TABLE_ROWS = [
  'baseline', 'prefix', 'dual', 'parallel', 'dual-parallel', 'dual-factor', 'dual-eb', 'dual-window', 'dual-early-commit', 'dual-elastic',
  'draft-verify', 'prefix-draft-verify', 'stack-threshold', 'stack-eb', 'stack-eb-window', 'stack-elastic', 'stack-verify',
] as const;
const POLICY_ROWS: readonly string[] = [
  'dual-eb', 'dual-window', 'dual-early-commit', 'dual-elastic', 'draft-verify', 'prefix-draft-verify', 'stack-threshold', 'stack-eb',
  'stack-eb-window', 'stack-elastic', 'stack-verify',
];

/** The suffix window of the policy rows when --suffix-window is not given: the block after the current one. */
export const POLICY_SUFFIX_WINDOW = 32;

/** Canvases per verify pass of the draft-and-verify rows when --draft-verify is not given. */
export const POLICY_DRAFTS = 4;

/** The policy rows' settings (DESIGN §16): EB-Sampler's gamma, the suffix window, draft and verify's canvases, Elastic-Cache's gamma. */
export interface PolicyRowSettings {
  gamma: number;
  window: number;
  drafts: number;
  elastic: number;
}

/** --rows: comma-separated keys of TABLE_ROWS, kept in table order. */
function rowList(v: string): Array<(typeof TABLE_ROWS)[number]> {
  const keys = v.split(',').map((k) => k.trim()).filter((k) => k.length > 0);
  for (const k of keys) {
    if (!(TABLE_ROWS as readonly string[]).includes(k)) throw new UsageError(`--rows: '${k}' is not a row; expected some of ${TABLE_ROWS.join(', ')}`);
  }
  if (keys.length === 0) throw new UsageError(`--rows: expected some of ${TABLE_ROWS.join(', ')}`);
  return TABLE_ROWS.filter((k) => keys.includes(k));
}

/**
 * The paper's rows (DESIGN §6; `only`: those of TABLE_ROWS named; `policies`: DESIGN §16's rows too), then one row
 * per sweep threshold and sweep cache (default dual), as choices: on a Dream model the resolver makes them Dream's
 * schedule and Dream's threshold rule.
 */
export function rowsFor(
  tau: number, factor: number, sweep: readonly number[] | null, sweepOnly: boolean, only?: readonly string[], policies?: PolicyRowSettings,
  sweepCaches?: readonly CacheMode[],
): RowSpec[] {
  const { gamma, window, drafts, elastic } = policies ?? { gamma: 0, window: 0, drafts: 0, elastic: 0 };
  const rows: Array<RowSpec & { key: (typeof TABLE_ROWS)[number] }> = [
    { key: 'baseline', name: 'baseline', choices: { rule: 'fixed', cache: 'none' } },
    { key: 'prefix', name: '+ prefix cache', choices: { rule: 'fixed', cache: 'prefix' } },
    { key: 'dual', name: '+ dual cache', choices: { rule: 'fixed', cache: 'dual' } },
    { key: 'parallel', name: `+ parallel (threshold ${tau})`, choices: { threshold: tau, cache: 'none' } },
    { key: 'dual-parallel', name: `+ dual cache + parallel (threshold ${tau})`, choices: { threshold: tau, cache: 'dual' } },
    { key: 'dual-factor', name: `+ dual cache + parallel (factor ${factor})`, choices: { factor, cache: 'dual' } },
    { key: 'dual-eb', name: `+ dual cache + EB-Sampler (gamma ${gamma})`, choices: { entropyBound: gamma, cache: 'dual' } },
    { key: 'dual-window', name: `+ dual cache + parallel (threshold ${tau}) + suffix window ${window}`, choices: { threshold: tau, cache: 'dual', suffixWindow: window } },
    { key: 'dual-early-commit', name: `+ dual cache + parallel (threshold ${tau}) + early commit`, choices: { threshold: tau, cache: 'dual', earlyCommit: true } },
    { key: 'dual-elastic', name: `+ dual cache + parallel (threshold ${tau}) + Elastic-Cache (gamma ${elastic})`, choices: { threshold: tau, cache: 'dual', elasticCache: elastic } },
    // FreeDave (DESIGN §16): the baseline's answer, and the prefix cache's, in fewer passes.
    { key: 'draft-verify', name: `+ draft and verify (${drafts} canvases)`, choices: { rule: 'fixed', cache: 'none', draftVerify: drafts } },
    { key: 'prefix-draft-verify', name: `+ prefix cache + parallel (threshold ${tau}) + draft and verify ${drafts}`, choices: { threshold: tau, cache: 'prefix', draftVerify: drafts } },
    { key: 'stack-threshold', name: `stack: dual cache + threshold ${tau} + suffix window ${window} + early commit`,
      choices: { threshold: tau, cache: 'dual', suffixWindow: window, earlyCommit: true } },
    { key: 'stack-eb', name: `stack: dual cache + EB-Sampler (gamma ${gamma}) + suffix window ${window} + early commit`,
      choices: { entropyBound: gamma, cache: 'dual', suffixWindow: window, earlyCommit: true } },
    // The same without early commit: for a model that is confident about far positions it gets wrong.
    { key: 'stack-eb-window', name: `stack: dual cache + EB-Sampler (gamma ${gamma}) + suffix window ${window}`,
      choices: { entropyBound: gamma, cache: 'dual', suffixWindow: window } },
    { key: 'stack-elastic', name: `stack: dual cache + threshold ${tau} + suffix window ${window} + early commit + Elastic-Cache ${elastic}`,
      choices: { threshold: tau, cache: 'dual', suffixWindow: window, earlyCommit: true, elasticCache: elastic } },
    { key: 'stack-verify', name: `stack: prefix cache + threshold ${tau} + suffix window ${window} + draft and verify ${drafts}`,
      choices: { threshold: tau, cache: 'prefix', suffixWindow: window, draftVerify: drafts } },
  ].filter((r) => policies !== undefined || !POLICY_ROWS.includes(r.key)) as Array<RowSpec & { key: (typeof TABLE_ROWS)[number] }>;
  const sweepRows: RowSpec[] = (sweepCaches ?? ['dual']).flatMap((cache) =>
    (sweep ?? []).map((t) => ({ name: `sweep: ${cache} cache, threshold ${t}`, choices: { threshold: t, cache } })));
  const table = rows.filter((r) => !only || only.includes(r.key)).map(({ name, choices }) => ({ name, choices }));
  return sweepOnly ? sweepRows : [...table, ...sweepRows];
}

/** Fast-dLLM v2's threshold sweep (DESIGN §8: a confidence must be > tau; tau = 1 is one token per step). */
export const BLOCK_SWEEP_TAUS: readonly number[] = [1.0, 0.95, 0.9, 0.7, 0.5];
/** Fast-dLLM v2's sub-block lengths swept, besides the whole block (those that divide B). */
export const BLOCK_SUB_BLOCKS: readonly number[] = [4, 8];

/** A table's rows and the index of its baseline row (null when the rows leave the baseline out). */
export interface TablePlan {
  rows: RowPlan[];
  baseline: number | null;
}

/** A block-diffusion table: its rows and which one is the baseline (one token per step). */
export interface BlockPlan {
  rows: RowSpec[];
  baseline: number;
}

/**
 * The table of a block-diffusion model (DESIGN §8). Fast-dLLM v2: every sub-block length b in {4, 8, B} that
 * divides B × every tau in `taus` (default {1, 0.95, 0.9, 0.7, 0.5}), then the block cache at the published recipe
 * (sub-block 8, `threshold` default 0.9); the baseline is the recipe's sub-block at tau = 1. SDAR: steps per block
 * n in {B, B/2, B/4, ..., 1}, each static and dynamic (threshold `threshold`, default 0.85, or each of `taus`); the
 * baseline is static with n = B.
 */
export function blockRowsFor(model: DecodingModel, taus: readonly number[] | null, threshold: number | undefined): BlockPlan {
  const B = model.blockSize;
  if (B === undefined) throw new Error(`blockRowsFor: a ${model.architecture} model is not a block-diffusion model`);
  const recipe = resolveDecoding(model, {}).strategy; // the family's recipe
  if (recipe.kind === 'fast_dllm_v2') {
    const r = recipe.subBlockLength!;
    const subs = [...new Set([...BLOCK_SUB_BLOCKS, B])].filter((b) => b <= B && B % b === 0);
    const sweep = taus ?? BLOCK_SWEEP_TAUS;
    const rows: RowSpec[] = [];
    let baseline = -1;
    const v2 = (b: number, tau: number, blockCache: boolean): DecodingChoices => ({ subBlockLength: b, threshold: tau, blockCache });
    for (const b of subs) {
      for (const tau of sweep) {
        const base = b === r && tau === 1;
        if (base) baseline = rows.length;
        rows.push({ name: `${base ? 'baseline: ' : ''}sub-block ${b}, threshold ${tau}${base ? ' (one token per step)' : ''}`, choices: v2(b, tau, false) });
      }
    }
    if (baseline < 0) {
      rows.unshift({ name: `baseline: sub-block ${r}, threshold 1 (one token per step)`, choices: v2(r, 1, false) });
      baseline = 0;
    }
    const tau = threshold ?? recipe.threshold!;
    rows.push({ name: `sub-block ${r}, threshold ${tau}, block cache`, choices: v2(r, tau, true) });
    return { rows, baseline };
  }
  if (recipe.kind !== 'sdar') throw new Error(`blockRowsFor: no table for the ${model.architecture} family`);
  const rows: RowSpec[] = [];
  const dynamicTaus = taus ?? [threshold ?? recipe.threshold!];
  for (let n = B; n >= 1; n = n % 2 === 0 ? n / 2 : 0) {
    const steps = `${n} step${n === 1 ? '' : 's'} per block`;
    rows.push({ name: `${n === B ? 'baseline: ' : ''}${steps}, static${n === B ? ' (one token per step)' : ''}`, choices: { stepsPerBlock: n, remasking: 'low_confidence_static' } });
    for (const tau of dynamicTaus) {
      rows.push({ name: `${steps}, dynamic threshold ${tau}`, choices: { stepsPerBlock: n, remasking: 'low_confidence_dynamic', threshold: tau } });
    }
  }
  return { rows, baseline: 0 };
}

/** The choices of the decode flags that every row shares (lengths, sampling, early stop); the rows make the rest. */
export function rowBase(f: DecodeFlags): DecodingChoices {
  const { genLength, blockLength, steps, refreshEvery, earlyStop, temperature, seed } = choicesOf(f);
  const c: DecodingChoices = { genLength, blockLength, steps, refreshEvery, earlyStop, temperature, seed };
  for (const k of Object.keys(c) as (keyof DecodingChoices)[]) if (c[k] === undefined) delete c[k];
  return c;
}

/**
 * The table bench (and `eval --rows paper`) runs on a model: a block-diffusion family's own grid (blockRowsFor;
 * `sweep` sets its thresholds), else the paper's rows (rowsFor) with tau `threshold` (the recipe's) and f `factor`
 * (1), then one row per `sweep` threshold (only those with `sweepOnly`); `only` picks rows of TABLE_ROWS. Each row
 * is `base` with its own choices over it, resolved by the scheduler for this model (SchedulerConfigError if refused).
 */
export function tablePlan(
  model: DecodingModel,
  o: {
    threshold?: number; factor?: number; sweep?: readonly number[] | null; sweepOnly?: boolean; only?: readonly string[]; policies?: PolicyRowSettings;
    sweepCaches?: readonly CacheMode[];
  } = {},
  base: DecodingChoices = {},
): TablePlan {
  let specs: RowSpec[];
  let baseline: number | null;
  if (model.blockSize !== undefined) {
    ({ rows: specs, baseline } = blockRowsFor(model, o.sweep ?? null, o.threshold));
  } else {
    // The rows' tau and f: the flags', else the family's own rules' (the scheduler's defaults).
    const recipeTau = (resolveDecoding(model, { rule: 'threshold' }).strategy as { threshold?: number }).threshold!;
    const ruleFactor = (resolveDecoding(model, { rule: 'factor' }).strategy as { factor?: number }).factor!;
    specs = rowsFor(o.threshold ?? recipeTau, o.factor ?? ruleFactor, o.sweep ?? null, o.sweepOnly ?? false, o.only, o.policies, o.sweepCaches);
    baseline = specs[0]?.name === 'baseline' ? 0 : null;
  }
  const rows = specs.map(({ name, choices }) => {
    const decoding = resolveDecoding(model, { ...base, ...choices });
    return { name, cache: decoding.cache, strategy: decoding.strategy, decoding };
  });
  return { rows, baseline };
}

/**
 * A block-diffusion model's table (blockRowsFor) on `command`: the family's own flags and refusals (DESIGN §8), then
 * a refusal of what the table sweeps itself (sub-block lengths, steps per block) and of the command's `more` flags.
 */
export function checkBlockTableFlags(f: DecodeFlags, model: ModelDescription, command: string, hint: string, more: ReadonlyArray<readonly [unknown, string]> = []): void {
  decodingFrom(f, model);
  const swept: ReadonlyArray<readonly [unknown, string]> = [[f.subBlockLength !== undefined, '--sub-block-length'], [f.stepsPerBlock !== undefined, '--steps-per-block']];
  for (const [given, flag] of [...more, ...swept]) {
    if (given) {
      throw new UsageError(`${flag}: on a block-diffusion model ${command} runs the family's own table (Fast-dLLM v2: threshold × sub-block ${BLOCK_SUB_BLOCKS.join(', ')}, B; ` +
        `SDAR: steps per block × static/dynamic); ${hint}`);
    }
  }
}

/** Sums over one row's generations. */
export interface RowTotals {
  problems: number;
  correct: number;
  nfe: number;
  /** Generated positions committed, over all forwards. */
  committed: number;
  /** Non-EOS generated tokens (DESIGN §5). */
  content: number;
  /** Generation wall time of the row, ms. */
  wallMs: number;
}

/**
 * A table row from its totals. Speedups are against `baseline`: 'self' for the baseline row itself (1x), null
 * when the run has no baseline row.
 */
export function benchRow(plan: RowPlan, t: RowTotals, baseline: BenchRow | 'self' | null): BenchRow {
  const tps = t.wallMs > 0 ? t.content / (t.wallMs / 1000) : 0;
  const ratio = (f: (b: BenchRow) => number) => (baseline === null ? null : baseline === 'self' ? 1 : f(baseline));
  return {
    name: plan.name, cache: plan.cache, strategy: plan.strategy, problems: t.problems, accuracy: t.correct / t.problems,
    accuracyCi: wilsonInterval(t.correct, t.problems),
    nfe: t.nfe / t.problems, tokensPerForward: t.committed / t.nfe, tokensPerSecond: tps,
    speedup: ratio((b) => tps / b.tokensPerSecond),
    wallTimeMs: t.wallMs, wallSpeedup: ratio((b) => b.wallTimeMs / t.wallMs),
  };
}

/** The 95% Wilson score interval of `k` successes in `n` trials (sound at 0 and n, unlike the normal approximation). */
export function wilsonInterval(k: number, n: number, z = 1.959963984540054): [number, number] {
  if (n === 0) return [0, 1];
  const p = k / n;
  const d = 1 + (z * z) / n;
  const centre = (p + (z * z) / (2 * n)) / d;
  const half = (z * Math.sqrt((p * (1 - p)) / n + (z * z) / (4 * n * n))) / d;
  return [k === 0 ? 0 : Math.max(0, centre - half), k === n ? 1 : Math.min(1, centre + half)];
}

/** The machine a result was measured on, for --out files. */
export function machineInfo(): { cpu: string; cores: number; node: string; platform: string } {
  return { cpu: os.cpus()[0]?.model ?? 'unknown', cores: os.cpus().length, node: process.version, platform: `${os.platform()} ${os.arch()}` };
}

/** An extra column after "accuracy %" (eval: the task's other metrics). */
export interface ExtraColumn<R> {
  header: string;
  cell: (row: R) => string;
}

export function markdownTable<R extends BenchRow>(rows: R[], extra: ReadonlyArray<ExtraColumn<R>> = []): string {
  const headers = ['setting', 'accuracy %', '95% CI', ...extra.map((c) => c.header), 'NFE', 'tokens/forward', 'tokens/s', 'speedup', 'wall s', 'wall speedup'];
  const out = [`| ${headers.join(' | ')} |`, `|${headers.map(() => '---|').join('')}`];
  for (const r of rows) {
    const cells = [r.name, (100 * r.accuracy).toFixed(1), `${(100 * r.accuracyCi[0]).toFixed(1)}–${(100 * r.accuracyCi[1]).toFixed(1)}`, ...extra.map((c) => c.cell(r)), r.nfe.toFixed(1), r.tokensPerForward.toFixed(2),
      r.tokensPerSecond.toFixed(1), r.speedup === null ? '—' : `${r.speedup.toFixed(2)}x`, (r.wallTimeMs / 1000).toFixed(2),
      r.wallSpeedup === null ? '—' : `${r.wallSpeedup.toFixed(2)}x`];
    out.push(`| ${cells.join(' | ')} |`);
  }
  return out.join('\n');
}

export function registerBench(program: Command, io: Io, signal: AbortSignal): void {
  const cmd = program
    .command('bench')
    .description("the paper's table (baseline, caches, parallel decoding) on a model and an eval set")
    .option('--eval <file>', 'JSONL eval set with "prompt" and "answer" (default: the bundled one)')
    .addOption(new Option('--limit <n>', 'first N problems').argParser(intArg('--limit', 1)))
    .option('--sweep', 'add rows for threshold in {0.5, 0.6, 0.7, 0.8, 0.9, 0.95, 1.0}')
    .addOption(new Option('--sweep-taus <list>', 'comma-separated thresholds in [0, 1] for the sweep rows (implies --sweep)').argParser(tauList))
    .option('--sweep-only', 'run only the sweep rows (no baseline: speedup columns stay empty)')
    .addOption(new Option('--sweep-cache <list>', 'comma-separated caches of the sweep rows: none, prefix, dual (default dual)').argParser(cacheList))
    .addOption(new Option('--rows <list>', `only these rows of the table: some of ${TABLE_ROWS.join(', ')} (without baseline the speedup columns stay empty; the policy rows need --policies)`).argParser(rowList))
    .option('--policies', `add DESIGN §16's policy rows: EB-Sampler (--entropy-bound), suffix window (--suffix-window, default ${POLICY_SUFFIX_WINDOW}), early commit, draft and verify (--draft-verify, default ${POLICY_DRAFTS}), Elastic-Cache (--elastic-cache, default ${DEFAULT_ELASTIC_GAMMA}), and four stacks`)
    .addOption(new Option('--batch <n>', 'problems decoded together in each forward pass (1: the paper\'s batch-1 setting)').argParser(intArg('--batch', 1, 64)).default(1))
    .option('--out <file>', 'also write the rows as JSON');
  addDecodeOptions(cmd).action(async (opts: DecodeFlags & {
    eval?: string; limit?: number; sweep?: boolean; sweepTaus?: number[]; sweepOnly?: boolean; rows?: string[]; out?: string; batch: number; policies?: boolean;
    sweepCache?: CacheMode[];
  }) => {
    if (opts.sweepCache && !opts.sweep && !opts.sweepTaus) throw new UsageError('--sweep-cache needs --sweep or --sweep-taus');
    if (opts.remasking || opts.alg || opts.strategy || opts.cache) throw new UsageError('bench runs its own rows (strategies and caches); drop --strategy / --cache / --remasking / --alg');
    if (opts.earlyCommit) throw new UsageError('bench runs early commit in its own rows (--policies); drop --early-commit');
    const policyFlag = ([['--entropy-bound', opts.entropyBound], ['--suffix-window', opts.suffixWindow], ['--draft-verify', opts.draftVerify],
      ['--elastic-cache', opts.elasticCache]] as const).find(([, v]) => v !== undefined)?.[0];
    if (!opts.policies && policyFlag) throw new UsageError(`${policyFlag} sets the policy rows; add --policies`);
    if (opts.rows && !opts.policies) {
      const p = opts.rows.find((r) => POLICY_ROWS.includes(r));
      if (p) throw new UsageError(`--rows: '${p}' is a policy row; add --policies`);
    }
    const sweep = opts.sweepTaus ?? (opts.sweep ? SWEEP_TAUS : null);
    if (opts.sweepOnly && !sweep) throw new UsageError('--sweep-only needs --sweep or --sweep-taus');
    if (opts.sweepOnly && opts.rows) throw new UsageError('--rows picks rows of the table, which --sweep-only leaves out; pass one');
    const dm = (await import('@fast-dllm/default-model')) as {
      loadEvalSet?: (p?: string) => EvalLike[];
      scoreExactMatch?: (text: string, item: EvalLike) => 0 | 1;
    };
    if (!dm.loadEvalSet || !dm.scoreExactMatch) throw new UsageError('@fast-dllm/default-model has no eval loader/scorer; rebuild it');
    let items: EvalLike[];
    try {
      items = dm.loadEvalSet(opts.eval);
    } catch (e) {
      throw new UsageError(`cannot read the eval set: ${(e as Error).message.split('\n')[0]}`);
    }
    if (opts.limit !== undefined) items = items.slice(0, opts.limit);
    if (items.length === 0) throw new UsageError('the eval set is empty');
    const md = await openModelDir(opts.model, { needTokenizer: true });
    const block = md.description.blockSize !== undefined;
    let plan: RowPlan[];
    let baseline: number | null;
    if (block) {
      checkBlockTableFlags(opts, md.description, 'bench', 'choose its thresholds with --sweep-taus',
        [[opts.sweep && !opts.sweepTaus, '--sweep'], [opts.sweepOnly, '--sweep-only'], [opts.rows !== undefined, '--rows'], [opts.policies, '--policies'],
          [opts.sweepCache !== undefined, '--sweep-cache']]);
    } else {
        }
    // --threshold and --factor set the rows' tau and f (both may be given); the rows share the lengths and steps.
    try {
      const policies = opts.policies
        ? { gamma: opts.entropyBound ?? DEFAULT_ENTROPY_BOUND, window: opts.suffixWindow ?? POLICY_SUFFIX_WINDOW, drafts: opts.draftVerify ?? POLICY_DRAFTS,
          elastic: opts.elasticCache ?? DEFAULT_ELASTIC_GAMMA }
        : undefined;
      ({ rows: plan, baseline } = tablePlan(md.description, { threshold: opts.threshold, factor: opts.factor, sweep, sweepOnly: opts.sweepOnly, only: opts.rows, policies, sweepCaches: opts.sweepCache }, rowBase(opts)));
    } catch (e) {
      throw asUsage(e);
    }
    const prompts = items.map((it) => md.encodePrompt(it.prompt, true));
    const requestsOf = (p: RowPlan) => prompts.map((prompt) => {
      const req = requestOf(p.decoding, prompt);
      checkRequest(req, md.description);
      return req;
    });
    const bar = process.stderr.isTTY
      ? new cliProgress.SingleBar({ stream: process.stderr, format: ' {bar} {value}/{total} runs | {row}' }, cliProgress.Presets.shades_classic)
      : undefined;
    const totals: RowTotals[] = [];
    let engineName = '';
    await withEngine(opts, md, io, async (engine) => {
      engineName = engine.name;
      const reqs = plan.map(requestsOf);
      // One untimed problem first, so that no row also pays the engine's warm-up (compilation, first allocations).
      await md.runMany(engine, [reqs[0][0]], { batch: 1, signal });
      bar?.start(plan.length * items.length, 0, { row: plan[0].name });
      try {
        for (const [k, p] of plan.entries()) {
          let correct = 0, nfe = 0, committed = 0, content = 0;
          const t0 = performance.now();
          const results = await md.runMany(engine, reqs[k], { batch: opts.batch, signal, onResult: () => bar?.increment(1, { row: p.name }) });
          const ms = performance.now() - t0;
          results.forEach((r, i) => {
            const text = md.tokenizer!.decode(answerIds(r.tokens, md.description.stopIds), { skipSpecial: true });
            correct += dm.scoreExactMatch!(text, items[i]);
            nfe += r.stats.nfe;
            committed += r.stats.tokensPerForward * r.stats.nfe;
            content += r.stats.contentTokens;
          });
          totals.push({ problems: items.length, correct, nfe, committed, content, wallMs: ms });
        }
      } finally {
        bar?.stop();
      }
    });
    const rows = rowsWithSpeedups(plan, totals, baseline);
    io.stdout(`${markdownTable(rows)}\n`);
    if (opts.out) {
      const common = { model: md.dir, engine: engineName, problems: items.length, threads: opts.threads ?? 1, dtype: opts.dtype ?? null, batch: opts.batch };
      const d = plan[0].decoding;
      const settings = block
        ? { ...common, architecture: md.description.architecture, blockSize: md.description.blockSize, genLength: d.genLength,
          genLengthMeaning: 'cap on new tokens (a stop token ends the answer earlier)', baselineRow: plan[baseline!].name }
        : { ...common, genLength: d.genLength, blockLength: d.blockLength, steps: d.steps, earlyStop: d.earlyStop };
      const run = { warmup: 'one untimed problem (the first row\'s first request) before the rows', date: new Date().toISOString(), machine: machineInfo() };
      await writeFile(opts.out, `${JSON.stringify({ settings: { ...settings, ...run }, rows }, null, 2)}\n`);
    }
  });
}

/** The table's rows from their totals: speedups against the baseline row (none when `baseline` is null). */
export function rowsWithSpeedups(plan: readonly RowPlan[], totals: readonly RowTotals[], baseline: number | null): BenchRow[] {
  const base = baseline === null ? null : benchRow(plan[baseline], totals[baseline], 'self');
  return plan.map((p, i) => (i === baseline ? base! : benchRow(p, totals[i], base)));
}
