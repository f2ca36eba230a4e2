/** A generation request the scheduler refuses before spending any forward pass. */
export class SchedulerConfigError extends Error {
  constructor(message: string) {
    super(message);
    this.name = 'SchedulerConfigError';
  }
}

/** The error a cancelled generation rejects with (name 'AbortError', like fetch and timers). */
export function abortError(reason?: unknown): Error {
  const e = new Error(`generation aborted${reason instanceof Error ? `: ${reason.message}` : ''}`);
  e.name = 'AbortError';
  return e;
}
