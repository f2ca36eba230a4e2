/**
 * `fast-dllm inspect DIR`: what a model directory holds, read from config.json and the safetensors headers only
 * (no weights are loaded).
 */
import { open, readFile, readdir } from 'node:fs/promises';
import { join } from 'node:path';
import { readModelConfig, type ModelDescription } from '@fast-dllm/model';
import { UsageError } from './errors.js';

export interface TensorSummary {
  name: string;
  dtype: string;
  shape: number[];
}

export interface Inspection extends Pick<
  ModelDescription,
  'architecture' | 'hiddenSize' | 'numLayers' | 'numHeads' | 'numKvHeads' | 'headDim' | 'intermediateSize' | 'vocabSize' | 'maxPositions'
> {
  dir: string;
  modelType: string;
  parameters: number;
  /** Tensor count per dtype. */
  dtypes: Record<string, number>;
  /** Bytes of weights on disk. */
  weightBytes: number;
  /**
   * Bytes each engine (and weight storage) needs for weights plus a full-length K/V cache (f32 K/V for CPU, bf16
   * on CUDA); `storage` says which tensors are kept how; `fitsWasm32` (wasm only) whether the weights and a
   * 64-token workspace fit wasm32's 4 GiB, the check the WASM engine makes before loading.
   */
  memory: Record<'reference' | 'wasm' | 'wasm-bf16' | 'wasm-int8' | 'cuda', MemoryEstimate>;
  special: Record<string, number | undefined>;
  /** Text of each special token id, from the tokenizer files when present. */
  specialText: Record<string, string | undefined>;
  files: string[];
}

export interface MemoryEstimate {
  weights: number;
  kvCache: number;
  total: number;
  storage: string;
  fitsWasm32?: boolean;
}

/** What each WASM weight dtype stores how (engine-wasm weightBytes). */
const WASM_STORAGE = {
  f32: 'f32 (a tied embedding is read from the LM head)',
  bf16: 'linear weights and LM head bf16; embedding, norms, biases f32',
  int8: 'linear weights and LM head int8 (7-bit values, one f32 scale per 32); embedding (tied: read from the int8 LM head), norms, biases f32',
} as const;

const DTYPE_BYTES: Record<string, number> = { F32: 4, F16: 2, BF16: 2, F64: 8, I64: 8, I32: 4, I16: 2, I8: 1, U8: 1, BOOL: 1 };

async function readJson(path: string, what: string): Promise<Record<string, unknown>> {
  let text: string;
  try {
    text = await readFile(path, 'utf8');
  } catch {
    throw new UsageError(`${what} not found at ${path}; pass a Hugging Face model directory (see 'fast-dllm pull')`);
  }
  try {
    return JSON.parse(text) as Record<string, unknown>;
  } catch (e) {
    throw new UsageError(`${path} is not valid JSON: ${(e as Error).message}`);
  }
}

/** Reads one safetensors header: u64 little-endian length, then that many bytes of JSON. */
export async function readSafetensorsHeader(path: string): Promise<TensorSummary[]> {
  const fh = await open(path, 'r');
  try {
    const lenBuf = Buffer.alloc(8); // (1,) u64 LE header length
    const { bytesRead } = await fh.read(lenBuf, 0, 8, 0);
    const len = bytesRead === 8 ? Number(lenBuf.readBigUInt64LE(0)) : -1;
    const size = (await fh.stat()).size;
    if (len <= 0 || len > 100_000_000 || 8 + len > size) throw new UsageError(`${path}: not a safetensors file (bad header length)`);
    const hdr = Buffer.alloc(len); // (len,) u8 JSON text
    await fh.read(hdr, 0, len, 8);
    let json: Record<string, { dtype?: string; shape?: number[] }>;
    try {
      json = JSON.parse(hdr.toString('utf8')) as typeof json;
    } catch {
      throw new UsageError(`${path}: not a safetensors file (header is not JSON)`);
    }
    return Object.entries(json)
      .filter(([k]) => k !== '__metadata__')
      .map(([name, t]) => ({ name, dtype: String(t.dtype), shape: Array.isArray(t.shape) ? t.shape : [] }));
  } finally {
    await fh.close();
  }
}

