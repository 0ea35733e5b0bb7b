/* layer.c — the MoE layer's forward and backward pass (see layer.h): router logits (a
 * linear map, or Soft MoE's normalised similarities), routing by router.c, dispatch as a
 * counting sort of (token, choice) pairs by expert, the grouped expert GEMMs, combine,
 * the shared expert, and every gradient back to x and the weights. */
#include "moe/layer.h"

#include <cblas.h>
#include <math.h>
#include <stdlib.h>

/* Soft MoE normalises with x·rsqrt(Σx² + ε), ε = 1e-6 (vmoe's normalize()). */
#define SOFT_MOE_EPS 1e-6f

/* ---------------------------------------------------------------- buffers */

static bool fbuf_need(moe_fbuf *b, size_t n) {
    if (n <= b->cap) return true;
    free(b->p);
    b->p = moe_aligned_alloc((n ? n : 1) * sizeof(float));
    b->cap = b->p ? n : 0;
    return b->p != NULL;
}

static void fbuf_free(moe_fbuf *b) { free(b->p); b->p = NULL; b->cap = 0; }

/* Routers whose bias is added to the logits; deepseek-v3 and loss-free use it for
 * selection only; the others have none. */
static bool bias_in_logits(moe_router_kind k) {
    return k == MOE_ROUTER_TOPK || k == MOE_ROUTER_SWITCH || k == MOE_ROUTER_GSHARD ||
           k == MOE_ROUTER_EXPERT_CHOICE || k == MOE_ROUTER_ADAMOE || k == MOE_ROUTER_USMOE;
}
static bool bias_for_selection(moe_router_kind k) {
    return k == MOE_ROUTER_DEEPSEEK_V3 || k == MOE_ROUTER_LOSS_FREE;
}

int64_t moe_layer_router_rows(const moe_layer_cfg *cfg) { return moe_router_n_logits(&cfg->router); }

moe_status moe_layer_init(moe_layer *l, const moe_layer_cfg *cfg) {
    memset(l, 0, sizeof *l);
    const int64_t lim = INT32_MAX / 2;
    if (cfg->d <= 0 || cfg->ff <= 0 || cfg->shared_ff < 0 || cfg->d > lim || cfg->ff > lim || cfg->shared_ff > lim)
        return moe_error(MOE_ERR_INVALID, "moe layer: bad dimensions d=%lld ff=%lld shared=%lld",
                         (long long)cfg->d, (long long)cfg->ff, (long long)cfg->shared_ff);
    if (cfg->act != MOE_FFN_SWIGLU && cfg->act != MOE_FFN_GELU)
        return moe_error(MOE_ERR_INVALID, "moe layer: unknown expert activation %d", (int)cfg->act);
    moe_status st = moe_router_cfg_check(&cfg->router);
    if (st) return st;
    l->cfg = *cfg;
    l->off = moe_calloc((size_t)cfg->router.n_expert + 1, sizeof *l->off);
    return l->off ? MOE_OK : MOE_ERR_NOMEM;
}

void moe_layer_free(moe_layer *l) {
    if (!l) return;
    moe_routing_free(&l->rt);
    moe_fbuf *bufs[] = {&l->logits, &l->xhat, &l->xr, &l->phihat, &l->phir, &l->sim, &l->X, &l->O,
                        &l->A, &l->U, &l->S, &l->H, &l->shA, &l->shU, &l->shS, &l->shH, &l->dO,
                        &l->dX, &l->dA, &l->dU, &l->dW, &l->dD, &l->dC, &l->dlogits, &l->dxh, &l->dph};
    for (size_t i = 0; i < MOE_ARRAY_LEN(bufs); i++) fbuf_free(bufs[i]);
    free(l->off);
    free(l->row_of);
    memset(l, 0, sizeof *l);
}

/* ---------------------------------------------------------------- row tasks for the pool */

