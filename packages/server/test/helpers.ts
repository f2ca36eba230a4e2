/** A server on the bundled model and the WASM engine, bound to 127.0.0.1 on a free port, for the tests. */
import OpenAI from 'openai';
import { createWasmEngine } from '@fast-dllm/engine-wasm';
import { loadTokenizer, readModelConfig, type TextTokenizer } from '@fast-dllm/model';
import { defaultModelDir } from '@fast-dllm/default-model';
import type { Engine, GenerationResult, ModelInfo } from '@fast-dllm/scheduler';
import { createServer, type FastDllmServer, type ServerOptions } from '../src/index.js';

export const MODEL_ID = 'default';

export interface Running {
  app: FastDllmServer;
  url: string;
  client: OpenAI;
  close(): Promise<void>;
}

export async function bundled(): Promise<{ engine: Engine; tokenizer: TextTokenizer; description: Awaited<ReturnType<typeof readModelConfig>> }> {
  const [engine, tokenizer, description] = await Promise.all([createWasmEngine(defaultModelDir), loadTokenizer(defaultModelDir), readModelConfig(defaultModelDir)]);
  return { engine, tokenizer, description };
}

export async function start(base: Awaited<ReturnType<typeof bundled>>, opts: Partial<ServerOptions> = {}): Promise<Running> {
  const app = await createServer({
    engine: base.engine,
    model: { id: MODEL_ID, description: base.description, tokenizer: base.tokenizer, dir: defaultModelDir },
    processMetrics: false,
    ...opts,
  });
  const url = await app.listen({ host: '127.0.0.1', port: 0 });
  const client = new OpenAI({ baseURL: `${url}/v1`, apiKey: opts.apiKey ?? 'unused', maxRetries: 0, timeout: 60_000 });
  return { app, url, client, close: async () => void (await app.fastDllm.shutdown({ graceMs: 0 })) };
}

/** The engine with each forward pass delayed by `ms` (to keep requests in flight long enough to act on them). */
export function slowed(engine: Engine, ms: number): Engine {
  return new Proxy(engine, {
    get(target, key) {
      if (key === 'forward') {
        return async (...args: Parameters<Engine['forward']>) => {
          await new Promise((r) => setTimeout(r, ms));
          return target.forward(...args);
        };
      }
      const v = Reflect.get(target, key, target) as unknown;
      return typeof v === 'function' ? (v as (...a: unknown[]) => unknown).bind(target) : v;
    },
  });
}

/** `name value` of one unlabelled sample in Prometheus text. */
export function sample(metricsText: string, name: string): number {
  const m = new RegExp(`^${name} (\\S+)$`, 'm').exec(metricsText);
  if (!m) throw new Error(`metric ${name} not found`);
  return Number(m[1]);
}

export async function metric(url: string, name: string): Promise<number> {
  return sample(await (await fetch(`${url}/metrics`)).text(), name);
}

/** Polls until `cond` holds (or fails after `ms`). */
export async function until(cond: () => Promise<boolean>, ms = 10_000, what = 'condition'): Promise<void> {
  const t0 = Date.now();
  while (!(await cond())) {
    if (Date.now() - t0 > ms) throw new Error(`timed out after ${ms} ms waiting for ${what}`);
    await new Promise((r) => setTimeout(r, 10));
  }
}

/**
 * What a request's answer is when its generation runs alone to the end (generate()), computed here without the
 * server's code: the generated ids up to the first stop token, cut at max_tokens, decoded, cut at the earliest
 * stop string.
 */
export function expectedText(tokenizer: TextTokenizer, model: ModelInfo, result: GenerationResult, maxTokens: number, stops: string[]): string {
  const stopIds = [model.eosId, model.endOfTurnId].filter((x): x is number => x !== undefined);
  let n = 0;
  while (n < result.tokens.length && !stopIds.includes(result.tokens[n])) n++;
  const ids = result.tokens.subarray(0, Math.min(n, maxTokens));
  let text = ids.length === 0 ? '' : tokenizer.decode(ids, { skipSpecial: true });
  const cuts = stops.map((s) => text.indexOf(s)).filter((i) => i >= 0);
  if (cuts.length) text = text.slice(0, Math.min(...cuts));
  return text;
}

/** The chat prompt ids of one user message, as the server builds them. */
export function chatIds(tokenizer: TextTokenizer, content: string): Int32Array {
  return Int32Array.from(tokenizer.encode(tokenizer.applyChatTemplate([{ role: 'user', content }], { addGenerationPrompt: true }), { addSpecial: false }));
}
