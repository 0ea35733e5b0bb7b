#!/usr/bin/python3
"""routers.py — a small PyTorch reference of every routing rule of moe.c, written from the
papers and the public reference code (fairseq top1gate/top2gate and libbase, flaxformer
expert choice, vmoe soft MoE, DeepSeek-V3 Gate, AdaMoE, ParlAI hash layer, USMoE), NOT from
the C code. tests/test_router.c compares the C routers' forward outputs and gradients with
it; h6's full-layer reference imports it.

    import routers
    out = routers.route("gshard", logits, capacity_factor=1.0)
    out["expert_index"], out["expert_weight"], out["aux_loss"], out["z_loss"]

The spec is ../../../shared/specs/moe-layer.md (router names, flags, defaults, capacity and
tie rules, losses). Ties rank the lower index first (the lower token for expert choice):
every top-k below is a stable descending sort.

Command line (used by tests/test_router_ref.c): routers.py DIR... runs one case per folder:
DIR/args.txt holds the flags (--router NAME --T --L --E ...), DIR/logits.bin float64 [T, L],
DIR/dw.bin float64 [T, k] (optional), DIR/dd.bin, DIR/dc.bin (soft-moe, optional),
DIR/bias.bin float32 [E], DIR/ids.bin and DIR/hashmap.bin int32 (hash); it writes
DIR/ref_expert.bin (int64), ref_weight.bin / ref_dispatch.bin / ref_combine.bin and
ref_dlogits.bin (float64, the autograd gradient of sum(dw*w) + A*aux + Z*z) and
ref_scalars.txt ("aux z"). One process for all cases: importing torch is the slow part.
"""
import argparse
import math
import os
import sys

import torch
import torch.nn.functional as F


def topk_stable(x, k, dim=-1):
    """torch.topk with ties to the lower index (torch.topk leaves tie order unspecified)."""
    v, i = torch.sort(x, dim=dim, descending=True, stable=True)
    return v.narrow(dim, 0, k), i.narrow(dim, 0, k)


def z_loss(logits):
    """ST-MoE (Zoph et al. 2022) eq. 5 / flaxformer _router_z_loss: mean_t logsumexp(x_t)^2."""
    return (torch.logsumexp(logits, dim=-1) ** 2).mean()


def switch_aux(probs, top1, E):
    """Switch eq. 4-6, fairseq: l_aux = mean(me * ce) * E * E."""
    me = probs.mean(0)
    ce = F.one_hot(top1, E).to(probs.dtype).mean(0)
    return (me * ce).mean() * E * E


def capacity_keep(idx, C, E, priority_scores=None):
    """fairseq location logic: every first choice in token (or priority) order, then every
    second choice, ...; keep[t, j] = the j-th choice of token t got a slot (< C)."""
    T, k = idx.shape
    order = torch.arange(T)
    if priority_scores is not None:  # BPR: argsort of -max prob (stable: lower token first)
        order = torch.sort(-priority_scores, stable=True)[1]
    keep = torch.zeros(T, k, dtype=torch.bool)
    used = torch.zeros(E, dtype=torch.long)
    for j in range(k):
        mask = F.one_hot(idx[order, j], E)           # in priority order
        loc = torch.cumsum(mask, 0) - 1 + used               # fused_cumsum_sub_one + offset
        loc = (loc * mask).sum(1)
        keep[order, j] = loc < C
        used += mask.sum(0)
    return keep


def token_capacity(cf, k, T, E):
    """spec: floor(cf * k * ceil(T/E)); <= 0 disables dropping."""
    if cf is None or cf <= 0:
        return None
    return int(math.floor(cf * k * math.ceil(T / E)))


