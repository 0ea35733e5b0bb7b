/* forward.c — the forward pass of every supported architecture (one function driven by
 * the flags of arch.h), and the context that runs it: KV cache, scratch preallocated for
 * a batch, the thread pool, the expert provider and the routing hook. Numerics follow
 * llama.cpp's CPU backend (docs/ARCHITECTURE.md, "Numerics"). */
#include "core/f16.h"
#include "core/gemm.h"
#include "core/quant_float.h"
#include "model/kv_cache.h"
#include "model/model.h"
#include "moe/layer.h"
#include "moe/route.h"

#include <math.h>
#include <stdlib.h>
#if defined(__AVX2__)
#include "core/simd.h"
#endif

#define MAX_BATCH 512          /* tokens per forward step (llama.cpp's default n_ubatch) */
#define DEFAULT_CTX 4096       /* context size when the caller leaves it to us */

struct moe_context {
    moe_model *m;
    moe_pool *pool;
    moe_expert_provider *experts;   /* the model's mapped provider unless replaced */
    moe_kv_cache kv;
    int64_t n_ctx, n_batch, pos;
    moe_routing rt;                 /* a training router's result (model router_custom) */
    moe_layer soft;                 /* Soft MoE layers run through the training layer */
    moe_routing_fn route_fn;
    void *route_user;
    float corr_dims[2];             /* YaRN correction range, as ggml_rope_yarn_corr_dims */
    moe_arena arena;                /* every buffer below; nothing is allocated per token */
    /* Scratch for one batch of nb ≤ n_batch tokens. d = n_embd, k = the router's choices per
     * token (n_expert_used; n_expert for expert choice). */
    float *x;            /* [nb × d] residual stream */
    float *xn;           /* [nb × d] normalised input of the current block */
    float *y;            /* [nb × d] output of the current block */
    float *q;            /* [nb × nq] queries */
    float *kb, *vb;      /* [nb × nk], [nb × nv] keys and values of the batch, then copied into
                            the cache's heads (kv_cache.h) */
    float *att;          /* [nb × na] attention output, heads concatenated */
    float *rope;         /* [nb × n_rot] (cos, sin) per rotated pair and token */
    float *probs;        /* [threads × attn_prob_rows × n_ctx] attention probabilities, rows per thread */
    void *xq;            /* activations converted to a weight type's vec_dot_type */
    float *router;       /* [nb × E] router logits */
    float *scores;       /* [E] router scores (scratch of moe_route_topk) */
    int32_t *ids;        /* [nb × k] chosen experts, selection order */
    float *w;            /* [nb × k] their combine weights */
    int32_t *row_of;     /* [nb × k] grouped row of (token, slot) */
    int32_t *row_tok;    /* [nb × k] token of each grouped row */
    int32_t *start;      /* [E + 1] first grouped row of each expert */
    int32_t *cursor;     /* [E] */
    int32_t *active;     /* [E] experts the batch uses, ascending */
    float *xg;           /* [nb·k × d] expert inputs grouped by expert */
    float *og;           /* [nb·k × d] expert outputs, grouped; then the shared expert's */
    float *hg, *ug;      /* [nb × max FFN width] gate and up activations (k·n_ff_exp for experts) */
    float *sg;           /* [nb] shared-expert gate logits */
    /* Gate lookahead (expert prefetch): during decode, layer l+1's router applied to
     * layer l's FFN input guesses l+1's experts while l computes. */
    int lookahead_n;     /* experts to guess per layer, 0 = off */
    float *look;         /* [E] lookahead logits */
    int32_t *look_ids;   /* [E] */
    float *look_w;       /* [E] */
};

/* ---------------------------------------------------------------- numerics */

/* ggml_rms_norm then ggml_mul: each square in float, their sum in double, mean and scale
 * in float. Why eight double sums side by side (two vectors) rather than ggml's one: one
 * chain of dependent double adds over 1,024 values was ~1 µs, twice a layer, while the
 * other thread waits. Doubles hold each float square exactly in their first 24 of 53
 * bits, so the two orders of summing round differently only in bits far below the float
 * the mean is rounded to. */
static void rms_norm(float *y, const float *x, const float *w, int64_t n, float eps) {
    int64_t i = 0;
    double sum = 0.0;
#if defined(__AVX2__)
    __m256d s0 = _mm256_setzero_pd(), s1 = _mm256_setzero_pd();
    for (; i + 8 <= n; i += 8) {
        const __m256 v = _mm256_loadu_ps(x + i), sq = _mm256_mul_ps(v, v);
        s0 = _mm256_add_pd(s0, _mm256_cvtps_pd(_mm256_castps256_ps128(sq)));
        s1 = _mm256_add_pd(s1, _mm256_cvtps_pd(_mm256_extractf128_ps(sq, 1)));
    }
    double lanes[4];
    _mm256_storeu_pd(lanes, _mm256_add_pd(s0, s1));
    sum = (lanes[0] + lanes[1]) + (lanes[2] + lanes[3]);
#endif
    for (; i < n; i++) sum += (double)(x[i] * x[i]);
    const float mean = (float)(sum / (double)n);
    const float scale = 1.0f / sqrtf(mean + eps);
    i = 0;
#if defined(__AVX2__)
    const __m256 vs = _mm256_set1_ps(scale);
    for (; i + 8 <= n; i += 8)
        _mm256_storeu_ps(y + i, _mm256_mul_ps(_mm256_mul_ps(_mm256_loadu_ps(x + i), vs), _mm256_loadu_ps(w + i)));
#endif
    for (; i < n; i++) y[i] = (x[i] * scale) * w[i];
}

/* y = a·w (set) or y += a·w over n values: the product rounded, then the add (ggml_mul,
 * then ggml_add); w = 1 adds a as it is. 8 at a time with AVX2: the same operations, so
 * the same bits, as the scalar loop, which the compiler leaves scalar (y and a may
 * overlap as far as it knows) at ~1 µs per 1,024 values, on one thread. */
static void add_scaled(float *y, const float *a, float w, int64_t n, bool set) {
    int64_t i = 0;
#if defined(__AVX2__)
    const __m256 vw = _mm256_set1_ps(w);
    for (; i + 8 <= n; i += 8) {
        const __m256 p = _mm256_mul_ps(_mm256_loadu_ps(a + i), vw);
        _mm256_storeu_ps(y + i, set ? p : _mm256_add_ps(_mm256_loadu_ps(y + i), p));
    }
#endif
    for (; i < n; i++) y[i] = set ? a[i] * w : y[i] + a[i] * w;
}

/* ggml_silu (x / (1 + e^-x)) then ggml_mul with the up projection, in place in g, for
 * elements [i0, i1) of a row of ff values. As ggml does per row: the elements below ff
 * rounded down to 8 go through the 8-wide e^x (v_silu, simd.h), the rest through expf, so
 * an element's value depends on its place in its row only, not on how rows are split. */
static void swiglu_part(float *g, const float *u, int64_t i0, int64_t i1, int64_t ff) {
    int64_t i = i0;
#if defined(__AVX2__) && defined(__FMA__)
    const int64_t lim = MOE_MIN(i1, ff & ~(int64_t)7);
    for (; i + 8 <= lim; i += 8)
        _mm256_storeu_ps(g + i, _mm256_mul_ps(v_silu(_mm256_loadu_ps(g + i)), _mm256_loadu_ps(u + i)));
    if (i < lim) { /* a part that ends inside a group of 8 */
        float gb[8] = {0}, ub[8] = {0};
        memcpy(gb, g + i, (size_t)(lim - i) * sizeof *gb);
        memcpy(ub, u + i, (size_t)(lim - i) * sizeof *ub);
        _mm256_storeu_ps(gb, _mm256_mul_ps(v_silu(_mm256_loadu_ps(gb)), _mm256_loadu_ps(ub)));
        memcpy(g + i, gb, (size_t)(lim - i) * sizeof *gb);
        i = lim;
    }
#endif
    for (; i < i1; i++) g[i] = g[i] / (1.0f + expf(-g[i])) * u[i];
}

