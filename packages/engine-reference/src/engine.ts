/**
 * The reference engine: the forward pass of DESIGN §1 with the cache modes of DESIGN §4 and the batched passes
 * of DESIGN §7 in plain TypeScript, float64 activations over float32 weights. Clarity first; fast enough for
 * the tiny fixtures. A pass runs every matrix product over the concatenated rows of all its sequences and
 * attention per sequence over that sequence's own cache, as the fast engines do.
 */
import {
  ENGINE_CONTRACT_VERSION, EngineCapacityError, SequenceTable, addAttentionLayer, assembleResults, keyValueWrites, newAttentionReport, newPassReductions,
  checkModelSupported, counterGumbel, type AttentionReport, type Engine, type EngineCapabilities, type EngineOptions, type EngineProvider, type ForwardRequest,
  type ForwardResult, type ModelInfo, type PassLayout, type SequenceHandle,
} from '@fast-dllm/engine-contract';
import { INT8_BLOCK, int8Blocks, isMoeLayer, openModel, schedulerModelInfo, storedTensorName, type ModelDescription } from '@fast-dllm/model';
import { loadReferenceModel, type ReferenceWeights } from './load.js';
import { referenceAttention, referenceMatmul, referenceMoe, referenceRmsNorm, referenceRope, referenceSwigluFfn } from './ops.js';

/** One sequence's K/V: every layer's keys after RoPE at absolute positions (equivalent to caching before RoPE). */
interface SequenceCache {
  k: Float64Array[]; // per layer (maxLength, KV*hd)
  v: Float64Array[]; // per layer (maxLength, KV*hd)
}

/** Default budget for sequence caches when the caller sets none. */
const DEFAULT_CACHE_BUDGET = 4 * 2 ** 30;

export class ReferenceEngine implements Engine {
  readonly name = 'reference';
  readonly model: ModelInfo;
  readonly capabilities: EngineCapabilities = {
    contractVersion: ENGINE_CONTRACT_VERSION,
    modes: ['full', 'prefix', 'dual', 'extend'],
    reports: { top2: true, entropy: true, logits: true },
    sampling: true,
    maxBatch: 64,
    blockCausal: true,
  };
  private readonly sequences: SequenceTable<SequenceCache>;
  private cacheBytes = 0; // reserved by open sequences
  private disposed = false;

  constructor(readonly config: ModelDescription, private weights: ReferenceWeights | null, private readonly cacheBudget = DEFAULT_CACHE_BUDGET) {
    this.model = schedulerModelInfo(config);
    this.capabilities.elasticCache = { layers: config.numLayers };
    checkModelSupported(this.name, this.model, this.capabilities);
    this.sequences = new SequenceTable(this.name, this.model.maxPositions);
  }

  sequenceBytes(maxLength: number): number {
    return referenceCacheBytes(this.config, maxLength);
  }

  sequenceCapacity(maxLength: number): number {
    return Math.max(0, Math.floor((this.cacheBudget - this.cacheBytes) / this.sequenceBytes(maxLength)));
  }

  openSequence(maxLength: number): SequenceHandle {
    if (this.disposed) throw new Error('openSequence: the engine was disposed');
    return this.sequences.open(maxLength, () => {
      const bytes = this.sequenceBytes(maxLength);
      if (this.cacheBytes + bytes > this.cacheBudget) {
        throw new EngineCapacityError(
          `reference engine: a sequence of ${maxLength} tokens needs ${bytes} bytes of K/V cache; ${this.cacheBudget - this.cacheBytes} of the ${this.cacheBudget}-byte budget are free`);
      }
      this.cacheBytes += bytes;
      const kw = this.config.numKvHeads * this.config.headDim;
      const layers = Array.from({ length: this.config.numLayers });
      return { k: layers.map(() => new Float64Array(maxLength * kw)), v: layers.map(() => new Float64Array(maxLength * kw)) };
    });
  }

  closeSequence(sequence: SequenceHandle): void {
    if (this.sequences.close(sequence)) this.cacheBytes -= this.sequenceBytes(sequence.maxLength);
  }

