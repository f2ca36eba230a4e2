/**
 * The reference engine: the forward pass of SPEC §1 and the cache modes of SPEC §4 in plain TypeScript,
 * float64 activations over float32 weights. Clarity first; fast enough for the tiny fixtures.
 */
import {
  ENGINE_CONTRACT_VERSION, counterGumbel, validateForwardRequest,
  type Engine, type EngineCapabilities, type EngineOptions, type EngineProvider, type ForwardRequest,
  type ForwardResult, type ModelInfo,
} from '@fast-dllm/scheduler';
import { schedulerModelInfo, type ModelDescription } from '@fast-dllm/model';
import { loadReferenceModel, type ReferenceWeights } from './load.js';
import { referenceAttention, referenceMatmul, referenceRmsNorm, referenceRope, referenceSwiglu } from './ops.js';

/** K/V of every layer for one canvas, after RoPE at absolute positions (equivalent to caching before RoPE). */
interface KvCache {
  length: number;
  k: Float64Array[]; // per layer (L, KV*hd)
  v: Float64Array[]; // per layer (L, KV*hd)
}

export class ReferenceEngine implements Engine {
  readonly name = 'reference';
  readonly model: ModelInfo;
  readonly capabilities: EngineCapabilities = {
    contractVersion: ENGINE_CONTRACT_VERSION,
    modes: ['full', 'prefix', 'dual'],
    reports: { top2: true, entropy: true, logits: true },
    sampling: true,
  };
  private cache: KvCache | null = null;
  private disposed = false;

  constructor(readonly config: ModelDescription, private weights: ReferenceWeights | null) {
    this.model = schedulerModelInfo(config);
  }

  async forward(req: ForwardRequest, signal?: AbortSignal): Promise<ForwardResult> {
    if (this.disposed || !this.weights) throw new Error('forward: the engine was disposed');
    validateForwardRequest(this.model, this.capabilities, req);
    const L = req.canvas.length;
    if (req.mode !== 'full') {
      if (!this.cache) throw new Error(`forward: a '${req.mode}' step needs a prior 'full' forward to build the cache`);
      if (this.cache.length !== L) {
        throw new Error(`forward: the cache holds a canvas of ${this.cache.length} tokens, this '${req.mode}' step has ${L}; run a 'full' forward first`);
      }
    }
    signal?.throwIfAborted();
    const hidden = this.hiddenStates(req, signal); // (end-start, d) after the final norm
    const rows = this.predictionRows(req);
    const logits = referenceMatmul(gatherRows(hidden, rows, this.config.hiddenSize), this.weights.lmHead,
      rows.length, this.config.hiddenSize, this.config.vocabSize); // (n, V)
    return this.report(req, logits);
  }

  /**
   * Runs the layers over the computed span and updates the cache as the mode says.
   * Returns (end-start, d) float64: final-normed hidden states of [start, end).
   */
  private hiddenStates(req: ForwardRequest, signal?: AbortSignal): Float64Array {
    const w = this.weights!;
    const c = this.config;
    const { hiddenSize: d, numHeads: H, numKvHeads: KV, headDim: hd, intermediateSize: ff } = c;
    const L = req.canvas.length;
    const { start, end } = req;
    const n = end - start;
    const positions = new Int32Array(n); // (n) absolute positions of the computed rows
    for (let i = 0; i < n; i++) positions[i] = start + i;

    const x = new Float64Array(n * d); // (n, d) residual stream
    for (let i = 0; i < n; i++) {
      const t = req.canvas[start + i];
      for (let j = 0; j < d; j++) x[i * d + j] = w.embed[t * d + j];
    }
    const full = req.mode === 'full';
    const cache: KvCache = full ? { length: L, k: [], v: [] } : this.cache!;
    const kw = KV * hd;
    for (let l = 0; l < c.numLayers; l++) {
      signal?.throwIfAborted();
      const layer = w.layers[l];
      const h = referenceRmsNorm(x, layer.attnNorm, n, d, c.rmsNormEps);
      const q = referenceRope(referenceMatmul(h, layer.q, n, d, H * hd, layer.qBias), positions, n, H, hd, c.ropeTheta);
      const k = referenceRope(referenceMatmul(h, layer.k, n, d, kw, layer.kBias), positions, n, KV, hd, c.ropeTheta);
      const v = referenceMatmul(h, layer.v, n, d, kw, layer.vBias);
      // Keys/values the queries see, (L, KV*hd): attention has no mask, so the order of keys does not matter and
      // the fresh rows can simply take their own slots. `prefix` works on a copy (the cache is left unchanged);
      // `dual` writes its fresh rows into the cache itself.
      let keys: Float64Array;
      let values: Float64Array;
      if (full) {
        keys = k;
        values = v;
        cache.k.push(k);
        cache.v.push(v);
      } else {
        keys = req.mode === 'prefix' ? cache.k[l].slice() : cache.k[l];
        values = req.mode === 'prefix' ? cache.v[l].slice() : cache.v[l];
        keys.set(k, start * kw);
        values.set(v, start * kw);
      }
      const attn = referenceAttention(q, keys, values, n, L, H, KV, hd);
      const o = referenceMatmul(attn, layer.o, n, H * hd, d);
      for (let i = 0; i < x.length; i++) x[i] += o[i];
      const h2 = referenceRmsNorm(x, layer.ffnNorm, n, d, c.rmsNormEps);
      const gate = referenceMatmul(h2, layer.gate, n, d, ff);
      const up = referenceMatmul(h2, layer.up, n, d, ff);
      const down = referenceMatmul(referenceSwiglu(gate, up), layer.down, n, ff, d);
      for (let i = 0; i < x.length; i++) x[i] += down[i];
    }
    if (full) this.cache = cache;
    return referenceRmsNorm(x, w.finalNorm, n, d, c.rmsNormEps);
  }

