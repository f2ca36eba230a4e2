// The model loader of the page, run in Node (fetch, Blob and File are Node 20 globals): a URL directory against
// servers with and without Range support, a picked folder, and the refusals that come before any weight is fetched.
import { readFile, readdir } from 'node:fs/promises';
import { createServer, type Server } from 'node:http';
import { join } from 'node:path';
import { afterAll, afterEach, describe, expect, it } from 'vitest';
import { defaultModelDir } from '@fast-dllm/default-model';
import { FolderDirectory, UrlDirectory } from '../src/loader/directory.js';
import { fetchWeights, planModel, type Progress } from '../src/loader/load-model.js';
import { removeFixtures, shardedModel } from './fixtures.js';

let server: Server | null = null;
afterAll(() => removeFixtures());
afterEach(() => new Promise<void>((r) => {
  if (!server) return r();
  server.close(() => r());
  server.closeAllConnections();
}));

type Mode = 'ranges' | 'no-ranges' | 'no-length';

/** Serves `files` (name → bytes) the way `mode` says; records every request as "name range". */
async function serveFiles(files: Map<string, Uint8Array>, mode: Mode, log: string[]): Promise<string> {
  server = createServer((req, res) => {
    const name = decodeURIComponent(new URL(req.url!, 'http://x').pathname.split('/').pop()!);
    log.push(`${name} ${req.headers.range ?? ''}`.trim());
    const body = files.get(name);
    if (!body) {
      res.statusCode = 404;
      return res.end();
    }
    const m = /^bytes=(\d+)-(\d+)$/.exec(req.headers.range ?? '');
    if (mode === 'ranges' && m) {
      const [a, b] = [Number(m[1]), Math.min(Number(m[2]), body.length - 1)];
      res.statusCode = 206;
      res.setHeader('Content-Range', `bytes ${a}-${b}/${body.length}`);
      return res.end(body.subarray(a, b + 1));
    }
    if (mode === 'no-length') {
      // Chunked, no Content-Length: the loader must read it whole once and keep it.
      for (let i = 0; i < body.length; i += 65536) res.write(body.subarray(i, i + 65536));
      return res.end();
    }
    res.setHeader('Content-Length', body.length);
    res.end(body);
  });
  await new Promise<void>((r) => server!.listen(0, '127.0.0.1', r));
  return `http://127.0.0.1:${(server.address() as { port: number }).port}/model/`;
}

async function filesOf(dir: string): Promise<Map<string, Uint8Array>> {
  const out = new Map<string, Uint8Array>();
  for (const f of await readdir(dir)) if (/\.(json|safetensors)$/.test(f)) out.set(f, new Uint8Array(await readFile(join(dir, f))));
  return out;
}

const opts = { weightDType: 'f32' as const, threads: 1 };
/** Requests for .safetensors files (not the index). */
const weightRequests = (log: string[]) => log.filter((l) => /^\S+\.safetensors( |$)/.test(l));

