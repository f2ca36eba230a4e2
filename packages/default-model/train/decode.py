"""Greedy low-confidence-remasking decoding, one token per step, no cache (LLaDA's reference sampler)."""
import torch

import tokenizer as tok


@torch.no_grad()
def generate(model, prompts, gen_len=128, block=32):
    """prompts: (B, P) int64, all the same length. Returns (B, gen_len) committed tokens."""
    B, P = prompts.shape
    x = torch.cat([prompts, torch.full((B, gen_len), tok.MASK, dtype=torch.long, device=prompts.device)], dim=1)  # (B, P+gen)
    rows = torch.arange(B, device=prompts.device)
    for b0 in range(P, P + gen_len, block):
        for _ in range(block):
            logits = model(x)  # (B, T, V)
            probs = torch.softmax(logits, dim=-1)
            conf, pred = probs.max(dim=-1)  # (B, T)
            masked = x == tok.MASK
            inblock = torch.zeros_like(masked)
            inblock[:, b0:b0 + block] = True
            conf = torch.where(masked & inblock, conf, torch.full_like(conf, -1.0))
            pos = conf.argmax(dim=-1)  # (B): most confident still-masked position in this block
            x[rows, pos] = pred[rows, pos]
    return x[:, P:]
