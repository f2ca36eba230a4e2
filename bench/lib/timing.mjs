// Timing helpers shared by the engine benches (a2d, blockdiff).

/** The upper median (of two runs: the slower one). */
export function median(xs) {
  const a = [...xs].sort((x, y) => x - y);
  return a[Math.floor(a.length / 2)];
}

/**
 * Times `reps` forwards of `req` on sequence `seq` after one untimed warm-up (scratch allocation, tier-up); throws
 * when a probability is not finite. Returns the step's record: mode, rows, positions reported, each run's ms
 * (rounded) and their median.
 */
export async function timeForward(engine, seq, req, reps, label) {
  const ms = [];
  for (let r = 0; r <= reps; r++) {
    const t0 = performance.now();
    const [res] = await engine.forward([{ ...req, sequence: seq }]);
    if (r > 0) ms.push(performance.now() - t0);
    if (!res.probs.every(Number.isFinite)) throw new Error(`${label}: non-finite probabilities`);
  }
  return { mode: req.mode, rows: req.end - req.start, reported: req.positions.length, ms: ms.map((x) => +x.toFixed(0)), medianMs: +median(ms).toFixed(0) };
}
