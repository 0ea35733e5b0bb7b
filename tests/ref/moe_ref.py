#!/usr/bin/env python3
"""moe_ref.py — an independent PyTorch reference for moe.c's forward pass.

Reimplements the published model definitions (Hugging Face transformers' structure of
MixtralForCausalLM, Qwen2MoeForCausalLM, Qwen3MoeForCausalLM, OlmoeForCausalLM and
DeepSeek-MoE v1's DeepseekForCausalLM) in float64, on weights read from a GGUF file
written in llama.cpp's conventions. The GGUF -> HF mapping is the inverse of llama.cpp's
convert_hf_to_gguf.py: q/k rows of the "normal RoPE" architectures (llama, deepseek) are
un-permuted back to HF's layout, where HF's rotate_half RoPE applies.

  moe_ref.py [--kv-f16] MODEL.gguf TOKENS.txt OUT.f32 [MODEL2 TOKENS2 OUT2 ...]

OUT gets n_tokens x n_vocab float32 logits (row i after token i). Needs python3-torch.
--kv-f16 rounds the keys (after RoPE) and the values to float16, as an F16 KV cache
stores them (llama.cpp's default cache, moe.c's --kv-type f16); all else stays float64.
"""
import math
import struct
import sys

import numpy as np
import torch
import torch.nn.functional as F

DT = torch.float64

# ------------------------------------------------------------------ GGUF reading

_SCALARS = {0: 'B', 1: 'b', 2: 'H', 3: 'h', 4: 'I', 5: 'i', 6: 'f', 7: '?', 10: 'Q', 11: 'q', 12: 'd'}


class _Reader:
    def __init__(self, data):
        self.b, self.o = data, 0

    def u(self, fmt):
        v = struct.unpack_from('<' + fmt, self.b, self.o)[0]
        self.o += struct.calcsize('<' + fmt)
        return v

    def s(self):
        n = self.u('Q')
        v = self.b[self.o:self.o + n]
        self.o += n
        return v.decode('utf-8', 'replace')

    def val(self, t):
        if t == 8:
            return self.s()
        if t == 9:
            et, n = self.u('I'), self.u('Q')
            return [self.val(et) for _ in range(n)]
        return self.u(_SCALARS[t])


def read_gguf(path):
    data = open(path, 'rb').read()
    r = _Reader(data)
    assert data[:4] == b'GGUF', path
    r.o = 4
    r.u('I')
    n_t, n_kv = r.u('Q'), r.u('Q')
    kv = {}
    for _ in range(n_kv):
        k = r.s()
        kv[k] = r.val(r.u('I'))
    infos = []
    for _ in range(n_t):
        name = r.s()
        nd = r.u('I')
        ne = [r.u('Q') for _ in range(nd)]
        infos.append((name, ne, r.u('I'), r.u('Q')))
    align = kv.get('general.alignment', 32)
    base = (r.o + align - 1) // align * align
    tensors = {}
    for name, ne, typ, off in infos:
        count = int(np.prod(ne)) if ne else 1
        if typ == 0:
            a = np.frombuffer(data, np.float32, count, base + off)
        elif typ == 1:
            a = np.frombuffer(data, np.float16, count, base + off)
        else:
            raise SystemExit(f'{path}: tensor {name} has type {typ}; the reference reads F32/F16 only')
        tensors[name] = torch.from_numpy(a.astype(np.float64).reshape(list(reversed(ne))))
    return kv, tensors


# ------------------------------------------------------------------ model pieces (HF structure)

def rms_norm(x, w, eps):
    var = x.pow(2).mean(-1, keepdim=True)
    return w * (x * torch.rsqrt(var + eps))


