// The CUDA engine against PyTorch and the memory floor, from the records of bench.mjs and torch_bench.py of one
// run (bench/cuda/device-run.sh), with issue #19's targets for the first GPU run: the dual step within 1.3x of the
// floor, faster than PyTorch, and batch 16 at least 8x the tokens/s of batch 1; and the Fast-dLLM v2 7B steps
// against their floors. A target whose numbers are missing says "not measured", never "met".
//   node bench/cuda/summary.mjs --cuda bench-cuda.json [--torch bench-torch.json] [--v2 bench-cuda-v2-7b.json]
import { readFileSync } from 'node:fs';
import { parseArgs } from 'node:util';

const { values: args } = parseArgs({ options: { cuda: { type: 'string' }, torch: { type: 'string' }, v2: { type: 'string' } } });
if (!args.cuda) { console.error('summary: --cuda <bench.mjs record> is required'); process.exit(1); }
const read = (f, what) => {
  try {
    return f ? JSON.parse(readFileSync(f, 'utf8')) : undefined;
  } catch (e) {
    console.log(`summary: no ${what} record (${e.message})`);
    return undefined;
  }
};
const cuda = read(args.cuda, 'CUDA');
if (!cuda) process.exit(1);
const torch = read(args.torch, 'PyTorch');
const v2 = read(args.v2, 'Fast-dLLM v2 7B');
const find = (rec, canvas, step) => rec?.results.find((r) => r.canvas === canvas && r.step === step);
const f = (x, d = 2) => (x === undefined ? '-' : x.toFixed(d));
const GB = (x) => `${(x / 2 ** 30).toFixed(2)} GiB`;

console.log(`${cuda.device}, driver CUDA ${cuda.driverVersion}, runtime CUDA ${cuda.runtimeVersion}; copy bandwidth ${(cuda.bandwidthBps / 1e9).toFixed(0)} GB/s`);
console.log(`${cuda.model}`);
console.log('canvas step    engine ms  torch ms  floor ms  engine/floor  engine/weights-floor  engine/torch');
const targets = [];
for (const r of cuda.results) {
  const t = find(torch, r.canvas, r.step);
  console.log(`${String(r.canvas).padStart(6)} ${r.step.padEnd(7)} ${f(r.medianMs).padStart(9)} ${f(t?.medianMs).padStart(9)} ${f(r.floorMs).padStart(9)} ${f(r.medianMs / r.floorMs).padStart(13)} ${f(r.medianMs / r.weightFloorMs).padStart(21)} ${f(t && r.medianMs / t.medianMs).padStart(13)}`);
  if (r.step === 'dual') {
    const ratio = r.medianMs / r.weightFloorMs;
    targets.push([`canvas ${r.canvas}: dual step within 1.3x of the weight floor`, ratio <= 1.3 ? 'met' : 'missed', `${ratio.toFixed(2)}x`]);
    targets.push([`canvas ${r.canvas}: dual step faster than PyTorch`, t ? (r.medianMs < t.medianMs ? 'met' : 'missed') : 'not measured',
      t ? `${f(r.medianMs)} vs ${f(t.medianMs)} ms` : 'no PyTorch record']);
  }
}
const b = cuda.batched;
if (b?.measured) {
  console.log(`batched dual steps (canvas ${b.canvas}; tokens/s: ${b.tokens})`);
  console.log('batch  ms/pass  tokens/s  floor ms  vs batch 1');
  const one = b.results.find((x) => x.batch === 1);
  for (const x of b.results) {
    console.log(`${String(x.batch).padStart(5)} ${f(x.msPerPass).padStart(8)} ${f(x.tokensPerSecond, 0).padStart(9)} ${f(x.floorMs).padStart(9)} ${(one ? `${(x.tokensPerSecond / one.tokensPerSecond).toFixed(2)}x` : '-').padStart(11)}`);
  }
  const tps = (n) => b.results.find((x) => x.batch === n)?.tokensPerSecond;
  if (tps(16) !== undefined && tps(1) !== undefined) {
    const ratio = tps(16) / tps(1);
    targets.push(['batch 16 at least 8x the tokens/s of batch 1', ratio >= 8 ? 'met' : 'missed', `${ratio.toFixed(1)}x`]);
  } else {
    targets.push(['batch 16 at least 8x the tokens/s of batch 1', 'not measured', 'batch 1 or 16 missing from the record']);
  }
} else {
  targets.push(['batch 16 at least 8x the tokens/s of batch 1', 'not measured', b?.reason ?? 'no batched record']);
}
if (v2) {
  console.log(`${v2.model}: weights ${GB(v2.plan.weightBytes)}, one sequence ${GB(v2.plan.cacheBytes)} of K/V, scratch ${GB(v2.plan.scratchBytes)}; ${GB(v2.plan.totalBytes)} of ${GB(v2.plan.freeBytes)} free`);
  console.log('canvas step        engine ms  floor ms  engine/floor');
  for (const r of v2.results) console.log(`${String(r.canvas).padStart(6)} ${r.step.padEnd(10)} ${f(r.medianMs).padStart(10)} ${f(r.floorMs).padStart(9)} ${f(r.medianMs / r.floorMs).padStart(13)}`);
}
console.log('targets (issue #19):');
for (const [what, verdict, detail] of targets) console.log(`  ${verdict.padEnd(12)} ${what} (${detail})`);
