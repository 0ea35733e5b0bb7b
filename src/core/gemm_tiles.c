/* gemm_tiles.c — AVX2 tile kernels for batches (prefill): up to 4 weight rows × 8 tokens
 * per pass over the blocks, for Q8_0, Q4_0, Q4_K and Q5_K weights against their quantized
 * activations, and 8 rows × 8 tokens for interleaved Q4_0, Q4_K and Q8_0 (tile8_*); the
 * tile of Q2_K, Q3_K and Q6_K is in quant_k_avx2.c, beside their vec_dots. The work of one row (unpacking nibbles,
 * unpacking scales) is done once for the tokens of a tile and the work of one token
 * (offsets, block sums) once for its rows, which a per-row vec_dot repeats for every pair.
 *
 * Every output is computed with exactly the float operations of the type's vec_dot in
 * quant_legacy.c / quant_k_avx2.c, in the same order (the integer sums may be formed
 * differently: they are exact), so a batch gives bit-identical results to token-by-token
 * decoding. The reference each tile is tested against is that vec_dot (tests/test_gemm.c);
 * without AVX2 (FMA, F16C) there are no tiles and moe_gemm_prepared falls back to the matmul. */
#include "core/gemm.h"
#include "core/cpu.h" /* MOE_GROUP_BLOCK */
#include "core/f16.h"
#include "core/quant_k.h"
#include "core/quant_legacy.h"

#if defined(__AVX2__) && defined(__FMA__) && defined(__F16C__)
#include "core/simd.h" /* the helpers the vec_dot kernels use: same operations, same bits */

#define INLINE static inline __attribute__((always_inline))
#define FOR_R(r) _Pragma("GCC unroll 4") for (int r = 0; r < nr; r++)
#define FOR_T(t) _Pragma("GCC unroll 8") for (int t = 0; t < nt; t++)
/* Tokens per pass over the blocks: each tile keeps one accumulator per token (its four
 * rows share a vector), and eight tokens halve the work on the weights per token. */
#define TILE_TOKENS 8

/* Four rows' 32 bytes back in order from four vectors of Q4_K's interleaved layout
 * (vector k: bytes 8k..8k+3 of rows 0-3, then 8k+4..8k+7 of rows 0-3): a 4×4 transpose
 * of dwords, per row [bytes 0-15 | bytes 16-31]. Q8_0's vector k holds bytes 4k..4k+3,
 * then 16+4k..16+4k+3: the same transpose gives its rows' dwords in the order
 * 0 4 1 5 2 6 3 7, which Q8_0_DWORDS puts back. */
INLINE void rows4_transpose(const uint8_t *v, __m256i row[4]) {
    const __m256i order = _mm256_setr_epi32(0, 4, 1, 5, 2, 6, 3, 7);
    const __m256i l0 = load256(v), l1 = load256(v + 32), l2 = load256(v + 64), l3 = load256(v + 96);
    /* [row 0 bytes 0-15 | row 1 bytes 0-15], then bytes 16-31; rows 2-3 from the high dwords */
    const __m256i a01 = _mm256_permutevar8x32_epi32(_mm256_unpacklo_epi32(l0, l1), order),
                  b01 = _mm256_permutevar8x32_epi32(_mm256_unpacklo_epi32(l2, l3), order),
                  a23 = _mm256_permutevar8x32_epi32(_mm256_unpackhi_epi32(l0, l1), order),
                  b23 = _mm256_permutevar8x32_epi32(_mm256_unpackhi_epi32(l2, l3), order);
    row[0] = _mm256_permute2x128_si256(a01, b01, 0x20);
    row[1] = _mm256_permute2x128_si256(a01, b01, 0x31);
    row[2] = _mm256_permute2x128_si256(a23, b23, 0x20);
    row[3] = _mm256_permute2x128_si256(a23, b23, 0x31);
}

#define Q8_0_DWORDS _mm256_setr_epi32(0, 2, 4, 6, 1, 3, 5, 7)

/* The four rows' nibbles of one block of Q4_0's interleaved layout (b: the block) as
 * nibbles32 gives them from a row's qs: chunk k holds qs[4k..4k+3] of rows 0-3, so a 4×4
 * transpose of dwords puts each row's 16 bytes back together. (IQ4_NL has the same
 * layout: its tile looks these up in its grid.) */
INLINE void q4_0_il_nibbles(const uint8_t *b, __m256i qx[4]) {
    const __m256i shift = _mm256_setr_epi32(0, 0, 0, 0, 4, 4, 4, 4), m4 = _mm256_set1_epi8(0x0F);
    const uint8_t *q = b + MOE_IL_QS; /* chunk k: 16 bytes at q + 16k */
    const __m128i c0 = _mm_loadu_si128((const __m128i *)q), c1 = _mm_loadu_si128((const __m128i *)(q + 16)),
                  c2 = _mm_loadu_si128((const __m128i *)(q + 32)), c3 = _mm_loadu_si128((const __m128i *)(q + 48));
    const __m128i t0 = _mm_unpacklo_epi32(c0, c1), t1 = _mm_unpackhi_epi32(c0, c1);
    const __m128i t2 = _mm_unpacklo_epi32(c2, c3), t3 = _mm_unpackhi_epi32(c2, c3);
    const __m128i rows[4] = {_mm_unpacklo_epi64(t0, t2), _mm_unpackhi_epi64(t0, t2), _mm_unpacklo_epi64(t1, t3),
                             _mm_unpackhi_epi64(t1, t3)};
    _Pragma("GCC unroll 4") for (int r = 0; r < 4; r++) /* as nibbles32 */
        qx[r] = _mm256_and_si256(_mm256_srlv_epi32(_mm256_broadcastsi128_si256(rows[r]), shift), m4);
}

/* ---------------------------------------------------------------- Q8_0 × Q8_0 */
/* Q8_0's order of sums is Q4_0's (quant_legacy.c): per block and token, the four rows'
 * exact sums of values 0-15 and 16-31 as [A0..A3 | B0..B3], then one FMA; one
 * accumulator per token, eight tokens per pass. With VNNI the tile forms the 4-value sums
 * as (y+128)·x − 128·Σx with one dpbusd per pair (y+128 is unsigned; Σx per lane once per
 * row); without it, ggml's sign trick. Rows of the interleaved layout are taken back out
 * of its vectors (rows4_transpose). IQ4_NL (nl) is the same tile once its nibbles are
 * looked up in the grid, as its vec_dot does (quant_legacy.c); its interleaved layout is
 * Q4_0's (q4_0_il_nibbles). */
