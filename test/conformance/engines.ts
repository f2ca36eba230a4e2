/**
 * The engines the conformance harness runs, in the spirit of ggml's test-backend-ops: every check in
 * test/conformance/*.test.ts runs for every entry here, and the entries are every registration of the engine
 * registry (@fast-dllm/engines), not a list of their own. An engine with measured variants (weight storage, threads,
 * kernels) runs each (VARIANTS); a newly registered one runs its default settings at f32 tolerances. An entry whose
 * provider cannot run on this machine (no GPU, addon not built) or lacks a capability a check needs is reported as
 * "not supported: <reason>", never filtered by its name.
 */
import { fileURLToPath } from 'node:url';
import { ENGINES, loadProvider } from '@fast-dllm/engines';
import { ModelNotSupportedError, type Engine, type EngineCapabilities, type EngineOptions, type EngineProvider } from '@fast-dllm/scheduler';

export interface EngineEntry {
  label: string;
  provider: EngineProvider;
  options: EngineOptions & { simd?: boolean; layersPerShard?: number };
  /**
   * Largest error of reported logits against float64 (max |a - b| / max |b|) that the entry may show; the
   * measured spread that justified it is in `measured`.
   */
  tolerance: number;
  measured: string;
  /**
   * Decision margin (probability) below which a token may legitimately differ from the float64 driver's. Infinity
   * for entries whose arithmetic is deliberately lossy (bf16 activations): their tokens are compared with
   * themselves (batching) but not with float64.
   */
  delta: number;
  /** Why the provider cannot run here, when it cannot (filled in by probe). */
  unavailable?: string;
}

export const FIXTURES = fileURLToPath(new URL('../fixtures', import.meta.url));
export const modelDir = (name: string) => `${FIXTURES}/models/${name}`;

/**
 * The golden fixtures: tiny random LLaDA and Dream models, f32 and bf16, one sharded; LLaDA-MoE (DESIGN §13) with a
 * dense layer, shared expert and expert bias, and with partial rotary and clip_qkv; dllm's A2D MDLM (DESIGN §15) on
 * Qwen2 and Qwen3 layers (tied, unshifted, full attention).
 */
export const MODELS = ['llada-tiny-f32', 'llada-tiny-bf16', 'llada-tiny-sharded', 'dream-tiny-f32', 'dream-tiny-bf16', 'llada-tiny-maskpref',
  'llada-moe-tiny-f32', 'llada-moe-tiny-partial', 'a2d-qwen2-mdlm-tiny-f32', 'a2d-qwen3-mdlm-tiny-f32'];
/**
 * Tiny random block-diffusion models (DESIGN §8): Fast-dLLM v2 (Qwen2.5, tied, blocks of 8), SDAR (Qwen3, blocks of 4),
 * A2D BD3LM (DESIGN §15: Qwen2 blocks of 8, Qwen3 blocks of 4, tied, unshifted), LLaDA2 (DESIGN §13.1: fused q/k/v,
 * partial rotary, output bias, a dense layer then mixtures with sigmoid group-limited routing, blocks of 8).
 */
export const BLOCK_MODELS = ['fast-dllm-v2-tiny-f32', 'fast-dllm-v2-tiny-bf16', 'sdar-tiny-f32', 'sdar-tiny-bf16',
  'a2d-qwen2-bd3lm-tiny-f32', 'a2d-qwen3-bd3lm-tiny-f32', 'a2d-qwen3-bd3lm-tiny-bf16', 'llada2-moe-tiny-f32'];

/**
 * Fixtures whose float64 golden logits the int8 entries are not held to, and why. LLaDA2's mixture (DESIGN §13.1) picks
 * experts by group-limited top-k over sigmoid scores, whose margins (down to 5e-4 over 400 random rows of the fixture's
 * router) fall inside int8's activation noise: one flipped choice moves a row's logits far (measured 0.47 relative error
 * on one of the 8 cases, the others under 0.15; the int8 wasm and int8 reference entries give the same 0.47). Its int8
 * path is held to itself by the batching checks; its arithmetic is that of LLaDA-MoE's int8 experts and Dream's int8
 * biases, which are compared.
 */
