// dllm's A2D shapes (DESIGN §15) on this machine (not a test). Run after `npx turbo run build`:
//   nice -n 10 node bench/a2d/bench.mjs --inspect                     `inspect` and memory of both real shapes
//   nice -n 10 node bench/a2d/bench.mjs [--threads 2] [--dtypes f32,int8] [--reps 2] [--keep DIR]   WASM timings, 0.6B
// Shapes: Qwen3-0.6B (dllm-hub/Qwen3-0.6B-diffusion-{mdlm,bd3lm}-v0.1: hidden 1024, 28 layers, 16 heads, 8 KV heads,
// head_dim 128, intermediate 3072, q/k norms, tied, vocab 151936) and Qwen2.5-Coder-0.5B-Instruct
// (dllm-hub/Qwen2.5-Coder-0.5B-Instruct-diffusion-*: hidden 896, 24 layers, 14 heads, 2 KV heads, intermediate 4864,
// q/k/v biases, tied). Each is written as two directories named "...-mdlm-..." and "...-bd3lm-..." (the variant
// comes from the name; BD3LM blocks of 32, dllm's default) sharing one model.safetensors.
// --inspect writes the weights as a sparse file (headers only; inspect and the memory estimates read no weight) and
// records `fast-dllm inspect` of each directory plus the WASM engine's estimate at f32, bf16 and int8:
// bench/results/a2d-inspect-<date>.md. The timing run writes random bf16 weights for the 0.6B shape (about 1.2 GB),
// loads them with createWasmEngine and times, on a prompt of 64 tokens and 128 new ones:
//   MDLM   full step   full   [0, 192)   the block's first step (DualCache's refresh); 32 positions reported
//   MDLM   dual step   dual   [64, 96)   the block against the cache of [0, 64) and [96, 192)
//   BD3LM  prefill     full   [0, 64)    the prompt's two whole blocks (block-causal)
//   BD3LM  block step  prefix [64, 96)   the active block against the cached prompt; 32 positions reported
//   BD3LM  block end   extend [64, 96)   writes the block's K/V
// and writes bench/results/a2d-wasm-<date>.json and .md with the machine and its load.
import { execFileSync } from 'node:child_process';
import { mkdirSync, mkdtempSync, readFileSync, rmSync, symlinkSync, writeFileSync } from 'node:fs';
import os from 'node:os';
import { join } from 'node:path';
import { createWasmEngine, wasmProvider } from '@fast-dllm/engine-wasm';
import { readModelConfig } from '@fast-dllm/model';
import { writeRandomSafetensors } from '../lib/random-safetensors.mjs';
import { timeForward } from '../lib/timing.mjs';

const arg = (name, fallback) => {
  const i = process.argv.indexOf(name);
  return i >= 0 ? process.argv[i + 1] : fallback;
};
const INSPECT = process.argv.includes('--inspect');
const THREADS = arg('--threads', '2').split(',').map(Number);
const DTYPES = arg('--dtypes', 'f32,int8').split(',');
const REPS = Number(arg('--reps', '2'));
const KEEP = arg('--keep', undefined);
// --layers N keeps only the first N layers (a smoke test of this script; results say so).
const LAYERS = arg('--layers', undefined);

const COMMON = { rope_theta: 1000000, rms_norm_eps: 1e-6, tie_word_embeddings: true, use_sliding_window: false, rope_scaling: null, hidden_act: 'silu',
  bos_token_id: 151643, eos_token_id: 151645, vocab_size: 151936, torch_dtype: 'bfloat16' };
const SHAPES = {
  'Qwen3-0.6B': { mask: 151669, config: { ...COMMON, architectures: ['A2DQwen3LMHeadModel'], model_type: 'a2d-qwen3', hidden_size: 1024, intermediate_size: 3072,
    num_hidden_layers: 28, num_attention_heads: 16, num_key_value_heads: 8, head_dim: 128, attention_bias: false, max_position_embeddings: 40960, sliding_window: null } },
  'Qwen2.5-Coder-0.5B-Instruct': { mask: 151665, config: { ...COMMON, architectures: ['A2DQwen2LMHeadModel'], model_type: 'a2d-qwen2', hidden_size: 896,
    intermediate_size: 4864, num_hidden_layers: 24, num_attention_heads: 14, num_key_value_heads: 2, max_position_embeddings: 32768, sliding_window: 32768 } },
};

