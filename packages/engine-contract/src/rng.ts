/**
 * The shared counter-based random generator. Every engine implements exactly this, so that a seeded run
 * draws the same noise on every backend; there is no generator state, only a hash of the counter.
 *
 * Specification (to be ported bit for bit to AssemblyScript and CUDA):
 *   h = MurmurHash3_x86_32(message, seed) where message is the 12 bytes of three little-endian u32 words
 *       [forwardIndex, position, lane] and seed is the u32 seed.
 *   u = (h + 0.5) / 2^32                     a float64 strictly inside (0, 1)
 *   gumbel = -ln(-ln(u))                     float64
 * Lanes: a token id v (0 <= v < vocab) for the Gumbel noise of token v; the constants below for the
 * scheduler's own draws.
 */

/** Lane of the uniform that `random` remasking uses as a position's confidence. */
export const LANE_REMASK_RANDOM = 0xffffffff;
/** Lane of the uniform that Dream's `origin` rule compares with its transfer probability. */
export const LANE_DREAM_ORIGIN = 0xfffffffe;

const C1 = 0xcc9e2d51;
const C2 = 0x1b873593;

function mixBlock(h: number, k: number): number {
  k = Math.imul(k, C1);
  k = (k << 15) | (k >>> 17);
  k = Math.imul(k, C2);
  h ^= k;
  h = (h << 13) | (h >>> 19);
  return (Math.imul(h, 5) + 0xe6546b64) | 0;
}

/** MurmurHash3_x86_32 of the three u32 words (12 bytes), as an unsigned 32-bit integer. */
export function counterHash(seed: number, forwardIndex: number, position: number, lane: number): number {
  let h = seed | 0;
  h = mixBlock(h, forwardIndex | 0);
  h = mixBlock(h, position | 0);
  h = mixBlock(h, lane | 0);
  h ^= 12;
  h ^= h >>> 16;
  h = Math.imul(h, 0x85ebca6b);
  h ^= h >>> 13;
  h = Math.imul(h, 0xc2b2ae35);
  h ^= h >>> 16;
  return h >>> 0;
}

/** Uniform float64 in (0, 1). */
export function counterUniform(seed: number, forwardIndex: number, position: number, lane: number): number {
  return (counterHash(seed, forwardIndex, position, lane) + 0.5) / 4294967296;
}

/** Standard Gumbel noise for token `tokenId` at `position` in forward pass `forwardIndex`. */
export function counterGumbel(seed: number, forwardIndex: number, position: number, tokenId: number): number {
  return -Math.log(-Math.log(counterUniform(seed, forwardIndex, position, tokenId)));
}

/** Normalises a user seed to the u32 the generator takes; rejects what would silently alias. */
export function normaliseSeed(seed: number): number {
  if (!Number.isInteger(seed) || seed < 0 || seed > 0xffffffff) {
    throw new Error(`seed must be an integer in [0, 4294967295]; got ${seed}`);
  }
  return seed >>> 0;
}
