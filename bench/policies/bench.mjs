// DESIGN §16's policies against Fast-dLLM on this machine (not a test). Run after `npx turbo run build`:
//   nice -n 5 node bench/policies/bench.mjs --model chain|default [--limit N] [--threads 2] [--dtype f32] [--tau T] [--taus LIST] [--windows LIST] [--gammas LIST] [--paper]
// Runs `fast-dllm bench` (WASM engine) on the model's held-out eval set, one run after another:
//   table:  the baseline (one token per step, no cache), Fast-dLLM's rows (dual cache with the threshold and the
//           factor rule; the threshold swept under the prefix and the dual cache; --paper adds the paper's cache-only
//           and no-cache rows), and the policy rows (EB-Sampler, suffix window, early commit, draft and verify alone
//           and under the prefix cache, Elastic-Cache, five stacks)
//   gamma:  for each further EB-Sampler bound of --gammas (the first is the table's), the two EB rows
//   window: for each further suffix window of --windows (the first is the table's), the window row and the stacks
// Speedups are the table's baseline wall time over the row's (runs follow each other on the same machine).
// --tau is the threshold of the table's threshold rows (Fast-dLLM's and the policies' on top of it; default 0.9).
// "Fast-dLLM's best" is its fastest parallel row with a cache whose accuracy is at least the reference interval's
// lower end: the baseline's 95% interval, or, when no Fast-dLLM row reaches it (the dual cache's approximation
// costs answers on some models at every threshold), the interval of Fast-dLLM's most accurate row. The target is a
// stack at least as accurate (the same test) and at least 2x faster in wall time than that row.
// Writes bench/results/policies-<model>-<date>.{md,json,svg}.
import { mkdtempSync, rmSync, writeFileSync } from 'node:fs';
import os from 'node:os';
import { join } from 'node:path';
import { ROOT, arg, modelArg, runBench } from './common.mjs';

const { which, m } = modelArg();
const threads = arg('--threads', '2');
const dtype = arg('--dtype', 'f32');
const limit = arg('--limit');
const tau = arg('--tau', '0.9');
const taus = arg('--taus', '0.5,0.7,0.8,0.9,0.95');
const windows = arg('--windows', '32,0').split(',');
const window = windows[0];
const gammas = arg('--gammas', '0.1,0.01,0.3,1').split(',');
const paper = process.argv.includes('--paper');
const date = new Date().toISOString().slice(0, 10);
const tmp = mkdtempSync(join(os.tmpdir(), 'fast-dllm-policies-'));

/** One `fast-dllm bench` run; its JSON rows, tagged with the run. */
function bench(run, extra) {
  const j = runBench(`run ${run}`, m, { threads, dtype, limit, out: join(tmp, `${run}.json`) }, extra);
  return { settings: j.settings, rows: j.rows.map((r) => ({ ...r, run })) };
}

const kindOf = (r) => {
  if (r.name.startsWith('baseline')) return 'baseline';
  if (r.name.startsWith('stack')) return 'stack';
  if (/EB-Sampler|suffix window|early commit|draft and verify|Elastic-Cache/.test(r.name)) return 'policy';
  if (/parallel|sweep/.test(r.name)) return 'fast-dllm';
  return 'cache only';
};

const tableRows = [...(paper ? ['baseline', 'prefix', 'dual', 'parallel'] : ['baseline']), 'dual-parallel', 'dual-factor', 'dual-eb', 'dual-window',
  'dual-early-commit', 'dual-elastic', 'draft-verify', 'prefix-draft-verify', 'stack-threshold', 'stack-eb', 'stack-eb-window', 'stack-elastic', 'stack-verify'];
const table = bench('table', ['--rows', tableRows.join(','), '--threshold', tau, '--sweep-taus', taus, '--sweep-cache', 'prefix,dual', '--policies',
  '--entropy-bound', gammas[0], '--suffix-window', window]);
const runs = [table];
for (const g of gammas.slice(1)) {
  runs.push(bench(`gamma ${g}`, ['--rows', 'dual-eb,stack-eb,stack-eb-window', '--threshold', tau, '--policies', '--entropy-bound', g, '--suffix-window', window]));
}
for (const w of windows.slice(1)) {
  runs.push(bench(`window ${w}`, ['--rows', 'dual-window,stack-threshold,stack-eb,stack-eb-window,stack-elastic,stack-verify', '--threshold', tau, '--policies', '--entropy-bound', gammas[0], '--suffix-window', w]));
}
rmSync(tmp, { recursive: true, force: true });

