#!/usr/bin/env python3
"""PyTorch reimplementation of moe.c's training model, for tests/test_train_grad.c.

  train_model.py MODEL.gguf TOKENS.txt OUT.safetensors [MODEL2.gguf TOKENS2.txt OUT2.safetensors ...]

MODEL.gguf: an F32 model in llama.cpp's conventions (llama/Mixtral, qwen2moe, qwen3moe,
olmoe, deepseek), token-choice top-k routing with softmax scores. TOKENS.txt: a line
"B T", then B·T input ids, then B·T target ids. Computes, in float64 with autograd,
the mean cross-entropy of the targets and its gradient with respect to every tensor,
and writes them to OUT.safetensors ("loss" and one F64 tensor per GGUF tensor name).
Written from the architectures' definitions (HF transformers' Mixtral/Qwen2-MoE/OLMoE/
DeepSeek-MoE modelling code), not from the C code.
"""
import json
import struct
import sys

import numpy as np
import torch

T_STR, T_ARR = 8, 9
FMT = {0: 'B', 1: 'b', 2: 'H', 3: 'h', 4: 'I', 5: 'i', 6: 'f', 7: '?', 10: 'Q', 11: 'q', 12: 'd'}


def read_gguf(path):
    b = open(path, 'rb').read()
    o = [4]

    def u(fmt):
        v = struct.unpack_from('<' + fmt, b, o[0])[0]
        o[0] += struct.calcsize('<' + fmt)
        return v

    def s():
        n = u('Q')
        v = b[o[0]:o[0] + n]
        o[0] += n
        return v.decode('utf-8', 'replace')

    def val(t):
        if t == T_STR:
            return s()
        if t == T_ARR:
            et, n = u('I'), u('Q')
            return [val(et) for _ in range(n)]
        return u(FMT[t])

    assert b[:4] == b'GGUF'
    u('I')
    nt, nkv = u('Q'), u('Q')
    kv = {}
    for _ in range(nkv):
        k = s()
        kv[k] = val(u('I'))
    infos = []
    for _ in range(nt):
        name = s()
        nd = u('I')
        ne = [u('Q') for _ in range(nd)]
        typ, off = u('I'), u('Q')
        infos.append((name, ne, typ, off))
    align = kv.get('general.alignment', 32)
    base = (o[0] + align - 1) // align * align
    t = {}
    for name, ne, typ, off in infos:
        assert typ == 0, f'{name}: only F32 models'
        n = int(np.prod(ne))
        a = np.frombuffer(b, dtype='<f4', count=n, offset=base + off).astype(np.float64)
        t[name] = torch.tensor(a.reshape(list(reversed(ne))), requires_grad=True)
    return kv, t


def write_safetensors(path, tensors):
    header, blobs, off = {}, [], 0
    for name, a in tensors.items():
        a = np.ascontiguousarray(a, dtype='<f8')
        header[name] = {'dtype': 'F64', 'shape': list(a.shape), 'data_offsets': [off, off + a.nbytes]}
        blobs.append(a.tobytes())
        off += a.nbytes
    h = json.dumps(header).encode()
    h += b' ' * ((8 - len(h) % 8) % 8)
    with open(path, 'wb') as f:
        f.write(struct.pack('<Q', len(h)) + h + b''.join(blobs))


# arch → (neox rope, q/k norm: None | 'full' | 'head', renormalise top-k weights)
ARCHS = {'llama': (False, None, True), 'qwen2moe': (True, None, False), 'qwen3moe': (True, 'head', True),
         'olmoe': (True, 'full', False), 'deepseek': (False, None, False)}


def rms(x, w, eps):
    return x * torch.rsqrt((x * x).mean(-1, keepdim=True) + eps) * w


