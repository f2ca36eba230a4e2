import { describe, expect, it } from 'vitest';
import { mkdir, writeFile } from 'node:fs/promises';
import { join } from 'node:path';
import {
  ModelFormatError,
  SafetensorsArchive,
  bf16ToF32,
  blobSource,
  bufferSource,
  bytesToF32,
  encodeSafetensors,
  f16ToF32,
  f32ToBf16,
  parseSafetensorsHeader,
  writeSafetensors,
} from '../src/index.js';
import { f32Tensor, tempDir } from './helpers.js';

/** A safetensors file made of a raw header string and `dataLen` zero bytes. */
function rawFile(header: string, dataLen: number, declaredLen?: number): Uint8Array {
  const h = new TextEncoder().encode(header);
  const out = new Uint8Array(8 + h.length + dataLen);
  new DataView(out.buffer).setBigUint64(0, BigInt(declaredLen ?? h.length), true);
  out.set(h, 8);
  return out;
}

async function parseError(bytes: Uint8Array): Promise<ModelFormatError> {
  const err = await parseSafetensorsHeader(bufferSource(bytes), 'x.safetensors').catch((e) => e);
  expect(err).toBeInstanceOf(ModelFormatError);
  expect((err as ModelFormatError).file).toBe('x.safetensors');
  return err as ModelFormatError;
}

describe('dtype conversion', () => {
  it('bf16 and f16 decode known bit patterns exactly', () => {
    expect(bf16ToF32(0x3f80)).toBe(1);
    expect(bf16ToF32(0xc000)).toBe(-2);
    expect(bf16ToF32(0x3e20)).toBe(0.15625);
    expect(bf16ToF32(0x7f80)).toBe(Infinity);
    expect(Number.isNaN(bf16ToF32(0x7fc0))).toBe(true);
    expect(f16ToF32(0x3c00)).toBe(1);
    expect(f16ToF32(0xc000)).toBe(-2);
    expect(f16ToF32(0x7bff)).toBe(65504);
    expect(f16ToF32(0x0001)).toBe(2 ** -24); // smallest subnormal
    expect(f16ToF32(0x3555)).toBeCloseTo(0.333251953125, 12);
    expect(f16ToF32(0xfc00)).toBe(-Infinity);
    expect(Object.is(f16ToF32(0x8000), -0)).toBe(true);
  });

  it('bulk F16/BF16 decoding matches the scalar decoders on every bit pattern', () => {
    const all = new Uint16Array(65536).map((_, i) => i); // (65536) every half / bf16 pattern
    const bytes = new Uint8Array(all.buffer);
    const h = bytesToF32(bytes, 'F16');
    const b = bytesToF32(bytes, 'BF16');
    const same = (x: number, y: number) => Object.is(x, y) || (Number.isNaN(x) && Number.isNaN(y));
    const bad: number[] = [];
    for (let i = 0; i < 65536; i++) if (!same(h[i], f16ToF32(i)) || !same(b[i], bf16ToF32(i))) bad.push(i);
    expect(bad).toEqual([]);
  });

  it('f32ToBf16 rounds to nearest, ties to even', () => {
    expect(f32ToBf16(1)).toBe(0x3f80);
    // 1 + 2^-8 lies exactly between bf16 1.0 (even mantissa) and 1.0078125: ties to even → 1.0.
    expect(f32ToBf16(1 + 2 ** -8)).toBe(0x3f80);
    // 1 + 3·2^-8 lies between 0x3f81 (odd) and 0x3f82 (even): ties to even → 0x3f82.
    expect(f32ToBf16(1 + 3 * 2 ** -8)).toBe(0x3f82);
    // Just above the tie rounds up.
    expect(f32ToBf16(1 + 2 ** -8 + 2 ** -20)).toBe(0x3f81);
    expect(f32ToBf16(-2)).toBe(0xc000);
    expect(Number.isNaN(bf16ToF32(f32ToBf16(NaN)))).toBe(true);
    expect(f32ToBf16(3.4e38)).toBe(0x7f80); // rounds past bf16 max → inf
  });
});

