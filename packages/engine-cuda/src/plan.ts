/**
 * Weight packing plan: which checkpoint tensor goes to which device slot, in which dtype, and how many
 * bytes the whole model plus its working set needs on the device. Pure TS, testable without a GPU.
 */
import type { ModelDescription, ModelTensorNames } from '@fast-dllm/model';
import { f32ToBf16, isMoeLayer } from '@fast-dllm/model';

/** Per-layer roles in slot order; must match `enum Role` in native/addon.cc (oBias: LLaDA2's use_bias). */
export const LAYER_ROLES = [
  'attnNorm', 'q', 'k', 'v', 'qBias', 'kBias', 'vBias', 'qNorm', 'kNorm', 'o', 'ffnNorm', 'gate', 'up', 'down', 'oBias',
] as const;
export type LayerRole = (typeof LAYER_ROLES)[number];
const MATRIX_ROLES = new Set<LayerRole>(['q', 'k', 'v', 'o', 'gate', 'up', 'down']);

/** Slots 0 embed, 1 final norm, 2 LM head (left empty when tied), then LAYER_ROLES.length per layer. */
export function slotOf(layer: number, role: LayerRole): number {
  return 3 + layer * LAYER_ROLES.length + LAYER_ROLES.indexOf(role);
}

/**
 * Mixture-layer roles (DESIGN §13) in slot order, then gate, up, down of each expert; must match `enum MoeRole` in
 * native/addon.cc. The router stays f32 in bf16 mode (its top-k is a discrete choice); the expert bias is not
 * uploaded: routing runs on the host.
 */
export const MOE_ROLES = ['router', 'sharedGate', 'sharedUp', 'sharedDown'] as const;
export type MoeRole = (typeof MOE_ROLES)[number];

/** Slots per layer after the dense ones in a model with `numExperts` experts: MOE_ROLES, then 3 per expert. */
export function moeStride(numExperts: number): number {
  return numExperts > 0 ? MOE_ROLES.length + 3 * numExperts : 0;
}

/**
 * Slot of a mixture role of layer `layer` (`role` a MoeRole, or [expert, 'gate' | 'up' | 'down']) in a model of
 * `numLayers` layers and `numExperts` experts: after every layer's dense slots, moeStride per layer.
 */
export function moeSlotOf(numLayers: number, numExperts: number, layer: number, role: MoeRole | [number, 'gate' | 'up' | 'down']): number {
  const base = 3 + numLayers * LAYER_ROLES.length + layer * moeStride(numExperts);
  return base + (typeof role === 'string' ? MOE_ROLES.indexOf(role) : MOE_ROLES.length + 3 * role[0] + ['gate', 'up', 'down'].indexOf(role[1]));
}

export interface PlannedTensor {
  slot: number;
  name: string;
  /** Element count. */
  elements: number;
  /** Device dtype: bf16 for matrices in bf16 mode, f32 for everything else. */
  deviceDType: 'bf16' | 'f32';
  bytes: number;
}

export interface WeightPlan {
  tensors: PlannedTensor[];
  weightBytes: number;
  /** K/V cache dtype on the device. */
  kvDType: 'bf16' | 'f32';
  /** K/V cache of one sequence of `canvasLength` positions in kvDType, both halves, all layers. */
  cacheBytes: number;
  /** Pass scratch reserved for passes of `passRows` rows over canvases of up to `canvasLength` (passScratchBytes). */
  scratchBytes: number;
  passRows: number;
  totalBytes: number;
}

/**
 * The k splits of the bf16 GEMM for an (n, k) weight: native/kernels.cu gemm_bf16_splits, copied here to size the
 * scratch (a kernel test checks the two agree). From the weight's shape only: batch invariance, DESIGN §7.
 */
export function gemmSplits(n: number, k: number): number {
  const want = Math.ceil(256 / Math.ceil(n / 128)); // about 256 blocks for a one-row-tile pass
  const most = Math.floor(k / 256); // at least 4 k steps of 64 per split
  return want < most ? want : Math.max(most, 1);
}

/** Keys per attention split for L keys: native/kernels.cu attention_chunk (same check). */
export function attentionChunk(L: number): number {
  return Math.max(128, Math.ceil(Math.ceil(L / 32) / 32) * 32);
}

/** The GEMM's parallel schedule is only chosen while its partial sums stay within this (native gemm_bf16_parallel). */
const GEMM_PARTIAL_BYTES = 32 * 2 ** 20;
/** Multiprocessors assumed when the device's count is not known (H100/H200): more SMs bound more partial sums. */
export const DEFAULT_SMS = 132;

