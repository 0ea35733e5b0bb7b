/* experts.c — grouped expert GEMMs (forward and backward) and the elementwise SwiGLU /
 * GELU parts between them. Each weight matrix of each expert is one cblas_sgemm over that
 * expert's contiguous rows; OpenBLAS threads each GEMM, the pool threads the elementwise
 * work. */
#include "moe/experts.h"

#include <cblas.h>
#include <math.h>
#include <stdlib.h>
#if defined(__AVX2__) && defined(__FMA__)
#include <immintrin.h>
#endif

/* Declared here too: <cblas.h> may be another BLAS's header on a system where OpenBLAS
 * is not the cblas alternative, but we always link OpenBLAS. */
void openblas_set_num_threads(int num_threads);

void moe_blas_set_threads(int n) { openblas_set_num_threads(n > 0 ? n : 1); }

/* ---------------------------------------------------------------- elementwise */

static inline float sigmoidf_ref(float a) { return 1.0f / (1.0f + expf(-a)); }

void moe_ffn_act_forward_ref(moe_ffn_act act, int64_t n, const float *A, const float *U, float *S, float *H) {
    if (act == MOE_FFN_SWIGLU) {
        for (int64_t i = 0; i < n; i++) {
            float s = sigmoidf_ref(A[i]);
            S[i] = s;
            H[i] = A[i] * s * U[i];
        }
    } else {
        for (int64_t i = 0; i < n; i++) {
            float c = 0.5f * (1.0f + erff(A[i] * 0.70710678118654752f));
            S[i] = c;
            H[i] = A[i] * c;
        }
    }
}

#if defined(__AVX2__) && defined(__FMA__)
/* expf for 8 lanes: x = n·ln2 + r with |r| ≤ ln2/2 (ln2 split in two for exactness),
 * exp(r) by its degree-6 Taylor/minimax polynomial (Cephes expf's coefficients), 2^n by
 * building the exponent bits. Relative error ≈ 2 ulp over [-87, 88]; inputs are clamped
 * there so σ saturates to 0 or 1 as the scalar version does. */
static inline __m256 exp8(__m256 x) {
    x = _mm256_min_ps(_mm256_max_ps(x, _mm256_set1_ps(-87.0f)), _mm256_set1_ps(88.0f));
    __m256 n = _mm256_round_ps(_mm256_mul_ps(x, _mm256_set1_ps(1.44269504088896341f)),
                               _MM_FROUND_TO_NEAREST_INT | _MM_FROUND_NO_EXC);
    __m256 r = _mm256_fnmadd_ps(n, _mm256_set1_ps(0.693359375f), x);
    r = _mm256_fnmadd_ps(n, _mm256_set1_ps(-2.12194440e-4f), r);
    __m256 p = _mm256_set1_ps(1.9875691500e-4f);
    p = _mm256_fmadd_ps(p, r, _mm256_set1_ps(1.3981999507e-3f));
    p = _mm256_fmadd_ps(p, r, _mm256_set1_ps(8.3334519073e-3f));
    p = _mm256_fmadd_ps(p, r, _mm256_set1_ps(4.1665795894e-2f));
    p = _mm256_fmadd_ps(p, r, _mm256_set1_ps(1.6666665459e-1f));
    p = _mm256_fmadd_ps(p, r, _mm256_set1_ps(5.0000001201e-1f));
    p = _mm256_fmadd_ps(p, _mm256_mul_ps(r, r), _mm256_add_ps(r, _mm256_set1_ps(1.0f)));
    __m256i e = _mm256_slli_epi32(_mm256_add_epi32(_mm256_cvtps_epi32(n), _mm256_set1_epi32(127)), 23);
    return _mm256_mul_ps(p, _mm256_castsi256_ps(e));
}
#endif