describe('safetensors round trip', () => {
  it('writes and reads F32, F16 and BF16 tensors with metadata', async () => {
    const dir = await tempDir();
    const path = join(dir, 'm.safetensors');
    const bf = new Uint8Array(new Uint16Array([0x3f80, 0xc000, 0x3e20]).buffer);
    const hf = new Uint8Array(new Uint16Array([0x3c00, 0x3555, 0x0001, 0x7bff]).buffer);
    await writeSafetensors(
      path,
      [f32Tensor('a', [2, 3]), { name: 'b', dtype: 'BF16', shape: [3], data: bf }, { name: 'h', dtype: 'F16', shape: [2, 2], data: hf }, f32Tensor('empty', [0, 4])],
      { format: 'pt' },
    );
    const ar = await SafetensorsArchive.open(path);
    expect([...ar.tensors.keys()].sort()).toEqual(['a', 'b', 'empty', 'h']);
    expect(ar.metadata).toEqual({ format: 'pt' });
    expect(ar.tensors.get('a')).toMatchObject({ dtype: 'F32', shape: [2, 3], byteLength: 24 });
    expect(Array.from(await ar.readF32('a'))).toEqual([0, 0.5, 1, 1.5, 2, 2.5]);
    expect(Array.from(await ar.readF32('b'))).toEqual([1, -2, 0.15625]);
    expect(Array.from(await ar.readF32('h'))).toEqual([1, f16ToF32(0x3555), 2 ** -24, 65504]);
    expect(await ar.readBytes('b')).toEqual(bf);
    expect((await ar.readF32('empty')).length).toBe(0);
    await expect(ar.readBytes('nope')).rejects.toThrow(/no such tensor in the checkpoint \(tensor nope\)/);
    await ar.close();
  });

  it('pads the header to 8 bytes', () => {
    const bytes = encodeSafetensors([f32Tensor('x', [1])]);
    const len = Number(new DataView(bytes.buffer).getBigUint64(0, true));
    expect(len % 8).toBe(0);
  });
});

describe('malformed safetensors', () => {
  it('truncated file (shorter than the length prefix)', async () => {
    const e = await parseError(new Uint8Array(5));
    expect(e.message).toMatch(/truncated file: 5 bytes/);
  });

  it('header length past EOF', async () => {
    const e = await parseError(rawFile('{}', 0, 1000));
    expect(e.message).toMatch(/header length 1000 runs past the end of the file/);
  });

  it('header length over the 100 MB bound', async () => {
    const e = await parseError(rawFile('{}', 0, 200_000_000));
    expect(e.message).toMatch(/exceeds the 100000000-byte limit/);
  });

  it('bad JSON header', async () => {
    const e = await parseError(rawFile('{"a": ', 0));
    expect(e.message).toMatch(/header is not valid JSON/);
  });

  it('unknown dtype', async () => {
    const e = await parseError(rawFile('{"w":{"dtype":"I8","shape":[2],"data_offsets":[0,2]}}', 2));
    expect(e.message).toMatch(/unknown dtype "I8"/);
    expect(e.tensor).toBe('w');
  });

  it('negative or fractional shape', async () => {
    const e = await parseError(rawFile('{"w":{"dtype":"F32","shape":[-1],"data_offsets":[0,4]}}', 4));
    expect(e.message).toMatch(/shape \[-1\] is not a list of non-negative integers/);
  });

  it('offsets out of range', async () => {
    const e = await parseError(rawFile('{"w":{"dtype":"F32","shape":[4],"data_offsets":[0,16]}}', 8));
    expect(e.message).toMatch(/data_offsets \[0, 16\] out of range: the data region has 8 bytes/);
  });

  it('overlapping tensors', async () => {
    const e = await parseError(
      rawFile('{"a":{"dtype":"F32","shape":[2],"data_offsets":[0,8]},"b":{"dtype":"F32","shape":[2],"data_offsets":[4,12]}}', 12),
    );
    expect(e.message).toMatch(/data of b overlaps data of a/);
  });

  it('dtype/shape byte mismatch', async () => {
    const e = await parseError(rawFile('{"w":{"dtype":"BF16","shape":[3],"data_offsets":[0,4]}}', 4));
    expect(e.message).toMatch(/byte size 4 does not match dtype BF16 × shape \[3\] = 6 bytes/);
  });

  it('file cut short after a valid header (offsets past the new end)', async () => {
    const full = encodeSafetensors([f32Tensor('w', [4])]);
    const e = await parseError(full.subarray(0, full.length - 4));
    expect(e.message).toMatch(/out of range/);
  });
});

