"""Block-diffusion SFT (the Fast-dLLM v2 objective) of a small Fast-dLLM v2 model on step-by-step two-digit addition.

One command, reproducible from --seed:
  nice -n 10 /usr/bin/python3 packages/bd-model/train/train.py --seed 0 --minutes 120 --threads 2

The objective, as Fast-dLLM v2 trains (written from the paper's description and its published training forward):
- Each training sequence is the chat prompt, the answer, <|eot_id|> and <|endoftext|> padding to a whole number of
  blocks (B = 16). Blocks are aligned to absolute positions; the prompt is block 0.
- Noise per block: every block holding answer positions draws t ~ U(1e-3, 1) and masks each answer position with
  probability t (the prompt is never masked). Complementary views: each sequence is trained twice, once with mask m
  and once with the complement of m over the answer, so every answer token is a target exactly once per step.
- One forward over a canvas of two streams with the same absolute positions: the clean sequence (block-causal:
  a clean row sees clean blocks up to its own) and the noised copies of the answer blocks (a noised row sees its
  own noised block bidirectionally and the clean blocks before it). That is the attention a block sees at
  inference: the exact cache of finished blocks plus itself.
- Shifted prediction: a masked position p is predicted by the row of p - 1. Inside a block that row is in the
  noised stream; for the first position of a block (p % B == 0) it is the clean stream's last row of the previous
  block, which is exactly the row that predicts it at inference (the prefill or the block-end pass, DESIGN §8).
  (The published forward reads that one from the noised stream; the clean row is what decoding uses.)
- Loss: mean cross-entropy over the masked positions of both views (no 1/t weight, as the published loss).

Every --ckpt-min minutes: checkpoint to train/out/ckpt.pt, export to model/, and exact match on 50 held-out
problems with the model's own Fast-dLLM v2 decoding (decode.py) at tau = 1 (one token per step) and tau = 0.9,
sub-block 8, logged to train/log.tsv.
"""
import argparse
import os
import random
import sys
import time

# The machine is shared: BLAS threads follow --threads, set before torch loads.
_threads = sys.argv[sys.argv.index("--threads") + 1] if "--threads" in sys.argv else "1"
os.environ.setdefault("OPENBLAS_NUM_THREADS", _threads)
os.environ.setdefault("OMP_NUM_THREADS", _threads)
import torch  # noqa: E402
import torch.nn.functional as F  # noqa: E402

HERE = os.path.dirname(os.path.abspath(__file__))
sys.path.insert(0, HERE)
from data import BLOCK, GEN, answer_ids, load_default_model_module, prompt_ids, task, tok, training_sequence  # noqa: E402
from decode import generate  # noqa: E402
from export import export  # noqa: E402
from model import BlockDiffLM  # noqa: E402

loop = load_default_model_module("loop.py")  # the bundled model's schedule, optimiser step and loss log
LossLog, optimizer_step, set_lr = loop.LossLog, loop.optimizer_step, loop.set_lr


def canvas_layout(P, L, B):
    """The training canvas for sequences of length L (a multiple of B) with prompts of length P.

    Rows [0, L): the clean stream at positions 0..L-1. Rows [L, L + n): the noised stream, the blocks from
    f = P // B (the first holding an answer position) to the end, at positions f*B..L-1.
    Returns pos (L + n,) and allowed (L + n, L + n) bool, and f."""
    f = P // B
    n = L - f * B
    pos = torch.cat([torch.arange(L), torch.arange(f * B, L)])  # (L + n,)
    noisy = torch.cat([torch.zeros(L, dtype=torch.bool), torch.ones(n, dtype=torch.bool)])  # (L + n,)
    blk = pos // B
    q_blk, k_blk = blk[:, None], blk[None, :]
    q_noisy, k_noisy = noisy[:, None], noisy[None, :]
    allowed = ((~q_noisy & ~k_noisy & (k_blk <= q_blk))  # clean sees clean, block-causal
               | (q_noisy & ~k_noisy & (k_blk < q_blk))  # noised sees the clean blocks before its own
               | (q_noisy & k_noisy & (k_blk == q_blk)))  # noised sees its own noised block
    return pos, allowed, f


