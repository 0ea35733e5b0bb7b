/* test_parity.c — the forward pass against llama.cpp: logits of every fixture model on
 * tokens.txt compared with llama.cpp's (relative L2 per row: median, 90th percentile,
 * argmax agreement), batch versus token-by-token evaluation, and `moe logits`. */
#include "test.h"

#include <stdlib.h>
#include "moe.h"
#include "core/types.h"

#define MAX_TOKENS 1024

static int64_t read_tokens(int32_t *out, int64_t cap) {
    FILE *f = fopen(test_fixture("gguf/tokens.txt"), "r");
    if (!f) return -1;
    int64_t n = 0;
    int v;
    while (n < cap && fscanf(f, "%d", &v) == 1) out[n++] = v;
    fclose(f);
    return n;
}

static float *read_f32(const char *path, int64_t count) {
    FILE *f = fopen(path, "rb");
    if (!f) return NULL;
    float *x = malloc((size_t)count * sizeof *x);
    if (x && fread(x, sizeof *x, (size_t)count, f) != (size_t)count) {
        free(x);
        x = NULL;
    }
    fclose(f);
    return x;
}

static int cmp_double(const void *a, const void *b) {
    double x = *(const double *)a, y = *(const double *)b;
    return (x > y) - (x < y);
}

typedef struct {
    double median, p90, max, argmax_agree;
} parity_stats;

/* r_i = ‖a_i − b_i‖ / ‖b_i‖ over rows; the 90th percentile is the value below which 90 %
 * of the rows lie (nearest rank). */
static parity_stats compare_rows(const float *a, const float *b, int64_t rows, int64_t V) {
    double *r = malloc((size_t)rows * sizeof *r);
    int64_t agree = 0;
    for (int64_t i = 0; i < rows; i++) {
        const float *x = a + i * V, *y = b + i * V;
        double num = 0, den = 0;
        int64_t ax = 0, ay = 0;
        for (int64_t j = 0; j < V; j++) {
            double dd = (double)x[j] - (double)y[j];
            num += dd * dd;
            den += (double)y[j] * y[j];
            if (x[j] > x[ax]) ax = j;
            if (y[j] > y[ay]) ay = j;
        }
        r[i] = den > 0 ? sqrt(num / den) : sqrt(num);
        agree += ax == ay;
    }
    qsort(r, (size_t)rows, sizeof *r, cmp_double);
    parity_stats s;
    s.median = rows % 2 ? r[rows / 2] : 0.5 * (r[rows / 2 - 1] + r[rows / 2]);
    s.p90 = r[(int64_t)ceil(0.9 * (double)rows) - 1];
    s.max = r[rows - 1];
    s.argmax_agree = (double)agree / (double)rows;
    free(r);
    return s;
}

/* Why a fixture cannot run yet: a tensor type without kernels (NULL if all are fine). */
static bool types_supported(const char *path, char *why, size_t cap) {
    moe_gguf *g = moe_gguf_open(path);
    if (!g) {
        snprintf(why, cap, "%s", moe_last_error());
        return false;
    }
    bool ok = true;
    for (int64_t i = 0; i < moe_gguf_n_tensors(g) && ok; i++)
        if (moe_type_check_compute(moe_gguf_tensor_at(g, i)->type) != MOE_OK) {
            snprintf(why, cap, "%s", moe_last_error());
            ok = false;
        }
    moe_gguf_close(g);
    return ok;
}

static void parity_case(const char *name, bool quantized) {
    char rel[128], why[256];
    snprintf(rel, sizeof rel, "gguf/%s.gguf", name);
    const char *path = test_fixture(rel);
    if (!types_supported(path, why, sizeof why)) {
        test_skip("%s: %s (kernels not registered yet)", name, why);
        return;
    }
    int32_t tokens[MAX_TOKENS];
    int64_t n = read_tokens(tokens, MAX_TOKENS);
    REQUIRE(n > 0);
    moe_model_params mp = moe_model_default_params();
    mp.n_threads = 2;
    moe_model *m = moe_model_load(path, &mp);
    REQUIRE_MSG(m, "%s", moe_last_error());
    const int64_t V = moe_model_n_vocab(m);
    moe_context *c = moe_context_init(m, n);
    float *logits = malloc((size_t)(n * V) * sizeof *logits);
    snprintf(rel, sizeof rel, "gguf/%s.logits", name);
    float *ref = read_f32(test_fixture(rel), n * V);
    if (c && logits && ref) {
        moe_status st = moe_eval(c, tokens, n, logits, 0);
        CHECK_MSG(st == MOE_OK, "%s", moe_last_error());
        parity_stats s = compare_rows(logits, ref, n, V);
        fprintf(stderr, "  parity %-16s median %.3g  p90 %.3g  max %.3g  argmax %.1f%%\n", name, s.median, s.p90, s.max,
                100 * s.argmax_agree);
        CHECK_MSG(s.median <= (quantized ? 4e-2 : 5e-3), "%s: median %g", name, s.median);
        CHECK_MSG(s.p90 <= (quantized ? 6e-2 : 2e-2), "%s: p90 %g", name, s.p90);
        CHECK_MSG(s.argmax_agree >= (quantized ? 0.85 : 0.95), "%s: argmax agreement %g", name, s.argmax_agree);
    } else {
        CHECK_MSG(false, "%s: setup failed (%s)", name, c ? "reading the reference logits" : moe_last_error());
    }
    free(ref);
    free(logits);
    moe_context_free(c);
    moe_model_free(m);
}

