"""An independent float64 PyTorch implementation of the LLaDA / Dream forward pass (DESIGN §1) with the
approximate K/V cache modes of DESIGN §4, written from the spec to produce golden logits for the TS engines.
It also runs dllm's A2D MDLM checkpoints (DESIGN §15): Qwen2 or Qwen3 layers (Qwen3: per-head q/k RMSNorm before
RoPE, head_dim from config), tied embeddings, full attention, logits not shifted.

Keys are cached *before* RoPE here (as in the published reference code) and RoPE is re-applied with absolute
positions on every step; the TS reference caches after RoPE, so agreement checks that the two are the same.
"""
import json
import os
import struct

import numpy as np
import torch

DT = torch.float64


def read_safetensors(path):
    """name -> float64 tensor; F32 and BF16 (bf16 values widened exactly)."""
    with open(path, 'rb') as f:
        n = struct.unpack('<Q', f.read(8))[0]
        header = json.loads(f.read(n))
        data = f.read()
    out = {}
    for name, t in header.items():
        if name == '__metadata__':
            continue
        a, b = t['data_offsets']
        raw = data[a:b]
        if t['dtype'] == 'F32':
            arr = np.frombuffer(raw, dtype='<f4')
        elif t['dtype'] == 'BF16':
            arr = (np.frombuffer(raw, dtype='<u2').astype(np.uint32) << 16).view(np.float32)
        else:
            raise ValueError(f'{path}: dtype {t["dtype"]} not handled')
        out[name] = torch.tensor(arr.astype(np.float64).reshape(t['shape']), dtype=DT)
    return out


def load_dir(d):
    idx = os.path.join(d, 'model.safetensors.index.json')
    files = sorted(set(json.load(open(idx))['weight_map'].values())) if os.path.exists(idx) else ['model.safetensors']
    w = {}
    for f in files:
        w.update(read_safetensors(os.path.join(d, f)))
    return json.load(open(os.path.join(d, 'config.json'))), w


def a2d_variant(model_dir):
    """DESIGN §15, restated: an A2D directory is MDLM or BD3LM by the nearest path component naming one, else MDLM."""
    for part in reversed([x for x in os.path.abspath(model_dir).split(os.sep) if x]):
        words = set(''.join(c if c.isalnum() else ' ' for c in part.lower()).split())
        if 'mdlm' in words or 'bd3lm' in words:
            return 'bd3lm' if 'bd3lm' in words else 'mdlm'
    return 'mdlm'


def mask_id(model_dir):
    """config.json's mask_token_id, else the "<|mask|>" of tokenizer.json's added tokens (A2D, DESIGN §15)."""
    cfg = json.load(open(os.path.join(model_dir, 'config.json')))
    if cfg.get('mask_token_id') is not None:
        return cfg['mask_token_id']
    tok = json.load(open(os.path.join(model_dir, 'tokenizer.json')))
    return next(t['id'] for t in tok['added_tokens'] if t['content'] == '<|mask|>')


