/**
 * LLaDA-MoE in the cuda engine (DESIGN §13): the weight plan's mixture slots, the addon's routing handshake (a pass
 * stops at each mixture layer for the host's routeRows), and batch invariance bit for bit on a random mixture model
 * shaped so that the pass changes every choice that may follow the rows: 4 experts, 3 per row (with 2 the sum of a
 * row's two products is the same in either order, so its expert order would go unchecked), so that alone a 32-row
 * dual step sends about 24 rows to each expert (32-row GEMM tiles, k splits in parallel) and the pass of 320 rows
 * about 240 (128-row tiles, splits walked serially); expert down projections split k (2 splits); a dense first layer,
 * a shared expert, expert bias, partial rotary and clip_qkv. Golden logits and tokens of the fixtures are the
 * conformance harness's (test/conformance). Runs on the GPU addon where there is a device and on the CPU emulator
 * build everywhere (FAST_DLLM_REQUIRE_GPU=1 fails a missing GPU).
 */
import { rmSync } from 'node:fs';
import { fileURLToPath } from 'node:url';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { expectedShapes, isMoeLayer, normaliseConfig, openModel, tensorNames } from '@fast-dllm/model';
import type { Engine, EngineProvider, ForwardRequest, SequenceHandle } from '@fast-dllm/scheduler';
import { canvas, expectAloneEqualsTogether, expectSameBits, span, want, writeRandomModel, type Case } from './batch-invariance.js';
import {
  EMULATOR_ADDON_PATH, cudaEmulatorProvider, cudaProvider, gemmSplits, loadBinding, moeSlotOf, passScratchBytes, planWeights, slotOf,
  type CudaEngineOptions,
} from '../src/index.js';

const REQUIRE_GPU = process.env.FAST_DLLM_REQUIRE_GPU === '1';

const CONFIG = {
  architectures: ['LLaDAMoEModelLM'], model_type: 'lladamoe', hidden_act: 'silu', hidden_size: 128, num_hidden_layers: 3,
  num_attention_heads: 8, num_key_value_heads: 4, dense_intermediate_size: 256, expert_intermediate_size: 512,
  shared_expert_intermediate_size: 256, num_experts: 4, num_experts_per_tok: 3, moe_layer_freq: [0, 1, 1], norm_topk_prob: false,
  qk_layernorm: true, moe_router_enable_expert_bias: true, moe_router_score_function: 'softmax', routed_scaling_factor: 1,
  partial_rotary_factor: 0.5, clip_qkv: 2.0, rope_theta: 50000.0, rms_norm_eps: 1e-5, vocab_size: 256, max_position_embeddings: 512,
  attention_bias: false, tie_word_embeddings: false, eos_token_id: 250, pad_token_id: 250, mask_token_id: 255,
};

const writeModel = () => writeRandomModel(CONFIG, 24680, 'fdl-cuda-moe-');

describe('weight plan of a mixture model', () => {
  const d = normaliseConfig(CONFIG);
  const names = tensorNames(d);
  const plan = planWeights(d, names, expectedShapes(d, names), 'bf16', 128);
  const bySlot = new Map(plan.tensors.map((t) => [t.slot, t]));

  it('gives the dense layer its FFN slots and each mixture layer a router (f32), a shared expert and every expert (bf16)', () => {
    expect(d.moe?.moeLayers).toEqual([false, true, true]);
    expect(new Set(plan.tensors.map((t) => t.slot)).size).toBe(plan.tensors.length);
    const dense = names.layers[0];
    const mix = names.layers[2];
    if (isMoeLayer(dense) || !isMoeLayer(mix)) throw new Error('layer kinds');
    expect(bySlot.get(slotOf(0, 'down'))).toMatchObject({ name: dense.down, elements: 128 * 256, deviceDType: 'bf16' });
    expect(bySlot.has(slotOf(2, 'gate'))).toBe(false);
    expect(bySlot.has(moeSlotOf(3, 4, 0, 'router'))).toBe(false);
    expect(bySlot.get(moeSlotOf(3, 4, 2, 'router'))).toMatchObject({ name: mix.router, elements: 4 * 128, deviceDType: 'f32' });
    expect(bySlot.get(moeSlotOf(3, 4, 2, 'sharedUp'))).toMatchObject({ name: mix.shared!.up, elements: 256 * 128, deviceDType: 'bf16' });
    expect(bySlot.get(moeSlotOf(3, 4, 2, [3, 'down']))).toMatchObject({ name: mix.experts[3].down, elements: 128 * 512, deviceDType: 'bf16' });
    // The expert bias stays on the host (routing runs there): 3 globals, 12 attention tensors per layer (q/k norms),
    // a dense FFN, and per mixture layer a router, a shared expert and 4 experts of 3 matrices.
    expect(plan.tensors.some((t) => t.name.endsWith('expert_bias'))).toBe(false);
    expect(plan.tensors).toHaveLength(3 + 3 * 8 + 3 + 2 * (1 + 3 + 4 * 3));
  });

  it('counts the mixture scratch: the f32 normed rows in bf16 mode, router logits, routing and the gathered rows', () => {
    const dense = { ...d, moe: undefined, intermediateSize: 512 }; // the same widest FFN
    // 512 rows: bf16 adds d f32 + max(d, ff) bf16; both add E f32, 2 topK, 3 d f32.
    const extra = (w: 'bf16' | 'f32') => passScratchBytes(d, 512, 512, w, w) - passScratchBytes(dense, 512, 512, w, w);
    expect(extra('f32')).toBe(512 * (4 * 4 + 8 * 3 + 12 * 128));
    expect(extra('bf16')).toBe(512 * (4 * 128 + 2 * 512 + 4 * 4 + 8 * 3 + 12 * 128));
  });
});

