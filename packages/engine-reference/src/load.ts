/**
 * Loads a Hugging Face model directory through @fast-dllm/model (config normalisation, safetensors, canonical
 * tensor roles) into float32 arrays the reference forward pass reads directly; with `dtype: 'int8'` the linear
 * weights (and the LM head) are quantized into @fast-dllm/model's int8 format as they are read.
 */
import { dequantizeInt8Row, isMoeLayer, openModel, routingRule, type ModelDescription, type SwigluTensorNames } from '@fast-dllm/model';
import type { MoeWeights, SwigluWeights } from './ops.js';
import { isInt8, referenceQuantize, type LinearWeight } from './quant.js';

export interface ReferenceLayer {
  attnNorm: Float32Array; // (d)
  q: LinearWeight; // (H*hd, d)
  k: LinearWeight; // (KV*hd, d)
  v: LinearWeight; // (KV*hd, d)
  qBias?: Float32Array; // (H*hd)
  kBias?: Float32Array; // (KV*hd)
  vBias?: Float32Array; // (KV*hd)
  qNorm?: Float32Array; // (hd) Qwen3: per-head RMSNorm of q before RoPE
  kNorm?: Float32Array; // (hd) … and of k
  o: LinearWeight; // (d, H*hd)
  oBias?: Float32Array; // (d) LLaDA2's use_bias
  ffnNorm: Float32Array; // (d)
  /** The FFN: a dense SwiGLU (gate (ff, d), up (ff, d), down (d, ff)) or a mixture of experts (DESIGN §13). */
  ffn: { kind: 'dense'; w: SwigluWeights } | { kind: 'moe'; w: MoeWeights };
}

export interface ReferenceWeights {
  embed: Float32Array; // (vocab, d); int8 with tied embeddings: the quantized LM head's rows, dequantized
  layers: ReferenceLayer[];
  finalNorm: Float32Array; // (d)
  lmHead: LinearWeight; // (vocab, d); the embedding itself when tied (float32)
}

/** How the reference stores linear weights: 'f32' (any checkpoint dtype widened exactly) or the int8 format. */
export type ReferenceDType = 'f32' | 'int8';

/** Opens the directory (names and shapes are checked by openModel) and widens every tensor to float32. */
export async function loadReferenceModel(
  dir: string, onTensor?: (done: number, total: number) => void, dtype: ReferenceDType = 'f32',
): Promise<{ description: ModelDescription; weights: ReferenceWeights }> {
  const { description, archive, names } = await openModel(dir);
  const { hiddenSize: d, numHeads: H, numKvHeads: KV, headDim: hd, intermediateSize: ff, vocabSize: V } = description;
  try {
    // Distinct tensors to read: a tied LM head is the embedding, LLaDA has no q/k/v biases.
    const total = new Set([names.embed, names.finalNorm, names.lmHead,
      ...names.layers.flatMap((n) => [
        ...Object.values(n).filter((x): x is string => typeof x === 'string'),
        ...(isMoeLayer(n) ? [...n.experts, ...(n.shared ? [n.shared] : [])].flatMap((e) => [e.gate, e.up, e.down]) : []),
      ])]).size;
    let done = 0;
    const read = async (name: string): Promise<Float32Array> => {
      const t = await archive.readF32(name);
      onTensor?.(++done, total);
      return t;
    };
    const opt = (name: string | undefined) => (name === undefined ? undefined : read(name));
    // A linear weight W (out, inDim), quantized when the dtype says so.
    const linear = async (name: string, out: number, inDim: number): Promise<LinearWeight> => {
      const w = await read(name);
      return dtype === 'int8' ? referenceQuantize(w, out, inDim) : w;
    };
    const swiglu = async (s: SwigluTensorNames, width: number): Promise<SwigluWeights> =>
      ({ gate: await linear(s.gate, width, d), up: await linear(s.up, width, d), down: await linear(s.down, d, width) });
    const layers: ReferenceLayer[] = [];
    for (const n of names.layers) {
      const moe = description.moe;
      // The router stays f32 under int8: its top-k is a discrete choice that quantization error could flip.
      const ffn: ReferenceLayer['ffn'] = isMoeLayer(n) && moe
        ? {
          kind: 'moe', w: {
            router: await read(n.router), experts: await Promise.all(n.experts.map((e) => swiglu(e, moe.expertSize))),
            ...(n.shared ? { shared: await swiglu(n.shared, moe.sharedExpertSize!), sharedSize: moe.sharedExpertSize! } : {}),
            ...(n.expertBias ? { expertBias: await read(n.expertBias) } : {}),
            topK: moe.topK, expertSize: moe.expertSize, rule: routingRule(moe),
          },
        }
        : isMoeLayer(n) ? (() => { throw new Error('reference engine: a mixture layer without a MoE description'); })()
        : { kind: 'dense', w: await swiglu(n, ff) };
      const [qBias, kBias, vBias, qNorm, kNorm, oBias] = await Promise.all([opt(n.qBias), opt(n.kBias), opt(n.vBias), opt(n.qNorm), opt(n.kNorm), opt(n.oBias)]);
      layers.push({
        attnNorm: await read(n.attnNorm), q: await linear(n.q, H * hd, d), k: await linear(n.k, KV * hd, d),
        v: await linear(n.v, KV * hd, d),
        ...(qBias ? { qBias } : {}), ...(kBias ? { kBias } : {}), ...(vBias ? { vBias } : {}),
        ...(qNorm ? { qNorm } : {}), ...(kNorm ? { kNorm } : {}),
        o: await linear(n.o, d, H * hd), ...(oBias ? { oBias } : {}), ffnNorm: await read(n.ffnNorm), ffn,
      });
    }
    const stored = await read(names.embed);
    const tied = names.lmHead === names.embed;
    const lmHead = tied ? (dtype === 'int8' ? referenceQuantize(stored, V, d) : stored) : await linear(names.lmHead, V, d);
    // Tied and quantized: the embedding is the int8 head's rows, as the WASM engine stores the tensor once.
    let embed = stored;
    if (tied && isInt8(lmHead)) {
      embed = new Float32Array(V * d); // (V, d)
      for (let t = 0; t < V; t++) dequantizeInt8Row(lmHead, t, embed, t * d);
    }
    return { description, weights: { embed, layers, finalNorm: await read(names.finalNorm), lmHead } };
  } finally {
    await archive.close();
  }
}
