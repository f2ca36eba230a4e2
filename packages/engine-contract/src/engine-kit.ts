/**
 * What every engine does the same way, written once: request validation, the per-sequence cache bookkeeping of
 * DESIGN §4/§7, Dream's row shift, the layout of a pass over several sequences, and the assembly of results.
 * Engines own the arithmetic; this file owns the rules, so every engine rejects the same things in the same words.
 */
import type {
  AttentionReport, EngineCapabilities, ForwardRequest, ForwardResult, ModelInfo, SequenceHandle,
} from './engine.js';

/** A sequence that does not fit in the engine's memory now; the engine and its other sequences are untouched. */
export class EngineCapacityError extends Error {
  override readonly name = 'EngineCapacityError';
}

/** Validates one request against the contract (the parts that need no cache state). */
export function validateForwardRequest(model: ModelInfo, caps: EngineCapabilities, req: ForwardRequest): void {
  const L = req.canvas.length;
  if (L === 0) throw new Error('forward: empty canvas');
  if (L > model.maxPositions) {
    throw new Error(`forward: canvas of ${L} tokens exceeds the model's ${model.maxPositions} positions`);
  }
  if (!caps.modes.includes(req.mode)) throw new Error(`forward: mode '${req.mode}' not supported by this engine`);
  if (!(Number.isInteger(req.start) && Number.isInteger(req.end) && 0 <= req.start && req.start < req.end && req.end <= L)) {
    throw new Error(`forward: bad span [${req.start}, ${req.end}) for a canvas of ${L}`);
  }
  if (req.mode === 'full' && (req.start !== 0 || req.end !== L)) throw new Error('forward: a full forward computes [0, L)');
  if ((req.mode === 'prefix' || req.mode === 'extend') && req.end !== L) throw new Error(`forward: a ${req.mode} step computes [start, L)`);
  for (let i = 0; i < L; i++) {
    const t = req.canvas[i];
    if (!(t >= 0 && t < model.vocabSize)) throw new Error(`forward: token ${t} at position ${i} is outside the vocabulary (${model.vocabSize})`);
  }
  const last = model.shiftLogits ? req.end : req.end - 1; // a shifted model may ask for the position past the span
  let prev = -1;
  for (const p of req.positions) {
    if (p < req.start || p > last || p <= prev) {
      throw new Error(`forward: reported positions must be ascending and inside [${req.start}, ${last + 1}); got ${p}`);
    }
    prev = p;
  }
  if (req.want?.top2 && !caps.reports.top2) throw new Error('forward: top-2 report not supported by this engine');
  if (req.want?.entropy && !caps.reports.entropy) throw new Error('forward: entropy report not supported by this engine');
  if (req.want?.logits && !caps.reports.logits) throw new Error('forward: logits report not supported by this engine');
  if (req.sampling) {
    if (!caps.sampling) throw new Error('forward: sampling not supported by this engine');
    if (!(req.sampling.temperature > 0 && Number.isFinite(req.sampling.temperature))) throw new Error('forward: sampling temperature must be a finite number > 0');
  }
  if (req.attention !== undefined || req.refresh !== undefined) validateElastic(model, caps, req);
}

/** The Elastic-Cache fields of a request (DESIGN §16): the attention report and the refresh. */
function validateElastic(model: ModelInfo, caps: EngineCapabilities, req: ForwardRequest): void {
  const layers = caps.elasticCache?.layers;
  if (layers === undefined) throw new Error(`forward: ${req.attention ? 'the attention report' : 'a refresh forward'} (Elastic-Cache) is not supported by this engine`);
  if (model.blockSize !== undefined) throw new Error('forward: the attention report and refresh forwards are for bidirectional models only');
  const L = req.canvas.length;
  const a = req.attention;
  if (a) {
    if (!(Number.isInteger(a.start) && Number.isInteger(a.end) && req.start <= a.start && a.start < a.end && a.end <= req.end)) {
      throw new Error(`forward: the attention report's rows [${a.start}, ${a.end}) must lie inside the computed span [${req.start}, ${req.end})`);
    }
    if (a.keys !== undefined) {
      if (!(a.keys instanceof Int32Array) || a.keys.length !== layers) throw new Error(`forward: the attention report's keys must be an Int32Array of ${layers} positions (one per layer)`);
      for (const k of a.keys) if (!(k === -1 || (k >= 0 && k < L))) throw new Error(`forward: the attention report's key ${k} is outside the canvas of ${L} (or -1)`);
    }
  }
  const r = req.refresh;
  if (r) {
    if (req.mode !== 'full') throw new Error(`forward: a refresh is a 'full' forward; got mode '${req.mode}'`);
    if (!(Number.isInteger(r.fromLayer) && r.fromLayer >= 0 && r.fromLayer < layers)) throw new Error(`forward: refresh.fromLayer must be an integer in [0, ${layers}); got ${r.fromLayer}`);
    if (!(Number.isInteger(r.start) && Number.isInteger(r.end) && 0 <= r.start && r.start < r.end && r.end <= L)) {
      throw new Error(`forward: bad refresh span [${r.start}, ${r.end}) for a canvas of ${L}`);
    }
  }
}

