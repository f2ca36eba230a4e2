// WASM engine benchmark (not a test). Run after `npm run build -w @fast-dllm/engine-wasm`:
//   nice -n 10 node bench/wasm/bench.mjs [--quick]
// Per-kernel matmul GFLOP/s (int8: GOP/s, 2 ops per multiply-add) for the fixture model's shapes and a ~100M
// LLaDA-shaped model, beside native OpenBLAS sgemm (through /usr/bin/python3 + torch) in the same run; forward
// latency of the 100M model at prompt 64 + gen 256, block 32 (full forward, prefix step, dual step) with f32 and
// int8 weights, beside a PyTorch CPU float32 full forward. Writes bench/results/wasm-<date>.json and .md.
import { execFileSync } from 'node:child_process';
import { readFileSync, writeFileSync, mkdirSync } from 'node:fs';
import os from 'node:os';
import { loadKernels, loadThreadedKernels, relaxedSimdAvailable, WasmEngine } from '@fast-dllm/engine-wasm';
import { BIG, bigCanvas, bigDesc, bigNames, bigReader, range, rnd } from './synthetic.mjs';

const quick = process.argv.includes('--quick');
const FIXTURE = { d: 64, ff: 160, vocab: 320, L: 40 };
const shapes = [
  ['fixture qkvo', FIXTURE.L, FIXTURE.d, FIXTURE.d], ['fixture gate/up', FIXTURE.L, FIXTURE.d, FIXTURE.ff],
  ['fixture down', FIXTURE.L, FIXTURE.ff, FIXTURE.d], ['fixture lm head', FIXTURE.L, FIXTURE.d, FIXTURE.vocab],
  ['100M qkvo full', BIG.L, BIG.d, BIG.d], ['100M gate/up full', BIG.L, BIG.d, BIG.ff],
  ['100M down full', BIG.L, BIG.ff, BIG.d], ['100M gate/up dual', BIG.block, BIG.d, BIG.ff],
  ['100M lm head dual', BIG.block, BIG.d, BIG.vocab],
];

function timeBest(fn, reps) {
  fn();
  let best = Infinity;
  for (let r = 0; r < reps; r++) { const t = performance.now(); fn(); best = Math.min(best, performance.now() - t); }
  return best;
}

const results = { date: new Date().toISOString(), machine: {}, matmul: [], forward: {}, notes: [] };
const cpu = readFileSync('/proc/cpuinfo', 'utf8').match(/model name\s*:\s*(.*)/)?.[1] ?? 'unknown';
results.machine = { cpu, cores: os.cpus().length, node: process.version, load1: os.loadavg()[0] };

// ---- kernels: plain SIMD and SIMD + FMA (relaxed SIMD) on 1 thread, FMA on 2 threads; bf16 and int8 weights
// (int8: the relaxed build's i8×i7 dot and the SIMD128 build's i16 dot) on the 100M shapes; the scalar debug build
// (unoptimised) on the fixture shapes only
const fmaOk = await relaxedSimdAvailable();
results.machine.relaxedSimd = fmaOk;
const configs = [
  { threads: 1, fma: false }, { threads: 1, fma: true }, { threads: 2, fma: true }, { threads: 1, fma: true, dtype: 'bf16' },
  { threads: 1, fma: true, dtype: 'int8' }, { threads: 2, fma: true, dtype: 'int8' }, { threads: 1, fma: false, dtype: 'int8' },
  { threads: 1, simd: false },
].filter((c) => !c.fma || fmaOk);
const load = (c) => (c.threads > 1 ? loadThreadedKernels(c.threads, { fma: c.fma }) : loadKernels({ simd: c.simd ?? true, fma: c.simd === false ? undefined : c.fma }));
for (const c of configs) {
  const K = await load(c);
  for (const [label, n, k, m] of shapes) {
    if (c.simd === false && (quick || label.startsWith('100M'))) continue;
    if (c.dtype && !label.startsWith('100M')) continue;
    const mark = K.mark();
    const x = K.allocF32(n * k, rnd(n * k, 1)), w = K.allocWeight(rnd(m * k, 2), m, k, c.dtype ?? 'f32'), y = K.allocF32(n * m);
    const ms = timeBest(() => K.matmul(x, w, null, y, n), n * k * m > 1e8 ? 3 : 10);
    const build = c.dtype ? `${K.build} ${c.dtype} W` : K.build;
    results.matmul.push({ label, n, in: k, out: m, build, dtype: c.dtype ?? 'f32', threads: c.threads, gflops: 2 * n * k * m / ms / 1e6 });
    K.release(mark);
  }
  await K.parallel?.dispose();
}
results.notes.push('Weights are packed into 8-column panels at load (not timed); x and y are plain row-major f32.');
results.notes.push('With threads, matmuls, attention and the logits-row reductions are split by rows over the workers; norms, RoPE and SwiGLU stay on the calling thread.');
results.notes.push('"bf16 W": weights stored as bf16 (half the bytes), f32 arithmetic; the BLAS column is still f32 sgemm.');
results.notes.push('"int8 W": @fast-dllm/model int8 format (7-bit weight blocks of 32, activations quantized per row and block inside the timed call, exact integer dot products); GOP/s counts 2 ops per multiply-add, like GFLOP/s.');
results.notes.push('BLAS numbers were measured in the same run for a fair ratio; load is the 1-minute average when the run started.');

