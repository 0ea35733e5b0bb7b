/* simd.h — AVX2 building blocks shared by the matrix-vector kernels (quant_legacy.c,
 * quant_k_avx2.c, quant_float.c), the prefill tile kernels (gemm_tiles.c) and attention
 * (model/forward.c). One copy on purpose: a batch must give bit-identical results to
 * token-by-token decoding, so the vec_dot and tile kernels must do exactly the same float
 * operations; helpers kept in two places would drift apart. Include it only under
 * __AVX2__ (and __FMA__ where the caller fuses). */
#ifndef MOE_CORE_SIMD_H
#define MOE_CORE_SIMD_H

#include "core/cpu.h" /* MOE_PF_* */
#include "core/f16.h"

#include <immintrin.h>
#include <string.h>

#define SIMD_INLINE static inline __attribute__((always_inline))

/* The horizontal sum of 8 floats, in the one order every kernel uses: high half + low
 * half, then the two pairs, then the last two. */
SIMD_INLINE float hsum8(__m256 v) {
    __m128 r = _mm_add_ps(_mm256_extractf128_ps(v, 1), _mm256_castps256_ps128(v));
    r = _mm_add_ps(r, _mm_movehl_ps(r, r));
    r = _mm_add_ss(r, _mm_movehdup_ps(r));
    return _mm_cvtss_f32(r);
}

/* VNNI: vpdpbusd / vpdpwssd (u8·s8 and s16·s16 dot products summed into int32 lanes, no
 * int16 saturation) on 256-bit vectors, in either encoding: VEX (AVX-VNNI: Alder Lake,
 * Zen 5) or EVEX (AVX512-VNNI with AVX512VL: Ice Lake, Sapphire Rapids, Zen 4, which have
 * no AVX-VNNI). The same instruction and the same integers; the kernels write one VNNI
 * path under MOE_VNNI and one without. (On Zen 4, taking the EVEX form: one core's
 * 4,096-wide product in cache, Q4_0 30 → 40 GB/s, Q4_K 34 → 41, Q8_0 48 → 62;
 * build/bench/levels, docs/BENCHMARKS.md.) */
#if defined(__AVXVNNI__)
#define MOE_VNNI 1
#define MOE_VNNI_NAME "avx-vnni" /* for moe_system_info */
#define mm256_dpbusd(acc, u, s) _mm256_dpbusd_avx_epi32(acc, u, s)
#define mm256_dpwssd(acc, a, b) _mm256_dpwssd_avx_epi32(acc, a, b)
#elif defined(__AVX512VNNI__) && defined(__AVX512VL__)
#define MOE_VNNI 1
#define MOE_VNNI_NAME "avx512vl"
#define mm256_dpbusd(acc, u, s) _mm256_dpbusd_epi32(acc, u, s)
#define mm256_dpwssd(acc, a, b) _mm256_dpwssd_epi32(acc, a, b)
#else
#define MOE_VNNI 0
#endif

/* Prefetch the line at p into L1 (MOE_PF_L1), L2 (MOE_PF_L2) or not at all (MOE_PF_NONE):
 * pf is a constant in every kernel (MOE_PF_DISPATCH, cpu.h), so this is one instruction or
 * none. */
SIMD_INLINE void prefetch_line(const void *p, int pf) {
    if (pf == MOE_PF_L1) _mm_prefetch((const char *)p, _MM_HINT_T0);
    else if (pf == MOE_PF_L2) _mm_prefetch((const char *)p, _MM_HINT_T1);
}

SIMD_INLINE __m256i load256(const void *p) { return _mm256_loadu_si256((const __m256i *)p); }

/* F16 → F32 for every half, filled once when the library loads (simd.c): a block's F16
 * scale becomes one broadcast load instead of a conversion on the critical path (the
 * value is the same: the conversion is exact). */
extern float moe_f16_table[1 << 16];
SIMD_INLINE __m256 bcast_f16(moe_f16 h) { return _mm256_broadcast_ss(&moe_f16_table[h]); }

