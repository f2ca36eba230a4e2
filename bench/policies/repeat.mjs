// The policy table's headline again, repeated: Fast-dLLM's best row and the fastest stack, each run --reps times
// on the whole held-out set in the same `fast-dllm bench` call (so the two rows of a rep share the machine's state),
// to show how far wall-time noise on this machine moves the ratio. Not a test; after `npx turbo run build`:
//   node bench/policies/repeat.mjs [--model chain] [--reps 3] [--threads 1]
// The defaults are the chain model's rows in bench/results/policies-chain-2026-12-07.md: the dual cache at tau 0.9,
// and EB-Sampler (gamma 0.1) + suffix window 0 on the dual cache. Writes bench/results/policies-<model>-repeat-<date>.md.
import { mkdtempSync, rmSync, writeFileSync } from 'node:fs';
import os from 'node:os';
import { join } from 'node:path';
import { ROOT, arg, modelArg, runBench } from './common.mjs';

const { which, m } = modelArg();
const reps = Number(arg('--reps', '3'));
const threads = arg('--threads', '1');
const tau = arg('--tau', '0.9');
const gamma = arg('--gamma', '0.1');
const window = arg('--window', '0');
const date = new Date().toISOString().slice(0, 10);
const tmp = mkdtempSync(join(os.tmpdir(), 'fast-dllm-repeat-'));

const runs = [];
let settings = null;
for (let rep = 1; rep <= reps; rep++) {
  const j = runBench(`rep ${rep}`, m, { threads, dtype: 'f32', out: join(tmp, `rep${rep}.json`) },
    ['--threshold', tau, '--entropy-bound', gamma, '--suffix-window', window, '--policies', '--rows', 'dual-parallel,stack-eb-window']);
  settings = j.settings;
  runs.push(j.rows);
}
rmSync(tmp, { recursive: true, force: true });

const names = runs[0].map((r) => r.name);
// Greedy decoding: every rep must give the same answers; only the wall time may move.
for (const rows of runs) {
  rows.forEach((r, i) => {
    if (r.accuracy !== runs[0][i].accuracy || r.nfe !== runs[0][i].nfe) throw new Error(`${r.name}: accuracy or NFE differs between reps`);
  });
}
const walls = names.map((_, i) => runs.map((rows) => rows[i].wallTimeMs / 1000)); // [row][rep], seconds
const span = (xs) => `${Math.min(...xs).toFixed(2)}–${Math.max(...xs).toFixed(2)}`;
const [fast, stack] = walls;
const lines = [
  `# Fast-dLLM's best row against the fastest stack, repeated: ${which} model, WASM f32, ${threads} threads (${date})`,
  '',
  `Machine: ${settings.machine.cpu}, ${settings.machine.cores} cores, Node ${settings.machine.node}. ${settings.problems} held-out problems, ` +
    `gen length ${m.genLength}, blocks of 32, greedy, early stop on; both rows in each of ${reps} \`fast-dllm bench\` calls. ` +
    `Command: \`node bench/policies/repeat.mjs --model ${which} --reps ${reps} --threads ${threads} --tau ${tau} --gamma ${gamma} --window ${window}\`.`,
  '',
  '| row | accuracy % | NFE | wall s per rep | wall s min–max |',
  '|---|---|---|---|---|',
  ...names.map((n, i) => `| ${n} | ${(100 * runs[0][i].accuracy).toFixed(1)} | ${runs[0][i].nfe.toFixed(2)} | ${walls[i].map((x) => x.toFixed(2)).join(', ')} | ${span(walls[i])} |`),
  '',
  `Speedup of the stack over Fast-dLLM's row: ${(Math.min(...fast) / Math.min(...stack)).toFixed(2)}x best against best, ` +
    `${(Math.min(...fast) / Math.max(...stack)).toFixed(2)}x at worst (Fast-dLLM's fastest rep against the stack's slowest), ` +
    `${(Math.max(...fast) / Math.min(...stack)).toFixed(2)}x at most.`,
];
writeFileSync(join(ROOT, 'bench/results', `policies-${which}-repeat-${date}.md`), `${lines.join('\n')}\n`);
process.stdout.write(`${lines.join('\n')}\n`);