/* swiglu_part over n rows of ff */
static void swiglu(float *g, const float *u, int64_t n, int64_t ff) {
    for (int64_t r = 0; r < n; r++) swiglu_part(g + r * ff, u + r * ff, 0, ff, ff);
}

static void add_rows(float *y, const float *b, int64_t n, int64_t cols, int64_t ldy) {
    for (int64_t t = 0; t < n; t++)
        for (int64_t i = 0; i < cols; i++) y[t * ldy + i] += b[i];
}

/* Bit-for-bit ggml's rope cache (ggml_rope_cache_init + rope_yarn): theta starts at the
 * position and is multiplied by powf(base, -2/n_rot) per pair, in float, so the angles
 * round exactly as llama.cpp's do. cs gets (cos, sin) for each pair i0/2. */
static float yarn_ramp(float low, float high, int64_t i0) {
    const float y = ((float)(i0 / 2) - low) / MOE_MAX(0.001f, high - low);
    return 1.0f - MOE_MIN(1.0f, MOE_MAX(0.0f, y));
}

static void rope_cache(const moe_hparams *hp, const float corr[2], int64_t pos, float *cs) {
    const float theta_scale = powf(hp->rope_freq_base, -2.0f / (float)hp->n_rot);
    const float freq_scale = hp->rope_freq_scale, ext = hp->yarn_ext_factor;
    float theta = (float)pos;
    for (int64_t i0 = 0; i0 < hp->n_rot; i0 += 2) {
        const float theta_extrap = theta, theta_interp = freq_scale * theta_extrap;
        float th = theta_interp, mscale = hp->yarn_attn_factor;
        if (ext != 0.0f) {
            const float ramp_mix = yarn_ramp(corr[0], corr[1], i0) * ext;
            th = theta_interp * (1 - ramp_mix) + theta_extrap * ramp_mix;
            mscale *= 1.0f + 0.1f * logf(1.0f / freq_scale);
        }
        cs[i0] = cosf(th) * mscale;
        cs[i0 + 1] = sinf(th) * mscale;
        theta *= theta_scale;
    }
}

static float yarn_corr_dim(int64_t n_dims, int64_t n_ctx_orig, float n_rot, float base) {
    return (float)n_dims * logf((float)n_ctx_orig / (n_rot * 2 * (float)M_PI)) / (2 * logf(base));
}

/* Rotates the first n_rot values of each head: adjacent pairs (NORM) or halves (NEOX).
 * Pair (a, b) with cos c and sin s (cs: c, s per pair) becomes (a·c − b·s, a·s + b·c),
 * each product rounded, then the add, as ggml's rope; the vector paths do the same
 * operations on 4 (NORM) or 8 (NEOX) pairs at a time. */
static void rope_apply(const moe_hparams *hp, float *v, int64_t n_heads, int64_t head_dim, const float *cs) {
    const int64_t n_rot = hp->n_rot, half = n_rot / 2;
    const bool neox = hp->rope_type == MOE_ROPE_NEOX;
    for (int64_t h = 0; h < n_heads; h++) {
        float *x = v + h * head_dim;
        int64_t i0 = 0;
#if defined(__AVX2__)
        if (!neox)
            for (; i0 + 8 <= n_rot; i0 += 8) { /* [a0 b0 a1 b1 ...] against [c0 s0 c1 s1 ...] */
                const __m256 ab = _mm256_loadu_ps(x + i0), t = _mm256_loadu_ps(cs + i0);
                const __m256 ba = _mm256_permute_ps(ab, 0xB1);
                /* even lanes a·c − b·s, odd lanes b·c + a·s */
                _mm256_storeu_ps(x + i0, _mm256_addsub_ps(_mm256_mul_ps(ab, _mm256_moveldup_ps(t)),
                                                          _mm256_mul_ps(ba, _mm256_movehdup_ps(t))));
            }
        else
            for (; i0 + 16 <= n_rot; i0 += 16) { /* a = x[i..i+7], b = x[half+i..], i = i0/2 */
                const __m256 t0 = _mm256_loadu_ps(cs + i0), t1 = _mm256_loadu_ps(cs + i0 + 8);
                /* cos and sin of the 8 pairs, in order (shuffle_ps works per 128-bit lane) */
                const __m256 c = _mm256_castpd_ps(_mm256_permute4x64_pd(_mm256_castps_pd(_mm256_shuffle_ps(t0, t1, 0x88)), 0xD8));
                const __m256 sn = _mm256_castpd_ps(_mm256_permute4x64_pd(_mm256_castps_pd(_mm256_shuffle_ps(t0, t1, 0xDD)), 0xD8));
                float *pa = x + i0 / 2, *pb = x + i0 / 2 + half;
                const __m256 a = _mm256_loadu_ps(pa), b = _mm256_loadu_ps(pb);
                _mm256_storeu_ps(pa, _mm256_sub_ps(_mm256_mul_ps(a, c), _mm256_mul_ps(b, sn)));
                _mm256_storeu_ps(pb, _mm256_add_ps(_mm256_mul_ps(a, sn), _mm256_mul_ps(b, c)));
            }
#endif
        for (; i0 < n_rot; i0 += 2) {
            const float c = cs[i0], s = cs[i0 + 1];
            const int64_t a = neox ? i0 / 2 : i0, b = neox ? i0 / 2 + half : i0 + 1;
            const float x0 = x[a], x1 = x[b];
            x[a] = x0 * c - x1 * s;
            x[b] = x0 * s + x1 * c;
        }
    }
}

/* Small tensors that the next serial step reads (a norm's weights: 4 KB in mix-1b) come
 * from DRAM at every token, since the stream of weights evicts them from the caches;
 * read on one thread while the other waits, their latency showed: RMS-norm took 1.3 µs,
 * 0.65 with this. A prefetch issued right before a large product brings them in while it
 * runs. (The router's 32 KB too: that took as long to issue as it saved.) Attention also
 * reads its cache ahead with it (attn_heads). */
static inline void prefetch_small(const void *p, size_t bytes) {
    for (size_t o = 0; p && o < bytes; o += 64) __builtin_prefetch((const char *)p + o, 0, 3);
}

/* ---------------------------------------------------------------- matmul */

/* y[t·ldy + r] = W·x_t for t < n, with x converted to W's vec_dot_type first (F16 for F16
 * weights, Q8_0 for Q4_0/Q8_0, Q8_K for K-quants, ...) exactly as llama.cpp does. */
static void mm(moe_context *c, const moe_mat *W, const float *x, int64_t n, float *y, int64_t ldy) {
    moe_act_prepare(c->pool, W->type, x, c->xq, n, W->cols);
    moe_gemm_prepared(c->pool, y, ldy, W, c->xq, n); /* tile kernels for batches, bit-identical */
}

/* The same x as the previous mm (whose weight type was prev_type): converted again only
 * if W wants another activation type. */
