/* quant_k_avx2.c — AVX2+FMA dot products of the K-quants with Q8_K (one row, and four
 * rows at once for the matmul), and the AVX2 Q8_K activation quantizer. Same arithmetic
 * as ggml-cpu's x86 kernels — integer products with maddubs (unsigned quants × signed
 * q8), weighted by the sub-block scales with madd, one float multiply per super-block,
 * the mins folded in through the q8 block sums — with fewer instructions: the constant
 * offsets of Q3_K (−4) and Q6_K (−32) also come off through the block sums instead of a
 * second maddubs per 32 values, high bits are moved with one shift and one mask, the
 * Q4_K/Q5_K scales are unpacked with two byte shuffles, and madd+add is one vpdpwssd
 * where the CPU has VNNI (MOE_VNNI, simd.h). The integer sums are exactly those of the references.
 * Without AVX2 (or FMA, F16C) every function falls back to its scalar reference. */
#include "core/quant_k.h"
#include "core/quant_legacy.h" /* moe_iq4_nl_values: IQ4_XS's grid */
#include "core/cpu.h"
#include "core/matmul.h"

/* F16C too: block scales are converted with vcvtph2ps (every AVX2 CPU has it). */
#if defined(__AVX2__) && defined(__FMA__) && defined(__F16C__)
#include "core/simd.h"
#include <math.h>

#define QK MOE_QK_K

bool moe_quant_k_simd(void) { return true; }

/* Each kernel is one always-inline function of the row count nr (1, or 4 rows `bx` bytes
 * apart against the same activations), specialised by the compiler: the four-row form
 * shares the activation work (block sums) and keeps four independent accumulations in
 * flight. It also prefetches the same block of the next four rows (or further for short
 * rows: moe_prefetch_distance, core/cpu.h): a row of a 4096-wide
 * matrix is only 2-3 KB, too short for the hardware prefetchers to ramp up on (the same
 * remark as in quant_legacy.c), into L1, L2 or not at all as the argument pf of the
 * kernels says (MOE_PF_*, core/cpu.h). No int16 can saturate in maddubs: the largest pair is
 * 2·63·127 = 16002 (Q6_K); Q8_K quants are in [-127, 127]. */
#define INLINE static inline __attribute__((always_inline))
#define FOR_ROWS(r) _Pragma("GCC unroll 4") for (int r = 0; r < nr; r++)
/* Inner loops unrolled: the scale masks become constants in registers, and each
 * super-block sums into two accumulators, halving the chain of dependent multiply-adds. */
#define UNROLL _Pragma("GCC unroll 8")

/* dist = moe_prefetch_distance(bx), computed once per kernel call (it divides) */
#define PREFETCH(p, dist, nr, size, pf)                                                    \
    do {                                                                                   \
        if ((nr) > 1)                                                                      \
            for (int k_ = 0; k_ < (int)(size); k_ += 64) prefetch_line((const char *)(p) + (dist) + k_, pf); \
    } while (0)



INLINE uint32_t load_u32(const void *p) {
    uint32_t v;
    memcpy(&v, p, 4);
    return v;
}

/* [d·dy, dmin·dy] from the two adjacent f16 of a block (one conversion for both). */
INLINE __m128 scales_f16x2(const moe_f16 *d, float dy) {
    return _mm_mul_ps(_mm_cvtph_ps(_mm_cvtsi32_si128((int)load_u32(d))), _mm_set1_ps(dy));
}
INLINE __m256 lane0(__m128 v) { return _mm256_broadcastss_ps(v); }
INLINE __m256 lane1(__m128 v) { return _mm256_broadcastss_ps(_mm_movehdup_ps(v)); }



/* pshufb masks that broadcast one 16-bit scale (bcast_scale, simd.h, picks scale i of 8 in
 * both lanes): SHUF_Q3K[k] picks scale 2k in the low lane and 2k+1 in the high lane
 * (sub-blocks of 16 values: the two halves of a 32-byte vector of quants). */
static const uint8_t SHUF_Q3K[4][32] = {
#define P(i) {4*i,4*i+1,4*i,4*i+1,4*i,4*i+1,4*i,4*i+1,4*i,4*i+1,4*i,4*i+1,4*i,4*i+1,4*i,4*i+1, \
              4*i+2,4*i+3,4*i+2,4*i+3,4*i+2,4*i+3,4*i+2,4*i+3,4*i+2,4*i+3,4*i+2,4*i+3,4*i+2,4*i+3,4*i+2,4*i+3}
    P(0), P(1), P(2), P(3)
#undef P
};
INLINE __m256i bcast_scale16(__m256i sc, int k) { return _mm256_shuffle_epi8(sc, load256(SHUF_Q3K[k])); }
/* both 128-bit lanes = lane 0 (lane 1) of v */
INLINE __m256i dup_lo(__m256i v) { return _mm256_permute2x128_si256(v, v, 0x00); }
INLINE __m256i dup_hi(__m256i v) { return _mm256_permute2x128_si256(v, v, 0x11); }


#define ACC_INIT __m256 acc[4] = {_mm256_setzero_ps(), _mm256_setzero_ps(), _mm256_setzero_ps(), _mm256_setzero_ps()}

INLINE void store_sums(float *s, const __m256 *acc, int nr) {
    FOR_ROWS(r) s[r] = hsum8(acc[r]);
}

/* Q2_K, Q3_K and Q6_K have a scale per 16 values. Their vec_dots and their batch tile
 * (moe_k16_gemm_tile, below) share these steps, so a batch gives the vec_dot's bits: a
 * block's values as unsigned quants, 32 per vector, half j (128 values) at a time, each
 * vector's scales as int16 pairs for madd (k16_scales_half), and the sums Σ sc·q·y of a
 * half against one token (k16_sums_half), in eight int32 lanes. */
INLINE void k16_scales_half(__m256i scv_j, __m256i sck[4]) {
    UNROLL for (int k = 0; k < 4; k++) sck[k] = bcast_scale16(scv_j, k);
}
INLINE void k16_sums_half(__m256i sumi[2], const __m256i q[4], const __m256i sck[4], const int8_t *q8j) {
    UNROLL for (int k = 0; k < 4; k++)
        sumi[k & 1] = madd_acc(sumi[k & 1], sck[k], _mm256_maddubs_epi16(q[k], load256(q8j + 32 * k)));
}