/* 32 nibbles → 32 bytes 0..15 in value order: low nibbles (values 0..15) in the low lane,
 * high nibbles (16..31) in the high lane, by shifting the high lane's dwords right by 4. */
SIMD_INLINE __m256i nibbles32(const uint8_t *qs) {
    const __m256i t = _mm256_broadcastsi128_si256(_mm_loadu_si128((const __m128i *)qs));
    return _mm256_and_si256(_mm256_srlv_epi32(t, _mm256_setr_epi32(0, 0, 0, 0, 4, 4, 4, 4)), _mm256_set1_epi8(0x0F));
}

/* acc + Σ of each 4 adjacent u8·s8 products, in 8 int32 lanes */
SIMD_INLINE __m256i dot_u8s8(__m256i acc, __m256i u, __m256i s) {
#if MOE_VNNI
    return mm256_dpbusd(acc, u, s);
#else
    return _mm256_add_epi32(acc, _mm256_madd_epi16(_mm256_maddubs_epi16(u, s), _mm256_set1_epi16(1)));
#endif
}

/* IQ4_NL's grid (`values`: moe_iq4_nl_values, IQ4_XS's too) in both halves, for one
 * pshufb lookup of 32 nibbles; stored + 128 where the CPU has VNNI, so that dot_grid's
 * vpdpbusd (unsigned × signed) takes the looked-up weights as they are: the caller then
 * takes 128·Σy off each sum. */
SIMD_INLINE __m256i grid_table(const int8_t *values) {
    const __m256i g = _mm256_broadcastsi128_si256(_mm_loadu_si128((const __m128i *)values));
#if MOE_VNNI
    return _mm256_xor_si256(g, _mm256_set1_epi8((char)0x80));
#else
    return g;
#endif
}
/* acc + Σ w[k]·y[k] over n pairs, in 4-value int32 lanes, for weights looked up in
 * grid_table: with VNNI w + 128 by vpdpbusd; without, maddubs would saturate on such
 * values, so the signed weights by the sign trick, one madd each. */
SIMD_INLINE __m256i dot_grid(__m256i acc, const __m256i *w, const __m256i *y, int n) {
#if MOE_VNNI
    _Pragma("GCC unroll 8") for (int k = 0; k < n; k++) acc = mm256_dpbusd(acc, w[k], y[k]);
#else
    _Pragma("GCC unroll 8") for (int k = 0; k < n; k++)
        acc = dot_u8s8(acc, _mm256_sign_epi8(w[k], w[k]), _mm256_sign_epi8(y[k], w[k]));
#endif
    return acc;
}

/* bit j of m → byte j = 0x10 if set, else 0 (the fifth bits of Q5_0 and Q5_1 values).
 * With AVX512BW+VL the 32 bits are a byte mask as they are: one masked move instead of
 * five operations (Zen 4, one core in cache: Q5_0 22 → 28.5 GB/s, Q5_1 21 → 24). */
SIMD_INLINE __m256i fifth_bits(uint32_t m) {
#if defined(__AVX512BW__) && defined(__AVX512VL__)
    return _mm256_maskz_mov_epi8((__mmask32)m, _mm256_set1_epi8(0x10));
#else
    const __m256i shuf = _mm256_set_epi64x(0x0303030303030303, 0x0202020202020202, 0x0101010101010101, 0x0000000000000000);
    __m256i b = _mm256_shuffle_epi8(_mm256_set1_epi32((int)m), shuf);
    b = _mm256_or_si256(b, _mm256_set1_epi64x(0x7fbfdfeff7fbfdfe));
    b = _mm256_cmpeq_epi8(b, _mm256_set1_epi64x(-1));
    return _mm256_and_si256(b, _mm256_set1_epi8(0x10));
#endif
}

/* Bit `bit` of every byte of h moved to bit 4, the rest 0 (Q5_K's fifth bits, interleaved
 * layout). The 16-bit shifts move bits across bytes, but bit 4 of each byte comes from
 * the same byte (a shift by at most 4 left, 3 right), and the mask keeps only it. */
