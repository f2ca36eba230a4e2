/** Model folders the tests make from the bundled model: sharded, truncated, with a config that is not JSON. */
import { copyFile, mkdir, mkdtemp, readFile, rm, writeFile } from 'node:fs/promises';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { defaultModelDir } from '@fast-dllm/default-model';
import { SafetensorsArchive, encodeSafetensors, type TensorToWrite } from '@fast-dllm/model';

const SMALL_FILES = ['config.json', 'generation_config.json', 'tokenizer.json', 'tokenizer_config.json'];

const made: string[] = [];

/** Removes every folder the functions below made (call in afterAll). */
export async function removeFixtures(): Promise<void> {
  await Promise.all(made.splice(0).map((d) => rm(d, { recursive: true, force: true })));
}

/** A fresh folder `<tmp>/<name>` holding the bundled model's small files. */
async function folderWithSmallFiles(name: string): Promise<string> {
  const root = await mkdtemp(join(tmpdir(), 'fast-dllm-web-'));
  made.push(root);
  const dir = join(root, name);
  await mkdir(dir);
  for (const f of SMALL_FILES) await copyFile(join(defaultModelDir, f), join(dir, f));
  return dir;
}

/** The bundled model split into two shards plus model.safetensors.index.json. */
export async function shardedModel(): Promise<string> {
  const dir = await folderWithSmallFiles('sharded-model');
  const archive = await SafetensorsArchive.open(defaultModelDir);
  const tensors: TensorToWrite[] = [];
  for (const t of archive.tensors.values()) tensors.push({ name: t.name, dtype: t.dtype, shape: t.shape, data: await archive.readBytes(t.name) });
  await archive.close();
  const half = Math.ceil(tensors.length / 2);
  const shards = [tensors.slice(0, half), tensors.slice(half)];
  const weightMap: Record<string, string> = {};
  let total = 0;
  for (let i = 0; i < shards.length; i++) {
    const name = `model-0000${i + 1}-of-0000${shards.length}.safetensors`;
    await writeFile(join(dir, name), encodeSafetensors(shards[i]));
    for (const t of shards[i]) {
      weightMap[t.name] = name;
      total += t.data.length;
    }
  }
  await writeFile(join(dir, 'model.safetensors.index.json'), JSON.stringify({ metadata: { total_size: total }, weight_map: weightMap }));
  return dir;
}

/** The bundled model with model.safetensors cut to its first `bytes` bytes. */
export async function truncatedModel(bytes = 1_000_000): Promise<string> {
  const dir = await folderWithSmallFiles('truncated-model');
  const full = await readFile(join(defaultModelDir, 'model.safetensors'));
  await writeFile(join(dir, 'model.safetensors'), full.subarray(0, bytes));
  return dir;
}

/** The bundled model with a config.json that is not JSON. */
export async function configNotJson(): Promise<string> {
  const dir = await folderWithSmallFiles('bad-config-model');
  await copyFile(join(defaultModelDir, 'model.safetensors'), join(dir, 'model.safetensors'));
  await writeFile(join(dir, 'config.json'), '{ "model_type": "llada", oops');
  return dir;
}

/** LLaDA-8B-Instruct's shape (DESIGN §1): far beyond wasm32's 4 GiB at f32 and at bf16. */
export const LLADA_8B_CONFIG = {
  model_type: 'llada', d_model: 4096, n_layers: 32, n_heads: 32, n_kv_heads: 32, mlp_hidden_size: 12288, vocab_size: 126464,
  embedding_size: 126464, max_sequence_length: 4096, rope_theta: 500000, rms_norm_eps: 1e-5, mask_token_id: 126336, eos_token_id: 126081,
};
