"""Fast-dLLM v2 decoding (DESIGN §8) with the model's own PyTorch forward, greedy, for a batch of prompts.

Per sequence: when P >= B, a prefill pass over the prompt's whole blocks (when P is a multiple of B its last row
predicts position P, committed at once); then block by block, sub-blocks of b left to right: every step is one
forward, and among the sub-block's masked positions every one whose confidence is > tau (strict) is committed, and
always the most confident one (ties: lower position). Logits are shifted: position p is predicted by row p - 1.
When a block has no mask left and another block follows, one block-end pass (one NFE) predicts the next block's
first position from its last row, committed at once. Generation ends when a stop token is committed with no mask
before it (the answer ends there) or at the cap P + G. The mask token is never proposed.

Attention is block-causal, so rows of the active block never see later positions: one forward of the whole canvas
gives exactly the rows that the cached passes of DESIGN §8 compute (the cache of finished blocks is exact). That is
what this decoder runs, several sequences per forward. With the block cache (DualCache inside the block): a step at
which the sub-block's first position is still masked (or nothing is kept yet) is such a forward, and it keeps the
K/V of [0, e); the other steps compute only the sub-block's rows, attending to the kept K/V with the sub-block's
slots replaced by its fresh K/V (written back); those run one sequence at a time.

NFE per sequence is counted as DESIGN §8 states: prefill (P >= B), every denoising step, every block-end pass.
Each sequence also records the smallest margin of its decisions in logit units (`margin`: top-1/top-2 logit gap of
a proposal; log-odds gap between the two most confident candidates; log-odds distance of a confidence to tau) and
the largest |logit| of a reported row (`max_abs_logit`), so that a test can tell which runs a float32 engine must
reproduce exactly: a logit error e moves a log-odds by at most 2e.
"""
import math

import torch

from data import STOP_IDS, tok
from model import block_causal

# Confidences whose log-odds exceed SAT are exactly 1.0 in float64 (1 - c < 1e-17), in an engine as here; between
# SAT_LO and SAT rounding to 1.0 may differ: a ranking decided there has no margin.
SAT_LO, SAT = 34.0, 40.0


def _lo_eff(lo):
    """Log-odds as a ranking sees it: inf when saturated (c == 1.0), None in the rounding window."""
    if lo > SAT:
        return math.inf
    if lo >= SAT_LO:
        return None
    return lo