def route_token_choice(logits, k, renorm, cf, priority, kind):
    T, E = logits.shape
    probs = F.softmax(logits, dim=-1)
    if kind == "gshard":
        # fairseq top2gating, second_expert_policy != "sampling": argmax, then argmax of
        # the logits with the first masked out
        i1 = topk_stable(probs, 1)[1]
        masked = logits.masked_fill(F.one_hot(i1[:, 0], E).bool(), float("-inf"))
        i2 = topk_stable(masked, 1)[1]
        idx = torch.cat([i1, i2], 1)
        w = probs.gather(1, idx)
    else:
        w, idx = topk_stable(probs, k)
        if renorm and kind == "topk":
            w = w / w.sum(-1, keepdim=True)
    aux = switch_aux(probs, idx[:, 0], E)
    C = token_capacity(cf, idx.shape[1], T, E)
    keep = torch.ones_like(idx, dtype=torch.bool)
    if C is not None:
        keep = capacity_keep(idx, C, E, probs.max(1)[0] if priority == "bpr" else None)
    w = w * keep
    if kind == "gshard":
        denom = torch.clamp(w.sum(1, keepdim=True), min=torch.finfo(w.dtype).eps)
        w = w / denom
    index = torch.where(keep, idx, torch.full_like(idx, -1))
    return dict(expert_index=index, expert_weight=w, aux_loss=aux, z_loss=z_loss(logits))


def expert_choice_capacity(cf, T, E, min_capacity):
    """flaxformer moe_layers.py: max(int(round(cf * tokens_per_group / E)), min) (capped at T)."""
    return min(max(int(round(cf * T / E)), min_capacity), T)


def route_expert_choice(logits, cf, min_capacity):
    """flaxformer ExpertsChooseMaskedRouter: lax.top_k over tokens of softmax(logits)^T."""
    T, E = logits.shape
    probs = F.softmax(logits, dim=-1)
    C = expert_choice_capacity(cf, T, E, min_capacity)
    gate, tok = topk_stable(probs.t(), C, dim=1)              # [E, C]
    taken = torch.zeros(T, E, dtype=torch.bool)
    for e in range(E):
        taken[tok[e], e] = True
    index = torch.where(taken, torch.arange(E).expand(T, E), torch.full((T, E), -1))
    return dict(expert_index=index, expert_weight=probs * taken, aux_loss=torch.zeros(()),
                z_loss=z_loss(logits))


def route_soft_moe(logits):
    """vmoe soft_router.py: dispatch = softmax over tokens (axis 1 of [G, M, N, P]),
    combine = softmax over all slots of a token."""
    return dict(dispatch=F.softmax(logits, dim=0), combine=F.softmax(logits, dim=1),
                aux_loss=torch.zeros(()), z_loss=torch.zeros(()))


def hungarian_max(score):
    """Exact max-weight assignment of rows to columns (rows <= cols), the classic
    O(n^2 m) potentials algorithm; small problems only."""
    n, m = len(score), len(score[0])
    INF = float("inf")
    u, v, p, way = [0.0] * (n + 1), [0.0] * (m + 1), [0] * (m + 1), [0] * (m + 1)
    for i in range(1, n + 1):
        p[0], j0 = i, 0
        minv, used = [INF] * (m + 1), [False] * (m + 1)
        while True:
            used[j0] = True
            i0, delta, j1 = p[j0], INF, -1
            for j in range(1, m + 1):
                if not used[j]:
                    cur = -score[i0 - 1][j - 1] - u[i0] - v[j]
                    if cur < minv[j]:
                        minv[j], way[j] = cur, j0
                    if minv[j] < delta:
                        delta, j1 = minv[j], j
            for j in range(m + 1):
                if used[j]:
                    u[p[j]] += delta
                    v[j] -= delta
                else:
                    minv[j] -= delta
            j0 = j1
            if p[j0] == 0:
                break
        while True:
            j1 = way[j0]
            p[j0] = p[j1]
            j0 = j1
            if j0 == 0:
                break
    col = [0] * n
    for j in range(1, m + 1):
        if p[j]:
            col[p[j] - 1] = j - 1
    return col


