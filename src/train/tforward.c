/* tforward.c — forward and backward pass of the whole training model (tmodel.h):
 * embedding, RMSNorm, attention (GQA, RoPE, optional q/k norm and q/k/v biases, causal
 * softmax), the FFN (dense, or the MoE layer of moe/layer.h with shared experts), final
 * norm, output head and cross-entropy. Matmuls are OpenBLAS sgemm; rows and heads are
 * split over the thread pool by index, so results do not depend on timing. */
#include "train/tmodel.h"
#include "core/types.h"

#include <cblas.h>
#include <math.h>
#include <stdlib.h>

/* ---------------------------------------------------------------- matmul helpers */

/* y [n × out] = x [n × in] · Wᵀ (W [out × in]) */
static void matmul_forward(float *y, const float *x, const float *W, int64_t n, int64_t in, int64_t out) {
    cblas_sgemm(CblasRowMajor, CblasNoTrans, CblasTrans, (int)n, (int)out, (int)in, 1.0f, x, (int)in, W, (int)in, 0.0f,
                y, (int)out);
}

/* dx [n × in] (= or +=) dy·W ; dW [out × in] += dyᵀ·x */
static void matmul_backward(float *dx, float *dW, const float *dy, const float *x, const float *W, int64_t n,
                            int64_t in, int64_t out, bool accumulate_dx) {
    if (dx)
        cblas_sgemm(CblasRowMajor, CblasNoTrans, CblasNoTrans, (int)n, (int)in, (int)out, 1.0f, dy, (int)out, W,
                    (int)in, accumulate_dx ? 1.0f : 0.0f, dx, (int)in);
    if (dW)
        cblas_sgemm(CblasRowMajor, CblasTrans, CblasNoTrans, (int)out, (int)in, (int)n, 1.0f, dy, (int)out, x, (int)in,
                    1.0f, dW, (int)in);
}

/* db [out] += Σ_rows dy */
static void bias_backward(float *db, const float *dy, int64_t n, int64_t out) {
    if (!db) return;
    for (int64_t t = 0; t < n; t++)
        for (int64_t i = 0; i < out; i++) db[i] += dy[t * out + i];
}

static void add_bias(float *y, const float *b, int64_t n, int64_t out) {
    if (!b) return;
    for (int64_t t = 0; t < n; t++)
        for (int64_t i = 0; i < out; i++) y[t * out + i] += b[i];
}

/* ---------------------------------------------------------------- RMSNorm */

typedef struct {
    float *y, *rstd, *dx, *dw;
    const float *x, *w, *dy;
    int64_t rows, n;
    float eps;
    bool accumulate;
} norm_job;

/* y = x · rsqrt(mean(x²) + eps) ⊙ w per row of n (sum of squares in double, as the
 * inference pass does). */
static void norm_fwd_task(void *arg, int ith, int nth) {
    const norm_job *j = arg;
    int64_t r0, r1;
    moe_split(j->rows, ith, nth, 1, &r0, &r1);
    for (int64_t r = r0; r < r1; r++) {
        const float *x = j->x + r * j->n;
        float *y = j->y + r * j->n;
        double ss = 0;
        for (int64_t i = 0; i < j->n; i++) ss += (double)(x[i] * x[i]);
        const float s = 1.0f / sqrtf((float)(ss / (double)j->n) + j->eps);
        j->rstd[r] = s;
        for (int64_t i = 0; i < j->n; i++) y[i] = (x[i] * s) * j->w[i];
    }
}

/* dx = s·(g − x·s²·⟨g, x⟩/n) with g = dy ⊙ w, per row; dw (columns split over threads,
 * so no two threads write the same element) += Σ_rows dy ⊙ x·s. */
