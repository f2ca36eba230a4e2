/**
 * The WASM engine: the forward pass of DESIGN §1 with the cache modes of DESIGN §4, many sequences per pass
 * (DESIGN §7), every heavy step in the AssemblyScript kernels (f32 activations; f32, bf16 or int8 weights). No Node API
 * here: the caller supplies the kernels (src/node.ts loads them in Node) and the opened model.
 *
 * Linear memory layout (d = hiddenSize, H/KV heads, hd = headDim, kw = KV*hd, ff = intermediateSize,
 * V = vocabSize):
 *
 *   heapBase ┬──────────────────────────────────────────────────────────────────────┐
 *            │ WEIGHTS (loaded once; norms, biases, embed f32; linear W f32/bf16/int8)│
 *            │   embed (V, d) · per layer: attnNorm (d), q (H*hd, d), k/v (kw, d),    │
 *            │   q/k/v bias (H*hd / kw, Qwen2), q/k norm (hd, Qwen3), o (d, H*hd),    │
 *            │   ffnNorm (d), gate/up (ff, d), down (d, ff) · finalNorm (d) · lmHead  │
 *            │   (V, d); linear W (out, in) packed in panels (ceil(out/8), in, 8)     │
 *            │   (int8: 288 bytes per panel and block of 32 in; src/kernels.ts)       │
 *            │   (tied: no embed copy; its rows are read from the packed lmHead, f32, │
 *            │   bf16 or int8 dequantized — 0.9 GiB saved for 151936 × 1536)          │
 *   weightsEnd├─────────────────────────────────────────────────────────────────────┤  ← blocks, first-fit
 *            │ SEQUENCE CACHES, one block per open sequence of longest canvas M:     │    (allocBlock/freeBlock)
 *            │   per layer l: K_l (M, kw) f32 then V_l (M, kw) f32; row p = position p │
 *            │   (K after RoPE at absolute positions)                                 │
 *            │ PASS SCRATCH, one block sized for the largest pass so far (Scratch;    │
 *            │   int8: it holds the matmuls' quantized rows too, WasmKernels.int8Scratch)│
 *            └──────────────────────────────────────────────────────────────────────┘
 */
import {
  ENGINE_CONTRACT_VERSION, EngineCapacityError, SequenceTable, assembleResults, checkModelSupported, newPassReductions,
  type Engine, type EngineCapabilities, type ForwardRequest, type ForwardResult, type ModelInfo, type PassLayout,
  type SequenceHandle,
} from '@fast-dllm/engine-contract';
import { schedulerModelInfo, type ModelDescription, type ModelTensorNames } from '@fast-dllm/model';
import { ATTENTION_SCORE_ROWS, WASM32_MAX_BYTES, int8ScratchBytes, packedBytes, type PackedWeight, type Region, type WasmKernels, type WeightDType } from './kernels.js';

/** Reads one tensor as f32, whatever its stored dtype (the archive of @fast-dllm/model does). */
export type TensorReader = (name: string) => Promise<Float32Array>;

interface LayerRegions {
  attnNorm: Region; q: PackedWeight; k: PackedWeight; v: PackedWeight;
  qBias: Region | null; kBias: Region | null; vBias: Region | null;
  qNorm: Region | null; kNorm: Region | null; // (hd) Qwen3 per-head q/k RMSNorm weights
  o: PackedWeight; ffnNorm: Region; gate: PackedWeight; up: PackedWeight; down: PackedWeight;
}

/** Reported rows reduced at once: bounds the logits scratch (chunk, V) for big vocabularies. */
const REPORT_CHUNK = 64;

/** The size a pass's scratch is laid out for. */
interface ScratchShape {
  rows: number; // computed rows of all sequences
  keys: number; // longest canvas in the pass
  reports: number; // reported rows reduced at once (<= REPORT_CHUNK)
}

