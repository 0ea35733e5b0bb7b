/* test_quant_legacy.c — the float and legacy quant types (F32, F16, BF16, Q4_0, Q4_1,
 * Q5_0, Q5_1, Q8_0, Q8_1): SIMD kernels against the scalar references, quantization error
 * bounds, and bit-exactness against llama.cpp's quantized fixtures (docs/QUANTS.md). */
#include "test.h"

#include "core/cpu.h"
#include "core/f16.h"
#include "core/quant_legacy.h"
#include "core/types.h"

#include <stdlib.h>

/* ------------------------------------------------------------------ helpers */

static uint64_t g_rng = 0x853c49e6748fea9bull;
static double rnd_uniform(void) { /* [0, 1) */
    g_rng = g_rng * 6364136223846793005ull + 1442695040888963407ull;
    return (double)(g_rng >> 11) * (1.0 / 9007199254740992.0);
}
static float rnd_normal(void) {
    double u = rnd_uniform() + 1e-12, v = rnd_uniform();
    return (float)(sqrt(-2.0 * log(u)) * cos(6.283185307179586 * v));
}

static const int k_weight_types[] = {MOE_TYPE_F32, MOE_TYPE_F16, MOE_TYPE_BF16, MOE_TYPE_Q4_0, MOE_TYPE_Q4_1,
                                     MOE_TYPE_Q5_0, MOE_TYPE_Q5_1, MOE_TYPE_Q8_0, MOE_TYPE_IQ4_NL};

/* ------------------------------------------------------------------ (a) SIMD = scalar */

/* Σ|terms| of the dot, the scale its rounding error is measured against: for the block
 * types, Σ over blocks of |d_x·d_y·Σq_x q_y| + |m·s| computed from dequantized values. */
static double abs_dot(const float *x, const float *y, int64_t n) {
    double a = 0;
    for (int64_t i = 0; i < n; i++) a += fabs((double)x[i] * y[i]);
    return a;
}

/* Tolerance: the SIMD kernels sum in float (8 lanes, FMA), the references in double; the
 * difference is float rounding, bounded by a few ulps of Σ|terms| per accumulation step.
 * 1e-6·Σ|x·y| (documented in docs/QUANTS.md) leaves ~15x margin at n = 4096. */
#define DOT_RTOL 1e-6