def rope(x, T, base, neox):  # x [B, T, heads, hd]
    hd = x.shape[-1]
    inv = base ** (-torch.arange(0, hd, 2, dtype=torch.float64) / hd)
    ang = torch.arange(T, dtype=torch.float64)[:, None] * inv[None, :]   # [T, hd/2]
    c, s = torch.cos(ang)[None, :, None, :], torch.sin(ang)[None, :, None, :]
    if neox:
        a, b = x[..., :hd // 2], x[..., hd // 2:]
        return torch.cat([a * c - b * s, a * s + b * c], -1)
    a, b = x[..., 0::2], x[..., 1::2]
    return torch.stack([a * c - b * s, a * s + b * c], -1).flatten(-2)


def mlp(x, g, u, d):
    return (torch.nn.functional.silu(x @ g.T) * (x @ u.T)) @ d.T


def forward(kv, t, tok, tgt, B, T):
    arch = kv['general.architecture']
    neox, qkn, renorm = ARCHS[arch]
    p = arch + '.'
    renorm = kv.get(p + 'expert_weights_norm', renorm)
    L, H, Hkv = kv[p + 'block_count'], kv[p + 'attention.head_count'], kv[p + 'attention.head_count_kv']
    eps, base = kv[p + 'attention.layer_norm_rms_epsilon'], kv.get(p + 'rope.freq_base', 10000.0)
    k = kv.get(p + 'expert_used_count', 0)
    n_dense = kv.get(p + 'leading_dense_block_count', 0) if arch == 'deepseek' else 0
    x = t['token_embd.weight'][tok]                      # [B, T, d]
    d = x.shape[-1]
    hd = d // H
    mask = torch.triu(torch.ones(T, T, dtype=torch.bool), 1)
    for i in range(L):
        w = lambda n: t.get(f'blk.{i}.{n}')
        h = rms(x, w('attn_norm.weight'), eps)
        q, kk, v = h @ w('attn_q.weight').T, h @ w('attn_k.weight').T, h @ w('attn_v.weight').T
        if w('attn_q.bias') is not None:
            q, kk, v = q + w('attn_q.bias'), kk + w('attn_k.bias'), v + w('attn_v.bias')
        if qkn == 'full':
            q, kk = rms(q, w('attn_q_norm.weight'), eps), rms(kk, w('attn_k_norm.weight'), eps)
        q, kk, v = q.view(B, T, H, hd), kk.view(B, T, Hkv, hd), v.view(B, T, Hkv, hd)
        if qkn == 'head':
            q, kk = rms(q, w('attn_q_norm.weight'), eps), rms(kk, w('attn_k_norm.weight'), eps)
        q, kk = rope(q, T, base, neox), rope(kk, T, base, neox)
        rep = H // Hkv
        kk, v = kk.repeat_interleave(rep, 2), v.repeat_interleave(rep, 2)
        att = torch.einsum('bthd,bshd->bhts', q, kk) / hd ** 0.5
        att = torch.softmax(att.masked_fill(mask, float('-inf')), -1)
        o = torch.einsum('bhts,bshd->bthd', att, v).reshape(B, T, H * hd)
        x = x + o @ w('attn_output.weight').T
        h = rms(x, w('ffn_norm.weight'), eps)
        if i < n_dense or w('ffn_gate_inp.weight') is None:
            y = mlp(h, w('ffn_gate.weight'), w('ffn_up.weight'), w('ffn_down.weight'))
        else:
            prob = torch.softmax(h @ w('ffn_gate_inp.weight').T, -1)   # [B, T, E]
            top, idx = torch.topk(prob, k, -1)
            if renorm:
                top = top / top.sum(-1, keepdim=True)
            G, U, D = w('ffn_gate_exps.weight'), w('ffn_up_exps.weight'), w('ffn_down_exps.weight')
            y = torch.zeros_like(h)
            for e in range(G.shape[0]):
                sel = (idx == e)                                   # [B, T, k]
                if not sel.any():
                    continue
                we = (top * sel).sum(-1, keepdim=True)             # weight of e per token (0 if not chosen)
                y = y + we * mlp(h, G[e], U[e], D[e])
            if w('ffn_gate_shexp.weight') is not None:
                sh = mlp(h, w('ffn_gate_shexp.weight'), w('ffn_up_shexp.weight'), w('ffn_down_shexp.weight'))
                if w('ffn_gate_inp_shexp.weight') is not None:
                    sh = torch.sigmoid(h @ w('ffn_gate_inp_shexp.weight')[:, None]) * sh
                y = y + sh
        x = x + y
    x = rms(x, t['output_norm.weight'], eps)
    logits = x @ t.get('output.weight', t['token_embd.weight']).T
    return torch.nn.functional.cross_entropy(logits.view(B * T, -1), tgt.view(-1))


def run(model, tokens, out_path):
    kv, t = read_gguf(model)
    nums = open(tokens).read().split()
    B, T = int(nums[0]), int(nums[1])
    ids = torch.tensor([int(v) for v in nums[2:]], dtype=torch.long)
    tok, tgt = ids[:B * T].view(B, T), ids[B * T:2 * B * T].view(B, T)
    loss = forward(kv, t, tok, tgt, B, T)
    loss.backward()
    out = {'loss': np.array(loss.item())}
    for name, p in t.items():
        out[name] = (p.grad if p.grad is not None else torch.zeros_like(p)).detach().numpy()
    write_safetensors(out_path, out)


def main(argv):
    for i in range(1, len(argv) - 2, 3):   # several (model, tokens, out) triples: one torch start-up
        run(argv[i], argv[i + 1], argv[i + 2])


if __name__ == '__main__':
    main(sys.argv)