def rotate_half(x):
    x1, x2 = x[..., : x.shape[-1] // 2], x[..., x.shape[-1] // 2:]
    return torch.cat((-x2, x1), dim=-1)


def rope_cos_sin(n, dim, c):
    inv_freq = 1.0 / (c.base ** (torch.arange(0, dim, 2, dtype=DT) / dim))
    mscale = 1.0
    if c.yarn:                                            # HF _compute_yarn_parameters
        def corr_dim(rot):
            return dim * math.log(c.orig_ctx / (rot * 2 * math.pi)) / (2 * math.log(c.base))
        low = max(math.floor(corr_dim(32)), 0)            # beta_fast
        high = min(math.ceil(corr_dim(1)), dim - 1)       # beta_slow
        if low == high:
            high += 0.001
        ramp = torch.clamp((torch.arange(dim // 2, dtype=DT) - low) / (high - low), 0, 1)
        extrap = 1 - ramp
        inv_freq = inv_freq / c.yarn * (1 - extrap) + inv_freq * extrap
        mscale = 0.1 * math.log(c.yarn) + 1.0
    pos = torch.arange(n, dtype=DT) / c.linear            # HF "linear" rope scaling
    freqs = torch.outer(pos, inv_freq)
    emb = torch.cat((freqs, freqs), dim=-1)
    return emb.cos() * mscale, emb.sin() * mscale


def unpermute(w, n_head):
    """Inverse of convert_hf_to_gguf.py's LlamaModel.permute (HF -> GGUF q/k row order)."""
    shape = w.shape
    return w.reshape(n_head, shape[0] // n_head // 2, 2, *shape[1:]).swapaxes(1, 2).reshape(shape)


def mlp(x, gate, up, down):          # LlamaMLP / MixtralBlockSparseTop2MLP: w2(silu(w1 x) * w3 x)
    return (F.silu(x @ gate.T) * (x @ up.T)) @ down.T


class Cfg:
    pass


def config(kv, t, arch):
    g = lambda k, d=None: kv.get(f'{arch}.{k}', d)
    c = Cfg()
    c.arch = arch
    c.n_layer, c.d = g('block_count'), g('embedding_length')
    c.n_head = g('attention.head_count')
    c.n_head_kv = g('attention.head_count_kv', c.n_head)
    c.head_dim = g('attention.key_length', c.d // c.n_head)
    c.rot = g('rope.dimension_count', c.head_dim)
    assert c.rot == c.head_dim, 'the reference does partial rotary for none of these models'
    c.eps = g('attention.layer_norm_rms_epsilon')
    c.base = g('rope.freq_base', 10000.0)
    factor = g('rope.scaling.factor', 0.0) or 1.0
    stype = g('rope.scaling.type', 'linear')
    c.linear = factor if stype == 'linear' else 1.0
    c.yarn = factor if stype == 'yarn' else 0.0
    c.orig_ctx = g('rope.scaling.original_context_length', g('context_length'))
    c.n_expert, c.k = g('expert_count', 0), g('expert_used_count', 0)
    # norm_topk_prob: Mixtral and Qwen3-MoE renormalise (llama.cpp hard-codes it for them);
    # Qwen2-MoE, OLMoE and DeepSeek-MoE v1 do not, unless the file says so.
    c.norm_topk = g('expert_weights_norm', arch in ('llama', 'qwen3moe'))
    c.dense_lead = g('leading_dense_block_count', 0) if arch == 'deepseek' else 0
    c.scale = g('expert_weights_scale', 1.0)
    c.norm_rope = arch in ('llama', 'deepseek')      # GGUF q/k rows permuted for "normal" RoPE
    return c


def experts_of(t, i, n_expert):
    if f'blk.{i}.ffn_gate_exps.weight' in t:
        return (t[f'blk.{i}.ffn_gate_exps.weight'], t[f'blk.{i}.ffn_up_exps.weight'],
                t[f'blk.{i}.ffn_down_exps.weight'])
    st = lambda p: torch.stack([t[f'blk.{i}.{p}.{e}.weight'] for e in range(n_expert)])
    return st('ffn_gate'), st('ffn_up'), st('ffn_down')


KV_F16 = False


def attention(c, t, i, x, cos, sin):
    n = x.shape[0]
    p = f'blk.{i}.'
    wq, wk, wv = t[p + 'attn_q.weight'], t[p + 'attn_k.weight'], t[p + 'attn_v.weight']
    bq, bk, bv = t.get(p + 'attn_q.bias'), t.get(p + 'attn_k.bias'), t.get(p + 'attn_v.bias')
    if c.norm_rope:
        wq, wk = unpermute(wq, c.n_head), unpermute(wk, c.n_head_kv)
        bq = unpermute(bq, c.n_head) if bq is not None else None
        bk = unpermute(bk, c.n_head_kv) if bk is not None else None
    q, k, v = x @ wq.T, x @ wk.T, x @ wv.T
    if bq is not None:
        q, k, v = q + bq, k + bk, v + bv
    if c.arch == 'olmoe':                  # OlmoeAttention: q_norm/k_norm over the projections
        q = rms_norm(q, t[p + 'attn_q_norm.weight'], c.eps)
        k = rms_norm(k, t[p + 'attn_k_norm.weight'], c.eps)
    q = q.view(n, c.n_head, c.head_dim).transpose(0, 1)
    k = k.view(n, c.n_head_kv, c.head_dim).transpose(0, 1)
    v = v.view(n, c.n_head_kv, c.head_dim).transpose(0, 1)
    if c.arch == 'qwen3moe':               # Qwen3MoeAttention: per-head q_norm/k_norm
        q = rms_norm(q, t[p + 'attn_q_norm.weight'], c.eps)
        k = rms_norm(k, t[p + 'attn_k_norm.weight'], c.eps)
    q = q * cos + rotate_half(q) * sin     # apply_rotary_pos_emb
    k = k * cos + rotate_half(k) * sin
    if KV_F16:                             # what an F16 cache keeps of the keys and values
        k, v = k.to(torch.float16).to(DT), v.to(torch.float16).to(DT)
    rep = c.n_head // c.n_head_kv          # repeat_kv
    k, v = k.repeat_interleave(rep, 0), v.repeat_interleave(rep, 0)
    s = (q @ k.transpose(1, 2)) / (c.head_dim ** 0.5)
    s = s + torch.triu(torch.full((n, n), float('-inf'), dtype=DT), 1)
    o = torch.softmax(s, dim=-1) @ v
    o = o.transpose(0, 1).reshape(n, c.n_head * c.head_dim) @ t[p + 'attn_output.weight'].T
    if (p + 'attn_output.bias') in t:
        o = o + t[p + 'attn_output.bias']
    return o


def moe(c, t, i, x):
    p = f'blk.{i}.'
    logits = x @ t[p + 'ffn_gate_inp.weight'].T
    probs = torch.softmax(logits, dim=-1)
    w, sel = torch.topk(probs, c.k, dim=-1)
    if c.norm_topk:
        w = w / w.sum(-1, keepdim=True)
    w = w * c.scale
    gate, up, down = experts_of(t, i, c.n_expert)
    out = torch.zeros_like(x)
    for e in range(c.n_expert):
        tok, slot = torch.where(sel == e)
        if len(tok):
            out[tok] += w[tok, slot, None] * mlp(x[tok], gate[e], up[e], down[e])
    if (p + 'ffn_gate_shexp.weight') in t:
        sh = mlp(x, t[p + 'ffn_gate_shexp.weight'], t[p + 'ffn_up_shexp.weight'], t[p + 'ffn_down_shexp.weight'])
        if (p + 'ffn_gate_inp_shexp.weight') in t:   # Qwen2MoeSparseMoeBlock.shared_expert_gate
            sh = torch.sigmoid(x @ t[p + 'ffn_gate_inp_shexp.weight'].reshape(-1, 1)) * sh
        out = out + sh
    return out


def forward(path, tokens):
    kv, t = read_gguf(path)
    arch = kv['general.architecture']
    c = config(kv, t, arch)
    x = t['token_embd.weight'][tokens]
    cos, sin = rope_cos_sin(len(tokens), c.head_dim, c)
    for i in range(c.n_layer):
        h = rms_norm(x, t[f'blk.{i}.attn_norm.weight'], c.eps)
        x = x + attention(c, t, i, h, cos, sin)
        h = rms_norm(x, t[f'blk.{i}.ffn_norm.weight'], c.eps)
        if c.n_expert == 0 or i < c.dense_lead:
            x = x + mlp(h, t[f'blk.{i}.ffn_gate.weight'], t[f'blk.{i}.ffn_up.weight'], t[f'blk.{i}.ffn_down.weight'])
        else:
            x = x + moe(c, t, i, h)
    x = rms_norm(x, t['output_norm.weight'], c.eps)
    head = t.get('output.weight', t['token_embd.weight'])
    return x @ head.T


def main(argv):
    global KV_F16
    if argv and argv[0] == '--kv-f16':
        KV_F16, argv = True, argv[1:]
    if len(argv) < 3 or len(argv) % 3:
        raise SystemExit(__doc__)
    for j in range(0, len(argv), 3):
        tokens = [int(v) for v in open(argv[j + 1]).read().split()]
        logits = forward(argv[j], torch.tensor(tokens))
        logits.to(torch.float32).numpy().astype('<f4').tofile(argv[j + 2])


if __name__ == '__main__':
    main(sys.argv[1:])
