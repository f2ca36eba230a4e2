// Models over 4 GiB on the WASM engine (DESIGN §14), and LLaDA-MoE's mixture (DESIGN §13) against a dense model of
// about its total size (not a test). Run after `npm run build`, on a quiet machine:
//   node bench/large/bench.mjs [--models llada-8b,llada-moe-7b] [--threads 2] [--reps 3]
// For each shape: the published config.json (LLaDA-8B-Instruct; LLaDA-MoE-7B-A1B: 64 experts, 8 per token),
// random weights synthesized tensor by tensor from a seeded generator (no 16 GB checkpoint on disk: what is timed is
// the engine's load, int8 quantization and passes, not the file read), quantized to int8 at load, split over as many
// wasm memories as the weights need. Then one full forward over a canvas of 32 prompt + 128 generated positions and
// DualCache steps over the first block of 32 (the step Fast-dLLM repeats), as in the llama.cpp comparison of
// NOTES.md. Writes bench/results/large-wasm-<date>.json and .md with the machine and date.
import { writeFileSync } from 'node:fs';
import os from 'node:os';
import { execSync } from 'node:child_process';
import { WasmEngine, loadKernels, loadThreadedKernels, weightBytes } from '@fast-dllm/engine-wasm';
import { expectedShapes, normaliseConfig, tensorNames } from '@fast-dllm/model';

const arg = (name, fallback) => {
  const i = process.argv.indexOf(name);
  return i >= 0 ? process.argv[i + 1] : fallback;
};
const MODELS = arg('--models', 'llada-moe-7b,llada-8b').split(',');
const THREADS = Number(arg('--threads', '2'));
const REPS = Number(arg('--reps', '3'));

const CONFIGS = {
  // LLaDA-8B-Instruct's config.json (the keys that matter).
  'llada-8b': {
    model_type: 'llada', d_model: 4096, n_layers: 32, n_heads: 32, n_kv_heads: 32, mlp_hidden_size: 12288, vocab_size: 126464,
    embedding_size: 126464, max_sequence_length: 4096, rope_theta: 500000, rms_norm_eps: 1e-5, mask_token_id: 126336, eos_token_id: 126081,
    weight_tying: false,
  },
  // LLaDA-MoE-7B-A1B (model_type as its remote code declares it; the expert fields make it MoE).
  'llada-moe-7b': {
    model_type: 'llada', hidden_size: 2048, num_hidden_layers: 16, num_attention_heads: 16, num_key_value_heads: 16,
    dense_intermediate_size: 8192, expert_intermediate_size: 1024, shared_expert_intermediate_size: null, num_experts: 64,
    num_experts_per_tok: 8, moe_layer_freq: Array(16).fill(1), qk_layernorm: true, rope_theta: 50000, max_position_embeddings: 8192,
    vocab_size: 157184, rms_norm_eps: 1e-5, tie_word_embeddings: false, partial_rotary_factor: 1, clip_qkv: null,
  },
};

/** A tensor's random values: linear weights uniform(±sqrt(3/fan_in)), embeddings ±0.05, norms 1 (seeded LCG). */
function synthesize(name, shape, seed) {
  const n = shape.reduce((a, b) => a * b, 1);
  const out = new Float32Array(n); // (shape) row-major
  if (shape.length === 1) return out.fill(1);
  const amp = /embed|wte/.test(name) ? 0.05 : Math.sqrt(3 / shape[1]);
  let s = seed >>> 0;
  for (let i = 0; i < n; i++) {
    s = (Math.imul(s, 1664525) + 1013904223) >>> 0;
    out[i] = amp * (s / 2147483648 - 1);
  }
  return out;
}

const median = (xs) => [...xs].sort((a, b) => a - b)[Math.floor(xs.length / 2)];
const gib = (b) => +(b / 2 ** 30).toFixed(2);

