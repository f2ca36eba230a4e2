/**
 * The engine worker (a module Web Worker): loads the model (loader/), holds the WASM engine and the tokenizer, and
 * runs the scheduler's generate(), posting one canvas frame per step. Everything heavy happens here, so the page's
 * main thread only draws. With threads > 1 the engine's kernel workers are started from here (the engine blocks
 * on Atomics.wait while they compute, which a worker may do and the main thread may not).
 */
import { CommittedTextStream, committedPrefix, generate, provisionalTokens, stopIdsOf, type Engine, type Generation } from '@fast-dllm/scheduler';
import type { TextTokenizer } from '@fast-dllm/model';
import { createBrowserWasmEngine } from '@fast-dllm/engine-wasm/browser';
import { FolderDirectory, UrlDirectory, type ModelDirectory } from '../loader/directory.js';
import { countingSources, fetchWeights, planModel, type Progress } from '../loader/load-model.js';
import { settingsProblems, toRequest, type DecodeSettings } from '../shared/settings.js';
import type { CanvasFrame, ChatMessage, FromWorker, LoadOptions, LocalFrameInfo, ModelSource, ToWorker } from '../shared/protocol.js';

const scope = globalThis as unknown as {
  onmessage: ((e: MessageEvent<ToWorker>) => void) | null;
  postMessage(m: FromWorker): void;
};
const post = (m: FromWorker) => scope.postMessage(m);

interface Loaded {
  engine: Engine;
  tokenizer: TextTokenizer;
  maxPositions: number;
  maskId: number;
  eosId: number;
  stopIds: number[];
}

let loaded: Loaded | null = null;
/** Serialises loads and generations: a message waits for the one before it. */
let queue: Promise<void> = Promise.resolve();
/** Generations asked for and not finished, by id; 'abort' may arrive while one still waits in the queue. */
const running = new Map<number, AbortController>();

/** A macrotask boundary: lets 'abort' messages in between forward passes (a forward resolves in microtasks only). */
function yieldToEvents(): Promise<void> {
  return new Promise((resolve) => {
    const ch = new MessageChannel();
    ch.port1.onmessage = () => {
      ch.port1.close();
      resolve();
    };
    ch.port2.postMessage(null);
  });
}

function sleep(ms: number, signal: AbortSignal): Promise<void> {
  return new Promise((resolve, reject) => {
    const t = setTimeout(resolve, ms);
    signal.addEventListener('abort', () => {
      clearTimeout(t);
      reject(signal.reason);
    }, { once: true });
  });
}

function directoryOf(source: ModelSource): ModelDirectory {
  return source.kind === 'url' ? new UrlDirectory(source.url) : new FolderDirectory(source.files);
}

async function load(source: ModelSource, options: LoadOptions): Promise<void> {
  const t0 = performance.now();
  if (loaded) {
    const old = loaded;
    loaded = null;
    await old.engine.dispose();
  }
  const progress: Progress = (p) => post({ type: 'progress', ...p });
  const dir = directoryOf(source);
  const plan = await planModel(dir, options, progress);
  const blobs = await fetchWeights(dir, plan, progress);
  const engine = await createBrowserWasmEngine(
    { config: plan.config, generationConfig: plan.generationConfig, tokenizerConfig: plan.tokenizerConfig, ...plan.configExtras, weights: countingSources(blobs, progress) },
    { threads: options.threads, weightDType: options.weightDType, buildUrl: options.wasmUrl, workerUrl: options.kernelWorkerUrl },
  );
  const d = plan.description;
  loaded = { engine, tokenizer: plan.tokenizer, maxPositions: d.maxPositions, maskId: d.special.mask, eosId: d.special.eos, stopIds: [...stopIdsOf(engine.model)] };
  const gc = plan.generationConfig ?? {};
  const posInt = (v: unknown) => (typeof v === 'number' && Number.isInteger(v) && v > 0 ? v : undefined);
  const defaults = Object.fromEntries(
    Object.entries({ genLength: posInt(gc.gen_length), blockLength: posInt(gc.block_length), steps: posInt(gc.steps) }).filter(([, v]) => v !== undefined),
  );
  post({
    type: 'loaded',
    model: {
      label: source.label ?? dir.label, architecture: d.architecture, parameters: plan.parameters, vocabSize: d.vocabSize,
      ...(plan.knows !== undefined ? { knows: plan.knows } : {}),
      maxPositions: d.maxPositions, ...(d.blockSize !== undefined ? { blockSize: d.blockSize } : {}), fileBytes: plan.fileBytes, engineBytes: plan.engineBytes, weightDType: options.weightDType,
      threads: options.threads, defaults, loadMs: performance.now() - t0,
    },
  });
}

/** Decoded text of one token for a canvas cell (special tokens as their own text). */
function tokenText(tok: TextTokenizer, cache: Map<number, string>, id: number): string {
  let s = cache.get(id);
  if (s === undefined) {
    s = tok.decode([id], { skipSpecial: false });
    cache.set(id, s);
  }
  return s;
}

