// Batched decoding benchmark (issue #13; not a test). Run after `npm install`:
//   nice -n 10 node bench/batch/bench.mjs [--threads 2] [--quick]
// Generated tokens/s and per-pass latency at batch 1, 2, 4, 8, 16 for DualCache + threshold 0.9 decoding
// (continuous batching through the scheduler's BatchDriver) on the WASM engine:
// - the bundled model on its eval prompts (gen 128, block 32);
// - a ~100M-parameter LLaDA-shaped model with random weights (d 768, 12 layers, ff 2048, vocab 32000;
//   prompt 64 + gen 64, block 32). Random weights rarely pass the threshold, so its runs are mostly one token
//   per dual step: the measure of how well a pass over the rows of several sequences amortises the weights.
// Every batch size decodes the same requests; the script checks that each one's tokens equal batch 1's
// (batch invariance) and writes bench/results/batch-<date>.json and .md with the machine and date.
import { readFileSync, writeFileSync, mkdirSync } from 'node:fs';
import os from 'node:os';
import { BatchDriver } from '@fast-dllm/scheduler';
import { createWasmEngine, loadThreadedKernels, loadKernels, WasmEngine } from '@fast-dllm/engine-wasm';
import { tensorNames, loadTokenizer } from '@fast-dllm/model';
import { defaultModelDir, loadEvalSet } from '@fast-dllm/default-model';

const args = process.argv.slice(2);
const threads = Number(args[args.indexOf('--threads') + 1] ?? 2) || 2;
const quick = args.includes('--quick');
const BATCHES = quick ? [1, 4] : [1, 2, 4, 8, 16];

const cpu = readFileSync('/proc/cpuinfo', 'utf8').match(/model name\s*:\s*(.*)/)?.[1] ?? 'unknown';
const results = { date: new Date().toISOString(), machine: { cpu, cores: os.cpus().length, node: process.version, load1: os.loadavg()[0] }, threads, runs: [] };

const quantile = (xs, q) => { const s = [...xs].sort((a, b) => a - b); return s[Math.min(s.length - 1, Math.floor(q * s.length))]; };

/** Decodes `requests` with at most `batch` sequences per pass; returns throughput, pass latencies and the tokens. */
async function run(engine, requests, batch, eosId) {
  const passes = [];
  const driver = new BatchDriver(engine, { maxBatch: batch, onPass: (p) => passes.push(p) });
  const t0 = performance.now();
  const out = await Promise.all(requests.map((r) => driver.submit(r)));
  const ms = performance.now() - t0;
  let content = 0, committed = 0;
  for (const r of out) {
    for (const t of r.tokens) if (t !== eosId) content++;
    committed += r.tokens.length;
  }
  const passMs = passes.map((p) => p.ms);
  return {
    batch, requests: requests.length, wallMs: ms, passes: passes.length,
    contentTokensPerSecond: (content * 1000) / ms, committedTokensPerSecond: (committed * 1000) / ms,
    meanSequencesPerPass: passes.reduce((a, p) => a + p.sequences, 0) / passes.length,
    passMsMean: passMs.reduce((a, b) => a + b, 0) / passMs.length, passMsP50: quantile(passMs, 0.5), passMsP95: quantile(passMs, 0.95),
    nfe: out.reduce((a, r) => a + r.stats.nfe, 0), tokens: out.map((r) => Array.from(r.tokens)),
  };
}

async function sweep(label, engine, makeRequests, eosId) {
  const alone = {};
  for (const b of BATCHES) {
    const requests = makeRequests(b);
    const r = await run(engine, requests, b, eosId);
    // Every request's tokens must equal what batch 1 gave for the same request index (batch invariance).
    for (let i = 0; i < r.tokens.length; i++) {
      const key = i;
      if (alone[key] === undefined && b === 1) alone[key] = r.tokens[i];
    }
    const mismatches = b === 1 ? 0 : r.tokens.filter((t, i) => alone[i] !== undefined && JSON.stringify(t) !== JSON.stringify(alone[i])).length;
    delete r.tokens;
    results.runs.push({ model: label, ...r, invarianceMismatches: mismatches });
    console.log(`${label} batch ${String(b).padStart(2)}: ${r.contentTokensPerSecond.toFixed(1)} tok/s (committed ${r.committedTokensPerSecond.toFixed(1)}), ` +
      `${r.passes} passes, pass ${r.passMsMean.toFixed(1)} ms mean / ${r.passMsP95.toFixed(1)} p95, ${r.meanSequencesPerPass.toFixed(2)} seq/pass, mismatches ${mismatches}`);
  }
}

