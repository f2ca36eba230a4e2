/**
 * `fast-dllm inspect` at full size (DESIGN §13, §14): LLaDA-8B's and LLaDA-MoE-7B-A1B's published configs over sparse
 * safetensors files (the header, then a hole as long as the weights: no disk used), so inspect and every engine's
 * estimate read the real shapes.
 */
import { mkdtemp, open, rm, writeFile } from 'node:fs/promises';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { afterAll, describe, expect, it } from 'vitest';
import { expectedShapes, normaliseConfig } from '@fast-dllm/model';
import { runCli } from './run.js';

const LLADA_8B = {
  model_type: 'llada', d_model: 4096, n_layers: 32, n_heads: 32, n_kv_heads: 32, mlp_hidden_size: 12288, vocab_size: 126464,
  embedding_size: 126464, max_sequence_length: 4096, rope_theta: 500000, rms_norm_eps: 1e-5, mask_token_id: 126336, eos_token_id: 126081,
  weight_tying: false,
};
const LLADA_MOE_7B = {
  model_type: 'llada', hidden_size: 2048, num_hidden_layers: 16, num_attention_heads: 16, num_key_value_heads: 16,
  dense_intermediate_size: 8192, expert_intermediate_size: 1024, shared_expert_intermediate_size: null, num_experts: 64,
  num_experts_per_tok: 8, moe_layer_freq: Array(16).fill(1), qk_layernorm: true, rope_theta: 50000, max_position_embeddings: 8192,
  vocab_size: 157184, rms_norm_eps: 1e-5, tie_word_embeddings: false,
};

/** LLaDA2.0-mini's config.json, the keys that matter (DESIGN §13.1). */
const LLADA2_MINI = {
  model_type: 'llada2_moe', hidden_size: 2048, num_hidden_layers: 20, num_attention_heads: 16, num_key_value_heads: 4, head_dim: 128,
  intermediate_size: 5120, moe_intermediate_size: 512, num_experts: 256, num_shared_experts: 1, num_experts_per_tok: 8, n_group: 8,
  topk_group: 4, routed_scaling_factor: 2.5, first_k_dense_replace: 1, score_function: 'sigmoid', partial_rotary_factor: 0.5,
  rope_theta: 600000, rope_scaling: null, max_position_embeddings: 32768, vocab_size: 157184, rms_norm_eps: 1e-6, tie_word_embeddings: false,
  use_bias: false, use_qkv_bias: false, use_qk_norm: true, pad_token_id: 156892,
};

const dirs: string[] = [];
afterAll(async () => { for (const d of dirs) await rm(d, { recursive: true, force: true }); });

/** A model directory: config.json and a sparse bf16 model.safetensors with every tensor the config expects. */
async function sparseModel(config: Record<string, unknown>): Promise<string> {
  const dir = await mkdtemp(join(tmpdir(), 'fdllm-large-'));
  dirs.push(dir);
  await writeFile(join(dir, 'config.json'), JSON.stringify(config));
  const header: Record<string, unknown> = { __metadata__: { format: 'pt' } };
  let offset = 0;
  for (const [name, shape] of expectedShapes(normaliseConfig(config))) {
    const bytes = 2 * shape.reduce((a, b) => a * b, 1);
    header[name] = { dtype: 'BF16', shape, data_offsets: [offset, offset + bytes] };
    offset += bytes;
  }
  let json = Buffer.from(JSON.stringify(header));
  json = Buffer.concat([json, Buffer.alloc((8 - (json.length % 8)) % 8, 0x20)]);
  const len = Buffer.alloc(8);
  len.writeBigUInt64LE(BigInt(json.length));
  const fh = await open(join(dir, 'model.safetensors'), 'w');
  await fh.write(Buffer.concat([len, json]));
  await fh.truncate(8 + json.length + offset); // a hole: the weights' length without their bytes
  await fh.close();
  return dir;
}

