/**
 * `fast-dllm serve`: the OpenAI-compatible server of @fast-dllm/server on one model and engine. It listens at
 * once (liveness answers, readiness is false while the engine loads), and on SIGTERM or Ctrl-C stops taking
 * requests, lets in-flight ones finish within --grace seconds, cancels the rest and exits 0. A second SIGTERM
 * during that drain ends the grace at once: what is still in flight is cancelled (its clients get a 503) and the
 * connections close within 5 s; a third one kills the process.
 */
import { hostname } from 'node:os';
import { basename, dirname } from 'node:path';
import { Option, type Command } from 'commander';
import { DEFAULT_BLOCK_LENGTH, DEFAULT_GEN_LENGTH, type Engine } from '@fast-dllm/scheduler';
import { AUTO_ORDER, ENGINE_CHOICES, openEngine } from './engines.js';
import { RunError, UsageError } from './errors.js';
import type { Io } from './io.js';
import { openModelDir } from './modeldir.js';
import { DTYPE_CHOICES } from './decode.js';
import { choiceArg, intArg } from './parse.js';

interface ServeFlags {
  model?: string;
  name?: string;
  host: string;
  port: number;
  engine: (typeof ENGINE_CHOICES)[number];
  batch?: number;
  threads?: number;
  dtype?: (typeof DTYPE_CHOICES)[number];
  maxQueue: number;
  apiKey?: string;
  timeout: number;
  grace: number;
  maxTokens: number;
  maxTokensLimit: number;
  allowedHosts?: string[];
  headersTimeout: number;
  bodyTimeout: number;
  blockLength: number;
  cors?: string[];
  logLevel: string;
}

const LOG_LEVELS = ['fatal', 'error', 'warn', 'info', 'debug', 'trace', 'silent'] as const;
/** 127.0.0.0/8, ::1 and localhost reach only this machine. */
const isLoopback = (host: string) => /^127\.\d+\.\d+\.\d+$/.test(host) || host === '::1' || host === 'localhost';

