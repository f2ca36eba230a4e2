/**
 * The page's client of `fast-dllm serve`: OpenAI chat completions with `stream: true` (server-sent events,
 * `data: {chunk}` … `data: [DONE]`), plus the provisional canvas asked for with the extension field
 * `fast_dllm: { canvas: true }`: chunks may then carry `fast_dllm.canvas = { step, nfe, tokens, committed }`
 * (tokens: the decoded generated positions, null for masks; committed: positions committed at this step).
 * Chunks without it are plain OpenAI chunks, so any OpenAI-compatible server streams text here too.
 * No DOM: runs in the page, in a worker or in Node 20 (fetch + web streams).
 */
import type { DecodingChoices } from '@fast-dllm/scheduler';
import type { CanvasFrame, ChatMessage } from '../shared/protocol.js';
import type { ModelCaps } from '../shared/settings.js';

/**
 * `fast-dllm serve`'s field for each decoding choice (its request.ts BODY_FIELDS, which a test holds equal);
 * genLength, temperature and seed travel as OpenAI's own max_tokens, temperature and seed.
 */
export const SERVER_FIELDS: Readonly<Record<Exclude<keyof DecodingChoices, 'genLength' | 'temperature' | 'seed'>, string>> = {
  rule: 'strategy', threshold: 'threshold', factor: 'factor', remasking: 'remasking', alg: 'alg', cache: 'cache', blockCache: 'block_cache',
  blockLength: 'block_length', steps: 'steps', subBlockLength: 'sub_block_length', stepsPerBlock: 'steps_per_block', refreshEvery: 'refresh_every',
  earlyStop: 'early_stop', entropyBound: 'entropy_bound', suffixWindow: 'suffix_window', earlyCommit: 'early_commit',
  draftVerify: 'draft_verify', elasticCache: 'elastic_cache',
};

/** Decoding choices as the body fields of a request to `fast-dllm serve`. */
export function serverFields(choices: DecodingChoices): Record<string, unknown> {
  const out: Record<string, unknown> = {};
  for (const [k, v] of Object.entries(choices)) {
    if (v !== undefined && k in SERVER_FIELDS) out[SERVER_FIELDS[k as keyof typeof SERVER_FIELDS]] = v;
  }
  return out;
}

export interface RemoteRequest {
  messages: ChatMessage[];
  /** The generation length. */
  maxTokens: number;
  temperature: number;
  seed: number;
  /** Model name (OpenAI requires one; `fast-dllm serve` lists its own at /v1/models). */
  model?: string;
  /**
   * The page's decoding settings, as `fast-dllm serve`'s extension fields (serverFields; a server that does not
   * know them may refuse or ignore them).
   */
  decoding?: Record<string, unknown>;
}

export interface RemoteHandlers {
  /** Each piece of committed text, in order (DESIGN §9: it only grows). */
  onDelta(text: string): void;
  onCanvas?(frame: CanvasFrame): void;
}

export interface RemoteResult {
  text: string;
  finishReason: string | null;
  usage?: { prompt_tokens?: number; completion_tokens?: number };
}

/** `http://host:port`, `…/v1` or `…/v1/` → the chat completions endpoint. */
export function completionsUrl(server: string): string {
  let u: URL;
  try {
    u = new URL(server.trim());
  } catch {
    throw new Error(`'${server}' is not a server URL; give one like http://127.0.0.1:8080`);
  }
  if (u.protocol !== 'http:' && u.protocol !== 'https:') throw new Error(`'${server}' is not an http(s) URL`);
  const path = u.pathname.replace(/\/+$/, '');
  u.pathname = path.endsWith('/v1') ? `${path}/chat/completions` : `${path}/v1/chat/completions`;
  return u.href;
}

/** A model a server runs: its id, and what `fast-dllm serve` says of it (null from another server). */
export interface RemoteModel {
  id: string;
  caps: ModelCaps | null;
}

/** The server's models (GET /v1/models): checks that it answers, and names what it runs and its family. */
export async function listModelCards(server: string, signal?: AbortSignal): Promise<RemoteModel[]> {
  const url = completionsUrl(server).replace(/\/chat\/completions$/, '/models');
  const res = await send(url, { signal });
  type Card = { id?: unknown; fast_dllm?: { architecture?: unknown; max_positions?: unknown; block_size?: unknown } };
  const body = (await res.json().catch(() => null)) as { data?: Card[] } | null;
  return (body?.data ?? []).filter((m) => m.id !== undefined && m.id !== '').map((m) => {
    const f = m.fast_dllm;
    const caps = f && typeof f.architecture === 'string' && typeof f.max_positions === 'number'
      ? { architecture: f.architecture, maxPositions: f.max_positions, ...(typeof f.block_size === 'number' ? { blockSize: f.block_size } : {}) }
      : null;
    return { id: String(m.id), caps };
  });
}

