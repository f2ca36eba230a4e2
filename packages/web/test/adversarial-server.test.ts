// `fast-dllm web`'s server against hostile paths (issue #25): encoded separators, symlinks out of the model folder,
// and the Hugging Face cache layout whose links into ../../blobs must keep working.
import { request } from 'node:http';
import { mkdir, mkdtemp, rm, symlink, writeFile } from 'node:fs/promises';
import { execFileSync } from 'node:child_process';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { safeJoin, startWebServer, type WebServer } from '../src/index.js';

function raw(url: string, path: string): Promise<{ status: number; body: string }> {
  const u = new URL(url);
  return new Promise((resolve, reject) => {
    const req = request({ host: u.hostname, port: u.port, path }, (res) => {
      let body = '';
      res.on('data', (d: Buffer) => (body += d.toString('latin1')));
      res.on('end', () => resolve({ status: res.statusCode ?? 0, body }));
    });
    req.on('error', reject);
    req.end();
  });
}

describe('web server against hostile paths', () => {
  let root: string;
  let web: WebServer;
  let hub: WebServer;
  beforeAll(async () => {
    root = await mkdtemp(join(tmpdir(), 'fast-dllm-web-adv-'));
    const site = join(root, 'site');
    const model = join(root, 'model');
    await mkdir(site);
    await mkdir(model);
    await writeFile(join(site, 'index.html'), '<!doctype html>');
    await writeFile(join(root, 'secret.txt'), 'secret');
    await writeFile(join(model, 'config.json'), '{}');
    await symlink('/etc', join(model, 'etc-link'));
    await symlink('/etc/passwd', join(model, 'passwd.json'));
    await symlink(join(root, 'secret.txt'), join(model, 'secret.json'));
    await symlink(join(root, 'secret.txt'), join(site, 'secret.js'));
    await symlink(join(root, 'secret.txt'), join(site, 'secret.css'));
    // A Hugging Face cache snapshot: its files link to ../../blobs/<hash>.
    const repo = join(root, 'models--org--tiny');
    await mkdir(join(repo, 'blobs'), { recursive: true });
    await mkdir(join(repo, 'snapshots', 'abc'), { recursive: true });
    await writeFile(join(repo, 'blobs', 'h1'), '{"model_type":"llada"}');
    await symlink('../../blobs/h1', join(repo, 'snapshots', 'abc', 'config.json'));
    await symlink('/etc/passwd', join(repo, 'snapshots', 'abc', 'tokenizer.json'));
    web = await startWebServer({ port: 0, siteDir: site, modelDir: model });
    hub = await startWebServer({ port: 0, siteDir: site, modelDir: join(repo, 'snapshots', 'abc') });
  });
  afterAll(async () => {
    await web?.close();
    await hub?.close();
    await rm(root, { recursive: true, force: true });
  });

  const refused = [
    '/models/default/etc-link%2Fpasswd', '/models/default/etc-link%2fpasswd', '/models/default/etc-link%5Cpasswd',
    '/models/default/etc-link/passwd', '/models/default/passwd.json', '/models/default/secret.json',
    '/models/default/%2E%2E%2Fsecret.txt', '/models/default/..%2Fsecret.txt', '/models/default/%2e%2e', '/%2E%2E/secret.txt',
    '/secret.js', '/secret.css', '/..%2Fsecret.txt', '/models/default/config.json%00', '/models/default/%E0%A4%A',
  ];
  it(`refuses ${refused.length} escaping paths with 404, never the file`, async () => {
    for (const p of refused) {
      const r = await raw(web.url, p);
      expect(r.status, p).toBe(404);
      expect(r.body, p).not.toMatch(/root:|secret/);
    }
    expect((await raw(web.url, '/models/default/config.json')).status).toBe(200);
  });

  it('serves a Hugging Face cache snapshot through its blob links, but not a link out of the cache', async () => {
    const r = await raw(hub.url, '/models/default/config.json');
    expect(r.status).toBe(200);
    expect(r.body).toContain('llada');
    expect((await raw(hub.url, '/models/default/tokenizer.json')).status).toBe(404);
  });

  it('safeJoin does not turn an encoded separator into a path separator', () => {
    expect(safeJoin('/m', 'etc-link%2Fpasswd')).toBeNull();
    expect(safeJoin('/m', 'a%5Cb')).toBeNull();
    expect(safeJoin('/m', 'config.json')).toBe('/m/config.json');
    expect(safeJoin('/m', 'my%20file.json')).toBe('/m/my file.json');
  });

  it('a FIFO in the model folder is not served (and does not hang)', async () => {
    const model = join(root, 'model');
    execFileSync('mkfifo', [join(model, 'pipe.safetensors')]);
    const t0 = performance.now();
    expect((await raw(web.url, '/models/default/pipe.safetensors')).status).toBe(404);
    expect(performance.now() - t0).toBeLessThan(2000);
  });
});
