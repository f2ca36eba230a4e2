import { describe, expect, it } from 'vitest';
import { BatchDriver, QueueFullError, DriverClosedError, decodeMany } from '../src/batch.js';
import { EngineCapacityError, SequenceTable, committedPrefix, layoutPass } from '../src/index.js';
import { Generation, type GenerationResult } from '../src/generation.js';
import { generate } from '../src/generate.js';
import { SchedulerConfigError } from '../src/errors.js';
import type { GenerationRequest, Strategy } from '../src/request.js';
import type { ForwardRequest } from '@fast-dllm/engine-contract';
import { EOS, MASK, MockEngine, type Script } from './mock-engine.js';

/**
 * A script whose answer depends on the whole request (canvas, span, the sequence's own forward index), as a real
 * engine's does: if the driver mixed up sequences or steps, the tokens would change.
 */
const contentScript: Script = (p, fi, req) => {
  let h = 17 + fi * 31 + p * 7 + req.start * 3;
  for (let i = 0; i < req.canvas.length; i++) h = (Math.imul(h, 31) + req.canvas[i]) | 0;
  const u = ((h >>> 0) % 1000) / 1000;
  return { token: 20 + ((h >>> 3) % 60), prob: 0.05 + 0.95 * u, top2: u / 3, entropy: 1 - u };
};

const strategies: Strategy[] = [
  { kind: 'fixed' },
  { kind: 'fixed', remasking: 'random' },
  { kind: 'threshold', threshold: 0.6 },
  { kind: 'factor', factor: 1.5 },
];

/** A mixed set: different prompts, lengths, strategies, caches, greedy and sampled. */
function mixedRequests(count: number): GenerationRequest[] {
  return Array.from({ length: count }, (_, i) => {
    const P = 1 + (i % 5);
    const gen = [8, 12, 16][i % 3];
    const bl = gen === 12 ? 6 : 4;
    return {
      prompt: Int32Array.from({ length: P }, (_, j) => 1 + ((i * 7 + j) % 40)),
      genLength: gen,
      blockLength: bl,
      steps: gen,
      strategy: strategies[i % strategies.length],
      cache: (['none', 'prefix', 'dual'] as const)[(i >> 1) % 3],
      temperature: i % 4 === 3 ? 0.8 : 0,
      seed: 1000 + i,
    };
  });
}

const summary = (r: GenerationResult) => ({
  tokens: Array.from(r.tokens),
  nfe: r.stats.nfe,
  steps: r.steps.map((s) => [s.block, s.step, s.mode, Array.from(s.positions), Array.from(s.tokens), s.nfe]),
});

describe('batch driver: batch invariance', () => {
  it('decodeMany gives every request exactly what it gets alone (tokens, NFE, per-step commits)', async () => {
    const reqs = mixedRequests(14);
    const alone = [];
    for (const r of reqs) alone.push(summary(await generate(new MockEngine(contentScript, { maxPositions: 64 }), r)));
    const engine = new MockEngine(contentScript, { maxPositions: 64 });
    const batched = await decodeMany(engine, reqs, { batch: 5 });
    expect(batched.map(summary)).toEqual(alone);
    // It really batched: at most 5 sequences per pass, many passes with several, and every cache freed.
    expect(Math.max(...engine.passes.map((p) => p.length))).toBe(5);
    expect(engine.passes.length).toBeLessThan(alone.reduce((a, s) => a + s.nfe, 0) / 2);
    expect(engine.openSequences).toBe(0);
  });

  it('a burst of requests submitted together shares its first pass', async () => {
    const engine = new MockEngine(contentScript, { maxPositions: 64 });
    await decodeMany(engine, mixedRequests(6), { batch: 8 });
    expect(engine.passes[0]).toHaveLength(6);
  });

  it('mixes modes in one pass (a full forward beside dual steps)', async () => {
    const engine = new MockEngine(contentScript, { maxPositions: 64 });
    await decodeMany(engine, mixedRequests(6), { batch: 6 });
    expect(engine.passes.some((p) => new Set(p.map((r) => r.mode)).size > 1)).toBe(true);
  });

  it('sequences joining mid-way and finishing early do not change anyone\'s result', async () => {
    const reqs = mixedRequests(6);
    const alone = await Promise.all(reqs.map((r) => generate(new MockEngine(contentScript, { maxPositions: 64 }), r)));
    const engine = new MockEngine(contentScript, { maxPositions: 64 });
    const driver = new BatchDriver(engine, { maxBatch: 4 });
    const results: Promise<GenerationResult>[] = [];
    const passesAt: number[] = [];
    results.push(driver.submit(reqs[0]), driver.submit(reqs[1]));
    // Later arrivals join while the first two are being decoded.
    for (let i = 2; i < reqs.length; i++) {
      await new Promise((r) => setImmediate(r));
      await new Promise((r) => setImmediate(r));
      passesAt.push(engine.passes.length);
      results.push(driver.submit(reqs[i]));
    }
    const got = await Promise.all(results);
    expect(got.map(summary)).toEqual(alone.map(summary));
    expect(passesAt.some((n) => n > 0)).toBe(true);
    expect(engine.openSequences).toBe(0);
  });
});