void moe_ffn_act_forward(moe_ffn_act act, int64_t n, const float *A, const float *U, float *S, float *H) {
#if defined(__AVX2__) && defined(__FMA__)
    if (act == MOE_FFN_SWIGLU) {
        int64_t i = 0;
        const __m256 one = _mm256_set1_ps(1.0f);
        for (; i + 8 <= n; i += 8) {
            __m256 a = _mm256_loadu_ps(A + i);
            __m256 s = _mm256_div_ps(one, _mm256_add_ps(one, exp8(_mm256_sub_ps(_mm256_setzero_ps(), a))));
            _mm256_storeu_ps(S + i, s);
            _mm256_storeu_ps(H + i, _mm256_mul_ps(_mm256_mul_ps(a, s), _mm256_loadu_ps(U + i)));
        }
        moe_ffn_act_forward_ref(act, n - i, A + i, U + i, S + i, H + i);
        return;
    }
#endif
    moe_ffn_act_forward_ref(act, n, A, U, S, H);
}

/* SwiGLU: h = a·σ(a)·u → ∂h/∂a = u·σ(a)·(1 + a·(1 − σ(a))), ∂h/∂u = a·σ(a).
 * GELU:   h = a·Φ(a)     → ∂h/∂a = Φ(a) + a·φ(a). No exp of σ is recomputed: S holds it. */
void moe_ffn_act_backward(moe_ffn_act act, int64_t n, const float *A, const float *U, const float *S,
                          float *dA, float *dU) {
    if (act == MOE_FFN_SWIGLU) {
        for (int64_t i = 0; i < n; i++) {
            float a = A[i], s = S[i], dh = dA[i];
            float silu = a * s;
            dU[i] = dh * silu;
            dA[i] = dh * U[i] * (s + silu * (1.0f - s));
        }
    } else {
        for (int64_t i = 0; i < n; i++) {
            float a = A[i];
            float pdf = 0.39894228040143268f * expf(-0.5f * a * a);
            dA[i] = dA[i] * (S[i] + a * pdf);
        }
    }
}

/* ---------------------------------------------------------------- GEMMs */

int openblas_get_num_threads(void);

/* One call's arguments, shared by the per-expert steps below. */
typedef struct {
    const int64_t *off;
    int E;
    int64_t d, ff;
    moe_ffn_act act;
    bool glu;
    const moe_ffn *w;
    moe_ffn *g;
    const float *X, *dO;
    const moe_ffn_acts *acts;
    float *O, *dX, *dA, *dU;
    bool accumulate;
    const int8_t *owner;   /* parallel-experts schedule: thread of each expert */
} ex_ctx;

#define ROWS(c, e, r0, ne) int64_t r0 = (c)->off[e], ne = (c)->off[(e) + 1] - r0

/* A = X·gateᵀ (or X·upᵀ for GELU), U = X·upᵀ for expert e's rows. */
static void fwd_pre(const ex_ctx *c, int e) {
    ROWS(c, e, r0, ne);
    if (ne == 0) return;
    const size_t wsz = (size_t)(c->ff * c->d);
    const int d = (int)c->d, ff = (int)c->ff;
    const float *Xe = c->X + r0 * c->d;
    cblas_sgemm(CblasRowMajor, CblasNoTrans, CblasTrans, (int)ne, ff, d, 1.0f, Xe, d,
                (c->glu ? c->w->gate : c->w->up) + e * wsz, d, 0.0f, c->acts->A + r0 * ff, ff);
    if (c->glu)
        cblas_sgemm(CblasRowMajor, CblasNoTrans, CblasTrans, (int)ne, ff, d, 1.0f, Xe, d, c->w->up + e * wsz, d,
                    0.0f, c->acts->U + r0 * ff, ff);
}

/* O = H·downᵀ for expert e's rows. */
static void fwd_post(const ex_ctx *c, int e) {
    ROWS(c, e, r0, ne);
    if (ne == 0) return;
    const int d = (int)c->d, ff = (int)c->ff;
    cblas_sgemm(CblasRowMajor, CblasNoTrans, CblasTrans, (int)ne, d, ff, 1.0f, c->acts->H + r0 * ff, ff,
                c->w->down + e * (size_t)(c->ff * c->d), ff, c->accumulate ? 1.0f : 0.0f, c->O + r0 * c->d, d);
}