class _Row:
    def __init__(self, prompt, gen, B, b, tau, mask, block_cache):
        self.P, self.cap, self.B, self.b, self.tau, self.mask = len(prompt), len(prompt) + gen, B, b, tau, mask
        self.block_cache = block_cache
        self.x = list(prompt) + [mask] * gen
        s0 = (self.P // B) * B
        self.phase = "prefill" if s0 > 0 else "denoise"
        self.s, self.e = s0, min(s0 + B, self.cap)
        self.nfe, self.done, self.out_len = 0, False, gen
        self.kept = None  # block cache: per layer (K, V), each (1, KV, e, hd), of [0, e) from the last whole-block pass
        self.margin, self.max_abs_logit = math.inf, 0.0

    def _see(self, m):
        self.margin = min(self.margin, m)

    def _propose(self, row):
        """Greedy proposal from one logits row (V,) (the mask never proposed), its probability and log-odds (f64)."""
        row = row.double()
        self.max_abs_logit = max(self.max_abs_logit, float(row.abs().max()))
        lp = torch.log_softmax(row, dim=-1)  # (V,)
        lm = row.clone()
        lm[self.mask] = -math.inf
        top2 = torch.topk(lm, 2)
        t = int(top2.indices[0])
        self._see(float(top2.values[0] - top2.values[1]))
        others = torch.cat([lp[:t], lp[t + 1:]])
        lo = float(lp[t] - torch.logsumexp(others, dim=0))  # log(c / (1 - c))
        return t, float(lp[t].exp()), lo

    def sub_block(self):
        a = next(a for a in range(self.s, self.e, self.b) if self.mask in self.x[a:min(a + self.b, self.e)])
        return a, min(a + self.b, self.e)

    def wants_dual(self):
        """Block cache: this step computes only the sub-block's rows over the kept K/V."""
        if self.phase != "denoise" or not self.block_cache:
            return False
        a, _ = self.sub_block()
        return self.kept is not None and self.x[a] != self.mask

    def step(self, logits, start, kv=None):
        """Consumes one forward: logits (n, V) of rows for positions [start, start + n); kv: per layer (K, V) of
        those rows when a whole-canvas pass should be kept (block cache)."""
        self.nfe += 1
        row = lambda p: logits[p - 1 - start]  # shifted: row p - 1 predicts p
        if self.phase == "prefill":
            if self.s == self.P:
                self.x[self.P] = self._propose(row(self.P))[0]
            self.phase = "denoise"
        elif self.phase == "blockEnd":
            self.x[self.e] = self._propose(row(self.e))[0]
            self.s, self.e = self.e, min(self.e + self.B, self.cap)
            self.phase = "denoise"
            self.kept = None
        else:
            if kv is not None and self.block_cache:
                self.kept = [(k[None, :, :self.e].clone(), v[None, :, :self.e].clone()) for k, v in kv]
            a, z = self.sub_block()
            cand = [p for p in range(a, z) if self.x[p] == self.mask]
            props = [self._propose(row(p)) for p in cand]
            order = sorted(range(len(cand)), key=lambda i: (-props[i][1], i))  # ties: lower position
            if len(order) > 1:
                l0, l1 = _lo_eff(props[order[0]][2]), _lo_eff(props[order[1]][2])
                self._see(0.0 if l0 is None or l1 is None else math.inf if l0 == l1 == math.inf else abs(l0 - l1))
            if self.tau < 1:  # no confidence is > 1: tau = 1 decides nothing
                lt = math.log(self.tau / (1 - self.tau))
                for i in order:
                    li = _lo_eff(props[i][2])
                    self._see(0.0 if li is None else abs(li - lt))
            for i in order:
                if i == order[0] or props[i][1] > self.tau:
                    self.x[cand[i]] = props[i][0]
        self._settle()

    def _settle(self):
        for p in range(self.P, self.e):
            if self.x[p] == self.mask:
                break
            if self.x[p] in STOP_IDS:
                self.done, self.out_len = True, p + 1 - self.P
                return
        if self.mask in self.x[self.s:self.e]:
            return
        if self.e == self.cap:
            self.done = True
            return
        self.phase = "blockEnd"


def _dual(model, r, dev):
    """One block-cache step of row r: the sub-block's rows against the kept K/V without the sub-block's slots."""
    a, z = r.sub_block()
    ids = torch.tensor([r.x[a:z]], device=dev)
    ctx = [(torch.cat([k[:, :, :a], k[:, :, z:]], dim=2), torch.cat([v[:, :, :a], v[:, :, z:]], dim=2)) for k, v in r.kept]
    m = ctx[0][0].shape[2]
    allowed = torch.ones(z - a, m + z - a, dtype=torch.bool, device=dev)  # every kept position is in blocks <= this one
    logits, fresh = model(ids, torch.arange(a, z, device=dev), allowed, ctx=ctx, return_kv=True)
    for (k, v), (fk, fv) in zip(r.kept, fresh):  # the sub-block's fresh K/V written back
        k[:, :, a:z], v[:, :, a:z] = fk, fv
    r.step(logits[0], a)


@torch.no_grad()
def generate(model, prompts, gen, B, sub_block=8, tau=1.0, block_cache=False, dtype=None, details=False):
    """prompts: list of id lists (any lengths). Returns [(answer ids up to and including the stop token, nfe)], or
    with details [(ids, nfe, margin, max_abs_logit)]."""
    rows = [_Row(p, gen, B, sub_block, tau, tok.MASK, block_cache) for p in prompts]
    dev = next(model.parameters()).device
    while True:
        live = [r for r in rows if not r.done]
        if not live:
            break
        by_len = {}
        for r in live:
            if r.wants_dual():
                _dual(model, r, dev)
            else:
                by_len.setdefault(len(r.x), []).append(r)
        # Rows of one canvas length share a whole-canvas forward.
        for T, group in by_len.items():
            pos = torch.arange(T, device=dev)
            ids = torch.tensor([r.x for r in group], device=dev)
            logits, kv = model(ids, pos, block_causal(pos, B), return_kv=True)  # (n, T, V)
            if dtype is not None:
                logits = logits.to(dtype)
            for j, (r, lg) in enumerate(zip(group, logits)):
                r.step(lg, 0, [(k[j], v[j]) for k, v in kv] if block_cache else None)
    if details:
        return [(r.x[r.P:r.P + r.out_len], r.nfe, r.margin, r.max_abs_logit) for r in rows]
    return [(r.x[r.P:r.P + r.out_len], r.nfe) for r in rows]
