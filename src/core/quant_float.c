/* quant_float.c — F32, F16 and BF16: conversions and dot products (scalar references;
 * SIMD versions beside them). F16 weights are multiplied with F16 activations and BF16
 * with BF16, as llama.cpp's CPU backend does. */
#include "core/quant_float.h"
#include "core/f16.h"
#include "core/cpu.h"

#if defined(__AVX2__) || defined(__F16C__)
#include <immintrin.h>
#endif

void moe_f32_to_float(const void *src, float *dst, int64_t n) { memcpy(dst, src, (size_t)n * 4); }
void moe_f32_from_float(const float *src, void *dst, int64_t n) { memcpy(dst, src, (size_t)n * 4); }

void moe_f32_vec_dot_ref(int64_t n, float *s, const void *vx, const void *vy) {
    const float *x = vx, *y = vy;
    double acc = 0; /* the reference sums in double: it is the yardstick, not the fast path */
    for (int64_t i = 0; i < n; i++) acc += (double)x[i] * (double)y[i];
    *s = (float)acc;
}

void moe_f16_to_float(const void *src, float *dst, int64_t n) {
    const moe_f16 *x = src;
    for (int64_t i = 0; i < n; i++) dst[i] = moe_f16_to_f32(x[i]);
}
void moe_f16_from_float(const float *src, void *dst, int64_t n) {
    moe_f16 *y = dst;
    int64_t i = 0;
#if defined(__F16C__) && defined(__AVX__)
    /* the activation path of F16 weights: 8 at a time, same rounding (to nearest even) */
    for (; i + 8 <= n; i += 8)
        _mm_storeu_si128((__m128i *)(y + i), _mm256_cvtps_ph(_mm256_loadu_ps(src + i), _MM_FROUND_TO_NEAREST_INT));
#endif
    for (; i < n; i++) y[i] = moe_f32_to_f16(src[i]);
}
void moe_f16_vec_dot_ref(int64_t n, float *s, const void *vx, const void *vy) {
    const moe_f16 *x = vx, *y = vy;
    double acc = 0;
    for (int64_t i = 0; i < n; i++) acc += (double)moe_f16_to_f32(x[i]) * (double)moe_f16_to_f32(y[i]);
    *s = (float)acc;
}

void moe_bf16_to_float(const void *src, float *dst, int64_t n) {
    const moe_bf16 *x = src;
    for (int64_t i = 0; i < n; i++) dst[i] = moe_bf16_to_f32(x[i]);
}
void moe_bf16_from_float(const float *src, void *dst, int64_t n) {
    moe_bf16 *y = dst;
    for (int64_t i = 0; i < n; i++) y[i] = moe_f32_to_bf16(src[i]);
}
void moe_bf16_vec_dot_ref(int64_t n, float *s, const void *vx, const void *vy) {
    const moe_bf16 *x = vx, *y = vy;
    double acc = 0;
    for (int64_t i = 0; i < n; i++) acc += (double)moe_bf16_to_f32(x[i]) * (double)moe_bf16_to_f32(y[i]);
    *s = (float)acc;
}

/* Fast paths: AVX2+FMA as ggml_vec_dot_f16 does it — products accumulated in F32 lanes,
 * several accumulators so that the FMA latency is hidden — and a scalar version of the
 * same shape for builds without AVX2. Each is one always-inline function of the row count
 * (1 or 4 weight rows against one activation row) that the compiler specialises: the
 * four-row form converts every activation vector once for four rows. */
#if defined(__AVX2__) && defined(__FMA__) && defined(__F16C__)
#include "core/simd.h"
#define INLINE static inline __attribute__((always_inline))
/* The row and accumulator loops must be unrolled for the accumulators to live in registers. */
#define UNROLL _Pragma("GCC unroll 4")

INLINE __m256 load_f32(const void *p, int64_t i) { return _mm256_loadu_ps((const float *)p + i); }
INLINE __m256 load_f16(const void *p, int64_t i) {
    return _mm256_cvtph_ps(_mm_loadu_si128((const __m128i *)((const moe_f16 *)p + i)));
}
INLINE __m256 load_bf16(const void *p, int64_t i) {
    const __m256i w = _mm256_cvtepu16_epi32(_mm_loadu_si128((const __m128i *)((const moe_bf16 *)p + i)));
    return _mm256_castsi256_ps(_mm256_slli_epi32(w, 16));
}
INLINE float get_f32(const void *p, int64_t i) { return ((const float *)p)[i]; }
INLINE float get_f16(const void *p, int64_t i) { return moe_f16_to_f32(((const moe_f16 *)p)[i]); }
INLINE float get_bf16(const void *p, int64_t i) { return moe_bf16_to_f32(((const moe_bf16 *)p)[i]); }
enum { sizeof_f32 = 4, sizeof_f16 = 2, sizeof_bf16 = 2 };