// ---- native sgemm + PyTorch forward in the same run
// OpenBLAS fixes its thread count when it loads (torch.set_num_threads does not limit it), so each thread
// count runs in its own process with OPENBLAS_NUM_THREADS / OMP_NUM_THREADS set.
const native = { sgemm: [], forward: [] };
for (const th of [1, 2]) {
  const r = JSON.parse(execFileSync('/usr/bin/python3', [new URL('./native_sgemm.py', import.meta.url).pathname,
    JSON.stringify({ shapes: shapes.map((s) => s.slice(1)), threads: [th], model: quick ? null : BIG })],
  { encoding: 'utf8', maxBuffer: 1 << 24, env: { ...process.env, OPENBLAS_NUM_THREADS: String(th), OMP_NUM_THREADS: String(th) } }));
  native.torch = r.torch;
  native.sgemm.push(...r.sgemm);
  native.forward.push(...r.forward);
}
results.native = native;
for (const r of results.matmul) {
  const b = native.sgemm.find((s) => s.n === r.n && s.in === r.in && s.out === r.out && s.threads === 1);
  const bt = native.sgemm.find((s) => s.n === r.n && s.in === r.in && s.out === r.out && s.threads === r.threads);
  r.blas1 = b?.gflops;
  r.blasSameThreads = bt?.gflops;
  r.ratioToBlas = bt ? r.gflops / bt.gflops : undefined;
}

// ---- int8 against the f32 FMA kernel, interleaved: on one kernel instance per thread count, each 100M shape is timed
// f32, int8, f32, int8, … and the best of each kept, so both see the same machine load (the machine may be shared).
results.int8VsF32 = [];
if (fmaOk) {
  for (const threads of [1, 2]) {
    const K = await load({ threads, fma: true });
    for (const [label, n, k, m] of shapes.filter((s) => s[0].startsWith('100M'))) {
      const mark = K.mark();
      const x = K.allocF32(n * k, rnd(n * k, 1)), y = K.allocF32(n * m);
      const w = { f32: K.allocWeight(rnd(m * k, 2), m, k, 'f32'), int8: K.allocWeight(rnd(m * k, 2), m, k, 'int8') };
      const best = { f32: Infinity, int8: Infinity };
      const reps = n * k * m > 1e8 ? 4 : 10;
      for (const dtype of ['f32', 'int8']) K.matmul(x, w[dtype], null, y, n); // warm-up
      for (let r = 0; r < reps; r++) {
        for (const dtype of ['f32', 'int8']) {
          const t = performance.now();
          K.matmul(x, w[dtype], null, y, n);
          best[dtype] = Math.min(best[dtype], performance.now() - t);
        }
      }
      const gop = (ms) => 2 * n * k * m / ms / 1e6;
      results.int8VsF32.push({ label, n, in: k, out: m, build: K.build, threads, f32: gop(best.f32), int8: gop(best.int8), ratio: best.f32 / best.int8 });
      K.release(mark);
    }
    await K.parallel?.dispose();
  }
}

