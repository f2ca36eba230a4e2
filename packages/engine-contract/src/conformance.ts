/**
 * The contract checks any engine can run on itself, with no test framework and no file system (so also inside a
 * browser): what the contract promises about sequences, batches, capacity and disposal (DESIGN §0, §7). The
 * numeric checks (golden logits, tokens against the float64 driver, the cache rules of §4) stay in the repository's
 * harness, test/conformance, which runs these too for every registered engine.
 */
import type { Engine, ForwardRequest, ForwardResult, SequenceHandle } from './engine.js';
import { EngineCapacityError } from './engine-kit.js';

export interface ContractCheck {
  name: string;
  ok: boolean;
  /** What was seen when the check failed ('' when it passed). */
  detail: string;
}

/** Most sequences the capacity check opens; an engine with room for more is checked up to its promise only. */
const CAPACITY_PROBE_LIMIT = 64;

/**
 * Runs the contract checks on an engine holding a model and returns one result per check (the Elastic-Cache check
 * passes trivially on an engine without that capability). It disposes the engine at the end (the last check is
 * disposal). `canvasLength`: the canvas of each sequence (default min(16, the model's positions)).
 */
export async function checkEngineContract(engine: Engine, opts: { canvasLength?: number } = {}): Promise<ContractCheck[]> {
  const m = engine.model;
  const L = Math.min(opts.canvasLength ?? 16, m.maxPositions);
  /** (L,) a canvas of ordinary token ids (never the mask) that differs per `seed`. */
  const canvas = (seed: number) => Int32Array.from({ length: L }, (_, i) => {
    const t = (3 + seed * 7 + i * 5) % m.vocabSize;
    return t === m.maskId ? (t + 1) % m.vocabSize : t;
  });
  const all = Int32Array.from({ length: L }, (_, i) => i);
  const full = (sequence: SequenceHandle, seed: number): ForwardRequest => ({ sequence, canvas: canvas(seed), mode: 'full', start: 0, end: L, positions: all });
  const out: ContractCheck[] = [];
  const check = async (name: string, body: () => Promise<string>) => {
    let detail: string;
    try {
      detail = await body();
    } catch (e) {
      detail = `threw ${(e as Error)?.name}: ${(e as Error)?.message?.split('\n')[0]}`;
    }
    out.push({ name, ok: detail === '', detail });
  };
  const rejects = async (p: () => Promise<unknown> | unknown): Promise<boolean> => {
    try {
      await p();
      return false;
    } catch {
      return true;
    }
  };

  await check('a pass of two sequences gives each exactly its results alone (batch invariance)', async () => {
    if (engine.capabilities.maxBatch < 2) return '';
    const a = engine.openSequence(L);
    const b = engine.openSequence(L);
    try {
      const [ra, rb] = await engine.forward([full(a, 1), full(b, 2)]);
      const [alone] = await engine.forward([full(a, 1)]);
      const [aloneB] = await engine.forward([full(b, 2)]);
      return differs(ra, alone, 'first') || differs(rb, aloneB, 'second');
    } finally {
      engine.closeSequence(a);
      engine.closeSequence(b);
    }
  });

  await check('Elastic-Cache: a refresh forward with the attention report gives each sequence of a pass of two what it gives alone', async () => {
    const layers = engine.capabilities.elasticCache?.layers;
    if (layers === undefined || m.blockSize !== undefined || engine.capabilities.maxBatch < 2 || L < 4) return '';
    const hi = Math.min(L, 6);
    const keys = Int32Array.from({ length: layers }, (_, l) => l % hi);
    /** A full forward on canvas(seed), then a refresh of canvas(seed + 1) reporting the attention of rows [1, hi). */
    const refresh = (sequence: SequenceHandle, seed: number): ForwardRequest => ({
      ...full(sequence, seed + 1), refresh: { fromLayer: Math.min(1, layers - 1), start: 1, end: hi }, attention: { start: 1, end: hi, keys },
    });
    const a = engine.openSequence(L);
    const b = engine.openSequence(L);
    try {
      await engine.forward([full(a, 6), full(b, 7)]);
      const [ra, rb] = await engine.forward([refresh(a, 6), refresh(b, 7)]);
      await engine.forward([full(a, 6)]);
      const [alone] = await engine.forward([refresh(a, 6)]);
      await engine.forward([full(b, 7)]);
      const [aloneB] = await engine.forward([refresh(b, 7)]);
      return differs(ra, alone, 'first') || differs(rb, aloneB, 'second') || attentionDiffers(ra, alone, 'first') || attentionDiffers(rb, aloneB, 'second');
    } finally {
      engine.closeSequence(a);
      engine.closeSequence(b);
    }
  });

  await check('a closed or never-opened sequence is refused, and closing frees its room', async () => {
    const before = engine.sequenceCapacity(L);
    const s = engine.openSequence(L);
    await engine.forward([full(s, 3)]);
    engine.closeSequence(s);
    if (!(await rejects(() => engine.forward([full(s, 3)])))) return 'a forward on a closed sequence was accepted';
    if (!(await rejects(() => engine.forward([full({ id: -1, maxLength: L }, 3)])))) return 'a forward on a sequence never opened was accepted';
    const after = engine.sequenceCapacity(L);
    return after >= before ? '' : `sequenceCapacity(${L}) was ${before} before and ${after} after opening and closing one sequence`;
  });

  await check('capacity: what sequenceCapacity promises opens, one more is an EngineCapacityError, and the others still run', async () => {
    const n = engine.sequenceCapacity(L);
    if (!(engine.sequenceBytes(L) > 0)) return `sequenceBytes(${L}) is ${engine.sequenceBytes(L)}`;
    if (n > CAPACITY_PROBE_LIMIT) return ''; // room for many more than the check opens: nothing to refuse here
    const open: SequenceHandle[] = [];
    try {
      for (let i = 0; i < n; i++) open.push(engine.openSequence(L));
      let refused: unknown = null;
      try {
        open.push(engine.openSequence(L));
      } catch (e) {
        refused = e;
      }
      if (!(refused instanceof EngineCapacityError)) return `opening sequence ${n + 1} of a capacity of ${n} gave ${refused === null ? 'a sequence' : String(refused)}`;
      if (open.length > 0) await engine.forward([full(open[0], 4)]);
      return '';
    } finally {
      for (const s of open) engine.closeSequence(s);
    }
  });

  await check('after dispose, forward and openSequence are refused', async () => {
    const s = engine.openSequence(L);
    await engine.dispose();
    if (!(await rejects(() => engine.forward([full(s, 5)])))) return 'forward after dispose was accepted';
    if (!(await rejects(() => engine.openSequence(L)))) return 'openSequence after dispose was accepted';
    return '';
  });
  return out;
}

/** '' when two attention reports (DESIGN §16) are bit-identical, else where they differ. */
function attentionDiffers(a: ForwardResult, b: ForwardResult, which: string): string {
  const x = a.attention, y = b.attention;
  if (!x || !y) return `the ${which} sequence's attention report is missing`;
  for (const f of ['top', 'atTop', 'tracked'] as const) {
    if (x[f].length !== y[f].length || x[f].some((v, i) => !Object.is(v, y[f][i]))) return `the ${which} sequence's attention report (${f}) differs in the pass of two from alone`;
  }
  return '';
}

/** '' when two results are bit-identical, else where they differ. */
function differs(a: ForwardResult, b: ForwardResult, which: string): string {
  for (let i = 0; i < a.tokens.length; i++) {
    if (a.tokens[i] !== b.tokens[i] || !Object.is(a.probs[i], b.probs[i])) {
      return `the ${which} sequence's report ${i} differs: token ${a.tokens[i]} p ${a.probs[i]} in the pass of two, token ${b.tokens[i]} p ${b.probs[i]} alone`;
    }
  }
  return a.tokens.length === b.tokens.length ? '' : `the ${which} sequence reports ${a.tokens.length} positions in the pass of two, ${b.tokens.length} alone`;
}
