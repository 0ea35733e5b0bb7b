/* quant_k.c — the K-quants, scalar part: dequantization, llama.cpp's reference
 * quantizers (ggml-quants.c: make_qkx2_quants, make_qx_quants, make_q3_quants and the
 * quantize_row_*_ref that use them), the Q8_K activation quantizer, and the reference dot
 * products. The quantizers repeat ggml's float operations in ggml's order (this file is
 * built with -std=c11, so no FMA contraction), so their output matches llama-quantize's
 * byte for byte; do not "simplify" an expression without checking test_quant_k. */
#include "core/quant_k.h"
#include "core/quant_legacy.h" /* IQ4_NL's grid and search, which IQ4_XS shares */

#include <math.h>
#include <stddef.h>
#include <string.h>

#define QK MOE_QK_K
_Static_assert(MOE_Q4_K_IL_BLOCK == 4 * sizeof(moe_block_q4_K), "an interleaved block holds four rows' blocks");
_Static_assert(MOE_IQ4_XS_IL_BLOCK == 4 * sizeof(moe_block_iq4_xs), "an interleaved block holds four rows' blocks");
_Static_assert(MOE_Q5_K_IL_BLOCK == 4 * sizeof(moe_block_q5_K), "an interleaved block holds four rows' blocks");

/* Block scales (ggml's GROUP_MAX_EPS): below this a group counts as all zero. */
#define GROUP_MAX_EPS 1e-15f

/* Round to nearest (ties to even) through the float adder, as ggml does: adding 1.5·2^23
 * puts the integer in the low mantissa bits. Exact for |f| < 2^22. */
static inline int nearest_int(float f) {
    float v = f + 12582912.f;
    int32_t i;
    memcpy(&i, &v, 4);
    return (i & 0x007fffff) - 0x00400000;
}

static inline int imin(int a, int b) { return a < b ? a : b; }
static inline int imax(int a, int b) { return a > b ? a : b; }

/* Scale and min j (0..7) of a Q4_K/Q5_K block: 6 bits each, packed in 12 bytes. */
static inline void get_scale_min_k4(int j, const uint8_t *q, uint8_t *d, uint8_t *m) {
    if (j < 4) {
        *d = q[j] & 63;
        *m = q[j + 4] & 63;
    } else {
        *d = (uint8_t)((q[j + 4] & 0xF) | ((q[j - 4] >> 6) << 4));
        *m = (uint8_t)((q[j + 4] >> 4) | ((q[j] >> 6) << 4));
    }
}

/* Scale j (0..15) of a Q3_K block, -32..31. */
static inline int q3_scale(const uint8_t *sc, int j) {
    int lo = j < 8 ? sc[j] & 0xF : sc[j - 8] >> 4;
    int hi = (sc[8 + j % 4] >> (2 * (j / 4))) & 3;
    return (lo | (hi << 4)) - 32;
}

/* ------------------------------------------------------------------ dequantization */

void moe_q2_K_to_float(const void *src, float *y, int64_t n) {
    const moe_block_q2_K *x = src;
    for (int64_t i = 0; i < n / QK; i++) {
        const float d = moe_f16_to_f32(x[i].d), min = moe_f16_to_f32(x[i].dmin);
        const uint8_t *q = x[i].qs;
        int is = 0;
        for (int c = 0; c < QK; c += 128) {
            for (int shift = 0; shift < 8; shift += 2) {
                for (int half = 0; half < 2; half++) {
                    uint8_t sc = x[i].scales[is++];
                    float dl = d * (sc & 0xF), ml = min * (sc >> 4);
                    for (int l = 0; l < 16; l++) *y++ = dl * ((q[l + 16 * half] >> shift) & 3) - ml;
                }
            }
            q += 32;
        }
    }
}

void moe_q3_K_to_float(const void *src, float *y, int64_t n) {
    const moe_block_q3_K *x = src;
    for (int64_t i = 0; i < n / QK; i++) {
        const float d_all = moe_f16_to_f32(x[i].d);
        const uint8_t *q = x[i].qs, *hm = x[i].hmask;
        uint8_t m = 1;
        int is = 0;
        for (int c = 0; c < QK; c += 128) {
            for (int shift = 0; shift < 8; shift += 2) {
                for (int half = 0; half < 2; half++) {
                    float dl = d_all * q3_scale(x[i].scales, is++);
                    const uint8_t *qq = q + 16 * half, *hh = hm + 16 * half;
                    for (int l = 0; l < 16; l++)
                        *y++ = dl * (((qq[l] >> shift) & 3) - ((hh[l] & m) ? 0 : 4));
                }
                m <<= 1;
            }
            q += 32;
        }
    }
}

/* The quant bytes of the interleaved layouts of Q4_K, Q5_K and IQ4_XS (32 bytes a row per
 * run, four runs of qs or one of Q5_K's qh): for run j and k = 0..3, row r's bytes
 * 32j + 8k .. +3 at 128j + 32k + 4r and its bytes 32j + 8k + 4 .. +7 at 128j + 32k + 16 + 4r,
 * so that one 32-byte vector holds a 4-byte chunk of each of the four rows in each
 * 128-bit half. */
static void chunks_put(uint8_t *dst, const uint8_t *qs, int r, int runs) {
    for (int j = 0; j < runs; j++)
        for (int k = 0; k < 4; k++) {
            memcpy(dst + 128 * j + 32 * k + 4 * r, qs + 32 * j + 8 * k, 4);
            memcpy(dst + 128 * j + 32 * k + 16 + 4 * r, qs + 32 * j + 8 * k + 4, 4);
        }
}
static void chunks_get(uint8_t *qs, const uint8_t *src, int r, int runs) {
    for (int j = 0; j < runs; j++)
        for (int k = 0; k < 4; k++) {
            memcpy(qs + 32 * j + 8 * k, src + 128 * j + 32 * k + 4 * r, 4);
            memcpy(qs + 32 * j + 8 * k + 4, src + 128 * j + 32 * k + 16 + 4 * r, 4);
        }
}

