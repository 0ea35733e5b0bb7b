/* test_quant_k.c — the K-quants (Q2_K … Q6_K, Q8_K): SIMD dots against the scalar
 * references and against dequantized values, quantize→dequantize error bounds, the
 * llama.cpp fixtures (dequantized against the F16 model, and requantized from the
 * regenerated F32 original byte for byte), and the refusal of IQ types. */
#include "test.h"
#include "moe.h"
#include "core/matmul.h"
#include "core/quant_k.h"
#include "core/types.h"

#include <stdlib.h>

static const int K_TYPES[] = {MOE_TYPE_Q2_K, MOE_TYPE_Q3_K, MOE_TYPE_Q4_K, MOE_TYPE_Q5_K,
                              MOE_TYPE_Q6_K, MOE_TYPE_Q8_K, MOE_TYPE_IQ4_XS};

/* splitmix64 + Box-Muller: reproducible data without libc's rand. */
static uint64_t rng_next(uint64_t *s) {
    uint64_t z = (*s += 0x9e3779b97f4a7c15ull);
    z = (z ^ (z >> 30)) * 0xbf58476d1ce4e5b9ull;
    z = (z ^ (z >> 27)) * 0x94d049bb133111ebull;
    return z ^ (z >> 31);
}
static double rng_unif(uint64_t *s) { return ((rng_next(s) >> 11) + 0.5) * (1.0 / 9007199254740992.0); }
static float rng_gauss(uint64_t *s) {
    double u = rng_unif(s), v = rng_unif(s);
    return (float)(sqrt(-2.0 * log(u)) * cos(6.283185307179586 * v));
}
static void fill_gauss(float *x, int64_t n, uint64_t seed, float scale) {
    for (int64_t i = 0; i < n; i++) x[i] = scale * rng_gauss(&seed);
}

/* A row of random bits in the layout of `type`, with sane f16 scales (random bytes there
 * would make infinities): exercises every quant and sub-scale pattern, unlike rows that
 * come out of the quantizer. */
static void fill_random_blocks(int type, void *row, int64_t n, uint64_t seed) {
    const moe_type_traits *t = moe_type_get(type);
    uint8_t *p = row;
    size_t bytes = moe_row_size(type, n);
    for (size_t i = 0; i < bytes; i++) p[i] = (uint8_t)rng_next(&seed);
    for (int64_t b = 0; b < n / t->block_size; b++) {
        uint8_t *blk = p + (size_t)b * t->type_size;
        moe_f16 d = moe_f32_to_f16((float)(rng_unif(&seed) * 0.01)), dm = moe_f32_to_f16((float)(rng_unif(&seed) * 0.01));
        switch (type) {
        case MOE_TYPE_Q2_K: memcpy(blk + offsetof(moe_block_q2_K, d), &d, 2); memcpy(blk + offsetof(moe_block_q2_K, dmin), &dm, 2); break;
        case MOE_TYPE_Q3_K: memcpy(blk + offsetof(moe_block_q3_K, d), &d, 2); break;
        case MOE_TYPE_Q4_K: memcpy(blk + offsetof(moe_block_q4_K, d), &d, 2); memcpy(blk + offsetof(moe_block_q4_K, dmin), &dm, 2); break;
        case MOE_TYPE_Q5_K: memcpy(blk + offsetof(moe_block_q5_K, d), &d, 2); memcpy(blk + offsetof(moe_block_q5_K, dmin), &dm, 2); break;
        case MOE_TYPE_Q6_K: memcpy(blk + offsetof(moe_block_q6_K, d), &d, 2); break;
        case MOE_TYPE_IQ4_XS: memcpy(blk + offsetof(moe_block_iq4_xs, d), &d, 2); break;
        default: break;
        }
    }
}

/* Σ deq(x)·deq(y) in double and Σ|deq(x)·deq(y)|: the dot computed through the
 * dequantizers, an independent yardstick for both dot kernels. */
