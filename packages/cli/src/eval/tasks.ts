/**
 * The four benchmarks behind one interface: records → problems, a problem → its prompt text, a generation → its
 * score. `command.ts` runs any of them the same way.
 */
import { UsageError } from '../errors.js';
import {
  parseGsm8k, parseHumanEval, parseMath, parseMbpp,
  type Gsm8kProblem, type Located, type MathProblem, type MbppProblem, type ProblemOf, type TaskName,
} from './datasets.js';
import { GSM8K_SHOTS, MATH_SHOTS, MBPP_SHOTS, type Gsm8kShot, type MathShot, type MbppShot } from './exemplars.js';
import { STOP_SEQUENCES, cutAtStop, gsm8kPrompt, humanevalPrompt, mathPrompt, mbppPrompt, type PromptStyle } from './prompts.js';
import { humanevalProgram, mbppProgram, runCode } from './score/code.js';
import { scoreGsm8k } from './score/gsm8k.js';
import { scoreMath } from './score/math.js';
import type { ExecStatus, Sandbox } from './sandbox.js';

/** One problem's result, as written to the --out JSON. */
export interface ProblemScore {
  /** The answer read from the output (code tasks: the code that ran); null when none was found. */
  extracted: string | null;
  /** The primary metric (gsm8k: flexible-extract; math: exact match; code: pass@1). */
  correct: boolean;
  /** Every metric of the task, the primary one included. */
  metrics: Record<string, boolean>;
  /** Task-specific details (gsm8k: strict-match answer; code: exit status, time, stderr tail). */
  detail?: Record<string, unknown>;
}

export interface TaskInfo {
  name: TaskName;
  /** Runs model-written code (needs --allow-code-execution). */
  code: boolean;
  defaultShots: number;
  /** Exemplars available without --fewshot-data. */
  builtinShots: number;
  /** Metric names; the first is the table's accuracy column. */
  metrics: readonly string[];
  /** The `bare` prompt style applies (zero-shot question alone). */
  bare: boolean;
}

export const TASK_INFO: Record<TaskName, TaskInfo> = {
  gsm8k: { name: 'gsm8k', code: false, defaultShots: 5, builtinShots: GSM8K_SHOTS.length, metrics: ['flexible-extract', 'strict-match'], bare: true },
  math: { name: 'math', code: false, defaultShots: 4, builtinShots: MATH_SHOTS.length, metrics: ['exact-match'], bare: true },
  humaneval: { name: 'humaneval', code: true, defaultShots: 0, builtinShots: 0, metrics: ['pass@1'], bare: false },
  mbpp: { name: 'mbpp', code: true, defaultShots: 3, builtinShots: MBPP_SHOTS.length, metrics: ['pass@1'], bare: false },
};

/** A benchmark ready to run: its problems and how to prompt and score each. */
export interface EvalTask {
  info: TaskInfo;
  problems: Array<{ id: string }>;
  /** Where the exemplars came from: 'built-in', a file, or 'none'. */
  shotsSource: string;
  prompt(index: number): string;
  /** Cuts the generation at the task's stop sequences (what the harness would have generated). */
  trim(output: string): string;
  score(index: number, output: string, sandbox: Sandbox | undefined, signal?: AbortSignal): Promise<ProblemScore>;
}

type Parser<T extends TaskName> = (loc: Located, index: number) => ProblemOf[T];
const PARSERS: { [T in TaskName]: Parser<T> } = { gsm8k: parseGsm8k, math: parseMath, humaneval: parseHumanEval, mbpp: parseMbpp };

export function parseProblems<T extends TaskName>(task: T, records: Located[]): Array<ProblemOf[T]> {
  const parse = PARSERS[task] as Parser<T>;
  return records.map((r, i) => parse(r, i));
}

function pickShots<S>(k: number, builtin: readonly S[], fromFile: S[] | null, source: string | undefined): { shots: S[]; source: string } {
  if (k === 0) return { shots: [], source: 'none' };
  const pool = fromFile ?? builtin;
  if (k > pool.length) {
    throw new UsageError(fromFile
      ? `--shots ${k}: ${source} has only ${pool.length} usable exemplars`
      : `--shots ${k}: only ${pool.length} built-in exemplars; pass --fewshot-data FILE (the train split) for more`);
  }
  return { shots: pool.slice(0, k), source: fromFile ? source! : 'built-in' };
}

