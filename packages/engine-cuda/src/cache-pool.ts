/**
 * Where sequence caches live on the device: arenas (one cudaMalloc each, native allocArena) cut into blocks, one per
 * open sequence, first fit, freed blocks merged with their free neighbours. Arenas are made when no hole fits, at
 * least MIN_ARENA_BYTES (a 7B sequence of 2048 positions is 117 MB, so large ones get an arena of their own), and
 * kept until the engine is disposed: opening and closing sequences never calls cudaMalloc once the pool has grown
 * to its working size, and never cudaFree (which would wait for the device). Pure bookkeeping; the arenas' bytes
 * are the native side's. DESIGN §7.
 */
import { EngineCapacityError } from '@fast-dllm/engine-contract';

/** Blocks start at multiples of this (cudaMalloc's own alignment, and 16-byte cp.async sources). */
export const BLOCK_ALIGN = 256;
/** Smallest arena the pool makes. */
export const MIN_ARENA_BYTES = 64 * 2 ** 20;

/** One sequence's block: `bytes` at `offset` in arena `arena`. */
export interface CacheBlock {
  arena: number;
  offset: number;
  bytes: number;
}

interface Arena {
  id: number;
  bytes: number;
  /** Free ranges, ascending by offset, never adjacent (merged). */
  holes: Array<{ offset: number; bytes: number }>;
}

const align = (b: number) => Math.ceil(b / BLOCK_ALIGN) * BLOCK_ALIGN;

export class CachePool {
  private readonly arenas: Arena[] = [];
  /** Bytes of every arena made. */
  private arenaTotal = 0;

  /** `allocArena(bytes)` makes a device arena and returns its id; it throws when the device has no room. */
  constructor(private readonly allocArena: (bytes: number) => number) {}

  /** Bytes the arenas hold on the device. */
  get deviceBytes(): number {
    return this.arenaTotal;
  }

  /**
   * How many more blocks of `bytes` fit: in the holes of the arenas, then in new arenas while the arenas stay within
   * `limit` bytes in all. Exactly what `reserve` would do, called that many times.
   */
  capacity(bytes: number, limit: number): number {
    const need = align(bytes);
    if (this.arenaTotal > limit) return 0; // the arenas already use what the pass scratch now needs
    let count = 0;
    for (const a of this.arenas) for (const h of a.holes) count += Math.floor(h.bytes / need);
    let room = limit - this.arenaTotal;
    while (room >= need) {
      const arena = this.newArenaBytes(need, room);
      count += Math.floor(arena / need);
      room -= arena;
    }
    return count;
  }

  /** Reserves a block of `bytes`, first fit, else in a new arena within `limit`; EngineCapacityError when neither. */
  reserve(bytes: number, limit: number, what: () => string): CacheBlock {
    const need = align(bytes);
    if (this.arenaTotal <= limit) {
      for (const a of this.arenas) {
        const i = a.holes.findIndex((h) => h.bytes >= need);
        if (i < 0) continue;
        const h = a.holes[i];
        const block = { arena: a.id, offset: h.offset, bytes: need };
        if (h.bytes === need) a.holes.splice(i, 1);
        else a.holes[i] = { offset: h.offset + need, bytes: h.bytes - need };
        return block;
      }
    }
    const room = limit - this.arenaTotal;
    if (room < need) {
      throw new EngineCapacityError(
        `${what()} needs ${need} bytes of K/V cache; the open sequences' caches and the pass scratch leave ${Math.max(0, room)} bytes of device memory`);
    }
    const size = this.newArenaBytes(need, room);
    let id: number;
    try {
      id = this.allocArena(size);
    } catch (e) {
      // The device had less free memory than at load (another process took it): a capacity limit, not a fault.
      throw new EngineCapacityError(`${what()}: the device could not allocate ${size} bytes for sequence caches (${(e as Error).message})`);
    }
    this.arenas.push({ id, bytes: size, holes: size > need ? [{ offset: need, bytes: size - need }] : [] });
    this.arenaTotal += size;
    return { arena: id, offset: 0, bytes: need };
  }

  /** Returns a block to its arena's holes. */
  release(block: CacheBlock): void {
    const a = this.arenas.find((x) => x.id === block.arena);
    if (!a) throw new Error(`CachePool: no arena ${block.arena}`);
    const holes = a.holes;
    let i = 0;
    while (i < holes.length && holes[i].offset < block.offset) i++;
    holes.splice(i, 0, { offset: block.offset, bytes: block.bytes });
    // Merge with the next hole, then with the previous one.
    if (i + 1 < holes.length && holes[i].offset + holes[i].bytes === holes[i + 1].offset) {
      holes[i].bytes += holes[i + 1].bytes;
      holes.splice(i + 1, 1);
    }
    if (i > 0 && holes[i - 1].offset + holes[i - 1].bytes === holes[i].offset) {
      holes[i - 1].bytes += holes[i].bytes;
      holes.splice(i, 1);
    }
  }

  /** Size of a new arena for a block of `need` bytes with `room` bytes left under the limit (room >= need). */
  private newArenaBytes(need: number, room: number): number {
    return Math.min(room - (room % BLOCK_ALIGN), Math.max(need, MIN_ARENA_BYTES));
  }
}
