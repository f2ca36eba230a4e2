// One bf16 model.safetensors of random weights for the benchmarks (not a test helper): tensor by tensor, in chunks,
// from a seeded LCG, so a multi-GB checkpoint never sits in memory; or, with `sparse`, only the header and a hole as
// long as the weights (inspect and the engines' estimates read headers only).
import { closeSync, ftruncateSync, openSync, writeSync } from 'node:fs';

/**
 * Writes `path` for `list` of [name, shape, kind]: kind 'embed' uniform(±0.05), 'lin' uniform(±sqrt(3/fan_in)),
 * 'one' ones (norms), 'zero' zeros (biases). Returns the bytes of tensor data.
 */
export function writeRandomSafetensors(path, list, { sparse = false } = {}) {
  const header = { __metadata__: { format: 'pt' } };
  let offset = 0;
  for (const [name, shape] of list) {
    const bytes = 2 * shape.reduce((a, b) => a * b, 1);
    header[name] = { dtype: 'BF16', shape, data_offsets: [offset, offset + bytes] };
    offset += bytes;
  }
  let h = Buffer.from(JSON.stringify(header));
  h = Buffer.concat([h, Buffer.alloc((8 - (h.length % 8)) % 8, 0x20)]);
  const fd = openSync(path, 'w');
  const len = Buffer.alloc(8);
  len.writeBigUInt64LE(BigInt(h.length));
  writeSync(fd, len);
  writeSync(fd, h);
  if (sparse) {
    ftruncateSync(fd, 8 + h.length + offset);
    closeSync(fd);
    return offset;
  }
  const CHUNK = 1 << 22;
  const bits = new Uint16Array(CHUNK); // (CHUNK,) bf16
  const f = new Float32Array(1);
  const u = new Uint32Array(f.buffer);
  let s = 12345;
  for (const [, shape, kind] of list) {
    const n = shape.reduce((a, b) => a * b, 1);
    const amp = kind === 'embed' ? 0.05 : kind === 'lin' ? Math.sqrt(3 / shape[1]) : 0; // uniform(-amp, amp)
    for (let done = 0; done < n; done += CHUNK) {
      const m = Math.min(CHUNK, n - done);
      for (let i = 0; i < m; i++) {
        if (kind === 'one') { bits[i] = 0x3f80; continue; }
        if (kind === 'zero') { bits[i] = 0; continue; }
        s = (Math.imul(s, 1664525) + 1013904223) >>> 0;
        f[0] = (s / 2 ** 32 - 0.5) * 2 * amp;
        bits[i] = u[0] >>> 16;
      }
      writeSync(fd, new Uint8Array(bits.buffer, 0, 2 * m));
    }
  }
  closeSync(fd);
  return offset;
}
