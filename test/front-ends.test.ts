/**
 * One front door (DESIGN §11): the same decoding choices, written in each front-end's own syntax — CLI flags,
 * `fast-dllm serve` JSON fields, the web page's form (run in the page, or sent to a server) — give the same
 * scheduler request for every model family and option, and the same tokens on the WASM engine; a choice the
 * scheduler refuses is refused by every front-end, naming its own field for it.
 */
import { Command } from 'commander';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { FLAG_NAMES, UsageError, addDecodeOptions, decodingFrom, flagChoices, type DecodeFlags } from '@fast-dllm/cli';
import { defaultModelDir, loadEvalSet } from '@fast-dllm/default-model';
import { createWasmEngine } from '@fast-dllm/engine-wasm';
import { loadTokenizer, readModelConfig, schedulerModelInfo, type ModelDescription } from '@fast-dllm/model';
import {
  SchedulerConfigError, committedPrefix, generate, requestOf, resolveDecoding, type ChoiceField, type Engine, type EngineTarget, type GenerationRequest,
} from '@fast-dllm/scheduler';
import { ApiError, BODY_FIELDS, buildJob, type ChatBody, type CompletionBody } from '@fast-dllm/server';
import { SERVER_FIELDS, serverFields } from '@fast-dllm/web/openai-client';
import {
  DEFAULT_SETTINGS, FIELD_LABELS, choicesOf as pageChoices, recipeSettings, settingsProblems, toRequest, type DecodeSettings, type ModelCaps,
} from '@fast-dllm/web/settings';
import { modelDir } from './conformance/engines.js';

interface Family {
  fixture: string;
  /** Lengths every case shares, in each syntax (LLaDA/Dream: 32 tokens in blocks of 8; block models: a cap). */
  cli: string[];
  body: Record<string, unknown>;
  page: Partial<DecodeSettings>;
}

const FAMILIES: Record<string, Family> = {
  llada: { fixture: 'llada-tiny-f32', cli: ['--gen-length', '32', '--block-length', '8'], body: { max_tokens: 32, block_length: 8 }, page: { genLength: 32, blockLength: 8, steps: 32 } },
  dream: { fixture: 'dream-tiny-f32', cli: ['--gen-length', '32', '--block-length', '8'], body: { max_tokens: 32, block_length: 8 }, page: { genLength: 32, blockLength: 8, steps: 32 } },
  fast_dllm_v2: { fixture: 'fast-dllm-v2-tiny-f32', cli: ['--gen-length', '24'], body: { max_tokens: 24 }, page: { genLength: 24 } },
  sdar: { fixture: 'sdar-tiny-f32', cli: ['--gen-length', '16'], body: { max_tokens: 16 }, page: { genLength: 16 } },
  // LLaDA2 (DESIGN §13.1) takes SDAR's settings, with its own recipe (threshold 0.95).
  llada2_moe: { fixture: 'llada2-moe-tiny-f32', cli: ['--gen-length', '16'], body: { max_tokens: 16 }, page: { genLength: 16 } },
};

/**
 * One option in every syntax. `page: null`: the page offers no control for it (the case still runs on the others).
 * `refused`: the field every front-end must refuse it for, per family (absent: accepted).
 */
interface Case {
  name: string;
  families: readonly string[];
  cli: string[];
  body: Record<string, unknown>;
  page: Partial<DecodeSettings> | null;
  refused?: ChoiceField;
}

