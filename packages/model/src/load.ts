import { ModelFormatError } from './errors.js';
import { readModelConfig } from './config.js';
import { SafetensorsArchive, parseRowSlice, rowSliceName, storedTensorName } from './safetensors.js';
import { isMoeLayer, type DenseLayerTensorNames, type LayerTensorNames, type ModelDescription, type ModelTensorNames, type SwigluTensorNames } from './types.js';

/** Canonical roles → checkpoint tensor names for a description (DESIGN §1 naming; Dream, Fast-dLLM v2 and SDAR share Qwen's). */
export function tensorNames(desc: ModelDescription): ModelTensorNames {
  const layers: LayerTensorNames[] = [];
  if (desc.architecture === 'llada') {
    const p = 'model.transformer';
    for (let i = 0; i < desc.numLayers; i++) {
      const b = `${p}.blocks.${i}`;
      const l: LayerTensorNames = {
        attnNorm: `${b}.attn_norm.weight`,
        q: `${b}.q_proj.weight`,
        k: `${b}.k_proj.weight`,
        v: `${b}.v_proj.weight`,
        o: `${b}.attn_out.weight`,
        ffnNorm: `${b}.ff_norm.weight`,
        gate: `${b}.ff_proj.weight`,
        up: `${b}.up_proj.weight`,
        down: `${b}.ff_out.weight`,
      };
      if (desc.qkvBias) Object.assign(l, { qBias: `${b}.q_proj.bias`, kBias: `${b}.k_proj.bias`, vBias: `${b}.v_proj.bias` });
      layers.push(l);
    }
    const embed = `${p}.wte.weight`;
    return { embed, layers, finalNorm: `${p}.ln_f.weight`, lmHead: desc.tiedEmbeddings ? embed : `${p}.ff_out.weight` };
  }
  const swiglu = (p: string): SwigluTensorNames => ({ gate: `${p}.gate_proj.weight`, up: `${p}.up_proj.weight`, down: `${p}.down_proj.weight` });
  if (desc.architecture === 'llada2_moe') return llada2TensorNames(desc, swiglu);
  for (let i = 0; i < desc.numLayers; i++) {
    const b = `model.layers.${i}`;
    const attention = {
      attnNorm: `${b}.input_layernorm.weight`,
      q: `${b}.self_attn.q_proj.weight`,
      k: `${b}.self_attn.k_proj.weight`,
      v: `${b}.self_attn.v_proj.weight`,
      o: `${b}.self_attn.o_proj.weight`,
      ffnNorm: `${b}.post_attention_layernorm.weight`,
    };
    const moe = desc.moe;
    // LLaDA-MoE (DESIGN §13): mlp.gate is the router, mlp.experts.e the routed experts, shared_expert beside mlp.
    const l: LayerTensorNames = moe?.moeLayers[i]
      ? {
        ...attention, router: `${b}.mlp.gate.weight`,
        experts: Array.from({ length: moe.numExperts }, (_, e) => swiglu(`${b}.mlp.experts.${e}`)),
        ...(moe.sharedExpertSize !== undefined ? { shared: swiglu(`${b}.shared_expert`) } : {}),
        ...(moe.expertBias ? { expertBias: `${b}.mlp.expert_bias` } : {}),
      }
      : { ...attention, ...swiglu(`${b}.mlp`) };
    if (desc.qkvBias)
      Object.assign(l, { qBias: `${b}.self_attn.q_proj.bias`, kBias: `${b}.self_attn.k_proj.bias`, vBias: `${b}.self_attn.v_proj.bias` });
    if (desc.qkNorm) Object.assign(l, { qNorm: `${b}.self_attn.q_norm.weight`, kNorm: `${b}.self_attn.k_norm.weight` });
    layers.push(l);
  }
  const embed = 'model.embed_tokens.weight';
  return { embed, layers, finalNorm: 'model.norm.weight', lmHead: desc.tiedEmbeddings ? embed : 'lm_head.weight' };
}

