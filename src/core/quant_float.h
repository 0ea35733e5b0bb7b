/* quant_float.h — kernels of the float types F32, F16 and BF16. _ref: scalar dot summed
 * in double (the yardstick); plain: AVX2+FMA(+F16C) where compiled in; _x4: four weight
 * rows, bx bytes apart, against one activation row (s[0..3]). */
#ifndef MOE_CORE_QUANT_FLOAT_H
#define MOE_CORE_QUANT_FLOAT_H

#include "core/common.h"

void moe_f32_to_float(const void *src, float *dst, int64_t n);
void moe_f32_from_float(const float *src, void *dst, int64_t n);
void moe_f32_vec_dot(int64_t n, float *s, const void *x, const void *y);
void moe_f32_vec_dot_ref(int64_t n, float *s, const void *x, const void *y);
void moe_f32_vec_dot_x4(int64_t n, float *s, const void *x, size_t bx, const void *y);

void moe_f16_to_float(const void *src, float *dst, int64_t n);
void moe_f16_from_float(const float *src, void *dst, int64_t n);
void moe_f16_vec_dot(int64_t n, float *s, const void *x, const void *y);
void moe_f16_vec_dot_ref(int64_t n, float *s, const void *x, const void *y);
void moe_f16_vec_dot_x4(int64_t n, float *s, const void *x, size_t bx, const void *y);

void moe_bf16_to_float(const void *src, float *dst, int64_t n);
void moe_bf16_from_float(const float *src, void *dst, int64_t n);
void moe_bf16_vec_dot(int64_t n, float *s, const void *x, const void *y);
void moe_bf16_vec_dot_ref(int64_t n, float *s, const void *x, const void *y);
void moe_bf16_vec_dot_x4(int64_t n, float *s, const void *x, size_t bx, const void *y);

#endif
