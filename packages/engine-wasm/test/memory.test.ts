/**
 * The wasm32 budget for real shapes (DESIGN §8): Fast-dLLM v2 1.5B (Qwen2.5-1.5B, tied embeddings, vocab 151936)
 * fits in 4 GiB with bf16 weights because a tied embedding is read from the packed LM head (no f32 copy of
 * 151936 × 1536 beside it), and the weight count follows head_dim from config (SDAR / Qwen3).
 */
import { describe, expect, it } from 'vitest';
import { normaliseConfig } from '@fast-dllm/model';
import { WASM32_MAX_BYTES, packedLength, scratchBytes, sequenceCacheBytes, weightBytes } from '../src/index.js';

const V2_1_5B = normaliseConfig({
  model_type: 'Fast_dLLM_Qwen', bd_size: 32, hidden_size: 1536, intermediate_size: 8960, num_hidden_layers: 28, num_attention_heads: 12,
  num_key_value_heads: 2, vocab_size: 151936, max_position_embeddings: 32768, rope_theta: 1e6, rms_norm_eps: 1e-6, tie_word_embeddings: true,
  eos_token_id: 151645,
});

describe('wasm32 memory of block-diffusion shapes', () => {
  it('Fast-dLLM v2 1.5B in bf16: the tied embedding is the packed LM head; weights, a 4096-token sequence and a block pass fit in 4 GiB', () => {
    const { hiddenSize: d, numHeads: H, numKvHeads: KV, headDim: hd, intermediateSize: ff, vocabSize: V, numLayers } = V2_1_5B;
    const linear = numLayers * (packedLength(H * hd, d) + 2 * packedLength(KV * hd, d) + packedLength(d, H * hd) + 2 * packedLength(ff, d) + packedLength(d, ff)) + packedLength(V, d);
    const small = numLayers * (2 * d + H * hd + 2 * KV * hd) + d; // norms and q/k/v biases, f32
    expect(weightBytes(V2_1_5B, 'bf16')).toBe(2 * linear + 4 * small); // no (V, d) f32 embedding
    expect(weightBytes({ ...V2_1_5B, tiedEmbeddings: false }, 'bf16') - weightBytes(V2_1_5B, 'bf16')).toBe(4 * V * d);
    const total = weightBytes(V2_1_5B, 'bf16') + sequenceCacheBytes(V2_1_5B, 4096) + scratchBytes(V2_1_5B, 64, 4096, 2);
    expect(total).toBeLessThan(WASM32_MAX_BYTES);
    // With an f32 copy of the embedding beside the bf16 head it would not fit with the same sequence.
    expect(total + 4 * V * d).toBeGreaterThan(WASM32_MAX_BYTES);
  });

  it('Qwen3 shapes count head_dim from config and the q/k norm weights', () => {
    const sdar = normaliseConfig({
      model_type: 'sdar', block_size: 4, head_dim: 128, hidden_size: 2048, intermediate_size: 6144, num_hidden_layers: 28, num_attention_heads: 16,
      num_key_value_heads: 8, vocab_size: 151936, max_position_embeddings: 32768, rope_theta: 1e6, rms_norm_eps: 1e-6, tie_word_embeddings: true,
      eos_token_id: 151643, mask_token_id: 151669,
    });
    const { hiddenSize: d, numHeads: H, numKvHeads: KV, headDim: hd, intermediateSize: ff, vocabSize: V, numLayers } = sdar;
    const linear = numLayers * (packedLength(H * hd, d) + 2 * packedLength(KV * hd, d) + packedLength(d, H * hd) + 2 * packedLength(ff, d) + packedLength(d, ff)) + packedLength(V, d);
    expect(weightBytes(sdar, 'bf16')).toBe(2 * linear + 4 * (numLayers * (2 * d + 2 * hd) + d));
  });
});
