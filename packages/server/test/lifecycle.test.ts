/**
 * Serving behaviour around the answers: a full queue (429 + Retry-After), deadlines (504, or an error event
 * mid-stream), clients that go away (their sequence cancelled and its cache freed), loading (readiness false,
 * 503) and graceful shutdown (in-flight work finishes, new work gets 503, the rest is cancelled after the grace).
 * Forward passes are slowed so that requests stay in flight long enough to act on them.
 */
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { APIError } from 'openai';
import type { Engine } from '@fast-dllm/scheduler';
import { MODEL_ID, bundled, metric, slowed, start, until, type Running } from './helpers.js';

let base: Awaited<ReturnType<typeof bundled>>;
beforeAll(async () => {
  base = await bundled();
});
afterAll(async () => base?.engine.dispose());

/** A request that takes one pass per answer token (fixed schedule, no cache): ~20 passes before its answer ends. */
const long = (a = 47, b = 35) => ({
  model: MODEL_ID, messages: [{ role: 'user' as const, content: `What is ${a} + ${b} ?` }], max_tokens: 32, strategy: 'fixed', cache: 'none',
}) as unknown as { model: string; messages: { role: 'user'; content: string }[]; max_tokens: number };

const post = (url: string, body: object, signal?: AbortSignal) =>
  fetch(`${url}/v1/chat/completions`, { method: 'POST', headers: { 'content-type': 'application/json' }, body: JSON.stringify(body), signal });

describe('queue and deadlines', () => {
  let srv: Running;
  beforeAll(async () => {
    srv = await start({ ...base, engine: slowed(base.engine, 20) }, { batch: 1, maxQueue: 1, requestTimeoutMs: 30_000 });
  });
  afterAll(async () => srv?.close());

  it('a full queue answers 429 with Retry-After at once; the admitted requests complete', async () => {
    const first = post(srv.url, long());
    await until(async () => (await metric(srv.url, 'fast_dllm_active_sequences')) === 1, 10_000, 'the first request to start');
    const second = post(srv.url, long(12, 34));
    await until(async () => (await metric(srv.url, 'fast_dllm_queue_depth')) === 1, 10_000, 'the second request to queue');
    const t0 = performance.now();
    const third = await post(srv.url, long(56, 21));
    expect(performance.now() - t0).toBeLessThan(1000);
    expect(third.status).toBe(429);
    expect(Number(third.headers.get('retry-after'))).toBeGreaterThanOrEqual(1);
    expect(((await third.json()) as { error: { type: string; code: string } }).error).toMatchObject({ type: 'rate_limit_error', code: 'queue_full' });
    const [a, b] = await Promise.all([first, second]);
    expect([a.status, b.status]).toEqual([200, 200]);
    expect(((await a.json()) as { choices: { message: { content: string } }[] }).choices[0].message.content).toContain('answer: 82');
    expect(((await b.json()) as { choices: { message: { content: string } }[] }).choices[0].message.content).toContain('answer: 46');
  });

  it('a request past its deadline is cancelled: 504 in the error shape; mid-stream, an error event the client raises', async () => {
    const r = await post(srv.url, { ...long(), fast_dllm: { timeout: 0.15 } });
    expect(r.status).toBe(504);
    expect(((await r.json()) as { error: { type: string; code: string } }).error).toMatchObject({ type: 'timeout_error', code: 'timeout' });

    const stream = await srv.client.chat.completions.create({ ...long(), stream: true, fast_dllm: { timeout: 0.25 } } as never) as unknown as AsyncIterable<unknown>;
    let chunks = 0;
    const err = await (async () => {
      try {
        for await (const _ of stream) chunks++;
      } catch (e) {
        return e;
      }
      return null;
    })();
    expect(chunks).toBeGreaterThan(0); // the stream had started
    expect(err).toBeInstanceOf(APIError);
    expect((err as APIError).message).toMatch(/deadline/);
    await until(async () => (await metric(srv.url, 'fast_dllm_active_sequences')) === 0, 5_000, 'the timed-out sequences to leave');
    expect(await metric(srv.url, 'fast_dllm_cache_reserved_bytes')).toBe(0);
    const m = await (await fetch(`${srv.url}/metrics`)).text();
    expect(m).toMatch(/^fast_dllm_requests_total\{endpoint="chat",outcome="timeout"\} 2$/m);
  });
});

