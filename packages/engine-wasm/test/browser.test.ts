// The engine in a real browser (Debian's Chromium, driven by playwright-core): the same tiny model, the same
// forward and the same dual-cache generation must give the tokens the Node engine gives, with 1 kernel thread
// on the page's main thread and 2 threads (module Web Workers over shared memory) inside a worker; an int8 matmul
// must give Node's bits.
// The page bundle is built with esbuild; `node:*` stays external and must never be loaded (the model package
// imports Node's fs lazily, only in its file readers), so a Node API reached in the browser fails the test.
import { existsSync, readFileSync } from 'node:fs';
import { createServer, type Server } from 'node:http';
import { extname, join } from 'node:path';
import { fileURLToPath } from 'node:url';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { build } from 'esbuild';
import { generate } from '@fast-dllm/scheduler';
import { createWasmEngine, loadKernels } from '../src/index.js';
import { GEN, INT8_CASE, PROMPT, int8CaseInputs, type BrowserRun } from './browser/case.js';

const CHROMIUM = process.env.CHROMIUM_PATH ?? '/usr/bin/chromium';
const haveChromium = existsSync(CHROMIUM);
const pkg = fileURLToPath(new URL('..', import.meta.url));
const modelDir = fileURLToPath(new URL('../../../test/fixtures/models/llada-tiny-f32', import.meta.url));

// CI installs Chromium (.ci/run); elsewhere the test says why it did not run.
if (!haveChromium && process.env.CI) throw new Error(`browser test: no Chromium at ${CHROMIUM}; .ci/run installs it (apt-get install chromium)`);

describe.skipIf(!haveChromium)(`engine-wasm in Chromium (${CHROMIUM})`, () => {
  let server: Server;
  let origin = '';
  const files = new Map<string, { body: Uint8Array | string; type: string }>();

  beforeAll(async () => {
    const out = await build({
      entryPoints: { entry: join(pkg, 'test/browser/entry.ts'), 'kernel-worker': join(pkg, 'src/browser-worker.ts') },
      bundle: true, format: 'esm', platform: 'browser', write: false, outdir: '/out', external: ['node:*'], logLevel: 'silent',
    });
    for (const f of out.outputFiles) files.set(`/${f.path.split('/').pop()}`, { body: f.contents, type: 'text/javascript' });
    files.set('/', { body: '<!doctype html><title>engine-wasm</title><script type="module" src="/entry.js"></script>', type: 'text/html' });
    for (const b of ['release', 'release-fma', 'threads', 'threads-fma', 'scalar']) {
      files.set(`/build/${b}.wasm`, { body: readFileSync(join(pkg, `build/${b}.wasm`)), type: 'application/wasm' });
    }
    for (const f of ['config.json', 'generation_config.json', 'model.safetensors']) {
      files.set(`/model/${f}`, { body: readFileSync(join(modelDir, f)), type: extname(f) === '.json' ? 'application/json' : 'application/octet-stream' });
    }
    server = createServer((req, res) => {
      const f = files.get(req.url ?? '');
      // Cross-origin isolation, so the page and its workers get SharedArrayBuffer.
      res.setHeader('Cross-Origin-Opener-Policy', 'same-origin');
      res.setHeader('Cross-Origin-Embedder-Policy', 'require-corp');
      if (!f) { res.statusCode = 404; res.end(); return; }
      res.setHeader('Content-Type', f.type);
      res.end(f.body);
    });
    await new Promise<void>((r) => server.listen(0, '127.0.0.1', r));
    const addr = server.address();
    origin = `http://127.0.0.1:${typeof addr === 'object' && addr ? addr.port : 0}`;
  });
  afterAll(() => new Promise<void>((r) => (server ? server.close(() => r()) : r())));

  it('gives the Node engine\'s tokens and logits with 1 thread (main thread) and 2 threads (in a worker)', async () => {
    const { chromium } = await import('playwright-core');
    const browser = await chromium.launch({
      executablePath: CHROMIUM,
      args: ['--headless', '--no-sandbox', '--disable-gpu', '--disable-quic', '--no-first-run', '--disable-background-networking',
        '--disable-component-update', '--disable-sync'],
    });
    let results: { ok: boolean; error?: string; runs?: BrowserRun[]; crossOriginIsolated?: boolean };
    try {
      const page = await browser.newPage();
      const errors: string[] = [];
      page.on('pageerror', (e) => errors.push(e.message));
      await page.goto(`${origin}/`);
      await page.waitForFunction(() => (globalThis as { __results?: unknown }).__results !== undefined, null, { timeout: 60_000 });
      results = await page.evaluate(() => (globalThis as { __results?: unknown }).__results) as typeof results;
      expect(errors).toEqual([]);
    } finally {
      await browser.close();
    }
    expect(results.error ?? '').toBe('');
    expect(results.crossOriginIsolated).toBe(true);

    // The same work in Node, 1 thread.
    const engine = await createWasmEngine(modelDir);
    const mask = engine.model.maskId;
    const canvas = Int32Array.from([...PROMPT, ...Array(GEN).fill(mask)]);
    const positions = Int32Array.from({ length: GEN }, (_, i) => PROMPT.length + i);
    const sequence = engine.openSequence(canvas.length);
    const [full] = await engine.forward([{ sequence, canvas, mode: 'full', start: 0, end: canvas.length, positions, want: { logits: true } }]);
    engine.closeSequence(sequence);
    const g = await generate(engine, {
      prompt: Int32Array.from(PROMPT), genLength: GEN, blockLength: 8, steps: GEN, strategy: { kind: 'threshold', threshold: 0.3 }, cache: 'dual',
    });
    await engine.dispose();
    const K = await loadKernels();
    const { n, k, m } = INT8_CASE;
    const { x, w } = int8CaseInputs();
    const y = K.allocF32(n * m);
    K.matmul(K.allocF32(x.length, x), K.allocWeight(w, m, k, 'int8'), null, y, n);
    const int8 = Array.from(K.f32(y));

    const [one, two] = results.runs!;
    expect(one.contractFailures).toEqual([]);
    expect(two.contractFailures).toEqual([]);
    expect(one.threads).toBe(1);
    expect(two.threads).toBe(2);
    expect(two.build).toMatch(/^threads/);
    expect(one.mainThreadThreadsError).toMatch(/threads > 1 must run in a Web Worker/);
    // The fixture's matmuls are too small to be split; this one is divided between the page's two threads.
    expect(two.splitMatmulNmse).toBeLessThan(1e-11);
    for (const r of [one, two]) {
      expect(r.fullTokens, `${r.threads} thread(s) full-forward tokens`).toEqual(Array.from(full.tokens));
      // Same kernels, same order of operations per row: equal to f32 rounding (FMA may differ between builds).
      let num = 0, den = 0;
      full.logits!.forEach((v, i) => { num += (r.fullLogits[i] - v) ** 2; den += v * v; });
      expect(num / den, `${r.threads} thread(s) logits NMSE vs Node`).toBeLessThan(1e-10);
      expect(r.generated, `${r.threads} thread(s) generated tokens`).toEqual(Array.from(g.tokens));
      expect(r.nfe).toBe(g.stats.nfe);
      // int8: exact integer block sums and one epilogue order in every build, dot form and runtime, so the same bits.
      console.log(`Chromium, ${r.threads} thread(s): int8 dot ${r.int8Dot}; Node: ${K.int8Dot}`);
      expect(r.int8Matmul.every((v, i) => Object.is(v, int8[i])), `${r.threads} thread(s) int8 matmul bits vs Node`).toBe(true);
    }
  }, 120_000);
});
