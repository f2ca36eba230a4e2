/** Writes tiny safetensors files for tests: header length (u64 LE), JSON header, then zero-filled data. */
const BYTES: Record<string, number> = { F32: 4, BF16: 2, F16: 2 };

export function safetensors(tensors: Record<string, { dtype: 'F32' | 'BF16' | 'F16'; shape: number[] }>): Buffer {
  const header: Record<string, unknown> = { __metadata__: { format: 'pt' } };
  let offset = 0;
  for (const [name, t] of Object.entries(tensors)) {
    const n = t.shape.reduce((a, b) => a * b, 1) * BYTES[t.dtype];
    header[name] = { dtype: t.dtype, shape: t.shape, data_offsets: [offset, offset + n] };
    offset += n;
  }
  const json = Buffer.from(JSON.stringify(header));
  const len = Buffer.alloc(8);
  len.writeBigUInt64LE(BigInt(json.length));
  const data = Buffer.alloc(offset);
  for (let i = 0; i < data.length; i++) data[i] = (i * 31 + 7) & 0xff; // not all zeros, so a cut shows in the hash
  return Buffer.concat([len, json, data]);
}
