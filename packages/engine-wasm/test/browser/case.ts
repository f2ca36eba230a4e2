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
}