TEST(quant_legacy_simd_dot_matches_scalar_reference) {
    const int64_t lengths[] = {32, 64, 96, 160, 256, 288, 1000, 1024, 2080, 4064, 4096};
    const int64_t odd_lengths[] = {1, 7, 9, 33, 48, 100, 1001, 1017}; /* float types only */
    const int64_t max_n = 4096;
    float *xf = malloc(4 * max_n * sizeof(float)), *yf = malloc(max_n * sizeof(float));
    float *xd = malloc(4 * max_n * sizeof(float)), *yd = malloc(max_n * sizeof(float));
    uint8_t *xq = malloc(4 * max_n * 4), *yq = malloc(max_n * 4);
    REQUIRE(xf && yf && xd && yd && xq && yq);
    for (size_t ti = 0; ti < MOE_ARRAY_LEN(k_weight_types); ti++) {
        const moe_type_traits *t = moe_type_get(k_weight_types[ti]);
        const moe_type_traits *vt = moe_type_get(t->vec_dot_type);
        moe_vec_dot_x4_fn x4 = moe_type_vec_dot_x4(k_weight_types[ti]);
        REQUIRE(t->to_float && t->from_float && t->vec_dot && t->vec_dot_ref && vt->from_float && vt->to_float);
        double worst = 0;
        for (int pass = 0; pass < 2; pass++) {
            const int64_t *ls = pass ? odd_lengths : lengths;
            const size_t nl = pass ? MOE_ARRAY_LEN(odd_lengths) : MOE_ARRAY_LEN(lengths);
            if (pass && t->block_size != 1) continue;
            for (size_t li = 0; li < nl; li++) {
                const int64_t n = ls[li];
                if (n % t->block_size) continue;
                const size_t rb = moe_row_size(k_weight_types[ti], n);
                for (int64_t i = 0; i < 4 * n; i++) xf[i] = rnd_normal() + (i % 7 == 0 ? 0.5f : 0.0f);
                for (int64_t i = 0; i < n; i++) yf[i] = rnd_normal() * 3.0f;
                for (int r = 0; r < 4; r++) t->from_float(xf + r * n, xq + r * rb, n);
                vt->from_float(yf, yq, n);
                vt->to_float(yq, yd, n);
                float s4[4] = {0};
                if (x4) x4(n, s4, xq, rb, yq);
                for (int r = 0; r < 4; r++) {
                    float s_ref, s_simd;
                    t->vec_dot_ref(n, &s_ref, xq + r * rb, yq);
                    t->vec_dot(n, &s_simd, xq + r * rb, yq);
                    t->to_float(xq + r * rb, xd, n);
                    const double scale = abs_dot(xd, yd, n) + 1e-30;
                    const double err = fabs((double)s_simd - s_ref) / scale;
                    worst = fmax(worst, err);
                    CHECK_MSG(err <= DOT_RTOL, "%s n=%lld row %d: simd %.9g ref %.9g (rel. to sum|xy| %.3g)",
                              t->name, (long long)n, r, s_simd, s_ref, err);
                    if (x4) {
                        const double err4 = fabs((double)s4[r] - s_ref) / scale;
                        worst = fmax(worst, err4);
                        CHECK_MSG(err4 <= DOT_RTOL, "%s x4 n=%lld row %d: %.9g vs ref %.9g", t->name,
                                  (long long)n, r, s4[r], s_ref);
                    }
                    /* the reference itself against the dequantized values in double; for
                     * Q4_1/Q5_1 the format's s = F16(d·Σq) of Q8_1 adds its rounding (2^-11
                     * relative) times the block's min m */
                    double exact = 0, s_round = 0;
                    for (int64_t i = 0; i < n; i++) exact += (double)xd[i] * yd[i];
                    if (t->vec_dot_type == MOE_TYPE_Q8_1)
                        for (int64_t b = 0; b < n / 32; b++) {
                            moe_f16 m, sy; /* both blocks hold their second half at byte 2 */
                            memcpy(&m, xq + r * rb + b * t->type_size + 2, 2);
                            memcpy(&sy, yq + b * sizeof(moe_block_q8_1) + 2, 2);
                            s_round += fabs(moe_f16_to_f32(m) * moe_f16_to_f32(sy)) / 2048;
                        }
                    CHECK_MSG(fabs(exact - s_ref) <= 1e-6 * scale + s_round + 1e-30, "%s n=%lld: ref %.9g vs dequantized %.9g",
                              t->name, (long long)n, s_ref, exact);
                }
            }
        }
        fprintf(stderr, "    %-5s SIMD vs scalar dot: worst |diff| / sum|xy| = %.2e\n", t->name, worst);
    }
    free(xf); free(yf); free(xd); free(yd); free(xq); free(yq);
}

/* The four-row kernels prefetch into L1, L2 or not at all by CPU (core/cpu.h): all three
 * give the same bits, and for the block types the bits of the single-row kernel;
 * MOE_PREFETCH and MOE_PREFETCH_IL override the choice. Rows are not packed (bx > row
 * bytes) and n leaves the float types a tail. (test_matmul.c checks the interleaved
 * kernels at each level.) */
