/**
 * `pull` against a hostile hub (issue #25): listed names that would land outside the cache (a backslash is a
 * separator on Windows), and a file with no listed size that never ends.
 */
import { existsSync, mkdtempSync, readdirSync, rmSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { afterEach, describe, expect, it } from 'vitest';
import { pull, safeRemotePath, wantedFile } from '../src/pull.js';
import { startHub, type Hub } from './hub.js';
import { safetensors } from './safetensors.js';

const REPO = 'test-org/hostile';
const config = Buffer.from(JSON.stringify({ model_type: 'llada' }));
const weights = safetensors({ w: { dtype: 'F32', shape: [8] } });
let hub: Hub | undefined;
let root = '';
afterEach(async () => {
  await hub?.close();
  hub = undefined;
  if (root) rmSync(root, { recursive: true, force: true });
  root = '';
});

describe('pull with a hostile listing', () => {
  const unsafe = ['tokenizer\\..\\..\\evil.bat', 'tokenizer/../../evil.json', '../config.json', '/etc/tokenizer.json', 'C:tokenizer.json',
    'tokenizer.json\u0000.txt', './tokenizer.json', 'tokenizer\n.json', 'a//tokenizer.json', '..'];
  it(`${unsafe.length} unsafe names are never wanted; plain names are`, () => {
    for (const p of unsafe) {
      expect(safeRemotePath(p), JSON.stringify(p)).toBe(false);
      expect(wantedFile(p), JSON.stringify(p)).toBe(false);
    }
    for (const p of ['config.json', 'tokenizer.json', 'model-00001-of-00002.safetensors']) expect(wantedFile(p)).toBe(true);
  });

  it('downloads the plain files and nothing lands outside the model directory', async () => {
    root = mkdtempSync(join(tmpdir(), 'fast-dllm-pull-adv-'));
    const cache = join(root, 'cache');
    hub = await startHub({ repo: REPO, files: [
      { path: 'config.json', data: config },
      { path: 'model.safetensors', data: weights, lfs: true },
      ...unsafe.filter((p) => !p.includes('\u0000') && !p.includes('\n')).map((path) => ({ path, data: Buffer.from('evil') })),
    ] });
    const r = await pull({ repo: REPO, revision: 'main', cacheDir: cache, endpoint: hub.url });
    expect(r.files.sort()).toEqual(['config.json', 'model.safetensors']);
    expect(readdirSync(root)).toEqual(['cache']);
    expect(readdirSync(join(cache, ...REPO.split('/'))).sort()).toEqual(['config.json', 'model.safetensors']);
    expect(existsSync(join(cache, 'evil.json'))).toBe(false);
  });

  it('a file with no listed size that never ends is cut at the cap and removed', async () => {
    root = mkdtempSync(join(tmpdir(), 'fast-dllm-pull-adv-'));
    hub = await startHub({ repo: REPO, bareSiblings: true, noTree: true, endless: new Set(['tokenizer.json']), files: [
      { path: 'config.json', data: config },
      { path: 'model.safetensors', data: weights },
      { path: 'tokenizer.json', data: Buffer.from('{}') },
    ] });
    const t0 = performance.now();
    await expect(pull({ repo: REPO, revision: 'main', cacheDir: root, endpoint: hub.url, unlistedMaxBytes: 1 << 20 }))
      .rejects.toThrow(/tokenizer.json: the server sent more than 1048576 bytes \(the cap for a file whose size is not listed\); refusing it/);
    expect(performance.now() - t0).toBeLessThan(10_000);
    const dir = join(root, ...REPO.split('/'));
    expect(readdirSync(dir).filter((f) => f.startsWith('tokenizer'))).toEqual([]);
  });
});
