/**
 * Loads a Hugging Face model directory (config.json + safetensors, single or sharded) into float32 tensors.
 * Self-contained so the oracle depends on nothing it is meant to check; @fast-dllm/model's reader is the
 * production path and is checked against the same fixtures.
 */
import { readFile } from 'node:fs/promises';
import { existsSync } from 'node:fs';
import { join } from 'node:path';

/** What the forward pass needs of a config, whatever architecture it came from. */
export interface ReferenceConfig {
  architecture: 'llada' | 'dream';
  hiddenSize: number;
  numLayers: number;
  numHeads: number;
  numKvHeads: number;
  headDim: number;
  intermediateSize: number;
  vocabSize: number;
  maxPositions: number;
  rmsNormEps: number;
  ropeTheta: number;
  maskId: number;
  eosId: number;
  endOfTurnId?: number;
}

export interface ReferenceLayer {
  attnNorm: Float32Array; // (d)
  q: Float32Array; // (H*hd, d)
  k: Float32Array; // (KV*hd, d)
  v: Float32Array; // (KV*hd, d)
  qBias?: Float32Array; // (H*hd)
  kBias?: Float32Array; // (KV*hd)
  vBias?: Float32Array; // (KV*hd)
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
  lmHead: Float32Array; // (vocab, d)
}

function num(cfg: Record<string, unknown>, key: string, dir: string): number {
  const v = cfg[key];
  if (typeof v !== 'number') throw new Error(`${dir}/config.json: missing numeric "${key}"`);
  return v;
}

function firstId(v: unknown): number | undefined {
  if (typeof v === 'number') return v;
  if (Array.isArray(v) && typeof v[0] === 'number') return v[0];
  return undefined;
}

/** Reads config.json (LLaDA or Dream/Qwen2 keys) into a ReferenceConfig. */
export async function readReferenceConfig(dir: string): Promise<ReferenceConfig> {
  const cfg = JSON.parse(await readFile(join(dir, 'config.json'), 'utf8')) as Record<string, unknown>;
  const type = String(cfg.model_type ?? '').toLowerCase();
  let endOfTurnName: string;
  let c: Omit<ReferenceConfig, 'endOfTurnId'>;
  if (type === 'llada') {
    const d = num(cfg, 'd_model', dir);
    const h = num(cfg, 'n_heads', dir);
    c = {
      architecture: 'llada', hiddenSize: d, numLayers: num(cfg, 'n_layers', dir), numHeads: h,
      numKvHeads: typeof cfg.n_kv_heads === 'number' ? cfg.n_kv_heads : h, headDim: d / h,
      intermediateSize: num(cfg, 'mlp_hidden_size', dir),
      vocabSize: typeof cfg.embedding_size === 'number' ? cfg.embedding_size : num(cfg, 'vocab_size', dir),
      maxPositions: num(cfg, 'max_sequence_length', dir), rmsNormEps: num(cfg, 'rms_norm_eps', dir),
      ropeTheta: num(cfg, 'rope_theta', dir), maskId: num(cfg, 'mask_token_id', dir),
      eosId: firstId(cfg.eos_token_id) ?? NaN,
    };
    endOfTurnName = '<|eot_id|>';
  } else if (type === 'dream') {
    const d = num(cfg, 'hidden_size', dir);
    const h = num(cfg, 'num_attention_heads', dir);
    if (cfg.tie_word_embeddings === true) throw new Error(`${dir}: tied embeddings are not supported by the reference engine`);
    c = {
      architecture: 'dream', hiddenSize: d, numLayers: num(cfg, 'num_hidden_layers', dir), numHeads: h,
      numKvHeads: typeof cfg.num_key_value_heads === 'number' ? cfg.num_key_value_heads : h, headDim: d / h,
      intermediateSize: num(cfg, 'intermediate_size', dir), vocabSize: num(cfg, 'vocab_size', dir),
      maxPositions: num(cfg, 'max_position_embeddings', dir), rmsNormEps: num(cfg, 'rms_norm_eps', dir),
      ropeTheta: num(cfg, 'rope_theta', dir), maskId: num(cfg, 'mask_token_id', dir),
      eosId: firstId(cfg.eos_token_id) ?? NaN,
    };
    endOfTurnName = '<|im_end|>';
  } else {
    throw new Error(`${dir}/config.json: model_type "${String(cfg.model_type)}" is neither "llada" nor "Dream"`);
  }
  if (!Number.isInteger(c.eosId)) throw new Error(`${dir}/config.json: missing "eos_token_id"`);
  let endOfTurnId: number | undefined;
  const tokPath = join(dir, 'tokenizer.json');
  if (existsSync(tokPath)) {
    const tok = JSON.parse(await readFile(tokPath, 'utf8')) as { added_tokens?: { id: number; content: string }[] };
    endOfTurnId = tok.added_tokens?.find((t) => t.content === endOfTurnName)?.id;
  }
  return endOfTurnId === undefined ? c : { ...c, endOfTurnId };
}

