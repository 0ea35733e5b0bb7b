/* experts.c — grouped expert GEMMs (forward and backward) and the elementwise SwiGLU /
 * GELU parts between them. Each weight matrix of each expert is one cblas_sgemm over that
 * expert's contiguous rows; OpenBLAS threads each GEMM, the pool threads the elementwise
 * work. */
#include "moe/experts.h"

#include <cblas.h>
#include <math.h>
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

typedef struct {
    moe_ffn_act act;
    int64_t n_rows, ff;
    const float *A, *U;
    float *S, *H, *dA, *dU;
    bool backward;
} act_task;

static void act_run(void *arg, int ith, int nth) {
    act_task *t = arg;
    int64_t r0, r1;
    moe_split(t->n_rows, ith, nth, 1, &r0, &r1);
    if (r1 <= r0) return;
    int64_t o = r0 * t->ff, n = (r1 - r0) * t->ff;
    if (!t->backward)
        moe_ffn_act_forward(t->act, n, t->A + o, t->U ? t->U + o : NULL, t->S + o, t->H + o);
    else
        moe_ffn_act_backward(t->act, n, t->A + o, t->U ? t->U + o : NULL, t->S + o, t->dA + o, t->dU ? t->dU + o : NULL);
}

/* ---------------------------------------------------------------- GEMMs */

void moe_experts_forward(float *O, moe_ffn_acts *acts, const float *X, const int64_t *off, int E,
                         const moe_ffn *w, int64_t d, int64_t ff, moe_ffn_act act, bool accumulate_out,
                         moe_pool *pool) {
    const int64_t n = off[E];
    if (n == 0) return;
    const bool glu = act == MOE_FFN_SWIGLU;
    const size_t wsz = (size_t)(ff * d);
    /* pre-activations: A = X·gateᵀ (or X·upᵀ for GELU), U = X·upᵀ */
    for (int e = 0; e < E; e++) {
        int64_t r0 = off[e], ne = off[e + 1] - r0;
        if (ne == 0) continue;
        const float *Xe = X + r0 * d;
        cblas_sgemm(CblasRowMajor, CblasNoTrans, CblasTrans, (int)ne, (int)ff, (int)d, 1.0f, Xe, (int)d,
                    glu ? w->gate + e * wsz : w->up + e * wsz, (int)d, 0.0f, acts->A + r0 * ff, (int)ff);
        if (glu)
            cblas_sgemm(CblasRowMajor, CblasNoTrans, CblasTrans, (int)ne, (int)ff, (int)d, 1.0f, Xe, (int)d,
                        w->up + e * wsz, (int)d, 0.0f, acts->U + r0 * ff, (int)ff);
    }
    act_task t = {.act = act, .n_rows = n, .ff = ff, .A = acts->A, .U = glu ? acts->U : NULL,
                  .S = acts->S, .H = acts->H};
    moe_pool_run(pool, act_run, &t);
    /* O = H·downᵀ */
    for (int e = 0; e < E; e++) {
        int64_t r0 = off[e], ne = off[e + 1] - r0;
        if (ne == 0) continue;
        cblas_sgemm(CblasRowMajor, CblasNoTrans, CblasTrans, (int)ne, (int)d, (int)ff, 1.0f, acts->H + r0 * ff,
                    (int)ff, w->down + e * wsz, (int)ff, accumulate_out ? 1.0f : 0.0f, O + r0 * d, (int)d);
    }
}

void moe_experts_backward(float *dX, moe_ffn *g, float *dA, float *dU, const float *dO,
                          const float *X, const moe_ffn_acts *acts, const int64_t *off, int E,
                          const moe_ffn *w, int64_t d, int64_t ff, moe_ffn_act act,
                          bool accumulate_dx, moe_pool *pool) {
    const int64_t n = off[E];
    if (n == 0) return;
    const bool glu = act == MOE_FFN_SWIGLU;
    const size_t wsz = (size_t)(ff * d);
    /* dH = dO·down (into dA), d_down += dOᵀ·H */
    for (int e = 0; e < E; e++) {
        int64_t r0 = off[e], ne = off[e + 1] - r0;
        if (ne == 0) continue;
        cblas_sgemm(CblasRowMajor, CblasNoTrans, CblasNoTrans, (int)ne, (int)ff, (int)d, 1.0f, dO + r0 * d,
                    (int)d, w->down + e * wsz, (int)ff, 0.0f, dA + r0 * ff, (int)ff);
        cblas_sgemm(CblasRowMajor, CblasTrans, CblasNoTrans, (int)d, (int)ff, (int)ne, 1.0f, dO + r0 * d,
                    (int)d, acts->H + r0 * ff, (int)ff, 1.0f, g->down + e * wsz, (int)ff);
    }
    act_task t = {.act = act, .n_rows = n, .ff = ff, .A = acts->A, .U = glu ? acts->U : NULL,
                  .S = acts->S, .dA = dA, .dU = glu ? dU : NULL, .backward = true};
    moe_pool_run(pool, act_run, &t);
    /* weight gradients from dA (and dU), then dX = dA·gate + dU·up */
    for (int e = 0; e < E; e++) {
        int64_t r0 = off[e], ne = off[e + 1] - r0;
        if (ne == 0) continue;
        const float *Xe = X + r0 * d;
        float *gA = glu ? g->gate : g->up;
        const float *wA = glu ? w->gate : w->up;
        cblas_sgemm(CblasRowMajor, CblasTrans, CblasNoTrans, (int)ff, (int)d, (int)ne, 1.0f, dA + r0 * ff,
                    (int)ff, Xe, (int)d, 1.0f, gA + e * wsz, (int)d);
        cblas_sgemm(CblasRowMajor, CblasNoTrans, CblasNoTrans, (int)ne, (int)d, (int)ff, 1.0f, dA + r0 * ff,
                    (int)ff, wA + e * wsz, (int)d, accumulate_dx ? 1.0f : 0.0f, dX + r0 * d, (int)d);
        if (glu) {
            cblas_sgemm(CblasRowMajor, CblasTrans, CblasNoTrans, (int)ff, (int)d, (int)ne, 1.0f, dU + r0 * ff,
                        (int)ff, Xe, (int)d, 1.0f, g->up + e * wsz, (int)d);
            cblas_sgemm(CblasRowMajor, CblasNoTrans, CblasNoTrans, (int)ne, (int)d, (int)ff, 1.0f, dU + r0 * ff,
                        (int)ff, w->up + e * wsz, (int)d, 1.0f, dX + r0 * d, (int)d);
        }
    }
}