static void norm_bwd_task(void *arg, int ith, int nth) {
    const norm_job *j = arg;
    const int64_t n = j->n;
    int64_t r0, r1;
    moe_split(j->rows, ith, nth, 1, &r0, &r1);
    for (int64_t r = r0; r < r1; r++) {
        const float *x = j->x + r * n, *dy = j->dy + r * n;
        float *dx = j->dx + r * n;
        const float s = j->rstd[r];
        double dot = 0;
        for (int64_t i = 0; i < n; i++) dot += (double)(dy[i] * j->w[i]) * x[i];
        const float c = (float)(dot / (double)n) * s * s;
        if (j->accumulate)
            for (int64_t i = 0; i < n; i++) dx[i] += s * (dy[i] * j->w[i] - x[i] * c);
        else
            for (int64_t i = 0; i < n; i++) dx[i] = s * (dy[i] * j->w[i] - x[i] * c);
    }
    if (!j->dw) return;
    int64_t c0, c1;
    moe_split(n, ith, nth, 1, &c0, &c1);
    for (int64_t r = 0; r < j->rows; r++) {
        const float *x = j->x + r * n, *dy = j->dy + r * n;
        const float s = j->rstd[r];
        for (int64_t i = c0; i < c1; i++) j->dw[i] += dy[i] * x[i] * s;
    }
}

static void rmsnorm_forward(moe_pool *p, float *y, float *rstd, const float *x, const float *w, int64_t rows,
                            int64_t n, float eps) {
    norm_job j = {.y = y, .rstd = rstd, .x = x, .w = w, .rows = rows, .n = n, .eps = eps};
    moe_pool_run(p, norm_fwd_task, &j);
}

static void rmsnorm_backward(moe_pool *p, float *dx, float *dw, const float *dy, const float *x, const float *rstd,
                             const float *w, int64_t rows, int64_t n, bool accumulate) {
    norm_job j = {.dx = dx, .dw = dw, .dy = dy, .x = x, .rstd = (float *)rstd, .w = w, .rows = rows, .n = n,
                  .accumulate = accumulate};
    moe_pool_run(p, norm_bwd_task, &j);
}

/* ---------------------------------------------------------------- RoPE */

/* (cos, sin) for positions 0..T-1 exactly as the inference pass computes them
 * (theta multiplied by base^(-2/n_rot) per pair, in float). */
static void rope_table(const moe_hparams *hp, int64_t T, float *cs) {
    const float theta_scale = powf(hp->rope_freq_base, -2.0f / (float)hp->n_rot);
    for (int64_t t = 0; t < T; t++) {
        float theta = (float)t;
        for (int64_t i0 = 0; i0 < hp->n_rot; i0 += 2) {
            cs[t * hp->n_rot + i0] = cosf(theta);
            cs[t * hp->n_rot + i0 + 1] = sinf(theta);
            theta *= theta_scale;
        }
    }
}

/* Rotates (inverse = the transpose, for the backward pass) the first n_rot values of
 * each head of n rows of width heads·hd; row r is at position r mod T. */
static void rope_rows(const moe_hparams *hp, float *v, int64_t n, int64_t T, int64_t heads, int64_t hd,
                      const float *cs, bool inverse) {
    const int64_t n_rot = hp->n_rot, half = n_rot / 2;
    const bool neox = hp->rope_type == MOE_ROPE_NEOX;
    for (int64_t r = 0; r < n; r++) {
        const float *c = cs + (r % T) * n_rot;
        for (int64_t h = 0; h < heads; h++) {
            float *x = v + r * heads * hd + h * hd;
            for (int64_t i0 = 0; i0 < n_rot; i0 += 2) {
                const float co = c[i0], si = inverse ? -c[i0 + 1] : c[i0 + 1];
                const int64_t a = neox ? i0 / 2 : i0, b = neox ? i0 / 2 + half : i0 + 1;
                const float x0 = x[a], x1 = x[b];
                x[a] = x0 * co - x1 * si;
                x[b] = x0 * si + x1 * co;
            }
        }
    }
}

/* ---------------------------------------------------------------- attention */

/* y += a·x. Each element is independent (and -std=c11 keeps a·x + y unfused), so the
 * vectorised loop gives exactly the scalar loop's results; GCC's -O2 cost model would
 * leave it scalar, hence the attribute. */
#if defined(__GNUC__) && !defined(__clang__)
__attribute__((optimize("tree-vectorize")))
#endif
static void axpy(int64_t n, float a, const float *restrict x, float *restrict y) {
    for (int64_t i = 0; i < n; i++) y[i] += a * x[i];
}

typedef struct {
    const tm_model *m;
    tm_layer_acts *a;
    float *dq, *dk, *dv;
    const float *dao;
} attn_job;

