/* quant_legacy.c — Q4_0, Q4_1, Q5_0, Q5_1, Q8_0, Q8_1: dequantization, llama.cpp's
 * reference quantizers, the Q8_0/Q8_1 activation quantizers and the dot products, each
 * as a scalar reference and an AVX2+FMA version (tests/test_quant_legacy.c compares them).
 * See docs/QUANTS.md for the layouts, the rounding rules and the measured error bounds. */
#include "core/quant_legacy.h"
#include "core/cpu.h"

#include <float.h>
#include <math.h>
#include <stddef.h>
#include <string.h>

/* F16C too, as quant_k_avx2.c and types.c ask: the interleaved kernels read their four
 * scales with one conversion (rows4_scales_at, simd.h). Every AVX2 CPU has it. */
#if defined(__AVX2__) && defined(__FMA__) && defined(__F16C__)
#include "core/simd.h"
#define MOE_LEGACY_AVX2 1
#endif

_Static_assert(sizeof(moe_block_q4_0) == 18, "block_q4_0 layout");
_Static_assert(sizeof(moe_block_q4_1) == 20, "block_q4_1 layout");
_Static_assert(sizeof(moe_block_q5_0) == 22, "block_q5_0 layout");
_Static_assert(sizeof(moe_block_q5_1) == 24, "block_q5_1 layout");
_Static_assert(sizeof(moe_block_q8_0) == 34, "block_q8_0 layout");
_Static_assert(sizeof(moe_block_q8_1) == 36, "block_q8_1 layout");
_Static_assert(sizeof(moe_block_iq4_nl) == 18, "block_iq4_nl layout");
_Static_assert(offsetof(moe_block_iq4_nl, qs) == offsetof(moe_block_q4_0, qs), "IQ4_NL blocks are Q4_0's: one layout");

const int8_t moe_iq4_nl_values[16] = {-127, -104, -83, -65, -49, -35, -22, -10, 1, 13, 25, 38, 53, 69, 89, 113};
_Static_assert(MOE_Q5_0_IL_BLOCK == 4 * sizeof(moe_block_q5_0) && MOE_Q4_1_IL_BLOCK == 4 * sizeof(moe_block_q4_1) &&
                   MOE_Q5_1_IL_BLOCK == 4 * sizeof(moe_block_q5_1),
               "an interleaved block holds four rows' blocks");
_Static_assert(MOE_Q4_0_IL_BLOCK == 4 * sizeof(moe_block_q4_0) && MOE_Q8_0_IL_BLOCK == 4 * sizeof(moe_block_q8_0),
               "an interleaved block holds four rows' blocks");

#define QK MOE_QK_LEGACY
#define F16(h) moe_f16_to_f32(h)

/* ------------------------------------------------------------------ dequantization */

void moe_q4_0_to_float(const void *src, float *y, int64_t n) {
    const moe_block_q4_0 *x = src;
    for (int64_t i = 0; i < n / QK; i++, y += QK) {
        const float d = F16(x[i].d);
        for (int j = 0; j < QK / 2; j++) {
            y[j] = ((x[i].qs[j] & 0x0F) - 8) * d;
            y[j + QK / 2] = ((x[i].qs[j] >> 4) - 8) * d;
        }
    }
}

void moe_q4_1_to_float(const void *src, float *y, int64_t n) {
    const moe_block_q4_1 *x = src;
    for (int64_t i = 0; i < n / QK; i++, y += QK) {
        const float d = F16(x[i].d), m = F16(x[i].m);
        for (int j = 0; j < QK / 2; j++) {
            y[j] = (x[i].qs[j] & 0x0F) * d + m;
            y[j + QK / 2] = (x[i].qs[j] >> 4) * d + m;
        }
    }
}

static inline uint32_t load_u32(const uint8_t *p) {
    uint32_t v;
    memcpy(&v, p, 4);
    return v;
}

/* ------------------------------------------------------------ Q4_0's interleaved layout */
/* Per block i of a group of four rows, 72 bytes: d0..d3, then chunk k = 0..3 holding
 * qs[4k..4k+3] of rows 0, 1, 2, 3 (why: moe_q4_0_vec_dot_x4i below). */

void moe_q4_0_interleave_group(uint8_t *dst, const uint8_t *src, size_t bx, int64_t nb) {
    for (int64_t i = 0; i < nb; i++, dst += MOE_Q4_0_IL_BLOCK)
        for (int r = 0; r < 4; r++) {
            const moe_block_q4_0 *x = (const moe_block_q4_0 *)(src + (size_t)r * bx) + i;
            memcpy(dst + 2 * r, &x->d, 2);
            for (int k = 0; k < 4; k++) memcpy(dst + MOE_IL_QS + 16 * k + 4 * r, x->qs + 4 * k, 4);
        }
}

void moe_q4_0_group_block(const uint8_t *group, int64_t i, int r, void *out) {
    const uint8_t *b = group + (size_t)i * MOE_Q4_0_IL_BLOCK;
    moe_block_q4_0 *x = out;
    memcpy(&x->d, b + 2 * r, 2);
    for (int k = 0; k < 4; k++) memcpy(x->qs + 4 * k, b + MOE_IL_QS + 16 * k + 4 * r, 4);
}

/* Q5_0's, Q4_1's and Q5_1's: Q4_0's layout with what these blocks add. Per block i of a
 * group of four rows:
 *   Q5_0, 88 bytes: d0..d3; four 32-bit masks of fifth bits M0..M3; Q4_0's four chunks
 *   Q4_1, 80 bytes: d0..d3; m0..m3; the four chunks
 *   Q5_1, 96 bytes: d0..d3; m0..m3; M0..M3; the four chunks
 * M_k is chunk k's fifth bits in the order of the vector the kernel makes of the chunk
 * (both halves, low nibbles in the low one): bit 4r + j is bit 4k + j of row r's qh
 * (value 4k + j), bit 16 + 4r + j its bit 16 + 4k + j (value 16 + 4k + j); with AVX-512 it
 * is that vector's byte mask as it is (fifth_bits32). The blocks' fields are found by
 * offset (ggml-common.h's layouts): d at 0, then m, qh, qs as the type has them. */
typedef struct {
    size_t bsz, qh, qs; /* a block's size and its qh and qs offsets (qh 0: none) */
    size_t il, il_m, il_masks, il_qs; /* the interleaved block's size and offsets (0: none) */
} legacy_il;

static const legacy_il IL_Q5_0 = {sizeof(moe_block_q5_0), offsetof(moe_block_q5_0, qh), offsetof(moe_block_q5_0, qs),
                                  MOE_Q5_0_IL_BLOCK, 0, 8, 24};
static const legacy_il IL_Q4_1 = {sizeof(moe_block_q4_1), 0, offsetof(moe_block_q4_1, qs), MOE_Q4_1_IL_BLOCK, 8, 0, 16};
static const legacy_il IL_Q5_1 = {sizeof(moe_block_q5_1), offsetof(moe_block_q5_1, qh), offsetof(moe_block_q5_1, qs),
                                  MOE_Q5_1_IL_BLOCK, 8, 16, 32};

/* The 4×4 matrix of nibbles in x (element (i, j) at bit 16i + 4j) transposed: the 2×2
 * blocks off the diagonal swapped, then the elements off the diagonal of each block. */
static inline uint64_t nibbles4x4_transpose(uint64_t x) {
    uint64_t t = (x ^ (x >> 24)) & UINT64_C(0x00000000FF00FF00);
    x ^= t ^ (t << 24);
    t = (x ^ (x >> 12)) & UINT64_C(0x0000F0F00000F0F0);
    return x ^ t ^ (t << 12);
}

/* Inlined with L a constant, so that the offsets and sizes are constants in the copies
 * (a loop over runtime ones interleaved at 3 GB/s; the offloader interleaves every expert
 * it reads) */
static inline __attribute__((always_inline)) void legacy_interleave(const legacy_il *L, uint8_t *dst, const uint8_t *src,
                                                                    size_t bx, int64_t nb) {
    for (int64_t i = 0; i < nb; i++, dst += L->il) {
        uint64_t lo = 0, hi = 0; /* the rows' qh halves, nibble (r, k) at bit 16r + 4k */
        for (int r = 0; r < 4; r++) {
            const uint8_t *x = src + (size_t)r * bx + (size_t)i * L->bsz;
            memcpy(dst + 2 * r, x, 2);
            if (L->il_m) memcpy(dst + L->il_m + 2 * r, x + 2, 2);
            for (int k = 0; k < 4; k++) memcpy(dst + L->il_qs + 16 * k + 4 * r, x + L->qs + 4 * k, 4);
            if (L->qh) {
                const uint64_t qh = load_u32(x + L->qh);
                lo |= (qh & 0xFFFF) << 16 * r;
                hi |= (qh >> 16) << 16 * r;
            }
        }
        if (L->qh) { /* M_k = nibble k of every row's low half | of its high half << 16 */
            lo = nibbles4x4_transpose(lo), hi = nibbles4x4_transpose(hi);
            for (int k = 0; k < 4; k++) {
                const uint32_t m = (uint32_t)(lo >> 16 * k & 0xFFFF) | (uint32_t)(hi >> 16 * k & 0xFFFF) << 16;
                memcpy(dst + L->il_masks + 4 * k, &m, 4);
            }
        }
    }
}