/** Decodes one tensor's raw bytes (F32, BF16 or F16, little-endian) to float32. */
function decode(dtype: string, bytes: Buffer, name: string): Float32Array {
  const dv = new DataView(bytes.buffer, bytes.byteOffset, bytes.byteLength);
  if (dtype === 'F32') {
    const out = new Float32Array(bytes.byteLength / 4);
    for (let i = 0; i < out.length; i++) out[i] = dv.getFloat32(i * 4, true);
    return out;
  }
  const out = new Float32Array(bytes.byteLength / 2);
  if (dtype === 'BF16') {
    const u = new Uint32Array(out.buffer); // bf16 is the top half of a float32
    for (let i = 0; i < out.length; i++) u[i] = dv.getUint16(i * 2, true) << 16;
    return out;
  }
  if (dtype === 'F16') {
    for (let i = 0; i < out.length; i++) out[i] = halfToFloat(dv.getUint16(i * 2, true));
    return out;
  }
  throw new Error(`tensor ${name}: dtype ${dtype} is not supported (F32, BF16, F16 are)`);
}

function halfToFloat(h: number): number {
  const s = h & 0x8000 ? -1 : 1;
  const e = (h >> 10) & 0x1f;
  const f = h & 0x3ff;
  if (e === 0) return s * f * 2 ** -24;
  if (e === 31) return f ? NaN : s * Infinity;
  return s * (1 + f / 1024) * 2 ** (e - 15);
}

/** Reads every tensor of the directory's safetensors file(s). */
export async function readAllTensors(dir: string): Promise<Map<string, { shape: number[]; data: Float32Array }>> {
  const indexPath = join(dir, 'model.safetensors.index.json');
  let files: string[];
  if (existsSync(indexPath)) {
    const idx = JSON.parse(await readFile(indexPath, 'utf8')) as { weight_map: Record<string, string> };
    files = [...new Set(Object.values(idx.weight_map))];
  } else if (existsSync(join(dir, 'model.safetensors'))) {
    files = ['model.safetensors'];
  } else {
    throw new Error(`${dir}: no model.safetensors or model.safetensors.index.json`);
  }
  const out = new Map<string, { shape: number[]; data: Float32Array }>();
  for (const f of files) {
    const buf = await readFile(join(dir, f));
    const headerLen = Number(buf.readBigUInt64LE(0));
    const header = JSON.parse(buf.subarray(8, 8 + headerLen).toString('utf8')) as Record<
      string, { dtype: string; shape: number[]; data_offsets: [number, number] }
    >;
    const base = 8 + headerLen;
    for (const [name, t] of Object.entries(header)) {
      if (name === '__metadata__') continue;
      const bytes = buf.subarray(base + t.data_offsets[0], base + t.data_offsets[1]);
      out.set(name, { shape: t.shape, data: decode(t.dtype, bytes, `${f}:${name}`) });
    }
  }
  return out;
}

/** Picks the tensors of the architecture by their checkpoint names, checking every shape. */
export async function loadReferenceWeights(dir: string, c: ReferenceConfig): Promise<ReferenceWeights> {
  const all = await readAllTensors(dir);
  const get = (name: string, shape: number[]): Float32Array => {
    const t = all.get(name);
    if (!t) throw new Error(`${dir}: tensor ${name} is missing`);
    if (t.shape.join(',') !== shape.join(',')) {
      throw new Error(`${dir}: tensor ${name} has shape [${t.shape}], expected [${shape}]`);
    }
    return t.data;
  };
  const { hiddenSize: d, numHeads: H, numKvHeads: KV, headDim: hd, intermediateSize: ff, vocabSize: V } = c;
  const layers: ReferenceLayer[] = [];
  for (let i = 0; i < c.numLayers; i++) {
    if (c.architecture === 'llada') {
      const b = `model.transformer.blocks.${i}.`;
      layers.push({
        attnNorm: get(b + 'attn_norm.weight', [d]), q: get(b + 'q_proj.weight', [H * hd, d]),
        k: get(b + 'k_proj.weight', [KV * hd, d]), v: get(b + 'v_proj.weight', [KV * hd, d]),
        o: get(b + 'attn_out.weight', [d, H * hd]), ffnNorm: get(b + 'ff_norm.weight', [d]),
        gate: get(b + 'ff_proj.weight', [ff, d]), up: get(b + 'up_proj.weight', [ff, d]),
        down: get(b + 'ff_out.weight', [d, ff]),
      });
    } else {
      const b = `model.layers.${i}.`;
      layers.push({
        attnNorm: get(b + 'input_layernorm.weight', [d]),
        q: get(b + 'self_attn.q_proj.weight', [H * hd, d]), qBias: get(b + 'self_attn.q_proj.bias', [H * hd]),
        k: get(b + 'self_attn.k_proj.weight', [KV * hd, d]), kBias: get(b + 'self_attn.k_proj.bias', [KV * hd]),
        v: get(b + 'self_attn.v_proj.weight', [KV * hd, d]), vBias: get(b + 'self_attn.v_proj.bias', [KV * hd]),
        o: get(b + 'self_attn.o_proj.weight', [d, H * hd]), ffnNorm: get(b + 'post_attention_layernorm.weight', [d]),
        gate: get(b + 'mlp.gate_proj.weight', [ff, d]), up: get(b + 'mlp.up_proj.weight', [ff, d]),
        down: get(b + 'mlp.down_proj.weight', [d, ff]),
      });
    }
  }
  if (c.architecture === 'llada') {
    return {
      embed: get('model.transformer.wte.weight', [V, d]), layers,
      finalNorm: get('model.transformer.ln_f.weight', [d]), lmHead: get('model.transformer.ff_out.weight', [V, d]),
    };
  }
  return {
    embed: get('model.embed_tokens.weight', [V, d]), layers,
    finalNorm: get('model.norm.weight', [d]), lmHead: get('lm_head.weight', [V, d]),
  };
}
