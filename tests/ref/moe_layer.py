#!/usr/bin/python3
"""moe_layer.py — a PyTorch reference of `moe layer` (../shared/specs/moe-layer.md), written
from the spec and the routers' reference implementations, independent of the C code.

    moe_layer.py ROUTER --weights W --input X --output OUT [--backward] [--aux-coef A]
                 [--z-coef Z] [router flags as `moe layer`]
        computes in float64 with autograd and writes the same tensors as `moe layer`
        (floats as F64, integers as I64).
    moe_layer.py gen ROUTER --weights W --input X [--T 12 --d 8 --ff 16 --E 4 --shared 0
                 --null 0 --slots 1 --bias --hot E --scale 1.0 --seed 0 --logit-std 1.0]
        writes random weights and inputs (F32) for a test (--hot E: a router bias that sends
        every token to expert E first).
    moe_layer.py batch FILE
        runs each line of FILE (arguments of one of the forms above) in this one process, so
        a test pays for importing torch once.

Discrete decisions (top-k sets, capacity drops, assignments) are taken without gradient;
gradients flow through the weights and probabilities, as the spec says.

The routing rules below are written here, independently of h5's tests/ref/routers.py (two
readings of the spec that must agree with each other and with the C code); only usmoe and
BASE's fairseq auction, which the spec does not define, are taken from routers.py.
"""
import os
import argparse
import json
import math
import struct
import sys

import numpy as np
import torch

torch.set_default_dtype(torch.float64)

# ------------------------------------------------------------------ safetensors (numpy)

DTYPES = {"F64": np.float64, "F32": np.float32, "F16": np.float16, "I64": np.int64, "I32": np.int32,
          "I16": np.int16, "I8": np.int8, "U8": np.uint8}


def st_read(path):
    raw = open(path, "rb").read()
    (n,) = struct.unpack("<Q", raw[:8])
    hdr = json.loads(raw[8:8 + n])
    base = 8 + n
    out = {}
    for name, info in hdr.items():
        if name == "__metadata__":
            continue
        b, e = info["data_offsets"]
        if info["dtype"] == "BF16":
            u = np.frombuffer(raw[base + b:base + e], dtype=np.uint16).astype(np.uint32) << 16
            arr = u.view(np.float32)
        else:
            arr = np.frombuffer(raw[base + b:base + e], dtype=DTYPES[info["dtype"]])
        out[name] = arr.reshape(info["shape"]).copy()
    return out


def st_write(path, tensors):
    hdr, blobs, off = {}, [], 0
    for name, arr in tensors.items():
        arr = np.array(arr, order="C")  # ascontiguousarray would make 0-d arrays 1-d
        dt = {np.dtype(np.float64): "F64", np.dtype(np.float32): "F32", np.dtype(np.int64): "I64"}[arr.dtype]
        b = arr.tobytes()
        hdr[name] = {"dtype": dt, "shape": list(arr.shape), "data_offsets": [off, off + len(b)]}
        blobs.append(b)
        off += len(b)
    h = json.dumps(hdr).encode()
    h += b" " * ((8 - len(h) % 8) % 8)
    with open(path, "wb") as f:
        f.write(struct.pack("<Q", len(h)) + h + b"".join(blobs))


# ------------------------------------------------------------------ helpers

def rank_desc(v):
    """Indices of v sorted by descending value, ties to the lower index (stable sort)."""
    return torch.sort(-v, stable=True).indices


def topk_desc(v, k):
    return rank_desc(v)[:k]


def z_loss_of(logits):
    """ST-MoE eq. 5: mean over tokens of logsumexp(logits)²."""
    return (torch.logsumexp(logits, dim=-1) ** 2).mean()


def swiglu(h, gate, up, down):
    return (torch.nn.functional.silu(h @ gate.T) * (h @ up.T)) @ down.T


def gelu_mlp(h, up, down):
    return torch.nn.functional.gelu(h @ up.T) @ down.T


