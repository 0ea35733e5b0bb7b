/* test_matmul.c — moe_matmul / moe_matmul_prepared for every type with kernels, against a
 * double-precision product of the dequantized weights and the dequantized prepared
 * activations, over shapes that exercise the four-row kernels' remainders, the batch
 * blocking and the thread splits. */
#include "test.h"

#include "core/cpu.h" /* moe_prefetch_il_level */
#include "core/f16.h"
#include "core/gemm.h"
#include "core/matmul.h"
#include "core/threads.h"
#include "core/types.h"

#include <stdlib.h>

static uint64_t g_rng = 0x2545f4914f6cdd1dull;
static float rnd(void) {
    g_rng ^= g_rng << 13; g_rng ^= g_rng >> 7; g_rng ^= g_rng << 17;
    return (float)((double)(g_rng >> 11) / 9007199254740992.0 * 2.0 - 1.0);
}

/* Checks y (ldy) against W·x computed in double from the dequantized W and the
 * dequantized prepared activations; tolerance as for the dot kernels (1e-6·Σ|w·x|) plus
 * a little for the float lanes. Returns the worst relative error. */
static double check_product(const moe_mat *W, const void *xq, int64_t n, const float *y, int64_t ldy) {
    const moe_type_traits *t = moe_type_get(W->type), *vt = moe_type_get(t->vec_dot_type);
    const size_t xrb = moe_act_row_size(W->type, W->cols);
    float *wall = malloc((size_t)(W->rows * W->cols) * sizeof(float)), *x = malloc((size_t)W->cols * sizeof(float));
    double worst = 0;
    for (int64_t r = 0; r < W->rows && wall; r++) moe_mat_get_row(W, r, wall + r * W->cols);
    for (int64_t tok = 0; tok < n && wall && x; tok++) {
        vt->to_float((const uint8_t *)xq + (size_t)tok * xrb, x, W->cols);
        for (int64_t r = 0; r < W->rows; r++) {
            const float *w = wall + r * W->cols;
            double exact = 0, scale = 1e-30;
            for (int64_t k = 0; k < W->cols; k++) {
                exact += (double)w[k] * x[k];
                scale += fabs((double)w[k] * x[k]);
            }
            const double err = fabs(y[tok * ldy + r] - exact) / scale;
            worst = fmax(worst, err);
            /* Q4_1/Q5_1 carry F16(d·Σq) of the activation: its rounding is a format error */
            const double tol = t->vec_dot_type == MOE_TYPE_Q8_1 ? 2e-3 : 2e-6;
            if (err > tol) {
                test_fail(__FILE__, __LINE__, "%s %lldx%lld n=%lld: y[%lld,%lld] = %.8g, expected %.8g", t->name,
                          (long long)W->rows, (long long)W->cols, (long long)n, (long long)tok, (long long)r,
                          y[tok * ldy + r], exact);
                goto out;
            }
        }
    }
out:
    free(wall);
    free(x);
    return worst;
}

TEST(matmul_all_types_shapes_and_threads) {
    const struct { int64_t rows, cols, n; } shapes[] = {
        {1, 32, 1}, {3, 64, 1}, {4, 256, 1}, {7, 96, 1}, {37, 288, 1}, {130, 512, 1}, {512, 256, 1},
        {5, 64, 3}, {16, 256, 2}, {33, 160, 17}, {70, 512, 9}, {8, 256, 64},
    };
    const int threads[] = {1, 3}; /* 3: more threads than row blocks in places, and than cores here */
    for (int type = 0; type < MOE_TYPE_COUNT; type++) {
        if (moe_type_check_compute(type) != MOE_OK) continue;
        const moe_type_traits *t = moe_type_get(type);
        if (!t->from_float_ref) continue;
        double worst = 0;
        int cases = 0;
        for (size_t ti = 0; ti < MOE_ARRAY_LEN(threads); ti++) {
            moe_pool *pool = moe_pool_create(threads[ti]);
            REQUIRE(pool);
            for (size_t si = 0; si < MOE_ARRAY_LEN(shapes); si++) {
                const int64_t rows = shapes[si].rows, n = shapes[si].n;
                int64_t cols = shapes[si].cols;
                if (cols % t->block_size) cols = t->block_size * (1 + cols / t->block_size);
                const size_t rb = moe_row_size(type, cols);
                uint8_t *wq = malloc(rb * (size_t)rows);
                float *src = malloc((size_t)cols * sizeof(float)), *x = malloc((size_t)(cols * n) * sizeof(float));
                const int64_t ldy = rows + 3; /* outputs of a token are not packed */
                float *y = malloc((size_t)(ldy * n) * sizeof(float));
                REQUIRE(wq && src && x && y);
                for (int64_t r = 0; r < rows; r++) {
                    for (int64_t k = 0; k < cols; k++) src[k] = rnd() * (1.0f + (float)(r % 3));
                    t->from_float_ref(src, wq + (size_t)r * rb, cols);
                }
                for (int64_t k = 0; k < cols * n; k++) x[k] = rnd();
                for (int64_t k = 0; k < ldy * n; k++) y[k] = NAN;
                moe_mat W = moe_mat_make(wq, type, rows, cols);
                moe_buf scratch = {0};
                REQUIRE(moe_matmul(pool, y, &W, x, n, &scratch) == MOE_OK); /* ldy = rows */
                worst = fmax(worst, check_product(&W, scratch.ptr, n, y, rows));
                for (int64_t k = 0; k < ldy * n; k++) y[k] = NAN;
                moe_matmul_prepared(pool, y, ldy, &W, scratch.ptr, n);
                worst = fmax(worst, check_product(&W, scratch.ptr, n, y, ldy));
                for (int64_t tok = 0; tok < n; tok++) /* the gaps between tokens stay untouched */
                    for (int64_t k = rows; k < ldy; k++) CHECK(isnan(y[tok * ldy + k]));
                cases++;
                moe_buf_free(&scratch);
                free(wq); free(src); free(x); free(y);
            }
            moe_pool_free(pool);
        }
        fprintf(stderr, "    %-5s %d cases, worst |y - exact| / sum|w·x| = %.2e\n", t->name, cases, worst);
    }
}

