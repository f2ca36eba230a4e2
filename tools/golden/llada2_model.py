"""LLaDA2.x's forward pass in float64 PyTorch (DESIGN §13.1), for golden logits and tokens: written from the semantics of
the published modeling code (dllm/pipelines/llada2, LLaDA2MoeModelLM), not from the TypeScript engines.

Per layer: RMSNorm; one fused query_key_value projection split into q (H heads), k and v (KV heads each); per-head
RMSNorm of q and k (use_qk_norm); NeoX RoPE on the first int(head_dim · partial_rotary_factor) dims of each head (the
rest pass through); block-causal attention on absolute positions (blocks of block_size, else the sampler's 32), grouped
K/V; the `dense` output projection (+ its bias with use_bias); residual. Then RMSNorm and either a dense SwiGLU
(layers below first_k_dense_replace) or the mixture: sigmoid router scores s; s + expert_bias picks the experts
(group-limited: n_group contiguous groups, each scored by the sum of its two best biased scores, the topk_group best
groups kept, the top k of their experts), the unbiased s of the chosen are the weights, divided by their sum (+1e-20)
when k > 1, times routed_scaling_factor; Σ weight · expert(x) plus the shared experts (moe_intermediate_size ·
num_shared_experts). Final RMSNorm and the LM head; logits unshifted. Ties in every top-k go to the lower index, as
the engines do (the published torch.topk leaves them unspecified).

The interface is blockdiff_model.BlockDiffModel's (forward over rows with a context of cached K/V), so
blockdiff_golden.py replays the contract's cache modes and decodes with SDAR's procedure on it.
"""
import os
import sys

import torch

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
from blockdiff_model import attend, rope  # noqa: E402  (block-causal attention over cached K/V; NeoX RoPE)
from moe_model import mix_experts, swiglu  # noqa: E402  (the experts' weighted sum, the same math as LLaDA-MoE's)
from torch_model import load_dir  # noqa: E402  (safetensors reader, f32/bf16 widened to float64)

DT = torch.float64


def topk_low(x, k):
    """Indices of the k largest of each row of x, ties to the lower index (a stable sort of -x)."""
    return torch.sort(-x, dim=-1, stable=True).indices[..., :k]


class Llada2Model:
    def __init__(self, model_dir):
        cfg, w = load_dir(model_dir)
        assert cfg['model_type'] == 'llada2_moe', cfg['model_type']
        self.arch = 'llada2_moe'
        self.shift = False
        self.B = cfg.get('block_size') or 32
        self.d, self.nl = cfg['hidden_size'], cfg['num_hidden_layers']
        self.h, self.kv = cfg['num_attention_heads'], cfg['num_key_value_heads']
        self.hd = cfg.get('head_dim') or self.d // self.h
        self.rot = int(self.hd * cfg.get('partial_rotary_factor', 0.5))
        self.eps, self.theta = cfg.get('rms_norm_eps', 1e-5), cfg.get('rope_theta', 10000.0)
        self.top_k, self.groups, self.top_groups = cfg['num_experts_per_tok'], cfg['n_group'], cfg['topk_group']
        self.scale = cfg['routed_scaling_factor']
        self.embed = w['model.word_embeddings.weight']
        self.head = self.embed if cfg.get('tie_word_embeddings') else w['lm_head.weight']
        self.norm_f = w['model.norm.weight']
        dense = cfg.get('first_k_dense_replace', 0) if cfg.get('num_experts') is not None else self.nl
        self.layers = []
        for i in range(self.nl):
            p = f'model.layers.{i}.'
            ly = dict(n1=w[p + 'input_layernorm.weight'], qkv=w[p + 'attention.query_key_value.weight'],
                      o=w[p + 'attention.dense.weight'], n2=w[p + 'post_attention_layernorm.weight'])
            for k, n in (('qkvb', 'attention.query_key_value.bias'), ('ob', 'attention.dense.bias'),
                         ('qn', 'attention.query_layernorm.weight'), ('kn', 'attention.key_layernorm.weight')):
                if p + n in w:
                    ly[k] = w[p + n]
            mlp = lambda q: dict(gate=w[q + 'gate_proj.weight'], up=w[q + 'up_proj.weight'], down=w[q + 'down_proj.weight'])
            if i < dense:
                ly['dense'] = mlp(p + 'mlp.')
            else:
                ly['router'] = w[p + 'mlp.gate.weight']
                ly['bias'] = w[p + 'mlp.gate.expert_bias']
                ly['experts'] = [mlp(f'{p}mlp.experts.{e}.') for e in range(cfg['num_experts'])]
                if cfg.get('num_shared_experts'):
                    ly['shared'] = mlp(p + 'mlp.shared_experts.')
            self.layers.append(ly)
        self.vocab = self.head.shape[0]

    def rms(self, x, w):
        return x * torch.rsqrt(x.pow(2).mean(-1, keepdim=True) + self.eps) * w

    def rope(self, x, pos):
        return rope(x, pos, self.theta, self.rot)

    def route(self, ly, x):
        """x (n, d) -> chosen experts (n, k) and their weights (n, k)."""
        n, E = x.shape[0], ly['router'].shape[0]
        s = torch.sigmoid(x @ ly['router'].T)  # (n, E)
        biased = s + ly['bias']  # for the choice only
        size = E // self.groups
        grouped = biased.view(n, self.groups, size)
        group_score = torch.sort(grouped, dim=-1, descending=True).values[..., :2].sum(-1)  # (n, G) two best
        keep = torch.zeros(n, self.groups, dtype=torch.bool)
        keep.scatter_(1, topk_low(group_score, self.top_groups), True)
        masked = biased.masked_fill(~keep.repeat_interleave(size, dim=1), float('-inf'))
        chosen = topk_low(masked, self.top_k)  # (n, k)
        weights = torch.gather(s, 1, chosen)
        if self.top_k > 1:
            weights = weights / (weights.sum(-1, keepdim=True) + 1e-20)
        return chosen, weights * self.scale

    def ffn(self, ly, x):
        if 'dense' in ly:
            return swiglu(ly['dense'], x)
        chosen, weights = self.route(ly, x)
        return mix_experts(ly, x, chosen, weights)

    def forward(self, ids, pos, ctx=None):
        """Rows for tokens `ids` at absolute positions `pos` (both (n,)), seeing ctx's K/V and each other under the
        block-causal mask. Returns (logits (n, V), fresh [(k, v)] per layer after RoPE)."""
        ids = torch.as_tensor(ids, dtype=torch.long)
        pos = torch.as_tensor(pos, dtype=torch.long)
        n = len(ids)
        x = self.embed[ids]
        fresh = []
        for li, ly in enumerate(self.layers):
            h = self.rms(x, ly['n1'])
            qkv = (h @ ly['qkv'].T + ly.get('qkvb', 0)).view(n, self.h + 2 * self.kv, self.hd)
            q, k, v = qkv[:, :self.h], qkv[:, self.h:self.h + self.kv], qkv[:, self.h + self.kv:]
            if 'qn' in ly:
                q, k = self.rms(q, ly['qn']), self.rms(k, ly['kn'])
            q, k = self.rope(q, pos), self.rope(k, pos)
            fresh.append((k, v))
            att = attend(q, k, v, pos, ctx, li, self.B)  # (n, H * hd)
            x = x + att @ ly['o'].T + ly.get('ob', 0)
            x = x + self.ffn(ly, self.rms(x, ly['n2']))
        return self.rms(x, self.norm_f) @ self.head.T, fresh

    def reported(self, rows, start):
        return rows