// ---- the bundled model on its eval prompts
{
  const engine = await createWasmEngine(defaultModelDir, { threads });
  const tok = await loadTokenizer(defaultModelDir);
  const items = loadEvalSet().slice(0, quick ? 16 : 64);
  const prompts = items.map((it) => Int32Array.from(tok.encode(tok.applyChatTemplate([{ role: 'user', content: it.prompt }], { addGenerationPrompt: true }))));
  const req = (p) => ({ prompt: p, genLength: 128, blockLength: 32, steps: 128, strategy: { kind: 'threshold', threshold: 0.9 }, cache: 'dual' });
  // Every batch size decodes the same prompts (the first ones are batch 1's reference).
  await sweep('bundled model', engine, () => prompts.map(req), engine.model.eosId);
  await engine.dispose();
}

// ---- a ~100M LLaDA-shaped model with random weights
{
  const BIG = { d: 768, layers: 12, heads: 12, ff: 2048, vocab: 32000, P: 64, G: 64, block: 32 };
  const desc = {
    architecture: 'llada', hiddenSize: BIG.d, numLayers: BIG.layers, numHeads: BIG.heads, numKvHeads: BIG.heads,
    headDim: BIG.d / BIG.heads, intermediateSize: BIG.ff, vocabSize: BIG.vocab, maxPositions: 4096, rmsNormEps: 1e-5,
    ropeTheta: 10000, qkvBias: false, tiedEmbeddings: false, shiftLogits: false, special: { mask: BIG.vocab - 1, eos: 1 },
  };
  const names = tensorNames(desc);
  let seed = 3;
  const rnd = (n) => { const a = new Float32Array(n); let s = seed++ >>> 0; for (let i = 0; i < n; i++) { s = (Math.imul(s, 1664525) + 1013904223) >>> 0; a[i] = (s / 2 ** 32 - 0.5) * 0.04; } return a; };
  const K = threads > 1 ? await loadThreadedKernels(threads) : await loadKernels();
  const engine = await WasmEngine.load(desc, names, async (name) => {
    const isNorm = /norm/i.test(name);
    const n = isNorm ? BIG.d : name === names.embed || name === names.lmHead ? BIG.vocab * BIG.d
      : /ff_proj|up_proj/.test(name) ? BIG.ff * BIG.d : /ff_out/.test(name) && name !== names.lmHead ? BIG.d * BIG.ff : BIG.d * BIG.d;
    return isNorm ? new Float32Array(n).fill(1) : rnd(n);
  }, K);
  const prompt = (i) => Int32Array.from({ length: BIG.P }, (_, j) => (i * 131 + j * 37) % 1000 + 2);
  const req = (i) => ({ prompt: prompt(i), genLength: BIG.G, blockLength: BIG.block, steps: BIG.G, strategy: { kind: 'threshold', threshold: 0.9 }, cache: 'dual' });
  // At least 2 rounds of each batch size, so the steady state dominates; the first requests are shared by all sizes.
  await sweep('100M random LLaDA', engine, (b) => Array.from({ length: Math.max(4, 2 * b) }, (_, i) => req(i)), 1);
  results.model100M = BIG;
  await engine.dispose();
}

const day = results.date.slice(0, 10);
mkdirSync('bench/results', { recursive: true });
writeFileSync(`bench/results/batch-${day}.json`, `${JSON.stringify(results, null, 2)}\n`);
let md = `# Batched decoding (DualCache + threshold 0.9), WASM engine, ${threads} thread(s), ${results.date}\n\n` +
  `Machine: ${cpu}, ${results.machine.cores} cores, node ${process.version}, load average at start ${results.machine.load1.toFixed(2)}.\n` +
  'Command: `nice -n 10 node bench/batch/bench.mjs`. Tokens/s counts generated non-EOS tokens over the wall time of all requests.\n\n' +
  '| model | batch | requests | tokens/s | speedup vs batch 1 | passes | sequences/pass | pass ms (mean / p50 / p95) | invariance mismatches |\n|---|---|---|---|---|---|---|---|---|\n';
for (const r of results.runs) {
  const base = results.runs.find((x) => x.model === r.model && x.batch === 1);
  md += `| ${r.model} | ${r.batch} | ${r.requests} | ${r.contentTokensPerSecond.toFixed(1)} | ${(r.contentTokensPerSecond / base.contentTokensPerSecond).toFixed(2)}x | ${r.passes} | ` +
    `${r.meanSequencesPerPass.toFixed(2)} | ${r.passMsMean.toFixed(1)} / ${r.passMsP50.toFixed(1)} / ${r.passMsP95.toFixed(1)} | ${r.invarianceMismatches} |\n`;
}
writeFileSync(`bench/results/batch-${day}.md`, md);
console.log(md);