typedef enum {
    OP_GATHER,        /* X[r] = x[token of r] */
    OP_COMBINE,       /* y[t] = (x[t] for base) + Σ_j w_tj · O[row_of(t,j)] */
    OP_COMBINE_BACK,  /* dO[r] = w·dy[t], dW[t,j] = dy[t]·O[r] */
    OP_SCATTER_DX,    /* dx[t] += Σ_j dX[row_of(t,j)] (+ dy[t] for base) */
    OP_NORMALISE,     /* out[i] = in[i]·rsqrt(Σ in[i]² + ε), r[i] = that rsqrt */
    OP_NORM_BACK,     /* acc[i] += r[i]·(g[i] − n[i]·⟨n[i], g[i]⟩) */
} row_op;

typedef struct {
    row_op op;
    int64_t n;             /* rows (tokens) to split */
    int64_t d, nc;
    const float *x, *w, *O, *dy, *dX, *g, *nrm;
    float *y, *dO, *dW, *out, *r, *acc;
    const int64_t *row_of;
    bool residual;
} row_task;

static void row_run(void *arg, int ith, int nth) {
    const row_task *t = arg;
    int64_t i0, i1;
    moe_split(t->n, ith, nth, 1, &i0, &i1);
    const int64_t d = t->d, nc = t->nc;
    for (int64_t i = i0; i < i1; i++) {
        switch (t->op) {
        case OP_GATHER:
            for (int64_t j = 0; j < nc; j++) {
                int64_t r = t->row_of[i * nc + j];
                if (r >= 0) memcpy(t->out + r * d, t->x + i * d, (size_t)d * sizeof(float));
            }
            break;
        case OP_COMBINE: {
            float *yt = t->y + i * d;
            if (t->residual) memcpy(yt, t->x + i * d, (size_t)d * sizeof(float));
            else memset(yt, 0, (size_t)d * sizeof(float));
            for (int64_t j = 0; j < nc; j++) {
                int64_t r = t->row_of[i * nc + j];
                if (r < 0) continue;
                const float wt = t->w[i * nc + j], *o = t->O + r * d;
                for (int64_t c = 0; c < d; c++) yt[c] += wt * o[c];
            }
            break;
        }
        case OP_COMBINE_BACK: {
            const float *dyt = t->dy + i * d;
            for (int64_t j = 0; j < nc; j++) {
                int64_t r = t->row_of[i * nc + j];
                if (r < 0) { t->dW[i * nc + j] = 0; continue; }
                const float wt = t->w[i * nc + j], *o = t->O + r * d;
                float *dor = t->dO + r * d;
                double dot = 0;
                for (int64_t c = 0; c < d; c++) {
                    dot += (double)dyt[c] * o[c];
                    dor[c] = wt * dyt[c];
                }
                t->dW[i * nc + j] = (float)dot;
            }
            break;
        }
        case OP_SCATTER_DX: {
            float *dxt = t->acc + i * d;
            if (t->residual)
                for (int64_t c = 0; c < d; c++) dxt[c] += t->dy[i * d + c];
            for (int64_t j = 0; j < nc; j++) {
                int64_t r = t->row_of[i * nc + j];
                if (r < 0) continue;
                const float *g = t->dX + r * d;
                for (int64_t c = 0; c < d; c++) dxt[c] += g[c];
            }
            break;
        }
        case OP_NORMALISE: {
            const float *in = t->x + i * d;
            double ss = 0;
            for (int64_t c = 0; c < d; c++) ss += (double)in[c] * in[c];
            float r = (float)(1.0 / sqrt(ss + (double)SOFT_MOE_EPS));
            t->r[i] = r;
            for (int64_t c = 0; c < d; c++) t->out[i * d + c] = in[c] * r;
            break;
        }
        case OP_NORM_BACK: {
            const float *g = t->g + i * d, *nv = t->nrm + i * d;
            double dot = 0;
            for (int64_t c = 0; c < d; c++) dot += (double)nv[c] * g[c];
            const float r = t->r[i], fd = (float)dot;
            for (int64_t c = 0; c < d; c++) t->acc[i * d + c] += r * (g[c] - nv[c] * fd);
            break;
        }
        }
    }
}

/* ---------------------------------------------------------------- forward */

static bool dims_ok(int64_t T) { return T > 0 && T <= INT32_MAX / 2; }

