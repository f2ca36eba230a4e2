/**
 * What a model was trained to answer, for telling a person who asks something else. A model directory may hold
 * `fast_dllm.json` (the bundled models do; their train/task.py `model_scope` writes it):
 *
 *   { "conversation": "single_question",          // trained on one user question: no system message, no history
 *     "domain": { "summary": "...",                // one phrase: what it answers
 *                 "prompt_pattern": "^...$",       // a prompt it was trained on matches this (JS RegExp source)
 *                 "number_range": [lo, hi] } }     // and every number the pattern captures lies in lo..hi
 *
 * Any other model is taken as a general one: full conversations, no domain check. Unknown tokens are checked for
 * every model that has an unknown token.
 */
import { readFile } from 'node:fs/promises';
import { join } from 'node:path';
import type { TextTokenizer } from '@fast-dllm/model';
import { UsageError } from './errors.js';

export interface ModelScope {
  /** True when the model saw one question per conversation: send it only the latest question. */
  singleQuestion: boolean;
  domain?: { summary: string; pattern: RegExp; numberRange: [number, number] };
}

export const GENERAL_SCOPE: ModelScope = { singleQuestion: false };

/** Where a person gets a general model; said with every out-of-scope warning. */
export const REAL_MODEL_HINT = 'For a real model (LLaDA, Dream, Fast-dLLM v2 or SDAR, from the Hugging Face hub): fast-dllm pull ORG/NAME, then --model with the folder it prints.';

export async function readModelScope(dir: string): Promise<ModelScope> {
  const file = join(dir, 'fast_dllm.json');
  let text: string;
  try {
    text = await readFile(file, 'utf8');
  } catch (e) {
    if ((e as NodeJS.ErrnoException).code === 'ENOENT') return GENERAL_SCOPE;
    throw new UsageError(`cannot read ${file}: ${(e as Error).message}`);
  }
  const bad = (what: string) => new UsageError(`${file}: ${what}; fix the file or delete it (a model without it is taken as a general one)`);
  let v: Record<string, unknown>;
  try {
    v = JSON.parse(text) as Record<string, unknown>;
  } catch {
    throw bad('not valid JSON');
  }
  if (typeof v !== 'object' || v === null || Array.isArray(v)) throw bad('expected a JSON object');
  const conv = v.conversation ?? 'full';
  if (conv !== 'single_question' && conv !== 'full') throw bad(`"conversation" must be "single_question" or "full", got ${JSON.stringify(conv)}`);
  const scope: ModelScope = { singleQuestion: conv === 'single_question' };
  if (v.domain !== undefined) {
    const d = v.domain as Record<string, unknown>;
    if (typeof d !== 'object' || d === null) throw bad('"domain" must be an object');
    if (typeof d.summary !== 'string' || d.summary.trim() === '') throw bad('"domain.summary" must be a non-empty string');
    if (typeof d.prompt_pattern !== 'string') throw bad('"domain.prompt_pattern" must be a regular expression string');
    let pattern: RegExp;
    try {
      pattern = new RegExp(d.prompt_pattern);
    } catch (e) {
      throw bad(`"domain.prompt_pattern" is not a regular expression (${(e as Error).message})`);
    }
    const r = d.number_range;
    if (!Array.isArray(r) || r.length !== 2 || !r.every((x) => Number.isInteger(x)) || r[0] > r[1]) throw bad('"domain.number_range" must be [lo, hi], integers with lo <= hi');
    scope.domain = { summary: d.summary, pattern, numberRange: [r[0], r[1]] };
  }
  return scope;
}

/** Words of `text` that the tokenizer turns into its unknown token (none when it has no unknown token). */
export function unknownWords(text: string, tok: TextTokenizer): string[] {
  const unk = tok.unkId;
  if (unk === undefined) return [];
  const words = text.split(/\s+/).filter(Boolean);
  return [...new Set(words.filter((w) => tok.encode(w, { addSpecial: false }).includes(unk)))];
}

/**
 * One line for stderr when a user's text lies outside what the model knows (unknown words, or outside its
 * declared domain), else null. The answer is still generated: the line says how far to trust it.
 */
export function scopeWarning(text: string, scope: ModelScope, tok: TextTokenizer | undefined): string | null {
  const unknown = tok ? unknownWords(text, tok) : [];
  const listed = `${unknown.slice(0, 5).map((w) => `'${w}'`).join(', ')}${unknown.length > 5 ? ` and ${unknown.length - 5} more` : ''}`;
  const d = scope.domain;
  if (d) {
    const m = d.pattern.exec(text.trim());
    const inRange = m !== null && m.slice(1).every((g) => g === undefined || !/^-?\d+$/.test(g) || (Number(g) >= d.numberRange[0] && Number(g) <= d.numberRange[1]));
    if (!inRange || unknown.length) {
      return `warning: this model knows only ${d.summary}${unknown.length ? `, and its tokenizer does not know ${listed}` : ''}; its answer to anything else is noise. ${REAL_MODEL_HINT}`;
    }
    return null;
  }
  return unknown.length ? `warning: this model's tokenizer does not know ${listed}: they reach the model as its unknown token, so the answer may miss them` : null;
}