INLINE void tile_s8(const uint8_t *wx, size_t bx, const uint8_t *yq, size_t by, int64_t nb, float *out, int64_t ldy,
                    int nr, int nt, bool il, bool nl) {
    __m256 acc[TILE_TOKENS];
    for (int t = 0; t < TILE_TOKENS; t++) acc[t] = _mm256_setzero_ps();
    const __m256i grid = _mm256_broadcastsi128_si256(_mm_loadu_si128((const __m128i *)moe_iq4_nl_values));
    for (int64_t i = 0; i < nb; i++) {
        __m256i qx[4], ox[4];
        __m256 d;
        if (nl && il) {
            const uint8_t *b = wx + (size_t)i * MOE_Q4_0_IL_BLOCK;
            q4_0_il_nibbles(b, qx);
            FOR_R(r) qx[r] = _mm256_shuffle_epi8(grid, qx[r]);
            d = rows4_scales_at(b);
        } else if (nl) {
            const moe_block_iq4_nl *x[4];
            FOR_R(r) {
                x[r] = (const moe_block_iq4_nl *)(wx + (size_t)r * bx) + i;
                qx[r] = _mm256_shuffle_epi8(grid, nibbles32(x[r]->qs));
            }
            d = nr == 4 ? rows4_scales(x[0]->d, x[1]->d, x[2]->d, x[3]->d) : bcast_f16(x[0]->d);
        } else if (il) {
            const uint8_t *b = wx + (size_t)i * MOE_Q8_0_IL_BLOCK;
            rows4_transpose(b + MOE_IL_QS, qx);
            FOR_R(r) qx[r] = _mm256_permutevar8x32_epi32(qx[r], Q8_0_DWORDS);
            d = rows4_scales_at(b);
        } else {
            const moe_block_q8_0 *x[4];
            FOR_R(r) {
                x[r] = (const moe_block_q8_0 *)(wx + (size_t)r * bx) + i;
                qx[r] = load256(x[r]->qs);
            }
            d = nr == 4 ? rows4_scales(x[0]->d, x[1]->d, x[2]->d, x[3]->d) : bcast_f16(x[0]->d);
        }
        FOR_R(r) {
#if MOE_VNNI
            ox[r] = _mm256_sub_epi32(_mm256_setzero_si256(), dot_u8s8(_mm256_setzero_si256(), _mm256_set1_epi8((char)0x80), qx[r]));
#else
            ox[r] = _mm256_sign_epi8(qx[r], qx[r]); /* |x| */
#endif
        }
        FOR_T(t) {
            const moe_block_q8_0 *y = (const moe_block_q8_0 *)(yq + (size_t)t * by) + i;
            const __m256i qy = load256(y->qs);
#if MOE_VNNI
            const __m256i yu = _mm256_xor_si256(qy, _mm256_set1_epi8((char)0x80));
#endif
            __m256i p[4];
            FOR_R(r) {
#if MOE_VNNI
                p[r] = dot_u8s8(ox[r], yu, qx[r]);
#else
                p[r] = dot_u8s8(_mm256_setzero_si256(), ox[r], _mm256_sign_epi8(qy, qx[r]));
#endif
            }
            const __m256i ab = nr == 4 ? rows4_halves(p[0], p[1], p[2], p[3]) : rows4_halves(p[0], p[0], p[0], p[0]);
            acc[t] = _mm256_fmadd_ps(_mm256_mul_ps(d, bcast_f16(y->d)), _mm256_cvtepi32_ps(ab), acc[t]);
        }
    }
    FOR_T(t) rows4_store(out + t * ldy, acc[t], nr);
}
INLINE void tile_q8_0(const uint8_t *wx, size_t bx, const uint8_t *yq, size_t by, int64_t nb, float *out, int64_t ldy,
                      int nr, int nt, bool il) {
    tile_s8(wx, bx, yq, by, nb, out, ldy, nr, nt, il, false);
}
INLINE void tile_iq4_nl(const uint8_t *wx, size_t bx, const uint8_t *yq, size_t by, int64_t nb, float *out, int64_t ldy,
                        int nr, int nt, bool il) {
    tile_s8(wx, bx, yq, by, nb, out, ldy, nr, nt, il, true);
}

/* ---------------------------------------------------------------- Q4_0 × Q8_0 */

/* Q4_0's order of sums (quant_legacy.c): per block and token, the four rows' exact sums
 * [A0..A3 | B0..B3], then one FMA. Rows of the interleaved layout are taken back out of
 * their chunks (a 4×4 transpose of dwords: chunk k holds qs[4k..4k+3] of rows 0-3). */
INLINE void tile_q4_0(const uint8_t *wx, size_t bx, const uint8_t *yq, size_t by, int64_t nb, float *out, int64_t ldy,
                      int nr, int nt, bool il) {
    __m256 acc[TILE_TOKENS];
    for (int t = 0; t < TILE_TOKENS; t++) acc[t] = _mm256_setzero_ps();
    for (int64_t i = 0; i < nb; i++) {
        __m256i qx[4];
        __m256 d;
        if (il) {
            const uint8_t *b = wx + (size_t)i * MOE_Q4_0_IL_BLOCK;
            q4_0_il_nibbles(b, qx);
            d = rows4_scales_at(b);
        } else {
            const moe_block_q4_0 *x[4];
            FOR_R(r) {
                x[r] = (const moe_block_q4_0 *)(wx + (size_t)r * bx) + i;
                qx[r] = nibbles32(x[r]->qs);
            }
            d = nr == 4 ? rows4_scales(x[0]->d, x[1]->d, x[2]->d, x[3]->d) : bcast_f16(x[0]->d);
        }
        FOR_T(t) {
            const moe_block_q8_0 *y = (const moe_block_q8_0 *)(yq + (size_t)t * by) + i;
            const __m256i qy = load256(y->qs);
            const __m256i off = _mm256_sub_epi32(
                _mm256_setzero_si256(),
                _mm256_madd_epi16(_mm256_maddubs_epi16(_mm256_set1_epi8(8), qy), _mm256_set1_epi16(1)));
            __m256i p[4];
            FOR_R(r) p[r] = dot_u8s8(off, qx[r], qy);
            const __m256i ab = nr == 4 ? rows4_halves(p[0], p[1], p[2], p[3]) : rows4_halves(p[0], p[0], p[0], p[0]);
            acc[t] = _mm256_fmadd_ps(_mm256_mul_ps(d, bcast_f16(y->d)), _mm256_cvtepi32_ps(ab), acc[t]);
        }
    }
    FOR_T(t) rows4_store(out + t * ldy, acc[t], nr);
}

/* The legacy types interleaved (Q4_0, Q5_0, Q4_1, Q5_1; Q8_0 below), eight rows (two
 * groups of four) × up to eight tokens, with the rows in lanes: chunk k of both groups is
 * one vector [rows 0-3 | rows 4-7] holding four values of each row, against one y dword
 * broadcast to every lane. Every lane then ends a block with its row's exact A (values
 * 0-15) or B (16-31) sum, with no horizontal sums (rows4_halves), and one FMA serves eight
 * rows: the same floats, in the same order, as the vec_dot, for about half the vector
 * instructions per token. A token's offsets (off·Σy: Q4_0 −8, Q5_0 −16), the s of Q8_1
 * blocks and the scale are prepared once per token tile (legacy_tact) for the rows of the
 * call. */
