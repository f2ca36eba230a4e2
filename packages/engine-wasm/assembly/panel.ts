// Shared by the float (kernels.ts) and int8 (int8.ts) matmuls: the panel width of packed weights and the store
// of one 8-column tile row.

/** Output columns per packed panel. */
export const NR: i32 = 8;

/** Writes (first K block: + bias) or adds (later blocks) 8 results at yr; only `cols` of them when the panel is partial. */
// @ts-ignore: decorator
@inline export function storeTile(yr: usize, b: usize, j: i32, cols: i32, first: bool, a0: v128, a1: v128): void {
  if (cols == NR) {
    if (!first) {
      a0 = f32x4.add(a0, v128.load(yr)); a1 = f32x4.add(a1, v128.load(yr, 16));
    } else if (b != 0) {
      const bj = b + (<usize>j << 2);
      a0 = f32x4.add(a0, v128.load(bj)); a1 = f32x4.add(a1, v128.load(bj, 16));
    }
    v128.store(yr, a0); v128.store(yr, a1, 16);
    return;
  }
  storeLane(yr, b, j, 0, cols, first, f32x4.extract_lane(a0, 0));
  storeLane(yr, b, j, 1, cols, first, f32x4.extract_lane(a0, 1));
  storeLane(yr, b, j, 2, cols, first, f32x4.extract_lane(a0, 2));
  storeLane(yr, b, j, 3, cols, first, f32x4.extract_lane(a0, 3));
  storeLane(yr, b, j, 4, cols, first, f32x4.extract_lane(a1, 0));
  storeLane(yr, b, j, 5, cols, first, f32x4.extract_lane(a1, 1));
  storeLane(yr, b, j, 6, cols, first, f32x4.extract_lane(a1, 2));
}

// @ts-ignore: decorator
@inline function storeLane(yr: usize, b: usize, j: i32, c: i32, cols: i32, first: bool, v: f32): void {
  if (c >= cols) return;
  const yp = yr + (<usize>c << 2);
  if (!first) v += load<f32>(yp);
  else if (b != 0) v += load<f32>(b + (<usize>(j + c) << 2));
  store<f32>(yp, v);
}