TEST(matmul_refuses_types_without_kernels) {
    moe_mat W = moe_mat_make(NULL, MOE_TYPE_IQ2_XXS, 4, 256);
    moe_buf scratch = {0};
    float x[256] = {0}, y[4];
    CHECK(moe_matmul(NULL, y, &W, x, 1, &scratch) == MOE_ERR_UNSUPPORTED);
    CHECK_STR_CONTAINS(moe_last_error(), "iq2_xxs");
    moe_buf_free(&scratch);
}

/* The F16 activation conversion (vectorised) rounds like the scalar reference. */
TEST(matmul_f16_activation_conversion_rounds_to_nearest_even) {
    float x[1000];
    moe_f16 h[1000];
    for (int i = 0; i < 1000; i++) {
        uint32_t u = (uint32_t)(g_rng = g_rng * 6364136223846793005ull + 1), e = (u >> 23) & 0xff;
        if (e > 0x8e) u = (u & ~(0xffu << 23)) | (0x80u << 23); /* keep most values in range */
        x[i] = i % 10 == 0 ? moe_f32_from_bits(0x3f801000u + (uint32_t)i) : moe_f32_from_bits(u);
    }
    moe_type_get(MOE_TYPE_F16)->from_float(x, h, 1000);
    for (int i = 0; i < 1000; i++) CHECK_EQ_INT(h[i], moe_f32_to_f16_ref(x[i]));
}

/* Interleaved matrices (moe_mat_interleave) give the same rows and the same products, bit
 * for bit, through every path the model uses: the one-matrix matmul (decode and batch),
 * the fused matvec and the batch tiles; matrices that cannot be interleaved are refused
 * with a message. */