describe('clients that go away', () => {
  let srv: Running;
  let engine: Engine;
  beforeAll(async () => {
    engine = slowed(base.engine, 20);
    srv = await start({ ...base, engine }, { batch: 4 });
  });
  afterAll(async () => srv?.close());

  it('aborting a stream mid-way cancels its sequence: active sequences drop to 0, its cache is freed, decoding stops', async () => {
    const L = 16 + 32; // the engine's capacity for a canvas of this length is the free cache
    const free = engine.sequenceCapacity(L);
    const stream = await srv.client.chat.completions.create({ ...long(), stream: true });
    let text = '';
    for await (const c of stream) {
      text += c.choices[0]?.delta.content ?? '';
      if (text.length > 0) break; // leaving the loop aborts the request
    }
    stream.controller.abort();
    await until(async () => (await metric(srv.url, 'fast_dllm_active_sequences')) === 0, 5_000, 'the cancelled sequence to leave');
    expect(await metric(srv.url, 'fast_dllm_cache_reserved_bytes')).toBe(0);
    expect(engine.sequenceCapacity(L)).toBe(free);
    const passes = await metric(srv.url, 'fast_dllm_passes_total');
    await new Promise((r) => setTimeout(r, 200)); // ten pass times: no pass runs for nobody
    expect(await metric(srv.url, 'fast_dllm_passes_total')).toBe(passes);
    await until(async () => /outcome="disconnected"\} 1$/m.test(await (await fetch(`${srv.url}/metrics`)).text()), 5_000, 'the disconnect to be counted');
  });

  it('a non-streaming client that disconnects cancels its sequence too', async () => {
    const ac = new AbortController();
    const pending = post(srv.url, long(), ac.signal).catch((e: Error) => e);
    await until(async () => (await metric(srv.url, 'fast_dllm_active_sequences')) === 1, 5_000, 'the request to start');
    ac.abort();
    expect(await pending).toBeInstanceOf(Error);
    await until(async () => (await metric(srv.url, 'fast_dllm_active_sequences')) === 0, 5_000, 'the cancelled sequence to leave');
    expect(await metric(srv.url, 'fast_dllm_cache_reserved_bytes')).toBe(0);
  });
});

describe('loading and shutdown', () => {
  it('while the engine loads: liveness 200, readiness 503, completions 503 with Retry-After; then ready', async () => {
    let resolve!: (e: Engine) => void;
    const srv = await start(base, { engine: new Promise<Engine>((r) => (resolve = r)) });
    try {
      expect(await (await fetch(`${srv.url}/health`)).json()).toEqual({ status: 'loading' });
      expect((await fetch(`${srv.url}/health/ready`)).status).toBe(503);
      const r = await post(srv.url, long());
      expect(r.status).toBe(503);
      expect(r.headers.get('retry-after')).toBe('5');
      expect(((await r.json()) as { error: { code: string } }).error.code).toBe('loading');
      resolve(base.engine);
      await srv.app.fastDllm.engineReady;
      expect((await fetch(`${srv.url}/health/ready`)).status).toBe(200);
      expect((await post(srv.url, long())).status).toBe(200);
    } finally {
      await srv.close();
    }
  });

  it('shutdown with time to spare: in-flight requests finish, new ones get 503, readiness turns false', async () => {
    const srv = await start({ ...base, engine: slowed(base.engine, 20) }, { batch: 2 });
    const inflight = [post(srv.url, long(47, 35)), post(srv.url, long(12, 34)), post(srv.url, long(56, 21))];
    await until(async () => (await metric(srv.url, 'fast_dllm_active_sequences')) === 2, 5_000, 'two requests to start');
    const stopping = srv.app.fastDllm.shutdown({ graceMs: 30_000 });
    expect(srv.app.fastDllm.state).toBe('draining');
    const ready = await fetch(`${srv.url}/health/ready`);
    expect(ready.status).toBe(503);
    const refused = await post(srv.url, long());
    expect(refused.status).toBe(503);
    expect(((await refused.json()) as { error: { code: string } }).error.code).toBe('shutdown');
    const answers = await Promise.all(inflight);
    expect(answers.map((r) => r.status)).toEqual([200, 200, 200]); // the queued third one too
    const texts = await Promise.all(answers.map(async (r) => ((await r.json()) as { choices: { message: { content: string } }[] }).choices[0].message.content));
    expect(texts.map((t) => /answer: (\d+)/.exec(t)?.[1])).toEqual(['82', '46', '77']);
    expect(await stopping).toEqual({ cancelled: 0 });
    expect(srv.app.fastDllm.state).toBe('closed');
  });

  it('shutdown past the grace period: what is left is cancelled with a clean 503 error (an error event mid-stream)', async () => {
    const srv = await start({ ...base, engine: slowed(base.engine, 30) }, { batch: 1 });
    const plain = post(srv.url, long(47, 35));
    await until(async () => (await metric(srv.url, 'fast_dllm_active_sequences')) === 1, 5_000, 'the request to start');
    const stream = await srv.client.chat.completions.create({ ...long(12, 34), stream: true });
    const streamed = (async () => {
      try {
        for await (const _ of stream);
        return null;
      } catch (e) {
        return e;
      }
    })();
    const { cancelled } = await srv.app.fastDllm.shutdown({ graceMs: 50 });
    expect(cancelled).toBe(2);
    const r = await plain;
    expect(r.status).toBe(503);
    expect(((await r.json()) as { error: { code: string } }).error.code).toBe('shutdown');
    const e = await streamed;
    expect(e).toBeInstanceOf(APIError);
    expect((e as APIError).message).toMatch(/shutting down/);
  });
});