TEST(quant_four_row_kernels_same_bits_at_every_prefetch_level) {
    const int types[] = {MOE_TYPE_F32, MOE_TYPE_F16, MOE_TYPE_BF16, MOE_TYPE_Q4_0, MOE_TYPE_Q4_1, MOE_TYPE_Q5_0,
                         MOE_TYPE_Q5_1, MOE_TYPE_Q8_0, MOE_TYPE_IQ4_NL, MOE_TYPE_IQ4_XS, MOE_TYPE_Q2_K, MOE_TYPE_Q3_K, MOE_TYPE_Q4_K, MOE_TYPE_Q5_K,
                         MOE_TYPE_Q6_K};
    const int saved = moe_prefetch_level;
    float *xf = malloc(12 * 1024 * sizeof(float)), *yf = malloc(1024 * sizeof(float));
    uint8_t *w = malloc(12 * 1024 * 4 + 4096), *yq = malloc(1024 * 4 + 64);
    REQUIRE(xf && yf && w && yq);
    for (int64_t i = 0; i < 12 * 1024; i++) xf[i] = rnd_normal();
    for (int64_t i = 0; i < 1024; i++) yf[i] = rnd_normal();
    for (size_t ti = 0; ti < MOE_ARRAY_LEN(types); ti++) {
        const moe_type_traits *t = moe_type_get(types[ti]);
        const moe_vec_dot_x4_fn x4 = moe_type_vec_dot_x4(types[ti]);
        REQUIRE_MSG(x4, "%s has no four-row kernel", t->name);
        const int64_t n = t->block_size == 1 ? 1000 : 1024; /* 1000: 31 lines of F16 and a tail */
        const size_t bx = moe_row_size(types[ti], n) + 64;
        for (int r = 0; r < 12; r++) t->from_float_ref(xf + r * 1024, w + r * bx, n);
        moe_type_get(t->vec_dot_type)->from_float(yf, yq, n);
        for (int g = 0; g < 12; g += 4) { /* the last group prefetches past the buffer: harmless */
            float a[4], b[4], c[4], s1;
            moe_prefetch_level = MOE_PF_L1;
            x4(n, a, w + g * bx, bx, yq);
            moe_prefetch_level = MOE_PF_L2;
            x4(n, b, w + g * bx, bx, yq);
            moe_prefetch_level = MOE_PF_NONE;
            x4(n, c, w + g * bx, bx, yq);
            for (int r = 0; r < 4; r++) {
                CHECK_MSG(memcmp(&a[r], &b[r], 4) == 0, "%s row %d: L1 %.9g, L2 %.9g", t->name, g + r, a[r], b[r]);
                CHECK_MSG(memcmp(&c[r], &b[r], 4) == 0, "%s row %d: none %.9g, L2 %.9g", t->name, g + r, c[r], b[r]);
                t->vec_dot(n, &s1, w + (g + r) * bx, yq);
                if (t->block_size > 1)
                    CHECK_MSG(memcmp(&s1, &b[r], 4) == 0, "%s row %d: four-row %.9g, single %.9g", t->name, g + r, b[r], s1);
            }
        }
    }
    /* MOE_PREFETCH sets both levels, MOE_PREFETCH_IL the interleaved one before it */
    unsetenv("MOE_PREFETCH_IL");
    setenv("MOE_PREFETCH", "l1", 1);
    CHECK_EQ_INT(moe_prefetch_detect(false), MOE_PF_L1);
    CHECK_EQ_INT(moe_prefetch_detect(true), MOE_PF_L1);
    setenv("MOE_PREFETCH", "L2", 1);
    CHECK_EQ_INT(moe_prefetch_detect(false), MOE_PF_L2);
    setenv("MOE_PREFETCH", "None", 1);
    CHECK_EQ_INT(moe_prefetch_detect(false), MOE_PF_NONE);
    setenv("MOE_PREFETCH_IL", "l1", 1);
    CHECK_EQ_INT(moe_prefetch_detect(true), MOE_PF_L1);
    CHECK_EQ_INT(moe_prefetch_detect(false), MOE_PF_NONE);
    setenv("MOE_PREFETCH_IL", "off", 1); /* not a choice: MOE_PREFETCH's */
    CHECK_EQ_INT(moe_prefetch_detect(true), MOE_PF_NONE);
    setenv("MOE_PREFETCH", "l3", 1); /* neither a choice: the CPU's */
    const int by_env = moe_prefetch_detect(false), by_env_il = moe_prefetch_detect(true);
    unsetenv("MOE_PREFETCH");
    unsetenv("MOE_PREFETCH_IL");
    CHECK_EQ_INT(by_env, moe_prefetch_detect(false));
    CHECK_EQ_INT(by_env_il, moe_prefetch_detect(true));
    moe_prefetch_level = saved;
    free(xf); free(yf); free(w); free(yq);
}

