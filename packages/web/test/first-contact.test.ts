// What a person notices on first opening the page (`fast-dllm web`): no 404 in the console on load (the loader
// asked for model.safetensors.index.json, the browser for /favicon.ico), the hint gives the loaded model's own
// parameter count and task (it said 0.86 M with the 0.79 M block-diffusion model loaded), the header names the
// server while one answers (it said "bundled model"), and a server that refuses the page's origin is named with
// the flag that fixes it (--cors). The first two also without a browser; the rest in Debian's Chromium.
import { existsSync } from 'node:fs';
import { mkdtemp, rm } from 'node:fs/promises';
import { createServer, type Server } from 'node:http';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { fileURLToPath } from 'node:url';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import type { Browser } from 'playwright-core';
import { startWebServer, type WebServer } from '../src/index.js';
// @ts-expect-error: a plain .mjs build script, no types
import { bundleSite } from '../scripts/bundle.mjs';
import { UrlDirectory } from '../src/loader/directory.js';
import { planModel } from '../src/loader/load-model.js';

const CHROMIUM = process.env.CHROMIUM_PATH ?? '/usr/bin/chromium';
const haveChromium = existsSync(CHROMIUM);
if (!haveChromium && process.env.CI) throw new Error(`web page test: no Chromium at ${CHROMIUM}; .ci/run installs it (apt-get install chromium)`);
const BD_MODEL = fileURLToPath(new URL('../../bd-model/model', import.meta.url));
const ADDITION = 'two-digit addition asked as "What is 23 + 48 ?" (both numbers from 10 to 99)';

let site = '';
const servers: WebServer[] = [];
beforeAll(async () => {
  site = await bundleSite(await mkdtemp(join(tmpdir(), 'fast-dllm-site-')));
});
afterAll(async () => {
  for (const s of servers) await s.close();
  if (site) await rm(site, { recursive: true, force: true });
});
async function web(modelDir?: string): Promise<WebServer> {
  const s = await startWebServer({ port: 0, siteDir: site, ...(modelDir ? { modelDir } : {}) });
  servers.push(s);
  return s;
}

describe('the model folder served by fast-dllm web', () => {
  it('config.json lists the folder, and the loader asks for no file that is not there', async () => {
    const s = await web();
    const res = await fetch(`${s.url}models/default/config.json`);
    const listed = res.headers.get('X-Model-Files')!.split(',');
    await res.body?.cancel();
    expect(listed).toEqual(expect.arrayContaining(['config.json', 'model.safetensors', 'tokenizer.json', 'fast_dllm.json']));
    expect(listed).not.toContain('model.safetensors.index.json');
    const asked: string[] = [];
    const realFetch = globalThis.fetch;
    globalThis.fetch = (input, init) => {
      asked.push(String(input));
      return realFetch(input, init);
    };
    try {
      const plan = await planModel(new UrlDirectory(`${s.url}models/default/`), { weightDType: 'f32', threads: 1 }, () => undefined);
      expect(plan.knows).toBe(ADDITION);
      expect(plan.parameters).toBe(860544);
    } finally {
      globalThis.fetch = realFetch;
    }
    expect(asked.map((u) => u.replace(/^.*\//, ''))).not.toContain('model.safetensors.index.json');
  });
});

describe.skipIf(!haveChromium)(`the page in Chromium (${CHROMIUM})`, () => {
  let browser: Browser;
  let bare: Server;
  let bareUrl = '';
  beforeAll(async () => {
    const { chromium } = await import('playwright-core');
    browser = await chromium.launch({ executablePath: CHROMIUM, args: ['--headless', '--no-sandbox', '--disable-gpu', '--no-first-run', '--disable-background-networking'] });
    // An OpenAI-style server that answers but sends no CORS headers: the browser refuses its answers to the page.
    bare = createServer((_req, res) => res.writeHead(200, { 'content-type': 'application/json' }).end('{"data":[{"id":"default"}]}'));
    await new Promise<void>((ok) => bare.listen(0, '127.0.0.1', () => ok()));
    bareUrl = `http://127.0.0.1:${(bare.address() as { port: number }).port}`;
  });
  afterAll(async () => {
    await browser?.close();
    await new Promise((ok) => bare?.close(ok));
  });

  for (const [name, modelDir, params] of [['bundled model', undefined, '0.86 M'], ['block-diffusion model', BD_MODEL, '0.79 M']] as const) {
    it(`${name}: no 404 on load; the hint has its own parameter count and task`, async () => {
      const s = await web(modelDir);
      const page = await browser.newPage();
      const bad: string[] = [];
      page.on('response', (r) => r.status() >= 400 && bad.push(`${r.status()} ${r.url()}`));
      page.on('console', (m) => m.type() === 'error' && bad.push(m.text()));
      try {
        await page.goto(s.url);
        await page.waitForFunction(() => ['ready', 'error'].includes(document.body.dataset.model ?? ''), null, { timeout: 60_000 });
        expect(await page.textContent('#chat-hint')).toBe(`This model is tiny (${params} parameters) and knows one thing: ${ADDITION}.`);
        expect(await page.textContent('#model-pill')).toMatch(new RegExp(` · ${params} params$`));
        expect(bad).toEqual([]);
      } finally {
        await page.close();
      }
    });
  }

  it('connected to a server: the header names it; a server without CORS for the page is named with --cors', async () => {
    const s = await web();
    const page = await browser.newPage();
    try {
      await page.goto(`${s.url}?autoload=0`);
      await page.click('label:has(#backend-remote)');
      await page.fill('#server-url', bareUrl);
      await page.click('#server-form button[type=submit]');
      await page.waitForFunction(() => document.getElementById('server-status')!.className.includes('error'), null, { timeout: 10_000 });
      const origin = new URL(s.url).origin;
      expect(await page.textContent('#server-status')).toMatch(new RegExp(`does not allow this page's origin: start it with \`fast-dllm serve --cors ${origin}\`$`));
      expect(await page.textContent('#model-pill')).toBe(`server ${bareUrl}`);
      expect(await page.textContent('#chat-hint')).toBe(`Messages go to the server at ${bareUrl}; the model runs there.`);
      await page.click('label:has(#backend-local)');
      expect(await page.textContent('#model-pill')).not.toMatch(/server/);
    } finally {
      await page.close();
    }
  });
});
