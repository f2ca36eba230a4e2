/**
 * `fast-dllm inspect DIR`: what a model directory holds, read from config.json and the safetensors headers only
 * (no weights are loaded).
 */
import { open, readFile, readdir } from 'node:fs/promises';
import { join } from 'node:path';
import { readModelConfig, type ModelDescription } from '@fast-dllm/model';
import { UsageError } from './errors.js';
import { checkModelDir } from './modeldir.js';
import type { MemoryEstimate } from '@fast-dllm/scheduler';
import { AUTO_ORDER, loadProvider } from './engines.js';

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
   * Bytes each engine needs for its weights and the K/V cache of one sequence of `canvas` tokens, in the engine's
   * own storage, answered by the engine package itself (or why it cannot say); `<engine> int8` rows for the engines
   * that take int8 weights. `note`: what the storage keeps wider, whether it fits (when the engine says).
   */
  memory: Record<string, { weights: number; kvCache: number; total: number; weightDType: string; cacheDType: string; note?: string } | { error: string }>;
  /** Canvas length the memory is given for. */
  canvas: number;
  special: Record<string, number | undefined>;
  /** Block-diffusion models (DESIGN §8): the block size of their block-causal attention; null: bidirectional. */
  blockSize: number | null;
  /**
   * Mixture-of-experts models (DESIGN §13): experts per mixture layer, experts per token, their widths, how many
   * layers are mixtures, and the parameters one token's forward reads (the others' experts left out); null: dense.
   */
  moe: {
    experts: number; perToken: number; expertSize: number; sharedExpertSize: number | null; moeLayers: number; activeParameters: number;
    /** How a row picks its experts (DESIGN §13, §13.1), in words. */
    routing: string;
  } | null;
  /** dllm's A2D checkpoints (DESIGN §15): the variant and block size chosen, and where each choice came from. */
  a2d: ModelDescription['a2d'] | null;
  /** Generated ids that end an answer. */
  stopIds: number[];
  /** Text of each special token id, from the tokenizer files when present. */
  specialText: Record<string, string | undefined>;
  files: string[];
}

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

export async function inspectModel(dir: string, opts: { canvas?: number } = {}): Promise<Inspection> {
  await checkModelDir(dir, 'inspect');
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
  const canvas = opts.canvas ?? Math.min(maxPositions, 4096);
  if (canvas > maxPositions) throw new UsageError(`--canvas ${canvas} exceeds the model's ${maxPositions} positions`);
  const memory: Inspection['memory'] = {};
  for (const name of AUTO_ORDER.slice().reverse()) {
    const p = await loadProvider(name);
    if (typeof p === 'string') {
      memory[name] = { error: p };
      continue;
    }
    const entry = (m: MemoryEstimate) => ({
      weights: m.weightBytes, kvCache: m.sequenceBytes, total: m.weightBytes + m.sequenceBytes, weightDType: m.weightDType, cacheDType: m.cacheDType,
      ...(m.note ? { note: m.note } : {}),
    });
    try {
      memory[name] = entry(await p.estimateMemory(dir, { maxLength: canvas }));
    } catch (e) {
      memory[name] = { error: (e as Error).message.split('\n')[0] };
    }
    // int8 weights (CPU engines): listed for the engines that take them; an engine that refuses int8 is left out.
    const int8 = await p.estimateMemory(dir, { maxLength: canvas, weightDType: 'int8' }).catch(() => null);
    if (int8 && int8.weightDType === 'int8') memory[`${name} int8`] = entry(int8);
  }

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
    memory, canvas,
    special, blockSize: d.blockSize ?? null, a2d: d.a2d ?? null, stopIds: d.stopIds, specialText, files: names.sort(),
    moe: d.moe ? moeSummary(d, parameters) : null,
  };
}

