/**
 * MATH answer extraction and equivalence, following the two normalisations lm-evaluation-harness uses:
 * `hendrycks_math` (Hendrycks et al.'s string cleanup: \frac/\dfrac/\tfrac, \left/\right, units, degrees,
 * percent, 0.5 → \frac{1}{2}, a/b → \frac{a}{b}, spaces) and `minerva_math` (Lewkowycz et al.'s final-answer
 * normalisation: drop units and words, unwrap \text{}/\boxed{}, shorthand \frac12 and \sqrt2, thousands commas).
 *
 * An output's answer is the Minerva form "Final Answer: The final answer is X. I hope it is correct." when present
 * (the 4-shot prompt teaches it), else the content of its last \boxed{} (or \fbox{}). It equals the reference
 * when either normalisation makes the two strings identical. The harness's sympy equivalence is not reproduced:
 * answers equal only as expressions (2x+2 vs 2(x+1)) count as wrong, as in `hendrycks_math`.
 */

/** The content of the last \boxed{...} / \fbox{...} (nested braces balanced), or of `\boxed x` up to `$`. */
export function lastBoxed(s: string): string | null {
  const at = Math.max(s.lastIndexOf('\\boxed'), s.lastIndexOf('\\fbox'));
  if (at < 0) return null;
  const rest = s.slice(at);
  const name = rest.startsWith('\\boxed') ? '\\boxed' : '\\fbox';
  const after = rest.slice(name.length);
  if (after.startsWith(' ')) return after.slice(1).split('$')[0].trim(); // "\boxed 5$"
  if (!after.startsWith('{')) return null;
  let depth = 0;
  for (let i = 0; i < after.length; i++) {
    if (after[i] === '{') depth++;
    else if (after[i] === '}' && --depth === 0) return after.slice(1, i);
  }
  return null; // unbalanced: the output was cut off inside the box
}

// The harness's pattern, unescaped dots included (any character before " I hope").
const MINERVA_FINAL = /Final Answer: The final answer is(.*?). I hope it is correct./;

/** The answer an output gives: the Minerva final-answer sentence, else the last box; null when neither. */
export function extractMathAnswer(output: string): string | null {
  // As the harness does: the closing words are appended, so a sentence cut right after "X." still matches.
  const m = MINERVA_FINAL.exec(`${output}I hope it is correct.`);
  if (m) return m[1].trim();
  return lastBoxed(output);
}

// ---- Hendrycks et al.'s normalisation ------------------------------------------------------------------------

/** `\frac12` → `\frac{1}{2}`, `\frac1{72}` → `\frac{1}{72}`; a braced numerator is left as it is. */
function fixFracs(s: string): string {
  const parts = s.split('\\frac');
  let out = parts[0];
  for (const part of parts.slice(1)) {
    out += '\\frac';
    if (part.startsWith('{')) {
      out += part;
      continue;
    }
    if (part.length < 2) return s; // malformed: leave the whole string as it was
    const a = part[0];
    const b = part[1];
    out += b === '{' ? `{${a}}${part.slice(1)}` : `{${a}}{${b}}${part.slice(2)}`;
  }
  return out;
}

/** `3/4` (two integers) → `\frac{3}{4}`. */
function fixSlash(s: string): string {
  const m = /^(-?\d+)\/(-?\d+)$/.exec(s);
  // Only integers written canonically ("03/4" and "-0/4" stay as they are).
  if (!m || String(Number(m[1])) !== m[1] || String(Number(m[2])) !== m[2]) return s;
  return `\\frac{${m[1]}}{${m[2]}}`;
}

