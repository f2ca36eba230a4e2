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

export async function openEngine(
  choice: (typeof ENGINE_CHOICES)[number], modelDir: string, options: EngineOptions, log: (line: string) => void,
): Promise<Engine> {
  try {
    const { engine, skipped } = await openRegistered(choice, modelDir, options);
    log(`engine: ${engine.name}${skipped.length ? ` (skipped ${skipped.map((s) => `${s.name}: ${s.reason}`).join('; ')})` : ''}`);
    return engine;
  } catch (e) {
    if (!(e instanceof NoEngineError)) throw e;
    if (e.requested !== null) throw new UsageError(`--engine ${e.requested} is not usable: ${e.refusals.map((r) => r.reason).join('; ')}`);
    throw new RunError(e.message);
  }
}