static inline __attribute__((always_inline)) void legacy_group_block(const legacy_il *L, const uint8_t *group, int64_t i,
                                                                     int r, uint8_t *x) {
    const uint8_t *b = group + (size_t)i * L->il;
    memcpy(x, b + 2 * r, 2);
    if (L->il_m) memcpy(x + 2, b + L->il_m + 2 * r, 2);
    uint32_t qh = 0;
    for (int k = 0; k < 4; k++) {
        memcpy(x + L->qs + 4 * k, b + L->il_qs + 16 * k + 4 * r, 4);
        if (!L->qh) continue;
        const uint32_t m = load_u32(b + L->il_masks + 4 * k);
        qh |= (m >> 4 * r & 15u) << 4 * k | (m >> (16 + 4 * r) & 15u) << (16 + 4 * k);
    }
    if (L->qh) memcpy(x + L->qh, &qh, 4);
}

void moe_q5_0_interleave_group(uint8_t *dst, const uint8_t *src, size_t bx, int64_t nb) {
    legacy_interleave(&IL_Q5_0, dst, src, bx, nb);
}
void moe_q5_0_group_block(const uint8_t *group, int64_t i, int r, void *out) { legacy_group_block(&IL_Q5_0, group, i, r, out); }
void moe_q4_1_interleave_group(uint8_t *dst, const uint8_t *src, size_t bx, int64_t nb) {
    legacy_interleave(&IL_Q4_1, dst, src, bx, nb);
}
void moe_q4_1_group_block(const uint8_t *group, int64_t i, int r, void *out) { legacy_group_block(&IL_Q4_1, group, i, r, out); }
void moe_q5_1_interleave_group(uint8_t *dst, const uint8_t *src, size_t bx, int64_t nb) {
    legacy_interleave(&IL_Q5_1, dst, src, bx, nb);
}
void moe_q5_1_group_block(const uint8_t *group, int64_t i, int r, void *out) { legacy_group_block(&IL_Q5_1, group, i, r, out); }

/* Q8_0's: per block i, 136 bytes: d0..d3, then four 32-byte vectors, vector k holding
 * qs[4k..4k+3] of rows 0-3, then qs[16+4k..16+4k+3] of rows 0-3: values of the first
 * half of the block (A) in its low half, of the second (B) in its high half, as Q4_0's
 * chunk k masked (moe_q8_0_vec_dot_x4i). */
void moe_q8_0_interleave_group(uint8_t *dst, const uint8_t *src, size_t bx, int64_t nb) {
    for (int64_t i = 0; i < nb; i++, dst += MOE_Q8_0_IL_BLOCK)
        for (int r = 0; r < 4; r++) {
            const moe_block_q8_0 *x = (const moe_block_q8_0 *)(src + (size_t)r * bx) + i;
            memcpy(dst + 2 * r, &x->d, 2);
            for (int k = 0; k < 4; k++) {
                memcpy(dst + MOE_IL_QS + 32 * k + 4 * r, x->qs + 4 * k, 4);
                memcpy(dst + MOE_IL_QS + 32 * k + 16 + 4 * r, x->qs + 16 + 4 * k, 4);
            }
        }
}

void moe_q8_0_group_block(const uint8_t *group, int64_t i, int r, void *out) {
    const uint8_t *b = group + (size_t)i * MOE_Q8_0_IL_BLOCK;
    moe_block_q8_0 *x = out;
    memcpy(&x->d, b + 2 * r, 2);
    for (int k = 0; k < 4; k++) {
        memcpy(x->qs + 4 * k, b + MOE_IL_QS + 32 * k + 4 * r, 4);
        memcpy(x->qs + 16 + 4 * k, b + MOE_IL_QS + 32 * k + 16 + 4 * r, 4);
    }
}

void moe_q5_0_to_float(const void *src, float *y, int64_t n) {
    const moe_block_q5_0 *x = src;
    for (int64_t i = 0; i < n / QK; i++, y += QK) {
        const float d = F16(x[i].d);
        const uint32_t qh = load_u32(x[i].qh);
        for (int j = 0; j < QK / 2; j++) {
            const int h0 = (qh >> j) & 1, h1 = (qh >> (j + 16)) & 1;
            y[j] = (((x[i].qs[j] & 0x0F) | h0 << 4) - 16) * d;
            y[j + QK / 2] = (((x[i].qs[j] >> 4) | h1 << 4) - 16) * d;
        }
    }
}

void moe_q5_1_to_float(const void *src, float *y, int64_t n) {
    const moe_block_q5_1 *x = src;
    for (int64_t i = 0; i < n / QK; i++, y += QK) {
        const float d = F16(x[i].d), m = F16(x[i].m);
        const uint32_t qh = load_u32(x[i].qh);
        for (int j = 0; j < QK / 2; j++) {
            const int h0 = (qh >> j) & 1, h1 = (qh >> (j + 16)) & 1;
            y[j] = ((x[i].qs[j] & 0x0F) | h0 << 4) * d + m;
            y[j + QK / 2] = ((x[i].qs[j] >> 4) | h1 << 4) * d + m;
        }
    }
}

void moe_q8_0_to_float(const void *src, float *y, int64_t n) {
    const moe_block_q8_0 *x = src;
    for (int64_t i = 0; i < n / QK; i++, y += QK) {
        const float d = F16(x[i].d);
        for (int j = 0; j < QK; j++) y[j] = x[i].qs[j] * d;
    }
}

void moe_iq4_nl_to_float(const void *src, float *y, int64_t n) {
    const moe_block_iq4_nl *x = src;
    for (int64_t i = 0; i < n / QK; i++, y += QK) {
        const float d = F16(x[i].d);
        for (int j = 0; j < QK / 2; j++) {
            y[j] = d * moe_iq4_nl_values[x[i].qs[j] & 0x0F];
            y[j + QK / 2] = d * moe_iq4_nl_values[x[i].qs[j] >> 4];
        }
    }
}

void moe_q8_1_to_float(const void *src, float *y, int64_t n) {
    const moe_block_q8_1 *x = src;
    for (int64_t i = 0; i < n / QK; i++, y += QK) {
        const float d = F16(x[i].d);
        for (int j = 0; j < QK; j++) y[j] = x[i].qs[j] * d;
    }
}

/* ------------------------------------------------------------------ reference quantizers
 * Transcriptions of ggml-quants.c's quantize_row_*_ref: every expression is evaluated in
 * the same order and precision (no FMA contraction: the project builds with -std=c11,
 * where gcc does not contract), so the bytes equal those llama-quantize writes. Their
 * quirks are kept on purpose: the truncating `(int8_t)(v + 8.5f)` rounding of Q4_0/Q5_0,
 * the scale taken from the signed value of largest magnitude (so that value maps to -8 or
 * -16 exactly), and roundf (half away from zero) in Q8_0/Q8_1. */

void moe_q4_0_quantize_ref(const float *x, void *dst, int64_t n) {
    moe_block_q4_0 *y = dst;
    for (int64_t i = 0; i < n / QK; i++, x += QK) {
        float amax = 0.0f, max = 0.0f;
        for (int j = 0; j < QK; j++) {
            const float v = x[j];
            if (amax < fabsf(v)) { amax = fabsf(v); max = v; }
        }
        const float d = max / -8;
        const float id = d ? 1.0f / d : 0.0f;
        y[i].d = moe_f32_to_f16(d);
        for (int j = 0; j < QK / 2; j++) {
            const float x0 = x[j] * id, x1 = x[QK / 2 + j] * id;
            const uint8_t xi0 = (uint8_t)MOE_MIN(15, (int8_t)(x0 + 8.5f));
            const uint8_t xi1 = (uint8_t)MOE_MIN(15, (int8_t)(x1 + 8.5f));
            y[i].qs[j] = (uint8_t)(xi0 | xi1 << 4);
        }
    }
}

void moe_q4_1_quantize_ref(const float *x, void *dst, int64_t n) {
    moe_block_q4_1 *y = dst;
    for (int64_t i = 0; i < n / QK; i++, x += QK) {
        float min = FLT_MAX, max = -FLT_MAX;
        for (int j = 0; j < QK; j++) {
            if (x[j] < min) min = x[j];
            if (x[j] > max) max = x[j];
        }
        const float d = (max - min) / ((1 << 4) - 1);
        const float id = d ? 1.0f / d : 0.0f;
        y[i].d = moe_f32_to_f16(d);
        y[i].m = moe_f32_to_f16(min);
        for (int j = 0; j < QK / 2; j++) {
            const float x0 = (x[j] - min) * id, x1 = (x[QK / 2 + j] - min) * id;
            const uint8_t xi0 = (uint8_t)MOE_MIN(15, (int8_t)(x0 + 0.5f));
            const uint8_t xi1 = (uint8_t)MOE_MIN(15, (int8_t)(x1 + 0.5f));
            y[i].qs[j] = (uint8_t)(xi0 | xi1 << 4);
        }
    }
}