/* Q2_K: x = d·sc·q − dmin·m (q in 0..3), so Σx·y = d·Σ sc·Σq·q8 − dmin·Σ m·bsum. */
INLINE void q2_K_scales(const moe_block_q2_K *x, __m256i *sc, __m256i *mins) {
    const __m128i m4 = _mm_set1_epi8(0xF);
    const __m128i ms = _mm_loadu_si128((const __m128i *)x->scales);
    *sc = _mm256_cvtepu8_epi16(_mm_and_si128(ms, m4));
    *mins = _mm256_cvtepu8_epi16(_mm_and_si128(_mm_srli_epi16(ms, 4), m4));
}
INLINE void q2_K_unpack_half(const moe_block_q2_K *x, int j, __m256i q[4]) {
    const __m256i m3 = _mm256_set1_epi8(3), q2bits = load256(x->qs + 32 * j);
    UNROLL for (int k = 0; k < 4; k++) q[k] = _mm256_and_si256(_mm256_srli_epi16(q2bits, 2 * k), m3);
}
/* acc += d·dy·Σ sc·q·y − dmin·dy·Σ m·bsum */
INLINE __m256 q2_K_finish(__m256 acc, const moe_block_q2_K *x, const moe_block_q8_K *y, const __m256i sumi[2],
                          __m256i mins) {
    const __m128 dd = scales_f16x2(&x->d, y->d);
    acc = _mm256_fmadd_ps(lane0(dd), _mm256_cvtepi32_ps(_mm256_add_epi32(sumi[0], sumi[1])), acc);
    return _mm256_fnmadd_ps(lane1(dd), _mm256_cvtepi32_ps(_mm256_madd_epi16(mins, load256(y->bsums))), acc);
}

INLINE void dot_q2_K(int64_t n, float *s, const uint8_t *vx, size_t bx, const void *vy, int nr, bool il, int pf) {
    const size_t pfd = moe_prefetch_distance(bx);
    const moe_block_q8_K *y = vy;
    ACC_INIT;
    for (int64_t i = 0; i < n / QK; i++) {
        FOR_ROWS(r) {
            const moe_block_q2_K *x = MOE_GROUP_BLOCK(moe_block_q2_K, vx, bx, r, i, il);
            PREFETCH(x, pfd, nr, sizeof *x, pf);
            __m256i sc, mins;
            q2_K_scales(x, &sc, &mins);
            const __m256i scv[2] = {dup_lo(sc), dup_hi(sc)};
            __m256i sumi[2] = {_mm256_setzero_si256(), _mm256_setzero_si256()};
            UNROLL for (int j = 0; j < 2; j++) {
                __m256i q[4], sck[4];
                q2_K_unpack_half(x, j, q);
                k16_scales_half(scv[j], sck);
                k16_sums_half(sumi, q, sck, y[i].qs + 128 * j);
            }
            acc[r] = q2_K_finish(acc[r], x, &y[i], sumi, mins);
        }
    }
    store_sums(s, acc, nr);
}

/* Q3_K: q = (low 2 bits | high bit << 2) − 4 with 6-bit scales per 16 values; the
 * unsigned part multiplies directly and the −4 comes off as 4·Σ sc·bsum. */
/* The 16 scales as int16: ggml's unpacking of the 12-byte field (low 4 bits of scale j
 * in byte j % 8, low or high nibble; its high 2 bits at bit 2·(j / 4) of byte 8 + j % 4),
 * minus 32, in vector registers: dword k of [bytes 0-3 | 4-7 | 0-3 >> 4 | 4-7 >> 4] masked
 * to nibbles, ORed with ((bytes 8-11 >> 2k) & 3) << 4. (ggml's scalar form moved its four
 * dwords into a vector one by one; this one made the kernel ~9 % faster on Zen 4, one
 * core in cache: 16.0 → 17.5 GB/s.) */
INLINE __m256i q3_K_scales(const moe_block_q3_K *x) {
    const __m128i m4 = _mm_set1_epi8(0x0f), m2 = _mm_set1_epi8(0x03);
    const __m128i lo8 = _mm_loadl_epi64((const __m128i *)x->scales);                     /* bytes 0-7 */
    const __m128i lo = _mm_and_si128(_mm_unpacklo_epi64(lo8, _mm_srli_epi16(lo8, 4)), m4);
    const __m128i h = _mm_set1_epi32((int)load_u32(x->scales + 8));
    const __m128i hi = _mm_slli_epi16(_mm_and_si128(_mm_srlv_epi32(h, _mm_setr_epi32(0, 2, 4, 6)), m2), 4);
    return _mm256_cvtepi8_epi16(_mm_sub_epi8(_mm_or_si128(lo, hi), _mm_set1_epi8(32)));
}
INLINE void q3_K_unpack_half(const moe_block_q3_K *x, int j, __m256i q[4]) {
    const __m256i m3 = _mm256_set1_epi8(3), q3bits = load256(x->qs + 32 * j), hbits = load256(x->hmask);
    UNROLL for (int k = 0; k < 4; k++)
        q[k] = _mm256_or_si256(_mm256_and_si256(_mm256_srli_epi16(q3bits, 2 * k), m3), bit_to(hbits, 4 * j + k, 2));
}
/* the sums' start: −(1 << shift)·Σ sc·bsum (Q3_K: 4, Q6_K: 32), in the first accumulator */
INLINE __m256i k16_sums_start(__m256i sc, const moe_block_q8_K *y, int shift) {
    return _mm256_sub_epi32(_mm256_setzero_si256(), _mm256_slli_epi32(_mm256_madd_epi16(sc, load256(y->bsums)), shift));
}
/* acc += d·dy·sumi (Q3_K, Q6_K: d is the block's F16 scale) */
INLINE __m256 k16_finish(__m256 acc, moe_f16 d, const moe_block_q8_K *y, const __m256i sumi[2]) {
    const float dd = y->d * moe_f16_to_f32(d);
    return _mm256_fmadd_ps(_mm256_set1_ps(dd), _mm256_cvtepi32_ps(_mm256_add_epi32(sumi[0], sumi[1])), acc);
}

