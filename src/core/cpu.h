/* cpu.h — what the kernels choose by CPU at run time rather than at compile time: whether,
 * and into which cache level, the four-row matrix-vector kernels prefetch what they read
 * next. */
#ifndef MOE_CORE_CPU_H
#define MOE_CORE_CPU_H

#include "core/common.h"

/* MOE_PF_L1: _MM_HINT_T0 (into L1); MOE_PF_L2: _MM_HINT_T1 (into L2); MOE_PF_NONE: no
 * software prefetch, the hardware prefetchers alone. Which one streams fastest from DRAM
 * depends on the core and on the layout (docs/BENCHMARKS.md, "Matrix-vector kernels" and
 * "Zen 4"). */
enum { MOE_PF_L1 = 0, MOE_PF_L2 = 1, MOE_PF_NONE = 2 };

/* Set when the library is loaded from moe_prefetch_detect(): moe_prefetch_level for the
 * four-row kernels on row-major matrices (four streams, rows apart: the float types),
 * moe_prefetch_il_level for the kernels on interleaved ones (matmul.h: one stream in
 * address order, every quantized matrix a model loads). Each kernel call reads its level
 * once. Benchmarks and tests may assign them (they change speed, never results). */
extern int moe_prefetch_level;
extern int moe_prefetch_il_level;

/* The level for interleaved (il) or row-major matrices: the environment variable
 * MOE_PREFETCH_IL (il only) or MOE_PREFETCH ("l1", "l2" or "none") if set to one of
 * those, otherwise the choice for this CPU (cpu.c): L1 on AMD family 1Ah (Zen 5) and
 * later; on Zen 4, L2 for row-major and none for interleaved matrices; elsewhere L2 for
 * row-major and L1 for interleaved ones. */
int moe_prefetch_detect(bool il);
/* "L1", "L2" or "none", for reports */
static inline const char *moe_prefetch_name(int level) {
    return level == MOE_PF_L1 ? "L1" : level == MOE_PF_NONE ? "none" : "L2";
}

/* Calls f(..., pf) with pf the constant MOE_PF_* that `level` holds, so that each choice
 * compiles to its own loop (the kernels are always-inline functions of pf). */
#define MOE_PF_DISPATCH(level, f, ...)                        \
    do {                                                      \
        switch (level) {                                      \
        case MOE_PF_L1: f(__VA_ARGS__, MOE_PF_L1); break;     \
        case MOE_PF_NONE: f(__VA_ARGS__, MOE_PF_NONE); break; \
        default: f(__VA_ARGS__, MOE_PF_L2); break;            \
        }                                                     \
    } while (0)

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

/* Column tiles of the interleaved layouts of their own (the legacy types, Q4_K, Q5_K, IQ4_XS; matmul.h). The
 * kernels of these layouts prepare the activation row once per call (~96 bytes per 32
 * values) and read all of it again for every group of four rows. Past ~4,096 values the
 * prepared row no longer stays in L1 beside the stream of weights: a one-thread Q4_0
 * product from DRAM slowed from ~100 % of the read probe (1,024 and 2,048 columns) to
 * 92 % (4,096), 73 % (8,192) and 68 % (14,336, Mixtral's down projection), while its
 * speed in cache did not change, and with the activations of the first 64 blocks reused
 * for every block 14,336 columns streamed as fast as 1,024 (docs/BENCHMARKS.md). So a row
 * wider than MOE_IL_TILE_MIN_COLS values is stored in tiles of MOE_IL_TILE_COLS: each
 * MOE_IL_SG_GROUPS groups of four rows (a super-group; the last one may have fewer) hold
 * tile 0 of group 0, tile 0 of group 1, ..., tile 0 of the last group, then tile 1 of
 * each group, and so on; tile t of a group is its blocks [t·T, t·T + tn) in the type's
 * interleaved block format (T blocks make MOE_IL_TILE_COLS values; the last tile, tn ≤
 * T, takes the rest). The kernels then read the matrix in address order, one tile of
 * activations (~6 KB) serving eight groups. Narrower rows keep the untiled layout (at
 * 2,816 columns, mix-1b's down projections, tiles measured no faster). */