/* One row: 4 accumulators (32 values per step). Four rows: 2 per row (16 values), and
 * `sub` steps per iteration so that an iteration covers one 64-byte line of each row:
 * the prefetch of the next four rows (see quant_legacy.c) is then issued once per line,
 * without a test (F16: 2 steps; on Zen 4 with the L2 prefetch that took the F16 four-row
 * kernel from 60 to 70 GB/s in cache). The accumulators see the values in the same order.
 * il is always false: float matrices are never interleaved (MOE_DEFINE_VEC_DOTS's
 * signature has it for the quantized types). */
#define DEFINE_FLOAT_DOT(T)                                                                   \
    INLINE void dot_##T(int64_t n, float *s, const uint8_t *x, size_t bx, const void *y, int nr, bool il, int pf) { \
        enum { A = 4 };                                                                       \
        const int na = nr == 1 ? 4 : 2, step = 8 * na;                                        \
        const int sub = nr == 1 ? 1 : MOE_MAX(1, 64 / (step * sizeof_##T));                  \
        /* Into L1, rows of 16 KB and more are not prefetched: they are long enough streams  \
         * for the hardware prefetchers, and prefetching them measured slower on Zen 5; into \
         * L2 it helped on Zen 4 (F32 at 4096 columns, one thread: +5 % of DRAM). */        \
        const bool fetch = nr > 1 && (pf == MOE_PF_L2 || (pf == MOE_PF_L1 && bx < 16384));     \
        const size_t pfd = moe_prefetch_distance((size_t)bx * sizeof_##T); /* once: it divides */ \
        __m256 acc[4][A];                                                                     \
        UNROLL for (int r = 0; r < nr; r++)                                                   \
            UNROLL for (int a = 0; a < A; a++) acc[r][a] = _mm256_setzero_ps();               \
        int64_t i = 0;                                                                        \
        for (; i + step * sub <= n; i += step * sub) {                                        \
            if (fetch)                                                                        \
                UNROLL for (int r = 0; r < nr; r++) {                                         \
                    const char *p_ = (const char *)(x + r * bx) + pfd + i * sizeof_##T;   \
                    prefetch_line(p_, pf);                                                    \
                }                                                                             \
            UNROLL for (int u = 0; u < sub; u++)                                              \
                UNROLL for (int a = 0; a < na; a++) {                                         \
                    const __m256 vy = load_##T(y, i + u * step + 8 * a);                      \
                    UNROLL for (int r = 0; r < nr; r++)                                       \
                        acc[r][a] = _mm256_fmadd_ps(load_##T(x + r * bx, i + u * step + 8 * a), vy, acc[r][a]); \
                }                                                                             \
        }                                                                                     \
        for (; i + step <= n; i += step) /* a last half line */                               \
            UNROLL for (int a = 0; a < na; a++) {                                             \
                const __m256 vy = load_##T(y, i + 8 * a);                                     \
                UNROLL for (int r = 0; r < nr; r++)                                           \
                    acc[r][a] = _mm256_fmadd_ps(load_##T(x + r * bx, i + 8 * a), vy, acc[r][a]); \
            }                                                                                 \
        UNROLL for (int r = 0; r < nr; r++) {                                                 \
            UNROLL for (int a = 1; a < na; a++) acc[r][0] = _mm256_add_ps(acc[r][0], acc[r][a]);     \
            float sum = hsum8(acc[r][0]);                                                     \
            for (int64_t k = i; k < n; k++) sum += get_##T(x + r * bx, k) * get_##T(y, k);    \
            s[r] = sum;                                                                       \
        }                                                                                     \
    }
#else
#define INLINE static inline
INLINE float get_f32(const void *p, int64_t i) { return ((const float *)p)[i]; }
INLINE float get_f16(const void *p, int64_t i) { return moe_f16_to_f32(((const moe_f16 *)p)[i]); }
INLINE float get_bf16(const void *p, int64_t i) { return moe_bf16_to_f32(((const moe_bf16 *)p)[i]); }
/* Eight independent float lanes, like the SIMD version, that the compiler may vectorise. */
#define DEFINE_FLOAT_DOT(T)                                                                   \
    INLINE void dot_##T(int64_t n, float *s, const uint8_t *x, size_t bx, const void *y, int nr, bool il, int pf) { \
        for (int r = 0; r < nr; r++) {                                                        \
            const uint8_t *xr = x + r * bx;                                                   \
            float acc[8] = {0};                                                               \
            int64_t i = 0;                                                                    \
            for (; i + 8 <= n; i += 8)                                                        \
                for (int k = 0; k < 8; k++) acc[k] += get_##T(xr, i + k) * get_##T(y, i + k); \
            float sum = 0;                                                                    \
            for (; i < n; i++) sum += get_##T(xr, i) * get_##T(y, i);                         \
            for (int k = 0; k < 8; k++) sum += acc[k];                                        \
            s[r] = sum;                                                                       \
        }                                                                                     \
    }
#endif

DEFINE_FLOAT_DOT(f32)
DEFINE_FLOAT_DOT(f16)
DEFINE_FLOAT_DOT(bf16)

MOE_DEFINE_VEC_DOTS(f32)
MOE_DEFINE_VEC_DOTS(f16)
MOE_DEFINE_VEC_DOTS(bf16)
