/** The device arena bookkeeping of sequence caches (src/cache-pool.ts): pure, no addon. */
import { describe, expect, it } from 'vitest';
import { EngineCapacityError } from '@fast-dllm/scheduler';
import { BLOCK_ALIGN, CachePool, MIN_ARENA_BYTES, type CacheBlock } from '../src/index.js';

const MiB = 2 ** 20;

/** A pool whose arenas are recorded (ids 0, 1, …) instead of allocated. */
function pool(failAfter = Infinity) {
  const arenas: number[] = [];
  const p = new CachePool((bytes) => {
    if (arenas.length >= failAfter) throw new Error('cudaMalloc(…): out of memory');
    arenas.push(bytes);
    return arenas.length - 1;
  });
  return { p, arenas };
}
const what = () => 'test: a sequence';

describe('CachePool', () => {
  it('places blocks first fit in 256-byte steps, one arena of at least 64 MiB, and reuses freed space', () => {
    const { p, arenas } = pool();
    const limit = 1024 * MiB;
    const a = p.reserve(1000, limit, what);
    const b = p.reserve(3000, limit, what);
    const c = p.reserve(1000, limit, what);
    expect([a, b, c]).toEqual([{ arena: 0, offset: 0, bytes: 1024 }, { arena: 0, offset: 1024, bytes: 3072 }, { arena: 0, offset: 4096, bytes: 1024 }]);
    expect(arenas).toEqual([MIN_ARENA_BYTES]);
    p.release(b);
    expect(p.reserve(2000, limit, what)).toEqual({ arena: 0, offset: 1024, bytes: 2048 }); // first fit: b's hole
    expect(p.reserve(1024, limit, what)).toEqual({ arena: 0, offset: 3072, bytes: 1024 }); // the rest of it
    expect(p.deviceBytes).toBe(MIN_ARENA_BYTES);
  });

  it('merges a freed block with free neighbours on both sides', () => {
    const { p } = pool();
    const limit = 64 * MiB;
    const blocks: CacheBlock[] = Array.from({ length: 4 }, () => p.reserve(MiB, limit, what));
    p.release(blocks[0]);
    p.release(blocks[2]);
    p.release(blocks[1]); // joins [0, 3 MiB)
    expect(p.reserve(3 * MiB, limit, what)).toEqual({ arena: 0, offset: 0, bytes: 3 * MiB });
    p.release(blocks[3]);
    expect(p.capacity(60 * MiB, limit)).toBe(1); // [3 MiB, 64 MiB) is one hole again
  });

  it('capacity is exactly how many reserves succeed, within the limit, for small and large blocks', () => {
    for (const [bytes, limit] of [[5 * MiB, 200 * MiB], [100 * MiB, 350 * MiB], [1000, 64 * MiB + 5000], [BLOCK_ALIGN, 3 * BLOCK_ALIGN]]) {
      const { p, arenas } = pool();
      p.release(p.reserve(bytes, limit, what)); // an arena already holding a hole
      const n = p.capacity(bytes, limit);
      for (let i = 0; i < n; i++) p.reserve(bytes, limit, what);
      expect(() => p.reserve(bytes, limit, what), `${bytes} in ${limit}`).toThrow(EngineCapacityError);
      expect(p.capacity(bytes, limit)).toBe(0);
      expect(arenas.reduce((x, y) => x + y, 0)).toBeLessThanOrEqual(limit);
    }
  });

  it('refuses with EngineCapacityError naming the sizes, and turns a failed device allocation into one', () => {
    const { p } = pool(1);
    expect(() => p.reserve(10 * MiB, 5 * MiB, what)).toThrow(/^test: a sequence needs 10485760 bytes of K\/V cache; the open sequences' caches and the pass scratch leave 5242880 bytes/);
    p.reserve(40 * MiB, 200 * MiB, what); // arena 0: 64 MiB
    p.reserve(20 * MiB, 200 * MiB, what); // in arena 0
    const e = (() => {
      try {
        p.reserve(40 * MiB, 200 * MiB, what); // would need arena 1; the device refuses
      } catch (x) {
        return x as Error;
      }
    })();
    expect(e).toBeInstanceOf(EngineCapacityError);
    expect(e?.message).toMatch(/could not allocate 67108864 bytes for sequence caches \(cudaMalloc\(…\): out of memory\)/);
    // The limit fell below what the arenas already hold (a longer canvas's scratch): nothing more fits.
    expect(p.capacity(MiB, 32 * MiB)).toBe(0);
    expect(() => p.reserve(MiB, 32 * MiB, what)).toThrow(EngineCapacityError);
  });
});