/** The ids of the server's models. */
export async function listModels(server: string, signal?: AbortSignal): Promise<string[]> {
  return (await listModelCards(server, signal)).map((m) => m.id);
}

async function send(url: string, init: RequestInit): Promise<Response> {
  let res: Response;
  try {
    res = await fetch(url, init);
  } catch (e) {
    if ((e as Error)?.name === 'AbortError') throw e;
    // A browser hides why a cross-origin request failed; the usual cause with a running server is its CORS list.
    const origin = globalThis.location?.origin;
    throw new Error(`cannot reach ${url}: ${(e as Error)?.message ?? e}. Is \`fast-dllm serve\` running there? If it is, it does not allow ` +
      `this page's origin: start it with \`fast-dllm serve --cors ${origin && origin !== 'null' ? origin : 'ORIGIN'}\``);
  }
  if (!res.ok) {
    const text = await res.text().catch(() => '');
    let msg = text.slice(0, 300);
    try {
      const j = JSON.parse(text) as { error?: { message?: string } | string };
      msg = typeof j.error === 'string' ? j.error : j.error?.message ?? msg;
    } catch {
      // not JSON: keep the text
    }
    throw new Error(`${url} answered ${res.status} ${res.statusText}${msg ? `: ${msg}` : ''}`.trim());
  }
  return res;
}

/** Splits an event stream into the data of each event (lines `data: …`, events separated by a blank line). */
export async function* sseData(body: ReadableStream<Uint8Array>): AsyncGenerator<string> {
  const reader = body.pipeThrough(new TextDecoderStream() as unknown as TransformStream<Uint8Array, string>).getReader();
  let buf = '';
  let data: string[] = [];
  try {
    for (;;) {
      const { done, value } = await reader.read();
      if (done) break;
      buf += value;
      let nl: number;
      while ((nl = buf.search(/\r\n|\r|\n/)) >= 0) {
        const line = buf.slice(0, nl);
        buf = buf.slice(nl + (buf.startsWith('\r\n', nl) ? 2 : 1));
        if (line === '') {
          if (data.length) yield data.join('\n');
          data = [];
        } else if (line.startsWith('data:')) {
          data.push(line.slice(line.startsWith('data: ') ? 6 : 5));
        } // comments (':') and other fields (event, id, retry) carry nothing for us
      }
    }
    if (buf.startsWith('data:')) data.push(buf.slice(buf.startsWith('data: ') ? 6 : 5));
    if (data.length) yield data.join('\n');
  } finally {
    reader.releaseLock();
  }
}

function isFrame(v: unknown): v is CanvasFrame {
  const f = v as CanvasFrame;
  return typeof f === 'object' && f !== null && Array.isArray(f.tokens) && Array.isArray(f.committed) && typeof f.nfe === 'number';
}

/** One streamed chat completion; resolves when the server sends [DONE] (or closes the stream). */
export async function streamChat(server: string, req: RemoteRequest, handlers: RemoteHandlers, signal?: AbortSignal): Promise<RemoteResult> {
  const res = await send(completionsUrl(server), {
    method: 'POST',
    headers: { 'Content-Type': 'application/json', Accept: 'text/event-stream' },
    body: JSON.stringify({
      ...(req.model ? { model: req.model } : {}),
      messages: req.messages, stream: true, max_tokens: req.maxTokens, temperature: req.temperature, seed: req.seed,
      ...(req.decoding ?? {}),
      fast_dllm: { canvas: true },
    }),
    signal,
  });
  if (!res.body) throw new Error('the server sent no stream body');
  let text = '';
  let finishReason: string | null = null;
  let usage: RemoteResult['usage'];
  for await (const data of sseData(res.body)) {
    if (data.trim() === '[DONE]') break;
    let chunk: {
      error?: { message?: string } | string;
      choices?: { delta?: { content?: string | null }; finish_reason?: string | null }[];
      usage?: RemoteResult['usage'];
      fast_dllm?: { canvas?: unknown };
    };
    try {
      chunk = JSON.parse(data);
    } catch {
      throw new Error(`the server sent a stream event that is not JSON: ${data.slice(0, 120)}`);
    }
    if (chunk.error) throw new Error(`the server reported: ${typeof chunk.error === 'string' ? chunk.error : chunk.error.message ?? JSON.stringify(chunk.error)}`);
    const canvas = chunk.fast_dllm?.canvas;
    if (canvas !== undefined && handlers.onCanvas && isFrame(canvas)) handlers.onCanvas(canvas);
    const choice = chunk.choices?.[0];
    const delta = choice?.delta?.content;
    if (typeof delta === 'string' && delta.length > 0) {
      text += delta;
      handlers.onDelta(delta);
    }
    if (choice?.finish_reason) finishReason = choice.finish_reason;
    if (chunk.usage) usage = chunk.usage;
  }
  return { text, finishReason, usage };
}
