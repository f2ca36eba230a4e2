"""An independent float64 PyTorch implementation of the block-diffusion models of DESIGN §8, written from the spec and
the published generation code (read, not copied), to produce golden data for the TS engines and scheduler.

Fast-dLLM v2 (config model_type "Fast_dLLM_Qwen"): Qwen2.5 layers (q/k/v biases, GQA), shifted logits.
SDAR (model_type "sdar"): Qwen3 layers (no biases, per-head RMSNorm of q and k before RoPE, head_dim from config),
unshifted logits. dllm's A2D BD3LM checkpoints (DESIGN §15, model_type "a2d-qwen2" / "a2d-qwen3" in a directory named
"...-bd3lm-..."): Qwen2 or Qwen3 layers, tied embeddings, unshifted logits, block size from config.json's block_size
or 32. All: block-causal attention with blocks aligned to absolute positions (query i sees key j iff
j // B <= i // B), NeoX RoPE, SwiGLU, RMSNorm written by hand (torch 1.13 has no nn.RMSNorm and no SDPA).

The forward takes the rows to compute (token ids and absolute positions) and a *context*: per layer, the K/V (after
RoPE, with their absolute positions) of other positions those rows may see. Callers build the context the way the
published code does (a cache of finished blocks, a kept block cache); the attention mask follows absolute positions.
"""
import json
import os
import sys

import torch

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
from torch_model import a2d_variant, load_dir  # noqa: E402  (safetensors reader, f32/bf16 widened to float64)

DT = torch.float64


class Context:
    """Per layer: absolute positions (m,) and K, V (m, KV, hd) after RoPE of the positions a forward may see."""

    def __init__(self, layers):
        self.pos = [torch.zeros(0, dtype=torch.long) for _ in range(layers)]
        self.k = [None] * layers
        self.v = [None] * layers

    def append(self, fresh, pos):
        """Adds a forward's fresh K/V (list of (k, v) per layer) at positions pos."""
        for li, (k, v) in enumerate(fresh):
            self.pos[li] = torch.cat([self.pos[li], pos])
            self.k[li] = k if self.k[li] is None else torch.cat([self.k[li], k])
            self.v[li] = v if self.v[li] is None else torch.cat([self.v[li], v])

    def without(self, lo, hi):
        """A copy without the positions in [lo, hi)."""
        c = Context(len(self.pos))
        for li in range(len(self.pos)):
            keep = (self.pos[li] < lo) | (self.pos[li] >= hi)
            c.pos[li] = self.pos[li][keep]
            c.k[li] = None if self.k[li] is None else self.k[li][keep]
            c.v[li] = None if self.v[li] is None else self.v[li][keep]
        return c

    def merged(self, other):
        c = Context(len(self.pos))
        for li in range(len(self.pos)):
            parts = [x for x in (self, other) if x.k[li] is not None]
            c.pos[li] = torch.cat([x.pos[li] for x in parts]) if parts else c.pos[li]
            c.k[li] = torch.cat([x.k[li] for x in parts]) if parts else None
            c.v[li] = torch.cat([x.v[li] for x in parts]) if parts else None
        return c


def rope(x, pos, theta, rot):
    """x (n, heads, hd): NeoX halves over the first `rot` dims (hd: all of them), angles pos · theta^(-2j/rot), the rest
    passed through; pos (n,) absolute. llada2_model.py's partial rotary uses it too."""
    half = rot // 2
    inv = theta ** (-torch.arange(0, half, dtype=DT) * 2 / rot)
    ang = pos.to(DT)[:, None] * inv[None, :]
    cos, sin = torch.cos(ang)[:, None, :], torch.sin(ang)[:, None, :]
    a, b, rest = x[..., :half], x[..., half:rot], x[..., rot:]
    return torch.cat([a * cos - b * sin, b * cos + a * sin, rest], dim=-1)


