import { describe, expect, it } from 'vitest';
import { ModelFormatError, a2dSettingFromEnv, expectedShapes, normaliseConfig, tensorNames } from '../src/index.js';
import { tinyDreamConfig, tinyLladaConfig } from './helpers.js';

/** LLaDA-8B-Instruct's config.json, the keys that matter (values from its model card / DESIGN §1). */
const LLADA_8B = {
  architectures: ['LLaDAModelLM'], model_type: 'llada', d_model: 4096, n_layers: 32, n_heads: 32, n_kv_heads: 32,
  mlp_hidden_size: 12288, mlp_ratio: 4, vocab_size: 126464, embedding_size: 126464, max_sequence_length: 4096,
  rope_theta: 500000.0, rms_norm_eps: 1e-5, mask_token_id: 126336, eos_token_id: 126081, pad_token_id: 126081,
  weight_tying: false, include_bias: false, include_qkv_bias: false, layer_norm_type: 'rms',
};

describe('normaliseConfig', () => {
  it('LLaDA-8B', () => {
    const d = normaliseConfig(LLADA_8B);
    expect(d).toMatchObject({
      architecture: 'llada', hiddenSize: 4096, numLayers: 32, numHeads: 32, numKvHeads: 32, headDim: 128,
      intermediateSize: 12288, vocabSize: 126464, maxPositions: 4096, ropeTheta: 500000, rmsNormEps: 1e-5,
      qkvBias: false, tiedEmbeddings: false, shiftLogits: false,
    });
    expect(d.special).toEqual({ mask: 126336, eos: 126081, endOfTurn: 126348, bos: 126080, pad: 126081 });
  });

  it('LLaDA special ids fall back to the DESIGN §1 defaults when missing and the vocab holds them', () => {
    const { mask_token_id: _m, eos_token_id: _e, pad_token_id: _p, ...rest } = LLADA_8B;
    expect(normaliseConfig(rest).special).toEqual({ mask: 126336, eos: 126081, endOfTurn: 126348, bos: 126080 });
  });

  it('Dream (Qwen2 keys, GQA, biases, shifted logits)', () => {
    const d = normaliseConfig({
      model_type: 'Dream', hidden_size: 3584, intermediate_size: 18944, num_hidden_layers: 28, num_attention_heads: 28,
      num_key_value_heads: 4, vocab_size: 152064, max_position_embeddings: 131072, rope_theta: 1000000.0,
      rms_norm_eps: 1e-6, tie_word_embeddings: false, mask_token_id: 151666, pad_token_id: 151643, eos_token_id: 151643,
    });
    expect(d).toMatchObject({ architecture: 'dream', headDim: 128, numKvHeads: 4, qkvBias: true, shiftLogits: true, tiedEmbeddings: false });
    expect(d.special).toEqual({ mask: 151666, eos: 151643, endOfTurn: 151645, pad: 151643 });
  });

  it('tiny models drop defaults that do not fit their vocab', () => {
    const d = normaliseConfig(tinyLladaConfig());
    expect(d.special).toEqual({ mask: 31, eos: 30 });
  });

  it('ids come from generation_config.json and tokenizer_config.json when config.json lacks them', () => {
    const cfg = tinyLladaConfig({ mask_token_id: undefined, eos_token_id: undefined });
    const d = normaliseConfig(cfg, {
      generationConfig: { eos_token_id: [29, 28], bos_token_id: 1 },
      tokenizerConfig: { added_tokens_decoder: { '31': { content: '<|mdm_mask|>' }, '27': { content: '<|eot_id|>' } } },
    });
    expect(d.special).toEqual({ mask: 31, eos: 29, endOfTurn: 27, bos: 1 });
  });

  it('unknown architecture', () => {
    expect(() => normaliseConfig({ model_type: 'llama' }, { file: 'm/config.json' })).toThrow(
      /unknown architecture: model_type "llama"; supported are "llada".*\(file m\/config.json\)/,
    );
  });

  it('missing field', () => {
    expect(() => normaliseConfig(tinyDreamConfig({ intermediate_size: undefined }))).toThrow(/missing field "intermediate_size"/);
  });

  it('non-positive field', () => {
    expect(() => normaliseConfig(tinyLladaConfig({ n_layers: 0 }))).toThrow(/field "n_layers" must be a positive integer, got 0/);
  });

  it('contradictory config: heads do not divide d_model', () => {
    const e = (() => { try { normaliseConfig(tinyLladaConfig({ n_heads: 3, n_kv_heads: 3 })); } catch (x) { return x; } })();
    expect(e).toBeInstanceOf(ModelFormatError);
    expect((e as Error).message).toMatch(/contradictory config: n_heads 3 does not divide d_model 8/);
  });

  it('contradictory config: kv heads do not divide heads', () => {
    expect(() => normaliseConfig(tinyDreamConfig({ num_key_value_heads: 3 }))).toThrow(
      /num_key_value_heads 3 does not divide num_attention_heads 4/,
    );
  });

  it('contradictory config: special id outside the vocab', () => {
    expect(() => normaliseConfig(tinyLladaConfig({ mask_token_id: 32 }))).toThrow(/special token "mask" id 32 is outside the vocab of 32/);
  });

  it('missing mask id with a vocab too small for the default', () => {
    expect(() => normaliseConfig(tinyLladaConfig({ mask_token_id: undefined }))).toThrow(/"mask_token_id" is missing and the default 126336 does not fit/);
  });
});