static void dot_via_dequant(int type, int64_t n, const void *x, const void *y, double *dot, double *mag) {
    float *fx = malloc((size_t)n * sizeof *fx), *fy = malloc((size_t)n * sizeof *fy);
    moe_type_get(type)->to_float(x, fx, n);
    moe_q8_K_to_float(y, fy, n);
    double s = 0, m = 0;
    for (int64_t i = 0; i < n; i++) {
        s += (double)fx[i] * fy[i];
        m += fabs((double)fx[i] * fy[i]);
    }
    *dot = s;
    *mag = m;
    free(fx);
    free(fy);
}

/* Tolerance of both dots: float rounding of one product per super-block and of their sum,
 * relative to Σ|terms|: 1e-5 (observed ≤ 1e-6; a wrong bit or scale gives O(1) errors). */
#define DOT_RTOL 1e-5

TEST(quant_k_simd_dot_matches_reference) {
    if (!moe_quant_k_simd()) printf("    built without AVX2+FMA: the fast dots are the references\n");
    const int64_t lens[] = {256, 512, 2816, 4096, 11008};
    for (size_t ti = 0; ti < MOE_ARRAY_LEN(K_TYPES); ti++) {
        const int type = K_TYPES[ti];
        const moe_type_traits *t = moe_type_get(type);
        REQUIRE(t && t->vec_dot && t->vec_dot_ref && t->vec_dot_type == MOE_TYPE_Q8_K);
        double worst = 0;
        for (size_t li = 0; li < MOE_ARRAY_LEN(lens); li++) {
            const int64_t n = lens[li];
            float *xf = malloc((size_t)n * 4), *yf = malloc((size_t)n * 4);
            void *xq = malloc(moe_row_size(type, n)), *yq = malloc(moe_row_size(MOE_TYPE_Q8_K, n));
            for (int kind = 0; kind < 2; kind++) {
                uint64_t seed = 1000 * ti + 10 * li + kind;
                fill_gauss(yf, n, seed + 7, 1.0f);
                moe_q8_K_from_float(yf, yq, n);
                if (kind == 0) {
                    fill_gauss(xf, n, seed, 0.05f);
                    t->from_float_ref(xf, xq, n);
                } else if (type != MOE_TYPE_Q8_K) {
                    fill_random_blocks(type, xq, n, seed);
                } else {
                    fill_gauss(xf, n, seed, 3.0f);
                    moe_q8_K_from_float(xf, xq, n);
                }
                float s_simd = 0, s_ref = 0;
                double yard, mag;
                t->vec_dot(n, &s_simd, xq, yq);
                t->vec_dot_ref(n, &s_ref, xq, yq);
                dot_via_dequant(type, n, xq, yq, &yard, &mag);
                const double tol = DOT_RTOL * mag + 1e-30;
                CHECK_MSG(fabs(s_simd - s_ref) <= tol, "%s n=%lld kind=%d: simd %.9g ref %.9g (tol %.3g)", t->name,
                          (long long)n, kind, s_simd, s_ref, tol);
                CHECK_MSG(fabs(s_ref - yard) <= tol, "%s n=%lld kind=%d: ref %.9g dequantized %.9g (tol %.3g)", t->name,
                          (long long)n, kind, s_ref, yard, tol);
                if (mag > 0) worst = MOE_MAX(worst, fabs(s_simd - s_ref) / mag);
            }
            free(xf);
            free(yf);
            free(xq);
            free(yq);
        }
        printf("    %-5s simd vs reference dot: max |diff|/Σ|terms| = %.2e\n", t->name, worst);
    }
}

