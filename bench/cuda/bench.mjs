// CUDA engine latency with random bf16 weights generated on the device (no checkpoint), K/V cache in bf16, through
// the engine itself (CudaEngine over the native model: sequences, passes, reports), against the memory floor
// measured in the same run: the bytes a step must read (every weight but the embedding, plus for cached steps the
// K/V it attends to) over the device's copy bandwidth.
//   --shape llada-8b (default): full, prefix and dual forwards at each canvas (default 512 and 2048: prompt = half
//     the canvas, the block of 32 after it), then batched dual steps: 1, 4 and 16 sequences of canvas 512, each a
//     32-row dual step, in one pass (--batch): ms per pass and tokens/s, counting the 32 block positions each
//     sequence's step computes (the decoding rate is that times the share a step commits, the same at every batch
//     size, DESIGN §7).
//   --shape v2-7b: Fast-dLLM v2 7B's steps (DESIGN §8) on a prompt of --canvas tokens (default 512, whole blocks):
//     prefill (full [0, P), row P-1 predicts P), block step (prefix [P, P+32), 32 positions reported), block end
//     (extend [P, P+32), row P+31 predicts the next block's first position) and sub-block step (dual [P+8, P+16)
//     against the kept block); first the plan: weights, one sequence's cache, the pass scratch, and whether it fits.
// Run on a GPU machine: `node bench/cuda/bench.mjs [--shape S] [--iters N] [--canvas 512,2048] [--out results.json]`
// (bench/cuda/device-run.sh does). `--emulator` runs the same script on the CPU emulator build with a 2-layer
// miniature of the same layout: a check of the script itself on a machine without a GPU; its times mean nothing.
import { writeFileSync } from 'node:fs';
import { parseArgs } from 'node:util';
import { CudaEngine, EMULATOR_ADDON_PATH, loadBinding, planWeights, reportChunk } from '@fast-dllm/engine-cuda';
import { expectedShapes, schedulerModelInfo, tensorNames } from '@fast-dllm/model';
import { MINIATURE, SHAPES, describe } from './shapes.mjs';

const { values: args } = parseArgs({
  options: {
    iters: { type: 'string', default: '10' }, out: { type: 'string' }, emulator: { type: 'boolean', default: false },
    canvas: { type: 'string' }, shape: { type: 'string', default: 'llada-8b' }, batch: { type: 'string' },
  },
});
const fail = (msg) => {
  console.error(`bench: ${msg}`);
  process.exit(1);
};
const iters = Number(args.iters);
if (!Number.isInteger(iters) || iters < 1) fail(`--iters must be a positive integer, got ${args.iters}`);
if (!(args.shape in SHAPES)) fail(`--shape must be one of ${Object.keys(SHAPES).join(', ')}, got ${args.shape}`);
const v2 = args.shape === 'v2-7b';
const BLOCK = v2 ? 32 : args.emulator ? 16 : 32;
const canvasArg = args.canvas ?? (v2 ? (args.emulator ? '64' : '512') : args.emulator ? '32,64' : '512,2048');
const canvases = canvasArg.split(',').map(Number);
if (canvases.some((L) => !Number.isInteger(L) || (v2 ? L < BLOCK || L % BLOCK !== 0 : L < 2 * BLOCK || L % 2 !== 0))) {
  fail(v2 ? `--canvas (the prompt) must be multiples of ${BLOCK}, comma-separated, got ${canvasArg}` : `--canvas must be even integers >= ${2 * BLOCK}, comma-separated, got ${canvasArg}`);
}
const batches = (args.batch ?? (v2 ? '' : '1,4,16')).split(',').filter(Boolean).map(Number);
if (batches.some((n) => !Number.isInteger(n) || n < 1 || n > 64)) fail(`--batch must be integers in [1, 64], comma-separated, got ${args.batch}`);
const b = args.emulator ? loadBinding(EMULATOR_ADDON_PATH) : loadBinding();
if (!b.ok) fail(b.reason);
const info = b.binding.deviceInfo();
if (!info.available) fail(`${info.reason} (driver ${info.driverVersion}, runtime ${info.runtimeVersion})`);

