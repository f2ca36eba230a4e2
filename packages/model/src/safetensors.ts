import { joinPath as join, nodeFs, nodePath } from './nodefs.js';
import { ModelFormatError } from './errors.js';
import { fileSource, type ByteSource } from './bytesource.js';
import { DTYPE_BYTES, bytesToF32, isDType } from './dtype.js';
import type { DType, TensorInfo } from './types.js';

/** Headers above this are refused: real ones are a few hundred KB, so a bigger one means a corrupt file. */
export const MAX_HEADER_BYTES = 100_000_000;

export interface ParsedHeader {
  tensors: TensorInfo[];
  metadata: Record<string, string>;
  /** Byte offset where the data region starts (8 + header length). */
  dataStart: number;
}

/**
 * Parses and validates one safetensors header from a ByteSource (no fs here, so a browser loader can reuse it).
 * `file` is the label put in errors and in TensorInfo.file.
 */
export async function parseSafetensorsHeader(src: ByteSource, file: string): Promise<ParsedHeader> {
  const bad = (msg: string, tensor?: string) =>
    new ModelFormatError(`${msg}; the file is not a valid safetensors file, re-download or re-export it`, { file, tensor });
  if (src.size < 8) throw bad(`truncated file: ${src.size} bytes, shorter than the 8-byte header length`);
  const lenBytes = await src.read(0, 8);
  const headerLen = Number(new DataView(lenBytes.buffer, lenBytes.byteOffset, 8).getBigUint64(0, true));
  if (headerLen > MAX_HEADER_BYTES) throw bad(`header length ${headerLen} exceeds the ${MAX_HEADER_BYTES}-byte limit`);
  if (headerLen > src.size - 8) throw bad(`header length ${headerLen} runs past the end of the file (${src.size} bytes)`);
  const headerText = new TextDecoder().decode(await src.read(8, headerLen));
  let header: unknown;
  try {
    header = JSON.parse(headerText);
  } catch (e) {
    throw bad(`header is not valid JSON (${(e as Error).message})`);
  }
  if (typeof header !== 'object' || header === null || Array.isArray(header)) throw bad('header JSON is not an object');
  const dataStart = 8 + headerLen;
  const dataLen = src.size - dataStart;
  let metadata: Record<string, string> = {};
  const tensors: TensorInfo[] = [];
  for (const [name, entry] of Object.entries(header as Record<string, unknown>)) {
    if (name === '__metadata__') {
      if (typeof entry !== 'object' || entry === null) throw bad('__metadata__ is not an object');
      metadata = entry as Record<string, string>;
      continue;
    }
    if (typeof entry !== 'object' || entry === null) throw bad('header entry is not an object', name);
    const { dtype, shape, data_offsets: offs } = entry as { dtype?: unknown; shape?: unknown; data_offsets?: unknown };
    if (!isDType(dtype)) throw bad(`unknown dtype ${JSON.stringify(dtype)} (supported: F32, F16, BF16)`, name);
    if (!Array.isArray(shape) || !shape.every((d) => Number.isSafeInteger(d) && d >= 0))
      throw bad(`shape ${JSON.stringify(shape)} is not a list of non-negative integers`, name);
    if (!Array.isArray(offs) || offs.length !== 2 || !offs.every((d) => Number.isSafeInteger(d) && d >= 0) || offs[0] > offs[1])
      throw bad(`data_offsets ${JSON.stringify(offs)} is not a [begin, end] pair with begin <= end`, name);
    const [begin, end] = offs as [number, number];
    if (end > dataLen) throw bad(`data_offsets [${begin}, ${end}] out of range: the data region has ${dataLen} bytes`, name);
    const expected = DTYPE_BYTES[dtype] * (shape as number[]).reduce((a, b) => a * b, 1);
    if (end - begin !== expected)
      throw bad(`byte size ${end - begin} does not match dtype ${dtype} × shape [${shape.join(', ')}] = ${expected} bytes`, name);
    tensors.push({ name, dtype, shape: shape as number[], file, byteOffset: dataStart + begin, byteLength: end - begin });
  }
  // Overlap check: sort by start, each must begin at or after the previous end (empty tensors never overlap).
  const sorted = tensors.filter((t) => t.byteLength > 0).sort((a, b) => a.byteOffset - b.byteOffset);
  for (let i = 1; i < sorted.length; i++) {
    const prev = sorted[i - 1];
    if (sorted[i].byteOffset < prev.byteOffset + prev.byteLength)
      throw bad(`data of ${sorted[i].name} overlaps data of ${prev.name}`, sorted[i].name);
  }
  return { tensors, metadata, dataStart };
}

/**
 * Validates a parsed model.safetensors.index.json and returns tensor name → shard file name (as written in the
 * index, relative to it). No fs here, so a browser loader can reuse it.
 */