/* The four-row kernels (matmul's fast path) give the single-row sums bit for bit. */
TEST(quant_k_four_row_dot_equals_single_rows) {
    const int64_t n = 2048;
    float *yf = malloc(n * 4);
    void *yq = malloc(moe_row_size(MOE_TYPE_Q8_K, n));
    fill_gauss(yf, n, 99, 1.0f);
    moe_q8_K_from_float(yf, yq, n);
    for (size_t ti = 0; ti < MOE_ARRAY_LEN(K_TYPES); ti++) {
        const int type = K_TYPES[ti];
        const moe_type_traits *t = moe_type_get(type);
        const moe_vec_dot_x4_fn dot4 = moe_type_vec_dot_x4(type);
        REQUIRE_MSG(dot4, "%s has no four-row kernel", t->name);
        const size_t rb = moe_row_size(type, n) + 2 * t->type_size; /* rows not packed */
        uint8_t *w = malloc(4 * rb);
        for (int r = 0; r < 4; r++) {
            if (type == MOE_TYPE_Q8_K) {
                fill_gauss(yf, n, 200 + (uint64_t)r, 2.0f);
                moe_q8_K_from_float(yf, w + r * rb, n);
            } else {
                fill_random_blocks(type, w + r * rb, n, 300 + (uint64_t)r);
            }
        }
        float s4[4], s1;
        dot4(n, s4, w, rb, yq);
        for (int r = 0; r < 4; r++) {
            t->vec_dot(n, &s1, w + r * rb, yq);
            CHECK_MSG(memcmp(&s1, &s4[r], 4) == 0, "%s row %d: four-row %.9g, single %.9g", t->name, r, s4[r], s1);
        }
        free(w);
    }
    free(yf);
    free(yq);
}

TEST(quant_k_q8_K_simd_quantizer_is_bit_exact) {
    const int64_t n = 4096;
    float *x = malloc(n * 4);
    uint8_t *a = malloc(moe_row_size(MOE_TYPE_Q8_K, n)), *b = malloc(moe_row_size(MOE_TYPE_Q8_K, n));
    for (int rep = 0; rep < 8; rep++) {
        fill_gauss(x, n, 77 + (uint64_t)rep, rep == 0 ? 1e-3f : 10.0f);
        if (rep == 1) memset(x, 0, 256 * 4);                       /* an all-zero block */
        if (rep == 2) { x[5] = 100.f; x[9] = -100.f; }             /* ±max tie: first one wins */
        if (rep == 3) { x[300] = -100.f; x[301] = 100.f; }
        if (rep == 4) for (int i = 0; i < 256; i++) x[i] = (float)(i % 7) - 3.f; /* rounding ties */
        moe_q8_K_from_float(x, a, n);
        moe_q8_K_from_float_ref(x, b, n);
        CHECK_MSG(memcmp(a, b, moe_row_size(MOE_TYPE_Q8_K, n)) == 0, "rep %d: SIMD Q8_K bytes differ from the reference", rep);
        /* bsums are the sums of the quants (the dots rely on it) */
        const moe_block_q8_K *blk = (const moe_block_q8_K *)a;
        for (int64_t i = 0; i < n / 256; i++)
            for (int j = 0; j < 16; j++) {
                int s = 0;
                for (int l = 0; l < 16; l++) s += blk[i].qs[16 * j + l];
                CHECK_EQ_INT(blk[i].bsums[j], s);
            }
    }
    free(x);
    free(a);
    free(b);
}

/* Relative RMS error ‖x − deq(q(x))‖ / ‖x‖ on N(0,1) data, per type; bounds documented
 * in docs/QUANTS.md ("K-quants"), 10-15 % above what the reference quantizers give. */
