/**
 * The WASM engine: the forward pass of SPEC §1 with the cache modes of SPEC §4, every heavy step in the
 * AssemblyScript kernels (f32 activations; f32, bf16 or int8 linear weights). No Node API here: the caller supplies the kernels
 * (src/node.ts loads them in Node) and the opened model.
 *
 * Linear memory layout (bump allocator of WasmKernels; d = hiddenSize, H/KV heads, hd = headDim,
 * ff = intermediateSize, V = vocabSize, L = canvas length of the last `full` forward):
 *
 *   heapBase ┬──────────────────────────────────────────────────────────────────────┐
 *            │ WEIGHTS (loaded once; norms, biases, embed f32; linear W f32/bf16/int8)│
 *            │   embed (V, d) · per layer: attnNorm (d), q (H*hd, d), k/v (KV*hd, d), │
 *            │   q/k/v bias (H*hd / KV*hd, Dream only), o (d, H*hd), ffnNorm (d),     │
 *            │   gate/up (ff, d), down (d, ff) · finalNorm (d) · lmHead (V, d)        │
 *            │   linear W (out, in) packed in panels (ceil(out/8), in, 8): packWeight │
 *            │   (int8: 288 bytes per panel and block of 32 in; src/kernels.ts)       │
 *            │   (tied f32/int8: no embed copy; its rows are read from the lmHead)    │
 *   weightsEnd ├────────────────────────────────────────────────────────────────────┤  ← released and rebuilt
 *            │ KV CACHE, per layer l: K_l (L, KV*hd) f32, V_l (L, KV*hd) f32,         │    when a `full` forward
 *            │   K after RoPE at absolute positions; row p = canvas position p       │    needs a bigger L
 *            ├──────────────────────────────────────────────────────────────────────┤
 *            │ SCRATCH (sized for L rows)                                           │
 *            │   x (L, d) residual · h (L, d) normed · q (L, H*hd) · att (L, H*hd)     │
 *            │   tmp (L, d) · gate (L, ff) · up (L, ff) · kTmp/vTmp (L, KV*hd) prefix  │
 *            │   copies · scores (threads, L) · pos (L) i32 · sel (L, d) gathered rows │
 *            │   · logits (L, V) · res (L, 5) f64 per-row reductions                 │
 *            ├──────────────────────────────────────────────────────────────────────┤
 *            │ int8 weights: each matmul's quantized rows (n, 40 B per block of 32), │
 *            │   taken above the top for the call (WasmKernels.matmul)               │
 *            └──────────────────────────────────────────────────────────────────────┘
 */
import {
  ENGINE_CONTRACT_VERSION, validateForwardRequest,
  type Engine, type EngineCapabilities, type ForwardRequest, type ForwardResult, type ModelInfo,
} from '@fast-dllm/scheduler';
import { schedulerModelInfo, type ModelDescription, type ModelTensorNames } from '@fast-dllm/model';
import { WASM32_MAX_BYTES, int8ScratchBytes, packedBytes, type PackedWeight, type Region, type WasmKernels, type WeightDType } from './kernels.js';

/** Reads one tensor as f32, whatever its stored dtype (the archive of @fast-dllm/model does). */
export type TensorReader = (name: string) => Promise<Float32Array>;


interface LayerRegions {
  attnNorm: Region; q: PackedWeight; k: PackedWeight; v: PackedWeight;
  qBias: Region | null; kBias: Region | null; vBias: Region | null;
  o: PackedWeight; ffnNorm: Region; gate: PackedWeight; up: PackedWeight; down: PackedWeight;
}

interface Workspace {
  L: number;
  kCache: Region[]; vCache: Region[]; // per layer (L, KV*hd)
  x: Region; h: Region; q: Region; att: Region; tmp: Region; gate: Region; up: Region;
  kTmp: Region; vTmp: Region; scores: Region; pos: Region; sel: Region; logits: Region; res: Region;
}

/**
 * Bytes of the weights of a model as loaded: checked against wasm32's 4 GiB before anything is read. Linear
 * weights and the LM head in `dtype`; norms, biases and the embedding in f32, except that a tied embedding is
 * not stored again for f32 and int8 (its rows are read from the LM head: exact for f32, dequantized for int8).
 */