TEST(quant_prefetch_distance_whole_row_groups_of_at_least_the_minimum) {
    const size_t saved = moe_prefetch_min_bytes;
    moe_prefetch_min_bytes = 4096;
    CHECK_EQ_INT(moe_prefetch_distance(576), 8 * 576);     /* 1024-wide Q4_0: 2,304 B per 4 rows */
    CHECK_EQ_INT(moe_prefetch_distance(1088), 4 * 1088);   /* 1024-wide Q8_0: 4,352 B already */
    CHECK_EQ_INT(moe_prefetch_distance(1024), 4 * 1024);   /* exactly the minimum */
    CHECK_EQ_INT(moe_prefetch_distance(100), 44 * 100);    /* 11 groups of 4 rows */
    for (size_t rb = 1; rb < 5000; rb += 37) {
        const size_t d = moe_prefetch_distance(rb);
        CHECK_MSG(d % (4 * rb) == 0 && d >= 4096 && d < 4096 + 4 * rb, "row %zu bytes: distance %zu", rb, d);
    }
    moe_prefetch_min_bytes = 0; /* 0: always the next four rows */
    CHECK_EQ_INT(moe_prefetch_distance(576), 4 * 576);
    moe_prefetch_min_bytes = saved;
}

/* The activation quantizers: the AVX2 and the scalar versions give the same bytes, and
 * both round as ggml's SIMD quantize_row_q8_0 does (127/amax, ties to even), unlike the
 * reference quantizer (1/d, ties away from zero). */
TEST(quant_legacy_activation_quantizer_rounding) {
    float x[256];
    uint8_t a[8 * 36], b[8 * 36];
    for (int rep = 0; rep < 200; rep++) {
        for (int i = 0; i < 256; i++) x[i] = rnd_normal() * (rep % 5 == 0 ? 1e-3f : 7.0f);
        if (rep % 7 == 0) for (int i = 0; i < 32; i++) x[i] = 0.0f; /* an all-zero block */
        moe_q8_0_quantize(x, a, 256);
        moe_q8_0_quantize_scalar(x, b, 256);
        CHECK(memcmp(a, b, 8 * 34) == 0);
        moe_q8_1_quantize(x, a, 256);
        moe_q8_1_quantize_scalar(x, b, 256);
        CHECK(memcmp(a, b, 8 * 36) == 0);
    }
    /* amax = 127 makes id exactly 1, so the values below are exact ties */
    float t[32] = {127.0f, 2.5f, -2.5f, 3.5f, 0.5f, -0.5f, 1.5f};
    moe_block_q8_0 act, ref;
    moe_q8_0_quantize_scalar(t, &act, 32);
    moe_q8_0_quantize_ref(t, &ref, 32);
    const int8_t want_act[7] = {127, 2, -2, 4, 0, 0, 2}, want_ref[7] = {127, 3, -3, 4, 1, -1, 2};
    for (int i = 0; i < 7; i++) {
        CHECK_EQ_INT(act.qs[i], want_act[i]);
        CHECK_EQ_INT(ref.qs[i], want_ref[i]);
    }
    moe_q8_0_quantize(t, &act, 32);
    for (int i = 0; i < 7; i++) CHECK_EQ_INT(act.qs[i], want_act[i]);
    /* q8_1's s = d·Σq */
    moe_block_q8_1 b1;
    moe_q8_1_quantize(t, &b1, 32);
    CHECK_NEAR(moe_f16_to_f32(b1.s), 1.0 * (127 + 2 - 2 + 4 + 0 + 0 + 2), 0.1);
}

/* ------------------------------------------------------------------ (b) error bounds */

/* Per-element bound of |dequant(quant(x)) - x| within one block, from the format: half a
 * step for rounding (a full step where ggml's quantizer clamps the top value: Q4_0/Q5_0
 * map +amax·(8/8) to 15, one step short), plus the F16 rounding of the scale and min
 * (relative 2^-11, on up to |q|max steps). docs/QUANTS.md lists them. */
