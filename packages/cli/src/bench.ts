/**
 * `fast-dllm bench`: the paper's ablation table (SPEC §6) on a model and an eval set: accuracy, NFE, tokens per
 * forward, tokens/s and speedup for the baseline, each cache mode, parallel decoding, and their combination.
 */
import { writeFile } from 'node:fs/promises';
import os from 'node:os';
import type { Command } from 'commander';
import { Option } from 'commander';
import cliProgress from 'cli-progress';
import type { CacheMode, Strategy } from '@fast-dllm/scheduler';
import { UsageError } from './errors.js';
import { addDecodeOptions, answerIds, checkPrompt, requestFrom, withEngine, type DecodeFlags } from './generate.js';
import type { Io } from './main.js';
import { openModelDir } from './modeldir.js';
import { floatArg, intArg } from './parse.js';

export const SWEEP_TAUS: readonly number[] = [0.5, 0.6, 0.7, 0.8, 0.9, 0.95, 1.0];

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
  /** Mean forward passes per problem. */
  nfe: number;
  /** Generated positions committed per forward pass, over all problems. */
  tokensPerForward: number;
  /** Non-EOS generated tokens per second of generation time, over all problems (SPEC §5). */
  tokensPerSecond: number;
  /** tokensPerSecond / the baseline's (null with --sweep-only: no baseline row). */
  speedup: number | null;
  /** Generation wall time over all problems (engine load excluded), ms. */
  wallTimeMs: number;
  /** The baseline's wallTimeMs / this row's: the same prompts, end to end (null with --sweep-only). */
  wallSpeedup: number | null;
}

interface EvalLike {
  prompt: string;
  answer: string;
}

/** Keys of the table's rows for --rows, in table order. */
export const TABLE_ROWS = ['baseline', 'prefix', 'dual', 'parallel', 'dual-parallel', 'dual-factor'] as const;

/** --rows: comma-separated keys of TABLE_ROWS, kept in table order. */
function rowList(v: string): Array<(typeof TABLE_ROWS)[number]> {
  const keys = v.split(',').map((k) => k.trim()).filter((k) => k.length > 0);
  for (const k of keys) {
    if (!(TABLE_ROWS as readonly string[]).includes(k)) throw new UsageError(`--rows: '${k}' is not a row; expected some of ${TABLE_ROWS.join(', ')}`);
  }
  if (keys.length === 0) throw new UsageError(`--rows: expected some of ${TABLE_ROWS.join(', ')}`);
  return TABLE_ROWS.filter((k) => keys.includes(k));
}

function rowsFor(
  tau: number, factor: number, sweep: readonly number[] | null, sweepOnly: boolean, only?: readonly string[],
): Array<{ name: string; cache: CacheMode; strategy: Strategy }> {
  const fixed: Strategy = { kind: 'fixed', remasking: 'low_confidence' };
  const rows: Array<{ key: (typeof TABLE_ROWS)[number]; name: string; cache: CacheMode; strategy: Strategy }> = [
    { key: 'baseline', name: 'baseline', cache: 'none', strategy: fixed },
    { key: 'prefix', name: '+ prefix cache', cache: 'prefix', strategy: fixed },
    { key: 'dual', name: '+ dual cache', cache: 'dual', strategy: fixed },
    { key: 'parallel', name: `+ parallel (threshold ${tau})`, cache: 'none', strategy: { kind: 'threshold', threshold: tau } },
    { key: 'dual-parallel', name: `+ dual cache + parallel (threshold ${tau})`, cache: 'dual', strategy: { kind: 'threshold', threshold: tau } },
    { key: 'dual-factor', name: `+ dual cache + parallel (factor ${factor})`, cache: 'dual', strategy: { kind: 'factor', factor } },
  ];
  const sweepRows = (sweep ?? []).map((t) => ({ name: `sweep: dual cache, threshold ${t}`, cache: 'dual' as const, strategy: { kind: 'threshold' as const, threshold: t } }));
  const table = rows.filter((r) => !only || only.includes(r.key)).map(({ name, cache, strategy }) => ({ name, cache, strategy }));
  return sweepOnly ? sweepRows : [...table, ...sweepRows];
}