describe('batch driver: admission, capacity, cancellation, failures', () => {
  const req = (over: Partial<GenerationRequest> = {}): GenerationRequest => ({
    prompt: Int32Array.of(1, 2, 3), genLength: 8, blockLength: 4, steps: 8, strategy: { kind: 'fixed' }, ...over,
  });

  it('admits no more sequences than the engine has room for, and finishes them all', async () => {
    const engine = new MockEngine(contentScript);
    engine.maxSequences = 2;
    const out = await decodeMany(engine, Array.from({ length: 5 }, (_, i) => req({ seed: i, prompt: Int32Array.of(1 + i) })), { batch: 4 });
    expect(out).toHaveLength(5);
    expect(Math.max(...engine.passes.map((p) => p.length))).toBe(2);
  });

  it('refuses a request whose cache can never fit, and serves the others', async () => {
    const engine = new MockEngine(contentScript);
    engine.maxSequences = 0;
    await expect(decodeMany(engine, [req()])).rejects.toBeInstanceOf(EngineCapacityError);
  });

  it('cancels one sequence while the others run; its cache is freed', async () => {
    const engine = new MockEngine(contentScript);
    const driver = new BatchDriver(engine, { maxBatch: 4 });
    const ac = new AbortController();
    let steps = 0;
    const victim = driver.submit(req({ genLength: 16, steps: 16 }), { signal: ac.signal, onEvent: (e) => { if (e.type === 'step' && ++steps === 2) ac.abort(); } });
    const others = [driver.submit(req({ seed: 1 })), driver.submit(req({ seed: 2 }))];
    await expect(victim).rejects.toMatchObject({ name: 'AbortError' });
    const done = await Promise.all(others);
    expect(done.every((r) => !r.tokens.includes(MASK))).toBe(true);
    expect(steps).toBe(2);
    expect(driver.counters.cancelled).toBe(1);
    expect(engine.openSequences).toBe(0);
  });

  it('a queued request that is cancelled leaves the queue at once', async () => {
    const engine = new MockEngine(contentScript);
    const driver = new BatchDriver(engine, { maxBatch: 1 });
    const first = driver.submit(req());
    const ac = new AbortController();
    const queued = driver.submit(req({ seed: 9 }), { signal: ac.signal });
    expect(driver.queued).toBe(1);
    ac.abort();
    await expect(queued).rejects.toMatchObject({ name: 'AbortError' });
    expect(driver.queued).toBe(0);
    await first;
  });

  it('many requests sharing one signal add one listener to it, removed when they are done', async () => {
    const engine = new MockEngine(contentScript);
    const ac = new AbortController();
    const added: string[] = [];
    const orig = ac.signal.addEventListener.bind(ac.signal);
    ac.signal.addEventListener = ((type: string, ...rest: unknown[]) => { added.push(type); return (orig as (...a: unknown[]) => void)(type, ...rest); }) as typeof ac.signal.addEventListener;
    const out = await decodeMany(engine, Array.from({ length: 40 }, (_, i) => req({ seed: i })), { batch: 4, signal: ac.signal });
    expect(out).toHaveLength(40);
    expect(added).toEqual(['abort']);
    // Aborting queued requests that share a signal ends all of them at once.
    const driver = new BatchDriver(engine, { maxBatch: 1 });
    const shared = new AbortController();
    const ps = Array.from({ length: 5 }, (_, i) => expect(driver.submit(req({ seed: i }), { signal: shared.signal })).rejects.toMatchObject({ name: 'AbortError' }));
    shared.abort();
    await Promise.all(ps);
    expect(driver.counters.cancelled).toBe(5);
  });

  it('a full queue answers QueueFullError; a bad request SchedulerConfigError; neither disturbs the others', async () => {
    const engine = new MockEngine(contentScript);
    const driver = new BatchDriver(engine, { maxBatch: 1, maxQueue: 1 });
    const a = driver.submit(req());
    const b = driver.submit(req({ seed: 3 }));
    await expect(driver.submit(req({ seed: 4 }))).rejects.toBeInstanceOf(QueueFullError);
    await expect(driver.submit(req({ genLength: 7 }))).rejects.toBeInstanceOf(SchedulerConfigError);
    expect((await a).stats.nfe).toBe(8);
    expect((await b).stats.nfe).toBe(8);
  });

  it('a failed pass fails only the sequences in it', async () => {
    const engine = new MockEngine(contentScript);
    const driver = new BatchDriver(engine, { maxBatch: 1 });
    const forward = engine.forward.bind(engine);
    let calls = 0;
    engine.forward = async (batch) => {
      if (++calls === 3) throw new Error('device lost');
      return forward(batch);
    };
    const a = driver.submit(req());
    const b = driver.submit(req({ seed: 5 }));
    await expect(a).rejects.toThrow('device lost');
    expect((await b).stats.nfe).toBe(8);
    expect(driver.counters.failed).toBe(1);
    expect(engine.openSequences).toBe(0);
  });

  it('a pass refused for lack of scratch memory is retried with fewer sequences', async () => {
    const engine = new MockEngine(contentScript);
    const forward = engine.forward.bind(engine);
    engine.forward = async (batch) => {
      if (batch.length > 2) throw new EngineCapacityError('scratch');
      return forward(batch);
    };
    const out = await decodeMany(engine, Array.from({ length: 4 }, (_, i) => req({ seed: i })), { batch: 4 });
    expect(out).toHaveLength(4);
    expect(Math.max(...engine.passes.map((p) => p.length))).toBe(2);
  });

  it('close() finishes in-flight work; close({ cancel }) ends it; afterwards submit is refused', async () => {
    const engine = new MockEngine(contentScript);
    const d1 = new BatchDriver(engine);
    const p = d1.submit(req());
    await d1.close();
    expect((await p).stats.nfe).toBe(8);
    await expect(d1.submit(req())).rejects.toBeInstanceOf(DriverClosedError);
    const d2 = new BatchDriver(engine, { maxBatch: 1 });
    const q1 = expect(d2.submit(req())).rejects.toBeInstanceOf(DriverClosedError);
    const q2 = expect(d2.submit(req())).rejects.toBeInstanceOf(DriverClosedError);
    await d2.close({ cancel: true });
    await q1;
    await q2;
    expect(engine.openSequences).toBe(0);
  });
});