/**
 * The positions [from, to) whose K/V layer `layer` of a pass writes for one request (DESIGN §4, §16): the computed
 * span, except in a refresh's layers below `fromLayer`, which write only the refresh span. Every engine writes
 * exactly these (a prefix step into a copy of its cache).
 */
export function keyValueWrites(req: ForwardRequest, layer: number): { from: number; to: number } {
  const r = req.refresh;
  return r && layer < r.fromLayer ? { from: r.start, to: r.end } : { from: req.start, to: req.end };
}

/** An empty attention report for `rows` rows of a model with `layers` layers (filled by addAttentionLayer). */
export function newAttentionReport(layers: number, rows: number): AttentionReport {
  return { top: new Int32Array(layers), atTop: new Float64Array(layers * rows), tracked: new Float64Array(layers * rows) };
}

/**
 * Fills layer `layer` of a request's attention report (ForwardRequest.attention), the one definition every engine
 * uses: float64 scores q·k/sqrt(hd) of each reported row and head over the L keys, softmax per head (max-shifted),
 * the mean over heads A(r, j), the column sums over the rows in row order, the first largest. `q`: (n, H*hd) query
 * rows of the reported rows (after RoPE), `keys`: (L, KV*hd) this layer's keys as its attention read them; query head
 * h reads key head floor(h / (H / KV)).
 */
export function addAttentionLayer(
  report: AttentionReport, layer: number, trackedKey: number, q: ArrayLike<number>, keys: ArrayLike<number>,
  n: number, L: number, H: number, KV: number, hd: number,
): void {
  const scale = 1 / Math.sqrt(hd);
  const group = H / KV;
  const kw = KV * hd;
  const A = new Float64Array(n * L); // (n, L) mean attention over the heads
  const s = new Float64Array(L); // (L,) one head's scores, then weights
  for (let r = 0; r < n; r++) {
    for (let h = 0; h < H; h++) {
      const qo = (r * H + h) * hd;
      const ko = Math.floor(h / group) * hd;
      let max = -Infinity;
      for (let j = 0; j < L; j++) {
        let dot = 0;
        for (let t = 0; t < hd; t++) dot += q[qo + t] * keys[j * kw + ko + t];
        s[j] = dot * scale;
        if (s[j] > max) max = s[j];
      }
      let sum = 0;
      for (let j = 0; j < L; j++) { s[j] = Math.exp(s[j] - max); sum += s[j]; }
      for (let j = 0; j < L; j++) A[r * L + j] += s[j] / sum / H;
    }
  }
  let top = 0;
  let best = -Infinity;
  for (let j = 0; j < L; j++) {
    let col = 0;
    for (let r = 0; r < n; r++) col += A[r * L + j];
    if (col > best) { best = col; top = j; }
  }
  report.top[layer] = top;
  for (let r = 0; r < n; r++) {
    report.atTop[layer * n + r] = A[r * L + top];
    report.tracked[layer * n + r] = trackedKey >= 0 ? A[r * L + trackedKey] : 0;
  }
}

/** Hidden row, relative to `start`, whose logits predict absolute position p (ModelInfo.shiftLogits). */
export function predictionRow(model: ModelInfo, start: number, p: number): number {
  return model.shiftLogits && p - 1 >= start ? p - 1 - start : p - start;
}

interface SequenceEntry<S> {
  handle: SequenceHandle;
  /** K/V rows [0, cached) are valid. */
  cached: number;
  /** Engine-owned storage (cache buffers). */
  state: S;
}

