import { describe, expect, it } from 'vitest';
import { generate, type GenerationEvent, type GenerationRequest } from '../src/generate.js';
import { SchedulerConfigError } from '../src/errors.js';
import { counterUniform, LANE_REMASK_RANDOM } from '@fast-dllm/engine-contract';
import { EOS, MASK, MockEngine, byPos } from './mock-engine.js';

const prompt = Int32Array.of(1, 5, 6); // P = 3
const base = (over: Partial<GenerationRequest> = {}): GenerationRequest => ({
  prompt,
  genLength: 8,
  blockLength: 4,
  steps: 4,
  strategy: { kind: 'fixed' },
  ...over,
});
const spans = (e: MockEngine) => e.requests.map((r) => `${r.mode}[${r.start},${r.end})`);
const arr = (a: ArrayLike<number>) => Array.from(a);

describe('generate: fixed schedule', () => {
  it('commits the most confident positions per step and fills the canvas', async () => {
    // Higher positions are more confident: each step takes the right-most masks of the block.
    const e = new MockEngine(byPos((p) => p / 100));
    const r = await generate(e, base());
    expect(arr(r.tokens)).toEqual([13, 14, 15, 16, 17, 18, 19, 20]);
    expect(r.steps.map((s) => arr(s.positions))).toEqual([[5, 6], [3, 4], [9, 10], [7, 8]]);
    expect(r.stats.nfe).toBe(4);
    expect(r.stats.tokensPerForward).toBe(2);
    // Only masked in-block positions are requested.
    expect(arr(e.requests[1].positions)).toEqual([3, 4]);
    expect(arr(e.requests[2].positions)).toEqual([7, 8, 9, 10]);
  });
  it('ends a block as soon as it has no mask (m < n: no zero-token forwards)', async () => {
    const e = new MockEngine(byPos(() => 0.5));
    const r = await generate(e, base({ genLength: 4, blockLength: 2, steps: 8 })); // 4 steps per block, 2 masks
    expect(r.stats.nfe).toBe(4);
    // Ties go to the lower position.
    expect(r.steps.map((s) => arr(s.positions))).toEqual([[3], [4], [5], [6]]);
  });
  it('random remasking ranks by the shared RNG uniform of (seed, forward, position)', async () => {
    const e = new MockEngine(byPos(() => 0.5));
    const seed = 7;
    const r = await generate(e, base({ genLength: 4, blockLength: 4, steps: 2, seed, strategy: { kind: 'fixed', remasking: 'random' } }));
    const u = [3, 4, 5, 6].map((p) => counterUniform(seed, 0, p, LANE_REMASK_RANDOM));
    const top2 = [3, 4, 5, 6].sort((a, b) => u[b - 3] - u[a - 3]).slice(0, 2).sort();
    expect(arr(r.steps[0].positions)).toEqual(top2);
  });
  it('temperature > 0 passes sampling with forwardIndex = NFE - 1', async () => {
    const e = new MockEngine(byPos(() => 0.5));
    await generate(e, base({ temperature: 0.7, seed: 3 }));
    expect(e.requests.map((q) => q.sampling)).toEqual([0, 1, 2, 3].map((forwardIndex) => ({ temperature: 0.7, seed: 3, forwardIndex })));
    const g = new MockEngine(byPos(() => 0.5));
    await generate(g, base());
    expect(g.requests.every((q) => q.sampling === undefined && q.want === undefined)).toBe(true);
  });
});

describe('generate: threshold and factor', () => {
  it('threshold commits all >= tau and always one', async () => {
    // Forward 0: positions 3 and 5 pass; forward 1: none pass, one forced; and so on.
    const conf = (p: number, fi: number) => (fi === 0 && (p === 3 || p === 5) ? 0.95 : 0.1 + p / 100);
    const e = new MockEngine(byPos(conf));
    const r = await generate(e, base({ genLength: 4, steps: 1, strategy: { kind: 'threshold', threshold: 0.9 } }));
    expect(r.steps.map((s) => arr(s.positions))).toEqual([[3, 5], [6], [4]]);
    expect(r.stats.nfe).toBe(3);
  });
  it('factor commits the passing prefix of ranks', async () => {
    const conf = (p: number, fi: number) => (fi === 0 ? [0.9, 0.8, 0.5, 0.1][p - 3] : 0.3);
    const e = new MockEngine(byPos(conf));
    const r = await generate(e, base({ genLength: 4, steps: 1, strategy: { kind: 'factor', factor: 1 } }));
    expect(r.steps.map((s) => arr(s.positions))).toEqual([[3, 4], [5], [6]]);
  });
});

