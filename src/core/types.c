/* types.c — the table of element types: ggml's names and block sizes, and the kernels
 * each type has (filled in by the quant files). */
#include "core/types.h"
#include "core/quant_float.h"
#include "core/quant_legacy.h"
#include "core/quant_k.h"

#include <stdio.h>
#include <strings.h>

/* Block sizes and bytes per block follow ggml-common.h. */
static const moe_type_traits g_types[MOE_TYPE_COUNT] = {
    [MOE_TYPE_F32]     = {"f32", 1, 4, false, moe_f32_to_float, moe_f32_from_float, moe_f32_from_float,
                          moe_f32_vec_dot, moe_f32_vec_dot_ref, MOE_TYPE_F32},
    [MOE_TYPE_F16]     = {"f16", 1, 2, false, moe_f16_to_float, moe_f16_from_float, moe_f16_from_float,
                          moe_f16_vec_dot, moe_f16_vec_dot_ref, MOE_TYPE_F16},
    [MOE_TYPE_Q4_0]    = {"q4_0", 32, 18, true, moe_q4_0_to_float, moe_q4_0_quantize_ref, moe_q4_0_quantize_ref,
                          moe_q4_0_vec_dot, moe_q4_0_vec_dot_ref, MOE_TYPE_Q8_0},
    [MOE_TYPE_Q4_1]    = {"q4_1", 32, 20, true, moe_q4_1_to_float, moe_q4_1_quantize_ref, moe_q4_1_quantize_ref,
                          moe_q4_1_vec_dot, moe_q4_1_vec_dot_ref, MOE_TYPE_Q8_1},
    [MOE_TYPE_Q5_0]    = {"q5_0", 32, 22, true, moe_q5_0_to_float, moe_q5_0_quantize_ref, moe_q5_0_quantize_ref,
                          moe_q5_0_vec_dot, moe_q5_0_vec_dot_ref, MOE_TYPE_Q8_0},
    [MOE_TYPE_Q5_1]    = {"q5_1", 32, 24, true, moe_q5_1_to_float, moe_q5_1_quantize_ref, moe_q5_1_quantize_ref,
                          moe_q5_1_vec_dot, moe_q5_1_vec_dot_ref, MOE_TYPE_Q8_1},
    /* Q8_0 is also the activation type: from_float is the activation quantizer (ggml's
     * SIMD rounding), from_float_ref the file quantizer (quant_legacy.h) */
    [MOE_TYPE_Q8_0]    = {"q8_0", 32, 34, true, moe_q8_0_to_float, moe_q8_0_quantize, moe_q8_0_quantize_ref,
                          moe_q8_0_vec_dot, moe_q8_0_vec_dot_ref, MOE_TYPE_Q8_0},
    /* Q8_1 only carries activations (no weights of this type, so no dot product) */
    [MOE_TYPE_Q8_1]    = {"q8_1", 32, 36, true, moe_q8_1_to_float, moe_q8_1_quantize, moe_q8_1_quantize_ref,
                          NULL, NULL, MOE_TYPE_Q8_1},
    [MOE_TYPE_Q2_K]    = {"q2_K", 256, 84, true, moe_q2_K_to_float, moe_q2_K_from_float_ref, moe_q2_K_from_float_ref,
                          moe_q2_K_vec_dot, moe_q2_K_vec_dot_ref, MOE_TYPE_Q8_K},
    [MOE_TYPE_Q3_K]    = {"q3_K", 256, 110, true, moe_q3_K_to_float, moe_q3_K_from_float_ref, moe_q3_K_from_float_ref,
                          moe_q3_K_vec_dot, moe_q3_K_vec_dot_ref, MOE_TYPE_Q8_K},
    [MOE_TYPE_Q4_K]    = {"q4_K", 256, 144, true, moe_q4_K_to_float, moe_q4_K_from_float_ref, moe_q4_K_from_float_ref,
                          moe_q4_K_vec_dot, moe_q4_K_vec_dot_ref, MOE_TYPE_Q8_K},
    [MOE_TYPE_Q5_K]    = {"q5_K", 256, 176, true, moe_q5_K_to_float, moe_q5_K_from_float_ref, moe_q5_K_from_float_ref,
                          moe_q5_K_vec_dot, moe_q5_K_vec_dot_ref, MOE_TYPE_Q8_K},
    [MOE_TYPE_Q6_K]    = {"q6_K", 256, 210, true, moe_q6_K_to_float, moe_q6_K_from_float_ref, moe_q6_K_from_float_ref,
                          moe_q6_K_vec_dot, moe_q6_K_vec_dot_ref, MOE_TYPE_Q8_K},
    [MOE_TYPE_Q8_K]    = {"q8_K", 256, 292, true, moe_q8_K_to_float, moe_q8_K_from_float, moe_q8_K_from_float_ref,
                          moe_q8_K_vec_dot, moe_q8_K_vec_dot_ref, MOE_TYPE_Q8_K},
    [MOE_TYPE_IQ2_XXS] = {"iq2_xxs", 256, 66, true, NULL, NULL, NULL, NULL, NULL, MOE_TYPE_Q8_K},
    [MOE_TYPE_IQ2_XS]  = {"iq2_xs", 256, 74, true, NULL, NULL, NULL, NULL, NULL, MOE_TYPE_Q8_K},
    [MOE_TYPE_IQ3_XXS] = {"iq3_xxs", 256, 98, true, NULL, NULL, NULL, NULL, NULL, MOE_TYPE_Q8_K},
    [MOE_TYPE_IQ1_S]   = {"iq1_s", 256, 50, true, NULL, NULL, NULL, NULL, NULL, MOE_TYPE_Q8_K},
    [MOE_TYPE_IQ4_NL]  = {"iq4_nl", 32, 18, true, moe_iq4_nl_to_float, moe_iq4_nl_quantize_ref, moe_iq4_nl_quantize_ref,
                          moe_iq4_nl_vec_dot, moe_iq4_nl_vec_dot_ref, MOE_TYPE_Q8_0},
    [MOE_TYPE_IQ3_S]   = {"iq3_s", 256, 110, true, NULL, NULL, NULL, NULL, NULL, MOE_TYPE_Q8_K},
    [MOE_TYPE_IQ2_S]   = {"iq2_s", 256, 82, true, NULL, NULL, NULL, NULL, NULL, MOE_TYPE_Q8_K},
    [MOE_TYPE_IQ4_XS]  = {"iq4_xs", 256, 136, true, moe_iq4_xs_to_float, moe_iq4_xs_from_float_ref,
                          moe_iq4_xs_from_float_ref, moe_iq4_xs_vec_dot, moe_iq4_xs_vec_dot_ref, MOE_TYPE_Q8_K},
    [MOE_TYPE_I8]      = {"i8", 1, 1, false, NULL, NULL, NULL, NULL, NULL, MOE_TYPE_I8},
    [MOE_TYPE_I16]     = {"i16", 1, 2, false, NULL, NULL, NULL, NULL, NULL, MOE_TYPE_I16},
    [MOE_TYPE_I32]     = {"i32", 1, 4, false, NULL, NULL, NULL, NULL, NULL, MOE_TYPE_I32},
    [MOE_TYPE_I64]     = {"i64", 1, 8, false, NULL, NULL, NULL, NULL, NULL, MOE_TYPE_I64},
    [MOE_TYPE_F64]     = {"f64", 1, 8, false, NULL, NULL, NULL, NULL, NULL, MOE_TYPE_F64},
    [MOE_TYPE_IQ1_M]   = {"iq1_m", 256, 56, true, NULL, NULL, NULL, NULL, NULL, MOE_TYPE_Q8_K},
    [MOE_TYPE_BF16]    = {"bf16", 1, 2, false, moe_bf16_to_float, moe_bf16_from_float, moe_bf16_from_float,
                          moe_bf16_vec_dot, moe_bf16_vec_dot_ref, MOE_TYPE_BF16},
    [MOE_TYPE_TQ1_0]   = {"tq1_0", 256, 54, true, NULL, NULL, NULL, NULL, NULL, MOE_TYPE_Q8_K},
    [MOE_TYPE_TQ2_0]   = {"tq2_0", 256, 66, true, NULL, NULL, NULL, NULL, NULL, MOE_TYPE_Q8_K},
    [MOE_TYPE_MXFP4]   = {"mxfp4", 32, 17, true, NULL, NULL, NULL, NULL, NULL, MOE_TYPE_Q8_0},
};