void moe_q5_0_quantize_ref(const float *x, void *dst, int64_t n) {
    moe_block_q5_0 *y = dst;
    for (int64_t i = 0; i < n / QK; i++, x += QK) {
        float amax = 0.0f, max = 0.0f;
        for (int j = 0; j < QK; j++) {
            const float v = x[j];
            if (amax < fabsf(v)) { amax = fabsf(v); max = v; }
        }
        const float d = max / -16;
        const float id = d ? 1.0f / d : 0.0f;
        y[i].d = moe_f32_to_f16(d);
        uint32_t qh = 0;
        for (int j = 0; j < QK / 2; j++) {
            const float x0 = x[j] * id, x1 = x[QK / 2 + j] * id;
            const uint8_t xi0 = (uint8_t)MOE_MIN(31, (int8_t)(x0 + 16.5f));
            const uint8_t xi1 = (uint8_t)MOE_MIN(31, (int8_t)(x1 + 16.5f));
            y[i].qs[j] = (uint8_t)((xi0 & 0x0F) | (xi1 & 0x0F) << 4);
            qh |= ((xi0 & 0x10u) >> 4) << j;
            qh |= ((xi1 & 0x10u) >> 4) << (j + QK / 2);
        }
        memcpy(y[i].qh, &qh, 4);
    }
}

void moe_q5_1_quantize_ref(const float *x, void *dst, int64_t n) {
    moe_block_q5_1 *y = dst;
    for (int64_t i = 0; i < n / QK; i++, x += QK) {
        float min = FLT_MAX, max = -FLT_MAX;
        for (int j = 0; j < QK; j++) {
            if (x[j] < min) min = x[j];
            if (x[j] > max) max = x[j];
        }
        const float d = (max - min) / ((1 << 5) - 1);
        const float id = d ? 1.0f / d : 0.0f;
        y[i].d = moe_f32_to_f16(d);
        y[i].m = moe_f32_to_f16(min);
        uint32_t qh = 0;
        for (int j = 0; j < QK / 2; j++) {
            const float x0 = (x[j] - min) * id, x1 = (x[QK / 2 + j] - min) * id;
            const uint8_t xi0 = (uint8_t)(x0 + 0.5f), xi1 = (uint8_t)(x1 + 0.5f);
            y[i].qs[j] = (uint8_t)((xi0 & 0x0F) | (xi1 & 0x0F) << 4);
            qh |= ((xi0 & 0x10u) >> 4) << j;
            qh |= ((xi1 & 0x10u) >> 4) << (j + QK / 2);
        }
        memcpy(y[i].qh, &qh, 4);
    }
}

void moe_q8_0_quantize_ref(const float *x, void *dst, int64_t n) {
    moe_block_q8_0 *y = dst;
    for (int64_t i = 0; i < n / QK; i++, x += QK) {
        float amax = 0.0f;
        for (int j = 0; j < QK; j++) amax = MOE_MAX(amax, fabsf(x[j]));
        const float d = amax / ((1 << 7) - 1);
        const float id = d ? 1.0f / d : 0.0f;
        y[i].d = moe_f32_to_f16(d);
        for (int j = 0; j < QK; j++) y[i].qs[j] = (int8_t)roundf(x[j] * id);
    }
}

void moe_q8_1_quantize_ref(const float *x, void *dst, int64_t n) {
    moe_block_q8_1 *y = dst;
    for (int64_t i = 0; i < n / QK; i++, x += QK) {
        float amax = 0.0f;
        for (int j = 0; j < QK; j++) amax = MOE_MAX(amax, fabsf(x[j]));
        const float d = amax / ((1 << 7) - 1);
        const float id = d ? 1.0f / d : 0.0f;
        y[i].d = moe_f32_to_f16(d);
        int sum = 0;
        for (int j = 0; j < QK; j++) {
            y[i].qs[j] = (int8_t)roundf(x[j] * id);
            sum += y[i].qs[j];
        }
        y[i].s = moe_f32_to_f16(sum * d);
    }
}

/* IQ4_NL (ggml-quants.c: quantize_row_iq4_nl_impl for one block of 32 with ntry 7 and no
 * importance weights, as quantize_iq4_nl calls it). moe_iq4_nl_index: the grid index
 * nearest to x (ties to the upper one), as ggml's best_index_int8. Its bisection ends at
 * the k with val[k] <= x < val[k+1] and then compares the two distances; k is counted
 * here without branches instead (the bisection's were unpredictable: the quantizers,
 * which call this 16 times per value, ran ~3× slower: 4 against 12 million values a
 * second on a Zen 5 core), then the same comparison, so
 * the same index for every x (NaN included: 15). */
int moe_iq4_nl_index(float x) {
    /* the grid as floats (exact), 16 of them so that the count vectorizes */
    static const float val[16] = {-127, -104, -83, -65, -49, -35, -22, -10, 1, 13, 25, 38, 53, 69, 89, 113};
    if (x <= val[0]) return 0;
    if (!(x < val[15])) return 15;
    int k = -1; /* val[0] <= x < val[15]: counts val[0], not val[15] */
    for (int j = 0; j < 16; j++) k += x >= val[j];
    return x - val[k] < val[k + 1] - x ? k : k + 1;
}

float moe_iq4_nl_block_scale(const float *x) {
    enum { NTRY = 7 };
    const int8_t *values = moe_iq4_nl_values;
    float weight[QK];
    for (int j = 0; j < QK; j++) weight[j] = x[j] * x[j];
    float amax = 0, max = 0;
    for (int j = 0; j < QK; j++) {
        const float ax = fabsf(x[j]);
        if (ax > amax) { amax = ax; max = x[j]; }
    }
    if (amax < 1e-15f) return 0; /* ggml's GROUP_MAX_EPS */
    float d = -max / values[0];
    float id = 1 / d;
    float sumqx = 0, sumq2 = 0;
    for (int j = 0; j < QK; j++) {
        const float al = id * x[j];
        const float q = values[moe_iq4_nl_index(al)], w = weight[j];
        sumqx += w * q * x[j];
        sumq2 += w * q * q;
    }
    d = sumqx / sumq2;
    float best = d * sumqx;
    for (int itry = -NTRY; itry <= NTRY; itry++) {
        id = (itry + values[0]) / max;
        sumqx = sumq2 = 0;
        for (int j = 0; j < QK; j++) {
            const float al = id * x[j];
            const float q = values[moe_iq4_nl_index(al)], w = weight[j];
            sumqx += w * q * x[j];
            sumq2 += w * q * q;
        }
        if (sumq2 > 0 && sumqx * sumqx > best * sumq2) {
            d = sumqx / sumq2;
            best = d * sumqx;
        }
    }
    return d;
}

void moe_iq4_nl_pack(uint8_t qs[16], const float *x, float id) {
    for (int j = 0; j < QK / 2; j++)
        qs[j] = (uint8_t)(moe_iq4_nl_index(id * x[j]) | moe_iq4_nl_index(id * x[j + QK / 2]) << 4);
}

void moe_iq4_nl_quantize_ref(const float *x, void *dst, int64_t n) {
    moe_block_iq4_nl *y = dst;
    for (int64_t i = 0; i < n / QK; i++, x += QK) {
        const float scale = moe_iq4_nl_block_scale(x);
        y[i].d = moe_f32_to_f16(scale);
        /* the quants again at the chosen scale (at 0: index 8, the grid's value nearest 0) */
        moe_iq4_nl_pack(y[i].qs, x, scale ? 1 / scale : 0);
    }
}

/* ------------------------------------------------------------------ activation quantizers
 * ggml's CPU backend quantizes activations with its SIMD quantize_row_q8_0/_q8_1, which
 * differ from the reference above in two ways: id = 127/amax instead of 1/(amax/127), and
 * round half to even (_mm256_round_ps) instead of roundf. Both versions here follow the
 * SIMD one so that a scalar build computes the same activations as an AVX2 build (and as
 * llama.cpp). rintf rounds half to even in the default rounding mode, which the library
 * never changes. */

static inline float q8_block_scalar(const float *x, int8_t *q, int *sum_out) {
    float amax = 0.0f;
    for (int j = 0; j < QK; j++) amax = MOE_MAX(amax, fabsf(x[j]));
    const float id = amax != 0.0f ? 127.f / amax : 0.0f;
    int sum = 0;
    for (int j = 0; j < QK; j++) {
        float v = rintf(x[j] * id);
        v = v > 127.f ? 127.f : v < -128.f ? -128.f : v; /* the saturating packs of the SIMD one */
        q[j] = (int8_t)v;
        sum += q[j];
    }
    *sum_out = sum;
    return amax / 127.f;
}

/* The rows of Q8_0 and Q8_1 blocks, each block quantized by `block` (the scalar or the
 * AVX2 one: they give the same bytes); Q8_1 also stores d times the sum of its q. */