  async forward(batch: readonly ForwardRequest[], signal?: AbortSignal): Promise<ForwardResult[]> {
    if (this.disposed || !this.weights) throw new Error('forward: the engine was disposed');
    const lmHead = this.weights.lmHead;
    return this.sequences.pass(this.model, this.capabilities, batch, signal, {
      compute: (caches, layout) => this.hiddenStates(batch, caches, layout, signal), // (rows, d) after the final norm
      results: ({ hidden, attention }, layout) => {
        const d = this.config.hiddenSize;
        const selected = new Float64Array(layout.reports * d); // (reports, d) the rows that predict each report
        for (let r = 0; r < layout.reports; r++) selected.set(hidden.subarray(layout.reportRow[r] * d, (layout.reportRow[r] + 1) * d), r * d);
        const logits = referenceMatmul(selected, lmHead, layout.reports, d, this.config.vocabSize); // (reports, V)
        return this.report(batch, layout, logits, attention);
      },
    });
  }

  /**
   * Runs the layers over every request's span and updates the caches as the modes say.
   * Returns (rows, d) float64: final-normed hidden states of the concatenated spans, and each request's attention
   * report (DESIGN §16) when it asked for one.
   */
  private hiddenStates(
    batch: readonly ForwardRequest[], caches: SequenceCache[], layout: PassLayout, signal?: AbortSignal,
  ): { hidden: Float64Array; attention: (AttentionReport | undefined)[] } {
    const w = this.weights!;
    const c = this.config;
    const { hiddenSize: d, numHeads: H, numKvHeads: KV, headDim: hd, intermediateSize: ff } = c;
    const rot = c.rotaryDim ?? hd;
    const n = layout.rows;
    const positions = new Int32Array(n); // (n,) absolute position of each row in its own canvas
    const x = new Float64Array(n * d); // (n, d) residual stream
    batch.forEach((req, b) => {
      for (let i = req.start; i < req.end; i++) {
        const row = layout.rowOffset[b] + i - req.start;
        positions[row] = i;
        const t = req.canvas[i];
        for (let j = 0; j < d; j++) x[row * d + j] = w.embed[t * d + j];
      }
    });
    const kw = KV * hd;
    const qw = H * hd;
    const attention = batch.map((req) => (req.attention ? newAttentionReport(c.numLayers, req.attention.end - req.attention.start) : undefined));
    for (let l = 0; l < c.numLayers; l++) {
      signal?.throwIfAborted();
      const layer = w.layers[l];
      const h = referenceRmsNorm(x, layer.attnNorm, n, d, c.rmsNormEps);
      // Qwen3 (SDAR): each head's q and k are RMS-normed over hd before RoPE; the rows (n, H, hd) are (n·H, hd).
      const headNorm = (y: Float64Array, w: Float32Array | undefined, heads: number) => (w ? referenceRmsNorm(y, w, n * heads, hd, c.rmsNormEps) : y);
      // LLaDA-MoE's clip_qkv clamps q, k (after their head norms) and v before RoPE.
      const clip = (y: Float64Array) => (c.clipQkv === undefined ? y : y.map((t) => Math.min(c.clipQkv!, Math.max(-c.clipQkv!, t))));
      const q = referenceRope(clip(headNorm(referenceMatmul(h, layer.q, n, d, qw, layer.qBias), layer.qNorm, H)), positions, n, H, hd, c.ropeTheta, rot);
      const k = referenceRope(clip(headNorm(referenceMatmul(h, layer.k, n, d, kw, layer.kBias), layer.kNorm, KV)), positions, n, KV, hd, c.ropeTheta, rot);
      const v = clip(referenceMatmul(h, layer.v, n, d, kw, layer.vBias));
      const attn = new Float64Array(n * qw); // (n, H*hd)
      batch.forEach((req, b) => {
        const o = layout.rowOffset[b];
        const m = req.end - req.start;
        const L = req.canvas.length;
        // Keys/values this sequence's queries see, (L, KV*hd), by absolute position: the fresh rows take their
        // own slots. `prefix` works on a copy (its cache is left unchanged); the other modes write into the cache.
        const write = req.mode !== 'prefix';
        const keys = write ? caches[b].k[l] : caches[b].k[l].slice(0, L * kw);
        const values = write ? caches[b].v[l] : caches[b].v[l].slice(0, L * kw);
        // The rows whose K/V this layer writes: the span, or a refresh's span below its fromLayer (DESIGN §16).
        const { from, to } = keyValueWrites(req, l);
        const wo = o + from - req.start;
        keys.set(k.subarray(wo * kw, (wo + to - from) * kw), from * kw);
        values.set(v.subarray(wo * kw, (wo + to - from) * kw), from * kw);
        const a = req.attention;
        if (a) {
          const qo = o + a.start - req.start;
          addAttentionLayer(attention[b]!, l, a.keys?.[l] ?? -1, q.subarray(qo * qw, (qo + a.end - a.start) * qw), keys.subarray(0, L * kw), a.end - a.start, L, H, KV, hd);
        }
        const limit = this.keyLimits(req);
        const out = referenceAttention(q.subarray(o * qw, (o + m) * qw), keys.subarray(0, L * kw), values.subarray(0, L * kw), m, L, H, KV, hd, limit);
        attn.set(out, o * qw);
      });
      const proj = referenceMatmul(attn, layer.o, n, qw, d, layer.oBias);
      for (let i = 0; i < x.length; i++) x[i] += proj[i];
      const h2 = referenceRmsNorm(x, layer.ffnNorm, n, d, c.rmsNormEps);
      const down = layer.ffn.kind === 'moe' ? referenceMoe(h2, layer.ffn.w, n, d) : referenceSwigluFfn(h2, layer.ffn.w, n, d, ff);
      for (let i = 0; i < x.length; i++) x[i] += down[i];
    }
    return { hidden: referenceRmsNorm(x, w.finalNorm, n, d, c.rmsNormEps), attention };
  }

