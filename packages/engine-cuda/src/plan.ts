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
  /** K/V cache (f32) for a canvas of `canvasLength`, both halves, all layers. */
  cacheBytes: number;
  /** Largest per-forward scratch (activations, their bf16 copy, logits of every position, split-k partial sums). */
  scratchBytes: number;
  totalBytes: number;
}

const numel = (shape: number[]) => shape.reduce((a, b) => a * b, 1);

/** Plans the upload of a model in `weightDType` ('bf16' or 'f32') for canvases up to `canvasLength`. */
export function planWeights(
  desc: ModelDescription, names: ModelTensorNames, shapes: Map<string, number[]>, weightDType: 'bf16' | 'f32', canvasLength: number,
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
  const kvd = desc.numKvHeads * desc.headDim;
  const cacheBytes = 2 * desc.numLayers * L * kvd * 4;
  const qd = desc.numHeads * desc.headDim;
  // f32: x, h (L, d); q, att (L, qd); k, v (L, kvd); gate, up (L, ff); final rows (L, d); logits (L, V);
  // bf16 GEMM input (L, max(d, qd, ff)) = half as many floats. Split-k partial sums: splits * rows * cols stays near
  // two 32 x 128 tiles per SM (native/kernels.cu gemm_bf16_splits), under 16 MiB on any current GPU.
  const widest = Math.max(desc.hiddenSize, qd, desc.intermediateSize);
  const scratchFloats = L * (3 * desc.hiddenSize + 2 * qd + 2 * kvd + 2 * desc.intermediateSize + desc.vocabSize + widest / 2);
  const scratchBytes = scratchFloats * 4 + 16 * 2 ** 20;
  return { tensors, weightBytes, cacheBytes, scratchBytes, totalBytes: weightBytes + cacheBytes + scratchBytes };
}

const GiB = 1024 ** 3;
const fmt = (b: number) => `${(b / GiB).toFixed(2)} GiB`;

/** Throws a clear "does not fit" error when the plan needs more than `freeBytes` of device memory. */
export function checkFits(plan: WeightPlan, freeBytes: number, deviceName = 'the GPU'): void {
  if (plan.totalBytes > freeBytes) {
    throw new Error(
      `cuda engine: model does not fit on ${deviceName}: needs ${fmt(plan.totalBytes)} (weights ${fmt(plan.weightBytes)}, ` +
        `K/V cache ${fmt(plan.cacheBytes)}, scratch ${fmt(plan.scratchBytes)}) but only ${fmt(freeBytes)} is free; ` +
        `use weightDType 'bf16', a shorter canvas, or a larger GPU`,
    );
  }
}

/** f32 → bf16 bits (round to nearest even), for matrices uploaded in bf16 mode. */
export function toBf16(x: Float32Array): Uint16Array {
  const out = new Uint16Array(x.length);
  for (let i = 0; i < x.length; i++) out[i] = f32ToBf16(x[i]);
  return out;
}
