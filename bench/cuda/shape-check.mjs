// Correctness of the CUDA engine at Fast-dLLM v2 7B's real widths (hidden 3584, 28 heads over 4 KV heads of 128,
// intermediate 18944, vocab 152064, untied, q/k/v biases, blocks of 32, shifted logits), at reduced depth: writes
// that configuration with --layers layers (default 2) and random bf16 weights (about 3.1 GB at 2 layers) into a
// temporary directory, runs the passes of one block-diffusion sequence (DESIGN §8) on the reference engine (float64,
// in a child process so its 6 GB of f32 weights are gone before the CUDA engine loads) and on the CUDA engine (bf16
// weights and K/V), and compares every reported logit row:
//   prefill     full    [0, 32)   positions 28..32 (row 31 predicts 32)
//   block step  prefix  [32, 40)  positions 33, 36, 40
//   block end   extend  [32, 40)  position 40
//   sub-block   dual    [34, 38)  positions 35..38, against the cache the extend wrote
// Relative error max|a - b| / max|b| per pass, against the harness's bf16 tolerance (5e-2). Not a test: slow on the
// emulator (minutes); run once per change of the kernels' shapes:
//   node bench/cuda/shape-check.mjs --emulator [--layers 2] [--out result.json] [--keep DIR]
// and on a GPU without --emulator.
import { spawnSync } from 'node:child_process';
import { mkdtempSync, readFileSync, rmSync, writeFileSync } from 'node:fs';
import os from 'node:os';
import { join } from 'node:path';
import { parseArgs } from 'node:util';
import { fileURLToPath } from 'node:url';
import { V2_7B, writeRandomModel } from './shapes.mjs';

const { values: args } = parseArgs({
  options: {
    emulator: { type: 'boolean', default: false }, layers: { type: 'string', default: '2' }, out: { type: 'string' },
    keep: { type: 'string' }, role: { type: 'string' }, dir: { type: 'string' },
  },
});
const TOLERANCE = 5e-2;
const span = (a, e) => Int32Array.from({ length: e - a }, (_, i) => a + i);

/** The sequence's passes over a canvas of 40 (a prompt of 36 tokens, then masks), each reporting logits. */
function passes(vocab, mask) {
  const canvas = Int32Array.from({ length: 40 }, (_, i) => (i < 36 ? (i * 7919 + 13) % (vocab - 1000) : mask));
  const want = { logits: true };
  return [
    { label: 'prefill full [0, 32)', canvas: canvas.slice(0, 32), mode: 'full', start: 0, end: 32, positions: span(28, 33), want },
    { label: 'block step prefix [32, 40)', canvas, mode: 'prefix', start: 32, end: 40, positions: Int32Array.of(33, 36, 40), want },
    { label: 'block end extend [32, 40)', canvas, mode: 'extend', start: 32, end: 40, positions: Int32Array.of(40), want },
    { label: 'sub-block dual [34, 38)', canvas, mode: 'dual', start: 34, end: 38, positions: span(35, 39), want },
  ];
}

/** Runs the passes on one engine; returns each pass's logits and tokens and the seconds it took. */
async function runPasses(engine) {
  const seq = engine.openSequence(40);
  const out = [];
  for (const { label, ...req } of passes(engine.model.vocabSize, engine.model.maskId)) {
    const t0 = performance.now();
    const [r] = await engine.forward([{ ...req, sequence: seq }]);
    out.push({ label, seconds: (performance.now() - t0) / 1e3, logits: Array.from(r.logits), tokens: Array.from(r.tokens) });
  }
  engine.closeSequence(seq);
  return out;
}

if (args.role === 'reference') {
  const { createReferenceEngine } = await import('@fast-dllm/engine-reference');
  const engine = await createReferenceEngine(args.dir);
  writeFileSync(args.out, JSON.stringify(await runPasses(engine)));
  await engine.dispose();
  process.exit(0);
}

const layers = Number(args.layers);
if (!Number.isInteger(layers) || layers < 1 || layers > 28) {
  console.error(`shape-check: --layers must be an integer in [1, 28], got ${args.layers}`);
  process.exit(1);
}
const { createCudaEmulatorEngine, createCudaEngine } = await import('@fast-dllm/engine-cuda');
const dir = args.keep ?? mkdtempSync(join(os.tmpdir(), 'fdl-v2-7b-'));
try {
  const config = { ...V2_7B, num_hidden_layers: layers };
  let t0 = performance.now();
  const bytes = writeRandomModel(dir, config);
  console.log(`wrote Fast-dLLM v2 7B's shape with ${layers} layers, random bf16 weights: ${(bytes / 2 ** 30).toFixed(2)} GiB in ${((performance.now() - t0) / 1e3).toFixed(0)} s (${dir})`);

  t0 = performance.now();
  const refFile = join(dir, 'reference.json');
  const child = spawnSync(process.execPath, [fileURLToPath(import.meta.url), '--role', 'reference', '--dir', dir, '--out', refFile], { stdio: 'inherit' });
  if (child.status !== 0) throw new Error(`the reference engine failed (exit ${child.status})`);
  const ref = JSON.parse(readFileSync(refFile, 'utf8'));
  console.log(`reference engine (float64): ${((performance.now() - t0) / 1e3).toFixed(0)} s`);

  const name = args.emulator ? 'cuda-emulator' : 'cuda';
  t0 = performance.now();
  const engine = await (args.emulator ? createCudaEmulatorEngine : createCudaEngine)(dir, { weightDType: 'bf16', kvDType: 'bf16' });
  console.log(`${name} engine loaded in ${((performance.now() - t0) / 1e3).toFixed(0)} s`);
  const got = await runPasses(engine);
  await engine.dispose();

  const rows = got.map((g, i) => {
    const r = ref[i];
    let num = 0;
    let den = 0;
    for (let j = 0; j < r.logits.length; j++) {
      num = Math.max(num, Math.abs(g.logits[j] - r.logits[j]));
      den = Math.max(den, Math.abs(r.logits[j]));
    }
    const relError = num / den;
    const sameTokens = g.tokens.filter((t, j) => t === r.tokens[j]).length;
    console.log(`${g.label.padEnd(28)} ${name} ${g.seconds.toFixed(1).padStart(6)} s, reference ${r.seconds.toFixed(1).padStart(6)} s; relative error ${relError.toExponential(2)} (${relError <= TOLERANCE ? 'within' : 'OVER'} ${TOLERANCE}); tokens equal ${sameTokens}/${g.tokens.length}`);
    return { pass: g.label, seconds: g.seconds, referenceSeconds: r.seconds, relError, tokensEqual: sameTokens, reported: g.tokens.length };
  });
  const ok = rows.every((r) => r.relError <= TOLERANCE);
  const record = { date: new Date().toISOString(), engine: name, shape: 'v2-7b', layers, machine: `${os.cpus().length} CPUs (${os.cpus()[0]?.model})`, tolerance: TOLERANCE, ok, passes: rows };
  if (args.out) writeFileSync(args.out, JSON.stringify(record, null, 2) + '\n');
  console.log(ok ? 'shape check OK' : 'shape check FAILED');
  process.exitCode = ok ? 0 : 1;
} finally {
  if (!args.keep) rmSync(dir, { recursive: true, force: true });
}