typedef float (*q8_block_fn)(const float *x, int8_t *q, int *sum_out);
static inline void q8_0_rows(const float *x, moe_block_q8_0 *y, int64_t n, q8_block_fn block) {
    for (int64_t i = 0; i < n / QK; i++, x += QK) {
        int sum;
        y[i].d = moe_f32_to_f16(block(x, y[i].qs, &sum));
    }
}
static inline void q8_1_rows(const float *x, moe_block_q8_1 *y, int64_t n, q8_block_fn block) {
    for (int64_t i = 0; i < n / QK; i++, x += QK) {
        int sum;
        const float d = block(x, y[i].qs, &sum);
        y[i].d = moe_f32_to_f16(d);
        y[i].s = moe_f32_to_f16(d * (float)sum);
    }
}

void moe_q8_0_quantize_scalar(const float *x, void *dst, int64_t n) { q8_0_rows(x, dst, n, q8_block_scalar); }
void moe_q8_1_quantize_scalar(const float *x, void *dst, int64_t n) { q8_1_rows(x, dst, n, q8_block_scalar); }

#if MOE_LEGACY_AVX2
/* One block of 32 floats → 32 int8 (in order) in *q; returns d and the sum of the q. */
static inline float q8_block_avx2(const float *x, int8_t *q, int *sum_out) {
    __m256 v0 = _mm256_loadu_ps(x), v1 = _mm256_loadu_ps(x + 8);
    __m256 v2 = _mm256_loadu_ps(x + 16), v3 = _mm256_loadu_ps(x + 24);
    const __m256 sign = _mm256_set1_ps(-0.0f);
    __m256 m = _mm256_max_ps(_mm256_andnot_ps(sign, v0), _mm256_andnot_ps(sign, v1));
    m = _mm256_max_ps(m, _mm256_max_ps(_mm256_andnot_ps(sign, v2), _mm256_andnot_ps(sign, v3)));
    __m128 m4 = _mm_max_ps(_mm256_extractf128_ps(m, 1), _mm256_castps256_ps128(m));
    m4 = _mm_max_ps(m4, _mm_movehl_ps(m4, m4));
    m4 = _mm_max_ss(m4, _mm_movehdup_ps(m4));
    const float amax = _mm_cvtss_f32(m4);
    const __m256 id = _mm256_set1_ps(amax != 0.0f ? 127.f / amax : 0.0f);
#define RND (_MM_FROUND_TO_NEAREST_INT | _MM_FROUND_NO_EXC) /* ties to even, as ggml's _MM_ROUND_NEAREST */
    __m256i i0 = _mm256_cvtps_epi32(_mm256_round_ps(_mm256_mul_ps(v0, id), RND));
    __m256i i1 = _mm256_cvtps_epi32(_mm256_round_ps(_mm256_mul_ps(v1, id), RND));
    __m256i i2 = _mm256_cvtps_epi32(_mm256_round_ps(_mm256_mul_ps(v2, id), RND));
    __m256i i3 = _mm256_cvtps_epi32(_mm256_round_ps(_mm256_mul_ps(v3, id), RND));
    __m256i s = _mm256_add_epi32(_mm256_add_epi32(i0, i1), _mm256_add_epi32(i2, i3));
    __m128i s4 = _mm_add_epi32(_mm256_castsi256_si128(s), _mm256_extracti128_si256(s, 1));
    s4 = _mm_add_epi32(s4, _mm_unpackhi_epi64(s4, s4));
    s4 = _mm_add_epi32(s4, _mm_shuffle_epi32(s4, _MM_SHUFFLE(2, 3, 0, 1)));
    *sum_out = _mm_cvtsi128_si32(s4);
    /* packs work within 128-bit lanes; the permute puts the 32 bytes back in order */
    __m256i p = _mm256_packs_epi16(_mm256_packs_epi32(i0, i1), _mm256_packs_epi32(i2, i3));
    p = _mm256_permutevar8x32_epi32(p, _mm256_setr_epi32(0, 4, 1, 5, 2, 6, 3, 7));
    _mm256_storeu_si256((__m256i *)q, p);
    return amax / 127.f;
#undef RND
}

void moe_q8_0_quantize(const float *x, void *dst, int64_t n) { q8_0_rows(x, dst, n, q8_block_avx2); }
void moe_q8_1_quantize(const float *x, void *dst, int64_t n) { q8_1_rows(x, dst, n, q8_block_avx2); }
#else
void moe_q8_0_quantize(const float *x, void *dst, int64_t n) { moe_q8_0_quantize_scalar(x, dst, n); }
void moe_q8_1_quantize(const float *x, void *dst, int64_t n) { moe_q8_1_quantize_scalar(x, dst, n); }
#endif

/* ------------------------------------------------------------------ dot products: scalar
 * The yardstick: exact integer sums within a block, blocks scaled and summed in double. */

void moe_q4_0_vec_dot_ref(int64_t n, float *s, const void *vx, const void *vy) {
    const moe_block_q4_0 *x = vx;
    const moe_block_q8_0 *y = vy;
    double acc = 0;
    for (int64_t i = 0; i < n / QK; i++) {
        int sumi = 0;
        for (int j = 0; j < QK / 2; j++)
            sumi += ((x[i].qs[j] & 0x0F) - 8) * y[i].qs[j] + ((x[i].qs[j] >> 4) - 8) * y[i].qs[j + QK / 2];
        acc += (double)sumi * F16(x[i].d) * F16(y[i].d);
    }
    *s = (float)acc;
}

void moe_q4_1_vec_dot_ref(int64_t n, float *s, const void *vx, const void *vy) {
    const moe_block_q4_1 *x = vx;
    const moe_block_q8_1 *y = vy;
    double acc = 0;
    for (int64_t i = 0; i < n / QK; i++) {
        int sumi = 0;
        for (int j = 0; j < QK / 2; j++)
            sumi += (x[i].qs[j] & 0x0F) * y[i].qs[j] + (x[i].qs[j] >> 4) * y[i].qs[j + QK / 2];
        acc += (double)sumi * F16(x[i].d) * F16(y[i].d) + (double)F16(x[i].m) * F16(y[i].s);
    }
    *s = (float)acc;
}

void moe_q5_0_vec_dot_ref(int64_t n, float *s, const void *vx, const void *vy) {
    const moe_block_q5_0 *x = vx;
    const moe_block_q8_0 *y = vy;
    double acc = 0;
    for (int64_t i = 0; i < n / QK; i++) {
        const uint32_t qh = load_u32(x[i].qh);
        int sumi = 0;
        for (int j = 0; j < QK / 2; j++) {
            const int v0 = ((x[i].qs[j] & 0x0F) | ((qh >> j) & 1) << 4) - 16;
            const int v1 = ((x[i].qs[j] >> 4) | ((qh >> (j + 16)) & 1) << 4) - 16;
            sumi += v0 * y[i].qs[j] + v1 * y[i].qs[j + QK / 2];
        }
        acc += (double)sumi * F16(x[i].d) * F16(y[i].d);
    }
    *s = (float)acc;
}

void moe_q5_1_vec_dot_ref(int64_t n, float *s, const void *vx, const void *vy) {
    const moe_block_q5_1 *x = vx;
    const moe_block_q8_1 *y = vy;
    double acc = 0;
    for (int64_t i = 0; i < n / QK; i++) {
        const uint32_t qh = load_u32(x[i].qh);
        int sumi = 0;
        for (int j = 0; j < QK / 2; j++) {
            const int v0 = (x[i].qs[j] & 0x0F) | ((qh >> j) & 1) << 4;
            const int v1 = (x[i].qs[j] >> 4) | ((qh >> (j + 16)) & 1) << 4;
            sumi += v0 * y[i].qs[j] + v1 * y[i].qs[j + QK / 2];
        }
        acc += (double)sumi * F16(x[i].d) * F16(y[i].d) + (double)F16(x[i].m) * F16(y[i].s);
    }
    *s = (float)acc;
}

void moe_iq4_nl_vec_dot_ref(int64_t n, float *s, const void *vx, const void *vy) {
    const moe_block_iq4_nl *x = vx;
    const moe_block_q8_0 *y = vy;
    double acc = 0;
    for (int64_t i = 0; i < n / QK; i++) {
        int sumi = 0;
        for (int j = 0; j < QK / 2; j++)
            sumi += moe_iq4_nl_values[x[i].qs[j] & 0x0F] * y[i].qs[j] + moe_iq4_nl_values[x[i].qs[j] >> 4] * y[i].qs[j + QK / 2];
        acc += (double)sumi * F16(x[i].d) * F16(y[i].d);
    }
    *s = (float)acc;
}

void moe_q8_0_vec_dot_ref(int64_t n, float *s, const void *vx, const void *vy) {
    const moe_block_q8_0 *x = vx, *y = vy;
    double acc = 0;
    for (int64_t i = 0; i < n / QK; i++) {
        int sumi = 0;
        for (int j = 0; j < QK; j++) sumi += x[i].qs[j] * y[i].qs[j];
        acc += (double)sumi * F16(x[i].d) * F16(y[i].d);
    }
    *s = (float)acc;
}

