// The page's client of `fast-dllm serve` (OpenAI chat completions, SSE), against small servers in this process.
import { createServer, type Server } from 'node:http';
import { afterEach, describe, expect, it } from 'vitest';
import { completionsUrl, listModels, sseData, streamChat } from '../src/page/openai-client.js';

let server: Server | null = null;
afterEach(() => new Promise<void>((r) => (server ? server.close(() => r()) : r())));

/** A server whose POST answers with `chunks` written one by one (raw SSE text); resolves with its base URL. */
async function serve(handler: Parameters<typeof createServer>[1]): Promise<string> {
  server = createServer(handler);
  await new Promise<void>((r) => server!.listen(0, '127.0.0.1', r));
  return `http://127.0.0.1:${(server.address() as { port: number }).port}`;
}

function streamOf(parts: string[]): ReadableStream<Uint8Array> {
  const enc = new TextEncoder();
  return new ReadableStream({ start(c) { for (const p of parts) c.enqueue(enc.encode(p)); c.close(); } });
}

async function all(gen: AsyncGenerator<string>): Promise<string[]> {
  const out: string[] = [];
  for await (const d of gen) out.push(d);
  return out;
}

describe('openai-client', () => {
  it('completionsUrl accepts a server root or its /v1', () => {
    expect(completionsUrl('http://127.0.0.1:8080')).toBe('http://127.0.0.1:8080/v1/chat/completions');
    expect(completionsUrl('http://127.0.0.1:8080/v1/')).toBe('http://127.0.0.1:8080/v1/chat/completions');
    expect(completionsUrl(' https://h/api ')).toBe('https://h/api/v1/chat/completions');
    expect(() => completionsUrl('localhost:8080')).toThrow(/not an http\(s\) URL|not a server URL/);
    expect(() => completionsUrl('nope')).toThrow(/'nope' is not a server URL/);
  });

  it('sseData splits events across chunk boundaries, CRLF line ends, comments and multi-line data', async () => {
    expect(await all(sseData(streamOf(['data: {"a"', ':1}\n', '\ndata: x\r\n\r\n: comment\n\n', 'event: e\ndata: l1\ndata: l2\n\ndata: [DONE]'])))).toEqual([
      '{"a":1}', 'x', 'l1\nl2', '[DONE]',
    ]);
  });

  it('streams deltas and canvas frames, and sends the canvas extension field', async () => {
    let got: Record<string, unknown> = {};
    const url = await serve((req, res) => {
      let body = '';
      req.on('data', (d) => (body += d));
      req.on('end', () => {
        got = JSON.parse(body);
        res.setHeader('Content-Type', 'text/event-stream');
        const frame = { step: 1, nfe: 1, tokens: ['4', null], committed: [0] };
        res.write(`data: ${JSON.stringify({ choices: [{ delta: { role: 'assistant' } }], fast_dllm: { canvas: frame } })}\n\n`);
        res.write(`data: ${JSON.stringify({ choices: [{ delta: { content: '4' } }] })}\n\n`);
        res.write(`data: ${JSON.stringify({ choices: [{ delta: { content: '2' }, finish_reason: 'stop' }], usage: { completion_tokens: 2 } })}\n\n`);
        res.end('data: [DONE]\n\n');
      });
    });
    const deltas: string[] = [];
    const frames: unknown[] = [];
    const r = await streamChat(url, { messages: [{ role: 'user', content: 'hi' }], maxTokens: 32, temperature: 0, seed: 7 }, {
      onDelta: (d) => deltas.push(d), onCanvas: (f) => frames.push(f),
    });
    expect(got).toEqual({ messages: [{ role: 'user', content: 'hi' }], stream: true, max_tokens: 32, temperature: 0, seed: 7, fast_dllm: { canvas: true } });
    expect(deltas).toEqual(['4', '2']);
    expect(frames).toEqual([{ step: 1, nfe: 1, tokens: ['4', null], committed: [0] }]);
    expect(r).toEqual({ text: '42', finishReason: 'stop', usage: { completion_tokens: 2 } });
  });

  it('reports HTTP errors with the server\'s message, error events, and events that are not JSON', async () => {
    let mode = 0;
    const url = await serve((_req, res) => {
      if (mode === 0) {
        res.statusCode = 400;
        res.setHeader('Content-Type', 'application/json');
        res.end(JSON.stringify({ error: { message: 'max_tokens too large', type: 'invalid_request_error' } }));
      } else if (mode === 1) {
        res.end(`data: ${JSON.stringify({ error: { message: 'engine failed' } })}\n\n`);
      } else {
        res.end('data: {oops\n\n');
      }
    });
    const req = { messages: [], maxTokens: 1, temperature: 0, seed: 0 };
    await expect(streamChat(url, req, { onDelta: () => {} })).rejects.toThrow(/answered 400 Bad Request: max_tokens too large$/);
    mode = 1;
    await expect(streamChat(url, req, { onDelta: () => {} })).rejects.toThrow('the server reported: engine failed');
    mode = 2;
    await expect(streamChat(url, req, { onDelta: () => {} })).rejects.toThrow('the server sent a stream event that is not JSON: {oops');
  });

  it('listModels names the models; an unreachable server is named in the error', async () => {
    const url = await serve((_req, res) => res.end(JSON.stringify({ data: [{ id: 'a' }, { id: 'b' }] })));
    expect(await listModels(url)).toEqual(['a', 'b']);
    await expect(listModels('http://127.0.0.1:1')).rejects.toThrow(/cannot reach http:\/\/127\.0\.0\.1:1\/v1\/models: .*Is `fast-dllm serve` running there/);
  });
});