SIMD_INLINE __m256i bit4_from(__m256i h, int bit) {
    const __m256i v = bit <= 4 ? _mm256_slli_epi16(h, 4 - bit) : _mm256_srli_epi16(h, bit - 4);
    return _mm256_and_si256(v, _mm256_set1_epi8(0x10));
}

/* IQ4_XS's interleaved layout (quant_k.c): the 32 scales of a block of four rows, minus
 * 32, as int8, byte 4·sub-block + row: low 4 bits as nibbles of bytes 8-23 (nibbles32),
 * high 2 bits at bits 2·(e >> 3) of byte 24 + (e & 7), which a shift of each 64-bit lane
 * by 0, 2, 4, 6 brings to bits 0-1 of byte e. */
SIMD_INLINE __m256i iq4_xs_scales(const uint8_t *b) {
    uint64_t h;
    memcpy(&h, b + 24, 8);
    const __m256i hb = _mm256_srlv_epi64(_mm256_set1_epi64x((long long)h), _mm256_setr_epi64x(0, 2, 4, 6));
    const __m256i hi = _mm256_slli_epi16(_mm256_and_si256(hb, _mm256_set1_epi8(3)), 4);
    return _mm256_sub_epi8(_mm256_or_si256(nibbles32(b + 8), hi), _mm256_set1_epi8(32));
}

/* The order of sums every Q4_0 and Q8_0 kernel follows (quant_legacy.c, "Q4_0·Q8_0"):
 * four rows' dot products of one block, in 4-value partial sums (lanes 0-3: values 0-15,
 * lanes 4-7: values 16-31), summed into [A0 A1 A2 A3 | B0 B1 B2 B3]. Exact (integers).
 * Unpacks and adds rather than a vphaddd tree, which made the kernel 2× slower on Zen 5. */
SIMD_INLINE __m256i rows4_halves(__m256i p0, __m256i p1, __m256i p2, __m256i p3) {
    const __m256i u01 = _mm256_add_epi32(_mm256_unpacklo_epi32(p0, p1), _mm256_unpackhi_epi32(p0, p1));
    const __m256i u23 = _mm256_add_epi32(_mm256_unpacklo_epi32(p2, p3), _mm256_unpackhi_epi32(p2, p3));
    return _mm256_add_epi32(_mm256_unpacklo_epi64(u01, u23), _mm256_unpackhi_epi64(u01, u23));
}
/* [d0 d1 d2 d3 | d0 d1 d2 d3] from four F16 scales (exact conversions) */
SIMD_INLINE __m256 rows4_scales(moe_f16 d0, moe_f16 d1, moe_f16 d2, moe_f16 d3) {
#if defined(__F16C__)
    /* the four halves gathered in a scalar register: the vector ports are the busy ones */
    const uint64_t q = (uint64_t)d0 | (uint64_t)d1 << 16 | (uint64_t)d2 << 32 | (uint64_t)d3 << 48;
    return _mm256_cvtph_ps(_mm_set1_epi64x((long long)q));
#else
    const float *t = moe_f16_table;
    return _mm256_setr_ps(t[d0], t[d1], t[d2], t[d3], t[d0], t[d1], t[d2], t[d3]);
#endif
}
#if defined(__F16C__)
/* The same from the four F16 scales stored side by side at p (the interleaved layouts) */
SIMD_INLINE __m256 rows4_scales_at(const void *p) {
    uint64_t q;
    memcpy(&q, p, 8);
    return _mm256_cvtph_ps(_mm_set1_epi64x((long long)q));
}
#endif
/* The results of one or four rows from their [acc_A | acc_B]: acc_A + acc_B. */
SIMD_INLINE void rows4_store(float *s, __m256 acc, int nr) {
    const __m128 r = _mm_add_ps(_mm256_castps256_ps128(acc), _mm256_extractf128_ps(acc, 1));
    if (nr == 4) _mm_storeu_ps(s, r);
    else _mm_store_ss(s, r);
}

