/**
 * Engine choice with graceful fallback: `auto` tries cuda, then wasm, then reference; each provider is probed,
 * a failed probe or load falls through to the next, and stderr says which engine ran and why others did not.
 */
import type { Engine, EngineOptions, EngineProvider } from '@fast-dllm/scheduler';
import { RunError, UsageError } from './errors.js';

export type EngineName = 'cuda' | 'wasm' | 'reference';
export const ENGINE_CHOICES = ['auto', 'cuda', 'wasm', 'reference'] as const;
export const AUTO_ORDER: readonly EngineName[] = ['cuda', 'wasm', 'reference'];

/** Package and export name of each engine's provider. */
const PROVIDERS: Record<EngineName, { pkg: string; exportName: string }> = {
  cuda: { pkg: '@fast-dllm/engine-cuda', exportName: 'cudaProvider' },
  wasm: { pkg: '@fast-dllm/engine-wasm', exportName: 'wasmProvider' },
  reference: { pkg: '@fast-dllm/engine-reference', exportName: 'referenceProvider' },
};

/** Imported lazily so that a broken or unbuilt engine package never stops the others (or `pull`). */
export async function loadProvider(name: EngineName): Promise<EngineProvider | string> {
  const { pkg, exportName } = PROVIDERS[name];
  let mod: Record<string, unknown>;
  try {
    mod = (await import(pkg)) as Record<string, unknown>;
  } catch (e) {
    return `cannot load ${pkg}: ${(e as Error).message.split('\n')[0]}`;
  }
  const p = mod[exportName] as EngineProvider | undefined;
  if (!p || typeof p.probe !== 'function' || typeof p.create !== 'function') return `${pkg} does not export ${exportName}`;
  return p;
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
  const order = choice === 'auto' ? AUTO_ORDER : [choice];
  const reasons: string[] = [];
  for (const name of order) {
    const p = await loadProvider(name);
    let why: string;
    if (typeof p === 'string') {
      why = p;
    } else {
      const probe = await p.probe();
      if (probe.available) {
        try {
          const engine = await p.create(modelDir, options);
          const skipped = reasons.map((r) => ({ full: r, shown: conciseReason(r) }));
          const more = skipped.some((r) => r.shown !== r.full) ? '; --verbose for details' : '';
          log(`engine: ${name}${skipped.length ? ` (skipped ${skipped.map((r) => r.shown).join('; ')}${more})` : ''}`);
          return engine;
        } catch (e) {
          why = `failed to load the model: ${(e as Error).message.split('\n')[0]}`;
        }
      } else {
        why = probe.reason;
      }
    }
    if (choice !== 'auto') throw new UsageError(`--engine ${name} is not usable: ${why}`);
    reasons.push(`${name}: ${why}`);
  }
  throw new RunError(`no engine could run this model: ${reasons.join('; ')}`);
}
