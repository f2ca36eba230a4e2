// Sweep of the bf16 GEMM at the LLaDA-8B projection shapes, for tuning on a GPU: for each shape, milliseconds per
// launch and weight bandwidth (weight bytes / time) at the engine's own choice (k splits from the weight shape,
// schedule from the rows and SM count) and at fixed split counts under each schedule (parallel: one block per
// split and a reduction pass; serial: one block walks every split), against the device's copy bandwidth measured
// in the same run (read + write counted). The split count changes a result's bits, so it may only follow the
// weight shape (native gemm_bf16_splits); the schedule changes none, so it may follow anything.
// Run on a GPU machine (bench/cuda/device-run.sh does): node bench/cuda/gemm-sweep.mjs [--rows 32] [--iters 20]
// `--emulator` runs it on the CPU emulator build with small shapes: a check of the script; its times mean nothing.
import { parseArgs } from 'node:util';
import { EMULATOR_ADDON_PATH, loadBinding } from '@fast-dllm/engine-cuda';

const { values: args } = parseArgs({
  options: {
    rows: { type: 'string', default: '32' }, iters: { type: 'string', default: '20' },
    emulator: { type: 'boolean', default: false },
  },
});
const rows = Number(args.rows);
const iters = Number(args.iters);
for (const [flag, v] of [['--rows', rows], ['--iters', iters]]) {
  if (!Number.isInteger(v) || v < 1) { console.error(`gemm-sweep: ${flag} must be a positive integer`); process.exit(1); }
}
const b = args.emulator ? loadBinding(EMULATOR_ADDON_PATH) : loadBinding();
if (!b.ok) { console.error(`gemm-sweep: ${b.reason}`); process.exit(1); }
const info = b.binding.deviceInfo();
if (!info.available) { console.error(`gemm-sweep: ${info.reason}`); process.exit(1); }

// [name, n (output columns = weight rows), k]: LLaDA-8B's fused QKV, O, fused gate/up, down and LM head.
const SHAPES = args.emulator
  ? [['qkv', 384, 128], ['down', 128, 576]]
  : [['qkv', 12288, 4096], ['o', 4096, 4096], ['gate_up', 24576, 4096], ['down', 4096, 12288], ['lm_head', 126464, 4096]];
const SPLITS = args.emulator ? [1, 2] : [1, 2, 3, 4, 6, 8, 12, 16];
const SCHEDULES = [[1, 'parallel'], [2, 'serial']];
const bw = await b.binding.copyBandwidth(args.emulator ? 1 << 22 : 1 << 30, args.emulator ? 2 : 20);
console.log(`device: ${info.name}; rows ${rows}; copy bandwidth ${(bw / 1e9).toFixed(0)} GB/s (read + write); ${iters} launches each`);
console.log('shape    n x k           splits schedule      ms/launch   weight GB/s   of copy bw');
const record = [];
for (const [name, n, k] of SHAPES) {
  const weightBytes = n * k * 2;
  const runs = [[0, 0], ...SPLITS.flatMap((s) => (s === 1 ? [[1, 1]] : SCHEDULES.map(([code]) => [s, code])))];
  for (const [asked, schedule] of runs) {
    const r = await b.binding.kernels.timeGemmBf16(rows, n, k, asked, iters, schedule);
    const gbs = weightBytes / (r.msPerLaunch * 1e-3) / 1e9;
    const how = r.splits === 1 ? 'one split' : r.parallel ? 'parallel' : 'serial';
    record.push({ name, n, k, rows, asked, schedule, ...r, weightGBps: gbs });
    const label = asked === 0 ? `auto=${r.splits}` : String(r.splits);
    console.log(`${name.padEnd(8)} ${`${n} x ${k}`.padEnd(15)} ${label.padStart(6)} ${how.padEnd(9)} ${r.msPerLaunch.toFixed(4).padStart(13)} ${gbs.toFixed(0).padStart(13)} ${(gbs / (bw / 1e9)).toFixed(2).padStart(12)}`);
  }
}
console.log(JSON.stringify({ date: new Date().toISOString(), device: info.name, copyBandwidthBps: bw, iters, results: record }));