/* ------------------------------------------------------------------ dot products: AVX2
 * ggml's approach: integer products of a block with _mm256_maddubs_epi16 (u8 × s8 → pairs
 * of s16) summed to s32 with _mm256_madd_epi16 — or one vpdpbusd where the CPU has
 * VNNI (MOE_VNNI, simd.h), as ggml does — converted to float and accumulated with one FMA by the
 * block's two scales. Differences from ggml, all for speed and none changing the integer
 * sums: the 4- and 5-bit values stay unsigned (0..15, 0..31) so they multiply directly,
 * and the offset (-8, -16) comes off as 8·Σy per block, computed once per activation
 * block and shared by the rows of the _x4 kernels; nibbles are split with one variable
 * shift; the F16 weight scales are read through a table (one broadcast load instead of a
 * conversion). No int16 can saturate: |q4·y pair| ≤ 3810, |q5·y| ≤ 7874, |q8·y| ≤ 32512.
 *
 * Each kernel is written once as an always-inline function of the row count (1 or 4),
 * which the compiler specialises; rows accumulate independently, so the four-row kernel
 * has four FMA chains in flight. The four-row kernel also prefetches the same position
 * of the next four rows (or further for short rows: moe_prefetch_distance, core/cpu.h): a
 * row of a quantized matrix is only a few KB, too short for the
 * hardware prefetchers to ramp up on, and without this a 4096-wide Q4_0 matrix-vector
 * product streams at ~8 GB/s instead of ~30 (docs/BENCHMARKS.md). Into L1, L2 or not at
 * all as moe_prefetch_level (row-major) or moe_prefetch_il_level (interleaved) says
 * (core/cpu.h: which is fastest depends on the core); the entry points pick the
 * specialisation once per call. */
#if MOE_LEGACY_AVX2
#define INLINE static inline __attribute__((always_inline))
/* The row loops must be unrolled for the accumulators to live in registers. */
#define FOR_ROWS(r) _Pragma("GCC unroll 4") for (int r = 0; r < nr; r++)


#if MOE_VNNI
/* With VNNI (32-bit sums, no 16-bit saturation) Q4 nibbles need no shift: the low lane
 * keeps the low nibbles (values 0..15), the high lane the high nibbles in place, i.e. 16×
 * their value. The dot then carries a 16× factor in lanes 4..7, which Q4_LANES takes out
 * of the scale — exactly, a power of two — and which Q4_0's offset carries too (8·16). */
INLINE __m256i q4_nibbles(const uint8_t *qs) {
    const __m256i mask = _mm256_setr_epi64x(0x0f0f0f0f0f0f0f0f, 0x0f0f0f0f0f0f0f0f, (long long)0xf0f0f0f0f0f0f0f0ull,
                                            (long long)0xf0f0f0f0f0f0f0f0ull);
    return _mm256_and_si256(_mm256_broadcastsi128_si256(_mm_loadu_si128((const __m128i *)qs)), mask);
}
#define Q4_LANES _mm256_setr_ps(1, 1, 1, 1, 1.0f / 16, 1.0f / 16, 1.0f / 16, 1.0f / 16)
#define Q4_OFFSET _mm256_setr_epi64x(0x0808080808080808, 0x0808080808080808, (long long)0x8080808080808080ull, \
                                     (long long)0x8080808080808080ull)
#else
/* maddubs would saturate on 16× values (2·240·127 > 32767): shift the high nibbles down */
#define q4_nibbles nibbles32
#define Q4_LANES _mm256_set1_ps(1.0f)
#define Q4_OFFSET _mm256_set1_epi8(8)
#endif

/* fifth_bits32 (simd.h): bit j of 32 → byte j = 0x10 if set (the fifth bit of Q5 values) */
INLINE __m256i fifth_bits32(const uint8_t *qh) { return fifth_bits(load_u32(qh)); }

/* Σ (x − k)·y in the lanes dot_u8s8 sums into, for unsigned weights x with an offset k
 * (a vector of u8, per lane): offset_term(qy, k) once per activation block, then
 * dot_offset(term, x, qy) per row. With VNNI the term is −k·Σy in int32, the start value
 * of the vpdpbusd. Without, it is k·y in int16 pairs, taken off the int16 pairs of
 * x·y before the pairs are summed to int32: one multiply per activation block instead
 * of two, same integers (|x·y pair| ≤ 2·31·128 and |k·y pair| ≤ 2·16·128, no int16
 * overflows). */
INLINE __m256i offset_term(__m256i qy, __m256i k) {
#if MOE_VNNI
    /* one vpdpbusd rather than maddubs + madd: the multiply ports are this kernel's
     * bottleneck (+5 % in cache on Zen 5, bench/matmul's L2 column) */
    return _mm256_sub_epi32(_mm256_setzero_si256(), mm256_dpbusd(_mm256_setzero_si256(), k, qy));
#else
    return _mm256_maddubs_epi16(k, qy);
#endif
}
INLINE __m256i dot_offset(__m256i term, __m256i x, __m256i qy) {
#if MOE_VNNI
    return mm256_dpbusd(term, x, qy);
#else
    return _mm256_madd_epi16(_mm256_sub_epi16(_mm256_maddubs_epi16(x, qy), term), _mm256_set1_epi16(1));
#endif
}

/* The _x4 kernels prefetch the same position of a later row group (see above), once per
 * cache line: every block for Q8_0, every other block for the types of ≤ 32 bytes, at the
 * level pf (prefetch_line, simd.h). `dist` is moe_prefetch_distance(bx), which each
 * kernel computes once per call (it divides: not in the block loop). (The kernels of the
 * layouts of their own, below, prefetch MOE_IL_PREFETCH bytes ahead: core/cpu.h.) */
#define PREFETCH(p, dist, nr, i, pf) \
    do { \
        if ((nr) > 1 && (sizeof(*(p)) > 32 || ((i) & 1) == 0)) prefetch_line((const char *)(p) + (dist), pf); \
    } while (0)

INLINE void store_sums(float *s, const __m256 *acc, const float *extra, int nr) {
    FOR_ROWS(r) s[r] = hsum8(acc[r]) + (extra ? extra[r] : 0.0f);
}

#define ACC_INIT __m256 acc[4] = {_mm256_setzero_ps(), _mm256_setzero_ps(), _mm256_setzero_ps(), _mm256_setzero_ps()}

/* Q4_0·Q8_0. Every Q4_0 kernel (one row, four rows, the interleaved layout below, the
 * batch tiles of gemm_tiles.c) sums in one order, so that all of them give the same bits:
 * per block and row, the exact integer sums A = Σ (q−8)·y over values 0–15 and B over
 * values 16–31; then acc_A += (d·dy)·A and acc_B += (d·dy)·B in float; the row's result
 * is acc_A + acc_B. Four rows fill one vector [A0..A3 | B0..B3] (rows4_halves), so the
 * float work is one convert, one multiply and one FMA per block for four rows. Why
 * halves: the interleaved kernel forms them with no horizontal sums at all. With VNNI the
 * B lanes carry 16·B and dy/16 (Q4_LANES): the same floats, powers of two being exact.
 * (llama.cpp's own AVX2 kernel sums in another order: its results and these agree to
 * float rounding, which tests/test_quant_legacy.c bounds.) */
INLINE void dot_q4_0(int64_t n, float *s, const uint8_t *vx, size_t bx, const void *vy, int nr, bool il, int pf) {
    (void)il; /* the interleaved layout has its own kernel */
    const size_t pfd = moe_prefetch_distance(bx);
    const moe_block_q8_0 *y = vy;
    const moe_block_q4_0 *x[4];
    FOR_ROWS(r) x[r] = (const moe_block_q4_0 *)(vx + (size_t)r * bx);
    __m256 acc = _mm256_setzero_ps();
    for (int64_t i = 0; i < n / QK; i++) {
        const __m256i qy = _mm256_loadu_si256((const __m256i *)y[i].qs);
        const __m256i off = offset_term(qy, Q4_OFFSET);
        __m256i p[4];
        FOR_ROWS(r) {
            PREFETCH(x[r] + i, pfd, nr, i, pf);
            p[r] = dot_offset(off, q4_nibbles(x[r][i].qs), qy);
        }
        const __m256i ab = nr == 4 ? rows4_halves(p[0], p[1], p[2], p[3]) : rows4_halves(p[0], p[0], p[0], p[0]);
        const __m256 d = nr == 4 ? rows4_scales(x[0][i].d, x[1][i].d, x[2][i].d, x[3][i].d) : bcast_f16(x[0][i].d);
        acc = _mm256_fmadd_ps(_mm256_mul_ps(d, _mm256_mul_ps(bcast_f16(y[i].d), Q4_LANES)), _mm256_cvtepi32_ps(ab), acc);
    }
    rows4_store(s, acc, nr);
}

/* The interleaved Q4_0 layout (moe_q4_0_interleave_group): a group of four rows holds,
 * for each block i, 72 bytes: the four scales d0..d3, then four chunks of 16 bytes, chunk
 * k holding qs[4k..4k+3] of rows 0, 1, 2, 3. The low nibbles of chunk k are values
 * 4k..4k+3 of each row (A: values 0-15), its high nibbles values 16+4k.. (B), so a chunk
 * loaded into both halves of a vector gives, masked, every row's A values in the low half
 * and B values in the high half, lanes of their own. Against activation vectors prepared
 * once per call, four dot products give [A0..A3 | B0..B3] directly (q4_0_group): 1.4× the
 * four-row kernel on standard blocks, in cache on Zen 5, before the broadcast form took
 * out the lane folding (docs/BENCHMARKS.md). */