/* One (sequence, head) at a time: causal softmax(q·kᵀ/√hd)·v. */
static void attn_fwd_task(void *arg, int ith, int nth) {
    const attn_job *j = arg;
    const moe_hparams *hp = &j->m->c.hp;
    const int64_t T = j->m->T, H = hp->n_head, Hkv = hp->n_head_kv, hd = hp->n_embd_head_k;
    const int64_t nq = H * hd, nk = Hkv * hd, grp = H / Hkv;
    const float scale = 1.0f / sqrtf((float)hd);
    const moe_vec_dot_fn dot_f32 = moe_type_get(MOE_TYPE_F32)->vec_dot; /* SIMD where available */
    tm_layer_acts *a = j->a;
    int64_t i0, i1;
    moe_split(j->m->B * H, ith, nth, 1, &i0, &i1);
    for (int64_t bh = i0; bh < i1; bh++) {
        const int64_t b = bh / H, h = bh % H, kh = h / grp;
        for (int64_t t = 0; t < T; t++) {
            const float *q = a->q + (b * T + t) * nq + h * hd;
            float *p = a->att + (bh * T + t) * T;
            float mx = -INFINITY;
            for (int64_t s = 0; s <= t; s++) {
                float dot;
                dot_f32(hd, &dot, a->k + (b * T + s) * nk + kh * hd, q);
                p[s] = dot * scale;
                if (p[s] > mx) mx = p[s];
            }
            double sum = 0;
            for (int64_t s = 0; s <= t; s++) {
                p[s] = expf(p[s] - mx);
                sum += p[s];
            }
            const float inv = (float)(1.0 / sum);
            for (int64_t s = 0; s <= t; s++) p[s] *= inv;
            for (int64_t s = t + 1; s < T; s++) p[s] = 0;
            float *o = a->ao + (b * T + t) * nq + h * hd;
            memset(o, 0, (size_t)hd * sizeof *o);
            for (int64_t s = 0; s <= t; s++) axpy(hd, p[s], a->v + (b * T + s) * nk + kh * hd, o);
        }
    }
}

/* One (sequence, kv head) at a time, with every query head of its group, so dk and dv
 * rows belong to one thread. */
static void attn_bwd_task(void *arg, int ith, int nth) {
    const attn_job *j = arg;
    const moe_hparams *hp = &j->m->c.hp;
    const int64_t T = j->m->T, H = hp->n_head, Hkv = hp->n_head_kv, hd = hp->n_embd_head_k;
    const int64_t nq = H * hd, nk = Hkv * hd, grp = H / Hkv;
    const float scale = 1.0f / sqrtf((float)hd);
    const moe_vec_dot_fn dot_f32 = moe_type_get(MOE_TYPE_F32)->vec_dot;
    const tm_layer_acts *a = j->a;
    float *dp = j->m->scratch + (size_t)ith * (size_t)T;
    int64_t i0, i1;
    moe_split(j->m->B * Hkv, ith, nth, 1, &i0, &i1);
    for (int64_t bk = i0; bk < i1; bk++) {
        const int64_t b = bk / Hkv, kh = bk % Hkv;
        for (int64_t s = 0; s < T; s++) {
            memset(j->dk + (b * T + s) * nk + kh * hd, 0, (size_t)hd * sizeof(float));
            memset(j->dv + (b * T + s) * nk + kh * hd, 0, (size_t)hd * sizeof(float));
        }
        for (int64_t h = kh * grp; h < (kh + 1) * grp; h++) {
            const int64_t bh = b * H + h;
            for (int64_t t = 0; t < T; t++) {
                const float *p = a->att + (bh * T + t) * T;
                const float *dout = j->dao + (b * T + t) * nq + h * hd;
                const float *q = a->q + (b * T + t) * nq + h * hd;
                float *dq = j->dq + (b * T + t) * nq + h * hd;
                double pdp = 0;
                for (int64_t s = 0; s <= t; s++) {
                    const float *v = a->v + (b * T + s) * nk + kh * hd;
                    float *dv = j->dv + (b * T + s) * nk + kh * hd;
                    float dot;
                    dot_f32(hd, &dot, v, dout);
                    axpy(hd, p[s], dout, dv);
                    dp[s] = dot;
                    pdp += (double)p[s] * dot;
                }
                memset(dq, 0, (size_t)hd * sizeof *dq);
                for (int64_t s = 0; s <= t; s++) {
                    const float ds = p[s] * (dp[s] - (float)pdp) * scale;
                    const float *k = a->k + (b * T + s) * nk + kh * hd;
                    float *dk = j->dk + (b * T + s) * nk + kh * hd;
                    axpy(hd, ds, k, dq);
                    axpy(hd, ds, q, dk);
                }
            }
        }
    }
}

