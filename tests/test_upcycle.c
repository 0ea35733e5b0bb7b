/* test_upcycle.c — `moe upcycle` (sparse upcycling): the MoE file's experts are exact
 * copies of the dense FFN and its router is N(0, 0.02²); at step 0 the inference engine's
 * logits of the upcycled model equal the dense model's (the dense and the MoE code paths of
 * moe_eval, so neither checks itself); `moe train` starts from the dense model's loss and
 * lowers it; unsupported requests are refused clearly. */
#include "test.h"
#include "moe.h"

#include <stdlib.h>

static char *tmp(const char *name) {
    static char buf[8][512];
    static int i;
    char *b = buf[i++ % 8];
    snprintf(b, sizeof buf[0], "%s/%s", test_tmpdir(), name);
    return b;
}

/* A dense llama model (moe init --experts 0) of a tiny shape. */
static bool make_dense(const char *path) {
    moe_init_params p;
    moe_init_default_params(&p);
    p.n_layer = 2;
    p.n_embd = 32;
    p.n_head = 4;
    p.n_head_kv = 2;
    p.n_ff = 24;
    p.n_expert = 0;
    p.n_ctx = 64;
    p.vocab_size = 300;
    p.seed = 7;
    return moe_init_model(&p, test_fixture("tokenizer/ggml-vocab-llama-spm.gguf"), path) == MOE_OK;
}

static float *eval_all(const char *path, const int32_t *toks, int n, int64_t *V) {
    moe_model *m = moe_model_load(path, NULL);
    if (!m) return NULL;
    moe_context *c = moe_context_init(m, 64);
    *V = moe_model_n_vocab(m);
    float *lg = malloc((size_t)(n * *V) * sizeof *lg);
    if (!c || !lg || moe_eval(c, toks, n, lg, 0) != MOE_OK) { free(lg); lg = NULL; }
    moe_context_free(c);
    moe_model_free(m);
    return lg;
}

TEST(upcycle_logits_equal_dense) {
    const char *dense = tmp("dense.gguf"), *up = tmp("up.gguf");
    REQUIRE_MSG(make_dense(dense), "%s", moe_last_error());
    moe_upcycle_params p;
    moe_upcycle_default_params(&p);
    p.n_expert = 4;
    p.n_expert_used = 2;
    p.seed = 11;
    REQUIRE_MSG(moe_upcycle(&p, dense, up) == MOE_OK, "%s", moe_last_error());

    /* the file: Mixtral layout, every expert a copy of the dense FFN, router N(0, 0.02²) */
    moe_gguf *gd = moe_gguf_open(dense), *gu = moe_gguf_open(up);
    REQUIRE(gd && gu);
    int64_t ne = 0;
    CHECK(moe_gguf_get_i64(gu, "llama.expert_count", &ne) == MOE_OK && ne == 4);
    CHECK(moe_gguf_get_i64(gu, "llama.expert_used_count", &ne) == MOE_OK && ne == 2);
    CHECK(moe_gguf_find(gu, "moe.router.kind") == NULL); /* a plain llama.cpp Mixtral file */
    static const char *const parts[] = {"gate", "up", "down"};
    for (int il = 0; il < 2; il++)
        for (int k = 0; k < 3; k++) {
            char nd[64], nu[64];
            snprintf(nd, sizeof nd, "blk.%d.ffn_%s.weight", il, parts[k]);
            snprintf(nu, sizeof nu, "blk.%d.ffn_%s_exps.weight", il, parts[k]);
            const moe_gguf_tensor *td = moe_gguf_find_tensor(gd, nd), *tu = moe_gguf_find_tensor(gu, nu);
            REQUIRE_MSG(td && tu && !moe_gguf_find_tensor(gu, nd), "%s / %s", nd, nu);
            REQUIRE(td->type == 0 /* F32 */ && tu->type == 0 /* F32 */);
            CHECK(tu->ne[0] == td->ne[0] && tu->ne[1] == td->ne[1] && tu->ne[2] == 4);
            const size_t per = (size_t)(td->ne[0] * td->ne[1]);
            for (int e = 0; e < 4; e++)
                CHECK_MSG(!memcmp((const float *)tu->data + e * per, td->data, per * sizeof(float)), "%s expert %d", nu, e);
        }
    double s2 = 0;
    int64_t nr = 0;
    for (int il = 0; il < 2; il++) {
        char nr_name[64];
        snprintf(nr_name, sizeof nr_name, "blk.%d.ffn_gate_inp.weight", il);
        const moe_gguf_tensor *tr = moe_gguf_find_tensor(gu, nr_name);
        REQUIRE(tr && tr->ne[0] == 32 && tr->ne[1] == 4);
        for (int64_t j = 0; j < 32 * 4; j++) s2 += (double)((const float *)tr->data)[j] * ((const float *)tr->data)[j];
        nr += 32 * 4;
    }
    const double sd = sqrt(s2 / (double)nr);
    CHECK_MSG(sd > 0.016 && sd < 0.024, "router std %g, expected 0.02 (256 samples: ±20%%)", sd);
    moe_gguf_close(gd);
    moe_gguf_close(gu);

    /* step 0: the same function. With renormalised top-2 weights summing to 1 over
     * identical experts the only difference is float rounding of w1·y + w2·y. */
    int32_t toks[24];
    for (int i = 0; i < 24; i++) toks[i] = (int32_t)((i * 37 + 5) % 300);
    int64_t V = 0, V2 = 0;
    float *a = eval_all(dense, toks, 24, &V), *b = eval_all(up, toks, 24, &V2);
    REQUIRE_MSG(a && b && V == 300 && V2 == 300, "%s", moe_last_error());
    double worst = 0, scale = 0;
    for (int64_t i = 0; i < 24 * V; i++) {
        worst = fmax(worst, fabs((double)a[i] - b[i]));
        scale = fmax(scale, fabs((double)a[i]));
    }
    CHECK_MSG(worst <= 1e-5 * fmax(scale, 1.0), "upcycled logits differ from the dense model's by %g (scale %g)", worst,
              scale);
    free(a);
    free(b);
}