/* ------------------------------------------ Q4_K's and Q5_K's interleaved layouts (matmul.h) */
/* Per block i of a group of four rows, 576 bytes for Q4_K, 704 for Q5_K (why:
 * moe_q4_K_vec_dot_x4i):
 *   0..15    (d, dmin) of rows 0..3
 *   16..47   byte e = 4s + r (sub-block s, row r): sc & 15 | (m & 15) << 4
 *   48..63   byte e & 15, nibble e >> 4: sc >> 4 | (m >> 4) << 2
 *   Q5_K: 64..191  qh as one run of chunks_put: for k = 0..3, 32 bytes at 64 + 32k: qh[8k ..+3]
 *            of rows 0-3, then qh[8k + 4 ..+7] of rows 0-3 (the fifth bits of the quants
 *            at the same places in each run below: bit 2j and 2j + 1 for run j)
 *   then 512 bytes of qs (at 64, or 192 for Q5_K): for j, k = 0..3, 32 bytes at 128j + 32k:
 *            qs[32j + 8k ..+3] of rows 0-3, then qs[32j + 8k + 4 ..+7] of rows 0-3.
 * Both blocks begin with {d, dmin, scales[12]}: `x` below is either. */
static void k4_header_put(uint8_t *dst, const moe_block_q4_K *x, int r) {
    memcpy(dst + 4 * r, &x->d, 2);
    memcpy(dst + 4 * r + 2, &x->dmin, 2);
    for (int sb = 0; sb < 8; sb++) {
        uint8_t sc, m;
        get_scale_min_k4(sb, x->scales, &sc, &m);
        const int e = 4 * sb + r;
        dst[16 + e] = (uint8_t)((sc & 15) | (m & 15) << 4);
        dst[48 + (e & 15)] |= (uint8_t)(((sc >> 4) | (m >> 4) << 2) << (4 * (e >> 4)));
    }
}

static void k4_header_get(moe_block_q4_K *x, const uint8_t *b, int r) {
    memcpy(&x->d, b + 4 * r, 2);
    memcpy(&x->dmin, b + 4 * r + 2, 2);
    uint8_t sc[8], m[8];
    for (int sb = 0; sb < 8; sb++) {
        const int e = 4 * sb + r, h = b[48 + (e & 15)] >> (4 * (e >> 4)) & 15;
        sc[sb] = (uint8_t)((b[16 + e] & 15) | (h & 3) << 4);
        m[sb] = (uint8_t)((b[16 + e] >> 4) | (h >> 2) << 4);
    }
    for (int j = 0; j < 4; j++) { /* the inverse of get_scale_min_k4 */
        x->scales[j] = (uint8_t)(sc[j] | (sc[j + 4] >> 4) << 6);
        x->scales[j + 4] = (uint8_t)(m[j] | (m[j + 4] >> 4) << 6);
        x->scales[j + 8] = (uint8_t)((sc[j + 4] & 15) | (m[j + 4] & 15) << 4);
    }
}

/* Q5_K's block begins as Q4_K's: the header helpers take either */
_Static_assert(offsetof(moe_block_q5_K, scales) == offsetof(moe_block_q4_K, scales) &&
                   offsetof(moe_block_q5_K, dmin) == offsetof(moe_block_q4_K, dmin),
               "Q4_K's and Q5_K's blocks begin alike");

void moe_q4_K_interleave_group(uint8_t *dst, const uint8_t *src, size_t bx, int64_t nb) {
    for (int64_t i = 0; i < nb; i++, dst += MOE_Q4_K_IL_BLOCK) {
        memset(dst + 48, 0, 16);
        for (int r = 0; r < 4; r++) {
            const moe_block_q4_K *x = (const moe_block_q4_K *)(src + (size_t)r * bx) + i;
            k4_header_put(dst, x, r);
            chunks_put(dst + 64, x->qs, r, 4);
        }
    }
}

void moe_q4_K_group_block(const uint8_t *group, int64_t i, int r, void *out) {
    const uint8_t *b = group + (size_t)i * MOE_Q4_K_IL_BLOCK;
    moe_block_q4_K *x = out;
    k4_header_get(x, b, r);
    chunks_get(x->qs, b + 64, r, 4);
}

void moe_q5_K_interleave_group(uint8_t *dst, const uint8_t *src, size_t bx, int64_t nb) {
    for (int64_t i = 0; i < nb; i++, dst += MOE_Q5_K_IL_BLOCK) {
        memset(dst + 48, 0, 16);
        for (int r = 0; r < 4; r++) {
            const moe_block_q5_K *x = (const moe_block_q5_K *)(src + (size_t)r * bx) + i;
            k4_header_put(dst, (const moe_block_q4_K *)(const void *)x, r);
            chunks_put(dst + 64, x->qh, r, 1);
            chunks_put(dst + 192, x->qs, r, 4);
        }
    }
}

void moe_q5_K_group_block(const uint8_t *group, int64_t i, int r, void *out) {
    const uint8_t *b = group + (size_t)i * MOE_Q5_K_IL_BLOCK;
    moe_block_q5_K *x = out;
    moe_block_q4_K h;
    k4_header_get(&h, b, r);
    memcpy(x, &h, offsetof(moe_block_q5_K, qh));
    chunks_get(x->qh, b + 64, r, 1);
    chunks_get(x->qs, b + 192, r, 4);
}

void moe_q4_K_to_float(const void *src, float *y, int64_t n) {
    const moe_block_q4_K *x = src;
    for (int64_t i = 0; i < n / QK; i++) {
        const float d = moe_f16_to_f32(x[i].d), min = moe_f16_to_f32(x[i].dmin);
        const uint8_t *q = x[i].qs;
        for (int j = 0; j < QK / 64; j++) {
            uint8_t sc, m;
            get_scale_min_k4(2 * j, x[i].scales, &sc, &m);
            const float d1 = d * sc, m1 = min * m;
            get_scale_min_k4(2 * j + 1, x[i].scales, &sc, &m);
            const float d2 = d * sc, m2 = min * m;
            for (int l = 0; l < 32; l++) *y++ = d1 * (q[l] & 0xF) - m1;
            for (int l = 0; l < 32; l++) *y++ = d2 * (q[l] >> 4) - m2;
            q += 32;
        }
    }
}