export const INT8_NOT_COMPARED: Record<string, string> = {
  'llada2-moe-tiny-f32': 'not compared: int8 noise flips some of LLaDA2\'s group-limited expert choices (DESIGN §13.1)',
};

/** Measured variants of the registered engines, by registration name (the provider comes from the registry). */
type Variant = Omit<EngineEntry, 'provider' | 'unavailable'>;
const VARIANTS: Record<string, Variant[]> = {
  reference: [
    { label: 'reference', options: {}, tolerance: 1e-5, measured: 'measured 0: float64 on both sides, same float32 rounding', delta: 1e-9 },
    // int8 weights are a different model (quantized): against the float64 golden only loosely, tokens not compared
    // with it (delta Infinity); batching and the cache checks hold exactly, and int8.test.ts compares wasm with the
    // reference's int8 mode.
    { label: 'reference int8', options: { weightDType: 'int8' }, tolerance: 1.5e-1, measured: 'int8 weights and activations: 1.5e-2..6.3e-2 over the golden cases', delta: Infinity },
  ],
  wasm: [
    { label: 'wasm simd f32', options: { weightDType: 'f32' }, tolerance: 1e-4, measured: 'f32 activations', delta: 1e-5 },
    { label: 'wasm scalar f32', options: { weightDType: 'f32', simd: false }, tolerance: 1e-4, measured: 'f32 activations', delta: 1e-5 },
    { label: 'wasm simd f32, 2 threads', options: { weightDType: 'f32', threads: 2 }, tolerance: 1e-4, measured: 'f32 activations', delta: 1e-5 },
    // DESIGN §14: the layers split over several wasm memories, one layer each, as models over 4 GiB are in Node.
    { label: 'wasm simd f32, a memory per layer', options: { weightDType: 'f32', layersPerShard: 1 }, tolerance: 1e-4, measured: 'f32 activations', delta: 1e-5 },
    { label: 'wasm simd bf16', options: { weightDType: 'bf16' }, tolerance: 5e-2, measured: 'bf16 weights, f32 activations', delta: Infinity },
    { label: 'wasm simd int8', options: { weightDType: 'int8' }, tolerance: 1.5e-1, measured: 'int8 weights and activations: 1.5e-2..6.3e-2 over the golden cases', delta: Infinity },
    { label: 'wasm scalar int8', options: { weightDType: 'int8', simd: false }, tolerance: 1.5e-1, measured: 'int8 weights and activations: 1.5e-2..6.3e-2 over the golden cases', delta: Infinity },
    { label: 'wasm simd int8, 2 threads, a memory per layer', options: { weightDType: 'int8', threads: 2, layersPerShard: 1 }, tolerance: 1.5e-1, measured: 'int8 weights and activations: 1.5e-2..6.3e-2 over the golden cases', delta: Infinity },
    { label: 'wasm simd int8, 2 threads', options: { weightDType: 'int8', threads: 2 }, tolerance: 1.5e-1, measured: 'int8 weights and activations: 1.5e-2..6.3e-2 over the golden cases', delta: Infinity },
  ],
  'cuda-emulator': [
    { label: 'cuda-emulator f32', options: { weightDType: 'f32' }, tolerance: 1e-4, measured: 'emulator 3.6e-7..1.32e-6 on LLaDA/Dream, 2.0e-7..7.3e-7 on block diffusion, 2.9e-7..5.1e-7 on LLaDA-MoE, 3.3e-7..5.0e-7 on LLaDA2 (f32 K/V)', delta: 1e-5 },
    { label: 'cuda-emulator bf16', options: { weightDType: 'bf16' }, tolerance: 5e-2, measured: 'emulator 3.45e-3..1.28e-2 on LLaDA/Dream, 2.2e-3..1.06e-2 on block diffusion, 4.2e-3..2.88e-2 on LLaDA-MoE, 4.9e-3..8.1e-3 on LLaDA2 (bf16 activations and K/V)', delta: Infinity },
  ],
  cuda: [
    { label: 'cuda f32', options: { weightDType: 'f32' }, tolerance: 1e-4, measured: 'not yet measured on a GPU', delta: 1e-5 },
    { label: 'cuda bf16', options: { weightDType: 'bf16' }, tolerance: 5e-2, measured: 'not yet measured on a GPU', delta: Infinity },
  ],
};

