/**
 * The OpenAI API on the bundled model through the official `openai` client: chat and text completions, streamed
 * and not (the same text and usage either way, and the text generate() gives alone), stop strings, max_tokens,
 * the provisional-canvas extension, models, health and metrics.
 */
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import type OpenAI from 'openai';
import { generate, type GenerationRequest } from '@fast-dllm/scheduler';
import { MODEL_ID, bundled, chatIds, expectedText, sample, start, type Running } from './helpers.js';
import type { CanvasView } from '../src/index.js';

type ChatParams = OpenAI.Chat.ChatCompletionCreateParamsNonStreaming;
type ChatStreamParams = OpenAI.Chat.ChatCompletionCreateParamsStreaming;
/** The server's extension fields ride along in the body; the client sends unknown fields as they are. */
const ext = <T>(p: object): T => p as T;

let base: Awaited<ReturnType<typeof bundled>>;
let srv: Running;

beforeAll(async () => {
  base = await bundled();
  srv = await start(base);
});
afterAll(async () => {
  await srv?.close();
  await base?.engine.dispose();
});

const question = (a: number, b: number) => [{ role: 'user' as const, content: `What is ${a} + ${b} ?` }];

async function collect(stream: AsyncIterable<OpenAI.Chat.ChatCompletionChunk>) {
  let text = '';
  let finish: string | null = null;
  let usage: OpenAI.CompletionUsage | null | undefined;
  const canvases: CanvasView[] = [];
  let chunks = 0;
  for await (const c of stream) {
    chunks++;
    for (const ch of c.choices) {
      text += ch.delta.content ?? '';
      if (ch.finish_reason) finish = ch.finish_reason;
    }
    if (c.usage) usage = c.usage;
    const canvas = (c as unknown as { fast_dllm?: { canvas?: CanvasView } }).fast_dllm?.canvas;
    if (canvas) canvases.push(canvas);
  }
  return { text, finish, usage, canvases, chunks };
}

describe('chat completions through the openai client', () => {
  const settings: [string, object, { a: number; b: number }][] = [
    ['the recipe (dual cache, threshold 0.9)', {}, { a: 23, b: 48 }],
    ['the baseline (fixed schedule, no cache)', { strategy: 'fixed', cache: 'none' }, { a: 47, b: 35 }],
    ['threshold 0.7, prefix cache, blocks of 16', { threshold: 0.7, cache: 'prefix', block_length: 16 }, { a: 12, b: 89 }],
    ['factor rule', { factor: 1, cache: 'dual' }, { a: 66, b: 17 }],
    ['sampling at temperature 0.8, seed 7', { temperature: 0.8, seed: 7 }, { a: 31, b: 54 }],
  ];
  for (const [name, extra, { a, b }] of settings) {
    it(`${name}: streamed text and usage equal the non-streamed ones and the answer generate() gives alone`, async () => {
      const params = { model: MODEL_ID, messages: question(a, b), max_tokens: 64, ...extra };
      const whole = await srv.client.chat.completions.create(ext<ChatParams>(params));
      const streamed = await collect(await srv.client.chat.completions.create(ext<ChatStreamParams>({ ...params, stream: true, stream_options: { include_usage: true } })));
      const text = whole.choices[0].message.content;
      expect(streamed.text).toBe(text);
      expect(streamed.finish).toBe(whole.choices[0].finish_reason);
      expect(streamed.usage).toEqual(whole.usage);
      expect(whole.usage!.total_tokens).toBe(whole.usage!.prompt_tokens + whole.usage!.completion_tokens);
      expect((whole.usage as unknown as { nfe: number }).nfe).toBeGreaterThan(0);
      expect(whole.object).toBe('chat.completion');
      expect(whole.model).toBe(MODEL_ID);
      expect(whole.choices[0].message.role).toBe('assistant');

      // Alone, decoded to the end by the scheduler, with the request the server built (its defaults reported back).
      const info = (whole as unknown as { fast_dllm: { gen_length: number; block_length: number; seed: number } }).fast_dllm;
      const p = params as { strategy?: string; threshold?: number; factor?: number; cache?: string; temperature?: number };
      const strategy: GenerationRequest['strategy'] = p.strategy === 'fixed' ? { kind: 'fixed', remasking: 'low_confidence' }
        : p.factor !== undefined ? { kind: 'factor', factor: p.factor } : { kind: 'threshold', threshold: p.threshold ?? 0.9 };
      const prompt = chatIds(base.tokenizer, params.messages[0].content);
      const alone = await generate(base.engine, {
        prompt, genLength: info.gen_length, blockLength: info.block_length, steps: info.gen_length, strategy,
        cache: (p.cache ?? 'dual') as 'none' | 'prefix' | 'dual', temperature: p.temperature ?? 0, seed: info.seed,
      });
      expect(text).toBe(expectedText(base.tokenizer, base.engine.model, alone, 64, []));
      expect(whole.usage!.prompt_tokens).toBe(prompt.length);
      if (!p.temperature) expect(text).toContain(`answer: ${a + b}`);
    });
  }

  it('stop strings cut the answer (streamed: never a character of the stop string) and max_tokens cuts with finish_reason length', async () => {
    const full = (await srv.client.chat.completions.create({ model: MODEL_ID, messages: question(47, 35) })).choices[0].message.content!;
    expect(full).toContain(', answer:');
    const stopParams = { model: MODEL_ID, messages: question(47, 35), stop: [', answer', 'never appears'] };
    const cut = await srv.client.chat.completions.create(stopParams);
    expect(cut.choices[0].message.content).toBe(full.slice(0, full.indexOf(', answer')));
    expect(cut.choices[0].finish_reason).toBe('stop');
    const s = await collect(await srv.client.chat.completions.create({ ...stopParams, stream: true }));
    expect(s.text).toBe(cut.choices[0].message.content);

    const short = await srv.client.chat.completions.create({ model: MODEL_ID, messages: question(47, 35), max_tokens: 5 });
    expect(short.choices[0].finish_reason).toBe('length');
    expect(short.usage!.completion_tokens).toBe(5);
    expect(full.startsWith(short.choices[0].message.content!)).toBe(true);
    const s5 = await collect(await srv.client.chat.completions.create({ model: MODEL_ID, messages: question(47, 35), max_completion_tokens: 5, stream: true }));
    expect(s5.text).toBe(short.choices[0].message.content);
    expect(s5.finish).toBe('length');
  });

  it('fast_dllm.canvas: one provisional canvas per step (masks null, committed positions), the text unchanged', async () => {
    const params = { model: MODEL_ID, messages: question(58, 27), max_tokens: 32, strategy: 'fixed', cache: 'none' };
    const whole = await srv.client.chat.completions.create(ext<ChatParams>(params));
    const s = await collect(await srv.client.chat.completions.create(ext<ChatStreamParams>({ ...params, stream: true, fast_dllm: { canvas: true } })));
    expect(s.text).toBe(whole.choices[0].message.content);
    expect(s.canvases.length).toBeGreaterThan(2);
    // First the canvas before any pass: all masked.
    expect(s.canvases[0]).toEqual({ step: 0, nfe: 0, tokens: new Array(32).fill(null), committed: [] });
    let prev: (string | null)[] = new Array(32).fill(null);
    s.canvases.slice(1).forEach((c, i) => {
      expect(Object.keys(c).sort()).toEqual(['committed', 'nfe', 'step', 'tokens']);
      expect(c.step).toBe(i + 1);
      expect(c.nfe).toBe(i + 1);
      expect(c.tokens).toHaveLength(32);
      expect(c.committed.length).toBeGreaterThan(0);
      for (const p of c.committed) {
        expect(prev[p]).toBeNull();
        expect(typeof c.tokens[p]).toBe('string');
      }
      // Committed tokens never change; only the positions of this step turned from null.
      c.tokens.forEach((t, p) => {
        if (prev[p] !== null) expect(t).toBe(prev[p]);
        else if (!c.committed.includes(p)) expect(t).toBeNull();
      });
      prev = c.tokens;
    });
    expect(s.canvases.at(-1)!.nfe).toBe((whole.usage as unknown as { nfe: number }).nfe);
  });
});

