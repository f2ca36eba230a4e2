/**
 * Bad input: each malformed request gets its 4xx in OpenAI's error shape naming the field, while a good stream
 * on the same server completes with the right text. And the API key.
 */
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { MODEL_ID, bundled, slowed, start, type Running } from './helpers.js';

let base: Awaited<ReturnType<typeof bundled>>;
let srv: Running;

beforeAll(async () => {
  base = await bundled();
  // Passes slowed to 15 ms so that the good stream is still decoding while the table runs.
  srv = await start({ ...base, engine: slowed(base.engine, 15) }, { bodyLimit: 64 * 1024 });
});
afterAll(async () => {
  await srv?.close();
  await base?.engine.dispose();
});

const chat = (extra: object) => ({ model: MODEL_ID, messages: [{ role: 'user', content: 'What is 23 + 48 ?' }], ...extra });
const words = (n: number) => Array.from({ length: n }, (_, i) => `${i % 90 + 10} +`).join(' ');

interface Case {
  name: string;
  path?: string;
  /** A JSON value, or a raw string body. */
  body: unknown;
  contentType?: string;
  status: number;
  param: string | null;
  code?: string;
}

const cases: Case[] = [
  { name: 'malformed JSON', body: '{"model": "default", "messages": [', status: 400, param: null, code: 'invalid_json' },
  { name: 'empty body', body: '', status: 400, param: null },
  { name: 'a JSON array, not an object', body: [], status: 400, param: null, code: 'invalid_type' },
  { name: 'no model', body: { messages: [{ role: 'user', content: 'hi' }] }, status: 400, param: 'model', code: 'missing_required_parameter' },
  { name: 'unknown model', body: chat({ model: 'gpt-4o' }), status: 404, param: 'model', code: 'model_not_found' },
  { name: 'no messages', body: { model: MODEL_ID }, status: 400, param: 'messages' },
  { name: 'empty messages', body: chat({ messages: [] }), status: 400, param: 'messages' },
  { name: 'unknown role', body: chat({ messages: [{ role: 'wizard', content: 'hi' }] }), status: 400, param: 'messages[0].role' },
  { name: 'content a number', body: chat({ messages: [{ role: 'user', content: 42 }] }), status: 400, param: 'messages[0].content', code: 'invalid_type' },
  { name: 'an image part', body: chat({ messages: [{ role: 'user', content: [{ type: 'image_url', text: 'x' }] }] }), status: 400, param: 'messages[0].content[0].type' },
  { name: 'negative max_tokens', body: chat({ max_tokens: -1 }), status: 400, param: 'max_tokens' },
  { name: 'max_tokens a string', body: chat({ max_tokens: '12' }), status: 400, param: 'max_tokens', code: 'invalid_type' },
  { name: 'huge max_tokens', body: chat({ max_tokens: 1e12 }), status: 400, param: 'max_tokens' },
  { name: 'max_tokens past the model positions', body: chat({ max_tokens: 1000 }), status: 400, param: 'max_tokens', code: 'context_length_exceeded' },
  { name: 'a prompt longer than the model allows', body: chat({ messages: [{ role: 'user', content: words(200) }] }), status: 400, param: 'messages', code: 'context_length_exceeded' },
  { name: 'temperature above 2', body: chat({ temperature: 3 }), status: 400, param: 'temperature' },
  { name: 'negative temperature', body: chat({ temperature: -0.1 }), status: 400, param: 'temperature' },
  { name: 'negative seed', body: chat({ seed: -1 }), status: 400, param: 'seed' },
  { name: 'seed past u32', body: chat({ seed: 2 ** 40 }), status: 400, param: 'seed' },
  { name: 'n = 2', body: chat({ n: 2 }), status: 400, param: 'n', code: 'unsupported_value' },
  { name: 'seventeen stop strings', body: chat({ stop: Array.from({ length: 17 }, (_, i) => `s${i}`) }), status: 400, param: 'stop' },
  { name: 'an empty stop string', body: chat({ stop: '' }), status: 400, param: 'stop' },
  { name: 'threshold 0', body: chat({ threshold: 0 }), status: 400, param: 'threshold' },
  { name: 'threshold above 1', body: chat({ threshold: 1.5 }), status: 400, param: 'threshold' },
  { name: 'threshold and factor together', body: chat({ threshold: 0.9, factor: 1 }), status: 400, param: 'factor', code: 'conflicting_values' },
  { name: 'threshold with the fixed strategy', body: chat({ strategy: 'fixed', threshold: 0.9 }), status: 400, param: 'threshold', code: 'conflicting_values' },
  { name: 'unknown cache mode', body: chat({ cache: 'full' }), status: 400, param: 'cache' },
  { name: 'block_length 0', body: chat({ block_length: 0 }), status: 400, param: 'block_length' },
  { name: 'steps not a multiple of the blocks (scheduler check)', body: chat({ max_tokens: 64, block_length: 32, steps: 7, strategy: 'fixed' }), status: 400, param: 'steps' },
  { name: 'a misspelt field', body: chat({ max_token: 5 }), status: 400, param: 'max_token', code: 'unknown_parameter' },
  { name: 'an unimplemented field of the wrong type', body: chat({ top_p: 'high' }), status: 400, param: 'top_p', code: 'invalid_type' },
  { name: 'logprobs requested', body: chat({ logprobs: true }), status: 400, param: 'logprobs', code: 'unsupported_value' },
  { name: 'a presence penalty', body: chat({ presence_penalty: 1 }), status: 400, param: 'presence_penalty', code: 'unsupported_value' },
  { name: 'json output', body: chat({ response_format: { type: 'json_object' } }), status: 400, param: 'response_format' },
  { name: 'tools', body: chat({ tools: [{ type: 'function' }] }), status: 400, param: 'tools' },
  { name: 'stream a string', body: chat({ stream: 'yes' }), status: 400, param: 'stream', code: 'invalid_type' },
  { name: 'a negative deadline', body: chat({ fast_dllm: { timeout: -1 } }), status: 400, param: 'fast_dllm.timeout' },
  { name: 'an unknown extension field', body: chat({ fast_dllm: { canvass: true } }), status: 400, param: 'fast_dllm.canvass', code: 'unknown_parameter' },
  { name: 'a body larger than the limit', body: chat({ messages: [{ role: 'user', content: 'x'.repeat(100_000) }] }), status: 413, param: null, code: 'request_too_large' },
  { name: 'not JSON content', body: 'hello', contentType: 'text/plain', status: 415, param: null },
  { name: 'two prompts', path: '/v1/completions', body: { model: MODEL_ID, prompt: ['a', 'b'] }, status: 400, param: 'prompt', code: 'unsupported_value' },
  { name: 'the mask token in prompt ids', path: '/v1/completions', body: { model: MODEL_ID, prompt: [0, 5, 7] }, status: 400, param: 'prompt' },
  { name: 'a prompt id outside the vocabulary', path: '/v1/completions', body: { model: MODEL_ID, prompt: [0, 99999] }, status: 400, param: 'prompt' },
  { name: 'echo', path: '/v1/completions', body: { model: MODEL_ID, prompt: 'hi', echo: true }, status: 400, param: 'echo' },
  { name: 'an unknown route', path: '/v1/embeddings', body: { model: MODEL_ID, input: 'hi' }, status: 404, param: null, code: 'not_found' },
];