/* Four-row dot kernels (matmul's fast path); one line per type that has one. */
static const moe_vec_dot_x4_fn g_dot_x4[MOE_TYPE_COUNT] = {
    [MOE_TYPE_F32] = moe_f32_vec_dot_x4,
    [MOE_TYPE_F16] = moe_f16_vec_dot_x4,
    [MOE_TYPE_BF16] = moe_bf16_vec_dot_x4,
    [MOE_TYPE_Q4_0] = moe_q4_0_vec_dot_x4,
    [MOE_TYPE_Q4_1] = moe_q4_1_vec_dot_x4,
    [MOE_TYPE_Q5_0] = moe_q5_0_vec_dot_x4,
    [MOE_TYPE_Q5_1] = moe_q5_1_vec_dot_x4,
    [MOE_TYPE_Q8_0] = moe_q8_0_vec_dot_x4,
    [MOE_TYPE_IQ4_NL] = moe_iq4_nl_vec_dot_x4,
    [MOE_TYPE_Q2_K] = moe_q2_K_vec_dot_x4,
    [MOE_TYPE_Q3_K] = moe_q3_K_vec_dot_x4,
    [MOE_TYPE_Q4_K] = moe_q4_K_vec_dot_x4,
    [MOE_TYPE_Q5_K] = moe_q5_K_vec_dot_x4,
    [MOE_TYPE_Q6_K] = moe_q6_K_vec_dot_x4,
    [MOE_TYPE_Q8_K] = moe_q8_K_vec_dot_x4,
    [MOE_TYPE_IQ4_XS] = moe_iq4_xs_vec_dot_x4,
};