// ---- forward latency of the 100M model (random weights through a synthetic reader, the same for every config)
if (!quick) {
  const forwardConfigs = [
    { threads: 1, fma: false }, { threads: 1, fma: true }, { threads: 2, fma: true },
    { threads: 1, fma: true, dtype: 'int8' }, { threads: 2, fma: true, dtype: 'int8' }, { threads: 1, fma: false, dtype: 'int8' },
  ].filter((c) => !c.fma || fmaOk);
  for (const c of forwardConfigs) {
  const K = await load(c);
  const dtype = c.dtype ?? 'f32';
  const key = `${K.build} ${dtype} ${c.threads} thread(s)`;
  const engine = await WasmEngine.load(bigDesc, bigNames, bigReader(), K, dtype);
  const L = BIG.L;
  const canvas = bigCanvas();
  const s = BIG.P + BIG.block; // second block
  const sequence = engine.openSequence(L);
  const fwd = (req) => engine.forward([{ ...req, sequence }]);
  const t = async (req, reps) => { await fwd(req); let b = Infinity; for (let r = 0; r < reps; r++) { const t0 = performance.now(); await fwd(req); b = Math.min(b, performance.now() - t0); } return b; };
  const full = await t({ canvas, mode: 'full', start: 0, end: L, positions: range(BIG.P, L) }, 4);
  const prefix = await t({ canvas, mode: 'prefix', start: s, end: L, positions: range(s, s + BIG.block) }, 4);
  const dual = await t({ canvas, mode: 'dual', start: s, end: s + BIG.block, positions: range(s, s + BIG.block) }, 8);
  // Where the full forward's time goes: wall time per kernel host call, one extra forward.
  const prof = {};
  for (const op of ['matmul', 'attention', 'rmsnorm', 'rope', 'swiglu', 'reduceRows']) {
    const orig = K[op].bind(K);
    K[op] = (...a) => { const t0 = performance.now(); const r = orig(...a); prof[op] = (prof[op] ?? 0) + performance.now() - t0; return r; };
  }
  const t0 = performance.now();
  await fwd({ canvas, mode: 'full', start: 0, end: L, positions: range(BIG.P, L) });
  const profiledMs = performance.now() - t0;
  for (const op of Object.keys(prof)) delete K[op];
  results.forward[key] = { build: K.build, dtype, threads: c.threads, fullMs: full, prefixMs: prefix, dualMs: dual, dualOverFull: dual / full,
    fullProfileMs: { ...Object.fromEntries(Object.entries(prof).map(([k, v]) => [k, Math.round(v)])), other: Math.round(profiledMs - Object.values(prof).reduce((a, b) => a + b, 0)) } };
  await engine.dispose();
  }
  // int8 against f32 (FMA builds) on the same kernels' thread count, full forwards alternated (best of 4 each), so
  // both see the same machine load: the forward-level counterpart of the interleaved matmul table.
  results.forward.int8VsF32 = [];
  for (const threads of fmaOk ? [1, 2] : []) {
    const engines = {};
    for (const dtype of ['f32', 'int8']) engines[dtype] = await WasmEngine.load(bigDesc, bigNames, bigReader(), await load({ threads, fma: true }), dtype);
    const req = { canvas: bigCanvas(), mode: 'full', start: 0, end: BIG.L, positions: range(BIG.P, BIG.L) };
    const seq = Object.fromEntries(Object.entries(engines).map(([k, e]) => [k, e.openSequence(BIG.L)]));
    const best = { f32: Infinity, int8: Infinity };
    for (let r = 0; r < 5; r++) {
      for (const k of ['f32', 'int8']) {
        const t0 = performance.now();
        await engines[k].forward([{ ...req, sequence: seq[k] }]);
        if (r > 0) best[k] = Math.min(best[k], performance.now() - t0); // r = 0 warms up
      }
    }
    results.forward.int8VsF32.push({ threads, f32Ms: best.f32, int8Ms: best.int8, speedup: best.f32 / best.int8 });
    for (const e of Object.values(engines)) await e.dispose();
  }
  results.forward.model = BIG;
  results.forward.torchFullMs = Object.fromEntries(native.forward.map((f) => [`threads${f.threads}`, f.fullForwardMs]));
}