async function run(key) {
  const desc = normaliseConfig(CONFIGS[key]);
  const names = tensorNames(desc);
  const shapes = expectedShapes(desc, names);
  const params = [...shapes.values()].reduce((a, s) => a + s.reduce((x, y) => x * y, 1), 0);
  const make = () => (THREADS > 1 ? loadThreadedKernels(THREADS) : loadKernels());
  let seed = 1;
  const t0 = performance.now();
  const engine = await WasmEngine.load(desc, names, async (name) => synthesize(name, shapes.get(name), seed++), await make(), 'int8', { moreKernels: make });
  const loadS = (performance.now() - t0) / 1000;
  const mem = engine.memoryUsage();
  const L = 160, P = 32, B = 32;
  const canvas = Int32Array.from({ length: L }, (_, i) => (i < P ? (97 * i + 13) % 30000 : desc.special.mask));
  const seq = engine.openSequence(L);
  const positions = (a, b) => Int32Array.from({ length: b - a }, (_, i) => a + i);
  const pass = async (mode, start, end) => {
    const t = performance.now();
    await engine.forward([{ sequence: seq, canvas, mode, start, end, positions: positions(start, end) }]);
    return performance.now() - t;
  };
  const full = [], dual = [];
  for (let r = 0; r < REPS; r++) {
    full.push(await pass('full', 0, L));
    dual.push(await pass('dual', P, P + B));
  }
  engine.closeSequence(seq);
  await engine.dispose();
  const moe = desc.moe;
  const active = moe ? params - desc.numLayers * (moe.numExperts - moe.topK) * 3 * desc.hiddenSize * moe.expertSize : params;
  const row = {
    model: key, parameters: params, activeParameters: active, weightBytesInt8: weightBytes(desc, 'int8'), memories: mem.shards,
    linearGiB: gib(mem.linearBytes), usedGiB: gib(mem.usedBytes), loadSeconds: +loadS.toFixed(1),
    fullForwardMs: full.map((x) => Math.round(x)), dualStepMs: dual.map((x) => Math.round(x)),
    fullForwardMedianMs: Math.round(median(full)), dualStepMedianMs: Math.round(median(dual)), rssGiB: gib(process.memoryUsage().rss),
  };
  console.log(JSON.stringify(row));
  return row;
}

const cpu = os.cpus()[0]?.model ?? 'unknown';
const results = { date: new Date().toISOString(), machine: { cpu, cores: os.cpus().length, memGiB: gib(os.totalmem()), node: process.version, load: os.loadavg() }, threads: THREADS, canvas: '32 prompt + 128 generated, DualCache step over [32, 64)', rows: [] };
for (const m of MODELS) results.rows.push(await run(m));
const byKey = Object.fromEntries(results.rows.map((r) => [r.model, r]));
if (byKey['llada-8b'] && byKey['llada-moe-7b']) results.moeDualSpeedup = +(byKey['llada-8b'].dualStepMedianMs / byKey['llada-moe-7b'].dualStepMedianMs).toFixed(2);
const day = results.date.slice(0, 10);
writeFileSync(`bench/results/large-wasm-${day}.json`, JSON.stringify(results, null, 1) + '\n');
const lines = [
  `# Models over 4 GiB on the WASM engine, int8, ${THREADS} threads (${day})`, '',
  `Machine: ${cpu}, ${results.machine.cores} cores, ${results.machine.memGiB} GiB, Node ${process.version}; load average at the start ${results.machine.load.map((x) => x.toFixed(2)).join(' ')}.`,
  'Random weights synthesized in memory, int8 at load; canvas 32 + 128; full forward = 160 rows; DualCache step = 32 rows against the cache.', '',
  '| model | parameters | read per token | int8 weights | wasm memories | load | full forward (ms) | DualCache step (ms) |',
  '|---|---|---|---|---|---|---|---|',
  ...results.rows.map((r) => `| ${r.model} | ${(r.parameters / 1e9).toFixed(2)} B | ${(r.activeParameters / 1e9).toFixed(2)} B | ${gib(r.weightBytesInt8)} GiB | ${r.memories} (${r.linearGiB} GiB) | ${r.loadSeconds} s | ${r.fullForwardMs.join(', ')} | ${r.dualStepMs.join(', ')} |`),
  '', results.moeDualSpeedup ? `The MoE shape's DualCache step is ${results.moeDualSpeedup}× faster than the dense 8B's (medians).` : '', '',
];
writeFileSync(`bench/results/large-wasm-${day}.md`, lines.join('\n'));
console.log(lines.join('\n'));