INLINE void dot_q3_K(int64_t n, float *s, const uint8_t *vx, size_t bx, const void *vy, int nr, bool il, int pf) {
    const size_t pfd = moe_prefetch_distance(bx);
    const moe_block_q8_K *y = vy;
    ACC_INIT;
    for (int64_t i = 0; i < n / QK; i++) {
        FOR_ROWS(r) {
            const moe_block_q3_K *x = MOE_GROUP_BLOCK(moe_block_q3_K, vx, bx, r, i, il);
            PREFETCH(x, pfd, nr, sizeof *x, pf);
            const __m256i sc = q3_K_scales(x);
            const __m256i scv[2] = {dup_lo(sc), dup_hi(sc)};
            __m256i sumi[2] = {k16_sums_start(sc, &y[i], 2), _mm256_setzero_si256()};
            UNROLL for (int j = 0; j < 2; j++) {
                __m256i q[4], sck[4];
                q3_K_unpack_half(x, j, q);
                k16_scales_half(scv[j], sck);
                k16_sums_half(sumi, q, sck, y[i].qs + 128 * j);
            }
            acc[r] = k16_finish(acc[r], x->d, &y[i], sumi);
        }
    }
    store_sums(s, acc, nr);
}

/* Q4_K and Q5_K: x = d·sc·q − dmin·m per sub-block of 32; the mins go through the sums
 * of the q8 quants of each sub-block (pairs of bsums), computed once for all rows. Every
 * Q4_K and Q5_K kernel (one row, four rows, the interleaved layouts and batch tiles) sums
 * in one order: per block and row the exact integers T = Σ sc·Σ q·y and M = Σ m·bsum,
 * then [T0..T3 | M0..M3] of four rows times k_scales4 in one FMA, the row's result
 * acc_T + acc_M (rows4_halves, rows4_store: simd.h). */
INLINE void dot_q45_K(int64_t n, float *s, const uint8_t *vx, size_t bx, const void *vy, int nr, bool il, int pf, bool q5) {
    (void)il; /* the interleaved layouts have their own kernels (q45_K_group) */
    const size_t pfd = moe_prefetch_distance(bx);
    const moe_block_q8_K *y = vy;
    const __m256i m4 = _mm256_set1_epi8(0xF);
    __m256 acc = _mm256_setzero_ps();
    for (int64_t i = 0; i < n / QK; i++) {
        const __m256i bsums = load256(y[i].bsums);
        const __m128i q8s = _mm_hadd_epi16(_mm256_castsi256_si128(bsums), _mm256_extracti128_si256(bsums, 1));
        const int8_t *q8 = y[i].qs;
        __m256i v[4];
        uint32_t dm[4];
        FOR_ROWS(r) {
            const moe_block_q4_K *x4 = (const moe_block_q4_K *)(vx + (size_t)r * bx) + i;
            const moe_block_q5_K *x5 = (const moe_block_q5_K *)(vx + (size_t)r * bx) + i;
            PREFETCH(q5 ? (const void *)x5 : (const void *)x4, pfd, nr, q5 ? sizeof *x5 : sizeof *x4, pf);
            dm[r] = load_u32(q5 ? &x5->d : &x4->d);
            const __m256i sm = scales_mins_k4(q5 ? x5->scales : x4->scales);
            const __m128i prod = _mm_madd_epi16(_mm256_extracti128_si256(sm, 1), q8s);
            const __m256i sc = dup_lo(sm);
            const uint8_t *qs = q5 ? x5->qs : x4->qs;
            const __m256i hbits = q5 ? load256(x5->qh) : _mm256_setzero_si256();
            __m256i sumi[2] = {_mm256_setzero_si256(), _mm256_setzero_si256()};
            UNROLL for (int j = 0; j < 4; j++) {
                const __m256i bits = load256(qs + 32 * j);
                __m256i lo = _mm256_and_si256(bits, m4);
                __m256i hi = _mm256_and_si256(_mm256_srli_epi16(bits, 4), m4);
                if (q5) { /* fifth bit of sub-block 2j and 2j+1: bits 2j and 2j+1 of qh */
                    lo = _mm256_or_si256(lo, bit_to(hbits, 2 * j, 4));
                    hi = _mm256_or_si256(hi, bit_to(hbits, 2 * j + 1, 4));
                }
                sumi[0] = madd_acc(sumi[0], bcast_scale(sc, 2 * j), _mm256_maddubs_epi16(lo, load256(q8 + 64 * j)));
                sumi[1] = madd_acc(sumi[1], bcast_scale(sc, 2 * j + 1), _mm256_maddubs_epi16(hi, load256(q8 + 64 * j + 32)));
            }
            const __m256i t = _mm256_add_epi32(sumi[0], sumi[1]);
            v[r] = _mm256_set_m128i(prod, _mm_add_epi32(_mm256_castsi256_si128(t), _mm256_extracti128_si256(t, 1)));
        }
        const __m256i tm = nr == 4 ? rows4_halves(v[0], v[1], v[2], v[3]) : rows4_halves(v[0], v[0], v[0], v[0]);
        const __m256 d = nr == 4 ? k_scales4(dm[0], dm[1], dm[2], dm[3], y[i].d) : k_scales4(dm[0], dm[0], dm[0], dm[0], y[i].d);
        acc = _mm256_fmadd_ps(d, _mm256_cvtepi32_ps(tm), acc);
    }
    rows4_store(s, acc, nr);
}
INLINE void dot_q4_K(int64_t n, float *s, const uint8_t *vx, size_t bx, const void *vy, int nr, bool il, int pf) {
    dot_q45_K(n, s, vx, bx, vy, nr, il, pf, false);
}
INLINE void dot_q5_K(int64_t n, float *s, const uint8_t *vx, size_t bx, const void *vy, int nr, bool il, int pf) {
    dot_q45_K(n, s, vx, bx, vy, nr, il, pf, true);
}

/* Q6_K: q = (4 low bits | 2 high bits << 4) − 32 with int8 scales per 16 values; the
 * unsigned part multiplies directly and the −32 comes off as 32·Σ sc·bsum. */
/* Q6_K: q = (4 low bits | 2 high bits << 4) − 32 with int8 scales per 16 values; the
 * unsigned part multiplies directly and the −32 comes off as 32·Σ sc·bsum. */
