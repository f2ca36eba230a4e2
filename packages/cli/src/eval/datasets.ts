/**
 * Readers for the benchmarks' official files: JSONL (GSM8K, HumanEval, MBPP), gzipped JSONL (HumanEval ships as
 * HumanEval.jsonl.gz), Parquet (the Hugging Face exports of GSM8K, MBPP, MATH), JSON (one object or an array) and
 * the MATH release's directory tree of one-problem JSON files (MATH/test/<subject>/<n>.json).
 *
 * Each record keeps where it came from (`file:line`, `file row n`, `dir/sub/n.json`) so that a bad record is
 * reported where the user can find it; task-specific checks (the fields each benchmark needs) follow in
 * `parseProblems`.
 */
import { readdir, readFile, stat } from 'node:fs/promises';
import { join, relative } from 'node:path';
import { gunzipSync } from 'node:zlib';
import { UsageError } from '../errors.js';
import { lastBoxed } from './score/math.js';

export type TaskName = 'gsm8k' | 'math' | 'humaneval' | 'mbpp';
export const TASKS: readonly TaskName[] = ['gsm8k', 'math', 'humaneval', 'mbpp'];

/** One record of a dataset file and where it is (for error messages). */
export interface Located {
  record: Record<string, unknown>;
  where: string;
}

const GZIP_MAGIC = [0x1f, 0x8b];
const PARQUET_MAGIC = 'PAR1';

/** Reads every record of a dataset path, in file order (directories: sorted by relative path). */
export async function readRecords(path: string): Promise<Located[]> {
  let st;
  try {
    st = await stat(path);
  } catch {
    throw new UsageError(`${path}: no such file or directory`);
  }
  if (st.isDirectory()) return readJsonTree(path);
  const bytes = await readFile(path);
  if (bytes.length >= 4 && bytes.subarray(0, 4).toString('latin1') === PARQUET_MAGIC) return readParquet(path, bytes);
  let text: string;
  let name = path;
  if (bytes[0] === GZIP_MAGIC[0] && bytes[1] === GZIP_MAGIC[1]) {
    try {
      text = gunzipSync(bytes).toString('utf8');
    } catch (e) {
      throw new UsageError(`${path}: a damaged gzip file (${(e as Error).message})`);
    }
    name = path.replace(/\.gz$/i, '');
  } else {
    text = bytes.toString('utf8');
  }
  return /\.json$/i.test(name) ? readJson(path, text) : readJsonl(path, text);
}

function readJsonl(path: string, text: string): Located[] {
  const out: Located[] = [];
  const lines = text.split('\n');
  lines.forEach((line, i) => {
    if (line.trim() === '') return;
    let v: unknown;
    try {
      v = JSON.parse(line);
    } catch (e) {
      throw new UsageError(`${path}:${i + 1}: not valid JSON (${(e as Error).message}); JSONL needs one JSON object per line`);
    }
    if (!isObject(v)) throw new UsageError(`${path}:${i + 1}: expected a JSON object, got ${kind(v)}`);
    out.push({ record: v, where: `${path}:${i + 1}` });
  });
  return out;
}

/** A .json file: one object (a MATH problem file) or an array of objects. */
function readJson(path: string, text: string): Located[] {
  let v: unknown;
  try {
    v = JSON.parse(text);
  } catch (e) {
    throw new UsageError(`${path}: not valid JSON (${(e as Error).message})`);
  }
  if (isObject(v)) return [{ record: v, where: path }];
  if (Array.isArray(v)) {
    return v.map((r, i) => {
      if (!isObject(r)) throw new UsageError(`${path}: element ${i} is ${kind(r)}, expected a JSON object`);
      return { record: r, where: `${path} element ${i}` };
    });
  }
  throw new UsageError(`${path}: expected a JSON object or an array of objects, got ${kind(v)}`);
}