static void mm_same_x(moe_context *c, const moe_mat *W, int prev_type, const float *x, int64_t n, float *y,
                      int64_t ldy) {
    if (moe_type_get(W->type)->vec_dot_type != moe_type_get(prev_type)->vec_dot_type)
        moe_act_prepare(c->pool, W->type, x, c->xq, n, W->cols);
    moe_gemm_prepared(c->pool, y, ldy, W, c->xq, n);
}

static bool same_act(int a, int b) { return moe_type_get(a)->vec_dot_type == moe_type_get(b)->vec_dot_type; }

/* SwiGLU FFN of n rows of x into out [n × d]. */
static void ffn(moe_context *c, const moe_ffn_weights *f, const float *x, int64_t n, float *out) {
    const int64_t ff = f->gate.rows;
    mm(c, &f->gate, x, n, c->hg, ff);
    mm_same_x(c, &f->up, f->gate.type, x, n, c->ug, ff);
    swiglu(c->hg, c->ug, n, ff);
    mm(c, &f->down, c->hg, n, out, f->down.rows);
}

/* ---------------------------------------------------------------- attention */

/* The cache holds F32 or F16 values (kv_cache.h). The attention loops below take the
 * element type as an argument (f16) and are inlined into attn_task's two calls of
 * attn_heads, one per type, so that each type compiles to loops of its own; the other
 * arithmetic is the same for both. */
static inline float kv_at(const void *p, int64_t i, bool f16) {
    return f16 ? moe_f16_to_f32(((const moe_f16 *)p)[i]) : ((const float *)p)[i];
}
#if defined(__AVX2__)
SIMD_INLINE __m256 kv_load8(const void *p, int64_t i, bool f16) {
    if (!f16) return _mm256_loadu_ps((const float *)p + i);
#if defined(__F16C__)
    return _mm256_cvtph_ps(_mm_loadu_si128((const __m128i *)((const moe_f16 *)p + i)));
#else
    float t[8];
    moe_f16_to_float((const moe_f16 *)p + i, t, 8);
    return _mm256_loadu_ps(t);
#endif
}
#endif

/* k·q over one head (a few dozen to a few hundred values), inlined: attention takes one
 * such dot per head and cached position, and a call through the type table per dot cost
 * as much as the dot itself. Two 8-wide FMA chains (dot_head_lanes: their sum, over the
 * values up to the last multiple of 8), then the scalar tail. */
#if defined(__AVX2__) && defined(__FMA__)
static inline __attribute__((always_inline)) __m256 dot_head_lanes(const void *k, const float *q, int64_t n, bool f16) {
    __m256 s0 = _mm256_setzero_ps(), s1 = _mm256_setzero_ps();
    int64_t i = 0;
    for (; i + 16 <= n; i += 16) {
        s0 = _mm256_fmadd_ps(kv_load8(k, i, f16), _mm256_loadu_ps(q + i), s0);
        s1 = _mm256_fmadd_ps(kv_load8(k, i + 8, f16), _mm256_loadu_ps(q + i + 8), s1);
    }
    for (; i + 8 <= n; i += 8) s0 = _mm256_fmadd_ps(kv_load8(k, i, f16), _mm256_loadu_ps(q + i), s0);
    return _mm256_add_ps(s0, s1);
}

/* hsum8 of eight vectors at once: lane p of the result is hsum8(a[p]), added in the same
 * pairs (so the same bits): 21 instructions for eight sums instead of 48. */
SIMD_INLINE __m256 hsum8x8(const __m256 a[8]) {
    __m256 d[4], f[2];
    for (int p = 0; p < 4; p++) /* [a_p lane i + a_p lane i+4 | the same of a_{p+4}] */
        d[p] = _mm256_add_ps(_mm256_permute2f128_ps(a[p], a[p + 4], 0x31),
                             _mm256_permute2f128_ps(a[p], a[p + 4], 0x20));
    for (int p = 0; p < 2; p++) /* (r0 + r2, r1 + r3) of d[2p] and of d[2p+1], per half */
        f[p] = _mm256_add_ps(_mm256_shuffle_ps(d[2 * p], d[2 * p + 1], _MM_SHUFFLE(1, 0, 1, 0)),
                             _mm256_shuffle_ps(d[2 * p], d[2 * p + 1], _MM_SHUFFLE(3, 2, 3, 2)));
    return _mm256_add_ps(_mm256_shuffle_ps(f[0], f[1], _MM_SHUFFLE(2, 0, 2, 0)),
                         _mm256_shuffle_ps(f[0], f[1], _MM_SHUFFLE(3, 1, 3, 1)));
}
#endif

int moe_forward_test_one_key_at_a_time = 0;

static inline __attribute__((always_inline)) float dot_head(const void *k, const float *q, int64_t n, bool f16) {
    int64_t i = 0;
    float s = 0.0f;
#if defined(__AVX2__) && defined(__FMA__)
    s = hsum8(dot_head_lanes(k, q, n, f16));
    i = n / 8 * 8;
#endif
    for (; i < n; i++) s += kv_at(k, i, f16) * q[i];
    return s;
}

/* o += Σ_{s0 ≤ s < s1} w[s]·inv · v_s (v_s: the value at position s, `stride` elements
 * apart), hv values: a multiply then an add per element (not fused), so that the vector
 * and scalar paths round alike. For heads of 64 or 128 values the sum stays in registers
 * over the positions of the call instead of going through memory at every one: the same
 * operations in the same order, so the same bits however the positions are cut into
 * calls. */
#if defined(__AVX2__)
#define ATTN_V_REGS(NV)                                                                                             \
    do {                                                                                                            \
        __m256 acc[NV];                                                                                             \
        _Pragma("GCC unroll 16") for (int k = 0; k < (NV); k++) acc[k] = _mm256_loadu_ps(o + 8 * k);                \
        for (int64_t s = s0; s < s1; s++) {                                                                         \
            if (ahead) /* the value `ahead` positions on */                                                         \
                prefetch_small((const char *)v + (s + ahead) * (int64_t)(stride * moe_kv_elem_bytes(f16)),            \
                               (size_t)hv * moe_kv_elem_bytes(f16));                                                   \
            const __m256 vp = _mm256_set1_ps(w[s] * inv);                                                           \
            _Pragma("GCC unroll 16") for (int k = 0; k < (NV); k++)                                                 \
                acc[k] = _mm256_add_ps(acc[k], _mm256_mul_ps(vp, kv_load8(v, s * (int64_t)stride + 8 * k, f16)));   \
        }                                                                                                           \
        _Pragma("GCC unroll 16") for (int k = 0; k < (NV); k++) _mm256_storeu_ps(o + 8 * k, acc[k]);                \
    } while (0)
#endif
static inline __attribute__((always_inline)) void attn_values_add(float *o, const float *w, float inv, const void *v,
                                                                  size_t stride, int64_t s0, int64_t s1, int64_t hv,
                                                                  bool f16, int64_t ahead) {
#if defined(__AVX2__)
    if (hv == 64) { ATTN_V_REGS(8); return; }
    if (hv == 128) { ATTN_V_REGS(16); return; }
#endif
    for (int64_t s = s0; s < s1; s++) {
        const float p = w[s] * inv;
        const int64_t at = s * (int64_t)stride;
        int64_t i = 0;
#if defined(__AVX2__)
        const __m256 vp = _mm256_set1_ps(p);
        for (; i + 8 <= hv; i += 8)
            _mm256_storeu_ps(o + i, _mm256_add_ps(_mm256_loadu_ps(o + i), _mm256_mul_ps(vp, kv_load8(v, at + i, f16))));
#endif
        for (; i < hv; i++) o[i] += p * kv_at(v, at + i, f16);
    }
}