const { desc } = describe(args.emulator ? MINIATURE[args.shape] : SHAPES[args.shape]);
const names = tensorNames(desc);
/** Canvas of each sequence of the batched dual steps. */
const BATCH_CANVAS = args.emulator ? 64 : 512;
const longest = v2 ? Math.max(...canvases) + BLOCK : Math.max(...canvases, batches.length ? BATCH_CANVAS : 0);
const plan = planWeights(desc, names, expectedShapes(desc, names), 'bf16', longest, 'bf16', info.multiprocessors);
// A forward reads every weight once except the embedding (a gather of its rows).
const streamedBytes = plan.weightBytes - plan.tensors.find((t) => t.slot === 0).bytes;
/** Bytes of bf16 K and V a cached step reads over all layers when it attends to L keys. */
const kvBytes = (L) => 2 * desc.numLayers * L * desc.numKvHeads * desc.headDim * 2;
const GB = (x) => `${(x / 2 ** 30).toFixed(2)} GiB`;

console.log(`device: ${info.name} (sm ${info.computeCapability}, ${info.multiprocessors} SMs), ${GB(info.freeBytes)} free; driver CUDA ${info.driverVersion}, runtime CUDA ${info.runtimeVersion}`);
console.log(`shape ${args.shape}${args.emulator ? ' (2-layer miniature)' : ''}: d ${desc.hiddenSize}, ${desc.numLayers} layers, ${desc.numHeads} heads / ${desc.numKvHeads} KV of ${desc.headDim}, ff ${desc.intermediateSize}, vocab ${desc.vocabSize}${desc.blockSize ? `, blocks of ${desc.blockSize}` : ''}`);
const fits = plan.totalBytes <= info.freeBytes;
console.log(`plan: weights ${GB(plan.weightBytes)} bf16, one sequence of ${longest} positions ${GB(plan.cacheBytes)} bf16 K/V, pass scratch ${GB(plan.scratchBytes)} (${plan.passRows} rows): ${GB(plan.totalBytes)} ${fits ? 'fits' : 'does NOT fit'} in ${GB(info.freeBytes)} free`);
if (!fits) fail(`the ${args.shape} shape does not fit on ${info.name}`);

const native = new b.binding.CudaModel({
  hiddenSize: desc.hiddenSize, numLayers: desc.numLayers, numHeads: desc.numHeads, numKvHeads: desc.numKvHeads, headDim: desc.headDim,
  intermediateSize: desc.intermediateSize, vocabSize: desc.vocabSize, maxPositions: desc.maxPositions, rmsNormEps: desc.rmsNormEps,
  ropeTheta: desc.ropeTheta, qkvBias: desc.qkvBias, bf16: true, kvBf16: true, maskId: desc.special.mask, qkNorm: desc.qkNorm,
  blockSize: desc.blockSize ?? 0, reportChunk: reportChunk(desc.vocabSize),
});
await native.randomize(1234, 0.02);
const free = b.binding.deviceInfo().freeBytes;
const engine = new CudaEngine(schedulerModelInfo(desc), native, desc, args.emulator ? 'cuda-emulator' : 'cuda', 'bf16', 'bf16', {
  memoryBytes: free - 256 * 2 ** 20, sms: info.multiprocessors,
});
const bw = await b.binding.copyBandwidth(args.emulator ? 1 << 24 : 1 << 30, 20);
const floorMs = (bytes) => (bytes / bw) * 1e3;
console.log(`weights streamed per forward: ${(streamedBytes / 1e9).toFixed(2)} GB bf16; copy bandwidth ${(bw / 1e9).toFixed(0)} GB/s (read + write)`);

/** Median of `iters` timed calls of fn after one warm-up, in ms (host clock around an awaited pass). */
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
const span = (a, e) => Int32Array.from({ length: e - a }, (_, i) => a + i);
/** A canvas of L: `prompt` tokens, then masks. */
const canvasOf = (L, prompt, salt = 0) => Int32Array.from({ length: L }, (_, i) => (i < prompt ? (i * 7919 + salt * 104729) % (desc.vocabSize - 16) : desc.special.mask));

const results = [];
const record = (canvas, prompt, step, ms, bytes) => {
  const r = { canvas, prompt, block: BLOCK, step, medianMs: ms, floorMs: floorMs(bytes), weightFloorMs: floorMs(streamedBytes) };
  results.push(r);
  console.log(`canvas ${String(canvas).padStart(4)} ${step.padEnd(9)} median ${ms.toFixed(2)} ms  floor ${r.floorMs.toFixed(2)} ms (${(ms / r.floorMs).toFixed(2)}x; weights alone ${r.weightFloorMs.toFixed(2)} ms)`);
};

