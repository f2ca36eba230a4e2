/**
 * A problem the user can fix (bad flag, bad combination, unusable model dir). The CLI prints its message on
 * one line to stderr and exits with code 2, without a stack trace.
 */
export class UsageError extends Error {
  override readonly name = 'UsageError';
}

/** A failure at run time (network, hash mismatch, engine failure): one line on stderr, exit code 1. */
export class RunError extends Error {
  override readonly name = 'RunError';
}

export const EXIT_OK = 0;
export const EXIT_FAILURE = 1;
export const EXIT_USAGE = 2;
/** Conventional exit status after SIGINT (128 + 2). */
export const EXIT_INTERRUPTED = 130;