describe('generate: cache modes', () => {
  const req = base({ strategy: { kind: 'fixed' } }); // 2 blocks of 4, 2 steps per block... steps 4 / 2 blocks
  it('none: every step is a full forward', async () => {
    const e = new MockEngine(byPos((p) => p / 100));
    await generate(e, { ...req, cache: 'none' });
    expect(spans(e)).toEqual(['full[0,11)', 'full[0,11)', 'full[0,11)', 'full[0,11)']);
  });
  it('prefix: one full forward per block, then [s, L)', async () => {
    const e = new MockEngine(byPos((p) => p / 100));
    const r = await generate(e, { ...req, cache: 'prefix' });
    expect(spans(e)).toEqual(['full[0,11)', 'prefix[3,11)', 'full[0,11)', 'prefix[7,11)']);
    expect(r.stats.forwardsByMode).toEqual({ full: 2, prefix: 2, dual: 0, extend: 0 });
  });
  it('dual: one full forward per block, then block-only forwards until the block is full', async () => {
    const e = new MockEngine(byPos((p) => p / 100));
    await generate(e, { ...req, steps: 8, cache: 'dual' });
    expect(spans(e)).toEqual(['full[0,11)', 'dual[3,7)', 'dual[3,7)', 'dual[3,7)', 'full[0,11)', 'dual[7,11)', 'dual[7,11)', 'dual[7,11)']);
  });
  it('refreshEvery adds full forwards inside the block, each one NFE', async () => {
    const e = new MockEngine(byPos((p) => p / 100));
    const r = await generate(e, { ...req, genLength: 4, steps: 4, cache: 'dual', refreshEvery: 2 });
    expect(spans(e)).toEqual(['full[0,7)', 'dual[3,7)', 'full[0,7)', 'dual[3,7)']);
    expect(r.stats.nfe).toBe(4);
  });
  it('rejects a cache mode the engine lacks with "not supported"', async () => {
    const e = new MockEngine(byPos(() => 0.5), { caps: { modes: ['full'] } });
    await expect(generate(e, { ...req, cache: 'dual' })).rejects.toThrow(/not supported/);
    await expect(generate(e, { ...req, cache: 'none' })).resolves.toBeDefined();
  });
});

describe('generate: Dream', () => {
  it('under a cache the full forward commits only the block start, then the schedule decodes the rest', async () => {
    const e = new MockEngine(byPos((p) => p / 100), { architecture: 'dream' });
    const r = await generate(e, base({ steps: 8, cache: 'dual', strategy: { kind: 'dream', alg: 'maskgit_plus' } }));
    expect(arr(e.requests[0].positions)).toEqual([3]);
    expect(e.requests[0].mode).toBe('full');
    expect(arr(r.steps[0].positions)).toEqual([3]);
    expect(arr(e.requests[1].positions)).toEqual([4, 5, 6]);
    // Every block starts with a lone first-position commit at a full forward.
    expect(r.steps.filter((s) => s.mode === 'full').map((s) => arr(s.positions))).toEqual([[3], [7]]);
    expect(r.canvas.includes(MASK)).toBe(false);
  });
  it('the rule follows the model (shifted logits), not the strategy; the fixed schedule spreads the rest', async () => {
    const d = new MockEngine(byPos((p) => p / 100), { architecture: 'dream' });
    const rd = await generate(d, base({ genLength: 4, steps: 3, cache: 'prefix', strategy: { kind: 'fixed' } }));
    // m = 4, n = 3: [3] at the full forward, then the 3 remaining over 2 steps: 2, 1 (most confident first).
    expect(rd.steps.map((s) => arr(s.positions))).toEqual([[3], [5, 6], [4]]);
    expect(rd.stats.nfe).toBe(3);
    const l = new MockEngine(byPos((p) => p / 100));
    await generate(l, base({ steps: 8, cache: 'dual', strategy: { kind: 'dream', alg: 'maskgit_plus' } }));
    expect(arr(l.requests[0].positions)).toEqual([3, 4, 5, 6]);
  });
  it('without a cache no position is special', async () => {
    const e = new MockEngine(byPos((p) => p / 100), { architecture: 'dream' });
    await generate(e, base({ steps: 8, strategy: { kind: 'dream', alg: 'maskgit_plus' } }));
    expect(arr(e.requests[0].positions)).toEqual([3, 4, 5, 6]);
  });
  it('asks for top-2 only with topk_margin and entropy only with entropy, and ranks by them', async () => {
    const s = (p: number) => ({ token: 10 + p, prob: 0.9, top2: p === 5 ? 0.0 : 0.5, entropy: p === 4 ? 0.01 : 1 });
    const a = new MockEngine(s, { architecture: 'dream' });
    const ra = await generate(a, base({ genLength: 4, steps: 1, strategy: { kind: 'dream', alg: 'topk_margin', threshold: 0.8 } }));
    expect(a.requests[0].want).toEqual({ top2: true });
    expect(arr(ra.steps[0].positions)).toEqual([5]);
    const b = new MockEngine(s, { architecture: 'dream' });
    // Schedule: 2 steps for 4 masks, t = linspace(1, 1e-3, 3): step 0 commits int(4 · (1 - 0.5005)) = 1 token.
    const rb = await generate(b, base({ genLength: 4, steps: 2, strategy: { kind: 'dream', alg: 'entropy' } }));
    expect(b.requests[0].want).toEqual({ entropy: true });
    expect(arr(rb.steps[0].positions)).toEqual([4]);
    // -entropy <= 0 can never pass a threshold in (0, 1]: refused instead of silently decoding one token per step.
    await expect(generate(new MockEngine(s, { architecture: 'dream' }), base({ strategy: { kind: 'dream', alg: 'entropy', threshold: 0.5 } })))
      .rejects.toThrow(/-entropy .* no threshold in \(0, 1\] reaches; .*use alg 'maskgit_plus'/);
    const c = new MockEngine(s, { architecture: 'dream', caps: { reports: { top2: false, entropy: true, logits: false } } });
    await expect(generate(c, base({ strategy: { kind: 'dream', alg: 'topk_margin' } }))).rejects.toThrow(/not supported/);
  });
  it('origin completes the block within its step budget', async () => {
    const e = new MockEngine(byPos(() => 0.5), { architecture: 'dream' });
    const r = await generate(e, base({ steps: 4, strategy: { kind: 'dream', alg: 'origin' }, seed: 11 }));
    expect(r.canvas.includes(MASK)).toBe(false);
    expect(r.stats.nfe).toBeLessThanOrEqual(4);
  });
});