/* dH = dO·down (into dA), d_down += dOᵀ·H. */
static void bwd_pre(const ex_ctx *c, int e) {
    ROWS(c, e, r0, ne);
    if (ne == 0) return;
    const size_t wsz = (size_t)(c->ff * c->d);
    const int d = (int)c->d, ff = (int)c->ff;
    cblas_sgemm(CblasRowMajor, CblasNoTrans, CblasNoTrans, (int)ne, ff, d, 1.0f, c->dO + r0 * d, d,
                c->w->down + e * wsz, ff, 0.0f, c->dA + r0 * ff, ff);
    cblas_sgemm(CblasRowMajor, CblasTrans, CblasNoTrans, d, ff, (int)ne, 1.0f, c->dO + r0 * d, d,
                c->acts->H + r0 * ff, ff, 1.0f, c->g->down + e * wsz, ff);
}

/* Weight gradients from dA (and dU), then dX = dA·gate + dU·up. */
static void bwd_post(const ex_ctx *c, int e) {
    ROWS(c, e, r0, ne);
    if (ne == 0) return;
    const size_t wsz = (size_t)(c->ff * c->d);
    const int d = (int)c->d, ff = (int)c->ff;
    const float *Xe = c->X + r0 * d;
    float *gA = c->glu ? c->g->gate : c->g->up;
    const float *wA = c->glu ? c->w->gate : c->w->up;
    cblas_sgemm(CblasRowMajor, CblasTrans, CblasNoTrans, ff, d, (int)ne, 1.0f, c->dA + r0 * ff, ff, Xe, d, 1.0f,
                gA + e * wsz, d);
    cblas_sgemm(CblasRowMajor, CblasNoTrans, CblasNoTrans, (int)ne, d, ff, 1.0f, c->dA + r0 * ff, ff, wA + e * wsz, d,
                c->accumulate ? 1.0f : 0.0f, c->dX + r0 * d, d);
    if (c->glu) {
        cblas_sgemm(CblasRowMajor, CblasTrans, CblasNoTrans, ff, d, (int)ne, 1.0f, c->dU + r0 * ff, ff, Xe, d, 1.0f,
                    c->g->up + e * wsz, d);
        cblas_sgemm(CblasRowMajor, CblasNoTrans, CblasNoTrans, (int)ne, d, ff, 1.0f, c->dU + r0 * ff, ff,
                    c->w->up + e * wsz, d, 1.0f, c->dX + r0 * d, d);
    }
}

static void act_rows(const ex_ctx *c, int64_t r0, int64_t r1, bool backward) {
    if (r1 <= r0) return;
    const moe_ffn_acts *a = c->acts;
    int64_t o = r0 * c->ff, n = (r1 - r0) * c->ff;
    if (!backward)
        moe_ffn_act_forward(c->act, n, a->A + o, c->glu ? a->U + o : NULL, a->S + o, a->H + o);
    else
        moe_ffn_act_backward(c->act, n, a->A + o, c->glu ? a->U + o : NULL, a->S + o, c->dA + o,
                             c->glu ? c->dU + o : NULL);
}

static void act_fwd_run(void *arg, int ith, int nth) {
    const ex_ctx *c = arg;
    int64_t r0, r1;
    moe_split(c->off[c->E], ith, nth, 1, &r0, &r1);
    act_rows(c, r0, r1, false);
}
static void act_bwd_run(void *arg, int ith, int nth) {
    const ex_ctx *c = arg;
    int64_t r0, r1;
    moe_split(c->off[c->E], ith, nth, 1, &r0, &r1);
    act_rows(c, r0, r1, true);
}

/* Parallel-experts schedule: each thread runs whole experts with single-threaded GEMMs,
 * the activation in between on the same rows, and no barrier until the end. */
