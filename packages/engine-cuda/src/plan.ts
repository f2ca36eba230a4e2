/**
 * Weight packing plan: which checkpoint tensor goes to which device slot, in which dtype, and how many
 * bytes the whole model plus its working set needs on the device. Pure TS, testable without a GPU.
 */
import type { ModelDescription, ModelTensorNames } from '@fast-dllm/model';
import { f32ToBf16 } from '@fast-dllm/model';

/** Per-layer roles in slot order; must match `enum Role` in native/addon.cc. */
export const LAYER_ROLES = ['attnNorm', 'q', 'k', 'v', 'qBias', 'kBias', 'vBias', 'o', 'ffnNorm', 'gate', 'up', 'down'] as const;
export type LayerRole = (typeof LAYER_ROLES)[number];
const MATRIX_ROLES = new Set<LayerRole>(['q', 'k', 'v', 'o', 'gate', 'up', 'down']);

/** Slots 0 embed, 1 final norm, 2 LM head (left empty when tied), then 12 per layer. */
export function slotOf(layer: number, role: LayerRole): number {
  return 3 + layer * LAYER_ROLES.length + LAYER_ROLES.indexOf(role);
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
  /** K/V cache for a canvas of `canvasLength` in kvDType, both halves, all layers. */
  cacheBytes: number;
  /**
   * Largest per-forward scratch (activations, their bf16 copy, logits of every position, a prefix step's fresh K/V,
   * the GEMM and attention split partial sums).
   */
  scratchBytes: number;
  totalBytes: number;
}

/**
 * The k splits of the bf16 GEMM for an (n, k) weight: native/kernels.cu gemm_bf16_splits, copied here to size the
 * scratch (a kernel test checks the two agree). From the weight's shape only: batch invariance, SPEC §7.
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
/** Attention runs key splits in parallel only for sequences of at most this many query rows (attention_plan). */
const ATTENTION_PARALLEL_ROWS = 64;

const numel = (shape: number[]) => shape.reduce((a, b) => a * b, 1);

/**
 * Plans the upload of a model in `weightDType` ('bf16' or 'f32') for canvases up to `canvasLength`, with the K/V
 * cache in `kvDType` (default: bf16 with bf16 weights, f32 with f32 weights).
 */
export function planWeights(
  desc: ModelDescription, names: ModelTensorNames, shapes: Map<string, number[]>, weightDType: 'bf16' | 'f32', canvasLength: number,
  kvDType: 'bf16' | 'f32' = weightDType,
): WeightPlan {
  const tensors: PlannedTensor[] = [];
  const add = (slot: number, name: string, matrix: boolean) => {
    const shape = shapes.get(name);
    if (!shape) throw new Error(`cuda engine: tensor ${name} is not in the checkpoint; the model directory is incomplete`);
    const deviceDType = matrix && weightDType === 'bf16' ? 'bf16' : 'f32';
    const elements = numel(shape);
    tensors.push({ slot, name, elements, deviceDType, bytes: elements * (deviceDType === 'bf16' ? 2 : 4) });
  };
  add(0, names.embed, true);
  add(1, names.finalNorm, false);
  if (!desc.tiedEmbeddings && names.lmHead !== names.embed) add(2, names.lmHead, true);
  names.layers.forEach((layer, l) => {
    for (const role of LAYER_ROLES) {
      const name = layer[role];
      if (name === undefined) continue; // biases only exist for Dream
      add(slotOf(l, role), name, MATRIX_ROLES.has(role));
    }
  });
  const weightBytes = tensors.reduce((a, t) => a + t.bytes, 0);
  const L = canvasLength;
  const { hiddenSize: d, intermediateSize: ff, vocabSize: V, headDim: hd, numHeads: H } = desc;
  const kvd = desc.numKvHeads * hd;
  const kvBytes = kvDType === 'bf16' ? 2 : 4;
  const cacheBytes = 2 * desc.numLayers * L * kvd * kvBytes;
  const qd = H * hd;
  // A full forward of L rows, every row reported (native/addon.cc RunForward): f32 x, h, final rows (L, d); fused
  // qkv (L, qd + 2 kvd); q (L, qd); gate|up (L, 2 ff); logits (L, V); f32 weights only: attention output (L, qd)
  // and silu(gate) * up (L, ff). bf16 GEMM input (L, max(d, qd, ff)); a prefix step's fresh K/V (L, kvd) x 2 in the
  // cache dtype. Partial sums: the GEMM's stay under GEMM_PARTIAL_BYTES; attention's are (splits, rows, H, hd + 2).
  const widest = Math.max(d, qd, ff);
  const f32Floats = L * (3 * d + qd + 2 * kvd + qd + 2 * ff + V + (weightDType === 'f32' ? qd + ff : 0));
  const attentionPartial = Math.ceil(L / attentionChunk(L)) * Math.min(L, ATTENTION_PARALLEL_ROWS) * H * (hd + 2) * 4;
  const scratchBytes = f32Floats * 4 + L * widest * 2 + 2 * L * kvd * kvBytes + GEMM_PARTIAL_BYTES + attentionPartial;
  return { tensors, weightBytes, kvDType, cacheBytes, scratchBytes, totalBytes: weightBytes + cacheBytes + scratchBytes };
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