INLINE __m256i q6_K_scales(const moe_block_q6_K *x) {
    return _mm256_cvtepi8_epi16(_mm_loadu_si128((const __m128i *)x->scales));
}
INLINE void q6_K_unpack_half(const moe_block_q6_K *x, int j, __m256i q[4]) {
    const __m256i m4 = _mm256_set1_epi8(0xF), m30 = _mm256_set1_epi8(0x30);
    /* values 32k..32k+31 of this 128: low nibbles of ql[0..31] (k=0), of
     * ql[32..63] (k=1), high nibbles of both (k=2, 3); bits 2k..2k+1 of qh */
    const __m256i qa = load256(x->ql + 64 * j), qb = load256(x->ql + 64 * j + 32);
    const __m256i h = load256(x->qh + 32 * j);
    q[0] = _mm256_or_si256(_mm256_and_si256(qa, m4), _mm256_and_si256(_mm256_slli_epi16(h, 4), m30));
    q[1] = _mm256_or_si256(_mm256_and_si256(qb, m4), _mm256_and_si256(_mm256_slli_epi16(h, 2), m30));
    q[2] = _mm256_or_si256(_mm256_and_si256(_mm256_srli_epi16(qa, 4), m4), _mm256_and_si256(h, m30));
    q[3] = _mm256_or_si256(_mm256_and_si256(_mm256_srli_epi16(qb, 4), m4), _mm256_and_si256(_mm256_srli_epi16(h, 2), m30));
}

INLINE void dot_q6_K(int64_t n, float *s, const uint8_t *vx, size_t bx, const void *vy, int nr, bool il, int pf) {
    const size_t pfd = moe_prefetch_distance(bx);
    const moe_block_q8_K *y = vy;
    ACC_INIT;
    for (int64_t i = 0; i < n / QK; i++) {
        FOR_ROWS(r) {
            const moe_block_q6_K *x = MOE_GROUP_BLOCK(moe_block_q6_K, vx, bx, r, i, il);
            PREFETCH(x, pfd, nr, sizeof *x, pf);
            const __m256i sc = q6_K_scales(x);
            const __m256i scv[2] = {dup_lo(sc), dup_hi(sc)};
            __m256i sumi[2] = {k16_sums_start(sc, &y[i], 5), _mm256_setzero_si256()};
            UNROLL for (int j = 0; j < 2; j++) {
                __m256i q[4], sck[4];
                q6_K_unpack_half(x, j, q);
                k16_scales_half(scv[j], sck);
                k16_sums_half(sumi, q, sck, y[i].qs + 128 * j);
            }
            acc[r] = k16_finish(acc[r], x->d, &y[i], sumi);
        }
    }
    store_sums(s, acc, nr);
}

/* The batch tile of Q2_K, Q3_K and Q6_K (core/gemm.h: moe_gemm_tile_fn): rows in fours
 * and tokens eight at a time, each row's block unpacked once (K16_ROW) for the eight
 * tokens, which then take only the sums and the float step (K16_TOKEN): the vec_dots'
 * steps, so every output is the vec_dot's, bit for bit. */
#define K16_TILE_TOKENS 8
typedef struct {
    __m256i q[2][4], sck[2][4]; /* the values and their scales, half by half */
    __m256i sc, mins;           /* the 16 scales (and Q2_K's mins) as int16 */
} k16_row;

#define K16_ROW(T, x, u)                                                                          \
    do {                                                                                          \
        K16_SCALES_##T(x, u);                                                                     \
        const __m256i scv_[2] = {dup_lo((u)->sc), dup_hi((u)->sc)};                               \
        for (int j_ = 0; j_ < 2; j_++) {                                                          \
            T##_unpack_half(x, j_, (u)->q[j_]);                                                   \
            k16_scales_half(scv_[j_], (u)->sck[j_]);                                              \
        }                                                                                         \
    } while (0)
#define K16_SCALES_q2_K(x, u) q2_K_scales(x, &(u)->sc, &(u)->mins)
#define K16_SCALES_q3_K(x, u) ((u)->sc = q3_K_scales(x))
#define K16_SCALES_q6_K(x, u) ((u)->sc = q6_K_scales(x))
#define K16_START_q2_K(u, y) _mm256_setzero_si256()
#define K16_START_q3_K(u, y) k16_sums_start((u)->sc, y, 2)
#define K16_START_q6_K(u, y) k16_sums_start((u)->sc, y, 5)
#define K16_FINISH_q2_K(acc, x, y, sumi, u) q2_K_finish(acc, x, y, sumi, (u)->mins)
#define K16_FINISH_q3_K(acc, x, y, sumi, u) k16_finish(acc, (x)->d, y, sumi)
#define K16_FINISH_q6_K(acc, x, y, sumi, u) k16_finish(acc, (x)->d, y, sumi)

