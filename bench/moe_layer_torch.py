#!/usr/bin/python3
"""moe_layer_torch.py — the PyTorch baseline of bench/moe_layer: the same MoE layer (top-k
softmax router with renormalisation, SwiGLU experts) written the usual way in PyTorch 1.13
(a Python loop over experts with index_add_, as in Mixtral's Hugging Face and fairseq's
reference code), forward + backward, float32 on the CPU. Prints one line with tokens/s=N.

    bench/moe_layer_torch.py [--T 2048] [--d 512] [--ff 1024] [--E 8] [--k 2] [-t 2] [-n 3]
                             [--layout per-expert|stacked] [--serve]

--layout per-expert (default, the stronger baseline): one weight tensor per expert, as
Mixtral's Hugging Face code (nn.ModuleList of experts). --layout stacked: the experts'
weights as one [E, ff, d] tensor, as `moe layer`'s files hold them, sliced with gate[e];
autograd then writes a full-size [E, ff, d] gradient for every expert, which makes the
backward several times slower.

With --serve (used by bench/moe_layer) it warms up, prints "ready", then runs one step for
each "step" line on stdin and answers with its time in seconds, so that the C benchmark
can interleave PyTorch's steps with its own on a shared machine.
"""
import sys
import argparse
import time

import torch
import torch.nn.functional as F


def main():
    ap = argparse.ArgumentParser()
    ap.add_argument("--T", type=int, default=2048)
    ap.add_argument("--d", type=int, default=512)
    ap.add_argument("--ff", type=int, default=1024)
    ap.add_argument("--E", type=int, default=8)
    ap.add_argument("--k", type=int, default=2)
    ap.add_argument("-t", "--threads", type=int, default=2)
    ap.add_argument("-n", "--iters", type=int, default=3)
    ap.add_argument("--serve", action="store_true")
    ap.add_argument("--layout", choices=("per-expert", "stacked"), default="per-expert")
    a = ap.parse_args()
    torch.set_num_threads(a.threads)
    torch.manual_seed(0)
    T, d, ff, E, k = a.T, a.d, a.ff, a.E, a.k
    router = torch.nn.Parameter(torch.randn(E, d) * 0.05)
    x = torch.randn(T, d, requires_grad=True)
    dy = torch.randn(T, d)
    if a.layout == "per-expert":
        gate = [torch.nn.Parameter(torch.randn(ff, d) * 0.04) for _ in range(E)]
        up = [torch.nn.Parameter(torch.randn(ff, d) * 0.04) for _ in range(E)]
        down = [torch.nn.Parameter(torch.randn(d, ff) * 0.03) for _ in range(E)]
        params = [router, x] + gate + up + down
    else:
        gate = torch.nn.Parameter(torch.randn(E, ff, d) * 0.04)
        up = torch.nn.Parameter(torch.randn(E, ff, d) * 0.04)
        down = torch.nn.Parameter(torch.randn(E, d, ff) * 0.03)
        params = [router, x, gate, up, down]

    def layer(x):
        logits = x @ router.T
        p = torch.softmax(logits, dim=-1)
        w, idx = torch.topk(p, k, dim=-1)
        w = w / w.sum(dim=-1, keepdim=True)
        aux = E * (torch.bincount(idx[:, 0], minlength=E).float() / T * p.mean(0)).sum()
        z = (torch.logsumexp(logits, -1) ** 2).mean()
        y = torch.zeros_like(x)
        for e in range(E):
            tok, j = torch.where(idx == e)
            if tok.numel() == 0:
                continue
            h = x[tok]
            o = (F.silu(h @ gate[e].T) * (h @ up[e].T)) @ down[e].T
            y.index_add_(0, tok, o * w[tok, j, None])
        return y, aux, z

    def step():
        for prm in params:
            prm.grad = None
        t0 = time.perf_counter()
        y, aux, z = layer(x)
        ((y * dy).sum() + 0.01 * aux + 0.001 * z).backward()
        return time.perf_counter() - t0

    step()  # warm-up
    if a.serve:
        print(f"ready torch {torch.__version__}, {a.threads} threads, {a.layout} weights", flush=True)
        for line in sys.stdin:
            if line.strip() != "step":
                break
            print(f"{step():.6f}", flush=True)
        return
    times = sorted(step() for _ in range(a.iters))
    med = times[len(times) // 2]
    print(f"torch {torch.__version__}, {a.threads} threads, {a.layout} weights: {med * 1e3:.1f} ms per forward+backward, "
          f"tokens/s={T / med:.0f}")


if __name__ == "__main__":
    main()
