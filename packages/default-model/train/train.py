"""Masked-diffusion SFT (LLaDA-Instruct style) of a small LLaDA model on step-by-step two-digit addition.

One command, reproducible from --seed:
  nice -n 10 /usr/bin/python3 packages/default-model/train/train.py --seed 0 --minutes 125 --threads 2
Checkpoints (train/out/ckpt.pt) and an exported model/ directory are written every --ckpt-min minutes;
train/log.tsv gets the loss every 20 steps and a greedy exact-match eval (one token per step) at each checkpoint.
"""
import argparse
import json
import os
import random
import sys
import time

# One BLAS thread: the machine is shared (torch.set_num_threads alone leaves OpenBLAS pthreads spinning).
os.environ.setdefault("OPENBLAS_NUM_THREADS", "1")
os.environ.setdefault("OMP_NUM_THREADS", "1")
import torch  # noqa: E402
import torch.nn.functional as F  # noqa: E402

HERE = os.path.dirname(os.path.abspath(__file__))
if HERE not in sys.path:  # a script run has it first already; chain-model puts its own task first
    sys.path.append(HERE)
import task  # noqa: E402
import tokenizer as tok  # noqa: E402
from decode import generate  # noqa: E402
from export import export  # noqa: E402
from loop import LossLog, optimizer_step, set_lr  # noqa: E402
from model import LLaDA  # noqa: E402

# The task module sets the eval generation length, block and training canvas lengths (packages/chain-model trains
# with this loop and its own task.py and tokenizer.py, found first on sys.path), and may raise the model's
# max_sequence_length (prompt + the longest canvas).
GEN, BLOCK, CANVAS = task.GEN, task.BLOCK, task.CANVAS
MAX_SEQ = getattr(task, "MAX_SEQ", 256)


def encode_pair(a, b, gen=GEN):
    """(prompt ids, answer ids of length `gen`). A canvas shorter than the answer holds the answer's first `gen`
    tokens and no stop token: what a decoder that shows the model only part of the canvas (DESIGN §16's suffix
    window) asks it to fill."""
    prompt = tok.encode(tok.chat_prompt(task.prompt_text(a, b)))
    ans = (tok.encode(task.answer_text(a, b)) + [tok.EOT])[:gen]
    ans = ans + [tok.EOS] * (gen - len(ans))  # EOS padding to the canvas length
    assert len(ans) == gen
    return prompt, ans


def make_batch(rng, pairs, bs):
    r, gen = rng.random(), GEN
    for length, p in CANVAS:
        if r < p:
            gen = length
            break
        r -= p
    ps, ans = zip(*(encode_pair(*task.sample_train(rng, pairs), gen) for _ in range(bs)))
    return torch.tensor(ps), torch.tensor(ans)  # (B, P), (B, gen)


def eval_exact(model, items, device):
    model.eval()
    prompts = torch.tensor([encode_pair(a, b)[0] for a, b in items], device=device)
    out = generate(model, prompts, GEN, BLOCK)
    model.train()
    ok = 0
    for (a, b), row in zip(items, out.tolist()):
        ok += row == encode_pair(a, b)[1]  # the full answer, <|eot_id|> and padding must all be right
    return ok / len(items)