/* Soft MoE logits: scale·⟨x̂_t, φ̂_s⟩ (vmoe SoftRouter). */
static moe_status soft_moe_logits(moe_layer *l, const float *x, const moe_layer_params *w, int64_t T, int64_t R,
                                  moe_pool *pool) {
    const int64_t d = l->cfg.d;
    if (!fbuf_need(&l->xhat, (size_t)(T * d)) || !fbuf_need(&l->xr, (size_t)T) ||
        !fbuf_need(&l->phihat, (size_t)(R * d)) || !fbuf_need(&l->phir, (size_t)R) ||
        !fbuf_need(&l->sim, (size_t)(T * R)))
        return MOE_ERR_NOMEM;
    row_task t = {.op = OP_NORMALISE, .n = T, .d = d, .x = x, .out = l->xhat.p, .r = l->xr.p};
    moe_pool_run(pool, row_run, &t);
    t = (row_task){.op = OP_NORMALISE, .n = R, .d = d, .x = w->router_w, .out = l->phihat.p, .r = l->phir.p};
    moe_pool_run(pool, row_run, &t);
    cblas_sgemm(CblasRowMajor, CblasNoTrans, CblasTrans, (int)T, (int)R, (int)d, 1.0f, l->xhat.p, (int)d,
                l->phihat.p, (int)d, 0.0f, l->sim.p, (int)R);
    const float scale = w->router_scale ? w->router_scale[0] : 1.0f;
    for (int64_t i = 0; i < T * R; i++) l->logits.p[i] = scale * l->sim.p[i];
    return MOE_OK;
}

/* Counting sort of the (token, choice) pairs by expert, tokens in order within an expert,
 * so each expert's rows are contiguous for its GEMMs. */
static moe_status build_rows(moe_layer *l, int64_t T) {
    const int E = l->cfg.router.n_expert;
    const int64_t nc = l->rt.n_cols, np = T * nc;
    if ((size_t)np > l->cap_pairs) {
        free(l->row_of);
        l->row_of = moe_malloc((size_t)(np ? np : 1) * sizeof *l->row_of);
        l->cap_pairs = l->row_of ? (size_t)np : 0;
        if (!l->row_of) return MOE_ERR_NOMEM;
    }
    int64_t *off = l->off;
    memset(off, 0, ((size_t)E + 1) * sizeof *off);
    for (int64_t i = 0; i < np; i++) {
        int32_t e = l->rt.expert[i];
        if (e >= E) return moe_error(MOE_ERR_INVALID, "moe layer: router returned expert %d of %d", e, E);
        if (e >= 0) off[e + 1]++;
    }
    for (int e = 0; e < E; e++) off[e + 1] += off[e];
    int64_t *fill = moe_malloc(((size_t)E + 1) * sizeof *fill);
    if (!fill) return MOE_ERR_NOMEM;
    memcpy(fill, off, (size_t)E * sizeof *fill);
    for (int64_t i = 0; i < np; i++) {
        int32_t e = l->rt.expert[i];
        l->row_of[i] = e >= 0 ? fill[e]++ : -1;
    }
    free(fill);
    l->n_rows = off[E];
    return MOE_OK;
}

static bool need_rows(moe_layer *l, int64_t n) {
    const size_t d = (size_t)l->cfg.d, ff = (size_t)l->cfg.ff, nn = (size_t)n;
    return fbuf_need(&l->X, nn * d) && fbuf_need(&l->O, nn * d) && fbuf_need(&l->A, nn * ff) &&
           fbuf_need(&l->U, nn * ff) && fbuf_need(&l->S, nn * ff) && fbuf_need(&l->H, nn * ff);
}