/** Every tensor: [name, shape, kind]; kind picks the random init (linear std ~ 1/sqrt(fan_in), norms 1, biases 0). */
function tensors(c) {
  const d = c.hidden_size, H = c.num_attention_heads, KV = c.num_key_value_heads, hd = c.head_dim ?? d / H, ff = c.intermediate_size;
  const qwen3 = c.model_type === 'a2d-qwen3';
  const out = [['model.embed_tokens.weight', [c.vocab_size, d], 'embed']];
  for (let i = 0; i < c.num_hidden_layers; i++) {
    const b = `model.layers.${i}.`;
    out.push([b + 'input_layernorm.weight', [d], 'one'], [b + 'self_attn.q_proj.weight', [H * hd, d], 'lin'], [b + 'self_attn.k_proj.weight', [KV * hd, d], 'lin'],
      [b + 'self_attn.v_proj.weight', [KV * hd, d], 'lin']);
    if (qwen3) out.push([b + 'self_attn.q_norm.weight', [hd], 'one'], [b + 'self_attn.k_norm.weight', [hd], 'one']);
    else out.push([b + 'self_attn.q_proj.bias', [H * hd], 'zero'], [b + 'self_attn.k_proj.bias', [KV * hd], 'zero'], [b + 'self_attn.v_proj.bias', [KV * hd], 'zero']);
    out.push([b + 'self_attn.o_proj.weight', [d, H * hd], 'lin'], [b + 'post_attention_layernorm.weight', [d], 'one'],
      [b + 'mlp.gate_proj.weight', [ff, d], 'lin'], [b + 'mlp.up_proj.weight', [ff, d], 'lin'], [b + 'mlp.down_proj.weight', [d, ff], 'lin']);
  }
  out.push(['model.norm.weight', [d], 'one']);
  return out;
}

/** The small files of an A2D checkpoint: config, generation config, tokenizer_config naming <|mask|>. */
function writeSmallFiles(dir, shape) {
  writeFileSync(join(dir, 'config.json'), JSON.stringify(shape.config, null, 2));
  writeFileSync(join(dir, 'generation_config.json'), JSON.stringify({ bos_token_id: 151643, eos_token_id: [151645, 151643], pad_token_id: 151643 }));
  const added = { 151643: '<|endoftext|>', 151644: '<|im_start|>', 151645: '<|im_end|>', [shape.mask]: '<|mask|>' };
  writeFileSync(join(dir, 'tokenizer_config.json'), JSON.stringify({
    eos_token: '<|im_end|>', pad_token: '<|endoftext|>', mask_token: '<|mask|>',
    added_tokens_decoder: Object.fromEntries(Object.entries(added).map(([id, content]) => [id, { content, special: true }])),
  }));
}

/** model.safetensors (bf16): random values, or (sparse) the header and a hole. */
function writeWeights(path, config, sparse) {
  return writeRandomSafetensors(path, tensors(config), { sparse });
}

/** `<root>/<name>-diffusion-mdlm` and `-bd3lm` sharing one model.safetensors. */
function writeModel(root, name, shape, sparse) {
  const mdlm = join(root, `${name}-diffusion-mdlm`), bd3lm = join(root, `${name}-diffusion-bd3lm`);
  for (const d of [mdlm, bd3lm]) {
    mkdirSync(d, { recursive: true });
    writeSmallFiles(d, shape);
  }
  const bytes = writeWeights(join(mdlm, 'model.safetensors'), shape.config, sparse);
  symlinkSync(join(mdlm, 'model.safetensors'), join(bd3lm, 'model.safetensors'));
  return { mdlm, bd3lm, bytes };
}