typedef struct {
    /* off·Σ y over values 0-15, over 16-31; Q8_1 blocks (Q4_1, Q5_1) have no offsets, and
     * the first holds the block's s instead. 12 bytes: the eight tokens of a 14,336-wide
     * row (Mixtral's down projections) then take 43 KB, within L1; with a field of its own
     * for s they took 57 KB and the tile measured ~3 % slower there (medians of three
     * noisy runs; level again with this, five runs). */
    union {
        int32_t sa;
        float sy;
    };
    int32_t sb;
    float dy;
} legacy_tact;

/* the most columns the eight-row tiles prepare tokens for on the stack */
#define TACT_MAX_COLS 16384

/* Q8_0 activation blocks with the offset off, or Q8_1 blocks (q8_1) */
static void legacy_tact_prepare(legacy_tact *a, const uint8_t *yq, size_t by, int64_t nb, int nt, bool q8_1, int32_t off) {
    for (int t = 0; t < nt; t++)
        for (int64_t i = 0; i < nb; i++) {
            legacy_tact *p = &a[t * nb + i];
            if (q8_1) {
                const moe_block_q8_1 *y = (const moe_block_q8_1 *)(yq + (size_t)t * by) + i;
                p->sy = moe_f16_table[y->s];
                p->sb = 0;
                p->dy = moe_f16_table[y->d];
            } else {
                const moe_block_q8_0 *y = (const moe_block_q8_0 *)(yq + (size_t)t * by) + i;
                const __m256i h = half_sums(load256(y->qs)); /* [ΣA ×4 | ΣB ×4] */
                p->sa = off * _mm256_extract_epi32(h, 0);
                p->sb = off * _mm256_extract_epi32(h, 4);
                p->dy = moe_f16_table[y->d];
            }
        }
}

/* The scales of block i of two groups (b0, b1: the block in each) as [rows 0-3 | 4-7] */
INLINE __m256 rows8_scales(const uint8_t *b0, const uint8_t *b1) {
    uint64_t d0, d1;
    memcpy(&d0, b0, 8);
    memcpy(&d1, b1, 8);
    return _mm256_cvtph_ps(_mm_set_epi64x((long long)d1, (long long)d0));
}

/* y dword at p in every lane */
INLINE __m256i bcast_dword(const int8_t *p) {
    int32_t w;
    memcpy(&w, p, 4);
    return _mm256_set1_epi32(w);
}

/* One block of eight rows and one token: acc_A += (d·dy)·A, acc_B += (d·dy)·B */
INLINE void rows8_accumulate(__m256 *acc_a, __m256 *acc_b, __m256 d, float dy, __m256i sa, __m256i sb) {
    const __m256 dd = _mm256_mul_ps(d, _mm256_set1_ps(dy));
    *acc_a = _mm256_fmadd_ps(dd, _mm256_cvtepi32_ps(sa), *acc_a);
    *acc_b = _mm256_fmadd_ps(dd, _mm256_cvtepi32_ps(sb), *acc_b);
}

/* What the other legacy types add to Q4_0's tile (their layouts: quant_legacy.c), as their
 * kernel (legacy_group) does: Q5_0 and Q5_1 the fifth bits, from the two groups' masks (the
 * low 16 bits of chunk k's mask are its A values' bits, the high 16 its B values'); Q4_1
 * and Q5_1 m·s' added to the B sums after each block. */
enum { T_Q4_0, T_Q5_0, T_Q4_1, T_Q5_1 };

INLINE void tile8_legacy(const uint8_t *wx, size_t gb, const uint8_t *yq, size_t by, const legacy_tact *ta, int64_t nb,
                         float *out, int64_t ldy, int nt, int type) {
    const size_t blk = type == T_Q4_0   ? MOE_Q4_0_IL_BLOCK
                       : type == T_Q5_0 ? MOE_Q5_0_IL_BLOCK
                       : type == T_Q4_1 ? MOE_Q4_1_IL_BLOCK
                                        : MOE_Q5_1_IL_BLOCK;
    const size_t masks = type == T_Q5_0 ? 8 : 16, qo = type == T_Q4_0 ? MOE_IL_QS : type == T_Q5_0 ? 24 : type == T_Q4_1 ? 16 : 32;
    const bool q8_1 = type == T_Q4_1 || type == T_Q5_1, fifth = type == T_Q5_0 || type == T_Q5_1;
    __m256 acc_a[TILE_TOKENS], acc_b[TILE_TOKENS];
    FOR_T(t) acc_a[t] = acc_b[t] = _mm256_setzero_ps();
    const __m256i m4 = _mm256_set1_epi8(0x0F);
    for (int64_t i = 0; i < nb; i++) {
        const uint8_t *b0 = wx + (size_t)i * blk, *b1 = b0 + gb;
        __m256i ua[4], ub[4];
        _Pragma("GCC unroll 4") for (int k = 0; k < 4; k++) {
            const __m256i v = _mm256_loadu2_m128i((const __m128i *)(b1 + qo + 16 * k), (const __m128i *)(b0 + qo + 16 * k));
            ua[k] = _mm256_and_si256(v, m4);                       /* values 4k..4k+3 of each row */
            ub[k] = _mm256_and_si256(_mm256_srli_epi16(v, 4), m4); /* values 16+4k..16+4k+3 */
            if (fifth) {
                uint32_t h0, h1;
                memcpy(&h0, b0 + masks + 4 * k, 4);
                memcpy(&h1, b1 + masks + 4 * k, 4);
                ua[k] = _mm256_or_si256(ua[k], fifth_bits((h0 & 0xFFFFu) | h1 << 16));
                ub[k] = _mm256_or_si256(ub[k], fifth_bits(h0 >> 16 | (h1 & 0xFFFF0000u)));
            }
        }
        const __m256 d = rows8_scales(b0, b1), m = q8_1 ? rows8_scales(b0 + 8, b1 + 8) : d;
        FOR_T(t) {
            const uint8_t *yt = yq + (size_t)t * by; /* token t's Q8_1 or Q8_0 blocks */
            const int8_t *qs = q8_1 ? ((const moe_block_q8_1 *)yt + i)->qs : ((const moe_block_q8_0 *)yt + i)->qs;
            const legacy_tact *a = &ta[t * nb + i];
            __m256i ya[4], yb_[4];
            _Pragma("GCC unroll 4") for (int k = 0; k < 4; k++) {
                ya[k] = bcast_dword(qs + 4 * k);
                yb_[k] = bcast_dword(qs + 16 + 4 * k);
            }
            /* without VNNI, maddubs pairs of 5-bit values: 4·2·31·127 < 2^15 */
            const __m256i sa = dot_nibbles(_mm256_set1_epi32(q8_1 ? 0 : a->sa), ua, ya, 4);
            const __m256i sb = dot_nibbles(_mm256_set1_epi32(a->sb), ub, yb_, 4);
            rows8_accumulate(&acc_a[t], &acc_b[t], d, a->dy, sa, sb);
            if (q8_1) acc_b[t] = _mm256_add_ps(acc_b[t], _mm256_mul_ps(m, _mm256_set1_ps(a->sy)));
        }
    }
    FOR_T(t) _mm256_storeu_ps(out + t * ldy, _mm256_add_ps(acc_a[t], acc_b[t])); /* A + B, as rows4_store */
}
#define LEGACY_TILE8(t, T)                                                                                                 \
    INLINE void tile8_##t(const uint8_t *wx, size_t gb, const uint8_t *yq, size_t by, const legacy_tact *ta, int64_t nb, \
                          float *out, int64_t ldy, int nt) {                                                               \
        tile8_legacy(wx, gb, yq, by, ta, nb, out, ldy, nt, T);                                                             \
    }
