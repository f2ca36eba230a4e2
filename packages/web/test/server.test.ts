// The server behind `fast-dllm web`: isolation headers on every response, ranged model reads, nothing outside its
// two folders, GET and HEAD only.
import { request } from 'node:http';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { mkdtemp, rm, writeFile } from 'node:fs/promises';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { defaultModelDir } from '@fast-dllm/default-model';
import { parseRange, safeJoin, startWebServer, type WebServer } from '../src/index.js';

/** A raw request (the path is sent as written, not normalised like fetch's URLs). */
function raw(url: string, path: string, method = 'GET', headers: Record<string, string> = {}): Promise<{ status: number; headers: Record<string, string | string[] | undefined>; body: string }> {
  const u = new URL(url);
  return new Promise((resolve, reject) => {
    const req = request({ host: u.hostname, port: u.port, path, method, headers }, (res) => {
      let body = '';
      res.on('data', (d: Buffer) => (body += d.toString('latin1')));
      res.on('end', () => resolve({ status: res.statusCode ?? 0, headers: res.headers, body }));
    });
    req.on('error', reject);
    req.end();
  });
}

describe('web server', () => {
  let web: WebServer;
  let site: string;

  beforeAll(async () => {
    site = await mkdtemp(join(tmpdir(), 'fast-dllm-site-'));
    await writeFile(join(site, 'index.html'), '<!doctype html><title>t</title>');
    await writeFile(join(site, 'app.js'), 'export {};');
    await writeFile(join(site, '.hidden'), 'secret');
    web = await startWebServer({ port: 0, siteDir: site });
  });
  afterAll(async () => {
    await web?.close();
    await rm(site, { recursive: true, force: true });
  });

  it('sends COOP, COEP and CORP on every response, 404s included', async () => {
    for (const path of ['/', '/app.js', '/models/default/config.json', '/nope']) {
      const r = await raw(web.url, path);
      expect(r.status, path).toBe(path === '/nope' ? 404 : 200);
      expect(r.headers['cross-origin-opener-policy'], path).toBe('same-origin');
      expect(r.headers['cross-origin-embedder-policy'], path).toBe('require-corp');
      expect(r.headers['cross-origin-resource-policy'], path).toBe('same-origin');
    }
    expect((await raw(web.url, '/')).headers['content-type']).toBe('text/html; charset=utf-8');
    expect((await raw(web.url, '/app.js')).headers['content-type']).toBe('text/javascript; charset=utf-8');
  });

  it('answers ranged reads of model files: 206 with Content-Range, 416 past the end; HEAD gives the length', async () => {
    const { size } = await import('node:fs/promises').then((fs) => fs.stat(join(defaultModelDir, 'model.safetensors')));
    const r = await raw(web.url, '/models/default/model.safetensors', 'GET', { Range: 'bytes=0-7' });
    expect(r.status).toBe(206);
    expect(r.headers['content-range']).toBe(`bytes 0-7/${size}`);
    expect(r.body.length).toBe(8);
    const tail = await raw(web.url, '/models/default/model.safetensors', 'GET', { Range: 'bytes=-4' });
    expect(tail.headers['content-range']).toBe(`bytes ${size - 4}-${size - 1}/${size}`);
    expect((await raw(web.url, '/models/default/model.safetensors', 'GET', { Range: `bytes=${size}-` })).status).toBe(416);
    const head = await raw(web.url, '/models/default/model.safetensors', 'HEAD');
    expect(head.status).toBe(200);
    expect(head.headers['content-length']).toBe(String(size));
    expect(head.body).toBe('');
  });

  it('serves nothing outside its folders, no hidden files, and only GET and HEAD', async () => {
    for (const path of ['/../package.json', '/%2e%2e/package.json', '/models/default/../../package.json', '/models/default/%2e%2e%2fREADME.md',
      '/.hidden', '/models/default/', '/models/default/sub/config.json', '/%00']) {
      expect((await raw(web.url, path)).status, path).toBe(404);
    }
    const post = await raw(web.url, '/', 'POST');
    expect(post.status).toBe(405);
    expect(post.headers.allow).toBe('GET, HEAD');
  });

  it('says what to do when the page is not built or the model folder has no config.json', async () => {
    await expect(startWebServer({ port: 0, siteDir: join(site, 'missing') })).rejects.toThrow(/the page is not built .* run `npm run build -w @fast-dllm\/web`/);
    await expect(startWebServer({ port: 0, siteDir: site, modelDir: site })).rejects.toThrow(/has no config\.json; pass a Hugging Face model folder/);
  });

  it('parseRange and safeJoin', () => {
    expect(parseRange(undefined, 10)).toBeNull();
    expect(parseRange('bytes=2-5', 10)).toEqual([2, 5]);
    expect(parseRange('bytes=2-', 10)).toEqual([2, 9]);
    expect(parseRange('bytes=5-100', 10)).toEqual([5, 9]);
    expect(parseRange('bytes=-3', 10)).toEqual([7, 9]);
    expect(parseRange('bytes=10-', 10)).toBe('bad');
    expect(parseRange('bytes=0-1,4-5', 10)).toBeNull(); // several ranges: the whole file
    expect(safeJoin('/srv', '/a/b.js')).toBe('/srv/a/b.js');
    expect(safeJoin('/srv', '/a/../../etc/passwd')).toBeNull();
    expect(safeJoin('/srv', '/%E0%A4%A')).toBeNull();
  });
});
