/**
 * Loading a model in the browser, in the order that lets a model be refused before its weights are fetched:
 *   1. config.json (+ generation_config.json, tokenizer files) → the model description;
 *   2. the shard index when there is one (its total_size is the download size);
 *   3. the engine's memory need from the description (engine-wasm's weightBytes + one 64-token sequence) against
 *      wasm32's 4 GiB: too large → refused here, nothing downloaded;
 *   4. each safetensors header (ranged reads) checked against the config: names, shapes, file lengths;
 *   5. the weights: downloaded with byte progress (URL) or read from the picked files, copied into the engine.
 * Runs in the engine worker (no DOM).
 */
import {
  ModelFormatError, SafetensorsArchive, chatTemplateVariables, checkTensors, createTokenizer, normaliseConfig, parseShardIndex, tensorNames,
  type ByteSource, type ModelDescription, type TextTokenizer,
} from '@fast-dllm/model';
import { WASM32_MAX_BYTES, scratchBytes, sequenceCacheBytes, weightBytes } from '@fast-dllm/engine-wasm/core';
import type { ModelDirectory } from './directory.js';

type Json = Record<string, unknown>;

export interface ModelPlan {
  description: ModelDescription;
  config: Json;
  generationConfig?: Json;
  tokenizerConfig: Json;
  /** What normaliseConfig needs besides the JSON files above: an A2D checkpoint's folder name and tokenizer.json (DESIGN §15). */
  configExtras: { path: string; tokenizerJson?: Json };
  tokenizer: TextTokenizer;
  /** Safetensors files to fetch, in order, with their sizes in bytes. */
  weightFiles: { name: string; bytes: number }[];
  fileBytes: number;
  parameters: number;
  /** Bytes of engine memory the weights take as stored (weightBytes). */
  engineBytes: number;
  /** What the model knows, when its fast_dllm.json declares a domain (the bundled models: two-digit addition). */
  knows?: string;
}

export type Progress = (p: { phase: 'reading config' | 'checking weights' | 'downloading' | 'copying weights into the engine'; done: number; total: number; unit: 'bytes' | 'files'; file?: string }) => void;

const GiB = 2 ** 30;
export const formatBytes = (n: number): string =>
  n >= GiB ? `${(n / GiB).toFixed(2)} GiB` : n >= 2 ** 20 ? `${(n / 2 ** 20).toFixed(1)} MiB` : n >= 1024 ? `${(n / 1024).toFixed(1)} KiB` : `${n} B`;

async function json(dir: ModelDirectory, name: string, required: boolean): Promise<Json | undefined> {
  const text = await dir.text(name);
  if (text === undefined) {
    if (!required) return undefined;
    throw new ModelFormatError(`${name} is missing; a model folder needs config.json, tokenizer.json and its .safetensors weights`, { file: dir.where(name) });
  }
  try {
    const v = JSON.parse(text) as unknown;
    if (typeof v !== 'object' || v === null || Array.isArray(v)) throw new Error('not a JSON object');
    return v as Json;
  } catch (e) {
    throw new ModelFormatError(`${name} is not valid JSON (${(e as Error).message}); re-download it`, { file: dir.where(name) });
  }
}

/** Canvas length of the sequence the load check counts (WasmEngine.load's own check uses the same). */
export const CHECK_LENGTH = 64;

/** Memory the engine needs for this model: the sum engine-wasm's WasmEngine.load checks (weights + one 64-token sequence). */
export function engineNeed(d: ModelDescription, dtype: 'f32' | 'bf16', threads: number): number {
  const L = Math.min(d.maxPositions, CHECK_LENGTH);
  return weightBytes(d, dtype) + sequenceCacheBytes(d, L) + scratchBytes(d, L, L, threads);
}

