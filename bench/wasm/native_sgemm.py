# Native baselines for bench/wasm/bench.mjs (run with /usr/bin/python3: Debian torch + OpenBLAS).
# argv[1]: JSON {"shapes": [[n, in, out], ...], "threads": [1, 2], "model": {...} | null}
# Prints JSON: sgemm GFLOP/s per shape and thread count, and the PyTorch CPU full-forward time of an
# LLaDA-shaped random model (hand-written attention and RMSNorm: torch 1.13 has neither built in).
import json, sys, time
import torch

cfg = json.loads(sys.argv[1])
out = {"torch": torch.__version__, "sgemm": [], "forward": []}

def best(fn, reps):
    fn()
    t = []
    for _ in range(reps):
        s = time.perf_counter(); fn(); t.append(time.perf_counter() - s)
    return min(t)

for th in cfg["threads"]:
    torch.set_num_threads(th)
    for n, k, m in cfg["shapes"]:
        x = torch.randn(n, k); w = torch.randn(m, k)
        sec = best(lambda: torch.mm(x, w.t()), 5)
        out["sgemm"].append({"n": n, "in": k, "out": m, "threads": th, "gflops": 2 * n * k * m / sec / 1e9})

mc = cfg.get("model")
if mc:
    d, Lyr, H, ff, V, L = mc["d"], mc["layers"], mc["heads"], mc["ff"], mc["vocab"], mc["L"]
    hd = d // H
    g = torch.Generator().manual_seed(0)
    W = [{k: torch.randn(*s, generator=g) * 0.02 for k, s in
          dict(q=(d, d), k=(d, d), v=(d, d), o=(d, d), gate=(ff, d), up=(ff, d), down=(d, ff)).items()} for _ in range(Lyr)]
    emb = torch.randn(V, d, generator=g) * 0.02
    head = torch.randn(V, d, generator=g) * 0.02
    pos = torch.arange(L, dtype=torch.float64)
    inv = 10000.0 ** (-torch.arange(0, hd, 2, dtype=torch.float64) / hd)
    ang = pos[:, None] * inv[None, :]
    cos, sin = torch.cos(ang).float(), torch.sin(ang).float()
    def rms(x): return x * torch.rsqrt(x.pow(2).mean(-1, keepdim=True) + 1e-5)
    def rope(x):
        a, b = x[..., : hd // 2], x[..., hd // 2:]
        return torch.cat([a * cos[:, None] - b * sin[:, None], b * cos[:, None] + a * sin[:, None]], -1)
    tokens = torch.randint(0, V, (L,), generator=g)
    def fwd():
        with torch.no_grad():
            x = emb[tokens]
            for w in W:
                h = rms(x)
                q = rope((h @ w["q"].t()).view(L, H, hd)).transpose(0, 1)
                k = rope((h @ w["k"].t()).view(L, H, hd)).transpose(0, 1)
                v = (h @ w["v"].t()).view(L, H, hd).transpose(0, 1)
                a = torch.softmax(q @ k.transpose(1, 2) / hd ** 0.5, -1) @ v
                x = x + a.transpose(0, 1).reshape(L, d) @ w["o"].t()
                h = rms(x)
                x = x + (torch.nn.functional.silu(h @ w["gate"].t()) * (h @ w["up"].t())) @ w["down"].t()
            return rms(x)[mc["P"]:] @ head.t()
    for th in cfg["threads"]:
        torch.set_num_threads(th)
        out["forward"].append({"threads": th, "fullForwardMs": best(fwd, 4) * 1e3})
print(json.dumps(out))
