"""LLaDA-architecture masked diffusion LM in plain PyTorch 1.13 (float32): pre-norm RMSNorm, NeoX RoPE,
bidirectional multi-head attention, SwiGLU MLP ff_out(silu(ff_proj(x)) * up_proj(x)), untied LM head, no biases."""
import math
import torch
import torch.nn as nn
import torch.nn.functional as F


class RMSNorm(nn.Module):
    def __init__(self, d, eps):
        super().__init__()
        self.eps = eps
        self.weight = nn.Parameter(torch.ones(d))  # (d)

    def forward(self, x):
        return x * torch.rsqrt(x.pow(2).mean(-1, keepdim=True) + self.eps) * self.weight


def rope_tables(seq, hd, theta, device=None):
    inv = 1.0 / (theta ** (torch.arange(0, hd, 2, dtype=torch.float32, device=device) / hd))  # (hd/2)
    ang = torch.outer(torch.arange(seq, dtype=torch.float32, device=device), inv)  # (seq, hd/2)
    ang = torch.cat([ang, ang], dim=-1)  # (seq, hd) NeoX layout: first half / second half share a frequency
    return ang.cos(), ang.sin()


def apply_rope(x, cos, sin):
    # x: (B, H, T, hd); rotate halves.
    h = x.shape[-1] // 2
    rot = torch.cat([-x[..., h:], x[..., :h]], dim=-1)
    return x * cos + rot * sin


class Block(nn.Module):
    def __init__(self, cfg):
        super().__init__()
        d, ff = cfg["d_model"], cfg["mlp_hidden_size"]
        self.nh = cfg["n_heads"]
        self.attn_norm = RMSNorm(d, cfg["rms_norm_eps"])
        self.ff_norm = RMSNorm(d, cfg["rms_norm_eps"])
        self.q_proj = nn.Linear(d, d, bias=False)
        self.k_proj = nn.Linear(d, d, bias=False)
        self.v_proj = nn.Linear(d, d, bias=False)
        self.attn_out = nn.Linear(d, d, bias=False)
        self.ff_proj = nn.Linear(d, ff, bias=False)
        self.up_proj = nn.Linear(d, ff, bias=False)
        self.ff_out = nn.Linear(ff, d, bias=False)

    def forward(self, x, cos, sin):
        B, T, d = x.shape
        hd = d // self.nh
        h = self.attn_norm(x)
        q = self.q_proj(h).view(B, T, self.nh, hd).transpose(1, 2)  # (B, H, T, hd)
        k = self.k_proj(h).view(B, T, self.nh, hd).transpose(1, 2)
        v = self.v_proj(h).view(B, T, self.nh, hd).transpose(1, 2)
        q, k = apply_rope(q, cos, sin), apply_rope(k, cos, sin)
        att = torch.softmax(q @ k.transpose(-1, -2) / math.sqrt(hd), dim=-1)  # (B, H, T, T), no causal mask
        o = (att @ v).transpose(1, 2).reshape(B, T, d)
        x = x + self.attn_out(o)
        h = self.ff_norm(x)
        return x + self.ff_out(F.silu(self.ff_proj(h)) * self.up_proj(h))


class LLaDA(nn.Module):
    def __init__(self, cfg):
        super().__init__()
        self.cfg = cfg
        self.wte = nn.Embedding(cfg["embedding_size"], cfg["d_model"])
        self.blocks = nn.ModuleList([Block(cfg) for _ in range(cfg["n_layers"])])
        self.ln_f = RMSNorm(cfg["d_model"], cfg["rms_norm_eps"])
        self.ff_out = nn.Linear(cfg["d_model"], cfg["embedding_size"], bias=False)
        for p in self.parameters():
            if p.dim() == 2:
                nn.init.normal_(p, std=0.02)

    def forward(self, ids):  # ids: (B, T) int64 -> logits (B, T, vocab)
        T = ids.shape[1]
        cos, sin = rope_tables(T, self.cfg["d_model"] // self.cfg["n_heads"], self.cfg["rope_theta"], ids.device)
        x = self.wte(ids)
        for b in self.blocks:
            x = b(x, cos, sin)
        return self.ff_out(self.ln_f(x))

    def llada_state_dict(self):
        """Tensors under LLaDA checkpoint names."""
        out = {"model.transformer.wte.weight": self.wte.weight, "model.transformer.ln_f.weight": self.ln_f.weight,
               "model.transformer.ff_out.weight": self.ff_out.weight}
        for i, b in enumerate(self.blocks):
            for n in ["q_proj", "k_proj", "v_proj", "attn_out", "ff_proj", "up_proj", "ff_out", "attn_norm", "ff_norm"]:
                out[f"model.transformer.blocks.{i}.{n}.weight"] = getattr(b, n).weight
        return {k: v.detach().cpu().contiguous().float() for k, v in out.items()}