typedef struct {
    moe_context *c;
    int il;
    int64_t n, pos0;
    float scale;
} attn_job;

/* Query heads that share a KV head (grouped-query attention) are taken together, at most
 * ATTN_HEADS at a time, so that each key and value of the cache is read from memory once
 * for all of them instead of once per query head: at 2,048 positions of context a KV
 * head's keys and values are 1 MB (F32, 64 values), more than a core's L2, and reading
 * them again for every query head had decode at half its speed at that depth. The values
 * go ATTN_V_BLOCK positions at a time through every head of the group, so a block of
 * values stays in L1 while they pass. */
#define ATTN_HEADS 8
#define ATTN_V_BLOCK 64
#define ATTN_K_AHEAD 32

/* The query heads taken together: all of a KV head's (≤ ATTN_HEADS), unless there are
 * too few (token, KV head) pairs for the threads, then fewer per task. */
static int64_t attn_heads_per_task(const moe_hparams *hp, int64_t n, int nth) {
    const int64_t group = hp->n_head / hp->n_head_kv, pairs = n * hp->n_head_kv;
    const int64_t splits = MOE_MIN(group, (nth + pairs - 1) / pairs);
    return MOE_MIN((group + splits - 1) / splits, ATTN_HEADS);
}
/* rows of c->probs per thread: the most query heads a task takes */
static int64_t attn_prob_rows(const moe_hparams *hp) { return MOE_MIN(hp->n_head / hp->n_head_kv, ATTN_HEADS); }

/* One (token t, KV head kvh, its query heads h0 .. h0+nh−1): scores over every cached
 * position up to the token's own (the causal mask), softmax in F32 with the max
 * subtracted and the sum in double (ggml_soft_max_ext), then the probability-weighted sum
 * of the values. Each head's arithmetic is that of a head alone. */
static inline __attribute__((always_inline)) void attn_heads(const attn_job *j, float *probs, int64_t t, int64_t kvh,
                                                             int64_t h0, int64_t nh, bool f16) {
    moe_context *c = j->c;
    const moe_hparams *hp = &c->m->hp;
    const int64_t hk = hp->n_embd_head_k, hv = hp->n_embd_head_v;
    const int64_t nq = hp->n_head * hk, na = hp->n_head * hv;
    const float *q = c->q + t * nq + h0 * hk;
    const int64_t n_kv = j->pos0 + t + 1;
    const uint8_t *kk = moe_kv_k(&c->kv, j->il, kvh, 0), *vv = moe_kv_v(&c->kv, j->il, kvh, 0);
    const size_t kstride = (size_t)hk * moe_kv_elem_bytes(f16);
    float mx[ATTN_HEADS], inv[ATTN_HEADS];
    for (int64_t h = 0; h < nh; h++) mx[h] = -INFINITY;
    int64_t s1 = 0;
#if defined(__AVX2__) && defined(__FMA__)
    /* Eight keys at a time (16 KB of them at most, in L1 for every head of the run): a
     * head's eight dots are summed across lanes together (hsum8x8), and the scores are
     * scaled, stored and compared as one vector. The same values as one key at a time
     * below, and the same maximum (a maximum does not depend on the order). */
    if (hk % 8 == 0 && !moe_forward_test_one_key_at_a_time) {
        __m256 mxv[ATTN_HEADS];
        for (int64_t h = 0; h < nh; h++) mxv[h] = _mm256_set1_ps(-INFINITY);
        for (; s1 + 8 <= n_kv; s1 += 8) {
            if (s1 + ATTN_K_AHEAD + 8 <= n_kv) prefetch_small(kk + (size_t)(s1 + ATTN_K_AHEAD) * kstride, 8 * kstride);
            for (int64_t h = 0; h < nh; h++) {
                __m256 a[8];
                for (int p = 0; p < 8; p++) a[p] = dot_head_lanes(kk + (size_t)(s1 + p) * kstride, q + h * hk, hk, f16);
                const __m256 v = _mm256_mul_ps(hsum8x8(a), _mm256_set1_ps(j->scale));
                _mm256_storeu_ps(probs + h * c->n_ctx + s1, v);
                mxv[h] = _mm256_max_ps(v, mxv[h]); /* v > mx ? v : mx, lane by lane */
            }
        }
        for (int64_t h = 0; h < nh; h++) {
            float l[8];
            _mm256_storeu_ps(l, mxv[h]);
            for (int p = 0; p < 8; p++) mx[h] = l[p] > mx[h] ? l[p] : mx[h];
        }
    }
#endif
    for (int64_t s = s1; s < n_kv; s++) /* each key once, for every head of the run */
        for (int64_t h = 0; h < nh; h++) {
            const float v = dot_head(kk + (size_t)s * kstride, q + h * hk, hk, f16) * j->scale;
            probs[h * c->n_ctx + s] = v;
            mx[h] = v > mx[h] ? v : mx[h];
        }
    for (int64_t h = 0; h < nh; h++) {
        float *p = probs + h * c->n_ctx;
        int64_t s0 = 0;
        double sum = 0.0;
#if defined(__AVX2__) && defined(__FMA__)
        /* e^(v − max) eight at a time, each eight summed in float and then added in
         * double, as ggml's soft_max does on AVX2 (ggml_vec_soft_max_f32, with v_expf:
         * simd.h); which positions take this path depends on n_kv only, as in a batch.
         * (A double add per position was a chain of 4-cycle latencies: ~5 % of a token
         * at 2,800 positions of context.) */
        for (; s0 + 8 <= n_kv; s0 += 8) {
            const __m256 ev = v_expf(_mm256_sub_ps(_mm256_loadu_ps(p + s0), _mm256_set1_ps(mx[h])));
            _mm256_storeu_ps(p + s0, ev);
            sum += (double)hsum8(ev);
        }
#endif
        for (; s0 < n_kv; s0++) {
            p[s0] = expf(p[s0] - mx[h]);
            sum += (double)p[s0];
        }
        inv[h] = (float)(1.0 / sum);
        memset(c->att + t * na + (h0 + h) * hv, 0, (size_t)hv * sizeof(float));
    }
    for (int64_t s0 = 0; s0 < n_kv; s0 += ATTN_V_BLOCK) /* each value once, for every head */
        for (int64_t h = 0; h < nh; h++)
            attn_values_add(c->att + t * na + (h0 + h) * hv, probs + h * c->n_ctx, inv[h], vv, (size_t)hv, s0,
                            MOE_MIN(s0 + ATTN_V_BLOCK, n_kv), hv, f16,
                            h == 0 && s0 + 2 * ATTN_V_BLOCK <= n_kv ? ATTN_V_BLOCK : 0);
}

static void attn_task(void *arg, int ith, int nth) {
    const attn_job *j = arg;
    moe_context *c = j->c;
    const moe_hparams *hp = &c->m->hp;
    const int64_t Hkv = hp->n_head_kv, group = hp->n_head / Hkv;
    const int64_t hpt = attn_heads_per_task(hp, j->n, moe_pool_size(c->pool)), runs = (group + hpt - 1) / hpt;
    float *probs = c->probs + (size_t)ith * (size_t)attn_prob_rows(hp) * (size_t)c->n_ctx;
    int64_t b, e;
    moe_split(j->n * Hkv * runs, ith, nth, 1, &b, &e);
    for (int64_t it = b; it < e; it++) {
        const int64_t t = it / (Hkv * runs), kvh = it / runs % Hkv;
        const int64_t h0 = kvh * group + it % runs * hpt, nh = MOE_MIN(hpt, (kvh + 1) * group - h0);
        if (c->kv.f16) attn_heads(j, probs, t, kvh, h0, nh, true);
        else attn_heads(j, probs, t, kvh, h0, nh, false);
    }
}