  /** Keys each computed row sees: all L, or up to the end of its own block when attention is block-causal. */
  private keyLimits(req: ForwardRequest): Int32Array | undefined {
    const B = this.model.blockSize;
    if (B === undefined) return undefined;
    const L = req.canvas.length;
    return Int32Array.from({ length: req.end - req.start }, (_, i) => Math.min(L, (Math.floor((req.start + i) / B) + 1) * B));
  }

  /** Reduces each reported logits row (DESIGN §3): the mask token is never proposed but counts in the softmax. */
  private report(batch: readonly ForwardRequest[], layout: PassLayout, logits: Float64Array, attention: (AttentionReport | undefined)[]): ForwardResult[] {
    const V = this.config.vocabSize;
    const mask = this.model.maskId;
    const n = layout.reports;
    const { token, prob, top1, top2, entropy } = newPassReductions(n); // (n,) each; entropy in nats
    for (let i = 0; i < n; i++) {
      const o = i * V;
      let max = -Infinity; // over all tokens: the softmax's shift
      for (let v = 0; v < V; v++) if (logits[o + v] > max) max = logits[o + v];
      let sum = 0;
      for (let v = 0; v < V; v++) sum += Math.exp(logits[o + v] - max);
      const logSum = Math.log(sum);
      let arg = -1;
      let best = -Infinity;
      const T = layout.temperature[i];
      for (let v = 0; v < V; v++) {
        if (v === mask) continue;
        // strict >: ties to the lowest id
        const s = T > 0 ? logits[o + v] / T + counterGumbel(layout.seed[i], layout.forwardIndex[i], layout.position[i], v) : logits[o + v];
        if (s > best || arg < 0) { best = s; arg = v; }
      }
      token[i] = arg;
      prob[i] = Math.exp(logits[o + arg] - max - logSum);
      let p1 = -1;
      let p2 = -1;
      let ent = 0;
      for (let v = 0; v < V; v++) {
        const lp = logits[o + v] - max - logSum;
        const p = Math.exp(lp);
        if (p > 0) ent -= p * lp;
        if (v === mask) continue;
        if (p > p1) { p2 = p1; p1 = p; } else if (p > p2) p2 = p;
      }
      top1[i] = p1;
      top2[i] = p2;
      entropy[i] = ent;
    }
    const wantLogits = batch.some((r) => r.want?.logits);
    return assembleResults(batch, layout, { token, prob, top1, top2, entropy, ...(wantLogits ? { logits: Float32Array.from(logits) } : {}) }, V, attention);
  }