static void par_fwd_run(void *arg, int ith, int nth) {
    const ex_ctx *c = arg;
    for (int e = 0; e < c->E; e++)
        if (c->owner[e] == ith) {
            fwd_pre(c, e);
            act_rows(c, c->off[e], c->off[e + 1], false);
            fwd_post(c, e);
        }
}
static void par_bwd_run(void *arg, int ith, int nth) {
    const ex_ctx *c = arg;
    for (int e = 0; e < c->E; e++)
        if (c->owner[e] == ith) {
            bwd_pre(c, e);
            act_rows(c, c->off[e], c->off[e + 1], true);
            bwd_post(c, e);
        }
}

/* Assigns experts to threads, largest first to the least loaded thread (LPT). Returns true
 * when the busiest thread has at most 10% more rows than the mean: then whole experts per
 * thread beat splitting every GEMM across threads (no synchronisation inside OpenBLAS, one
 * barrier per call instead of one per GEMM). Otherwise (few experts, one hot expert) each
 * GEMM is threaded instead. */
static bool schedule_experts(const int64_t *off, int E, int nth, int8_t *owner) {
    if (nth < 2 || nth > 64 || E < 2 * nth || E > 4096) return false;
    int64_t load[64] = {0}, total = off[E];
    bool *done = calloc((size_t)E, sizeof *done);
    if (!done) return false;
    for (int i = 0; i < E; i++) {
        int best = -1;
        for (int e = 0; e < E; e++)
            if (!done[e] && (best < 0 || off[e + 1] - off[e] > off[best + 1] - off[best])) best = e;
        done[best] = true;
        int th = 0;
        for (int t = 1; t < nth; t++)
            if (load[t] < load[th]) th = t;
        owner[best] = (int8_t)th;
        load[th] += off[best + 1] - off[best];
    }
    free(done);
    int64_t mx = 0;
    for (int t = 0; t < nth; t++) mx = MOE_MAX(mx, load[t]);
    return (double)mx * nth <= 1.10 * (double)total;
}

/* Runs one of the two schedules; false if the parallel one was not taken. */
static bool run_parallel(ex_ctx *c, moe_pool *pool, moe_task_fn fn) {
    const int nth = moe_pool_size(pool);
    int8_t owner[4096];
    if (!schedule_experts(c->off, c->E, nth, owner)) return false;
    c->owner = owner;
    int blas = openblas_get_num_threads();
    openblas_set_num_threads(1);
    moe_pool_run(pool, fn, c);
    openblas_set_num_threads(blas);
    c->owner = NULL;
    return true;
}

void moe_experts_forward(float *O, moe_ffn_acts *acts, const float *X, const int64_t *off, int E,
                         const moe_ffn *w, int64_t d, int64_t ff, moe_ffn_act act, bool accumulate_out,
                         moe_pool *pool) {
    if (off[E] == 0) return;
    ex_ctx c = {.off = off, .E = E, .d = d, .ff = ff, .act = act, .glu = act == MOE_FFN_SWIGLU, .w = w, .X = X,
                .acts = acts, .O = O, .accumulate = accumulate_out};
    if (run_parallel(&c, pool, par_fwd_run)) return;
    for (int e = 0; e < E; e++) fwd_pre(&c, e);
    moe_pool_run(pool, act_fwd_run, &c);
    for (int e = 0; e < E; e++) fwd_post(&c, e);
}

void moe_experts_backward(float *dX, moe_ffn *g, float *dA, float *dU, const float *dO,
                          const float *X, const moe_ffn_acts *acts, const int64_t *off, int E,
                          const moe_ffn *w, int64_t d, int64_t ff, moe_ffn_act act,
                          bool accumulate_dx, moe_pool *pool) {
    if (off[E] == 0) return;
    ex_ctx c = {.off = off, .E = E, .d = d, .ff = ff, .act = act, .glu = act == MOE_FFN_SWIGLU, .w = w, .g = g,
                .X = X, .dO = dO, .acts = acts, .dX = dX, .dA = dA, .dU = dU, .accumulate = accumulate_dx};
    if (run_parallel(&c, pool, par_bwd_run)) return;
    for (int e = 0; e < E; e++) bwd_pre(&c, e);
    moe_pool_run(pool, act_bwd_run, &c);
    for (int e = 0; e < E; e++) bwd_post(&c, e);
}