void moe_q5_K_to_float(const void *src, float *y, int64_t n) {
    const moe_block_q5_K *x = src;
    for (int64_t i = 0; i < n / QK; i++) {
        const float d = moe_f16_to_f32(x[i].d), min = moe_f16_to_f32(x[i].dmin);
        const uint8_t *ql = x[i].qs, *qh = x[i].qh;
        uint8_t u1 = 1, u2 = 2;
        for (int j = 0; j < QK / 64; j++) {
            uint8_t sc, m;
            get_scale_min_k4(2 * j, x[i].scales, &sc, &m);
            const float d1 = d * sc, m1 = min * m;
            get_scale_min_k4(2 * j + 1, x[i].scales, &sc, &m);
            const float d2 = d * sc, m2 = min * m;
            for (int l = 0; l < 32; l++) *y++ = d1 * ((ql[l] & 0xF) + (qh[l] & u1 ? 16 : 0)) - m1;
            for (int l = 0; l < 32; l++) *y++ = d2 * ((ql[l] >> 4) + (qh[l] & u2 ? 16 : 0)) - m2;
            ql += 32;
            u1 <<= 2;
            u2 <<= 2;
        }
    }
}

void moe_q6_K_to_float(const void *src, float *y, int64_t n) {
    const moe_block_q6_K *x = src;
    for (int64_t i = 0; i < n / QK; i++) {
        const float d = moe_f16_to_f32(x[i].d);
        const uint8_t *ql = x[i].ql, *qh = x[i].qh;
        const int8_t *sc = x[i].scales;
        for (int c = 0; c < QK; c += 128) {
            for (int l = 0; l < 32; l++) {
                int is = l / 16;
                int q1 = ((ql[l] & 0xF) | (((qh[l] >> 0) & 3) << 4)) - 32;
                int q2 = ((ql[l + 32] & 0xF) | (((qh[l] >> 2) & 3) << 4)) - 32;
                int q3 = ((ql[l] >> 4) | (((qh[l] >> 4) & 3) << 4)) - 32;
                int q4 = ((ql[l + 32] >> 4) | (((qh[l] >> 6) & 3) << 4)) - 32;
                y[l + 0] = d * sc[is + 0] * q1;
                y[l + 32] = d * sc[is + 2] * q2;
                y[l + 64] = d * sc[is + 4] * q3;
                y[l + 96] = d * sc[is + 6] * q4;
            }
            y += 128;
            ql += 64;
            qh += 32;
            sc += 8;
        }
    }
}

/* The 6-bit scale of sub-block ib of an IQ4_XS block, minus 32 */
static inline int iq4_xs_scale(const moe_block_iq4_xs *x, int ib) {
    return (((x->scales_l[ib / 2] >> 4 * (ib % 2)) & 0xf) | (((x->scales_h >> 2 * ib) & 3) << 4)) - 32;
}

void moe_iq4_xs_to_float(const void *src, float *y, int64_t n) {
    const moe_block_iq4_xs *x = src;
    for (int64_t i = 0; i < n / QK; i++) {
        const float d = moe_f16_to_f32(x[i].d);
        for (int ib = 0; ib < QK / 32; ib++, y += 32) {
            const float dl = d * iq4_xs_scale(&x[i], ib);
            const uint8_t *qs = x[i].qs + 16 * ib;
            for (int j = 0; j < 16; j++) {
                y[j] = dl * moe_iq4_nl_values[qs[j] & 0xf];
                y[j + 16] = dl * moe_iq4_nl_values[qs[j] >> 4];
            }
        }
    }
}

/* ----------------------------------------------- IQ4_XS's interleaved layout (matmul.h) */
/* Per block i of a group of four rows, 544 bytes (why: moe_iq4_xs_vec_dot_x4i):
 *   0..7     d of rows 0..3
 *   8..23    byte 8 + (e & 15), nibble e >> 4: the low 4 bits of the 6-bit scale e = 4s + r
 *            (sub-block s, row r), as stored (the scale + 32)
 *   24..31   byte 24 + (e & 7), bits 2·(e >> 3): its high 2 bits
 *   32..543  the quant bytes as Q4_K's (chunks_put): vector k of run j holds bytes
 *            32j + 8k .. +7 of each row, which all belong to sub-block 2j + k / 2 (16
 *            bytes each: values 0-15 in the low nibbles, 16-31 in the high ones). */
void moe_iq4_xs_interleave_group(uint8_t *dst, const uint8_t *src, size_t bx, int64_t nb) {
    for (int64_t i = 0; i < nb; i++, dst += MOE_IQ4_XS_IL_BLOCK) {
        memset(dst + 8, 0, 24);
        for (int r = 0; r < 4; r++) {
            const moe_block_iq4_xs *x = (const moe_block_iq4_xs *)(src + (size_t)r * bx) + i;
            memcpy(dst + 2 * r, &x->d, 2);
            for (int sb = 0; sb < 8; sb++) {
                const int u = iq4_xs_scale(x, sb) + 32, e = 4 * sb + r;
                dst[8 + (e & 15)] |= (uint8_t)((u & 15) << 4 * (e >> 4));
                dst[24 + (e & 7)] |= (uint8_t)((u >> 4) << 2 * (e >> 3));
            }
            chunks_put(dst + 32, x->qs, r, 4);
        }
    }
}

void moe_iq4_xs_group_block(const uint8_t *group, int64_t i, int r, void *out) {
    const uint8_t *b = group + (size_t)i * MOE_IQ4_XS_IL_BLOCK;
    moe_block_iq4_xs *x = out;
    memcpy(&x->d, b + 2 * r, 2);
    memset(x->scales_l, 0, sizeof x->scales_l);
    uint16_t h = 0;
    for (int sb = 0; sb < 8; sb++) {
        const int e = 4 * sb + r;
        const int u = (b[8 + (e & 15)] >> 4 * (e >> 4) & 15) | (b[24 + (e & 7)] >> 2 * (e >> 3) & 3) << 4;
        x->scales_l[sb / 2] |= (uint8_t)((u & 15) << 4 * (sb % 2));
        h |= (uint16_t)((u >> 4) << 2 * sb);
    }
    x->scales_h = h;
    chunks_get(x->qs, b + 32, r, 4);
}

