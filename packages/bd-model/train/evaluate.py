"""Exact match of the exported model (model/, the weights the TS engines load) on the bundled eval set, with the
model's own PyTorch Fast-dLLM v2 decoding (decode.py: greedy, sub-blocks, threshold, no block cache), per setting.

  nice -n 10 /usr/bin/python3 packages/bd-model/train/evaluate.py --n 200 --taus 1,0.9 --sub-blocks 8
Reports per (sub-block, tau): final-answer exact match (what the TS scorer `scoreExactMatch` measures), full-answer
exact match (every token up to and including <|eot_id|>), mean NFE and answer tokens (up to the stop) per forward.
"""
import argparse
import json
import os
import sys
import time

_threads = sys.argv[sys.argv.index("--threads") + 1] if "--threads" in sys.argv else "1"
os.environ.setdefault("OPENBLAS_NUM_THREADS", _threads)
os.environ.setdefault("OMP_NUM_THREADS", _threads)
import torch  # noqa: E402

HERE = os.path.dirname(os.path.abspath(__file__))
sys.path.insert(0, HERE)
from data import BLOCK, GEN, answer_ids, prompt_ids, task, tok  # noqa: E402
from decode import generate  # noqa: E402
from export import load_model_dir  # noqa: E402

DEFAULT_EVAL = os.path.join(HERE, "..", "..", "default-model", "eval", "eval.jsonl")


def main():
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--model-dir", default=os.path.join(HERE, "..", "model"))
    ap.add_argument("--eval", default=DEFAULT_EVAL)
    ap.add_argument("--n", type=int, default=200)
    ap.add_argument("--taus", default="1,0.9")
    ap.add_argument("--sub-blocks", default="8")
    ap.add_argument("--threads", type=int, default=1)
    ap.add_argument("--json", help="also write the results here")
    a = ap.parse_args()
    torch.set_num_threads(a.threads)
    model = load_model_dir(a.model_dir)
    items = [json.loads(l) for l in open(a.eval) if l.strip()][: a.n]
    prompts = [prompt_ids(*it["operands"]) for it in items]
    results = []
    for b in (int(x) for x in a.sub_blocks.split(",")):
        for tau in (float(x) for x in a.taus.split(",")):
            t0 = time.time()
            out = generate(model, prompts, GEN, BLOCK, sub_block=b, tau=tau)
            ans_ok = sum(task.final_answer(tok.decode(ids)) == it["answer"] for it, (ids, _) in zip(items, out))
            full_ok = sum(ids == answer_ids(*it["operands"]) for it, (ids, _) in zip(items, out))
            nfe = sum(n for _, n in out)
            r = {"subBlock": b, "tau": tau, "n": len(items), "answer_exact_match": ans_ok / len(items),
                 "full_text_exact_match": full_ok / len(items), "mean_nfe": nfe / len(items),
                 "answer_tokens_per_forward": sum(len(ids) for ids, _ in out) / nfe, "seconds": round(time.time() - t0, 1)}
            results.append(r)
            print(json.dumps(r), flush=True)
    if a.json:
        with open(a.json, "w") as f:
            json.dump(results, f, indent=2)
            f.write("\n")


if __name__ == "__main__":
    main()