def capacity_drop(idx, w, C, prio_order):
    """Token-choice capacity: every first choice in priority order, then every second
    choice, ...; an expert keeps at most C. Dropped entries become -1 / weight 0."""
    T, k = idx.shape
    count = {}
    keep = torch.ones(T, k, dtype=torch.bool)
    for j in range(k):
        for t in prio_order:
            e = int(idx[t, j])
            if count.get(e, 0) < C:
                count[e] = count.get(e, 0) + 1
            else:
                keep[t, j] = False
    idx = torch.where(keep, idx, torch.full_like(idx, -1))
    w = torch.where(keep, w, torch.zeros_like(w))
    return idx, w, keep


def _routers():
    sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
    import routers
    return routers


def route(args, logits, E, token_ids, bias):
    """Returns (expert_index [T,k] long, expert_weight [T,k], aux_loss, z_loss)."""
    name = args.router
    T = logits.shape[0] if logits is not None else len(token_ids)
    zero = torch.zeros(())
    if name in ("topk", "switch", "gshard"):
        k = {"topk": args.k or 2, "switch": 1, "gshard": 2}[name]
        cf = args.capacity_factor if args.capacity_factor is not None else (0.0 if name == "topk" else 1.0)
        p = torch.softmax(logits, dim=-1)
        with torch.no_grad():
            idx = torch.stack([topk_desc(p[t], k) for t in range(T)])
        w = p.gather(1, idx)
        if name == "topk" and (args.renorm if args.renorm is not None else True):
            w = w / w.sum(dim=1, keepdim=True)
        # Switch eq. 4-6: E·Σ f_i P_i, f from the top-1 before dropping
        f = torch.bincount(idx[:, 0], minlength=E).to(p.dtype) / T
        aux = E * (f * p.mean(dim=0)).sum()
        if cf > 0:
            C = math.floor(cf * k * math.ceil(T / E))
            if args.priority == "bpr":
                order = [int(t) for t in rank_desc(p.detach().gather(1, idx[:, :1]).squeeze(1))]
            else:
                order = list(range(T))
            idx, w, keep = capacity_drop(idx, w, C, order)
            if name == "gshard":
                # fairseq top2gating: renormalise over the kept choices, denominator ≥ eps
                pk = p.gather(1, idx.clamp(min=0)) * keep
                denom = pk.sum(dim=1, keepdim=True).clamp(min=torch.finfo(torch.float32).eps)
                w = pk / denom
        elif name == "gshard":
            w = w / w.sum(dim=1, keepdim=True)
        return idx, w, aux, z_loss_of(logits)

    if name == "expert-choice":
        cf = args.capacity_factor if args.capacity_factor is not None else 1.0
        mc = args.min_capacity if args.min_capacity is not None else 4
        C = min(max(int(round(cf * T / E)), mc), T)
        p = torch.softmax(logits, dim=-1)
        idx = torch.full((T, E), -1, dtype=torch.long)
        with torch.no_grad():
            for e in range(E):
                for t in topk_desc(p[:, e], C):
                    idx[int(t), e] = e
        w = torch.where(idx >= 0, p, torch.zeros_like(p))
        return idx, w, zero, z_loss_of(logits)

    if name in ("deepseek-v3", "loss-free"):
        k = args.k or 2
        renorm = args.renorm if args.renorm is not None else (name == "deepseek-v3")
        n_group, topk_group = args.n_group or 1, args.topk_group or 1
        route_scale = args.route_scale if args.route_scale is not None else 1.0
        s = torch.sigmoid(logits) if name == "deepseek-v3" else torch.softmax(logits, dim=-1)
        with torch.no_grad():
            key = s + (bias if bias is not None else 0)
            if n_group > 1:
                # DeepSeek-V3 Gate: group score = sum of its top-2 with a bias, else its max
                g = key.view(T, n_group, -1)
                gs = g.topk(2, dim=-1).values.sum(-1) if bias is not None else g.amax(-1)
                masked = torch.full_like(g, -math.inf)
                for t in range(T):
                    for grp in topk_desc(gs[t], topk_group):
                        masked[t, grp] = g[t, grp]
                key = masked.view(T, E)
            idx = torch.stack([topk_desc(key[t], k) for t in range(T)])
        w = s.gather(1, idx)
        if renorm:
            w = w / w.sum(dim=1, keepdim=True)
        w = w * route_scale
        aux = zero
        if name == "deepseek-v3":
            # complementary sequence-wise balance loss, DeepSeek-V3 report eq. 17-20
            with torch.no_grad():
                top = torch.stack([topk_desc(s[t], k) for t in range(T)])
                f = torch.bincount(top.flatten(), minlength=E).to(s.dtype) * E / (k * T)
            P = (s / s.sum(dim=1, keepdim=True)).mean(dim=0)
            aux = (f * P).sum()
        return idx, w, aux, z_loss_of(logits)

    if name == "adamoe":
        k = args.k or 2
        L = logits.shape[1]
        m = L - E
        p = torch.softmax(logits, dim=-1)
        with torch.no_grad():
            ch = torch.stack([topk_desc(p[t], k) for t in range(T)])
        real = ch < E
        pr = p.gather(1, ch) * real
        w = pr / pr.sum(dim=1, keepdim=True).clamp(min=1e-300)
        w = torch.where(real, w, torch.zeros_like(w))
        idx = torch.where(real, ch, torch.full_like(ch, -1))
        c = torch.bincount(ch.flatten(), minlength=L).to(p.dtype)
        if m > 0:
            c[E:] = c[E:].mean()
        f = c / (T * k)
        aux = L * (f * p.mean(dim=0)).sum()
        return idx, w, aux, z_loss_of(logits)

    if name == "usmoe":
        out = _routers().route("usmoe", logits, k=args.k or 2, renorm=args.renorm,
                               alpha=0.5 if args.usmoe_alpha is None else args.usmoe_alpha,
                               beta=0.5 if args.usmoe_beta is None else args.usmoe_beta)
        return out["expert_index"], out["expert_weight"], out["aux_loss"], out["z_loss"]

    if name == "hash":
        if args.hash_map:
            table = [int(l) for l in open(args.hash_map).read().split()]
            idx = torch.tensor([[table[int(i)]] for i in token_ids])
        else:
            idx = torch.tensor([[int(i) % E] for i in token_ids])
        return idx, torch.ones(T, 1), zero, zero

    raise SystemExit(f"moe_layer.py: router {name} is not in the reference")


