// Runs inside Chromium (bundled by ../browser.test.ts): on the page's main thread with 1 kernel thread, and in a
// module Web Worker with 2. Loads the tiny LLaDA fixture over fetch, runs one full forward and one dual-cache
// threshold generation, and reports tokens and logits for the Node side to compare, and what the engine contract's
// own checks (checkEngineContract) found.
import { checkEngineContract, generate } from '@fast-dllm/scheduler';
import { createBrowserWasmEngine, loadBrowserKernels } from '../../src/browser.js';
import { GEN, INT8_CASE, PROMPT, int8CaseInputs, type BrowserRun } from './case.js';


/** A 70×300×40 matmul (above the split threshold) on 2 threads: its NMSE against an f64 reference. */
async function splitMatmulNmse(): Promise<number> {
  const K = await loadBrowserKernels({ threads: 2, buildUrl: new URL('/build/', location.href), workerUrl: new URL('/kernel-worker.js', location.href) });
  try {
    const n = 70, k = 300, m = 40;
    let s = 12345;
    const rnd = (len: number) => Float32Array.from({ length: len }, () => ((s = (Math.imul(s, 1664525) + 1013904223) >>> 0) / 2 ** 32 - 0.5));
    const x = rnd(n * k), w = rnd(m * k);
    const y = K.allocF32(n * m);
    K.matmul(K.allocF32(x.length, x), K.allocWeight(w, m, k), null, y, n);
    const got = K.f32(y);
    let num = 0, den = 0;
    for (let i = 0; i < n; i++) {
      for (let j = 0; j < m; j++) {
        let ref = 0;
        for (let t = 0; t < k; t++) ref += x[i * k + t] * w[j * k + t];
        num += (got[i * m + j] - ref) ** 2;
        den += ref * ref;
      }
    }
    return num / den;
  } finally {
    await K.parallel?.dispose();
  }
}

/** The INT8_CASE matmul with int8 weights on `threads` kernel threads: exact integer sums, so Node's bits are expected. */
async function int8Matmul(threads: number): Promise<{ int8Matmul: number[]; int8Dot: string }> {
  const K = await loadBrowserKernels({ threads, buildUrl: new URL('/build/', location.href), workerUrl: new URL('/kernel-worker.js', location.href) });
  try {
    const { n, k, m } = INT8_CASE;
    const { x, w } = int8CaseInputs();
    const y = K.allocF32(n * m);
    K.matmul(K.allocF32(x.length, x), K.allocWeight(w, m, k, 'int8'), null, y, n);
    return { int8Matmul: Array.from(K.f32(y)), int8Dot: K.int8Dot };
  } finally {
    await K.parallel?.dispose();
  }
}

async function run(threads: number): Promise<BrowserRun> {
  const config = await (await fetch('/model/config.json')).json();
  const generationConfig = await (await fetch('/model/generation_config.json')).json();
  const weights = await (await fetch('/model/model.safetensors')).arrayBuffer();
  const engine = await createBrowserWasmEngine({ config, generationConfig, weights },
    { threads, buildUrl: new URL('/build/', location.href), workerUrl: new URL('/kernel-worker.js', location.href) });
  try {
    const mask = engine.model.maskId;
    const canvas = Int32Array.from([...PROMPT, ...Array(GEN).fill(mask)]);
    const positions = Int32Array.from({ length: GEN }, (_, i) => PROMPT.length + i);
    const sequence = engine.openSequence(canvas.length);
    const [full] = await engine.forward([{ sequence, canvas, mode: 'full', start: 0, end: canvas.length, positions, want: { logits: true } }]);
    engine.closeSequence(sequence);
    const g = await generate(engine, {
      prompt: Int32Array.from(PROMPT), genLength: GEN, blockLength: 8, steps: GEN,
      strategy: { kind: 'threshold', threshold: 0.3 }, cache: 'dual',
    });
    const build = (engine as unknown as { build: string }).build;
    // The contract's own checks, run here in the browser on an engine made from bytes (they end by disposing it).
    const contract = (await checkEngineContract(engine)).filter((c) => !c.ok).map((c) => `${c.name}: ${c.detail}`);
    return {
      threads, build, fullTokens: Array.from(full.tokens), fullLogits: Array.from(full.logits!),
      generated: Array.from(g.tokens), nfe: g.stats.nfe, contractFailures: contract, ...(await int8Matmul(threads)),
      ...(threads > 1 ? { splitMatmulNmse: await splitMatmulNmse() } : {}),
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