def base_balanced(scores):
    """BASE (Lewis et al. 2021) §2.2: each expert gets at most ceil(T/E) tokens, total score
    maximal. Solved exactly as an assignment of T tokens to E*ceil(T/E) expert slots."""
    T, E = scores.shape
    C = (T + E - 1) // E
    s = scores.tolist()
    slots = [[s[t][e] for e in range(E) for _ in range(C)] for t in range(T)]
    return torch.tensor([c // C for c in hungarian_max(slots)])


def base_auction(scores):
    """fairseq/clib/libbase/balanced_assignment.cpp, in torch (jobs = tokens, workers =
    experts), with ceil(T/E) jobs per worker and a token going to its highest bidder."""
    T, E = scores.shape
    eps = torch.clamp((scores.max() - scores.min()) / 50, min=1e-4)
    w2j = scores.detach().t().contiguous()
    jpw = (T + E - 1) // E
    value, cost, max_value = w2j.clone(), torch.zeros(1, T, dtype=w2j.dtype), w2j.max()
    bid_indices, counter = None, 0
    while True:
        bids = torch.zeros(E, T, dtype=w2j.dtype)
        tv, ti = topk_stable(value, min(jpw + 1, T), dim=1)
        kth = tv[:, jpw] if jpw < T else tv[:, -1]
        inc = tv[:, :jpw] - kth.unsqueeze(1) + eps
        bids.scatter_(1, ti[:, :jpw], inc)
        if 0 < counter < 100:
            bids.view(-1)[bid_indices] = eps
        high_bids, high_bidders = bids.max(0)
        have = high_bids > 0
        if bool(have.all()):
            return high_bidders
        cost += high_bids
        value = w2j - cost
        bid_indices = (high_bidders * T + torch.arange(T))[have]
        if counter < 100:
            value.view(-1)[bid_indices] = max_value
        else:
            value.view(-1)[bid_indices] = w2j.view(-1)[bid_indices]
        counter += 1


def route_base(logits, assign):
    """fairseq base_layer.py: training = balanced assignment, inference = argmax;
    y = x + sigmoid(x . c_e) f_e(x): the weight is that sigmoid."""
    with torch.no_grad():
        if assign == "greedy":
            a = topk_stable(logits, 1)[1][:, 0]
        elif assign == "auction":
            a = base_auction(logits)
        else:
            a = base_balanced(logits)
    w = torch.sigmoid(logits.gather(1, a.unsqueeze(1)))
    return dict(expert_index=a.unsqueeze(1), expert_weight=w, aux_loss=torch.zeros(()), z_loss=z_loss(logits))


def route_deepseek(logits, k, renorm, n_group, topk_group, route_scale, bias, score_func):
    """DeepSeek-V3 inference/model.py Gate.forward (renorm as a flag; the Gate renormalises
    only sigmoid scores) and the complementary sequence-wise balance loss (report eq. 17-20)."""
    T, E = logits.shape
    scores = torch.sigmoid(logits) if score_func == "sigmoid" else F.softmax(logits, dim=-1)
    original_scores = scores
    sel = scores.detach()
    if bias is not None:
        sel = sel + bias
    if n_group > 1 and topk_group < n_group:
        sel = sel.view(T, n_group, -1)
        if bias is None:
            group_scores = sel.amax(dim=-1)
        else:
            group_scores = topk_stable(sel, 2)[0].sum(dim=-1) if sel.shape[-1] > 1 else sel[..., 0]
        indices = topk_stable(group_scores, topk_group)[1]
        mask = torch.ones(T, n_group, dtype=torch.bool).scatter_(1, indices, False)
        sel = sel.masked_fill(mask.unsqueeze(-1), float("-inf")).flatten(1)
    indices = topk_stable(sel, k)[1]
    weights = original_scores.gather(1, indices)
    if renorm:
        weights = weights / weights.sum(dim=-1, keepdim=True)
    weights = weights * route_scale
    aux = torch.zeros((), dtype=logits.dtype)
    if score_func == "sigmoid":
        top = topk_stable(scores.detach(), k)[1]
        f = F.one_hot(top, E).sum((0, 1)).to(logits.dtype) * E / (k * T)
        P = (scores / scores.sum(-1, keepdim=True)).mean(0)
        aux = (f * P).sum()
    return dict(expert_index=indices, expert_weight=weights, aux_loss=aux, z_loss=z_loss(logits))


def route_adamoe(logits, k, E):
    """AdaMoE adaptive_moe_utils.py (CustomMixtralSparseMoeBlock): softmax over E+m, top-k,
    weights of the true experts renormalised among themselves (sum 0 -> 1). Balance loss:
    the spec's reading of load_balancing_loss_func_with_null_experts (null counts averaged,
    f_i = c_i / (T k))."""
    T, L = logits.shape
    m = L - E
    probs = F.softmax(logits, dim=-1)
    w, idx = topk_stable(probs, k)
    real = idx < E
    sw = (w * real).sum(-1, keepdim=True)
    sw = torch.where(sw == 0, torch.ones_like(sw), sw)
    w = w * real / sw
    c = F.one_hot(idx, L).sum((0, 1)).to(logits.dtype)
    if m > 0:
        c = torch.cat([c[:E], c[E:].mean().expand(m)])
    f = c / (T * k)
    aux = L * (f * probs.mean(0)).sum()
    index = torch.where(real, idx, torch.full_like(idx, -1))
    return dict(expert_index=index, expert_weight=w, aux_loss=aux, z_loss=z_loss(logits))


def route_hash(token_ids, E, hash_map=None):
    """Hash layers (Roller et al. 2021), ParlAI: a fixed token-id -> expert table."""
    e = hash_map[token_ids] if hash_map is not None else token_ids % E
    T = token_ids.shape[0]
    return dict(expert_index=e.view(T, 1).long(), expert_weight=torch.ones(T, 1, dtype=torch.float64),
                aux_loss=torch.zeros(()), z_loss=torch.zeros(()))


def route_usmoe(logits, k, alpha, beta, renorm):
    """USMoE authors' code (Training_Free, OlmoeSparseMoeBlock.forward): unified score
    (1-rate)*softmax + rate*sigmoid*2/E, the top T*k of the flattened [T, E] scores, weight
    = the unified score (norm_topk_prob: divided by its sum over all experts)."""
    T, E = logits.shape
    u = alpha * F.softmax(logits, dim=1) + beta * torch.sigmoid(logits) * 2.0 / E
    n = T * min(k, E)
    _, flat = topk_stable(u.detach().reshape(-1), n)
    chosen = torch.zeros(T * E, dtype=torch.bool)
    chosen[flat] = True
    chosen = chosen.view(T, E)
    w = u / u.sum(-1, keepdim=True) if renorm else u
    index = torch.where(chosen, torch.arange(E).expand(T, E), torch.full((T, E), -1))
    return dict(expert_index=index, expert_weight=w * chosen, aux_loss=torch.zeros(()), z_loss=z_loss(logits))


def route(name, logits, *, k=None, renorm=None, capacity_factor=None, priority="token",
          min_capacity=4, n_group=1, topk_group=1, route_scale=1.0, bias=None, n_expert=None,
          assign="balanced", token_ids=None, hash_map=None, alpha=0.5, beta=0.5):
    """One routing rule on logits [T, L] (float64 recommended). Defaults are the spec's."""
    if name == "topk":
        return route_token_choice(logits, k or 2, True if renorm is None else renorm,
                                  capacity_factor or 0.0, priority, "topk")
    if name == "switch":
        return route_token_choice(logits, 1, False, 1.0 if capacity_factor is None else capacity_factor,
                                  priority, "switch")
    if name == "gshard":
        return route_token_choice(logits, 2, False, 1.0 if capacity_factor is None else capacity_factor,
                                  priority, "gshard")
    if name == "expert-choice":
        return route_expert_choice(logits, 1.0 if capacity_factor is None else capacity_factor, min_capacity)
    if name == "soft-moe":
        return route_soft_moe(logits)
    if name == "base":
        return route_base(logits, assign)
    if name == "deepseek-v3":
        return route_deepseek(logits, k or 2, True if renorm is None else renorm, n_group, topk_group,
                              route_scale, bias, "sigmoid")
    if name == "loss-free":
        return route_deepseek(logits, k or 2, False if renorm is None else renorm, n_group, topk_group,
                              route_scale, bias, "softmax")
    if name == "adamoe":
        return route_adamoe(logits, k or 2, n_expert)
    if name == "hash":
        return route_hash(token_ids, n_expert, hash_map)
    if name == "usmoe":
        return route_usmoe(logits, k or 2, alpha, beta, False if renorm is None else renorm)
    raise ValueError(f"unknown router {name}")


def run_case(case):
    ap = argparse.ArgumentParser()
    ap.add_argument("--router", required=True)
    ap.add_argument("--T", type=int, required=True)
    ap.add_argument("--L", type=int, required=True)
    ap.add_argument("--E", type=int, required=True)
    ap.add_argument("--k", type=int)
    ap.add_argument("--renorm", type=int)
    ap.add_argument("--capacity-factor", type=float)
    ap.add_argument("--priority", default="token")
    ap.add_argument("--min-capacity", type=int, default=4)
    ap.add_argument("--n-group", type=int, default=1)
    ap.add_argument("--topk-group", type=int, default=1)
    ap.add_argument("--route-scale", type=float, default=1.0)
    ap.add_argument("--assign", default="balanced")
    ap.add_argument("--alpha", type=float, default=0.5)
    ap.add_argument("--beta", type=float, default=0.5)
    ap.add_argument("--aux-coef", type=float, default=0.0)
    ap.add_argument("--z-coef", type=float, default=0.0)
    with open(os.path.join(case, "args.txt")) as f:
        a = ap.parse_args(f.read().split())
    d = lambda f: os.path.join(case, f)
    load = lambda f, dt: torch.from_numpy(__import__("numpy").fromfile(d(f), dtype=dt).copy())
    logits = load("logits.bin", "<f8").view(a.T, a.L).requires_grad_(True)
    bias = load("bias.bin", "<f4").double() if os.path.exists(d("bias.bin")) else None
    ids = load("ids.bin", "<i4").long() if os.path.exists(d("ids.bin")) else None
    hmap = load("hashmap.bin", "<i4").long() if os.path.exists(d("hashmap.bin")) else None
    renorm = None if a.renorm is None else bool(a.renorm)
    out = route(a.router, logits, k=a.k, renorm=renorm, capacity_factor=a.capacity_factor, priority=a.priority,
                min_capacity=a.min_capacity, n_group=a.n_group, topk_group=a.topk_group, route_scale=a.route_scale,
                bias=bias, n_expert=a.E, assign=a.assign, token_ids=ids, hash_map=hmap, alpha=a.alpha, beta=a.beta)
    loss = a.aux_coef * out["aux_loss"] + a.z_coef * out["z_loss"]
    if "expert_weight" in out:
        if os.path.exists(d("dw.bin")):
            dw = load("dw.bin", "<f8").view(out["expert_weight"].shape)
            loss = loss + (dw * out["expert_weight"]).sum()
        out["expert_index"].numpy().astype("<i8").tofile(d("ref_expert.bin"))
        out["expert_weight"].detach().numpy().astype("<f8").tofile(d("ref_weight.bin"))
    else:
        for key, f in (("dispatch", "dd.bin"), ("combine", "dc.bin")):
            if os.path.exists(d(f)):
                loss = loss + (load(f, "<f8").view(a.T, a.L) * out[key]).sum()
            out[key].detach().numpy().astype("<f8").tofile(d("ref_" + key + ".bin"))
    if torch.is_tensor(loss) and loss.requires_grad:
        loss.backward()
    g = logits.grad if logits.grad is not None else torch.zeros_like(logits)
    g.numpy().astype("<f8").tofile(d("ref_dlogits.bin"))
    with open(d("ref_scalars.txt"), "w") as f:
        f.write("%.17g %.17g\n" % (float(out["aux_loss"]), float(out["z_loss"])))


def main(argv):
    for case in argv:
        run_case(case)
    return 0


if __name__ == "__main__":
    torch.set_default_dtype(torch.float64)
    sys.exit(main(sys.argv[1:]))