const MASKED = ['llada', 'dream'] as const;
const CASES: Case[] = [
  { name: 'the recipe', families: Object.keys(FAMILIES), cli: [], body: {}, page: {} },
  { name: 'fixed schedule, no cache', families: MASKED, cli: ['--strategy', 'fixed', '--cache', 'none'], body: { strategy: 'fixed', cache: 'none' }, page: { rule: 'fixed', cache: 'none' } },
  { name: 'fixed schedule in 16 steps', families: MASKED, cli: ['--strategy', 'fixed', '--steps', '16'], body: { strategy: 'fixed', steps: 16 }, page: { rule: 'fixed', steps: 16 } },
  { name: 'threshold 0.7, prefix cache', families: MASKED, cli: ['--threshold', '0.7', '--cache', 'prefix'], body: { threshold: 0.7, cache: 'prefix' }, page: { rule: 'threshold', threshold: 0.7, cache: 'prefix' } },
  { name: 'factor 2', families: MASKED, cli: ['--factor', '2'], body: { factor: 2 }, page: { rule: 'factor', factor: 2 } },
  { name: 'every position decoded', families: MASKED, cli: ['--no-early-stop'], body: { early_stop: false }, page: { earlyStop: false } },
  { name: 'random remasking', families: MASKED, cli: ['--remasking', 'random'], body: { remasking: 'random' }, page: null },
  { name: 'refresh every 2 steps', families: MASKED, cli: ['--refresh-every', '2'], body: { refresh_every: 2 }, page: null },
  // DESIGN §16's policies, alone and stacked.
  { name: 'EB-Sampler gamma 0.5', families: MASKED, cli: ['--entropy-bound', '0.5'], body: { entropy_bound: 0.5 }, page: { rule: 'entropy_bound', entropyBound: 0.5 } },
  { name: 'suffix window 8, prefix cache', families: MASKED, cli: ['--suffix-window', '8', '--cache', 'prefix'], body: { suffix_window: 8, cache: 'prefix' },
    page: { suffixWindowOn: true, suffixWindow: 8, cache: 'prefix' } },
  { name: 'early commit', families: MASKED, cli: ['--early-commit'], body: { early_commit: true }, page: { earlyCommit: true } },
  { name: 'the stack: EB-Sampler, suffix window 0, early commit', families: MASKED, cli: ['--entropy-bound', '0.2', '--suffix-window', '0', '--early-commit'],
    body: { entropy_bound: 0.2, suffix_window: 0, early_commit: true }, page: { rule: 'entropy_bound', entropyBound: 0.2, suffixWindowOn: true, suffixWindow: 0, earlyCommit: true } },
  { name: 'draft and verify 3 (the prefix cache it picks)', families: MASKED, cli: ['--draft-verify', '3'], body: { draft_verify: 3 },
    page: { draftVerifyOn: true, draftVerify: 3, cache: 'prefix' } },
  { name: 'draft and verify 4, no cache, threshold 0.5, suffix window 4', families: MASKED, cli: ['--draft-verify', '4', '--cache', 'none', '--threshold', '0.5', '--suffix-window', '4'],
    body: { draft_verify: 4, cache: 'none', threshold: 0.5, suffix_window: 4 }, page: { draftVerifyOn: true, draftVerify: 4, cache: 'none', rule: 'threshold', threshold: 0.5, suffixWindowOn: true, suffixWindow: 4 } },
  { name: 'draft and verify under the dual cache', families: MASKED, cli: ['--draft-verify', '3', '--cache', 'dual'], body: { draft_verify: 3, cache: 'dual' },
    page: { draftVerifyOn: true, draftVerify: 3, cache: 'dual' }, refused: 'draftVerify' },
  { name: 'draft and verify on block diffusion', families: ['fast_dllm_v2', 'sdar'], cli: ['--draft-verify', '3'], body: { draft_verify: 3 }, page: null, refused: 'draftVerify' },
  { name: 'Elastic-Cache gamma 0.95', families: MASKED, cli: ['--elastic-cache', '0.95'], body: { elastic_cache: 0.95 }, page: { elasticCacheOn: true, elasticGamma: 0.95 } },
  { name: 'the stack: Elastic-Cache, threshold 0.5, suffix window 8, early commit', families: MASKED, cli: ['--elastic-cache', '0.9', '--threshold', '0.5', '--suffix-window', '8', '--early-commit'],
    body: { elastic_cache: 0.9, threshold: 0.5, suffix_window: 8, early_commit: true },
    page: { elasticCacheOn: true, elasticGamma: 0.9, rule: 'threshold', threshold: 0.5, suffixWindowOn: true, suffixWindow: 8, earlyCommit: true } },
  { name: 'Elastic-Cache without the dual cache', families: MASKED, cli: ['--elastic-cache', '0.9', '--cache', 'prefix'], body: { elastic_cache: 0.9, cache: 'prefix' }, page: null, refused: 'elasticCache' },
  { name: 'Elastic-Cache on block diffusion', families: ['fast_dllm_v2', 'sdar'], cli: ['--elastic-cache', '0.9'], body: { elastic_cache: 0.9 }, page: null, refused: 'elasticCache' },
  { name: 'EB-Sampler with a threshold', families: MASKED, cli: ['--threshold', '0.5', '--entropy-bound', '0.1'], body: { threshold: 0.5, entropy_bound: 0.1 }, page: null, refused: 'entropyBound' },
  { name: 'a suffix window on block diffusion', families: ['fast_dllm_v2', 'sdar'], cli: ['--suffix-window', '4'], body: { suffix_window: 4 }, page: null, refused: 'suffixWindow' },
  { name: 'early commit on block diffusion', families: ['fast_dllm_v2', 'sdar'], cli: ['--early-commit'], body: { early_commit: true }, page: null, refused: 'earlyCommit' },
  { name: 'sampled', families: Object.keys(FAMILIES), cli: ['--temperature', '0.5', '--seed', '7'], body: { temperature: 0.5, seed: 7 }, page: { temperature: 0.5, seed: 7 } },
  { name: 'Dream topk_margin threshold', families: ['dream'], cli: ['--alg', 'topk_margin', '--threshold', '0.8'], body: { alg: 'topk_margin', threshold: 0.8 }, page: null },
  { name: 'Dream entropy schedule, prefix cache', families: ['dream'], cli: ['--alg', 'entropy', '--cache', 'prefix'], body: { alg: 'entropy', cache: 'prefix' }, page: null },
  { name: "Dream's confidence", families: ['llada'], cli: ['--alg', 'maskgit_plus'], body: { alg: 'maskgit_plus' }, page: null, refused: 'alg' },
  { name: 'threshold and factor', families: MASKED, cli: ['--threshold', '0.5', '--factor', '2'], body: { threshold: 0.5, factor: 2 }, page: null, refused: 'factor' },
  { name: 'steps not a multiple of the blocks', families: MASKED, cli: ['--steps', '3'], body: { steps: 3 }, page: { rule: 'fixed', steps: 3 }, refused: 'steps' },
  { name: 'a Fast-dLLM v2 setting', families: [...MASKED, 'sdar', 'llada2_moe'], cli: ['--sub-block-length', '4'], body: { sub_block_length: 4 }, page: null, refused: 'subBlockLength' },
  { name: 'v2 sub-block 4, threshold 0.5, block cache', families: ['fast_dllm_v2'], cli: ['--sub-block-length', '4', '--threshold', '0.5', '--cache', 'block'],
    body: { sub_block_length: 4, threshold: 0.5, block_cache: true }, page: { subBlockLength: 4, v2Threshold: 0.5, blockCache: true } },
  { name: 'v2 one token per step', families: ['fast_dllm_v2'], cli: ['--threshold', '1'], body: { threshold: 1 }, page: { v2Threshold: 1 } },
  { name: 'a sub-block that does not divide the block', families: ['fast_dllm_v2'], cli: ['--sub-block-length', '3'], body: { sub_block_length: 3 }, page: { subBlockLength: 3 }, refused: 'subBlockLength' },
  { name: 'SDAR static, 2 steps per block', families: ['sdar'], cli: ['--remasking', 'low_confidence_static', '--steps-per-block', '2'],
    body: { remasking: 'low_confidence_static', steps_per_block: 2 }, page: { sdarRemasking: 'low_confidence_static', stepsPerBlock: 2 } },
  { name: 'SDAR dynamic threshold 0.6', families: ['sdar', 'llada2_moe'], cli: ['--threshold', '0.6'], body: { threshold: 0.6 }, page: { sdarThreshold: 0.6 } },
  { name: 'SDAR static with a threshold', families: ['sdar'], cli: ['--remasking', 'low_confidence_static', '--threshold', '0.5'],
    body: { remasking: 'low_confidence_static', threshold: 0.5 }, page: null, refused: 'threshold' },
  { name: 'a LLaDA/Dream setting', families: ['fast_dllm_v2', 'sdar', 'llada2_moe'], cli: ['--steps', '8'], body: { steps: 8 }, page: null, refused: 'steps' },
  { name: 'early stop off', families: ['fast_dllm_v2', 'sdar', 'llada2_moe'], cli: ['--no-early-stop'], body: { early_stop: false }, page: null, refused: 'earlyStop' },
];