const base0 = table.rows.find((r) => r.name === 'baseline');
const rows = runs.flatMap((r) => r.rows).map((r) => ({ ...r, kind: kindOf(r), wallSpeedup: base0.wallTimeMs / r.wallTimeMs }));
const base = rows.find((r) => r.kind === 'baseline');
const fastRows = rows.filter((r) => r.kind === 'fast-dllm');
const reachesBase = fastRows.some((r) => r.accuracy >= base.accuracyCi[0]);
// The reference accuracy: the baseline's interval, else that of Fast-dLLM's most accurate row (ties to the faster).
const topFast = [...fastRows].sort((a, b) => b.accuracy - a.accuracy || b.wallSpeedup - a.wallSpeedup)[0] ?? null;
const ref = reachesBase ? { lo: base.accuracyCi[0], what: "the baseline's 95% interval" }
  : topFast ? { lo: topFast.accuracyCi[0], what: `no Fast-dLLM row reaches the baseline's interval, so the interval of its most accurate row, ${topFast.name}` } : null;
const atRef = (r) => ref !== null && r.accuracy >= ref.lo;
const fast = fastRows.filter(atRef).sort((a, b) => b.wallSpeedup - a.wallSpeedup)[0] ?? null;
const stacks = rows.filter((r) => r.kind === 'stack' && atRef(r)).sort((a, b) => b.wallSpeedup - a.wallSpeedup);
const bestStack = stacks[0] ?? null;
const ratio = fast && bestStack ? bestStack.wallSpeedup / fast.wallSpeedup : null;

const pct = (x) => (100 * x).toFixed(1);
const lines = [
  `# Policies against Fast-dLLM: ${which} model, WASM ${dtype}, ${threads} threads (${date})`,
  '',
  `Machine: ${table.settings.machine.cpu}, ${table.settings.machine.cores} cores, Node ${table.settings.machine.node}; load average at the end ` +
    `${os.loadavg().map((x) => x.toFixed(2)).join(' ')}. Model \`${m.dir}\`, held-out eval \`${m.eval}\` (${table.settings.problems} problems), ` +
    `gen length ${m.genLength}, blocks of 32, greedy, early stop on. Command: \`node bench/policies/bench.mjs --model ${which}` +
    `${limit ? ` --limit ${limit}` : ''} --threads ${threads} --dtype ${dtype} --tau ${tau} --taus ${taus} --windows ${windows.join(',')} --gammas ${gammas.join(',')}` +
    `${paper ? ' --paper' : ''}\`.`,
  '',
  'Wall speedup is the baseline row\'s wall time (one token per step, no cache) over the row\'s; "vs best" is against',
  "Fast-dLLM's best row: its fastest cached parallel row at the reference accuracy (at least the lower end of " +
    `the reference interval: ${ref ? `${ref.what}, ${pct(ref.lo)} %` : 'none'}).`,
  '',
  '| setting | run | accuracy % | 95% CI | NFE | wall s | wall speedup | vs best |',
  '|---|---|---|---|---|---|---|---|',
  ...rows.map((r) => `| ${r.name} | ${r.run} | ${pct(r.accuracy)} | ${pct(r.accuracyCi[0])}–${pct(r.accuracyCi[1])} | ${r.nfe.toFixed(1)} | ` +
    `${(r.wallTimeMs / 1000).toFixed(2)} | ${r.wallSpeedup.toFixed(2)}x | ${fast ? `${(r.wallSpeedup / fast.wallSpeedup).toFixed(2)}x` : '—'} |`),
  '',
  fast ? `Fast-dLLM's best row at the reference accuracy: **${fast.name}** (${pct(fast.accuracy)} %, ${fast.wallSpeedup.toFixed(2)}x).` : 'No Fast-dLLM row.',
  bestStack
    ? `Fastest stack at the reference accuracy: **${bestStack.name}** (${bestStack.run}; ${pct(bestStack.accuracy)} %, ${bestStack.wallSpeedup.toFixed(2)}x): ` +
      `${ratio.toFixed(2)}x Fast-dLLM's best (target 2x: ${ratio >= 2 ? 'met' : 'not met'}).`
    : 'No stack reaches the reference accuracy.',
  '',
  `Plot: [policies-${which}-${date}.svg](policies-${which}-${date}.svg).`,
];
const stem = join(ROOT, 'bench/results', `policies-${which}-${date}`);
writeFileSync(`${stem}.md`, `${lines.join('\n')}\n`);
writeFileSync(`${stem}.json`, `${JSON.stringify({ model: which, date, settings: table.settings, reference: ref, fastDllmBest: fast?.name ?? null, bestStack: bestStack?.name ?? null, ratio, rows }, null, 2)}\n`);
writeFileSync(`${stem}.svg`, plot(rows, `${which} model: accuracy against wall-time speedup (WASM ${dtype}, ${threads} threads, ${date})`));
process.stdout.write(`${lines.join('\n')}\n`);

