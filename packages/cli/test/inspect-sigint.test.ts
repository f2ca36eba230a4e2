import { spawn } from 'node:child_process';
import { fileURLToPath } from 'node:url';
import { describe, expect, it } from 'vitest';
import { BIN, runCli } from './run.js';

const fixture = (name: string) => fileURLToPath(new URL(`../../../test/fixtures/models/${name}`, import.meta.url));

describe('fast-dllm inspect', () => {
  it('reports architecture, parameters, dtypes, memory and special tokens (sharded LLaDA)', async () => {
    const r = await runCli(['inspect', fixture('llada-tiny-sharded'), '--json']);
    expect(r.code).toBe(0);
    const j = JSON.parse(r.stdout);
    expect(j.architecture).toBe('llada');
    // Parameter count from the config: embed + lm head + final norm + per layer (2 norms + 4 attn + 3 mlp).
    const d = j.hiddenSize;
    const perLayer = 2 * d + 4 * d * d + 3 * d * j.intermediateSize;
    const tied = j.parameters === j.vocabSize * d + d + j.numLayers * perLayer;
    expect(tied || j.parameters === 2 * j.vocabSize * d + d + j.numLayers * perLayer).toBe(true);
    expect(Object.keys(j.dtypes)).toEqual(['F32']);
    // Each engine package answers for itself: the reference widens to f32 and keeps f64 K/V, wasm f32 weights and
    // K/V, cuda bf16 matrices (norms stay f32) and bf16 K/V; the K/V is one sequence of --canvas tokens.
    const kv = 2 * j.numLayers * j.numKvHeads * j.headDim * j.canvas;
    expect(j.canvas).toBe(j.maxPositions);
    expect(j.memory.reference).toMatchObject({ weights: j.parameters * 4, kvCache: kv * 8, weightDType: 'f32', cacheDType: 'f64' });
    expect(j.memory.wasm).toMatchObject({ weights: j.parameters * 4, kvCache: kv * 4, weightDType: 'f32', cacheDType: 'f32' });
    const norms = j.numLayers * 2 * d + d;
    expect(j.memory.cuda).toMatchObject({ weights: (j.parameters - norms) * 2 + norms * 4, kvCache: kv * 2, weightDType: 'bf16', cacheDType: 'bf16' });
    // int8 (CPU engines): 1.125 bytes per linear weight and LM-head weight (a 4-byte scale per block of 32; the WASM
    // engine packs 8 rows per panel), the embedding, norms and biases f32; cuda refuses int8 and has no such row.
    const P = (out: number, inDim: number) => Math.ceil(out / 8) * Math.ceil(inDim / 32) * 288;
    const ff = j.intermediateSize, V = j.vocabSize;
    const int8 = j.numLayers * (4 * P(d, d) + 2 * P(ff, d) + P(d, ff)) + P(V, d) + 4 * (j.numLayers * 2 * d + d + V * d);
    expect(j.memory['wasm int8']).toMatchObject({ weights: int8, kvCache: kv * 4, weightDType: 'int8', cacheDType: 'f32' });
    expect(j.memory['wasm int8'].note).toMatch(/int8 \(7-bit values, one f32 scale per 32\)/);
    expect(j.memory['reference int8']).toMatchObject({ weights: int8, weightDType: 'int8', cacheDType: 'f64' });
    expect(j.memory['cuda int8']).toBeUndefined();
    const short = JSON.parse((await runCli(['inspect', fixture('llada-tiny-sharded'), '--json', '--canvas', '100'])).stdout);
    expect(short.memory.wasm.kvCache).toBe(2 * j.numLayers * j.numKvHeads * j.headDim * 100 * 4);
    const tooLong = await runCli(['inspect', fixture('llada-tiny-sharded'), '--canvas', '9999']);
    expect(tooLong.code).toBe(2);
    expect(tooLong.stderr).toMatch(/--canvas 9999 exceeds the model's 512 positions/);
    expect(j.special.mask).toBeTypeOf('number');
    expect(j.special.eos).toBeTypeOf('number');
  });

  it('text output names the bf16 Dream fixture and its GQA heads', async () => {
    const r = await runCli(['inspect', fixture('dream-tiny-bf16')]);
    expect(r.code).toBe(0);
    expect(r.stdout).toMatch(/architecture:\s+dream/);
    expect(r.stdout).toMatch(/BF16 x\d+/);
    expect(r.stdout).toMatch(/wasm int8 .*: linear weights and LM head int8/);
    expect(r.stdout).toMatch(/special tokens:\n\s+mask\s+\d+/);
  });
});

describe('Ctrl-C', () => {
  it('SIGINT stops a generation cleanly with exit 130 and no stack trace', async () => {
    const child = spawn(process.execPath, [BIN, 'generate', '--model', fixture('llada-tiny-f32'), '--engine', 'reference',
      '--prompt-ids', '1,2,3', '--gen-length', '128', '--block-length', '8', '--visual'], { stdio: ['ignore', 'pipe', 'pipe'] });
    let stdout = '';
    let stderr = '';
    let sent = false;
    child.stderr.on('data', (d: Buffer) => (stderr += d.toString()));
    const code = await new Promise<number | null>((resolve) => {
      child.stdout.on('data', (d: Buffer) => {
        stdout += d.toString();
        // Mid-generation, after a few steps; once only (a second Ctrl-C means "leave now").
        if (!sent && stdout.includes('nfe    3 ')) {
          sent = true;
          child.kill('SIGINT');
        }
      });
      child.on('close', resolve);
    });
    expect(code).toBe(130);
    expect(stderr).toMatch(/interrupted/);
    expect(stderr).not.toMatch(/\n\s+at /);
    expect(stdout.split('\n').filter((l) => l.startsWith('nfe')).length).toBeLessThan(128);
  });
});
