// Runs inside Chromium (bundled by ../browser.test.ts): on the page's main thread with 1 kernel thread, and in a
// module Web Worker with 2. Loads the tiny LLaDA fixture over fetch, runs one full forward and one dual-cache
// threshold generation, and reports tokens and logits for the Node side to compare.
import { generate } from '@fast-dllm/scheduler';
import { createBrowserWasmEngine } from '../../src/browser.js';
import { GEN, PROMPT, type BrowserRun } from './case.js';


async function run(threads: number): Promise<BrowserRun> {
  const config = await (await fetch('/model/config.json')).json();
  const generationConfig = await (await fetch('/model/generation_config.json')).json();
  const weights = await (await fetch('/model/model.safetensors')).arrayBuffer();
  const engine = await createBrowserWasmEngine({ config, generationConfig, weights },
    { threads, buildUrl: new URL('/build/', location.href), workerUrl: new URL('/kernel-worker.js', location.href) });
  try {
    const mask = engine.model.maskTokenId;
    const canvas = Int32Array.from([...PROMPT, ...Array(GEN).fill(mask)]);
    const positions = Int32Array.from({ length: GEN }, (_, i) => PROMPT.length + i);
    const full = await engine.forward({ canvas, mode: 'full', start: 0, end: canvas.length, positions, want: { logits: true } });
    const g = await generate(engine, {
      prompt: Int32Array.from(PROMPT), genLength: GEN, blockLength: 8, steps: GEN,
      strategy: { kind: 'threshold', threshold: 0.3 }, cache: 'dual',
    });
    return {
      threads, build: (engine as unknown as { K: { build: string } }).K.build,
      fullTokens: Array.from(full.tokens), fullLogits: Array.from(full.logits!),
      generated: Array.from(g.tokens), nfe: g.stats.nfe,
    };
  } finally {
    await engine.dispose();
  }
}

const scope = globalThis as unknown as { document?: unknown; postMessage(m: unknown): void; __results?: unknown };
if (scope.document) {
  // Main thread: 1 thread here, 2 threads in a worker; threads > 1 on the main thread must be refused clearly.
  (async () => {
    try {
      const one = await run(1);
      try {
        await createBrowserWasmEngine({ config: await (await fetch('/model/config.json')).json(), weights: await (await fetch('/model/model.safetensors')).arrayBuffer() },
          { threads: 2, buildUrl: new URL('/build/', location.href), workerUrl: new URL('/kernel-worker.js', location.href) });
        one.mainThreadThreadsError = 'no error';
      } catch (e) {
        one.mainThreadThreadsError = (e as Error).message;
      }
      const worker = new Worker('/entry.js', { type: 'module' });
      const two = await new Promise<BrowserRun>((resolve, reject) => {
        worker.onmessage = (e) => (e.data.error ? reject(new Error(e.data.error)) : resolve(e.data));
        worker.onerror = (e) => reject(new Error(`test worker: ${e.message}`));
      });
      scope.__results = { ok: true, runs: [one, two], crossOriginIsolated: (globalThis as { crossOriginIsolated?: boolean }).crossOriginIsolated };
    } catch (e) {
      scope.__results = { ok: false, error: String((e as Error).stack ?? e) };
    }
  })();
} else {
  run(2).then((r) => scope.postMessage(r), (e) => scope.postMessage({ error: String((e as Error).stack ?? e) }));
}