/**
 * LLaDA2 (DESIGN §13.1): one fused query_key_value projection whose rows are q (H*hd), k (KV*hd), v (KV*hd), named
 * here as row slices; attention.dense is the output projection; the first first_k_dense_replace layers are dense
 * SwiGLUs, the others mixtures (mlp.gate the router, mlp.gate.expert_bias, mlp.shared_experts).
 */
function llada2TensorNames(desc: ModelDescription, swiglu: (p: string) => SwigluTensorNames): ModelTensorNames {
  const qd = desc.numHeads * desc.headDim;
  const kvd = desc.numKvHeads * desc.headDim;
  const parts = (t: string) => ({ q: rowSliceName(t, 0, qd), k: rowSliceName(t, qd, qd + kvd), v: rowSliceName(t, qd + kvd, qd + 2 * kvd) });
  const layers: LayerTensorNames[] = [];
  const moe = desc.moe;
  for (let i = 0; i < desc.numLayers; i++) {
    const b = `model.layers.${i}`;
    const w = parts(`${b}.attention.query_key_value.weight`);
    const attention = {
      attnNorm: `${b}.input_layernorm.weight`, ...w, o: `${b}.attention.dense.weight`, ffnNorm: `${b}.post_attention_layernorm.weight`,
      ...(desc.qkvBias ? (({ q, k, v }) => ({ qBias: q, kBias: k, vBias: v }))(parts(`${b}.attention.query_key_value.bias`)) : {}),
      ...(desc.qkNorm ? { qNorm: `${b}.attention.query_layernorm.weight`, kNorm: `${b}.attention.key_layernorm.weight` } : {}),
      ...(desc.outputBias ? { oBias: `${b}.attention.dense.bias` } : {}),
    };
    layers.push(moe?.moeLayers[i]
      ? {
        ...attention, router: `${b}.mlp.gate.weight`,
        experts: Array.from({ length: moe.numExperts }, (_, e) => swiglu(`${b}.mlp.experts.${e}`)),
        ...(moe.sharedExpertSize !== undefined ? { shared: swiglu(`${b}.mlp.shared_experts`) } : {}),
        ...(moe.expertBias ? { expertBias: `${b}.mlp.gate.expert_bias` } : {}),
      }
      : { ...attention, ...swiglu(`${b}.mlp`) });
  }
  const embed = 'model.word_embeddings.weight';
  return { embed, layers, finalNorm: 'model.norm.weight', lmHead: desc.tiedEmbeddings ? embed : 'lm_head.weight' };
}

/**
 * Every tensor the description expects, with its shape (row-major; linear weights are [out, in]). Row slices of a
 * fused tensor (`rowSliceName`) are expected as that tensor, of all their rows.
 */
export function expectedShapes(desc: ModelDescription, names = tensorNames(desc)): Map<string, number[]> {
  const d = desc.hiddenSize;
  const qd = desc.numHeads * desc.headDim;
  const kvd = desc.numKvHeads * desc.headDim;
  const ff = desc.intermediateSize;
  const m = new Map<string, number[]>();
  m.set(names.embed, [desc.vocabSize, d]);
  m.set(names.finalNorm, [d]);
  m.set(names.lmHead, [desc.vocabSize, d]);
  for (const l of names.layers) {
    m.set(l.attnNorm, [d]);
    m.set(l.q, [qd, d]);
    m.set(l.k, [kvd, d]);
    m.set(l.v, [kvd, d]);
    if (l.qBias) m.set(l.qBias, [qd]);
    if (l.kBias) m.set(l.kBias, [kvd]);
    if (l.vBias) m.set(l.vBias, [kvd]);
    if (l.qNorm) m.set(l.qNorm, [desc.headDim]);
    if (l.kNorm) m.set(l.kNorm, [desc.headDim]);
    m.set(l.o, [d, qd]);
    if (l.oBias) m.set(l.oBias, [d]);
    m.set(l.ffnNorm, [d]);
    const swiglu = (s: SwigluTensorNames, width: number) => {
      m.set(s.gate, [width, d]);
      m.set(s.up, [width, d]);
      m.set(s.down, [d, width]);
    };
    if (isMoeLayer(l)) {
      const moe = desc.moe!;
      m.set(l.router, [moe.numExperts, d]);
      for (const e of l.experts) swiglu(e, moe.expertSize);
      if (l.shared) swiglu(l.shared, moe.sharedExpertSize!);
      if (l.expertBias) m.set(l.expertBias, [moe.numExperts]);
    } else {
      swiglu(l, ff);
    }
  }
  // Slices are read from their stored tensor: expect that, with the rows of all its slices (they tile it by construction).
  for (const [name, shape] of [...m]) {
    const slice = parseRowSlice(name);
    if (!slice) continue;
    m.delete(name);
    const rows = Math.max(slice.end, m.get(slice.base)?.[0] ?? 0);
    m.set(slice.base, [rows, ...shape.slice(1)]);
  }
  return m;
}