# ------------------------------------------------------------------ the layer

def layer(args, Wt, Xt):
    gelu = args.act == "gelu"
    x = Xt["x"]
    T, d = x.shape
    E = Wt["experts.up"].shape[0]

    def expert(e, h):
        if gelu:
            return gelu_mlp(h, Wt["experts.up"][e], Wt["experts.down"][e])
        return swiglu(h, Wt["experts.gate"][e], Wt["experts.up"][e], Wt["experts.down"][e])

    rw, rb = Wt.get("router.weight"), Wt.get("router.bias")
    outs = {}
    if args.router == "soft-moe":
        # vmoe SoftRouter: normalize(v) = v·rsqrt(Σv² + 1e-6), logits = scale·⟨x̂, φ̂⟩
        def normalize(v):
            return v * torch.rsqrt((v * v).sum(dim=-1, keepdim=True) + 1e-6)
        scale = Wt["router.scale"].reshape(()) if "router.scale" in Wt else 1.0
        logits = scale * normalize(x) @ normalize(rw).T
        S = rw.shape[0]
        p = S // E
        dispatch = torch.softmax(logits, dim=0)   # over tokens, per slot
        combine = torch.softmax(logits, dim=1)    # over slots, per token
        slots_in = dispatch.T @ x
        slots_out = torch.cat([expert(e, slots_in[e * p:(e + 1) * p]) for e in range(E)])
        y = combine @ slots_out
        aux, z = torch.zeros(()), torch.zeros(())
        outs["dispatch"], outs["combine"] = dispatch, combine
    elif args.router == "base":
        logits = x @ rw.T
        with torch.no_grad():
            assign = args.assign or "balanced"
            if assign == "greedy":
                a = [int(torch.argmax(logits[t])) for t in range(T)]
            elif assign == "balanced":
                cap = math.ceil(T / E)
                # each expert replicated cap times: an exactly optimal balanced assignment
                sc = logits.repeat_interleave(cap, dim=1).tolist()
                a = [c // cap for c in _routers().hungarian_max(sc)]
            else:
                a = [int(v) for v in _routers().base_auction(logits)]  # fairseq libbase
        idx = torch.tensor(a).view(T, 1)
        w = torch.sigmoid(logits.gather(1, idx))
        y = x.clone()
        for e in range(E):
            rows = (idx[:, 0] == e).nonzero().flatten()
            if len(rows):
                y = y.index_add(0, rows, w[rows] * expert(e, x[rows]))
        aux, z = torch.zeros(()), z_loss_of(logits)
        outs["expert_index"], outs["expert_weight"] = idx, w
    else:
        if args.router == "hash":
            logits = None
        else:
            logits = x @ rw.T
            if rb is not None and args.router not in ("deepseek-v3", "loss-free"):
                logits = logits + rb
        sel_bias = rb.detach() if args.router in ("deepseek-v3", "loss-free") and rb is not None else None
        idx, w, aux, z = route(args, logits, E, Xt.get("token_ids"), sel_bias)
        y = torch.zeros_like(x)
        for e in range(E):
            t, j = (idx == e).nonzero(as_tuple=True)
            if len(t):
                y = y.index_add(0, t, w[t, j].unsqueeze(1) * expert(e, x[t]))
        outs["expert_index"], outs["expert_weight"] = idx, w
    if "shared.up" in Wt:
        if gelu:
            y = y + gelu_mlp(x, Wt["shared.up"], Wt["shared.down"])
        else:
            y = y + swiglu(x, Wt["shared.gate"], Wt["shared.up"], Wt["shared.down"])
    return y, outs, aux, z


def run(args):
    W = st_read(args.weights)
    X = st_read(args.input)
    Wt = {k: torch.tensor(v.astype(np.float64), requires_grad=True) for k, v in W.items()}
    Xt = {"x": torch.tensor(X["x"].astype(np.float64), requires_grad=True)}
    if "token_ids" in X:
        Xt["token_ids"] = X["token_ids"].astype(np.int64)
    y, outs, aux, z = layer(args, Wt, Xt)
    res = {"y": y}
    res.update(outs)
    res["aux_loss"], res["z_loss"] = aux, z
    if args.backward:
        dy = torch.tensor(X["dy"].astype(np.float64))
        L = (y * dy).sum() + args.aux_coef * aux + args.z_coef * z
        params = [Xt["x"]] + list(Wt.values())
        grads = torch.autograd.grad(L, params, allow_unused=True)
        res["dx"] = grads[0]
        for (name, t), g in zip(Wt.items(), grads[1:]):
            res["d." + name] = g if g is not None else torch.zeros_like(t)
    out = {}
    for k, v in res.items():
        v = v.detach() if torch.is_tensor(v) else torch.tensor(v)
        out[k] = v.numpy().astype(np.int64 if k == "expert_index" else np.float64)
    st_write(args.output, out)


# ------------------------------------------------------------------ random inputs

def gen(a):
    rng = np.random.default_rng(a.seed)
    T, d, ff, E = a.T, a.d, a.ff, a.E
    rows = E * a.slots + a.null
    W = {"router.weight": rng.standard_normal((rows, d)) * a.logit_std / math.sqrt(d)}
    if a.bias or a.hot >= 0:
        W["router.bias"] = rng.standard_normal(rows) * 0.3
    if a.hot >= 0:
        W["router.bias"][a.hot] += 8.0
    if a.router == "soft-moe" and a.scale is not None:
        W["router.scale"] = np.array(a.scale)
    if a.act != "gelu":
        W["experts.gate"] = rng.standard_normal((E, ff, d)) / math.sqrt(d)
    W["experts.up"] = rng.standard_normal((E, ff, d)) / math.sqrt(d)
    W["experts.down"] = rng.standard_normal((E, d, ff)) / math.sqrt(ff)
    if a.shared:
        if a.act != "gelu":
            W["shared.gate"] = rng.standard_normal((a.shared, d)) / math.sqrt(d)
        W["shared.up"] = rng.standard_normal((a.shared, d)) / math.sqrt(d)
        W["shared.down"] = rng.standard_normal((d, a.shared)) / math.sqrt(a.shared)
    X = {"x": rng.standard_normal((T, d)), "dy": rng.standard_normal((T, d))}
    if a.router == "hash":
        X["token_ids"] = rng.integers(0, 50, T).astype(np.int64)
    st_write(a.weights, {k: v.astype(np.float32) for k, v in W.items()})
    st_write(a.input, {k: (v if v.dtype == np.int64 else v.astype(np.float32)) for k, v in X.items()})


def main(argv):
    if argv and argv[0] == "batch":
        import shlex
        for line in open(argv[1]):
            if line.strip():
                main(shlex.split(line))
        return
    if argv and argv[0] == "gen":
        ap = argparse.ArgumentParser(prog="moe_layer.py gen")
        ap.add_argument("router")
        ap.add_argument("--weights", required=True)
        ap.add_argument("--input", required=True)
        for n, dv in (("--T", 12), ("--d", 8), ("--ff", 16), ("--E", 4), ("--shared", 0), ("--null", 0),
                      ("--slots", 1), ("--seed", 0)):
            ap.add_argument(n, type=int, default=dv)
        ap.add_argument("--bias", action="store_true")
        ap.add_argument("--hot", type=int, default=-1)
        ap.add_argument("--scale", type=float, default=None)
        ap.add_argument("--logit-std", type=float, default=1.0)
        ap.add_argument("--act", default="swiglu")
        gen(ap.parse_args(argv[1:]))
        return
    ap = argparse.ArgumentParser(prog="moe_layer.py")
    ap.add_argument("router")
    ap.add_argument("--weights", "-w", required=True)
    ap.add_argument("--input", "-i", required=True)
    ap.add_argument("--output", "-o", required=True)
    ap.add_argument("--backward", action="store_true")
    ap.add_argument("--aux-coef", type=float, default=0.0)
    ap.add_argument("--z-coef", type=float, default=0.0)
    ap.add_argument("--k", type=int, default=0)
    ap.add_argument("--renorm", dest="renorm", action="store_true", default=None)
    ap.add_argument("--no-renorm", dest="renorm", action="store_false")
    ap.add_argument("--capacity-factor", type=float, default=None)
    ap.add_argument("--min-capacity", type=int, default=None)
    ap.add_argument("--n-group", type=int, default=0)
    ap.add_argument("--topk-group", type=int, default=0)
    ap.add_argument("--route-scale", type=float, default=None)
    ap.add_argument("--assign", default=None)
    ap.add_argument("--priority", default="token")
    ap.add_argument("--hash-map", default=None)
    ap.add_argument("--act", default="swiglu")
    ap.add_argument("--usmoe-alpha", type=float, default=None)
    ap.add_argument("--usmoe-beta", type=float, default=None)
    ap.add_argument("-t", "--threads", type=int, default=1)
    run(ap.parse_args(argv))


if __name__ == "__main__":
    main(sys.argv[1:])