/** Rows of pass scratch an engine reserves unless a sequence needs more: 64 DualCache steps of 32 rows. */
export const PASS_ROWS = 2048;
/** Bytes of logits one LM-head GEMM may produce: reported rows are reduced in chunks of this many bytes. */
const LOGITS_CHUNK_BYTES = 512 * 2 ** 20;

/** Reported rows per LM-head GEMM (native Config.reportChunk): the (chunk, V) f32 logits stay under 512 MiB. */
export function reportChunk(vocabSize: number): number {
  return Math.max(1, Math.min(PASS_ROWS, Math.floor(LOGITS_CHUNK_BYTES / (4 * vocabSize))));
}

/** Bytes of one sequence's K/V cache block (K then V, every layer) of `maxLength` positions in `kvDType`. */
export function cacheBlockBytes(desc: Pick<ModelDescription, 'numLayers' | 'numKvHeads' | 'headDim'>, maxLength: number, kvDType: 'bf16' | 'f32'): number {
  return 2 * desc.numLayers * maxLength * desc.numKvHeads * desc.headDim * (kvDType === 'bf16' ? 2 : 4);
}

/**
 * Device scratch of a pass of `rows` computed rows over canvases of at most `keys` positions: the buffers of
 * native/addon.cc RunForward, each at its largest. Per row: token and sequence index; f32 residual (d), fused qkv
 * (qd + 2 kvd), rotated q (qd), gate|up (2 ff); f32 weights only: normed input (d), attention output (qd), swiglu
 * (ff); bf16 weights only: the bf16 GEMM input (widest of d, qd, ff); a prefix step's fresh K/V (2 kvd) in the cache
 * dtype. With mixture layers (ff the widest FFN): the f32 normed input in bf16 mode too (d), router logits (E), the
 * rows routed to the experts with their weights (2 topK), an expert's gathered input, output and the mixture's sum
 * (3 d), and in bf16 mode the gathered input's bf16 copy (max(d, ff)). Reports (at most rows + one per sequence, bounded by 2 rows): keys and results (60 bytes each); per LM-head
 * chunk: gathered and normed rows (2 d) and logits (V). Split sums: the GEMM's stay under GEMM_PARTIAL_BYTES;
 * attention's are (splits, rows, H, hd + 2) for the sequences that run splits in parallel, which attention_plan only
 * does while the pass's query tiles times H stay under 2 sms (so fewer than 64 sms / H rows).
 */
export function passScratchBytes(
  desc: ModelDescription, rows: number, keys: number, weightDType: 'bf16' | 'f32', kvDType: 'bf16' | 'f32', sms = DEFAULT_SMS,
): number {
  const { hiddenSize: d, vocabSize: V, headDim: hd, numHeads: H } = desc;
  const ff = Math.max(desc.intermediateSize, desc.moe?.expertSize ?? 0, desc.moe?.sharedExpertSize ?? 0); // widest FFN
  const qd = H * hd;
  const kvd = desc.numKvHeads * hd;
  const bf16 = weightDType === 'bf16';
  const chunk = reportChunk(V);
  const moe = desc.moe;
  const moeRow = moe ? (bf16 ? 4 * d + 2 * Math.max(d, ff) : 0) + 4 * moe.numExperts + 8 * moe.topK + 12 * d : 0;
  const perRow = 8 + 4 * (d + qd + 2 * kvd + qd + 2 * ff) + (bf16 ? 0 : 4 * (d + qd + ff)) + 2 * kvd * (kvDType === 'bf16' ? 2 : 4) + moeRow;
  const a16 = bf16 ? Math.max(rows, chunk) * Math.max(d, qd, ff) * 2 : 0;
  const reports = 2 * rows * 60 + Math.min(chunk, 2 * rows) * (2 * d + V) * 4;
  const splits = Math.min(32, Math.ceil(keys / 128)); // at least attention_chunk's count for every canvas up to keys
  const parallelRows = Math.min(rows, Math.ceil((32 * 2 * sms) / H)); // 32 query rows per tile, under 2 sms tiles x H
  const attentionPartial = splits > 1 ? splits * parallelRows * H * (hd + 2) * 4 : 0;
  return rows * perRow + a16 + reports + (bf16 ? GEMM_PARTIAL_BYTES : 0) + attentionPartial + 64 * 256;
}

const numel = (shape: number[]) => shape.reduce((a, b) => a * b, 1);

