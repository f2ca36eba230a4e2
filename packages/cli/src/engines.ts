/**
 * Engine choice for the CLI: the registry's ranked list (@fast-dllm/engines) with its graceful fallback; this
 * module only maps `--engine` to it and its refusals to the CLI's errors, and says on stderr which engine ran and why
 * the ones before it did not.
 */
import type { Engine, EngineOptions, EngineProvider } from '@fast-dllm/scheduler';
import { ENGINE_NAMES, NoEngineError, loadProvider as loadRegistered, openEngine as openRegistered, registration } from '@fast-dllm/engines';
import { RunError, UsageError } from './errors.js';

export type EngineName = string;
export const ENGINE_CHOICES = ['auto', ...ENGINE_NAMES] as const;
/** The order `auto` tries: the registry's rank. */
export const AUTO_ORDER: readonly EngineName[] = ENGINE_NAMES;

/** An offered engine's provider, or why it cannot be had. */
export async function loadProvider(name: EngineName): Promise<EngineProvider | string> {
  const reg = registration(name);
  return reg ? loadRegistered(reg) : `no engine named '${name}'`;
}

/** Set once by main from the global --verbose flag: the engine line gives each skip reason in full. */
let verbose = false;
export function setVerbose(v: boolean): void {
  verbose = v;
}

/**
 * A skip reason for the engine line: without --verbose, its lead (the cause; providers put it first) without the
 * detail in a trailing parenthesis, so the line stays short enough to read on a terminal.
 */
export function conciseReason(reason: string): string {
  if (verbose) return reason;
  const m = /^(.+?) \(.*\)$/.exec(reason);
  return m ? m[1] : reason;
}

export async function openEngine(
  choice: (typeof ENGINE_CHOICES)[number], modelDir: string, options: EngineOptions, log: (line: string) => void,
): Promise<Engine> {
  try {
    const { engine, skipped } = await openRegistered(choice, modelDir, options);
    const shown = skipped.map((s) => ({ full: s.reason, shown: conciseReason(s.reason), name: s.name }));
    const more = shown.some((r) => r.shown !== r.full) ? '; --verbose for details' : '';
    log(`engine: ${engine.name}${shown.length ? ` (skipped ${shown.map((s) => `${s.name}: ${s.shown}`).join('; ')}${more})` : ''}`);
    return engine;
  } catch (e) {
    if (!(e instanceof NoEngineError)) throw e;
    if (e.requested !== null) throw new UsageError(`--engine ${e.requested} is not usable: ${e.refusals.map((r) => r.reason).join('; ')}`);
    throw new RunError(e.message);
  }
}