def make_batch(rng, gen, pairs, bs, B, eps=1e-3):
    """bs sequences, each as two complementary views: ids (2bs, L + n), targets (2bs, L) (-100 where no loss)."""
    seqs, Ps = zip(*(training_sequence(*task.sample_train(rng, pairs)) for _ in range(bs)))
    assert len(set(Ps)) == 1, "one prompt length per batch"
    P = Ps[0]
    x = torch.tensor(seqs)  # (bs, L)
    L = x.shape[1]
    nb = L // B
    t = torch.rand(bs, nb, 1, generator=gen) * (1 - eps) + eps  # (bs, nb, 1) mask ratio per block
    m = (torch.rand(bs, nb, B, generator=gen) < t).view(bs, L)  # (bs, L)
    answer = torch.arange(L)[None, :] >= P  # (1, L)
    masks = torch.cat([m & answer, ~m & answer])  # (2bs, L): the two complementary views
    x2 = x.repeat(2, 1)  # (2bs, L)
    noised = torch.where(masks, torch.full_like(x2, tok.MASK), x2)
    f = P // B
    ids = torch.cat([x2, noised[:, f * B:]], dim=1)  # (2bs, L + n)
    targets = torch.where(masks, x2, torch.full_like(x2, -100))  # (2bs, L)
    return ids, targets, P


def predictor_rows(P, L, B):
    """(L,) row of the canvas whose output predicts position p (shifted): noised row p - 1 inside a block, the clean
    row p - 1 for a block's first position; -1 where p has no target (the prompt)."""
    f = P // B
    rows = torch.full((L,), -1, dtype=torch.long)
    for p in range(P, L):
        rows[p] = p - 1 if p % B == 0 else L + (p - 1 - f * B)
    return rows


def eval_exact(model, items, taus):
    """Exact match (answer tokens up to and including the stop token) and mean NFE, per tau (sub-block 8)."""
    model.eval()
    out = {}
    for tau in taus:
        res = generate(model, [prompt_ids(a, b) for a, b in items], GEN, BLOCK, sub_block=8, tau=tau)
        ok = sum(ans == answer_ids(a, b) for (a, b), (ans, _) in zip(items, res))
        out[tau] = (ok / len(items), sum(n for _, n in res) / len(res))
    model.train()
    return out