void moe_q8_K_to_float(const void *src, float *y, int64_t n) {
    const moe_block_q8_K *x = src;
    for (int64_t i = 0; i < n / QK; i++)
        for (int j = 0; j < QK; j++) *y++ = x[i].d * x[i].qs[j];
}

/* ------------------------------------------------------------------ scale searches */

/* The first guess of both symmetric searches below: the value of largest magnitude
 * (returned; 0 when every |x| is below GROUP_MAX_EPS, L then all 0), and for the scale that
 * maps it to -nmax, L[i] = offset + l with l the nearest level in [-nmax, nmax-1], and the
 * x²-weighted sums Σw·x·l and Σw·l² (ggml computes them inline in both). */
static float qx_first_guess(int n, int nmax, const float *x, int8_t *L, int offset, float *sumlx, float *suml2) {
    float max = 0, amax = 0;
    for (int i = 0; i < n; i++) {
        float ax = fabsf(x[i]);
        if (ax > amax) { amax = ax; max = x[i]; }
    }
    if (amax < GROUP_MAX_EPS) {
        for (int i = 0; i < n; i++) L[i] = 0;
        return 0.f;
    }
    const float iscale = -nmax / max;
    float slx = 0, sl2 = 0;
    for (int i = 0; i < n; i++) {
        int l = nearest_int(iscale * x[i]);
        l = imax(-nmax, imin(nmax - 1, l));
        L[i] = (int8_t)(l + offset);
        float w = x[i] * x[i];
        slx += w * x[i] * l;
        sl2 += w * l * l;
    }
    *sumlx = slx;
    *suml2 = sl2;
    return max;
}

/* Symmetric quantization of x[n] to L[i] = l + nmax with l in [-nmax, nmax-1], weighted
 * by w = x² (ggml's make_qx_quants with rmse_type 1 and no importance weights): starts
 * from the scale that maps the largest |x| to -nmax, then tries 18 nearby scales and keeps
 * the least-squares one. Returns the scale. */
static float make_qx_quants(int n, int nmax, const float *x, int8_t *L) {
    float sumlx = 0, suml2 = 0;
    const float max = qx_first_guess(n, nmax, x, L, nmax, &sumlx, &suml2);
    if (max == 0) return 0.f;
    float scale = suml2 ? sumlx / suml2 : 0.0f;
    float best = scale * sumlx;
    for (int is = -9; is <= 9; is++) {
        if (is == 0) continue;
        const float iscale = -(nmax + 0.1f * is) / max;
        sumlx = suml2 = 0;
        for (int i = 0; i < n; i++) {
            int l = nearest_int(iscale * x[i]);
            l = imax(-nmax, imin(nmax - 1, l));
            float w = x[i] * x[i];
            sumlx += w * x[i] * l;
            suml2 += w * l * l;
        }
        if (suml2 > 0 && sumlx * sumlx > best * suml2) {
            for (int i = 0; i < n; i++) {
                int l = nearest_int(iscale * x[i]);
                L[i] = (int8_t)(nmax + imax(-nmax, imin(nmax - 1, l)));
            }
            scale = sumlx / suml2;
            best = scale * sumlx;
        }
    }
    return scale;
}

/* Q3_K's sub-block search (ggml's make_q3_quants with do_rmse): like make_qx_quants, then
 * up to 5 passes that move single quants while that lowers the x²-weighted error. */
static float make_q3_quants(int n, int nmax, const float *x, int8_t *L) {
    float sumlx = 0, suml2 = 0;
    if (qx_first_guess(n, nmax, x, L, 0, &sumlx, &suml2) == 0) return 0.f;
    for (int itry = 0; itry < 5; itry++) {
        int n_changed = 0;
        for (int i = 0; i < n; i++) {
            float w = x[i] * x[i];
            float slx = sumlx - w * x[i] * L[i];
            if (slx > 0) {
                float sl2 = suml2 - w * L[i] * L[i];
                int new_l = nearest_int(x[i] * sl2 / slx);
                new_l = imax(-nmax, imin(nmax - 1, new_l));
                if (new_l != L[i]) {
                    slx += w * x[i] * new_l;
                    sl2 += w * new_l * new_l;
                    if (sl2 > 0 && slx * slx * suml2 > sumlx * sumlx * sl2) {
                        L[i] = (int8_t)new_l;
                        sumlx = slx;
                        suml2 = sl2;
                        n_changed++;
                    }
                }
            }
        }
        if (!n_changed) break;
    }
    for (int i = 0; i < n; i++) L[i] = (int8_t)(L[i] + nmax);
    /* guarded as in newer ggml; unreachable, as the largest |x| (≥ GROUP_MAX_EPS) always
     * has a nonzero quant and weight, and suml2 only ever takes positive values */
    return suml2 > 0.0f ? sumlx / suml2 : 0.0f;
}

/* Asymmetric quantization x ≈ scale·L - the_min with L in [0, nmax] (ggml's
 * make_qkx2_quants): starts from the min/max range, then tries nstep+1 scales around it,
 * solving the weighted least-squares scale and min for each set of quants, and keeps the
 * best by weighted squared (or absolute, use_mad) error. Note that `min` is updated by a
 * better candidate and the later candidates start from it, as in ggml. */