interface Loaded {
  description: ModelDescription;
  target: EngineTarget;
  caps: ModelCaps;
  engine: Engine;
}
const models = new Map<string, Loaded>();

beforeAll(async () => {
  for (const [arch, f] of Object.entries(FAMILIES)) {
    const description = await readModelConfig(modelDir(f.fixture));
    const engine = await createWasmEngine(modelDir(f.fixture), { threads: 1 });
    const caps: ModelCaps = { architecture: description.architecture, maxPositions: description.maxPositions, ...(description.blockSize !== undefined ? { blockSize: description.blockSize } : {}) };
    models.set(arch, { description, target: { name: engine.name, model: schedulerModelInfo(description), capabilities: engine.capabilities }, caps, engine });
  }
}, 60_000);

afterAll(async () => {
  for (const m of models.values()) await m.engine.dispose();
});

/** (4,) prompt ids inside every fixture's vocabulary, away from its special ids. */
const PROMPT = Int32Array.of(3, 17, 42, 101);
const limits = { defaults: { maxTokens: 128, blockLength: 32 }, timeoutMs: 0 };

/** Each front-end's request for a case, or the field it refused (in its own name). */
type Outcome = { request: GenerationRequest } | { refused: string };

function viaCli(f: Family, c: Case, m: Loaded): Outcome {
  const flags = addDecodeOptions(new Command().exitOverride()).parse([...f.cli, ...c.cli], { from: 'user' }).opts<DecodeFlags>();
  try {
    return { request: requestOf(decodingFrom(flags, m.description), PROMPT) };
  } catch (e) {
    if (!(e instanceof UsageError)) throw e;
    // The UsageError carries the scheduler's words in flag names; the field is the resolver's.
    const field = refusedField(() => resolveDecoding(m.description, flagChoices(flags)));
    expect(e.message).toContain(FLAG_NAMES[field]!);
    return { refused: FLAG_NAMES[field]! };
  }
}

