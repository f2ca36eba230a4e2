/**
 * The engine registry (DESIGN §0, §12): every engine provider in one ranked list, built here and nowhere else. The
 * CLI (generate, chat, bench, eval, serve) opens engines through it and the conformance harness runs every entry,
 * so adding an engine is one registration here plus the harness. Importing this module imports no engine: each
 * registration loads its package only when asked, so a broken or unbuilt engine never stops the others.
 */
import type { Engine, EngineOptions, EngineProvider } from '@fast-dllm/scheduler';

export interface EngineRegistration {
  /** What users name it (`--engine <name>`); the provider's own name. */
  name: string;
  /** Higher is tried first by `auto` (faster engines first; the float64 oracle last). */
  rank: number;
  /** One line for help texts. */
  description: string;
  /** Offered to users (`auto`, `--engine`); false: tests only (the CUDA emulator). */
  offered: boolean;
  /** Imports the engine package and returns its provider. */
  load(): Promise<EngineProvider>;
}

/** The registrations, best first. */
export const ENGINES: readonly EngineRegistration[] = [
  { name: 'cuda', rank: 30, offered: true, description: 'CUDA kernels on an NVIDIA GPU', load: async () => (await import('@fast-dllm/engine-cuda')).cudaProvider },
  { name: 'wasm', rank: 20, offered: true, description: 'WebAssembly SIMD on the CPU (f32, bf16, int8)', load: async () => (await import('@fast-dllm/engine-wasm')).wasmProvider },
  { name: 'reference', rank: 10, offered: true, description: 'float64 TypeScript: the oracle, slow', load: async () => (await import('@fast-dllm/engine-reference')).referenceProvider },
  {
    name: 'cuda-emulator', rank: 0, offered: false, description: "the CUDA engine's kernels on a CPU emulator of CUDA (tests)",
    load: async () => (await import('@fast-dllm/engine-cuda')).cudaEmulatorProvider,
  },
].sort((a, b) => b.rank - a.rank);

/** The engines users may name, best first. */
export const ENGINE_NAMES: readonly string[] = ENGINES.filter((e) => e.offered).map((e) => e.name);

/** Why one engine could not run: it would not load, its probe said no, or it refused the model. */
export interface EngineRefusal {
  name: string;
  reason: string;
}

/** No engine could run the model (`requested`: the one the user named, or null for auto); each with its reason. */
export class NoEngineError extends Error {
  constructor(readonly requested: string | null, readonly refusals: readonly EngineRefusal[]) {
    super(requested !== null
      ? `engine '${requested}' is not usable: ${refusals.map((r) => r.reason).join('; ')}`
      : `no engine could run this model: ${refusals.map((r) => `${r.name}: ${r.reason}`).join('; ')}`);
    this.name = 'NoEngineError';
  }
}

/** The registration's provider, or why it cannot be had (a package that fails to import, a malformed export). */
export async function loadProvider(reg: EngineRegistration): Promise<EngineProvider | string> {
  let p: EngineProvider;
  try {
    p = await reg.load();
  } catch (e) {
    return `cannot load its package: ${(e as Error).message.split('\n')[0]}`;
  }
  if (!p || typeof p.probe !== 'function' || typeof p.create !== 'function') return 'its package exports no provider';
  return p;
}

/** The registration named `name` (offered or test-only), or undefined. */
export function registration(name: string): EngineRegistration | undefined {
  return ENGINES.find((e) => e.name === name);
}

export interface OpenedEngine {
  engine: Engine;
  /** The engines tried before it, best first, and why each did not run (empty when the first ran). */
  skipped: EngineRefusal[];
}

/**
 * Opens `choice` ('auto': the offered engines by rank, each probed, falling through on a failed probe or load, in
 * the spirit of onnxruntime's resolveBackend) on a model directory. Throws NoEngineError with every reason.
 */
export async function openEngine(choice: string, modelDir: string, options: EngineOptions = {}): Promise<OpenedEngine> {
  const regs = choice === 'auto' ? ENGINES.filter((e) => e.offered) : [registration(choice)].filter((e): e is EngineRegistration => e !== undefined);
  if (regs.length === 0) throw new NoEngineError(choice, [{ name: choice, reason: `no such engine (${ENGINE_NAMES.join(', ')})` }]);
  const skipped: EngineRefusal[] = [];
  for (const reg of regs) {
    const p = await loadProvider(reg);
    let reason: string;
    if (typeof p === 'string') {
      reason = p;
    } else {
      const probe = await p.probe();
      if (probe.available) {
        try {
          return { engine: await p.create(modelDir, options), skipped };
        } catch (e) {
          reason = `failed to load the model: ${(e as Error).message.split('\n')[0]}`;
        }
      } else {
        reason = probe.reason;
      }
    }
    skipped.push({ name: reg.name, reason });
  }
  throw new NoEngineError(choice === 'auto' ? null : choice, skipped);
}