static float make_qkx2_quants(int n, int nmax, const float *x, const float *weights, uint8_t *L,
                              float *the_min, uint8_t *Laux, float rmin, float rdelta, int nstep,
                              bool use_mad) {
    float min = x[0], max = x[0];
    float sum_w = weights[0];
    float sum_x = sum_w * x[0];
    for (int i = 1; i < n; i++) {
        if (x[i] < min) min = x[i];
        if (x[i] > max) max = x[i];
        float w = weights[i];
        sum_w += w;
        sum_x += w * x[i];
    }
    if (min > 0) min = 0;
    if (max == min) {
        for (int i = 0; i < n; i++) L[i] = 0;
        *the_min = -min;
        return 0.f;
    }
    float iscale = nmax / (max - min);
    float scale = 1 / iscale;
    float best_error = 0;
    for (int i = 0; i < n; i++) {
        int l = nearest_int(iscale * (x[i] - min));
        L[i] = (uint8_t)imax(0, imin(nmax, l));
        float diff = scale * L[i] + min - x[i];
        diff = use_mad ? fabsf(diff) : diff * diff;
        best_error += weights[i] * diff;
    }
    if (nstep < 1) {
        *the_min = -min;
        return scale;
    }
    for (int is = 0; is <= nstep; is++) {
        iscale = (rmin + rdelta * is + nmax) / (max - min);
        float sum_l = 0, sum_l2 = 0, sum_xl = 0;
        for (int i = 0; i < n; i++) {
            int l = nearest_int(iscale * (x[i] - min));
            l = imax(0, imin(nmax, l));
            Laux[i] = (uint8_t)l;
            float w = weights[i];
            sum_l += w * l;
            sum_l2 += w * l * l;
            sum_xl += w * l * x[i];
        }
        float D = sum_w * sum_l2 - sum_l * sum_l;
        if (D > 0) {
            float this_scale = (sum_w * sum_xl - sum_x * sum_l) / D;
            float this_min = (sum_l2 * sum_x - sum_l * sum_xl) / D;
            if (this_min > 0) {
                this_min = 0;
                this_scale = sum_xl / sum_l2;
            }
            float cur_error = 0;
            for (int i = 0; i < n; i++) {
                float diff = this_scale * Laux[i] + this_min - x[i];
                diff = use_mad ? fabsf(diff) : diff * diff;
                cur_error += weights[i] * diff;
            }
            if (cur_error < best_error) {
                for (int i = 0; i < n; i++) L[i] = Laux[i];
                best_error = cur_error;
                scale = this_scale;
                min = this_min;
            }
        }
    }
    *the_min = -min;
    return scale;
}

/* ------------------------------------------------------------------ reference quantizers */

/* Packs 256 2-bit values: byte l of each 32-byte group holds values l, l+32, l+64, l+96. */
static void pack_2bit(const uint8_t *L, uint8_t *qs) {
    for (int j = 0; j < QK; j += 128)
        for (int l = 0; l < 32; l++)
            qs[j / 4 + l] = (uint8_t)(L[j + l] | (L[j + l + 32] << 2) | (L[j + l + 64] << 4) | (L[j + l + 96] << 6));
}

void moe_q2_K_from_float_ref(const float *x, void *dst, int64_t n) {
    moe_block_q2_K *y = dst;
    uint8_t L[QK], Laux[16];
    float weights[16], mins[QK / 16], scales[QK / 16];
    const float q4scale = 15.f;
    for (int64_t i = 0; i < n / QK; i++, x += QK) {
        float max_scale = 0, max_min = 0; /* the mins are subtracted, so scales are ≥ 0 */
        for (int j = 0; j < QK / 16; j++) {
            for (int l = 0; l < 16; l++) weights[l] = fabsf(x[16 * j + l]);
            scales[j] = make_qkx2_quants(16, 3, x + 16 * j, weights, L + 16 * j, &mins[j], Laux, -0.5f, 0.1f, 15, true);
            if (scales[j] > max_scale) max_scale = scales[j];
            if (mins[j] > max_min) max_min = mins[j];
        }
        if (max_scale > 0) {
            float iscale = q4scale / max_scale;
            for (int j = 0; j < QK / 16; j++) y[i].scales[j] = (uint8_t)nearest_int(iscale * scales[j]);
            y[i].d = moe_f32_to_f16(max_scale / q4scale);
        } else {
            for (int j = 0; j < QK / 16; j++) y[i].scales[j] = 0;
            y[i].d = moe_f32_to_f16(0.f);
        }
        if (max_min > 0) {
            float iscale = q4scale / max_min;
            for (int j = 0; j < QK / 16; j++) y[i].scales[j] |= (uint8_t)(nearest_int(iscale * mins[j]) << 4);
            y[i].dmin = moe_f32_to_f16(max_min / q4scale);
        } else {
            y[i].dmin = moe_f32_to_f16(0.f);
        }
        /* Requantize with the scales as stored (rounded to 4 bits and f16). */
        for (int j = 0; j < QK / 16; j++) {
            const float d = moe_f16_to_f32(y[i].d) * (y[i].scales[j] & 0xF);
            if (!d) continue;
            const float dm = moe_f16_to_f32(y[i].dmin) * (y[i].scales[j] >> 4);
            for (int ii = 0; ii < 16; ii++) {
                int l = nearest_int((x[16 * j + ii] + dm) / d);
                L[16 * j + ii] = (uint8_t)imax(0, imin(3, l));
            }
        }
        pack_2bit(L, y[i].qs);
    }
}

void moe_q3_K_from_float_ref(const float *x, void *dst, int64_t n) {
    moe_block_q3_K *y = dst;
    int8_t L[QK];
    float scales[QK / 16];
    for (int64_t i = 0; i < n / QK; i++, x += QK) {
        float max_scale = 0, amax = 0;
        for (int j = 0; j < QK / 16; j++) {
            scales[j] = make_q3_quants(16, 4, x + 16 * j, L + 16 * j);
            float scale = fabsf(scales[j]);
            if (scale > amax) { amax = scale; max_scale = scales[j]; }
        }
        memset(y[i].scales, 0, 12);
        if (max_scale) {
            float iscale = -32.f / max_scale;
            for (int j = 0; j < QK / 16; j++) {
                int l = (int8_t)nearest_int(iscale * scales[j]);
                l = imax(-32, imin(31, l)) + 32;
                if (j < 8) y[i].scales[j] = (uint8_t)(l & 0xF);
                else y[i].scales[j - 8] |= (uint8_t)((l & 0xF) << 4);
                l >>= 4;
                y[i].scales[j % 4 + 8] |= (uint8_t)(l << (2 * (j / 4)));
            }
            y[i].d = moe_f32_to_f16(1 / iscale);
        } else {
            y[i].d = moe_f32_to_f16(0.f);
        }
        for (int j = 0; j < QK / 16; j++) {
            float d = moe_f16_to_f32(y[i].d) * q3_scale(y[i].scales, j);
            if (!d) continue;
            for (int ii = 0; ii < 16; ii++) {
                int l = nearest_int(x[16 * j + ii] / d);
                L[16 * j + ii] = (int8_t)(imax(-4, imin(3, l)) + 4);
            }
        }
        /* High bits: bit b of hmask[m] is the high bit of value 32·b + m. */
        memset(y[i].hmask, 0, QK / 8);
        int m = 0;
        uint8_t hm = 1;
        for (int j = 0; j < QK; j++) {
            if (L[j] > 3) {
                y[i].hmask[m] |= hm;
                L[j] -= 4;
            }
            if (++m == QK / 8) { m = 0; hm <<= 1; }
        }
        pack_2bit((const uint8_t *)L, y[i].qs);
    }
}