  /** Row (relative to start) whose hidden state predicts each reported position (ModelInfo.shiftLogits). */
  private predictionRows(req: ForwardRequest): Int32Array {
    const rows = new Int32Array(req.positions.length); // (n)
    for (let i = 0; i < rows.length; i++) {
      const p = req.positions[i];
      rows[i] = this.model.shiftLogits && p - 1 >= req.start ? p - 1 - req.start : p - req.start;
    }
    return rows;
  }

  private report(req: ForwardRequest, logits: Float64Array): ForwardResult {
    const V = this.config.vocabSize;
    const n = req.positions.length;
    const tokens = new Int32Array(n); // (n)
    const probs = new Float64Array(n); // (n)
    const top1 = new Float64Array(n); // (n)
    const top2 = new Float64Array(n); // (n)
    const entropy = new Float64Array(n); // (n) nats
    for (let i = 0; i < n; i++) {
      const o = i * V;
      let max = -Infinity;
      let arg = 0;
      for (let v = 0; v < V; v++) if (logits[o + v] > max) { max = logits[o + v]; arg = v; } // strict >: ties to lowest id
      let sum = 0;
      for (let v = 0; v < V; v++) sum += Math.exp(logits[o + v] - max);
      const logSum = Math.log(sum);
      let token = arg;
      if (req.sampling) {
        const { temperature, seed, forwardIndex } = req.sampling;
        let best = -Infinity;
        for (let v = 0; v < V; v++) {
          const s = logits[o + v] / temperature + counterGumbel(seed, forwardIndex, req.positions[i], v);
          if (s > best) { best = s; token = v; }
        }
      }
      tokens[i] = token;
      probs[i] = Math.exp(logits[o + token] - max - logSum);
      let p1 = -1;
      let p2 = -1;
      let ent = 0;
      for (let v = 0; v < V; v++) {
        const lp = logits[o + v] - max - logSum;
        const p = Math.exp(lp);
        if (p > 0) ent -= p * lp;
        if (p > p1) { p2 = p1; p1 = p; } else if (p > p2) p2 = p;
      }
      top1[i] = p1;
      top2[i] = p2;
      entropy[i] = ent;
    }
    const result: ForwardResult = { tokens, probs };
    if (req.want?.top2) { result.top1Probs = top1; result.top2Probs = top2; }
    if (req.want?.entropy) result.entropy = entropy;
    if (req.want?.logits) result.logits = Float32Array.from(logits);
    return result;
  }

  async dispose(): Promise<void> {
    this.disposed = true;
    this.weights = null;
    this.cache = null;
  }
}

function gatherRows(x: Float64Array, rows: Int32Array, d: number): Float64Array {
  const out = new Float64Array(rows.length * d); // (rows, d)
  for (let i = 0; i < rows.length; i++) out.set(x.subarray(rows[i] * d, rows[i] * d + d), i * d);
  return out;
}

/**
 * Loads a Hugging Face model directory (LLaDA or Dream). Weights are kept as float32 whatever their dtype, except
 * with weightDType 'int8': then the linear weights are quantized into the CPU engines' int8 format (quant.ts), the
 * oracle of the WASM engine's int8 mode. 'bf16'/'f16' and threads are ignored: the oracle is single-threaded f32.
 */
export async function createReferenceEngine(modelDir: string, options: EngineOptions = {}): Promise<ReferenceEngine> {
  const { description, weights } = await loadReferenceModel(modelDir, (done, total) =>
    options.onProgress?.({ phase: 'loading weights', done, total, unit: 'tensors' }), options.weightDType === 'int8' ? 'int8' : 'f32');
  return new ReferenceEngine(description, weights);
}

export const referenceProvider: EngineProvider = {
  name: 'reference',
  async probe() {
    return { available: true };
  },
  create: createReferenceEngine,
};