def attend(q, k, v, pos, ctx, li, block):
    """Block-causal attention (query i sees key j iff j // block <= i // block, on absolute positions) of the rows
    q (n, H, hd) at `pos` (n,) over layer li's K/V in ctx and the rows' own fresh k, v (n, KV, hd), the KV heads
    repeated to H. Returns (n, H * hd). llada2_model.py's forward uses it too."""
    n, heads, hd = q.shape
    if ctx is not None and ctx.k[li] is not None:
        K, V, kpos = torch.cat([ctx.k[li], k]), torch.cat([ctx.v[li], v]), torch.cat([ctx.pos[li], pos])
    else:
        K, V, kpos = k, v, pos
    rep = heads // k.shape[1]
    K, V = K.repeat_interleave(rep, dim=1), V.repeat_interleave(rep, dim=1)  # (m, H, hd)
    s = torch.einsum('nhd,mhd->hnm', q, K) / (hd ** 0.5)
    allowed = (kpos[None, :] // block) <= (pos[:, None] // block)  # (n, m) block-causal
    s = s.masked_fill(~allowed[None], float('-inf'))
    return torch.einsum('hnm,mhd->nhd', torch.softmax(s, dim=-1), V).reshape(n, heads * hd)


class BlockDiffModel:
    def __init__(self, model_dir):
        cfg, w = load_dir(model_dir)
        mt = cfg['model_type'].lower()
        assert mt in ('fast_dllm_qwen', 'sdar', 'a2d-qwen2', 'a2d-qwen3'), mt
        self.arch = 'fast_dllm_v2' if mt == 'fast_dllm_qwen' else 'sdar' if mt == 'sdar' else 'a2d_bd3lm'
        if self.arch == 'a2d_bd3lm':
            assert a2d_variant(model_dir) == 'bd3lm', 'MDLM directories run in torch_model.py'
        self.shift = self.arch == 'fast_dllm_v2'
        self.B = cfg['bd_size'] if self.arch == 'fast_dllm_v2' else cfg.get('block_size') or 32
        self.d, self.nl = cfg['hidden_size'], cfg['num_hidden_layers']
        self.h, self.kv = cfg['num_attention_heads'], cfg['num_key_value_heads']
        self.hd = cfg.get('head_dim') or self.d // self.h
        self.eps, self.theta = cfg['rms_norm_eps'], cfg['rope_theta']
        self.embed = w['model.embed_tokens.weight']
        self.head = self.embed if cfg.get('tie_word_embeddings') else w['lm_head.weight']
        self.norm_f = w['model.norm.weight']
        self.layers = []
        for i in range(self.nl):
            p = f'model.layers.{i}.'
            ly = {k: w[p + n] for k, n in dict(
                n1='input_layernorm.weight', q='self_attn.q_proj.weight', k='self_attn.k_proj.weight',
                v='self_attn.v_proj.weight', o='self_attn.o_proj.weight', n2='post_attention_layernorm.weight',
                gate='mlp.gate_proj.weight', up='mlp.up_proj.weight', down='mlp.down_proj.weight').items()}
            for k, n in (('qb', 'self_attn.q_proj.bias'), ('kb', 'self_attn.k_proj.bias'), ('vb', 'self_attn.v_proj.bias'),
                         ('qn', 'self_attn.q_norm.weight'), ('kn', 'self_attn.k_norm.weight')):
                if p + n in w:
                    ly[k] = w[p + n]
            self.layers.append(ly)
        self.vocab = self.head.shape[0]

    def rms(self, x, w):
        return x * torch.rsqrt(x.pow(2).mean(-1, keepdim=True) + self.eps) * w

    def rope(self, x, pos):
        return rope(x, pos, self.theta, self.hd)

    def forward(self, ids, pos, ctx=None):
        """Rows for tokens `ids` at absolute positions `pos` (both (n,)), seeing ctx's K/V and each other under the
        block-causal mask. Returns (logits (n, V) unshifted, fresh [(k, v)] per layer after RoPE)."""
        ids = torch.as_tensor(ids, dtype=torch.long)
        pos = torch.as_tensor(pos, dtype=torch.long)
        n = len(ids)
        x = self.embed[ids]
        fresh = []
        for li, ly in enumerate(self.layers):
            h = self.rms(x, ly['n1'])
            q = (h @ ly['q'].T + ly.get('qb', 0)).view(n, self.h, self.hd)
            k = (h @ ly['k'].T + ly.get('kb', 0)).view(n, self.kv, self.hd)
            v = (h @ ly['v'].T + ly.get('vb', 0)).view(n, self.kv, self.hd)
            if 'qn' in ly:  # Qwen3: RMSNorm of each head's q and k over hd, before RoPE
                q, k = self.rms(q, ly['qn']), self.rms(k, ly['kn'])
            q, k = self.rope(q, pos), self.rope(k, pos)
            fresh.append((k, v))
            att = attend(q, k, v, pos, ctx, li, self.B)  # (n, H * hd)
            x = x + att @ ly['o'].T
            h2 = self.rms(x, ly['n2'])
            x = x + (torch.nn.functional.silu(h2 @ ly['gate'].T) * (h2 @ ly['up'].T)) @ ly['down'].T
        return self.rms(x, self.norm_f) @ self.head.T, fresh

    def reported(self, rows, start):
        """Rows of a span starting at `start` as an engine reports them for the span's positions: a shifted model
        reads p's prediction from row p-1 inside the span, the first position keeps its own row."""
        if not self.shift:
            return rows
        out = rows.clone()
        out[1:] = rows[:-1]
        return out


def config_of(model_dir):
    return json.load(open(os.path.join(model_dir, 'config.json')))