/** `\sqrt3` → `\sqrt{3}`: the one character after an unbraced \sqrt. */
function fixSqrt(s: string): string {
  return s.replace(/\\sqrt([^{])/g, '\\sqrt{$1}');
}

/** "5 \text{ cm}" → "5 ": a unit written after `\text{ ` is dropped. */
function dropUnits(s: string): string {
  const i = s.indexOf('\\text{ ');
  return i >= 0 ? s.slice(0, i) : s;
}

export function hendrycksNormalize(answer: string): string {
  let s = answer
    .replace(/\n/g, '')
    .replace(/\\!/g, '')
    .replace(/\\\\/g, '\\')
    .replace(/tfrac/g, 'frac')
    .replace(/dfrac/g, 'frac')
    .replace(/\\left/g, '')
    .replace(/\\right/g, '')
    .replace(/\^\{\\circ\}/g, '')
    .replace(/\^\\circ/g, '')
    .replace(/\\\$/g, '');
  s = dropUnits(s);
  s = s.replace(/\\%/g, ''); // a bare % stays, as in the original cleanup
  s = s.replace(/ \./g, ' 0.').replace(/\{\./g, '{0.');
  if (s.length === 0) return s;
  if (s.startsWith('.')) s = `0${s}`;
  // "x = 5" / "k=5" → "5": a short left-hand side names the unknown.
  const sides = s.split('=');
  if (sides.length === 2 && sides[0].length <= 2) s = sides[1];
  s = fixSqrt(s);
  s = s.replace(/ /g, '');
  s = fixFracs(s);
  if (s === '0.5') s = '\\frac{1}{2}';
  return fixSlash(s);
}

// ---- Lewkowycz et al. (Minerva)'s normalisation ---------------------------------------------------------------

const MINERVA_SUBSTITUTIONS: ReadonlyArray<readonly [string, string]> = [
  ['an ', ''], ['a ', ''], ['.$', '$'], ['\\$', ''], ['\\ ', ''], [' ', ''], ['mbox', 'text'],
  [',\\text{and}', ','], ['\\text{and}', ','], ['\\text{m}', '\\text{}'],
];

/** Words and units that carry no mathematical content in a final answer. */
const MINERVA_REMOVED: readonly string[] = [
  'square', 'ways', 'integers', 'dollars', 'mph', 'inches', 'ft', 'hours', 'km', 'units', '\\ldots', 'sue', 'points',
  'feet', 'minutes', 'digits', 'cents', 'degrees', 'cm', 'gm', 'pounds', 'meters', 'meals', 'edges', 'students',
  'childrentickets', 'multiples', '\\text{s}', '\\text{.}', '\\text{\ns}', '\\text{}^2', '\\text{}^3', '\\text{\n}',
  '\\text{}', '\\mathrm{th}', '^\\circ', '^{\\circ}', '\\;', ',\\!', '{,}', '"', '\\dots',
];

export function minervaNormalize(answer: string): string {
  let s = answer.split('=').pop()!;
  for (const [from, to] of MINERVA_SUBSTITUTIONS) s = s.split(from).join(to);
  for (const word of MINERVA_REMOVED) s = s.split(word).join('');
  s = s.replace(/^(.*?)\$(.*?)\$(.*)$/s, '$$$2$$'); // keep the first $...$ when there is one
  s = s.replace(/\\text\{(.*?)\}/g, '$1');
  s = s.replace(/\\textbf\{(.*?)\}/g, '$1');
  s = s.replace(/\\overline\{(.*?)\}/g, '$1');
  s = s.replace(/\\boxed\{(.*)\}/g, '$1');
  s = s.replace(/frac([^{])(.)/g, 'frac{$1}{$2}');
  s = s.replace(/sqrt([^{])/g, 'sqrt{$1}');
  s = s.replace(/\$/g, '');
  if (/^\d+$/.test(s.replace(/,/g, ''))) s = s.replace(/,/g, '');
  return s;
}

export interface MathScore {
  extracted: string | null;
  correct: boolean;
}

export function mathEquivalent(a: string, b: string): boolean {
  return hendrycksNormalize(a) === hendrycksNormalize(b) || minervaNormalize(a) === minervaNormalize(b);
}

/** `target` is the reference answer (the content of the solution's last box). */
export function scoreMath(output: string, target: string): MathScore {
  const extracted = extractMathAnswer(output);
  return { extracted, correct: extracted !== null && mathEquivalent(extracted, target) };
}
