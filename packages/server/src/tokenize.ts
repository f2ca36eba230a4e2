/**
 * Prompt tokenization off the event loop (DESIGN §10): one worker thread holds the model's tokenizer and
 * encodes chat conversations (template + encodeChat) and completion text. A task that runs past its limit (a
 * tokenizer regular expression that backtracks, a pathological input) has its thread terminated and replaced;
 * that request gets a 400 and the others queued behind it are retried on the fresh thread.
 */
import { Worker } from 'node:worker_threads';
import type { ChatMessage } from '@fast-dllm/model';
import type { TokenizeReply, TokenizeTask } from './tokenize-worker.js';

/** How a prompt becomes ids: synchronously (a TextTokenizer) or through the tokenizer thread. */
export interface PromptEncoder {
  encodeChat(messages: ChatMessage[]): Promise<number[] | Int32Array>;
  encode(text: string, addSpecial: boolean): Promise<number[] | Int32Array>;
}

/** A task the tokenizer could not do: `template` when the chat template refused or ran over its limits. */
export class TokenizeError extends Error {
  constructor(message: string, readonly template: boolean, readonly timedOut = false) {
    super(message);
  }
}

type Task = { kind: 'chat'; messages: ChatMessage[] } | { kind: 'text'; text: string; addSpecial: boolean };
interface Pending { task: Task; resolve(ids: Int32Array): void; reject(e: Error): void }

export class TokenizerThread implements PromptEncoder {
  private worker: Worker | undefined;
  private ready: Promise<void> | undefined;
  private readonly pending = new Map<number, Pending>();
  /** Task ids in the order the worker takes them; the first is the one running. */
  private readonly order: number[] = [];
  private nextId = 1;
  private timer: NodeJS.Timeout | undefined;
  private closed = false;

  constructor(private readonly dir: string, private readonly vocabSize: number | undefined, private readonly taskMs = 30_000) {}

  encodeChat(messages: ChatMessage[]): Promise<Int32Array> {
    return this.submit({ kind: 'chat', messages });
  }

  encode(text: string, addSpecial: boolean): Promise<Int32Array> {
    return this.submit({ kind: 'text', text, addSpecial });
  }

  /** Waits for the tokenizer to load in the thread (rejects when it cannot). */
  start(): Promise<void> {
    if (!this.worker) this.spawn();
    return this.ready!;
  }

  async close(): Promise<void> {
    this.closed = true;
    clearTimeout(this.timer);
    for (const p of this.pending.values()) p.reject(new Error('the server is shutting down'));
    this.pending.clear();
    this.order.length = 0;
    await this.worker?.terminate();
    this.worker = undefined;
  }

  private spawn(): void {
    // A heap cap of its own: a task that allocates without end fails this thread, not the server's process.
    const w = new Worker(new URL('../dist/tokenize-worker.js', import.meta.url), {
      workerData: { dir: this.dir, vocabSize: this.vocabSize }, resourceLimits: { maxOldGenerationSizeMb: 2048 },
    });
    w.unref();
    this.worker = w;
    this.ready = new Promise<void>((resolve, reject) => {
      w.once('message', () => resolve());
      w.once('error', reject);
    });
    this.ready.catch(() => undefined);
    w.on('message', (m: TokenizeReply | { ready: true }) => {
      if ('ready' in m) return;
      const p = this.pending.get(m.id);
      this.pending.delete(m.id);
      if (this.order[0] === m.id) this.order.shift();
      this.arm();
      if (!p) return;
      if ('ids' in m) p.resolve(m.ids);
      else p.reject(new TokenizeError(m.error, m.template));
    });
    w.on('error', (e) => this.fail(e));
    w.on('exit', () => {
      if (this.worker === w && !this.closed) this.fail(new Error('the tokenizer thread exited'));
    });
  }

  private submit(task: Task): Promise<Int32Array> {
    if (this.closed) return Promise.reject(new Error('the server is shutting down'));
    if (!this.worker) this.spawn();
    return new Promise<Int32Array>((resolve, reject) => {
      const id = this.nextId++;
      this.pending.set(id, { task, resolve, reject });
      this.order.push(id);
      this.worker!.postMessage({ id, ...task } as TokenizeTask);
      if (this.order.length === 1) this.arm();
    });
  }

  /** The watchdog of the task now running. */
  private arm(): void {
    clearTimeout(this.timer);
    if (this.order.length === 0) return;
    const running = this.order[0];
    this.timer = setTimeout(() => {
      const p = this.pending.get(running);
      this.pending.delete(running);
      this.order.shift();
      p?.reject(new TokenizeError(`tokenizing the prompt took longer than ${this.taskMs / 1000} s and was stopped; send a shorter prompt`, false, true));
      this.restart();
    }, this.taskMs);
    this.timer.unref();
  }

  /** A fresh thread; the tasks that were waiting are sent to it again. */
  private restart(): void {
    const old = this.worker;
    this.worker = undefined;
    void old?.terminate();
    if (this.closed) return;
    this.spawn();
    const waiting = [...this.order];
    for (const id of waiting) this.worker!.postMessage({ id, ...this.pending.get(id)!.task } as TokenizeTask);
    this.arm();
  }

  private fail(e: Error): void {
    clearTimeout(this.timer);
    for (const p of this.pending.values()) p.reject(new Error(`the tokenizer thread failed: ${e.message}`));
    this.pending.clear();
    this.order.length = 0;
    this.worker = undefined;
  }
}

/** The in-thread encoder of a TextTokenizer (servers built without a model directory). */
export function inThread(tokenizer: { encodeChat(m: ChatMessage[], o?: { addGenerationPrompt?: boolean }): number[]; encode(t: string, o?: { addSpecial?: boolean }): number[] }): PromptEncoder {
  return {
    encodeChat: async (messages) => {
      try {
        return tokenizer.encodeChat(messages, { addGenerationPrompt: true });
      } catch (e) {
        throw new TokenizeError((e as Error).message, true);
      }
    },
    encode: async (text, addSpecial) => tokenizer.encode(text, { addSpecial }),
  };
}
