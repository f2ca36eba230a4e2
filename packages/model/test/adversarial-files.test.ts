/**
 * Hostile model files (issue #25): a config far larger than its weights, shard paths that leave the model
 * directory, a FIFO as weights, tokenizer expressions that backtrack. Each is a ModelFormatError at once.
 */
import { execFileSync } from 'node:child_process';
import { copyFile, mkdir, readFile, readdir, rm, writeFile } from 'node:fs/promises';
import { join } from 'node:path';
import { fileURLToPath } from 'node:url';
import { afterAll, describe, expect, it } from 'vitest';
import { ModelFormatError, SafetensorsArchive, createTokenizer, nestedRepetition, openModel, parseShardIndex } from '../src/index.js';
import { tempDir } from './helpers.js';

const FIXTURES = fileURLToPath(new URL('../../../test/fixtures/models/', import.meta.url));
const made: string[] = [];
afterAll(async () => {
  for (const d of made) await rm(d, { recursive: true, force: true });
});

async function copyModel(name: string): Promise<string> {
  const dir = await tempDir();
  made.push(dir);
  for (const f of await readdir(join(FIXTURES, name))) await copyFile(join(FIXTURES, name, f), join(dir, f));
  return dir;
}

async function editJson(file: string, change: (j: Record<string, unknown>) => void): Promise<void> {
  const j = JSON.parse(await readFile(file, 'utf8')) as Record<string, unknown>;
  change(j);
  await writeFile(file, JSON.stringify(j));
}

describe('config against the weights', () => {
  it('n_layers 1e6 on a 2-layer checkpoint is refused in well under a second, before any per-layer work', async () => {
    const dir = await copyModel('llada-tiny-f32');
    await editJson(join(dir, 'config.json'), (c) => (c.n_layers = 1_000_000));
    const t0 = performance.now();
    await expect(openModel(dir)).rejects.toThrow(/config.json has 1000000 layers \(\d+ tensors each\), but the weights hold only \d+ tensors/);
    expect(performance.now() - t0).toBeLessThan(1000);
  });

  it('the fixture itself still opens', async () => {
    const m = await openModel(join(FIXTURES, 'llada-tiny-f32'));
    await m.archive.close();
  });
});

describe('shard paths in an index', () => {
  const escaping = ['../../etc/passwd', '/etc/passwd', 'shards/../../x.safetensors', 'C:\\\\evil.safetensors', 'a\\\\..\\\\..\\\\b', './x', 'x\u0000y', 'a//b'];
  for (const shard of escaping) {
    it(`'${JSON.stringify(shard)}' is refused`, () => {
      expect(() => parseShardIndex({ weight_map: { w: shard } }, 'index.json')).toThrow(/not a file inside the model directory/);
    });
  }

  it('openIndex on a real sharded model with one shard rewritten to escape is refused before reading it', async () => {
    const dir = await copyModel('llada-tiny-sharded');
    const index = join(dir, 'model.safetensors.index.json');
    await editJson(index, (j) => {
      const wm = j.weight_map as Record<string, string>;
      wm[Object.keys(wm)[0]] = '../../../../etc/hostname';
    });
    await expect(SafetensorsArchive.openIndex(index)).rejects.toThrow(ModelFormatError);
    expect(parseShardIndex({ weight_map: { w: 'sub/model-1.safetensors' } }, 'i').get('w')).toBe('sub/model-1.safetensors');
  });
});

describe('weights that are not regular files', () => {
  it('a FIFO as model.safetensors is an error, not a hang', async () => {
    const dir = await copyModel('llada-tiny-f32');
    await rm(join(dir, 'model.safetensors'));
    execFileSync('mkfifo', [join(dir, 'model.safetensors')]);
    const t0 = performance.now();
    await expect(openModel(dir)).rejects.toThrow(/not a regular file/);
    expect(performance.now() - t0).toBeLessThan(2000);
  });

  it('a directory named model.safetensors is an error', async () => {
    const dir = await copyModel('llada-tiny-f32');
    await rm(join(dir, 'model.safetensors'));
    await mkdir(join(dir, 'model.safetensors'));
    await expect(openModel(dir)).rejects.toThrow(/not a regular file/);
  });
});

describe('tokenizer expressions that backtrack', () => {
  it('nestedRepetition finds (a+)+ and its kin and passes the published pre-tokenizers', () => {
    for (const bad of ['(a+)+b', '(\\s*x)*', '(?:a+){2,}', '((ab)*c)+', '(x|y+)*z']) expect(nestedRepetition(bad), bad).not.toBeNull();
    const published = [
      // GPT-2 / Qwen / Llama 3 pre-tokenizer expressions.
      "'s|'t|'re|'ve|'m|'ll|'d| ?\\p{L}+| ?\\p{N}+| ?[^\\s\\p{L}\\p{N}]+|\\s+(?!\\S)|\\s+",
      "(?i:'s|'t|'re|'ve|'m|'ll|'d)|[^\\r\\n\\p{L}\\p{N}]?\\p{L}+|\\p{N}{1,3}| ?[^\\s\\p{L}\\p{N}]+[\\r\\n]*|\\s*[\\r\\n]+|\\s+(?!\\S)|\\s+",
      "(?i:'s|'t|'re|'ve|'m|'ll|'d)|[^\\r\\n\\p{L}\\p{N}]?\\p{L}+|\\p{N}| ?[^\\s\\p{L}\\p{N}]+[\\r\\n]*|\\s*[\\r\\n]+|\\s+(?!\\S)|\\s+",
      '[+=?,:]', '(ab){2}', '[(+)]+', '\\(a+\\)+',
    ];
    for (const ok of published) expect(nestedRepetition(ok), ok).toBeNull();
  });

  it('a tokenizer.json with such a Split is refused at load, naming the expression', async () => {
    const tj = JSON.parse(await readFile(join(FIXTURES, 'llada-tiny-f32', 'tokenizer.json'), 'utf8')) as Record<string, unknown>;
    const hostile = { ...tj, pre_tokenizer: { type: 'Sequence', pretokenizers: [{ type: 'Split', pattern: { Regex: '(a+)+b' }, behavior: 'Isolated', invert: false }] } };
    expect(() => createTokenizer({ tokenizer: hostile, tokenizerConfig: {} })).toThrow(/pre_tokenizer expression "\(a\+\)\+b" repeats a repeated group/);
  });
});