/**
 * The layers of a model whose FFNs are all dense, for engines without mixture-of-experts layers; `refuse` builds
 * the error they throw for a MoE model (the scheduler's ModelNotSupportedError, which this package cannot import).
 */
export function denseLayerNames(names: ModelTensorNames, refuse: () => Error): DenseLayerTensorNames[] {
  return names.layers.map((l) => {
    if (isMoeLayer(l)) throw refuse();
    return l;
  });
}

export interface LoadedModel {
  dir: string;
  description: ModelDescription;
  archive: SafetensorsArchive;
  names: ModelTensorNames;
}

/** Tensors a checkpoint may carry that the forward pass does not use (precomputed RoPE tables). */
const IGNORABLE = /(rotary_emb\.inv_freq|\.rotary_emb\.)/;

/**
 * Checks an archive against a description: lists every missing tensor, unexpected shape and extra tensor by name
 * in one error, so a broken export is diagnosed in one run.
 */
export function checkTensors(desc: ModelDescription, archive: SafetensorsArchive, names = tensorNames(desc), file?: string): void {
  const expected = expectedShapes(desc, names);
  const missing: string[] = [];
  const wrong: string[] = [];
  for (const [name, shape] of expected) {
    const t = archive.tensors.get(name);
    if (!t) missing.push(name);
    else if (t.shape.join(',') !== shape.join(',')) wrong.push(`${name} has shape [${t.shape.join(', ')}], expected [${shape.join(', ')}]`);
  }
  const extra = [...archive.tensors.keys()].filter((n) => !expected.has(n) && !IGNORABLE.test(n));
  const parts: string[] = [];
  const list = (xs: string[]) => xs.slice(0, 20).join(', ') + (xs.length > 20 ? ` and ${xs.length - 20} more` : '');
  if (missing.length) parts.push(`missing tensor(s): ${list(missing)}`);
  if (wrong.length) parts.push(`unexpected shape(s): ${list(wrong)}`);
  if (extra.length) parts.push(`extra tensor(s) the ${desc.architecture} config does not use: ${list(extra)}`);
  if (parts.length)
    throw new ModelFormatError(`weights do not match config.json: ${parts.join('; ')}. Check that config.json belongs to these weights`, { file });
}

/**
 * The config's layer count against the weights, before anything per layer is built: every layer has its own
 * tensors, so a config that asks for more than the checkpoint holds (n_layers: 1e6 on a 4-layer file) is refused
 * at once instead of after building millions of names.
 */
export function checkLayerCount(desc: ModelDescription, archive: { tensors: { size: number } }, file: string): void {
  if (!Number.isSafeInteger(desc.numLayers) || desc.numLayers < 1) throw new ModelFormatError(`config.json has ${desc.numLayers} layers; it needs a positive whole number`, { file });
  // Roles of one layer, a fused tensor's slices counted once (an expert list counts one: this is a lower bound).
  const roles = Object.values(tensorNames({ ...desc, numLayers: 1 }).layers[0]);
  const perLayer = new Set(roles.map((r) => (typeof r === 'string' ? storedTensorName(r) : r))).size;
  if (perLayer * desc.numLayers > archive.tensors.size) {
    throw new ModelFormatError(`config.json has ${desc.numLayers} layers (${perLayer} tensors each), but the weights hold only ${archive.tensors.size} tensors; check that config.json belongs to these weights`, { file });
  }
}