const GiB = 2 ** 30, MiB = 2 ** 20;
const cpu = readFileSync('/proc/cpuinfo', 'utf8').match(/model name\s*:\s*(.*)/)?.[1] ?? 'unknown';
const machine = { cpu, cores: os.cpus().length, memGiB: +(os.totalmem() / GiB).toFixed(1), node: process.version, load1: os.loadavg()[0] };
const date = new Date().toISOString();
const day = date.slice(0, 10);
const root = KEEP ?? mkdtempSync(join(os.tmpdir(), 'fast-dllm-a2d-'));
mkdirSync('bench/results', { recursive: true });

if (INSPECT) {
  const md = [`# dllm's A2D shapes: inspect and memory, ${day}`, '',
    `Machine: ${machine.cpu}, node ${machine.node}. Directories as dllm-hub publishes them (config, generation config, tokenizer_config with <|mask|>),`,
    'with a sparse model.safetensors of the real tensor shapes (bf16): inspect and the estimates read headers only. Generated by',
    '`node bench/a2d/bench.mjs --inspect`.', ''];
  try {
    for (const [name, shape] of Object.entries(SHAPES)) {
      const dirs = writeModel(root, name, shape, true);
      md.push(`## ${name} (${shape.config.model_type})`, '');
      for (const dir of [dirs.mdlm, dirs.bd3lm]) {
        const out = execFileSync(process.execPath, ['packages/cli/bin/fast-dllm.js', 'inspect', dir, '--canvas', '4096'], { encoding: 'utf8' });
        md.push('```', out.replace(root + '/', '').trimEnd(), '```', '');
      }
      const desc = await readModelConfig(dirs.mdlm);
      md.push('WASM engine (weights + one sequence of 4096 positions, f32 K/V):', '', '| weights | weights | K/V, 4096 positions | total | note |', '|---|---|---|---|---|');
      for (const weightDType of ['f32', 'bf16', 'int8']) {
        const m = await wasmProvider.estimateMemory(dirs.mdlm, { maxLength: 4096, weightDType });
        md.push(`| ${weightDType} | ${(m.weightBytes / GiB).toFixed(3)} GiB | ${(m.sequenceBytes / MiB).toFixed(1)} MiB | ${((m.weightBytes + m.sequenceBytes) / GiB).toFixed(3)} GiB | ${m.note ?? ''} |`);
      }
      md.push('', `K/V per position: ${desc.numLayers} layers × 2 × ${desc.numKvHeads} KV heads × ${desc.headDim} × 4 bytes = ${(desc.numLayers * 2 * desc.numKvHeads * desc.headDim * 4 / 1024).toFixed(0)} KiB.`, '');
    }
  } finally {
    if (!KEEP) rmSync(root, { recursive: true, force: true });
  }
  writeFileSync(`bench/results/a2d-inspect-${day}.md`, md.join('\n'));
  console.log(`wrote bench/results/a2d-inspect-${day}.md`);
  process.exit(0);
}
const span = (a, b) => Int32Array.from({ length: b - a }, (_, i) => a + i);
const results = { date, machine, model: {}, runs: [], notes: [] };
try {
  const shape = LAYERS ? { ...SHAPES['Qwen3-0.6B'], config: { ...SHAPES['Qwen3-0.6B'].config, num_hidden_layers: Number(LAYERS) } } : SHAPES['Qwen3-0.6B'];
  if (LAYERS) results.notes.push(`Smoke test: ${LAYERS} of 28 layers.`);
  let t = performance.now();
  const dirs = writeModel(root, 'Qwen3-0.6B', shape, false);
  console.log(`wrote ${(dirs.bytes / GiB).toFixed(2)} GiB of random bf16 weights in ${((performance.now() - t) / 1000).toFixed(1)} s`);
  results.model = { config: 'Qwen3-0.6B shape (dllm-hub/Qwen3-0.6B-diffusion-*), random bf16 weights', parameters: dirs.bytes / 2, blockSize: 32 };
  const P = 64, G = 128, L = P + G, B = 32, MASK = shape.mask;
  const canvas = new Int32Array(L).fill(MASK);
  for (let i = 0; i < P; i++) canvas[i] = 1000 + 37 * i;
  const plans = {
    mdlm: [
      ['full step', { canvas, mode: 'full', start: 0, end: L, positions: span(P, P + B) }],
      ['dual step', { canvas, mode: 'dual', start: P, end: P + B, positions: span(P, P + B) }],
    ],
    bd3lm: [
      ['prefill', { canvas: canvas.slice(0, P), mode: 'full', start: 0, end: P, positions: Int32Array.of(P - 1) }],
      ['block step', { canvas: canvas.slice(0, P + B), mode: 'prefix', start: P, end: P + B, positions: span(P, P + B) }],
      ['block end', { canvas: canvas.slice(0, P + B), mode: 'extend', start: P, end: P + B, positions: Int32Array.of(P + B - 1) }],
    ],
  };
  for (const dtype of DTYPES) for (const threads of THREADS) {
    const run = { dtype, threads, steps: {} };
    for (const variant of ['mdlm', 'bd3lm']) {
      t = performance.now();
      const e = await createWasmEngine(dirs[variant], { weightDType: dtype, threads });
      const loadS = (performance.now() - t) / 1000;
      console.log(`${variant} ${dtype}, threads ${threads}: loaded in ${loadS.toFixed(1)} s (${e.model.architecture}${e.model.blockSize ? `, blocks of ${e.model.blockSize}` : ''})`);
      run[`${variant}LoadSeconds`] = +loadS.toFixed(1);
      const seq = e.openSequence(L);
      for (const [label, req] of plans[variant]) {
        const step = await timeForward(e, seq, req, REPS, label);
        run.steps[`${variant.toUpperCase()} ${label}`] = step;
        console.log(`  ${label.padEnd(11)} ${req.mode.padEnd(7)} ${String(req.end - req.start).padStart(3)} rows: ${step.ms.join(', ')} ms`);
      }
      run[`${variant}LinearBytes`] = e.memoryUsage().linearBytes;
      e.closeSequence(seq);
      await e.dispose();
    }
    results.runs.push(run);
  }
} finally {
  if (!KEEP) rmSync(root, { recursive: true, force: true });
}
const quiet = machine.load1 <= machine.cores;
results.notes.push(quiet ? 'Load at the start was within the core count.' : `The machine was loaded (1-minute load ${machine.load1.toFixed(1)} on ${machine.cores} cores, other jobs running): timings are noisy; re-run on a quiet machine.`);
writeFileSync(`bench/results/a2d-wasm-${day}.json`, JSON.stringify(results, null, 2) + '\n');
const keys = Object.keys(results.runs[0]?.steps ?? {});
const md = [
  `# Qwen3-0.6B A2D shape on the WASM engine, ${day}`, '',
  `Machine: ${machine.cpu}, ${machine.cores} cores, ${machine.memGiB} GiB, node ${machine.node}, 1-minute load ${machine.load1.toFixed(2)} at start. ${results.notes.join(' ')}`, '',
  `Model: ${results.model.config}; ${(results.model.parameters / 1e9).toFixed(2)} B parameters; BD3LM blocks of 32. Prompt 64, 128 new tokens (canvas 192). Generated by \`node bench/a2d/bench.mjs\`.`, '',
  `| step | mode | rows | ${results.runs.map((r) => `${r.dtype}, ${r.threads} thread(s), ms`).join(' | ')} |`,
  `|---|---|---|${results.runs.map(() => '---').join('|')}|`,
  ...keys.map((k) => {
    const s = results.runs[0].steps[k];
    return `| ${k} | ${s.mode} | ${s.rows} | ${results.runs.map((r) => `${r.steps[k].medianMs} (${r.steps[k].ms.join(', ')})`).join(' | ')} |`;
  }), '',
  `Load: ${results.runs.map((r) => `${r.mdlmLoadSeconds} s at ${r.dtype}, ${r.threads} thread(s)`).join('; ')}. Linear memory held: ${results.runs.map((r) => `${(r.mdlmLinearBytes / GiB).toFixed(2)} GiB at ${r.dtype}`).join(', ')}. Upper median of ${REPS} runs after one warm-up.`, '',
];
writeFileSync(`bench/results/a2d-wasm-${day}.md`, md.join('\n'));
console.log(`wrote bench/results/a2d-wasm-${day}.md and .json`);