/** Regions of one scratch block, laid out for a ScratchShape. */
interface Scratch extends ScratchShape {
  block: number;
  x: Region; h: Region; tmp: Region; // (rows, d) residual stream, normed input, projection output
  q: Region; att: Region; // (rows, H*hd)
  kNew: Region; vNew: Region; // (rows, kw) fresh K/V of every row
  kTmp: Region; vTmp: Region; // (keys, kw) a prefix step's keys: the cache with its fresh rows written in
  gate: Region; up: Region; // (rows, ff)
  scores: Region; // (threads, ATTENTION_SCORE_ROWS, keys) attention score rows per kernel thread (query rows go in blocks)
  pos: Region; // (rows,) i32 absolute position of each row
  sel: Region; // (reports, d) rows whose hidden states predict the reports
  logits: Region; // (reports, V)
  res: Region; // (reports, 5) f64 per-row reductions
  keysU32: Region; // (reports, 3) u32 [position, seed, forwardIndex]
  temps: Region; // (reports,) f64 temperature
  xq: Region; // int8 weights: (max(rows, reports), 40 bytes per block of 32 of the widest input) quantized rows; length in bytes
}

/**
 * Bytes of the weights of a model as loaded: checked against wasm32's 4 GiB before anything is read. Linear
 * weights and the LM head in `dtype`; norms, biases and an untied embedding in f32 (a tied one is read from the
 * LM head: exact for f32/bf16, dequantized for int8).
 */
export function weightBytes(m: ModelDescription, dtype: WeightDType = 'f32'): number {
  const { hiddenSize: d, numHeads: H, numKvHeads: KV, headDim: hd, intermediateSize: ff, vocabSize: V } = m;
  const P = (out: number, inDim: number) => packedBytes(out, inDim, dtype); // panels round `out` up to a multiple of 8
  const linear = m.numLayers * (P(H * hd, d) + 2 * P(KV * hd, d) + P(d, H * hd) + 2 * P(ff, d) + P(d, ff)) + P(V, d);
  const f32 = m.numLayers * (2 * d + (m.qkvBias ? H * hd + 2 * KV * hd : 0) + (m.qkNorm ? 2 * hd : 0)) + d;
  const embedF32 = m.tiedEmbeddings ? 0 : V * d; // tied: embedding rows come from the packed LM head
  return linear + 4 * (f32 + embedF32);
}

/** Bytes of f32 K/V one sequence of longest canvas `maxLength` reserves. */
export function sequenceCacheBytes(m: Pick<ModelDescription, 'numLayers' | 'numKvHeads' | 'headDim'>, maxLength: number): number {
  return 2 * m.numLayers * maxLength * m.numKvHeads * m.headDim * 4;
}

/** Element counts of every scratch region, in layout order (f32 / i32 / u32 elements; f64 regions count 2). */
function scratchParts(m: ModelDescription, s: ScratchShape, threads: number, dtype: WeightDType): Array<[keyof Scratch, number, number]> {
  const { hiddenSize: d, numHeads: H, numKvHeads: KV, headDim: hd, intermediateSize: ff, vocabSize: V } = m;
  const kw = KV * hd;
  const R = s.rows, Lk = s.keys, C = s.reports;
  const xq = dtype === 'int8' ? int8ScratchBytes(Math.max(R, C), Math.max(d, ff, H * hd)) : 0; // bytes
  // [name, 4-byte words, elements reported as the region's length]
  return [
    ['x', R * d, R * d], ['h', R * d, R * d], ['tmp', R * d, R * d], ['q', R * H * hd, R * H * hd], ['att', R * H * hd, R * H * hd],
    ['kNew', R * kw, R * kw], ['vNew', R * kw, R * kw], ['kTmp', Lk * kw, Lk * kw], ['vTmp', Lk * kw, Lk * kw],
    ['gate', R * ff, R * ff], ['up', R * ff, R * ff], ['scores', ATTENTION_SCORE_ROWS * threads * Lk, ATTENTION_SCORE_ROWS * threads * Lk], ['pos', R, R],
    ['sel', C * d, C * d], ['logits', C * V, C * V], ['res', 2 * C * 5, C * 5], ['keysU32', C * 3, C * 3], ['temps', 2 * C, C],
    ['xq', Math.ceil(xq / 4), xq],
  ];
}

