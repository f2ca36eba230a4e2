"""PyTorch comparison for bench/cuda/bench.mjs: the same LLaDA-8B-shaped forwards (full, prefix, dual; prompt = half
the canvas, block 32 after it; canvases 512 and 2048 by default) with random bf16 weights and a bf16 K/V cache made
on the device, and the same floors: the bytes a step must read (weights but the embedding, plus the K/V a cached
step attends to) over the device-to-device copy bandwidth (read + write counted), measured in the same run.
Run on a GPU machine: python3 bench/cuda/torch_bench.py [--iters N] [--canvas 512,2048] [--out torch.json]
(bench/cuda/device-run.sh does). `--miniature --device cpu` runs a 2-layer miniature on the CPU: a check of the
script on a machine without a GPU; its times mean nothing.
"""
import argparse
import json
import math
import time
from datetime import datetime, timezone

import torch
import torch.nn.functional as F

LLADA_8B = dict(D=4096, LAYERS=32, H=32, HD=128, FF=12288, V=126464, THETA=500000.0, EPS=1e-5, MASK=126336, BLOCK=32)
MINIATURE = dict(D=128, LAYERS=2, H=4, HD=32, FF=256, V=512, THETA=500000.0, EPS=1e-5, MASK=500, BLOCK=16)


def main():
    ap = argparse.ArgumentParser()
    ap.add_argument("--iters", type=int, default=10)
    ap.add_argument("--canvas", default=None, help="comma-separated canvas lengths (default 512,2048; miniature 64,128)")
    ap.add_argument("--miniature", action="store_true")
    ap.add_argument("--device", default="cuda")
    ap.add_argument("--out")
    args = ap.parse_args()
    if args.iters < 1:
        raise SystemExit(f"torch_bench: --iters must be a positive integer, got {args.iters}")
    S = MINIATURE if args.miniature else LLADA_8B
    D, LAYERS, H, HD, FF, V, BLOCK = S["D"], S["LAYERS"], S["H"], S["HD"], S["FF"], S["V"], S["BLOCK"]
    canvases = [int(x) for x in (args.canvas or ("64,128" if args.miniature else "512,2048")).split(",")]
    if args.device == "cuda" and not torch.cuda.is_available():
        raise SystemExit(f"torch_bench: torch {torch.__version__} sees no CUDA device")
    dev, dt = torch.device(args.device), torch.bfloat16
    cuda = dev.type == "cuda"
    g = torch.Generator(device=dev).manual_seed(1234)

    def rnd(*shape):
        return (torch.rand(*shape, device=dev, generator=g, dtype=torch.float32) * 0.04 - 0.02).to(dt)

    embed = rnd(V, D)
    layers = [dict(an=torch.ones(D, device=dev, dtype=dt), q=rnd(D, D), k=rnd(D, D), v=rnd(D, D), o=rnd(D, D),
                   fn=torch.ones(D, device=dev, dtype=dt), gate=rnd(FF, D), up=rnd(FF, D), down=rnd(D, FF))
              for _ in range(LAYERS)]
    ln_f, head = torch.ones(D, device=dev, dtype=dt), rnd(V, D)
    streamed = sum(t.numel() * 2 for l in layers for t in l.values()) + ln_f.numel() * 2 + head.numel() * 2

    def kv_bytes(n):  # bf16 K and V of n keys over all layers
        return 2 * LAYERS * n * H * HD * 2

    def rms(x, w):
        x32 = x.float()
        return (x32 * torch.rsqrt(x32.pow(2).mean(-1, keepdim=True) + S["EPS"])).to(x.dtype) * w

    def rope(x, pos):  # x (n, heads, hd); NeoX halves
        inv = S["THETA"] ** (-torch.arange(0, HD // 2, device=x.device, dtype=torch.float64) * 2 / HD)
        ang = pos.double()[:, None] * inv[None, :]
        cos, sin = ang.cos().float()[:, None, :], ang.sin().float()[:, None, :]
        a, b = x[..., : HD // 2].float(), x[..., HD // 2:].float()
        return torch.cat([a * cos - b * sin, b * cos + a * sin], -1).to(x.dtype)

    def attend(q, k, v):  # q (n, H, hd), k/v (L, H, hd)
        q, k, v = q.transpose(0, 1), k.transpose(0, 1), v.transpose(0, 1)
        if hasattr(F, "scaled_dot_product_attention"):  # torch >= 2.0: fused (flash) attention
            o = F.scaled_dot_product_attention(q[None], k[None], v[None])[0]
        else:
            o = torch.softmax((q @ k.transpose(1, 2)).float() / math.sqrt(HD), -1).to(q.dtype) @ v
        return o.transpose(0, 1).reshape(-1, H * HD)

    def clock():
        if cuda:
            e = torch.cuda.Event(enable_timing=True)
            e.record()
            return e
        return time.perf_counter()

    def elapsed_ms(t0, t1):
        if cuda:
            torch.cuda.synchronize()
            return t0.elapsed_time(t1)
        return (t1 - t0) * 1e3

    a = torch.empty(1 << (29 if not args.miniature else 24), device=dev, dtype=torch.uint8)
    b = torch.empty_like(a)
    b.copy_(a)
    t0 = clock()
    for _ in range(20):
        b.copy_(a)
    t1 = clock()
    bw = 2 * a.numel() * 20 / (elapsed_ms(t0, t1) * 1e-3)
    del a, b

    def floor_ms(nbytes):
        return nbytes / bw * 1e3

    results = []
    for L in canvases:
        prompt = L // 2
        kc = torch.zeros(LAYERS, L, H, HD, device=dev, dtype=dt)
        vc = torch.zeros_like(kc)
        canvas = torch.tensor([(i * 7919) % (V - 16) if i < prompt else S["MASK"] for i in range(L)], device=dev)

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
            rows = rms(x, ln_f)[prompt - s: prompt - s + BLOCK]
            return torch.argmax((rows @ head.T).float(), -1)

        steps = {"full": ("full", 0, L, streamed), "prefix": ("prefix", prompt, L, streamed + kv_bytes(prompt)),
                 "dual": ("dual", prompt, prompt + BLOCK, streamed + kv_bytes(L))}
        forward("full", 0, L)
        for name, (mode, s, e, nbytes) in steps.items():
            forward(mode, s, e)
            times = []
            for _ in range(args.iters):
                t0 = clock()
                forward(mode, s, e)
                t1 = clock()
                times.append(elapsed_ms(t0, t1))
            ms = sorted(times)[len(times) // 2]
            r = dict(canvas=L, prompt=prompt, block=BLOCK, step=name, medianMs=ms, floorMs=floor_ms(nbytes),
                     weightFloorMs=floor_ms(streamed))
            results.append(r)
            print(f"canvas {L:4} {name:6} median {ms:.2f} ms  floor {r['floorMs']:.2f} ms "
                  f"({ms / r['floorMs']:.2f}x; weights alone {r['weightFloorMs']:.2f} ms)", flush=True)
        del kc, vc

    name = torch.cuda.get_device_name() if cuda else "cpu"
    print(f"device: {name}; torch {torch.__version__}; weights streamed per forward: {streamed / 1e9:.2f} GB bf16; "
          f"copy bandwidth {bw / 1e9:.0f} GB/s")
    record = dict(date=datetime.now(timezone.utc).isoformat(), device=name, torch=torch.__version__,
                  shape="miniature (script check)" if args.miniature else "LLaDA-8B, random bf16 weights, bf16 K/V",
                  iters=args.iters, streamedBytes=streamed, bandwidthBps=bw, results=results)
    print(json.dumps(record))
    if args.out:
        with open(args.out, "w") as f:
            f.write(json.dumps(record, indent=2) + "\n")


if __name__ == "__main__":
    main()