TEST(quant_k_roundtrip_error_within_bounds) {
    static const struct { int type; double bound; } B[] = {
        {MOE_TYPE_Q2_K, 0.33}, {MOE_TYPE_Q3_K, 0.17}, {MOE_TYPE_Q4_K, 0.080},
        {MOE_TYPE_Q5_K, 0.040}, {MOE_TYPE_Q6_K, 0.020}, {MOE_TYPE_Q8_K, 0.0077}, {MOE_TYPE_IQ4_XS, 0.085},
    };
    const int64_t n = 65536;
    float *x = malloc(n * 4), *y = malloc(n * 4);
    void *q = malloc(moe_row_size(MOE_TYPE_Q8_K, n));
    fill_gauss(x, n, 4242, 1.0f);
    for (size_t k = 0; k < MOE_ARRAY_LEN(B); k++) {
        const moe_type_traits *t = moe_type_get(B[k].type);
        t->from_float_ref(x, q, n);
        t->to_float(q, y, n);
        double e = 0, s = 0, emax = 0;
        for (int64_t i = 0; i < n; i++) {
            e += (double)(x[i] - y[i]) * (x[i] - y[i]);
            s += (double)x[i] * x[i];
            emax = MOE_MAX(emax, fabs(x[i] - y[i]));
        }
        const double rel = sqrt(e / s);
        printf("    %-5s quantize→dequantize on N(0,1): rel RMSE %.4f (bound %.4f), max |err| %.3f\n", t->name, rel,
               B[k].bound, emax);
        CHECK_MSG(rel <= B[k].bound, "%s: relative RMS error %.4f above %.4f", t->name, rel, B[k].bound);
        CHECK_MSG(rel > 0, "%s: zero error is suspicious", t->name);
    }
    free(x);
    free(y);
    free(q);
}

/* Dequantizes tensor `name` of g (any type with to_float) into a new buffer. */
static float *tensor_to_f32(const moe_gguf_tensor *t) {
    const moe_type_traits *tt = moe_type_get(t->type);
    if (!tt || !tt->to_float) return NULL;
    int64_t n = t->ne[0] * t->ne[1] * t->ne[2] * t->ne[3];
    float *out = malloc((size_t)n * sizeof *out);
    int64_t rows = n / t->ne[0];
    size_t rb = moe_row_size(t->type, t->ne[0]);
    for (int64_t r = 0; r < rows; r++) tt->to_float((const uint8_t *)t->data + r * rb, out + r * t->ne[0], t->ne[0]);
    return out;
}

/* The quantized fixtures were made by llama-quantize from the same F32 weights as
 * mixtral-f16.gguf, so their dequantized tensors must sit within quantization error of
 * the F16 ones (F16 rounding is ~1e-4 relative, far below). */
static void check_fixture_against_f16(const char *file, int type, double bound) {
    moe_gguf *q = moe_gguf_open(test_fixture(file));
    moe_gguf *f = moe_gguf_open(test_fixture("gguf/mixtral-f16.gguf"));
    REQUIRE_MSG(q && f, "%s", moe_last_error());
    int checked = 0;
    double worst = 0, e_all = 0, s_all = 0;
    for (int64_t i = 0; i < moe_gguf_n_tensors(q); i++) {
        const moe_gguf_tensor *tq = moe_gguf_tensor_at(q, i);
        if (tq->type != type) continue;
        const moe_gguf_tensor *tf = moe_gguf_find_tensor(f, tq->name);
        REQUIRE_MSG(tf && tf->type == MOE_TYPE_F16, "%s: no F16 twin", tq->name);
        REQUIRE(memcmp(tq->ne, tf->ne, sizeof tq->ne) == 0);
        float *a = tensor_to_f32(tq), *b = tensor_to_f32(tf);
        REQUIRE(a && b);
        int64_t n = tq->ne[0] * tq->ne[1] * tq->ne[2] * tq->ne[3];
        double e = 0, s = 0;
        for (int64_t k = 0; k < n; k++) {
            e += (double)(a[k] - b[k]) * (a[k] - b[k]);
            s += (double)b[k] * b[k];
        }
        e_all += e;
        s_all += s;
        worst = MOE_MAX(worst, sqrt(e / s));
        CHECK_MSG(sqrt(e / s) <= bound, "%s %s: relative error %.4f above %.4f", file, tq->name, sqrt(e / s), bound);
        checked++;
        free(a);
        free(b);
    }
    printf("    %s: %d %s tensors, relative RMS error vs mixtral-f16: overall %.4f, worst tensor %.4f (bound %.3f)\n",
           file, checked, moe_type_name(type), sqrt(e_all / s_all), worst, bound);
    CHECK_EQ_INT(checked, 16); /* all 2-D tensors; norms and routers stay F32 */
    moe_gguf_close(q);
    moe_gguf_close(f);
}