/* ---------------------------------------------------------------- cross-entropy */

typedef struct {
    tm_model *m;
    double *row_loss;
    float scale;
} ce_job;

/* logits → probabilities in place, per-row loss −log p[target]. */
static void ce_fwd_task(void *arg, int ith, int nth) {
    ce_job *j = arg;
    const int64_t V = j->m->c.hp.n_vocab;
    int64_t r0, r1;
    moe_split(j->m->N, ith, nth, 1, &r0, &r1);
    for (int64_t r = r0; r < r1; r++) {
        float *l = j->m->logits + r * V;
        float mx = -INFINITY;
        for (int64_t i = 0; i < V; i++) mx = l[i] > mx ? l[i] : mx;
        double sum = 0;
        for (int64_t i = 0; i < V; i++) sum += exp((double)(l[i] - mx));
        const int32_t y = j->m->targets[r];
        j->row_loss[r] = -((double)(l[y] - mx) - log(sum));
        const double inv = 1.0 / sum;
        for (int64_t i = 0; i < V; i++) l[i] = (float)(exp((double)(l[i] - mx)) * inv);
    }
}

/* probabilities → dlogits = scale·(p − onehot) in place */
static void ce_bwd_task(void *arg, int ith, int nth) {
    ce_job *j = arg;
    const int64_t V = j->m->c.hp.n_vocab;
    int64_t r0, r1;
    moe_split(j->m->N, ith, nth, 1, &r0, &r1);
    for (int64_t r = r0; r < r1; r++) {
        float *l = j->m->logits + r * V;
        for (int64_t i = 0; i < V; i++) l[i] *= j->scale;
        l[j->m->targets[r]] -= j->scale;
    }
}

/* ---------------------------------------------------------------- buffers */

static bool is_moe(const tm_model *m, int il) { return m->c.moe_layer[il]; }
static bool gated_shared(const tm_model *m, int il) {
    return is_moe(m, il) && m->c.arch->shared_gate && m->c.hp.n_ff_shexp > 0;
}
/* width of the FFN this file runs itself in layer il (dense, or the gated shared expert) */
static int64_t own_ffn_width(const tm_model *m, int il) {
    if (!is_moe(m, il)) return m->c.hp.n_ff;
    return gated_shared(m, il) ? m->c.hp.n_ff_shexp : 0;
}

