/* cpu.h — what the kernels choose by CPU at run time rather than at compile time: the
 * cache level into which the four-row matrix-vector kernels prefetch the next rows. */
#ifndef MOE_CORE_CPU_H
#define MOE_CORE_CPU_H

#include "core/common.h"

/* MOE_PF_L1: _MM_HINT_T0 (into L1); MOE_PF_L2: _MM_HINT_T1 (into L2). Which one streams
 * faster from DRAM depends on the core (docs/BENCHMARKS.md, "Matrix-vector kernels"). */
enum { MOE_PF_L1 = 0, MOE_PF_L2 = 1 };

/* Set when the library is loaded from moe_prefetch_detect(); each _x4 kernel call reads
 * it once. Benchmarks and tests may assign it (it changes speed, never results). */
extern int moe_prefetch_level;

/* The environment variable MOE_PREFETCH ("l1" or "l2") if set to one of those, otherwise
 * the choice for this CPU: L1 on AMD family 1Ah (Zen 5) and later, L2 elsewhere. */
int moe_prefetch_detect(void);
/* How far ahead the _x4 kernels prefetch in a row-major matrix whose rows are row_bytes
 * long: the same position four rows on, or eight, twelve, ... rows on when four rows are
 * shorter than moe_prefetch_min_bytes. Why: four rows of a 1024-wide Q4_0 or Q4_K matrix
 * (attention, the experts' gate and up projections) are only 2.3 KB, which a core streams
 * in ~100 ns, less than a DRAM access takes; eight rows ahead decoded mix-1b 7-11 % faster
 * (paired decode A/B, docs/BENCHMARKS.md), while Q8_0, whose four rows are 4.3 KB, gained
 * nothing from going further. Default 4096; MOE_PREFETCH_BYTES overrides it at load time.
 * Changes speed only, never results. */
extern size_t moe_prefetch_min_bytes;
static inline size_t moe_prefetch_distance(size_t row_bytes) {
    const size_t g = 4 * row_bytes; /* 0 from the one-row kernels, which do not prefetch */
    return g == 0 || g >= moe_prefetch_min_bytes ? g : g * ((moe_prefetch_min_bytes + g - 1) / g);
}

/* Block i of row r of a four-row group that starts at vx, in either layout of the rows:
 * row-major, rows bx bytes apart, or (il) interleaved by moe_mat_interleave (matmul.h),
 * block i of the four rows side by side. The kernels take il as a constant, so each
 * layout compiles to its own loop. */
#define MOE_GROUP_BLOCK(T, vx, bx, r, i, il) \
    ((il) ? (const T *)(vx) + 4 * (i) + (r) : (const T *)((const uint8_t *)(vx) + (size_t)(r) * (bx)) + (i))

/* The public entry points of a type's kernels, moe_<t>_vec_dot and moe_<t>_vec_dot_x4,
 * from one always-inline dot_<t>(n, s, x, bx, y, rows, l2, il) that the compiler
 * specialises for one row and for four rows at each prefetch level (chosen here, once per
 * call). MOE_DEFINE_VEC_DOT_X4I adds moe_<t>_vec_dot_x4i, the four-row kernel on
 * interleaved rows, for the types whose matrices may be interleaved (the quantized ones). */
#define MOE_DEFINE_VEC_DOTS(t)                                                                \
    void moe_##t##_vec_dot(int64_t n, float *s, const void *x, const void *y) { dot_##t(n, s, x, 0, y, 1, false, false); } \
    void moe_##t##_vec_dot_x4(int64_t n, float *s, const void *x, size_t bx, const void *y) { \
        if (moe_prefetch_level == MOE_PF_L2) dot_##t(n, s, x, bx, y, 4, true, false);        \
        else dot_##t(n, s, x, bx, y, 4, false, false);                                        \
    }
#define MOE_DEFINE_VEC_DOT_X4I(t)                                                             \
    void moe_##t##_vec_dot_x4i(int64_t n, float *s, const void *x, size_t bx, const void *y, int64_t ngroups) { \
        const uint8_t *g = x;                                                                 \
        for (int64_t k = 0; k < ngroups; k++, g += 4 * bx, s += 4) {                          \
            if (moe_prefetch_level == MOE_PF_L2) dot_##t(n, s, g, bx, y, 4, true, true);     \
            else dot_##t(n, s, g, bx, y, 4, false, true);                                     \
        }                                                                                     \
    }
/* The same entry points where there are no SIMD kernels: the scalar reference, row by row. */
#define MOE_DEFINE_REF_DOTS(t)                                                                \
    void moe_##t##_vec_dot(int64_t n, float *s, const void *x, const void *y) { moe_##t##_vec_dot_ref(n, s, x, y); } \
    void moe_##t##_vec_dot_x4(int64_t n, float *s, const void *x, size_t bx, const void *y) { \
        for (int r = 0; r < 4; r++) moe_##t##_vec_dot_ref(n, s + r, (const uint8_t *)x + r * bx, y); \
    }

#endif