/**
 * The sequences an engine holds and the validity of their caches (DESIGN §4). `S` is the engine's storage of
 * one sequence (its K/V buffers). The engine supplies how a sequence's storage is made and freed and how many
 * bytes it takes; this table checks every request of a pass before the engine computes anything.
 */
export class SequenceTable<S> {
  private readonly entries = new Map<number, SequenceEntry<S>>();
  private nextId = 1;

  constructor(private readonly engineName: string, private readonly maxPositions: number) {}

  get size(): number {
    return this.entries.size;
  }

  /** Opens a sequence whose storage `make` creates (it throws EngineCapacityError when there is no room). */
  open(maxLength: number, make: () => S): SequenceHandle {
    if (!(Number.isInteger(maxLength) && maxLength > 0)) throw new Error(`openSequence: maxLength must be a positive integer; got ${maxLength}`);
    if (maxLength > this.maxPositions) {
      throw new Error(`openSequence: a canvas of ${maxLength} tokens exceeds the model's ${this.maxPositions} positions`);
    }
    const state = make();
    const handle: SequenceHandle = Object.freeze({ id: this.nextId++, maxLength });
    this.entries.set(handle.id, { handle, cached: 0, state });
    return handle;
  }

  /** Removes the sequence; returns its storage for the engine to free (undefined when already closed). */
  close(handle: SequenceHandle): S | undefined {
    const e = this.entries.get(handle.id);
    if (!e || e.handle !== handle) return undefined;
    this.entries.delete(handle.id);
    return e.state;
  }

  /** Every open sequence's storage (for dispose). */
  states(): S[] {
    return Array.from(this.entries.values(), (e) => e.state);
  }

  /**
   * Checks a whole pass before any computation: each request valid, each sequence open and present once, its
   * canvas within the sequence's reservation, and its cache able to serve the mode. Returns each request's storage.
   */
  check(model: ModelInfo, caps: EngineCapabilities, batch: readonly ForwardRequest[]): S[] {
    if (batch.length === 0) throw new Error('forward: empty batch');
    if (batch.length > caps.maxBatch) throw new Error(`forward: ${batch.length} sequences in one pass; engine '${this.engineName}' takes at most ${caps.maxBatch}`);
    // A sequence may come back in several requests of one pass only when none of them writes its cache (all
    // `prefix`): the draft canvases of a verify pass (DESIGN §16).
    const modes = new Map<number, boolean>(); // sequence id -> every request so far is a prefix step
    return batch.map((req) => {
      validateForwardRequest(model, caps, req);
      const h = req.sequence;
      const e = h ? this.entries.get(h.id) : undefined;
      if (!e || e.handle !== h) throw new Error(`forward: sequence ${h?.id ?? '(none)'} is not open on engine '${this.engineName}'`);
      const before = modes.get(h.id);
      if (before !== undefined && !(before && req.mode === 'prefix')) {
        throw new Error(`forward: sequence ${h.id} appears twice in one pass; only 'prefix' steps (which leave the cache as it is) may share a pass`);
      }
      modes.set(h.id, req.mode === 'prefix');
      const L = req.canvas.length;
      if (L > h.maxLength) throw new Error(`forward: canvas of ${L} tokens is longer than sequence ${h.id}'s reserved ${h.maxLength}`);
      // dual reads every position outside its span from the cache; prefix and extend read [0, start).
      // A refresh (DESIGN §16) reads every position's shallow-layer K/V outside its span from the cache, as dual does.
      const needs = req.mode === 'dual' || req.refresh ? L : req.mode === 'full' ? 0 : req.start;
      if (needs > 0 && e.cached === 0) throw new Error(`forward: a '${req.mode}' step needs a prior 'full' forward to build the cache`);
      if ((req.mode === 'dual' || req.refresh) && e.cached !== L) {
        throw new Error(`forward: the cache holds a canvas of ${e.cached} tokens, this '${req.refresh ? 'refresh' : req.mode}' step has ${L}; run a 'full' forward first`);
      }
      if (needs > e.cached) {
        throw new Error(`forward: the cache holds ${e.cached} positions, this '${req.mode}' step starts at ${req.start}; run a 'full' or 'extend' forward first`);
      }
      return e.state;
    });
  }