async function run(id: number, messages: ChatMessage[], s: DecodeSettings): Promise<void> {
  const m = loaded;
  if (!m) throw new Error('no model is loaded yet');
  const text = m.tokenizer.applyChatTemplate(messages, { addGenerationPrompt: true });
  const prompt = Int32Array.from(m.tokenizer.encode(text, { addSpecial: false }));
  const caps = { architecture: m.engine.model.architecture, maxPositions: m.maxPositions, ...(m.engine.model.blockSize !== undefined ? { blockSize: m.engine.model.blockSize } : {}) };
  const problems = settingsProblems(s, caps, prompt.length);
  if (problems.length) throw new Error(problems.join(' '));
  const controller = running.get(id)!; // registered when the message arrived
  const signal = controller.signal;
  const P = prompt.length;
  let tokens: (string | null)[] = new Array(s.genLength).fill(null); // (genLength,) decoded cells
  const names = new Map<number, string>();
  // DESIGN §9: the scheduler's committed-text stream, as the CLI and the server stream it.
  const committed = new CommittedTextStream((ids) => m.tokenizer.decode(ids, { skipSpecial: true }));
  const stops: number[] = []; // generated positions holding EOS
  const ends: number[] = []; // … holding the end-of-turn token
  let contentTokens = 0;
  let paused = 0; // ms of slow-motion delay, left out of the timings
  const t0 = performance.now();
  let step = 0;
  let nfe = 0;
  let block = 0;
  const firstGroup = caps.blockSize !== undefined ? caps.blockSize - (P % caps.blockSize) : undefined;
  const info = (): LocalFrameInfo => ({ promptLength: P, blockLength: caps.blockSize ?? s.blockLength, ...(firstGroup !== undefined ? { firstGroup } : {}), block, stops: stops.slice(), ends: ends.slice(), elapsedMs: performance.now() - t0 - paused, contentTokens });
  post({ type: 'frame', id, frame: { step: 0, nfe: 0, tokens: tokens.slice(), committed: [] }, info: info(), text: '' });

  // Each forward first yields (so 'abort' arrives) and, in slow motion, waits. Only `forward` is wrapped (a
  // Proxy passes everything else through), so the wrapper holds whatever else the engine contract asks for.
  const pause = async () => {
    await yieldToEvents();
    if (s.slowMotionMs > 0) {
      const w0 = performance.now();
      await sleep(s.slowMotionMs, signal);
      paused += performance.now() - w0;
    }
    signal.throwIfAborted();
  };
  const engine = new Proxy(m.engine, {
    get(target, prop) {
      if (prop === 'forward') {
        return async (...args: Parameters<Engine['forward']>) => {
          await pause();
          return target.forward(...args);
        };
      }
      const v = Reflect.get(target, prop, target);
      return typeof v === 'function' ? v.bind(target) : v;
    },
  });
  try {
    const result = await generate(engine, toRequest(s, prompt, caps), {
      signal,
      onEvent: (ev, g: Generation) => {
        if (ev.type !== 'step') return;
        step++;
        nfe = ev.nfe;
        block = ev.block;
        const now: number[] = [];
        // The provisional view (DESIGN §9), as the server draws it; this step's positions colour the stops.
        tokens = provisionalTokens(g.snapshot().subarray(P), m.maskId, (t) => tokenText(m.tokenizer, names, t));
        ev.positions.forEach((p, i) => {
          const g = p - P;
          const t = ev.tokens[i];
          if (t === m.eosId) stops.push(g);
          else if (m.stopIds.includes(t)) ends.push(g);
          if (t !== m.eosId) contentTokens++;
          now.push(g);
        });
        const frame: CanvasFrame = { step, nfe, tokens: tokens.slice(), committed: now };
        const c = g.committed();
        committed.update(c.ids, c.stopped || g.done);
        post({ type: 'frame', id, frame, info: info(), text: committed.text });
      },
    });
    // Early stop fills the rest with EOS without a step: show those cells too.
    if (result.stoppedEarly) {
      result.tokens.forEach((t, g) => {
        if (tokens[g] === null) {
          tokens[g] = tokenText(m.tokenizer, names, t);
          stops.push(g);
        }
      });
    }
    committed.update(committedPrefix(result.tokens, m.maskId, m.stopIds).ids, true);
    const wallTimeMs = result.stats.wallTimeMs - paused;
    post({
      type: 'done', id, text: committed.text, frame: { step, nfe, tokens: tokens.slice(), committed: [] }, info: info(),
      stats: {
        nfe: result.stats.nfe, tokensPerForward: result.stats.tokensPerForward, wallTimeMs, contentTokens: result.stats.contentTokens,
        tokensPerSecond: wallTimeMs > 0 ? (result.stats.contentTokens * 1000) / wallTimeMs : 0, stoppedEarly: result.stoppedEarly,
        forwardsByMode: result.stats.forwardsByMode,
      },
    });
  } finally {
    running.delete(id);
  }
}

scope.onmessage = (e) => {
  const msg = e.data;
  if (msg.type === 'abort') {
    running.get(msg.id)?.abort(new Error('stopped'));
    return;
  }
  if (msg.type === 'generate') running.set(msg.id, new AbortController());
  queue = queue.then(async () => {
    if (msg.type === 'load') {
      try {
        await load(msg.source, msg.options);
      } catch (err) {
        post({ type: 'load-error', message: (err as Error)?.message ?? String(err) });
      }
    } else {
      try {
        running.get(msg.id)!.signal.throwIfAborted();
        await run(msg.id, msg.messages, msg.settings);
      } catch (err) {
        running.delete(msg.id);
        const aborted = (err as Error)?.name === 'AbortError' || (err as Error)?.message === 'stopped';
        post({ type: 'error', id: msg.id, message: aborted ? 'stopped' : (err as Error)?.message ?? String(err), aborted });
      }
    }
  });
};