class TorchModel:
    def __init__(self, model_dir):
        cfg, w = load_dir(model_dir)
        mt = cfg['model_type'].lower()
        self.arch = 'llada' if mt == 'llada' else 'a2d' if mt.startswith('a2d-') else 'dream'
        if self.arch == 'a2d':
            assert a2d_variant(model_dir) == 'mdlm', 'BD3LM directories run in blockdiff_model.py'
        if self.arch == 'llada':
            self.d, self.nl, self.h = cfg['d_model'], cfg['n_layers'], cfg['n_heads']
            self.kv = cfg.get('n_kv_heads', self.h)
            self.eps, self.theta = cfg['rms_norm_eps'], cfg['rope_theta']
            p = 'model.transformer.'
            self.embed, self.norm_f, self.head = w[p + 'wte.weight'], w[p + 'ln_f.weight'], w[p + 'ff_out.weight']
            self.layers = [dict(
                n1=w[f'{p}blocks.{i}.attn_norm.weight'], q=w[f'{p}blocks.{i}.q_proj.weight'],
                k=w[f'{p}blocks.{i}.k_proj.weight'], v=w[f'{p}blocks.{i}.v_proj.weight'],
                o=w[f'{p}blocks.{i}.attn_out.weight'], n2=w[f'{p}blocks.{i}.ff_norm.weight'],
                gate=w[f'{p}blocks.{i}.ff_proj.weight'], up=w[f'{p}blocks.{i}.up_proj.weight'],
                down=w[f'{p}blocks.{i}.ff_out.weight']) for i in range(self.nl)]
        else:
            self.d, self.nl, self.h = cfg['hidden_size'], cfg['num_hidden_layers'], cfg['num_attention_heads']
            self.kv = cfg['num_key_value_heads']
            self.eps, self.theta = cfg['rms_norm_eps'], cfg['rope_theta']
            self.embed, self.norm_f = w['model.embed_tokens.weight'], w['model.norm.weight']
            self.head = self.embed if cfg.get('tie_word_embeddings') else w['lm_head.weight']
            self.layers = []
            for i in range(self.nl):
                p = f'model.layers.{i}.'
                ly = dict(
                    n1=w[p + 'input_layernorm.weight'], q=w[p + 'self_attn.q_proj.weight'],
                    k=w[p + 'self_attn.k_proj.weight'], v=w[p + 'self_attn.v_proj.weight'], o=w[p + 'self_attn.o_proj.weight'],
                    n2=w[p + 'post_attention_layernorm.weight'], gate=w[p + 'mlp.gate_proj.weight'],
                    up=w[p + 'mlp.up_proj.weight'], down=w[p + 'mlp.down_proj.weight'])
                # Qwen2 (Dream, a2d-qwen2): q/k/v biases; Qwen3 (a2d-qwen3): per-head q/k norms instead.
                for k, n in (('qb', 'q_proj.bias'), ('kb', 'k_proj.bias'), ('vb', 'v_proj.bias'), ('qn', 'q_norm.weight'), ('kn', 'k_norm.weight')):
                    if p + 'self_attn.' + n in w:
                        ly[k] = w[p + 'self_attn.' + n]
                self.layers.append(ly)
        self.hd = cfg.get('head_dim') or self.d // self.h
        self.rot = self.hd  # dims of each head that RoPE turns (all of them here; LLaDA-MoE may turn fewer)
        self.cache = None  # per layer (k_pre_rope (L, kv, hd), v (L, kv, hd)) of the last full forward

    def rms(self, x, w):
        return x * torch.rsqrt(x.pow(2).mean(-1, keepdim=True) + self.eps) * w

    def rope(self, x, pos):
        """x (n, heads, hd); NeoX halves over the first self.rot dims, the rest unchanged."""
        half = self.rot // 2
        inv = self.theta ** (-torch.arange(0, half, dtype=DT) * 2 / self.rot)
        ang = pos.to(DT)[:, None] * inv[None, :]  # (n, half)
        cos, sin = torch.cos(ang)[:, None, :], torch.sin(ang)[:, None, :]
        a, b, rest = x[..., :half], x[..., half:self.rot], x[..., self.rot:]
        return torch.cat([a * cos - b * sin, b * cos + a * sin, rest], dim=-1)

    def qkv(self, ly, hN):
        """q (n, h*hd), k and v (n, kv*hd) of the normed rows, before RoPE."""
        q = hN @ ly['q'].T + (ly['qb'] if 'qb' in ly else 0)
        k = hN @ ly['k'].T + (ly['kb'] if 'kb' in ly else 0)
        v = hN @ ly['v'].T + (ly['vb'] if 'vb' in ly else 0)
        return q, k, v

    def ffn(self, ly, h2):
        """The SwiGLU FFN of the post-attention-normed rows (n, d)."""
        return (torch.nn.functional.silu(h2 @ ly['gate'].T) * (h2 @ ly['up'].T)) @ ly['down'].T

    def forward(self, canvas, mode, start, end):
        """Returns logits (end-start, V) of the computed rows (unshifted) and updates the cache like DESIGN §4."""
        L = len(canvas)
        ids = torch.tensor(canvas[start:end], dtype=torch.long)
        x = self.embed[ids]
        n = end - start
        qpos = torch.arange(start, end)
        kpos = torch.arange(0, L)
        new_cache = []
        for li, ly in enumerate(self.layers):
            hN = self.rms(x, ly['n1'])
            q, k, v = self.qkv(ly, hN)
            q, k, v = q.view(n, self.h, self.hd), k.view(n, self.kv, self.hd), v.view(n, self.kv, self.hd)
            if 'qn' in ly:  # Qwen3: normalised per head before RoPE, so the cached (pre-RoPE) keys are normalised
                q, k = self.rms(q, ly['qn']), self.rms(k, ly['kn'])
            if mode == 'full':
                K, Vv = k, v
                new_cache.append((k, v))
            else:
                ck, cv = self.cache[li]
                if mode == 'prefix':
                    K, Vv = torch.cat([ck[:start], k]), torch.cat([cv[:start], v])
                else:
                    K, Vv = torch.cat([ck[:start], k, ck[end:]]), torch.cat([cv[:start], v, cv[end:]])
                    new_cache.append((K, Vv))
            qr = self.rope(q, qpos)
            kr = self.rope(K, kpos)
            rep = self.h // self.kv
            kr = kr.repeat_interleave(rep, dim=1)  # (L, h, hd)
            vr = Vv.repeat_interleave(rep, dim=1)
            s = torch.einsum('nhd,mhd->hnm', qr, kr) / (self.hd ** 0.5)
            att = torch.einsum('hnm,mhd->nhd', torch.softmax(s, dim=-1), vr).reshape(n, self.h * self.hd)
            x = x + att @ ly['o'].T
            x = x + self.ffn(ly, self.rms(x, ly['n2']))
        if mode != 'prefix':
            self.cache = new_cache
        return self.rms(x, self.norm_f) @ self.head.T

    def reported_logits(self, canvas, mode, start, end):
        """Logits reported for every position of [start, end) (ModelInfo.shiftLogits for Dream)."""
        rows = self.forward(canvas, mode, start, end)
        if self.arch == 'dream':
            shifted = rows.clone()
            shifted[1:] = rows[:-1]  # position p reads row p-1 inside the span; the first keeps its own row
            return shifted
        return rows


def open_model(model_dir):
    """The golden model of a fixture directory: LLaDA-MoE's (moe_model.py) for lladamoe configs, else TorchModel."""
    cfg = json.load(open(os.path.join(model_dir, 'config.json')))
    if cfg['model_type'] == 'lladamoe' or 'num_experts' in cfg:
        from moe_model import MoeTorchModel
        return MoeTorchModel(model_dir)
    return TorchModel(model_dir)