function refusedField(f: () => unknown): ChoiceField {
  try {
    f();
  } catch (e) {
    if (e instanceof SchedulerConfigError && e.field) return e.field;
    throw e;
  }
  throw new Error('expected a refusal');
}

function viaServer(body: Record<string, unknown>, m: Loaded): Outcome {
  try {
    const job = buildJob({ model: 'm', prompt: Array.from(PROMPT), ...body } as unknown as ChatBody & CompletionBody, PROMPT, false, m.target, limits);
    return { request: job.request };
  } catch (e) {
    if (!(e instanceof ApiError)) throw e;
    expect(e.status).toBe(400);
    return { refused: e.param! };
  }
}

function pageSettings(f: Family, c: Case, m: Loaded): DecodeSettings {
  return { ...DEFAULT_SETTINGS, ...recipeSettings(m.caps), ...f.page, ...c.page };
}

function viaPage(s: DecodeSettings, m: Loaded): Outcome {
  const problems = settingsProblems(s, m.caps, PROMPT.length);
  if (problems.length) return { refused: problems.join(' ') };
  return { request: toRequest(s, PROMPT, m.caps) };
}

/** The page talking to `fast-dllm serve`: its form as the server's fields, through the server's own mapping. */
function viaPageRemote(s: DecodeSettings, m: Loaded): Outcome {
  const { genLength, temperature, seed, ...rest } = pageChoices(s, m.caps);
  return viaServer({ max_tokens: genLength, temperature, seed, ...serverFields(rest) }, m);
}

