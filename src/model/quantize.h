/* quantize.h — `moe quantize`: converting a GGUF model's weights to another type
 * (moe_quantize_file in moe.h). This header exposes the per-tensor decision so the tests
 * can check the rules on their own. */
#ifndef MOE_MODEL_QUANTIZE_H
#define MOE_MODEL_QUANTIZE_H

#include "core/common.h"

typedef enum moe_quant_action {
    MOE_QUANT_CONVERT,   /* to the target type */
    MOE_QUANT_TO_F32,    /* 1-D tensors and the router: stored as F32 */
    MOE_QUANT_KEEP,      /* copied unchanged */
} moe_quant_action;

/* What happens to a tensor (name, ggml type, shape ne[0..3]) when a model is converted to
 * `target`; *why gets a short reason for a tensor that is not converted (never NULL). */
moe_quant_action moe_quantize_plan(const char *name, int type, const int64_t ne[4], int target, const char **why);

/* llama.cpp's LLAMA_FTYPE for a file whose weights are all `type` (-1 when there is none,
 * i.e. the type is not a valid target). */
int moe_quantize_ftype(int type);

#endif
