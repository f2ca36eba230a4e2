/**
 * The server on block-diffusion models (Fast-dLLM v2 and SDAR fixtures, random weights): their own recipe and
 * fields reach the scheduler, the streamed text equals the non-streamed text and the same request decoded alone by
 * generate() (cut at the stop tokens), and LLaDA/Dream's fields are refused by name.
 */
import { fileURLToPath } from 'node:url';
import OpenAI from 'openai';
import { describe, expect, it } from 'vitest';
import { createWasmEngine } from '@fast-dllm/engine-wasm';
import { loadTokenizer, readModelConfig } from '@fast-dllm/model';
import { generate } from '@fast-dllm/scheduler';
import { createServer } from '../src/index.js';
import { buildJob } from '../src/request.js';
import type { ChatBody, CompletionBody } from '../src/schema.js';
import { chatPrompt } from '../src/request.js';
import { inThread } from '../src/tokenize.js';

const fixture = (name: string) => fileURLToPath(new URL(`../../../test/fixtures/models/${name}`, import.meta.url));

describe.each(['fast-dllm-v2-tiny-f32', 'sdar-tiny-f32'])('fast-dllm serve on %s', (name) => {
  it('answers with the family\'s decoding, streamed = non-streamed = generate() alone; masked-diffusion fields are refused', async () => {
    const dir = fixture(name);
    const [engine, tokenizer, description] = await Promise.all([createWasmEngine(dir), loadTokenizer(dir), readModelConfig(dir)]);
    const app = await createServer({ engine, model: { id: name, description, tokenizer, dir }, processMetrics: false });
    const url = await app.listen({ host: '127.0.0.1', port: 0 });
    const client = new OpenAI({ baseURL: `${url}/v1`, apiKey: 'unused', maxRetries: 0, timeout: 60_000 });
    try {
      const body = { model: name, messages: [{ role: 'user' as const, content: 'hi' }], max_tokens: 20, seed: 0 };
      const plain = await client.chat.completions.create(body);
      let streamed = '';
      for await (const chunk of await client.chat.completions.create({ ...body, stream: true })) streamed += chunk.choices[0]?.delta.content ?? '';
      expect(streamed).toBe(plain.choices[0].message.content);
      expect(plain.choices[0].message.content!.length, 'a non-empty answer (the fixtures write nonsense, not nothing)').toBeGreaterThan(0);
      // The same request alone: the job the server built, decoded by generate().
      const prompt = await chatPrompt(inThread(tokenizer), body as unknown as ChatBody, { maxPositions: description.maxPositions, vocabSize: description.vocabSize, maxTokenBytes: tokenizer.maxTokenBytes });
      const job = buildJob(body as unknown as ChatBody & CompletionBody, prompt, true, engine, { defaults: { maxTokens: 128, blockLength: 32 }, timeoutMs: 0 });
      expect(job.request.strategy.kind).toBe(description.architecture);
      const alone = await generate(engine, job.request);
      const stop = new Set(description.stopIds);
      let n = 0;
      while (n < alone.tokens.length && !stop.has(alone.tokens[n])) n++;
      expect(plain.choices[0].message.content).toBe(tokenizer.decode(alone.tokens.subarray(0, n), { skipSpecial: true }));
      expect(plain.usage).toMatchObject({ prompt_tokens: prompt.length });
      const refused = await fetch(`${url}/v1/chat/completions`, { method: 'POST', headers: { 'content-type': 'application/json' }, body: JSON.stringify({ ...body, steps: 8 }) });
      expect(refused.status).toBe(400);
      expect(((await refused.json()) as { error: { param: string } }).error.param).toBe('steps');
    } finally {
      await app.fastDllm.shutdown({ graceMs: 0 });
      await engine.dispose();
    }
  });
});
