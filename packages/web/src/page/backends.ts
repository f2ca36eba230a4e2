/**
 * Where a chat turn runs: the engine worker in this browser (LocalBackend), or a `fast-dllm serve` process
 * (RemoteBackend, through openai-client.ts). The page talks to both through `chat`.
 */
import type {
  CanvasFrame, ChatMessage, FromWorker, GenerationSummary, LoadOptions, LoadedModelInfo, LocalFrameInfo, ModelSource, ToWorker,
} from '../shared/protocol.js';
import { choicesOf, type DecodeSettings } from '../shared/settings.js';
import { listModelCards, serverFields, streamChat, type RemoteModel } from './openai-client.js';

export interface TurnCallbacks {
  onFrame(frame: CanvasFrame, info?: LocalFrameInfo): void;
  /** The whole committed text so far. */
  onText(text: string): void;
}

export interface TurnResult {
  text: string;
  /** Absent when the server reports none. */
  stats: GenerationSummary | null;
  /** The last state of the canvas when it differs from the last frame (early stop fills EOS without a step). */
  frame?: CanvasFrame;
  info?: LocalFrameInfo;
}

export interface Backend {
  readonly kind: 'local' | 'remote';
  chat(messages: ChatMessage[], settings: DecodeSettings, cb: TurnCallbacks, signal: AbortSignal): Promise<TurnResult>;
}

export type LoadProgress = Extract<FromWorker, { type: 'progress' }>;

/** The engine worker: one per loaded model (a new load starts a new worker, so the old memory is freed). */
export class LocalBackend implements Backend {
  readonly kind = 'local';
  private worker: Worker | null = null;
  private nextId = 1;
  private readonly turns = new Map<number, (m: FromWorker) => void>();

  constructor(private readonly workerUrl: string) {}

  /** Loads a model in a fresh worker; resolves with what the page shows of it, rejects with the loader's message. */
  load(source: ModelSource, options: LoadOptions, onProgress: (p: LoadProgress) => void): Promise<LoadedModelInfo> {
    this.worker?.terminate();
    for (const [, f] of this.turns) f({ type: 'error', id: 0, message: 'the model was replaced', aborted: true });
    this.turns.clear();
    const worker = new Worker(this.workerUrl, { type: 'module' });
    this.worker = worker;
    return new Promise((resolve, reject) => {
      worker.onerror = (e) => reject(new Error(`the engine worker failed to start: ${e.message || 'script error'} (${this.workerUrl})`));
      worker.onmessage = (e: MessageEvent<FromWorker>) => {
        const m = e.data;
        if (m.type === 'progress') onProgress(m);
        else if (m.type === 'loaded') resolve(m.model);
        else if (m.type === 'load-error') reject(new Error(m.message));
        else if ('id' in m) this.turns.get(m.id)?.(m);
      };
      this.send({ type: 'load', source, options });
    });
  }

  get ready(): boolean {
    return this.worker !== null;
  }

  private send(m: ToWorker): void {
    this.worker!.postMessage(m);
  }

  chat(messages: ChatMessage[], settings: DecodeSettings, cb: TurnCallbacks, signal: AbortSignal): Promise<TurnResult> {
    if (!this.worker) return Promise.reject(new Error('no model is loaded'));
    const id = this.nextId++;
    return new Promise((resolve, reject) => {
      const onAbort = () => this.send({ type: 'abort', id });
      signal.addEventListener('abort', onAbort, { once: true });
      this.turns.set(id, (m) => {
        if (m.type === 'frame') {
          cb.onFrame(m.frame, m.info);
          cb.onText(m.text);
          return;
        }
        this.turns.delete(id);
        signal.removeEventListener('abort', onAbort);
        if (m.type === 'done') resolve({ text: m.text, stats: m.stats, frame: m.frame, info: m.info });
        else if (m.type === 'error') {
          const e = new Error(m.message);
          if (m.aborted) e.name = 'AbortError';
          reject(e);
        }
      });
      this.send({ type: 'generate', id, messages, settings });
    });
  }
}

/** A `fast-dllm serve` process (or any OpenAI-compatible server; the canvas then stays empty). */
export class RemoteBackend implements Backend {
  readonly kind = 'remote';
  /** The model the requests name (OpenAI's `model` is required) and its family: the server's first, asked once. */
  private card: Promise<RemoteModel | undefined> | undefined;
  constructor(readonly server: string) {}

  /** The server's model (undefined when it lists none); its caps say which settings apply. */
  model(): Promise<RemoteModel | undefined> {
    this.card ??= listModelCards(this.server).then((m) => m[0]);
    this.card.catch(() => (this.card = undefined)); // ask again next time
    return this.card;
  }

  async chat(messages: ChatMessage[], settings: DecodeSettings, cb: TurnCallbacks, signal: AbortSignal): Promise<TurnResult> {
    const model = await this.model();
    const t0 = performance.now();
    let text = '';
    let last: CanvasFrame | null = null;
    // Only the settings of the served model's family, in the server's field names (the server resolves them).
    const { genLength, temperature, seed, ...rest } = choicesOf(settings, model?.caps ?? null);
    const r = await streamChat(this.server, { model: model?.id, messages, maxTokens: genLength!, temperature: temperature!, seed: seed!, decoding: serverFields(rest) }, {
      onDelta: (d) => {
        text += d;
        cb.onText(text);
      },
      onCanvas: (f) => {
        last = f;
        cb.onFrame(f);
      },
    }, signal);
    const ms = performance.now() - t0;
    const frame = last as CanvasFrame | null;
    const content = r.usage?.completion_tokens;
    const nfe = frame?.nfe ?? 0;
    const unmasked = frame ? frame.tokens.filter((t) => t !== null).length : 0;
    return {
      text: r.text,
      stats: frame || content !== undefined
        ? {
          nfe, tokensPerForward: nfe > 0 ? unmasked / nfe : 0, wallTimeMs: ms, contentTokens: content ?? unmasked,
          tokensPerSecond: ms > 0 ? ((content ?? unmasked) * 1000) / ms : 0, stoppedEarly: false,
        }
        : null,
    };
  }
}