/* Q4_K and Q5_K share everything but the bit width. */
static void quantize_q45_K(const float *x, moe_f16 *d_out, moe_f16 *dmin_out, uint8_t *packed_scales,
                           uint8_t *L, int nmax, float rmin, float rdelta, int nstep) {
    uint8_t Laux[32];
    float weights[32], mins[QK / 32], scales[QK / 32];
    float max_scale = 0, max_min = 0;
    for (int j = 0; j < QK / 32; j++) {
        float sum_x2 = 0;
        for (int l = 0; l < 32; l++) sum_x2 += x[32 * j + l] * x[32 * j + l];
        float av_x = sqrtf(sum_x2 / 32);
        for (int l = 0; l < 32; l++) weights[l] = av_x + fabsf(x[32 * j + l]);
        scales[j] = make_qkx2_quants(32, nmax, x + 32 * j, weights, L + 32 * j, &mins[j], Laux, rmin, rdelta, nstep, false);
        if (scales[j] > max_scale) max_scale = scales[j];
        if (mins[j] > max_min) max_min = mins[j];
    }
    float inv_scale = max_scale > 0 ? 63.f / max_scale : 0.f;
    float inv_min = max_min > 0 ? 63.f / max_min : 0.f;
    for (int j = 0; j < QK / 32; j++) {
        uint8_t ls = (uint8_t)nearest_int(inv_scale * scales[j]);
        uint8_t lm = (uint8_t)nearest_int(inv_min * mins[j]);
        ls = (uint8_t)imin(63, ls);
        lm = (uint8_t)imin(63, lm);
        if (j < 4) {
            packed_scales[j] = ls;
            packed_scales[j + 4] = lm;
        } else {
            packed_scales[j + 4] = (uint8_t)((ls & 0xF) | ((lm & 0xF) << 4));
            packed_scales[j - 4] |= (uint8_t)((ls >> 4) << 6);
            packed_scales[j] |= (uint8_t)((lm >> 4) << 6);
        }
    }
    *d_out = moe_f32_to_f16(max_scale / 63.f);
    *dmin_out = moe_f32_to_f16(max_min / 63.f);
    for (int j = 0; j < QK / 32; j++) {
        uint8_t sc, m;
        get_scale_min_k4(j, packed_scales, &sc, &m);
        const float d = moe_f16_to_f32(*d_out) * sc;
        if (!d) continue;
        const float dm = moe_f16_to_f32(*dmin_out) * m;
        for (int ii = 0; ii < 32; ii++) {
            int l = nearest_int((x[32 * j + ii] + dm) / d);
            L[32 * j + ii] = (uint8_t)imax(0, imin(nmax, l));
        }
    }
}

void moe_q4_K_from_float_ref(const float *x, void *dst, int64_t n) {
    moe_block_q4_K *y = dst;
    uint8_t L[QK];
    for (int64_t i = 0; i < n / QK; i++, x += QK) {
        quantize_q45_K(x, &y[i].d, &y[i].dmin, y[i].scales, L, 15, -1.f, 0.1f, 20);
        uint8_t *q = y[i].qs;
        for (int j = 0; j < QK; j += 64, q += 32)
            for (int l = 0; l < 32; l++) q[l] = (uint8_t)(L[j + l] | (L[j + l + 32] << 4));
    }
}

void moe_q5_K_from_float_ref(const float *x, void *dst, int64_t n) {
    moe_block_q5_K *y = dst;
    uint8_t L[QK];
    for (int64_t i = 0; i < n / QK; i++, x += QK) {
        quantize_q45_K(x, &y[i].d, &y[i].dmin, y[i].scales, L, 31, -0.5f, 0.1f, 15);
        uint8_t *qh = y[i].qh, *ql = y[i].qs;
        memset(qh, 0, QK / 8);
        uint8_t m1 = 1, m2 = 2;
        for (int c = 0; c < QK; c += 64) {
            for (int j = 0; j < 32; j++) {
                int l1 = L[c + j], l2 = L[c + j + 32];
                if (l1 > 15) { l1 -= 16; qh[j] |= m1; }
                if (l2 > 15) { l2 -= 16; qh[j] |= m2; }
                ql[j] = (uint8_t)(l1 | (l2 << 4));
            }
            m1 <<= 2;
            m2 <<= 2;
            ql += 32;
        }
    }
}