describe('Generation', () => {
  it('is resumable: next() repeats until advance(), null when done; committed text only grows', async () => {
    const engine = new MockEngine((p) => ({ token: p === 8 ? EOS : 30 + p, prob: p / 100 }));
    const g = new Generation(engine, { prompt: Int32Array.of(1, 2, 3), genLength: 8, blockLength: 4, steps: 8, strategy: { kind: 'fixed' } });
    const seq = engine.openSequence(g.maxLength);
    let last: number[] = [];
    for (let s = g.next(); s; s = g.next()) {
      expect(g.next()).toBe(s);
      g.advance(await engine.forward(s.map((r) => ({ ...r, sequence: seq }))));
      const now = Array.from(g.committed().ids);
      expect(now.slice(0, last.length)).toEqual(last);
      last = now;
    }
    expect(g.next()).toBeNull();
    expect(() => g.advance([{ tokens: new Int32Array(0), probs: new Float64Array(0) }])).toThrow(/no forward request is outstanding/);
    // Position 8 is EOS: the committed answer stops before it.
    expect(last).toEqual([33, 34, 35, 36, 37]);
    expect(g.committed().stopped).toBe(true);
  });

  it('committedPrefix stops at the first mask or stop token', () => {
    expect(Array.from(committedPrefix(Int32Array.of(5, 6, MASK, 7), MASK, [EOS]).ids)).toEqual([5, 6]);
    expect(committedPrefix(Int32Array.of(5, EOS, MASK), MASK, [EOS])).toMatchObject({ stopped: true });
    expect(Array.from(committedPrefix(Int32Array.of(5, 6), MASK, [EOS]).ids)).toEqual([5, 6]);
  });
});