/* x += attention(norm(x)) for n tokens at positions pos0 ... */
static void attention(moe_context *c, int il, int64_t n, int64_t pos0) {
    const moe_hparams *hp = &c->m->hp;
    const moe_attn_weights *a = &c->m->layers[il].attn;
    const int64_t d = hp->n_embd, hk = hp->n_embd_head_k;
    const int64_t nq = hp->n_head * hk, nk = hp->n_head_kv * hk, nv = hp->n_head_kv * hp->n_embd_head_v;
    float *k = c->kb, *v = c->vb; /* [n × nk], [n × nv]: copied into the cache's heads below */

    for (int64_t t = 0; t < n; t++) rms_norm(c->xn + t * d, c->x + t * d, a->norm, d, hp->rms_eps);
    if (n == 1 && same_act(a->wq.type, a->wk.type) && same_act(a->wq.type, a->wv.type)) {
        /* decode: q, k and v in one pool run over one prepared activation row */
        moe_act_prepare(c->pool, a->wq.type, c->xn, c->xq, 1, d);
        const moe_mv_seg sg[3] = {{&a->wq, c->xq, c->q}, {&a->wk, c->xq, k}, {&a->wv, c->xq, v}};
        moe_matvec_multi(c->pool, sg, 3);
    } else {
        mm(c, &a->wq, c->xn, n, c->q, nq);
        mm_same_x(c, &a->wk, a->wq.type, c->xn, n, k, nk);
        mm_same_x(c, &a->wv, a->wk.type, c->xn, n, v, nv);
    }
    if (a->bq) add_rows(c->q, a->bq, n, nq, nq);
    if (a->bk) add_rows(k, a->bk, n, nk, nk);
    if (a->bv) add_rows(v, a->bv, n, nv, nv);
    for (int64_t t = 0; t < n; t++) {
        float *qt = c->q + t * nq, *kt = k + t * nk;
        if (hp->qk_norm == MOE_QK_NORM_FULL) {            /* olmoe: over the whole projection */
            rms_norm(qt, qt, a->q_norm, nq, hp->rms_eps);
            rms_norm(kt, kt, a->k_norm, nk, hp->rms_eps);
        } else if (hp->qk_norm == MOE_QK_NORM_HEAD) {     /* qwen3moe: each head */
            for (int64_t h = 0; h < hp->n_head; h++) rms_norm(qt + h * hk, qt + h * hk, a->q_norm, hk, hp->rms_eps);
            for (int64_t h = 0; h < hp->n_head_kv; h++) rms_norm(kt + h * hk, kt + h * hk, a->k_norm, hk, hp->rms_eps);
        }
        rope_apply(hp, qt, hp->n_head, hk, c->rope + t * hp->n_rot);
        rope_apply(hp, kt, hp->n_head_kv, hk, c->rope + t * hp->n_rot);
    }
    const int64_t hv = hp->n_embd_head_v;
    for (int64_t h = 0; h < hp->n_head_kv; h++)
        for (int64_t t = 0; t < n; t++) {
            void *kd = moe_kv_k(&c->kv, il, h, pos0 + t), *vd = moe_kv_v(&c->kv, il, h, pos0 + t);
            if (c->kv.f16) { /* rounded to nearest, as ggml_cpy into llama.cpp's F16 cache */
                moe_f16_from_float(k + t * nk + h * hk, kd, hk);
                moe_f16_from_float(v + t * nv + h * hv, vd, hv);
            } else {
                memcpy(kd, k + t * nk + h * hk, (size_t)hk * sizeof(float));
                memcpy(vd, v + t * nv + h * hv, (size_t)hv * sizeof(float));
            }
        }
    attn_job j = {c, il, n, pos0, 1.0f / sqrtf((float)hk)};
    moe_pool_run(c->pool, attn_task, &j);
    if (n == 1) prefetch_small(c->m->layers[il].ffn_norm, (size_t)d * sizeof(float)); /* the next norm */
    mm(c, &a->wo, c->att, n, c->y, d);
    if (a->bo) add_rows(c->y, a->bo, n, d, d);
    add_scaled(c->x, c->y, 1.0f, n * d, false);
}

/* ---------------------------------------------------------------- MoE FFN */

/* y = Σ_slots w · expert(xn) (+ shared expert) for n tokens: route every token, group
 * the tokens by expert, and run each expert once over all of its tokens, so each
 * expert's weights are read once per batch. */
/* Gate lookahead: the residual stream changes little from one layer to the next, so the
 * next MoE layer's router applied to this layer's normalised FFN input picks most of the
 * experts that layer will pick (the idea behind Pre-gated MoE and MoE-Infinity's
 * prefetching). Only a guess: it starts reads early and never changes results. */
static void lookahead(moe_context *c, int il, const moe_route_cfg *cfg) {
    const moe_model *m = c->m;
    int nl = il + 1;
    while (nl < m->hp.n_layer && !m->layers[nl].is_moe) nl++;
    if (nl >= m->hp.n_layer) return;
    moe_route_cfg g = *cfg;
    g.k = (int)MOE_MIN((int64_t)c->lookahead_n, m->hp.n_expert);
    mm(c, &m->layers[nl].router, c->xn, 1, c->look, m->hp.n_expert);
    moe_route_topk(&g, c->look, c->scores, c->look_ids, c->look_w);
    c->experts->ops->hint(c->experts, nl, c->look_ids, g.k, true);
}

#define MAX_FUSED_EXPERTS 16

/* SwiGLU + quantization of the hidden rows of the experts of one decoded token */
typedef struct {
    moe_context *c;
    int n;                                      /* experts */
    int64_t ff;
    const moe_type_traits *vt[MAX_FUSED_EXPERTS]; /* activation type of each down projection */
    int64_t r0[MAX_FUSED_EXPERTS];              /* grouped row of each expert */
    uint8_t *xq[MAX_FUSED_EXPERTS];             /* its prepared row */
} sw_job;

/* The quantization blocks of all experts' hidden rows, split between tasks: swiglu then
 * from_float of each block (the same values and bytes as over the whole row). */
static void swiglu_quant_task(void *arg, int ith, int nth) {
    const sw_job *j = arg;
    int64_t total = 0;
    for (int e = 0; e < j->n; e++) total += j->ff / j->vt[e]->block_size;
    int64_t b, end, base = 0;
    moe_split(total, ith, nth, 1, &b, &end);
    for (int e = 0; e < j->n && b < end; e++) {
        const int64_t bs = j->vt[e]->block_size, nb = j->ff / bs;
        const int64_t lo = MOE_MAX(b, base) - base, hi = MOE_MIN(end, base + nb) - base;
        if (lo < hi) {
            float *h = j->c->hg + j->r0[e] * j->ff + lo * bs;
            swiglu_part(j->c->hg + j->r0[e] * j->ff, j->c->ug + j->r0[e] * j->ff, lo * bs, hi * bs, j->ff);
            j->vt[e]->from_float(h, j->xq[e] + (size_t)lo * j->vt[e]->type_size, (hi - lo) * bs);
        }
        base += nb;
    }
}