export function markdownTable(rows: BenchRow[]): string {
  const out = ['| setting | accuracy % | NFE | tokens/forward | tokens/s | speedup | wall s | wall speedup |', '|---|---|---|---|---|---|---|---|'];
  for (const r of rows) {
    out.push(`| ${r.name} | ${(100 * r.accuracy).toFixed(1)} | ${r.nfe.toFixed(1)} | ${r.tokensPerForward.toFixed(2)} | ${r.tokensPerSecond.toFixed(1)} | ` +
      `${r.speedup === null ? '—' : `${r.speedup.toFixed(2)}x`} | ${(r.wallTimeMs / 1000).toFixed(2)} | ${r.wallSpeedup === null ? '—' : `${r.wallSpeedup.toFixed(2)}x`} |`);
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
    .addOption(new Option('--rows <list>', `only these rows of the table: some of ${TABLE_ROWS.join(', ')} (without baseline the speedup columns stay empty)`).argParser(rowList))
    .option('--out <file>', 'also write the rows as JSON');
  addDecodeOptions(cmd).action(async (opts: DecodeFlags & {
    eval?: string; limit?: number; sweep?: boolean; sweepTaus?: number[]; sweepOnly?: boolean; rows?: string[]; out?: string;
  }) => {
    if (opts.remasking || opts.alg) throw new UsageError('bench runs its own strategies; drop --remasking / --alg');
    const sweep = opts.sweepTaus ?? (opts.sweep ? SWEEP_TAUS : null);
    if (opts.sweepOnly && !sweep) throw new UsageError('--sweep-only needs --sweep or --sweep-taus');
    if (opts.sweepOnly && opts.rows) throw new UsageError('--rows picks rows of the table, which --sweep-only leaves out; pass one');
    if (opts.genLength % opts.blockLength !== 0) throw new UsageError(`--gen-length ${opts.genLength} is not a multiple of --block-length ${opts.blockLength}`);
    const blocks = opts.genLength / opts.blockLength;
    if ((opts.steps ?? opts.genLength) % blocks !== 0) throw new UsageError(`--steps is not a multiple of the number of blocks (${blocks})`);
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
    const prompts = items.map((it) => {
      const p = md.encodePrompt(it.prompt, true);
      checkPrompt(p, md, opts.genLength);
      return p;
    });
    const plan = rowsFor(opts.threshold ?? 0.9, opts.factor ?? 1, sweep, opts.sweepOnly ?? false, opts.rows);
    const hasBaseline = plan[0].name === 'baseline';
    const bar = process.stderr.isTTY
      ? new cliProgress.SingleBar({ stream: process.stderr, format: ' {bar} {value}/{total} runs | {row}' }, cliProgress.Presets.shades_classic)
      : undefined;
    const rows: BenchRow[] = [];
    await withEngine(opts, md, io, async (engine) => {
      bar?.start(plan.length * items.length, 0, { row: plan[0].name });
      try {
        for (const p of plan) {
          let correct = 0, nfe = 0, committed = 0, content = 0, ms = 0;
          for (let i = 0; i < items.length; i++) {
            const req = requestFrom({ ...opts, cache: p.cache }, prompts[i], p.strategy);
            const r = await md.run(engine, req, { signal });
            const text = md.tokenizer!.decode(answerIds(r.tokens, md.description.special.eos, md.description.special.endOfTurn), { skipSpecial: true });
            correct += dm.scoreExactMatch!(text, items[i]);
            nfe += r.stats.nfe;
            committed += r.stats.tokensPerForward * r.stats.nfe;
            content += r.stats.contentTokens;
            ms += r.stats.wallTimeMs;
            bar?.increment(1, { row: p.name });
          }
          const tps = ms > 0 ? content / (ms / 1000) : 0;
          rows.push({
            name: p.name, cache: p.cache, strategy: p.strategy, problems: items.length, accuracy: correct / items.length,
            nfe: nfe / items.length, tokensPerForward: committed / nfe, tokensPerSecond: tps,
            speedup: !hasBaseline ? null : rows.length === 0 ? 1 : tps / rows[0].tokensPerSecond,
            wallTimeMs: ms, wallSpeedup: !hasBaseline ? null : rows.length === 0 ? 1 : rows[0].wallTimeMs / ms,
          });
        }
      } finally {
        bar?.stop();
      }
      io.stdout(`${markdownTable(rows)}\n`);
      if (opts.out) {
        const settings = {
          model: md.dir, engine: engine.name, genLength: opts.genLength, blockLength: opts.blockLength, steps: opts.steps ?? opts.genLength,
          problems: items.length, threads: opts.threads ?? 1, dtype: opts.dtype ?? null, date: new Date().toISOString(),
          machine: { cpu: os.cpus()[0]?.model ?? 'unknown', cores: os.cpus().length, node: process.version, platform: `${os.platform()} ${os.arch()}` },
        };
        await writeFile(opts.out, `${JSON.stringify({ settings, rows }, null, 2)}\n`);
      }
    });
  });
}