function moeSummary(d: ModelDescription, parameters: number): NonNullable<Inspection['moe']> {
  const m = d.moe!;
  const moeLayers = m.moeLayers.filter(Boolean).length;
  // A token runs topK of the numExperts experts of each mixture layer: the rest of them is not read for it.
  const idle = moeLayers * (m.numExperts - m.topK) * 3 * d.hiddenSize * m.expertSize;
  const sr = m.sigmoidRouting;
  const routing = sr
    ? `sigmoid scores${m.expertBias ? ' (expert bias for the choice only)' : ''}, top ${m.topK} within the best ${sr.topGroups} of ${sr.groups} groups, weights normalised × ${sr.scale}`
    : `softmax${m.expertBias ? ' + expert bias' : ''}, top ${m.topK}${m.normTopK ? ', weights normalised' : ''}`;
  return {
    experts: m.numExperts, perToken: m.topK, expertSize: m.expertSize, sharedExpertSize: m.sharedExpertSize ?? null, moeLayers,
    activeParameters: parameters - idle, routing,
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
  // Rounded for reading, then the exact count and what was counted (it printed "860544 (860544)").
  const rounded = r.parameters >= 1e9 ? `${(r.parameters / 1e9).toFixed(2)} B` : r.parameters >= 1e5 ? `${(r.parameters / 1e6).toFixed(2)} M` : `${r.parameters}`;
  const lines = [
    `model:         ${r.dir}`,
    `architecture:  ${r.architecture} (model_type ${r.modelType})`,
    `layers:        ${r.numLayers}, d_model ${r.hiddenSize}, heads ${r.numHeads} (kv ${r.numKvHeads}, head dim ${r.headDim}), ffn ${r.intermediateSize}`,
    `vocab:         ${r.vocabSize}, max positions ${r.maxPositions}`,
    ...(r.moe ? [`experts:       ${r.moe.experts} per mixture layer, ${r.moe.perToken} per token (expert ffn ${r.moe.expertSize}` +
      `${r.moe.sharedExpertSize ? `, shared expert ${r.moe.sharedExpertSize}` : ''}); ${r.moe.moeLayers} of ${r.numLayers} layers are mixtures; ` +
      `${r.moe.activeParameters >= 1e9 ? `${(r.moe.activeParameters / 1e9).toFixed(2)}B` : `${(r.moe.activeParameters / 1e6).toFixed(2)}M`} parameters read per token`,
    `routing:       ${r.moe.routing}`] : []),
    `attention:     ${r.blockSize === null ? 'bidirectional (masked diffusion)' : `block-causal, blocks of ${r.blockSize} (block diffusion)`}; stop ids ${r.stopIds.join(', ')}`,
    ...(r.a2d ? [`a2d:           ${r.a2d.base} layers, ${r.a2d.variant.toUpperCase()} (from ${r.a2d.variantSource})` +
      `${r.a2d.blockSizeSource ? `, block size ${r.blockSize} (from ${r.a2d.blockSizeSource})` : ''}`] : []),
    `parameters:    ${rounded} (${r.parameters} values in the checkpoint's tensors)`,
    `dtypes:        ${Object.entries(r.dtypes).map(([d, c]) => `${d} x${c}`).join(', ')}; ${formatBytes(r.weightBytes)} on disk`,
    `memory (weights + K/V cache of one ${r.canvas}-token sequence, as each engine stores them):`,
  ];
  for (const [e, m] of Object.entries(r.memory)) {
    if ('error' in m) lines.push(`  ${e.padEnd(14)} (cannot say: ${m.error})`);
    else lines.push(`  ${e.padEnd(14)} ${formatBytes(m.total)} (${m.weightDType} weights ${formatBytes(m.weights)} + ${m.cacheDType} K/V ${formatBytes(m.kvCache)})${m.note ? `: ${m.note}` : ''}`);
  }
  lines.push('special tokens:');
  for (const [k, id] of Object.entries(r.special)) {
    if (id !== undefined) lines.push(`  ${k.padEnd(10)} ${id}${r.specialText[k] ? ` ${JSON.stringify(r.specialText[k])}` : ''}`);
  }
  return lines.join('\n');
}