LEGACY_TILE8(q4_0, T_Q4_0)
LEGACY_TILE8(q5_0, T_Q5_0)
LEGACY_TILE8(q4_1, T_Q4_1)
LEGACY_TILE8(q5_1, T_Q5_1)

/* Q8_0 interleaved, eight rows × up to eight tokens, rows in lanes as tile8_q4_0: y dword
 * j meets the low (j < 4) or high half of vector j % 4 of both groups. With VNNI the
 * weights go in as x + 128 (unsigned) and −128·Σy comes off with the token's prepared
 * offsets (Q8_0_TILE_OFF); without it, ggml's sign trick: |x| times y with x's sign. */
#if MOE_VNNI
#define Q8_0_TILE_OFF (-128)
#else
#define Q8_0_TILE_OFF 0
#endif
INLINE void tile8_q8_0(const uint8_t *wx, size_t gb, const uint8_t *yq, size_t by, const legacy_tact *ta, int64_t nb,
                       float *out, int64_t ldy, int nt) {
    __m256 acc_a[TILE_TOKENS], acc_b[TILE_TOKENS];
    FOR_T(t) acc_a[t] = acc_b[t] = _mm256_setzero_ps();
    for (int64_t i = 0; i < nb; i++) {
        const uint8_t *b0 = wx + (size_t)i * MOE_Q8_0_IL_BLOCK, *b1 = b0 + gb;
        __m256i x[8], u[8]; /* dword j of the eight rows: vector j%4, half j/4; u: the unsigned operand */
        _Pragma("GCC unroll 8") for (int j = 0; j < 8; j++) {
            const size_t c = (size_t)(8 + 32 * (j % 4) + 16 * (j / 4));
            x[j] = _mm256_loadu2_m128i((const __m128i *)(b1 + c), (const __m128i *)(b0 + c));
#if MOE_VNNI
            u[j] = _mm256_xor_si256(x[j], _mm256_set1_epi8((char)0x80));
#else
            u[j] = _mm256_sign_epi8(x[j], x[j]);
#endif
        }
        const __m256 d = rows8_scales(b0, b1);
        FOR_T(t) {
            const int8_t *qs = ((const moe_block_q8_0 *)(yq + (size_t)t * by) + i)->qs;
            const legacy_tact *a = &ta[t * nb + i];
            __m256i sa = _mm256_set1_epi32(a->sa), sb = _mm256_set1_epi32(a->sb);
            _Pragma("GCC unroll 4") for (int j = 0; j < 4; j++) {
#if MOE_VNNI
                sa = dot_u8s8(sa, u[j], bcast_dword(qs + 4 * j));
                sb = dot_u8s8(sb, u[4 + j], bcast_dword(qs + 16 + 4 * j));
#else
                sa = dot_u8s8(sa, u[j], _mm256_sign_epi8(bcast_dword(qs + 4 * j), x[j]));
                sb = dot_u8s8(sb, u[4 + j], _mm256_sign_epi8(bcast_dword(qs + 16 + 4 * j), x[4 + j]));
#endif
            }
            rows8_accumulate(&acc_a[t], &acc_b[t], d, a->dy, sa, sb);
        }
    }
    FOR_T(t) _mm256_storeu_ps(out + t * ldy, _mm256_add_ps(acc_a[t], acc_b[t]));
}

/* ---------------------------------------------------------------- Q4_K × Q8_K */


/* The four rows of a block of Q4_K's or Q5_K's (q5) interleaved layout (quant_k.c) taken
 * back out: their quants in block order into rowq (rows4_transpose per 32-byte run), Q5_K's
 * fifth bits (qh) into hbits, their [scales | mins] as scales_mins_k4 gives them, their
 * (d, dmin). */
INLINE void q45_K_rows(const uint8_t *b, bool q5, uint8_t rowq[4][128], __m256i *smv, uint32_t *dm, const uint8_t **qs,
                       __m256i *hbits) {
    _Pragma("GCC unroll 4") for (int j = 0; j < 4; j++) {
        __m256i row[4];
        rows4_transpose(b + (q5 ? 192 : 64) + 128 * j, row);
        for (int r = 0; r < 4; r++) _mm256_store_si256((__m256i *)(rowq[r] + 32 * j), row[r]);
    }
    if (q5) rows4_transpose(b + 64, hbits);
    __m256i sc, mn;
    q4_K_scales_mins(b, &sc, &mn);
    _Pragma("GCC unroll 4") for (int r = 0; r < 4; r++) { /* unrolled: the masks become constants */
        /* bytes r, 4+r, 8+r, 12+r of each lane: sub-blocks 0-3 (low lane) and 4-7 (high lane) */
        const __m256i pick = _mm256_setr_epi8(r, 4 + r, 8 + r, 12 + r, -1, -1, -1, -1, -1, -1, -1, -1, -1, -1, -1, -1,
                                              r, 4 + r, 8 + r, 12 + r, -1, -1, -1, -1, -1, -1, -1, -1, -1, -1, -1, -1);
        const __m256i u = _mm256_unpacklo_epi32(_mm256_shuffle_epi8(sc, pick), _mm256_shuffle_epi8(mn, pick));
        const __m256i w = _mm256_permutevar8x32_epi32(u, _mm256_setr_epi32(0, 4, 1, 5, 2, 6, 3, 7));
        smv[r] = _mm256_cvtepu8_epi16(_mm256_castsi256_si128(w));
        memcpy(&dm[r], b + 4 * r, 4);
        qs[r] = rowq[r];
    }
}

/* Q4_K's and Q5_K's order of sums (quant_k_avx2.c, dot_q45_K): per block, row and token
 * the exact integers T = Σ sc·Σ q·y and M = Σ m·bsum; per token [T0..T3 | M0..M3] times
 * [d·dy | −dmin·dy] in one FMA. Q5_K (q5) adds each value's fifth bit from qh.
 * Interleaved blocks are unpacked by q45_K_rows. */