void moe_q6_K_from_float_ref(const float *x, void *dst, int64_t n) {
    moe_block_q6_K *y = dst;
    int8_t L[QK];
    float scales[QK / 16];
    for (int64_t i = 0; i < n / QK; i++, x += QK) {
        float max_scale = 0, max_abs_scale = 0;
        for (int ib = 0; ib < QK / 16; ib++) {
            const float scale = make_qx_quants(16, 32, x + 16 * ib, L + 16 * ib);
            scales[ib] = scale;
            const float abs_scale = fabsf(scale);
            if (abs_scale > max_abs_scale) { max_abs_scale = abs_scale; max_scale = scale; }
        }
        if (max_abs_scale < GROUP_MAX_EPS) {
            memset(&y[i], 0, sizeof y[i]);
            continue;
        }
        float iscale = -128.f / max_scale;
        y[i].d = moe_f32_to_f16(1 / iscale);
        for (int ib = 0; ib < QK / 16; ib++) y[i].scales[ib] = (int8_t)imin(127, nearest_int(iscale * scales[ib]));
        for (int j = 0; j < QK / 16; j++) {
            float d = moe_f16_to_f32(y[i].d) * y[i].scales[j];
            if (!d) continue;
            for (int ii = 0; ii < 16; ii++) {
                int l = nearest_int(x[16 * j + ii] / d);
                L[16 * j + ii] = (int8_t)(imax(-32, imin(31, l)) + 32);
            }
        }
        uint8_t *ql = y[i].ql, *qh = y[i].qh;
        for (int j = 0; j < QK; j += 128) {
            for (int l = 0; l < 32; l++) {
                const uint8_t q1 = L[j + l] & 0xF, q2 = L[j + l + 32] & 0xF;
                const uint8_t q3 = L[j + l + 64] & 0xF, q4 = L[j + l + 96] & 0xF;
                ql[l] = (uint8_t)(q1 | (q3 << 4));
                ql[l + 32] = (uint8_t)(q2 | (q4 << 4));
                qh[l] = (uint8_t)((L[j + l] >> 4) | ((L[j + l + 32] >> 4) << 2) | ((L[j + l + 64] >> 4) << 4) |
                                  ((L[j + l + 96] >> 4) << 6));
            }
            ql += 64;
            qh += 32;
        }
    }
}

/* The scale maps the value of largest magnitude to -127 exactly (ggml uses -127, not
 * -128, so that IQ kernels can negate quants freely). */
/* ggml-quants.c's quantize_iq4_xs without importance weights: quantize_row_iq4_nl_impl for
 * a super-block of 256 with ntry 7. Each sub-block of 32 gets IQ4_NL's scale search; the
 * super-block scale maps the largest of those (by magnitude, signed) to -32; each
 * sub-block's scale rounds to a 6-bit multiple l of it, and the quants are taken again at
 * d·l. */
void moe_iq4_xs_from_float_ref(const float *x, void *dst, int64_t n) {
    moe_block_iq4_xs *y = dst;
    for (int64_t i = 0; i < n / QK; i++, x += QK) {
        float scales[QK / 32], max_scale = 0, amax_scale = 0;
        for (int ib = 0; ib < QK / 32; ib++) {
            scales[ib] = moe_iq4_nl_block_scale(x + 32 * ib);
            const float abs_d = fabsf(scales[ib]);
            if (abs_d > amax_scale) { amax_scale = abs_d; max_scale = scales[ib]; }
        }
        const float d = -max_scale / 32; /* -0.0 when every sub-block is 0, as in ggml */
        y[i].d = moe_f32_to_f16(d);
        y[i].scales_h = 0;
        const float id = d ? 1 / d : 0.f;
        for (int ib = 0; ib < QK / 32; ib++) {
            int l = nearest_int(id * scales[ib]);
            l = imax(-32, imin(31, l));
            const float dl = d * l;
            moe_iq4_nl_pack(y[i].qs + 16 * ib, x + 32 * ib, dl ? 1 / dl : 0.f);
            l += 32;
            if (ib % 2 == 0) y[i].scales_l[ib / 2] = (uint8_t)(l & 0xf);
            else y[i].scales_l[ib / 2] |= (uint8_t)((l & 0xf) << 4);
            y[i].scales_h |= (uint16_t)((l >> 4) << 2 * ib);
        }
    }
}

void moe_q8_K_from_float_ref(const float *x, void *dst, int64_t n) {
    moe_block_q8_K *y = dst;
    for (int64_t i = 0; i < n / QK; i++, x += QK) {
        float max = 0, amax = 0;
        for (int j = 0; j < QK; j++) {
            float ax = fabsf(x[j]);
            if (ax > amax) { amax = ax; max = x[j]; }
        }
        if (!amax) {
            memset(&y[i], 0, sizeof y[i]);
            continue;
        }
        const float iscale = -127.f / max;
        for (int j = 0; j < QK; j++) y[i].qs[j] = (int8_t)imin(127, nearest_int(iscale * x[j]));
        for (int j = 0; j < QK / 16; j++) {
            int sum = 0;
            for (int ii = 0; ii < 16; ii++) sum += y[i].qs[j * 16 + ii];
            y[i].bsums[j] = (int16_t)sum;
        }
        y[i].d = 1 / iscale;
    }
}

/* ------------------------------------------------------------------ reference dot products */

/* Each super-block gives an exact integer Σ scale·Σ q·q8 (and Σ min·Σ q8), scaled once by
 * the float d·d8: the only rounding is that final float arithmetic, which is what the SIMD
 * kernels are compared against. The mins use the sums of the q8 quants themselves rather
 * than the block's bsums, so a wrong bsums shows up as a SIMD/reference mismatch. */

static inline int sum16(const int8_t *q8) {
    int s = 0;
    for (int l = 0; l < 16; l++) s += q8[l];
    return s;
}

void moe_q2_K_vec_dot_ref(int64_t n, float *s, const void *vx, const void *vy) {
    const moe_block_q2_K *x = vx;
    const moe_block_q8_K *y = vy;
    float sumf = 0;
    for (int64_t i = 0; i < n / QK; i++) {
        const uint8_t *q2 = x[i].qs, *sc = x[i].scales;
        const int8_t *q8 = y[i].qs;
        int isum = 0, summs = 0, is = 0;
        for (int c = 0; c < QK; c += 128, q2 += 32) {
            for (int shift = 0; shift < 8; shift += 2) {
                for (int half = 0; half < 2; half++, is++, q8 += 16) {
                    int isuml = 0;
                    for (int l = 0; l < 16; l++) isuml += q8[l] * ((q2[l + 16 * half] >> shift) & 3);
                    isum += (sc[is] & 0xF) * isuml;
                    summs += (sc[is] >> 4) * sum16(q8);
                }
            }
        }
        const float dall = y[i].d * moe_f16_to_f32(x[i].d);
        const float dmin = y[i].d * moe_f16_to_f32(x[i].dmin);
        sumf += dall * isum - dmin * summs;
    }
    *s = sumf;
}