static moe_status ensure_buffers(tm_model *m, int64_t B, int64_t T) {
    const moe_hparams *hp = &m->c.hp;
    const int64_t N = B * T;
    m->B = B;
    m->T = T;
    m->N = N;
    if (B == m->cap_B && T == m->cap_T) {
        rope_table(hp, T, m->rope);
        return MOE_OK;
    }
    const int64_t d = hp->n_embd, hd = hp->n_embd_head_k, H = hp->n_head, Hkv = hp->n_head_kv;
    const int64_t nq = H * hd, nk = Hkv * hd, V = hp->n_vocab;
    int64_t maxff = MOE_MAX(hp->n_ff, hp->n_ff_shexp);
    for (int il = 0; il < hp->n_layer; il++) {
        free(m->acts[il].x);
        memset(&m->acts[il], 0, sizeof m->acts[il]);
        const int64_t ff = own_ffn_width(m, il);
        uint64_t per = (uint64_t)N * (uint64_t)(5 * d + 3 * nq + 3 * nk + nk + H + Hkv + nq + 2 + 4 * ff +
                                                (gated_shared(m, il) ? d + 1 : 0)) +
                       (uint64_t)B * H * T * T;
        float *p = moe_aligned_alloc(per * sizeof(float));
        if (!p) return moe_error(MOE_ERR_NOMEM, "training: cannot allocate activations for %lld tokens", (long long)N);
        tm_layer_acts *a = &m->acts[il];
#define TAKE(f, cnt) do { a->f = p; p += (cnt); } while (0)
        TAKE(x, N * d); TAKE(xn1, N * d); TAKE(rstd1, N); TAKE(qp, N * nq); TAKE(kp, N * nk); TAKE(qrs, N * H);
        TAKE(krs, N * Hkv); TAKE(qn, N * nq); TAKE(kn, N * nk); TAKE(q, N * nq); TAKE(k, N * nk); TAKE(v, N * nk);
        TAKE(att, B * H * T * T); TAKE(ao, N * nq); TAKE(xm, N * d); TAKE(xn2, N * d); TAKE(rstd2, N);
        if (ff) { TAKE(fA, N * ff); TAKE(fU, N * ff); TAKE(fS, N * ff); TAKE(fH, N * ff); }
        if (gated_shared(m, il)) { TAKE(sh_o, N * d); TAKE(sg, N); }
#undef TAKE
    }
    free(m->xf);
    free(m->scratch);
    int nth = m->pool ? moe_pool_size(m->pool) : 1;
    m->scratch = moe_aligned_alloc((size_t)MOE_MAX(nth, 1) * (size_t)T * sizeof(float));
    uint64_t glob = (uint64_t)N * (uint64_t)(7 * d + 1 + V + 3 * nq + 2 * nk + 2 * maxff) + (uint64_t)T * hp->n_rot;
    float *p = m->xf = moe_aligned_alloc(glob * sizeof(float));
    if (!p || !m->scratch)
        return moe_error(MOE_ERR_NOMEM, "training: cannot allocate activations for %lld tokens", (long long)N);
#define TAKE(f, cnt) do { m->f = p; p += (cnt); } while (0)
    p += N * d; /* xf */
    TAKE(xnf, N * d); TAKE(rstdf, N); TAKE(logits, N * V); TAKE(rope, T * hp->n_rot); TAKE(dx, N * d);
    TAKE(dxm, N * d); TAKE(dxn, N * d); TAKE(dtmp, N * MOE_MAX(d, nq)); TAKE(dq, N * nq); TAKE(dk, N * nk); TAKE(dv, N * nk);
    TAKE(dao, N * nq); TAKE(dA, N * maxff); TAKE(dU, N * maxff); TAKE(dsh, N * d);
#undef TAKE
    m->cap_B = B;
    m->cap_T = T;
    rope_table(hp, T, m->rope);
    return MOE_OK;
}

void tm_zero_grad(tm_model *m) { memset(m->grads, 0, m->n_params * sizeof(float)); }

/* ---------------------------------------------------------------- layer passes */

/* a->xm = a->x + attention(rmsnorm(a->x)) */
static void attention_forward(tm_model *m, int il) {
    const moe_hparams *hp = &m->c.hp;
    const tm_layer_w *w = &m->w.layers[il];
    tm_layer_acts *a = &m->acts[il];
    const int64_t N = m->N, d = hp->n_embd, hd = hp->n_embd_head_k, H = hp->n_head, Hkv = hp->n_head_kv;
    const int64_t nq = H * hd, nk = Hkv * hd;
    rmsnorm_forward(m->pool, a->xn1, a->rstd1, a->x, w->attn_norm, N, d, hp->rms_eps);
    matmul_forward(a->qp, a->xn1, w->wq, N, d, nq);
    matmul_forward(a->kp, a->xn1, w->wk, N, d, nk);
    matmul_forward(a->v, a->xn1, w->wv, N, d, nk);
    add_bias(a->qp, w->bq, N, nq);
    add_bias(a->kp, w->bk, N, nk);
    add_bias(a->v, w->bv, N, nk);
    if (hp->qk_norm == MOE_QK_NORM_FULL) {
        rmsnorm_forward(m->pool, a->qn, a->qrs, a->qp, w->q_norm, N, nq, hp->rms_eps);
        rmsnorm_forward(m->pool, a->kn, a->krs, a->kp, w->k_norm, N, nk, hp->rms_eps);
    } else if (hp->qk_norm == MOE_QK_NORM_HEAD) {
        rmsnorm_forward(m->pool, a->qn, a->qrs, a->qp, w->q_norm, N * H, hd, hp->rms_eps);
        rmsnorm_forward(m->pool, a->kn, a->krs, a->kp, w->k_norm, N * Hkv, hd, hp->rms_eps);
    } else {
        memcpy(a->qn, a->qp, (size_t)(N * nq) * sizeof(float));
        memcpy(a->kn, a->kp, (size_t)(N * nk) * sizeof(float));
    }
    memcpy(a->q, a->qn, (size_t)(N * nq) * sizeof(float));
    memcpy(a->k, a->kn, (size_t)(N * nk) * sizeof(float));
    rope_rows(hp, a->q, N, m->T, H, hd, m->rope, false);
    rope_rows(hp, a->k, N, m->T, Hkv, hd, m->rope, false);
    attn_job j = {.m = m, .a = a};
    moe_pool_run(m->pool, attn_fwd_task, &j);
    matmul_forward(a->xm, a->ao, w->wo, N, nq, d);
    for (int64_t i = 0; i < N * d; i++) a->xm[i] += a->x[i];
}

