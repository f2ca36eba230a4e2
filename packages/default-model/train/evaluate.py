"""Exact match of a train.py checkpoint on eval/eval.jsonl: greedy, one token per step, no cache, gen 128, block 32.

  nice -n 5 /usr/bin/python3 packages/default-model/train/evaluate.py --n 200
Reports two numbers: final-answer exact match (what the TS scorer measures) and full-answer-text exact match.
"""
import argparse
import json
import os
import sys
import time

os.environ.setdefault("OPENBLAS_NUM_THREADS", "1")
import torch  # noqa: E402

HERE = os.path.dirname(os.path.abspath(__file__))
if HERE not in sys.path:  # a script run has it first already; chain-model puts its own task first
    sys.path.append(HERE)
import task  # noqa: E402
import tokenizer as tok  # noqa: E402
from decode import generate  # noqa: E402
from model import LLaDA  # noqa: E402


def main():
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--ckpt", default=os.path.join(HERE, "out", "ckpt.pt"))
    ap.add_argument("--eval", default=os.path.join(HERE, "..", "eval", "eval.jsonl"))
    ap.add_argument("--n", type=int, default=200)
    ap.add_argument("--batch", type=int, default=50)
    ap.add_argument("--threads", type=int, default=1)
    a = ap.parse_args()
    torch.set_num_threads(a.threads)
    ck = torch.load(a.ckpt, map_location="cpu")
    model = LLaDA(ck["cfg"])
    model.load_state_dict(ck["model"])
    model.eval()
    items = [json.loads(l) for l in open(a.eval) if l.strip()][: a.n]
    ans_ok = full_ok = 0
    t0 = time.time()
    for i in range(0, len(items), a.batch):
        chunk = items[i:i + a.batch]
        prompts = torch.tensor([tok.encode(tok.chat_prompt(it["prompt"])) for it in chunk])
        out = generate(model, prompts).tolist()
        for it, row in zip(chunk, out):
            text = tok.decode(row)
            ans_ok += task.final_answer(text) == it["answer"]
            full_ok += "".join(text.split()) == "".join(it["answer_text"].split())
        print(f"{i + len(chunk)} done, answer EM {ans_ok / (i + len(chunk)):.3f}", flush=True)
    res = {"step": ck["step"], "n": len(items), "answer_exact_match": ans_ok / len(items),
           "full_text_exact_match": full_ok / len(items), "seconds": round(time.time() - t0, 1)}
    print(json.dumps(res))


if __name__ == "__main__":
    main()
