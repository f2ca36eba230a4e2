// Fast-dLLM v2 1.5B's shape on the WASM engine (not a test). Run after `npm run build -w @fast-dllm/engine-wasm`:
//   nice -n 10 node bench/blockdiff/bench.mjs [--threads 1,2] [--dtypes bf16,int8] [--reps 2] [--keep DIR]
// Writes a Hugging Face directory with Fast-dLLM v2 1.5B's configuration (Qwen2.5-1.5B: hidden 1536, 28 layers,
// 12 heads, 2 KV heads, head_dim 128, intermediate 8960, vocab 151936, tied embeddings, rope_theta 1e6, bd_size 32)
// and random bf16 weights (about 3.1 GB) into a temporary directory, loads it with createWasmEngine (bf16 weights,
// and int8 quantized at load), and times the forward passes of DESIGN §8 on a prompt of 64 tokens (two whole blocks):
//   prefill         full    [0, 64)   the prompt's blocks; row 63 predicts position 64 (v2's next-token step)
//   block step      prefix  [64, 96)  the active block against the cached prompt; 31 masked positions reported
//   sub-block step  dual    [72, 80)  with the block cache: 8 rows against the cache and the kept block
//   block end       extend  [64, 96)  writes the block's K/V; row 95 predicts position 96
// Reports the linear memory the engine holds (wasm32 addresses 4 GiB) and writes
// bench/results/blockdiff-wasm-<date>.json and .md. The temporary directory is removed unless --keep DIR names one.
import { mkdirSync, mkdtempSync, readFileSync, rmSync, writeFileSync } from 'node:fs';
import os from 'node:os';
import { join } from 'node:path';
import { createWasmEngine, sequenceCacheBytes, weightBytes } from '@fast-dllm/engine-wasm';
import { readModelConfig } from '@fast-dllm/model';
import { writeRandomSafetensors } from '../lib/random-safetensors.mjs';
import { timeForward } from '../lib/timing.mjs';

const arg = (name, fallback) => {
  const i = process.argv.indexOf(name);
  return i >= 0 ? process.argv[i + 1] : fallback;
};
const THREADS = arg('--threads', '1,2').split(',').map(Number);
const DTYPES = arg('--dtypes', 'bf16,int8').split(',');
const REPS = Number(arg('--reps', '2'));
const KEEP = arg('--keep', undefined);

const CONFIG = {
  architectures: ['Fast_dLLM_QwenForCausalLM'], model_type: 'Fast_dLLM_Qwen', bd_size: 32, hidden_size: 1536, intermediate_size: 8960,
  num_hidden_layers: 28, num_attention_heads: 12, num_key_value_heads: 2, vocab_size: 151936, max_position_embeddings: 32768,
  rope_theta: 1000000.0, rms_norm_eps: 1e-6, tie_word_embeddings: true, bos_token_id: 151643, eos_token_id: 151645,
  use_sliding_window: false, sliding_window: 32768, rope_scaling: null, hidden_act: 'silu', torch_dtype: 'bfloat16',
};
const MASK = 151665;

/** Every tensor of the model: [name, shape, kind]; kind picks the random init (linear std 1/sqrt(fan_in), norms 1, biases 0). */
function tensors(c) {
  const d = c.hidden_size, H = c.num_attention_heads, KV = c.num_key_value_heads, hd = d / H, ff = c.intermediate_size;
  const out = [['model.embed_tokens.weight', [c.vocab_size, d], 'embed']];
  for (let i = 0; i < c.num_hidden_layers; i++) {
    const b = `model.layers.${i}.`;
    out.push(
      [b + 'input_layernorm.weight', [d], 'one'], [b + 'self_attn.q_proj.weight', [H * hd, d], 'lin'], [b + 'self_attn.q_proj.bias', [H * hd], 'zero'],
      [b + 'self_attn.k_proj.weight', [KV * hd, d], 'lin'], [b + 'self_attn.k_proj.bias', [KV * hd], 'zero'],
      [b + 'self_attn.v_proj.weight', [KV * hd, d], 'lin'], [b + 'self_attn.v_proj.bias', [KV * hd], 'zero'],
      [b + 'self_attn.o_proj.weight', [d, H * hd], 'lin'], [b + 'post_attention_layernorm.weight', [d], 'one'],
      [b + 'mlp.gate_proj.weight', [ff, d], 'lin'], [b + 'mlp.up_proj.weight', [ff, d], 'lin'], [b + 'mlp.down_proj.weight', [d, ff], 'lin'],
    );
  }
  out.push(['model.norm.weight', [d], 'one']);
  return out;
}