export function parseShardIndex(index: unknown, file: string): Map<string, string> {
  const weightMap = (index as { weight_map?: unknown } | null)?.weight_map;
  if (typeof weightMap !== 'object' || weightMap === null || Array.isArray(weightMap))
    throw new ModelFormatError('shard index has no "weight_map" object; it must map tensor names to shard files', { file });
  const out = new Map<string, string>();
  for (const [name, shard] of Object.entries(weightMap as Record<string, unknown>)) {
    if (typeof shard !== 'string' || shard === '') throw new ModelFormatError('weight_map entry is not a file name', { file, tensor: name });
    // A shard lives next to the index (or in a folder below it): an absolute path, '..', '\\' or NUL would reach
    // files outside the model directory.
    if (/^[\\/]|^[A-Za-z]:|\\|\0/.test(shard) || shard.split('/').some((s) => s === '..' || s === '.' || s === '')) {
      throw new ModelFormatError(`weight_map names the shard '${shard}', which is not a file inside the model directory; re-download the index`, { file, tensor: name });
    }
    out.set(name, shard);
  }
  if (out.size === 0) throw new ModelFormatError('shard index has an empty "weight_map"; re-download it', { file });
  return out;
}

/**
 * The name of rows [start, end) of a stored tensor (along its first dimension): how a fused projection's parts are
 * named (LLaDA2's query_key_value holds q, k and v, DESIGN §13.1). Rows of a row-major tensor are contiguous, so the
 * archive reads a slice with one positioned read, like a tensor of its own.
 */
export function rowSliceName(name: string, start: number, end: number): string {
  return `${name}[${start}:${end}]`;
}

const ROW_SLICE = /^(.+)\[(\d+):(\d+)\]$/;

/** A row slice's stored tensor and rows, or undefined for a plain name. */
export function parseRowSlice(name: string): { base: string; start: number; end: number } | undefined {
  const m = ROW_SLICE.exec(name);
  return m ? { base: m[1], start: Number(m[2]), end: Number(m[3]) } : undefined;
}

/** The stored tensor a name reads: the name itself, or a row slice's tensor. */
export function storedTensorName(name: string): string {
  return parseRowSlice(name)?.base ?? name;
}

/** Opens a source for a file label; the Node loader uses files, tests/browsers may substitute another opener. */
export type SourceOpener = (file: string) => Promise<ByteSource>;

/**
 * A checkpoint of one or more safetensors files, read tensor by tensor with positioned reads.
 * `open` takes a .safetensors file, a model.safetensors.index.json, or a directory holding either.
 */
export class SafetensorsArchive {
  readonly tensors: Map<string, TensorInfo>;
  readonly metadata: Record<string, string>;
  private readonly sources: Map<string, ByteSource>;

  private constructor(tensors: Map<string, TensorInfo>, sources: Map<string, ByteSource>, metadata: Record<string, string>) {
    this.tensors = tensors;
    this.sources = sources;
    this.metadata = metadata;
  }

  static async open(path: string): Promise<SafetensorsArchive> {
    let st;
    try {
      st = await (await nodeFs()).stat(path);
    } catch {
      throw new ModelFormatError('no such file or directory; pass a .safetensors file, an index.json, or a model directory', { file: path });
    }
    if (st.isDirectory()) {
      const index = join(path, 'model.safetensors.index.json');
      if (await exists(index)) return SafetensorsArchive.openIndex(index);
      const single = join(path, 'model.safetensors');
      if (await exists(single)) return SafetensorsArchive.openFiles([single]);
      throw new ModelFormatError('directory has neither model.safetensors nor model.safetensors.index.json; put the weights there', { file: path });
    }
    if (path.endsWith('.json')) return SafetensorsArchive.openIndex(path);
    return SafetensorsArchive.openFiles([path]);
  }

  /** Opens and validates each file; every tensor name must be unique across them. */
  static async openFiles(files: string[], opener: SourceOpener = fileSource): Promise<SafetensorsArchive> {
    const tensors = new Map<string, TensorInfo>();
    const sources = new Map<string, ByteSource>();
    let metadata: Record<string, string> = {};
    try {
      for (const f of files) {
        const src = await opener(f);
        sources.set(f, src);
        const h = await parseSafetensorsHeader(src, f);
        metadata = { ...metadata, ...h.metadata };
        for (const t of h.tensors) {
          if (tensors.has(t.name)) throw new ModelFormatError(`tensor appears in two files (${tensors.get(t.name)!.file} and ${f}); remove the duplicate`, { file: f, tensor: t.name });
          tensors.set(t.name, t);
        }
      }
    } catch (e) {
      await Promise.all([...sources.values()].map((s) => s.close?.()));
      throw e;
    }
    return new SafetensorsArchive(tensors, sources, metadata);
  }