void moe_q3_K_vec_dot_ref(int64_t n, float *s, const void *vx, const void *vy) {
    const moe_block_q3_K *x = vx;
    const moe_block_q8_K *y = vy;
    float sumf = 0;
    for (int64_t i = 0; i < n / QK; i++) {
        const uint8_t *q3 = x[i].qs, *hm = x[i].hmask;
        const int8_t *q8 = y[i].qs;
        int isum = 0, is = 0, bit = 0;
        for (int c = 0; c < QK; c += 128, q3 += 32) {
            for (int shift = 0; shift < 8; shift += 2, bit++) {
                for (int half = 0; half < 2; half++, is++, q8 += 16) {
                    int isuml = 0;
                    for (int l = 0; l < 16; l++) {
                        int k = l + 16 * half;
                        int q = ((q3[k] >> shift) & 3) - ((hm[k] >> bit) & 1 ? 0 : 4);
                        isuml += q8[l] * q;
                    }
                    isum += q3_scale(x[i].scales, is) * isuml;
                }
            }
        }
        sumf += y[i].d * moe_f16_to_f32(x[i].d) * isum;
    }
    *s = sumf;
}

void moe_q4_K_vec_dot_ref(int64_t n, float *s, const void *vx, const void *vy) {
    const moe_block_q4_K *x = vx;
    const moe_block_q8_K *y = vy;
    float sumf = 0;
    for (int64_t i = 0; i < n / QK; i++) {
        const uint8_t *q4 = x[i].qs;
        const int8_t *q8 = y[i].qs;
        int isum = 0, summs = 0;
        for (int j = 0; j < QK / 32; j++, q8 += 32) {
            uint8_t sc, m;
            get_scale_min_k4(j, x[i].scales, &sc, &m);
            const uint8_t *q = q4 + 32 * (j / 2);
            const int shift = 4 * (j % 2);
            int isuml = 0;
            for (int l = 0; l < 32; l++) isuml += q8[l] * ((q[l] >> shift) & 0xF);
            isum += sc * isuml;
            summs += m * (sum16(q8) + sum16(q8 + 16));
        }
        const float d = y[i].d * moe_f16_to_f32(x[i].d);
        const float dmin = y[i].d * moe_f16_to_f32(x[i].dmin);
        sumf += d * isum - dmin * summs;
    }
    *s = sumf;
}

void moe_q5_K_vec_dot_ref(int64_t n, float *s, const void *vx, const void *vy) {
    const moe_block_q5_K *x = vx;
    const moe_block_q8_K *y = vy;
    float sumf = 0;
    for (int64_t i = 0; i < n / QK; i++) {
        const int8_t *q8 = y[i].qs;
        int isum = 0, summs = 0;
        for (int j = 0; j < QK / 32; j++, q8 += 32) {
            uint8_t sc, m;
            get_scale_min_k4(j, x[i].scales, &sc, &m);
            const uint8_t *ql = x[i].qs + 32 * (j / 2);
            const int shift = 4 * (j % 2);
            int isuml = 0;
            for (int l = 0; l < 32; l++) {
                int q = ((ql[l] >> shift) & 0xF) | (((x[i].qh[l] >> j) & 1) << 4);
                isuml += q8[l] * q;
            }
            isum += sc * isuml;
            summs += m * (sum16(q8) + sum16(q8 + 16));
        }
        const float d = y[i].d * moe_f16_to_f32(x[i].d);
        const float dmin = y[i].d * moe_f16_to_f32(x[i].dmin);
        sumf += d * isum - dmin * summs;
    }
    *s = sumf;
}

void moe_q6_K_vec_dot_ref(int64_t n, float *s, const void *vx, const void *vy) {
    const moe_block_q6_K *x = vx;
    const moe_block_q8_K *y = vy;
    float sumf = 0;
    for (int64_t i = 0; i < n / QK; i++) {
        int isum = 0;
        for (int v = 0; v < QK; v += 16) {
            /* value v+l: chunk c of 128, quarter k of 32 within it (as in the dequantizer) */
            const int c = v / 128, k = (v % 128) / 32, l0 = v % 32;
            const uint8_t *ql = x[i].ql + 64 * c + 32 * (k % 2);
            const uint8_t *qh = x[i].qh + 32 * c;
            int isuml = 0;
            for (int l = l0; l < l0 + 16; l++) {
                int q = (((ql[l] >> (4 * (k / 2))) & 0xF) | (((qh[l] >> (2 * k)) & 3) << 4)) - 32;
                isuml += y[i].qs[v + l - l0] * q;
            }
            isum += x[i].scales[v / 16] * isuml;
        }
        sumf += y[i].d * moe_f16_to_f32(x[i].d) * isum;
    }
    *s = sumf;
}

void moe_q8_K_vec_dot_ref(int64_t n, float *s, const void *vx, const void *vy) {
    const moe_block_q8_K *x = vx, *y = vy;
    float sumf = 0;
    for (int64_t i = 0; i < n / QK; i++) {
        int isum = 0;
        for (int j = 0; j < QK; j++) isum += x[i].qs[j] * y[i].qs[j];
        sumf += x[i].d * y[i].d * isum;
    }
    *s = sumf;
}

void moe_iq4_xs_vec_dot_ref(int64_t n, float *s, const void *vx, const void *vy) {
    const moe_block_iq4_xs *x = vx;
    const moe_block_q8_K *y = vy;
    float sumf = 0;
    for (int64_t i = 0; i < n / QK; i++) {
        int isum = 0;
        for (int ib = 0; ib < QK / 32; ib++) {
            const uint8_t *qs = x[i].qs + 16 * ib;
            const int8_t *q8 = y[i].qs + 32 * ib;
            int sumi = 0;
            for (int j = 0; j < 16; j++)
                sumi += moe_iq4_nl_values[qs[j] & 0xf] * q8[j] + moe_iq4_nl_values[qs[j] >> 4] * q8[j + 16];
            isum += iq4_xs_scale(&x[i], ib) * sumi;
        }
        sumf += moe_f16_to_f32(x[i].d) * y[i].d * isum;
    }
    *s = sumf;
}
