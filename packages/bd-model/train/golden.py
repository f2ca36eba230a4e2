"""Golden greedy tokens of the exported model (model/) for the TS engines' conformance test
(test/conformance/trained-model.test.ts): the first --n held-out problems of the eval set under several Fast-dLLM v2
settings, decoded in float64 by this package's own decoding (decode.py with model.py), which records the smallest
decision margin in logit units and the largest |logit| met, and cross-checked against tools/golden/blockdiff_golden.py's
decode_v2 on tools/golden/blockdiff_model.py (the project's independent model of the family, with its own cache of
finished blocks and block cache): tokens and NFE must agree, or nothing is written.

  /usr/bin/python3 packages/bd-model/train/golden.py     # writes test/fixtures/golden/scheduler/bd-model.json
"""
import argparse
import json
import os
import sys

import torch

HERE = os.path.dirname(os.path.abspath(__file__))
ROOT = os.path.abspath(os.path.join(HERE, "..", "..", ".."))
sys.path.insert(0, HERE)
from data import BLOCK, GEN, STOP_IDS, prompt_ids, tok  # noqa: E402
from decode import generate  # noqa: E402
from export import load_model_dir  # noqa: E402

sys.path.append(os.path.join(ROOT, "tools", "golden"))
from blockdiff_golden import decode_v2  # noqa: E402
from blockdiff_model import BlockDiffModel  # noqa: E402

# (sub-block, tau, block cache): one token per step, the recipe, a whole-block sub-block, a low threshold, and the
# block cache at the recipe and with small sub-blocks.
SETTINGS = [(8, 1.0, False), (8, 0.9, False), (16, 0.7, False), (4, 0.5, False), (8, 0.9, True), (4, 0.7, True)]


def main():
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--model-dir", default=os.path.join(HERE, "..", "model"))
    ap.add_argument("--eval", default=os.path.join(ROOT, "packages", "default-model", "eval", "eval.jsonl"))
    ap.add_argument("--n", type=int, default=6)
    ap.add_argument("--out", default=os.path.join(ROOT, "test", "fixtures", "golden", "scheduler", "bd-model.json"))
    a = ap.parse_args()
    items = [json.loads(l) for l in open(a.eval) if l.strip()][: a.n]
    prompts = [prompt_ids(*it["operands"]) for it in items]
    own = load_model_dir(a.model_dir, torch.float64)
    ref = BlockDiffModel(a.model_dir)
    assert ref.B == BLOCK
    cases = []
    for sub, tau, bc in SETTINGS:
        mine = generate(own, prompts, GEN, BLOCK, sub_block=sub, tau=tau, block_cache=bc, details=True)
        for it, p, (toks, nfe, margin, max_abs) in zip(items, prompts, mine):
            other = decode_v2(ref, p, GEN, tok.MASK, set(STOP_IDS), sub, tau, bc)
            if (toks, nfe) != other[:2]:
                raise SystemExit(f"{it['id']} sub-block {sub} tau {tau} block cache {bc}: decode.py gives {toks, nfe}, "
                                 f"blockdiff_golden {other[:2]}")
            cases.append({"id": it["id"], "prompt": p, "genLength": GEN,
                          "strategy": {"kind": "fast_dllm_v2", "subBlockLength": sub, "threshold": tau, "blockCache": bc},
                          "tokens": toks, "nfe": nfe, "minMargin": margin, "maxAbsLogit": max_abs,
                          "text": tok.decode(toks), "answer": it["answer"]})
    with open(a.out, "w") as f:
        json.dump({"model": "packages/bd-model/model", "generator": "packages/bd-model/train/golden.py", "cases": cases}, f, indent=1)
        f.write("\n")
    print(f"{len(cases)} cases -> {a.out}; smallest margin {min(c['minMargin'] for c in cases):.3g} logits, "
          f"largest |logit| {max(c['maxAbsLogit'] for c in cases):.3g}")


if __name__ == "__main__":
    main()