export function weightBytes(m: ModelDescription, dtype: WeightDType = 'f32'): number {
  const { hiddenSize: d, numHeads: H, numKvHeads: KV, headDim: hd, intermediateSize: ff, vocabSize: V } = m;
  const P = (out: number, inDim: number) => packedBytes(out, inDim, dtype); // panels round `out` up to a multiple of 8
  const linear = m.numLayers * (P(H * hd, d) + 2 * P(KV * hd, d) + P(d, H * hd) + 2 * P(ff, d) + P(d, ff)) + P(V, d);
  const f32 = m.numLayers * (2 * d + (m.qkvBias ? H * hd + 2 * KV * hd : 0)) + d;
  const embedF32 = dtype !== 'bf16' && m.tiedEmbeddings ? 0 : V * d;
  return linear + 4 * (f32 + embedF32);
}

/**
 * Bytes of cache + scratch for a canvas of L tokens with `threads` kernel threads (one scores row each); int8
 * weights add the quantized activations of the widest matmul, taken above the workspace during each matmul.
 */
export function workspaceBytes(m: ModelDescription, L: number, threads = 1, dtype: WeightDType = 'f32'): number {
  const { hiddenSize: d, numHeads: H, numKvHeads: KV, headDim: hd, intermediateSize: ff, vocabSize: V } = m;
  const kw = KV * hd;
  const int8 = dtype === 'int8' ? int8ScratchBytes(L, Math.max(d, ff, H * hd)) + 16 : 0;
  return 4 * (2 * m.numLayers * L * kw + L * (4 * d + 2 * H * hd + 2 * ff + 2 * kw + threads + 1 + V)) + 40 * L + 16 * 32 + int8;
}

export class WasmEngine implements Engine {
  readonly name = 'wasm';
  readonly model: ModelInfo;
  readonly capabilities: EngineCapabilities = {
    contractVersion: ENGINE_CONTRACT_VERSION,
    modes: ['full', 'prefix', 'dual'],
    reports: { top2: true, entropy: true, logits: true },
    sampling: true,
  };
  private ws: Workspace | null = null;
  private cacheLength = 0; // L of the last full forward; 0 = no cache
  private disposed = false;

  private constructor(
    readonly desc: ModelDescription,
    private readonly K: WasmKernels,
    /** (V, d) f32 row-major, or null when the rows are read from the tied (f32 or int8) LM head. */
    private readonly embed: Region | null,
    private readonly layers: LayerRegions[],
    private readonly finalNorm: Region,
    private readonly lmHead: PackedWeight,
    private readonly weightsEnd: number,
    readonly weightDType: WeightDType,
  ) {
    this.model = schedulerModelInfo(desc);
  }

  /** Copies the weights into linear memory. Fails before reading anything when the model cannot fit in 4 GiB. */
  static async load(
    desc: ModelDescription, names: ModelTensorNames, read: TensorReader, K: WasmKernels, weightDType: WeightDType = 'f32',
  ): Promise<WasmEngine> {
    const need = K.usedBytes + weightBytes(desc, weightDType) + workspaceBytes(desc, Math.min(desc.maxPositions, 64), K.threads, weightDType);
    if (need > WASM32_MAX_BYTES) {
      throw new Error(
        `wasm engine: this model needs ${(need / 2 ** 30).toFixed(2)} GiB of linear memory (${weightDType} weights + a 64-token workspace) ` +
          `but wasm32 addresses at most 4 GiB; ${weightDType === 'int8' ? '' : "use weightDType 'int8' (--dtype int8), "}the cuda engine or a smaller model`,
      );
    }
    const put = async (name: string): Promise<Region> => {
      const data = await read(name);
      return K.allocF32(data.length, data);
    };
    const { hiddenSize: d, numHeads: H, numKvHeads: KV, headDim: hd, intermediateSize: ff, vocabSize: V } = desc;
    // Linear weights W (out, inDim) are packed into the matmul kernels' panel layout as they are copied in.
    const putLinear = async (name: string, out: number, inDim: number): Promise<PackedWeight> => {
      const data = await read(name);
      if (data.length !== out * inDim) throw new Error(`wasm engine: tensor ${name} has ${data.length} values; expected ${out}×${inDim}`);
      return K.allocWeight(data, out, inDim, weightDType);
    };
    // A tied embedding is read back from the LM head's rows (exact for f32, dequantized for int8); bf16 keeps an f32 copy.
    const tiedRows = weightDType !== 'bf16' && names.lmHead === names.embed;
    const embed = tiedRows ? null : await put(names.embed);
    const layers: LayerRegions[] = [];
    for (const n of names.layers) {
      layers.push({
        attnNorm: await put(n.attnNorm), q: await putLinear(n.q, H * hd, d), k: await putLinear(n.k, KV * hd, d),
        v: await putLinear(n.v, KV * hd, d),
        qBias: n.qBias ? await put(n.qBias) : null, kBias: n.kBias ? await put(n.kBias) : null,
        vBias: n.vBias ? await put(n.vBias) : null,
        o: await putLinear(n.o, d, H * hd), ffnNorm: await put(n.ffnNorm), gate: await putLinear(n.gate, ff, d),
        up: await putLinear(n.up, ff, d), down: await putLinear(n.down, d, ff),
      });
    }
    const finalNorm = await put(names.finalNorm);
    const lmHead = await putLinear(names.lmHead, V, d);
    return new WasmEngine(desc, K, embed, layers, finalNorm, lmHead, K.mark(), weightDType);
  }

