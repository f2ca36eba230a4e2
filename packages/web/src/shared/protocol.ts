/**
 * What the page and its engine worker say to each other (postMessage), and the canvas frame that both backends
 * (the worker, and `fast-dllm serve` through openai-client.ts) hand to the canvas view.
 */
import type { DecodeSettings } from './settings.js';

/**
 * One state of the generated region (DESIGN §9's provisional view), the shape `fast-dllm serve` sends as
 * `fast_dllm.canvas` in its stream chunks.
 */
export interface CanvasFrame {
  /** Steps (forward passes that committed tokens) so far; 0 before the first forward. */
  step: number;
  /** Forward passes so far. */
  nfe: number;
  /** (genLength,) the decoded token of each generated position, null while it is masked. */
  tokens: (string | null)[];
  /** Generated positions (indices into `tokens`) committed by this step. */
  committed: number[];
}

/** What the local backend knows beyond a frame: where the blocks are and which one is active. */
export interface LocalFrameInfo {
  /** Tokens before the generated region (the conversation through the chat template). */
  promptLength: number;
  blockLength: number;
  /** Block-diffusion models (blocks aligned to absolute positions): generated positions in the first block. */
  firstGroup?: number;
  /** Index of the block being decoded (the last one once the generation is done). */
  block: number;
  /** Positions holding the EOS token (the padding after an answer), drawn faint. */
  stops: number[];
  /** Positions holding the end-of-turn token. */
  ends: number[];
  /** Milliseconds since the generation started, the slow-motion delay excluded. */
  elapsedMs: number;
  /** Committed generated tokens that are not EOS padding (DESIGN §5), so far. */
  contentTokens: number;
}

/** Statistics of a finished generation (DESIGN §5). */
export interface GenerationSummary {
  nfe: number;
  tokensPerForward: number;
  /** Wall time of the generation, the slow-motion delay excluded. */
  wallTimeMs: number;
  contentTokens: number;
  tokensPerSecond: number;
  stoppedEarly: boolean;
  forwardsByMode?: Record<string, number>;
}

export interface ChatMessage {
  role: 'system' | 'user' | 'assistant';
  content: string;
}

/** Where the model comes from: a URL serving a Hugging Face directory, or the files of a folder the user picked. */
export type ModelSource =
  | { kind: 'url'; /** Absolute. */ url: string; label?: string }
  | { kind: 'files'; files: { path: string; file: File }[]; label?: string };

export interface LoadOptions {
  threads: number;
  weightDType: 'f32' | 'bf16';
  /** Absolute URLs of the kernel builds folder and of the kernel worker script. */
  wasmUrl: string;
  kernelWorkerUrl: string;
}

/** Page → worker. */
export type ToWorker =
  | { type: 'load'; source: ModelSource; options: LoadOptions }
  | { type: 'generate'; id: number; messages: ChatMessage[]; settings: DecodeSettings }
  | { type: 'abort'; id: number };

/** What the page shows about a loaded model. */
export interface LoadedModelInfo {
  label: string;
  architecture: string;
  parameters: number;
  /** What the model knows, when it declares one task (its fast_dllm.json); absent for a general model. */
  knows?: string;
  vocabSize: number;
  maxPositions: number;
  /** Block-diffusion models' block size (block-causal attention); absent for LLaDA/Dream. */
  blockSize?: number;
  /** Bytes of the safetensors files. */
  fileBytes: number;
  /** Bytes of WebAssembly memory the weights take, as stored. */
  engineBytes: number;
  weightDType: 'f32' | 'bf16';
  threads: number;
  /** generation_config.json's gen_length / block_length / steps, when it has them. */
  defaults: Partial<Pick<DecodeSettings, 'genLength' | 'blockLength' | 'steps'>>;
  loadMs: number;
}

export type LoadPhase = 'reading config' | 'checking weights' | 'downloading' | 'copying weights into the engine';

/** Worker → page. */
export type FromWorker =
  | { type: 'progress'; phase: LoadPhase; done: number; total: number; unit: 'bytes' | 'files'; file?: string }
  | { type: 'loaded'; model: LoadedModelInfo }
  | { type: 'load-error'; message: string }
  | { type: 'frame'; id: number; frame: CanvasFrame; info: LocalFrameInfo; text: string }
  | { type: 'done'; id: number; text: string; stats: GenerationSummary; frame: CanvasFrame; info: LocalFrameInfo }
  | { type: 'error'; id: number; message: string; aborted?: boolean };