/** The MATH release: <dir>/<subject>/<n>.json, one problem per file; read in a stable (sorted) order. */
async function readJsonTree(root: string): Promise<Located[]> {
  const files: string[] = [];
  const walk = async (dir: string): Promise<void> => {
    const entries = await readdir(dir, { withFileTypes: true });
    for (const e of entries) {
      const p = join(dir, e.name);
      if (e.isDirectory()) await walk(p);
      else if (e.isFile() && /\.json$/i.test(e.name)) files.push(p);
    }
  };
  await walk(root);
  if (files.length === 0) throw new UsageError(`${root}: a directory without .json files (the MATH release keeps one problem per <subject>/<n>.json)`);
  files.sort((a, b) => compareNatural(relative(root, a), relative(root, b)));
  const out: Located[] = [];
  for (const f of files) out.push(...readJson(f, await readFile(f, 'utf8')));
  return out;
}

/** algebra/2.json before algebra/10.json. */
function compareNatural(a: string, b: string): number {
  return a.localeCompare(b, 'en', { numeric: true });
}

async function readParquet(path: string, bytes: Buffer): Promise<Located[]> {
  const { parquetReadObjects } = await import('hyparquet');
  const { compressors } = await import('hyparquet-compressors');
  const ab = bytes.buffer.slice(bytes.byteOffset, bytes.byteOffset + bytes.byteLength) as ArrayBuffer;
  let rows: Record<string, unknown>[];
  try {
    rows = await parquetReadObjects({ file: ab, compressors, rowFormat: 'object' });
  } catch (e) {
    throw new UsageError(`${path}: cannot read this Parquet file (${(e as Error).message})`);
  }
  return rows.map((r, i) => ({ record: plain(r) as Record<string, unknown>, where: `${path} row ${i}` }));
}

/** Parquet INT64 arrives as bigint; ids and counts here fit a number. */
function plain(v: unknown): unknown {
  if (typeof v === 'bigint') return Number(v);
  if (Array.isArray(v)) return v.map(plain);
  if (isObject(v)) return Object.fromEntries(Object.entries(v).map(([k, x]) => [k, plain(x)]));
  return v;
}

export function isObject(v: unknown): v is Record<string, unknown> {
  return typeof v === 'object' && v !== null && !Array.isArray(v) && !(v instanceof Uint8Array);
}

function kind(v: unknown): string {
  return v === null ? 'null' : Array.isArray(v) ? 'an array' : typeof v === 'object' ? 'an object' : `a ${typeof v}`;
}

// ---- the four benchmarks' records -------------------------------------------------------------------------

export interface Gsm8kProblem {
  id: string;
  question: string;
  /** The reference solution; its last line is `#### N`. */
  answer: string;
  /** N, as written after `#### `. */
  target: string;
}

export interface MathProblem {
  id: string;
  problem: string;
  solution: string;
  /** The content of the solution's last \boxed{} (or the record's `answer` when the solution has none). */
  target: string;
}

export interface HumanEvalProblem {
  id: string;
  /** Function header and docstring: the text the model completes. */
  prompt: string;
  /** Defines `check(candidate)`. */
  test: string;
  entryPoint: string;
  canonicalSolution?: string;
}

export interface MbppProblem {
  id: string;
  /** Numeric task id (the few-shot exemplars are tasks 2, 3 and 4). */
  taskId: number;
  text: string;
  code: string;
  tests: string[];
  setup: string;
  /** sanitized MBPP's `test_imports`: lines to run before the tests. */
  imports: string[];
}

export interface ProblemOf {
  gsm8k: Gsm8kProblem;
  math: MathProblem;
  humaneval: HumanEvalProblem;
  mbpp: MbppProblem;
}

function str(loc: Located, task: string, field: string, alternatives: string[] = []): string {
  for (const f of [field, ...alternatives]) {
    const v = loc.record[f];
    if (typeof v === 'string') return v;
  }
  const keys = Object.keys(loc.record).join(', ') || 'none';
  const names = [field, ...alternatives].map((f) => `"${f}"`).join(' or ');
  throw new UsageError(`${loc.where}: a ${task} record needs a string field ${names} (its fields: ${keys}); is --task right?`);
}