  /** Marks the caches of a pass that completed: full and extend now hold [0, L). */
  commit(batch: readonly ForwardRequest[]): void {
    for (const req of batch) {
      const e = this.entries.get(req.sequence.id);
      if (e && (req.mode === 'full' || req.mode === 'extend')) e.cached = req.canvas.length;
    }
  }

  /** A pass that failed part-way may have half-written its caches: each must be rebuilt by a full forward. */
  invalidate(batch: readonly ForwardRequest[]): void {
    for (const req of batch) {
      const e = this.entries.get(req.sequence.id);
      if (e && req.mode !== 'prefix') e.cached = 0;
    }
  }

  /**
   * One forward pass, the lifecycle every engine shares: check the whole pass (check), stop if aborted, lay it out
   * (layoutPass), let the engine reserve what the pass needs (`reserve`: an EngineCapacityError there leaves every
   * cache as it was), compute (`compute`, which writes the caches; a failure part-way invalidates them), mark the
   * caches the pass completed (commit), and return the engine's results (`results`).
   */
  async pass<T>(
    model: ModelInfo, caps: EngineCapabilities, batch: readonly ForwardRequest[], signal: AbortSignal | undefined,
    steps: {
      reserve?: (layout: PassLayout) => void;
      compute: (states: S[], layout: PassLayout) => T | Promise<T>;
      results: (computed: T, layout: PassLayout) => ForwardResult[];
    },
  ): Promise<ForwardResult[]> {
    const states = this.check(model, caps, batch);
    signal?.throwIfAborted();
    const layout = layoutPass(model, batch);
    steps.reserve?.(layout);
    signal?.throwIfAborted();
    let computed: T;
    try {
      computed = await steps.compute(states, layout);
    } catch (e) {
      this.invalidate(batch);
      throw e;
    }
    this.commit(batch);
    return steps.results(computed, layout);
  }
}

/** Where each request's rows sit in a pass, and the rows whose predictions are reduced. */
export interface PassLayout {
  /** Computed rows of all requests, concatenated in request order. */
  rows: number;
  /** (batch,) first row of each request in the concatenation. */
  rowOffset: Int32Array;
  /** Reported predictions over all requests, in request order. */
  reports: number;
  /** (batch,) first report of each request. */
  reportOffset: Int32Array;
  /** (reports,) the concatenated row whose hidden state predicts each report (Dream's shift applied). */
  reportRow: Int32Array;
  /** (reports,) each report's absolute position (the Gumbel counter's `position`). */
  position: Int32Array;
  /** (reports,) f64 temperature per report; 0 = greedy. */
  temperature: Float64Array;
  /** (reports,) u32 seed and forward index per report (the sequence's own). */
  seed: Uint32Array;
  forwardIndex: Uint32Array;
}

/** Lays out a pass: GEMMs run over all `rows`; the LM head over `reportRow`; the reduction with each report's key. */
export function layoutPass(model: ModelInfo, batch: readonly ForwardRequest[]): PassLayout {
  const rowOffset = new Int32Array(batch.length);
  const reportOffset = new Int32Array(batch.length);
  let rows = 0;
  let reports = 0;
  batch.forEach((r, i) => {
    rowOffset[i] = rows;
    reportOffset[i] = reports;
    rows += r.end - r.start;
    reports += r.positions.length;
  });
  const reportRow = new Int32Array(reports);
  const position = new Int32Array(reports);
  const temperature = new Float64Array(reports);
  const seed = new Uint32Array(reports);
  const forwardIndex = new Uint32Array(reports);
  batch.forEach((r, i) => {
    const o = reportOffset[i];
    r.positions.forEach((p, j) => {
      reportRow[o + j] = rowOffset[i] + predictionRow(model, r.start, p);
      position[o + j] = p;
      temperature[o + j] = r.sampling?.temperature ?? 0;
      seed[o + j] = r.sampling?.seed ?? 0;
      forwardIndex[o + j] = r.sampling?.forwardIndex ?? 0;
    });
  });
  return { rows, rowOffset, reports, reportOffset, reportRow, position, temperature, seed, forwardIndex };
}

/**
 * The rows the last layer must finish (DESIGN §7): after its K/V (which every row writes to the
 * cache and every later query reads), only rows whose hidden state feeds a report need the query, attention, output
 * projection, FFN and final norm. `rows` (m,) ascending distinct concatenated rows, `index` (reports,) each report's
 * place in `rows`. m = layout.rows when every row is reported.
 */