/** Steps 1–4: everything but the weights. Throws (a clear message) on a model that is broken or too large. */
export async function planModel(dir: ModelDirectory, opts: { weightDType: 'f32' | 'bf16'; threads: number }, progress: Progress): Promise<ModelPlan> {
  progress({ phase: 'reading config', done: 0, total: 4, unit: 'files' });
  const config = (await json(dir, 'config.json', true))!;
  const generationConfig = await json(dir, 'generation_config.json', false);
  const tokenizerConfig = (await json(dir, 'tokenizer_config.json', false)) ?? {};
  // DESIGN §15: an A2D checkpoint's variant comes from its folder name and its <|mask|> from tokenizer.json.
  const a2d = typeof config.model_type === 'string' && config.model_type.toLowerCase().startsWith('a2d-');
  const configExtras = { path: dir.label, ...(a2d ? { tokenizerJson: await json(dir, 'tokenizer.json', false) } : {}) };
  const description = normaliseConfig(config, { file: dir.where('config.json'), generationConfig, tokenizerConfig, ...configExtras });
  progress({ phase: 'reading config', done: 3, total: 4, unit: 'files' });

  const index = await json(dir, 'model.safetensors.index.json', false);
  const shardNames = index ? [...new Set(parseShardIndex(index, dir.where('model.safetensors.index.json')).values())] : ['model.safetensors'];
  const totalSize = Number((index?.metadata as Json | undefined)?.total_size) || undefined;

  const need = engineNeed(description, opts.weightDType, opts.threads);
  if (need > WASM32_MAX_BYTES) {
    const bf16 = engineNeed(description, 'bf16', opts.threads);
    const hint = opts.weightDType === 'f32' && bf16 <= WASM32_MAX_BYTES
      ? ` With bf16 weights it needs ${formatBytes(bf16)}: choose bf16 under Engine and load it again.`
      : ' Use `fast-dllm serve` with the CUDA engine, or a smaller model.';
    throw new Error(`${dir.label} is too large for the browser: its ${opts.weightDType} weights and one ${Math.min(description.maxPositions, CHECK_LENGTH)}-token sequence need ${formatBytes(need)} of WebAssembly memory, ` +
      `and wasm32 addresses at most 4 GiB. Nothing was downloaded${totalSize ? ` (the weights are ${formatBytes(totalSize)})` : ''}.${hint}`);
  }

  // The tokenizer: chat needs its template and its vocabulary.
  const tokText = await dir.text('tokenizer.json');
  if (tokText === undefined) throw new ModelFormatError('tokenizer.json is missing; the chat needs the tokenizer next to config.json', { file: dir.where('tokenizer.json') });
  let tokJson: unknown;
  try {
    tokJson = JSON.parse(tokText);
  } catch (e) {
    throw new ModelFormatError(`tokenizer.json is not valid JSON (${(e as Error).message}); re-download it`, { file: dir.where('tokenizer.json') });
  }
  const templateVariables = chatTemplateVariables(config.model_type);
  const tokenizer = createTokenizer({ tokenizer: tokJson, tokenizerConfig, modelVocabSize: description.vocabSize, dir: dir.label, ...(templateVariables ? { templateVariables } : {}) });
  progress({ phase: 'reading config', done: 4, total: 4, unit: 'files' });

  // Headers only (ranged reads): names, shapes and lengths checked before any weight is fetched.
  progress({ phase: 'checking weights', done: 0, total: shardNames.length, unit: 'files' });
  const probes = new Map<string, ByteSource>();
  for (const name of shardNames) {
    const src = await dir.probe(name);
    if (!src) {
      throw new ModelFormatError(index ? `shard ${name} named in model.safetensors.index.json is missing` : 'model.safetensors is missing (and there is no model.safetensors.index.json)',
        { file: dir.where(name) });
    }
    probes.set(name, src);
    progress({ phase: 'checking weights', done: probes.size, total: shardNames.length, unit: 'files' });
  }
  const byPlace = new Map(shardNames.map((n) => [dir.where(n), probes.get(n)!])); // errors name the file's full place
  const archive = await SafetensorsArchive.openFiles([...byPlace.keys()], async (f) => byPlace.get(f)!);
  try {
    checkTensors(description, archive, tensorNames(description), dir.label);
  } finally {
    await archive.close();
  }
  let parameters = 0;
  for (const t of archive.tensors.values()) parameters += t.shape.reduce((a, b) => a * b, 1);
  const weightFiles = shardNames.map((name) => ({ name, bytes: probes.get(name)!.size }));
  // fast_dllm.json (packages/cli/src/scope.ts): a model trained on one task says which; optional, and only a hint.
  const scope = await json(dir, 'fast_dllm.json', false).catch(() => undefined);
  const summary = (scope?.domain as Json | undefined)?.summary;
  return {
    ...(typeof summary === 'string' && summary.trim() ? { knows: summary.trim() } : {}),
    description, config, generationConfig, tokenizerConfig, configExtras, tokenizer, weightFiles,
    fileBytes: weightFiles.reduce((a, f) => a + f.bytes, 0), parameters, engineBytes: weightBytes(description, opts.weightDType),
  };
}

/** Step 5a: every weight file as a Blob (downloaded with byte progress, or the picked File itself). */
export async function fetchWeights(dir: ModelDirectory, plan: ModelPlan, progress: Progress, signal?: AbortSignal): Promise<Map<string, Blob>> {
  const out = new Map<string, Blob>();
  let done = 0;
  for (const f of plan.weightFiles) {
    progress({ phase: 'downloading', done, total: plan.fileBytes, unit: 'bytes', file: f.name });
    const blob = await dir.whole(f.name, (n) => {
      done += n;
      progress({ phase: 'downloading', done, total: plan.fileBytes, unit: 'bytes', file: f.name });
    }, signal);
    if (blob.size !== f.bytes) {
      throw new ModelFormatError(`got ${blob.size} bytes but the file had ${f.bytes} when its header was read; the file changed or the download broke, load it again`, { file: dir.where(f.name) });
    }
    out.set(f.name, blob);
  }
  return out;
}

/** Step 5b helper: ByteSources over the blobs that count the bytes the engine reads (the copy into its memory). */
export function countingSources(blobs: Map<string, Blob>, progress: Progress): Map<string, ByteSource> {
  const total = [...blobs.values()].reduce((a, b) => a + b.size, 0);
  let done = 0;
  const out = new Map<string, ByteSource>();
  for (const [name, blob] of blobs) {
    out.set(name, {
      size: blob.size,
      read: async (offset, length) => {
        if (offset < 0 || offset + length > blob.size) throw new RangeError(`read [${offset}, ${offset + length}) past end ${blob.size} of ${name}`);
        const bytes = new Uint8Array(await blob.slice(offset, offset + length).arrayBuffer());
        // Header reads are small; the tensors' bytes make the progress.
        done += length;
        progress({ phase: 'copying weights into the engine', done: Math.min(done, total), total, unit: 'bytes', file: name });
        return bytes;
      },
    });
  }
  return out;
}