#if defined(__F16C__)
/* Q4_K's and Q5_K's scales for the same four-row sums (quant_k_avx2.c, dot_q45_K):
 * [d0 d1 d2 d3 | dmin0 dmin1 dmin2 dmin3] · [dy | −dy] from the (d, dmin) pairs of four
 * blocks, each read as one u32 */
SIMD_INLINE __m256 k_scales4_v(__m128i h, float dy) { /* h: the four pairs side by side */
    const __m256 f = _mm256_permutevar8x32_ps(_mm256_cvtph_ps(h), _mm256_setr_epi32(0, 2, 4, 6, 1, 3, 5, 7));
    return _mm256_mul_ps(f, _mm256_setr_ps(dy, dy, dy, dy, -dy, -dy, -dy, -dy));
}
SIMD_INLINE __m256 k_scales4(uint32_t a, uint32_t b, uint32_t c, uint32_t e, float dy) {
    return k_scales4_v(_mm_set_epi64x((long long)((uint64_t)e << 32 | c), (long long)((uint64_t)b << 32 | a)), dy);
}
#endif

/* The loop of the interleaved kernels that prepare the activation row once per call
 * (quant_legacy.c: Q4_0, Q8_0; quant_k_avx2.c: Q4_K), as a statement. PREPARE(a, y, nb)
 * and GROUP(acc, b, a, nb) are the type's; BLK is the bytes of a block of four rows; T
 * the blocks per column tile (moe_il_tile_blocks, cpu.h) or 0; s, x, bx, y, ngroups as in
 * moe_vec_dot_x4i_fn, nb the blocks of a row. Every group adds its blocks in order, in
 * every branch, so the bits depend neither on n nor on the layout.
 * - Tiled rows (T > 0): the matrix is read in address order, super-group by super-group,
 *   tile by tile, each group's sums carried from one tile to the next; the activations
 *   are prepared once for the row (one tile at a time past CHUNK blocks).
 * - Untiled rows: columns are taken CHUNK blocks at a time (the prepared activations, ACT
 *   a[CHUNK], live on the stack); past one chunk, MOE_X4I_GROUPS groups of four rows at a
 *   time carry their sums from one chunk to the next. */
