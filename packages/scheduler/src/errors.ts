/**
 * The decoding choices an error can be about, in the scheduler's neutral names (DecodingChoices, resolve.ts, and
 * GenerationRequest, request.ts, share them). Front-ends map each to their own syntax (a flag, a JSON field, a form
 * field) instead of parsing messages.
 */
export type ChoiceField =
  | 'prompt' | 'genLength' | 'blockLength' | 'steps' | 'rule' | 'threshold' | 'factor' | 'remasking' | 'alg' | 'cache'
  | 'blockCache' | 'subBlockLength' | 'stepsPerBlock' | 'refreshEvery' | 'earlyStop' | 'entropyBound' | 'suffixWindow' | 'earlyCommit' | 'draftVerify'
  | 'elasticCache' | 'temperature' | 'seed' | 'engine';

/** How a front-end names a field (e.g. genLength → '--gen-length' or 'max_tokens'); the neutral name when absent. */
export type FieldNames = Partial<Record<ChoiceField, string>>;

/**
 * Why a choice is refused: a value out of its range or rule (`invalid`), two choices that contradict each other
 * (`conflict`), or a choice the model's family does not take (`unsupported`).
 */
export type ChoiceProblem = 'invalid' | 'conflict' | 'unsupported';

/**
 * A generation request or a set of decoding choices the scheduler refuses before spending any forward pass.
 * `field` is the choice it is about (null: the request as a whole) and `problem` what is wrong with it; the
 * message names fields through `render`, so `messageWith(names)` says the same thing in a front-end's own names.
 */
export class SchedulerConfigError extends Error {
  readonly field: ChoiceField | null;
  readonly problem: ChoiceProblem;
  private readonly render: ((name: (f: ChoiceField) => string) => string) | null;

  constructor(message: string | ((name: (f: ChoiceField) => string) => string), field: ChoiceField | null = null, problem: ChoiceProblem = 'invalid') {
    super(typeof message === 'string' ? message : message((f) => f));
    this.name = 'SchedulerConfigError';
    this.field = field;
    this.problem = problem;
    this.render = typeof message === 'string' ? null : message;
  }

  /** The message with every field it names written as `names` has it. */
  messageWith(names: FieldNames): string {
    return this.render ? this.render((f) => names[f] ?? f) : this.message;
  }
}

/** The error a cancelled generation rejects with (name 'AbortError', like fetch and timers). */
export function abortError(reason?: unknown): Error {
  const e = new Error(`generation aborted${reason instanceof Error ? `: ${reason.message}` : ''}`);
  e.name = 'AbortError';
  return e;
}
