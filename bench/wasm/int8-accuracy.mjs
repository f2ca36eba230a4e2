// Accuracy of int8 weights (not a test). Run after `npm run build`:
//   nice -n 10 node bench/wasm/int8-accuracy.mjs
// Logit NMSE and argmax agreement of the WASM engine with int8 weights against the same engine with f32 weights,
// on the fixture models, the bundled model (its eval prompts) and the 100M random LLaDA-shaped model of bench.mjs;
// and the reference engine's int8 against its f32 on the fixtures (the oracle's own figure). Full forwards over a
// prompt followed by masks, every generated position reported. Writes bench/results/int8-accuracy-<date>.{json,md}.
import { writeFileSync, mkdirSync, readFileSync } from 'node:fs';
import os from 'node:os';
import { fileURLToPath } from 'node:url';
import { createWasmEngine, loadKernels, WasmEngine } from '@fast-dllm/engine-wasm';
import { createReferenceEngine } from '@fast-dllm/engine-reference';
import { loadTokenizer } from '@fast-dllm/model';
import { defaultModelDir, loadEvalSet } from '@fast-dllm/default-model';
import { BIG, bigDesc, bigNames, bigReader, bigCanvas, range } from './synthetic.mjs';

const fixture = (name) => fileURLToPath(new URL(`../../test/fixtures/models/${name}`, import.meta.url));

/** NMSE and argmax agreement of two results' logits (n rows of V). */
function compare(a, b, V) {
  let num = 0, den = 0, same = 0;
  const n = a.logits.length / V;
  for (let i = 0; i < a.logits.length; i++) { num += (a.logits[i] - b.logits[i]) ** 2; den += b.logits[i] ** 2; }
  for (let r = 0; r < n; r++) if (a.tokens[r] === b.tokens[r]) same++;
  return { num, den, same, rows: n };
}
function add(t, c) { t.num += c.num; t.den += c.den; t.same += c.same; t.rows += c.rows; }

/** One forward on a fresh sequence of the engine (closed after). */
async function forward1(engine, req) {
  const sequence = engine.openSequence(req.canvas.length);
  try {
    return (await engine.forward([{ ...req, sequence }]))[0];
  } finally {
    engine.closeSequence(sequence);
  }
}

/** Runs `reqs` on two engines and accumulates the comparison. */
async function pair(engA, engB, reqs, V) {
  const t = { num: 0, den: 0, same: 0, rows: 0 };
  for (const req of reqs) add(t, compare(await forward1(engA, req), await forward1(engB, req), V));
  return { nmse: t.num / t.den, argmaxAgreement: t.same / t.rows, rows: t.rows, forwards: reqs.length };
}

/** Full-forward requests: `prompts` each followed by `gen` masks, all generated positions reported with logits. */
function requests(prompts, gen, mask) {
  return prompts.map((p) => {
    const canvas = new Int32Array(p.length + gen).fill(mask);
    canvas.set(p);
    return { canvas, mode: 'full', start: 0, end: canvas.length, positions: range(p.length, canvas.length), want: { logits: true } };
  });
}

function randomPrompts(count, len, vocab, seed) {
  let s = seed >>> 0;
  return Array.from({ length: count }, () => Int32Array.from({ length: len }, () => { s = (Math.imul(s, 1664525) + 1013904223) >>> 0; return s % Math.min(vocab - 16, 256); }));
}

const results = { date: new Date().toISOString(), machine: { cpu: os.cpus()[0]?.model, cores: os.cpus().length, node: process.version }, rows: [] };
const row = (model, engines, r) => { results.rows.push({ model, engines, ...r }); console.log(model, engines, JSON.stringify(r)); };

// Fixtures (random weights): 4 prompts of 24 tokens + 40 masks.
for (const name of ['llada-tiny-f32', 'dream-tiny-f32']) {
  const dir = fixture(name);
  const f32 = await createWasmEngine(dir), i8 = await createWasmEngine(dir, { weightDType: 'int8' });
  const reqs = requests(randomPrompts(4, 24, f32.model.vocabSize, 7), 40, f32.model.maskId);
  row(name, 'wasm int8 vs wasm f32', await pair(i8, f32, reqs, f32.model.vocabSize));
  const rf = await createReferenceEngine(dir), ri = await createReferenceEngine(dir, { weightDType: 'int8' });
  row(name, 'reference int8 vs reference f32', await pair(ri, rf, reqs, f32.model.vocabSize));
  for (const e of [f32, i8, rf, ri]) await e.dispose();
}

// The bundled model on its first 50 eval prompts (chat template), gen 128.
{
  const tok = await loadTokenizer(defaultModelDir, {});
  const prompts = loadEvalSet().slice(0, 50).map((it) =>
    Int32Array.from(tok.encode(tok.applyChatTemplate([{ role: 'user', content: it.prompt }], { addGenerationPrompt: true }), { addSpecial: false })));
  const f32 = await createWasmEngine(defaultModelDir), i8 = await createWasmEngine(defaultModelDir, { weightDType: 'int8' });
  row('bundled model (50 eval prompts)', 'wasm int8 vs wasm f32', await pair(i8, f32, requests(prompts, 128, f32.model.maskId), f32.model.vocabSize));
  await f32.dispose(); await i8.dispose();
}

// The 100M model: the benchmark canvas (prompt 64 + gen 256), one full forward.
{
  const load = async (dtype) => WasmEngine.load(bigDesc, bigNames, bigReader(), await loadKernels(), dtype);
  const f32 = await load('f32'), i8 = await load('int8');
  const req = { canvas: bigCanvas(), mode: 'full', start: 0, end: BIG.L, positions: range(BIG.P, BIG.L), want: { logits: true } };
  row('100M LLaDA-shaped random model', 'wasm int8 vs wasm f32', await pair(i8, f32, [req], BIG.vocab));
  await f32.dispose(); await i8.dispose();
}

const day = results.date.slice(0, 10);
mkdirSync(new URL('../results/', import.meta.url), { recursive: true });
writeFileSync(new URL(`../results/int8-accuracy-${day}.json`, import.meta.url), JSON.stringify(results, null, 2) + '\n');
let md = `# int8 accuracy, ${results.date}\n\nMachine: ${results.machine.cpu}, ${results.machine.cores} cores, node ${process.version}. ` +
  'Full forwards (prompt + masks, every generated position), logits of int8 weights against f32 weights.\n\n' +
  '| model | engines | forwards | rows | logit NMSE | argmax agreement |\n|---|---|---|---|---|---|\n';
for (const r of results.rows) md += `| ${r.model} | ${r.engines} | ${r.forwards} | ${r.rows} | ${r.nmse.toExponential(2)} | ${(100 * r.argmaxAgreement).toFixed(1)}% |\n`;
writeFileSync(new URL(`../results/int8-accuracy-${day}.md`, import.meta.url), md);
console.log(md);
