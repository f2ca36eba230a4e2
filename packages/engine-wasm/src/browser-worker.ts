/**
 * Browser kernel worker (a module Web Worker): waits for its WorkerData message, says 'ready', then serves
 * jobs (blocking this worker with Atomics.wait, which workers may do).
 */
import { serveJobs, type WorkerData } from './worker-loop.js';

const scope = globalThis as unknown as { onmessage: ((e: MessageEvent<WorkerData>) => void) | null; postMessage(m: unknown): void };
scope.onmessage = (e) => {
  scope.onmessage = null;
  scope.postMessage('ready');
  serveJobs(e.data);
};
