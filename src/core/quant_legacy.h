/* quant_legacy.h — ggml's "legacy" block quants Q4_0, Q4_1, Q5_0, Q5_1, Q8_0 and Q8_1, and
 * IQ4_NL (the same 32-value blocks with a non-linear grid): block layouts (bit-exact with
 * ggml-common.h), dequantization, llama.cpp's reference quantizers, the activation
 * quantizers and the dot products against Q8_0 / Q8_1. */
#ifndef MOE_CORE_QUANT_LEGACY_H
#define MOE_CORE_QUANT_LEGACY_H

#include "core/common.h"
#include "core/f16.h"

#define MOE_QK_LEGACY 32 /* values per block, every legacy type */

/* ggml-common.h: x = d * (q - 8) */
typedef struct { moe_f16 d; uint8_t qs[16]; } moe_block_q4_0;
/* x = d * q + m */
typedef struct { moe_f16 d, m; uint8_t qs[16]; } moe_block_q4_1;
/* x = d * (q - 16), q = low nibble | bit j of qh << 4 */
typedef struct { moe_f16 d; uint8_t qh[4]; uint8_t qs[16]; } moe_block_q5_0;
/* x = d * q + m */
typedef struct { moe_f16 d, m; uint8_t qh[4]; uint8_t qs[16]; } moe_block_q5_1;
/* x = d * q */
typedef struct { moe_f16 d; int8_t qs[32]; } moe_block_q8_0;
/* x = d * q; s = d * sum(q) (the activation type of Q4_1 and Q5_1) */
typedef struct { moe_f16 d, s; int8_t qs[32]; } moe_block_q8_1;
/* x = d * moe_iq4_nl_values[q], q a nibble laid out as Q4_0's (low: values 0-15, high:
 * 16-31). llama.cpp writes it where a K-quant does not fit the rows (Q2_K and Q3_K
 * files of models whose expert rows are not a multiple of 256 values, as Qwen-MoE's and
 * DeepSeek-MoE's 1,408). */
typedef struct { moe_f16 d; uint8_t qs[16]; } moe_block_iq4_nl;
extern const int8_t moe_iq4_nl_values[16]; /* ggml-common.h's kvalues_iq4nl */

/* Dequantization (n a multiple of 32). */
void moe_q4_0_to_float(const void *src, float *dst, int64_t n);
void moe_q4_1_to_float(const void *src, float *dst, int64_t n);
void moe_q5_0_to_float(const void *src, float *dst, int64_t n);
void moe_q5_1_to_float(const void *src, float *dst, int64_t n);
void moe_q8_0_to_float(const void *src, float *dst, int64_t n);
void moe_q8_1_to_float(const void *src, float *dst, int64_t n);
void moe_iq4_nl_to_float(const void *src, float *dst, int64_t n);

/* llama.cpp's reference quantizers (ggml-quants.c quantize_row_*_ref), bit for bit: what
 * `llama-quantize` writes into files. */
void moe_q4_0_quantize_ref(const float *src, void *dst, int64_t n);
void moe_q4_1_quantize_ref(const float *src, void *dst, int64_t n);
void moe_q5_0_quantize_ref(const float *src, void *dst, int64_t n);
void moe_q5_1_quantize_ref(const float *src, void *dst, int64_t n);
void moe_q8_0_quantize_ref(const float *src, void *dst, int64_t n);
void moe_q8_1_quantize_ref(const float *src, void *dst, int64_t n);
/* ggml-quants.c's quantize_iq4_nl without importance weights (what llama-quantize does
 * without an imatrix): per block the scale that maps the value of largest magnitude to the
 * grid's end, then 15 nearby scales, keeping the best x²-weighted least-squares fit. */
void moe_iq4_nl_quantize_ref(const float *src, void *dst, int64_t n);
/* Its steps, which IQ4_XS's quantizer (quant_k.c) shares: the grid index nearest v; the
 * scale the search picks for 32 values (0 when every |x| < 1e-15); the 16 bytes of 32
 * values' indices at the inverse scale id. */
int moe_iq4_nl_index(float v);
float moe_iq4_nl_block_scale(const float *x);
void moe_iq4_nl_pack(uint8_t qs[16], const float *x, float id);