/** A registered engine no variant was measured for: its default settings, held to f32 tolerances. */
const defaultVariant = (name: string): Variant => ({ label: name, options: {}, tolerance: 1e-4, measured: 'a new engine: f32 tolerances until measured', delta: 1e-5 });

/**
 * The entries with their availability probed once. FAST_DLLM_REQUIRE_GPU=1 (the GPU run's script) turns an
 * unavailable cuda provider into a failure instead of a skip.
 */
export async function engineEntries(): Promise<EngineEntry[]> {
  const out: EngineEntry[] = [];
  for (const reg of ENGINES) {
    const provider = await loadProvider(reg);
    if (typeof provider === 'string') throw new Error(`engine '${reg.name}' is registered but ${provider}`);
    const probe = await provider.probe();
    for (const v of VARIANTS[reg.name] ?? [defaultVariant(reg.name)]) {
      const e: EngineEntry = { ...v, provider };
      out.push(probe.available ? e : { ...e, unavailable: `not supported: ${provider.name} unavailable (${probe.reason})` });
    }
  }
  const unknown = Object.keys(VARIANTS).filter((n) => !ENGINES.some((r) => r.name === n));
  if (unknown.length) throw new Error(`variants for engines the registry does not list: ${unknown.join(', ')}`);
  if (process.env.FAST_DLLM_REQUIRE_GPU === '1') {
    const gpu = out.filter((e) => e.provider.name === 'cuda' && e.unavailable);
    if (gpu.length) throw new Error(`FAST_DLLM_REQUIRE_GPU=1 but the GPU engine cannot run: ${gpu[0].unavailable}`);
  }
  return out;
}

/** The reason an entry cannot run a check that needs `need` of the engine's capabilities, or undefined. */
export function lacks(caps: EngineCapabilities, need: { modes?: EngineCapabilities['modes']; batch?: number; logits?: boolean }): string | undefined {
  const missing = (need.modes ?? []).filter((m) => !caps.modes.includes(m));
  if (missing.length) return `not supported: forward mode ${missing.join(', ')}`;
  if (need.batch !== undefined && caps.maxBatch < need.batch) return `not supported: ${caps.maxBatch} sequence(s) per pass`;
  if (need.logits && !caps.reports.logits) return 'not supported: logits report';
  return undefined;
}

/** Creates the entry's engine on a fixture model. */
export function open(entry: EngineEntry, model: string): Promise<Engine> {
  return entry.provider.create(modelDir(model), entry.options);
}

/**
 * Creates the entry's engine on a fixture model, or says why the engine does not support that model: the engine's
 * own refusal at load (ModelNotSupportedError: a capability the model needs, such as block-causal attention).
 */
export async function openOrSkip(entry: EngineEntry, model: string): Promise<{ engine?: Engine; skip?: string }> {
  return openDirOrSkip(entry, modelDir(model));
}

/** openOrSkip for a model directory outside the fixtures (the trained models of packages/). */
export async function openDirOrSkip(entry: EngineEntry, dir: string): Promise<{ engine?: Engine; skip?: string }> {
  try {
    return { engine: await entry.provider.create(dir, entry.options) };
  } catch (e) {
    if (e instanceof ModelNotSupportedError) return { skip: `not supported: ${e.message}` };
    throw e;
  }
}
