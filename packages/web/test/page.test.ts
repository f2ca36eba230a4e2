// The page in a real browser (Debian's Chromium, driven by playwright-core), served by the same server as
// `fast-dllm web`, from a bundle of the current sources. It must load the bundled model, answer an addition with
// the right number while the canvas unmasks (DOM snapshots of the cells, taken on every change), do so with 1 and
// 2 threads, load a sharded model from a picked folder, say what is wrong with broken folders, refuse a model too
// large for wasm32 before fetching its weights, fall back to one thread when not isolated, and drive a
// `fast-dllm serve`-style endpoint. WEB_SCREENSHOTS=DIR writes a screenshot mid-generation and one of the answer.
import { existsSync } from 'node:fs';
import { mkdir, mkdtemp, rm } from 'node:fs/promises';
import { createServer, type Server } from 'node:http';
import { tmpdir } from 'node:os';
import { fileURLToPath } from 'node:url';
import { join } from 'node:path';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import type { Browser, Page } from 'playwright-core';
import { startWebServer, type WebServer } from '../src/index.js';
// @ts-expect-error: a plain .mjs build script, no types
import { bundleSite } from '../scripts/bundle.mjs';
import { normaliseConfig } from '@fast-dllm/model';
import { engineNeed, formatBytes } from '../src/loader/load-model.js';
import { LLADA_8B_CONFIG, configNotJson, removeFixtures, shardedModel, truncatedModel } from './fixtures.js';

const CHROMIUM = process.env.CHROMIUM_PATH ?? '/usr/bin/chromium';
const haveChromium = existsSync(CHROMIUM);
const SHOTS = process.env.WEB_SCREENSHOTS;
const today = new Date().toISOString().slice(0, 10);

// CI installs Chromium (.ci/run); elsewhere the test says why it did not run.
if (!haveChromium && process.env.CI) throw new Error(`web page test: no Chromium at ${CHROMIUM}; .ci/run installs it (apt-get install chromium)`);

/** One string per canvas state: '.' masked, '^' committed by the latest step, '#' committed earlier. */
declare global {
  interface Window { __snaps?: string[]; __loadTexts?: string[] }
}

