// Why early commit fails on the chain model (DESIGN §16), measured: on every held-out problem, the forward that
// would commit every remaining mask, (1) at the first pass (prompt, then 128 masks) and (2) at the second block's
// first pass (the first block holding the right answer's 32 tokens, as Fast-dLLM's first block nearly always does),
// how wide the top-1/top-2 log gap is (mean over the masks, as Prophet tests it, and the smallest) and whether
// committing every argmax then gives the right answer. Not a test; after `npm run build`:
//   node bench/policies/early-commit-probe.mjs [--model packages/chain-model/model] [--eval …/eval.jsonl]
// Writes bench/results/early-commit-probe-<model name>-<date>.md. The committed one measured the chain model's first
// version (full canvases only), before its second training stage.
import { writeFileSync } from 'node:fs';
import os from 'node:os';
import { basename, dirname, join } from 'node:path';
import { openModelDir } from '../../packages/cli/dist/modeldir.js';
import { answerIds } from '../../packages/cli/dist/generate.js';
import { openEngine } from '@fast-dllm/engines';
import { EARLY_COMMIT_GAPS } from '@fast-dllm/scheduler';
import * as dm from '@fast-dllm/default-model';
import { ROOT, arg } from './common.mjs';

const dir = arg('--model', join(ROOT, 'packages/chain-model/model'));
const evalPath = arg('--eval', join(dirname(dir), 'eval/eval.jsonl'));
const G = 128, BLOCK = 32;

const md = await openModelDir(dir, { needTokenizer: true });
const items = dm.loadEvalSet(evalPath);
const { engine } = await openEngine('wasm', dir, { threads: 1, dtype: 'f32' });
const mask = md.description.special.mask;
const eos = md.description.special.eos;

/** One full forward over `canvas`, every masked generated position reported: gaps and the all-argmax answer's score. */
async function commitAll(it, prompt, canvas) {
  const P = prompt.length;
  const positions = Int32Array.from({ length: G }, (_, i) => P + i).filter((p) => canvas[p] === mask); // (n,)
  const seq = engine.openSequence(canvas.length);
  try {
    const [res] = await engine.forward([{ sequence: seq, canvas, mode: 'full', start: 0, end: canvas.length, positions, want: { top2: true } }]);
    const gaps = Array.from(res.top1Probs, (p, i) => Math.log(p) - Math.log(Math.max(res.top2Probs[i], Number.MIN_VALUE)));
    const out = canvas.slice(P);
    positions.forEach((p, i) => (out[p - P] = res.tokens[i]));
    const text = md.tokenizer.decode(answerIds(out, md.description.stopIds), { skipSpecial: true });
    return { right: dm.scoreExactMatch(text, it) === 1, mean: gaps.reduce((a, b) => a + b, 0) / gaps.length, min: Math.min(...gaps), left: positions.length };
  } finally {
    engine.closeSequence(seq);
  }
}

const first = [], second = [];
for (const it of items) {
  const prompt = md.encodePrompt(it.prompt, true);
  const P = prompt.length;
  const canvas = new Int32Array(P + G).fill(mask); // (P + G,) prompt, then masks
  canvas.set(prompt);
  first.push(await commitAll(it, prompt, canvas));
  // The right answer's first block: its tokens, then EOS padding, as the model was trained to write it.
  const gold = md.tokenizer.encode(it.answer_text, { addSpecial: false });
  const block0 = Int32Array.from({ length: BLOCK }, (_, i) => (i < gold.length ? gold[i] : eos));
  const c2 = canvas.slice();
  c2.set(block0, P);
  second.push(await commitAll(it, prompt, c2));
}
await engine.dispose();

const rule = (progress) => EARLY_COMMIT_GAPS.find((s) => progress < s.below).gap;
const line = (name, rows, fires) => {
  const f = rows.filter(fires);
  return `| ${name} | ${f.length} | ${f.filter((r) => r.right).length} | ${f.length ? ((100 * f.filter((r) => r.right).length) / f.length).toFixed(1) : '–'} |`;
};
const table = (title, rows, progress) => {
  let s = `### ${title}\n\nCommitting every argmax here gives the right answer on ${rows.filter((r) => r.right).length} of ${rows.length}.\n\n`;
  s += '| test that fires | fires on | right when it fires | % |\n|---|---|---|---|\n';
  s += `${line(`Prophet: mean gap ≥ ${rule(progress)} (its schedule at ${Math.round(100 * progress)} % decoded)`, rows, (r) => r.mean >= rule(progress))}\n`;
  for (const g of [10, 15, 20]) s += `${line(`mean gap ≥ ${g}`, rows, (r) => r.mean >= g)}\n`;
  for (const g of [1, 2.5, 5]) s += `${line(`smallest gap ≥ ${g}`, rows, (r) => r.min >= g)}\n`;
  return `${s}\n`;
};
const date = new Date().toISOString().slice(0, 10);
let out = `# Early commit on ${basename(dirname(dir))}: when would committing everything be right? (${date})\n\n`;
out += `Machine: ${os.cpus()[0]?.model}, Node ${process.version}. Model \`${dir.replace(ROOT, '')}\`, ${items.length} held-out problems, WASM f32, gen ${G}. `;
out += 'Gaps are ln(top-1 / top-2) per masked position. Command: `node bench/policies/early-commit-probe.mjs`.\n\n';
out += table('First pass (prompt, then 128 masks)', first, 0);
out += table('Second block\'s first pass (the first block holds the right answer)', second, BLOCK / G);
const file = join(ROOT, `bench/results/early-commit-probe-${basename(dirname(dir))}-${date}.md`);
writeFileSync(file, out);
console.log(out);