#define MOE_IL_TILE_MIN_COLS 4096
#define MOE_IL_TILE_COLS 2048
#define MOE_IL_SG_GROUPS 8
/* How far ahead the kernels of the layouts of their own (the legacy types, Q4_K, Q5_K, IQ4_XS) prefetch,
 * tiled or not: such a matrix is read as one stream in address order (group after group,
 * or tile after tile), so the distance is a number of bytes, not "the next rows": 4.5 KB. The same position
 * in the next group, as in a row-major matrix, is 17 KB ahead in a 4,096-wide Q8_0
 * matrix, and those lines sat in L1 beside the prepared activations: bench/matmul at
 * 2 threads, % of the read probe, median of 5 (Zen 5): 4,096 columns q8_0 85 → 91-95,
 * q4_0 98 → 104, q4_K 86 → 96; 2,816 columns (mix-1b's down projections) q8_0 98 → 107,
 * the others unchanged. Tiled, Q8_0 at 14,336 columns on one thread: 33 GB/s at 4.5 KB,
 * 27-30 at one group's tile (8.7 KB) ahead. The generic interleaved kernels (Q2_K, Q3_K,
 * Q6_K: blocks side by side) keep moe_prefetch_distance: with 4.5 KB mix-1b's q6_K decoded
 * ~5 % slower (7 pairs; 1,024 and 2,816 columns, where the next groups were 6.7 and 9 KB
 * ahead). */
#define MOE_IL_PREFETCH 4608
/* T for rows of nb blocks of `block_values` values of a type with a layout of its own: 0
 * when the rows are not tiled. */
static inline int64_t moe_il_tile_blocks(int64_t nb, int64_t block_values) {
    return nb * block_values > MOE_IL_TILE_MIN_COLS ? MOE_IL_TILE_COLS / block_values : 0;
}
/* Byte offset, from its super-group's first byte, of block i of group g (of gs groups in
 * the super-group) of a tiled matrix whose rows have nb blocks of BLK bytes per group
 * (four rows' worth), T blocks per tile. */
static inline size_t moe_il_tiled_offset(int64_t i, int64_t g, int64_t gs, int64_t nb, int64_t T, size_t blk) {
    const int64_t t0 = i / T * T, tn = nb - t0 < T ? nb - t0 : T;
    return ((size_t)(t0 * gs) + (size_t)(g * tn) + (size_t)(i - t0)) * blk;
}

/* Block i of row r of a four-row group that starts at vx, in either layout of the rows:
 * row-major, rows bx bytes apart, or (il) interleaved by moe_mat_interleave (matmul.h),
 * block i of the four rows side by side. The kernels take il as a constant, so each
 * layout compiles to its own loop. */
#define MOE_GROUP_BLOCK(T, vx, bx, r, i, il) \
    ((il) ? (const T *)(vx) + 4 * (i) + (r) : (const T *)((const uint8_t *)(vx) + (size_t)(r) * (bx)) + (i))

/* The public entry points of a type's kernels, moe_<t>_vec_dot and moe_<t>_vec_dot_x4,
 * from one always-inline dot_<t>(n, s, x, bx, y, rows, il, pf) that the compiler
 * specialises for one row and for four rows at each prefetch level (chosen here, once per
 * call). MOE_DEFINE_VEC_DOT_X4I adds moe_<t>_vec_dot_x4i, the four-row kernel on
 * interleaved rows, for the types whose matrices may be interleaved (the quantized ones). */
#define MOE_DEFINE_VEC_DOTS(t)                                                                \
    void moe_##t##_vec_dot(int64_t n, float *s, const void *x, const void *y) { dot_##t(n, s, x, 0, y, 1, false, MOE_PF_NONE); } \
    void moe_##t##_vec_dot_x4(int64_t n, float *s, const void *x, size_t bx, const void *y) { \
        MOE_PF_DISPATCH(moe_prefetch_level, dot_##t, n, s, x, bx, y, 4, false);               \
    }
#define MOE_DEFINE_VEC_DOT_X4I(t)                                                             \
    void moe_##t##_vec_dot_x4i(int64_t n, float *s, const void *x, size_t bx, const void *y, int64_t ngroups) { \
        const uint8_t *g = x;                                                                 \
        const int pf = moe_prefetch_il_level;                                                 \
        for (int64_t k = 0; k < ngroups; k++, g += 4 * bx, s += 4)                            \
            MOE_PF_DISPATCH(pf, dot_##t, n, s, g, bx, y, 4, true);                            \
    }
/* The same entry points where there are no SIMD kernels: the scalar reference, row by row. */
#define MOE_DEFINE_REF_DOTS(t)                                                                \
    void moe_##t##_vec_dot(int64_t n, float *s, const void *x, const void *y) { moe_##t##_vec_dot_ref(n, s, x, y); } \
    void moe_##t##_vec_dot_x4(int64_t n, float *s, const void *x, size_t bx, const void *y) { \
        for (int r = 0; r < 4; r++) moe_##t##_vec_dot_ref(n, s + r, (const uint8_t *)x + r * bx, y); \
    }

#endif