describe('weight plan of LLaDA2 (DESIGN §13.1)', () => {
  const dir = fileURLToPath(new URL('../../../test/fixtures/models/llada2-moe-tiny-f32', import.meta.url));

  it('reads q, k and v as row slices of the fused query_key_value and gives the output bias its slot (f32)', async () => {
    const loaded = await openModel(dir);
    try {
      const { description: d, names, archive } = loaded;
      const plan = planWeights(d, names, (n) => archive.info(n).shape, 'bf16', 64);
      const bySlot = new Map(plan.tensors.map((t) => [t.slot, t]));
      const qkv = 'model.layers.1.attention.query_key_value.weight'; // (H hd + 2 KV hd, d) = (128, 64)
      expect(bySlot.get(slotOf(1, 'q'))).toMatchObject({ name: `${qkv}[0:64]`, elements: 64 * 64, deviceDType: 'bf16' });
      expect(bySlot.get(slotOf(1, 'k'))).toMatchObject({ name: `${qkv}[64:96]`, elements: 32 * 64, deviceDType: 'bf16' });
      expect(bySlot.get(slotOf(1, 'v'))).toMatchObject({ name: `${qkv}[96:128]`, elements: 32 * 64, deviceDType: 'bf16' });
      expect(bySlot.get(slotOf(2, 'oBias'))).toMatchObject({ name: 'model.layers.2.attention.dense.bias', elements: 64, deviceDType: 'f32' });
    } finally {
      await loaded.archive.close();
    }
  });

  it('estimates every stored tensor but the host-side expert biases, the fused ones once', async () => {
    const loaded = await openModel(dir);
    const stored = [...loaded.archive.tensors].filter(([n]) => !n.endsWith('expert_bias')).reduce((a, [, t]) => a + t.shape.reduce((x, y) => x * y, 1), 0);
    await loaded.archive.close();
    const est = await cudaEmulatorProvider.estimateMemory(dir, { maxLength: 64, weightDType: 'f32' });
    expect(est.weightBytes).toBe(4 * stored);
  });
});