/** Reads config, opens the weights, and checks every expected tensor (names + shapes) before returning. */
export async function openModel(dir: string): Promise<LoadedModel> {
  const description = await readModelConfig(dir);
  const archive = await SafetensorsArchive.open(dir);
  let names: ModelTensorNames;
  try {
    checkLayerCount(description, archive, dir);
    names = tensorNames(description);
    checkTensors(description, archive, names, dir);
  } catch (e) {
    await archive.close();
    throw e;
  }
  return { dir, description, archive, names };
}

export interface ModelSummary {
  parameters: number;
  /** Parameter count per stored dtype. */
  dtypes: Partial<Record<string, number>>;
  /** Sum of tensor bytes in the safetensors files (headers excluded). */
  bytesOnDisk: number;
  /** Weights held as f32 / as bf16 (tied LM head counted once). */
  weightBytesF32: number;
  weightBytesBf16: number;
  /** K and V for every layer and position of the canvas, at f32 and at bf16/f16. */
  kvCacheBytesF32: number;
  kvCacheBytes16: number;
  canvasLength: number;
}

/** Sizes for `fast-dllm inspect` and for engines deciding whether a model fits. */
export function modelSummary(loaded: LoadedModel, canvasLength = loaded.description.maxPositions): ModelSummary {
  const dtypes: Record<string, number> = {};
  let parameters = 0;
  let bytesOnDisk = 0;
  for (const t of loaded.archive.tensors.values()) {
    const n = t.shape.reduce((a, b) => a * b, 1);
    parameters += n;
    bytesOnDisk += t.byteLength;
    dtypes[t.dtype] = (dtypes[t.dtype] ?? 0) + n;
  }
  const d = loaded.description;
  // (layers, K and V, positions, kvHeads * headDim) elements
  const kvElems = d.numLayers * 2 * canvasLength * d.numKvHeads * d.headDim;
  return {
    parameters,
    dtypes,
    bytesOnDisk,
    weightBytesF32: parameters * 4,
    weightBytesBf16: parameters * 2,
    kvCacheBytesF32: kvElems * 4,
    kvCacheBytes16: kvElems * 2,
    canvasLength,
  };
}

/** Layer features beyond the dense Llama/Qwen layer that not every engine implements (DESIGN §13). */
export interface LayerFeatures {
  moe?: boolean;
  partialRotary?: boolean;
  clipQkv?: boolean;
  /** LLaDA2's router: sigmoid scores, group-limited top-k, scaled weights (DESIGN §13.1). */
  sigmoidRouting?: boolean;
  /** A bias on the attention output projection (LLaDA2's use_bias). */
  outputBias?: boolean;
}

/** What in this model's layers an engine with `supported` lacks, as one sentence; undefined when it has all. */
export function missingLayerFeatures(desc: ModelDescription, supported: LayerFeatures): string | undefined {
  const missing: string[] = [];
  if (desc.moe && !supported.moe) missing.push(`mixture-of-experts FFNs (${desc.moe.numExperts} experts, top ${desc.moe.topK})`);
  if (desc.rotaryDim !== undefined && !supported.partialRotary) missing.push(`partial rotary embeddings (${desc.rotaryDim} of ${desc.headDim} dims)`);
  if (desc.clipQkv !== undefined && !supported.clipQkv) missing.push(`clip_qkv ${desc.clipQkv}`);
  const sr = desc.moe?.sigmoidRouting;
  if (sr && !supported.sigmoidRouting) missing.push(`sigmoid group-limited routing (${sr.groups} groups, top ${sr.topGroups}, scale ${sr.scale})`);
  if (desc.outputBias && !supported.outputBias) missing.push('an attention output bias');
  return missing.length ? `${desc.architecture} models with ${missing.join(', ')} are not implemented by this engine` : undefined;
}
