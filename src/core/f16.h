/* f16.h — IEEE half and bfloat16 conversions, bit-exact with ggml's. F16C instructions
 * where the compiler targets them, a scalar version that gives the same bits otherwise. */
#ifndef MOE_CORE_F16_H
#define MOE_CORE_F16_H

#include <stdint.h>
#include <string.h>
#if defined(__F16C__)
#include <immintrin.h>
#endif

typedef uint16_t moe_f16;
typedef uint16_t moe_bf16;

static inline float moe_f32_from_bits(uint32_t u) { float f; memcpy(&f, &u, 4); return f; }
static inline uint32_t moe_f32_bits(float f) { uint32_t u; memcpy(&u, &f, 4); return u; }

/* Scalar reference conversions (same results as the hardware instructions, round to
 * nearest even). Kept callable on their own so tests can compare both paths. */
static inline float moe_f16_to_f32_ref(moe_f16 h) {
    uint32_t sign = (uint32_t)(h & 0x8000) << 16;
    uint32_t exp = (h >> 10) & 0x1f, man = h & 0x3ff;
    uint32_t u;
    if (exp == 0) {
        if (man == 0) u = sign;
        else { /* subnormal: normalise */
            int e = -1;
            do { man <<= 1; e++; } while (!(man & 0x400));
            u = sign | ((uint32_t)(127 - 15 - e) << 23) | ((man & 0x3ff) << 13);
        }
    } else if (exp == 31) {
        /* inf, or NaN made quiet as the F16C instruction does */
        u = sign | 0x7f800000u | (man << 13) | (man ? 0x400000u : 0);
    } else {
        u = sign | ((exp + 127 - 15) << 23) | (man << 13);
    }
    return moe_f32_from_bits(u);
}

static inline moe_f16 moe_f32_to_f16_ref(float f) {
    uint32_t x = moe_f32_bits(f);
    uint32_t sign = (x >> 16) & 0x8000;
    uint32_t absx = x & 0x7fffffffu;
    if (absx > 0x7f800000u) return (moe_f16)(sign | 0x7e00 | ((absx >> 13) & 0x3ff)); /* NaN */
    if (absx >= 0x477ff000u) return (moe_f16)(sign | 0x7c00); /* overflow → inf (incl. rounding) */
    if (absx < 0x38800000u) { /* result is subnormal or zero */
        if (absx < 0x33000000u) return (moe_f16)sign; /* < half of the smallest subnormal */
        uint32_t e = absx >> 23;
        uint32_t m = (absx & 0x7fffff) | 0x800000;
        uint32_t shift = 126 - e; /* 14 + (113 - e) */
        uint32_t r = m >> shift;
        uint32_t rem = m & ((1u << shift) - 1), half = 1u << (shift - 1);
        if (rem > half || (rem == half && (r & 1))) r++;
        return (moe_f16)(sign | r);
    }
    uint32_t r = absx - 0x38000000u; /* rebias exponent 127 → 15 */
    uint32_t out = r >> 13;
    uint32_t rem = r & 0x1fff;
    if (rem > 0x1000 || (rem == 0x1000 && (out & 1))) out++;
    return (moe_f16)(sign | out);
}

static inline float moe_f16_to_f32(moe_f16 h) {
#if defined(__F16C__)
    return _cvtsh_ss(h);
#else
    return moe_f16_to_f32_ref(h);
#endif
}

static inline moe_f16 moe_f32_to_f16(float f) {
#if defined(__F16C__)
    return (moe_f16)_cvtss_sh(f, 0);
#else
    return moe_f32_to_f16_ref(f);
#endif
}

static inline float moe_bf16_to_f32(moe_bf16 h) { return moe_f32_from_bits((uint32_t)h << 16); }

/* Round to nearest even; NaNs stay quiet NaNs (ggml_compute_fp32_to_bf16). */
static inline moe_bf16 moe_f32_to_bf16(float f) {
    uint32_t u = moe_f32_bits(f);
    if ((u & 0x7fffffffu) > 0x7f800000u) return (moe_bf16)((u >> 16) | 64);
    return (moe_bf16)((u + (0x7fffu + ((u >> 16) & 1))) >> 16);
}

#endif