describe('generate: early stop, abort, events, validation', () => {
  it('early stop ends once everything after an EOS is EOS, and says so', async () => {
    const s = (p: number) => ({ token: p >= 5 ? EOS : 40, prob: 0.5 });
    const full = await generate(new MockEngine(s), base({ genLength: 12, steps: 12 }));
    expect(full.stoppedEarly).toBe(false);
    expect(full.stats.nfe).toBe(12);
    const e = new MockEngine(s);
    const r = await generate(e, base({ genLength: 12, steps: 12, earlyStop: true }));
    expect(r.stoppedEarly).toBe(true);
    expect(r.stats.nfe).toBe(4);
    expect(arr(r.tokens)).toEqual([40, 40, EOS, EOS, EOS, EOS, EOS, EOS, EOS, EOS, EOS, EOS]);
    expect(r.stats.contentTokens).toBe(2);
  });
  it('aborts between forwards with an AbortError', async () => {
    const ac = new AbortController();
    const e = new MockEngine(byPos(() => 0.5));
    const p = generate(e, base(), { signal: ac.signal, onEvent: (ev) => ev.type === 'step' && ac.abort() });
    await expect(p).rejects.toMatchObject({ name: 'AbortError' });
    expect(e.requests.length).toBe(1);
  });
  it('streams step, block and done events', async () => {
    const events: GenerationEvent[] = [];
    const r = await generate(new MockEngine(byPos((p) => p / 100)), base(), { onEvent: (ev) => events.push(ev) });
    expect(events.map((e) => e.type)).toEqual(['step', 'step', 'block', 'step', 'step', 'block', 'done']);
    const first = events[0] as Extract<GenerationEvent, { type: 'step' }>;
    expect([first.block, first.step, first.mode, arr(first.positions), arr(first.tokens), first.nfe]).toEqual([0, 0, 'full', [5, 6], [15, 16], 1]);
    expect((events[6] as Extract<GenerationEvent, { type: 'done' }>).result).toBe(r);
  });
  it.each<[string, Partial<GenerationRequest>, RegExp]>([
    ['genLength % blockLength', { genLength: 6 }, /multiple of blockLength/],
    ['steps % numBlocks', { steps: 3 }, /multiple of the number of blocks/],
    ['non-integer', { steps: 2.5 }, /positive integer/],
    ['tau', { strategy: { kind: 'threshold', threshold: 0 } }, /\(0, 1\]/],
    ['tau > 1', { strategy: { kind: 'threshold', threshold: 1.5 } }, /\(0, 1\]/],
    ['factor', { strategy: { kind: 'factor', factor: -1 } }, /factor f must be > 0/],
    ['too long', { genLength: 64, blockLength: 8, steps: 8 }, /exceeds the model's 64 positions/],
    ['mask in prompt', { prompt: Int32Array.of(1, MASK) }, /mask token/],
    ['empty prompt', { prompt: new Int32Array(0) }, /empty prompt/],
    ['refresh without cache', { refreshEvery: 2 }, /needs a cache mode/],
    ['bad seed', { seed: -1 }, /seed/],
  ])('rejects %s with a SchedulerConfigError', async (_n, over, msg) => {
    const e = new MockEngine(byPos(() => 0.5));
    const p = generate(e, base(over));
    await expect(p).rejects.toBeInstanceOf(SchedulerConfigError);
    await expect(generate(e, base(over))).rejects.toThrow(msg);
    expect(e.requests.length).toBe(0);
  });
  it('rejects a contract version mismatch', async () => {
    const e = new MockEngine(byPos(() => 0.5), { caps: { contractVersion: 999 } });
    await expect(generate(e, base())).rejects.toThrow(/contract version 999/);
  });
});
