// The model shapes bench/cuda measures, as Hugging Face config.json objects (normalised by @fast-dllm/model like any
// checkpoint's), their 2-layer miniatures for emulator rehearsals, and a writer of random bf16 checkpoints for the
// shape check (shape-check.mjs).
import { closeSync, openSync, writeFileSync, writeSync } from 'node:fs';
import { join } from 'node:path';
import { expectedShapes, normaliseConfig } from '@fast-dllm/model';

/** LLaDA-8B-Instruct (GSAI-ML/LLaDA-8B-Instruct config.json). */
export const LLADA_8B = {
  architectures: ['LLaDAModelLM'], model_type: 'llada', d_model: 4096, n_layers: 32, n_heads: 32, n_kv_heads: 32,
  mlp_hidden_size: 12288, vocab_size: 126464, embedding_size: 126464, max_sequence_length: 4096, rope_theta: 500000.0,
  rms_norm_eps: 1e-5, mask_token_id: 126336, eos_token_id: 126081, weight_tying: false, include_bias: false,
  include_qkv_bias: false,
};

/**
 * Fast-dLLM v2 7B (Efficient-Large-Model/Fast_dLLM_v2_7B, Qwen2.5-7B): hidden 3584, 28 layers, 28 heads, 4 KV heads,
 * head_dim 128, intermediate 18944, vocab 152064, untied LM head, q/k/v biases, blocks of 32, shifted logits.
 */
export const V2_7B = {
  architectures: ['Fast_dLLM_QwenForCausalLM'], model_type: 'Fast_dLLM_Qwen', bd_size: 32, hidden_size: 3584,
  intermediate_size: 18944, num_hidden_layers: 28, num_attention_heads: 28, num_key_value_heads: 4, vocab_size: 152064,
  max_position_embeddings: 32768, rope_theta: 1000000.0, rms_norm_eps: 1e-6, tie_word_embeddings: false,
  bos_token_id: 151643, eos_token_id: 151645, use_sliding_window: false, rope_scaling: null, hidden_act: 'silu',
  torch_dtype: 'bfloat16',
};

/** The same layouts in 2 layers of small widths (emulator rehearsals of the scripts; their times mean nothing). */
export const MINIATURE = {
  'llada-8b': { ...LLADA_8B, d_model: 128, n_layers: 2, n_heads: 4, n_kv_heads: 4, mlp_hidden_size: 256, vocab_size: 512, embedding_size: 512, mask_token_id: 500, eos_token_id: 501 },
  'v2-7b': { ...V2_7B, hidden_size: 128, num_hidden_layers: 2, num_attention_heads: 4, num_key_value_heads: 2, intermediate_size: 256, vocab_size: 512, bos_token_id: 509, eos_token_id: 510, mask_token_id: 511 },
};

export const SHAPES = { 'llada-8b': LLADA_8B, 'v2-7b': V2_7B };

/** The model description of a shape (optionally with fewer layers). */
export function describe(config, layers) {
  const c = layers === undefined ? config : { ...config, [config.model_type === 'llada' ? 'n_layers' : 'num_hidden_layers']: layers };
  return { config: c, desc: normaliseConfig(c) };
}

/**
 * Writes config.json and model.safetensors (bf16) with uniform random weights from a seeded xorshift: linear weights
 * in ±1/sqrt(fan_in)·√3 (unit variance of the outputs), norms near 1, biases small. Tensor by tensor, in chunks: no
 * buffer of the whole checkpoint in memory. Returns the bytes written.
 */
export function writeRandomModel(dir, config, seed = 1234) {
  writeFileSync(join(dir, 'config.json'), JSON.stringify(config, null, 2));
  const shapes = [...expectedShapes(normaliseConfig(config))];
  const header = { __metadata__: { format: 'pt' } };
  let offset = 0;
  for (const [name, shape] of shapes) {
    const bytes = shape.reduce((a, b) => a * b, 1) * 2;
    header[name] = { dtype: 'BF16', shape, data_offsets: [offset, offset + bytes] };
    offset += bytes;
  }
  let json = JSON.stringify(header);
  json += ' '.repeat((8 - (json.length % 8)) % 8);
  const fd = openSync(join(dir, 'model.safetensors'), 'w');
  try {
    const len = Buffer.alloc(8);
    len.writeBigUInt64LE(BigInt(json.length));
    writeSync(fd, len);
    writeSync(fd, Buffer.from(json));
    let s = seed >>> 0 || 1;
    const f32 = new Float32Array(1);
    const u32 = new Uint32Array(f32.buffer);
    const CHUNK = 1 << 20;
    const buf = new Uint16Array(CHUNK);
    for (const [name, shape] of shapes) {
      const count = shape.reduce((a, b) => a * b, 1);
      const norm = shape.length === 1 && /norm/.test(name);
      const scale = shape.length === 2 ? Math.sqrt(3 / shape[1]) : norm ? 0.1 : 0.02;
      for (let done = 0; done < count; done += CHUNK) {
        const n = Math.min(CHUNK, count - done);
        for (let i = 0; i < n; i++) {
          s ^= s << 13; s >>>= 0; s ^= s >>> 17; s ^= s << 5; s >>>= 0;
          f32[0] = (norm ? 1 : 0) + (s / 2 ** 31 - 1) * scale;
          buf[i] = (u32[0] + 0x7fff + ((u32[0] >>> 16) & 1)) >>> 16; // round to nearest even
        }
        writeSync(fd, new Uint8Array(buf.buffer, 0, n * 2));
      }
    }
  } finally {
    closeSync(fd);
  }
  return 8 + json.length + offset;
}
