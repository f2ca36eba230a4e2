// The CUDA engine against PyTorch and the memory floor, from the records of bench.mjs and torch_bench.py of one
// run (bench/cuda/device-run.sh), with issue #19's targets for the first GPU run: the dual step within 1.3x of the
// floor, faster than PyTorch, and batch 16 at least 8x the tokens/s of batch 1. A target whose numbers are
// missing says "not measured", never "met".
//   node bench/cuda/summary.mjs --cuda bench-cuda.json [--torch bench-torch.json]
import { readFileSync } from 'node:fs';
import { parseArgs } from 'node:util';

const { values: args } = parseArgs({ options: { cuda: { type: 'string' }, torch: { type: 'string' } } });
if (!args.cuda) { console.error('summary: --cuda <bench.mjs record> is required'); process.exit(1); }
const read = (f) => JSON.parse(readFileSync(f, 'utf8'));
const cuda = read(args.cuda);
let torch;
try {
  torch = args.torch ? read(args.torch) : undefined;
} catch (e) {
  console.log(`summary: no PyTorch record (${e.message})`);
}
const find = (rec, canvas, step) => rec?.results.find((r) => r.canvas === canvas && r.step === step);
const f = (x, d = 2) => (x === undefined ? '-' : x.toFixed(d));

console.log(`${cuda.device}, driver CUDA ${cuda.driverVersion}, runtime CUDA ${cuda.runtimeVersion}; copy bandwidth ${(cuda.bandwidthBps / 1e9).toFixed(0)} GB/s`);
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
  const tps = (n) => b.results.find((x) => x.batch === n)?.tokensPerSecond;
  const ratio = tps(16) / tps(1);
  targets.push(['batch 16 at least 8x the tokens/s of batch 1', ratio >= 8 ? 'met' : 'missed', `${ratio.toFixed(1)}x`]);
} else {
  targets.push(['batch 16 at least 8x the tokens/s of batch 1', 'not measured', b?.reason ?? 'no batched record']);
}
console.log('targets (issue #19):');
for (const [what, verdict, detail] of targets) console.log(`  ${verdict.padEnd(12)} ${what} (${detail})`);