TEST(quant_k_fixture_q4_K_dequantizes_close_to_f16) {
    check_fixture_against_f16("gguf/mixtral-q4_k_s.gguf", MOE_TYPE_Q4_K, 0.080);
}

TEST(quant_k_fixture_q6_K_dequantizes_close_to_f16) {
    check_fixture_against_f16("gguf/mixtral-q6_k.gguf", MOE_TYPE_Q6_K, 0.020);
}

/* Every super-block is checked; under AddressSanitizer (10x slower) every 8th. */
#if defined(__SANITIZE_ADDRESS__)
#define REQUANT_STRIDE 8
#else
#define REQUANT_STRIDE 1
#endif

/* Quantizes every tensor of `type` in the fixture again from the regenerated F32 original
 * with the reference quantizer and counts the super-blocks equal to llama.cpp's bytes. */
static void requantize_and_compare(moe_gguf *f32, const char *file, int type, int64_t *same, int64_t *total) {
    moe_gguf *q = moe_gguf_open(test_fixture(file));
    REQUIRE_MSG(q, "%s", moe_last_error());
    const moe_type_traits *tt = moe_type_get(type);
    *same = *total = 0;
    for (int64_t i = 0; i < moe_gguf_n_tensors(q); i++) {
        const moe_gguf_tensor *tq = moe_gguf_tensor_at(q, i);
        const moe_gguf_tensor *tf = moe_gguf_find_tensor(f32, tq->name);
        REQUIRE_MSG(tf && tf->type == MOE_TYPE_F32, "%s missing from the regenerated F32 model", tq->name);
        if (tq->type != type) continue;
        int64_t n = tq->ne[0] * tq->ne[1] * tq->ne[2] * tq->ne[3];
        int64_t nb = n / tt->block_size, diff = 0;
        uint8_t buf[sizeof(moe_block_q8_K)];
        /* super-blocks are quantized independently (rows are whole blocks), one at a time */
        for (int64_t b = 0; b < nb; b += REQUANT_STRIDE) {
            tt->from_float_ref((const float *)tf->data + b * tt->block_size, buf, tt->block_size);
            bool eq = memcmp(buf, (const uint8_t *)tq->data + b * tt->type_size, tt->type_size) == 0;
            *same += eq;
            *total += 1;
            if (!eq && diff++ < 3)
                printf("    %s %s: block %lld differs from llama.cpp's\n", file, tq->name, (long long)b);
        }
    }
    moe_gguf_close(q);
}