static double nth_loss(const char *log, int which) { /* which < 0: the last */
    FILE *f = fopen(log, "r");
    if (!f) return NAN;
    char line[8192];
    double v = NAN;
    int n = 0;
    while (fgets(line, sizeof line, f)) {
        const char *q = strstr(line, "\"loss\":");
        if (!q || strstr(line, "\"eval\"")) continue;
        if (which < 0 || n++ == which) v = strtod(q + 7, NULL);
        if (which >= 0 && n > which) break;
    }
    fclose(f);
    return v;
}

TEST(upcycle_trains_on) {
    const char *dense = tmp("dense2.gguf"), *up = tmp("up2.gguf"), *data = tmp("data.txt");
    REQUIRE_MSG(make_dense(dense), "%s", moe_last_error());
    moe_upcycle_params p;
    moe_upcycle_default_params(&p);
    p.n_expert = 4;
    p.n_expert_used = 2;
    REQUIRE_MSG(moe_upcycle(&p, dense, up) == MOE_OK, "%s", moe_last_error());
    FILE *f = fopen(data, "w");
    REQUIRE(f);
    for (int i = 0; i < 20; i++) fputs("the quick brown fox jumps over the lazy dog. ", f);
    fclose(f);
    const char *paths[2] = {dense, up}, *logs[2] = {tmp("d.jsonl"), tmp("u.jsonl")};
    for (int k = 0; k < 2; k++) {
        moe_train_params t;
        moe_train_default_params(&t);
        t.model_path = paths[k];
        t.data_path = data;
        t.out_path = tmp(k ? "u_out.gguf" : "d_out.gguf");
        t.log_path = logs[k];
        t.batch = 4;
        t.ctx = 16;
        t.steps = k ? 30 : 1;
        t.lr = 1e-2;
        t.warmup = 3;
        t.n_threads = 1;
        t.progress = false;
        t.seed = 5;
        REQUIRE_MSG(moe_train(&t) == MOE_OK, "%s", moe_last_error());
    }
    /* same data windows (seed): the upcycled model's first training loss is the dense one's */
    const double d0 = nth_loss(logs[0], 0), u0 = nth_loss(logs[1], 0), ul = nth_loss(logs[1], -1);
    CHECK_MSG(fabs(d0 - u0) <= 1e-4 * fabs(d0), "first loss: dense %g, upcycled %g", d0, u0);
    CHECK_MSG(u0 > 5.0 && ul < u0 - 2.0, "upcycled loss %g → %g after 30 steps", u0, ul);
    moe_model *m = moe_model_load(tmp("u_out.gguf"), NULL);
    CHECK_MSG(m != NULL, "%s", moe_last_error());
    moe_model_free(m);
}

TEST(upcycle_cli_errors) {
    const char *dense = tmp("dense3.gguf"), *up = tmp("up3.gguf");
    REQUIRE_MSG(make_dense(dense), "%s", moe_last_error());
    char cmd[2048], *out = NULL;
    snprintf(cmd, sizeof cmd, "%s upcycle -m %s --experts 4 --topk 2 --every 2 -o %s 2>&1", test_moe_bin(), dense, up);
    CHECK(test_run(cmd, &out) == 2);
    CHECK_STR_CONTAINS(out, "--every 2 is not supported");
    free(out);
    snprintf(cmd, sizeof cmd, "%s upcycle -m %s --experts 2 --topk 3 -o %s 2>&1", test_moe_bin(), dense, up);
    CHECK(test_run(cmd, &out) == 2);
    CHECK_STR_CONTAINS(out, "--topk 3 exceeds --experts 2");
    free(out);
    /* an MoE model is not a dense one */
    snprintf(cmd, sizeof cmd, "%s upcycle -m %s --experts 4 --topk 2 -o %s 2>&1 && %s upcycle -m %s -o %s.2 2>&1",
             test_moe_bin(), dense, up, test_moe_bin(), up, up);
    CHECK(test_run(cmd, &out) == 2);
    CHECK_STR_CONTAINS(out, "needs a dense llama model");
    free(out);
    snprintf(cmd, sizeof cmd, "%s upcycle --help", test_moe_bin());
    CHECK(test_run(cmd, &out) == 0);
    CHECK_STR_CONTAINS(out, "Komatsuzaki");
    free(out);
}