/* One prepared activation block for the interleaved Q4_0 and Q8_0 kernels. Each lane of
 * a weight vector meets four y of one dword; the four activation vectors a block needs,
 * [y dword p | y dword q] each over four lanes, are one in-lane vpshufd of z away
 * (x4i_a). 96 bytes, so that a 4096-wide row's 128 blocks (12 KB) stay in L1 with the
 * stream of weights passing through it. */
typedef struct {
    __m256i z;  /* y's dwords */
    __m256i s;  /* what comes off the sums [A | B] (the offsets), per half */
    __m256 dy;  /* the activation scale (Q4_0: times Q4_LANES) */
} x4i_act;

#define X4I_CHUNK 512  /* activation blocks prepared at a time: 16384 columns, 48 KB of stack */

/* [y dword k | y dword 4+k], each broadcast over its four lanes */
#define x4i_a(z, k) _mm256_shuffle_epi32(z, (k) * 0x55)


/* Q4_0: the offsets are [−8·Σ y0..15 | −8·Σ y16..31 (×16 with VNNI)]. */
static void q4_0_prepare(x4i_act *a, const moe_block_q8_0 *y, int64_t nb) {
    for (int64_t i = 0; i < nb; i++) {
        const __m256i qy = _mm256_loadu_si256((const __m256i *)y[i].qs);
        a[i].z = qy; /* x4i_a(z, k) = [y dword k | y dword 4+k]: Q4_0's chunk k */
#if MOE_VNNI
        const __m256i shift = _mm256_setr_epi32(3, 3, 3, 3, 7, 7, 7, 7);
#else
        const __m256i shift = _mm256_set1_epi32(3);
#endif
        a[i].s = _mm256_sub_epi32(_mm256_setzero_si256(), _mm256_sllv_epi32(half_sums(qy), shift));
        a[i].dy = _mm256_mul_ps(bcast_f16(y[i].d), Q4_LANES);
    }
}

/* Blocks [0, nb) of one interleaved group (b: its first block) against prepared
 * activations, into acc = [acc_A | acc_B]. Chunk k (qs[4k..4k+3] of rows 0-3) is loaded
 * into both halves of a vector (a broadcast load, no shuffle); its low nibbles (values
 * 4k..4k+3) are kept in the low half and its high nibbles (values 16+4k..) in the high
 * half, against [y dword k | y dword 4+k]. The four dot products then add up to the A
 * sums of rows 0-3 in lanes 0-3 and the B sums in lanes 4-7, already in the order of the
 * accumulator: no lane folding per block. (Shuffles, not arithmetic, bound this loop on
 * Zen 5: this form has 4 in-lane ones per block instead of 6 plus an add.) */
INLINE __m256 q4_0_group(__m256 acc, const uint8_t *b, const x4i_act *a, int64_t nb, size_t pfd, int pf) {
#if MOE_VNNI
    /* the high nibbles in place, 16× their value (taken out by Q4_LANES) */
    const __m256i m = _mm256_setr_epi64x(0x0F0F0F0F0F0F0F0F, 0x0F0F0F0F0F0F0F0F, (long long)0xF0F0F0F0F0F0F0F0ull,
                                         (long long)0xF0F0F0F0F0F0F0F0ull);
#define Q4I_NIBBLES(c) _mm256_and_si256(c, m)
#else
    /* maddubs would saturate on 16× values: the high half shifted down instead */
    const __m256i m4 = _mm256_set1_epi8(0x0F), sh = _mm256_setr_epi32(0, 0, 0, 0, 4, 4, 4, 4);
#define Q4I_NIBBLES(c) _mm256_and_si256(_mm256_srlv_epi32(c, sh), m4)
#endif
    _Pragma("GCC unroll 2") for (int64_t i = 0; i < nb; i++, b += MOE_Q4_0_IL_BLOCK) {
        prefetch_line(b + pfd, pf);
        const __m256i z = a[i].z;
        __m256i u[4];
        _Pragma("GCC unroll 4") for (int k = 0; k < 4; k++)
            u[k] = Q4I_NIBBLES(_mm256_broadcastsi128_si256(_mm_loadu_si128((const __m128i *)(b + MOE_IL_QS + 16 * k))));
        /* (k written out: at -O1, as in the sanitizer build, k·0x55 in a loop is no constant) */
        const __m256i y[4] = {x4i_a(z, 0), x4i_a(z, 1), x4i_a(z, 2), x4i_a(z, 3)};
        const __m256i ab = dot_nibbles(a[i].s, u, y, 4); /* the offsets, then the sums */
        const __m256 d = rows4_scales_at(b);
        acc = _mm256_fmadd_ps(_mm256_mul_ps(d, a[i].dy), _mm256_cvtepi32_ps(ab), acc);
    }
#undef Q4I_NIBBLES
    return acc;
}


/* Q5_0·Q8_0 sums in Q4_0's order (the halves A and B, dot_q4_0), which its interleaved
 * kernel below forms directly: the same bits. */
INLINE void dot_q5_0(int64_t n, float *s, const uint8_t *vx, size_t bx, const void *vy, int nr, bool il, int pf) {
    (void)il; /* the interleaved layout has its own kernel */
    const size_t pfd = moe_prefetch_distance(bx);
    const moe_block_q8_0 *y = vy;
    const moe_block_q5_0 *x[4];
    FOR_ROWS(r) x[r] = (const moe_block_q5_0 *)(vx + (size_t)r * bx);
    __m256 acc = _mm256_setzero_ps();
    for (int64_t i = 0; i < n / QK; i++) {
        const __m256i qy = _mm256_loadu_si256((const __m256i *)y[i].qs);
        const __m256i off = offset_term(qy, _mm256_set1_epi8(16));
        __m256i p[4];
        FOR_ROWS(r) {
            PREFETCH(x[r] + i, pfd, nr, i, pf);
            p[r] = dot_offset(off, _mm256_or_si256(nibbles32(x[r][i].qs), fifth_bits32(x[r][i].qh)), qy);
        }
        const __m256i ab = nr == 4 ? rows4_halves(p[0], p[1], p[2], p[3]) : rows4_halves(p[0], p[0], p[0], p[0]);
        const __m256 d = nr == 4 ? rows4_scales(x[0][i].d, x[1][i].d, x[2][i].d, x[3][i].d) : bcast_f16(x[0][i].d);
        acc = _mm256_fmadd_ps(_mm256_mul_ps(d, bcast_f16(y[i].d)), _mm256_cvtepi32_ps(ab), acc);
    }
    rows4_store(s, acc, nr);
}

/* Q5_0, Q4_1 and Q5_1 interleaved (legacy_interleave, above): Q4_0's kernel with each
 * chunk's fifth bits ORed in from its mask (Q5_0, Q5_1), and for Q4_1 and Q5_1 the mins
 * added after each block into the B half, m·sy for four rows, as their row kernels do
 * (dot_q45_1). Five-bit values have both halves' nibbles shifted down (the offset of Q5_0
 * is then 16·Σy per half, prepared); Q4_1's high ones stay in place with VNNI, as Q4_0's. */
enum { L_Q5_0, L_Q4_1, L_Q5_1 };

/* y: Q8_0 blocks for Q5_0, Q8_1 blocks (with s) for Q4_1 and Q5_1 */
static void legacy_prepare(x4i_act *a, const void *vy, int64_t nb, int t) {
    const moe_block_q8_0 *y0 = vy;
    const moe_block_q8_1 *y1 = vy;
    for (int64_t i = 0; i < nb; i++) {
        const moe_f16 d = t == L_Q5_0 ? y0[i].d : y1[i].d;
        const __m256i qy = _mm256_loadu_si256((const __m256i *)(t == L_Q5_0 ? y0[i].qs : y1[i].qs));
        a[i].z = qy;
        if (t == L_Q5_0) {
            a[i].s = _mm256_sub_epi32(_mm256_setzero_si256(), _mm256_slli_epi32(half_sums(qy), 4));
        } else { /* [0 × 4 | sy × 4] as floats, for the mins */
            const float sy = moe_f16_table[y1[i].s];
            a[i].s = _mm256_castps_si256(_mm256_setr_ps(0, 0, 0, 0, sy, sy, sy, sy));
        }
        a[i].dy = t == L_Q4_1 ? _mm256_mul_ps(bcast_f16(d), Q4_LANES) : bcast_f16(d);
    }
}

