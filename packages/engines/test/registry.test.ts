// The engine registry: one ranked list, graceful fallback with every engine's reason.
import { fileURLToPath } from 'node:url';
import { describe, expect, it } from 'vitest';
import { ENGINES, ENGINE_NAMES, NoEngineError, loadProvider, openEngine } from '../src/index.js';

const LLADA = fileURLToPath(new URL('../../../test/fixtures/models/llada-tiny-f32', import.meta.url));

describe('engine registry', () => {
  it('lists each engine once, best first; the offered ones are what users may name', () => {
    const names = ENGINES.map((e) => e.name);
    expect(new Set(names).size).toBe(names.length);
    expect(ENGINES.map((e) => e.rank)).toEqual([...ENGINES.map((e) => e.rank)].sort((a, b) => b - a));
    expect(ENGINE_NAMES).toEqual(['cuda', 'wasm', 'reference']);
    expect(ENGINES.find((e) => e.name === 'cuda-emulator')?.offered).toBe(false);
  });

  it("every registration loads a provider whose name is the registration's", async () => {
    for (const reg of ENGINES) {
      const p = await loadProvider(reg);
      expect(typeof p, reg.name).toBe('object');
      expect((p as { name: string }).name).toBe(reg.name);
    }
  });

  it('auto falls through to the best engine that runs, saying why each one before it did not', async () => {
    const cuda = await (await loadProvider(ENGINES[0]) as { probe(): Promise<{ available: boolean }> }).probe();
    const { engine, skipped } = await openEngine('auto', LLADA, { threads: 1 });
    try {
      if (!cuda.available) {
        expect(engine.name).toBe('wasm');
        expect(skipped.map((s) => s.name)).toEqual(['cuda']);
        expect(skipped[0].reason.length).toBeGreaterThan(0);
      } else {
        expect(skipped).toEqual([]);
      }
    } finally {
      await engine.dispose();
    }
  });

  it('a model no engine can load: NoEngineError with every engine\'s reason; a named engine: its own', async () => {
    const e = await openEngine('auto', '/nonexistent/model').catch((x: unknown) => x);
    expect(e).toBeInstanceOf(NoEngineError);
    expect((e as NoEngineError).requested).toBeNull();
    expect((e as NoEngineError).refusals.map((r) => r.name)).toEqual(ENGINE_NAMES);
    const r = await openEngine('reference', '/nonexistent/model').catch((x: unknown) => x) as NoEngineError;
    expect(r.requested).toBe('reference');
    expect(r.refusals).toHaveLength(1);
    expect(r.message).toMatch(/^engine 'reference' is not usable: failed to load the model/);
    const u = await openEngine('tpu', LLADA).catch((x: unknown) => x) as NoEngineError;
    expect(u.message).toMatch(/no such engine \(cuda, wasm, reference\)/);
  });
});