/**
 * Plans the upload of a model in `weightDType` ('bf16' or 'f32') for canvases up to `canvasLength`, with the K/V
 * cache in `kvDType` (default: bf16 with bf16 weights, f32 with f32 weights), and the pass scratch for
 * max(PASS_ROWS, canvasLength) rows (a full forward of one such canvas, or 64 DualCache steps). `shapes` gives each
 * name's shape: a map, or a lookup that also knows row slices of a fused tensor (LLaDA2's q, k, v: archive.info).
 */
export function planWeights(
  desc: ModelDescription, names: ModelTensorNames, shapes: Map<string, number[]> | ((name: string) => number[] | undefined),
  weightDType: 'bf16' | 'f32', canvasLength: number, kvDType: 'bf16' | 'f32' = weightDType, sms = DEFAULT_SMS,
): WeightPlan {
  const tensors: PlannedTensor[] = [];
  const shapeOf = typeof shapes === 'function' ? shapes : (name: string) => shapes.get(name);
  const add = (slot: number, name: string, matrix: boolean) => {
    const shape = shapeOf(name);
    if (!shape) throw new Error(`cuda engine: tensor ${name} is not in the checkpoint; the model directory is incomplete`);
    const deviceDType = matrix && weightDType === 'bf16' ? 'bf16' : 'f32';
    const elements = numel(shape);
    tensors.push({ slot, name, elements, deviceDType, bytes: elements * (deviceDType === 'bf16' ? 2 : 4) });
  };
  add(0, names.embed, true);
  add(1, names.finalNorm, false);
  if (!desc.tiedEmbeddings && names.lmHead !== names.embed) add(2, names.lmHead, true);
  const L = names.layers.length;
  const E = desc.moe?.numExperts ?? 0;
  names.layers.forEach((layer, l) => {
    for (const role of LAYER_ROLES) {
      const name = (layer as Partial<Record<LayerRole, string>>)[role];
      if (name === undefined) continue; // biases only exist for Dream, Qwen2 and LLaDA2, q/k norms for Qwen3 and LLaDA-MoE; FFN roles for dense layers
      add(slotOf(l, role), name, MATRIX_ROLES.has(role));
    }
    if (!isMoeLayer(layer)) return;
    add(moeSlotOf(L, E, l, 'router'), layer.router, false);
    if (layer.shared) {
      add(moeSlotOf(L, E, l, 'sharedGate'), layer.shared.gate, true);
      add(moeSlotOf(L, E, l, 'sharedUp'), layer.shared.up, true);
      add(moeSlotOf(L, E, l, 'sharedDown'), layer.shared.down, true);
    }
    layer.experts.forEach((e, i) => {
      for (const part of ['gate', 'up', 'down'] as const) add(moeSlotOf(L, E, l, [i, part]), e[part], true);
    });
  });
  const weightBytes = tensors.reduce((a, t) => a + t.bytes, 0);
  const cacheBytes = cacheBlockBytes(desc, canvasLength, kvDType);
  const passRows = Math.max(PASS_ROWS, canvasLength);
  const scratchBytes = passScratchBytes(desc, passRows, canvasLength, weightDType, kvDType, sms);
  return { tensors, weightBytes, kvDType, cacheBytes, scratchBytes, passRows, totalBytes: weightBytes + cacheBytes + scratchBytes };
}

const GiB = 1024 ** 3;
const fmt = (b: number) => `${(b / GiB).toFixed(2)} GiB`;

/** Throws a clear "does not fit" error when the plan needs more than `freeBytes` of device memory. */
export function checkFits(plan: WeightPlan, freeBytes: number, deviceName = 'the GPU'): void {
  if (plan.totalBytes > freeBytes) {
    throw new Error(
      `cuda engine: model does not fit on ${deviceName}: needs ${fmt(plan.totalBytes)} (weights ${fmt(plan.weightBytes)}, ` +
        `K/V cache ${fmt(plan.cacheBytes)} in ${plan.kvDType}, scratch ${fmt(plan.scratchBytes)}) but only ${fmt(freeBytes)} is free; ` +
        `use weightDType 'bf16' (and kvDType 'bf16'), a shorter canvas, or a larger GPU`,
    );
  }
}

/** f32 → bf16 bits (round to nearest even), for matrices uploaded in bf16 mode. */
export function toBf16(x: Float32Array): Uint16Array {
  const out = new Uint16Array(x.length);
  for (let i = 0; i < x.length; i++) out[i] = f32ToBf16(x[i]);
  return out;
}
