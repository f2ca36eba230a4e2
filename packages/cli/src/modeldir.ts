/** Opens a model directory for the CLI: normalised config, tokenizer, and the scheduler's generate(). */
import { stat } from 'node:fs/promises';
import type { ModelDescription, TextTokenizer } from '@fast-dllm/model';
import type { DecodeManyOptions, Engine, GenerateOptions, GenerationRequest, GenerationResult } from '@fast-dllm/scheduler';
import { asUsage } from './decode.js';
import { UsageError } from './errors.js';
import { readModelScope, scopeWarning, type ModelScope } from './scope.js';

export interface ModelDir {
  dir: string;
  description: ModelDescription;
  tokenizer?: TextTokenizer;
  /** What the model was trained to answer (fast_dllm.json; a general model when absent). */
  scope: ModelScope;
  /** One stderr line when a user's text lies outside what the model knows, else null. */
  warnFor(text: string): string | null;
  /** Prompt ids for text: through the chat template (one user turn) unless `chat` is false. */
  encodePrompt(text: string, chat: boolean): Int32Array;
  run(engine: Engine, req: GenerationRequest, opts: GenerateOptions): Promise<GenerationResult>;
  /** Many requests, batched (the scheduler's decodeMany); results in input order. */
  runMany(engine: Engine, reqs: readonly GenerationRequest[], opts: DecodeManyOptions): Promise<GenerationResult[]>;
}

async function defaultModelDir(): Promise<string> {
  try {
    const m = (await import('@fast-dllm/default-model')) as Record<string, unknown>;
    const d = m.defaultModelDir;
    if (typeof d === 'string') return d;
    if (typeof d === 'function') return (d as () => string)();
  } catch {
    // fall through to the error below
  }
  throw new UsageError('no --model given and the bundled model (@fast-dllm/default-model) is not available; pass --model DIR');
}

/**
 * A model path that is not there, or not a folder, says so (a missing folder read as "config.json is missing",
 * which sent people looking for a file). `label` names where the path came from, e.g. `--model DIR`.
 */
export async function checkModelDir(path: string, label: string): Promise<void> {
  let isDir: boolean;
  try {
    isDir = (await stat(path)).isDirectory();
  } catch (e) {
    const code = (e as NodeJS.ErrnoException).code;
    if (code === 'ENOENT' || code === 'ENOTDIR') throw new UsageError(`${label}: the directory ${path} does not exist; pass a model directory (config.json, weights, tokenizer), e.g. the one 'fast-dllm pull ORG/NAME' prints`);
    throw new UsageError(`${label}: cannot open ${path} (${code ?? (e as Error).message})`);
  }
  if (!isDir) throw new UsageError(`${label}: ${path} is a file, not a directory; pass the model directory that holds config.json`);
}

export async function openModelDir(dir: string | undefined, o: { needTokenizer: boolean }): Promise<ModelDir> {
  const path = dir ?? (await defaultModelDir());
  if (dir !== undefined) await checkModelDir(dir, '--model');
  const model = await import('@fast-dllm/model');
  const { generate, decodeMany } = await import('@fast-dllm/scheduler');
  let description: ModelDescription;
  try {
    description = await model.readModelConfig(path);
  } catch (e) {
    throw new UsageError(`unusable model directory ${path}: ${(e as Error).message.split('\n')[0]}`);
  }
  let tokenizer: TextTokenizer | undefined;
  try {
    tokenizer = await model.loadTokenizer(path, { modelVocabSize: description.vocabSize });
  } catch (e) {
    if (o.needTokenizer) throw new UsageError(`cannot load the tokenizer of ${path}: ${(e as Error).message.split('\n')[0]} (use --prompt-ids to skip it)`);
  }
  const scope = await readModelScope(path);
  return {
    dir: path,
    description,
    tokenizer,
    scope,
    warnFor: (text) => scopeWarning(text, scope, tokenizer),
    encodePrompt(text, chat) {
      if (!tokenizer) throw new UsageError(`${path} has no usable tokenizer; use --prompt-ids`);
      let s = text;
      if (chat) {
        try {
          s = tokenizer.applyChatTemplate([{ role: 'user', content: text }], { addGenerationPrompt: true });
        } catch (e) {
          throw new UsageError(`chat template of ${path} failed: ${(e as Error).message.split('\n')[0]} (try --no-chat-template)`);
        }
      }
      const ids = tokenizer.encode(s, { addSpecial: !chat });
      if (ids.length === 0) throw new UsageError('the prompt encodes to no tokens');
      return Int32Array.from(ids);
    },
    async run(engine, req, opts) {
      try {
        return await generate(engine, req, opts);
      } catch (e) {
        throw asUsage(e);
      }
    },
    async runMany(engine, reqs, opts) {
      try {
        return await decodeMany(engine, reqs, opts);
      } catch (e) {
        throw asUsage(e);
      }
    },
  };
}
