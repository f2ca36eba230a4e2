import { mkdtemp, mkdir, writeFile } from 'node:fs/promises';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { expectedShapes, normaliseConfig, writeSafetensors, type TensorToWrite } from '../src/index.js';

export async function tempDir(): Promise<string> {
  return mkdtemp(join(tmpdir(), 'fast-dllm-model-'));
}

/** f32 values → little-endian bytes. */
export function f32Bytes(values: number[] | Float32Array): Uint8Array {
  return new Uint8Array(Float32Array.from(values).buffer);
}

export function f32Tensor(name: string, shape: number[], fill = (i: number) => i * 0.5): TensorToWrite {
  const n = shape.reduce((a, b) => a * b, 1);
  return { name, dtype: 'F32', shape, data: f32Bytes(Array.from({ length: n }, (_, i) => fill(i))) };
}

/** A tiny LLaDA config: d 8, 2 layers, 2 heads, ff 16, vocab 32. */
export function tinyLladaConfig(over: Record<string, unknown> = {}): Record<string, unknown> {
  return {
    model_type: 'llada', d_model: 8, n_layers: 2, n_heads: 2, n_kv_heads: 2, mlp_hidden_size: 16,
    vocab_size: 32, embedding_size: 32, max_sequence_length: 64, rope_theta: 10000, rms_norm_eps: 1e-5,
    mask_token_id: 31, eos_token_id: 30, weight_tying: false, include_bias: false, ...over,
  };
}

/** A tiny Dream config: hidden 8, 1 layer, 4 heads, 2 kv heads, ff 12, vocab 40, tied. */
export function tinyDreamConfig(over: Record<string, unknown> = {}): Record<string, unknown> {
  return {
    model_type: 'Dream', hidden_size: 8, num_hidden_layers: 1, num_attention_heads: 4, num_key_value_heads: 2,
    intermediate_size: 12, vocab_size: 40, max_position_embeddings: 128, rope_theta: 1e6, rms_norm_eps: 1e-6,
    tie_word_embeddings: true, mask_token_id: 39, eos_token_id: 38, ...over,
  };
}

/** Writes config.json + model.safetensors with every expected tensor (filtered/patched by `edit`). */
export async function writeTinyModel(
  config: Record<string, unknown>,
  edit: (ts: TensorToWrite[]) => TensorToWrite[] = (ts) => ts,
  dir?: string,
): Promise<string> {
  const d = dir ?? (await tempDir());
  await mkdir(d, { recursive: true });
  await writeFile(join(d, 'config.json'), JSON.stringify(config));
  const shapes = expectedShapes(normaliseConfig(config));
  const tensors = [...shapes].map(([name, shape]) => f32Tensor(name, shape));
  await writeSafetensors(join(d, 'model.safetensors'), edit(tensors));
  return d;
}
