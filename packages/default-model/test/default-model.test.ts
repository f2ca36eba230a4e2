import { existsSync, readFileSync, statSync } from 'node:fs';
import { join } from 'node:path';
import { Tokenizer } from '@huggingface/tokenizers';
import { describe, expect, it } from 'vitest';
import { defaultModelDir, extractAnswer, isEvalPair, loadEvalSet, scoreExactMatch } from '../src/index.js';

describe('scorer', () => {
  it('extracts the number after the last "answer:"', () => {
    expect(extractAnswer('8 + 0 = 8, 9 + 7 = 16 carry 1, answer: 168')).toBe('168');
    expect(extractAnswer('answer: 12, answer: 99')).toBe('99');
    expect(extractAnswer('answer : 42')).toBe('42');
    expect(extractAnswer('9 + 9 = 18')).toBeNull();
  });
  it('scores exact match only', () => {
    const item = { answer: '168' };
    expect(scoreExactMatch('... answer: 168', item)).toBe(1);
    expect(scoreExactMatch('... answer: 167', item)).toBe(0);
    // The chain model's items score the whole list of numbers, in order.
    const list = { answer: '37,85,03', score: 'number_list' as const };
    expect(scoreExactMatch('37, 85, 03', list)).toBe(1);
    expect(scoreExactMatch('37, 85, 03, 51', list)).toBe(0);
    expect(scoreExactMatch('37, 85, 3', list)).toBe(0);
    expect(scoreExactMatch('... answer: 1689', item)).toBe(0);
    expect(scoreExactMatch('... answer: 16 8', item)).toBe(0); // two numbers, as a person reads them
    expect(scoreExactMatch('no answer here', item)).toBe(0);
  });
});

describe('eval set', () => {
  const items = loadEvalSet();
  it('has 200 well-formed, correct problems with unique ids', () => {
    expect(items.length).toBe(200);
    expect(new Set(items.map((x) => x.id)).size).toBe(200);
    for (const it of items) {
      const [a, b] = it.operands;
      expect(it.prompt).toBe(`What is ${a} + ${b} ?`);
      expect(it.answer).toBe(String(a + b));
      expect(scoreExactMatch(it.answer_text, it)).toBe(1);
    }
  });
  it('is disjoint from the training generator by construction (every pair is in the eval partition)', () => {
    for (const it of items) expect(isEvalPair(it.operands[0], it.operands[1])).toBe(true);
    // The partition holds out about a tenth of the 90*90 two-digit pairs; python's task.py reports 810.
    let held = 0;
    for (let a = 10; a <= 99; a++) for (let b = 10; b <= 99; b++) held += isEvalPair(a, b) ? 1 : 0;
    expect(held).toBe(810);
  });
  it('reports the file and line of a malformed record', () => {
    expect(() => loadEvalSet(join(defaultModelDir, 'config.json'))).toThrow(/config\.json:1: not valid JSON/);
  });
});

describe('bundled model directory', () => {
  it('has every file', () => {
    for (const f of ['config.json', 'model.safetensors', 'tokenizer.json', 'tokenizer_config.json', 'generation_config.json', 'training_log.tsv']) {
      expect(existsSync(join(defaultModelDir, f)), f).toBe(true);
    }
  });
  it('config.json is in LLaDA format and matches the safetensors header', () => {
    const cfg = JSON.parse(readFileSync(join(defaultModelDir, 'config.json'), 'utf8'));
    expect(cfg.model_type).toBe('llada');
    expect(cfg.weight_tying).toBe(false);
    const buf = readFileSync(join(defaultModelDir, 'model.safetensors'));
    const hlen = Number(buf.readBigUInt64LE(0));
    const header = JSON.parse(buf.subarray(8, 8 + hlen).toString('utf8'));
    expect(header['model.transformer.wte.weight'].shape).toEqual([cfg.embedding_size, cfg.d_model]);
    expect(header[`model.transformer.blocks.${cfg.n_layers - 1}.ff_out.weight`].shape).toEqual([cfg.d_model, cfg.mlp_hidden_size]);
    expect(header['model.transformer.ff_out.weight'].shape).toEqual([cfg.embedding_size, cfg.d_model]);
    const last = Math.max(...Object.entries(header).filter(([k]) => k !== '__metadata__').map(([, v]) => (v as { data_offsets: number[] }).data_offsets[1]));
    expect(8 + hlen + last).toBe(statSync(join(defaultModelDir, 'model.safetensors')).size);
  });
  it('tokenizer.json loads with @huggingface/tokenizers and agrees with the special token ids', () => {
    const dir = defaultModelDir;
    const tok = new Tokenizer(JSON.parse(readFileSync(join(dir, 'tokenizer.json'), 'utf8')), JSON.parse(readFileSync(join(dir, 'tokenizer_config.json'), 'utf8')));
    const cfg = JSON.parse(readFileSync(join(dir, 'config.json'), 'utf8'));
    const enc = tok.encode('<|startoftext|><|start_header_id|>user<|end_header_id|>\n\nWhat is 47 + 35 ?<|eot_id|>', { add_special_tokens: false });
    expect(enc.tokens).toEqual(['<|startoftext|>', '<|start_header_id|>', 'user', '<|end_header_id|>', 'What', 'is', '4', '7', '+', '3', '5', '?', '<|eot_id|>']);
    expect(tok.encode('<|mdm_mask|>', { add_special_tokens: false }).ids).toEqual([cfg.mask_token_id]);
    expect(tok.encode('<|endoftext|>', { add_special_tokens: false }).ids).toEqual([cfg.eos_token_id]);
    expect(enc.ids.every((id: number) => id < cfg.vocab_size)).toBe(true);
  });
});
