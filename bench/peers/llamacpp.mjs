// fast-dllm against llama.cpp's `llama-diffusion-cli` on one random LLaDA-shaped model (not a test). Both decode the
// same 134M model (d 768, 12 layers, 12 heads, SwiGLU 2048, vocab 32000; bench/server/random-model.mjs) from the
// same 32-token prompt, 128 new tokens, blocks of 32, one token per step, greedy, 2 threads, in the same run:
//   llama.cpp f32 and Q8_0 (every step is a full forward: it has no KV cache for diffusion models),
//   fast-dllm WASM f32 and int8 with no cache (a full forward per step: the per-forward comparison),
//   fast-dllm WASM f32 and int8 with the DualCache (what a user runs).
// Runs are interleaved (rep 1 of each, then rep 2, …) so that both see the same machine. Writes
// bench/results/peers-llamacpp-<date>.{md,json}. How to build llama.cpp from the npm bundle: bench/peers/README.md.
//   node bench/peers/llamacpp.mjs --llama /path/to/llama.cpp [--reps 3] [--threads 2] [--work /tmp/fast-dllm-peer]
import { execFileSync, spawnSync } from 'node:child_process';
import { existsSync, mkdirSync, readFileSync, writeFileSync } from 'node:fs';
import os from 'node:os';
import { join } from 'node:path';
import { fileURLToPath } from 'node:url';
import { loadThreadedKernels, loadKernels, WasmEngine } from '@fast-dllm/engine-wasm';
import { BIG, writeRandomModel } from '../server/random-model.mjs';
import { bigDesc, bigNames, bigReader, range as positionsIn } from '../wasm/synthetic.mjs';

const arg = (name, fallback) => {
  const i = process.argv.indexOf(name);
  return i >= 0 ? process.argv[i + 1] : fallback;
};
const LLAMA = arg('--llama', process.env.LLAMA_CPP_DIR);
const REPS = Number(arg('--reps', '3'));
const THREADS = Number(arg('--threads', '2'));
const WORK = arg('--work', '/tmp/fast-dllm-peer');
const ROWS = (arg('--rows', 'llama-f32,llama-q8_0,ours-f32,ours-int8,ours-int8-all-logits,ours-f32-dual,ours-int8-dual')).split(',');
if (!LLAMA) {
  console.error('bench/peers/llamacpp.mjs: --llama DIR (a llama.cpp source tree with build/bin/llama-diffusion-cli) is required; bench/peers/README.md says how to build it');
  process.exit(2);
}
const root = fileURLToPath(new URL('../../', import.meta.url));
const bin = (name) => join(LLAMA, 'build', 'bin', name);
const wantLlama = ROWS.some((r) => r.startsWith('llama'));
for (const name of ['llama-diffusion-cli', 'llama-quantize']) {
  if (wantLlama && !existsSync(bin(name))) {
    console.error(`bench/peers/llamacpp.mjs: ${bin(name)} is missing; build llama.cpp as bench/peers/README.md says`);
    process.exit(2);
  }
}

const P = 32, G = 128, BLOCK = 32;
// The prompt: BOS then 31 words. llama.cpp adds the BOS itself and matches the concatenated words one token each.
const WORDS = Array.from({ length: P - 1 }, (_, i) => 1000 + 37 * i);
const PROMPT_IDS = [0, ...WORDS];

// ---- the model, once: safetensors for us, F32 and Q8_0 GGUF for llama.cpp
const modelDir = join(WORK, 'model');
mkdirSync(WORK, { recursive: true });
if (!existsSync(join(modelDir, 'model.safetensors'))) await writeRandomModel(modelDir, BIG);
const gguf = { 'llama-f32': join(WORK, 'f32.gguf'), 'llama-q8_0': join(WORK, 'q8_0.gguf') };
if (wantLlama && !existsSync(gguf['llama-f32'])) {
  execFileSync('python3', [join(root, 'bench/peers/llada_to_gguf.py'), modelDir, gguf['llama-f32']], {
    env: { ...process.env, PYTHONPATH: join(LLAMA, 'gguf-py') }, stdio: 'inherit',
  });
}
if (wantLlama && !existsSync(gguf['llama-q8_0'])) execFileSync(bin('llama-quantize'), [gguf['llama-f32'], gguf['llama-q8_0'], 'Q8_0'], { stdio: 'ignore' });

