import { describe, expect, it } from 'vitest';
import { join } from 'node:path';
import {
  ModelFormatError, SafetensorsArchive, checkLayerCount, checkTensors, expectedShapes, isMoeLayer, missingLayerFeatures, normaliseConfig,
  routeRows, routingRule, rowSliceName, schedulerModelInfo, tensorNames, writeSafetensors,
} from '../src/index.js';
import { f32Tensor, tempDir } from './helpers.js';

/** LLaDA2.0-mini's config.json, the keys that matter (the published LLaDA2MoeConfig layout). */
export const LLADA2_MINI = {
  architectures: ['LLaDA2MoeModelLM'], model_type: 'llada2_moe', hidden_size: 2048, num_hidden_layers: 20, num_attention_heads: 16,
  num_key_value_heads: 4, head_dim: 128, intermediate_size: 5120, moe_intermediate_size: 512, num_experts: 256, num_shared_experts: 1,
  num_experts_per_tok: 8, n_group: 8, topk_group: 4, routed_scaling_factor: 2.5, first_k_dense_replace: 1, score_function: 'sigmoid',
  norm_topk_prob: true, partial_rotary_factor: 0.5, rope_theta: 600000, rope_scaling: null, rms_norm_eps: 1e-6, vocab_size: 157184,
  max_position_embeddings: 32768, tie_word_embeddings: false, use_bias: false, use_qkv_bias: false, use_qk_norm: true, norm_head: false,
  pad_token_id: 156892, hidden_act: 'silu',
};

const logit = (s: number) => Math.log(s / (1 - s));