  async forward(req: ForwardRequest, signal?: AbortSignal): Promise<ForwardResult> {
    if (this.disposed) throw new Error('forward: the engine was disposed');
    validateForwardRequest(this.model, this.capabilities, req);
    const L = req.canvas.length;
    if (req.mode !== 'full') {
      if (this.cacheLength === 0) throw new Error(`forward: a '${req.mode}' step needs a prior 'full' forward to build the cache`);
      if (this.cacheLength !== L) {
        throw new Error(`forward: the cache holds a canvas of ${this.cacheLength} tokens, this '${req.mode}' step has ${L}; run a 'full' forward first`);
      }
    } else {
      this.ensureWorkspace(L);
      this.cacheLength = 0; // a failed full forward leaves no valid cache
    }
    signal?.throwIfAborted();
    this.layersForward(req, signal);
    if (req.mode === 'full') this.cacheLength = L;
    return this.report(req);
  }

  private ensureWorkspace(L: number): void {
    if (this.ws && this.ws.L === L) return;
    const K = this.K;
    const m = this.desc;
    K.release(this.weightsEnd);
    this.ws = null;
    const need = this.weightsEnd + workspaceBytes(m, L, K.threads, this.weightDType);
    if (need > WASM32_MAX_BYTES) {
      throw new Error(`wasm engine: a canvas of ${L} tokens needs ${(need / 2 ** 30).toFixed(2)} GiB of linear memory; wasm32 allows 4 GiB. Use a shorter canvas`);
    }
    const { hiddenSize: d, numHeads: H, numKvHeads: KV, headDim: hd, intermediateSize: ff, vocabSize: V } = m;
    const kw = KV * hd;
    const kCache: Region[] = [];
    const vCache: Region[] = [];
    for (let l = 0; l < m.numLayers; l++) {
      kCache.push(K.allocF32(L * kw));
      vCache.push(K.allocF32(L * kw));
    }
    this.ws = {
      L, kCache, vCache,
      x: K.allocF32(L * d), h: K.allocF32(L * d), q: K.allocF32(L * H * hd), att: K.allocF32(L * H * hd),
      tmp: K.allocF32(L * d), gate: K.allocF32(L * ff), up: K.allocF32(L * ff),
      kTmp: K.allocF32(L * kw), vTmp: K.allocF32(L * kw), scores: K.allocF32(L * K.threads), pos: K.allocI32(L),
      sel: K.allocF32(L * d), logits: K.allocF32(L * V), res: { ptr: K.alloc(L * 40), length: L * 5 },
    };
    if (this.weightDType === 'int8') K.reserve(int8ScratchBytes(L, Math.max(d, ff, H * hd))); // int8 matmuls' scratch
  }