/** Writes model.safetensors (bf16) tensor by tensor, in chunks, from a seeded LCG: no 3 GB buffer in memory. */
function writeRandomModel(dir) {
  writeFileSync(join(dir, 'config.json'), JSON.stringify(CONFIG, null, 2));
  writeFileSync(join(dir, 'generation_config.json'), JSON.stringify({ bos_token_id: 151643, eos_token_id: [151645, 151643] }));
  return writeRandomSafetensors(join(dir, 'model.safetensors'), tensors(CONFIG));
}

const span = (a, b) => Int32Array.from({ length: b - a }, (_, i) => a + i);
const GiB = 2 ** 30;

const dir = KEEP ?? mkdtempSync(join(os.tmpdir(), 'fast-dllm-v2-1.5b-'));
mkdirSync(dir, { recursive: true });
const results = { date: new Date().toISOString(), machine: {}, model: {}, memory: {}, runs: [], notes: [] };
const cpu = readFileSync('/proc/cpuinfo', 'utf8').match(/model name\s*:\s*(.*)/)?.[1] ?? 'unknown';
results.machine = { cpu, cores: os.cpus().length, memGiB: +(os.totalmem() / GiB).toFixed(1), node: process.version, load1: os.loadavg()[0] };
try {
  let t = performance.now();
  const bytes = writeRandomModel(dir);
  console.log(`wrote ${(bytes / GiB).toFixed(2)} GiB of random bf16 weights to ${dir} in ${((performance.now() - t) / 1000).toFixed(1)} s`);
  const desc = await readModelConfig(dir);
  results.model = {
    config: 'Fast-dLLM v2 1.5B (Qwen2.5-1.5B shape), random bf16 weights', parameters: bytes / 2, safetensorsBytes: bytes,
    blockSize: desc.blockSize, tiedEmbeddings: desc.tiedEmbeddings, headDim: desc.headDim,
  };
  const P = 64, B = desc.blockSize, L = P + B;
  results.memory.weightBytes = Object.fromEntries(DTYPES.map((dt) => [dt, weightBytes(desc, dt)]));
  results.memory.sequenceBytes = sequenceCacheBytes(desc, L);
  results.memory.untiedEmbeddingCopyAvoided = 4 * desc.vocabSize * desc.hiddenSize;
  for (const dtype of DTYPES) for (const threads of THREADS) {
    t = performance.now();
    const e = await createWasmEngine(dir, { weightDType: dtype, threads });
    const loadS = (performance.now() - t) / 1000;
    const afterLoad = e.memoryUsage();
    console.log(`${dtype}, threads ${threads}: loaded in ${loadS.toFixed(1)} s; linear memory ${(afterLoad.linearBytes / GiB).toFixed(3)} GiB`);
    const seq = e.openSequence(L);
    const canvas = new Int32Array(L).fill(MASK);
    for (let i = 0; i < P; i++) canvas[i] = 1000 + 37 * i;
    canvas[P] = 2024; // position 64 as the prefill's next-token step would have committed it
    const steps = [
      ['prefill', { canvas: canvas.slice(0, P), mode: 'full', start: 0, end: P, positions: Int32Array.of(P) }],
      ['block step', { canvas, mode: 'prefix', start: P, end: L, positions: span(P + 1, L) }],
      ['block end', { canvas, mode: 'extend', start: P, end: L, positions: Int32Array.of(L) }],
      ['sub-block step', { canvas, mode: 'dual', start: P + 8, end: P + 16, positions: span(P + 9, P + 16) }],
    ];
    const run = { dtype, threads, loadSeconds: +loadS.toFixed(1), steps: {} };
    for (const [label, req] of steps) {
      const step = await timeForward(e, seq, req, REPS, label);
      run.steps[label] = step;
      console.log(`  ${label.padEnd(15)} ${req.mode.padEnd(7)} ${String(req.end - req.start).padStart(3)} rows, ${String(req.positions.length).padStart(2)} reported: ${step.ms.join(', ')} ms`);
    }
    run.memory = e.memoryUsage();
    console.log(`  linear memory after the run ${(run.memory.linearBytes / GiB).toFixed(3)} GiB (used ${(run.memory.usedBytes / GiB).toFixed(3)} GiB)`);
    e.closeSequence(seq);
    await e.dispose();
    results.runs.push(run);
  }
} finally {
  if (!KEEP) rmSync(dir, { recursive: true, force: true });
}
// A loaded machine makes the timings noisy: say so when the 1-minute load at the start exceeds the cores.
const quiet = results.machine.load1 <= results.machine.cores;
results.notes.push(quiet ? 'Load at the start was within the core count: no other heavy job was running.' : 'The machine was loaded (other jobs running): timings are noisy; re-run on a quiet machine.');