describe('LLaDA2 configs (DESIGN §13.1)', () => {
  it('LLaDA2.0-mini: fused-qkv Qwen-like layers, half rotary, a dense first layer, sigmoid group-limited mixtures, blocks of 32', () => {
    const d = normaliseConfig(LLADA2_MINI);
    expect(d).toMatchObject({
      architecture: 'llada2_moe', hiddenSize: 2048, numLayers: 20, numHeads: 16, numKvHeads: 4, headDim: 128, rotaryDim: 64,
      intermediateSize: 5120, qkNorm: true, qkvBias: false, shiftLogits: false, blockSize: 32, ropeTheta: 600000, rmsNormEps: 1e-6,
    });
    expect(d.outputBias).toBeUndefined();
    expect(d.moe).toEqual({
      numExperts: 256, topK: 8, expertSize: 512, sharedExpertSize: 512, normTopK: true, expertBias: true,
      sigmoidRouting: { groups: 8, topGroups: 4, scale: 2.5 }, moeLayers: [false, ...Array(19).fill(true)],
    });
    expect(d.special).toEqual({ mask: 156895, eos: 156892, pad: 156892 });
    expect(d.stopIds).toEqual([156892]);
    // A block-diffusion family of its own: the scheduler decodes it with SDAR's procedure.
    expect(schedulerModelInfo(d)).toMatchObject({ architecture: 'llada2_moe', blockSize: 32, shiftLogits: false });
    expect(routingRule(d.moe!)).toEqual({ kind: 'sigmoid_grouped', groups: 8, topGroups: 4, scale: 2.5 });
  });

  it('the published defaults where a field is absent: use_bias (the output projection bias) on, block size from config.json', () => {
    const { use_bias: _, ...noBias } = LLADA2_MINI;
    expect(normaliseConfig(noBias).outputBias).toBe(true);
    expect(normaliseConfig({ ...LLADA2_MINI, block_size: 16 }).blockSize).toBe(16);
    expect(normaliseConfig({ ...LLADA2_MINI, num_shared_experts: 0 }).moe!.sharedExpertSize).toBeUndefined();
    expect(normaliseConfig({ ...LLADA2_MINI, num_shared_experts: 2 }).moe!.sharedExpertSize).toBe(1024);
    // num_experts null: every layer dense, as the published decoder layer builds it; absent: the config class's 16.
    expect(normaliseConfig({ ...LLADA2_MINI, num_experts: null }).moe).toBeUndefined();
    const { num_experts: __, ...noExperts } = LLADA2_MINI;
    expect(normaliseConfig(noExperts).moe!.numExperts).toBe(16);
  });

  it('refuses what the published code would not run, naming the field', () => {
    const bad = (over: Record<string, unknown>, re: RegExp) => expect(() => normaliseConfig({ ...LLADA2_MINI, ...over })).toThrow(re);
    bad({ score_function: 'softmax' }, /"score_function": "softmax" is not supported/);
    bad({ n_group: 3 }, /n_group 3 must divide num_experts 256/);
    bad({ n_group: 256 }, /groups of at least 2/);
    bad({ topk_group: 9 }, /topk_group 9 exceeds n_group 8/);
    bad({ num_experts_per_tok: 200 }, /num_experts_per_tok 200 exceeds the 128 experts of topk_group 4 groups/);
    bad({ norm_head: true }, /"norm_head": true/);
    bad({ rope_scaling: { type: 'linear', factor: 2 } }, /"rope_scaling"/);
    bad({ partial_rotary_factor: 0.2 }, /partial_rotary_factor" 0.2 gives 25 rotary dims of head dim 128; it must be a positive even number/);
    bad({ first_k_dense_replace: -1 }, /first_k_dense_replace/);
    bad({ num_key_value_heads: undefined }, /missing field "num_key_value_heads"/);
  });

  it('tensor names: query_key_value read as q, k, v row slices; dense, router, expert bias, experts, shared experts', () => {
    const d = normaliseConfig({ ...LLADA2_MINI, num_hidden_layers: 2, use_bias: true });
    const names = tensorNames(d);
    const [l0, l1] = names.layers;
    const qkv = 'model.layers.0.attention.query_key_value.weight';
    expect([l0.q, l0.k, l0.v]).toEqual([rowSliceName(qkv, 0, 2048), rowSliceName(qkv, 2048, 2560), rowSliceName(qkv, 2560, 3072)]);
    expect(l0.o).toBe('model.layers.0.attention.dense.weight');
    expect(l0.oBias).toBe('model.layers.0.attention.dense.bias');
    expect(l0.qNorm).toBe('model.layers.0.attention.query_layernorm.weight');
    expect(isMoeLayer(l0)).toBe(false);
    if (!isMoeLayer(l1)) throw new Error('layer 1 should be a mixture');
    expect(l1.router).toBe('model.layers.1.mlp.gate.weight');
    expect(l1.expertBias).toBe('model.layers.1.mlp.gate.expert_bias');
    expect(l1.experts[255].up).toBe('model.layers.1.mlp.experts.255.up_proj.weight');
    expect(l1.shared?.down).toBe('model.layers.1.mlp.shared_experts.down_proj.weight');
    expect(names.embed).toBe('model.word_embeddings.weight');
    const shapes = expectedShapes(d, names);
    // The fused tensor is expected, with all its rows; its slices are not tensors of the checkpoint.
    expect(shapes.get(qkv)).toEqual([3072, 2048]);
    expect(shapes.has(l0.q)).toBe(false);
    expect(shapes.get('model.layers.0.mlp.gate_proj.weight')).toEqual([5120, 2048]);
    expect(shapes.get(l1.shared!.gate)).toEqual([512, 2048]);
    expect(shapes.get(l1.expertBias!)).toEqual([256]);
    expect(shapes.get(l0.oBias!)).toEqual([2048]);
  });

  it('engines name what they lack: sigmoid group-limited routing and the output bias beside the mixture and partial rotary', () => {
    const d = normaliseConfig({ ...LLADA2_MINI, use_bias: true });
    expect(missingLayerFeatures(d, {})).toBe('llada2_moe models with mixture-of-experts FFNs (256 experts, top 8), partial rotary embeddings (64 of 128 dims), ' +
      'sigmoid group-limited routing (8 groups, top 4, scale 2.5), an attention output bias are not implemented by this engine');
    expect(missingLayerFeatures(d, { moe: true, partialRotary: true })).toMatch(/with sigmoid group-limited routing .*, an attention output bias are/);
    expect(missingLayerFeatures(d, { moe: true, partialRotary: true, sigmoidRouting: true, outputBias: true })).toBeUndefined();
  });
});

describe('routeRows: the sigmoid group-limited rule (DESIGN §13.1)', () => {
  const rule = { kind: 'sigmoid_grouped', groups: 2, topGroups: 1, scale: 2.5 } as const;
  // Group 0 holds the single best expert (0.95) but group 1 the best pair (0.60 + 0.58 > 0.95 + 0.10).
  const s = [0.95, 0.10, 0.10, 0.10, 0.60, 0.58, 0.20, 0.10];

  it('the best group by its two best scores, then the top k in it; weights the normalised sigmoid scores × the scale', () => {
    const r = routeRows(s.map(logit), 1, 8, 2, null, rule);
    expect(Array.from(r.experts)).toEqual([4, 5]);
    expect(r.weights[0]).toBeCloseTo((0.60 / 1.18) * 2.5, 12);
    expect(r.weights[1]).toBeCloseTo((0.58 / 1.18) * 2.5, 12);
  });

  it('the expert bias steers the choice but is not in the weights', () => {
    const bias = [0, 0, 0, 0, 0, 0, 0.5, 0]; // expert 6: 0.20 + 0.5 = 0.70 for the choice, 0.20 as a weight
    const r = routeRows(s.map(logit), 1, 8, 2, bias, rule);
    expect(Array.from(r.experts)).toEqual([4, 6]);
    expect(r.weights[0]).toBeCloseTo((0.60 / 0.80) * 2.5, 12);
    expect(r.weights[1]).toBeCloseTo((0.20 / 0.80) * 2.5, 12);
    // The bias moves groups too: 0.5 on expert 1 makes group 0's pair 0.95 + 0.60 the best.
    expect(Array.from(routeRows(s.map(logit), 1, 8, 2, [0, 0.5, 0, 0, 0, 0, 0, 0], rule).experts)).toEqual([0, 1]);
  });

  it('k = 1: the chosen score × the scale, not normalised to 1', () => {
    const r = routeRows(s.map(logit), 1, 8, 1, null, rule);
    expect(Array.from(r.experts)).toEqual([4]);
    expect(r.weights[0]).toBeCloseTo(0.60 * 2.5, 12);
  });

  it('ties go to the lower group and the lower expert', () => {
    const r = routeRows(Array(8).fill(0), 1, 8, 2, null, rule);
    expect(Array.from(r.experts)).toEqual([0, 1]);
    expect(Array.from(r.weights)).toEqual([1.25, 1.25]);
  });

  it("a row's choice depends on its own logits only (batch invariance), and the softmax rule is unchanged by the second", () => {
    const rows = [s.map(logit), s.slice().reverse().map(logit), Array.from({ length: 8 }, (_, e) => Math.sin(e))];
    const together = routeRows(rows.flat(), 3, 8, 2, null, rule);
    rows.forEach((row, i) => {
      const alone = routeRows(row, 1, 8, 2, null, rule);
      expect(Array.from(together.experts.subarray(2 * i, 2 * i + 2))).toEqual(Array.from(alone.experts));
      expect(Array.from(together.weights.subarray(2 * i, 2 * i + 2))).toEqual(Array.from(alone.weights));
    });
    const soft = routeRows(rows.flat(), 3, 8, 2, null, { kind: 'softmax', normTopK: false });
    expect(soft).toEqual(routeRows(rows.flat(), 3, 8, 2, null, false));
    expect(Array.from(soft.experts.subarray(0, 2))).toEqual([0, 4]); // softmax has no groups
  });

  it('refuses a group split the rule cannot make', () => {
    expect(() => routeRows(Array(8).fill(0), 1, 8, 2, null, { ...rule, groups: 8 })).toThrow(/not a valid group-limited choice/);
    expect(() => routeRows(Array(8).fill(0), 1, 8, 5, null, rule)).toThrow(/not a valid group-limited choice/);
  });
});

describe('row slices of a fused tensor', () => {
  it('read as tensors of their own, checked against the stored tensor, which alone counts as a tensor', async () => {
    const dir = await tempDir();
    const file = join(dir, 'model.safetensors');
    await writeSafetensors(file, [f32Tensor('fused.weight', [5, 3], (i) => i), f32Tensor('other', [2])]);
    const a = await SafetensorsArchive.open(file);
    try {
      expect(Array.from(await a.readF32(rowSliceName('fused.weight', 1, 3)))).toEqual([3, 4, 5, 6, 7, 8]);
      expect(a.info(rowSliceName('fused.weight', 3, 5)).shape).toEqual([2, 3]);
      expect(a.tensors.size).toBe(2);
      expect(() => a.info(rowSliceName('fused.weight', 4, 6))).toThrow(/rows \[4, 6\) are outside the tensor's 5 rows/);
      expect(() => a.info(rowSliceName('missing.weight', 0, 1))).toThrow(ModelFormatError);
    } finally {
      await a.close();
    }
  });

  it('a LLaDA2 checkpoint missing its fused projection names the stored tensor; the layer count counts it once', async () => {
    const d = normaliseConfig({ ...LLADA2_MINI, num_hidden_layers: 1, first_k_dense_replace: 1, hidden_size: 8, num_attention_heads: 2,
      num_key_value_heads: 1, head_dim: 4, intermediate_size: 8, vocab_size: 16, max_position_embeddings: 64, mask_token_id: 15, eos_token_id: 14, pad_token_id: 14 });
    const shapes = expectedShapes(d);
    const dir = await tempDir();
    const file = join(dir, 'model.safetensors');
    const qkv = 'model.layers.0.attention.query_key_value.weight';
    expect(shapes.get(qkv)).toEqual([16, 8]);
    await writeSafetensors(file, [...shapes].filter(([n]) => n !== qkv).map(([n, s]) => f32Tensor(n, s)));
    const a = await SafetensorsArchive.open(file);
    try {
      expect(() => checkTensors(d, a)).toThrow(`missing tensor(s): ${qkv}`);
      // 9 stored tensors in the layer (q, k, v one of them), 11 in the file with the embedding, norm and head: enough.
      expect(() => checkLayerCount(d, { tensors: { size: 9 + 3 } }, 'x')).not.toThrow();
      expect(() => checkLayerCount(d, { tensors: { size: 8 } }, 'x')).toThrow(/1 layers \(9 tensors each\)/);
    } finally {
      await a.close();
    }
  });
});
