/* quant_k.h — the K-quants (Q2_K … Q6_K), IQ4_XS (super-blocks of 256 on IQ4_NL's grid)
 * and their activation type Q8_K: ggml's block layouts byte for byte, dequantization,
 * llama.cpp's reference quantizers, and the dot products of each type with Q8_K (scalar
 * reference in quant_k.c, AVX2 in quant_k_avx2.c). */
#ifndef MOE_CORE_QUANT_K_H
#define MOE_CORE_QUANT_K_H

#include "core/common.h"
#include "core/f16.h"

/* Values per super-block (ggml's QK_K). */
#define MOE_QK_K 256

/* Block layouts, field for field as in ggml-common.h (little-endian, no padding). A super-
 * block of 256 values is split into sub-blocks of 16 (Q2_K, Q3_K, Q6_K) or 32 (Q4_K, Q5_K)
 * values with their own small scales, themselves scaled by the f16 `d` (and `dmin`). */
typedef struct {
    uint8_t scales[MOE_QK_K / 16]; /* per 16 values: scale (low 4 bits), min (high 4 bits) */
    uint8_t qs[MOE_QK_K / 4];      /* 2-bit quants */
    moe_f16 d, dmin;
} moe_block_q2_K;

typedef struct {
    uint8_t hmask[MOE_QK_K / 8];   /* high bit of the 3-bit quants */
    uint8_t qs[MOE_QK_K / 4];      /* low 2 bits */
    uint8_t scales[12];            /* 16 scales of 6 bits, packed */
    moe_f16 d;
} moe_block_q3_K;

typedef struct {
    moe_f16 d, dmin;
    uint8_t scales[12];            /* 8 scales and 8 mins of 6 bits, packed (get_scale_min_k4) */
    uint8_t qs[MOE_QK_K / 2];      /* 4-bit quants */
} moe_block_q4_K;

typedef struct {
    moe_f16 d, dmin;
    uint8_t scales[12];
    uint8_t qh[MOE_QK_K / 8];      /* 5th bit */
    uint8_t qs[MOE_QK_K / 2];      /* low 4 bits */
} moe_block_q5_K;

typedef struct {
    uint8_t ql[MOE_QK_K / 2];      /* low 4 bits */
    uint8_t qh[MOE_QK_K / 4];      /* high 2 bits */
    int8_t scales[MOE_QK_K / 16];  /* 8-bit signed scales */
    moe_f16 d;
} moe_block_q6_K;

/* x = d·(ls − 32)·grid[q] for sub-block ib of 32 values, ls its 6-bit scale (low 4 bits in
 * scales_l[ib / 2], nibble ib % 2; high 2 bits at bit 2·ib of scales_h), grid IQ4_NL's
 * (moe_iq4_nl_values) and q's nibbles as IQ4_NL's within the sub-block's 16 bytes. */
typedef struct {
    moe_f16 d;
    uint16_t scales_h;
    uint8_t scales_l[MOE_QK_K / 64];
    uint8_t qs[MOE_QK_K / 2];
} moe_block_iq4_xs;

typedef struct {
    float d;                       /* f32 scale: activations need the range */
    int8_t qs[MOE_QK_K];
    int16_t bsums[MOE_QK_K / 16];  /* sum of each 16 quants: lets dots fold the mins in */
} moe_block_q8_K;

_Static_assert(sizeof(moe_block_q2_K) == 84, "q2_K block size");
_Static_assert(sizeof(moe_block_q3_K) == 110, "q3_K block size");
_Static_assert(sizeof(moe_block_q4_K) == 144, "q4_K block size");
_Static_assert(sizeof(moe_block_q5_K) == 176, "q5_K block size");
_Static_assert(sizeof(moe_block_q6_K) == 210, "q6_K block size");
_Static_assert(sizeof(moe_block_q8_K) == 292, "q8_K block size");
_Static_assert(sizeof(moe_block_iq4_xs) == 136, "iq4_xs block size");

/* Every function takes n values, n a multiple of 256; the type-table signatures. */

/* Dequantize (ggml's dequantize_row_*: same float operations, same results). */
void moe_q2_K_to_float(const void *src, float *dst, int64_t n);
void moe_q3_K_to_float(const void *src, float *dst, int64_t n);
void moe_q4_K_to_float(const void *src, float *dst, int64_t n);
void moe_q5_K_to_float(const void *src, float *dst, int64_t n);
void moe_q6_K_to_float(const void *src, float *dst, int64_t n);
void moe_q8_K_to_float(const void *src, float *dst, int64_t n);
void moe_iq4_xs_to_float(const void *src, float *dst, int64_t n);

/* llama.cpp's reference quantizers (quantize_row_*_ref), with their scale searches. These
 * are what `llama-quantize` runs when no importance matrix is given, so files written
 * with them match llama.cpp's byte for byte. */
void moe_q2_K_from_float_ref(const float *src, void *dst, int64_t n);
void moe_q3_K_from_float_ref(const float *src, void *dst, int64_t n);
void moe_q4_K_from_float_ref(const float *src, void *dst, int64_t n);
void moe_q5_K_from_float_ref(const float *src, void *dst, int64_t n);
void moe_q6_K_from_float_ref(const float *src, void *dst, int64_t n);
void moe_q8_K_from_float_ref(const float *src, void *dst, int64_t n);
void moe_iq4_xs_from_float_ref(const float *src, void *dst, int64_t n); /* quantize_iq4_xs, no imatrix */
/* The activation quantizer: AVX2 where available, the same bytes as the reference (ggml's
 * x86 CPU backend quantizes activations with quantize_row_q8_K_ref). */