TEST(parity_mixtral_f16) { parity_case("mixtral-f16", false); }
TEST(parity_mixtral_q8_0) { parity_case("mixtral-q8_0", true); }
TEST(parity_mixtral_q4_0) { parity_case("mixtral-q4_0", true); }
TEST(parity_mixtral_q4_k_s) { parity_case("mixtral-q4_k_s", true); }
TEST(parity_mixtral_q6_k) { parity_case("mixtral-q6_k", true); }
TEST(parity_qwen2moe_f16) { parity_case("qwen2moe-f16", false); }
TEST(parity_qwen2moe_q8_0) { parity_case("qwen2moe-q8_0", true); }
TEST(parity_olmoe_f16) { parity_case("olmoe-f16", false); }
TEST(parity_olmoe_q4_0) { parity_case("olmoe-q4_0", true); }

/* 300 tokens evaluated as batches and one at a time (the decode path) agree within
 * relative L2 1e-4 per row, and MOE_EVAL_LAST_ONLY gives the last row. */
static void batch_vs_tbt(const char *name) {
    char rel[128];
    snprintf(rel, sizeof rel, "gguf/%s.gguf", name);
    int32_t base[MAX_TOKENS], tokens[300];
    int64_t nb = read_tokens(base, MAX_TOKENS);
    REQUIRE(nb > 0);
    for (int i = 0; i < 300; i++) tokens[i] = base[(i * 7 + i / nb) % nb]; /* a reshuffled repeat */
    moe_model_params mp = moe_model_default_params();
    mp.n_threads = 2;
    moe_model *m = moe_model_load(test_fixture(rel), &mp);
    REQUIRE_MSG(m, "%s", moe_last_error());
    const int64_t V = moe_model_n_vocab(m);
    moe_context *c = moe_context_init(m, 300);
    float *a = malloc((size_t)300 * V * sizeof *a), *b = malloc((size_t)300 * V * sizeof *b);
    float *last = malloc((size_t)V * sizeof *last);
    REQUIRE(c && a && b && last);
    CHECK(moe_eval(c, tokens, 300, a, 0) == MOE_OK);
    CHECK_EQ_INT(moe_context_pos(c), 300);
    moe_context_reset(c);
    for (int i = 0; i < 300; i++) CHECK(moe_eval(c, tokens + i, 1, b + (int64_t)i * V, 0) == MOE_OK);
    parity_stats s = compare_rows(b, a, 300, V);
    fprintf(stderr, "  batch vs token-by-token %-14s max rel L2 %.3g\n", name, s.max);
    CHECK_MSG(s.max <= 1e-4, "%s: max relative L2 %g", name, s.max);
    moe_context_reset(c);
    CHECK(moe_eval(c, tokens, 300, last, MOE_EVAL_LAST_ONLY) == MOE_OK);
    s = compare_rows(last, a + 299 * V, 1, V);
    CHECK_MSG(s.max <= 1e-6, "%s: last-only row differs (%g)", name, s.max);
    free(a);
    free(b);
    free(last);
    moe_context_free(c);
    moe_model_free(m);
}

TEST(parity_batch_vs_token_mixtral) { batch_vs_tbt("mixtral-f16"); }
TEST(parity_batch_vs_token_qwen2moe) { batch_vs_tbt("qwen2moe-f16"); }
TEST(parity_batch_vs_token_olmoe) { batch_vs_tbt("olmoe-f16"); }

