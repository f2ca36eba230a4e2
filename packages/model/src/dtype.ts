import type { DType } from './types.js';

/** Bytes per element of each supported dtype. */
export const DTYPE_BYTES: Record<DType, number> = { F32: 4, F16: 2, BF16: 2 };

export function isDType(s: unknown): s is DType {
  return s === 'F32' || s === 'F16' || s === 'BF16';
}

const f32 = new Float32Array(1); // scratch, 1 float
const u32 = new Uint32Array(f32.buffer); // same 4 bytes as bits

/** bf16 bits (upper 16 bits of an f32) → f32. Exact. */
export function bf16ToF32(bits: number): number {
  u32[0] = (bits & 0xffff) << 16;
  return f32[0];
}

/** f32 → bf16 bits, round to nearest even; NaN stays a (quiet) NaN. */
export function f32ToBf16(x: number): number {
  f32[0] = x;
  const b = u32[0];
  if ((b & 0x7f800000) === 0x7f800000 && (b & 0x007fffff) !== 0) return ((b >>> 16) | 0x0040) & 0xffff;
  const rounded = b + 0x7fff + ((b >>> 16) & 1);
  return (rounded >>> 16) & 0xffff;
}

/** IEEE half bits → f32. Exact (subnormals, inf, NaN included). */
export function f16ToF32(bits: number): number {
  const sign = bits & 0x8000 ? -1 : 1;
  const exp = (bits >>> 10) & 0x1f;
  const frac = bits & 0x3ff;
  if (exp === 0) return sign * frac * 2 ** -24;
  if (exp === 0x1f) return frac ? NaN : sign * Infinity;
  return sign * (1 + frac / 1024) * 2 ** (exp - 15);
}

const LITTLE_ENDIAN_HOST = new Uint8Array(new Uint16Array([1]).buffer)[0] === 1;

let F16_LUT: Float32Array | undefined; // (65536) f32: value of every half bit pattern, 256 KB, built on first use

/** Every f16 bit pattern decoded once: ~10× faster than decoding each element with arithmetic. */
function f16Table(): Float32Array {
  if (!F16_LUT) {
    F16_LUT = new Float32Array(65536);
    for (let b = 0; b < 65536; b++) F16_LUT[b] = f16ToF32(b);
  }
  return F16_LUT;
}

/** Little-endian raw tensor bytes of `dtype` → f32 values. */
export function bytesToF32(bytes: Uint8Array, dtype: DType): Float32Array {
  const n = bytes.length / DTYPE_BYTES[dtype];
  const dv = new DataView(bytes.buffer, bytes.byteOffset, bytes.byteLength);
  const out = new Float32Array(n); // (n) f32
  if (dtype === 'F32' && LITTLE_ENDIAN_HOST && bytes.byteOffset % 4 === 0) {
    // Fast path: reinterpret and copy, so the result owns its memory.
    return new Float32Array(bytes.buffer, bytes.byteOffset, n).slice();
  }
  if (dtype === 'F32') {
    for (let i = 0; i < n; i++) out[i] = dv.getFloat32(4 * i, true);
  } else if (dtype === 'BF16') {
    const o32 = new Uint32Array(out.buffer);
    for (let i = 0; i < n; i++) o32[i] = dv.getUint16(2 * i, true) << 16;
  } else {
    const lut = f16Table();
    for (let i = 0; i < n; i++) out[i] = lut[dv.getUint16(2 * i, true)];
  }
  return out;
}