INLINE void tile_q45_K(const uint8_t *wx, size_t bx, const uint8_t *yq, size_t by, int64_t nb, float *out, int64_t ldy,
                       int nr, int nt, bool il, bool q5) {
    const __m256i m4 = _mm256_set1_epi8(0xF);
    __m256 acc[TILE_TOKENS];
    for (int t = 0; t < TILE_TOKENS; t++) acc[t] = _mm256_setzero_ps();
    for (int64_t i = 0; i < nb; i++) {
        __m128i q8s[TILE_TOKENS];
        FOR_T(t) {
            const moe_block_q8_K *y = (const moe_block_q8_K *)(yq + (size_t)t * by) + i;
            const __m256i bsums = load256(y->bsums);
            q8s[t] = _mm_hadd_epi16(_mm256_castsi256_si128(bsums), _mm256_extracti128_si256(bsums, 1));
        }
        __m256i v[4][TILE_TOKENS]; /* [row][token]: [4-lane parts of T | of M] */
        uint32_t dm[4];
        __m256i smv[4];                  /* each row's [scales | mins] as int16 (scales_mins_k4) */
        const uint8_t *qs[4];
        __m256i hbits[4] = {0};             /* Q5_K: the fifth bits */
        _Alignas(32) uint8_t rowq[4][128]; /* the interleaved layout's rows, in block order */
        if (il)
            q45_K_rows(wx + (size_t)i * (q5 ? MOE_Q5_K_IL_BLOCK : MOE_Q4_K_IL_BLOCK), q5, rowq, smv, dm, qs, hbits);
        else if (q5)
            FOR_R(r) {
                const moe_block_q5_K *x = (const moe_block_q5_K *)(wx + (size_t)r * bx) + i;
                memcpy(&dm[r], &x->d, 4);
                smv[r] = scales_mins_k4(x->scales);
                qs[r] = x->qs;
                hbits[r] = load256(x->qh);
            }
        else
            FOR_R(r) {
                const moe_block_q4_K *x = (const moe_block_q4_K *)(wx + (size_t)r * bx) + i;
                memcpy(&dm[r], &x->d, 4);
                smv[r] = scales_mins_k4(x->scales);
                qs[r] = x->qs;
            }
        FOR_R(r) {
            const __m256i sm = smv[r];
            const __m128i mins = _mm256_extracti128_si256(sm, 1);
            const __m256i sc = _mm256_permute2x128_si256(sm, sm, 0x00);
            __m256i lo[4], hi[4];
            _Pragma("GCC unroll 4") for (int j = 0; j < 4; j++) {
                const __m256i bits = load256(qs[r] + 32 * j);
                lo[j] = _mm256_and_si256(bits, m4);
                hi[j] = _mm256_and_si256(_mm256_srli_epi16(bits, 4), m4);
                if (q5) { /* fifth bit of sub-block 2j and 2j+1: bits 2j and 2j+1 of qh */
                    lo[j] = _mm256_or_si256(lo[j], bit_to(hbits[r], 2 * j, 4));
                    hi[j] = _mm256_or_si256(hi[j], bit_to(hbits[r], 2 * j + 1, 4));
                }
            }
            FOR_T(t) {
                const int8_t *q8 = ((const moe_block_q8_K *)(yq + (size_t)t * by) + i)->qs;
                __m256i s0 = _mm256_setzero_si256(), s1 = _mm256_setzero_si256();
                _Pragma("GCC unroll 4") for (int j = 0; j < 4; j++) {
                    s0 = madd_acc(s0, bcast_scale(sc, 2 * j), _mm256_maddubs_epi16(lo[j], load256(q8 + 64 * j)));
                    s1 = madd_acc(s1, bcast_scale(sc, 2 * j + 1), _mm256_maddubs_epi16(hi[j], load256(q8 + 64 * j + 32)));
                }
                const __m256i sum = _mm256_add_epi32(s0, s1);
                v[r][t] = _mm256_set_m128i(_mm_madd_epi16(mins, q8s[t]),
                                           _mm_add_epi32(_mm256_castsi256_si128(sum), _mm256_extracti128_si256(sum, 1)));
            }
        }
        FOR_T(t) {
            const float dy = ((const moe_block_q8_K *)(yq + (size_t)t * by) + i)->d;
            const __m256i tm = nr == 4 ? rows4_halves(v[0][t], v[1][t], v[2][t], v[3][t])
                                       : rows4_halves(v[0][t], v[0][t], v[0][t], v[0][t]);
            const __m256 d = nr == 4 ? k_scales4(dm[0], dm[1], dm[2], dm[3], dy) : k_scales4(dm[0], dm[0], dm[0], dm[0], dy);
            acc[t] = _mm256_fmadd_ps(d, _mm256_cvtepi32_ps(tm), acc[t]);
        }
    }
    FOR_T(t) rows4_store(out + t * ldy, acc[t], nr);
}

INLINE void tile_q4_K(const uint8_t *wx, size_t bx, const uint8_t *yq, size_t by, int64_t nb, float *out, int64_t ldy,
                      int nr, int nt, bool il) {
    tile_q45_K(wx, bx, yq, by, nb, out, ldy, nr, nt, il, false);
}
INLINE void tile_q5_K(const uint8_t *wx, size_t bx, const uint8_t *yq, size_t by, int64_t nb, float *out, int64_t ldy,
                      int nr, int nt, bool il) {
    tile_q45_K(wx, bx, yq, by, nb, out, ldy, nr, nt, il, true);
}

/* Q4_K interleaved, eight rows × up to eight tokens, rows in lanes as tile8_q4_0. Piece p
 * (16 bytes) of 32-byte run j of both groups is one vector [rows 0-3 | rows 4-7] of bytes
 * 4p..4p+3: low nibbles sub-block 2j, high nibbles 2j+1. Per sub-block, eight broadcast y
 * dwords give every row's exact S = Σ q·y in its lane; T = Σ sc·S and M = Σ m·bsum are
 * then exact int32 products and sums, so acc_T += (d·dy)·T and acc_M += (−dmin·dy)·M are
 * dot_q45_K's floats in its order. A token's scale and sub-block sums of y (bsums) are
 * prepared once per pass of tokens (q4_K_tact). */
typedef struct {
    float dy;
    int32_t bs[8]; /* Σ y over sub-block j */
} q4_K_tact;

static void q4_K_tact_prepare(q4_K_tact *a, const uint8_t *yq, size_t by, int64_t nb, int nt) {
    for (int t = 0; t < nt; t++)
        for (int64_t i = 0; i < nb; i++) {
            const moe_block_q8_K *y = (const moe_block_q8_K *)(yq + (size_t)t * by) + i;
            a[t * nb + i].dy = y->d;
            for (int j = 0; j < 8; j++) a[t * nb + i].bs[j] = y->bsums[2 * j] + y->bsums[2 * j + 1];
        }
}

/* sub-block j's scales (or mins) of two groups, byte 4j + row of each, as eight int32
 * (signed bytes: IQ4_XS's scales) */
INLINE __m256i rows8_sub(__m256i v0, __m256i v1, int j, bool sgn) {
    const __m128i b = _mm_unpacklo_epi32(_mm256_castsi256_si128(_mm256_permutevar8x32_epi32(v0, _mm256_set1_epi32(j))),
                                         _mm256_castsi256_si128(_mm256_permutevar8x32_epi32(v1, _mm256_set1_epi32(j))));
    return sgn ? _mm256_cvtepi8_epi32(b) : _mm256_cvtepu8_epi32(b);
}

/* Q5_K (q5): the same on its layout, each piece's fifth bits from the qh piece at the
 * same place (bytes 64 + 16p), bit 2j and 2j + 1 for run j. Its 5-bit quants would
 * overflow maddubs's int16 sums over eight pieces (without VNNI), so those go in fours. */