describe.skipIf(!haveChromium)(`the page in Chromium (${CHROMIUM})`, () => {
  let web: WebServer;
  let browser: Browser;
  let site = '';

  beforeAll(async () => {
    site = await bundleSite(await mkdtemp(join(tmpdir(), 'fast-dllm-site-')));
    web = await startWebServer({ port: 0, siteDir: site });
    const { chromium } = await import('playwright-core');
    browser = await chromium.launch({
      executablePath: CHROMIUM,
      args: ['--headless', '--no-sandbox', '--disable-gpu', '--disable-quic', '--no-first-run', '--disable-background-networking',
        '--disable-component-update', '--disable-sync'],
    });
  });
  afterAll(async () => {
    await browser?.close();
    await web?.close();
    if (site) await rm(site, { recursive: true, force: true });
    await removeFixtures();
  });

  /** A new page at `query`, waiting until its model is loaded (or failed); page errors are collected. */
  async function open(query = '', opts: { wait?: boolean; recordLoad?: boolean } = {}): Promise<{ page: Page; errors: string[] }> {
    const page = await browser.newPage({ viewport: { width: 1280, height: 900 } });
    const errors: string[] = [];
    page.on('pageerror', (e) => errors.push(e.message));
    if (opts.recordLoad) {
      // Every text the load status shows, from the first one on.
      await page.addInitScript(() => {
        window.__loadTexts = [];
        document.addEventListener('DOMContentLoaded', () => {
          const el = document.getElementById('load-text')!;
          new MutationObserver(() => window.__loadTexts!.push(el.textContent ?? '')).observe(el, { childList: true, characterData: true, subtree: true });
        });
      });
    }
    await page.goto(`${web.url}${query}`);
    if (opts.wait !== false) await modelSettled(page);
    return { page, errors };
  }

  const modelSettled = (page: Page) =>
    page.waitForFunction(() => ['ready', 'error'].includes(document.body.dataset.model ?? ''), null, { timeout: 60_000 });

  /** Records the canvas on every DOM change from now on. */
  async function recordCanvas(page: Page): Promise<void> {
    await page.evaluate(() => {
      window.__snaps = [];
      const snap = () => [...document.querySelectorAll('#canvas .cell')]
        .map((c) => (c.classList.contains('masked') ? '.' : c.classList.contains('fresh') ? '^' : '#')).join('');
      new MutationObserver(() => {
        const s = snap();
        const all = window.__snaps!;
        if (s && all[all.length - 1] !== s) all.push(s);
      }).observe(document.getElementById('canvas')!, { subtree: true, childList: true, attributes: true, attributeFilter: ['class'] });
    });
  }

  /** Sends a message and waits for the turn to end; returns the last assistant bubble's text. */
  async function ask(page: Page, text: string): Promise<string> {
    await page.fill('#prompt', text);
    await page.click('#send');
    await page.waitForFunction(() => document.body.dataset.busy === 'false', null, { timeout: 60_000 });
    return (await page.locator('.msg.assistant .text').last().textContent()) ?? '';
  }

  /** The digits after the last "answer :" (the bundled model writes "7 1" for 71). */
  const answerOf = (text: string) => [...text.matchAll(/answer\s*:\s*(\d(?:\s*\d)*)/g)].pop()?.[1].replace(/\s+/g, '') ?? null;

  it.each([1, 2])('answers "What is 23 + 48 ?" with 71 on %i thread(s), unmasking the canvas step by step', async (threads) => {
    const { page, errors } = await open(`?threads=${threads}`, { recordLoad: true });
    try {
      // Loading showed its progress in bytes: the download, then the copy into the engine.
      const loadTexts = await page.evaluate(() => window.__loadTexts!);
      expect(loadTexts.some((t) => /^Downloading model\.safetensors: [\d.]+ (KiB|MiB) of 3\.3 MiB \(\d+%\)$/.test(t)), loadTexts.join(' | ')).toBe(true);
      expect(loadTexts.some((t) => /^Copying weights into the engine model\.safetensors: [\d.]+ (KiB|MiB) of 3\.3 MiB/.test(t)), loadTexts.join(' | ')).toBe(true);
      expect(await page.locator('#load-text').textContent()).toMatch(new RegExp(`^Ready: bundled model · llada · .* · ${threads} threads?`));
      expect(await page.evaluate(() => crossOriginIsolated)).toBe(true);
      // The bundled model's recipe from generation_config.json: gen 128, block 32; the page's default: dual + τ 0.9.
      expect(await page.inputValue('#setting-cache')).toBe('dual');
      expect(await page.inputValue('#setting-rule')).toBe('threshold');
      expect(await page.inputValue('#setting-genLength')).toBe('128');
      expect(await page.isChecked('#setting-earlyStop')).toBe(true); // the default: it cannot change the answer
      // Every block decoded (the paper's NFE), to watch the canvas fill block by block.
      await page.uncheck('#setting-earlyStop');
      await recordCanvas(page);
      const text = await ask(page, 'What is 23 + 48 ?');
      expect(answerOf(text), text).toBe('71');
      const snaps = await page.evaluate(() => window.__snaps!);
      expect(snaps[0], 'the canvas starts fully masked').toMatch(/^\.{128}$/);
      const between = snaps.filter((s) => s.includes('.') && /[#^]/.test(s));
      expect(between.length, `intermediate canvases: ${between.join(' | ')}`).toBeGreaterThanOrEqual(2);
      // Each block is decoded in turn: an intermediate state is committed blocks, then masks.
      for (const s of between) expect(s, s).toMatch(/^[#^]+\.+$/);
      expect(snaps[snaps.length - 1]).not.toContain('.');
      const stats = (await page.textContent('#stats')) ?? '';
      expect(stats).toMatch(/NFE \d+ · 128 \/ 128 unmasked · prompt \d+ tokens · [\d.]+ tokens\/forward · [\d.]+ tokens\/s/);
      expect(stats).toContain(`${threads} thread`);
      expect(errors).toEqual([]);
    } finally {
      await page.close();
    }
  });

  it('shows the canvas mid-generation in slow motion (fixed schedule: 16 tokens a step), with steps to replay', async () => {
    const { page, errors } = await open('?threads=2');
    try {
      // 8 steps over 4 blocks of 32: each step commits 16 positions, so a block is half unmasked after its first.
      await page.selectOption('#setting-rule', 'fixed');
      await page.fill('#setting-steps', '8');
      await page.fill('#setting-slowMotionMs', '800');
      await page.uncheck('#setting-earlyStop'); // every block decoded: 8 steps
      await page.fill('#prompt', 'What is 23 + 48 ?');
      await page.click('#send');
      await page.waitForFunction(() => document.querySelectorAll('#canvas .cell.masked').length === 112, null, { timeout: 30_000 });
      expect(await page.locator('#stop').isVisible()).toBe(true);
      const blockZero = await page.locator('#canvas .block[data-block="0"] .cell').evaluateAll((cells) => cells.map((c) => (c.classList.contains('masked') ? '.' : '^')).join(''));
      expect(blockZero.replace(/\./g, '').length).toBe(16);
      // The chat shows only the committed text: the mask-free prefix (DESIGN §9).
      const partial = (await page.locator('.msg.assistant .text').textContent()) ?? '';
      if (SHOTS) {
        await mkdir(SHOTS, { recursive: true });
        await page.waitForTimeout(300); // the cells' colour transitions (0.25 s) settle; the next step is 0.8 s away
        await page.screenshot({ path: join(SHOTS, `web-${today}-mid-generation.png`) });
      }
      await page.waitForFunction(() => document.body.dataset.busy === 'false', null, { timeout: 30_000 });
      const text = (await page.locator('.msg.assistant .text').textContent()) ?? '';
      expect(text.startsWith(partial), `${JSON.stringify(partial)} then ${JSON.stringify(text)}`).toBe(true);
      expect(answerOf(text)).toBe('71');
      expect(await page.locator('.msg.assistant .meta').textContent()).toMatch(/NFE 8 · 16\.00 tokens\/forward · [\d.]+ tokens\/s/);
      if (SHOTS) {
        await page.waitForTimeout(300);
        await page.screenshot({ path: join(SHOTS, `web-${today}-answer.png`) });
      }
      // The slider steps back through the kept frames (frame 0: all masked, then one per step).
      const slide = (v: number) => page.evaluate((value) => {
        const el = document.getElementById('step-slider') as HTMLInputElement;
        el.value = String(value);
        el.dispatchEvent(new Event('input'));
      }, v);
      expect(await page.getAttribute('#step-slider', 'max')).toBe('8');
      await slide(3);
      expect(await page.textContent('#step-label')).toBe('step 3 of 8');
      expect(await page.locator('#canvas .cell.masked').count()).toBe(128 - 3 * 16);
      await slide(8);
      expect(await page.locator('#canvas .cell.masked').count()).toBe(0);
      expect(errors).toEqual([]);
    } finally {
      await page.close();
    }
  });

  it('stops a generation with Stop, and answers the next message', async () => {
    const { page, errors } = await open('?threads=1');
    try {
      await page.fill('#setting-slowMotionMs', '1500');
      await page.uncheck('#setting-earlyStop'); // a second block to stop in
      await page.fill('#prompt', 'What is 23 + 48 ?');
      await page.click('#send');
      await page.waitForFunction(() => document.querySelectorAll('#canvas .cell.masked').length === 96, null, { timeout: 30_000 });
      await page.click('#stop');
      await page.waitForFunction(() => document.body.dataset.busy === 'false', null, { timeout: 10_000 });
      expect(await page.locator('.msg.assistant .error-text').textContent()).toBe('Stopped.');
      expect(await page.locator('#canvas .cell.masked').count()).toBe(96);
      await page.fill('#setting-slowMotionMs', '0');
      expect(answerOf(await ask(page, 'What is 95 + 37 ?'))).toBe('132');
      expect(errors).toEqual([]);
    } finally {
      await page.close();
    }
  });

  it('loads a sharded model from a picked folder and answers with it', async () => {
    const dir = await shardedModel();
    const { page, errors } = await open('?autoload=0&threads=2', { wait: false });
    try {
      await page.setInputFiles('#folder-input', dir);
      await modelSettled(page);
      expect(await page.locator('#load-text').textContent()).toMatch(/^Ready: sharded-model · llada · /);
      expect(answerOf(await ask(page, 'What is 60 + 42 ?'))).toBe('102');
      expect(errors).toEqual([]);
    } finally {
      await page.close();
    }
  });

  it.each([
    ['a truncated model.safetensors', truncatedModel, /Could not load the model: data_offsets .* out of range: the data region has \d+ bytes; the file is not a valid safetensors file/],
    ['a config.json that is not JSON', configNotJson, /Could not load the model: config.json is not valid JSON \(.*\); re-download it \(file bad-config-model\/config.json\)/],
  ])('says what is wrong with a folder holding %s', async (_what, make, message) => {
    const dir = await make();
    const { page } = await open('?autoload=0', { wait: false });
    try {
      await page.setInputFiles('#folder-input', dir);
      await modelSettled(page);
      expect(await page.evaluate(() => document.body.dataset.model)).toBe('error');
      const status = page.locator('#load-text');
      expect(await status.getAttribute('class')).toContain('error');
      expect(await status.textContent()).toMatch(message);
      expect(await page.locator('#send').isDisabled()).toBe(true);
    } finally {
      await page.close();
    }
  });

  it.each([
    ['fast-dllm-v2-tiny-f32', 'fast_dllm_v2', ['#setting-subBlockLength', '#setting-v2Threshold', '#setting-blockCache']],
    ['sdar-tiny-f32', 'sdar', ['#setting-stepsPerBlock', '#setting-sdarRemasking', '#setting-sdarThreshold']],
    // dllm's A2D BD3LM (DESIGN §15): SDAR's settings; BD3LM because the folder's name says so.
    ['a2d-qwen3-bd3lm-tiny-f32', 'a2d_bd3lm', ['#setting-stepsPerBlock', '#setting-sdarRemasking', '#setting-sdarThreshold']],
    // LLaDA2 (DESIGN §13.1): mixture layers, fused q/k/v read as slices of the picked file; SDAR's settings at τ 0.95.
    ['llada2-moe-tiny-f32', 'llada2_moe', ['#setting-stepsPerBlock', '#setting-sdarRemasking', '#setting-sdarThreshold']],
  ])('a block-diffusion model (%s): its own settings, LLaDA\'s hidden, and it decodes', async (name, arch, fields) => {
    const { page, errors } = await open('?autoload=0', { wait: false });
    try {
      await page.setInputFiles('#folder-input', fileURLToPath(new URL(`../../../test/fixtures/models/${name}`, import.meta.url)));
      await modelSettled(page);
      expect(await page.locator('#load-text').textContent()).toMatch(new RegExp(`^Ready: ${name} · ${arch} · `));
      for (const f of fields) expect(await page.locator(f).isVisible(), f).toBe(true);
      // The family's recipe (the scheduler's): v2 sub-blocks of 8 at τ 0.9; SDAR B steps (0), dynamic, τ 0.85; A2D
      // BD3LM SDAR's procedure at Fast-dLLM's τ 0.9 (DESIGN §15); LLaDA2 SDAR's at its published τ 0.95 (§13.1).
      const sdarLike = arch !== 'fast_dllm_v2';
      expect(await page.inputValue(fields[0]), fields[0]).toBe(sdarLike ? '0' : '8');
      expect(await page.inputValue(sdarLike ? '#setting-sdarThreshold' : '#setting-v2Threshold')).toBe(arch === 'sdar' ? '0.85' : arch === 'llada2_moe' ? '0.95' : '0.9');
      for (const f of ['#setting-cache', '#setting-rule', '#setting-blockLength', '#setting-earlyStop']) expect(await page.locator(f).isVisible(), f).toBe(false);
      await page.fill('#setting-genLength', '24');
      await ask(page, 'hi');
      // The random fixture writes nonsense, but the run completes through the block-diffusion decoder.
      expect(await page.textContent('#stats')).toMatch(new RegExp(`^step \\d+ · NFE \\d+ · .*${arch === 'sdar' ? 'SDAR' : arch === 'a2d_bd3lm' ? 'A2D BD3LM' : arch === 'llada2_moe' ? 'LLaDA2' : 'Fast-dLLM v2'} \\(`));
      expect(errors).toEqual([]);
    } finally {
      await page.close();
    }
  });

  it('an A2D MDLM folder (DESIGN §15): masked diffusion\'s settings, and it decodes with the LLaDA recipe', async () => {
    const { page, errors } = await open('?autoload=0', { wait: false });
    try {
      await page.setInputFiles('#folder-input', fileURLToPath(new URL('../../../test/fixtures/models/a2d-qwen3-mdlm-tiny-f32', import.meta.url)));
      await modelSettled(page);
      expect(await page.locator('#load-text').textContent()).toMatch(/^Ready: a2d-qwen3-mdlm-tiny-f32 · a2d_mdlm · /);
      for (const f of ['#setting-cache', '#setting-rule', '#setting-blockLength']) expect(await page.locator(f).isVisible(), f).toBe(true);
      for (const f of ['#setting-stepsPerBlock', '#setting-subBlockLength']) expect(await page.locator(f).isVisible(), f).toBe(false);
      await page.fill('#setting-genLength', '16');
      await page.fill('#setting-blockLength', '8');
      await ask(page, 'hi');
      expect(await page.textContent('#stats')).toMatch(/^step \d+ · NFE \d+ · /);
      expect(errors).toEqual([]);
    } finally {
      await page.close();
    }
  });

  it('refuses a model too large for wasm32 with its size, before fetching any weights', async () => {
    const { page } = await open('?autoload=0', { wait: false });
    const weightRequests: string[] = [];
    try {
      // A folder URL with LLaDA-8B's config and shard index; the shards themselves do not exist.
      await page.context().route(`${web.url}big-model/**`, async (route) => {
        const name = new URL(route.request().url()).pathname.split('/').pop()!;
        if (name.endsWith('.safetensors')) weightRequests.push(name);
        const body = name === 'config.json' ? LLADA_8B_CONFIG
          : name === 'model.safetensors.index.json' ? { metadata: { total_size: 16_000_000_000 }, weight_map: { 'model.transformer.wte.weight': 'model-00001-of-00002.safetensors' } }
            : null;
        if (!body) return route.fulfill({ status: 404, body: 'not found', headers: { 'Cross-Origin-Resource-Policy': 'same-origin' } });
        return route.fulfill({ status: 200, body: JSON.stringify(body), headers: { 'Content-Type': 'application/json', 'Cross-Origin-Resource-Policy': 'same-origin' } });
      });
      await page.fill('#model-url', `${web.url}big-model/`);
      await page.click('#url-form button[type=submit]');
      await modelSettled(page);
      const text = (await page.locator('#load-text').textContent()) ?? '';
      const need = formatBytes(engineNeed(normaliseConfig(LLADA_8B_CONFIG), 'f32', 1));
      expect(need).toMatch(/^29\.\d\d GiB$/);
      expect(text).toContain(`too large for the browser: its f32 weights and one 64-token sequence need ${need} of WebAssembly memory, ` +
        'and wasm32 addresses at most 4 GiB. Nothing was downloaded (the weights are 14.90 GiB). Use `fast-dllm serve` with the CUDA engine, or a smaller model.');
      expect(weightRequests).toEqual([]);
    } finally {
      await page.close();
    }
  });

  it('says it is not cross-origin isolated and runs on one thread', async () => {
    const context = await browser.newContext({ viewport: { width: 1280, height: 900 } });
    // The same server, with the isolation headers taken off every response.
    await context.route('**/*', async (route) => {
      const response = await route.fetch();
      const headers = { ...response.headers() };
      delete headers['cross-origin-opener-policy'];
      delete headers['cross-origin-embedder-policy'];
      await route.fulfill({ response, headers });
    });
    const page = await context.newPage();
    try {
      await page.goto(`${web.url}?threads=2`);
      await modelSettled(page);
      expect(await page.evaluate(() => crossOriginIsolated)).toBe(false);
      expect(await page.locator('#isolation-banner').isVisible()).toBe(true);
      expect(await page.locator('#isolation-banner').textContent()).toMatch(/not cross-origin isolated .* runs on one thread.*\(2 threads were asked for\.\)/);
      expect(await page.locator('#isolation-pill').textContent()).toBe('not isolated · 1 thread');
      expect(await page.inputValue('#threads')).toBe('1');
      expect(await page.locator('#threads option[value="2"]').isDisabled()).toBe(true);
      expect(await page.locator('#load-text').textContent()).toMatch(/ · 1 thread · /);
      const answer = await ask(page, 'What is 23 + 48 ?');
      expect(answerOf(answer), answer).toBe('71');
    } finally {
      await context.close();
    }
  });

  it('talks to the real fast-dllm serve (the server package, bundled model, CORS for the page): answers and unmasks', async () => {
    const { createServer: createApi } = await import('@fast-dllm/server');
    const { createWasmEngine } = await import('@fast-dllm/engine-wasm');
    const { defaultModelDir } = await import('@fast-dllm/default-model');
    const { loadTokenizer, readModelConfig } = await import('@fast-dllm/model');
    const engine = await createWasmEngine(defaultModelDir);
    const api = await createApi({
      engine, model: { id: 'default', description: await readModelConfig(defaultModelDir), tokenizer: await loadTokenizer(defaultModelDir) },
      corsOrigins: [new URL(web.url).origin],
    });
    const url = await api.listen({ host: '127.0.0.1', port: 0 });
    const { page, errors } = await open('?autoload=0', { wait: false });
    try {
      await page.click('label:has(#backend-remote)');
      await page.fill('#server-url', url);
      await page.click('#server-form button[type=submit]');
      await page.waitForFunction(() => /^Connected: default\./.test(document.getElementById('server-status')!.textContent ?? ''), null, { timeout: 10_000 });
      // The page's decoding settings go with the request: a fixed schedule of 8 steps commits 16 positions a step.
      await page.selectOption('#setting-rule', 'fixed');
      await page.fill('#setting-steps', '8');
      await recordCanvas(page);
      const answer = await ask(page, 'What is 23 + 48 ?');
      expect(answerOf(answer), answer).toBe('71');
      expect(await page.textContent('#stats')).toMatch(/NFE 2 /);
      // The server's canvas frames: fully masked first, then states with more and more positions committed. (The
      // server ends a request once its answer is final, so the blocks after the answer may stay masked.)
      const snaps = (await page.evaluate(() => window.__snaps!)).filter((x) => x.length > 0);
      expect(snaps[0]).toMatch(/^\.+$/);
      const committed = snaps.map((x) => x.replace(/\./g, '').length);
      expect(committed.filter((c) => c > 0).length).toBeGreaterThanOrEqual(2);
      for (let i = 1; i < committed.length; i++) expect(committed[i]).toBeGreaterThanOrEqual(committed[i - 1]);
      expect(errors).toEqual([]);
    } finally {
      await page.close();
      await api.fastDllm.shutdown();
      await engine.dispose();
    }
  });

  it.each([
    ['fast-dllm-v2-tiny-f32', ['#setting-subBlockLength', '#setting-v2Threshold', '#setting-blockCache'], { sub_block_length: 8, threshold: 0.9, block_cache: false }],
    ['sdar-tiny-f32', ['#setting-stepsPerBlock', '#setting-sdarRemasking', '#setting-sdarThreshold'], { remasking: 'low_confidence_dynamic', threshold: 0.85 }],
  ] as const)('talks to the real fast-dllm serve running %s: its family\'s settings, sent in its fields, answered', async (name, fields, sent) => {
    const { createServer: createApi } = await import('@fast-dllm/server');
    const { createWasmEngine } = await import('@fast-dllm/engine-wasm');
    const { loadTokenizer, readModelConfig } = await import('@fast-dllm/model');
    const dir = fileURLToPath(new URL(`../../../test/fixtures/models/${name}`, import.meta.url));
    const engine = await createWasmEngine(dir);
    const api = await createApi({
      engine, model: { id: name, description: await readModelConfig(dir), tokenizer: await loadTokenizer(dir) }, corsOrigins: [new URL(web.url).origin],
    });
    const url = await api.listen({ host: '127.0.0.1', port: 0 });
    const { page, errors } = await open('?autoload=0', { wait: false });
    const bodies: Record<string, unknown>[] = [];
    page.on('request', (r) => {
      if (r.url().endsWith('/chat/completions') && r.method() === 'POST') bodies.push(JSON.parse(r.postData() ?? '{}'));
    });
    try {
      await page.click('label:has(#backend-remote)');
      await page.fill('#server-url', url);
      await page.click('#server-form button[type=submit]');
      await page.waitForFunction((n) => (document.getElementById('server-status')!.textContent ?? '').startsWith(`Connected: ${n}.`), name, { timeout: 10_000 });
      // The served model's family: its own settings shown, LLaDA's hidden.
      await page.waitForFunction((f) => !(document.querySelector(f) as HTMLElement).closest('label')!.hidden, fields[0], { timeout: 10_000 });
      for (const f of ['#setting-cache', '#setting-rule', '#setting-blockLength']) expect(await page.locator(f).isVisible(), f).toBe(false);
      await page.fill('#setting-genLength', '16');
      await ask(page, 'hi');
      expect(await page.locator('.msg.assistant .error-text').count()).toBe(0);
      expect(bodies).toHaveLength(1);
      expect(bodies[0]).toMatchObject({ max_tokens: 16, ...sent });
      for (const k of ['strategy', 'cache', 'block_length', 'steps', 'early_stop']) expect(bodies[0], k).not.toHaveProperty(k);
      expect(errors).toEqual([]);
    } finally {
      await page.close();
      await api.fastDllm.shutdown();
      await engine.dispose();
    }
  });

  it('talks to a fast-dllm serve endpoint: streams its text and draws its canvas frames', async () => {
    const requests: Record<string, unknown>[] = [];
    // Three steps of a 6-position generation, as the server sends them (DESIGN §9 deltas + provisional canvas).
    const frames = [
      { step: 1, nfe: 1, tokens: ['Hel', null, null, null, null, null], committed: [0] },
      { step: 2, nfe: 2, tokens: ['Hel', 'lo', null, '!', null, null], committed: [1, 3] },
      { step: 3, nfe: 3, tokens: ['Hel', 'lo', ' there', '!', '<|eot_id|>', '<|endoftext|>'], committed: [2, 4, 5] },
    ];
    const deltas = ['Hel', 'lo', ' there!'];
    const api: Server = createServer((req, res) => {
      res.setHeader('Access-Control-Allow-Origin', '*');
      res.setHeader('Access-Control-Allow-Headers', 'content-type');
      if (req.method === 'OPTIONS') return res.end();
      if (req.url === '/v1/models') return res.end(JSON.stringify({ object: 'list', data: [{ id: 'llada-test', object: 'model' }] }));
      let body = '';
      req.on('data', (d) => (body += d));
      req.on('end', async () => {
        requests.push(JSON.parse(body));
        res.setHeader('Content-Type', 'text/event-stream');
        for (let i = 0; i < frames.length; i++) {
          res.write(`data: ${JSON.stringify({ object: 'chat.completion.chunk', choices: [{ index: 0, delta: {}, finish_reason: null }], fast_dllm: { canvas: frames[i] } })}\n\n`);
          res.write(`data: ${JSON.stringify({ object: 'chat.completion.chunk', choices: [{ index: 0, delta: { content: deltas[i] }, finish_reason: null }] })}\n\n`);
          await new Promise((r) => setTimeout(r, 50));
        }
        res.write(`data: ${JSON.stringify({ object: 'chat.completion.chunk', choices: [{ index: 0, delta: {}, finish_reason: 'stop' }], usage: { prompt_tokens: 9, completion_tokens: 4 } })}\n\n`);
        res.end('data: [DONE]\n\n');
      });
    });
    await new Promise<void>((r) => api.listen(0, '127.0.0.1', r));
    const port = (api.address() as { port: number }).port;
    const { page, errors } = await open('?autoload=0', { wait: false });
    try {
      await page.click('label:has(#backend-remote)');
      await page.fill('#server-url', `http://127.0.0.1:${port}`);
      await page.click('#server-form button[type=submit]');
      await page.waitForFunction(() => /^Connected: llada-test\./.test(document.getElementById('server-status')!.textContent ?? ''), null, { timeout: 10_000 });
      expect(await page.locator('#setting-cache').isDisabled()).toBe(false);
      expect(await page.locator('#setting-slowMotionMs').isDisabled()).toBe(true);
      expect(await page.locator('#setting-genLength').isDisabled()).toBe(false);
      await recordCanvas(page);
      expect(await ask(page, 'Say hello')).toBe('Hello there!');
      expect(requests).toHaveLength(1);
      expect(requests[0]).toMatchObject({ model: 'llada-test', strategy: 'threshold', threshold: 0.9, cache: 'dual', block_length: 32, stream: true, max_tokens: 128, temperature: 0, seed: 0, fast_dllm: { canvas: true }, messages: [{ role: 'user', content: 'Say hello' }] });
      // 128 masked cells (max_tokens) until the server's first frame says how long its canvas is.
      expect(await page.evaluate(() => window.__snaps)).toEqual(['.'.repeat(128), '^.....', '#^.^..', '##^#^^']);
      expect(await page.locator('#canvas .cell').allTextContents()).toEqual(['Hel', 'lo', ' there', '!', '⏎', '·']);
      expect(await page.textContent('#stats')).toMatch(/^step 3 · NFE 3 · 6 \/ 6 unmasked · 2\.00 tokens\/forward · [\d.]+ tokens\/s/);
      expect(errors).toEqual([]);
    } finally {
      await page.close();
      await new Promise<void>((r) => api.close(() => r()));
    }
  });
});