#define K16_TILE(T)                                                                                                    \
    INLINE void T##_tile(const moe_mat *W, int64_t r, int nr, const uint8_t *xq, size_t xb, int64_t t, int nt, float *y, \
                         int64_t ldy) {                                                                                \
        const size_t bx = W->row_bytes;                                                                                \
        const uint8_t *vx = (const uint8_t *)W->data + (size_t)r * bx;                                                 \
        __m256 acc[4][K16_TILE_TOKENS];                                                                                \
        for (int rr = 0; rr < 4; rr++)                                                                                 \
            for (int tt = 0; tt < K16_TILE_TOKENS; tt++) acc[rr][tt] = _mm256_setzero_ps();                            \
        for (int64_t i = 0; i < W->cols / QK; i++) {                                                                   \
            FOR_ROWS(rr) {                                                                                             \
                const moe_block_##T *x = W->interleaved ? MOE_GROUP_BLOCK(moe_block_##T, vx, bx, rr, i, true)          \
                                                        : MOE_GROUP_BLOCK(moe_block_##T, vx, bx, rr, i, false);        \
                k16_row u;                                                                                             \
                K16_ROW(T, x, &u);                                                                                     \
                _Pragma("GCC unroll 8") for (int tt = 0; tt < nt; tt++) {                                              \
                    const moe_block_q8_K *yb = (const moe_block_q8_K *)(xq + (size_t)(t + tt) * xb) + i;               \
                    __m256i sumi[2] = {K16_START_##T(&u, yb), _mm256_setzero_si256()};                                 \
                    k16_sums_half(sumi, u.q[0], u.sck[0], yb->qs);                                                     \
                    k16_sums_half(sumi, u.q[1], u.sck[1], yb->qs + 128);                                               \
                    acc[rr][tt] = K16_FINISH_##T(acc[rr][tt], x, yb, sumi, &u);                                        \
                }                                                                                                      \
            }                                                                                                          \
        }                                                                                                              \
        for (int tt = 0; tt < nt; tt++)                                                                                \
            FOR_ROWS(rr) y[(t + tt) * ldy + r + rr] = hsum8(acc[rr][tt]); /* as store_sums */                          \
    }
K16_TILE(q2_K)
K16_TILE(q3_K)
K16_TILE(q6_K)

void moe_k16_gemm_tile(const moe_mat *W, int64_t r0, int64_t r1, const uint8_t *xq, size_t xb, int64_t t0, int64_t t1,
                       float *y, int64_t ldy) {
    for (int64_t r = r0; r < r1; r += 4)
        for (int64_t t = t0; t < t1; t += K16_TILE_TOKENS) {
            const int nt = (int)MOE_MIN(K16_TILE_TOKENS, t1 - t);
            /* a few rows at the end of a row-major matrix go one at a time; the row count is
             * a constant in each call, so that the tile is specialised for it */
            const int nr = r1 - r >= 4 ? 4 : 1;
#define K16_CALL(T) (nr == 4 ? T##_tile(W, rr, 4, xq, xb, t, nt, y, ldy) : T##_tile(W, rr, 1, xq, xb, t, nt, y, ldy))
            for (int64_t rr = r; rr < MOE_MIN(r + 4, r1); rr += nr) {
                if (W->type == MOE_TYPE_Q2_K) K16_CALL(q2_K);
                else if (W->type == MOE_TYPE_Q3_K) K16_CALL(q3_K);
                else K16_CALL(q6_K);
            }
#undef K16_CALL
        }
}

/* Q8_K·Q8_K (both signed): |x| (unsigned) times y with x's sign. */
INLINE void dot_q8_K(int64_t n, float *s, const uint8_t *vx, size_t bx, const void *vy, int nr, bool il, int pf) {
    const size_t pfd = moe_prefetch_distance(bx);
    const moe_block_q8_K *y = vy;
    const __m256i ones = _mm256_set1_epi16(1);
    ACC_INIT;
    for (int64_t i = 0; i < n / QK; i++) {
        FOR_ROWS(r) {
            const moe_block_q8_K *x = MOE_GROUP_BLOCK(moe_block_q8_K, vx, bx, r, i, il);
            PREFETCH(x, pfd, nr, sizeof *x, pf);
            __m256i sumi[2] = {_mm256_setzero_si256(), _mm256_setzero_si256()};
            UNROLL for (int j = 0; j < QK / 32; j++) {
                const __m256i qx = load256(x->qs + 32 * j), qy = load256(y[i].qs + 32 * j);
                const __m256i p16 = _mm256_maddubs_epi16(_mm256_sign_epi8(qx, qx), _mm256_sign_epi8(qy, qx));
                sumi[j & 1] = madd_acc(sumi[j & 1], p16, ones);
            }
            acc[r] = _mm256_fmadd_ps(_mm256_set1_ps(x->d * y[i].d), _mm256_cvtepi32_ps(_mm256_add_epi32(sumi[0], sumi[1])), acc[r]);
        }
    }
    store_sums(s, acc, nr);
}

/* IQ4_XS·Q8_K: per pair of sub-blocks (64 values, 32 bytes of nibbles) the nibbles are
 * looked up in IQ4_NL's grid (one pshufb each half), rearranged into the two sub-blocks'
 * value order, multiplied with the activations by the sign trick into int16 pairs and
 * scaled by the sub-block's 6-bit scale − 32 in the madd: exact integers per super-block
 * (|pair| ≤ 2·127·127, times ≤ 32), then one FMA by d·dy per block. */
INLINE void dot_iq4_xs(int64_t n, float *s, const uint8_t *vx, size_t bx, const void *vy, int nr, bool il, int pf) {
    (void)il; /* the interleaved layout has its own kernel */
    const size_t pfd = moe_prefetch_distance(bx);
    const moe_block_q8_K *y = vy;
    const __m256i grid = _mm256_broadcastsi128_si256(_mm_loadu_si128((const __m128i *)moe_iq4_nl_values));
    const __m256i m4 = _mm256_set1_epi8(0xF);
    __m128 acc1[4] = {_mm_setzero_ps(), _mm_setzero_ps(), _mm_setzero_ps(), _mm_setzero_ps()};
    for (int64_t i = 0; i < n / QK; i++) {
        FOR_ROWS(r) {
            const moe_block_iq4_xs *x = (const moe_block_iq4_xs *)(vx + (size_t)r * bx) + i;
            PREFETCH(x, pfd, nr, sizeof *x, pf);
            __m256i sumi[2] = {_mm256_setzero_si256(), _mm256_setzero_si256()};
            uint16_t h = x->scales_h;
            UNROLL for (int ib = 0; ib < QK / 32; ib += 2, h >>= 4) {
                const __m256i q4 = load256(x->qs + 16 * ib); /* sub-block ib, then ib + 1 */
                const __m256i lo = _mm256_shuffle_epi8(grid, _mm256_and_si256(q4, m4));
                const __m256i hi = _mm256_shuffle_epi8(grid, _mm256_and_si256(_mm256_srli_epi16(q4, 4), m4));
                const __m256i w[2] = {_mm256_permute2x128_si256(lo, hi, 0x20), _mm256_permute2x128_si256(lo, hi, 0x31)};
                /* scalar: the vector ports are this kernel's bottleneck (the scales unpacked in
                 * vector registers made it 6 % slower on Zen 4) */
                const int ls[2] = {((x->scales_l[ib / 2] & 0xf) | ((h << 4) & 0x30)) - 32,
                                   ((x->scales_l[ib / 2] >> 4) | ((h << 2) & 0x30)) - 32};
                UNROLL for (int k = 0; k < 2; k++) {
                    const __m256i qy = load256(y[i].qs + 32 * (ib + k));
                    const __m256i p16 = _mm256_maddubs_epi16(_mm256_sign_epi8(w[k], w[k]), _mm256_sign_epi8(qy, w[k]));
                    sumi[k] = madd_acc(sumi[k], p16, _mm256_set1_epi16((short)ls[k]));
                }
            }
            /* the block's exact sum, then acc = fma(d·dy, sum, acc): the interleaved kernel's
             * order (one lane per row), so that both give the same bits */
            const __m128i s4 = _mm_add_epi32(_mm256_castsi256_si128(_mm256_add_epi32(sumi[0], sumi[1])),
                                             _mm256_extracti128_si256(_mm256_add_epi32(sumi[0], sumi[1]), 1));
            const __m128i s2 = _mm_add_epi32(s4, _mm_unpackhi_epi64(s4, s4));
            const __m128 sum = _mm_cvtepi32_ps(_mm_add_epi32(s2, _mm_shuffle_epi32(s2, 1)));
            acc1[r] = _mm_fmadd_ss(_mm_set_ss(moe_f16_to_f32(x->d) * y[i].d), sum, acc1[r]);
        }
    }
    FOR_ROWS(r) s[r] = _mm_cvtss_f32(acc1[r]);
}

/* The interleaved Q4_K layout (moe_q4_K_interleave_group, quant_k.c): per block of four
 * rows, the four (d, dmin) pairs, the 64 six-bit scales and mins repacked so that one
 * 32-byte load and a few shifts give all of them (entry 4·sub-block + row), then the quants
 * in 32-byte vectors of 4-byte chunks of each row, lanes of one row each. Against
 * activation vectors prepared once per call, a sub-block's sums for four rows are four
 * dpbusd (or maddubs), and the scales and mins multiply four rows at once: about 2.5×
 * fewer instructions per weight than dot_q45_K. Same integers and float operations as
 * dot_q45_K, so the same bits. Q5_K's layout adds the fifth bits (quant_k.c), which its
 * kernel ORs into each vector's quants. */
typedef struct {
    __m256i z[4][2]; /* [j][low/high nibbles]: the dwords of y's values 64j (+32) as [0 2 4 6 | 1 3 5 7] */
    __m256i ys[2];   /* int16 Σy of the sub-blocks: [S0 S1 four times | S2 S3 …], [S4 S5 … | S6 S7 …] */
    float d;
} q4k_act;

#define Q4KI_CHUNK 64  /* activation blocks prepared at a time: 16384 columns, 26 KB of stack */

static void q4_K_prepare(q4k_act *a, const moe_block_q8_K *y, int64_t nb) {
    for (int64_t i = 0; i < nb; i++) {
        for (int j = 0; j < 4; j++)
            for (int h = 0; h < 2; h++)
                a[i].z[j][h] = _mm256_permutevar8x32_epi32(load256(y[i].qs + 64 * j + 32 * h),
                                                           _mm256_setr_epi32(0, 2, 4, 6, 1, 3, 5, 7));
        /* the eight sub-block sums (|Σ| ≤ 32·128: int16), each pair over the four rows */
        const __m256i bsums = load256(y[i].bsums);
        const __m256i sums = _mm256_broadcastsi128_si256(
            _mm_hadd_epi16(_mm256_castsi256_si128(bsums), _mm256_extracti128_si256(bsums, 1)));
        a[i].ys[0] = _mm256_shuffle_epi8(sums, _mm256_setr_epi8(0, 1, 2, 3, 0, 1, 2, 3, 0, 1, 2, 3, 0, 1, 2, 3, 4, 5, 6, 7, 4, 5, 6,
                                                                7, 4, 5, 6, 7, 4, 5, 6, 7));
        a[i].ys[1] = _mm256_shuffle_epi8(sums, _mm256_setr_epi8(8, 9, 10, 11, 8, 9, 10, 11, 8, 9, 10, 11, 8, 9, 10, 11, 12, 13,
                                                                14, 15, 12, 13, 14, 15, 12, 13, 14, 15, 12, 13, 14, 15));
        a[i].d = y[i].d;
    }
}

/* The 8 bytes of a 32-byte vector at offset 8j, as 8 int32 */
INLINE __m256i bytes8_epi32(__m256i v, int j) {
    const __m128i h = j < 2 ? _mm256_castsi256_si128(v) : _mm256_extracti128_si256(v, 1);
    return _mm256_cvtepu8_epi32(j & 1 ? _mm_unpackhi_epi64(h, h) : h);
}


/* Q5_K (q5) reads the fifth bit of every quant from its qh vectors (bytes 64..191), bit 2j
 * for run j's low nibbles and 2j + 1 for its high ones (bit4_from). */
INLINE __m256 q45_K_group(__m256 acc, const uint8_t *b, const q4k_act *a, int64_t nb, size_t pfd, int pf, bool q5) {
    const __m256i m4 = _mm256_set1_epi8(0xF);
    const size_t blk = q5 ? MOE_Q5_K_IL_BLOCK : MOE_Q4_K_IL_BLOCK, qo = q5 ? 192 : 64;
    /* with VNNI, Q4_K's high nibbles stay in place (16× their value, taken out below);
     * Q5_K's, 5-bit values, are shifted down */
    const bool hi16 = MOE_VNNI && !q5;
    for (int64_t i = 0; i < nb; i++, b += blk) {
        UNROLL for (size_t p = 0; p < blk; p += 64) prefetch_line(b + pfd + p, pf);
        __m256i sc, mn;
        q4_K_scales_mins(b, &sc, &mn);
        __m256i qh[4];
        if (q5) UNROLL for (int k = 0; k < 4; k++) qh[k] = load256(b + 64 + 32 * k);
        /* t: [Σ sc·S of the even sub-blocks | of the odd ones (×16 where hi16)] per row */
        __m256i t = _mm256_setzero_si256();
        UNROLL for (int j = 0; j < 4; j++) {
            __m256i lo[4], hi[4];
            UNROLL for (int k = 0; k < 4; k++) {
                const __m256i w = load256(b + qo + 128 * j + 32 * k);
                lo[k] = _mm256_and_si256(w, m4);
                hi[k] = hi16 ? _mm256_andnot_si256(m4, w) : _mm256_and_si256(_mm256_srli_epi16(w, 4), m4);
                if (q5) {
                    lo[k] = _mm256_or_si256(lo[k], bit4_from(qh[k], 2 * j));
                    hi[k] = _mm256_or_si256(hi[k], bit4_from(qh[k], 2 * j + 1));
                }
            }
            /* [y dword 2k | y dword 2k+1] over four lanes each: one in-lane shuffle of z */
            /* (immediates written out: at -O1, as in the sanitizer build, k·0x55 in a loop is no constant) */
            const __m256i zl = a[i].z[j][0], zh = a[i].z[j][1];
            const __m256i ylo[4] = {_mm256_shuffle_epi32(zl, 0x00), _mm256_shuffle_epi32(zl, 0x55), _mm256_shuffle_epi32(zl, 0xAA),
                                    _mm256_shuffle_epi32(zl, 0xFF)};
            const __m256i yhi[4] = {_mm256_shuffle_epi32(zh, 0x00), _mm256_shuffle_epi32(zh, 0x55), _mm256_shuffle_epi32(zh, 0xAA),
                                    _mm256_shuffle_epi32(zh, 0xFF)};
            const __m256i zero = _mm256_setzero_si256();
            const __m256i slo = dot_nibbles(zero, lo, ylo, 4), shi = dot_nibbles(zero, hi, yhi, 4);
            /* lanes (row, half): [sub-block 2j of rows 0-3 | 2j+1], both halves of each row added */
            const __m256i s = fold_halves(slo, shi);
            t = _mm256_add_epi32(t, _mm256_mullo_epi32(s, bytes8_epi32(sc, j)));
        }
        /* the mins against the sub-block sums, all eight sub-blocks at once: the mins (byte
         * 4·sub-block + row) reordered to (row, sub-block pair) and widened to int16, so
         * that each madd adds one row's two sub-blocks: [rows of sub-blocks 0,1 | 2,3] +
         * [4,5 | 6,7]. The same integers as one multiply per sub-block (exact). */
        const __m256i mp = _mm256_shuffle_epi8(mn, _mm256_setr_epi8(0, 4, 1, 5, 2, 6, 3, 7, 8, 12, 9, 13, 10, 14, 11, 15, 0, 4, 1,
                                                                    5, 2, 6, 3, 7, 8, 12, 9, 13, 10, 14, 11, 15));
        const __m256i m = _mm256_add_epi32(_mm256_madd_epi16(_mm256_cvtepu8_epi16(_mm256_castsi256_si128(mp)), a[i].ys[0]),
                                           _mm256_madd_epi16(_mm256_cvtepu8_epi16(_mm256_extracti128_si256(mp, 1)), a[i].ys[1]));
        const __m128i todd = hi16 ? _mm_srai_epi32(_mm256_extracti128_si256(t, 1), 4) /* exact: multiples of 16 */
                                  : _mm256_extracti128_si256(t, 1);
        const __m128i tv = _mm_add_epi32(_mm256_castsi256_si128(t), todd);
        const __m128i mv = _mm_add_epi32(_mm256_castsi256_si128(m), _mm256_extracti128_si256(m, 1));
        const __m256 d = k_scales4_v(_mm_loadu_si128((const __m128i *)b), a[i].d);
        acc = _mm256_fmadd_ps(d, _mm256_cvtepi32_ps(_mm256_set_m128i(mv, tv)), acc);
    }
    return acc;
}

/* The interleaved kernels on q4k_act (Q4_K, IQ4_XS): t##_group over the blocks of BLK bytes */
#define Q4KI_KERNEL(t, BLK)                                                                                               \
    INLINE void t##_x4i(int64_t n, float *s, const uint8_t *x, size_t bx, const moe_block_q8_K *y, int64_t ngroups,    \
                        int pf) {                                                                                       \
        const int64_t T = moe_il_tile_blocks(n / QK, QK);                                                               \
        const size_t pfd = MOE_IL_PREFETCH;                                                                             \
        MOE_X4I_RUN(q4k_act, Q4KI_CHUNK, (size_t)(BLK), T, q4_K_prepare, t##_GROUP, s, x, bx, y, n / QK, ngroups);     \
    }                                                                                                                   \
    void moe_##t##_vec_dot_x4i(int64_t n, float *s, const void *x, size_t bx, const void *y, int64_t ngroups) {       \
        MOE_PF_DISPATCH(moe_prefetch_il_level, t##_x4i, n, s, x, bx, y, ngroups);                                       \
    }
#define q4_K_GROUP(acc, b, a, nb) q45_K_group(acc, b, a, nb, pfd, pf, false)
#define q5_K_GROUP(acc, b, a, nb) q45_K_group(acc, b, a, nb, pfd, pf, true)
Q4KI_KERNEL(q4_K, MOE_Q4_K_IL_BLOCK)
Q4KI_KERNEL(q5_K, MOE_Q5_K_IL_BLOCK)

/* IQ4_XS's interleaved layout (moe_iq4_xs_interleave_group, quant_k.c) takes Q4_K's
 * kernel form: the rows in lanes against the same prepared activations (q4k_act), the
 * nibbles looked up in the grid first. With VNNI the grid is stored + 128, so that
 * vpdpbusd (unsigned × signed) takes it as it is; the 128·Σy this adds to each sub-block's
 * sum comes off through the sub-block sums, as Q4_K's mins do. Without VNNI, maddubs
 * would saturate on those values: the sign trick (|w| × y with w's sign) and one madd per
 * vector. Either way the exact integer Σ sc·Σ w·y of each block and row, then one FMA by
 * d·dy per block, as dot_iq4_xs: the same bits. 2.3× fewer vector instructions per weight
 * than dot_iq4_xs with VNNI. */
INLINE __m256 iq4_xs_group(__m256 acc, const uint8_t *b, const q4k_act *a, int64_t nb, size_t pfd, int pf) {
    const __m256i m4 = _mm256_set1_epi8(0xF), grid = grid_table(moe_iq4_nl_values);
    for (int64_t i = 0; i < nb; i++, b += MOE_IQ4_XS_IL_BLOCK) {
        UNROLL for (int p = 0; p < MOE_IQ4_XS_IL_BLOCK; p += 64) prefetch_line(b + pfd + p, pf);
        const __m256i sc = iq4_xs_scales(b);
        __m256i t = _mm256_setzero_si256(); /* [Σ sc·S of the even sub-blocks | of the odd ones] per row */
        UNROLL for (int j = 0; j < 4; j++) {
            __m256i sums[2];
            UNROLL for (int h = 0; h < 2; h++) { /* sub-block 2j + h: its two vectors' low, then high nibbles */
                const __m256i v0 = load256(b + 32 + 128 * j + 64 * h), v1 = load256(b + 32 + 128 * j + 64 * h + 32);
                const __m256i w[4] = {_mm256_shuffle_epi8(grid, _mm256_and_si256(v0, m4)),
                                      _mm256_shuffle_epi8(grid, _mm256_and_si256(v1, m4)),
                                      _mm256_shuffle_epi8(grid, _mm256_and_si256(_mm256_srli_epi16(v0, 4), m4)),
                                      _mm256_shuffle_epi8(grid, _mm256_and_si256(_mm256_srli_epi16(v1, 4), m4))};
                /* [y dword k | dword k+1] of the sub-block, k = 0, 2, 4, 6 */
                const __m256i z = a[i].z[j][h];
                const __m256i y[4] = {_mm256_shuffle_epi32(z, 0x00), _mm256_shuffle_epi32(z, 0x55),
                                      _mm256_shuffle_epi32(z, 0xAA), _mm256_shuffle_epi32(z, 0xFF)};
                sums[h] = dot_grid(_mm256_setzero_si256(), w, y, 4);
            }
            const __m256i s = fold_halves(sums[0], sums[1]);
            const __m128i sj = j < 2 ? _mm256_castsi256_si128(sc) : _mm256_extracti128_si256(sc, 1);
            t = _mm256_add_epi32(t, _mm256_mullo_epi32(s, _mm256_cvtepi8_epi32(j & 1 ? _mm_unpackhi_epi64(sj, sj) : sj)));
        }
        __m128i tv = _mm_add_epi32(_mm256_castsi256_si128(t), _mm256_extracti128_si256(t, 1));
#if MOE_VNNI
        /* − 128·Σ sc·Σy per row: the scales reordered to (row, sub-block pair) as Q4_K's mins */
        const __m256i mp = _mm256_shuffle_epi8(sc, _mm256_setr_epi8(0, 4, 1, 5, 2, 6, 3, 7, 8, 12, 9, 13, 10, 14, 11, 15, 0, 4, 1,
                                                                    5, 2, 6, 3, 7, 8, 12, 9, 13, 10, 14, 11, 15));
        const __m256i m = _mm256_add_epi32(_mm256_madd_epi16(_mm256_cvtepi8_epi16(_mm256_castsi256_si128(mp)), a[i].ys[0]),
                                           _mm256_madd_epi16(_mm256_cvtepi8_epi16(_mm256_extracti128_si256(mp, 1)), a[i].ys[1]));
        const __m128i mv = _mm_add_epi32(_mm256_castsi256_si128(m), _mm256_extracti128_si256(m, 1));
        tv = _mm_sub_epi32(tv, _mm_slli_epi32(mv, 7));
#endif
        /* [d0..d3 | 0] · dy: the high half of acc stays 0 for rows4_store */
        const __m256 d = _mm256_mul_ps(_mm256_cvtph_ps(_mm_loadl_epi64((const __m128i *)b)), _mm256_set1_ps(a[i].d));
        acc = _mm256_fmadd_ps(d, _mm256_cvtepi32_ps(_mm256_zextsi128_si256(tv)), acc);
    }
    return acc;
}

#define iq4_xs_GROUP(acc, b, a, nb) iq4_xs_group(acc, b, a, nb, pfd, pf)
Q4KI_KERNEL(iq4_xs, MOE_IQ4_XS_IL_BLOCK)

#define DEFINE_DOTS(t) MOE_DEFINE_VEC_DOTS(t) MOE_DEFINE_VEC_DOT_X4I(t)
DEFINE_DOTS(q2_K)
DEFINE_DOTS(q3_K)
MOE_DEFINE_VEC_DOTS(q4_K) /* their interleaved kernels are the ones above */
MOE_DEFINE_VEC_DOTS(q5_K)
DEFINE_DOTS(q6_K)
DEFINE_DOTS(q8_K)
MOE_DEFINE_VEC_DOTS(iq4_xs) /* its interleaved kernel is the one above */

/* Same bytes as moe_q8_K_from_float_ref: the same float products, rounded half to even
 * (which is what ggml's nearest_int does for |v| < 2^22), the same first-largest value. */
void moe_q8_K_from_float(const float *x, void *dst, int64_t n) {
    moe_block_q8_K *y = dst;
    const __m256 sign = _mm256_set1_ps(-0.0f);
    const __m256i perm = _mm256_setr_epi32(0, 4, 1, 5, 2, 6, 3, 7);
    const __m256i bias = _mm256_set1_epi8((char)0x80);
    for (int64_t i = 0; i < n / QK; i++, x += QK) {
        __m256 vmax = _mm256_setzero_ps();
        for (int j = 0; j < QK; j += 8) vmax = _mm256_max_ps(vmax, _mm256_andnot_ps(sign, _mm256_loadu_ps(x + j)));
        __m128 m4 = _mm_max_ps(_mm256_extractf128_ps(vmax, 1), _mm256_castps256_ps128(vmax));
        m4 = _mm_max_ps(m4, _mm_movehl_ps(m4, m4));
        m4 = _mm_max_ss(m4, _mm_movehdup_ps(m4));
        const float amax = _mm_cvtss_f32(m4);
        if (!(amax > 0)) { /* all zero (or NaN: then the reference's output is garbage too) */
            memset(&y[i], 0, sizeof y[i]);
            continue;
        }
        float max = 0;
        for (int j = 0; j < QK; j++)
            if (fabsf(x[j]) == amax) { max = x[j]; break; }
        const float iscale = -127.f / max;
        const __m256 mul = _mm256_set1_ps(iscale);
        const __m256i lim = _mm256_set1_epi32(127);
        for (int j = 0; j < QK; j += 32) {
            __m256i v[4];
            for (int k = 0; k < 4; k++) {
                __m256 f = _mm256_round_ps(_mm256_mul_ps(_mm256_loadu_ps(x + j + 8 * k), mul),
                                           _MM_FROUND_TO_NEAREST_INT | _MM_FROUND_NO_EXC);
                v[k] = _mm256_min_epi32(_mm256_cvtps_epi32(f), lim);
            }
            __m256i q = _mm256_packs_epi16(_mm256_packs_epi32(v[0], v[1]), _mm256_packs_epi32(v[2], v[3]));
            q = _mm256_permutevar8x32_epi32(q, perm);
            _mm256_storeu_si256((__m256i *)(y[i].qs + j), q);
            /* block sums: Σ(q+128) of each 8 bytes with psadbw, then remove the bias */
            const __m256i sad = _mm256_sad_epu8(_mm256_xor_si256(q, bias), _mm256_setzero_si256());
            int64_t s64[4];
            _mm256_storeu_si256((__m256i *)s64, sad);
            y[i].bsums[j / 16] = (int16_t)(s64[0] + s64[1] - 16 * 128);
            y[i].bsums[j / 16 + 1] = (int16_t)(s64[2] + s64[3] - 16 * 128);
        }
        y[i].d = 1 / iscale;
    }
}

#else /* no AVX2: the references are the fast path */

bool moe_quant_k_simd(void) { return false; }

#define DEFINE_DOTS MOE_DEFINE_REF_DOTS
DEFINE_DOTS(q2_K)
DEFINE_DOTS(q3_K)
DEFINE_DOTS(q4_K)
DEFINE_DOTS(q5_K)
DEFINE_DOTS(q6_K)
DEFINE_DOTS(q8_K)
DEFINE_DOTS(iq4_xs)
void moe_q8_K_from_float(const float *x, void *y, int64_t n) { moe_q8_K_from_float_ref(x, y, n); }

#endif