moe_vec_dot_x4_fn moe_type_vec_dot_x4(int type) {
    return type >= 0 && type < MOE_TYPE_COUNT ? g_dot_x4[type] : NULL;
}

/* The same kernels on interleaved rows: the quantized weight types, where the SIMD
 * kernels are compiled in (the conditions of quant_legacy.c and quant_k_avx2.c). */
#if defined(__AVX2__) && defined(__FMA__) && defined(__F16C__)
static const moe_vec_dot_x4i_fn g_dot_x4i[MOE_TYPE_COUNT] = {
    [MOE_TYPE_Q4_0] = moe_q4_0_vec_dot_x4i,
    [MOE_TYPE_Q4_1] = moe_q4_1_vec_dot_x4i,
    [MOE_TYPE_Q5_0] = moe_q5_0_vec_dot_x4i,
    [MOE_TYPE_Q5_1] = moe_q5_1_vec_dot_x4i,
    [MOE_TYPE_Q8_0] = moe_q8_0_vec_dot_x4i,
    [MOE_TYPE_IQ4_NL] = moe_iq4_nl_vec_dot_x4i,
    [MOE_TYPE_Q2_K] = moe_q2_K_vec_dot_x4i,
    [MOE_TYPE_Q3_K] = moe_q3_K_vec_dot_x4i,
    [MOE_TYPE_Q4_K] = moe_q4_K_vec_dot_x4i,
    [MOE_TYPE_Q5_K] = moe_q5_K_vec_dot_x4i,
    [MOE_TYPE_Q6_K] = moe_q6_K_vec_dot_x4i,
    [MOE_TYPE_Q8_K] = moe_q8_K_vec_dot_x4i,
    [MOE_TYPE_IQ4_XS] = moe_iq4_xs_vec_dot_x4i,
};
#endif

moe_vec_dot_x4i_fn moe_type_vec_dot_x4i(int type) {
#if defined(__AVX2__) && defined(__FMA__) && defined(__F16C__)
    return type >= 0 && type < MOE_TYPE_COUNT ? g_dot_x4i[type] : NULL;
#else
    (void)type;
    return NULL;
#endif
}

const moe_type_traits *moe_type_get(int type) {
    if (type < 0 || type >= MOE_TYPE_COUNT || !g_types[type].name) return NULL;
    return &g_types[type];
}

const char *moe_type_name(int type) {
    const moe_type_traits *t = moe_type_get(type);
    if (t) return t->name;
    static _Thread_local char buf[32];
    snprintf(buf, sizeof buf, "type %d", type);
    return buf;
}

int moe_type_from_name(const char *name) {
    for (int i = 0; i < MOE_TYPE_COUNT; i++)
        if (g_types[i].name && strcasecmp(g_types[i].name, name) == 0) return i;
    return -1;
}

size_t moe_row_size(moe_type t, int64_t n) {
    const moe_type_traits *tt = moe_type_get(t);
    return tt ? (size_t)(n / tt->block_size) * tt->type_size : 0;
}

moe_status moe_type_check_compute(int type) {
    const moe_type_traits *t = moe_type_get(type);
    if (!t) return moe_error(MOE_ERR_UNSUPPORTED, "unknown tensor type id %d", type);
    if (!t->to_float || !t->vec_dot)
        return moe_error(MOE_ERR_UNSUPPORTED, "tensor type %s is not supported yet%s", t->name,
                         t->name[0] == 'i' && t->name[1] == 'q' ? " (of the IQ quants only iq4_nl and iq4_xs are implemented)" : "");
    return MOE_OK;
}