  /** A sharded checkpoint: index.json's weight_map names, for each tensor, the shard (relative to the index) holding it. */
  static async openIndex(indexPath: string, opener: SourceOpener = fileSource): Promise<SafetensorsArchive> {
    let index: unknown;
    try {
      index = JSON.parse(await (await nodeFs()).readFile(indexPath, 'utf8'));
    } catch (e) {
      throw new ModelFormatError(`cannot read the shard index as JSON (${(e as Error).message}); re-download it`, { file: indexPath });
    }
    const dir = (await nodePath()).dirname(indexPath);
    const shardOf = new Map([...parseShardIndex(index, indexPath)].map(([name, shard]) => [name, join(dir, shard)]));
    const shards = [...new Set(shardOf.values())];
    const missing: string[] = [];
    for (const s of shards) if (opener === fileSource && !(await exists(s))) missing.push(s);
    if (missing.length) throw new ModelFormatError(`shard(s) listed in weight_map are missing: ${missing.join(', ')}; download every shard`, { file: indexPath });
    const archive = await SafetensorsArchive.openFiles(shards, opener);
    const notInShard: string[] = [];
    for (const [name, shard] of shardOf) {
      const t = archive.tensors.get(name);
      if (!t || t.file !== shard) notInShard.push(`${name} (expected in ${shard})`);
    }
    if (notInShard.length) {
      await archive.close();
      throw new ModelFormatError(`tensors listed in weight_map are not in their shard: ${notInShard.slice(0, 10).join(', ')}${notInShard.length > 10 ? ` and ${notInShard.length - 10} more` : ''}; the index and shards do not match, re-download them`, { file: indexPath });
    }
    return archive;
  }

  /** A stored tensor, or a row slice of one (`rowSliceName`) as a tensor of its own. */
  info(name: string): TensorInfo {
    const t = this.tensors.get(name);
    if (t) return t;
    const slice = parseRowSlice(name);
    const base = slice && this.tensors.get(slice.base);
    if (!slice || !base) throw new ModelFormatError('no such tensor in the checkpoint', { tensor: name });
    const rows = base.shape[0] ?? 0;
    if (!(slice.start < slice.end && slice.end <= rows)) {
      throw new ModelFormatError(`rows [${slice.start}, ${slice.end}) are outside the tensor's ${rows} rows`, { file: base.file, tensor: name });
    }
    const rowBytes = base.byteLength / rows;
    return {
      name, dtype: base.dtype, shape: [slice.end - slice.start, ...base.shape.slice(1)], file: base.file,
      byteOffset: base.byteOffset + slice.start * rowBytes, byteLength: (slice.end - slice.start) * rowBytes,
    };
  }

  /** The raw little-endian bytes of one tensor, read with one positioned read. */
  async readBytes(name: string): Promise<Uint8Array> {
    const t = this.info(name);
    const src = this.sources.get(t.file);
    if (!src) throw new ModelFormatError('the archive is closed; open it again to read tensors', { file: t.file, tensor: name });
    return src.read(t.byteOffset, t.byteLength);
  }

  /** One tensor as f32, converting F16/BF16 exactly. */
  async readF32(name: string): Promise<Float32Array> {
    const t = this.info(name);
    return bytesToF32(await this.readBytes(name), t.dtype);
  }

  async close(): Promise<void> {
    await Promise.all([...this.sources.values()].map((s) => s.close?.()));
    this.sources.clear();
  }
}

async function exists(p: string): Promise<boolean> {
  try {
    await (await nodeFs()).stat(p);
    return true;
  } catch {
    return false;
  }
}

export interface TensorToWrite {
  name: string;
  dtype: DType;
  shape: number[];
  /** Little-endian raw bytes, DTYPE_BYTES[dtype] × prod(shape) long. */
  data: Uint8Array;
}

/** Serialises tensors into safetensors bytes (header padded to 8 bytes, data in the given order). */
export function encodeSafetensors(tensors: TensorToWrite[], metadata?: Record<string, string>): Uint8Array {
  const header: Record<string, unknown> = {};
  if (metadata) header.__metadata__ = metadata;
  let off = 0;
  for (const t of tensors) {
    const expected = DTYPE_BYTES[t.dtype] * t.shape.reduce((a, b) => a * b, 1);
    if (t.data.length !== expected) throw new ModelFormatError(`data has ${t.data.length} bytes, dtype × shape needs ${expected}`, { tensor: t.name });
    header[t.name] = { dtype: t.dtype, shape: t.shape, data_offsets: [off, off + t.data.length] };
    off += t.data.length;
  }
  const raw = new TextEncoder().encode(JSON.stringify(header));
  // Pad the header with spaces to a multiple of 8 bytes so the data region stays aligned.
  const hbytes = new Uint8Array(raw.length + ((8 - (raw.length % 8)) % 8)).fill(0x20);
  hbytes.set(raw);
  const out = new Uint8Array(8 + hbytes.length + off); // [u64 header len][header JSON][data]
  new DataView(out.buffer).setBigUint64(0, BigInt(hbytes.length), true);
  out.set(hbytes, 8);
  let p = 8 + hbytes.length;
  for (const t of tensors) {
    out.set(t.data, p);
    p += t.data.length;
  }
  return out;
}

export async function writeSafetensors(path: string, tensors: TensorToWrite[], metadata?: Record<string, string>): Promise<void> {
  await (await nodeFs()).writeFile(path, encodeSafetensors(tensors, metadata));
}