if (!v2) {
  for (const L of canvases) {
    const prompt = L / 2;
    const canvas = canvasOf(L, prompt);
    const s = prompt, e = prompt + BLOCK;
    const seq = engine.openSequence(L);
    const step = (mode, start, end) => () => engine.forward([{ sequence: seq, canvas, mode, start, end, positions: span(s, e) }]);
    await step('full', 0, L)(); // builds the cache prefix and dual need
    record(L, prompt, 'full', await median(step('full', 0, L)), streamedBytes);
    record(L, prompt, 'prefix', await median(step('prefix', s, L)), streamedBytes + kvBytes(s));
    record(L, prompt, 'dual', await median(step('dual', s, e)), streamedBytes + kvBytes(L));
    engine.closeSequence(seq);
  }
} else {
  for (const P of canvases) {
    const L = P + BLOCK;
    const canvas = canvasOf(L, P);
    const seq = engine.openSequence(L);
    const pass = (mode, start, end, positions, c = canvas) => () => engine.forward([{ sequence: seq, canvas: c, mode, start, end, positions }]);
    const prefill = pass('full', 0, P, Int32Array.of(P), canvas.subarray(0, P));
    await prefill();
    record(P, P, 'prefill', await median(prefill), streamedBytes);
    record(L, P, 'block', await median(pass('prefix', P, L, span(P + 1, L + 1))), streamedBytes + kvBytes(P));
    record(L, P, 'block-end', await median(pass('extend', P, L, Int32Array.of(L))), streamedBytes + kvBytes(P));
    record(L, P, 'sub-block', await median(pass('dual', P + 8, P + 16, span(P + 9, P + 17))), streamedBytes + kvBytes(L));
    engine.closeSequence(seq);
  }
}

let batched;
if (batches.length) {
  // DualCache steps of many sequences in one pass: each sequence's canvas of Lb (prompt Lb/2, its block after it),
  // the cache built by a full forward; a pass is one 32-row dual step of each of the first B sequences.
  const Lb = BATCH_CANVAS, prompt = Lb / 2;
  const most = Math.max(...batches);
  const seqs = Array.from({ length: most }, () => engine.openSequence(Lb));
  const canvases = seqs.map((_, i) => canvasOf(Lb, prompt, i));
  const perPass = Math.max(1, Math.floor(2048 / Lb));
  for (let i = 0; i < most; i += perPass) {
    await engine.forward(seqs.slice(i, i + perPass).map((sequence, j) => ({ sequence, canvas: canvases[i + j], mode: 'full', start: 0, end: Lb, positions: span(prompt, prompt + 1) })));
  }
  const rows = [];
  for (const B of batches) {
    const pass = () => engine.forward(seqs.slice(0, B).map((sequence, i) => ({
      sequence, canvas: canvases[i], mode: 'dual', start: prompt, end: prompt + BLOCK, positions: span(prompt, prompt + BLOCK),
    })));
    const ms = await median(pass);
    const r = { batch: B, canvas: Lb, block: BLOCK, msPerPass: ms, tokensPerSecond: (B * BLOCK) / (ms / 1e3), floorMs: floorMs(streamedBytes + B * kvBytes(Lb)) };
    rows.push(r);
    console.log(`batch ${String(B).padStart(2)} dual steps (canvas ${Lb}): ${ms.toFixed(2)} ms per pass, ${r.tokensPerSecond.toFixed(0)} tokens/s (floor ${r.floorMs.toFixed(2)} ms)`);
  }
  const one = rows.find((r) => r.batch === 1);
  for (const r of rows) if (one && r !== one) console.log(`batch ${r.batch}: ${(r.tokensPerSecond / one.tokensPerSecond).toFixed(2)}x the tokens/s of batch 1`);
  batched = { measured: true, canvas: Lb, tokens: `block positions computed per second (${BLOCK} per sequence per pass)`, results: rows };
  seqs.forEach((s) => engine.closeSequence(s));
} else {
  batched = { measured: false, reason: v2 ? 'not run for this shape (--batch)' : 'no --batch sizes given' };
}
await engine.dispose();

const out = {
  date: new Date().toISOString(), device: info.name, computeCapability: info.computeCapability, multiprocessors: info.multiprocessors,
  driverVersion: info.driverVersion, runtimeVersion: info.runtimeVersion, shape: args.shape, miniature: args.emulator,
  model: args.emulator ? '2-layer miniature (emulator check)' : `${args.shape}, random bf16 weights, bf16 K/V`,
  plan: { weightBytes: plan.weightBytes, cacheBytes: plan.cacheBytes, scratchBytes: plan.scratchBytes, totalBytes: plan.totalBytes, freeBytes: info.freeBytes },
  iters, emulator: args.emulator, streamedBytes, bandwidthBps: bw, results, batched,
};
console.log(JSON.stringify(out));
if (args.out) writeFileSync(args.out, JSON.stringify(out, null, 2) + '\n');