TEST(matmul_interleaved_bit_identical) {
    /* 44 × 4352 in a batch: a super-group and a part of one of a tiled layout (cpu.h,
     * MOE_IL_TILE_COLS), copied back for the batch tiles, and a last tile of 256 columns
     * (8 Q4_0 / Q8_0 blocks, 1 Q4_K block). 400 × 16640: wider than the column chunk of the
     * kernels that prepare the activations (16384 columns: X4I_CHUNK, Q4KI_CHUNK), and
     * more groups per thread than they carry between chunks (MOE_X4I_GROUPS, simd.h); 7
     * and 14 tokens: every remainder of the tiles' passes of eight */
    const struct { int64_t rows, cols, n; } shapes[] = {{4, 256, 1},   {132, 512, 1},    {512, 256, 1}, {16, 256, 2},
                                                        {68, 512, 9},  {8, 256, 64},     {400, 4352, 1}, {8, 4352, 3},
                                                        {16, 256, 7},  {8, 512, 14},     {400, 16640, 1}, {8, 16640, 2},
                                                        {44, 4352, 9}};
    moe_pool *pool = moe_pool_create(3);
    REQUIRE(pool);
    int types = 0;
    for (int type = 0; type < MOE_TYPE_COUNT; type++) {
        if (!moe_type_vec_dot_x4i(type)) continue;
        const moe_type_traits *t = moe_type_get(type);
        types++;
        for (size_t si = 0; si < MOE_ARRAY_LEN(shapes); si++) {
            const int64_t rows = shapes[si].rows, n = shapes[si].n, cols = shapes[si].cols;
            const size_t rb = moe_row_size(type, cols), bytes = rb * (size_t)rows;
            uint8_t *wq = malloc(bytes), *wi = malloc(bytes);
            float *src = malloc((size_t)(cols * n) * sizeof(float)), *ra = malloc((size_t)cols * sizeof(float)),
                  *rb_ = malloc((size_t)cols * sizeof(float)), *ya = malloc((size_t)(rows * n) * sizeof(float)),
                  *yb = malloc((size_t)(rows * n) * sizeof(float));
            void *xq = malloc(moe_act_row_size(type, cols) * (size_t)n);
            REQUIRE(wq && wi && src && ra && rb_ && ya && yb && xq);
            for (int64_t r = 0; r < rows; r++) {
                for (int64_t k = 0; k < cols; k++) src[k] = rnd() * (1.0f + (float)(r % 3));
                t->from_float_ref(src, wq + (size_t)r * rb, cols);
            }
            memcpy(wi, wq, bytes);
            moe_mat A = moe_mat_make(wq, type, rows, cols), B = moe_mat_make(wi, type, rows, cols);
            moe_buf tmp = {0};
            REQUIRE(moe_mat_can_interleave(&B) && moe_mat_interleave(&B, &tmp) == MOE_OK && B.interleaved);
            moe_buf_free(&tmp);
            CHECK(rb == t->type_size || memcmp(wq, wi, bytes) != 0); /* the bytes moved (unless one block a row) */
            CHECK(!moe_mat_can_interleave(&B));            /* not twice */
            /* rows wider than 4,096 values of the layouts of their own are in column tiles */
            const bool own = type == MOE_TYPE_Q4_0 || type == MOE_TYPE_Q8_0 || type == MOE_TYPE_Q4_K || type == MOE_TYPE_IQ4_NL ||
                             type == MOE_TYPE_Q5_K || type == MOE_TYPE_IQ4_XS ||
                             type == MOE_TYPE_Q5_0 || type == MOE_TYPE_Q4_1 || type == MOE_TYPE_Q5_1;
            CHECK_MSG(moe_mat_tiled(&B) == (own && cols > 4096), "%s %lld columns", t->name, (long long)cols);
            CHECK(moe_mat_row_unit(&B) == (moe_mat_tiled(&B) ? 32 : 4) && moe_mat_row_unit(&A) == 1);
            for (int64_t r = 0; r < rows; r++) {
                moe_mat_get_row(&A, r, ra);
                moe_mat_get_row(&B, r, rb_);
                CHECK_MSG(memcmp(ra, rb_, (size_t)cols * sizeof(float)) == 0, "%s row %lld", t->name, (long long)r);
            }
            for (int64_t k = 0; k < cols * n; k++) src[k] = rnd();
            moe_act_prepare(pool, type, src, xq, n, cols);
            moe_matmul_prepared(pool, ya, rows, &A, xq, n);
            /* at each prefetch level of the interleaved kernels (core/cpu.h) */
            const int saved_pf = moe_prefetch_il_level;
            for (int pf = MOE_PF_L1; pf <= MOE_PF_NONE; pf++) {
                moe_prefetch_il_level = pf;
                memset(yb, 0, (size_t)(rows * n) * sizeof(float));
                moe_matmul_prepared(pool, yb, rows, &B, xq, n);
                CHECK_MSG(memcmp(ya, yb, (size_t)(rows * n) * sizeof(float)) == 0, "%s %lldx%lld n=%lld matmul, prefetch %d",
                          t->name, (long long)rows, (long long)cols, (long long)n, pf);
            }
            moe_prefetch_il_level = saved_pf;
            moe_gemm_prepared(pool, yb, rows, &B, xq, n); /* tiles (batch) or the fused matvec */
            CHECK_MSG(memcmp(ya, yb, (size_t)(rows * n) * sizeof(float)) == 0, "%s %lldx%lld n=%lld gemm", t->name,
                      (long long)rows, (long long)cols, (long long)n);
            if (moe_mat_tiled(&B) && n > 1) { /* the batch's path without memory for the untiled copy */
                moe_gemm_test_no_copy = 1;
                memset(yb, 0, (size_t)(rows * n) * sizeof(float));
                moe_gemm_prepared(pool, yb, rows, &B, xq, n);
                moe_gemm_test_no_copy = 0;
                CHECK_MSG(memcmp(ya, yb, (size_t)(rows * n) * sizeof(float)) == 0,
                          "%s %lldx%lld n=%lld gemm without the copy", t->name, (long long)rows, (long long)cols, (long long)n);
            }
            free(wq); free(wi); free(src); free(ra); free(rb_); free(ya); free(yb); free(xq);
        }
    }
    moe_pool_free(pool);
    fprintf(stderr, "    %d types with interleaved kernels: rows and products bit-identical\n", types);
    /* what cannot be interleaved: 6 rows (not whole groups of four), float types */
    uint8_t buf[6 * 34 * 8] = {0};
    moe_mat odd = moe_mat_make(buf, MOE_TYPE_Q8_0, 6, 256), f16 = moe_mat_make(buf, MOE_TYPE_F16, 4, 64);
    moe_buf tmp = {0};
    CHECK(!moe_mat_can_interleave(&odd) && !moe_mat_can_interleave(&f16));
    CHECK(moe_mat_interleave(&odd, &tmp) == MOE_ERR_INVALID && !odd.interleaved);
    CHECK_MSG(strstr(moe_last_error(), "6×256 q8_0") != NULL, "%s", moe_last_error());
    moe_buf_free(&tmp);
}

