/* quant_float.c — F32, F16 and BF16: conversions and dot products (scalar references;
 * SIMD versions beside them). F16 weights are multiplied with F16 activations and BF16
 * with BF16, as llama.cpp's CPU backend does. */
#include "core/quant_float.h"
#include "core/f16.h"

void moe_f32_to_float(const void *src, float *dst, int64_t n) { memcpy(dst, src, (size_t)n * 4); }
void moe_f32_from_float(const float *src, void *dst, int64_t n) { memcpy(dst, src, (size_t)n * 4); }

void moe_f32_vec_dot_ref(int64_t n, float *s, const void *vx, const void *vy) {
    const float *x = vx, *y = vy;
    double acc = 0; /* the reference sums in double: it is the yardstick, not the fast path */
    for (int64_t i = 0; i < n; i++) acc += (double)x[i] * (double)y[i];
    *s = (float)acc;
}

void moe_f16_to_float(const void *src, float *dst, int64_t n) {
    const moe_f16 *x = src;
    for (int64_t i = 0; i < n; i++) dst[i] = moe_f16_to_f32(x[i]);
}
void moe_f16_from_float(const float *src, void *dst, int64_t n) {
    moe_f16 *y = dst;
    for (int64_t i = 0; i < n; i++) y[i] = moe_f32_to_f16(src[i]);
}
void moe_f16_vec_dot_ref(int64_t n, float *s, const void *vx, const void *vy) {
    const moe_f16 *x = vx, *y = vy;
    double acc = 0;
    for (int64_t i = 0; i < n; i++) acc += (double)moe_f16_to_f32(x[i]) * (double)moe_f16_to_f32(y[i]);
    *s = (float)acc;
}

void moe_bf16_to_float(const void *src, float *dst, int64_t n) {
    const moe_bf16 *x = src;
    for (int64_t i = 0; i < n; i++) dst[i] = moe_bf16_to_f32(x[i]);
}
void moe_bf16_from_float(const float *src, void *dst, int64_t n) {
    moe_bf16 *y = dst;
    for (int64_t i = 0; i < n; i++) y[i] = moe_f32_to_bf16(src[i]);
}
void moe_bf16_vec_dot_ref(int64_t n, float *s, const void *vx, const void *vy) {
    const moe_bf16 *x = vx, *y = vy;
    double acc = 0;
    for (int64_t i = 0; i < n; i++) acc += (double)moe_bf16_to_f32(x[i]) * (double)moe_bf16_to_f32(y[i]);
    *s = (float)acc;
}

/* Fast paths: plain float loops with independent accumulators the compiler vectorises;
 * hand-written AVX2 versions may replace them. */
#define DOT_LOOP(conv)                                                        \
    float acc[8] = {0};                                                       \
    int64_t i = 0;                                                            \
    for (; i + 8 <= n; i += 8)                                                \
        for (int k = 0; k < 8; k++) acc[k] += conv(x[i + k]) * conv(y[i + k]); \
    float sum = 0;                                                            \
    for (; i < n; i++) sum += conv(x[i]) * conv(y[i]);                        \
    for (int k = 0; k < 8; k++) sum += acc[k];                                \
    *s = sum;

#define IDENT(v) (v)
void moe_f32_vec_dot(int64_t n, float *s, const void *vx, const void *vy) {
    const float *x = vx, *y = vy;
    DOT_LOOP(IDENT)
}
void moe_f16_vec_dot(int64_t n, float *s, const void *vx, const void *vy) {
    const moe_f16 *x = vx, *y = vy;
    DOT_LOOP(moe_f16_to_f32)
}
void moe_bf16_vec_dot(int64_t n, float *s, const void *vx, const void *vy) {
    const moe_bf16 *x = vx, *y = vy;
    DOT_LOOP(moe_bf16_to_f32)
}
