import { describe, expect, it } from 'vitest';
import { existsSync, readdirSync } from 'node:fs';
import { join } from 'node:path';
import { fileURLToPath } from 'node:url';
import { ModelFormatError, bf16ToF32, f32ToBf16, loadTokenizer, modelSummary, normaliseConfig, openModel, tensorNames } from '../src/index.js';
import { f32Tensor, tinyDreamConfig, tinyLladaConfig, writeTinyModel } from './helpers.js';

describe('tensorNames', () => {
  it('LLaDA names, untied head', () => {
    const n = tensorNames(normaliseConfig(tinyLladaConfig()));
    expect(n.embed).toBe('model.transformer.wte.weight');
    expect(n.lmHead).toBe('model.transformer.ff_out.weight');
    expect(n.finalNorm).toBe('model.transformer.ln_f.weight');
    expect(n.layers).toHaveLength(2);
    expect(n.layers[1]).toEqual({
      attnNorm: 'model.transformer.blocks.1.attn_norm.weight', q: 'model.transformer.blocks.1.q_proj.weight',
      k: 'model.transformer.blocks.1.k_proj.weight', v: 'model.transformer.blocks.1.v_proj.weight',
      o: 'model.transformer.blocks.1.attn_out.weight', ffnNorm: 'model.transformer.blocks.1.ff_norm.weight',
      gate: 'model.transformer.blocks.1.ff_proj.weight', up: 'model.transformer.blocks.1.up_proj.weight',
      down: 'model.transformer.blocks.1.ff_out.weight',
    });
  });

  it('LLaDA tied head is the embedding', () => {
    expect(tensorNames(normaliseConfig(tinyLladaConfig({ weight_tying: true }))).lmHead).toBe('model.transformer.wte.weight');
  });

  it('Dream names with q/k/v biases', () => {
    const n = tensorNames(normaliseConfig(tinyDreamConfig({ tie_word_embeddings: false })));
    expect(n.lmHead).toBe('lm_head.weight');
    expect(n.layers[0].qBias).toBe('model.layers.0.self_attn.q_proj.bias');
    expect(n.layers[0].o).toBe('model.layers.0.self_attn.o_proj.weight');
    expect(n.layers[0].down).toBe('model.layers.0.mlp.down_proj.weight');
    expect(n.layers[0].ffnNorm).toBe('model.layers.0.post_attention_layernorm.weight');
  });
});

describe('openModel', () => {
  it('opens a tiny LLaDA model and reads a weight', async () => {
    const dir = await writeTinyModel(tinyLladaConfig());
    const m = await openModel(dir);
    expect(m.description.numLayers).toBe(2);
    expect(m.archive.tensors.get(m.names.layers[0].q)!.shape).toEqual([8, 8]);
    expect((await m.archive.readF32(m.names.finalNorm)).slice(0, 3)).toEqual(new Float32Array([0, 0.5, 1]));
    const s = modelSummary(m, 10);
    // embed 32·8 + head 32·8 + ln_f 8 + 2 layers × (2·8 norms + 4·64 attn + 3·128 mlp)
    expect(s.parameters).toBe(256 + 256 + 8 + 2 * (16 + 256 + 384));
    expect(s.dtypes).toEqual({ F32: s.parameters });
    expect(s.bytesOnDisk).toBe(4 * s.parameters);
    expect(s.weightBytesBf16).toBe(2 * s.parameters);
    expect(s.kvCacheBytesF32).toBe(2 * 2 * 10 * 8 * 4); // layers × K,V × positions × kvHeads·headDim × 4 bytes
    await m.archive.close();
  });

  it('opens a tiny tied Dream model with GQA', async () => {
    const dir = await writeTinyModel(tinyDreamConfig());
    const m = await openModel(dir);
    expect(m.names.lmHead).toBe(m.names.embed);
    expect(m.archive.tensors.get(m.names.layers[0].k)!.shape).toEqual([4, 8]);
    expect(m.archive.tensors.get(m.names.layers[0].kBias!)!.shape).toEqual([4]);
    await m.archive.close();
  });

  it('missing tensors are all reported by name', async () => {
    const dir = await writeTinyModel(tinyLladaConfig(), (ts) => ts.filter((t) => !t.name.endsWith('up_proj.weight')));
    await expect(openModel(dir)).rejects.toThrow(
      /missing tensor\(s\): model.transformer.blocks.0.up_proj.weight, model.transformer.blocks.1.up_proj.weight/,
    );
  });

  it('unexpected shape', async () => {
    const dir = await writeTinyModel(tinyLladaConfig(), (ts) =>
      ts.map((t) => (t.name === 'model.transformer.blocks.0.k_proj.weight' ? f32Tensor(t.name, [4, 8]) : t)),
    );
    await expect(openModel(dir)).rejects.toThrow(/unexpected shape\(s\): model.transformer.blocks.0.k_proj.weight has shape \[4, 8\], expected \[8, 8\]/);
  });

  it('extra tensor', async () => {
    const dir = await writeTinyModel(tinyLladaConfig(), (ts) => [...ts, f32Tensor('model.transformer.blocks.0.q_proj.bias', [8])]);
    const e = await openModel(dir).catch((x) => x);
    expect(e).toBeInstanceOf(ModelFormatError);
    expect(e.message).toMatch(/extra tensor\(s\) the llada config does not use: model.transformer.blocks.0.q_proj.bias/);
  });

  it('several problems in one message', async () => {
    const dir = await writeTinyModel(tinyDreamConfig(), (ts) => [...ts.filter((t) => t.name !== 'model.norm.weight'), f32Tensor('lm_head.weight', [40, 8])]);
    await expect(openModel(dir)).rejects.toThrow(/missing tensor\(s\): model.norm.weight; extra tensor\(s\).*lm_head.weight/);
  });

  it('missing config.json', async () => {
    const dir = await writeTinyModel(tinyLladaConfig());
    const { rm } = await import('node:fs/promises');
    await rm(join(dir, 'config.json'));
    await expect(openModel(dir)).rejects.toThrow(/config.json is missing/);
  });
});