async function scoreCode(run: () => ReturnType<typeof runCode>): Promise<ProblemScore> {
  const r = await run();
  const status: ExecStatus = r.outcome.status;
  return {
    extracted: r.completion,
    correct: r.correct,
    metrics: { 'pass@1': r.correct },
    detail: { status, wallMs: Math.round(r.outcome.wallMs), stderr: r.outcome.stderr.slice(-500) },
  };
}

export interface TaskOptions {
  shots: number;
  style: PromptStyle;
  /** --fewshot-data records (the train/prompt split), already read. */
  fewshot?: { records: Located[]; source: string };
}

export function buildTask(name: TaskName, records: Located[], o: TaskOptions): EvalTask {
  const info = TASK_INFO[name];
  const trimWith = (stops: readonly string[]) => (s: string) => cutAtStop(s, stops);
  switch (name) {
    case 'gsm8k': {
      const problems = parseProblems('gsm8k', records);
      const file = o.fewshot ? parseProblems('gsm8k', o.fewshot.records).map((p): Gsm8kShot => ({ question: p.question, answer: p.answer })) : null;
      const { shots, source } = pickShots(o.shots, GSM8K_SHOTS, file, o.fewshot?.source);
      return {
        info, problems, shotsSource: source,
        prompt: (i) => gsm8kPrompt(problems[i].question, shots, o.style),
        trim: trimWith(STOP_SEQUENCES.gsm8k),
        score: async (i, out) => {
          const s = scoreGsm8k(out, (problems[i] as Gsm8kProblem).answer);
          return {
            extracted: s.flexible, correct: s.flexibleCorrect,
            metrics: { 'flexible-extract': s.flexibleCorrect, 'strict-match': s.strictCorrect }, detail: { strict: s.strict },
          };
        },
      };
    }
    case 'math': {
      const problems = parseProblems('math', records);
      const file = o.fewshot ? parseProblems('math', o.fewshot.records).map((p): MathShot => ({ problem: p.problem, solution: p.solution, answer: p.target })) : null;
      const { shots, source } = pickShots(o.shots, MATH_SHOTS, file, o.fewshot?.source);
      return {
        info, problems, shotsSource: source,
        prompt: (i) => mathPrompt(problems[i].problem, shots, o.style),
        trim: trimWith(STOP_SEQUENCES.math),
        score: async (i, out) => {
          const s = scoreMath(out, (problems[i] as MathProblem).target);
          return { extracted: s.extracted, correct: s.correct, metrics: { 'exact-match': s.correct } };
        },
      };
    }
    case 'humaneval': {
      if (o.shots !== 0) throw new UsageError(`--shots ${o.shots}: HumanEval is zero-shot (the prompt is the function to complete)`);
      const problems = parseProblems('humaneval', records);
      return {
        info, problems, shotsSource: 'none',
        prompt: (i) => humanevalPrompt(problems[i]),
        // Stop sequences apply to completions only; a fenced answer is cut inside humanevalProgram.
        trim: (s) => s,
        score: (i, out, sandbox, signal) => scoreCode(() => runCode(humanevalProgram(problems[i], out), needSandbox(sandbox), signal)),
      };
    }
    case 'mbpp': {
      const problems = parseProblems('mbpp', records);
      let file: MbppShot[] | null = null;
      if (o.fewshot) {
        const all = parseProblems('mbpp', o.fewshot.records);
        // The standard prompt uses tasks 2, 3 and 4 of the prompt split; any other file gives its first ones.
        const standard = [2, 3, 4].map((t) => all.find((p) => p.taskId === t)).filter((p): p is MbppProblem => p !== undefined);
        file = standard.length === 3 ? [...standard, ...all.filter((p) => !standard.includes(p))] : all;
      }
      const { shots, source } = pickShots(o.shots, MBPP_SHOTS, file, o.fewshot?.source);
      return {
        info, problems, shotsSource: source,
        prompt: (i) => mbppPrompt(problems[i], shots),
        trim: trimWith(STOP_SEQUENCES.mbpp),
        score: (i, out, sandbox, signal) => scoreCode(() => runCode(mbppProgram(problems[i], out), needSandbox(sandbox), signal)),
      };
    }
  }
}

function needSandbox(s: Sandbox | undefined): Sandbox {
  if (!s) throw new Error('internal: a code task was scored without a sandbox');
  return s;
}
