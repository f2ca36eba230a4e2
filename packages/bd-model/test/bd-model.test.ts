import { existsSync, readFileSync, statSync } from 'node:fs';
import { join } from 'node:path';
import { defaultModelDir, loadEvalSet } from '@fast-dllm/default-model';
import { loadTokenizer, readModelConfig } from '@fast-dllm/model';
import { describe, expect, it } from 'vitest';
import { bdModelDir, bdModelGenLength } from '../src/index.js';

const readJson = (f: string) => JSON.parse(readFileSync(join(bdModelDir, f), 'utf8')) as Record<string, unknown>;

describe('the trained Fast-dLLM v2 model directory', () => {
  it('has every file', () => {
    for (const f of ['config.json', 'model.safetensors', 'tokenizer.json', 'tokenizer_config.json', 'generation_config.json', 'training_log.tsv', 'training_summary.json']) {
      expect(existsSync(join(bdModelDir, f)), f).toBe(true);
    }
  });

  it('loads as a Fast-dLLM v2 model: blocks of 16, tied, shifted, the bundled vocabulary\'s mask and stop tokens', async () => {
    const d = await readModelConfig(bdModelDir);
    expect(d).toMatchObject({ architecture: 'fast_dllm_v2', blockSize: 16, tiedEmbeddings: true, shiftLogits: true, qkvBias: true, vocabSize: 29 });
    // <|mdm_mask|> = 5; the answer ends at <|eot_id|> = 2, <|endoftext|> = 1 is EOS.
    expect(d.special.mask).toBe(5);
    expect(d.stopIds).toEqual([1, 2]);
  });

  it('config.json matches the safetensors header (Qwen2 names, q/k/v biases, no lm_head: tied)', () => {
    const cfg = readJson('config.json') as Record<string, number>;
    const file = join(bdModelDir, 'model.safetensors');
    const buf = readFileSync(file);
    const hlen = Number(buf.readBigUInt64LE(0));
    const header = JSON.parse(buf.subarray(8, 8 + hlen).toString('utf8')) as Record<string, { shape: number[]; data_offsets: number[]; dtype: string }>;
    const hd = cfg.hidden_size / cfg.num_attention_heads;
    expect(header['model.embed_tokens.weight'].shape).toEqual([cfg.vocab_size, cfg.hidden_size]);
    expect(header['lm_head.weight']).toBeUndefined();
    const last = `model.layers.${cfg.num_hidden_layers - 1}.`;
    expect(header[`${last}self_attn.k_proj.weight`].shape).toEqual([cfg.num_key_value_heads * hd, cfg.hidden_size]);
    expect(header[`${last}self_attn.k_proj.bias`].shape).toEqual([cfg.num_key_value_heads * hd]);
    expect(header[`${last}mlp.down_proj.weight`].shape).toEqual([cfg.hidden_size, cfg.intermediate_size]);
    const tensors = Object.entries(header).filter(([k]) => k !== '__metadata__').map(([, v]) => v);
    expect(tensors.every((t) => t.dtype === 'F32')).toBe(true);
    expect(8 + hlen + Math.max(...tensors.map((t) => t.data_offsets[1]))).toBe(statSync(file).size);
  });

  it('uses the bundled model\'s tokenizer, and every eval prompt is one 16-token block through the chat template', async () => {
    for (const f of ['tokenizer.json', 'tokenizer_config.json']) {
      expect(readFileSync(join(bdModelDir, f), 'utf8'), f).toBe(readFileSync(join(defaultModelDir, f), 'utf8'));
    }
    const tok = await loadTokenizer(bdModelDir, { modelVocabSize: 29 });
    const items = loadEvalSet();
    expect(items).toHaveLength(200);
    for (const it of items) {
      const text = tok.applyChatTemplate([{ role: 'user', content: it.prompt }], { addGenerationPrompt: true });
      const ids = tok.encode(text, { addSpecial: false });
      expect(ids, it.prompt).toHaveLength(16);
      // The answer with its <|eot_id|> fits the cap the model was trained for.
      expect(tok.encode(it.answer_text, { addSpecial: false }).length + 1).toBeLessThanOrEqual(bdModelGenLength);
    }
  });
});