// Fixture models committed by the fixtures helper (test/fixtures/models/*): each must open cleanly.
const fixtures = join(fileURLToPath(new URL('.', import.meta.url)), '../../../test/fixtures/models');
const fixtureDirs = existsSync(fixtures) ? readdirSync(fixtures).filter((d) => existsSync(join(fixtures, d, 'config.json'))) : [];
describe.skipIf(fixtureDirs.length === 0)('fixture models', () => {
  it.each(fixtureDirs)('%s opens', async (d) => {
    const m = await openModel(join(fixtures, d));
    expect(m.archive.tensors.size).toBeGreaterThan(0);
    await m.archive.close();
  });
});

const has = (...ds: string[]) => ds.every((d) => fixtureDirs.includes(d));
describe.skipIf(!has('llada-tiny-f32', 'llada-tiny-bf16', 'llada-tiny-sharded'))('fixture models agree across formats', () => {
  it('sharded = single file, and bf16 = round-to-nearest-even of f32, tensor by tensor', async () => {
    const f32 = await openModel(join(fixtures, 'llada-tiny-f32'));
    const sh = await openModel(join(fixtures, 'llada-tiny-sharded'));
    const bf = await openModel(join(fixtures, 'llada-tiny-bf16'));
    expect(new Set([...sh.archive.tensors.values()].map((t) => t.file)).size).toBeGreaterThan(1);
    for (const name of f32.archive.tensors.keys()) {
      const a = await f32.archive.readF32(name);
      const s = await sh.archive.readF32(name);
      const b = await bf.archive.readF32(name);
      let bad = 0;
      for (let i = 0; i < a.length; i++) if (s[i] !== a[i] || b[i] !== bf16ToF32(f32ToBf16(a[i]))) bad++;
      expect(s.length, name).toBe(a.length);
      expect(bad, `${name}: ${bad} values differ`).toBe(0);
    }
    await Promise.all([f32, sh, bf].map((m) => m.archive.close()));
  });

  it('tokenizer and chat template of the LLaDA fixture', async () => {
    const dir = join(fixtures, 'llada-tiny-f32');
    const m = await openModel(dir);
    const tok = await loadTokenizer(dir, { modelVocabSize: m.description.vocabSize });
    const prompt = tok.applyChatTemplate([{ role: 'user', content: 'hi' }], { addGenerationPrompt: true });
    expect(prompt.endsWith('<|start_header_id|>assistant<|end_header_id|>\n\n')).toBe(true);
    const ids = tok.encode(prompt);
    expect(ids[0]).toBe(m.description.special.bos);
    expect(ids.every((i) => Number.isInteger(i) && i >= 0 && i < m.description.vocabSize)).toBe(true);
    expect(tok.decode(ids)).toBe(prompt);
    await m.archive.close();
  });
});