/** Fast-dLLM v2 1.5B's config.json (Qwen2.5-1.5B-Instruct's shape with bd_size; DESIGN §8). */
const FAST_DLLM_V2_1_5B = {
  architectures: ['Fast_dLLM_QwenForCausalLM'], model_type: 'Fast_dLLM_Qwen', bd_size: 32, hidden_size: 1536, intermediate_size: 8960,
  num_hidden_layers: 28, num_attention_heads: 12, num_key_value_heads: 2, vocab_size: 151936, max_position_embeddings: 32768,
  rope_theta: 1000000.0, rms_norm_eps: 1e-6, tie_word_embeddings: true, bos_token_id: 151643, eos_token_id: 151645,
  use_sliding_window: false, sliding_window: 32768, max_window_layers: 21, rope_scaling: null, hidden_act: 'silu',
};

/** SDAR-4B-Chat's config.json (Qwen3-4B's shape with block_size; DESIGN §8). */
const SDAR_4B = {
  architectures: ['SDARForCausalLM'], model_type: 'sdar', block_size: 4, attention_bias: false, bos_token_id: 151643, eos_token_id: 151643,
  mask_token_id: 151669, head_dim: 128, hidden_size: 2560, intermediate_size: 9728, max_position_embeddings: 32768, num_attention_heads: 32,
  num_hidden_layers: 36, num_key_value_heads: 8, rms_norm_eps: 1e-6, rope_scaling: null, rope_theta: 1000000, sliding_window: null,
  tie_word_embeddings: false, use_sliding_window: false, vocab_size: 151936,
};

describe('normaliseConfig: block-diffusion models', () => {
  it('Fast-dLLM v2 1.5B: Qwen2.5 layers, tied, blocks from bd_size, shifted logits, mask 151665, stops from config and generation_config', () => {
    const d = normaliseConfig(FAST_DLLM_V2_1_5B, { generationConfig: { eos_token_id: [151645, 151643] } });
    expect(d).toMatchObject({
      architecture: 'fast_dllm_v2', hiddenSize: 1536, numLayers: 28, numHeads: 12, numKvHeads: 2, headDim: 128, intermediateSize: 8960,
      vocabSize: 151936, ropeTheta: 1e6, qkvBias: true, qkNorm: false, tiedEmbeddings: true, shiftLogits: true, blockSize: 32,
    });
    expect(d.special).toMatchObject({ mask: 151665, eos: 151645, endOfTurn: 151645 });
    expect(d.stopIds).toEqual([151643, 151645]);
    const names = tensorNames(d);
    expect(names.lmHead).toBe('model.embed_tokens.weight');
    expect(names.layers[0].qBias).toBe('model.layers.0.self_attn.q_proj.bias');
    expect(names.layers[0].qNorm).toBeUndefined();
  });

  it('SDAR 4B: Qwen3 layers (head_dim from config, q/k norms, no biases), untied, unshifted, block_size', () => {
    const d = normaliseConfig(SDAR_4B, { generationConfig: { eos_token_id: [151645, 151643] } });
    expect(d).toMatchObject({
      architecture: 'sdar', hiddenSize: 2560, numHeads: 32, numKvHeads: 8, headDim: 128, qkvBias: false, qkNorm: true,
      tiedEmbeddings: false, shiftLogits: false, blockSize: 4,
    });
    expect(d.special).toMatchObject({ mask: 151669, eos: 151643, endOfTurn: 151645 });
    expect(d.stopIds).toEqual([151643, 151645]);
    const names = tensorNames(d);
    expect(names.layers[3]).toMatchObject({ qNorm: 'model.layers.3.self_attn.q_norm.weight', kNorm: 'model.layers.3.self_attn.k_norm.weight' });
    expect(names.layers[3].qBias).toBeUndefined();
    const shapes = expectedShapes(d, names);
    expect(shapes.get('model.layers.3.self_attn.q_proj.weight')).toEqual([32 * 128, 2560]);
    expect(shapes.get('model.layers.3.self_attn.o_proj.weight')).toEqual([2560, 32 * 128]);
    expect(shapes.get('model.layers.3.self_attn.k_norm.weight')).toEqual([128]);
  });

  it('the mask id comes from tokenizer_config.json when config.json has none (mask_token, or the family\'s mask text)', () => {
    const { mask_token_id: _m, ...rest } = SDAR_4B;
    const tokenizerConfig = { mask_token: '<|MASK|>', added_tokens_decoder: { '151669': { content: '<|MASK|>' }, '151645': { content: '<|im_end|>' } } };
    expect(normaliseConfig({ ...rest, vocab_size: 151936 }, { tokenizerConfig }).special.mask).toBe(151669);
    const v2 = normaliseConfig({ ...FAST_DLLM_V2_1_5B, vocab_size: 151680 }, { tokenizerConfig: { added_tokens_decoder: { '151665': { content: '|<MASK>|' } } } });
    expect(v2.special.mask).toBe(151665);
  });

  it('refuses variants it does not implement, naming the field', () => {
    expect(() => normaliseConfig({ ...FAST_DLLM_V2_1_5B, use_sliding_window: true })).toThrow(/"use_sliding_window": true \(sliding-window attention\) is not supported/);
    expect(() => normaliseConfig({ ...SDAR_4B, rope_scaling: { rope_type: 'yarn', factor: 4 } })).toThrow(/"rope_scaling": \{"rope_type":"yarn","factor":4\} is not supported/);
    expect(() => normaliseConfig({ ...SDAR_4B, num_experts: 128, num_experts_per_tok: 8 })).toThrow(/"num_experts": 128 describes a mixture-of-experts model/);
    expect(() => normaliseConfig({ ...SDAR_4B, model_type: 'sdar_moe' })).toThrow(/model_type "sdar_moe" \(of the mixture-of-experts models only LLaDA-MoE, "lladamoe", and LLaDA2, "llada2_moe", are supported\)/);
    expect(() => normaliseConfig({ ...SDAR_4B, attention_bias: true })).toThrow(/"attention_bias": true/);
    const { bd_size: _b, ...noBlock } = FAST_DLLM_V2_1_5B;
    expect(() => normaliseConfig(noBlock)).toThrow(/missing field "bd_size"/);
    expect(() => normaliseConfig({ ...SDAR_4B, head_dim: 127 })).toThrow(/head_dim 127 must be even/);
  });

  it('LLaDA and Dream keep their stop ids (EOS, end of turn) and stay bidirectional', () => {
    const d = normaliseConfig(LLADA_8B);
    expect(d.stopIds).toEqual([126081, 126348]);
    expect(d.blockSize).toBeUndefined();
  });
});