/* Decode (one token): the gate and up projections of every chosen expert in one pool
 * run, SwiGLU and quantization in a second, all their down projections in a third,
 * instead of four runs per expert. Same kernels, same results as the loop of moe_block.
 * Every chosen expert is held (get) at once and released at the end. An offloader may
 * not have the slots for that at a given moment (at its smallest budget, one layer's
 * experts, while its I/O thread holds a slot for a guess it is reading): then *held is
 * set false, nothing is held, and the caller takes the experts one at a time. */
static void release_experts(moe_expert_provider *p, int il, const int32_t *ids, int n) {
    for (int ai = 0; ai < n && p->ops->release; ai++) p->ops->release(p, il, ids[ai]);
}

static moe_status experts_decode(moe_context *c, int il, int n_active, bool *held) {
    moe_expert_provider *p = c->experts;
    const int64_t d = c->m->hp.n_embd, ff = c->m->hp.n_ff_exp;
    const moe_expert_weights *W[MAX_FUSED_EXPERTS] = {0};
    moe_mv_seg sg[2 * MAX_FUSED_EXPERTS];
    *held = true;
    for (int ai = 0; ai < n_active; ai++) {
        W[ai] = p->ops->get(p, il, c->active[ai]);
        if (!W[ai]) {
            const moe_status st = moe_last_status() ? moe_last_status() : MOE_ERR_IO;
            release_experts(p, il, c->active, ai);
            if (st == MOE_ERR_NOMEM && p != c->m->experts) { /* no slot free now: one at a time */
                moe_clear_error();
                *held = false;
                return MOE_OK;
            }
            return st;
        }
    }
    bool fuse = n_active > 0; /* experts stored at different bitwidths may want other activation types */
    for (int ai = 0; ai < n_active; ai++)
        fuse = fuse && same_act(W[ai]->gate.type, W[0]->gate.type) && same_act(W[ai]->up.type, W[0]->gate.type);
    if (fuse) {
        /* every grouped row is the same token: one activation row for all gate/up rows */
        moe_act_prepare(c->pool, W[0]->gate.type, c->xn, c->xq, 1, d);
        for (int ai = 0; ai < n_active; ai++) {
            const int64_t r0 = c->start[c->active[ai]];
            sg[2 * ai] = (moe_mv_seg){&W[ai]->gate, c->xq, c->hg + r0 * ff};
            sg[2 * ai + 1] = (moe_mv_seg){&W[ai]->up, c->xq, c->ug + r0 * ff};
        }
        moe_matvec_multi(c->pool, sg, 2 * n_active);
    } else {
        for (int ai = 0; ai < n_active; ai++) {
            const int64_t r0 = c->start[c->active[ai]];
            mm(c, &W[ai]->gate, c->xn, 1, c->hg + r0 * ff, ff);
            mm_same_x(c, &W[ai]->up, W[ai]->gate.type, c->xn, 1, c->ug + r0 * ff, ff);
        }
    }
    /* the down projections' inputs side by side in xq, one row per expert: SwiGLU and
     * quantization of all of them in one pool run (block by block: both are elementwise
     * or per quantization block), then all down projections in one more */
    sw_job sj = {c, n_active, ff, {0}, {0}, {0}};
    uint8_t *xq = c->xq;
    for (int ai = 0; ai < n_active; ai++) {
        const int64_t r0 = c->start[c->active[ai]];
        sj.vt[ai] = moe_type_get(moe_type_get(W[ai]->down.type)->vec_dot_type);
        sj.r0[ai] = r0;
        sj.xq[ai] = xq;
        sg[ai] = (moe_mv_seg){&W[ai]->down, xq, c->og + r0 * d};
        xq += moe_act_row_size(W[ai]->down.type, ff);
    }
    if (n_active * ff >= 2048) moe_pool_run(c->pool, swiglu_quant_task, &sj);
    else swiglu_quant_task(&sj, 0, 1);
    const moe_model *m = c->m; /* the next norm: the next layer's, or the output's */
    prefetch_small(il + 1 < m->hp.n_layer ? m->layers[il + 1].attn.norm : m->output_norm, (size_t)d * sizeof(float));
    moe_matvec_multi(c->pool, sg, n_active);
    release_experts(p, il, c->active, n_active);
    return MOE_OK;
}

/* Routing by a training router (model.h: router_custom): the same forward the training
 * code runs, over the tokens of this batch, so a decoded token routes as it would have in
 * a batch of one. c->ids/c->w get [n × router_cols] choices, −1 = empty. */
static moe_status route_trained(moe_context *c, const moe_layer_weights *ly, int64_t n, const int32_t *tokens) {
    const moe_model *m = c->m;
    moe_router_cfg cfg = m->router;
    cfg.sel_bias = ly->sel_bias;
    moe_status st = moe_router_forward(&cfg, c->router, tokens, n, &c->rt);
    if (st) return st;
    const int64_t K = m->router_cols;
    if (c->rt.n_cols != K)
        return moe_error(MOE_ERR_INVALID, "router %s gave %d choices per token, expected %lld", moe_router_name(cfg.kind),
                         c->rt.n_cols, (long long)K);
    memcpy(c->ids, c->rt.expert, (size_t)(n * K) * sizeof *c->ids);
    memcpy(c->w, c->rt.weight, (size_t)(n * K) * sizeof *c->w);
    return MOE_OK;
}

/* The shared expert(s), added to the routed experts' output in c->y. */
static moe_status shared_expert(moe_context *c, const moe_layer_weights *ly, int64_t n) {
    const int64_t d = c->m->hp.n_embd;
    if (ly->shared.gate.data) {
        ffn(c, &ly->shared, c->xn, n, c->og);
        if (ly->shared_gate.data) { /* qwen2moe: scaled by sigmoid(x · ffn_gate_inp_shexp) */
            mm(c, &ly->shared_gate, c->xn, n, c->sg, 1);
            for (int64_t t = 0; t < n; t++) {
                const float g = 1.0f / (1.0f + expf(-c->sg[t]));
                add_scaled(c->y + t * d, c->og + t * d, g, d, false);
            }
        } else {                     /* deepseek: shared experts added as they are */
            add_scaled(c->y, c->og, 1.0f, n * d, false);
        }
    }
    return MOE_OK;
}

/* Soft MoE (Puigcerver et al.) mixes the batch's tokens into expert slots, so it runs as
 * the whole layer of moe/layer.h (the code training uses) on the F32 weights. */
static moe_status soft_moe_block(moe_context *c, const moe_layer_weights *ly, int64_t n, const int32_t *tokens) {
    moe_layer_params w;
    memset(&w, 0, sizeof w);
    w.router_w = (float *)ly->soft_phi;
    w.router_scale = (float *)ly->soft_scale;
    w.experts.gate = (float *)ly->soft_gate;
    w.experts.up = (float *)ly->soft_up;
    w.experts.down = (float *)ly->soft_down;
    return moe_layer_forward(&c->soft, c->y, c->xn, tokens, &w, n, c->pool);
}