export function registerServe(program: Command, io: Io, signal: AbortSignal): void {
  program
    .command('serve')
    .description('OpenAI-compatible HTTP server with continuous batching (POST /v1/chat/completions, /v1/completions)')
    .option('--model <dir>', 'Hugging Face model directory (default: the bundled model)')
    .option('--name <id>', 'model name clients send as "model" (default: "default" for the bundled model, org/name for a Hugging Face cache snapshot, else the directory name)')
    .option('--host <host>', 'address to bind; anything but loopback exposes the server to the network', '127.0.0.1')
    .addOption(new Option('--port <n>', 'port (0: any free port)').argParser(intArg('--port', 0, 65535)).default(8000))
    .addOption(new Option('--engine <name>', `engine: auto tries ${AUTO_ORDER.join(', ')}`).argParser(choiceArg('--engine', ENGINE_CHOICES)).default('auto'))
    .addOption(new Option('--batch <n>', 'most sequences per forward pass (default: min(engine maximum, 8))').argParser(intArg('--batch', 1, 4096)))
    .addOption(new Option('--threads <n>', 'worker threads for CPU engines').argParser(intArg('--threads', 1, 1024)))
    .addOption(new Option('--dtype <type>', "weight storage: f32, bf16, or int8 (CPU engines: a quarter of f32's memory); default: the engine's").argParser(choiceArg('--dtype', DTYPE_CHOICES)))
    .addOption(new Option('--max-queue <n>', 'most requests waiting for a place; more get 429').argParser(intArg('--max-queue', 0, 1_000_000)).default(256))
    .addOption(new Option('--api-key <key>', 'require Authorization: Bearer <key> on /v1/* (or set FAST_DLLM_API_KEY)').env('FAST_DLLM_API_KEY'))
    .addOption(new Option('--timeout <seconds>', 'deadline of each request from its arrival (0: none)').argParser(intArg('--timeout', 0, 10_000_000)).default(600))
    .addOption(new Option('--grace <seconds>', 'on SIGTERM / Ctrl-C: time in-flight requests get to finish').argParser(intArg('--grace', 0, 86_400)).default(30))
    .addOption(new Option('--max-tokens <n>', 'answer tokens when a request names no max_tokens').argParser(intArg('--max-tokens', 1)).default(DEFAULT_GEN_LENGTH))
    .addOption(new Option('--max-tokens-limit <n>', 'most answer tokens one request may ask for (max_tokens above it is a 400)').argParser(intArg('--max-tokens-limit', 1)).default(2048))
    .addOption(new Option('--allowed-hosts <names>', 'comma-separated Host-header names accepted besides IP addresses, localhost and --host (DNS-rebinding defence), or *').argParser((v: string) => v.split(',').map((s) => s.trim()).filter(Boolean)))
    .addOption(new Option('--headers-timeout <seconds>', 'a client must send its request headers within this time').argParser(intArg('--headers-timeout', 1, 3600)).default(10))
    .addOption(new Option('--body-timeout <seconds>', 'a client must send its whole request within this time').argParser(intArg('--body-timeout', 1, 3600)).default(30))
    .addOption(new Option('--block-length <n>', 'block length when a request names none').argParser(intArg('--block-length', 1)).default(DEFAULT_BLOCK_LENGTH))
    .addOption(new Option('--cors <origins>', 'comma-separated origins allowed to call from a browser, or *').argParser((v: string) => v.split(',').map((s) => s.trim()).filter(Boolean)))
    .addOption(new Option('--log-level <level>', 'request log (JSON lines on stdout)').argParser(choiceArg('--log-level', LOG_LEVELS)).default('warn'))
    .action(async (opts: ServeFlags) => {
      if (opts.apiKey !== undefined && opts.apiKey.trim() === '') throw new UsageError('--api-key / FAST_DLLM_API_KEY is empty; set a key or unset it');
      if (opts.maxTokens > opts.maxTokensLimit) throw new UsageError(`--max-tokens ${opts.maxTokens} is above --max-tokens-limit ${opts.maxTokensLimit}; lower it or raise the limit`);
      const { createServer } = await import('@fast-dllm/server');
      const md = await openModelDir(opts.model, { needTokenizer: true });
      const id = opts.name ?? (opts.model === undefined ? 'default' : modelIdFor(md.dir));
      const log = (l: string) => io.stderr(`${l}\n`);

      const enginePromise = openEngine(opts.engine, md.dir, { threads: opts.threads, ...(opts.dtype ? { weightDType: opts.dtype } : {}) }, log);
      let server;
      try {
        server = await createServer({
          engine: enginePromise,
          model: { id, description: md.description, tokenizer: md.tokenizer!, dir: md.dir },
          batch: opts.batch,
          maxQueue: opts.maxQueue,
          apiKey: opts.apiKey,
          requestTimeoutMs: opts.timeout * 1000,
          defaults: { maxTokens: opts.maxTokens, blockLength: opts.blockLength },
          maxTokensLimit: opts.maxTokensLimit,
          // The name the server was started under is always accepted (e.g. --host my-box.lan), and on a network
          // address this machine's own name; a rebinding page can send neither.
          allowedHosts: [opts.host, ...(isLoopback(opts.host) ? [] : [hostname()]), ...(opts.allowedHosts ?? [])],
          headersTimeoutMs: opts.headersTimeout * 1000,
          bodyTimeoutMs: opts.bodyTimeout * 1000,
          corsOrigins: opts.cors,
          logger: opts.logLevel === 'silent' ? false : { level: opts.logLevel },
        });
      } catch (e) {
        enginePromise.then((en) => en.dispose(), () => undefined);
        throw new UsageError((e as Error).message);
      }
      const stop = new Promise<string>((resolve) => {
        const onTerm = () => resolve('SIGTERM');
        process.once('SIGTERM', onTerm);
        if (signal.aborted) resolve('SIGINT');
        signal.addEventListener('abort', () => resolve('SIGINT'), { once: true });
      });
      let address: string;
      try {
        address = await server.listen({ host: opts.host, port: opts.port });
      } catch (e) {
        await server.fastDllm.shutdown({ graceMs: 0 });
        enginePromise.then((en) => en.dispose(), () => undefined);
        throw new UsageError(`cannot listen on ${opts.host}:${opts.port}: ${(e as Error).message}`);
      }
      log(`fast-dllm serve: listening on ${address} (model '${id}' from ${md.dir}); loading the engine`);
      if (!isLoopback(opts.host) && opts.apiKey === undefined) {
        log(`warning: --host ${opts.host} exposes the server to the network without an API key; anyone who can reach it can use it (set --api-key or FAST_DLLM_API_KEY)`);
      }

      let engine: Engine | undefined;
      const loaded = server.fastDllm.engineReady.then((e) => (engine = e), (e: unknown) => e as Error);
      const first = await Promise.race([loaded.then(() => 'loaded'), stop]);
      if (first === 'loaded' && !engine) {
        await server.fastDllm.shutdown({ graceMs: 0 });
        enginePromise.then((en) => en.dispose(), () => undefined);
        const err = (await loaded) as Error;
        throw err instanceof UsageError || err instanceof RunError ? err : new UsageError(err.message);
      }
      if (engine) {
        log(`fast-dllm serve: ready: engine ${engine.name}, batch ${server.fastDllm.driver()!.maxBatch}, queue ${opts.maxQueue}, timeout ${opts.timeout || 'none'}${opts.timeout ? ' s' : ''}`);
      }
      const why = first === 'loaded' ? await stop : first;
      // The handler goes in before the line that announces it: a SIGTERM sent on reading that line must find it
      // (between the first SIGTERM's listener and this one, the signal has its default action: exit).
      process.once('SIGTERM', () => {
        log('fast-dllm serve: second SIGTERM: cancelling the requests still in flight');
        void server.fastDllm.shutdown({ graceMs: 0 });
      });
      log(`fast-dllm serve: ${why}: draining (grace ${opts.grace} s); a second SIGTERM cancels what is left now`);
      const { cancelled } = await server.fastDllm.shutdown({ graceMs: opts.grace * 1000 });
      log(`fast-dllm serve: stopped${cancelled ? ` (${cancelled} requests cancelled after the grace period)` : ''}`);
      const e = engine ?? (await enginePromise.catch(() => undefined));
      await e?.dispose();
    });
}

/** Folder names that say nothing about the model: the id comes from the folder above them. */
const GENERIC_DIRS = new Set(['model', 'models', 'checkpoint', 'weights', 'hf', 'main']);

/**
 * The id `serve` gives a model directory when --name is not given: `org/name` for a Hugging Face cache snapshot
 * (`…/models--org--name/snapshots/<commit>`, whose own name is a commit hash), the folder above a generic folder
 * name (`packages/bd-model/model` → `bd-model`), else the directory's name.
 */
export function modelIdFor(dir: string): string {
  const norm = dir.replace(/[\\/]+$/, '');
  const hub = /(?:^|[\\/])models--([^\\/]+?)--([^\\/]+)[\\/]snapshots[\\/][^\\/]+$/.exec(norm);
  if (hub) return `${hub[1]}/${hub[2]}`;
  const name = basename(norm);
  if (GENERIC_DIRS.has(name.toLowerCase())) {
    const parent = basename(dirname(norm));
    if (parent && parent !== '.' && parent !== '/') return parent;
  }
  return name;
}