#define MOE_X4I_GROUPS 32
#define MOE_X4I_RUN(ACT, CHUNK, BLK, T, PREPARE, GROUP, s, x, bx, y, nb, ngroups)                                    \
    do {                                                                                                             \
        const size_t gb_ = 4 * (bx);                                                                                 \
        ACT a_[CHUNK];                                                                                               \
        __m256 acc_[MOE_X4I_GROUPS];                                                                                 \
        if ((T) > 0) {                                                                                               \
            const bool once_ = (nb) <= (CHUNK);                                                                      \
            if (once_) PREPARE(a_, (y), (nb));                                                                       \
            const uint8_t *p_ = (x);                                                                                 \
            for (int64_t g0_ = 0; g0_ < (ngroups); g0_ += MOE_IL_SG_GROUPS) {                                        \
                const int64_t gs_ = (ngroups) - g0_ < MOE_IL_SG_GROUPS ? (ngroups) - g0_ : MOE_IL_SG_GROUPS;         \
                for (int64_t g_ = 0; g_ < gs_; g_++) acc_[g_] = _mm256_setzero_ps();                                 \
                for (int64_t t_ = 0; t_ < (nb); t_ += (T)) {                                                         \
                    const int64_t tn_ = (nb) - t_ < (T) ? (nb) - t_ : (T);                                           \
                    if (!once_) PREPARE(a_, (y) + t_, tn_);                                                          \
                    const ACT *at_ = once_ ? a_ + t_ : a_;                                                           \
                    for (int64_t g_ = 0; g_ < gs_; g_++, p_ += (size_t)tn_ * (BLK))                                  \
                        acc_[g_] = GROUP(acc_[g_], p_, at_, tn_);                                                    \
                }                                                                                                    \
                for (int64_t g_ = 0; g_ < gs_; g_++) rows4_store((s) + 4 * (g0_ + g_), acc_[g_], 4);                 \
            }                                                                                                        \
            break;                                                                                                   \
        }                                                                                                            \
        if ((nb) <= (CHUNK)) {                                                                                       \
            PREPARE(a_, (y), (nb));                                                                                  \
            for (int64_t g_ = 0; g_ < (ngroups); g_++)                                                               \
                rows4_store((s) + 4 * g_, GROUP(_mm256_setzero_ps(), (x) + g_ * gb_, a_, (nb)), 4);                  \
            break;                                                                                                   \
        }                                                                                                            \
        for (int64_t g0_ = 0; g0_ < (ngroups); g0_ += MOE_X4I_GROUPS) {                                              \
            const int64_t ng_ = (ngroups) - g0_ < MOE_X4I_GROUPS ? (ngroups) - g0_ : MOE_X4I_GROUPS;                 \
            for (int64_t g_ = 0; g_ < ng_; g_++) acc_[g_] = _mm256_setzero_ps();                                     \
            for (int64_t c_ = 0; c_ < (nb); c_ += (CHUNK)) {                                                         \
                const int64_t cn_ = (nb) - c_ < (CHUNK) ? (nb) - c_ : (CHUNK);                                       \
                PREPARE(a_, (y) + c_, cn_);                                                                          \
                for (int64_t g_ = 0; g_ < ng_; g_++)                                                                 \
                    acc_[g_] = GROUP(acc_[g_], (x) + (g0_ + g_) * gb_ + (size_t)c_ * (BLK), a_, cn_);                \
            }                                                                                                        \
            for (int64_t g_ = 0; g_ < ng_; g_++) rows4_store((s) + 4 * (g0_ + g_), acc_[g_], 4);                     \
        }                                                                                                            \
    } while (0)

/* Q4_K's interleaved layout (quant_k.c): the scales (sc) and mins (mn) of a block of four
 * rows, byte 4·sub-block + row. */
SIMD_INLINE void q4_K_scales_mins(const uint8_t *b, __m256i *sc, __m256i *mn) {
    const __m256i m4 = _mm256_set1_epi8(0xF), m3 = _mm256_set1_epi8(3);
    const __m256i l = load256(b + 16), h = nibbles32(b + 48);
    *sc = _mm256_or_si256(_mm256_and_si256(l, m4), _mm256_slli_epi16(_mm256_and_si256(h, m3), 4));
    *mn = _mm256_or_si256(_mm256_and_si256(_mm256_srli_epi16(l, 4), m4),
                          _mm256_slli_epi16(_mm256_and_si256(_mm256_srli_epi16(h, 2), m3), 4));
}

/* ((v >> from) & 1) << to in every byte, for constants from, to ≤ 7: one 16-bit shift and
 * a mask (what crosses the byte boundary lands outside the mask). */
SIMD_INLINE __m256i bit_to(__m256i v, int from, int to) {
    const __m256i t = from > to ? _mm256_srli_epi16(v, from - to) : from < to ? _mm256_slli_epi16(v, to - from) : v;
    return _mm256_and_si256(t, _mm256_set1_epi8((char)(1 << to)));
}

/* [lo's low lane + its high lane | hi's low lane + its high lane]: in the interleaved
 * kernels each row has a lane in both 128-bit halves of lo (and of hi), whose sums these are. */
SIMD_INLINE __m256i fold_halves(__m256i lo, __m256i hi) {
    return _mm256_add_epi32(_mm256_permute2x128_si256(lo, hi, 0x20), _mm256_permute2x128_si256(lo, hi, 0x31));
}

