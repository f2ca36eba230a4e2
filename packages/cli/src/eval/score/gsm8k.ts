/**
 * GSM8K answer extraction and scoring as lm-evaluation-harness's `gsm8k` task does it:
 * - strict-match: the number after the first `#### ` in the output (the format of the few-shot answers);
 * - flexible-extract: the last number-like run in the output (`-?[$0-9.,]{2,}` or `-?[0-9]+`);
 * then exact match after dropping commas, `$`, everything up to `#### ` and one trailing `.`, ignoring case,
 * applied to both the extracted answer and the reference answer.
 */

/** The harness's "no answer found" marker; it never equals a reference answer. */
export const INVALID = '[invalid]';

export function strictMatch(output: string): string {
  const m = /#### (-?[0-9.,]+)/.exec(output);
  return m ? m[1] : INVALID;
}

export function flexibleExtract(output: string): string {
  const all = [...output.matchAll(/(-?[$0-9.,]{2,})|(-?[0-9]+)/g)];
  if (all.length === 0) return INVALID;
  const last = all[all.length - 1];
  return last[1] ?? last[2];
}

/** The normalisation both sides get before exact match. */
export function normalizeGsm8k(s: string): string {
  return s
    .replace(/,/g, '')
    .replace(/\$/g, '')
    .replace(/^[\s\S]*#### /, '')
    .replace(/\.$/, '')
    .toLowerCase()
    .trim();
}

export interface Gsm8kScore {
  strict: string;
  flexible: string;
  strictCorrect: boolean;
  flexibleCorrect: boolean;
}

/** `reference` is the dataset's full answer (ending in `#### N`) or N itself. */
export function scoreGsm8k(output: string, reference: string): Gsm8kScore {
  const gold = normalizeGsm8k(reference);
  const strict = strictMatch(output);
  const flexible = flexibleExtract(output);
  return {
    strict,
    flexible,
    strictCorrect: strict !== INVALID && normalizeGsm8k(strict) === gold,
    flexibleCorrect: flexible !== INVALID && normalizeGsm8k(flexible) === gold,
  };
}