describe('malformed requests', () => {
  it(`${cases.length} malformed requests each get their 4xx in OpenAI's error shape, while a concurrent stream completes`, async () => {
    expect(cases.length).toBeGreaterThanOrEqual(20);
    const good = { model: MODEL_ID, messages: [{ role: 'user' as const, content: 'What is 47 + 35 ?' }], max_tokens: 32, strategy: 'fixed', cache: 'none' } as const;
    const expected = (await srv.client.chat.completions.create(good as never)) as unknown as { choices: { message: { content: string } }[] };
    const stream = await srv.client.chat.completions.create({ ...good, stream: true } as never) as unknown as AsyncIterable<{ choices: { delta: { content?: string } }[] }>;
    const it = stream[Symbol.asyncIterator]();
    let text = '';
    // Read until the stream has committed text (it is decoding), then send the table.
    while (text === '') text += (await it.next()).value.choices[0]?.delta.content ?? '';

    const answers = await Promise.all(cases.map(async (c) => {
      const raw = typeof c.body === 'string';
      const res = await fetch(`${srv.url}${c.path ?? '/v1/chat/completions'}`, {
        method: 'POST',
        headers: raw && c.body === '' ? { 'content-type': 'application/json' } : { 'content-type': c.contentType ?? 'application/json' },
        body: raw ? (c.body as string) : JSON.stringify(c.body),
      });
      return { c, status: res.status, json: (await res.json()) as { error?: Record<string, unknown> } };
    }));
    const wrong = answers.filter(({ c, status, json }) => {
      const e = json.error;
      return status !== c.status || !e || typeof e.message !== 'string' || typeof e.type !== 'string' || e.param !== c.param
        || !('code' in e) || (c.code !== undefined && e.code !== c.code);
    });
    expect(wrong.map(({ c, status, json }) => ({ case: c.name, want: [c.status, c.param, c.code], got: [status, json] }))).toEqual([]);
    for (const { json } of answers) expect((json.error!.message as string).length).toBeGreaterThan(10);

    for (let r = await it.next(); !r.done; r = await it.next()) text += r.value.choices[0]?.delta.content ?? '';
    expect(text).toBe(expected.choices[0].message.content);
    const m = await (await fetch(`${srv.url}/metrics`)).text();
    expect(m).toMatch(/^fast_dllm_requests_total\{endpoint="chat",outcome="invalid"\} [1-9]\d*$/m);
  });
});

