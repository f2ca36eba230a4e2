import { loadKernels } from '@fast-dllm/engine-wasm';
const K = await loadKernels({ fma: true });
function rnd(n, seed) { const a = new Float32Array(n); let s = seed; for (let i = 0; i < n; i++) { s = (Math.imul(s, 1664525) + 1013904223) >>> 0; a[i] = s / 2 ** 32 - 0.5; } return a; }
const [n, k, m] = [320, 768, 2048];
const x = K.allocF32(n * k, rnd(n * k, 1)), w = K.allocWeight(rnd(m * k, 2), m, k), y = K.allocF32(n * m);
for (let rep = 0; rep < 3; rep++) {
  let best = Infinity; for (let r = 0; r < 5; r++) { const t = performance.now(); K.matmul(x, w, null, y, n); best = Math.min(best, performance.now() - t); }
  console.log(`package ${K.build} ${(2 * n * k * m / best / 1e6).toFixed(1)} GFLOP/s`);
}
