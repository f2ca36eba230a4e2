// CUDA engine latency on the LLaDA-8B shape with random bf16 weights generated on the device (no checkpoint): full,
// prefix and dual forwards at each canvas (default 512 and 2048: prompt = half the canvas, the block of 32 after
// it), K/V cache in bf16, against the memory floor measured in the same run: the bytes a step must read (every
// weight but the embedding, plus for cached steps the K/V it attends to) over the device's copy bandwidth.
// Batched dual steps (batch 1, 4, 16, tokens/s) are not measured yet: the native model runs one sequence per pass.
// Run on a GPU machine: `node bench/cuda/bench.mjs [--iters N] [--canvas 512,2048] [--out results.json]`
// (bench/cuda/device-run.sh does). `--emulator` runs the same script on the CPU emulator build with a 2-layer
// miniature of the same layout: a check of the script itself on a machine without a GPU; its times mean nothing.
import { writeFileSync } from 'node:fs';
import { parseArgs } from 'node:util';
import { EMULATOR_ADDON_PATH, loadBinding, planWeights } from '@fast-dllm/engine-cuda';
import { expectedShapes, tensorNames } from '@fast-dllm/model';

const { values: args } = parseArgs({
  options: {
    iters: { type: 'string', default: '10' }, out: { type: 'string' }, emulator: { type: 'boolean', default: false },
    canvas: { type: 'string' },
  },
});
const iters = Number(args.iters);
if (!Number.isInteger(iters) || iters < 1) { console.error(`bench: --iters must be a positive integer, got ${args.iters}`); process.exit(1); }
const BLOCK = args.emulator ? 16 : 32;
const canvasArg = args.canvas ?? (args.emulator ? '32,64' : '512,2048');
const canvases = canvasArg.split(',').map(Number);
if (canvases.some((L) => !Number.isInteger(L) || L < 2 * BLOCK || L % 2 !== 0)) {
  console.error(`bench: --canvas must be even integers >= ${2 * BLOCK}, comma-separated, got ${canvasArg}`);
  process.exit(1);
}
const b = args.emulator ? loadBinding(EMULATOR_ADDON_PATH) : loadBinding();
if (!b.ok) { console.error(`bench: ${b.reason}`); process.exit(1); }
const info = b.binding.deviceInfo();
if (!info.available) { console.error(`bench: ${info.reason} (driver ${info.driverVersion}, runtime ${info.runtimeVersion})`); process.exit(1); }

// LLaDA-8B-Instruct shapes (config.json of GSAI-ML/LLaDA-8B-Instruct); the emulator gets a 2-layer miniature.
const desc = {
  architecture: 'llada', hiddenSize: 4096, numLayers: 32, numHeads: 32, numKvHeads: 32, headDim: 128, intermediateSize: 12288,
  vocabSize: 126464, maxPositions: 4096, rmsNormEps: 1e-5, ropeTheta: 500000, qkvBias: false, tiedEmbeddings: false,
  shiftLogits: false, special: { mask: 126336, eos: 126081 },
  ...(args.emulator ? { hiddenSize: 128, numLayers: 2, numHeads: 4, numKvHeads: 4, headDim: 32, intermediateSize: 256, vocabSize: 512, special: { mask: 500, eos: 501 } } : {}),
};
const names = tensorNames(desc);
const plan = planWeights(desc, names, expectedShapes(desc, names), 'bf16', Math.max(...canvases), 'bf16');
// A forward reads every weight once except the embedding (a gather of its rows).
const streamedBytes = plan.weightBytes - plan.tensors.find((t) => t.slot === 0).bytes;
/** Bytes of bf16 K and V a cached step reads over all layers when it attends to L keys. */
const kvBytes = (L) => 2 * desc.numLayers * L * desc.numKvHeads * desc.headDim * 2;

console.log(`device: ${info.name} (sm ${info.computeCapability}, ${info.multiprocessors} SMs), ${(info.freeBytes / 2 ** 30).toFixed(1)} GiB free; driver CUDA ${info.driverVersion}, runtime CUDA ${info.runtimeVersion}`);
const model = new b.binding.CudaModel({ ...desc, bf16: true, kvBf16: true, maskId: desc.special.mask });
await model.randomize(1234, 0.02);
const bw = await b.binding.copyBandwidth(args.emulator ? 1 << 24 : 1 << 30, 20);
const floorMs = (bytes) => (bytes / bw) * 1e3;
console.log(`weights streamed per forward: ${(streamedBytes / 1e9).toFixed(2)} GB bf16; copy bandwidth ${(bw / 1e9).toFixed(0)} GB/s (read + write)`);

/** Median of `iters` timed calls of fn after one warm-up, in ms (host clock around an awaited forward). */
async function median(fn) {
  await fn();
  const t = [];
  for (let i = 0; i < iters; i++) {
    const t0 = performance.now();
    await fn();
    t.push(performance.now() - t0);
  }
  t.sort((x, y) => x - y);
  return t[Math.floor(t.length / 2)];
}

const opts = { sample: false, temperature: 1, seed: 0, forwardIndex: 0, top2: false, entropy: false, logits: false };
const results = [];
for (const L of canvases) {
  const prompt = L / 2;
  const canvas = new Int32Array(L);
  for (let i = 0; i < L; i++) canvas[i] = i < prompt ? (i * 7919) % (desc.vocabSize - 16) : desc.special.mask;
  const s = prompt, e = prompt + BLOCK;
  const block = Int32Array.from({ length: BLOCK }, (_, i) => s + i);
  const rows = (start) => Int32Array.from(block, (p) => p - start);
  const steps = {
    // [run, bytes the step must read at least]
    full: [() => model.forward(canvas, 0, 0, L, rows(0), block, opts), streamedBytes],
    prefix: [() => model.forward(canvas, 1, s, L, rows(s), block, opts), streamedBytes + kvBytes(s)],
    dual: [() => model.forward(canvas, 2, s, e, rows(s), block, opts), streamedBytes + kvBytes(L)],
  };
  await steps.full[0](); // builds the cache prefix and dual need
  for (const [step, [fn, bytes]] of Object.entries(steps)) {
    const ms = await median(fn);
    const r = { canvas: L, prompt, block: BLOCK, step, medianMs: ms, floorMs: floorMs(bytes), weightFloorMs: floorMs(streamedBytes) };
    results.push(r);
    console.log(`canvas ${String(L).padStart(4)} ${step.padEnd(6)} median ${ms.toFixed(2)} ms  floor ${r.floorMs.toFixed(2)} ms (${(ms / r.floorMs).toFixed(2)}x; weights alone ${r.weightFloorMs.toFixed(2)} ms)`);
  }
}

// Several sequences per pass need the batched native model (contract v2 with maxBatch > 1), which does not exist yet.
const batched = { measured: false, reason: 'the native model runs one sequence per pass (engine maxBatch 1)' };
console.log(`batched dual steps (batch 1, 4, 16): not measured: ${batched.reason}`);
model.free();

const record = {
  date: new Date().toISOString(), device: info.name, computeCapability: info.computeCapability, multiprocessors: info.multiprocessors,
  driverVersion: info.driverVersion, runtimeVersion: info.runtimeVersion,
  shape: args.emulator ? 'miniature (emulator check)' : 'LLaDA-8B, random bf16 weights, bf16 K/V',
  iters, emulator: args.emulator, streamedBytes, bandwidthBps: bw, results, batched,
};
console.log(JSON.stringify(record));
if (args.out) writeFileSync(args.out, JSON.stringify(record, null, 2) + '\n');
