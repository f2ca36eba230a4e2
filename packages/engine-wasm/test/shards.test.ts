/**
 * DESIGN §14: a model split by layers over several wasm memories computes the same bits as in one memory, and the
 * plan packs layers under the per-memory budget with the head in the last shard.
 */
import { describe, expect, it } from 'vitest';
import { fileURLToPath } from 'node:url';
import { normaliseConfig } from '@fast-dllm/model';
import type { Engine, ForwardRequest } from '@fast-dllm/scheduler';
import { createWasmEngine } from '../src/node.js';
import { layerWeightBytes, planShards, weightBytes, type WasmEngine } from '../src/engine.js';

const FIXTURES = fileURLToPath(new URL('../../../test/fixtures/models', import.meta.url));

async function logitsOf(e: Engine, canvas: Int32Array): Promise<Float32Array[]> {
  const L = canvas.length;
  const seq = e.openSequence(L);
  try {
    const want = { logits: true };
    const steps: Omit<ForwardRequest, 'sequence'>[] = [
      { canvas, mode: 'full', start: 0, end: L, positions: Int32Array.from({ length: L }, (_, i) => i), want },
      { canvas, mode: 'dual', start: 8, end: 16, positions: Int32Array.from({ length: 8 }, (_, i) => 8 + i), want },
      { canvas, mode: 'prefix', start: 16, end: L, positions: Int32Array.from({ length: L - 16 }, (_, i) => 16 + i), want },
    ];
    const out: Float32Array[] = [];
    for (const s of steps) out.push((await e.forward([{ ...s, sequence: seq }]))[0].logits!);
    return out;
  } finally {
    e.closeSequence(seq);
  }
}

describe('a model over several wasm memories (DESIGN §14)', () => {
  it.each([
    ['llada-tiny-f32', 'f32', 1], ['dream-tiny-f32', 'int8', 2], ['llada-moe-tiny-f32', 'f32', 1], ['sdar-tiny-f32', 'bf16', 1],
  ] as const)('%s (%s, %i layer(s) per memory) gives the same bits as one memory', async (model, weightDType, per) => {
    const one = await createWasmEngine(`${FIXTURES}/${model}`, { weightDType });
    const split = await createWasmEngine(`${FIXTURES}/${model}`, { weightDType, layersPerShard: per });
    try {
      const usage = (split as WasmEngine).memoryUsage();
      expect(usage.shards).toBe(Math.ceil(one.desc.numLayers / per));
      expect((one as WasmEngine).memoryUsage().shards).toBe(1);
      expect(split.sequenceBytes(40)).toBe(one.sequenceBytes(40));
      const mask = one.model.maskId;
      const canvas = Int32Array.from({ length: 40 }, (_, i) => (i < 12 ? (7 * i + 3) % 90 : mask));
      const [a, b] = [await logitsOf(one, canvas), await logitsOf(split, canvas)];
      a.forEach((x, i) => expect(Buffer.from(b[i].buffer).equals(Buffer.from(x.buffer)), `step ${i}`).toBe(true));
    } finally {
      await one.dispose();
      await split.dispose();
    }
  });

  it('a bad layersPerShard is refused', async () => {
    await expect(createWasmEngine(`${FIXTURES}/llada-tiny-f32`, { layersPerShard: 0 })).rejects.toThrow(/layersPerShard must be a positive integer, got 0/);
  });

  it('planShards packs LLaDA-8B at int8 under 3 GiB a memory, the head in the last; LLaDA-MoE-7B and LLaDA2.0-mini likewise', () => {
    const llada8b = normaliseConfig({
      model_type: 'llada', d_model: 4096, n_layers: 32, n_heads: 32, n_kv_heads: 32, mlp_hidden_size: 12288, vocab_size: 126464,
      embedding_size: 126464, max_sequence_length: 4096, rope_theta: 500000, rms_norm_eps: 1e-5, mask_token_id: 126336, eos_token_id: 126081,
    });
    const lladaMoe = normaliseConfig({
      model_type: 'lladamoe', hidden_size: 2048, num_hidden_layers: 16, num_attention_heads: 16, num_key_value_heads: 16,
      dense_intermediate_size: 8192, expert_intermediate_size: 1024, num_experts: 64, num_experts_per_tok: 8, qk_layernorm: true,
      rope_theta: 50000, max_position_embeddings: 8192, vocab_size: 157184, rms_norm_eps: 1e-5,
    });
    // LLaDA2.0-mini (DESIGN §13.1): 16B parameters, 256 experts of 512 per mixture layer, 19 GB at int8.
    const llada2Mini = normaliseConfig({
      model_type: 'llada2_moe', hidden_size: 2048, num_hidden_layers: 20, num_attention_heads: 16, num_key_value_heads: 4, head_dim: 128,
      intermediate_size: 5120, moe_intermediate_size: 512, num_experts: 256, num_shared_experts: 1, num_experts_per_tok: 8, n_group: 8,
      topk_group: 4, routed_scaling_factor: 2.5, first_k_dense_replace: 1, partial_rotary_factor: 0.5, rope_theta: 600000,
      max_position_embeddings: 32768, vocab_size: 157184, rms_norm_eps: 1e-6, use_bias: false,
    });
    expect(planShards(llada2Mini, 'int8')).toHaveLength(7);
    for (const m of [llada8b, lladaMoe, llada2Mini]) {
      const plan = planShards(m, 'int8');
      expect(plan[0][0]).toBe(0);
      expect(plan[plan.length - 1][1]).toBe(m.numLayers);
      for (let i = 1; i < plan.length; i++) expect(plan[i][0]).toBe(plan[i - 1][1]);
      const perShard = plan.map(([a, b]) => Array.from({ length: b - a }, (_, k) => layerWeightBytes(m, a + k, 'int8')).reduce((x, y) => x + y, 0));
      perShard.forEach((bytes) => expect(bytes).toBeLessThanOrEqual(3 * 2 ** 30));
      expect(weightBytes(m, 'int8')).toBeGreaterThan(4 * 2 ** 30); // it needs the split
    }
    expect(() => planShards(llada8b, 'f32', 2 ** 20)).toThrow(/layer 0 alone holds .* GiB of f32 weights, over a shard's/);
  });
});