#if defined(__FMA__)
/* e^x in 8 lanes by the method of ARM's optimized-routines expf, which ggml's ggml_v_expf
 * implements, so that SiLU rounds exactly as llama.cpp's does on AVX2/AVX-512 (its
 * ggml_v_silu): x = n·ln2 + b with n = round(x/ln2) (the 1.5·2^23 shift rounds), ln2 in
 * two parts; e^b ≈ 1 + b + c2·b² + c3·b³ + c4·b⁴ + c5·b⁵ (minimax coefficients: 1.45 ulp
 * plus the final rounding, ≤ 2 ulp against libm in test_core.c), then ·2^n through the
 * exponent bits. |n| > 126 (results near or past the float
 * range) takes the slow path: 2^n in two factors, and 0 or ∞ past |n| > 192. */
SIMD_INLINE __m256 v_expf(__m256 x) {
    const __m256 shift = _mm256_set1_ps(0x1.8p23f);
    const __m256 z = _mm256_fmadd_ps(x, _mm256_set1_ps(0x1.715476p+0f), shift); /* x/ln2 + shift */
    const __m256 n = _mm256_sub_ps(z, shift);
    const __m256 b = _mm256_fnmadd_ps(n, _mm256_set1_ps(0x1.7f7d1cp-20f), _mm256_fnmadd_ps(n, _mm256_set1_ps(0x1.62e4p-1f), x));
    const __m256i e = _mm256_slli_epi32(_mm256_castps_si256(z), 23); /* n in the exponent field */
    const __m256 k = _mm256_castsi256_ps(_mm256_add_epi32(e, _mm256_castps_si256(_mm256_set1_ps(1)))); /* 2^n */
    const __m256 abs_n = _mm256_andnot_ps(_mm256_set1_ps(-0.f), n);
    const __m256 big = _mm256_cmp_ps(abs_n, _mm256_set1_ps(126), _CMP_GT_OQ);
    const __m256 b2 = _mm256_mul_ps(b, b);
    const __m256 p_hi = _mm256_fmadd_ps(_mm256_set1_ps(0x1.0e4020p-7f), b, _mm256_set1_ps(0x1.573e2ep-5f));
    const __m256 p_lo = _mm256_fmadd_ps(_mm256_set1_ps(0x1.555e66p-3f), b, _mm256_set1_ps(0x1.fffdb6p-2f));
    const __m256 poly = _mm256_fmadd_ps(_mm256_fmadd_ps(p_hi, b2, p_lo), b2, _mm256_mul_ps(_mm256_set1_ps(0x1.ffffecp-1f), b));
    if (!_mm256_movemask_ps(big)) return _mm256_fmadd_ps(poly, k, k); /* 2^n·(1 + poly) */
    /* 2^n = s1·s2 with both factors in range; underflow to 0 / overflow to ∞ past 192 */
    const __m256i g = _mm256_and_si256(_mm256_castps_si256(_mm256_cmp_ps(n, _mm256_setzero_ps(), _CMP_LE_OQ)),
                                       _mm256_set1_epi32((int)0x82000000u));
    const __m256 s1 = _mm256_castsi256_ps(_mm256_add_epi32(g, _mm256_set1_epi32(0x7f000000)));
    const __m256 s2 = _mm256_castsi256_ps(_mm256_sub_epi32(e, g));
    const __m256 huge = _mm256_cmp_ps(abs_n, _mm256_set1_ps(192), _CMP_GT_OQ);
    const __m256 scaled = _mm256_blendv_ps(_mm256_fmadd_ps(k, poly, k), _mm256_mul_ps(_mm256_fmadd_ps(s2, poly, s2), s1), big);
    return _mm256_blendv_ps(scaled, _mm256_mul_ps(s1, s1), huge);
}

/* SiLU(x) = x / (1 + e^−x), as ggml_v_silu computes it */
SIMD_INLINE __m256 v_silu(__m256 x) {
    const __m256 e = v_expf(_mm256_sub_ps(_mm256_setzero_ps(), x));
    return _mm256_div_ps(x, _mm256_add_ps(_mm256_set1_ps(1), e));
}
#endif