describe('text completions', () => {
  it('prompt ids (the chat prompt) give the chat answer; streamed equals non-streamed; a one-element list is one prompt', async () => {
    const ids = Array.from(chatIds(base.tokenizer, 'What is 23 + 48 ?'));
    const chat = await srv.client.chat.completions.create({ model: MODEL_ID, messages: question(23, 48), max_tokens: 64 });
    const whole = await srv.client.completions.create({ model: MODEL_ID, prompt: ids, max_tokens: 64 });
    expect(whole.object).toBe('text_completion');
    expect(whole.choices[0].text).toBe(chat.choices[0].message.content);
    expect((await srv.client.completions.create({ model: MODEL_ID, prompt: [ids], max_tokens: 64 })).choices[0].text).toBe(whole.choices[0].text);
    let text = '';
    let usage;
    for await (const c of await srv.client.completions.create({ model: MODEL_ID, prompt: ids, max_tokens: 64, stream: true, stream_options: { include_usage: true } })) {
      text += c.choices[0]?.text ?? '';
      if (c.usage) usage = c.usage;
    }
    expect(text).toBe(whole.choices[0].text);
    expect(usage).toEqual(whole.usage);
  });

  it('a text prompt is encoded with the tokenizer and answered', async () => {
    const r = await srv.client.completions.create({ model: MODEL_ID, prompt: 'What is 23 + 48 ?', max_tokens: 16 });
    expect(r.usage!.prompt_tokens).toBe(base.tokenizer.encode('What is 23 + 48 ?', { addSpecial: true }).length);
    expect(typeof r.choices[0].text).toBe('string');
    expect(['stop', 'length']).toContain(r.choices[0].finish_reason);
  });
});