/** Bytes of the scratch of one pass of `rows` computed rows over canvases of at most `keys` positions. */
export function scratchBytes(m: ModelDescription, rows: number, keys: number, threads = 1, dtype: WeightDType = 'f32'): number {
  return scratchParts(m, { rows, keys, reports: Math.min(rows + 1, REPORT_CHUNK) }, threads, dtype)
    .reduce((a, [, words]) => a + 16 * Math.ceil((4 * words) / 16), 0);
}

/** Longest canvas (and rows of a pass) the load-time check makes sure fit beside the weights. */
const LOAD_CHECK_LENGTH = 64;

export class WasmEngine implements Engine {
  readonly name = 'wasm';
  readonly model: ModelInfo;
  readonly capabilities: EngineCapabilities = {
    contractVersion: ENGINE_CONTRACT_VERSION,
    modes: ['full', 'prefix', 'dual', 'extend'],
    reports: { top2: true, entropy: true, logits: true },
    sampling: true,
    maxBatch: 64,
    blockCausal: true,
  };
  /** Each open sequence's cache block (byte offset). */
  private readonly sequences: SequenceTable<number>;
  private scratch: Scratch | null = null;
  private disposed = false;

  private constructor(
    readonly desc: ModelDescription,
    private readonly K: WasmKernels,
    /** (V, d) f32 row-major, or null when the rows are read from the tied LM head (f32, bf16 or int8). */
    private readonly embed: Region | null,
    private readonly layers: LayerRegions[],
    private readonly finalNorm: Region,
    private readonly lmHead: PackedWeight,
    readonly weightDType: WeightDType,
  ) {
    this.model = schedulerModelInfo(desc);
    checkModelSupported(this.name, this.model, this.capabilities);
    this.sequences = new SequenceTable(this.name, this.model.maxPositions);
  }