/* acc + Σ u[k]·s[k] over n ≤ 8 pairs of vectors, in 4-value int32 lanes, for quants u of at most
 * 15 (or, with VNNI, 16·(0..15): high nibbles left in place) against int8 s: the
 * interleaved Q4_0 and Q4_K kernels. Without VNNI the int16 pairs of maddubs, at most
 * 2·15·128 each, are added before one madd: eight of them still fit in int16. */
SIMD_INLINE __m256i dot_nibbles(__m256i acc, const __m256i *u, const __m256i *s, int n) {
#if MOE_VNNI
    _Pragma("GCC unroll 8") for (int k = 0; k < n; k++) acc = mm256_dpbusd(acc, u[k], s[k]);
    return acc;
#else
    __m256i p = _mm256_maddubs_epi16(u[0], s[0]);
    _Pragma("GCC unroll 8") for (int k = 1; k < n; k++) p = _mm256_add_epi16(p, _mm256_maddubs_epi16(u[k], s[k]));
    return _mm256_add_epi32(acc, _mm256_madd_epi16(p, _mm256_set1_epi16(1)));
#endif
}

/* Σ y over values 0-15 in every lane of the low half, over 16-31 in the high half (the
 * offsets of the Q4_0 and Q8_0 kernels and tiles) */
SIMD_INLINE __m256i half_sums(__m256i qy) {
    __m256i h = _mm256_madd_epi16(_mm256_maddubs_epi16(_mm256_set1_epi8(1), qy), _mm256_set1_epi16(1));
    h = _mm256_hadd_epi32(h, h);
    return _mm256_hadd_epi32(h, h);
}

/* Scale i (int16, of 8 in a 128-bit lane) in every int16 of both lanes: the K-quant
 * kernels' and tiles' per-sub-block scales for madd (a pshufb picking bytes 2i, 2i+1). */
SIMD_INLINE __m256i bcast_scale(__m256i sc, int i) {
    return _mm256_shuffle_epi8(sc, _mm256_set1_epi16((short)(2 * i | (2 * i + 1) << 8)));
}

/* acc + Σ of each 2 adjacent s16·s16 products, in 8 int32 lanes */
SIMD_INLINE __m256i madd_acc(__m256i acc, __m256i a, __m256i b) {
#if MOE_VNNI
    return mm256_dpwssd(acc, a, b);
#else
    return _mm256_add_epi32(acc, _mm256_madd_epi16(a, b));
#endif
}

/* The 8 scales and the 8 mins of a Q4_K/Q5_K block as 16 int16 [scales | mins]: ggml's
 * get_scale_min_k4 for all j at once with two byte shuffles. Reads 16 bytes from the
 * 12-byte field; the block continues after it (qs or qh). */
SIMD_INLINE __m256i scales_mins_k4(const uint8_t *packed) {
    const __m128i v = _mm_loadu_si128((const __m128i *)packed);
    const __m128i p = _mm_shuffle_epi8(v, _mm_setr_epi8(0, 1, 2, 3, 8, 9, 10, 11, 4, 5, 6, 7, 8, 9, 10, 11));
    const __m128i q = _mm_shuffle_epi8(v, _mm_setr_epi8(-1, -1, -1, -1, 0, 1, 2, 3, -1, -1, -1, -1, 4, 5, 6, 7));
    const __m128i lo = _mm_or_si128(
        _mm_and_si128(p, _mm_setr_epi8(63, 63, 63, 63, 15, 15, 15, 15, 63, 63, 63, 63, 0, 0, 0, 0)),
        _mm_and_si128(_mm_srli_epi16(p, 4), _mm_setr_epi8(0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 15, 15, 15, 15)));
    const __m128i hi = _mm_and_si128(_mm_srli_epi16(q, 2), _mm_set1_epi8(0x30)); /* bits 6-7 → 4-5 */
    return _mm256_cvtepu8_epi16(_mm_or_si128(lo, hi));
}

#endif