const day = results.date.slice(0, 10);
mkdirSync('bench/results', { recursive: true });
writeFileSync(`bench/results/blockdiff-wasm-${day}.json`, JSON.stringify(results, null, 2) + '\n');
const md = [
  `# Fast-dLLM v2 1.5B shape on the WASM engine, ${day}`, '',
  `Machine: ${results.machine.cpu}, ${results.machine.cores} cores, ${results.machine.memGiB} GiB, node ${results.machine.node}, load ${results.machine.load1.toFixed(2)} at start.`,
  quiet ? 'No other heavy job was running.' : 'Loaded machine (other jobs running): numbers are noisy; re-run `node bench/blockdiff/bench.mjs` on a quiet one.', '',
  `Model: ${results.model.config}; ${(results.model.parameters / 1e9).toFixed(2)} B parameters, ${(results.model.safetensorsBytes / GiB).toFixed(2)} GiB of bf16 safetensors; blocks of ${results.model.blockSize}.`, '',
  '## Memory (wasm32 addresses 4 GiB)', '',
  ...Object.entries(results.memory.weightBytes).map(([dt, b]) => `- weights as loaded at ${dt} (linear weights and the LM head; the tied embedding is read from the packed LM head): ${(b / GiB).toFixed(3)} GiB`),
  `- one sequence of ${64 + results.model.blockSize} positions (f32 K/V): ${(results.memory.sequenceBytes / 2 ** 20).toFixed(1)} MiB`,
  `- an f32 embedding copy beside the bf16 LM head would add ${(results.memory.untiedEmbeddingCopyAvoided / GiB).toFixed(3)} GiB`,
  ...results.runs.map((r) => `- linear memory held, ${r.dtype}, ${r.threads} thread(s), after the run: ${(r.memory.linearBytes / GiB).toFixed(3)} GiB (${r.memory.linearBytes} bytes)`), '',
  '## Forward passes (prompt of 64 = two whole blocks), ms per pass', '',
  `| step | mode | rows | reported | ${results.runs.map((r) => `${r.dtype}, ${r.threads} thread(s)`).join(' | ')} |`,
  `|---|---|---|---|${results.runs.map(() => '---').join('|')}|`,
  ...Object.keys(results.runs[0]?.steps ?? {}).map((k) => {
    const s = results.runs[0].steps[k];
    return `| ${k} | ${s.mode} | ${s.rows} | ${s.reported} | ${results.runs.map((r) => `${r.steps[k].medianMs} (${r.steps[k].ms.join(', ')})`).join(' | ')} |`;
  }), '',
  `Load (read, widen, pack to the weight type): ${results.runs.map((r) => `${r.loadSeconds} s at ${r.dtype}, ${r.threads} thread(s)`).join(', ')}. Upper median of ${REPS} runs after one warm-up (of two: the slower); all runs in parentheses.`, '',
];
writeFileSync(`bench/results/blockdiff-wasm-${day}.md`, md.join('\n'));
console.log(`wrote bench/results/blockdiff-wasm-${day}.md and .json`);