export function reportedRows(layout: PassLayout): { rows: Int32Array; index: Int32Array } {
  const seen = new Int32Array(layout.rows).fill(-1); // (rows,) compact index of a reported row, else -1
  for (let r = 0; r < layout.reports; r++) seen[layout.reportRow[r]] = 0;
  let m = 0;
  for (let i = 0; i < layout.rows; i++) if (seen[i] === 0) seen[i] = m++;
  const rows = new Int32Array(m);
  for (let i = 0; i < layout.rows; i++) if (seen[i] >= 0) rows[seen[i]] = i;
  const index = new Int32Array(layout.reports);
  for (let r = 0; r < layout.reports; r++) index[r] = seen[layout.reportRow[r]];
  return { rows, index };
}

/** Per-report reductions of a pass, each (reports,): what an engine's LM-head reduction produces. */
export interface PassReductions {
  token: ArrayLike<number>;
  prob: ArrayLike<number>;
  top1: ArrayLike<number>;
  top2: ArrayLike<number>;
  entropy: ArrayLike<number>;
  /** (reports, vocab) f32 logits of every report, when any request wants them. */
  logits?: Float32Array;
}

/** Empty per-report arrays for an engine's reduction to fill: token (n,) i32, prob/top1/top2/entropy (n,) f64. */
export function newPassReductions(n: number): { token: Int32Array; prob: Float64Array; top1: Float64Array; top2: Float64Array; entropy: Float64Array } {
  return { token: new Int32Array(n), prob: new Float64Array(n), top1: new Float64Array(n), top2: new Float64Array(n), entropy: new Float64Array(n) };
}

/**
 * Splits a pass's reductions back into one ForwardResult per request, with only the reports each asked for;
 * `attention[i]`: request i's attention report, when it asked for one.
 */
export function assembleResults(
  batch: readonly ForwardRequest[], layout: PassLayout, red: PassReductions, vocab: number, attention?: readonly (AttentionReport | undefined)[],
): ForwardResult[] {
  return batch.map((req, i) => {
    const o = layout.reportOffset[i];
    const n = req.positions.length;
    const slice = (a: ArrayLike<number>) => Float64Array.from({ length: n }, (_, j) => a[o + j]);
    const out: ForwardResult = { tokens: Int32Array.from({ length: n }, (_, j) => red.token[o + j]), probs: slice(red.prob) };
    if (req.want?.top2) { out.top1Probs = slice(red.top1); out.top2Probs = slice(red.top2); }
    if (req.want?.entropy) out.entropy = slice(red.entropy);
    if (req.want?.logits) {
      if (!red.logits) throw new Error('assembleResults: logits were wanted but the engine kept none');
      out.logits = red.logits.slice(o * vocab, (o + n) * vocab);
    }
    if (req.attention) {
      const a = attention?.[i];
      if (!a) throw new Error('assembleResults: an attention report was wanted but the engine made none');
      out.attention = a;
    }
    return out;
  });
}

/** f32 → bf16 bits, round to nearest even; NaN stays NaN. */
export function f32ToBF16(src: Float32Array): Uint16Array {
  const u = new Uint32Array(src.buffer, src.byteOffset, src.length);
  const out = new Uint16Array(src.length); // (length,) bf16 bits
  for (let i = 0; i < u.length; i++) {
    const b = u[i];
    out[i] = (b & 0x7fffffff) > 0x7f800000 ? (b >>> 16) | 0x40 : ((b + 0x7fff + ((b >>> 16) & 1)) >>> 16) & 0xffff;
  }
  return out;
}

/**
 * A model that needs a capability the engine lacks (block-causal attention): thrown at load, before any weight is
 * read, so that callers (the engine fallback of the CLI, the conformance harness) can tell "not supported" apart
 * from a broken model directory.
 */
export class ModelNotSupportedError extends Error {
  override readonly name = 'ModelNotSupportedError';
}

/** Refuses a model whose attention the engine cannot run (block-causal models on an engine without it). */
export function checkModelSupported(engineName: string, model: ModelInfo, caps: EngineCapabilities): void {
  if (model.blockSize !== undefined && !caps.blockCausal) {
    throw new ModelNotSupportedError(`${engineName} engine: ${model.architecture} models need block-causal attention, which this engine does not implement yet`);
  }
}