/** Accuracy (with its 95% interval) against wall speedup, log x, one colour per kind of row. */
function plot(rs, title) {
  const W = 760, H = 460, L = 70, R = 200, T = 40, B = 50;
  const xs = rs.map((r) => r.wallSpeedup);
  const x0 = Math.log2(Math.min(0.9, ...xs)), x1 = Math.log2(Math.max(...xs) * 1.15);
  const yLo = Math.max(0, Math.floor(Math.min(...rs.map((r) => r.accuracyCi[0])) * 10) / 10);
  const X = (v) => L + ((Math.log2(v) - x0) / (x1 - x0)) * (W - L - R);
  const Y = (v) => T + (1 - (v - yLo) / (1 - yLo)) * (H - T - B);
  const COLOUR = { baseline: '#555', 'cache only': '#999', 'fast-dllm': '#1f77b4', policy: '#ff7f0e', stack: '#d62728' };
  const out = [`<svg xmlns="http://www.w3.org/2000/svg" width="${W}" height="${H}" font-family="sans-serif" font-size="12">`,
    `<rect width="${W}" height="${H}" fill="white"/>`, `<text x="${W / 2}" y="20" text-anchor="middle" font-size="14">${esc(title)}</text>`];
  for (let e = Math.ceil(x0); e <= Math.floor(x1); e++) {
    const x = X(2 ** e);
    out.push(`<line x1="${x}" y1="${T}" x2="${x}" y2="${H - B}" stroke="#eee"/>`, `<text x="${x}" y="${H - B + 16}" text-anchor="middle">${2 ** e}x</text>`);
  }
  for (let v = yLo; v <= 1.0001; v += (1 - yLo) / 5) {
    const y = Y(v);
    out.push(`<line x1="${L}" y1="${y}" x2="${W - R}" y2="${y}" stroke="#eee"/>`, `<text x="${L - 6}" y="${y + 4}" text-anchor="end">${(100 * v).toFixed(0)}%</text>`);
  }
  out.push(`<text x="${(L + W - R) / 2}" y="${H - 10}" text-anchor="middle">wall-time speedup over one token per step (log scale)</text>`,
    `<text x="16" y="${(T + H - B) / 2}" text-anchor="middle" transform="rotate(-90 16 ${(T + H - B) / 2})">exact match (95% interval)</text>`);
  if (fast) out.push(`<line x1="${X(fast.wallSpeedup * 2)}" y1="${T}" x2="${X(fast.wallSpeedup * 2)}" y2="${H - B}" stroke="#d62728" stroke-dasharray="4 3"/>`,
    `<text x="${X(fast.wallSpeedup * 2) + 3}" y="${T + 12}" fill="#d62728">2x Fast-dLLM's best</text>`);
  for (const r of rs) {
    const x = X(r.wallSpeedup), c = COLOUR[r.kind];
    out.push(`<line x1="${x}" y1="${Y(r.accuracyCi[0])}" x2="${x}" y2="${Y(r.accuracyCi[1])}" stroke="${c}" stroke-opacity="0.5"/>`,
      `<circle cx="${x}" cy="${Y(r.accuracy)}" r="4" fill="${c}"><title>${esc(`${r.name} (${r.run}): ${pct(r.accuracy)} %, ${r.wallSpeedup.toFixed(2)}x`)}</title></circle>`);
  }
  Object.entries(COLOUR).forEach(([k, c], i) => out.push(`<circle cx="${W - R + 20}" cy="${T + 20 + i * 20}" r="5" fill="${c}"/>`, `<text x="${W - R + 32}" y="${T + 24 + i * 20}">${k}</text>`));
  out.push('</svg>');
  return `${out.join('\n')}\n`;
}

function esc(s) {
  return s.replace(/&/g, '&amp;').replace(/</g, '&lt;').replace(/>/g, '&gt;');
}