TEST(quant_k_requantized_fixture_matches_llama_cpp_bytes) {
    if (!test_have_python_module("numpy")) {
        test_skip("/usr/bin/python3 with numpy is needed to regenerate the F32 mixtral fixture");
        return;
    }
    char path[512], cmd[2048];
    snprintf(path, sizeof path, "%s/mixtral-f32.gguf", test_tmpdir());
    snprintf(cmd, sizeof cmd,
             "/usr/bin/python3 %s --arch mixtral --layers 2 --embd 256 --heads 8 --kv-heads 4 --ff 512 --experts 8 "
             "--topk 2 --vocab-from %s --vocab-size 4096 --seed 11 --dtype f32 --out %s",
             test_fixture("mkmoe.py"), test_fixture("tokenizer/ggml-vocab-llama-spm.gguf"), path);
    char *out = NULL;
    int rc = test_run(cmd, &out);
    REQUIRE_MSG(rc == 0, "mkmoe.py failed (%d): %s", rc, out ? out : "");
    free(out);
    moe_gguf *f32 = moe_gguf_open(path);
    REQUIRE_MSG(f32, "%s", moe_last_error());

    /* First: the regenerated weights are the ones llama.cpp started from (their F16
     * rounding equals mixtral-f16.gguf bit for bit). */
    moe_gguf *f16 = moe_gguf_open(test_fixture("gguf/mixtral-f16.gguf"));
    REQUIRE(f16);
    int64_t f16_diff = 0;
    for (int64_t i = 0; i < moe_gguf_n_tensors(f16); i++) {
        const moe_gguf_tensor *th = moe_gguf_tensor_at(f16, i);
        const moe_gguf_tensor *tf = moe_gguf_find_tensor(f32, th->name);
        REQUIRE(tf);
        if (th->type != MOE_TYPE_F16) continue;
        const float *src = tf->data;
        const moe_f16 *h = th->data;
        for (uint64_t k = 0; k < th->nbytes / 2; k++) f16_diff += moe_f32_to_f16(src[k]) != h[k];
    }
    moe_gguf_close(f16);
    REQUIRE_MSG(f16_diff == 0, "%lld F16 values differ: the regenerated F32 model is not the fixture's original",
                (long long)f16_diff);

    int64_t same, total;
    requantize_and_compare(f32, "gguf/mixtral-q4_k_s.gguf", MOE_TYPE_Q4_K, &same, &total);
    printf("    q4_K: %lld of %lld super-blocks identical to llama.cpp's (%.4f %%)\n", (long long)same, (long long)total,
           100.0 * (double)same / (double)total);
    CHECK(total > 0 && same == total);
    requantize_and_compare(f32, "gguf/mixtral-q6_k.gguf", MOE_TYPE_Q6_K, &same, &total);
    printf("    q6_K: %lld of %lld super-blocks identical to llama.cpp's (%.4f %%)\n", (long long)same, (long long)total,
           100.0 * (double)same / (double)total);
    CHECK(total > 0 && same == total);
    moe_gguf_close(f32);
}

/* The K types plug into the generic matmul: y = W·x equals the dot of dequantized
 * weights with the Q8_K-rounded activations. */
TEST(quant_k_matmul_matches_dequantized_product) {
    const int64_t rows = 37, cols = 1024, ntok = 3;
    float *w = malloc(rows * cols * 4), *x = malloc(ntok * cols * 4), *y = malloc(ntok * rows * 4);
    float *wd = malloc(cols * 4), *xd = malloc(cols * 4);
    void *xq = malloc(moe_row_size(MOE_TYPE_Q8_K, cols));
    fill_gauss(w, rows * cols, 5, 0.03f);
    fill_gauss(x, ntok * cols, 6, 1.0f);
    moe_pool *pool = moe_pool_create(2);
    REQUIRE(pool);
    for (size_t ti = 0; ti + 1 < MOE_ARRAY_LEN(K_TYPES); ti++) {
        const int type = K_TYPES[ti];
        const moe_type_traits *t = moe_type_get(type);
        uint8_t *wq = malloc(moe_row_size(type, cols) * rows);
        for (int64_t r = 0; r < rows; r++) t->from_float_ref(w + r * cols, wq + r * moe_row_size(type, cols), cols);
        moe_mat W = moe_mat_make(wq, type, rows, cols);
        moe_buf scratch = {0};
        REQUIRE_MSG(moe_matmul(pool, y, &W, x, ntok, &scratch) == MOE_OK, "%s", moe_last_error());
        for (int64_t tk = 0; tk < ntok; tk++) {
            moe_q8_K_from_float_ref(x + tk * cols, xq, cols);
            moe_q8_K_to_float(xq, xd, cols);
            for (int64_t r = 0; r < rows; r++) {
                moe_mat_get_row(&W, r, wd);
                double s = 0, m = 0;
                for (int64_t k = 0; k < cols; k++) {
                    s += (double)wd[k] * xd[k];
                    m += fabs((double)wd[k] * xd[k]);
                }
                CHECK_MSG(fabs(y[tk * rows + r] - s) <= DOT_RTOL * m, "%s row %lld tok %lld: %g vs %g", t->name,
                          (long long)r, (long long)tk, y[tk * rows + r], s);
            }
        }
        moe_buf_free(&scratch);
        free(wq);
    }
    moe_pool_free(pool);
    free(w); free(x); free(y); free(wd); free(xd); free(xq);
}

