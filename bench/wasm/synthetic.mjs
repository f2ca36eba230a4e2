// The ~100M-parameter LLaDA-shaped random model of the WASM benchmarks (d 768, 12 layers, 12 heads, mlp 2048,
// vocab 32000), as a ModelDescription and a tensor reader for WasmEngine.load, so that every script measures the
// same weights. Canvas: prompt 64 + gen 256, block 32.
import { tensorNames } from '@fast-dllm/model';

export const BIG = { d: 768, layers: 12, heads: 12, ff: 2048, vocab: 32000, P: 64, G: 256, block: 32 };
BIG.L = BIG.P + BIG.G;

/** n uniform values in [-0.02, 0.02) from an LCG seeded with `seed` (not the engine RNG). */
export function rnd(n, seed) {
  const a = new Float32Array(n);
  let s = seed >>> 0;
  for (let i = 0; i < n; i++) { s = (Math.imul(s, 1664525) + 1013904223) >>> 0; a[i] = (s / 2 ** 32 - 0.5) * 0.04; }
  return a;
}

export const bigDesc = {
  architecture: 'llada', hiddenSize: BIG.d, numLayers: BIG.layers, numHeads: BIG.heads, numKvHeads: BIG.heads,
  headDim: BIG.d / BIG.heads, intermediateSize: BIG.ff, vocabSize: BIG.vocab, maxPositions: 4096, rmsNormEps: 1e-5,
  ropeTheta: 10000, qkvBias: false, tiedEmbeddings: false, shiftLogits: false, special: { mask: BIG.vocab - 1, eos: 1 },
};
export const bigNames = tensorNames(bigDesc);

/** A reader giving every tensor of the model its own seed in load order (norms are ones), the same on every call. */
export function bigReader() {
  let seed = 3;
  return async (name) => {
    const isNorm = /norm/i.test(name);
    const n = isNorm ? BIG.d : name === bigNames.embed || name === bigNames.lmHead ? BIG.vocab * BIG.d
      : /gate|up|ff_proj|up_proj/.test(name) ? BIG.ff * BIG.d : /down|ff_out/.test(name) ? BIG.d * BIG.ff : BIG.d * BIG.d;
    return isNorm ? new Float32Array(n).fill(1) : rnd(n, seed++);
  };
}

/** The benchmark canvas: 64 prompt tokens, then masks. */
export function bigCanvas() {
  const canvas = new Int32Array(BIG.L).fill(bigDesc.special.mask);
  for (let i = 0; i < BIG.P; i++) canvas[i] = (i * 37) % 1000;
  return canvas;
}

export const range = (a, b) => Int32Array.from({ length: b - a }, (_, i) => a + i);