def main(home=HERE):
    """`home`: the train/ folder whose out/, ../model and log.tsv are the defaults."""
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--seed", type=int, default=0)
    ap.add_argument("--minutes", type=float, default=75.0, help="training wall-clock budget")
    ap.add_argument("--ckpt-min", type=float, default=4.0, help="minutes between checkpoint+eval+export")
    ap.add_argument("--batch", type=int, default=32)
    ap.add_argument("--lr", type=float, default=2e-3)
    ap.add_argument("--d-model", type=int, default=128)
    ap.add_argument("--layers", type=int, default=4)
    ap.add_argument("--heads", type=int, default=4)
    ap.add_argument("--ff", type=int, default=384)
    ap.add_argument("--eval-n", type=int, default=50)
    ap.add_argument("--threads", type=int, default=1)
    ap.add_argument("--device", default="cpu", help="cpu, or cuda on a GPU machine (batches are drawn on the CPU either way)")
    ap.add_argument("--out", default=os.path.join(home, "out"))
    ap.add_argument("--model-dir", default=os.path.join(home, "..", "model"))
    ap.add_argument("--resume", action="store_true")
    ap.add_argument("--init", help="start from this checkpoint's weights (a ckpt.pt of this loop) with a fresh optimiser, "
                    "schedule and step count: fine-tuning a trained model on another canvas mix")
    ap.add_argument("--log", default=os.path.join(home, "log.tsv"), help="loss / exact-match log (shipped with the export)")
    a = ap.parse_args()

    torch.set_num_threads(a.threads)
    torch.manual_seed(a.seed)
    rng = random.Random(a.seed)
    os.makedirs(a.out, exist_ok=True)
    cfg = {"d_model": a.d_model, "n_layers": a.layers, "n_heads": a.heads, "mlp_hidden_size": a.ff,
           "vocab_size": len(tok.VOCAB), "embedding_size": len(tok.VOCAB), "max_sequence_length": MAX_SEQ,
           "rope_theta": 10000.0, "rms_norm_eps": 1e-5}
    model = LLaDA(cfg).to(a.device)
    if a.init:
        init = torch.load(a.init, map_location=a.device)
        if {k: v for k, v in init["cfg"].items() if k != "max_sequence_length"} != {k: v for k, v in cfg.items() if k != "max_sequence_length"}:
            raise SystemExit(f"--init {a.init}: its shape {init['cfg']} differs from this run's {cfg}")
        model.load_state_dict(init["model"])
        init_step = init["step"]
        print(f"init from {a.init} (step {init['step']})", flush=True)
    opt = torch.optim.AdamW(model.parameters(), lr=a.lr, betas=(0.9, 0.98), weight_decay=0.01)
    train_pairs = task.all_pairs("train")
    eval_pairs = task.all_pairs("eval")
    eval_items = random.Random(1234).sample(eval_pairs, a.eval_n)
    step, elapsed0 = 0, 0.0
    ck_path = os.path.join(a.out, "ckpt.pt")
    if a.resume and os.path.exists(ck_path):
        ck = torch.load(ck_path, map_location=a.device)
        model.load_state_dict(ck["model"]); opt.load_state_dict(ck["opt"])
        step, elapsed0 = ck["step"], ck["elapsed"]
        rng.setstate(ck["rng"]); torch.set_rng_state(ck["torch_rng"])
    log_path = a.log
    log = open(log_path, "a" if a.resume else "w")
    if not a.resume:
        log.write("step\tminutes\tloss\texact_match\n")
    print(f"params={sum(p.numel() for p in model.parameters())} train_pairs={len(train_pairs)} eval_pairs={len(eval_pairs)}", flush=True)

    eps = 1e-3
    t0 = time.time() - elapsed0
    next_ck = elapsed0 + a.ckpt_min * 60
    total = a.minutes * 60
    warm = 100
    losses = LossLog(log, t0, 1)
    while True:
        el = time.time() - t0
        done = el >= total
        if el >= next_ck or done:
            em = eval_exact(model, eval_items, a.device)
            summary = {"step": step, "minutes": round(el / 60, 2), "loss": losses.last, "exact_match_eval": em, "eval_problems": a.eval_n, "seed": a.seed}
            if a.init:
                summary["init"] = {"checkpoint": os.path.basename(a.init), "step": init_step}
            log.write(f"{step}\t{el / 60:.2f}\t\t{em:.3f}\n"); log.flush()
            print(f"EVAL step {step} min {el / 60:.1f} exact {em:.3f}", flush=True)
            torch.save({"model": model.state_dict(), "opt": opt.state_dict(), "cfg": cfg, "step": step,
                        "elapsed": time.time() - t0, "rng": rng.getstate(), "torch_rng": torch.get_rng_state(),
                        "summary": summary}, ck_path + ".tmp")
            os.replace(ck_path + ".tmp", ck_path)
            export(model, a.model_dir, summary, log_path)
            next_ck = (time.time() - t0) + a.ckpt_min * 60
            if done or time.time() - t0 >= total:  # the eval itself may use up the budget: don't evaluate twice
                break
        lr = set_lr(opt, a.lr, step, el, total, warm)  # cosine over the wall-clock budget after a linear warm-up
        prompts, ans = make_batch(rng, train_pairs, a.batch)
        B, L = ans.shape
        # Noise drawn on the CPU generator (the same stream on every device), then moved.
        t = torch.rand(B, 1) * (1 - eps) + eps  # (B, 1) mask ratio per sequence
        mask = torch.rand(B, L) < t  # (B, L): the prompt is never masked
        prompts, ans, t, mask = prompts.to(a.device), ans.to(a.device), t.to(a.device), mask.to(a.device)
        noisy = torch.where(mask, torch.full_like(ans, tok.MASK), ans)
        logits = model(torch.cat([prompts, noisy], 1))[:, prompts.shape[1]:]  # (B, GEN, V)
        ce = F.cross_entropy(logits.reshape(-1, logits.shape[-1]), ans.reshape(-1), reduction="none").view(B, L)
        # LLaDA SFT: CE on masked answer tokens / t, normalised by answer length (L incl. EOS padding) and batch.
        loss = ((ce / t) * mask).sum() / (L * B)
        optimizer_step(model, opt, loss)
        step += 1
        losses.add(step, loss.item(), lr)
    log.close()


if __name__ == "__main__":
    main()
