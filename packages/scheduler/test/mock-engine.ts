import {
  ENGINE_CONTRACT_VERSION,
  type AttentionReport,
  type Engine,
  type EngineCapabilities,
  type ForwardRequest,
  type ForwardResult,
  type ModelInfo,
  type SequenceHandle,
} from '@fast-dllm/engine-contract';
import { EngineCapacityError, SequenceTable } from '@fast-dllm/engine-contract';

export const MASK = 99;
export const EOS = 2;

/** What the mock proposes for one position at one forward: token and clean probability (plus extras). */
export interface Proposal {
  token: number;
  prob: number;
  top2?: number;
  entropy?: number;
}

export type Script = (position: number, forwardIndex: number, req: ForwardRequest) => Proposal;

/** The attention report the mock gives a request that asks for one (Elastic-Cache, DESIGN §16). */
export type AttentionScript = (req: ForwardRequest, forwardIndex: number) => AttentionReport;

/**
 * A scripted engine: no weights, it records every request and answers from the script. `forwardIndex` given
 * to the script is the sequence's own forward count; `passes` records each pass's batch.
 */
export class MockEngine implements Engine {
  readonly name = 'mock';
  readonly model: ModelInfo;
  readonly capabilities: EngineCapabilities;
  readonly requests: ForwardRequest[] = [];
  readonly passes: ForwardRequest[][] = [];
  private readonly calls = new Map<number, number>();
  private readonly table: SequenceTable<null>;
  /** Sequences that may be open at once (capacity tests). */
  maxSequences = Infinity;
  private readonly attention?: AttentionScript;

  constructor(
    private readonly script: Script,
    opts: {
      architecture?: ModelInfo['architecture']; caps?: Partial<EngineCapabilities>; maxPositions?: number; model?: Partial<ModelInfo>;
      attention?: AttentionScript;
    } = {},
  ) {
    this.attention = opts.attention;
    const arch = opts.architecture ?? 'llada';
    const block = arch === 'fast_dllm_v2' || arch === 'sdar' || arch === 'a2d_bd3lm' || arch === 'llada2_moe';
    this.model = {
      architecture: arch,
      vocabSize: 128,
      maxPositions: opts.maxPositions ?? 64,
      maskId: MASK,
      eosId: EOS,
      shiftLogits: arch === 'dream' || arch === 'fast_dllm_v2',
      ...(block ? { blockSize: 8, stopIds: [EOS, 3] } : {}),
      ...opts.model,
    };
    this.capabilities = {
      contractVersion: ENGINE_CONTRACT_VERSION,
      modes: block ? ['full', 'prefix', 'dual', 'extend'] : ['full', 'prefix', 'dual'],
      reports: { top2: true, entropy: true, logits: false },
      sampling: true,
      maxBatch: 16,
      blockCausal: block,
      ...opts.caps,
    };
    this.table = new SequenceTable(this.name, this.model.maxPositions);
  }

  get openSequences(): number {
    return this.table.size;
  }

  sequenceBytes(maxLength: number): number {
    return maxLength;
  }

  sequenceCapacity(): number {
    return Math.max(0, this.maxSequences - this.table.size);
  }

  openSequence(maxLength: number): SequenceHandle {
    return this.table.open(maxLength, () => {
      if (this.table.size >= this.maxSequences) throw new EngineCapacityError(`mock: ${this.maxSequences} sequences at most`);
      return null;
    });
  }

  closeSequence(sequence: SequenceHandle): void {
    this.table.close(sequence);
  }

  async forward(batch: readonly ForwardRequest[], signal?: AbortSignal): Promise<ForwardResult[]> {
    this.table.check(this.model, this.capabilities, batch);
    if (signal?.aborted) throw Object.assign(new Error('aborted'), { name: 'AbortError' });
    this.passes.push([...batch]);
    const out = batch.map((req) => this.one(req));
    this.table.commit(batch);
    return out;
  }

  private one(req: ForwardRequest): ForwardResult {
    const fi = this.calls.get(req.sequence.id) ?? 0;
    this.calls.set(req.sequence.id, fi + 1);
    this.requests.push(req);
    const n = req.positions.length;
    const out: ForwardResult = { tokens: new Int32Array(n), probs: new Float64Array(n) };
    if (req.want?.top2) {
      out.top1Probs = new Float64Array(n);
      out.top2Probs = new Float64Array(n);
    }
    if (req.want?.entropy) out.entropy = new Float64Array(n);
    if (req.attention) {
      if (!this.attention) throw new Error('mock: no attention script');
      out.attention = this.attention(req, fi);
    }
    req.positions.forEach((p, i) => {
      const pr = this.script(p, fi, req);
      out.tokens[i] = pr.token;
      out.probs[i] = pr.prob;
      if (out.top1Probs) {
        out.top1Probs[i] = pr.prob;
        out.top2Probs![i] = pr.top2 ?? 0;
      }
      if (out.entropy) out.entropy[i] = pr.entropy ?? 0;
    });
    return out;
  }

  async dispose(): Promise<void> {}
}

/** Token 10 + position, confidence from a function of (position, forward). */
export const byPos = (conf: (p: number, fi: number) => number): Script => (p, fi) => ({ token: 10 + p, prob: conf(p, fi) });