/* Activation quantizers: the results of ggml's CPU-backend quantize_row_q8_0 / _q8_1 on
 * an AVX2 build (id = 127 / amax, round half to even). The _scalar versions give the same
 * bytes without SIMD so the results never depend on the build; the plain names pick the
 * AVX2 version where compiled in. */
void moe_q8_0_quantize(const float *src, void *dst, int64_t n);
void moe_q8_0_quantize_scalar(const float *src, void *dst, int64_t n);
void moe_q8_1_quantize(const float *src, void *dst, int64_t n);
void moe_q8_1_quantize_scalar(const float *src, void *dst, int64_t n);

/* Dot products as llama.cpp pairs them: Q4_0·Q8_0, Q4_1·Q8_1, Q5_0·Q8_0, Q5_1·Q8_1,
 * Q8_0·Q8_0, IQ4_NL·Q8_0. _ref: scalar (integer sums per block, blocks summed in double); the plain
 * names: AVX2+FMA where compiled in. _x4: four weight rows, `bx` bytes apart, against one
 * activation row (s[0..3]) so that each activation block is loaded once per four rows.
 * _x4i: the same on ngroups groups of four rows interleaved by moe_mat_interleave (Q4_0's
 * and Q8_0's interleaving is a layout of their own: quant_legacy.c); defined only where the
 * SIMD kernels are compiled in (moe_type_vec_dot_x4i says which). */
/* The bytes of one block of four rows in Q4_0's and Q8_0's interleaved layouts: four
 * scales and the four rows' quants (quant_legacy.c describes the order). */
#define MOE_Q4_0_IL_BLOCK 72
#define MOE_Q8_0_IL_BLOCK 136
/* where a block's quants start in both layouts: after the four rows' F16 scales */
#define MOE_IL_QS 8
/* Q4_0's interleaved layout (moe_mat_interleave): moe_q4_0_interleave_group writes the
 * group of four rows at src (rows bx bytes apart, nb blocks each) to dst (4·bx bytes, not
 * overlapping src); moe_q4_0_group_block reads block i of row r back from such a group. */
void moe_q4_0_interleave_group(uint8_t *dst, const uint8_t *src, size_t bx, int64_t nb);
void moe_q4_0_group_block(const uint8_t *group, int64_t i, int r, void *out);
/* The same for Q8_0's interleaved layout. */
void moe_q8_0_interleave_group(uint8_t *dst, const uint8_t *src, size_t bx, int64_t nb);
void moe_q8_0_group_block(const uint8_t *group, int64_t i, int r, void *out);
/* The same for Q5_0's, Q4_1's and Q5_1's: Q4_0's with the fifth bits and/or the mins
 * (88, 80 and 96 bytes a block of four rows; quant_legacy.c describes the order) */
#define MOE_Q5_0_IL_BLOCK 88
#define MOE_Q4_1_IL_BLOCK 80
#define MOE_Q5_1_IL_BLOCK 96
void moe_q5_0_interleave_group(uint8_t *dst, const uint8_t *src, size_t bx, int64_t nb);
void moe_q5_0_group_block(const uint8_t *group, int64_t i, int r, void *out);
void moe_q4_1_interleave_group(uint8_t *dst, const uint8_t *src, size_t bx, int64_t nb);
void moe_q4_1_group_block(const uint8_t *group, int64_t i, int r, void *out);
void moe_q5_1_interleave_group(uint8_t *dst, const uint8_t *src, size_t bx, int64_t nb);
void moe_q5_1_group_block(const uint8_t *group, int64_t i, int r, void *out);

#define MOE_LEGACY_DOTS(X) X(q4_0) X(q4_1) X(q5_0) X(q5_1) X(q8_0) X(iq4_nl)
#define MOE_DECLARE_DOTS(t)                                                            \
    void moe_##t##_vec_dot_ref(int64_t n, float *s, const void *x, const void *y);     \
    void moe_##t##_vec_dot(int64_t n, float *s, const void *x, const void *y);         \
    void moe_##t##_vec_dot_x4(int64_t n, float *s, const void *x, size_t bx, const void *y);    \
    void moe_##t##_vec_dot_x4i(int64_t n, float *s, const void *x, size_t bx, const void *y, int64_t ngroups);
MOE_LEGACY_DOTS(MOE_DECLARE_DOTS)
#undef MOE_DECLARE_DOTS

#endif
