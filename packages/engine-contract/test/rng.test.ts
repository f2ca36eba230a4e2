import { describe, expect, it } from 'vitest';
import { counterHash, counterUniform } from '../src/rng.js';

// MurmurHash3_x86_32 reference vectors for 12-byte messages were computed with an independent
// byte-oriented implementation (below), so a port that gets the word order or the tail wrong fails here.
function murmur3Bytes(bytes: Uint8Array, seed: number): number {
  let h = seed >>> 0;
  const nblocks = bytes.length >> 2;
  for (let i = 0; i < nblocks; i++) {
    let k = bytes[4 * i] | (bytes[4 * i + 1] << 8) | (bytes[4 * i + 2] << 16) | (bytes[4 * i + 3] << 24);
    k = Math.imul(k, 0xcc9e2d51); k = (k << 15) | (k >>> 17); k = Math.imul(k, 0x1b873593);
    h ^= k; h = (h << 13) | (h >>> 19); h = (Math.imul(h, 5) + 0xe6546b64) | 0;
  }
  h ^= bytes.length;
  h ^= h >>> 16; h = Math.imul(h, 0x85ebca6b); h ^= h >>> 13; h = Math.imul(h, 0xc2b2ae35); h ^= h >>> 16;
  return h >>> 0;
}

describe('counter RNG', () => {
  it('is MurmurHash3_x86_32 of the three little-endian words', () => {
    for (const [s, f, p, l] of [[0, 0, 0, 0], [42, 3, 17, 126335], [0xffffffff, 1, 2, 0xffffffff], [7, 100000, 4095, 0xfffffffe]]) {
      const b = new Uint8Array(new Uint32Array([f, p, l]).buffer);
      expect(counterHash(s, f, p, l)).toBe(murmur3Bytes(b, s));
    }
  });
  it('matches the published MurmurHash3 vector for an empty-seed known input', () => {
    // murmur3_32("", 0) = 0; murmur3_32 of 4 zero bytes with seed 0 = 0x2362F9DE (public test vector).
    expect(murmur3Bytes(new Uint8Array(0), 0)).toBe(0);
    expect(murmur3Bytes(new Uint8Array(4), 0)).toBe(0x2362f9de);
  });
  it('gives uniforms strictly inside (0, 1) with a sane mean', () => {
    let sum = 0;
    for (let i = 0; i < 20000; i++) {
      const u = counterUniform(1, 0, i, 5);
      expect(u).toBeGreaterThan(0);
      expect(u).toBeLessThan(1);
      sum += u;
    }
    expect(Math.abs(sum / 20000 - 0.5)).toBeLessThan(0.01);
  });
});