/* out = a->xm + ffn(rmsnorm(a->xm)) */
static moe_status ffn_forward(tm_model *m, int il, float *out) {
    const moe_hparams *hp = &m->c.hp;
    const tm_layer_w *w = &m->w.layers[il];
    tm_layer_acts *a = &m->acts[il];
    const int64_t N = m->N, d = hp->n_embd;
    rmsnorm_forward(m->pool, a->xn2, a->rstd2, a->xm, w->ffn_norm, N, d, hp->rms_eps);
    int64_t off1[2] = {0, N};
    if (!is_moe(m, il)) {
        moe_ffn_acts fa = {a->fA, a->fU, a->fS, a->fH};
        moe_experts_forward(out, &fa, a->xn2, off1, 1, &w->dense, d, hp->n_ff, MOE_FFN_SWIGLU, false, m->pool);
    } else {
        moe_layer_params lp = {.router_w = w->router_w, .router_scale = w->router_scale, .experts = w->experts,
                               .shared = w->shared};
        lp.router_b = w->sel_bias;
        if (gated_shared(m, il)) memset(&lp.shared, 0, sizeof lp.shared);
        moe_status st = moe_layer_forward(&m->moe[il], out, a->xn2, m->tokens, &lp, N, m->pool);
        if (st) return st;
        m->aux_loss += m->moe[il].rt.aux_loss;
        m->z_loss += m->moe[il].rt.z_loss;
        if (gated_shared(m, il)) { /* qwen2moe: + sigmoid(x·w_g) · shared(x) */
            moe_ffn_acts fa = {a->fA, a->fU, a->fS, a->fH};
            moe_experts_forward(a->sh_o, &fa, a->xn2, off1, 1, &w->shared, d, hp->n_ff_shexp, MOE_FFN_SWIGLU, false,
                                m->pool);
            matmul_forward(a->sg, a->xn2, w->shared_gate, N, d, 1);
            for (int64_t t = 0; t < N; t++) {
                const float g = 1.0f / (1.0f + expf(-a->sg[t]));
                for (int64_t i = 0; i < d; i++) out[t * d + i] += g * a->sh_o[t * d + i];
            }
        }
    }
    for (int64_t i = 0; i < N * d; i++) out[i] += a->xm[i];
    return MOE_OK;
}