static double block_bound(int type, const float *x, int64_t n) {
    double amax = 0, mn = INFINITY, mx = -INFINITY;
    for (int64_t i = 0; i < n; i++) {
        amax = fmax(amax, fabs(x[i]));
        mn = fmin(mn, x[i]);
        mx = fmax(mx, x[i]);
    }
    const double h = 1.0 / 2048, rng = mx - mn;
    switch (type) {
    case MOE_TYPE_F32: return 0;
    case MOE_TYPE_F16: return amax * h;
    case MOE_TYPE_BF16: return amax / 256;
    case MOE_TYPE_Q4_0: return amax / 8 + amax * h * 2;
    case MOE_TYPE_Q5_0: return amax / 16 + amax * h * 2;
    case MOE_TYPE_Q4_1: return rng / 30 + (rng + fabs(mn)) * h * 2;
    case MOE_TYPE_Q5_1: return rng / 62 + (rng + fabs(mn)) * h * 2;
    case MOE_TYPE_Q8_0: return amax / 254 + amax * h * 2;
    /* d ≈ amax/127, moved by the search (scales amax/134 … amax/120, then the weighted
     * least-squares fit): the grid's widest gap is 24 steps (half of it at most), and a
     * value at +amax when the extreme is negative clips at 113·d, ~21 steps at amax/134.
     * amax/5 leaves room for the fit's move; on N(0,1) the worst error is ~0.52 of it. */
    case MOE_TYPE_IQ4_NL: return amax / 5 + amax * h * 2;
    default: return INFINITY;
    }
}

TEST(quant_legacy_quantize_dequantize_error_bounds) {
    enum { N = 32 * 1024 };
    float *x = malloc(N * sizeof(float)), *d = malloc(N * sizeof(float));
    uint8_t *q = malloc(N * 4);
    REQUIRE(x && d && q);
    for (size_t ti = 0; ti < MOE_ARRAY_LEN(k_weight_types); ti++) {
        const int type = k_weight_types[ti];
        const moe_type_traits *t = moe_type_get(type);
        double se = 0, sx = 0, worst_ratio = 0;
        for (int dist = 0; dist < 3; dist++) {
            /* normal, uniform with an offset (Q4_1/Q5_1 territory), heavy tails */
            for (int i = 0; i < N; i++) {
                const float g = rnd_normal();
                x[i] = dist == 0 ? g : dist == 1 ? (float)(rnd_uniform() * 2.0 + 0.5) : g * g * g;
            }
            t->from_float_ref(x, q, N);
            t->to_float(q, d, N);
            const int64_t bs = t->block_size == 1 ? 32 : t->block_size;
            for (int64_t b = 0; b < N / bs; b++) {
                const double bound = block_bound(type, x + b * bs, bs) + 1e-30;
                for (int64_t i = b * bs; i < (b + 1) * bs; i++) {
                    const double e = fabs((double)d[i] - x[i]);
                    worst_ratio = fmax(worst_ratio, e / bound);
                    CHECK_MSG(e <= bound || (type == MOE_TYPE_F32 && e == 0), "%s dist %d x[%lld]=%.8g → %.8g (bound %.3g)",
                              t->name, dist, (long long)i, x[i], d[i], bound);
                }
            }
            if (dist == 0)
                for (int i = 0; i < N; i++) { se += ((double)d[i] - x[i]) * ((double)d[i] - x[i]); sx += (double)x[i] * x[i]; }
        }
        fprintf(stderr, "    %-5s N(0,1): rms error / rms = %.4f%%; worst error / bound = %.3f\n", t->name,
                100.0 * sqrt(se / sx), worst_ratio);
    }
    free(x); free(d); free(q);
}

/* ------------------------------------------------------------------ (c), (d) fixtures */

static moe_gguf *open_fixture(const char *name) {
    moe_gguf *g = moe_gguf_open(test_fixture(name));
    if (!g) test_skip("fixture %s: %s", name, moe_last_error());
    return g;
}

static int64_t n_elements(const moe_gguf_tensor *t) {
    return t->ne[0] * t->ne[1] * t->ne[2] * t->ne[3];
}

/* Each tensor of llama.cpp's quantized fixture, dequantized, against the same tensor of
 * the F16 fixture (both from the same F32 weights). */
