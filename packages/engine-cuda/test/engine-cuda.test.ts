/**
 * CPU-side tests of the cuda engine: the addon builds and loads where nvcc exists, the probe explains a missing
 * device, and the planning / marshalling logic. GPU behaviour is covered by the conformance harness (test/conformance)
 * and test/kernels.test.ts.
 */
import { existsSync, mkdtempSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { delimiter, join } from 'node:path';
import { describe, expect, it } from 'vitest';
import { EngineCapacityError, counterHash, layoutPass, type ForwardRequest, type ModelInfo, type SequenceHandle } from '@fast-dllm/scheduler';
import { expectedShapes, normaliseConfig, tensorNames, writeSafetensors, type ModelDescription } from '@fast-dllm/model';
import {
  ADDON_PATH, BUILT_ADDON_PATH, checkFits, createCudaEmulatorEngine, createCudaEngine, cudaProvider, EMULATOR_ADDON_PATH, loadBinding,
  MODE_CODE, nativePass, PASS_ROWS, planWeights, PREBUILT_ADDON_PATH, slotOf, toBf16,
} from '../src/index.js';

const hasNvcc = (process.env.PATH ?? '').split(delimiter).some((d) => d && existsSync(join(d, 'nvcc')));
const binding = loadBinding();
const device = binding.ok ? binding.binding.deviceInfo() : undefined;

function desc(over: Partial<ModelDescription> = {}): ModelDescription {
  return {
    architecture: 'llada', hiddenSize: 64, numLayers: 2, numHeads: 4, numKvHeads: 4, headDim: 16, intermediateSize: 96,
    vocabSize: 100, maxPositions: 128, rmsNormEps: 1e-5, ropeTheta: 10000, qkvBias: false, tiedEmbeddings: false,
    shiftLogits: false, special: { mask: 99, eos: 98 }, ...over,
  };
}

describe('native addon', () => {
  it.runIf(hasNvcc)('is built and loads when nvcc is on PATH', () => {
    expect(existsSync(ADDON_PATH)).toBe(true);
    expect(binding.ok ? 'loaded' : binding.reason).toBe('loaded');
  });

  it.runIf(binding.ok)('ports the shared counter hash bit for bit', () => {
    if (!binding.ok) return;
    const words = [0, 1, 7, 255, 0x7fffffff, 0x80000000, 0xfffffffe, 0xffffffff, 123456789];
    for (const a of words) for (const b of words) {
      expect(binding.binding.counterHash(a, b, b ^ 5, a >>> 1)).toBe(counterHash(a, b, b ^ 5, a >>> 1));
    }
  });

  it('reports a missing addon as "native addon not built"', () => {
    const r = loadBinding('/nonexistent/fast_dllm_cuda.node');
    expect(r.ok).toBe(false);
    if (!r.ok) expect(r.reason).toBe('native addon not built: /nonexistent/fast_dllm_cuda.node does not exist');
  });

  it.runIf(hasNvcc)('the build made the prebuilt addon npm pack ships, and the loader prefers the built one', () => {
    expect(existsSync(PREBUILT_ADDON_PATH)).toBe(true);
    expect(ADDON_PATH).toBe(BUILT_ADDON_PATH);
  });

  it.runIf(binding.ok)('says which driver and CUDA runtime it sees', () => {
    if (!binding.ok) return;
    const info = binding.binding.deviceInfo();
    expect(info.runtimeVersion).toMatch(/^\d+\.\d+$/);
    expect(info.driverVersion).toMatch(/^(\d+\.\d+|none)$/);
    if (info.driverVersion === 'none') expect(!info.available && info.reason).toMatch(/no NVIDIA driver: libcuda\.so\.1 was not found/);
  });
});

describe('probe without a GPU', () => {
  const noDevice = !binding.ok || (device !== undefined && !device.available);
  it.runIf(noDevice)('says why the engine is unavailable', async () => {
    const p = await cudaProvider.probe();
    expect(p.available).toBe(false);
    if (!p.available) expect(p.reason).toMatch(binding.ok ? /^(no CUDA device \(.+\)|no NVIDIA driver: .+ \(cuda\w+: .+\)|the driver supports .+ \(cuda\w+: .+\))$/ : /native addon not built/);
    // The cause a person can act on leads; the CUDA error follows (the addon writes them the other way round).
    if (!p.available && binding.ok && binding.binding.deviceInfo().driverVersion === 'none') expect(p.reason).toMatch(/^no NVIDIA driver: libcuda\.so\.1 was not found \(cudaError/);
  });

  it.runIf(noDevice)('createCudaEngine rejects cleanly before touching the model', async () => {
    await expect(createCudaEngine('/nonexistent/model')).rejects.toThrow(
      binding.ok ? /cuda engine unavailable: (no CUDA device|no NVIDIA driver|the driver supports)/ : /cuda engine unavailable: native addon not built/,
    );
  });

  it.runIf(binding.ok && noDevice)('a native async call rejects with an Error naming the CUDA call', async () => {
    if (!binding.ok) return;
    await expect(binding.binding.copyBandwidth(1024, 1)).rejects.toThrow(/^cudaSetDevice\(0\): .+/);
  });

  it('provider is named cuda', () => expect(cudaProvider.name).toBe('cuda'));
});

describe('weight plan', () => {
  it('maps every tensor to its slot with bf16 matrices and f32 norms', () => {
    const d = desc();
    const names = tensorNames(d);
    const plan = planWeights(d, names, expectedShapes(d, names), 'bf16', 128);
    const bySlot = new Map(plan.tensors.map((t) => [t.slot, t]));
    expect(bySlot.get(0)).toMatchObject({ name: names.embed, deviceDType: 'bf16', bytes: 100 * 64 * 2 });
    expect(bySlot.get(1)).toMatchObject({ name: names.finalNorm, deviceDType: 'f32', bytes: 64 * 4 });
    expect(bySlot.get(2)).toMatchObject({ name: names.lmHead, deviceDType: 'bf16' });
    expect(bySlot.get(slotOf(1, 'down'))).toMatchObject({ name: names.layers[1].down, elements: 64 * 96, deviceDType: 'bf16' });
    expect(bySlot.get(slotOf(0, 'ffnNorm'))?.deviceDType).toBe('f32');
    expect(bySlot.has(slotOf(0, 'qBias'))).toBe(false);
    // 3 globals + 9 per layer (no biases)
    expect(plan.tensors).toHaveLength(3 + 2 * 9);
    expect(plan.weightBytes).toBe(plan.tensors.reduce((a, t) => a + t.bytes, 0));
    // K/V in bf16 by default with bf16 weights; f32 on request (strict conformance) doubles the cache.
    expect(plan.kvDType).toBe('bf16');
    expect(plan.cacheBytes).toBe(2 * 2 * 128 * 64 * 2);
    const f32Cache = planWeights(d, names, expectedShapes(d, names), 'bf16', 128, 'f32');
    expect(f32Cache.cacheBytes).toBe(2 * 2 * 128 * 64 * 4);
    expect(f32Cache.totalBytes - plan.totalBytes).toBeGreaterThanOrEqual(2 * 2 * 128 * 64 * 2);
    expect(planWeights(d, names, expectedShapes(d, names), 'f32', 128).kvDType).toBe('f32');
  });

  it('f32 mode doubles matrix bytes; tied embeddings skip the LM head; Dream biases get slots', () => {
    const d = desc({ architecture: 'dream', qkvBias: true, tiedEmbeddings: true, numKvHeads: 2, shiftLogits: true });
    const names = tensorNames(d);
    const shapes = expectedShapes(d, names);
    const bf = planWeights(d, names, shapes, 'bf16', 64);
    const f32 = planWeights(d, names, shapes, 'f32', 64);
    expect(bf.tensors.some((t) => t.slot === 2)).toBe(false);
    expect(f32.tensors.find((t) => t.slot === slotOf(1, 'kBias'))).toMatchObject({ elements: 32, deviceDType: 'f32' });
    const matrixElements = bf.tensors.filter((t) => t.deviceDType === 'bf16').reduce((a, t) => a + t.elements, 0);
    expect(f32.weightBytes - bf.weightBytes).toBe(matrixElements * 2);
  });

  it('names a missing tensor', () => {
    const d = desc();
    const names = tensorNames(d);
    const shapes = expectedShapes(d, names);
    shapes.delete(names.layers[0].up);
    expect(() => planWeights(d, names, shapes, 'bf16', 16)).toThrow(/blocks\.0\.up_proj\.weight is not in the checkpoint/);
  });

  it('rejects a model that does not fit with the sizes in the message', () => {
    const d = desc({ hiddenSize: 4096, numLayers: 32, numHeads: 32, numKvHeads: 32, headDim: 128, intermediateSize: 12288, vocabSize: 126464 });
    const names = tensorNames(d);
    const plan = planWeights(d, names, expectedShapes(d, names), 'bf16', 512);
    expect(plan.weightBytes / 1024 ** 3).toBeGreaterThan(14);
    expect(() => checkFits(plan, 8 * 1024 ** 3, 'Test GPU')).toThrow(/does not fit on Test GPU: needs \d+\.\d+ GiB .* only 8\.00 GiB is free/);
    expect(() => checkFits(plan, 80 * 1024 ** 3)).not.toThrow();
  });

  it('converts f32 to bf16 with round to nearest even', () => {
    const b = toBf16(new Float32Array([1, -2, 1 + 2 ** -8, 1 + 3 * 2 ** -8, 0]));
    expect([...b]).toEqual([0x3f80, 0xc000, 0x3f80, 0x3f82, 0]);
  });
});

describe('request marshalling', () => {
  it('concatenates the spans, names each sequence\'s block and mode, and keys each report (Dream shift inside the span)', () => {
    const model = { shiftLogits: true } as ModelInfo;
    const seq = (id: number, maxLength: number): SequenceHandle => ({ id, maxLength });
    const canvas = Int32Array.from({ length: 20 }, (_, i) => 100 + i);
    const batch: ForwardRequest[] = [
      { sequence: seq(1, 24), canvas, mode: 'dual', start: 8, end: 12, positions: Int32Array.of(8, 9, 12), sampling: { temperature: 0.5, seed: 7, forwardIndex: 3 } },
      { sequence: seq(2, 20), canvas: canvas.slice(0, 16), mode: 'extend', start: 12, end: 16, positions: new Int32Array(0), want: { top2: true } },
      { sequence: seq(3, 32), canvas, mode: 'full', start: 0, end: 20, positions: Int32Array.of(0, 1), refresh: { fromLayer: 1, start: 4, end: 8 }, attention: { start: 4, end: 8, keys: Int32Array.of(3, -1) } },
    ];
    const blocks = [{ arena: 0, offset: 0, bytes: 256 }, { arena: 0, offset: 256, bytes: 512 }, { arena: 1, offset: 1024, bytes: 256 }];
    const layout = layoutPass(model, batch);
    const p = nativePass(batch, layout, blocks, 2);
    expect([...p.ids]).toEqual([108, 109, 110, 111, 112, 113, 114, 115, ...Array.from(canvas)]);
    // Then Elastic-Cache's refresh (fromLayer, span) and attention report rows (DESIGN §16), with the tracked keys apart.
    expect([...p.seqs]).toEqual([
      0, 0, 24, 2, 8, 4, 20, 0, 0, 0, 0, -1, -1, /**/ 0, 256, 20, 3, 12, 4, 16, 4, 0, 0, 0, -1, -1, /**/ 1, 1024, 32, 0, 0, 20, 20, 8, 1, 4, 8, 4, 8,
    ]);
    expect([...p.attentionKeys]).toEqual([-1, -1, -1, -1, 3, -1]);
    // position 8 reads its own row (the first of the span), 9 row 8, 12 (= end) the last row; row 0 and 1 of the
    // full forward: its own row, then row 0.
    expect([...p.reportRow]).toEqual([0, 0, 3, 8, 8]);
    expect([...p.position]).toEqual([8, 9, 12, 0, 1]);
    expect([...p.temperature]).toEqual([0.5, 0.5, 0.5, 0, 0]);
    expect([...p.seed]).toEqual([7, 7, 7, 0, 0]);
    expect([...p.forwardIndex]).toEqual([3, 3, 3, 0, 0]);
    expect([p.top2, p.entropy, p.logits]).toEqual([true, false, false]);
    expect(MODE_CODE).toEqual({ full: 0, prefix: 1, dual: 2, extend: 3 });
  });
});

describe('model checks at load (emulator build)', () => {
  const emulator = loadBinding(EMULATOR_ADDON_PATH);
  it('refuses a head_dim the attention kernel does not handle, before uploading', async (ctx) => {
    if (!emulator.ok) return ctx.skip(`not supported: ${emulator.reason}`);
    const dir = mkdtempSync(join(tmpdir(), 'fdl-cuda-hd-'));
    const config = {
      model_type: 'llada', d_model: 320, n_layers: 1, n_heads: 2, n_kv_heads: 2, mlp_hidden_size: 16, vocab_size: 32,
      embedding_size: 32, max_sequence_length: 64, rope_theta: 10000, rms_norm_eps: 1e-5, mask_token_id: 31,
      eos_token_id: 30, weight_tying: false, include_bias: false,
    };
    writeFileSync(join(dir, 'config.json'), JSON.stringify(config));
    const tensors = [...expectedShapes(normaliseConfig(config))].map(([name, shape]) => ({
      name, dtype: 'F32' as const, shape, data: new Uint8Array(shape.reduce((a, b) => a * b, 1) * 4),
    }));
    await writeSafetensors(join(dir, 'model.safetensors'), tensors);
    await expect(createCudaEmulatorEngine(dir)).rejects.toThrow(/head_dim 160 is over the attention kernel's 128; use the wasm engine/);
  });

  it('rejects a grouped weight of the wrong size, naming the slot and both sizes', async (ctx) => {
    if (!emulator.ok) return ctx.skip(`not supported: ${emulator.reason}`);
    const d = desc();
    const model = new emulator.binding.CudaModel({ ...d, bf16: false, maskId: d.special.mask });
    try {
      // q is 64 x 64 f32 = 16384 bytes, stored inside the layer's fused [Wq; Wk; Wv]
      await expect(model.upload(slotOf(0, 'q'), new Float32Array(10))).rejects.toThrow(
        new RegExp(`^upload: slot ${slotOf(0, 'q')} holds 40 bytes, expected 16384$`),
      );
      await expect(model.upload(slotOf(0, 'q'), new Float32Array(64 * 64))).resolves.toBeUndefined();
    } finally {
      model.free();
    }
  });

  const fixture = (name: string) => join(import.meta.dirname, '..', '..', '..', 'test', 'fixtures', 'models', name);

  it('holds many sequences within its cache budget, refuses one more with EngineCapacityError, and frees on close', async (ctx) => {
    if (!emulator.ok) return ctx.skip(`not supported: ${emulator.reason}`);
    const probe = await createCudaEmulatorEngine(fixture('llada-tiny-f32'));
    const bytes = probe.sequenceBytes(48);
    // layers x (K, V) x positions x kv width x bf16 (the default with bf16 weights), in the pool's 256-byte blocks
    expect(bytes).toBe(Math.ceil((2 * 2 * 48 * 64 * 2) / 256) * 256);
    expect(probe.sequenceCapacity(48)).toBeGreaterThan(1000); // the emulator's "device" is this machine's memory
    await probe.dispose();
    expect(probe.sequenceCapacity(48)).toBe(0);

    const engine = await createCudaEmulatorEngine(fixture('llada-tiny-f32'), { cacheBudgetBytes: 3 * bytes });
    try {
      expect(engine.capabilities.maxBatch).toBe(64);
      expect(engine.sequenceCapacity(48)).toBe(3);
      expect(engine.sequenceCapacity(96)).toBe(1);
      const seqs = [engine.openSequence(48), engine.openSequence(48), engine.openSequence(48)];
      expect(engine.sequenceCapacity(48)).toBe(0);
      expect(() => engine.openSequence(48)).toThrow(EngineCapacityError);
      expect(() => engine.openSequence(48)).toThrow(/a sequence of 48 tokens needs \d+ bytes of K\/V cache/);
      engine.closeSequence(seqs[1]);
      engine.closeSequence(seqs[1]); // closing twice does nothing
      expect(engine.sequenceCapacity(48)).toBe(1);
      engine.closeSequence(seqs[0]);
      expect(engine.sequenceCapacity(96)).toBe(1); // the two freed blocks merged
      const big = engine.openSequence(96);
      const canvas = Int32Array.from({ length: 96 }, (_, i) => (i * 5) % 300);
      const positions = Int32Array.of(90, 95);
      const [r] = await engine.forward([{ sequence: big, canvas, mode: 'full', start: 0, end: 96, positions }]);
      expect(r.tokens).toHaveLength(2);
    } finally {
      await engine.dispose();
    }
  });

  it('refuses a pass over more rows than its scratch holds with EngineCapacityError, before any device work', async (ctx) => {
    if (!emulator.ok) return ctx.skip(`not supported: ${emulator.reason}`);
    const engine = await createCudaEmulatorEngine(fixture('llada-tiny-f32'));
    try {
      // The scratch holds PASS_ROWS rows (or the longest canvas opened): three full forwards of 500 tokens (1500
      // rows) fit; five (2500) do not, and nothing is computed or cached.
      const seqs = Array.from({ length: 5 }, () => engine.openSequence(500));
      const canvas = Int32Array.from({ length: 500 }, (_, i) => (i * 7) % 300);
      const req = (sequence: SequenceHandle): ForwardRequest => ({ sequence, canvas, mode: 'full', start: 0, end: 500, positions: Int32Array.of(499) });
      expect(PASS_ROWS).toBe(2048);
      await expect(engine.forward(seqs.map(req))).rejects.toThrow(EngineCapacityError);
      await expect(engine.forward(seqs.map(req))).rejects.toThrow(/a pass of 2500 rows is more than the 2048 rows of scratch it reserves; run fewer sequences per pass/);
      await expect(engine.forward([{ ...req(seqs[0]), mode: 'dual', start: 0, end: 8, positions: Int32Array.of(0) }])).rejects.toThrow(/needs a prior 'full' forward/);
    } finally {
      await engine.dispose();
    }
  });

  it('refuses a cached step before any full forward, and any forward after dispose', async (ctx) => {
    if (!emulator.ok) return ctx.skip(`not supported: ${emulator.reason}`);
    const engine = await createCudaEmulatorEngine(fixture('llada-tiny-f32'));
    const canvas = Int32Array.from({ length: 16 }, (_, i) => i);
    const positions = Int32Array.of(8, 9);
    const sequence = engine.openSequence(16);
    await expect(engine.forward([{ sequence, canvas, mode: 'dual', start: 8, end: 12, positions }])).rejects.toThrow(
      /^forward: a 'dual' step needs a prior 'full' forward to build the cache$/,
    );
    const [full] = await engine.forward([{ sequence, canvas, mode: 'full', start: 0, end: 16, positions }]);
    expect(full.tokens).toHaveLength(2);
    await engine.dispose();
    await expect(engine.forward([{ sequence, canvas, mode: 'full', start: 0, end: 16, positions }])).rejects.toThrow(/^forward: the engine was disposed$/);
    expect(() => engine.openSequence(16)).toThrow(/^openSequence: the engine was disposed$/);
  });
});
