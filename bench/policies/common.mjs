// What the policy benches (bench.mjs, repeat.mjs, early-commit-probe.mjs) share: their flags, the models they run on
// and one `fast-dllm bench` call on a model's held-out set.
import { execFileSync } from 'node:child_process';
import { existsSync, readFileSync } from 'node:fs';
import { join } from 'node:path';
import { fileURLToPath } from 'node:url';

export const ROOT = fileURLToPath(new URL('../../', import.meta.url));
const CLI = join(ROOT, 'packages/cli/bin/fast-dllm.js');

/** The value after flag `name` on the command line, or `fallback`. */
export const arg = (name, fallback) => {
  const i = process.argv.indexOf(name);
  return i >= 0 ? process.argv[i + 1] : fallback;
};

export const MODELS = {
  // The chain model's canvas is as long as users ask (256): its answer is 108 tokens, so what is left is EOS padding
  // that a suffix window does not compute.
  chain: { dir: 'packages/chain-model/model', eval: 'packages/chain-model/eval/eval.jsonl', genLength: 256 },
  default: { dir: 'packages/default-model/model', eval: 'packages/default-model/eval/eval.jsonl', genLength: 128 },
};

/** --model (default chain): its name and entry of MODELS; throws when it is unknown or not trained yet. */
export function modelArg() {
  const which = arg('--model', 'chain');
  const m = MODELS[which];
  if (!m) throw new Error(`--model: one of ${Object.keys(MODELS).join(', ')}`);
  if (!existsSync(join(ROOT, m.dir, 'config.json'))) {
    throw new Error(`${m.dir} holds no model: train it first (packages/chain-model/README.md, "Training")`);
  }
  return { which, m };
}

/**
 * One `fast-dllm bench` run of model `m` on its held-out set (WASM engine, blocks of 32, the model's gen length),
 * then the flags `extra`; its JSON (written to `out`). Says on stderr what runs, under `label`, and how long it took.
 */
export function runBench(label, m, { threads, dtype, limit, out }, extra) {
  const args = ['bench', '--model', join(ROOT, m.dir), '--eval', join(ROOT, m.eval), '--engine', 'wasm', '--threads', threads, '--dtype', dtype,
    '--gen-length', String(m.genLength), '--block-length', '32', ...(limit ? ['--limit', limit] : []), '--out', out, ...extra];
  process.stderr.write(`${label}: fast-dllm ${args.join(' ')}\n`);
  const t0 = Date.now();
  execFileSync(process.execPath, [CLI, ...args], { stdio: ['ignore', 'ignore', 'inherit'] });
  process.stderr.write(`${label}: ${((Date.now() - t0) / 1000).toFixed(0)} s\n`);
  return JSON.parse(readFileSync(out, 'utf8'));
}