INLINE void tile8_q45_K(const uint8_t *wx, size_t gb, const uint8_t *yq, size_t by, const q4_K_tact *ta, int64_t nb,
                        float *out, int64_t ldy, int nt, bool q5) {
    __m256 acc_t[TILE_TOKENS], acc_m[TILE_TOKENS];
    FOR_T(t) acc_t[t] = acc_m[t] = _mm256_setzero_ps();
    const __m256i m4 = _mm256_set1_epi8(0x0F);
    const size_t blk = q5 ? MOE_Q5_K_IL_BLOCK : MOE_Q4_K_IL_BLOCK, qo = q5 ? 192 : 64;
    for (int64_t i = 0; i < nb; i++) {
        const uint8_t *b0 = wx + (size_t)i * blk, *b1 = b0 + gb;
        __m256i sc0, mn0, sc1, mn1;
        q4_K_scales_mins(b0, &sc0, &mn0);
        q4_K_scales_mins(b1, &sc1, &mn1);
        _Alignas(32) float dv[8], mv[8];
        for (int r = 0; r < 4; r++) { /* (d, dmin) of each row, exact conversions */
            moe_f16 h[4];
            memcpy(h, b0 + 4 * r, 4);
            memcpy(h + 2, b1 + 4 * r, 4);
            dv[r] = moe_f16_table[h[0]], mv[r] = moe_f16_table[h[1]];
            dv[4 + r] = moe_f16_table[h[2]], mv[4 + r] = moe_f16_table[h[3]];
        }
        const __m256 d = _mm256_load_ps(dv), dmin = _mm256_load_ps(mv);
        __m256i tsum[TILE_TOKENS], msum[TILE_TOKENS];
        FOR_T(t) tsum[t] = msum[t] = _mm256_setzero_si256();
        for (int j = 0; j < 4; j++) { /* run j: sub-blocks 2j (low nibbles) and 2j+1 */
            __m256i lo[8], hi[8];
            const uint8_t *q0 = b0 + qo + 128 * j, *q1 = b1 + qo + 128 * j;
            _Pragma("GCC unroll 8") for (int p = 0; p < 8; p++) {
                const __m256i v = _mm256_loadu2_m128i((const __m128i *)(q1 + 16 * p), (const __m128i *)(q0 + 16 * p));
                lo[p] = _mm256_and_si256(v, m4);
                hi[p] = _mm256_and_si256(_mm256_srli_epi16(v, 4), m4);
                if (q5) {
                    const __m256i h = _mm256_loadu2_m128i((const __m128i *)(b1 + 64 + 16 * p), (const __m128i *)(b0 + 64 + 16 * p));
                    lo[p] = _mm256_or_si256(lo[p], bit4_from(h, 2 * j));
                    hi[p] = _mm256_or_si256(hi[p], bit4_from(h, 2 * j + 1));
                }
            }
            const __m256i sc_lo = rows8_sub(sc0, sc1, 2 * j, false), sc_hi = rows8_sub(sc0, sc1, 2 * j + 1, false);
            const __m256i mn_lo = rows8_sub(mn0, mn1, 2 * j, false), mn_hi = rows8_sub(mn0, mn1, 2 * j + 1, false);
            FOR_T(t) {
                const int8_t *qs = ((const moe_block_q8_K *)(yq + (size_t)t * by) + i)->qs + 64 * j;
                const q4_K_tact *a = &ta[t * nb + i];
                __m256i ylo[8], yhi[8];
                _Pragma("GCC unroll 8") for (int p = 0; p < 8; p++) {
                    ylo[p] = bcast_dword(qs + 4 * p);
                    yhi[p] = bcast_dword(qs + 32 + 4 * p);
                }
                const __m256i zero = _mm256_setzero_si256();
                const __m256i slo = q5 ? dot_nibbles(dot_nibbles(zero, lo, ylo, 4), lo + 4, ylo + 4, 4) : dot_nibbles(zero, lo, ylo, 8);
                const __m256i shi = q5 ? dot_nibbles(dot_nibbles(zero, hi, yhi, 4), hi + 4, yhi + 4, 4) : dot_nibbles(zero, hi, yhi, 8);
                tsum[t] = _mm256_add_epi32(tsum[t], _mm256_add_epi32(_mm256_mullo_epi32(slo, sc_lo), _mm256_mullo_epi32(shi, sc_hi)));
                msum[t] = _mm256_add_epi32(msum[t], _mm256_add_epi32(_mm256_mullo_epi32(mn_lo, _mm256_set1_epi32(a->bs[2 * j])),
                                                                     _mm256_mullo_epi32(mn_hi, _mm256_set1_epi32(a->bs[2 * j + 1]))));
            }
        }
        FOR_T(t) {
            const float dy = ta[t * nb + i].dy;
            acc_t[t] = _mm256_fmadd_ps(_mm256_mul_ps(d, _mm256_set1_ps(dy)), _mm256_cvtepi32_ps(tsum[t]), acc_t[t]);
            acc_m[t] = _mm256_fmadd_ps(_mm256_mul_ps(dmin, _mm256_set1_ps(-dy)), _mm256_cvtepi32_ps(msum[t]), acc_m[t]);
        }
    }
    FOR_T(t) _mm256_storeu_ps(out + t * ldy, _mm256_add_ps(acc_t[t], acc_m[t])); /* T + M, as rows4_store */
}
INLINE void tile8_q4_K(const uint8_t *wx, size_t gb, const uint8_t *yq, size_t by, const q4_K_tact *ta, int64_t nb,
                       float *out, int64_t ldy, int nt) {
    tile8_q45_K(wx, gb, yq, by, ta, nb, out, ldy, nt, false);
}
INLINE void tile8_q5_K(const uint8_t *wx, size_t gb, const uint8_t *yq, size_t by, const q4_K_tact *ta, int64_t nb,
                       float *out, int64_t ldy, int nt) {
    tile8_q45_K(wx, gb, yq, by, ta, nb, out, ldy, nt, true);
}

/* IQ4_XS interleaved (its layout: quant_k.c), eight rows × up to eight tokens, rows in
 * lanes as tile8_q4_K. Piece p (16 bytes) of sub-block s of both groups is one vector
 * [rows 0-3 | rows 4-7] of the sub-block's bytes 4p..4p+3: low nibbles values 4p..4p+3,
 * high nibbles 16+4p..; looked up in the grid (dot_grid's form), eight broadcast y dwords
 * give every row's exact S = Σ w·y in its lane (with VNNI + 128·Σy, taken off through the
 * token's sub-block sums), then T = Σ (ls − 32)·S and acc += (d·dy)·T: the vec_dot's
 * integers and floats in its order. The tokens' dy and sub-block sums: q4_K_tact. */