// llama-diffusion-cli counts its blocks over the whole canvas (160 / 32 = 5) but starts them after the prompt, so
// --diffusion-steps must be 5 × 32 for one token per step: 4 blocks of 32 forwards, then one forward that finds the
// fifth block empty and stops. Its "time per step" divides by 160; the forwards it ran are 129.
const LLAMA_STEPS = ((P + G) / BLOCK) * BLOCK;
const LLAMA_FORWARDS = G + 1;

/** llama-diffusion-cli on one GGUF: ms per forward (total time / forwards run). */
function runLlama(row) {
  const r = spawnSync(bin('llama-diffusion-cli'), [
    '-m', gguf[row], '-p', WORDS.map((w) => `w${w}`).join(''), '-ub', String(P + G), '-b', String(P + G), '-c', String(P + G),
    '-t', String(THREADS), '-tb', String(THREADS), '--diffusion-steps', String(LLAMA_STEPS), '--diffusion-block-length', String(BLOCK),
    '--temp', '0', '--seed', '1', '-ngl', '0',
  ], { encoding: 'utf8', maxBuffer: 1 << 26 });
  const log = `${r.stdout}\n${r.stderr}`;
  const m = log.match(/total time: ([\d.]+)ms, time per step: ([\d.]+)ms/);
  if (r.status !== 0 || !m) throw new Error(`llama-diffusion-cli ${row} failed (exit ${r.status}):\n${log.slice(-3000)}`);
  return { totalMs: Number(m[1]), msPerForward: Number(m[1]) / LLAMA_FORWARDS, forwards: LLAMA_FORWARDS };
}

/** fast-dllm's CLI on the same model: ms per forward over the whole decode. */
function runOurs(row) {
  const dtype = row.includes('int8') ? 'int8' : 'f32';
  const cache = row.endsWith('-dual') ? 'dual' : 'none';
  const r = spawnSync(process.execPath, [join(root, 'packages/cli/bin/fast-dllm.js'), 'generate', '--model', modelDir,
    '--prompt-ids', PROMPT_IDS.join(','), '--gen-length', String(G), '--block-length', String(BLOCK), '--steps', String(G),
    '--strategy', 'fixed', '--remasking', 'low_confidence', '--cache', cache, '--no-early-stop', '--engine', 'wasm',
    '--dtype', dtype, '--threads', String(THREADS), '--json'], { encoding: 'utf8', maxBuffer: 1 << 26 });
  if (r.status !== 0) throw new Error(`fast-dllm ${row} failed (exit ${r.status}):\n${r.stderr.slice(-3000)}`);
  const j = JSON.parse(r.stdout.trim().split('\n').pop());
  return { totalMs: j.timings.generateMs, msPerForward: j.timings.generateMs / j.nfe, forwards: j.nfe, loadMs: j.timings.loadMs };
}

/**
 * Like for like with llama.cpp's forward: the WASM engine's int8 full forward over the same shape with logits for
 * all 160 positions (what llama-diffusion-cli computes), timed over 16 forwards after 2 warm-up ones.
 */
async function runAllLogits() {
  const K = THREADS > 1 ? await loadThreadedKernels(THREADS) : await loadKernels();
  const engine = await WasmEngine.load(bigDesc, bigNames, bigReader(), K, 'int8');
  const L = P + G;
  const canvas = new Int32Array(L).fill(bigDesc.special.mask); // (L,) the prompt, then masks
  PROMPT_IDS.forEach((t, i) => (canvas[i] = t));
  const sequence = engine.openSequence(L);
  const req = { sequence, canvas, mode: 'full', start: 0, end: L, positions: positionsIn(0, L) };
  for (let i = 0; i < 2; i++) await engine.forward([req]);
  const N = 16;
  const t0 = performance.now();
  for (let i = 0; i < N; i++) await engine.forward([req]);
  const totalMs = performance.now() - t0;
  await engine.dispose();
  return { totalMs: (totalMs / N) * G, msPerForward: totalMs / N, forwards: N };
}

const runs = Object.fromEntries(ROWS.map((r) => [r, []]));
for (let rep = 0; rep < REPS; rep++) {
  for (const row of ROWS) {
    const res = row.startsWith('llama') ? runLlama(row) : row === 'ours-int8-all-logits' ? await runAllLogits() : runOurs(row);
    runs[row].push(res);
    console.log(`rep ${rep + 1} ${row}: ${res.msPerForward.toFixed(1)} ms per forward, ${(res.totalMs / 1000).toFixed(2)} s for ${G} tokens`);
  }
}