/* The largest sums the kernels can meet: every quant at its largest (all bits set), the
 * scales too, against activations all at −127. Where maddubs adds int16 pairs before a
 * madd (builds without VNNI), a kernel that added too many of them would saturate here
 * and nowhere in random data; row-major (vec_dot), interleaved decode and the batch tiles
 * must still agree bit for bit. The f16 scales are set to 1 (all bits set is a NaN). */
TEST(matmul_extreme_quants_agree_across_layouts) {
    const struct { int type; size_t d_off[2]; } types[] = {
        {MOE_TYPE_Q4_K, {0, 2}}, {MOE_TYPE_Q5_K, {0, 2}}, {MOE_TYPE_IQ4_XS, {0, 0}}, {MOE_TYPE_Q4_0, {0, 0}},
        {MOE_TYPE_Q8_0, {0, 0}}, {MOE_TYPE_Q5_0, {0, 0}}, {MOE_TYPE_Q4_1, {0, 2}},
        {MOE_TYPE_Q5_1, {0, 2}}};
    const int64_t rows = 16, cols = 512, n = 8;
    moe_pool *pool = moe_pool_create(2);
    REQUIRE(pool);
    for (size_t ti = 0; ti < MOE_ARRAY_LEN(types); ti++) {
        const int type = types[ti].type;
        const moe_type_traits *t = moe_type_get(type);
        if (!moe_type_vec_dot_x4i(type)) continue; /* no interleaved kernels in this build */
        const size_t rb = moe_row_size(type, cols), bytes = rb * (size_t)rows;
        uint8_t *wa = malloc(bytes), *wb = malloc(bytes);
        float *x = malloc((size_t)(cols * n) * sizeof(float)), *ya = malloc((size_t)(rows * n) * sizeof(float)),
              *yb = malloc((size_t)(rows * n) * sizeof(float));
        void *xq = malloc(moe_act_row_size(type, cols) * (size_t)n);
        REQUIRE(wa && wb && x && ya && yb && xq);
        memset(wa, 0xFF, bytes);
        const moe_f16 one = moe_f32_to_f16(1.0f);
        for (size_t b = 0; b < bytes; b += t->type_size)
            for (int k = 0; k < 2; k++) memcpy(wa + b + types[ti].d_off[k], &one, 2);
        memcpy(wb, wa, bytes);
        for (int64_t k = 0; k < cols * n; k++) x[k] = 1.0f; /* Q8_0 / Q8_K: every quant 127 or −127 */
        moe_act_prepare(pool, type, x, xq, n, cols);
        moe_mat B = moe_mat_make(wb, type, rows, cols);
        moe_buf tmp = {0};
        REQUIRE(moe_mat_interleave(&B, &tmp) == MOE_OK);
        moe_buf_free(&tmp);
        for (int64_t tok = 0; tok < n; tok++)
            for (int64_t r = 0; r < rows; r++)
                t->vec_dot(cols, &ya[tok * rows + r], wa + (size_t)r * rb, (const uint8_t *)xq + (size_t)tok * moe_act_row_size(type, cols));
        moe_gemm_prepared(pool, yb, rows, &B, xq, n); /* the batch tiles */
        CHECK_MSG(memcmp(ya, yb, (size_t)(rows * n) * sizeof(float)) == 0, "%s: batch tile != vec_dot (%g vs %g)", t->name,
                  yb[0], ya[0]);
        moe_gemm_prepared(pool, yb, rows, &B, xq, 1); /* decode */
        CHECK_MSG(memcmp(ya, yb, (size_t)rows * sizeof(float)) == 0, "%s: interleaved decode != vec_dot", t->name);
        CHECK_MSG(isfinite(ya[0]) && ya[0] != 0, "%s: %g", t->name, ya[0]);
        free(wa); free(wb); free(x); free(ya); free(yb); free(xq);
    }
    moe_pool_free(pool);
}