  /** Copies the weights into linear memory. Fails before reading anything when the model cannot fit in 4 GiB. */
  static async load(
    desc: ModelDescription, names: ModelTensorNames, read: TensorReader, K: WasmKernels, weightDType: WeightDType = 'f32',
  ): Promise<WasmEngine> {
    const L = Math.min(desc.maxPositions, LOAD_CHECK_LENGTH);
    const need = K.usedBytes + weightBytes(desc, weightDType) + sequenceCacheBytes(desc, L) + scratchBytes(desc, L, L, K.threads, weightDType);
    if (need > WASM32_MAX_BYTES) {
      throw new Error(
        `wasm engine: this model needs ${(need / 2 ** 30).toFixed(2)} GiB of linear memory (${weightDType} weights + one ${L}-token sequence) ` +
          `but wasm32 addresses at most 4 GiB; ${weightDType === 'int8' ? '' : "use int8 weights (weightDType 'int8', --dtype int8), "}the cuda engine or a smaller model`,
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
    // Tied: the embedding is the LM head, whose packed rows weightRow reads back (bf16 widened exactly, int8 dequantized).
    const tied = names.lmHead === names.embed;
    const embed = tied ? null : await put(names.embed);
    const layers: LayerRegions[] = [];
    for (const n of names.layers) {
      layers.push({
        attnNorm: await put(n.attnNorm), q: await putLinear(n.q, H * hd, d), k: await putLinear(n.k, KV * hd, d),
        v: await putLinear(n.v, KV * hd, d),
        qBias: n.qBias ? await put(n.qBias) : null, kBias: n.kBias ? await put(n.kBias) : null,
        vBias: n.vBias ? await put(n.vBias) : null,
        qNorm: n.qNorm ? await put(n.qNorm) : null, kNorm: n.kNorm ? await put(n.kNorm) : null,
        o: await putLinear(n.o, d, H * hd), ffnNorm: await put(n.ffnNorm), gate: await putLinear(n.gate, ff, d),
        up: await putLinear(n.up, ff, d), down: await putLinear(n.down, d, ff),
      });
    }
    const finalNorm = await put(names.finalNorm);
    const lmHead = await putLinear(names.lmHead, V, d);
    return new WasmEngine(desc, K, embed, layers, finalNorm, lmHead, weightDType);
  }

  /**
   * Linear memory as it stands: `linearBytes` the WebAssembly.Memory's size (what the process holds, at most 4 GiB),
   * `usedBytes` the allocator's top (weights, open sequences' caches, pass scratch), `weightBytes` the weights' share.
   */
  memoryUsage(): { linearBytes: number; usedBytes: number; weightBytes: number } {
    return { linearBytes: this.K.memory.buffer.byteLength, usedBytes: this.K.usedBytes, weightBytes: weightBytes(this.desc, this.weightDType) };
  }

  sequenceBytes(maxLength: number): number {
    return sequenceCacheBytes(this.desc, maxLength);
  }

  sequenceCapacity(maxLength: number): number {
    return this.disposed ? 0 : this.K.blocksThatFit(this.sequenceBytes(maxLength));
  }

  openSequence(maxLength: number): SequenceHandle {
    if (this.disposed) throw new Error('openSequence: the engine was disposed');
    return this.sequences.open(maxLength, () => this.K.allocBlock(this.sequenceBytes(maxLength)));
  }

  closeSequence(sequence: SequenceHandle): void {
    const block = this.sequences.close(sequence);
    if (block !== undefined && !this.disposed) this.K.freeBlock(block);
  }

  async forward(batch: readonly ForwardRequest[], signal?: AbortSignal): Promise<ForwardResult[]> {
    if (this.disposed) throw new Error('forward: the engine was disposed');
    return this.sequences.pass(this.model, this.capabilities, batch, signal, {
      reserve: (layout) => {
        const keys = batch.reduce((a, r) => Math.max(a, r.canvas.length), 0);
        this.ensureScratch({ rows: layout.rows, keys, reports: Math.min(Math.max(layout.reports, 1), REPORT_CHUNK) });
      },
      compute: (caches, layout) => this.layersForward(batch, caches, layout, signal),
      results: (_, layout) => this.report(batch, layout),
    });
  }

  /** Grows the scratch block to hold a pass of this shape; throws EngineCapacityError (nothing changed) when it cannot. */
  private ensureScratch(need: ScratchShape): void {
    const s = this.scratch;
    if (s && s.rows >= need.rows && s.keys >= need.keys && s.reports >= need.reports) return;
    const shape: ScratchShape = {
      rows: Math.max(need.rows, s?.rows ?? 0), keys: Math.max(need.keys, s?.keys ?? 0), reports: Math.max(need.reports, s?.reports ?? 0),
    };
    const parts = scratchParts(this.desc, shape, this.K.threads, this.weightDType);
    const bytes = parts.reduce((a, [, words]) => a + 16 * Math.ceil((4 * words) / 16), 0);
    if (s) this.K.freeBlock(s.block);
    this.scratch = null;
    this.K.int8Scratch = null;
    let block: number;
    try {
      block = this.K.allocBlock(bytes);
    } catch (e) {
      throw e instanceof EngineCapacityError
        ? new EngineCapacityError(`wasm engine: a pass of ${need.rows} rows over canvases of up to ${need.keys} tokens needs ${(bytes / 2 ** 20).toFixed(1)} MiB of scratch that wasm32's 4 GiB cannot hold beside the open sequences; run fewer sequences per pass`)
        : e;
    }
    const out = { ...shape, block } as Scratch;
    let ptr = block;
    for (const [name, words, length] of parts) {
      (out as unknown as Record<string, Region>)[name] = { ptr, length };
      ptr += 16 * Math.ceil((4 * words) / 16);
    }
    this.scratch = out;
    if (this.weightDType === 'int8') this.K.int8Scratch = out.xq; // the int8 matmuls' quantized rows
  }

  /** Cache region of layer l's keys (v: values) for a sequence's cache block, rows [0, rows). */
  private cacheRegion(block: number, maxLength: number, l: number, v: boolean, rows: number): Region {
    const kw = this.desc.numKvHeads * this.desc.headDim;
    return { ptr: block + ((2 * l + (v ? 1 : 0)) * maxLength * kw) * 4, length: rows * kw };
  }

  /** Runs the layers over every request's span, updating caches as the modes say; leaves final-normed rows in scratch.h. */
  private layersForward(batch: readonly ForwardRequest[], caches: number[], layout: PassLayout, signal?: AbortSignal): void {
    const K = this.K;
    const ws = this.scratch!;
    const m = this.desc;
    const { hiddenSize: d, numHeads: H, numKvHeads: KV, headDim: hd, intermediateSize: ff } = m;
    const kw = KV * hd;
    const n = layout.rows;
    const sub = (r: Region, offset: number, length: number): Region => ({ ptr: r.ptr + offset * 4, length });
    const rows = (r: Region, width: number) => sub(r, 0, n * width);

    const pos = K.i32(ws.pos);
    const x = K.f32(ws.x);
    const emb = this.embed ? K.f32(this.embed) : null;
    batch.forEach((req, b) => {
      for (let p = req.start; p < req.end; p++) {
        const row = layout.rowOffset[b] + p - req.start;
        pos[row] = p;
        const t = req.canvas[p];
        if (emb) x.set(emb.subarray(t * d, t * d + d), row * d);
        else K.weightRow(this.lmHead, t, x, row * d);
      }
    });
    const scale = 1 / Math.sqrt(hd);
    const B = this.model.blockSize;
    for (let l = 0; l < m.numLayers; l++) {
      signal?.throwIfAborted();
      const w = this.layers[l];
      // Every matrix product runs over the concatenated rows of all sequences: one read of the weights.
      K.rmsnorm(rows(ws.x, d), w.attnNorm, rows(ws.h, d), n, d, m.rmsNormEps);
      K.matmul(rows(ws.h, d), w.q, w.qBias, rows(ws.q, H * hd), n);
      // Qwen3: per-head RMSNorm before RoPE, in place over the (n·H, hd) rows of q (and (n·KV, hd) of k).
      if (w.qNorm) K.rmsnorm(rows(ws.q, H * hd), w.qNorm, rows(ws.q, H * hd), n * H, hd, m.rmsNormEps);
      K.rope(rows(ws.q, H * hd), rows(ws.pos, 1), n, H, hd, m.ropeTheta);
      K.matmul(rows(ws.h, d), w.k, w.kBias, rows(ws.kNew, kw), n);
      if (w.kNorm) K.rmsnorm(rows(ws.kNew, kw), w.kNorm, rows(ws.kNew, kw), n * KV, hd, m.rmsNormEps);
      K.rope(rows(ws.kNew, kw), rows(ws.pos, 1), n, KV, hd, m.ropeTheta);
      K.matmul(rows(ws.h, d), w.v, w.vBias, rows(ws.vNew, kw), n);
      // Attention per sequence, over its own keys by absolute position (L, kw); the fresh rows take their own
      // slots: written into the cache, except for prefix steps, which write into a copy so the cache stays.
      batch.forEach((req, b) => {
        const o = layout.rowOffset[b];
        const span = req.end - req.start;
        const L = req.canvas.length;
        const maxLen = req.sequence.maxLength;
        let keys = this.cacheRegion(caches[b], maxLen, l, false, L);
        let values = this.cacheRegion(caches[b], maxLen, l, true, L);
        if (req.mode === 'prefix') {
          K.f32(sub(ws.kTmp, 0, L * kw)).set(K.f32(keys));
          K.f32(sub(ws.vTmp, 0, L * kw)).set(K.f32(values));
          keys = sub(ws.kTmp, 0, L * kw);
          values = sub(ws.vTmp, 0, L * kw);
        }
        K.f32(sub(keys, req.start * kw, span * kw)).set(K.f32(sub(ws.kNew, o * kw, span * kw)));
        K.f32(sub(values, req.start * kw, span * kw)).set(K.f32(sub(ws.vNew, o * kw, span * kw)));
        // Rows of one attention call share their visible keys: all L, or (block-causal) up to their block's end.
        for (let i = 0; i < span;) {
          const p = req.start + i;
          const limit = B === undefined ? L : Math.min(L, (Math.floor(p / B) + 1) * B);
          const count = B === undefined ? span : Math.min(span - i, (Math.floor(p / B) + 1) * B - p);
          K.attention(sub(ws.q, (o + i) * H * hd, count * H * hd), sub(keys, 0, limit * kw), sub(values, 0, limit * kw),
            sub(ws.att, (o + i) * H * hd, count * H * hd), sub(ws.scores, 0, ATTENTION_SCORE_ROWS * limit * K.threads), count, limit, H, KV, hd, scale);
          i += count;
        }
      });
      K.matmul(rows(ws.att, H * hd), w.o, null, rows(ws.tmp, d), n);
      addInto(K.f32(ws.x), K.f32(ws.tmp), n * d);
      K.rmsnorm(rows(ws.x, d), w.ffnNorm, rows(ws.h, d), n, d, m.rmsNormEps);
      K.matmul(rows(ws.h, d), w.gate, null, rows(ws.gate, ff), n);
      K.matmul(rows(ws.h, d), w.up, null, rows(ws.up, ff), n);
      K.swiglu(rows(ws.gate, ff), rows(ws.up, ff), rows(ws.gate, ff), n * ff);
      K.matmul(rows(ws.gate, ff), w.down, null, rows(ws.tmp, d), n);
      addInto(K.f32(ws.x), K.f32(ws.tmp), n * d);
    }
    K.rmsnorm(rows(ws.x, d), this.finalNorm, rows(ws.h, d), n, d, m.rmsNormEps);
  }

  /** Runs the LM head over the rows that predict each report, REPORT_CHUNK at a time, and reduces each row in wasm. */
  private report(batch: readonly ForwardRequest[], layout: PassLayout): ForwardResult[] {
    const K = this.K;
    const ws = this.scratch!;
    const d = this.desc.hiddenSize;
    const V = this.desc.vocabSize;
    const n = layout.reports;
    const { token, prob, top1, top2, entropy } = newPassReductions(n); // (n,) each; entropy in nats
    const wantLogits = batch.some((r) => r.want?.logits);
    const logits = wantLogits ? new Float32Array(n * V) : undefined; // (n, V)
    for (let c0 = 0; c0 < n; c0 += ws.reports) {
      const c = Math.min(ws.reports, n - c0);
      const h = K.f32(ws.h);
      const sel = K.f32(ws.sel);
      const keys = new Uint32Array(K.memory.buffer, ws.keysU32.ptr, c * 3); // (c, 3) position, seed, forwardIndex
      const temps = new Float64Array(K.memory.buffer, ws.temps.ptr, c); // (c,)
      for (let i = 0; i < c; i++) {
        const r = c0 + i;
        const row = layout.reportRow[r];
        sel.set(h.subarray(row * d, row * d + d), i * d);
        keys[3 * i] = layout.position[r];
        keys[3 * i + 1] = layout.seed[r];
        keys[3 * i + 2] = layout.forwardIndex[r];
        temps[i] = layout.temperature[r];
      }
      const logitsRegion = { ptr: ws.logits.ptr, length: c * V };
      K.matmul({ ptr: ws.sel.ptr, length: c * d }, this.lmHead, null, logitsRegion, c);
      const red = K.reduceRows(logitsRegion, V, c, ws.keysU32, ws.temps, ws.res, this.model.maskId);
      for (let i = 0; i < c; i++) {
        token[c0 + i] = red[i].token;
        prob[c0 + i] = red[i].prob;
        top1[c0 + i] = red[i].top1;
        top2[c0 + i] = red[i].top2;
        entropy[c0 + i] = red[i].entropy;
      }
      logits?.set(K.f32(logitsRegion), c0 * V);
    }
    return assembleResults(batch, layout, { token, prob, top1, top2, entropy, logits }, V);
  }

  async dispose(): Promise<void> {
    this.disposed = true;
    await this.K.parallel?.dispose();
    this.K.parallel = null;
    this.scratch = null;
  }
}

function addInto(x: Float32Array, y: Float32Array, count: number): void {
  for (let i = 0; i < count; i++) x[i] += y[i];
}
