// What the browser test runs, shared by the page bundle (entry.ts) and the Node side (../browser.test.ts).
export const PROMPT = [3, 17, 42, 8, 99, 5, 61];
export const GEN = 16;

export interface BrowserRun {
  threads: number;
  build: string;
  fullTokens: number[];
  fullLogits: number[];
  generated: number[];
  nfe: number;
  mainThreadThreadsError?: string;
  /** With 2 threads: NMSE of a matmul big enough to be split between the page's workers, vs an f64 reference. */
  splitMatmulNmse?: number;
}