moe_status tm_forward(tm_model *m, const int32_t *tokens, const int32_t *targets, int64_t B, int64_t T) {
    const moe_hparams *hp = &m->c.hp;
    if (B < 1 || T < 1) return moe_error(MOE_ERR_INVALID, "training: empty batch");
    moe_status st = ensure_buffers(m, B, T);
    if (st) return st;
    const int64_t N = m->N, d = hp->n_embd, V = hp->n_vocab;
    for (int64_t i = 0; i < N; i++)
        if (tokens[i] < 0 || tokens[i] >= V || (targets && (targets[i] < 0 || targets[i] >= V)))
            return moe_error(MOE_ERR_INVALID, "training: token id out of range at %lld (vocabulary %lld)", (long long)i,
                             (long long)V);
    m->tokens = tokens;
    m->targets = targets;
    m->aux_loss = m->z_loss = 0;
    for (int64_t t = 0; t < N; t++) memcpy(m->acts[0].x + t * d, m->w.tok_embd + (int64_t)tokens[t] * d, (size_t)d * sizeof(float));
    for (int il = 0; il < hp->n_layer; il++) {
        double t0 = moe_time_s();
        attention_forward(m, il);
        double t1 = moe_time_s();
        float *out = il + 1 < hp->n_layer ? m->acts[il + 1].x : m->xf;
        if ((st = ffn_forward(m, il, out))) return st;
        m->t_attn += t1 - t0;
        *(is_moe(m, il) ? &m->t_moe : &m->t_ffn) += moe_time_s() - t1;
    }
    double th = moe_time_s();
    rmsnorm_forward(m->pool, m->xnf, m->rstdf, m->xf, m->w.output_norm, N, d, hp->rms_eps);
    matmul_forward(m->logits, m->xnf, m->w.output, N, d, V);
    m->loss = 0;
    if (!targets) { m->t_head += moe_time_s() - th; return MOE_OK; }
    double *row_loss = moe_malloc((size_t)N * sizeof *row_loss);
    if (!row_loss) return MOE_ERR_NOMEM;
    ce_job j = {m, row_loss, 0};
    moe_pool_run(m->pool, ce_fwd_task, &j);
    double sum = 0;
    for (int64_t i = 0; i < N; i++) sum += row_loss[i];
    free(row_loss);
    m->loss = sum / (double)N;
    m->t_head += moe_time_s() - th;
    return MOE_OK;
}

/* ---------------------------------------------------------------- backward */