describe('model loader', () => {
  it.each<Mode>(['ranges', 'no-ranges', 'no-length'])('plans and downloads the bundled model from a URL (server: %s)', async (mode) => {
    const files = await filesOf(defaultModelDir);
    const log: string[] = [];
    const dir = new UrlDirectory(await serveFiles(files, mode, log));
    const phases: string[] = [];
    const progress: Progress = (p) => phases.push(`${p.phase} ${p.done}/${p.total}`);
    const plan = await planModel(dir, opts, progress);
    expect(plan.parameters).toBe(860_544);
    expect(plan.weightFiles).toEqual([{ name: 'model.safetensors', bytes: files.get('model.safetensors')!.length }]);
    const weightReads = weightRequests(log);
    // Before the download: with ranges only the first 256 KiB were asked for.
    if (mode === 'ranges') expect(weightReads).toEqual(['model.safetensors bytes=0-262143']);
    const blobs = await fetchWeights(dir, plan, progress);
    const got = new Uint8Array(await blobs.get('model.safetensors')!.arrayBuffer());
    expect(Buffer.compare(got, files.get('model.safetensors')!)).toBe(0);
    const size = files.get('model.safetensors')!.length;
    expect(phases).toContain(`downloading ${size}/${size}`);
    // A body read whole while probing is not fetched a second time.
    expect(weightRequests(log).length).toBe(mode === 'no-length' ? 1 : 2);
  });

  it('reads a sharded model from picked files; the shallowest config.json marks the model folder', async () => {
    const dir = await shardedModel();
    const picked = [...(await filesOf(dir))].map(([name, bytes]) => ({ path: `outer/sharded-model/${name}`, file: new File([bytes], name) }));
    picked.push({ path: 'outer/sharded-model/old/config.json', file: new File(['{'], 'config.json') });
    const folder = new FolderDirectory(picked);
    expect(folder.label).toBe('outer/sharded-model');
    const plan = await planModel(folder, opts, () => {});
    expect(plan.weightFiles.map((f) => f.name)).toEqual(['model-00001-of-00002.safetensors', 'model-00002-of-00002.safetensors']);
    expect(plan.parameters).toBe(860_544);
    expect(() => new FolderDirectory([{ path: 'photos/a.jpg', file: new File(['x'], 'a.jpg') }])).toThrow(/no config\.json in photos \(1 files\); pick the folder of a Hugging Face model/);
  });

  it('an A2D folder (DESIGN §15): BD3LM from the folder name, <|mask|> from tokenizer.json, Qwen3 prompts with the empty think block', async () => {
    const fixture = (name: string) => join(import.meta.dirname, '..', '..', '..', 'test', 'fixtures', 'models', name);
    const pick = async (name: string) => new FolderDirectory([...(await filesOf(fixture(name)))].map(([f, bytes]) => ({ path: `${name}/${f}`, file: new File([bytes], f) })));
    const bd3lm = await planModel(await pick('a2d-qwen2-bd3lm-tiny-f32'), opts, () => {});
    expect(bd3lm.description).toMatchObject({ architecture: 'a2d_bd3lm', blockSize: 8, shiftLogits: false, special: { mask: 291 } });
    expect(bd3lm.configExtras).toMatchObject({ path: 'a2d-qwen2-bd3lm-tiny-f32' });
    const mdlm = await planModel(await pick('a2d-qwen3-mdlm-tiny-f32'), opts, () => {});
    expect(mdlm.description).toMatchObject({ architecture: 'a2d_mdlm', qkNorm: true, special: { mask: 293 } });
    expect(mdlm.description.blockSize).toBeUndefined();
    expect(mdlm.tokenizer.applyChatTemplate([{ role: 'user', content: 'hi' }])).toMatch(/<\|im_start\|>assistant\n<think>\n\n<\/think>\n\n$/);
  });

  it('refuses before any weight is fetched: too large for wasm32 (with the bf16 hint when bf16 fits), missing tokenizer, wrong tensors', async () => {
    const files = await filesOf(defaultModelDir);
    const base = JSON.parse(new TextDecoder().decode(files.get('config.json')!));
    const log: string[] = [];
    const url = await serveFiles(files, 'ranges', log);
    // 1.4 B parameters: 6 GiB at f32, under 4 GiB at bf16.
    files.set('config.json', new TextEncoder().encode(JSON.stringify({ ...base, d_model: 2048, n_layers: 16, n_heads: 16, n_kv_heads: 16, mlp_hidden_size: 8192, vocab_size: 126464, embedding_size: 126464 })));
    await expect(planModel(new UrlDirectory(url), opts, () => {})).rejects.toThrow(
      /too large for the browser: its f32 weights and one 64-token sequence need 5\.\d\d GiB of WebAssembly memory, and wasm32 addresses at most 4 GiB\. Nothing was downloaded\. With bf16 weights it needs 3\.\d\d GiB: choose bf16 under Engine and load it again\./);
    expect(weightRequests(log)).toEqual([]);
    // bf16 passes the size check, then the headers disagree with the config (checked by ranged reads only).
    await expect(planModel(new UrlDirectory(url), { ...opts, weightDType: 'bf16' }, () => {})).rejects.toThrow(/weights do not match config\.json: .*unexpected shape/);
    expect(weightRequests(log)).toEqual(['model.safetensors bytes=0-262143']);
    files.set('config.json', new TextEncoder().encode(JSON.stringify(base)));
    files.delete('tokenizer.json');
    await expect(planModel(new UrlDirectory(url), opts, () => {})).rejects.toThrow(/tokenizer\.json is missing; the chat needs the tokenizer next to config\.json \(file http:.*\/model\/tokenizer\.json\)/);
  });

  it('names a URL that is not one', () => {
    expect(() => new UrlDirectory('not a url')).toThrow(/'not a url' is not a URL; give the address of a model folder/);
    expect(() => new UrlDirectory('file:///tmp/model/')).toThrow(/not an http\(s\) URL/);
    expect(new UrlDirectory('https://huggingface.co/o/n/resolve/main').label).toBe('https://huggingface.co/o/n/resolve/main/');
    expect(new UrlDirectory('https://h/m/config.json').label).toBe('https://h/m/');
  });
});
