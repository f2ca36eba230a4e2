"""The parts of a training loop that the models trained here share (the bundled LLaDA model and packages/bd-model's
Fast-dLLM v2 model): the learning-rate schedule over a wall-clock budget, one optimiser step, the running loss
logged every 20 steps. No imports of sibling modules (packages/bd-model loads this file by path)."""
import math
import time

import torch


def set_lr(opt, base_lr, step, elapsed, total, warm=100):
    """Cosine from base_lr down to 10% over the wall-clock budget (`elapsed` of `total` seconds), after a linear
    warm-up of `warm` steps; sets it on every parameter group and returns it."""
    frac = min(1.0, elapsed / total)
    lr = base_lr * min(1.0, (step + 1) / warm) * (0.1 + 0.9 * 0.5 * (1 + math.cos(math.pi * frac)))
    for g in opt.param_groups:
        g["lr"] = lr
    return lr


def optimizer_step(model, opt, loss, clip=1.0):
    """Backward, gradient-norm clipping at `clip`, one optimiser step."""
    opt.zero_grad(set_to_none=True)
    loss.backward()
    torch.nn.utils.clip_grad_norm_(model.parameters(), clip)
    opt.step()


class LossLog:
    """The mean loss over every 20 steps, written as a row `step, minutes, loss` (then `blank_cols` empty columns,
    the log's eval columns) and printed. `last` is the latest mean (nan before the first)."""

    def __init__(self, log, t0, blank_cols):
        self.log, self.t0, self.tail = log, t0, "\t" * blank_cols
        self.sum, self.n, self.last = 0.0, 0, float("nan")

    def add(self, step, loss, lr):
        self.sum += loss; self.n += 1
        if step % 20 == 0:
            self.last = self.sum / self.n
            minutes = (time.time() - self.t0) / 60
            self.log.write(f"{step}\t{minutes:.2f}\t{self.last:.4f}{self.tail}\n"); self.log.flush()
            print(f"step {step} min {minutes:.2f} loss {self.last:.4f} lr {lr:.2e}", flush=True)
            self.sum, self.n = 0.0, 0