const day = results.date.slice(0, 10);
mkdirSync(new URL('../results/', import.meta.url), { recursive: true });
writeFileSync(new URL(`../results/wasm-${day}.json`, import.meta.url), JSON.stringify(results, null, 2) + '\n');
const f = (x, d = 1) => (x === undefined ? '—' : x.toFixed(d));
let md = `# WASM engine benchmark, ${results.date}\n\nMachine: ${cpu}, ${results.machine.cores} cores, node ${process.version}, ` +
  `relaxed SIMD ${fmaOk ? 'available' : 'not available'}, load ${f(results.machine.load1, 2)} at start.\n\n`;
md += '| matmul | n×in×out | build | threads | G(FL)OP/s | BLAS same threads | ratio |\n|---|---|---|---|---|---|---|\n';
for (const r of results.matmul) md += `| ${r.label} | ${r.n}×${r.in}×${r.out} | ${r.build} | ${r.threads} | ${f(r.gflops)} | ${f(r.blasSameThreads)} | ${f(r.ratioToBlas, 2)} |\n`;
if (results.int8VsF32.length) {
  md += '\nint8 against the f32 FMA kernel, timed interleaved (same kernels, alternating calls, best of each; target ≥ 1.6×):\n\n' +
    '| matmul | n×in×out | build | threads | f32 GFLOP/s | int8 GOP/s | int8 / f32 |\n|---|---|---|---|---|---|---|\n';
  for (const r of results.int8VsF32) md += `| ${r.label} | ${r.n}×${r.in}×${r.out} | ${r.build} | ${r.threads} | ${f(r.f32)} | ${f(r.int8)} | ${f(r.ratio, 2)} |\n`;
}
for (const th of [1, 2]) md += `\nNative sgemm (PyTorch ${native.torch} over OpenBLAS), ${th} thread(s) (GFLOP/s): ` + native.sgemm.filter((s) => s.threads === th).map((s) => `${s.n}×${s.in}×${s.out}: ${f(s.gflops)}`).join(', ') + '\n';
if (results.forward.model) {
  md += `\n100M LLaDA-shaped model, prompt ${BIG.P} + gen ${BIG.G}, block ${BIG.block}:\n`;
  for (const [key, r] of Object.entries(results.forward)) {
    if (!r.fullMs) continue;
    md += `- WASM ${key}: full ${f(r.fullMs, 0)} ms, prefix ${f(r.prefixMs, 0)} ms, dual ${f(r.dualMs, 0)} ms (dual/full ${f(r.dualOverFull, 3)}); ` +
      `full forward by kernel (ms): ${Object.entries(r.fullProfileMs).map(([k, v]) => `${k} ${v}`).join(', ')}\n`;
  }
  md += `- PyTorch CPU float32 full forward: ${Object.entries(results.forward.torchFullMs).map(([k, v]) => `${k} ${f(v, 0)} ms`).join(', ')}\n`;
  for (const r of results.forward.int8VsF32) md += `- Full forward, int8 against f32 (FMA build), ${r.threads} thread(s), alternated in one process: f32 ${f(r.f32Ms, 0)} ms, int8 ${f(r.int8Ms, 0)} ms (${f(r.speedup, 2)}× faster)\n`;
  const torchBest = Math.min(...Object.values(results.forward.torchFullMs));
  const int8Two = Object.values(results.forward).find((r) => r.dtype === 'int8' && r.threads === 2);
  if (int8Two) md += `- WASM int8 on 2 threads, full forward: ${f(int8Two.fullMs, 0)} ms against PyTorch float32's best ${f(torchBest, 0)} ms (${f(torchBest / int8Two.fullMs, 2)}× its speed; target > 1).\n`;
}
md += '\n' + results.notes.map((n) => `- ${n}`).join('\n') + '\n';
writeFileSync(new URL(`../results/wasm-${day}.md`, import.meta.url), md);
console.log(md);
