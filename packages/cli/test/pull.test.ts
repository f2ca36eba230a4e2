import { existsSync, mkdtempSync, readFileSync, readdirSync, rmSync, writeFileSync, mkdirSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { afterEach, beforeEach, describe, expect, it } from 'vitest';
import { sha256, startHub, type Hub, type HubFile } from './hub.js';
import { runCli } from './run.js';
import { safetensors } from './safetensors.js';

const REPO = 'test-org/tiny-llada';
const config = Buffer.from(JSON.stringify({ model_type: 'llada', d_model: 8, n_layers: 1, n_heads: 2, mlp_hidden_size: 16, embedding_size: 32, max_sequence_length: 64 }));
// Two shards large enough that a cut lands mid-file.
const shard1 = safetensors({ 'model.transformer.wte.weight': { dtype: 'F32', shape: [32, 8] }, big: { dtype: 'F32', shape: [4096] } });
const shard2 = safetensors({ 'model.transformer.ln_f.weight': { dtype: 'F32', shape: [8] }, big2: { dtype: 'F32', shape: [2048] } });
const index = Buffer.from(JSON.stringify({
  metadata: {},
  weight_map: { 'model.transformer.wte.weight': 'model-00001-of-00002.safetensors', big: 'model-00001-of-00002.safetensors',
    'model.transformer.ln_f.weight': 'model-00002-of-00002.safetensors', big2: 'model-00002-of-00002.safetensors' },
}));

function repoFiles(): HubFile[] {
  return [
    { path: 'config.json', data: config },
    { path: 'tokenizer.json', data: Buffer.from('{"model":{}}') },
    { path: 'README.md', data: Buffer.from('# not downloaded') },
    { path: 'pytorch_model.bin', data: Buffer.from('pickles are never fetched') },
    { path: 'model.safetensors.index.json', data: index },
    { path: 'model-00001-of-00002.safetensors', data: shard1, lfs: true },
    { path: 'model-00002-of-00002.safetensors', data: shard2, lfs: true },
    { path: 'model-old.safetensors', data: Buffer.from('not in the index'), lfs: true },
  ];
}

let cache: string;
let hub: Hub | undefined;
beforeEach(() => {
  cache = mkdtempSync(join(tmpdir(), 'fast-dllm-pull-'));
});
afterEach(async () => {
  await hub?.close();
  hub = undefined;
  rmSync(cache, { recursive: true, force: true });
});

const pullArgs = () => ['pull', REPO, '--cache-dir', cache, '--no-progress'];
const env = (h: Hub, extra: Record<string, string> = {}) => ({ HF_ENDPOINT: h.url, HF_TOKEN: '', ...extra });

describe('fast-dllm pull', () => {
  it('downloads config, tokenizer, the index and exactly the indexed shards, byte for byte', async () => {
    hub = await startHub({ repo: REPO, files: repoFiles(), token: 'sekret' });
    const r = await runCli(pullArgs(), { env: env(hub, { HF_TOKEN: 'sekret' }) });
    expect(r.stderr).not.toMatch(/error/);
    expect(r.code).toBe(0);
    const dir = join(cache, 'test-org', 'tiny-llada');
    expect(r.stdout.trim()).toBe(dir);
    expect(readdirSync(dir).sort()).toEqual(
      ['config.json', 'model-00001-of-00002.safetensors', 'model-00002-of-00002.safetensors', 'model.safetensors.index.json', 'tokenizer.json'],
    );
    expect(sha256(readFileSync(join(dir, 'model-00001-of-00002.safetensors')))).toBe(sha256(shard1));
    expect(readFileSync(join(dir, 'config.json')).equals(config)).toBe(true);
    expect(hub.log.every((l) => l.auth === 'Bearer sekret')).toBe(true);
    // A second pull finds every file in place and downloads nothing.
    const before = hub.log.filter((l) => l.url.includes('/resolve/')).length;
    const again = await runCli(pullArgs(), { env: env(hub, { HF_TOKEN: 'sekret' }) });
    expect(again.code).toBe(0);
    expect(hub.log.filter((l) => l.url.includes('/resolve/')).length).toBe(before);
  });

  it('without a token on a gated repo: exit 1 and a hint about HF_TOKEN', async () => {
    hub = await startHub({ repo: REPO, files: repoFiles(), token: 'sekret' });
    const r = await runCli(pullArgs(), { env: env(hub) });
    expect(r.code).toBe(1);
    expect(r.stderr).toMatch(/HTTP 401.*HF_TOKEN/);
  });

  it('follows the listing\'s pages (Link rel="next") and downloads files from every page', async () => {
    hub = await startHub({ repo: REPO, files: repoFiles(), treePageSize: 3 });
    const r = await runCli(pullArgs(), { env: env(hub) });
    expect(r.code).toBe(0);
    expect(hub.log.filter((l) => l.url.includes('/tree/')).map((l) => l.url.split('?')[1])).toEqual(
      ['recursive=true', 'recursive=true&cursor=3', 'recursive=true&cursor=6']);
    // The second shard is listed on the last page only.
    const dir = join(cache, 'test-org', 'tiny-llada');
    expect(sha256(readFileSync(join(dir, 'model-00002-of-00002.safetensors')))).toBe(sha256(shard2));
  });

  it('falls back to the revision API when the tree API is missing', async () => {
    hub = await startHub({ repo: REPO, files: repoFiles(), noTree: true });
    const r = await runCli(pullArgs(), { env: env(hub) });
    expect(r.code).toBe(0);
    const dir = join(cache, 'test-org', 'tiny-llada');
    // Sha256 still checked, from x-linked-etag.
    expect(sha256(readFileSync(join(dir, 'model-00002-of-00002.safetensors')))).toBe(sha256(shard2));
  });

  it('resumes an interrupted download with a Range request and verifies the result', async () => {
    const cutAt = 5000;
    hub = await startHub({ repo: REPO, files: repoFiles(), cutAfter: { 'model-00001-of-00002.safetensors': cutAt } });
    const r = await runCli(pullArgs(), { env: env(hub) });
    expect(r.code).toBe(0);
    expect(r.stderr).toMatch(/model-00001-of-00002.safetensors: interrupted/);
    const gets = hub.log.filter((l) => l.url.endsWith('/model-00001-of-00002.safetensors'));
    expect(gets.length).toBe(2);
    expect(gets[0].range).toBeUndefined();
    expect(gets[1].range).toMatch(/^bytes=\d+-$/);
    expect(Number(/\d+/.exec(gets[1].range!)![0])).toBeGreaterThan(0);
    const got = readFileSync(join(cache, 'test-org', 'tiny-llada', 'model-00001-of-00002.safetensors'));
    expect(got.equals(shard1)).toBe(true);
  });

  it('resumes a .part left by an earlier run', async () => {
    hub = await startHub({ repo: REPO, files: repoFiles() });
    const dir = join(cache, 'test-org', 'tiny-llada');
    mkdirSync(dir, { recursive: true });
    writeFileSync(join(dir, 'model-00002-of-00002.safetensors.part'), shard2.subarray(0, 1234));
    const r = await runCli(pullArgs(), { env: env(hub) });
    expect(r.code).toBe(0);
    const gets = hub.log.filter((l) => l.url.endsWith('/model-00002-of-00002.safetensors'));
    expect(gets.map((g) => g.range)).toEqual(['bytes=1234-']);
    expect(readFileSync(join(dir, 'model-00002-of-00002.safetensors')).equals(shard2)).toBe(true);
    expect(existsSync(join(dir, 'model-00002-of-00002.safetensors.part'))).toBe(false);
  });

  it('a sha256 mismatch fails with exit 1, names the file, and leaves neither the file nor its .part', async () => {
    hub = await startHub({ repo: REPO, files: repoFiles(), corrupt: new Set(['model-00001-of-00002.safetensors']) });
    const r = await runCli(pullArgs(), { env: env(hub) });
    expect(r.code).toBe(1);
    expect(r.stderr).toMatch(/model-00001-of-00002.safetensors: sha256 mismatch: expected [0-9a-f]{64}, got [0-9a-f]{64}/);
    expect(r.stderr.trim().split('\n').filter((l) => l.startsWith('error')).length).toBe(1);
    expect(r.stderr).not.toMatch(/\n\s+at /); // no stack trace
    const dir = join(cache, 'test-org', 'tiny-llada');
    expect(existsSync(join(dir, 'model-00001-of-00002.safetensors'))).toBe(false);
    expect(existsSync(join(dir, 'model-00001-of-00002.safetensors.part'))).toBe(false);
  });

  it('with a bare listing, the x-linked-etag header still catches a corrupt download', async () => {
    hub = await startHub({ repo: REPO, files: repoFiles(), noTree: true, bareSiblings: true, corrupt: new Set(['model-00002-of-00002.safetensors']) });
    const r = await runCli(pullArgs(), { env: env(hub) });
    expect(r.code).toBe(1);
    expect(r.stderr).toMatch(/model-00002-of-00002.safetensors: sha256 mismatch/);
  });

  it('an unknown repository: exit 1 with the HTTP status', async () => {
    hub = await startHub({ repo: REPO, files: repoFiles() });
    const r = await runCli(['pull', 'nobody/nothing', '--cache-dir', cache, '--no-progress'], { env: env(hub) });
    expect(r.code).toBe(1);
    expect(r.stderr).toMatch(/cannot list nobody\/nothing@main.*HTTP 404/);
  });

  it('a malformed repository id or endpoint: exit 2 before any request', async () => {
    const bad = await runCli(['pull', 'no-slash', '--cache-dir', cache]);
    expect(bad.code).toBe(2);
    expect(bad.stderr).toMatch(/ORG\/NAME/);
    const ep = await runCli(['pull', 'a/b', '--cache-dir', cache], { env: { HF_ENDPOINT: 'ftp://x' } });
    expect(ep.code).toBe(2);
    expect(ep.stderr).toMatch(/HF_ENDPOINT/);
  });
});
