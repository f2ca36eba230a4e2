/**
 * What the CUDA engine's batch-invariance tests share (batching.test.ts: dense models; moe.test.ts: mixture layers):
 * their random models, synthetic canvases, the bit-for-bit comparison, and running each case's step alone and all of
 * them in one pass.
 */
import { mkdtempSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { expect } from 'vitest';
import { expectedShapes, normaliseConfig, writeSafetensors } from '@fast-dllm/model';
import type { Engine, ForwardRequest, ForwardResult, SequenceHandle } from '@fast-dllm/scheduler';

export const span = (a: number, b: number) => Int32Array.from({ length: b - a }, (_, i) => a + i);
export const canvas = (seed: number, length: number) => Int32Array.from({ length }, (_, i) => (i * 37 + seed * 11) % 250);
export const want = { logits: true, top2: true, entropy: true } as const;

/** One sequence's last step, after the forwards that build its cache. */
export interface Case {
  maxLength: number;
  setup: Omit<ForwardRequest, 'sequence'>[];
  step: Omit<ForwardRequest, 'sequence'>;
}

/** Bit-for-bit equality of two results, naming the first difference. */
export function expectSameBits(label: string, got: ForwardResult, exp: ForwardResult) {
  expect(Array.from(got.tokens), `${label}: tokens`).toEqual(Array.from(exp.tokens));
  for (const key of ['probs', 'top1Probs', 'top2Probs', 'entropy', 'logits'] as const) {
    const a = got[key]!;
    const b = exp[key]!;
    expect(a.length, `${label}: ${key}`).toBe(b.length);
    const i = a.findIndex((x, j) => !Object.is(x, b[j]));
    expect(i, i < 0 ? label : `${label}: ${key}[${i}] is ${a[i]}, alone ${b[i]}`).toBe(-1);
  }
}

/**
 * Opens every case's sequence twice and builds both sets of caches; runs each step alone on the first set and all
 * steps in one pass on the second, and checks each sequence's results bit for bit. Returns both sets, whose caches
 * the steps have written, for a next step.
 */
export async function expectAloneEqualsTogether(e: Engine, cases: readonly Case[]): Promise<{ alone: SequenceHandle[]; together: SequenceHandle[] }> {
  const open = () => cases.map((c) => e.openSequence(c.maxLength));
  const setup = async (seqs: SequenceHandle[]) => {
    for (const [i, c] of cases.entries()) for (const s of c.setup) await e.forward([{ ...s, sequence: seqs[i] }]);
  };
  const alone = open();
  await setup(alone);
  const own: ForwardResult[] = [];
  for (const [i, c] of cases.entries()) own.push((await e.forward([{ ...c.step, sequence: alone[i] }]))[0]);
  const together = open();
  await setup(together);
  const passed = await e.forward(cases.map((c, i) => ({ ...c.step, sequence: together[i] })));
  cases.forEach((c, i) => expectSameBits(`${c.step.mode} [${c.step.start}, ${c.step.end})`, passed[i], own[i]));
  return { alone, together };
}

/**
 * Writes `config` with uniform random F32 weights (xorshift32 from `seed`: norms near 1, an expert bias small, the
 * rest in ±0.15) into a fresh temporary directory and returns it.
 */
export async function writeRandomModel(config: Record<string, unknown>, seed: number, prefix: string): Promise<string> {
  const dir = mkdtempSync(join(tmpdir(), prefix));
  writeFileSync(join(dir, 'config.json'), JSON.stringify(config));
  let s = seed;
  const next = () => {
    s ^= s << 13;
    s >>>= 0;
    s ^= s >>> 17;
    s ^= s << 5;
    s >>>= 0;
    return s / 2 ** 31 - 1;
  };
  const tensors = [...expectedShapes(normaliseConfig(config))].map(([name, shape]) => {
    const count = shape.reduce((a, b) => a * b, 1);
    const bias = name.endsWith('expert_bias');
    const norm = shape.length === 1 && !bias;
    const data = Float32Array.from({ length: count }, () => (norm ? 1 + 0.2 * next() : bias ? 0.05 * next() : 0.15 * next()));
    return { name, dtype: 'F32' as const, shape, data: new Uint8Array(data.buffer) };
  });
  await writeSafetensors(join(dir, 'model.safetensors'), tensors);
  return dir;
}
