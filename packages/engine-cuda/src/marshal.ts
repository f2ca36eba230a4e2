/** Request marshalling between the Engine contract and the native forward. Pure TS. */
import type { ForwardMode } from '@fast-dllm/scheduler';

export const MODE_CODE: Record<Exclude<ForwardMode, 'extend'>, number> = { full: 0, prefix: 1, dual: 2 };

/**
 * (n,) rows of the computed span [start, end) whose hidden state predicts each reported position. With
 * shiftLogits (Dream) position p reads row p-1 when p-1 is inside the span, else its own row (engine.ts).
 */
export function sourceRows(positions: Int32Array, start: number, shiftLogits: boolean): Int32Array {
  const rows = new Int32Array(positions.length);
  for (let i = 0; i < positions.length; i++) {
    const p = positions[i];
    rows[i] = shiftLogits && p - 1 >= start ? p - 1 - start : p - start;
  }
  return rows;
}
