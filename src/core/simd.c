/* simd.c — the F16 → F32 table of simd.h, filled once when the library loads. */
#include "core/f16.h"

float moe_f16_table[1 << 16];

__attribute__((constructor)) static void init_f16_table(void) {
    for (uint32_t h = 0; h < (1u << 16); h++) moe_f16_table[h] = moe_f16_to_f32((moe_f16)h);
}