describe('API key', () => {
  let keyed: Running;
  beforeAll(async () => {
    keyed = await start(base, { apiKey: 'sekret-key' });
  });
  afterAll(async () => keyed?.close());

  it('no key or a wrong key: 401 with WWW-Authenticate; the right key: answered; health and metrics stay open', async () => {
    const body = JSON.stringify({ model: MODEL_ID, messages: [{ role: 'user', content: 'What is 23 + 48 ?' }] });
    const post = (headers: Record<string, string>) => fetch(`${keyed.url}/v1/chat/completions`, { method: 'POST', headers: { 'content-type': 'application/json', ...headers }, body });
    for (const auth of [undefined, 'Bearer wrong', 'Bearer sekret-keyX', 'Bearer sekret-ke', 'Basic c2VrcmV0LWtleQ==']) {
      const r = await post(auth ? { authorization: auth } : {});
      expect(r.status, String(auth)).toBe(401);
      expect(r.headers.get('www-authenticate')).toBe('Bearer');
      const j = (await r.json()) as { error: { type: string; code: string } };
      expect(j.error).toMatchObject({ type: 'authentication_error', code: 'invalid_api_key' });
    }
    expect((await fetch(`${keyed.url}/v1/models`)).status).toBe(401);
    expect((await fetch(`${keyed.url}/%761/models`)).status).toBe(401); // an encoded path reaches the same route
    expect((await fetch(`${keyed.url}/v1/models?x=/health`)).status).toBe(401);
    expect((await post({ authorization: 'Bearer sekret-key' })).status).toBe(200);
    expect((await keyed.client.chat.completions.create({ model: MODEL_ID, messages: [{ role: 'user', content: 'What is 23 + 48 ?' }] })).choices[0].message.content).toContain('answer: 71');
    expect((await fetch(`${keyed.url}/health`)).status).toBe(200);
    expect((await fetch(`${keyed.url}/health/ready`)).status).toBe(200);
    expect((await fetch(`${keyed.url}/metrics`)).status).toBe(200);
  });
});