/* `moe logits` end to end: the file layout, --token-by-token, --dump-routing. */
TEST(parity_cli_logits) {
    const char *dir = test_tmpdir();
    char cmd[2048], out1[512], out2[512], trace[512];
    snprintf(out1, sizeof out1, "%s/a.f32", dir);
    snprintf(out2, sizeof out2, "%s/b.f32", dir);
    snprintf(trace, sizeof trace, "%s/r.jsonl", dir);
    const char *model = test_fixture("gguf/mixtral-f16.gguf"), *toks = test_fixture("gguf/tokens.txt");
    snprintf(cmd, sizeof cmd, "%s logits -m %s --tokens %s -o %s -t 2 --dump-routing %s", test_moe_bin(), model, toks,
             out1, trace);
    char *log = NULL;
    int rc = test_run(cmd, &log);
    CHECK_MSG(rc == 0, "moe logits failed: %s", log ? log : "");
    free(log);
    snprintf(cmd, sizeof cmd, "cat %s | %s logits -m %s --tokens - -o %s --token-by-token", toks, test_moe_bin(), model,
             out2);
    rc = test_run(cmd, &log);
    CHECK_MSG(rc == 0, "moe logits --token-by-token failed: %s", log ? log : "");
    free(log);
    float *a = read_f32(out1, 64 * 4096), *b = read_f32(out2, 64 * 4096);
    float *ref = read_f32(test_fixture("gguf/mixtral-f16.logits"), 64 * 4096);
    REQUIRE(a && b && ref);
    parity_stats s = compare_rows(a, ref, 64, 4096);
    CHECK_MSG(s.median <= 5e-3, "median %g", s.median);
    s = compare_rows(b, a, 64, 4096);
    CHECK_MSG(s.max <= 1e-4, "token-by-token differs: %g", s.max);
    /* 64 tokens × 2 MoE layers, ordered by position then layer, weights summing to 1
     * (Mixtral renormalises). */
    FILE *f = fopen(trace, "r");
    REQUIRE(f);
    char line[512];
    int lines = 0;
    while (fgets(line, sizeof line, f)) {
        long long pos;
        int tok, layer, e0, e1;
        float w0, w1;
        int got = sscanf(line, "{\"pos\":%lld,\"token\":%d,\"layer\":%d,\"experts\":[%d,%d],\"weights\":[%f,%f]}", &pos,
                         &tok, &layer, &e0, &e1, &w0, &w1);
        CHECK_MSG(got == 7, "bad trace line: %s", line);
        if (got == 7) {
            CHECK_EQ_INT(pos, lines / 2);
            CHECK_EQ_INT(layer, lines % 2);
            CHECK(e0 != e1 && e0 >= 0 && e0 < 8 && e1 >= 0 && e1 < 8);
            CHECK_NEAR(w0 + w1, 1.0, 1e-6);
            CHECK(w0 >= w1);
        }
        lines++;
    }
    fclose(f);
    CHECK_EQ_INT(lines, 128);
    free(a);
    free(b);
    free(ref);
}

TEST(parity_cli_logits_errors) {
    const char *dir = test_tmpdir();
    char cmd[2048], toks[512];
    snprintf(toks, sizeof toks, "%s/t.txt", dir);
    FILE *f = fopen(toks, "w");
    REQUIRE(f);
    fprintf(f, "1 2 4096 3\n");
    fclose(f);
    const char *model = test_fixture("gguf/mixtral-f16.gguf");
    snprintf(cmd, sizeof cmd, "%s logits -m %s --tokens %s -o %s/o.f32", test_moe_bin(), model, toks, dir);
    char *log = NULL;
    int rc = test_run(cmd, &log);
    CHECK(rc != 0);
    CHECK_STR_CONTAINS(log, "4096");
    CHECK_STR_CONTAINS(log, "out of range");
    free(log);
    f = fopen(toks, "w");
    REQUIRE(f);
    fprintf(f, "1 2 x3\n");
    fclose(f);
    rc = test_run(cmd, &log);
    CHECK(rc != 0);
    CHECK_STR_CONTAINS(log, "x3");
    free(log);
    f = fopen(toks, "w");
    REQUIRE(f);
    fprintf(f, "1 2 3\n");
    fclose(f);
    snprintf(cmd, sizeof cmd, "%s logits -m %s/missing.gguf --tokens %s -o %s/o.f32", test_moe_bin(), dir, toks, dir);
    rc = test_run(cmd, &log);
    CHECK(rc != 0);
    CHECK_STR_CONTAINS(log, "missing.gguf");
    free(log);
}
