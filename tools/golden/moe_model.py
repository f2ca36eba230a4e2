"""LLaDA-MoE's forward pass in float64 PyTorch (DESIGN §13), for golden logits: written from the published modeling
code's semantics (OLMoE-style layers), not from the TypeScript engines.

Per layer: RMSNorm; q, k, v projections without bias; per-head RMSNorm of q and k (qk_layernorm); clamp of q, k, v to
±clip_qkv when set; NeoX RoPE on the first head_dim · partial_rotary_factor dims; full attention; o projection;
residual. Then RMSNorm and either a dense SwiGLU (moe_layer_freq 0) or the mixture: router softmax over the experts,
plus the expert bias when enabled (kept in the weights), top-k, no renormalisation (the published code fixes
norm_topk_prob to False), each expert run over the rows routed to it and its weighted output added in expert order,
plus the shared expert. The cache modes are TorchModel's (keys cached before RoPE).
"""
import json
import os

import torch

from torch_model import DT, TorchModel, load_dir


def swiglu(m, x):
    """SwiGLU FFN of weights m (gate, up, down) on rows x (n, d)."""
    return (torch.nn.functional.silu(x @ m['gate'].T) * (x @ m['up'].T)) @ m['down'].T


def mix_experts(ly, x, chosen, weights):
    """Σ weight · expert(x) over each row's chosen experts (chosen, weights: (n, k)), each expert once over the rows
    routed to it, plus the shared expert when the layer has one. llada2_model.py mixes with it too."""
    out = torch.zeros_like(x)
    for e, expert in enumerate(ly['experts']):
        rows, slot = torch.where(chosen == e)
        if len(rows):
            out.index_add_(0, rows, swiglu(expert, x[rows]) * weights[rows, slot, None])
    if 'shared' in ly:
        out = out + swiglu(ly['shared'], x)
    return out


class MoeTorchModel(TorchModel):
    def __init__(self, model_dir):  # noqa: super().__init__ reads LLaDA/Dream names; this layout is its own
        cfg, w = load_dir(model_dir)
        self.arch = 'llada_moe'
        self.d, self.nl, self.h = cfg['hidden_size'], cfg['num_hidden_layers'], cfg['num_attention_heads']
        self.kv = cfg.get('num_key_value_heads') or self.h
        self.eps, self.theta = cfg['rms_norm_eps'], cfg['rope_theta']
        self.hd = self.d // self.h
        self.rot = 2 * int(self.hd * cfg.get('partial_rotary_factor', 1.0) // 2)
        self.clip = cfg.get('clip_qkv')
        self.top_k = cfg['num_experts_per_tok']
        freq = cfg.get('moe_layer_freq') or [1] * self.nl
        self.embed, self.norm_f = w['model.embed_tokens.weight'], w['model.norm.weight']
        self.head = self.embed if cfg.get('tie_word_embeddings') else w['lm_head.weight']
        self.layers = []
        for i in range(self.nl):
            p = f'model.layers.{i}.'
            ly = dict(n1=w[p + 'input_layernorm.weight'], q=w[p + 'self_attn.q_proj.weight'],
                      k=w[p + 'self_attn.k_proj.weight'], v=w[p + 'self_attn.v_proj.weight'],
                      o=w[p + 'self_attn.o_proj.weight'], n2=w[p + 'post_attention_layernorm.weight'])
            if cfg.get('qk_layernorm'):
                ly.update(moe_qn=w[p + 'self_attn.q_norm.weight'], moe_kn=w[p + 'self_attn.k_norm.weight'])  # applied in qkv(), before the clamp
            mlp = lambda q: dict(gate=w[q + 'gate_proj.weight'], up=w[q + 'up_proj.weight'], down=w[q + 'down_proj.weight'])
            if freq[i]:
                ly['router'] = w[p + 'mlp.gate.weight']
                ly['experts'] = [mlp(f'{p}mlp.experts.{e}.') for e in range(cfg['num_experts'])]
                if cfg.get('shared_expert_intermediate_size'):
                    ly['shared'] = mlp(p + 'shared_expert.')
                if cfg.get('moe_router_enable_expert_bias'):
                    ly['bias'] = w[p + 'mlp.expert_bias']
            else:
                ly.update(mlp(p + 'mlp.'))
            self.layers.append(ly)
        self.cache = None

    def qkv(self, ly, hN):
        n = hN.shape[0]
        q, k, v = hN @ ly['q'].T, hN @ ly['k'].T, hN @ ly['v'].T
        if 'moe_qn' in ly:
            q = self.rms(q.reshape(n * self.h, self.hd), ly['moe_qn']).reshape(n, -1)
            k = self.rms(k.reshape(n * self.kv, self.hd), ly['moe_kn']).reshape(n, -1)
        if self.clip is not None:
            q, k, v = (t.clamp(-self.clip, self.clip) for t in (q, k, v))
        return q, k, v

    def ffn(self, ly, h2):
        if 'router' not in ly:
            return swiglu(ly, h2)
        probs = torch.softmax(h2 @ ly['router'].T, dim=-1)
        if 'bias' in ly:
            probs = probs + ly['bias']
        weights, chosen = torch.topk(probs, self.top_k, dim=-1)  # (n, k)
        return mix_experts(ly, h2, chosen, weights)