describe('inspect at full size', () => {
  it('LLaDA-MoE-7B-A1B: experts, parameters read per token, and the wasm split over several memories', async () => {
    const r = await runCli(['inspect', await sparseModel(LLADA_MOE_7B), '--json', '--canvas', '1024']);
    expect(r.code, r.stderr).toBe(0);
    const j = JSON.parse(r.stdout);
    expect(j.architecture).toBe('llada_moe');
    expect(j.parameters / 1e9).toBeCloseTo(7.36, 2);
    expect(j.moe).toMatchObject({ experts: 64, perToken: 8, expertSize: 1024, sharedExpertSize: null, moeLayers: 16 });
    // 56 idle experts × 3 matrices of 2048 × 1024 in each of 16 layers are not read for a token.
    expect(j.moe.activeParameters).toBe(j.parameters - 16 * 56 * 3 * 2048 * 1024);
    expect(j.memory['wasm int8'].note).toMatch(/over wasm32's 4 GiB: split by layers over [3-9] memories in Node \(DESIGN §14\); a browser cannot load it/);
    expect(j.memory['wasm int8'].weights / 2 ** 30).toBeGreaterThan(4);
    // The CUDA engine plans the mixture too (DESIGN §13): 2 bytes a parameter, 4 for the f32 ones, the norms (attention,
    // FFN, q and k per layer; final) and the routers (64 x 2048 per layer).
    expect(j.memory.cuda).toMatchObject({ weightDType: 'bf16', cacheDType: 'bf16' });
    expect(j.memory.cuda.weights).toBe(2 * j.parameters + 2 * (16 * (2 * 2048 + 2 * 128 + 64 * 2048) + 2048));
    const text = await runCli(['inspect', dirs[dirs.length - 1], '--canvas', '1024']);
    expect(text.stdout).toMatch(/experts:\s+64 per mixture layer, 8 per token \(expert ffn 1024\); 16 of 16 layers are mixtures; 1\.\d\dB parameters read per token/);
  });

  it('LLaDA2.0-mini: 16B parameters, about 1.4B read per token, sigmoid group-limited routing, block diffusion', async () => {
    const r = await runCli(['inspect', await sparseModel(LLADA2_MINI), '--json', '--canvas', '1024']);
    expect(r.code, r.stderr).toBe(0);
    const j = JSON.parse(r.stdout);
    expect(j.architecture).toBe('llada2_moe');
    expect(j.blockSize).toBe(32);
    expect(j.parameters / 1e9).toBeCloseTo(16.26, 2);
    expect(j.moe).toMatchObject({ experts: 256, perToken: 8, expertSize: 512, sharedExpertSize: 512, moeLayers: 19 });
    // 248 idle experts × 3 matrices of 2048 × 512 in each of 19 mixture layers are not read for a token.
    expect(j.moe.activeParameters).toBe(j.parameters - 19 * 248 * 3 * 2048 * 512);
    expect(j.moe.activeParameters / 1e9).toBeCloseTo(1.43, 2);
    expect(j.memory['wasm int8'].note).toMatch(/split by layers over [6-9] memories in Node/);
    const text = await runCli(['inspect', dirs[dirs.length - 1], '--canvas', '1024']);
    expect(text.stdout).toMatch(/experts:\s+256 per mixture layer, 8 per token \(expert ffn 512, shared expert 512\); 19 of 20 layers are mixtures; 1\.43B parameters read per token/);
    expect(text.stdout).toMatch(/routing:\s+sigmoid scores \(expert bias for the choice only\), top 8 within the best 4 of 8 groups, weights normalised × 2\.5/);
    expect(text.stdout).toMatch(/attention:\s+block-causal, blocks of 32/);
  });

  it('LLaDA-8B: dense, over 4 GiB at int8, split in Node', async () => {
    const r = await runCli(['inspect', await sparseModel(LLADA_8B), '--json', '--canvas', '1024']);
    expect(r.code, r.stderr).toBe(0);
    const j = JSON.parse(r.stdout);
    expect(j.moe).toBeNull();
    expect(j.parameters / 1e9).toBeCloseTo(8.02, 2);
    expect(j.memory['wasm int8'].note).toMatch(/split by layers over [3-9] memories in Node/);
  });
});