TEST(quant_legacy_fixtures_dequantize_close_to_f16) {
    moe_gguf *f16 = open_fixture("gguf/mixtral-f16.gguf");
    if (!f16) return;
    const char *files[] = {"gguf/mixtral-q8_0.gguf", "gguf/mixtral-q4_0.gguf"};
    const double max_rel[] = {0.01, 0.12}; /* generous: the measured values are printed */
    for (int fi = 0; fi < 2; fi++) {
        moe_gguf *g = open_fixture(files[fi]);
        if (!g) break;
        double se[MOE_TYPE_COUNT] = {0}, sx[MOE_TYPE_COUNT] = {0};
        int64_t count[MOE_TYPE_COUNT] = {0};
        for (int64_t i = 0; i < moe_gguf_n_tensors(g); i++) {
            const moe_gguf_tensor *tq = moe_gguf_tensor_at(g, i), *tf = moe_gguf_find_tensor(f16, tq->name);
            REQUIRE_MSG(tf, "%s missing from the f16 fixture", tq->name);
            const int64_t n = n_elements(tq);
            CHECK_EQ_INT(n, n_elements(tf));
            const moe_type_traits *a = moe_type_get(tq->type), *b = moe_type_get(tf->type);
            REQUIRE(a && a->to_float && b && b->to_float);
            float *da = malloc((size_t)n * sizeof(float)), *db = malloc((size_t)n * sizeof(float));
            REQUIRE(da && db);
            a->to_float(tq->data, da, n);
            b->to_float(tf->data, db, n);
            for (int64_t k = 0; k < n; k++) {
                se[tq->type] += ((double)da[k] - db[k]) * ((double)da[k] - db[k]);
                sx[tq->type] += (double)db[k] * db[k];
            }
            count[tq->type]++;
            free(da); free(db);
        }
        for (int t = 0; t < MOE_TYPE_COUNT; t++) {
            if (!count[t]) continue;
            const double rel = sqrt(se[t] / sx[t]);
            fprintf(stderr, "    %s: %lld %s tensors, ||dequant - f16|| / ||f16|| = %.5f\n", files[fi],
                    (long long)count[t], moe_type_name(t), rel);
            CHECK_MSG(rel <= (t == MOE_TYPE_F32 ? 1e-3 : max_rel[fi]), "%s %s: relative error %.4f", files[fi],
                      moe_type_name(t), rel);
        }
        moe_gguf_close(g);
    }
    moe_gguf_close(f16);
}

/* Regenerates the F32 original of the mixtral fixtures with the fixtures' own script and
 * quantizes every tensor with the reference quantizer: the bytes must equal llama.cpp's. */
