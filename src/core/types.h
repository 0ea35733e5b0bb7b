/* types.h — tensor element types with ggml's ids and block layouts, and the table of
 * their kernels (dequantize, quantize, dot product against the activation type). */
#ifndef MOE_CORE_TYPES_H
#define MOE_CORE_TYPES_H

#include "core/common.h"

/* ggml's type ids (ggml.h). Gaps are ids ggml retired; they are invalid in files. */
typedef enum moe_type {
    MOE_TYPE_F32 = 0, MOE_TYPE_F16 = 1, MOE_TYPE_Q4_0 = 2, MOE_TYPE_Q4_1 = 3,
    MOE_TYPE_Q5_0 = 6, MOE_TYPE_Q5_1 = 7, MOE_TYPE_Q8_0 = 8, MOE_TYPE_Q8_1 = 9,
    MOE_TYPE_Q2_K = 10, MOE_TYPE_Q3_K = 11, MOE_TYPE_Q4_K = 12, MOE_TYPE_Q5_K = 13,
    MOE_TYPE_Q6_K = 14, MOE_TYPE_Q8_K = 15,
    MOE_TYPE_IQ2_XXS = 16, MOE_TYPE_IQ2_XS = 17, MOE_TYPE_IQ3_XXS = 18, MOE_TYPE_IQ1_S = 19,
    MOE_TYPE_IQ4_NL = 20, MOE_TYPE_IQ3_S = 21, MOE_TYPE_IQ2_S = 22, MOE_TYPE_IQ4_XS = 23,
    MOE_TYPE_I8 = 24, MOE_TYPE_I16 = 25, MOE_TYPE_I32 = 26, MOE_TYPE_I64 = 27,
    MOE_TYPE_F64 = 28, MOE_TYPE_IQ1_M = 29, MOE_TYPE_BF16 = 30,
    MOE_TYPE_TQ1_0 = 34, MOE_TYPE_TQ2_0 = 35, MOE_TYPE_MXFP4 = 39,
    MOE_TYPE_COUNT = 40
} moe_type;

/* Dequantize n values (n a multiple of the block size). */
typedef void (*moe_to_float_fn)(const void *src, float *dst, int64_t n);
/* Quantize n values (n a multiple of the block size). */
typedef void (*moe_from_float_fn)(const float *src, void *dst, int64_t n);
/* *s = dot(x, y) over n values: x of this type, y of the type's vec_dot_type. */
typedef void (*moe_vec_dot_fn)(int64_t n, float *s, const void *x, const void *y);
/* s[0..3] = dot(x row r, y) for four rows of x, bx bytes apart: the matmul's fast path
 * (each activation block is loaded once for four weight rows). */
typedef void (*moe_vec_dot_x4_fn)(int64_t n, float *s, const void *x, size_t bx, const void *y);
/* s[0 .. 4·ngroups) for ngroups consecutive groups of four rows interleaved by
 * moe_mat_interleave (core/matmul.h), each 4·bx bytes: one call for a thread's whole
 * share of a matrix, so that a kernel may prepare the activation row once per call. */
typedef void (*moe_vec_dot_x4i_fn)(int64_t n, float *s, const void *x, size_t bx, const void *y, int64_t ngroups);

typedef struct moe_type_traits {
    const char *name;          /* ggml's name: "f32", "q4_K", ... */
    int64_t block_size;        /* values per block */
    size_t type_size;          /* bytes per block */
    bool is_quantized;
    /* Kernels; NULL where moe.c cannot compute with the type (the IQ family, ...). */
    moe_to_float_fn to_float;
    moe_from_float_fn from_float;      /* fastest quantizer (the activation path) */
    moe_from_float_fn from_float_ref;  /* llama.cpp's reference quantizer (files) */
    moe_vec_dot_fn vec_dot;            /* fastest available (SIMD) */
    moe_vec_dot_fn vec_dot_ref;        /* scalar reference */
    moe_type vec_dot_type;             /* what activations are converted to */
} moe_type_traits;

/* NULL for ids that are not a ggml type (no error recorded). */
const moe_type_traits *moe_type_get(int type);
/* "q4_K" for a known id, "type 31" style text otherwise (static buffer per thread). */
const char *moe_type_name(int type);
/* The id for a name as ggml spells it (case-insensitive), or -1. */
int moe_type_from_name(const char *name);
/* Bytes of a row of n values; n must be a multiple of the block size. */
size_t moe_row_size(moe_type t, int64_t n);
/* The type's four-row dot kernel, or NULL (the matmul then calls vec_dot row by row).
 * A table of its own beside the traits (types.c), so that adding one is a one-line edit. */
moe_vec_dot_x4_fn moe_type_vec_dot_x4(int type);
/* The four-row kernel on rows interleaved by moe_mat_interleave (core/matmul.h), or NULL
 * where the type's matrices cannot be interleaved (float types, builds without SIMD). */
moe_vec_dot_x4i_fn moe_type_vec_dot_x4i(int type);
/* MOE_OK if tensors of type t can be computed with (dequantized and multiplied); else an
 * error naming the type, e.g. "type iq2_xxs is not supported yet (IQ quants)". */
moe_status moe_type_check_compute(int type);

#endif