static moe_status moe_block(moe_context *c, int il, int64_t n, const int32_t *tokens, int64_t pos0) {
    const moe_hparams *hp = &c->m->hp;
    const moe_layer_weights *ly = &c->m->layers[il];
    if (c->m->router.kind == MOE_ROUTER_SOFT_MOE) {
        moe_status st = soft_moe_block(c, ly, n, tokens);
        if (st) return st;
        return shared_expert(c, ly, n);
    }
    const int64_t d = hp->n_embd, E = hp->n_expert, K = c->m->router_cols, ff = hp->n_ff_exp;

    mm(c, &ly->router, c->xn, n, c->router, c->m->router_logits);
    moe_route_cfg cfg;
    memset(&cfg, 0, sizeof cfg);
    cfg.n_expert = (int)E;
    cfg.k = (int)K;
    cfg.score = MOE_SCORE_SOFTMAX;
    cfg.renorm = hp->expert_weights_norm;
    cfg.scale = hp->expert_weights_scale;
    if (c->m->router_custom) {
        moe_status st = route_trained(c, ly, n, tokens);
        if (st) return st;
    }
    for (int64_t t = 0; t < n; t++) {
        if (!c->m->router_custom) moe_route_topk(&cfg, c->router + t * E, c->scores, c->ids + t * K, c->w + t * K);
        if (c->route_fn) {
            moe_routing_event ev = {pos0 + t, tokens[t], il, (int)K, c->ids + t * K, c->w + t * K};
            c->route_fn(c->route_user, &ev);
        }
    }

    /* Group: rows of expert e are start[e] .. start[e+1]-1, tokens in order. */
    memset(c->start, 0, (size_t)(E + 1) * sizeof *c->start);
    for (int64_t i = 0; i < n * K; i++)
        if (c->ids[i] >= 0) c->start[c->ids[i] + 1]++;
    int n_active = 0;
    for (int64_t e = 0; e < E; e++) {
        if (c->start[e + 1]) c->active[n_active++] = (int32_t)e;
        c->start[e + 1] += c->start[e];
        c->cursor[e] = c->start[e];
    }
    for (int64_t i = 0; i < n * K; i++) {
        if (c->ids[i] < 0) { /* an empty choice (null expert, expert choice not taken) */
            c->row_of[i] = -1;
            continue;
        }
        const int32_t r = c->cursor[c->ids[i]]++;
        c->row_of[i] = r;
        c->row_tok[r] = (int32_t)(i / K);
    }
    for (int64_t r = 0; r < c->start[E]; r++) memcpy(c->xg + r * d, c->xn + (int64_t)c->row_tok[r] * d, (size_t)d * sizeof(float));

    moe_expert_provider *p = c->experts;
    if (p->ops->hint) {
        p->ops->hint(p, il, c->active, n_active, false);
        if (c->lookahead_n > 0 && n == 1) lookahead(c, il, &cfg);
    }
    /* fused decode holds all chosen experts at once: another provider (the offloader)
     * is only sure to hold n_expert_used of a layer (its smallest budget) */
    bool fused = n == 1 && n_active <= MAX_FUSED_EXPERTS && (p == c->m->experts || n_active <= hp->n_expert_used);
    if (fused) {
        moe_status st = experts_decode(c, il, n_active, &fused);
        if (st) return st;
    }
    for (int ai = 0; !fused && ai < n_active; ai++) {
        const int e = c->active[ai];
        const int64_t r0 = c->start[e], ne = c->start[e + 1] - r0;
        const moe_expert_weights *W = p->ops->get(p, il, e);
        if (!W) return moe_last_status() ? moe_last_status() : MOE_ERR_IO;
        const float *xe = c->xg + r0 * d;
        float *he = c->hg + r0 * ff, *ue = c->ug + r0 * ff;
        mm(c, &W->gate, xe, ne, he, ff);
        mm_same_x(c, &W->up, W->gate.type, xe, ne, ue, ff);
        swiglu(he, ue, ne, ff);
        mm(c, &W->down, he, ne, c->og + r0 * d, d);
        if (p->ops->release) p->ops->release(p, il, e);
    }

    /* Combine as ggml does: each expert's output times its weight, summed in slot order. */
    for (int64_t t = 0; t < n; t++) {
        float *yt = c->y + t * d;
        bool first = true;
        for (int64_t s = 0; s < K; s++) {
            if (c->row_of[t * K + s] < 0) continue;
            const float *o = c->og + (int64_t)c->row_of[t * K + s] * d;
            const float ws = c->w[t * K + s];
            add_scaled(yt, o, ws, d, first);
            first = false;
        }
        if (first) memset(yt, 0, (size_t)d * sizeof *yt); /* every choice empty (AdaMoE: only null experts) */
        if (c->m->router.kind == MOE_ROUTER_BASE) /* BASE layers: y = x + σ(x·c_e)·f_e(x) */
            add_scaled(yt, c->xn + t * d, 1.0f, d, false);
    }

    return shared_expert(c, ly, n);
}

/* ---------------------------------------------------------------- one batch */

/* Tokens [n ≤ n_batch] at positions pos .. pos+n-1. out: n rows of logits, or one (the
 * last token's) with last_only, or none when NULL. */
static moe_status forward(moe_context *c, const int32_t *tokens, int64_t n, float *out, bool last_only) {
    const moe_model *m = c->m;
    const moe_hparams *hp = &m->hp;
    const int64_t d = hp->n_embd, pos0 = c->pos;
    for (int64_t t = 0; t < n; t++) {
        moe_mat_get_row(&m->tok_embd, tokens[t], c->x + t * d);
        rope_cache(hp, c->corr_dims, pos0 + t, c->rope + t * hp->n_rot);
    }
    for (int il = 0; il < hp->n_layer; il++) {
        const moe_layer_weights *ly = &m->layers[il];
        attention(c, il, n, pos0);
        for (int64_t t = 0; t < n; t++) rms_norm(c->xn + t * d, c->x + t * d, ly->ffn_norm, d, hp->rms_eps);
        if (ly->is_moe) {
            moe_status st = moe_block(c, il, n, tokens, pos0);
            if (st) return st;
        } else {
            ffn(c, &ly->dense, c->xn, n, c->y);
        }
        add_scaled(c->x, c->y, 1.0f, n * d, false);
    }
    c->pos += n;
    if (!out) return MOE_OK;
    const int64_t t0 = last_only ? n - 1 : 0, rows = n - t0;
    for (int64_t t = 0; t < rows; t++) rms_norm(c->xn + t * d, c->x + (t0 + t) * d, m->output_norm, d, hp->rms_eps);
    mm(c, &m->output, c->xn, rows, out, hp->n_vocab);
    return MOE_OK;
}

moe_status moe_eval(moe_context *c, const int32_t *tokens, int64_t n, float *logits, unsigned flags) {
    if (!c || n < 0 || (n > 0 && !tokens)) return moe_error(MOE_ERR_INVALID, "moe_eval: invalid arguments");
    if (n == 0) return MOE_OK;
    const moe_hparams *hp = &c->m->hp;
    for (int64_t i = 0; i < n; i++)
        if (tokens[i] < 0 || tokens[i] >= hp->n_vocab)
            return moe_error(MOE_ERR_INVALID, "token id %d (at index %lld) is out of range: the vocabulary has %lld tokens",
                             tokens[i], (long long)i, (long long)hp->n_vocab);
    if (n > c->n_ctx - c->pos)
        return moe_error(MOE_ERR_INVALID, "context is full: %lld tokens evaluated + %lld new > n_ctx %lld",
                         (long long)c->pos, (long long)n, (long long)c->n_ctx);
    const bool last_only = flags & MOE_EVAL_LAST_ONLY;
    const int64_t pos_start = c->pos;
    for (int64_t i0 = 0; i0 < n; i0 += c->n_batch) {
        const int64_t nb = MOE_MIN(c->n_batch, n - i0);
        float *out = NULL;
        if (logits && !last_only) out = logits + i0 * hp->n_vocab;
        if (logits && last_only && i0 + nb == n) out = logits;
        moe_status st = forward(c, tokens + i0, nb, out, last_only);
        if (st) {
            c->pos = pos_start; /* the cache beyond pos is never read */
            return st;
        }
    }
    return MOE_OK;
}

