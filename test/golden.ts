/**
 * The PyTorch golden logits (tools/golden/make_golden.py) and how to replay one case on any engine: shared by
 * every engine's conformance test, so that each replays the cache set-up in exactly the same way.
 */
import { readFileSync } from 'node:fs';
import { join } from 'node:path';
import type { Engine, ForwardMode, ForwardRequest, ForwardResult } from '@fast-dllm/scheduler';

export const FIXTURES = join(import.meta.dirname, 'fixtures');

export interface GoldenCase {
  name: string;
  /** Forwards run first to build (full) and update (dual) the cache; their results are not checked. */
  setup: { canvas: number[]; mode: ForwardMode; start: number; end: number }[];
  canvas: number[];
  mode: ForwardMode;
  start: number;
  end: number;
  logits: string; // base64 float32 LE, (end-start, vocab)
}

export function loadGolden(model: string): { vocabSize: number; cases: GoldenCase[] } {
  return JSON.parse(readFileSync(join(FIXTURES, 'golden', `${model}.json`), 'utf8'));
}

export function decodeLogits(b64: string): Float32Array {
  const buf = Buffer.from(b64, 'base64');
  const out = new Float32Array(buf.byteLength / 4); // (rows, vocab)
  for (let i = 0; i < out.length; i++) out[i] = buf.readFloatLE(i * 4);
  return out;
}

/** max |a - b| / max |b|: a normalised error robust to logits near zero. */
export function relError(a: Float32Array, b: Float32Array): number {
  let diff = 0;
  let scale = 0;
  for (let i = 0; i < b.length; i++) {
    diff = Math.max(diff, Math.abs(a[i] - b[i]));
    scale = Math.max(scale, Math.abs(b[i]));
  }
  return diff / scale;
}

/** One forward of one sequence: the single-request form of engine.forward. */
export async function forward1(engine: Engine, req: ForwardRequest): Promise<ForwardResult> {
  return (await engine.forward([req]))[0];
}

/**
 * Runs the case's set-up forwards, then the checked forward over every position of its span, with logits, on a
 * fresh sequence of the engine (closed afterwards).
 */
export async function replayGoldenCase(engine: Engine, c: GoldenCase, want: ForwardRequest['want'] = {}): Promise<ForwardResult> {
  const sequence = engine.openSequence(c.canvas.length);
  try {
    for (const s of c.setup) {
      const canvas = Int32Array.from(s.canvas);
      await forward1(engine, { sequence, canvas, mode: s.mode, start: s.start, end: s.end, positions: new Int32Array([s.start]) });
    }
    const canvas = Int32Array.from(c.canvas);
    const positions = Int32Array.from({ length: c.end - c.start }, (_, i) => c.start + i);
    return await forward1(engine, { sequence, canvas, mode: c.mode, start: c.start, end: c.end, positions, want: { ...want, logits: true } });
  } finally {
    engine.closeSequence(sequence);
  }
}