def main():
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--seed", type=int, default=0)
    ap.add_argument("--minutes", type=float, default=120.0, help="training wall-clock budget")
    ap.add_argument("--ckpt-min", type=float, default=10.0, help="minutes between checkpoint + eval + export")
    ap.add_argument("--batch", type=int, default=32, help="sequences per step (each trained in two complementary views)")
    ap.add_argument("--lr", type=float, default=2e-3)
    ap.add_argument("--hidden", type=int, default=128)
    ap.add_argument("--layers", type=int, default=4)
    ap.add_argument("--heads", type=int, default=4)
    ap.add_argument("--kv-heads", type=int, default=2)
    ap.add_argument("--ff", type=int, default=384)
    ap.add_argument("--eval-n", type=int, default=50)
    ap.add_argument("--threads", type=int, default=1)
    ap.add_argument("--max-steps", type=int, default=0, help="stop after this many steps (0: only the time budget)")
    ap.add_argument("--out", default=os.path.join(HERE, "out"))
    ap.add_argument("--model-dir", default=os.path.join(HERE, "..", "model"))
    ap.add_argument("--resume", action="store_true")
    ap.add_argument("--log", default=os.path.join(HERE, "log.tsv"), help="loss / exact-match log (shipped with the export)")
    a = ap.parse_args()

    torch.set_num_threads(a.threads)
    torch.manual_seed(a.seed)
    rng = random.Random(a.seed)
    gen = torch.Generator().manual_seed(a.seed)
    os.makedirs(a.out, exist_ok=True)
    cfg = {"hidden_size": a.hidden, "num_hidden_layers": a.layers, "num_attention_heads": a.heads,
           "num_key_value_heads": a.kv_heads, "intermediate_size": a.ff, "vocab_size": len(tok.VOCAB),
           "max_position_embeddings": 256, "rope_theta": 10000.0, "rms_norm_eps": 1e-6, "bd_size": BLOCK}
    model = BlockDiffLM(cfg)
    opt = torch.optim.AdamW(model.parameters(), lr=a.lr, betas=(0.9, 0.98), weight_decay=0.01)
    train_pairs = task.all_pairs("train")
    eval_items = random.Random(1234).sample(task.all_pairs("eval"), a.eval_n)
    assert not any(task.is_eval_pair(x, y) for x, y in train_pairs)
    step, elapsed0 = 0, 0.0
    ck_path = os.path.join(a.out, "ckpt.pt")
    if a.resume and os.path.exists(ck_path):
        ck = torch.load(ck_path)
        model.load_state_dict(ck["model"]); opt.load_state_dict(ck["opt"])
        step, elapsed0 = ck["step"], ck["elapsed"]
        rng.setstate(ck["rng"]); gen.set_state(ck["gen"])
    log = open(a.log, "a" if a.resume else "w")
    if not a.resume:
        log.write("step\tminutes\tloss\texact_match_tau1\tnfe_tau1\texact_match_tau0.9\tnfe_tau0.9\n")
    print(f"params={sum(p.numel() for p in model.parameters())} train_pairs={len(train_pairs)}", flush=True)

    # Every training sequence has the same prompt length and canvas: one layout for all steps.
    P, L = len(prompt_ids(10, 10)), len(training_sequence(10, 10)[0])
    pos, allowed, _ = canvas_layout(P, L, BLOCK)
    rows = predictor_rows(P, L, BLOCK)

    t0 = time.time() - elapsed0
    next_ck = elapsed0 + a.ckpt_min * 60
    total = a.minutes * 60
    warm = 100
    losses = LossLog(log, t0, 4)
    while True:
        el = time.time() - t0
        done = el >= total or (a.max_steps and step >= a.max_steps)
        if el >= next_ck or done:
            ev = eval_exact(model, eval_items, (1.0, 0.9))
            summary = {"step": step, "minutes": round(el / 60, 2), "loss": losses.last, "seed": a.seed,
                       "exact_match_eval50_tau1": ev[1.0][0], "exact_match_eval50_tau0.9": ev[0.9][0]}
            log.write(f"{step}\t{el / 60:.2f}\t\t{ev[1.0][0]:.3f}\t{ev[1.0][1]:.2f}\t{ev[0.9][0]:.3f}\t{ev[0.9][1]:.2f}\n"); log.flush()
            print(f"EVAL step {step} min {el / 60:.1f} exact tau1 {ev[1.0][0]:.3f} (nfe {ev[1.0][1]:.1f}) "
                  f"tau0.9 {ev[0.9][0]:.3f} (nfe {ev[0.9][1]:.1f})", flush=True)
            torch.save({"model": model.state_dict(), "opt": opt.state_dict(), "cfg": cfg, "step": step,
                        "elapsed": time.time() - t0, "rng": rng.getstate(), "gen": gen.get_state(),
                        "summary": summary}, ck_path + ".tmp")
            os.replace(ck_path + ".tmp", ck_path)
            export(model, a.model_dir, summary, a.log)
            next_ck = (time.time() - t0) + a.ckpt_min * 60
            if done or time.time() - t0 >= total:  # the eval itself may use up the budget
                break
        lr = set_lr(opt, a.lr, step, el, total, warm)  # cosine over the wall-clock budget after a linear warm-up
        ids, targets, bP = make_batch(rng, gen, train_pairs, a.batch, BLOCK)
        assert bP == P
        logits = model(ids, pos, allowed)  # (2bs, L + n, V)
        sel = targets[:, P:] != -100  # (2bs, L - P)
        pred = logits[:, rows[P:]][sel]  # (m, V): the predicting row of every masked position
        loss = F.cross_entropy(pred, targets[:, P:][sel])
        optimizer_step(model, opt, loss)
        step += 1
        losses.add(step, loss.item(), lr)
    log.close()


if __name__ == "__main__":
    main()