describe('models, health, metrics', () => {
  it('early_stop false decodes every position (the paper\'s NFE) with the same answer; the default ends at the answer', async () => {
    const params = { model: MODEL_ID, messages: question(23, 48), max_tokens: 128 };
    const quick = await srv.client.chat.completions.create(ext<ChatParams>(params));
    const every = await srv.client.chat.completions.create(ext<ChatParams>({ ...params, early_stop: false }));
    expect(every.choices[0].message.content).toBe(quick.choices[0].message.content);
    expect(every.choices[0].finish_reason).toBe(quick.choices[0].finish_reason);
    const nfe = (r: { usage?: unknown }) => (r.usage as { nfe: number }).nfe;
    // The recipe's threshold rule decodes the bundled model's answer in its first block; all four blocks then.
    expect(nfe(quick)).toBe(1);
    expect(nfe(every)).toBe(4);
    const card = (await srv.client.models.retrieve(MODEL_ID)) as unknown as { fast_dllm: { architecture: string; block_size: number | null } };
    expect(card.fast_dllm).toMatchObject({ architecture: 'llada', block_size: null });
  });

  it('GET /v1/models lists the served model; /v1/models/:id finds it or answers 404', async () => {
    const list = await srv.client.models.list();
    expect(list.data.map((m) => m.id)).toEqual([MODEL_ID]);
    expect((await srv.client.models.retrieve(MODEL_ID)).id).toBe(MODEL_ID);
    const r = await fetch(`${srv.url}/v1/models/nope`);
    expect(r.status).toBe(404);
    expect(((await r.json()) as { error: { code: string } }).error.code).toBe('model_not_found');
  });

  it('health and readiness say ready; metrics count passes, NFE and tokens in Prometheus text', async () => {
    expect(await (await fetch(`${srv.url}/health`)).json()).toEqual({ status: 'ready' });
    const ready = await fetch(`${srv.url}/health/ready`);
    expect(ready.status).toBe(200);
    const before = await (await fetch(`${srv.url}/metrics`)).text();
    const r = await srv.client.chat.completions.create({ model: MODEL_ID, messages: question(11, 22) });
    const res = await fetch(`${srv.url}/metrics`);
    expect(res.headers.get('content-type')).toMatch(/^text\/plain/);
    const after = await res.text();
    const nfe = (r.usage as unknown as { nfe: number }).nfe;
    expect(sample(after, 'fast_dllm_forwards_total') - sample(before, 'fast_dllm_forwards_total')).toBe(nfe);
    expect(sample(after, 'fast_dllm_passes_total')).toBeGreaterThan(sample(before, 'fast_dllm_passes_total'));
    expect(sample(after, 'fast_dllm_completion_tokens_total') - sample(before, 'fast_dllm_completion_tokens_total')).toBe(r.usage!.completion_tokens);
    expect(sample(after, 'fast_dllm_active_sequences')).toBe(0);
    expect(sample(after, 'fast_dllm_queue_depth')).toBe(0);
    expect(sample(after, 'fast_dllm_ready')).toBe(1);
    expect(after).toMatch(/^fast_dllm_pass_seconds_bucket\{le="0\.01"\} \d+$/m);
    expect(after).toMatch(/^fast_dllm_request_seconds_count\{endpoint="chat"\} \d+$/m);
    expect(after).toMatch(/^fast_dllm_requests_total\{endpoint="chat",outcome="stop"\} \d+$/m);
  });
});

describe('CORS (a page from another origin, as @fast-dllm/web talks to the server)', () => {
  it('answers the preflight for the allowed origin and puts Access-Control-Allow-Origin on the stream; other origins get none', async () => {
    const cors = await start(base, { corsOrigins: ['http://127.0.0.1:8090'] });
    try {
      const pre = await fetch(`${cors.url}/v1/chat/completions`, {
        method: 'OPTIONS',
        headers: { origin: 'http://127.0.0.1:8090', 'access-control-request-method': 'POST', 'access-control-request-headers': 'content-type' },
      });
      expect(pre.status).toBeLessThan(300);
      expect(pre.headers.get('access-control-allow-origin')).toBe('http://127.0.0.1:8090');
      expect(pre.headers.get('access-control-allow-methods')).toMatch(/POST/);
      const r = await fetch(`${cors.url}/v1/chat/completions`, {
        method: 'POST',
        headers: { origin: 'http://127.0.0.1:8090', 'content-type': 'application/json', accept: 'text/event-stream' },
        body: JSON.stringify({ model: MODEL_ID, messages: question(23, 48), stream: true, fast_dllm: { canvas: true } }),
      });
      expect(r.headers.get('content-type')).toMatch(/^text\/event-stream/);
      expect(r.headers.get('access-control-allow-origin')).toBe('http://127.0.0.1:8090');
      expect(await r.text()).toMatch(/"fast_dllm":\{"canvas":\{"step":1,[\s\S]*data: \[DONE\]/);
      const other = await fetch(`${cors.url}/v1/models`, { headers: { origin: 'http://evil.example' } });
      expect(other.headers.get('access-control-allow-origin')).toBeNull();
      // Without corsOrigins the server sends no CORS headers at all.
      expect((await fetch(`${srv.url}/v1/models`, { headers: { origin: 'http://127.0.0.1:8090' } })).headers.get('access-control-allow-origin')).toBeNull();
    } finally {
      await cors.close();
    }
  });
});
