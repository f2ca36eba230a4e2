/**
 * Prompt texts in lm-evaluation-harness's formats (before the chat template; with it, the whole text becomes
 * one user turn, as Fast-dLLM's evaluation of the instruct models does). Exemplars are joined by a blank line.
 *
 * gsm8k      `Question: {question}\nAnswer: {answer}` per shot, then `Question: {question}\nAnswer:`
 * math       Minerva: `Problem:\n{problem}\n\nSolution: {solution}\nFinal Answer: The final answer is ${x}$. I hope it is correct.`
 *            per shot, then `Problem:\n{problem}\n\nSolution:`
 * humaneval  the function header and docstring, zero-shot
 * mbpp       `You are an expert Python programmer, and here is your task: {text} Your code should pass these tests:\n\n{tests}\n[BEGIN]\n{code}\n[DONE]`
 *            per shot, then the same up to `[BEGIN]\n`
 * The `bare` style (zero-shot gsm8k and math) sends the question or problem alone.
 */
import type { HumanEvalProblem, MbppProblem } from './datasets.js';
import type { Gsm8kShot, MathShot, MbppShot } from './exemplars.js';

export type PromptStyle = 'labeled' | 'bare';

const SHOT_SEPARATOR = '\n\n';

function withShots(shots: string[], query: string): string {
  return [...shots, query].join(SHOT_SEPARATOR);
}

export function gsm8kPrompt(question: string, shots: readonly Gsm8kShot[], style: PromptStyle): string {
  if (style === 'bare') return question;
  return withShots(shots.map((s) => `Question: ${s.question}\nAnswer: ${s.answer}`), `Question: ${question}\nAnswer:`);
}

export function minervaFinalAnswer(answer: string): string {
  return `Final Answer: The final answer is $${answer}$. I hope it is correct.`;
}

export function mathPrompt(problem: string, shots: readonly MathShot[], style: PromptStyle): string {
  if (style === 'bare') return problem;
  return withShots(
    shots.map((s) => `Problem:\n${s.problem}\n\nSolution: ${s.solution}\n${minervaFinalAnswer(s.answer)}`),
    `Problem:\n${problem}\n\nSolution:`,
  );
}

export function humanevalPrompt(p: HumanEvalProblem): string {
  return p.prompt;
}

function mbppTask(p: Pick<MbppProblem, 'text' | 'tests'>): string {
  return `You are an expert Python programmer, and here is your task: ${p.text} Your code should pass these tests:\n\n${p.tests.join('\n')}\n[BEGIN]\n`;
}

export function mbppPrompt(p: MbppProblem, shots: readonly MbppShot[]): string {
  return withShots(shots.map((s) => `${mbppTask(s)}${s.code}\n[DONE]`), mbppTask(p));
}

/** Text after which the harness stops reading a generation, per task (completion-style prompts). */
export const STOP_SEQUENCES = {
  gsm8k: ['Question:', '</s>', '<|im_end|>'],
  math: ['Problem:'],
  humaneval: ['\nclass', '\ndef', '\n#', '\nif', '\nprint'],
  mbpp: ['[DONE]'],
} as const;

/** The text before the first stop sequence. */
export function cutAtStop(text: string, stops: readonly string[]): string {
  let end = text.length;
  for (const s of stops) {
    const i = text.indexOf(s);
    if (i >= 0 && i < end) end = i;
  }
  return text.slice(0, end);
}
