import {
  ENGINE_CONTRACT_VERSION,
  validateForwardRequest,
  type Engine,
  type EngineCapabilities,
  type ForwardRequest,
  type ForwardResult,
  type ModelInfo,
} from '../src/engine.js';

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

/** A scripted engine: no weights, it records every request and answers from the script. */
export class MockEngine implements Engine {
  readonly name = 'mock';
  readonly model: ModelInfo;
  readonly capabilities: EngineCapabilities;
  readonly requests: ForwardRequest[] = [];
  private calls = 0;

  constructor(
    private readonly script: Script,
    opts: { architecture?: 'llada' | 'dream'; caps?: Partial<EngineCapabilities>; maxPositions?: number } = {},
  ) {
    this.model = {
      architecture: opts.architecture ?? 'llada',
      vocabSize: 128,
      maxPositions: opts.maxPositions ?? 64,
      maskId: MASK,
      eosId: EOS,
      shiftLogits: opts.architecture === 'dream',
    };
    this.capabilities = {
      contractVersion: ENGINE_CONTRACT_VERSION,
      modes: ['full', 'prefix', 'dual'],
      reports: { top2: true, entropy: true, logits: false },
      sampling: true,
      ...opts.caps,
    };
  }

  async forward(req: ForwardRequest, signal?: AbortSignal): Promise<ForwardResult> {
    validateForwardRequest(this.model, this.capabilities, req);
    if (signal?.aborted) throw Object.assign(new Error('aborted'), { name: 'AbortError' });
    const fi = this.calls++;
    this.requests.push(req);
    const n = req.positions.length;
    const out: ForwardResult = { tokens: new Int32Array(n), probs: new Float64Array(n) };
    if (req.want?.top2) {
      out.top1Probs = new Float64Array(n);
      out.top2Probs = new Float64Array(n);
    }
    if (req.want?.entropy) out.entropy = new Float64Array(n);
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
