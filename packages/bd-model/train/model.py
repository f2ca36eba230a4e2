"""Fast-dLLM v2-architecture block-diffusion LM in plain PyTorch 1.13 (float32 for training; float64 works too):
Qwen2.5 layers (pre-norm RMSNorm, q/k/v projections with biases, grouped-query attention, NeoX RoPE, SwiGLU),
tied embeddings (the LM head is the embedding, as in Fast_dLLM_v2_1.5B). Torch 1.13 has neither nn.RMSNorm nor
scaled_dot_product_attention: both are written out (RMSNorm is the bundled model's).

The forward takes explicit absolute positions and a boolean attention mask, because the training canvas holds
two copies of the sequence (noised and clean) with the same positions, and decoding uses block-causal masks.
"""
import math

import torch
import torch.nn as nn
import torch.nn.functional as F

from data import load_default_model_module


RMSNorm = load_default_model_module("model.py").RMSNorm  # the same layer as the bundled model's (weight init 1)


def rope(x, pos, theta):
    """x: (N, heads, T, hd); pos: (T,) absolute positions. NeoX layout: halves share a frequency."""
    hd = x.shape[-1]
    inv = 1.0 / (theta ** (torch.arange(0, hd, 2, dtype=x.dtype, device=x.device) / hd))  # (hd/2)
    ang = pos.to(x.dtype)[:, None] * inv[None, :]  # (T, hd/2)
    ang = torch.cat([ang, ang], dim=-1)  # (T, hd)
    h = hd // 2
    rot = torch.cat([-x[..., h:], x[..., :h]], dim=-1)
    return x * ang.cos() + rot * ang.sin()


class Layer(nn.Module):
    def __init__(self, cfg):
        super().__init__()
        d, H, KV, ff = cfg["hidden_size"], cfg["num_attention_heads"], cfg["num_key_value_heads"], cfg["intermediate_size"]
        self.H, self.KV, self.hd, self.theta = H, KV, d // H, cfg["rope_theta"]
        self.input_layernorm = RMSNorm(d, cfg["rms_norm_eps"])
        self.q_proj = nn.Linear(d, H * self.hd, bias=True)
        self.k_proj = nn.Linear(d, KV * self.hd, bias=True)
        self.v_proj = nn.Linear(d, KV * self.hd, bias=True)
        self.o_proj = nn.Linear(H * self.hd, d, bias=False)
        self.post_attention_layernorm = RMSNorm(d, cfg["rms_norm_eps"])
        self.gate_proj = nn.Linear(d, ff, bias=False)
        self.up_proj = nn.Linear(d, ff, bias=False)
        self.down_proj = nn.Linear(ff, d, bias=False)

    def forward(self, x, pos, allowed, ctx=None):
        """x: (N, T, d); pos: (T,); allowed: (T, m + T) bool, query row i may attend key j, where the keys are the
        context's m (ctx = (K, V), each (N, KV, m, hd) after RoPE: K/V of other positions) then the T rows'.
        Returns the new x and the rows' own (K, V), each (N, KV, T, hd) after RoPE."""
        N, T, _ = x.shape
        h = self.input_layernorm(x)
        q = self.q_proj(h).view(N, T, self.H, self.hd).transpose(1, 2)  # (N, H, T, hd)
        k = self.k_proj(h).view(N, T, self.KV, self.hd).transpose(1, 2)  # (N, KV, T, hd)
        v = self.v_proj(h).view(N, T, self.KV, self.hd).transpose(1, 2)
        q, k = rope(q, pos, self.theta), rope(k, pos, self.theta)
        K, V = (k, v) if ctx is None else (torch.cat([ctx[0], k], dim=2), torch.cat([ctx[1], v], dim=2))  # (N, KV, m + T, hd)
        rep = self.H // self.KV
        K, V = K.repeat_interleave(rep, dim=1), V.repeat_interleave(rep, dim=1)  # (N, H, m + T, hd)
        s = (q @ K.transpose(-1, -2)) / math.sqrt(self.hd)  # (N, H, T, m + T)
        s = s.masked_fill(~allowed, float("-inf"))
        o = (torch.softmax(s, dim=-1) @ V).transpose(1, 2).reshape(N, T, self.H * self.hd)
        x = x + self.o_proj(o)
        h = self.post_attention_layernorm(x)
        return x + self.down_proj(F.silu(self.gate_proj(h)) * self.up_proj(h)), (k, v)


class BlockDiffLM(nn.Module):
    def __init__(self, cfg):
        super().__init__()
        self.cfg = cfg
        self.embed_tokens = nn.Embedding(cfg["vocab_size"], cfg["hidden_size"])
        self.layers = nn.ModuleList([Layer(cfg) for _ in range(cfg["num_hidden_layers"])])
        self.norm = RMSNorm(cfg["hidden_size"], cfg["rms_norm_eps"])
        for name, p in self.named_parameters():
            if p.dim() == 2:
                nn.init.normal_(p, std=0.02)
            elif name.endswith("bias"):
                nn.init.zeros_(p)

    def forward(self, ids, pos, allowed, ctx=None, return_kv=False):
        """ids: (N, T) int64; pos: (T,) absolute positions; allowed: (T, m + T) bool over the context's m keys and
        the rows' own; ctx: per layer (K, V), each (N, KV, m, hd), or None (m = 0). Returns logits (N, T, V),
        unshifted: row i is the model's output at position pos[i] (it predicts position pos[i] + 1); with
        return_kv also the rows' (K, V) per layer."""
        x = self.embed_tokens(ids)
        kv = []
        for li, layer in enumerate(self.layers):
            x, fresh = layer(x, pos, allowed, None if ctx is None else ctx[li])
            kv.append(fresh)
        logits = self.norm(x) @ self.embed_tokens.weight.T  # tied LM head
        return (logits, kv) if return_kv else logits

    def hf_params(self):
        """(checkpoint name, parameter) under Qwen2 / Fast_dLLM_Qwen tensor names (tied: no lm_head.weight)."""
        out = [("model.embed_tokens.weight", self.embed_tokens.weight), ("model.norm.weight", self.norm.weight)]
        for i, ly in enumerate(self.layers):
            p = f"model.layers.{i}."
            out += [(p + "input_layernorm.weight", ly.input_layernorm.weight),
                    (p + "post_attention_layernorm.weight", ly.post_attention_layernorm.weight)]
            for n in ("q_proj", "k_proj", "v_proj"):
                out += [(p + f"self_attn.{n}.weight", getattr(ly, n).weight), (p + f"self_attn.{n}.bias", getattr(ly, n).bias)]
            out.append((p + "self_attn.o_proj.weight", ly.o_proj.weight))
            for n in ("gate_proj", "up_proj", "down_proj"):
                out.append((p + f"mlp.{n}.weight", getattr(ly, n).weight))
        return out

    def hf_state_dict(self):
        return {n: t.detach().cpu().contiguous().float() for n, t in self.hf_params()}


def block_causal(pos, B):
    """(T, T) bool: query i attends key j iff floor(pos[j]/B) <= floor(pos[i]/B) (DESIGN §8)."""
    blk = pos // B
    return blk[None, :] <= blk[:, None]