/** dllm-hub/Qwen3-0.6B-diffusion-*-v0.1's config.json: Qwen3-0.6B's with model_type a2d-qwen3 (DESIGN §15). */
const A2D_QWEN3_0_6B = {
  model_type: 'a2d-qwen3', hidden_size: 1024, intermediate_size: 3072, num_hidden_layers: 28, num_attention_heads: 16,
  num_key_value_heads: 8, head_dim: 128, vocab_size: 151936, max_position_embeddings: 40960, rope_theta: 1000000, rms_norm_eps: 1e-6,
  tie_word_embeddings: true, attention_bias: false, use_sliding_window: false, sliding_window: null, max_window_layers: 28,
  rope_scaling: null, bos_token_id: 151643, eos_token_id: 151645, hidden_act: 'silu',
};
/** dllm-hub/Qwen2.5-Coder-0.5B-Instruct-diffusion-*-v0.1: Qwen2.5-Coder-0.5B-Instruct's with model_type a2d-qwen2. */
const A2D_QWEN2_0_5B = {
  model_type: 'a2d-qwen2', hidden_size: 896, intermediate_size: 4864, num_hidden_layers: 24, num_attention_heads: 14,
  num_key_value_heads: 2, vocab_size: 151936, max_position_embeddings: 32768, rope_theta: 1000000, rms_norm_eps: 1e-6,
  tie_word_embeddings: true, use_sliding_window: false, sliding_window: 32768, max_window_layers: 24, rope_scaling: null,
  bos_token_id: 151643, eos_token_id: 151645, hidden_act: 'silu',
};
/** The saved tokenizer: Qwen3's added tokens end at 151668, so <|mask|> is 151669 (Qwen2.5's: 151665). */
const maskTokenizer = (id: number) => ({ added_tokens: [{ id: 151643, content: '<|endoftext|>' }, { id: 151645, content: '<|im_end|>' }, { id, content: '<|mask|>' }] });