TEST(quant_k_iq_types_are_refused_by_name) {
    static const struct { int type; const char *name; } IQ[] = {{MOE_TYPE_IQ2_XXS, "iq2_xxs"}, {MOE_TYPE_IQ3_S, "iq3_s"}};
    for (size_t i = 0; i < MOE_ARRAY_LEN(IQ); i++) {
        moe_clear_error();
        CHECK_EQ_INT(moe_type_check_compute(IQ[i].type), MOE_ERR_UNSUPPORTED);
        CHECK_STR_CONTAINS(moe_last_error(), IQ[i].name);
        CHECK_STR_CONTAINS(moe_last_error(), "not supported");
        /* and the matmul entry point refuses it the same way, touching no data */
        const int64_t cols = 256;
        moe_mat W = moe_mat_make(NULL, IQ[i].type, 4, cols);
        float x[256] = {0}, y[4];
        moe_buf scratch = {0};
        moe_clear_error();
        CHECK_EQ_INT(moe_matmul(NULL, y, &W, x, 1, &scratch), MOE_ERR_UNSUPPORTED);
        CHECK_STR_CONTAINS(moe_last_error(), IQ[i].name);
        moe_buf_free(&scratch);
    }
    for (size_t ti = 0; ti < MOE_ARRAY_LEN(K_TYPES); ti++) CHECK_EQ_INT(moe_type_check_compute(K_TYPES[ti]), MOE_OK);
}

/* IQ4_XS's layout, from ggml-common.h's definition: sub-block ib's 6-bit scale is the
 * nibble ib % 2 of scales_l[ib / 2] with bits 2·ib, 2·ib+1 of scales_h above it, minus 32;
 * its values are d·scale·grid[nibble], the nibbles as IQ4_NL's. */
TEST(quant_k_iq4_xs_block_layout) {
    static const int grid[16] = {-127, -104, -83, -65, -49, -35, -22, -10, 1, 13, 25, 38, 53, 69, 89, 113};
    moe_block_iq4_xs b;
    memset(&b, 0, sizeof b);
    b.d = moe_f32_to_f16(0.25f);
    const int ls[8] = {0, 63, 32, 33, 17, 48, 31, 5}; /* stored values; the scales are ls - 32 */
    for (int ib = 0; ib < 8; ib++) {
        b.scales_l[ib / 2] |= (uint8_t)((ls[ib] & 0xf) << 4 * (ib % 2));
        b.scales_h |= (uint16_t)((ls[ib] >> 4) << 2 * ib);
    }
    for (int j = 0; j < 128; j++) b.qs[j] = (uint8_t)((j % 16) | ((j * 7 + 3) % 16) << 4);
    float out[256];
    moe_iq4_xs_to_float(&b, out, 256);
    for (int ib = 0; ib < 8; ib++)
        for (int j = 0; j < 16; j++) {
            const int byte = 16 * ib + j;
            const float lo = 0.25f * (float)(ls[ib] - 32) * (float)grid[byte % 16];
            const float hi = 0.25f * (float)(ls[ib] - 32) * (float)grid[(byte * 7 + 3) % 16];
            CHECK_MSG(out[32 * ib + j] == lo, "sub-block %d value %d: %g, want %g", ib, j, out[32 * ib + j], lo);
            CHECK_MSG(out[32 * ib + 16 + j] == hi, "sub-block %d value %d: %g, want %g", ib, 16 + j, out[32 * ib + 16 + j], hi);
        }
}
