import { describe, expect, it } from 'vitest';
import { denseLayerNames, expectedShapes, isMoeLayer, missingLayerFeatures, normaliseConfig, schedulerModelInfo, tensorNames } from '../src/index.js';

/** LLaDA-MoE-7B-A1B's config.json, the keys that matter (as published: OLMoE-style layers, every layer a mixture). */
export const LLADA_MOE_7B = {
  architectures: ['LLaDAMoEModelLM'], model_type: 'llada', hidden_size: 2048, num_hidden_layers: 16, num_attention_heads: 16,
  num_key_value_heads: 16, dense_intermediate_size: 8192, expert_intermediate_size: 1024, shared_expert_intermediate_size: null,
  num_experts: 64, num_experts_per_tok: 8, moe_layer_freq: Array(16).fill(1), norm_topk_prob: true, qk_layernorm: true,
  rope_theta: 50000, max_position_embeddings: 8192, vocab_size: 157184, rms_norm_eps: 1e-5, partial_rotary_factor: 1,
  clip_qkv: null, hidden_act: 'silu', tie_word_embeddings: false, moe_router_enable_expert_bias: false, moe_router_score_function: 'softmax',
};

describe('LLaDA-MoE configs (DESIGN §13)', () => {
  it('model_type "llada" with expert fields is LLaDA-MoE, and so is "lladamoe"; the scheduler decodes it as LLaDA', () => {
    for (const model_type of ['llada', 'lladamoe', 'LLaDAMoE']) {
      const d = normaliseConfig({ ...LLADA_MOE_7B, model_type });
      expect(d).toMatchObject({
        architecture: 'llada_moe', hiddenSize: 2048, numLayers: 16, numHeads: 16, numKvHeads: 16, headDim: 128, vocabSize: 157184,
        qkNorm: true, qkvBias: false, shiftLogits: false, intermediateSize: 8192,
      });
      // The published code fixes norm_topk_prob to False whatever the config says.
      expect(d.moe).toEqual({ numExperts: 64, topK: 8, expertSize: 1024, normTopK: false, expertBias: false, moeLayers: Array(16).fill(true) });
      expect(d.rotaryDim).toBeUndefined();
      expect(d.special).toEqual({ mask: 156895, eos: 156892 });
      expect(schedulerModelInfo(d).architecture).toBe('llada');
    }
  });

  it('a plain LLaDA config is still dense LLaDA', () => {
    expect(normaliseConfig({
      model_type: 'llada', d_model: 64, n_layers: 2, n_heads: 4, mlp_hidden_size: 128, vocab_size: 320, max_sequence_length: 512, rope_theta: 1e4,
      mask_token_id: 310, eos_token_id: 301,
    }).moe).toBeUndefined();
  });

  it('tensor names: router, experts, shared expert and expert bias on mixture layers; a dense SwiGLU elsewhere', () => {
    const d = normaliseConfig({ ...LLADA_MOE_7B, num_hidden_layers: 2, moe_layer_freq: [0, 1], shared_expert_intermediate_size: 256, moe_router_enable_expert_bias: true });
    const names = tensorNames(d);
    expect(isMoeLayer(names.layers[0])).toBe(false);
    const l1 = names.layers[1];
    if (!isMoeLayer(l1)) throw new Error('layer 1 should be a mixture');
    expect(l1.router).toBe('model.layers.1.mlp.gate.weight');
    expect(l1.experts).toHaveLength(64);
    expect(l1.experts[63].down).toBe('model.layers.1.mlp.experts.63.down_proj.weight');
    expect(l1.shared?.gate).toBe('model.layers.1.shared_expert.gate_proj.weight');
    expect(l1.expertBias).toBe('model.layers.1.mlp.expert_bias');
    const shapes = expectedShapes(d, names);
    expect(shapes.get(l1.router)).toEqual([64, 2048]);
    expect(shapes.get(l1.experts[0].gate)).toEqual([1024, 2048]);
    expect(shapes.get(l1.experts[0].down)).toEqual([2048, 1024]);
    expect(shapes.get(l1.shared!.up)).toEqual([256, 2048]);
    expect(shapes.get('model.layers.0.mlp.gate_proj.weight')).toEqual([8192, 2048]);
    expect(shapes.get('model.layers.1.self_attn.q_norm.weight')).toEqual([128]);
    expect(() => denseLayerNames(names, () => new Error('no MoE here'))).toThrow('no MoE here');
    expect(missingLayerFeatures(d, {})).toMatch(/mixture-of-experts FFNs \(64 experts, top 8\)/);
    expect(missingLayerFeatures(d, { moe: true })).toBeUndefined();
  });

  it('partial rotary and clip_qkv', () => {
    const d = normaliseConfig({ ...LLADA_MOE_7B, partial_rotary_factor: 0.5, clip_qkv: 8 });
    expect(d.rotaryDim).toBe(64);
    expect(d.clipQkv).toBe(8);
    expect(missingLayerFeatures(d, { moe: true })).toMatch(/partial rotary embeddings \(64 of 128 dims\), clip_qkv 8/);
  });

  it('refuses what the published model does not do, naming the field', () => {
    const bad: [Record<string, unknown>, RegExp][] = [
      [{ moe_layer_freq: [1, 1] }, /"moe_layer_freq" must list 0 \(dense\) or 1 \(mixture\) for each of the 16 layers/],
      [{ num_experts_per_tok: 65 }, /num_experts_per_tok 65 exceeds num_experts 64/],
      [{ moe_router_score_function: 'sigmoid' }, /"moe_router_score_function": "sigmoid" is not supported/],
      [{ router_num_group: 8 }, /"router_num_group": 8 \(group-limited routing\) is not supported/],
      [{ expert_intermediate_size: undefined }, /missing field "expert_intermediate_size"/],
      [{ partial_rotary_factor: 0 }, /"partial_rotary_factor" must be in \(0, 1\]/],
      [{ clip_qkv: -1 }, /"clip_qkv" must be a positive number or null/],
      [{ rope_scaling: { type: 'linear', factor: 2 } }, /"rope_scaling".*is not supported/],
      [{ hidden_act: 'gelu' }, /"hidden_act": "gelu" is not supported/],
    ];
    for (const [patch, message] of bad) expect(() => normaliseConfig({ ...LLADA_MOE_7B, ...patch }), JSON.stringify(patch)).toThrow(message);
  });

  it('other MoE families are named in the error', () => {
    expect(() => normaliseConfig({ model_type: 'qwen3_moe' })).toThrow(/of the mixture-of-experts models only LLaDA-MoE, "lladamoe", and LLaDA2, "llada2_moe", are supported/);
  });
});