moe_status moe_layer_forward(moe_layer *l, float *y, const float *x, const int32_t *token_ids,
                             const moe_layer_params *w, int64_t T, moe_pool *pool) {
    const moe_layer_cfg *cfg = &l->cfg;
    const moe_router_kind kind = cfg->router.kind;
    const int64_t d = cfg->d, ff = cfg->ff, R = moe_layer_router_rows(cfg);
    const int E = cfg->router.n_expert;
    moe_status st;
    if (!dims_ok(T)) return moe_error(MOE_ERR_INVALID, "moe layer: bad token count %lld", (long long)T);
    if (!w->experts.up || !w->experts.down || (cfg->act == MOE_FFN_SWIGLU && !w->experts.gate))
        return moe_error(MOE_ERR_INVALID, "moe layer: expert weights missing");
    if (cfg->shared_ff && (!w->shared.up || !w->shared.down || (cfg->act == MOE_FFN_SWIGLU && !w->shared.gate)))
        return moe_error(MOE_ERR_INVALID, "moe layer: shared expert weights missing");
    l->T = T;
    l->rc = cfg->router;
    if (bias_for_selection(kind)) l->rc.sel_bias = w->router_b;

    /* logits */
    const float *logits = NULL;
    if (kind != MOE_ROUTER_HASH) {
        if (!w->router_w)
            return moe_error(MOE_ERR_INVALID, "moe layer: router %s needs router.weight", moe_router_name(kind));
        if (!fbuf_need(&l->logits, (size_t)(T * R))) return MOE_ERR_NOMEM;
        if (kind == MOE_ROUTER_SOFT_MOE) {
            if ((st = soft_moe_logits(l, x, w, T, R, pool))) return st;
        } else {
            cblas_sgemm(CblasRowMajor, CblasNoTrans, CblasTrans, (int)T, (int)R, (int)d, 1.0f, x, (int)d,
                        w->router_w, (int)d, 0.0f, l->logits.p, (int)R);
            if (bias_in_logits(kind) && w->router_b)
                for (int64_t t = 0; t < T; t++)
                    for (int64_t r = 0; r < R; r++) l->logits.p[t * R + r] += w->router_b[r];
        }
        logits = l->logits.p;
    } else if (!token_ids) {
        return moe_error(MOE_ERR_INVALID, "moe layer: hash routing needs token ids");
    }
    if ((st = moe_router_forward(&l->rc, logits, token_ids, T, &l->rt))) return st;

    /* experts */
    moe_ffn_acts acts;
    if (kind == MOE_ROUTER_SOFT_MOE) {
        const int64_t p = cfg->router.slots_per_expert;
        if (!need_rows(l, R)) return MOE_ERR_NOMEM;
        for (int e = 0; e <= E; e++) l->off[e] = e * p;
        l->n_rows = R;
        /* slot inputs = dispatchᵀ·x, y = combine·(slot outputs) */
        cblas_sgemm(CblasRowMajor, CblasTrans, CblasNoTrans, (int)R, (int)d, (int)T, 1.0f, l->rt.dispatch, (int)R,
                    x, (int)d, 0.0f, l->X.p, (int)d);
        acts = (moe_ffn_acts){l->A.p, l->U.p, l->S.p, l->H.p};
        moe_experts_forward(l->O.p, &acts, l->X.p, l->off, E, &w->experts, d, ff, cfg->act, false, pool);
        cblas_sgemm(CblasRowMajor, CblasNoTrans, CblasNoTrans, (int)T, (int)d, (int)R, 1.0f, l->rt.combine, (int)R,
                    l->O.p, (int)d, 0.0f, y, (int)d);
    } else {
        if ((st = build_rows(l, T))) return st;
        if (!need_rows(l, l->n_rows)) return MOE_ERR_NOMEM;
        row_task t = {.op = OP_GATHER, .n = T, .d = d, .nc = l->rt.n_cols, .x = x, .out = l->X.p,
                      .row_of = l->row_of};
        moe_pool_run(pool, row_run, &t);
        acts = (moe_ffn_acts){l->A.p, l->U.p, l->S.p, l->H.p};
        moe_experts_forward(l->O.p, &acts, l->X.p, l->off, E, &w->experts, d, ff, cfg->act, false, pool);
        t = (row_task){.op = OP_COMBINE, .n = T, .d = d, .nc = l->rt.n_cols, .x = x, .w = l->rt.weight,
                       .O = l->O.p, .y = y, .row_of = l->row_of, .residual = kind == MOE_ROUTER_BASE};
        moe_pool_run(pool, row_run, &t);
    }

    /* shared expert: y += f_shared(x) for every token */
    if (cfg->shared_ff) {
        const size_t n = (size_t)(T * cfg->shared_ff);
        if (!fbuf_need(&l->shA, n) || !fbuf_need(&l->shU, n) || !fbuf_need(&l->shS, n) || !fbuf_need(&l->shH, n))
            return MOE_ERR_NOMEM;
        int64_t off1[2] = {0, T};
        moe_ffn_acts sh = {l->shA.p, l->shU.p, l->shS.p, l->shH.p};
        moe_experts_forward(y, &sh, x, off1, 1, &w->shared, d, cfg->shared_ff, cfg->act, true, pool);
    }
    return MOE_OK;
}