  async dispose(): Promise<void> {
    this.disposed = true;
    this.weights = null;
    for (const s of this.sequences.states()) { s.k.length = 0; s.v.length = 0; }
    this.cacheBytes = 0;
  }
}

/** Bytes of float64 K/V one sequence of `maxLength` positions holds in the reference engine. */
export function referenceCacheBytes(m: Pick<ModelDescription, 'numLayers' | 'numKvHeads' | 'headDim'>, maxLength: number): number {
  return 2 * m.numLayers * maxLength * m.numKvHeads * m.headDim * 8;
}

/**
 * Loads a Hugging Face model directory (LLaDA, Dream, Fast-dLLM v2 or SDAR). Weights are kept as float32 whatever
 * their dtype, except with weightDType 'int8': then the linear weights are quantized into the CPU engines' int8
 * format (quant.ts), the oracle of the WASM engine's int8 mode. 'bf16' and threads are ignored: the oracle is
 * single-threaded f32.
 */
export async function createReferenceEngine(modelDir: string, options: EngineOptions = {}): Promise<ReferenceEngine> {
  const { description, weights } = await loadReferenceModel(modelDir, (done, total) =>
    options.onProgress?.({ phase: 'loading weights', done, total, unit: 'tensors' }), options.weightDType === 'int8' ? 'int8' : 'f32');
  return new ReferenceEngine(description, weights, options.cacheBudgetBytes);
}

export const referenceProvider: EngineProvider = {
  name: 'reference',
  async probe() {
    return { available: true };
  },
  create: createReferenceEngine,
  async estimateMemory(modelDir, { maxLength, weightDType }) {
    const { description, archive, names } = await openModel(modelDir);
    try {
      // Every tensor widened to f32 (a tied LM head is the embedding itself). int8: the linear weights and the LM head
      // as int8 values (blocks of 32 along the input) plus an f32 scale per block; a tied embedding stays f32 beside it.
      const int8 = weightDType === 'int8';
      const ffnLinears = (n: (typeof names.layers)[number]) => (isMoeLayer(n)
        ? [...n.experts, ...(n.shared ? [n.shared] : [])].flatMap((e) => [e.gate, e.up, e.down]) : [n.gate, n.up, n.down]);
      // q, k and v may be row slices of one fused tensor (LLaDA2), which the archive lists as the tensor.
      const linear = new Set(int8 ? [names.lmHead, ...names.layers.flatMap((n) => [n.q, n.k, n.v, n.o, ...ffnLinears(n)])].map(storedTensorName) : []);
      let bytes = 0;
      for (const [name, t] of archive.tensors) {
        const [out, inDim] = t.shape;
        bytes += linear.has(name) ? out * int8Blocks(inDim) * (INT8_BLOCK + 4) : 4 * t.shape.reduce((a, b) => a * b, 1);
      }
      if (int8 && names.lmHead === names.embed) bytes += 4 * description.vocabSize * description.hiddenSize;
      return {
        weightBytes: bytes, sequenceBytes: referenceCacheBytes(description, maxLength), weightDType: int8 ? 'int8' : 'f32', cacheDType: 'f64',
        ...(int8 ? { note: 'linear weights and LM head int8 (7-bit values, one f32 scale per 32); embedding (tied: a dequantized f32 copy of the int8 head), norms, biases f32' } : {}),
      };
    } finally {
      await archive.close();
    }
  },
};