INLINE __m256 legacy_group(__m256 acc, const uint8_t *b, const x4i_act *a, int64_t nb, size_t pfd, int pf, int t) {
    const size_t blk = t == L_Q5_0 ? MOE_Q5_0_IL_BLOCK : t == L_Q4_1 ? MOE_Q4_1_IL_BLOCK : MOE_Q5_1_IL_BLOCK;
    const size_t masks = t == L_Q5_0 ? 8 : 16, qs = t == L_Q5_0 ? 24 : t == L_Q4_1 ? 16 : 32;
    _Pragma("GCC unroll 2") for (int64_t i = 0; i < nb; i++, b += blk) {
        prefetch_line(b + pfd, pf);
        const __m256i z = a[i].z;
        __m256i u[4];
        _Pragma("GCC unroll 4") for (int k = 0; k < 4; k++)
            u[k] = t == L_Q4_1 ? q4_nibbles(b + qs + 16 * k)
                               : _mm256_or_si256(nibbles32(b + qs + 16 * k), fifth_bits32(b + masks + 4 * k));
        const __m256i y[4] = {x4i_a(z, 0), x4i_a(z, 1), x4i_a(z, 2), x4i_a(z, 3)};
        /* without VNNI, maddubs pairs of 5-bit values: 4·2·31·127 < 2^15 */
        const __m256i ab = dot_nibbles(t == L_Q5_0 ? a[i].s : _mm256_setzero_si256(), u, y, 4);
        acc = _mm256_fmadd_ps(_mm256_mul_ps(rows4_scales_at(b), a[i].dy), _mm256_cvtepi32_ps(ab), acc);
        if (t != L_Q5_0) acc = _mm256_add_ps(acc, _mm256_mul_ps(rows4_scales_at(b + 8), _mm256_castsi256_ps(a[i].s)));
    }
    return acc;
}

/* Q4_1·Q8_1 and Q5_1·Q8_1: d·q + m against d'·q', whose sum is d·d'·Σqq' + m·s'. One
 * kernel for both: Q5_1 ORs in the fifth bits (qh); Q4_1's nibbles come through
 * q4_nibbles, with VNNI the high ones 16× in place, which Q4_LANES takes out of dy. The
 * order of sums is Q4_0's (the halves A and B, dot_q4_0), with m·s' added to the B half
 * after each block, so that the interleaved kernel (legacy_group) gives the same bits. */
INLINE void dot_q45_1(int64_t n, float *s, const uint8_t *vx, size_t bx, const void *vy, int nr, bool il, int pf, bool q5) {
    (void)il; /* the interleaved layouts have their own kernel */
    const size_t pfd = moe_prefetch_distance(bx);
    const moe_block_q8_1 *y = vy;
    const size_t bs = q5 ? sizeof(moe_block_q5_1) : sizeof(moe_block_q4_1);
    __m256 acc = _mm256_setzero_ps();
    for (int64_t i = 0; i < n / QK; i++) {
        const __m256i qy = _mm256_loadu_si256((const __m256i *)y[i].qs);
        const __m256 dy = q5 ? bcast_f16(y[i].d) : _mm256_mul_ps(bcast_f16(y[i].d), Q4_LANES);
        const float sy = moe_f16_table[y[i].s];
        __m256i p[4];
        moe_f16 d[4], m[4];
        FOR_ROWS(r) {
            const uint8_t *xb = vx + (size_t)r * bx + (size_t)i * bs;
            const moe_block_q4_1 *x4 = (const moe_block_q4_1 *)xb;
            const moe_block_q5_1 *x5 = (const moe_block_q5_1 *)xb;
            PREFETCH(x4, pfd, nr, i, pf); /* once per 64 bytes: every other block (≤ 32 bytes) */
            d[r] = x4->d, m[r] = x4->m; /* both blocks begin {d, m} */
            const __m256i qx = q5 ? _mm256_or_si256(nibbles32(x5->qs), fifth_bits32(x5->qh)) : q4_nibbles(x4->qs);
            p[r] = dot_u8s8(_mm256_setzero_si256(), qx, qy);
        }
        const __m256i ab = nr == 4 ? rows4_halves(p[0], p[1], p[2], p[3]) : rows4_halves(p[0], p[0], p[0], p[0]);
        const __m256 dd = nr == 4 ? rows4_scales(d[0], d[1], d[2], d[3]) : bcast_f16(d[0]);
        const __m256 mm = nr == 4 ? rows4_scales(m[0], m[1], m[2], m[3]) : bcast_f16(m[0]);
        acc = _mm256_fmadd_ps(_mm256_mul_ps(dd, dy), _mm256_cvtepi32_ps(ab), acc);
        acc = _mm256_add_ps(acc, _mm256_mul_ps(mm, _mm256_setr_ps(0, 0, 0, 0, sy, sy, sy, sy)));
    }
    rows4_store(s, acc, nr);
}
INLINE void dot_q4_1(int64_t n, float *s, const uint8_t *vx, size_t bx, const void *vy, int nr, bool il, int pf) {
    dot_q45_1(n, s, vx, bx, vy, nr, il, pf, false);
}
INLINE void dot_q5_1(int64_t n, float *s, const uint8_t *vx, size_t bx, const void *vy, int nr, bool il, int pf) {
    dot_q45_1(n, s, vx, bx, vy, nr, il, pf, true);
}

/* Q8_0·Q8_0: both signed, so ggml's sign trick: |x| (unsigned) times y with x's sign.
 * The order of sums is Q4_0's (above), for the same reason: per block and row the exact
 * integer sums of values 0–15 and 16–31, then one FMA per block for four rows; every
 * Q8_0 kernel (one row, four rows, the interleaved layout, the batch tiles) follows it. */
INLINE void dot_q8_0(int64_t n, float *s, const uint8_t *vx, size_t bx, const void *vy, int nr, bool il, int pf) {
    (void)il; /* the interleaved layout has its own kernel */
    const size_t pfd = moe_prefetch_distance(bx);
    const moe_block_q8_0 *y = vy;
    const moe_block_q8_0 *x[4];
    FOR_ROWS(r) x[r] = (const moe_block_q8_0 *)(vx + (size_t)r * bx);
    __m256 acc = _mm256_setzero_ps();
    for (int64_t i = 0; i < n / QK; i++) {
        const __m256i qy = _mm256_loadu_si256((const __m256i *)y[i].qs);
        __m256i p[4];
        FOR_ROWS(r) {
            PREFETCH(x[r] + i, pfd, nr, i, pf);
            const __m256i qx = _mm256_loadu_si256((const __m256i *)x[r][i].qs);
            p[r] = dot_u8s8(_mm256_setzero_si256(), _mm256_sign_epi8(qx, qx), _mm256_sign_epi8(qy, qx));
        }
        const __m256i ab = nr == 4 ? rows4_halves(p[0], p[1], p[2], p[3]) : rows4_halves(p[0], p[0], p[0], p[0]);
        const __m256 d = nr == 4 ? rows4_scales(x[0][i].d, x[1][i].d, x[2][i].d, x[3][i].d) : bcast_f16(x[0][i].d);
        acc = _mm256_fmadd_ps(_mm256_mul_ps(d, bcast_f16(y[i].d)), _mm256_cvtepi32_ps(ab), acc);
    }
    rows4_store(s, acc, nr);
}

/* IQ4_NL·Q8_0: the nibbles looked up in the grid (one pshufb of the 16 values) give signed
 * weights, which then go exactly as Q8_0's (the sign trick; the same order of sums). */
INLINE void dot_iq4_nl(int64_t n, float *s, const uint8_t *vx, size_t bx, const void *vy, int nr, bool il, int pf) {
    (void)il; /* the interleaved layout (Q4_0's) has its own kernel, iq4_nl_group */
    const size_t pfd = moe_prefetch_distance(bx);
    const moe_block_q8_0 *y = vy;
    const __m256i grid = _mm256_broadcastsi128_si256(_mm_loadu_si128((const __m128i *)moe_iq4_nl_values));
    __m256 acc = _mm256_setzero_ps();
    for (int64_t i = 0; i < n / QK; i++) {
        const __m256i qy = _mm256_loadu_si256((const __m256i *)y[i].qs);
        const moe_block_iq4_nl *x[4];
        __m256i p[4];
        FOR_ROWS(r) {
            x[r] = (const moe_block_iq4_nl *)(vx + (size_t)r * bx) + i;
            PREFETCH(x[r], pfd, nr, i, pf);
            const __m256i qx = _mm256_shuffle_epi8(grid, nibbles32(x[r]->qs));
            p[r] = dot_u8s8(_mm256_setzero_si256(), _mm256_sign_epi8(qx, qx), _mm256_sign_epi8(qy, qx));
        }
        const __m256i ab = nr == 4 ? rows4_halves(p[0], p[1], p[2], p[3]) : rows4_halves(p[0], p[0], p[0], p[0]);
        const __m256 d = nr == 4 ? rows4_scales(x[0]->d, x[1]->d, x[2]->d, x[3]->d) : bcast_f16(x[0]->d);
        acc = _mm256_fmadd_ps(_mm256_mul_ps(d, bcast_f16(y[i].d)), _mm256_cvtepi32_ps(ab), acc);
    }
    rows4_store(s, acc, nr);
}