/* ---------------------------------------------------------------- context */

/* count × elem floats/ints from the arena, overflow-checked. */
static void *scratch(moe_context *c, uint64_t count, uint64_t elem, bool *ok) {
    uint64_t bytes;
    if (!*ok) return NULL;
    if (!moe_mul_ok(count, elem, &bytes) || bytes > SIZE_MAX / 2) {
        *ok = false;
        return moe_error_null(MOE_ERR_NOMEM, "context scratch of %llu × %llu bytes overflows",
                              (unsigned long long)count, (unsigned long long)elem);
    }
    void *p = moe_arena_alloc(&c->arena, (size_t)MOE_MAX(bytes, 1), 64);
    if (!p) *ok = false;
    return p;
}

moe_context *moe_context_init(moe_model *m, int64_t n_ctx) {
    if (!m) return moe_error_null(MOE_ERR_INVALID, "moe_context_init: no model");
    const moe_hparams *hp = &m->hp;
    if (n_ctx <= 0) n_ctx = hp->n_ctx_train > 0 ? MOE_MIN(hp->n_ctx_train, DEFAULT_CTX) : DEFAULT_CTX;
    if (n_ctx > (INT64_C(1) << 24))
        return moe_error_null(MOE_ERR_INVALID, "n_ctx %lld is too large (max %lld)", (long long)n_ctx,
                              (long long)(INT64_C(1) << 24));
    moe_context *c = moe_calloc(1, sizeof *c);
    if (!c) return NULL;
    c->m = m;
    c->experts = m->experts;
    c->n_ctx = n_ctx;
    c->n_batch = MOE_MIN(n_ctx, MAX_BATCH);
    moe_arena_init(&c->arena, 0);
    const int64_t d = hp->n_embd, hk = hp->n_embd_head_k, hv = hp->n_embd_head_v;
    const int64_t nq = hp->n_head * hk, na = hp->n_head * hv;
    if (!(c->pool = moe_pool_create(m->params.n_threads)) ||
        moe_kv_cache_init(&c->kv, hp->n_layer, n_ctx, hp->n_head_kv, hk, hv, m->params.kv_type == MOE_KV_F16)) {
        moe_context_free(c);
        return NULL;
    }
    const uint64_t nb = (uint64_t)c->n_batch, E = (uint64_t)MOE_MAX(hp->n_expert, 1);
    const uint64_t K = (uint64_t)MOE_MAX(m->router_cols, 1), rows = nb * K;
    const uint64_t L = (uint64_t)MOE_MAX(m->router_logits, 1);
    /* Widest FFN activation of a batch: k expert rows per token, or the shared/dense FFN. */
    uint64_t ffw = MOE_MAX((uint64_t)hp->n_ff_exp * K, (uint64_t)MOE_MAX(hp->n_ff_shexp, hp->n_ff));
    /* Largest matmul input (values); F32 (4 bytes) is the widest activation type. */
    uint64_t act = MOE_MAX(MOE_MAX(nb * (uint64_t)d * K, nb * (uint64_t)na), nb * ffw);
    bool ok = true;
    c->x = scratch(c, nb * d, 4, &ok);
    c->xn = scratch(c, nb * d, 4, &ok);
    c->y = scratch(c, nb * d, 4, &ok);
    c->q = scratch(c, nb * nq, 4, &ok);
    c->kb = scratch(c, nb * (uint64_t)(hp->n_head_kv * hk), 4, &ok);
    c->vb = scratch(c, nb * (uint64_t)(hp->n_head_kv * hv), 4, &ok);
    c->att = scratch(c, nb * na, 4, &ok);
    c->rope = scratch(c, nb * MOE_MAX(hp->n_rot, 1), 4, &ok);
    c->probs = scratch(c, (uint64_t)moe_pool_size(c->pool) * (uint64_t)attn_prob_rows(hp) * (uint64_t)n_ctx, 4, &ok);
    c->xq = scratch(c, act, 4, &ok);
    c->router = scratch(c, nb * L, 4, &ok);
    c->scores = scratch(c, E, 4, &ok);
    c->ids = scratch(c, rows, 4, &ok);
    c->w = scratch(c, rows, 4, &ok);
    c->row_of = scratch(c, rows, 4, &ok);
    c->row_tok = scratch(c, rows, 4, &ok);
    c->start = scratch(c, E + 1, 4, &ok);
    c->cursor = scratch(c, E, 4, &ok);
    c->active = scratch(c, E, 4, &ok);
    c->xg = scratch(c, rows * d, 4, &ok);
    c->og = scratch(c, rows * d, 4, &ok);
    c->hg = scratch(c, nb * ffw, 4, &ok);
    c->ug = scratch(c, nb * ffw, 4, &ok);
    c->sg = scratch(c, nb, 4, &ok);
    c->look = scratch(c, E, 4, &ok);
    c->look_ids = scratch(c, E, 4, &ok);
    c->look_w = scratch(c, E, 4, &ok);
    if (!ok) {
        moe_context_free(c);
        return NULL;
    }
    int64_t n_ctx_orig = hp->rope_n_ctx_orig > 0 ? hp->rope_n_ctx_orig : hp->n_ctx_train;
    float lo = floorf(yarn_corr_dim(hp->n_rot, n_ctx_orig, hp->yarn_beta_fast, hp->rope_freq_base));
    float hi = ceilf(yarn_corr_dim(hp->n_rot, n_ctx_orig, hp->yarn_beta_slow, hp->rope_freq_base));
    c->corr_dims[0] = MOE_MAX(0.0f, lo);
    c->corr_dims[1] = MOE_MIN((float)(hp->n_rot - 1), hi);
    if (m->router.kind == MOE_ROUTER_SOFT_MOE) {
        moe_layer_cfg lc;
        memset(&lc, 0, sizeof lc);
        lc.router = m->router;
        lc.d = hp->n_embd;
        lc.ff = hp->n_ff_exp;
        lc.act = MOE_FFN_SWIGLU;
        if (moe_layer_init(&c->soft, &lc) != MOE_OK) {
            moe_context_free(c);
            return NULL;
        }
    }
    return c;
}

void moe_context_free(moe_context *c) {
    if (!c) return;
    moe_routing_free(&c->rt);
    moe_layer_free(&c->soft);
    moe_pool_free(c->pool);
    moe_kv_cache_free(&c->kv);
    moe_arena_free(&c->arena);
    free(c);
}

int64_t moe_context_n_ctx(const moe_context *c) { return c->n_ctx; }
int64_t moe_context_pos(const moe_context *c) { return c->pos; }
void moe_context_reset(moe_context *c) { c->pos = 0; }

void moe_context_set_routing_hook(moe_context *c, moe_routing_fn fn, void *user) {
    c->route_fn = fn;
    c->route_user = user;
}

moe_pool *moe_context_pool(moe_context *c) { return c->pool; }

void moe_context_set_lookahead(moe_context *c, int n) { c->lookahead_n = n > 0 ? n : 0; }

uint64_t moe_context_memory_bytes(const moe_context *c) {
    return (uint64_t)c->arena.used_total +
           moe_kv_cache_bytes(c->kv.n_layer, c->kv.n_ctx, c->kv.n_head, c->kv.k_head, c->kv.v_head, c->kv.f16);
}

void moe_context_set_expert_provider(moe_context *c, moe_expert_provider *p) {
    c->experts = p ? p : c->m->experts;
}
