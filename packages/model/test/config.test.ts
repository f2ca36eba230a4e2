import { describe, expect, it } from 'vitest';
import { ModelFormatError, normaliseConfig } from '../src/index.js';
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