export async function inspectModel(dir: string): Promise<Inspection> {
  const cfgPath = join(dir, 'config.json');
  const cfg = await readJson(cfgPath, 'config.json');
  // The model package's normalisation, so inspect reports exactly what the engines will use.
  let d: ModelDescription;
  try {
    d = await readModelConfig(dir);
  } catch (e) {
    throw new UsageError(`unusable model directory ${dir}: ${(e as Error).message.split('\n')[0]}`);
  }
  const modelType = String(cfg.model_type ?? '');
  const { architecture, hiddenSize, numLayers, numHeads, numKvHeads, headDim, intermediateSize, vocabSize, maxPositions } = d;

  let names: string[];
  try {
    names = await readdir(dir);
  } catch {
    throw new UsageError(`cannot read model directory ${dir}`);
  }
  const shards = names.filter((n) => n.endsWith('.safetensors')).sort();
  if (shards.length === 0) throw new UsageError(`${dir}: no .safetensors weights found`);
  const dtypes: Record<string, number> = {};
  let parameters = 0;
  let weightBytes = 0;
  for (const s of shards) {
    for (const t of await readSafetensorsHeader(join(dir, s))) {
      const n = t.shape.reduce((a, b) => a * b, 1);
      parameters += n;
      weightBytes += n * (DTYPE_BYTES[t.dtype] ?? 0);
      dtypes[t.dtype] = (dtypes[t.dtype] ?? 0) + 1;
    }
  }
  // K and V for every layer and position of a full-length canvas.
  const kvElems = 2 * numLayers * numKvHeads * headDim * maxPositions;
  const mem = (weights: number, kvBytes: number, storage: string, fitsWasm32?: boolean): MemoryEstimate => {
    const kvCache = kvElems * kvBytes;
    return { weights, kvCache, total: weights + kvCache, storage, ...(fitsWasm32 === undefined ? {} : { fitsWasm32 }) };
  };
  // The WASM engine's own accounting (packed panels, int8 blocks, what stays f32), imported lazily like the
  // engines themselves so that an unbuilt engine package does not stop inspect.
  const wasm = await import('@fast-dllm/engine-wasm/core').catch(() => null);
  const wasmMem = (dtype: keyof typeof WASM_STORAGE, perParam: number): MemoryEstimate => {
    if (!wasm) return mem(parameters * perParam, 4, `${WASM_STORAGE[dtype]} (estimate: @fast-dllm/engine-wasm is not built)`);
    const weights = wasm.weightBytes(d, dtype);
    return mem(weights, 4, WASM_STORAGE[dtype], weights + wasm.workspaceBytes(d, Math.min(maxPositions, 64), 1, dtype) <= wasm.WASM32_MAX_BYTES);
  };

  const special: Record<string, number | undefined> = {
    mask: d.special.mask, eos: d.special.eos, endOfTurn: d.special.endOfTurn, bos: d.special.bos, pad: d.special.pad,
  };
  const specialText: Record<string, string | undefined> = {};
  try {
    const tc = JSON.parse(await readFile(join(dir, 'tokenizer_config.json'), 'utf8')) as {
      added_tokens_decoder?: Record<string, { content?: string }>;
    };
    for (const [k, id] of Object.entries(special)) {
      if (id !== undefined) specialText[k] = tc.added_tokens_decoder?.[String(id)]?.content;
    }
  } catch {
    // No tokenizer_config.json: ids only.
  }
  return {
    dir, architecture, modelType, hiddenSize, numLayers, numHeads, numKvHeads, headDim, intermediateSize, vocabSize,
    maxPositions, parameters, dtypes, weightBytes,
    memory: {
      reference: mem(parameters * 4, 4, 'f32'),
      wasm: wasmMem('f32', 4), 'wasm-bf16': wasmMem('bf16', 2), 'wasm-int8': wasmMem('int8', 1.125),
      cuda: mem(parameters * 2, 2, 'bf16 (its default; norms and biases f32, counted here at 2 bytes)'),
    },
    special, specialText, files: names.sort(),
  };
}

export function formatBytes(n: number): string {
  const units = ['B', 'KiB', 'MiB', 'GiB', 'TiB'];
  let i = 0;
  while (n >= 1024 && i < units.length - 1) {
    n /= 1024;
    i++;
  }
  return `${n.toFixed(i === 0 ? 0 : 2)} ${units[i]}`;
}

export function formatInspection(r: Inspection): string {
  const params = r.parameters >= 1e9 ? `${(r.parameters / 1e9).toFixed(2)}B` : r.parameters >= 1e6 ? `${(r.parameters / 1e6).toFixed(2)}M` : `${r.parameters}`;
  const lines = [
    `model:         ${r.dir}`,
    `architecture:  ${r.architecture} (model_type ${r.modelType})`,
    `layers:        ${r.numLayers}, d_model ${r.hiddenSize}, heads ${r.numHeads} (kv ${r.numKvHeads}, head dim ${r.headDim}), ffn ${r.intermediateSize}`,
    `vocab:         ${r.vocabSize}, max positions ${r.maxPositions}`,
    `parameters:    ${params} (${r.parameters})`,
    `dtypes:        ${Object.entries(r.dtypes).map(([d, c]) => `${d} x${c}`).join(', ')}; ${formatBytes(r.weightBytes)} on disk`,
    'memory (weights + K/V cache at max positions):',
  ];
  for (const [e, m] of Object.entries(r.memory)) {
    const fit = m.fitsWasm32 === false ? '; does not fit wasm32 (4 GiB)' : '';
    lines.push(`  ${e.padEnd(10)} ${formatBytes(m.total)} (${formatBytes(m.weights)} + ${formatBytes(m.kvCache)}): ${m.storage}${fit}`);
  }
  lines.push('special tokens:');
  for (const [k, id] of Object.entries(r.special)) {
    if (id !== undefined) lines.push(`  ${k.padEnd(10)} ${id}${r.specialText[k] ? ` ${JSON.stringify(r.specialText[k])}` : ''}`);
  }
  return lines.join('\n');
}