TEST(quant_legacy_reference_quantizer_bytes_equal_llama_cpp) {
    if (!test_have_python_module("numpy")) {
        test_skip("python3 numpy is missing: cannot regenerate the F32 fixture (apt-get install python3-numpy)");
        return;
    }
    char out[512], cmd[2048];
    snprintf(out, sizeof out, "%s/mixtral-f32.gguf", test_tmpdir());
    snprintf(cmd, sizeof cmd,
             "/usr/bin/python3 %s --arch mixtral --layers 2 --embd 256 --heads 8 --kv-heads 4 --ff 512 "
             "--experts 8 --topk 2 --vocab-from %s --vocab-size 4096 --seed 11 --dtype f32 --out %s",
             test_fixture("mkmoe.py"), test_fixture("tokenizer/ggml-vocab-llama-spm.gguf"), out);
    char *log = NULL;
    int rc = test_run(cmd, &log);
    REQUIRE_MSG(rc == 0, "mkmoe.py failed (%d): %s", rc, log ? log : "");
    free(log);
    moe_gguf *src = moe_gguf_open(out);
    REQUIRE_MSG(src, "%s", moe_last_error());
    const char *files[] = {"gguf/mixtral-q8_0.gguf", "gguf/mixtral-q4_0.gguf"};
    for (int fi = 0; fi < 2; fi++) {
        moe_gguf *g = open_fixture(files[fi]);
        if (!g) break;
        int64_t blocks = 0, diff_blocks = 0, f32_tensors = 0;
        for (int64_t i = 0; i < moe_gguf_n_tensors(g); i++) {
            const moe_gguf_tensor *tq = moe_gguf_tensor_at(g, i), *ts = moe_gguf_find_tensor(src, tq->name);
            REQUIRE_MSG(ts && ts->type == MOE_TYPE_F32, "%s: not F32 in the regenerated file", tq->name);
            const int64_t n = n_elements(tq);
            REQUIRE(n == n_elements(ts));
            if (tq->type == MOE_TYPE_F32) { /* norms and the router stay F32 */
                CHECK_MSG(memcmp(tq->data, ts->data, (size_t)n * 4) == 0, "%s: F32 tensor differs", tq->name);
                f32_tensors++;
                continue;
            }
            const moe_type_traits *t = moe_type_get(tq->type);
            REQUIRE(t && t->from_float_ref && tq->nbytes == moe_row_size(tq->type, n));
            uint8_t *q = malloc(tq->nbytes);
            REQUIRE(q);
            t->from_float_ref(ts->data, q, n);
            for (int64_t b = 0; b < n / t->block_size; b++) {
                blocks++;
                if (memcmp(q + b * t->type_size, (const uint8_t *)tq->data + b * t->type_size, t->type_size)) {
                    if (diff_blocks++ < 5) fprintf(stderr, "    %s: block %lld of %s differs\n", files[fi], (long long)b, tq->name);
                }
            }
            free(q);
        }
        fprintf(stderr, "    %s: %lld of %lld quantized blocks differ from llama.cpp's (%lld F32 tensors identical)\n",
                files[fi], (long long)diff_blocks, (long long)blocks, (long long)f32_tensors);
        CHECK_EQ_INT(diff_blocks, 0);
        CHECK(blocks > 100000);
        moe_gguf_close(g);
    }
    moe_gguf_close(src);
}

/* Block layouts: a hand-made block of each type dequantizes to the values ggml defines. */
TEST(quant_legacy_block_layouts) {
    float out[32];
    moe_block_q4_0 b40 = {moe_f32_to_f16(0.5f), {0}};
    b40.qs[0] = 0x1F; /* value 0: 15-8 = 7, value 16: 1-8 = -7 */
    moe_q4_0_to_float(&b40, out, 32);
    CHECK(out[0] == 3.5f && out[16] == -3.5f && out[1] == -4.0f);
    moe_block_q5_1 b51 = {moe_f32_to_f16(1.0f), moe_f32_to_f16(-2.0f), {0x01, 0, 0x01, 0x80}, {0}};
    b51.qs[0] = 0x23; /* value 0: 3 | 16 = 19, value 16: 2 | 16 = 18 */
    moe_q5_1_to_float(&b51, out, 32);
    CHECK(out[0] == 17.0f && out[16] == 16.0f && out[31] == 14.0f && out[1] == -2.0f);
    moe_block_q5_0 b50 = {moe_f32_to_f16(1.0f), {0x00, 0, 0, 0x80}, {0}};
    moe_q5_0_to_float(&b50, out, 32);
    CHECK(out[0] == -16.0f && out[31] == 0.0f);
    /* IQ4_NL: ggml-common.h's grid, written out here from the format's definition */
    static const int grid[16] = {-127, -104, -83, -65, -49, -35, -22, -10, 1, 13, 25, 38, 53, 69, 89, 113};
    moe_block_iq4_nl bnl = {moe_f32_to_f16(0.5f), {0}};
    for (int j = 0; j < 16; j++) bnl.qs[j] = (uint8_t)(j | (15 - j) << 4); /* value j: grid[j], value 16+j: grid[15-j] */
    moe_iq4_nl_to_float(&bnl, out, 32);
    for (int j = 0; j < 16; j++) {
        CHECK_MSG(out[j] == 0.5f * grid[j], "iq4_nl value %d: %g", j, out[j]);
        CHECK_MSG(out[16 + j] == 0.5f * grid[15 - j], "iq4_nl value %d: %g", 16 + j, out[16 + j]);
    }
}

/* IQ4_NL's quantizer gives back a block whose values lie on the grid: the same indices and
 * scale, when the largest magnitude is the grid's end (-127·d, which fixes the first
 * guess of the scale exactly); a block of zeros gives d = 0 and index 8 (the grid's value
 * nearest 0), as ggml's. */
