import type { ForwardMode } from '@fast-dllm/engine-contract';

export type CacheMode = 'none' | 'prefix' | 'dual';

export interface ForwardSpan {
  mode: ForwardMode;
  /** Computed span [start, end), absolute positions. */
  start: number;
  end: number;
}

/**
 * DESIGN §4: which forward pass step `stepInBlock` (0-based) of block [start, end) runs on a canvas of length L.
 * The first step of a block is always a full forward (it rebuilds the cache); with refreshEvery = r, every
 * r-th step inside the block is a full forward too (an extra refresh, still one NFE).
 */
export function planForward(
  cache: CacheMode,
  stepInBlock: number,
  block: { start: number; end: number },
  canvasLength: number,
  refreshEvery?: number,
): ForwardSpan {
  const refresh = stepInBlock === 0 || (refreshEvery !== undefined && stepInBlock % refreshEvery === 0);
  if (cache === 'none' || refresh) return { mode: 'full', start: 0, end: canvasLength };
  if (cache === 'prefix') return { mode: 'prefix', start: block.start, end: canvasLength };
  return { mode: 'dual', start: block.start, end: block.end };
}
