// What the browser test runs, shared by the page bundle (entry.ts) and the Node side (../browser.test.ts).
export const PROMPT = [3, 17, 42, 8, 99, 5, 61];
export const GEN = 16;

/** The int8 matmul both sides run (above the thread split threshold): shapes and an input generator. */
export const INT8_CASE = { n: 70, k: 300, m: 40 };
export function int8CaseInputs(): { x: Float32Array; w: Float32Array } {
  let s = 777;
  const rnd = (len: number) => Float32Array.from({ length: len }, () => ((s = (Math.imul(s, 1664525) + 1013904223) >>> 0) / 2 ** 32 - 0.5));
  const { n, k, m } = INT8_CASE;
  return { x: rnd(n * k), w: rnd(m * k) };
}

export interface BrowserRun {
  threads: number;
  build: string;
  fullTokens: number[];
  fullLogits: number[];
  generated: number[];
  nfe: number;
  /** checkEngineContract's failed checks on this engine in the browser (empty when it keeps the contract). */
  contractFailures: string[];
  mainThreadThreadsError?: string;
  /** With 2 threads: NMSE of a matmul big enough to be split between the page's workers, vs an f64 reference. */
  splitMatmulNmse?: number;
  /** y of the INT8_CASE matmul with int8 weights on this run's kernels (split over 2 threads when threads = 2). */
  int8Matmul: number[];
  /** The int8 dot form the kernels chose in this browser (WasmKernels.int8Dot). */
  int8Dot: string;
}
