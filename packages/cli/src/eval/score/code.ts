/**
 * Code tasks: from a generation to the program that runs with its tests, and pass@1 (one greedy sample per
 * problem: the fraction of problems whose program runs to its end and exits 0; see sandbox.ts).
 *
 * A generation in a Markdown fence (what chat models write) gives the fence's code, as Fast-dLLM's
 * post-processing of instruct models does; otherwise it is a completion cut at the harness's stop sequences.
 * HumanEval: prompt + completion, then the task's `check` function called on the entry point.
 * MBPP: the code, the setup code, then the `assert` lines of `test_list`.
 */
import type { HumanEvalProblem, MbppProblem } from '../datasets.js';
import { STOP_SEQUENCES, cutAtStop } from '../prompts.js';
import type { ExecOutcome, Sandbox } from '../sandbox.js';

/** The code of the first ``` fence (to the end of the text when the closing fence was not generated). */
export function fencedCode(text: string): string | null {
  const m = /```[ \t]*[A-Za-z0-9_+-]*[ \t]*\r?\n([\s\S]*?)(?:```|$)/.exec(text);
  return m ? m[1] : null;
}

/** Drops what chat models add after a solution: a `__main__` block and top-level example prints/asserts. */
export function dropExampleCode(code: string): string {
  const main = code.search(/^if\s+__name__\s*==/m);
  const body = main >= 0 ? code.slice(0, main) : code;
  return body.split('\n').filter((l) => !/^(print\s*\(|assert\s)/.test(l)).join('\n');
}

export interface CodeProgram {
  /** What the model wrote that is used (fence content or the completion before the stop sequences). */
  completion: string;
  program: string;
}

export function humanevalProgram(p: HumanEvalProblem, output: string): CodeProgram {
  const fenced = fencedCode(output);
  const completion = fenced !== null ? dropExampleCode(fenced) : cutAtStop(output, STOP_SEQUENCES.humaneval);
  // A fenced answer usually restates the whole function: defined after the prompt's header, it replaces it.
  const solution = fenced !== null ? `${p.prompt}\n${completion}` : `${p.prompt}${completion}`;
  return { completion, program: `${solution}\n\n${p.test}\n\ncheck(${p.entryPoint})\n` };
}

export function mbppProgram(p: MbppProblem, output: string): CodeProgram {
  const begin = output.indexOf('[BEGIN]');
  const text = cutAtStop(begin >= 0 ? output.slice(begin + '[BEGIN]'.length) : output, STOP_SEQUENCES.mbpp);
  const fenced = fencedCode(text);
  const completion = fenced !== null ? dropExampleCode(fenced) : text;
  const parts = [p.imports.join('\n'), completion, p.setup, p.tests.join('\n')].filter((s) => s.trim() !== '');
  return { completion, program: `${parts.join('\n\n')}\n` };
}

export interface CodeScore extends CodeProgram {
  correct: boolean;
  outcome: ExecOutcome;
}

export async function runCode(prog: CodeProgram, sandbox: Sandbox, signal?: AbortSignal): Promise<CodeScore> {
  const outcome = await sandbox.run(prog.program, signal);
  return { ...prog, correct: outcome.status === 'passed', outcome };
}
