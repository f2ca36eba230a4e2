/**
 * Batch invariance of the whole cuda engine (DESIGN §7), bit for bit: each sequence's logits, tokens and
 * probabilities from a pass of its own equal those from one pass beside three others of other modes and lengths.
 * The model is shaped so that the pass changes every choice that may follow the rows (and none that may not): a
 * random SDAR-like model (q/k norms, head_dim 16 with 32 heads over d 128, block-causal attention with blocks of 32)
 * whose O and down projections split k (2 and 3 splits), canvases over 128 keys (2 attention splits). Alone, the
 * 32-row dual step runs 32-row GEMM tiles and its attention splits in parallel; in the pass of 320 rows the GEMMs run
 * 128-row tiles and 9 query tiles x 32 heads make attention walk its splits serially. Runs on the GPU addon where
 * there is a device and on the CPU emulator build everywhere (FAST_DLLM_REQUIRE_GPU=1 fails a missing GPU).
 */
import { rmSync } from 'node:fs';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import type { Engine, EngineProvider, SequenceHandle } from '@fast-dllm/scheduler';
import { canvas, expectAloneEqualsTogether, expectSameBits, span, want, writeRandomModel, type Case } from './batch-invariance.js';
import { cudaEmulatorProvider, cudaProvider, gemmSplits, type CudaEngineOptions } from '../src/index.js';

const REQUIRE_GPU = process.env.FAST_DLLM_REQUIRE_GPU === '1';

const CONFIG = {
  architectures: ['SDARForCausalLM'], model_type: 'sdar', hidden_size: 128, intermediate_size: 768, num_hidden_layers: 2,
  num_attention_heads: 32, num_key_value_heads: 8, head_dim: 16, vocab_size: 256, max_position_embeddings: 512,
  rms_norm_eps: 1e-6, rope_theta: 1000000.0, block_size: 32, attention_bias: false, tie_word_embeddings: false,
  eos_token_id: 250, mask_token_id: 255, use_sliding_window: false,
};

const writeModel = () => writeRandomModel(CONFIG, 12345, 'fdl-cuda-batch-');


const CASES: Case[] = [
  // dual over block [96, 128) of a canvas of 160, sampled
  {
    maxLength: 160, setup: [{ canvas: canvas(1, 160), mode: 'full', start: 0, end: 160, positions: span(0, 1) }],
    step: { canvas: canvas(1, 160), mode: 'dual', start: 96, end: 128, positions: span(96, 128), want, sampling: { temperature: 0.7, seed: 5, forwardIndex: 3 } },
  },
  // a full forward of 160 rows, every position reported
  { maxLength: 160, setup: [], step: { canvas: canvas(2, 160), mode: 'full', start: 0, end: 160, positions: span(0, 160), want } },
  // prefix from 64 over another canvas of 160 (rows [64, 160) fresh, cache [0, 64) from the full forward)
  {
    maxLength: 160, setup: [{ canvas: canvas(3, 160), mode: 'full', start: 0, end: 160, positions: span(0, 1) }],
    step: { canvas: canvas(4, 160), mode: 'prefix', start: 64, end: 160, positions: span(100, 140), want },
  },
  // extend by one block: [128, 160) against a cache of [0, 128)
  {
    maxLength: 192, setup: [{ canvas: canvas(5, 128), mode: 'full', start: 0, end: 128, positions: span(0, 1) }],
    step: { canvas: canvas(5, 160), mode: 'extend', start: 128, end: 160, positions: span(150, 160), want },
  },
];

function backend(label: string, provider: EngineProvider): [string, EngineProvider] {
  return [label, provider];
}

describe.each([backend('gpu', cudaProvider), backend('emulator', cudaEmulatorProvider)])('cuda engine on %s: batch invariance', (name, provider) => {
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

  // bf16 weights and K/V, what a GPU runs: the f32 GEMM of strict mode has no split or tile choice to vary.
  it('each sequence alone and beside three others in one pass, bit for bit', async (ctx) => {
    if (skip) {
      if (REQUIRE_GPU && name === 'gpu') throw new Error(`FAST_DLLM_REQUIRE_GPU=1 but the GPU engine is ${skip}`);
      return ctx.skip(skip);
    }
    expect([gemmSplits(128, 512), gemmSplits(128, 768)]).toEqual([2, 3]); // O and down split k
    const e: Engine = await provider.create(dir, { weightDType: 'bf16', kvDType: 'bf16' } as CudaEngineOptions);
    try {
      const { alone, together } = await expectAloneEqualsTogether(e, CASES);
      // The next step over the caches the pass wrote (dual rewrote its block, extend grew to 160) agrees as well.
      const next = (seqs: SequenceHandle[]) => e.forward([
        { ...CASES[0].step, start: 32, end: 64, positions: span(32, 64), sequence: seqs[0] },
        { canvas: canvas(5, 160), mode: 'dual', start: 128, end: 160, positions: span(128, 160), want, sequence: seqs[3] },
      ]);
      const [a, b] = [await next(alone), await next(together)];
      expectSameBits('dual after dual', b[0], a[0]);
      expectSameBits('dual after extend', b[1], a[1]);
    } finally {
      await e.dispose();
    }
  });
});