describe('engine kit', () => {
  const model = { architecture: 'dream' as const, vocabSize: 128, maxPositions: 64, maskId: MASK, eosId: EOS, shiftLogits: true };
  const caps = { contractVersion: 2, modes: ['full', 'prefix', 'dual', 'extend'] as const, reports: { top2: true, entropy: true, logits: true }, sampling: true, maxBatch: 4, blockCausal: true };
  const canvas = (L: number) => new Int32Array(L).fill(1);
  const fwd = (seq: ForwardRequest['sequence'], mode: ForwardRequest['mode'], L: number, start: number, end: number, positions: number[] = [start]): ForwardRequest =>
    ({ sequence: seq, canvas: canvas(L), mode, start, end, positions: Int32Array.from(positions) });

  it('SequenceTable enforces the cache rules of each mode', () => {
    const t = new SequenceTable<null>('t', 64);
    const s = t.open(32, () => null);
    expect(() => t.check(model, caps, [fwd(s, 'dual', 16, 4, 8)])).toThrow(/needs a prior 'full' forward/);
    expect(() => t.check(model, caps, [fwd(s, 'full', 40, 0, 40)])).toThrow(/longer than sequence 1's reserved 32/);
    t.check(model, caps, [fwd(s, 'extend', 8, 0, 8)]); // nothing to read: allowed on a fresh sequence
    t.commit([fwd(s, 'extend', 8, 0, 8)]);
    expect(() => t.check(model, caps, [fwd(s, 'prefix', 16, 12, 16)])).toThrow(/holds 8 positions, this 'prefix' step starts at 12/);
    t.check(model, caps, [fwd(s, 'prefix', 16, 8, 16)]);
    expect(() => t.check(model, caps, [fwd(s, 'dual', 16, 8, 12)])).toThrow(/holds a canvas of 8 tokens, this 'dual' step has 16/);
    t.commit([fwd(s, 'full', 16, 0, 16)]);
    t.check(model, caps, [fwd(s, 'dual', 16, 8, 12)]);
    expect(() => t.check(model, caps, [fwd(s, 'dual', 16, 8, 12), fwd(s, 'dual', 16, 8, 12)])).toThrow(/appears twice/);
    // Several prefix steps of one sequence may share a pass (they leave the cache as it is); a writer among them may not.
    t.check(model, caps, [fwd(s, 'prefix', 16, 8, 16), fwd(s, 'prefix', 16, 0, 16), fwd(s, 'prefix', 16, 4, 16)]);
    expect(() => t.check(model, caps, [fwd(s, 'prefix', 16, 8, 16), fwd(s, 'dual', 16, 8, 12)])).toThrow(/only 'prefix' steps/);
    expect(() => t.check(model, caps, [fwd(s, 'full', 16, 0, 16), fwd(s, 'prefix', 16, 8, 16)])).toThrow(/appears twice/);
    t.invalidate([fwd(s, 'dual', 16, 8, 12)]);
    expect(() => t.check(model, caps, [fwd(s, 'dual', 16, 8, 12)])).toThrow(/needs a prior 'full'/);
    expect(t.close(s)).toBeNull();
    expect(() => t.check(model, caps, [fwd(s, 'full', 16, 0, 16)])).toThrow(/not open/);
    // A shifted model may ask for the position just past the span (its row end-1 predicts it).
    const s2 = t.open(32, () => null);
    t.check(model, caps, [fwd(s2, 'full', 16, 0, 16, [15, 16])]);
    expect(() => t.check(model, caps, [fwd(s2, 'full', 16, 0, 16, [17])])).toThrow(/inside \[0, 17\)/);
  });

  it('layoutPass concatenates rows and maps each report to its prediction row', () => {
    const t = new SequenceTable<null>('t', 64);
    const a = t.open(32, () => null);
    const b = t.open(32, () => null);
    const batch = [fwd(a, 'full', 10, 0, 10, [0, 3, 10]), { ...fwd(b, 'full', 6, 0, 6, [2]), sampling: { temperature: 0.5, seed: 9, forwardIndex: 4 } }];
    const l = layoutPass(model, batch);
    expect(l.rows).toBe(16);
    expect(Array.from(l.rowOffset)).toEqual([0, 10]);
    expect(Array.from(l.reportRow)).toEqual([0, 2, 9, 11]); // shifted: p reads row p-1 (position 0 its own)
    expect(Array.from(l.temperature)).toEqual([0, 0, 0, 0.5]);
    expect(Array.from(l.forwardIndex)).toEqual([0, 0, 0, 4]);
  });
});
