/**
 * The TS reference engine against golden logits of the independent float64 PyTorch model
 * (tools/golden/torch_model.py; regenerate with `/usr/bin/python3 tools/golden/make_golden.py`).
 * Both compute in float64 from the same weights; the engine reports float32 logits and the golden file stores
 * float32, so the only expected difference is float32 rounding (~6e-8 relative).
 */
import { join } from 'node:path';
import { describe, expect, it } from 'vitest';
import { createReferenceEngine } from '@fast-dllm/engine-reference';
import { decodeLogits, FIXTURES, loadGolden, relError, replayGoldenCase } from './golden.js';


// Measured worst relative error (2026-11-23), every case of every model: 0 — both sides compute in float64 and
// their float32 roundings coincide. Tolerance 1e-5 leaves room for a different summation order (float64
// differences ~1e-13) and stays far below any real bug: using a fresh cache instead of the stale one moves
// these logits by > 1e-1 relative (see the stale-cache cases).
const TOLERANCE = 1e-5;
const MODELS: [string, string][] = [
  ['llada-tiny-f32', 'measured worst 0: float32 roundings identical'],
  ['llada-tiny-bf16', 'measured worst 0: float32 roundings identical'],
  ['llada-tiny-sharded', 'measured worst 0: float32 roundings identical'],
  ['dream-tiny-f32', 'measured worst 0: float32 roundings identical'],
  ['dream-tiny-bf16', 'measured worst 0: float32 roundings identical'],
];

describe.each(MODELS)('reference vs PyTorch golden: %s (%s)', (model) => {
  const golden = loadGolden(model);
  it.each(golden.cases.map((c) => [c.name, c] as const))('%s', async (_name, c) => {
    const engine = await createReferenceEngine(join(FIXTURES, 'models', model));
    try {
      const r = await replayGoldenCase(engine, c);
      const got = r.logits!;
      const want = decodeLogits(c.logits);
      expect(got.length).toBe(want.length);
      const err = relError(got, want);
      if (!(err <= TOLERANCE)) console.error(`${model} / ${c.name}: relative error ${err.toExponential(2)}`);
      expect(err).toBeLessThanOrEqual(TOLERANCE);
      // The greedy tokens must be the golden argmax wherever the golden top-2 margin is not ambiguous.
      const V = golden.vocabSize;
      for (let i = 0; i < c.end - c.start; i++) {
        const row = want.subarray(i * V, i * V + V);
        const sorted = Array.from(row).sort((x, y) => y - x);
        if (sorted[0] - sorted[1] > 1e-4) expect(r.tokens[i]).toBe(row.indexOf(sorted[0]));
      }
    } finally {
      await engine.dispose();
    }
  });
});