describe('routing handshake (emulator build)', () => {
  const emulator = loadBinding(EMULATOR_ADDON_PATH);
  const d = normaliseConfig(CONFIG);
  const config = () => ({ ...d, bf16: false, kvBf16: false, maskId: d.special.mask, qkNorm: true, rotaryDim: d.rotaryDim, clipQkv: d.clipQkv, moe: d.moe });

  it('refuses route() with no pass waiting, and an expert weight of the wrong size', async (ctx) => {
    if (!emulator.ok) return ctx.skip(`not supported: ${emulator.reason}`);
    const model = new emulator.binding.CudaModel(config());
    try {
      expect(() => model.route(new Int32Array(2), new Float64Array(2))).toThrow(/^route: no pass is waiting for its routing$/);
      // an expert's gate is (512, 128) f32, stored inside its fused [Wgate; Wup]
      const gate = moeSlotOf(3, 4, 1, [0, 'gate']);
      await expect(model.upload(gate, new Float32Array(10))).rejects.toThrow(new RegExp(`^upload: slot ${gate} holds 40 bytes, expected 262144$`));
      await expect(model.upload(gate, new Float32Array(512 * 128))).resolves.toBeUndefined();
    } finally {
      model.free();
    }
  });

  it('stops at each mixture layer with its router logits and checks the routing it gets back', async (ctx) => {
    if (!emulator.ok) return ctx.skip(`not supported: ${emulator.reason}`);
    const model = new emulator.binding.CudaModel(config());
    try {
      await model.randomize(7, 0.05);
      const arena = model.allocArena(2 ** 20);
      const pass = {
        ids: Int32Array.of(1, 2, 3), seqs: Float64Array.of(arena, 0, 8, 0, 0, 3, 3, 0, 0, 0, 0, -1, -1), attentionKeys: new Int32Array(d.numLayers).fill(-1), reportRow: Int32Array.of(0), position: Int32Array.of(0),
        temperature: Float64Array.of(0), seed: Uint32Array.of(0), forwardIndex: Uint32Array.of(0), top2: false, entropy: false, logits: false,
      };
      const first = await model.forward(pass);
      expect('route' in first && first.route.layer).toBe(1); // layer 0 is dense
      if (!('route' in first)) return;
      expect(first.route.logits).toHaveLength(3 * 4);
      expect(() => model.route(new Int32Array(8), new Float64Array(9))).toThrow(/must hold 9 entries/);
      expect(() => model.route(Int32Array.of(0, 2, 1, 0, 1, 2, 1, 2, 3), new Float64Array(9))).toThrow(/row 0's experts must be distinct, ascending and under 4/);
      expect(() => model.route(Int32Array.of(0, 1, 2, 0, 1, 2, 1, 2, 4), new Float64Array(9))).toThrow(/row 2's experts/);
      const second = await model.route(Int32Array.of(0, 1, 3, 0, 2, 3, 1, 2, 3), new Float64Array(9).fill(0.25));
      expect('route' in second && second.route.layer).toBe(2);
      const done = await model.route(Int32Array.of(0, 1, 2, 0, 1, 2, 0, 1, 2), new Float64Array(9).fill(0.3));
      expect('tokens' in done && done.tokens).toHaveLength(1);
    } finally {
      model.free();
    }
  });
});


const full = (seed: number): Omit<ForwardRequest, 'sequence'> => ({ canvas: canvas(seed, 160), mode: 'full', start: 0, end: 160, positions: span(0, 1) });
const CASES: Case[] = [
  // dual over [96, 128) of a canvas of 160, sampled
  { maxLength: 160, setup: [full(1)], step: { canvas: canvas(1, 160), mode: 'dual', start: 96, end: 128, positions: span(96, 128), want, sampling: { temperature: 0.7, seed: 5, forwardIndex: 3 } } },
  // a full forward of 160 rows, every position reported
  { maxLength: 160, setup: [], step: { canvas: canvas(2, 160), mode: 'full', start: 0, end: 160, positions: span(0, 160), want } },
  // prefix from 64 over another canvas of 160
  { maxLength: 160, setup: [full(3)], step: { canvas: canvas(4, 160), mode: 'prefix', start: 64, end: 160, positions: span(100, 140), want } },
  // dual over [32, 64)
  { maxLength: 160, setup: [full(5)], step: { canvas: canvas(5, 160), mode: 'dual', start: 32, end: 64, positions: span(32, 64), want } },
];

describe.each([['gpu', cudaProvider], ['emulator', cudaEmulatorProvider]] as [string, EngineProvider][])('cuda engine on %s: mixture batch invariance', (name, provider) => {
  let dir = '';
  let skip: string | undefined;
  beforeAll(async () => {
    const p = await provider.probe();
    if (!p.available) {
      skip = `not supported: ${p.reason}`;
      return;
    }
    dir = await writeModel();
  });
  afterAll(() => {
    if (dir) rmSync(dir, { recursive: true, force: true });
  });

  // bf16: what a GPU runs (GEMM tiles and schedules vary with the rows); f32: no bf16 rounding of the GEMM inputs to
  // hide a last-bit difference in the mixture's sum (an expert order that followed the pass passed in bf16 alone).
  it.for(['bf16', 'f32'] as const)('%s weights: each sequence alone and beside three others in one pass, bit for bit', async (dtype, ctx) => {
    if (skip) {
      if (REQUIRE_GPU && name === 'gpu') throw new Error(`FAST_DLLM_REQUIRE_GPU=1 but the GPU engine is ${skip}`);
      return ctx.skip(skip);
    }
    expect(gemmSplits(128, 512)).toBe(2); // expert down projections split k
    const e: Engine = await provider.create(dir, { weightDType: dtype, kvDType: dtype } as CudaEngineOptions);
    try {
      const { alone, together } = await expectAloneEqualsTogether(e, CASES);
      // The next step over the caches the pass wrote agrees as well.
      const next = (seqs: SequenceHandle[]) => e.forward([
        { ...CASES[0].step, start: 0, end: 32, positions: span(0, 32), sequence: seqs[0] },
        { ...CASES[3].step, start: 128, end: 160, positions: span(128, 160), sequence: seqs[3] },
      ]);
      const [a, b] = [await next(alone), await next(together)];
      expectSameBits('dual after dual', b[0], a[0]);
      expectSameBits('dual after dual [32, 64)', b[1], a[1]);
    } finally {
      await e.dispose();
    }
  });
});