describe('one front door: every front-end maps its syntax to the same plan', () => {
  it("the page's names for the server's fields are the server's", () => {
    for (const [field, name] of Object.entries(SERVER_FIELDS)) expect(BODY_FIELDS[field as ChoiceField], field).toBe(name);
  });

  for (const [arch, family] of Object.entries(FAMILIES)) {
    describe(arch, () => {
      for (const c of CASES.filter((x) => x.families.includes(arch))) {
        it(`${c.name}: ${c.refused ? `refused for ${c.refused} by every front-end` : 'the same request and tokens'}`, async () => {
          const m = models.get(arch)!;
          const outcomes: Record<string, Outcome> = {
            cli: viaCli(family, c, m),
            server: viaServer({ ...family.body, ...c.body }, m),
            ...(c.page ? { page: viaPage(pageSettings(family, c, m), m), 'page → server': viaPageRemote(pageSettings(family, c, m), m) } : {}),
          };
          if (c.refused) {
            expect(outcomes.cli).toEqual({ refused: FLAG_NAMES[c.refused] });
            expect(outcomes.server).toEqual({ refused: BODY_FIELDS[c.refused] });
            if (outcomes.page) expect((outcomes.page as { refused: string }).refused).toContain(FIELD_LABELS[c.refused]!);
            if (outcomes['page → server']) expect(outcomes['page → server']).toEqual({ refused: BODY_FIELDS[c.refused] });
            return;
          }
          const requests = Object.entries(outcomes).map(([who, o]) => {
            expect(o, who).toHaveProperty('request');
            return [who, (o as { request: GenerationRequest }).request] as const;
          });
          for (const [who, r] of requests.slice(1)) expect(r, `${who} vs cli`).toEqual(requests[0][1]);
          const tokens = await Promise.all(requests.map(async ([, r]) => Array.from((await generate(m.engine, r)).tokens)));
          for (const [i, t] of tokens.entries()) expect(t, `${requests[i][0]} tokens`).toEqual(tokens[0]);
        });
      }
    });
  }
});

describe('early stop (DESIGN §5), on by default, never changes the answer', () => {
  it('the bundled model: the same answer ids with and without it, in fewer or as many forwards, for every rule and cache', async () => {
    const description = await readModelConfig(defaultModelDir);
    const tokenizer = await loadTokenizer(defaultModelDir);
    const engine = await createWasmEngine(defaultModelDir, { threads: 1 });
    try {
      const info = schedulerModelInfo(description);
      const stops = info.stopIds ?? [info.eosId];
      let stoppedEarly = 0;
      for (const item of loadEvalSet().slice(0, 2)) {
        const text = tokenizer.applyChatTemplate([{ role: 'user', content: item.prompt }], { addGenerationPrompt: true });
        const prompt = Int32Array.from(tokenizer.encode(text, { addSpecial: false }));
        for (const choices of [{}, { rule: 'fixed', remasking: 'random', cache: 'none' }, { factor: 1, cache: 'prefix' }] as const) {
          const on = resolveDecoding(description, { ...choices, genLength: 64, blockLength: 16 });
          expect(on.earlyStop).toBe(true); // the default
          const off = resolveDecoding(description, { ...choices, genLength: 64, blockLength: 16, earlyStop: false });
          const a = await generate(engine, requestOf(on, prompt));
          const b = await generate(engine, requestOf(off, prompt));
          const answer = (t: Int32Array) => Array.from(committedPrefix(t, -1, stops).ids);
          expect(answer(a.tokens), `${item.prompt} ${JSON.stringify(choices)}`).toEqual(answer(b.tokens));
          expect(a.stats.nfe).toBeLessThanOrEqual(b.stats.nfe);
          if (a.stoppedEarly) stoppedEarly++;
        }
      }
      expect(stoppedEarly, 'the rule must have stopped some runs, or this test shows nothing').toBeGreaterThan(0);
    } finally {
      await engine.dispose();
    }
  });
});