void moe_q8_K_from_float(const float *src, void *dst, int64_t n);

/* Dot products with a Q8_K row: scalar references (ggml's generic kernels: exact integer
 * sums per super-block, combined in float)... */
void moe_q2_K_vec_dot_ref(int64_t n, float *s, const void *x, const void *y);
void moe_q3_K_vec_dot_ref(int64_t n, float *s, const void *x, const void *y);
void moe_q4_K_vec_dot_ref(int64_t n, float *s, const void *x, const void *y);
void moe_q5_K_vec_dot_ref(int64_t n, float *s, const void *x, const void *y);
void moe_q6_K_vec_dot_ref(int64_t n, float *s, const void *x, const void *y);
void moe_q8_K_vec_dot_ref(int64_t n, float *s, const void *x, const void *y);
void moe_iq4_xs_vec_dot_ref(int64_t n, float *s, const void *x, const void *y);
/* ...and the fast versions (AVX2+FMA when compiled for it, else the references). */
void moe_q2_K_vec_dot(int64_t n, float *s, const void *x, const void *y);
void moe_q3_K_vec_dot(int64_t n, float *s, const void *x, const void *y);
void moe_q4_K_vec_dot(int64_t n, float *s, const void *x, const void *y);
void moe_q5_K_vec_dot(int64_t n, float *s, const void *x, const void *y);
void moe_q6_K_vec_dot(int64_t n, float *s, const void *x, const void *y);
void moe_q8_K_vec_dot(int64_t n, float *s, const void *x, const void *y);
void moe_iq4_xs_vec_dot(int64_t n, float *s, const void *x, const void *y);

/* Four weight rows, `bx` bytes apart, against one Q8_K row: s[0..3] (matmul's fast path;
 * the same sums as four calls of the functions above, bit for bit). */
void moe_q2_K_vec_dot_x4(int64_t n, float *s, const void *x, size_t bx, const void *y);
void moe_q3_K_vec_dot_x4(int64_t n, float *s, const void *x, size_t bx, const void *y);
void moe_q4_K_vec_dot_x4(int64_t n, float *s, const void *x, size_t bx, const void *y);
void moe_q5_K_vec_dot_x4(int64_t n, float *s, const void *x, size_t bx, const void *y);
void moe_q6_K_vec_dot_x4(int64_t n, float *s, const void *x, size_t bx, const void *y);
void moe_q8_K_vec_dot_x4(int64_t n, float *s, const void *x, size_t bx, const void *y);
void moe_iq4_xs_vec_dot_x4(int64_t n, float *s, const void *x, size_t bx, const void *y);
/* The same on ngroups groups of four rows interleaved by moe_mat_interleave (SIMD builds
 * only; moe_vec_dot_x4i_fn). */
void moe_q2_K_vec_dot_x4i(int64_t n, float *s, const void *x, size_t bx, const void *y, int64_t ngroups);
void moe_q3_K_vec_dot_x4i(int64_t n, float *s, const void *x, size_t bx, const void *y, int64_t ngroups);
void moe_q4_K_vec_dot_x4i(int64_t n, float *s, const void *x, size_t bx, const void *y, int64_t ngroups);
void moe_q5_K_vec_dot_x4i(int64_t n, float *s, const void *x, size_t bx, const void *y, int64_t ngroups);
void moe_q6_K_vec_dot_x4i(int64_t n, float *s, const void *x, size_t bx, const void *y, int64_t ngroups);
void moe_q8_K_vec_dot_x4i(int64_t n, float *s, const void *x, size_t bx, const void *y, int64_t ngroups);
void moe_iq4_xs_vec_dot_x4i(int64_t n, float *s, const void *x, size_t bx, const void *y, int64_t ngroups);

/* The bytes of one block of four rows in Q4_K's interleaved layout (quant_k.c) */
#define MOE_Q4_K_IL_BLOCK 576
/* Q4_K's interleaved layout (moe_mat_interleave): moe_q4_K_interleave_group writes the
 * group of four rows at src (rows bx bytes apart, nb blocks each) to dst (not overlapping
 * src); moe_q4_K_group_block reads block i of row r back, byte for byte as it was. */
void moe_q4_K_interleave_group(uint8_t *dst, const uint8_t *src, size_t bx, int64_t nb);
void moe_q4_K_group_block(const uint8_t *group, int64_t i, int r, void *out);

/* The same for Q5_K (704 bytes a block of four rows: Q4_K's and the fifth bits) */
#define MOE_Q5_K_IL_BLOCK 704
void moe_q5_K_interleave_group(uint8_t *dst, const uint8_t *src, size_t bx, int64_t nb);
void moe_q5_K_group_block(const uint8_t *group, int64_t i, int r, void *out);
/* The same for IQ4_XS (544 bytes a block of four rows) */
#define MOE_IQ4_XS_IL_BLOCK 544
void moe_iq4_xs_interleave_group(uint8_t *dst, const uint8_t *src, size_t bx, int64_t nb);
void moe_iq4_xs_group_block(const uint8_t *group, int64_t i, int r, void *out);

/* The batch tile of Q2_K, Q3_K and Q6_K (core/gemm.h: moe_gemm_tile_fn; AVX2 builds
 * only): rows [r0, r1) of W against tokens [t0, t1) of xq, bit-identical to the vec_dot. */
struct moe_mat;
void moe_k16_gemm_tile(const struct moe_mat *W, int64_t r0, int64_t r1, const uint8_t *xq, size_t xb, int64_t t0,
                        int64_t t1, float *y, int64_t ldy);

/* True when the fast functions above are SIMD (for test and benchmark reports). */
bool moe_quant_k_simd(void);

#endif
