"""PyTorch comparison for bench/cuda/bench.mjs: the same LLaDA-8B-shaped forwards (full, prefix, dual on a
256 + 256 canvas, block 32) with random bf16 weights made on the GPU, and the same floor
(weight bytes / device-to-device copy bandwidth, read + write counted).
UNVERIFIED: written on a machine without a GPU. Run: python3 bench/cuda/torch_bench.py [--iters N]
"""
import argparse
import json
import math

import torch
import torch.nn.functional as F

D, LAYERS, H, HD, FF, V, THETA, EPS = 4096, 32, 32, 128, 12288, 126464, 500000.0, 1e-5
PROMPT, GEN, BLOCK = 256, 256, 32
L = PROMPT + GEN


def rms(x, w):
    x32 = x.float()
    return (x32 * torch.rsqrt(x32.pow(2).mean(-1, keepdim=True) + EPS)).to(x.dtype) * w


def rope(x, pos):  # x (n, heads, hd); NeoX halves
    inv = THETA ** (-torch.arange(0, HD // 2, device=x.device, dtype=torch.float64) * 2 / HD)
    ang = pos.double()[:, None] * inv[None, :]
    cos, sin = ang.cos().float()[:, None, :], ang.sin().float()[:, None, :]
    a, b = x[..., : HD // 2].float(), x[..., HD // 2:].float()
    return torch.cat([a * cos - b * sin, b * cos + a * sin], -1).to(x.dtype)


def attend(q, k, v):  # q (n, H, hd), k/v (L, H, hd)
    q, k, v = q.transpose(0, 1), k.transpose(0, 1), v.transpose(0, 1)
    if hasattr(F, "scaled_dot_product_attention"):
        o = F.scaled_dot_product_attention(q[None], k[None], v[None])[0]
    else:
        o = torch.softmax((q @ k.transpose(1, 2)).float() / math.sqrt(HD), -1).to(q.dtype) @ v
    return o.transpose(0, 1).reshape(-1, H * HD)


def main():
    ap = argparse.ArgumentParser()
    ap.add_argument("--iters", type=int, default=10)
    args = ap.parse_args()
    dev, dt = torch.device("cuda"), torch.bfloat16
    g = torch.Generator(device=dev).manual_seed(1234)

    def rnd(*shape):
        return (torch.rand(*shape, device=dev, generator=g, dtype=torch.float32) * 0.04 - 0.02).to(dt)

    embed = rnd(V, D)
    layers = [dict(an=torch.ones(D, device=dev, dtype=dt), q=rnd(D, D), k=rnd(D, D), v=rnd(D, D), o=rnd(D, D),
                   fn=torch.ones(D, device=dev, dtype=dt), gate=rnd(FF, D), up=rnd(FF, D), down=rnd(D, FF))
              for _ in range(LAYERS)]
    ln_f, head = torch.ones(D, device=dev, dtype=dt), rnd(V, D)
    streamed = sum(t.numel() * 2 for l in layers for t in l.values()) + ln_f.numel() * 2 + head.numel() * 2
    kc = torch.zeros(LAYERS, L, H, HD, device=dev, dtype=dt)
    vc = torch.zeros_like(kc)

    canvas = torch.tensor([(i * 7919) % 126000 if i < PROMPT else 126336 for i in range(L)], device=dev)

    @torch.no_grad()
    def forward(mode, s, e):
        x = embed[canvas[s:e]]
        pos = torch.arange(s, e, device=dev)
        for i, l in enumerate(layers):
            h = rms(x, l["an"])
            q = rope((h @ l["q"].T).view(-1, H, HD), pos)
            k = rope((h @ l["k"].T).view(-1, H, HD), pos)
            v = (h @ l["v"].T).view(-1, H, HD)
            if mode == "prefix":
                ka, va = torch.cat([kc[i, :s], k]), torch.cat([vc[i, :s], v])
            else:  # full and dual write the fresh K/V into the cache
                kc[i, s:e], vc[i, s:e] = k, v
                ka, va = kc[i], vc[i]
            x = x + attend(q, ka, va) @ l["o"].T
            h = rms(x, l["fn"])
            x = x + (F.silu(h @ l["gate"].T) * (h @ l["up"].T)) @ l["down"].T
        rows = rms(x, ln_f)[PROMPT - s: PROMPT - s + BLOCK]
        return torch.argmax((rows @ head.T).float(), -1)

    a = torch.empty(1 << 29, device=dev, dtype=torch.uint8)
    b = torch.empty_like(a)
    b.copy_(a)
    t0, t1 = torch.cuda.Event(enable_timing=True), torch.cuda.Event(enable_timing=True)
    t0.record()
    for _ in range(20):
        b.copy_(a)
    t1.record()
    torch.cuda.synchronize()
    bw = 2 * a.numel() * 20 / (t0.elapsed_time(t1) * 1e-3)
    floor_ms = streamed / bw * 1e3

    steps = {"full": ("full", 0, L), "prefix": ("prefix", PROMPT, L), "dual": ("dual", PROMPT, PROMPT + BLOCK)}
    forward("full", 0, L)
    res = {}
    for name, (mode, s, e) in steps.items():
        forward(mode, s, e)
        times = []
        for _ in range(args.iters):
            t0.record()
            forward(mode, s, e)
            t1.record()
            torch.cuda.synchronize()
            times.append(t0.elapsed_time(t1))
        res[name] = sorted(times)[len(times) // 2]
    print(f"device: {torch.cuda.get_device_name()}; torch {torch.__version__}")
    print(f"weights streamed per forward: {streamed / 1e9:.2f} GB bf16; copy bandwidth {bw / 1e9:.0f} GB/s; floor {floor_ms:.2f} ms")
    for name, ms in res.items():
        print(f"{name:6} median {ms:.2f} ms  ({ms / floor_ms:.2f}x floor)")
    print(json.dumps({"floorMs": floor_ms, "medianMs": res}))


if __name__ == "__main__":
    main()
