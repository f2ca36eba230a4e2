/**
 * The CLI on block-diffusion models (DESIGN §8): the published recipe by default, the family's own flags, flags of
 * another family refused by name, and --json's outputIds up to and including the stop token, on the tiny fixtures
 * against the PyTorch driver's golden run.
 */
import { readFileSync } from 'node:fs';
import { fileURLToPath } from 'node:url';
import { describe, expect, it } from 'vitest';
import { runCli } from './run.js';

const fixture = (name: string) => fileURLToPath(new URL(`../../../test/fixtures/${name}`, import.meta.url));
const V2 = fixture('models/fast-dllm-v2-tiny-f32');
const SDAR = fixture('models/sdar-tiny-f32');
const LLADA = fixture('models/llada-tiny-f32');

interface GoldenRun { prompt: number[]; genLength: number; strategy: Record<string, unknown>; tokens: number[]; nfe: number }
const golden = (model: string) => (JSON.parse(readFileSync(fixture(`golden/scheduler/${model}.json`), 'utf8')) as { cases: GoldenRun[] }).cases;

describe('generate on block-diffusion models', () => {
  it('Fast-dLLM v2 --json: outputIds up to and including the stop token, as the PyTorch driver decodes them', async () => {
    const c = golden('fast-dllm-v2-tiny-f32').find((x) => x.strategy.subBlockLength === 4 && x.strategy.threshold === 0.9 && !x.strategy.blockCache && x.tokens.length < x.genLength)!;
    const r = await runCli(['generate', '--model', V2, '--engine', 'reference', '--prompt-ids', c.prompt.join(','), '--gen-length', String(c.genLength),
      '--sub-block-length', '4', '--threshold', '0.9', '--json']);
    expect(r.code).toBe(0);
    const j = JSON.parse(r.stdout);
    expect(j.outputIds).toEqual(c.tokens);
    expect(j.outputIds[j.outputIds.length - 1]).toBe(282); // <|im_end|>
    expect(j.answerIds).toEqual(c.tokens.slice(0, -1));
    expect(j.nfe).toBe(c.nfe);
    expect(j.stoppedEarly).toBe(true);
    expect(j.settings).toMatchObject({ blockLength: 8, steps: null, cache: 'none', strategy: { kind: 'fast_dllm_v2', subBlockLength: 4, threshold: 0.9, blockCache: false } });
  });

  it('SDAR runs its published recipe by default (steps per block = B, dynamic, 0.85)', async () => {
    const c = golden('sdar-tiny-f32').find((x) => x.strategy.stepsPerBlock === 4 && x.strategy.threshold === 0.85)!;
    const r = await runCli(['generate', '--model', SDAR, '--engine', 'wasm', '--prompt-ids', c.prompt.join(','), '--gen-length', String(c.genLength), '--json']);
    expect(r.code).toBe(0);
    expect(r.stderr).toMatch(/decoding: SDAR \(4 steps per block, low_confidence_dynamic threshold 0.85\)/);
    const j = JSON.parse(r.stdout);
    expect(j.outputIds).toEqual(c.tokens);
    expect(j.nfe).toBe(c.nfe);
  });

  it.each([
    ['masked flag on v2', [V2, '--steps', '4'], /--steps applies to LLaDA\/Dream \(masked diffusion\); this Fast-dLLM v2 model decodes block by block/],
    ['approximate cache on v2', [V2, '--cache', 'dual'], /--cache dual applies to LLaDA\/Dream/],
    ['fixed remasking on SDAR', [SDAR, '--remasking', 'random'], /--remasking random applies to LLaDA\/Dream/],
    ['SDAR flag on v2', [V2, '--steps-per-block', '2'], /--steps-per-block applies to SDAR models; this is a Fast-dLLM v2 model/],
    ['block cache on SDAR', [SDAR, '--cache', 'block'], /--cache block applies to Fast-dLLM v2 models; this is a SDAR model/],
    ['v2 flag on LLaDA', [LLADA, '--sub-block-length', '4'], /--sub-block-length applies to block-diffusion models .*this is a LLaDA model/],
    ['SDAR remasking on LLaDA', [LLADA, '--remasking', 'low_confidence_static'], /--remasking low_confidence_static applies to block-diffusion models/],
    ['other block length', [SDAR, '--block-length', '8'], /--block-length 8: this SDAR model decodes in the blocks of 4/],
    ['sub-block not dividing B', [V2, '--sub-block-length', '3'], /--sub-block-length 3 must divide the model's block size 8/],
    ['too many steps per block', [SDAR, '--steps-per-block', '5'], /--steps-per-block 5 exceeds the model's block size 4/],
    ['static with a threshold', [SDAR, '--remasking', 'low_confidence_static', '--threshold', '0.5'], /low_confidence_static takes no --threshold/],
    ['two families', [V2, '--sub-block-length', '4', '--steps-per-block', '2'], /belong to different model families|applies to SDAR models/],
  ])('%s: exit 2, one line', async (_name, [model, ...flags], pattern) => {
    const r = await runCli(['generate', '--model', model, '--engine', 'reference', '--prompt-ids', '3,4', ...flags]);
    expect(r.stderr).toMatch(pattern);
    expect(r.code).toBe(2);
    expect(r.stderr.trim().split('\n')).toHaveLength(1);
  });
});