/* The interleaved Q8_0 layout (moe_q8_0_interleave_group): per block of four rows, the
 * four scales, then four 32-byte vectors, vector k holding qs[4k..4k+3] of rows 0-3 and
 * then qs[16+4k..16+4k+3] of rows 0-3: lanes of one row each, against the activation
 * vector [y dword k | y dword 4+k] (x4i_a), so that the four dot products add up to
 * [A0..A3 | B0..B3] directly, as Q4_0's. With VNNI the weights go in as x + 128
 * (unsigned, one XOR), 128·Σy coming off through the prepared start values; without
 * it, the sign trick. */
static void q8_0_prepare(x4i_act *a, const moe_block_q8_0 *y, int64_t nb) {
    for (int64_t i = 0; i < nb; i++) {
        const __m256i qy = _mm256_loadu_si256((const __m256i *)y[i].qs);
        a[i].z = qy;
#if MOE_VNNI
        a[i].s = _mm256_sub_epi32(_mm256_setzero_si256(), _mm256_slli_epi32(half_sums(qy), 7)); /* 128·Σy */
#else
        a[i].s = _mm256_setzero_si256();
#endif
        a[i].dy = bcast_f16(y[i].d);
    }
}

/* acc + Σ x·y over two pairs of vectors of signed weights, in 4-value lanes */
INLINE __m256i dot2_s8s8(__m256i acc, __m256i x0, __m256i y0, __m256i x1, __m256i y1) {
#if MOE_VNNI
    const __m256i f = _mm256_set1_epi8((char)0x80);
    return mm256_dpbusd(mm256_dpbusd(acc, _mm256_xor_si256(x0, f), y0), _mm256_xor_si256(x1, f), y1);
#else
    acc = dot_u8s8(acc, _mm256_sign_epi8(x0, x0), _mm256_sign_epi8(y0, x0));
    return dot_u8s8(acc, _mm256_sign_epi8(x1, x1), _mm256_sign_epi8(y1, x1));
#endif
}

INLINE __m256 q8_0_group(__m256 acc, const uint8_t *b, const x4i_act *a, int64_t nb, size_t pfd, int pf) {
    _Pragma("GCC unroll 2") for (int64_t i = 0; i < nb; i++, b += MOE_Q8_0_IL_BLOCK) {
        for (int k = 0; k < MOE_Q8_0_IL_BLOCK; k += 64) prefetch_line(b + pfd + k, pf);
        const __m256i *v = (const __m256i *)(b + MOE_IL_QS);
        const __m256i z = a[i].z;
        /* the offsets, then values 4k.. and 16+4k.. of every row for k = 0..3: [A | B] */
        const __m256i ab01 = dot2_s8s8(a[i].s, _mm256_loadu_si256(v), x4i_a(z, 0), _mm256_loadu_si256(v + 1), x4i_a(z, 1));
        const __m256i ab = dot2_s8s8(ab01, _mm256_loadu_si256(v + 2), x4i_a(z, 2), _mm256_loadu_si256(v + 3), x4i_a(z, 3));
        const __m256 d = rows4_scales_at(b);
        acc = _mm256_fmadd_ps(_mm256_mul_ps(d, a[i].dy), _mm256_cvtepi32_ps(ab), acc);
    }
    return acc;
}

/* IQ4_NL interleaved: its blocks are Q4_0's ({d, 16 bytes of nibbles}), so it takes Q4_0's
 * layout of its own (moe_q4_0_interleave_group); chunk k's nibbles, both halves shifted
 * down to 0..15 (nibbles32: as a row's 16 bytes), are looked up in the grid, which gives signed weights in Q8_0's lanes
 * (rows 0-3, values 4k.. | 16+4k..), and from there it is Q8_0's kernel: with VNNI the
 * grid is looked up +128 (unsigned) and 128·Σy comes off through q8_0_prepare's start
 * values; without, the sign trick. The same integers [A0..A3 | B0..B3] as the row-major
 * kernel (dot_iq4_nl), so the same bits. */
INLINE __m256 iq4_nl_group(__m256 acc, const uint8_t *b, const x4i_act *a, int64_t nb, size_t pfd, int pf) {
    const __m256i grid = grid_table(moe_iq4_nl_values);
    _Pragma("GCC unroll 2") for (int64_t i = 0; i < nb; i++, b += MOE_Q4_0_IL_BLOCK) {
        prefetch_line(b + pfd, pf);
        const __m256i z = a[i].z;
        const __m256i y[4] = {x4i_a(z, 0), x4i_a(z, 1), x4i_a(z, 2), x4i_a(z, 3)};
        __m256i w[4];
        _Pragma("GCC unroll 4") for (int k = 0; k < 4; k++) w[k] = _mm256_shuffle_epi8(grid, nibbles32(b + MOE_IL_QS + 16 * k));
        const __m256i ab = dot_grid(a[i].s, w, y, 4);
        const __m256 d = rows4_scales_at(b);
        acc = _mm256_fmadd_ps(_mm256_mul_ps(d, a[i].dy), _mm256_cvtepi32_ps(ab), acc);
    }
    return acc;
}

/* The interleaved kernels' loop (MOE_X4I_RUN, simd.h) for Q4_0, Q8_0, IQ4_NL, Q5_0, Q4_1
 * and Q5_1 (kind). */
enum { X4I_Q4_0, X4I_Q8_0, X4I_IQ4_NL, X4I_Q5_0, X4I_Q4_1, X4I_Q5_1 };
INLINE void x4i_run(int64_t n, float *s, const uint8_t *x, size_t bx, const void *y, int64_t ngroups, int kind, int pf) {
    const int64_t nb = n / QK, T = moe_il_tile_blocks(nb, QK);
    const size_t blk = kind == X4I_Q8_0   ? MOE_Q8_0_IL_BLOCK
                       : kind == X4I_Q5_0 ? MOE_Q5_0_IL_BLOCK
                       : kind == X4I_Q4_1 ? MOE_Q4_1_IL_BLOCK
                       : kind == X4I_Q5_1 ? MOE_Q5_1_IL_BLOCK
                                          : MOE_Q4_0_IL_BLOCK;
    const int lt = kind == X4I_Q5_0 ? L_Q5_0 : kind == X4I_Q4_1 ? L_Q4_1 : L_Q5_1;
    const bool legacy = kind == X4I_Q5_0 || kind == X4I_Q4_1 || kind == X4I_Q5_1;
    const size_t pfd = MOE_IL_PREFETCH;
#define PREPARE(a, y, nb)                                                                                         \
    (legacy              ? legacy_prepare(a, y, nb, lt)                                                           \
     : kind == X4I_Q4_0 ? q4_0_prepare(a, (const moe_block_q8_0 *)(y), nb)                                       \
                        : q8_0_prepare(a, (const moe_block_q8_0 *)(y), nb))
#define GROUP(acc, b, a, nb)                                                                                    \
    (legacy              ? legacy_group(acc, b, a, nb, pfd, pf, lt)                                             \
     : kind == X4I_Q4_0 ? q4_0_group(acc, b, a, nb, pfd, pf)                                                    \
     : kind == X4I_Q8_0 ? q8_0_group(acc, b, a, nb, pfd, pf)                                                    \
                        : iq4_nl_group(acc, b, a, nb, pfd, pf))
    if (kind == X4I_Q4_1 || kind == X4I_Q5_1) { /* Q8_1 activations: MOE_X4I_RUN steps through y by blocks */
        const moe_block_q8_1 *y1 = y;
        MOE_X4I_RUN(x4i_act, X4I_CHUNK, blk, T, PREPARE, GROUP, s, x, bx, y1, nb, ngroups);
    } else {
        const moe_block_q8_0 *y0 = y;
        MOE_X4I_RUN(x4i_act, X4I_CHUNK, blk, T, PREPARE, GROUP, s, x, bx, y0, nb, ngroups);
    }
#undef PREPARE
#undef GROUP
}

#define X4I_ENTRY(t, KIND)                                                                                      \
    void moe_##t##_vec_dot_x4i(int64_t n, float *s, const void *x, size_t bx, const void *y, int64_t ngroups) { \
        MOE_PF_DISPATCH(moe_prefetch_il_level, x4i_run, n, s, x, bx, y, ngroups, KIND);                           \
    }
X4I_ENTRY(q4_0, X4I_Q4_0)
X4I_ENTRY(q8_0, X4I_Q8_0)
X4I_ENTRY(iq4_nl, X4I_IQ4_NL)
X4I_ENTRY(q5_0, X4I_Q5_0)
X4I_ENTRY(q4_1, X4I_Q4_1)
X4I_ENTRY(q5_1, X4I_Q5_1)

/* Every legacy type's interleaved kernel is one of the above. */
MOE_DEFINE_VEC_DOTS(q4_0)
MOE_DEFINE_VEC_DOTS(q8_0)
MOE_DEFINE_VEC_DOTS(iq4_nl) /* its interleaved kernel reads Q4_0's layout */
MOE_DEFINE_VEC_DOTS(q5_0)
MOE_DEFINE_VEC_DOTS(q4_1)
MOE_DEFINE_VEC_DOTS(q5_1)
#else
MOE_LEGACY_DOTS(MOE_DEFINE_REF_DOTS)
#endif