TEST(quant_iq4_nl_quantizer_recovers_grid_blocks) {
    static const int grid[16] = {-127, -104, -83, -65, -49, -35, -22, -10, 1, 13, 25, 38, 53, 69, 89, 113};
    for (int trial = 0; trial < 200; trial++) {
        const float d = (trial % 2 ? 0.125f : 3.0f) * (trial % 3 ? 1.0f : -1.0f);
        uint8_t L[32];
        float x[32];
        for (int j = 0; j < 32; j++) L[j] = (uint8_t)(rnd_uniform() * 16) & 15;
        L[(int)(rnd_uniform() * 32) & 31] = 0; /* the grid's end: -127 */
        for (int j = 0; j < 32; j++) x[j] = d * grid[L[j]];
        moe_block_iq4_nl b;
        moe_iq4_nl_quantize_ref(x, &b, 32);
        CHECK_MSG(moe_f16_to_f32(b.d) == d, "trial %d: d %g, want %g", trial, moe_f16_to_f32(b.d), d);
        for (int j = 0; j < 16; j++)
            CHECK_MSG(b.qs[j] == (L[j] | L[16 + j] << 4), "trial %d byte %d: %02x, want %02x", trial, j, b.qs[j],
                      L[j] | L[16 + j] << 4);
    }
    float zeros[32] = {0};
    moe_block_iq4_nl z;
    moe_iq4_nl_quantize_ref(zeros, &z, 32);
    CHECK(moe_f16_to_f32(z.d) == 0.0f);
    for (int j = 0; j < 16; j++) CHECK_EQ_INT(z.qs[j], 0x88);
}

/* moe_iq4_nl_index counts its way to the bracket that ggml's best_index_int8 bisects to:
 * the same index for every input, against that bisection written out here as ggml has it,
 * at the grid points, the midpoints and one float either side of each, far outside the
 * grid, and many random values (NaN: 15, where the bisection ends too). */
static int iq4_index_bisect(float x) {
    static const int8_t val[16] = {-127, -104, -83, -65, -49, -35, -22, -10, 1, 13, 25, 38, 53, 69, 89, 113};
    if (x <= val[0]) return 0;
    if (x >= val[15]) return 15;
    int ml = 0, mu = 15;
    while (mu - ml > 1) {
        const int mav = (ml + mu) / 2;
        if (x < val[mav]) mu = mav;
        else ml = mav;
    }
    return x - val[mu - 1] < val[mu] - x ? mu - 1 : mu;
}

TEST(quant_iq4_nl_index_equals_ggml_bisection) {
    float xs[16 * 6 + 4];
    int n = 0;
    for (int k = 0; k < 16; k++) {
        const float g = moe_iq4_nl_values[k], m = k < 15 ? 0.5f * (moe_iq4_nl_values[k] + moe_iq4_nl_values[k + 1]) : 200.0f;
        xs[n++] = g, xs[n++] = nextafterf(g, -1e9f), xs[n++] = nextafterf(g, 1e9f);
        xs[n++] = m, xs[n++] = nextafterf(m, -1e9f), xs[n++] = nextafterf(m, 1e9f);
    }
    xs[n++] = -1e30f, xs[n++] = 1e30f, xs[n++] = -INFINITY, xs[n++] = INFINITY;
    for (int i = 0; i < n; i++)
        CHECK_MSG(moe_iq4_nl_index(xs[i]) == iq4_index_bisect(xs[i]), "x = %.9g: %d, bisection %d", xs[i],
                  moe_iq4_nl_index(xs[i]), iq4_index_bisect(xs[i]));
    int bad = 0;
    for (int i = 0; i < 200000; i++) {
        const float x = (rnd_uniform() - 0.5f) * 300.0f;
        bad += moe_iq4_nl_index(x) != iq4_index_bisect(x);
    }
    CHECK_EQ_INT(bad, 0);
    CHECK_EQ_INT(moe_iq4_nl_index(NAN), iq4_index_bisect(NAN));
}