  /** Runs the layers over [start, end), updating the cache as the mode says; leaves final-normed rows in ws.h. */
  private layersForward(req: ForwardRequest, signal?: AbortSignal): void {
    const K = this.K;
    const ws = this.ws!;
    const m = this.desc;
    const { hiddenSize: d, numHeads: H, numKvHeads: KV, headDim: hd, intermediateSize: ff } = m;
    const kw = KV * hd;
    const L = req.canvas.length;
    const { start, end, mode } = req;
    const n = end - start;
    const sub = (r: Region, offset: number, length: number): Region => ({ ptr: r.ptr + offset * 4, length });

    const pos = K.i32(ws.pos);
    for (let i = 0; i < n; i++) pos[i] = start + i;
    const x = K.f32(ws.x);
    const emb = this.embed ? K.f32(this.embed) : null;
    for (let i = 0; i < n; i++) {
      const t = req.canvas[start + i];
      if (emb) x.set(emb.subarray(t * d, t * d + d), i * d);
      else K.weightRow(this.lmHead, t, x, i * d);
    }
    const scale = 1 / Math.sqrt(hd);
    for (let l = 0; l < m.numLayers; l++) {
      signal?.throwIfAborted();
      const w = this.layers[l];
      K.rmsnorm(ws.x, w.attnNorm, ws.h, n, d, m.rmsNormEps);
      K.matmul(ws.h, w.q, w.qBias, ws.q, n);
      K.rope(ws.q, ws.pos, n, H, hd, m.ropeTheta);
      // Keys/values the queries see, (L, KV*hd). No attention mask, so fresh rows take their own slots:
      // full/dual write them into the cache; prefix writes into a copy so the cache stays untouched.
      let keys = ws.kCache[l];
      let values = ws.vCache[l];
      if (mode === 'prefix') {
        K.f32(ws.kTmp).set(K.f32(sub(keys, 0, L * kw)));
        K.f32(ws.vTmp).set(K.f32(sub(values, 0, L * kw)));
        keys = ws.kTmp;
        values = ws.vTmp;
      }
      const kRows = sub(keys, start * kw, n * kw);
      K.matmul(ws.h, w.k, w.kBias, kRows, n);
      K.rope(kRows, ws.pos, n, KV, hd, m.ropeTheta);
      K.matmul(ws.h, w.v, w.vBias, sub(values, start * kw, n * kw), n);
      K.attention(ws.q, sub(keys, 0, L * kw), sub(values, 0, L * kw), ws.att, ws.scores, n, L, H, KV, hd, scale);
      K.matmul(ws.att, w.o, null, ws.tmp, n);
      addInto(K.f32(ws.x), K.f32(ws.tmp), n * d);
      K.rmsnorm(ws.x, w.ffnNorm, ws.h, n, d, m.rmsNormEps);
      K.matmul(ws.h, w.gate, null, ws.gate, n);
      K.matmul(ws.h, w.up, null, ws.up, n);
      K.swiglu(ws.gate, ws.up, ws.gate, n * ff);
      K.matmul(ws.gate, w.down, null, ws.tmp, n);
      addInto(K.f32(ws.x), K.f32(ws.tmp), n * d);
    }
    K.rmsnorm(ws.x, this.finalNorm, ws.h, n, d, m.rmsNormEps);
  }

  /** Gathers the prediction row of each reported position, runs the LM head and reduces each row in wasm. */
  private report(req: ForwardRequest): ForwardResult {
    const K = this.K;
    const ws = this.ws!;
    const d = this.desc.hiddenSize;
    const V = this.desc.vocabSize;
    const np = req.positions.length;
    const h = K.f32(ws.h);
    const sel = K.f32(ws.sel);
    for (let i = 0; i < np; i++) {
      const p = req.positions[i];
      // ModelInfo.shiftLogits: Dream reads p's prediction from row p-1 when it lies inside the span.
      const row = this.model.shiftLogits && p - 1 >= req.start ? p - 1 - req.start : p - req.start;
      sel.set(h.subarray(row * d, row * d + d), i * d);
    }
    K.matmul(ws.sel, this.lmHead, null, ws.logits, np);
    const tokens = new Int32Array(np); // (np)
    const probs = new Float64Array(np); // (np)
    const top1 = new Float64Array(np); // (np)
    const top2 = new Float64Array(np); // (np)
    const entropy = new Float64Array(np); // (np) nats
    const s = req.sampling;
    K.i32(ws.pos).set(req.positions); // the layers are done with pos: it now holds each row's canvas position
    const rows = K.reduceRows(ws.logits, V, np, ws.pos, ws.res, s ? s.temperature : 0, s ? s.seed : 0, s ? s.forwardIndex : 0);
    for (let i = 0; i < np; i++) {
      const r = rows[i];
      tokens[i] = r.token;
      probs[i] = r.prob;
      top1[i] = r.top1;
      top2[i] = r.top2;
      entropy[i] = r.entropy;
    }
    const result: ForwardResult = { tokens, probs };
    if (req.want?.top2) { result.top1Probs = top1; result.top2Probs = top2; }
    if (req.want?.entropy) result.entropy = entropy;
    if (req.want?.logits) result.logits = K.f32({ ptr: ws.logits.ptr, length: np * V }).slice();
    return result;
  }

  async dispose(): Promise<void> {
    this.disposed = true;
    await this.K.parallel?.dispose();
    this.K.parallel = null;
    this.ws = null;
    this.cacheLength = 0;
  }
}

function addInto(x: Float32Array, y: Float32Array, count: number): void {
  for (let i = 0; i < count; i++) x[i] += y[i];
}