/* ---------------------------------------------------------------- backward */

moe_status moe_layer_backward(moe_layer *l, float *dx, moe_layer_params *g, const float *dy,
                              const float *x, const moe_layer_params *w, float aux_coef, float z_coef,
                              moe_pool *pool) {
    const moe_layer_cfg *cfg = &l->cfg;
    const moe_router_kind kind = cfg->router.kind;
    const int64_t d = cfg->d, ff = cfg->ff, R = moe_layer_router_rows(cfg), T = l->T;
    const int E = cfg->router.n_expert;
    if (T <= 0) return moe_error(MOE_ERR_INVALID, "moe layer: backward without a forward");
    if (!g->experts.up || !g->experts.down || (cfg->act == MOE_FFN_SWIGLU && !g->experts.gate) ||
        (cfg->shared_ff && (!g->shared.up || !g->shared.down || (cfg->act == MOE_FFN_SWIGLU && !g->shared.gate))))
        return moe_error(MOE_ERR_INVALID, "moe layer: gradient buffers missing for expert weights");

    /* shared expert: its dO is dy itself */
    if (cfg->shared_ff) {
        const size_t n = (size_t)(T * cfg->shared_ff);
        if (!fbuf_need(&l->dA, n) || !fbuf_need(&l->dU, n)) return MOE_ERR_NOMEM;
        int64_t off1[2] = {0, T};
        moe_ffn_acts sh = {l->shA.p, l->shU.p, l->shS.p, l->shH.p};
        moe_experts_backward(dx, &g->shared, l->dA.p, l->dU.p, dy, x, &sh, off1, 1, &w->shared, d,
                             cfg->shared_ff, cfg->act, true, pool);
    }

    const size_t nr = (size_t)l->n_rows;
    if (!fbuf_need(&l->dO, nr * (size_t)d) || !fbuf_need(&l->dX, nr * (size_t)d) ||
        !fbuf_need(&l->dA, nr * (size_t)ff) || !fbuf_need(&l->dU, nr * (size_t)ff))
        return MOE_ERR_NOMEM;
    moe_ffn_acts acts = {l->A.p, l->U.p, l->S.p, l->H.p};
    const float *d_weight = NULL, *d_dispatch = NULL, *d_combine = NULL;
    if (kind == MOE_ROUTER_SOFT_MOE) {
        if (!fbuf_need(&l->dD, (size_t)(T * R)) || !fbuf_need(&l->dC, (size_t)(T * R))) return MOE_ERR_NOMEM;
        /* y = C·O: dO = Cᵀ·dy, dC = dy·Oᵀ */
        cblas_sgemm(CblasRowMajor, CblasTrans, CblasNoTrans, (int)R, (int)d, (int)T, 1.0f, l->rt.combine, (int)R,
                    dy, (int)d, 0.0f, l->dO.p, (int)d);
        cblas_sgemm(CblasRowMajor, CblasNoTrans, CblasTrans, (int)T, (int)R, (int)d, 1.0f, dy, (int)d, l->O.p,
                    (int)d, 0.0f, l->dC.p, (int)R);
        moe_experts_backward(l->dX.p, &g->experts, l->dA.p, l->dU.p, l->dO.p, l->X.p, &acts, l->off, E,
                             &w->experts, d, ff, cfg->act, false, pool);
        /* X = Dᵀ·x: dD = x·dXᵀ, dx += D·dX */
        cblas_sgemm(CblasRowMajor, CblasNoTrans, CblasTrans, (int)T, (int)R, (int)d, 1.0f, x, (int)d, l->dX.p,
                    (int)d, 0.0f, l->dD.p, (int)R);
        cblas_sgemm(CblasRowMajor, CblasNoTrans, CblasNoTrans, (int)T, (int)d, (int)R, 1.0f, l->rt.dispatch, (int)R,
                    l->dX.p, (int)d, 1.0f, dx, (int)d);
        d_dispatch = l->dD.p;
        d_combine = l->dC.p;
    } else {
        const int64_t nc = l->rt.n_cols;
        if (!fbuf_need(&l->dW, (size_t)(T * nc))) return MOE_ERR_NOMEM;
        row_task t = {.op = OP_COMBINE_BACK, .n = T, .d = d, .nc = nc, .w = l->rt.weight, .O = l->O.p, .dy = dy,
                      .dO = l->dO.p, .dW = l->dW.p, .row_of = l->row_of};
        moe_pool_run(pool, row_run, &t);
        moe_experts_backward(l->dX.p, &g->experts, l->dA.p, l->dU.p, l->dO.p, l->X.p, &acts, l->off, E,
                             &w->experts, d, ff, cfg->act, false, pool);
        t = (row_task){.op = OP_SCATTER_DX, .n = T, .d = d, .nc = nc, .dX = l->dX.p, .dy = dy, .acc = dx,
                       .row_of = l->row_of, .residual = kind == MOE_ROUTER_BASE};
        moe_pool_run(pool, row_run, &t);
        d_weight = l->dW.p;
    }

    if (kind == MOE_ROUTER_HASH) return MOE_OK; /* no logits: the routing is fixed */

    /* the router rule: → ∂L/∂logits */
    if (!fbuf_need(&l->dlogits, (size_t)(T * R))) return MOE_ERR_NOMEM;
    float *dl = l->dlogits.p;
    memset(dl, 0, (size_t)(T * R) * sizeof *dl);
    moe_status st = moe_router_backward(&l->rc, l->logits.p, T, &l->rt, d_weight, d_dispatch, d_combine,
                                        aux_coef, z_coef, dl);
    if (st) return st;

    if (kind == MOE_ROUTER_SOFT_MOE) {
        /* logits = scale·x̂·φ̂ᵀ */
        const float scale = w->router_scale ? w->router_scale[0] : 1.0f;
        if (g->router_scale) {
            double s = 0;
            for (int64_t i = 0; i < T * R; i++) s += (double)dl[i] * l->sim.p[i];
            g->router_scale[0] += (float)s;
        }
        if (!fbuf_need(&l->dxh, (size_t)(T * d)) || !fbuf_need(&l->dph, (size_t)(R * d))) return MOE_ERR_NOMEM;
        cblas_sgemm(CblasRowMajor, CblasNoTrans, CblasNoTrans, (int)T, (int)d, (int)R, scale, dl, (int)R,
                    l->phihat.p, (int)d, 0.0f, l->dxh.p, (int)d);
        cblas_sgemm(CblasRowMajor, CblasTrans, CblasNoTrans, (int)R, (int)d, (int)T, scale, dl, (int)R,
                    l->xhat.p, (int)d, 0.0f, l->dph.p, (int)d);
        row_task t = {.op = OP_NORM_BACK, .n = T, .d = d, .g = l->dxh.p, .nrm = l->xhat.p, .r = l->xr.p, .acc = dx};
        moe_pool_run(pool, row_run, &t);
        if (g->router_w) {
            t = (row_task){.op = OP_NORM_BACK, .n = R, .d = d, .g = l->dph.p, .nrm = l->phihat.p, .r = l->phir.p,
                           .acc = g->router_w};
            moe_pool_run(pool, row_run, &t);
        }
        return MOE_OK;
    }
    /* logits = x·Wᵀ (+ b) */
    cblas_sgemm(CblasRowMajor, CblasNoTrans, CblasNoTrans, (int)T, (int)d, (int)R, 1.0f, dl, (int)R, w->router_w,
                (int)d, 1.0f, dx, (int)d);
    if (g->router_w)
        cblas_sgemm(CblasRowMajor, CblasTrans, CblasNoTrans, (int)R, (int)d, (int)T, 1.0f, dl, (int)R, x, (int)d,
                    1.0f, g->router_w, (int)d);
    if (g->router_b && bias_in_logits(kind))
        for (int64_t r = 0; r < R; r++) {
            double s = 0;
            for (int64_t t = 0; t < T; t++) s += dl[t * R + r];
            g->router_b[r] += (float)s;
        }
    return MOE_OK;
}
