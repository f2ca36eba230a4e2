import { describe, expect, it } from 'vitest';
import { writeFile } from 'node:fs/promises';
import { join } from 'node:path';
import { ModelFormatError, createTokenizer, loadTokenizer } from '../src/index.js';
import { tempDir, tinyLladaConfig } from './helpers.js';

const SPECIALS = ['<|startoftext|>', '<|endoftext|>', '<|start_header_id|>', '<|end_header_id|>', '<|eot_id|>', '<|mdm_mask|>'];
const WORDS = ['[UNK]', 'hello', 'world', 'user', 'assistant', '!', 'how', 'are', 'you'];

/** A WordLevel tokenizer.json: words get ids 0..8, the special tokens 9..14. */
function wordLevelTokenizer(): Record<string, unknown> {
  return {
    version: '1.0',
    truncation: null,
    padding: null,
    added_tokens: SPECIALS.map((content, i) => ({
      id: WORDS.length + i, content, single_word: false, lstrip: false, rstrip: false, normalized: false, special: true,
    })),
    normalizer: null,
    pre_tokenizer: { type: 'Whitespace' },
    post_processor: null,
    decoder: null,
    model: { type: 'WordLevel', vocab: Object.fromEntries(WORDS.map((w, i) => [w, i])), unk_token: '[UNK]' },
  };
}

/** LLaDA-style (Llama 3) chat template. */
const TEMPLATE =
  "{{ bos_token }}{% for m in messages %}<|start_header_id|>{{ m['role'] }}<|end_header_id|>\n\n{{ m['content'] }}<|eot_id|>{% endfor %}" +
  '{% if add_generation_prompt %}<|start_header_id|>assistant<|end_header_id|>\n\n{% endif %}';

const CONFIG = { bos_token: '<|startoftext|>', eos_token: { content: '<|endoftext|>', special: true }, chat_template: TEMPLATE };

async function writeTokDir(tokenizer: unknown, config: unknown = CONFIG, modelConfig?: unknown): Promise<string> {
  const dir = await tempDir();
  await writeFile(join(dir, 'tokenizer.json'), typeof tokenizer === 'string' ? tokenizer : JSON.stringify(tokenizer));
  await writeFile(join(dir, 'tokenizer_config.json'), JSON.stringify(config));
  if (modelConfig) await writeFile(join(dir, 'config.json'), JSON.stringify(modelConfig));
  return dir;
}

describe('tokenizer', () => {
  it('encodes, decodes and keeps special tokens atomic', async () => {
    const tok = await loadTokenizer(await writeTokDir(wordLevelTokenizer()));
    expect(tok.vocabSize).toBe(15);
    expect(tok.encode('hello world !')).toEqual([1, 2, 5]);
    expect(tok.encode('hello<|eot_id|>zzz')).toEqual([1, 13, 0]);
    expect(tok.tokenToId('<|mdm_mask|>')).toBe(14);
    // No decoder in this tokenizer.json: the library joins WordLevel tokens with spaces.
    expect(tok.decode([1, 13, 2], { skipSpecial: true })).toBe('hello world');
    expect(tok.decode([1, 13, 2])).toBe('hello <|eot_id|> world');
    expect(tok.decode([])).toBe(''); // an empty answer is empty text
    expect(tok.decode(new Int32Array(0), { skipSpecial: true })).toBe('');
  });

  it('renders the chat template with bos_token and a generation prompt, and tokenizes it', async () => {
    const tok = await loadTokenizer(await writeTokDir(wordLevelTokenizer()));
    const text = tok.applyChatTemplate([{ role: 'user', content: 'how are you' }], { addGenerationPrompt: true });
    expect(text).toBe(
      '<|startoftext|><|start_header_id|>user<|end_header_id|>\n\nhow are you<|eot_id|><|start_header_id|>assistant<|end_header_id|>\n\n',
    );
    expect(tok.encode(text)).toEqual([9, 11, 3, 12, 6, 7, 8, 13, 11, 4, 12]);
    expect(tok.applyChatTemplate([{ role: 'user', content: 'hello' }], { addGenerationPrompt: false })).not.toContain('assistant');
  });

  it('a missing chat template is a clear error', () => {
    const tok = createTokenizer({ tokenizer: wordLevelTokenizer(), tokenizerConfig: {} });
    expect(() => tok.applyChatTemplate([{ role: 'user', content: 'hi' }])).toThrow(/tokenizer_config.json has no chat_template/);
  });

  it('bad tokenizer file (not JSON)', async () => {
    const dir = await writeTokDir('{"model": ');
    const e = await loadTokenizer(dir).catch((x) => x);
    expect(e).toBeInstanceOf(ModelFormatError);
    expect(e.message).toMatch(/not valid JSON.*tokenizer\.json/);
  });

  it('bad tokenizer file (no model)', async () => {
    await expect(loadTokenizer(await writeTokDir({ version: '1.0' }))).rejects.toThrow(/tokenizer.json has no "model" object/);
  });

  it('missing tokenizer file', async () => {
    await expect(loadTokenizer(await tempDir())).rejects.toThrow(/tokenizer file is missing/);
  });

  it('tokenizer vocab larger than the model vocab', async () => {
    // The tiny model's vocab is 12 (mask 11, eos 10); the tokenizer produces ids up to 14.
    const dir = await writeTokDir(wordLevelTokenizer(), CONFIG, tinyLladaConfig({ vocab_size: 12, embedding_size: 12, mask_token_id: 11, eos_token_id: 10 }));
    await expect(loadTokenizer(dir)).rejects.toThrow(/tokenizer can produce id 14 but the model's vocab has only 12 entries/);
    // The same tokenizer is fine for a model with a big enough vocab.
    expect((await loadTokenizer(dir, { modelVocabSize: 32 })).vocabSize).toBe(15);
  });
});

describe('A2D chat prompts (DESIGN §15)', () => {
  const fixture = (name: string) => join(import.meta.dirname, '..', '..', '..', 'test', 'fixtures', 'models', name);
  it('a2d-qwen3 renders Qwen3\'s template with enable_thinking false (an empty think block), as dllm does', async () => {
    const tok = await loadTokenizer(fixture('a2d-qwen3-mdlm-tiny-f32'));
    expect(tok.applyChatTemplate([{ role: 'user', content: 'hi' }])).toBe(
      '<|im_start|>system\nYou are a helpful assistant.<|im_end|>\n<|im_start|>user\nhi<|im_end|>\n<|im_start|>assistant\n<think>\n\n</think>\n\n');
  });
  it('other models get no enable_thinking (SDAR\'s and Dream\'s prompts are unchanged)', async () => {
    const t = createTokenizer({
      tokenizer: wordLevelTokenizer(),
      tokenizerConfig: { chat_template: "{% if enable_thinking is defined %}set{% else %}unset{% endif %}" },
    });
    expect(t.applyChatTemplate([])).toBe('unset');
  });
});
