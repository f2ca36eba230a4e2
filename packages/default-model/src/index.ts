/**
 * @fast-dllm/default-model: the bundled small LLaDA-architecture model (two-digit addition answered column by column),
 * its held-out eval set and an exact-match scorer.
 */
import { readFileSync } from 'node:fs';
import { fileURLToPath } from 'node:url';

/** Absolute path of the bundled checkpoint directory (config.json, model.safetensors, tokenizer files). Works from src/ and dist/. */
export const defaultModelDir: string = fileURLToPath(new URL('../model/', import.meta.url)).replace(/[\\/]$/, '');

/** Absolute path of the committed held-out eval set. */
export const defaultEvalPath: string = fileURLToPath(new URL('../eval/eval.jsonl', import.meta.url));

export interface EvalItem {
  id: string;
  /** User message; wrap it in the chat template before generating. */
  prompt: string;
  /** Expected final answer, digits only (e.g. "168"). */
  answer: string;
  /** The full expected step-by-step answer text the model was trained to produce. */
  answer_text: string;
  /** The two addends; used to check the item lies in the eval partition. */
  operands: [number, number];
  /**
   * How an output is scored: `final_answer` (default) compares the number after the last "answer:" with `answer`;
   * `number_list` compares every number of the output, in order and comma-joined, with `answer` (the chain model's
   * counting task, whose answer is the whole list).
   */
  score?: 'final_answer' | 'number_list';
}

/** Reads a JSONL eval set (default: the bundled one). Throws naming the file and line on a malformed record. */
export function loadEvalSet(path: string = defaultEvalPath): EvalItem[] {
  const lines = readFileSync(path, 'utf8').split('\n');
  const items: EvalItem[] = [];
  lines.forEach((line, i) => {
    if (line.trim() === '') return;
    let rec: unknown;
    try {
      rec = JSON.parse(line);
    } catch (e) {
      throw new Error(`${path}:${i + 1}: not valid JSON (${(e as Error).message}); each line must be one eval record`);
    }
    const r = rec as Partial<EvalItem>;
    if (typeof r.id !== 'string' || typeof r.prompt !== 'string' || typeof r.answer !== 'string') {
      throw new Error(`${path}:${i + 1}: eval record needs string fields "id", "prompt" and "answer"`);
    }
    if (r.score !== undefined && r.score !== 'final_answer' && r.score !== 'number_list') {
      throw new Error(`${path}:${i + 1}: "score" must be "final_answer" or "number_list"; got ${JSON.stringify(r.score)}`);
    }
    items.push(r as EvalItem);
  });
  return items;
}

/**
 * The final answer in a generated text: the number after the last "answer:" (the bundled tokenizer decodes
 * "answer : 1 6 8" as "answer: 168", so a number is one run of digits). Returns null when there is none.
 */
export function extractAnswer(text: string): string | null {
  const matches = [...text.matchAll(/answer\s*:?\s*(-?\d+)/gi)];
  if (matches.length === 0) return null;
  return matches[matches.length - 1][1];
}

/** 1 when the generated text's answer (the item's `score` says which part) equals the item's answer, else 0. */
export function scoreExactMatch(outputText: string, item: Pick<EvalItem, 'answer' | 'score'>): 0 | 1 {
  const want = item.answer.replace(/\s+/g, '');
  if (item.score === 'number_list') return (outputText.match(/\d+/g) ?? []).join(',') === want ? 1 : 0;
  const got = extractAnswer(outputText);
  return got !== null && got === want ? 1 : 0;
}

/**
 * Train/eval partition of the generator (train/task.py `is_eval_pair`): an operand pair is held out iff the
 * 32-bit multiplicative hash of a*1000+b is divisible by 10. Training only ever samples pairs where this is false.
 */
export function isEvalPair(a: number, b: number): boolean {
  const h = Math.imul(a * 1000 + b, 2654435761 | 0) >>> 0;
  return h % 10 === 0;
}