/* m->dx holds ∂L/∂(layer output); on return ∂L/∂(layer input). */
static moe_status layer_backward(tm_model *m, int il, float loss_scale) {
    const moe_hparams *hp = &m->c.hp;
    const tm_layer_w *w = &m->w.layers[il];
    tm_layer_w *g = &m->g.layers[il];
    tm_layer_acts *a = &m->acts[il];
    const int64_t N = m->N, d = hp->n_embd, hd = hp->n_embd_head_k, H = hp->n_head, Hkv = hp->n_head_kv;
    const int64_t nq = H * hd, nk = Hkv * hd;
    int64_t off1[2] = {0, N};

    /* FFN: out = xm + f(xn2) */
    const double t0 = moe_time_s();
    memcpy(m->dxm, m->dx, (size_t)(N * d) * sizeof(float));
    if (!is_moe(m, il)) {
        moe_ffn_acts fa = {a->fA, a->fU, a->fS, a->fH};
        moe_experts_backward(m->dxn, &g->dense, m->dA, m->dU, m->dx, a->xn2, &fa, off1, 1, &w->dense, d, hp->n_ff,
                             MOE_FFN_SWIGLU, false, m->pool);
    } else {
        memset(m->dxn, 0, (size_t)(N * d) * sizeof(float));
        moe_layer_params lp = {.router_w = w->router_w, .router_b = w->sel_bias, .router_scale = w->router_scale,
                               .experts = w->experts, .shared = w->shared};
        moe_layer_params lg = {.router_w = m->c.router.kind == MOE_ROUTER_HASH ? NULL : g->router_w,
                               .router_scale = g->router_scale, .experts = g->experts, .shared = g->shared};
        if (gated_shared(m, il)) {
            memset(&lp.shared, 0, sizeof lp.shared);
            memset(&lg.shared, 0, sizeof lg.shared);
        }
        moe_status st = moe_layer_backward(&m->moe[il], m->dxn, &lg, m->dx, a->xn2, &lp, loss_scale * m->aux_coef,
                                           loss_scale * m->z_coef, m->pool);
        if (st) return st;
        if (gated_shared(m, il)) {
            for (int64_t t = 0; t < N; t++) {
                const float sg = 1.0f / (1.0f + expf(-a->sg[t]));
                double dot = 0;
                for (int64_t i = 0; i < d; i++) {
                    dot += (double)m->dx[t * d + i] * a->sh_o[t * d + i];
                    m->dsh[t * d + i] = sg * m->dx[t * d + i];
                }
                m->dtmp[t] = (float)dot * sg * (1.0f - sg); /* ∂L/∂(gate logit) */
            }
            matmul_backward(m->dxn, g->shared_gate, m->dtmp, a->xn2, w->shared_gate, N, d, 1, true);
            moe_ffn_acts fa = {a->fA, a->fU, a->fS, a->fH};
            moe_experts_backward(m->dxn, &g->shared, m->dA, m->dU, m->dsh, a->xn2, &fa, off1, 1, &w->shared, d,
                                 hp->n_ff_shexp, MOE_FFN_SWIGLU, true, m->pool);
        }
    }
    rmsnorm_backward(m->pool, m->dxm, g->ffn_norm, m->dxn, a->xm, a->rstd2, w->ffn_norm, N, d, true);

    double t1 = moe_time_s();
    *(is_moe(m, il) ? &m->t_moe : &m->t_ffn) += t1 - t0;
    /* attention: xm = x + Wo·attn(...) */
    matmul_backward(m->dao, g->wo, m->dxm, a->ao, w->wo, N, nq, d, false);
    attn_job j = {.m = m, .a = a, .dq = m->dq, .dk = m->dk, .dv = m->dv, .dao = m->dao};
    moe_pool_run(m->pool, attn_bwd_task, &j);
    rope_rows(hp, m->dq, N, m->T, H, hd, m->rope, true);
    rope_rows(hp, m->dk, N, m->T, Hkv, hd, m->rope, true);
    /* q/k norm backward: dq, dk are ∂L/∂qn, ∂L/∂kn → ∂L/∂qp, ∂L/∂kp (in dao / dtmp scratch) */
    float *dqp = m->dq, *dkp = m->dk;
    if (hp->qk_norm) {
        const bool full = hp->qk_norm == MOE_QK_NORM_FULL;
        dqp = m->dao;
        dkp = m->dtmp;
        rmsnorm_backward(m->pool, dqp, g->q_norm, m->dq, a->qp, a->qrs, w->q_norm, full ? N : N * H, full ? nq : hd, false);
        rmsnorm_backward(m->pool, dkp, g->k_norm, m->dk, a->kp, a->krs, w->k_norm, full ? N : N * Hkv, full ? nk : hd, false);
    }
    bias_backward(g->bq, dqp, N, nq);
    bias_backward(g->bk, dkp, N, nk);
    bias_backward(g->bv, m->dv, N, nk);
    matmul_backward(m->dxn, g->wq, dqp, a->xn1, w->wq, N, d, nq, false);
    matmul_backward(m->dxn, g->wk, dkp, a->xn1, w->wk, N, d, nk, true);
    matmul_backward(m->dxn, g->wv, m->dv, a->xn1, w->wv, N, d, nk, true);
    memcpy(m->dx, m->dxm, (size_t)(N * d) * sizeof(float));
    rmsnorm_backward(m->pool, m->dx, g->attn_norm, m->dxn, a->x, a->rstd1, w->attn_norm, N, d, true);
    m->t_attn += moe_time_s() - t1;
    return MOE_OK;
}

moe_status tm_backward(tm_model *m, float loss_scale) {
    const moe_hparams *hp = &m->c.hp;
    if (!m->targets || m->N == 0) return moe_error(MOE_ERR_INVALID, "training: backward without a forward with targets");
    const int64_t N = m->N, d = hp->n_embd, V = hp->n_vocab;
    const double th = moe_time_s();
    ce_job j = {m, NULL, loss_scale / (float)N};
    moe_pool_run(m->pool, ce_bwd_task, &j);
    matmul_backward(m->dxn, m->g.output, m->logits, m->xnf, m->w.output, N, d, V, false);
    rmsnorm_backward(m->pool, m->dx, m->g.output_norm, m->dxn, m->xf, m->rstdf, m->w.output_norm, N, d, false);
    m->t_head += moe_time_s() - th;
    for (int il = (int)hp->n_layer - 1; il >= 0; il--) {
        moe_status st = layer_backward(m, il, loss_scale);
        if (st) return st;
    }
    for (int64_t t = 0; t < N; t++) {
        float *ge = m->g.tok_embd + (int64_t)m->tokens[t] * d;
        for (int64_t i = 0; i < d; i++) ge[i] += m->dx[t * d + i];
    }
    m->targets = NULL; /* the logits buffer now holds gradients */
    return MOE_OK;
}