function optionalId(loc: Located, fallback: string, ...fields: string[]): string {
  for (const f of fields) {
    const v = loc.record[f];
    if (typeof v === 'string' || typeof v === 'number') return String(v);
  }
  return fallback;
}

/** `#### 1,234` → `1,234` (the last such line). */
export function gsm8kTarget(answer: string): string | null {
  const m = [...answer.matchAll(/####\s*(.+?)\s*$/gm)];
  return m.length ? m[m.length - 1][1] : null;
}

export function parseGsm8k(loc: Located, index: number): Gsm8kProblem {
  const question = str(loc, 'GSM8K', 'question');
  const answer = str(loc, 'GSM8K', 'answer');
  const target = gsm8kTarget(answer);
  if (target === null) throw new UsageError(`${loc.where}: the GSM8K answer has no final "#### N" line`);
  return { id: optionalId(loc, `gsm8k-${index}`, 'id', 'idx'), question, answer, target };
}

export function parseMath(loc: Located, index: number): MathProblem {
  const problem = str(loc, 'MATH', 'problem');
  const solution = str(loc, 'MATH', 'solution');
  const answer = loc.record.answer;
  const target = lastBoxed(solution) ?? (typeof answer === 'string' ? answer : null);
  if (target === null) throw new UsageError(`${loc.where}: the MATH solution has no \\boxed{} answer (and the record no "answer" field)`);
  const fallback = loc.where.endsWith('.json') ? loc.where : `math-${index}`;
  return { id: optionalId(loc, fallback, 'unique_id', 'id'), problem, solution, target };
}

export function parseHumanEval(loc: Located, index: number): HumanEvalProblem {
  const entryPoint = str(loc, 'HumanEval', 'entry_point');
  if (!/^[A-Za-z_][A-Za-z0-9_]*$/.test(entryPoint)) throw new UsageError(`${loc.where}: entry_point '${entryPoint}' is not a Python identifier`);
  const canonical = loc.record.canonical_solution;
  return {
    id: optionalId(loc, `humaneval-${index}`, 'task_id'),
    prompt: str(loc, 'HumanEval', 'prompt'),
    test: str(loc, 'HumanEval', 'test'),
    entryPoint,
    ...(typeof canonical === 'string' ? { canonicalSolution: canonical } : {}),
  };
}

function stringList(loc: Located, field: string, required: boolean): string[] {
  const v = loc.record[field];
  if (v === undefined || v === null) {
    if (required) throw new UsageError(`${loc.where}: an MBPP record needs "${field}", a list of strings`);
    return [];
  }
  if (!Array.isArray(v) || !v.every((x) => typeof x === 'string')) throw new UsageError(`${loc.where}: MBPP "${field}" must be a list of strings`);
  return v as string[];
}

export function parseMbpp(loc: Located, index: number): MbppProblem {
  const rawId = loc.record.task_id;
  const taskId = typeof rawId === 'number' ? rawId : typeof rawId === 'string' && /^\d+$/.test(rawId) ? Number(rawId) : NaN;
  const tests = stringList(loc, 'test_list', true);
  if (tests.length === 0) throw new UsageError(`${loc.where}: MBPP "test_list" is empty`);
  const setup = loc.record.test_setup_code;
  return {
    id: Number.isNaN(taskId) ? `mbpp-${index}` : String(taskId),
    taskId,
    // The full MBPP calls the task "text"; sanitized MBPP calls it "prompt".
    text: str(loc, 'MBPP', 'text', ['prompt']),
    code: str(loc, 'MBPP', 'code'),
    tests,
    setup: typeof setup === 'string' ? setup : '',
    imports: stringList(loc, 'test_imports', false),
  };
}