describe('sharded checkpoints', () => {
  async function writeSharded(): Promise<string> {
    const dir = await tempDir();
    await writeSafetensors(join(dir, 's1.safetensors'), [f32Tensor('a', [2]), f32Tensor('b', [3], (i) => -i)]);
    await writeSafetensors(join(dir, 's2.safetensors'), [f32Tensor('c', [1, 2], (i) => 7 + i)]);
    await writeFile(join(dir, 'model.safetensors.index.json'), JSON.stringify({ metadata: {}, weight_map: { a: 's1.safetensors', b: 's1.safetensors', c: 's2.safetensors' } }));
    return dir;
  }

  it('reads tensors across shards from the directory', async () => {
    const dir = await writeSharded();
    const ar = await SafetensorsArchive.open(dir);
    expect(ar.tensors.get('c')!.file).toBe(join(dir, 's2.safetensors'));
    expect(Array.from(await ar.readF32('c'))).toEqual([7, 8]);
    expect(Array.from(await ar.readF32('b'))).toEqual([-0, -1, -2]);
    await ar.close();
  });

  it('shard missing', async () => {
    const dir = await writeSharded();
    await writeFile(join(dir, 'model.safetensors.index.json'), JSON.stringify({ weight_map: { a: 's1.safetensors', c: 's3.safetensors' } }));
    await expect(SafetensorsArchive.open(dir)).rejects.toThrow(/shard\(s\) listed in weight_map are missing: .*s3\.safetensors/);
  });

  it('tensor listed in the index is not in its shard', async () => {
    const dir = await writeSharded();
    await writeFile(join(dir, 'model.safetensors.index.json'), JSON.stringify({ weight_map: { a: 's2.safetensors', b: 's1.safetensors', c: 's2.safetensors' } }));
    await expect(SafetensorsArchive.open(dir)).rejects.toThrow(/not in their shard: a \(expected in .*s2\.safetensors\)/);
  });

  it('the same tensor in two shards', async () => {
    const dir = await writeSharded();
    await writeSafetensors(join(dir, 's2.safetensors'), [f32Tensor('c', [1, 2]), f32Tensor('a', [2])]);
    await expect(SafetensorsArchive.open(dir)).rejects.toThrow(/tensor appears in two files .*\(.*tensor a\)/);
  });

  it('reading after close is a clear error', async () => {
    const ar = await SafetensorsArchive.open(await writeSharded());
    await ar.close();
    await expect(ar.readF32('a')).rejects.toThrow(/the archive is closed/);
  });

  it('index without weight_map', async () => {
    const dir = await tempDir();
    await mkdir(dir, { recursive: true });
    await writeFile(join(dir, 'model.safetensors.index.json'), '{"metadata":{}}');
    await expect(SafetensorsArchive.open(dir)).rejects.toThrow(/no "weight_map" object/);
  });

  it('directory without weights', async () => {
    const dir = await tempDir();
    await expect(SafetensorsArchive.open(dir)).rejects.toThrow(/neither model.safetensors nor model.safetensors.index.json/);
  });
});

describe('blobSource', () => {
  it('reads ranges of a Blob and parses a header from it like the buffer source', async () => {
    const bytes = encodeSafetensors([{ name: 'w', dtype: 'F32', shape: [2], data: new Uint8Array(new Float32Array([1.5, -2]).buffer) }]);
    const src = blobSource(new Blob([bytes]), 'w.safetensors');
    expect(src.size).toBe(bytes.length);
    expect(Array.from(await src.read(3, 5))).toEqual(Array.from(bytes.subarray(3, 8)));
    const h = await parseSafetensorsHeader(src, 'w.safetensors');
    expect(h.tensors.map((t) => [t.name, t.byteLength])).toEqual([['w', 8]]);
    await expect(src.read(bytes.length - 2, 4)).rejects.toThrow(/past end .* of w\.safetensors/);
  });
});