describe('normaliseConfig: A2D (dllm) checkpoints, DESIGN §15', () => {
  it('a2d-qwen3 from a "-mdlm-" directory: Qwen3 layers, full attention, unshifted, <|mask|> from tokenizer.json', () => {
    const d = normaliseConfig(A2D_QWEN3_0_6B, { path: '/m/dllm-hub/Qwen3-0.6B-diffusion-mdlm-v0.1', tokenizerJson: maskTokenizer(151669) });
    expect(d).toMatchObject({ architecture: 'a2d_mdlm', headDim: 128, qkNorm: true, qkvBias: false, shiftLogits: false, tiedEmbeddings: true });
    expect(d.blockSize).toBeUndefined();
    expect(d.a2d).toEqual({ base: 'qwen3', variant: 'mdlm', variantSource: 'the directory name "Qwen3-0.6B-diffusion-mdlm-v0.1"' });
    expect(d.special.mask).toBe(151669);
    expect(d.stopIds).toEqual([151645]);
  });

  it('a2d-qwen2 from a "-bd3lm-" directory (HF cache layout): Qwen2 layers, block-causal, block size 32 by default', () => {
    const d = normaliseConfig(A2D_QWEN2_0_5B, {
      path: '/c/models--dllm-hub--Qwen2.5-Coder-0.5B-Instruct-diffusion-bd3lm-v0.1/snapshots/0a1b', tokenizerJson: maskTokenizer(151665),
      generationConfig: { eos_token_id: [151645, 151643] },
    });
    expect(d).toMatchObject({ architecture: 'a2d_bd3lm', blockSize: 32, qkNorm: false, qkvBias: true, shiftLogits: false, headDim: 64 });
    expect(d.a2d?.blockSizeSource).toMatch(/default/);
    expect(d.special.mask).toBe(151665);
    expect(d.stopIds).toEqual([151643, 151645]);
  });

  it('the setting wins over the name; config.json block_size; the default is MDLM; bad settings are named', () => {
    const tok = maskTokenizer(151669);
    expect(normaliseConfig(A2D_QWEN3_0_6B, { tokenizerJson: tok }).a2d?.variantSource).toMatch(/^the default/);
    const d = normaliseConfig({ ...A2D_QWEN3_0_6B, block_size: 8 }, { path: 'x-mdlm', tokenizerJson: tok, a2d: { variant: 'BD3LM', source: 'FAST_DLLM_A2D_VARIANT' } });
    expect(d).toMatchObject({ architecture: 'a2d_bd3lm', blockSize: 8, a2d: { variantSource: 'FAST_DLLM_A2D_VARIANT', blockSizeSource: 'config.json block_size' } });
    expect(normaliseConfig(A2D_QWEN3_0_6B, { tokenizerJson: tok, a2d: { variant: 'bd3lm', blockSize: 16 } }).blockSize).toBe(16);
    expect(() => normaliseConfig(A2D_QWEN3_0_6B, { tokenizerJson: tok, a2d: { variant: 'ar', source: 'FAST_DLLM_A2D_VARIANT' } }))
      .toThrow(/FAST_DLLM_A2D_VARIANT is "ar"; an A2D checkpoint is "mdlm" \(full attention\) or "bd3lm"/);
    expect(() => normaliseConfig(A2D_QWEN3_0_6B, { tokenizerJson: tok, path: 'a/mdlm-vs-bd3lm' })).toThrow(/says both mdlm and bd3lm/);
    expect(() => normaliseConfig(A2D_QWEN3_0_6B, { tokenizerJson: tok, path: 'q-mdlm', a2d: { blockSize: 8, source: 'FAST_DLLM_A2D_BLOCK_SIZE' } }))
      .toThrow(/only BD3LM checkpoints have; this one is MDLM/);
    expect(() => normaliseConfig(A2D_QWEN3_0_6B, { tokenizerJson: tok, a2d: { variant: 'bd3lm', blockSize: 0 } })).toThrow(/block size must be a positive integer/);
  });

  it('the mask id: tokenizer_config.json first, then tokenizer.json; none is an error, never a guess', () => {
    const d = normaliseConfig(A2D_QWEN3_0_6B, { tokenizerConfig: { mask_token: '<|mask|>', added_tokens_decoder: { '151669': { content: '<|mask|>' } } } });
    expect(d.special.mask).toBe(151669);
    expect(() => normaliseConfig(A2D_QWEN3_0_6B, { file: 'q/config.json' })).toThrow(/no mask token: dllm's A2D checkpoints add "<\|mask\|>" to the tokenizer/);
  });

  it('a2dSettingFromEnv', () => {
    expect(a2dSettingFromEnv({})).toBeUndefined();
    expect(a2dSettingFromEnv({ FAST_DLLM_A2D_VARIANT: 'bd3lm', FAST_DLLM_A2D_BLOCK_SIZE: '16' }))
      .toEqual({ variant: 'bd3lm', blockSize: 16, source: 'FAST_DLLM_A2D_VARIANT / FAST_DLLM_A2D_BLOCK_SIZE' });
    expect(a2dSettingFromEnv({ FAST_DLLM_A2D_BLOCK_SIZE: 'x' })?.blockSize).toBeNaN();
  });
});