INLINE void tile8_iq4_xs(const uint8_t *wx, size_t gb, const uint8_t *yq, size_t by, const q4_K_tact *ta, int64_t nb,
                         float *out, int64_t ldy, int nt) {
    __m256 acc[TILE_TOKENS];
    FOR_T(t) acc[t] = _mm256_setzero_ps();
    const __m256i m4 = _mm256_set1_epi8(0x0F), grid = grid_table(moe_iq4_nl_values);
    for (int64_t i = 0; i < nb; i++) {
        const uint8_t *b0 = wx + (size_t)i * MOE_IQ4_XS_IL_BLOCK, *b1 = b0 + gb;
        const __m256i sc0 = iq4_xs_scales(b0), sc1 = iq4_xs_scales(b1);
        const __m256 d = _mm256_cvtph_ps(_mm_unpacklo_epi64(_mm_loadl_epi64((const __m128i *)b0), _mm_loadl_epi64((const __m128i *)b1)));
        __m256i tsum[TILE_TOKENS];
        FOR_T(t) tsum[t] = _mm256_setzero_si256();
        for (int sb = 0; sb < 8; sb++) {
            const size_t o = 32 + 128 * (sb / 2) + 64 * (sb % 2);
            __m256i w[8]; /* pieces 0-3: low nibbles, 4-7: high */
            _Pragma("GCC unroll 4") for (int p = 0; p < 4; p++) {
                const __m256i v = _mm256_loadu2_m128i((const __m128i *)(b1 + o + 16 * p), (const __m128i *)(b0 + o + 16 * p));
                w[p] = _mm256_shuffle_epi8(grid, _mm256_and_si256(v, m4));
                w[4 + p] = _mm256_shuffle_epi8(grid, _mm256_and_si256(_mm256_srli_epi16(v, 4), m4));
            }
            const __m256i sc = rows8_sub(sc0, sc1, sb, true);
            FOR_T(t) {
                const int8_t *qs = ((const moe_block_q8_K *)(yq + (size_t)t * by) + i)->qs + 32 * sb;
                __m256i y[8];
                _Pragma("GCC unroll 8") for (int p = 0; p < 8; p++) y[p] = bcast_dword(qs + 16 * (p / 4) + 4 * (p % 4));
#if MOE_VNNI
                const __m256i start = _mm256_set1_epi32(-128 * ta[t * nb + i].bs[sb]);
#else
                const __m256i start = _mm256_setzero_si256();
#endif
                tsum[t] = _mm256_add_epi32(tsum[t], _mm256_mullo_epi32(dot_grid(start, w, y, 8), sc));
            }
        }
        FOR_T(t) acc[t] = _mm256_fmadd_ps(_mm256_mul_ps(d, _mm256_set1_ps(ta[t * nb + i].dy)), _mm256_cvtepi32_ps(tsum[t]), acc[t]);
    }
    FOR_T(t) _mm256_storeu_ps(out + t * ldy, acc[t]);
}

/* The types whose eight-row tile has no four-row one beside it (IQ4_XS, Q5_0, Q4_1, Q5_1),
 * for what the tile does not take (row-major matrices, fewer than eight rows, rows wider
 * than TACT_MAX_COLS): their vec_dot kernels, token by token. Interleaved rows here are
 * always in the untiled layout (gemm.c copies a tiled matrix's super-groups back to it),
 * which the interleaved kernel reads as such one group at a time: a super-group of one. */
static void gemm_rows_vec_dot(const moe_mat *W, int64_t r0, int64_t r1, const uint8_t *xq, size_t xb, int64_t t0,
                              int64_t t1, float *y, int64_t ldy) {
    const size_t bx = W->row_bytes;
    const moe_vec_dot_x4i_fn x4i = moe_type_vec_dot_x4i(W->type);
    for (int64_t t = t0; t < t1; t++) {
        const uint8_t *xt = xq + (size_t)t * xb;
        if (!W->interleaved) {
            moe_mat_dot_rows(W, r0, r1, xt, y + t * ldy);
            continue;
        }
        for (int64_t r = r0; r < r1; r += 4) x4i(W->cols, y + t * ldy + r, (const uint8_t *)W->data + (size_t)r * bx, bx, xt, 1);
    }
}

/* ---------------------------------------------------------------- dispatch */

/* Rows in fours and tokens TILE_TOKENS at a time; the edges get the kernel specialised
 * for their size (the kernels are always-inline functions of nr, nt and the layout il).
 * Rows of an interleaved matrix come in whole groups of four (moe_mat_can_interleave). */
#define TILE_NT(T, wx, bx, yt, xb, nb, o, ldy, nr, nt, il)                                                              \
    switch (nt) {                                                                                                     \
    case 8: tile_##T(wx, bx, yt, xb, nb, o, ldy, nr, 8, il); break;                                                   \
    case 7: tile_##T(wx, bx, yt, xb, nb, o, ldy, nr, 7, il); break;                                                   \
    case 6: tile_##T(wx, bx, yt, xb, nb, o, ldy, nr, 6, il); break;                                                   \
    case 5: tile_##T(wx, bx, yt, xb, nb, o, ldy, nr, 5, il); break;                                                   \
    case 4: tile_##T(wx, bx, yt, xb, nb, o, ldy, nr, 4, il); break;                                                   \
    case 3: tile_##T(wx, bx, yt, xb, nb, o, ldy, nr, 3, il); break;                                                   \
    case 2: tile_##T(wx, bx, yt, xb, nb, o, ldy, nr, 2, il); break;                                                   \
    default: tile_##T(wx, bx, yt, xb, nb, o, ldy, nr, 1, il); break;                                                  \
    }
#define TILE_DRIVER(NAME, T, QK_)                                                                                      \
    static void NAME(const moe_mat *W, int64_t r0, int64_t r1, const uint8_t *xq, size_t xb, int64_t t0, int64_t t1, \
                         float *y, int64_t ldy) {                                                                       \
        const int64_t nb = W->cols / (QK_);                                                                           \
        const size_t bx = W->row_bytes;                                                                               \
        for (int64_t r = r0; r < r1; r += 4) {                                                                        \
            const int nr = (int)MOE_MIN(4, r1 - r);                                                                   \
            const uint8_t *wx = (const uint8_t *)W->data + (size_t)r * bx;                                            \
            for (int64_t t = t0; t < t1; t += TILE_TOKENS) {                                                          \
                const int nt = (int)MOE_MIN(TILE_TOKENS, t1 - t);                                                     \
                const uint8_t *yt = xq + (size_t)t * xb;                                                              \
                float *o = y + t * ldy + r;                                                                           \
                if (nr == 4 && W->interleaved) {                                                                      \
                    TILE_NT(T, wx, bx, yt, xb, nb, o, ldy, 4, nt, true)                                               \
                } else if (nr == 4) {                                                                                 \
                    TILE_NT(T, wx, bx, yt, xb, nb, o, ldy, 4, nt, false)                                              \
                } else {                                                                                              \
                    for (int rr = 0; rr < nr; rr++) TILE_NT(T, wx + rr * bx, bx, yt, xb, nb, o + rr, ldy, 1, nt, false) \
                }                                                                                                     \
            }                                                                                                         \
        }                                                                                                             \
    }
TILE_DRIVER(gemm_q8_0_4rows, q8_0, 32)
TILE_DRIVER(gemm_q4_0_4rows, q4_0, 32)
TILE_DRIVER(gemm_iq4_nl, iq4_nl, 32)
TILE_DRIVER(gemm_q4_K_4rows, q4_K, MOE_QK_K)
TILE_DRIVER(gemm_q5_K_4rows, q5_K, MOE_QK_K)

