/**
 * Loads a Hugging Face model directory through @fast-dllm/model (config normalisation, safetensors, canonical
 * tensor roles) into float32 arrays the reference forward pass reads directly.
 */
import { openModel, type ModelDescription } from '@fast-dllm/model';

export interface ReferenceLayer {
  attnNorm: Float32Array; // (d)
  q: Float32Array; // (H*hd, d)
  k: Float32Array; // (KV*hd, d)
  v: Float32Array; // (KV*hd, d)
  qBias?: Float32Array; // (H*hd)
  kBias?: Float32Array; // (KV*hd)
  vBias?: Float32Array; // (KV*hd)
  qNorm?: Float32Array; // (hd) Qwen3: per-head RMSNorm of q before RoPE
  kNorm?: Float32Array; // (hd) … and of k
  o: Float32Array; // (d, H*hd)
  ffnNorm: Float32Array; // (d)
  gate: Float32Array; // (ff, d)
  up: Float32Array; // (ff, d)
  down: Float32Array; // (d, ff)
}

export interface ReferenceWeights {
  embed: Float32Array; // (vocab, d)
  layers: ReferenceLayer[];
  finalNorm: Float32Array; // (d)
  lmHead: Float32Array; // (vocab, d); the embedding itself when tied
}

/** Opens the directory (names and shapes are checked by openModel) and widens every tensor to float32. */
export async function loadReferenceModel(
  dir: string, onTensor?: (done: number, total: number) => void,
): Promise<{ description: ModelDescription; weights: ReferenceWeights }> {
  const { description, archive, names } = await openModel(dir);
  try {
    // Distinct tensors to read: a tied LM head is the embedding, LLaDA has no q/k/v biases.
    const total = new Set([names.embed, names.finalNorm, names.lmHead,
      ...names.layers.flatMap((n) => Object.values(n).filter((x): x is string => typeof x === 'string'))]).size;
    let done = 0;
    const read = async (name: string): Promise<Float32Array> => {
      const t = await archive.readF32(name);
      onTensor?.(++done, total);
      return t;
    };
    const opt = (name: string | undefined) => (name === undefined ? undefined : read(name));
    const layers: ReferenceLayer[] = [];
    for (const n of names.layers) {
      const [qBias, kBias, vBias, qNorm, kNorm] = await Promise.all([opt(n.qBias), opt(n.kBias), opt(n.vBias), opt(n.qNorm), opt(n.kNorm)]);
      layers.push({
        attnNorm: await read(n.attnNorm), q: await read(n.q), k: await read(n.k), v: await read(n.v),
        ...(qBias ? { qBias } : {}), ...(kBias ? { kBias } : {}), ...(vBias ? { vBias } : {}),
        ...(qNorm ? { qNorm } : {}), ...(kNorm ? { kNorm } : {}),
        o: await read(n.o), ffnNorm: await read(n.ffnNorm), gate: await read(n.gate), up: await read(n.up),
        down: await read(n.down),
      });
    }
    const embed = await read(names.embed);
    const lmHead = names.lmHead === names.embed ? embed : await read(names.lmHead);
    return { description, weights: { embed, layers, finalNorm: await read(names.finalNorm), lmHead } };
  } finally {
    await archive.close();
  }
}