const cpu = os.cpus()[0]?.model ?? 'unknown';
const flags = (() => {
  try {
    const have = new Set((readFileSync('/proc/cpuinfo', 'utf8').match(/^flags\s*:(.*)$/m)?.[1] ?? '').trim().split(/\s+/));
    return ['avx2', 'avx512f', 'avx512_vnni', 'avx_vnni'].filter((f) => have.has(f)).join(' ');
  } catch { return ''; }
})();
const llamaVersion = (() => { try { return execFileSync('git', ['-C', LLAMA, 'describe', '--tags', '--always'], { encoding: 'utf8' }).trim(); } catch { return 'unknown'; } })();
const date = new Date().toISOString().slice(0, 10);
const range = (xs, digits = 0) => `${Math.min(...xs).toFixed(digits)}–${Math.max(...xs).toFixed(digits)}`;
const LABEL = {
  'llama-f32': 'llama.cpp f32 (no cache)', 'llama-q8_0': 'llama.cpp Q8_0 (no cache)', 'ours-f32': 'fast-dllm WASM f32, no cache',
  'ours-int8': 'fast-dllm WASM int8, no cache', 'ours-int8-all-logits': 'fast-dllm WASM int8 full forward, logits at all 160 positions (engine only; s = 128 × its ms)', 'ours-f32-dual': 'fast-dllm WASM f32, DualCache', 'ours-int8-dual': 'fast-dllm WASM int8, DualCache',
};
const results = {
  date: new Date().toISOString(), machine: { cpu, cores: os.cpus().length, node: process.version, load: os.loadavg(), simd: flags.trim() || null },
  llamaCpp: { dir: LLAMA, version: llamaVersion }, model: `${modelDir} (134M random LLaDA-shaped, F32)`, prompt: P, gen: G, block: BLOCK, threads: THREADS, reps: REPS,
  runs,
};
mkdirSync(join(root, 'bench/results'), { recursive: true });
const base = join(root, `bench/results/peers-llamacpp-${date}`);
writeFileSync(`${base}.json`, JSON.stringify(results, null, 1));
let md = `# fast-dllm against llama.cpp's llama-diffusion-cli (${date})\n\n`;
md += `Machine: ${cpu}, ${os.cpus().length} cores, Node ${process.version}; load average at the end ${os.loadavg().map((x) => x.toFixed(2)).join(' ')}. `;
md += `llama.cpp ${llamaVersion} (the source bundled in node-llama-cpp, built with GGML_NATIVE). Model: 134M random LLaDA-shaped `;
md += `(bench/server/random-model.mjs), the same weights in both (GGUF by bench/peers/llada_to_gguf.py; Q8_0 by llama-quantize). `;
md += `Prompt ${P} + ${G} generated, blocks of ${BLOCK}, one token per step (${G} forwards), greedy, ${THREADS} threads, ${REPS} interleaved reps. `;
md += `Command: \`node bench/peers/llamacpp.mjs --llama ${LLAMA} --reps ${REPS} --threads ${THREADS}\`.\n\n`;
md += '| engine | ms per forward (min–max) | s for 128 tokens (min–max) |\n|---|---|---|\n';
for (const row of ROWS) md += `| ${LABEL[row]} | ${range(runs[row].map((r) => r.msPerForward))} | ${range(runs[row].map((r) => r.totalMs / 1000), 1)} |\n`;
const best = (row) => (runs[row] ? Math.min(...runs[row].map((r) => r.msPerForward)) : null);
if (best('ours-int8') && best('llama-q8_0')) {
  md += `\nint8 full forward against Q8_0 (best of each): ${(best('ours-int8')).toFixed(0)} ms against ${best('llama-q8_0').toFixed(0)} ms, `;
  md += `fast-dllm ${(best('llama-q8_0') / best('ours-int8')).toFixed(2)}× llama.cpp's speed.\n`;
}
if (best('ours-int8-all-logits') && best('llama-q8_0')) {
  md += `Computing logits at all 160 positions as llama.cpp does: ${best('ours-int8-all-logits').toFixed(0)} ms, ${(best('llama-q8_0') / best('ours-int8-all-logits')).toFixed(2)}× llama.cpp's speed.\n`;
}
md += 'Tokens are not compared: at --temp 0 llama-diffusion-cli still draws each token through top-k 40, top-p 0.95 and a seeded sampler, and ranks positions by the renormalized probability, so its answer is not the greedy one; timing does not depend on the weights\' values.\n';
md += 'fast-dllm\'s no-cache rows run a full forward per step but report logits only for the block\'s masked positions; llama.cpp computes logits for all 160 positions at every step. Both are what each tool does when asked for this decode.\n';
writeFileSync(`${base}.md`, md);
console.log(md);