/* Interleaved weights with an eight-row tile (Q4_0, Q4_K, Q8_0): tokens
 * TILE_TOKENS at a time, prepared once (TACT, by PREPARE) for all the rows of the call,
 * eight rows at a time by the eight-row tile, a last group of four by the four-row one
 * (FOUR: that driver). Rows wider than TACT_MAX_COLS go to FOUR as well. */
#define TILE8_DRIVER(T, QK_, TACT, PREPARE, FOUR)                                                                     \
    static void gemm_##T(const moe_mat *W, int64_t r0, int64_t r1, const uint8_t *xq, size_t xb, int64_t t0, int64_t t1, \
                         float *y, int64_t ldy) {                                                                       \
        const int64_t nb = W->cols / (QK_);                                                                           \
        if (!W->interleaved || W->cols > TACT_MAX_COLS || r1 - r0 < 8) {                                              \
            FOUR(W, r0, r1, xq, xb, t0, t1, y, ldy);                                                                  \
            return;                                                                                                   \
        }                                                                                                             \
        TACT ta[TILE_TOKENS * (TACT_MAX_COLS / (QK_))];                                                               \
        const size_t bx = W->row_bytes;                                                                               \
        for (int64_t t = t0; t < t1; t += TILE_TOKENS) {                                                              \
            const int nt = (int)MOE_MIN(TILE_TOKENS, t1 - t);                                                         \
            const uint8_t *yt = xq + (size_t)t * xb;                                                                  \
            PREPARE(ta, yt, xb, nb, nt);                                                                              \
            int64_t r = r0;                                                                                           \
            for (; r + 8 <= r1; r += 8) {                                                                             \
                const uint8_t *wx = (const uint8_t *)W->data + (size_t)r * bx;                                        \
                float *o = y + t * ldy + r;                                                                           \
                switch (nt) {                                                                                         \
                case 8: tile8_##T(wx, 4 * bx, yt, xb, ta, nb, o, ldy, 8); break;                                      \
                case 7: tile8_##T(wx, 4 * bx, yt, xb, ta, nb, o, ldy, 7); break;                                      \
                case 6: tile8_##T(wx, 4 * bx, yt, xb, ta, nb, o, ldy, 6); break;                                      \
                case 5: tile8_##T(wx, 4 * bx, yt, xb, ta, nb, o, ldy, 5); break;                                      \
                case 4: tile8_##T(wx, 4 * bx, yt, xb, ta, nb, o, ldy, 4); break;                                      \
                case 3: tile8_##T(wx, 4 * bx, yt, xb, ta, nb, o, ldy, 3); break;                                      \
                case 2: tile8_##T(wx, 4 * bx, yt, xb, ta, nb, o, ldy, 2); break;                                      \
                default: tile8_##T(wx, 4 * bx, yt, xb, ta, nb, o, ldy, 1); break;                                     \
                }                                                                                                     \
            }                                                                                                         \
            if (r < r1) FOUR(W, r, r1, xq, xb, t, t + nt, y, ldy); /* rows of il come in fours */                     \
        }                                                                                                             \
    }
#define Q4_0_PREPARE(a, y, by, nb, nt) legacy_tact_prepare(a, y, by, nb, nt, false, -8)
#define Q8_0_PREPARE(a, y, by, nb, nt) legacy_tact_prepare(a, y, by, nb, nt, false, Q8_0_TILE_OFF)
#define Q5_0_PREPARE(a, y, by, nb, nt) legacy_tact_prepare(a, y, by, nb, nt, false, -16)
#define Q8_1_PREPARE(a, y, by, nb, nt) legacy_tact_prepare(a, y, by, nb, nt, true, 0)
TILE8_DRIVER(q4_0, 32, legacy_tact, Q4_0_PREPARE, gemm_q4_0_4rows)
TILE8_DRIVER(q4_K, MOE_QK_K, q4_K_tact, q4_K_tact_prepare, gemm_q4_K_4rows)
TILE8_DRIVER(q5_K, MOE_QK_K, q4_K_tact, q4_K_tact_prepare, gemm_q5_K_4rows)
TILE8_DRIVER(q8_0, 32, legacy_tact, Q8_0_PREPARE, gemm_q8_0_4rows)
TILE8_DRIVER(iq4_xs, MOE_QK_K, q4_K_tact, q4_K_tact_prepare, gemm_rows_vec_dot)
TILE8_DRIVER(q5_0, 32, legacy_tact, Q5_0_PREPARE, gemm_rows_vec_dot)
TILE8_DRIVER(q4_1, 32, legacy_tact, Q8_1_PREPARE, gemm_rows_vec_dot)
TILE8_DRIVER(q5_1, 32, legacy_tact, Q8_1_PREPARE, gemm_rows_vec_dot)

moe_gemm_tile_fn moe_gemm_tile_for(int wtype) {
    switch (wtype) {
    case MOE_TYPE_Q8_0: return gemm_q8_0;
    case MOE_TYPE_Q4_0: return gemm_q4_0;
    case MOE_TYPE_IQ4_NL: return gemm_iq4_nl;
    case MOE_TYPE_Q4_K: return gemm_q4_K;
    case MOE_TYPE_IQ4_XS: return gemm_iq4_xs;
    case MOE_TYPE_Q5_0: return gemm_q5_0;
    case MOE_TYPE_Q4_1: return gemm_q4_1;
    case MOE_TYPE_Q5_1: return gemm_q5_1;
    case MOE_TYPE_Q5_K: return gemm_q5_K;
    case MOE_TYPE_Q2_K: /* these three in quant_k_avx2.c, beside their vec_dots */
    case MOE_TYPE_Q3_K:
    case MOE_TYPE_Q6_K: return moe_k16_gemm_tile;
    default: return NULL;
    }
}

int64_t moe_gemm_tile_rows(const moe_mat *W) {
    const bool tile8 = W->type == MOE_TYPE_Q4_0 || W->type == MOE_TYPE_Q8_0 || W->type == MOE_TYPE_Q4_K ||
                       W->type == MOE_TYPE_Q5_K || W->type == MOE_TYPE_IQ4_XS || W->type == MOE_TYPE_Q5_0 ||
                       W->type == MOE_TYPE_Q4_1 || W->type == MOE_TYPE_Q5_1;
    /* mix-1b pp128 (docs/BENCHMARKS.md): Q4_0 +8-11 % at 32 rows, Q4_K +0-6 %; the
     * four-row tiles gain nothing (Q4_K's was 3-5 % slower). A tiled matrix (IQ4_NL's, on
     * Q4_0's layout) is copied back a super-group of 32 rows at a time (gemm.c). */
    return (tile8 && W->interleaved) || moe_mat_tiled(W) ? 32 : 16;
}

#else

moe_gemm_tile_fn moe_gemm_tile_for(int wtype) {
    (void)wtype;
    return NULL;
}

int64_t moe_gemm_tile_rows(const moe_mat *W) {
    (void)W;
    return 16;
}

#endif
