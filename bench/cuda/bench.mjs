// CUDA engine latency on the LLaDA-8B shape with random bf16 weights generated on the device (no checkpoint):
// full, prefix and dual forwards on a 256 + 256 canvas with block 32, against the memory floor
// weight bytes / device copy bandwidth measured in the same run. UNVERIFIED: written on a machine without a GPU.
// Run on a GPU machine: `node bench/cuda/bench.mjs [--iters N] [--out results.json]` (bench/cuda/device-run.sh).
// `--emulator` runs the same script on the CPU emulator build with a tiny model of the same layout: a check of
// the script itself on a machine without a GPU; its times mean nothing.
import { writeFileSync } from 'node:fs';
import { parseArgs } from 'node:util';
import { EMULATOR_ADDON_PATH, loadBinding, planWeights } from '@fast-dllm/engine-cuda';
import { expectedShapes, tensorNames } from '@fast-dllm/model';

const { values: args } = parseArgs({
  options: { iters: { type: 'string', default: '10' }, out: { type: 'string' }, emulator: { type: 'boolean', default: false } },
});
const iters = Number(args.iters);
if (!Number.isInteger(iters) || iters < 1) { console.error(`bench: --iters must be a positive integer, got ${args.iters}`); process.exit(1); }
const b = args.emulator ? loadBinding(EMULATOR_ADDON_PATH) : loadBinding();
if (!b.ok) { console.error(`bench: ${b.reason}`); process.exit(1); }
const info = b.binding.deviceInfo();
if (!info.available) { console.error(`bench: ${info.reason}`); process.exit(1); }

// LLaDA-8B-Instruct shapes (config.json of GSAI-ML/LLaDA-8B-Instruct); the emulator gets a 2-layer miniature.
const desc = {
  architecture: 'llada', hiddenSize: 4096, numLayers: 32, numHeads: 32, numKvHeads: 32, headDim: 128, intermediateSize: 12288,
  vocabSize: 126464, maxPositions: 4096, rmsNormEps: 1e-5, ropeTheta: 500000, qkvBias: false, tiedEmbeddings: false,
  shiftLogits: false, special: { mask: 126336, eos: 126081 },
  ...(args.emulator ? { hiddenSize: 128, numLayers: 2, numHeads: 4, numKvHeads: 4, headDim: 32, intermediateSize: 256, vocabSize: 512, special: { mask: 500, eos: 501 } } : {}),
};
const [PROMPT, GEN, BLOCK] = args.emulator ? [32, 32, 16] : [256, 256, 32];
const L = PROMPT + GEN;
const names = tensorNames(desc);
const plan = planWeights(desc, names, expectedShapes(desc, names), 'bf16', L);
// The forward reads every weight once except the embedding (a gather of L rows).
const streamedBytes = plan.weightBytes - plan.tensors.find((t) => t.slot === 0).bytes;

console.log(`device: ${info.name} (sm ${info.computeCapability}), ${(info.freeBytes / 2 ** 30).toFixed(1)} GiB free`);
const model = new b.binding.CudaModel({ ...desc, bf16: true, maskId: desc.special.mask });
await model.randomize(1234, 0.02);
const bw = await b.binding.copyBandwidth(args.emulator ? 1 << 24 : 1 << 30, 20);
const floorMs = (streamedBytes / bw) * 1e3;

const canvas = new Int32Array(L);
for (let i = 0; i < L; i++) canvas[i] = i < PROMPT ? (i * 7919) % (desc.vocabSize - 16) : desc.special.mask;
const s = PROMPT, e = PROMPT + BLOCK;
const block = Int32Array.from({ length: BLOCK }, (_, i) => s + i);
const rows = (start) => Int32Array.from(block, (p) => p - start);
const opts = { sample: false, temperature: 1, seed: 0, forwardIndex: 0, top2: false, entropy: false, logits: false };
const steps = {
  full: () => model.forward(canvas, 0, 0, L, rows(0), block, opts),
  prefix: () => model.forward(canvas, 1, s, L, rows(s), block, opts),
  dual: () => model.forward(canvas, 2, s, e, rows(s), block, opts),
};
await steps.full(); // builds the cache prefix/dual need, and warms up
const results = {};
for (const [name, fn] of Object.entries(steps)) {
  await fn();
  const t = [];
  for (let i = 0; i < iters; i++) {
    const t0 = performance.now();
    await fn();
    t.push(performance.now() - t0);
  }
  t.sort((x, y) => x - y);
  results[name] = t[Math.floor(t.length / 2)];
}
model.free();
console.log(`weights streamed per forward: ${(streamedBytes / 1e9).toFixed(2)} GB bf16; copy bandwidth ${(bw / 1e9).toFixed(0)} GB/s (read+write)`);
console.log(`floor (weight bytes / bandwidth): ${floorMs.toFixed(2)} ms`);
for (const [name, ms] of Object.entries(results)) {
  console.log(`${name.padEnd(6)} median ${ms.toFixed(2)} ms  (${(ms / floorMs).toFixed(2)}x floor)  over ${iters} runs`);
}
const record = {
  date: new Date().toISOString(), device: info.name, computeCapability: info.computeCapability,
  shape: args.emulator ? 'miniature (emulator check)' : 'LLaDA-8B, random bf16',
  canvas: L, prompt: PROMPT, block: BLOCK, iters, emulator: args.emulator, streamedBytes, bandwidthBps: bw, floorMs, medianMs: results,
};
console.log(JSON.stringify(record));
if (args.out) writeFileSync(args.out, JSON.stringify(record, null, 2) + '\n');
