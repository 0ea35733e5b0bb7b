/* test_upcycle.c — `moe upcycle` (sparse upcycling): the MoE file's experts are exact
 * copies of the dense FFN and its router is N(0, 0.02²); at step 0 the inference engine's
 * logits of the upcycled model equal the dense model's (the dense and the MoE code paths of
 * moe_eval, so neither checks itself); `moe train` starts from the dense model's loss and
 * lowers it; unsupported requests are refused clearly. --every N > 1 (only the layers with
 * (il+1) % N == 0 upcycled, the others dense): the same at step 0, training, checkpoint
 * and resume, the dense/MoE pattern after reloading, and a layer with neither a router nor
 * a dense FFN is an error naming both tensors. */
#include "test.h"
#include "moe.h"
#include "model/model.h"
#include "train/tmodel.h"

#include <stdlib.h>

static char *tmp(const char *name) {
    static char buf[8][512];
    static int i;
    char *b = buf[i++ % 8];
    snprintf(b, sizeof buf[0], "%s/%s", test_tmpdir(), name);
    return b;
}

/* A dense llama model (moe init --experts 0) of a tiny shape. */
static bool make_dense_layers(const char *path, int64_t n_layer) {
    moe_init_params p;
    moe_init_default_params(&p);
    p.n_layer = n_layer;
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
static bool make_dense(const char *path) { return make_dense_layers(path, 2); }

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
    CHECK(test_run(cmd, &out) == 0);
    CHECK_STR_CONTAINS(out, "the others dense");
    free(out);
    snprintf(cmd, sizeof cmd, "%s upcycle -m %s --experts 4 --topk 2 --every 3 -o %s 2>&1", test_moe_bin(), dense, up);
    CHECK(test_run(cmd, &out) == 2);
    CHECK_STR_CONTAINS(out, "--every 3 exceeds the 2 layers");
    free(out);
    snprintf(cmd, sizeof cmd, "%s upcycle -m %s --every 0 -o %s 2>&1", test_moe_bin(), dense, up);
    CHECK(test_run(cmd, &out) == 2);
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

/* ---------------------------------------------------------------- --every N > 1 */

/* The layers --every N upcycles, as docs/TRAINING.md states the rule. */
static bool chosen(int il, int every) { return (il + 1) % every == 0; }

static bool same_tensor(const moe_gguf *a, const char *na, const moe_gguf *b, const char *nb, int copies) {
    const moe_gguf_tensor *ta = moe_gguf_find_tensor(a, na), *tb = moe_gguf_find_tensor(b, nb);
    if (!ta || !tb || ta->type != 0 || tb->type != 0 || ta->ne[0] != tb->ne[0] || ta->ne[1] != tb->ne[1] ||
        tb->ne[2] != copies)
        return false;
    for (int e = 0; e < copies; e++)
        if (memcmp((const uint8_t *)tb->data + (size_t)e * ta->nbytes, ta->data, ta->nbytes)) return false;
    return true;
}

/* The dense/MoE pattern as the inference loader and the training loader see the file. */
static void check_pattern(const char *path, int n_layer, int every) {
    moe_model *m = moe_model_load(path, NULL);
    REQUIRE_MSG(m, "%s", moe_last_error());
    moe_gguf *g = moe_gguf_open(path);
    REQUIRE(g);
    tm_config *c = malloc(sizeof *c);
    REQUIRE(c);
    REQUIRE_MSG(tm_config_from_gguf(g, c) == MOE_OK, "%s", moe_last_error());
    for (int il = 0; il < n_layer; il++) {
        CHECK_MSG(m->layers[il].is_moe == chosen(il, every), "every %d: inference layer %d is_moe %d", every, il,
                  m->layers[il].is_moe);
        CHECK_MSG(c->moe_layer[il] == chosen(il, every), "every %d: training layer %d moe %d", every, il,
                  c->moe_layer[il]);
    }
    CHECK_EQ_INT(c->hp.n_ff, 24);
    CHECK_EQ_INT(c->hp.n_ff_exp, 24);
    tm_config_free(c);
    free(c);
    moe_gguf_close(g);
    moe_model_free(m);
}

TEST(upcycle_every_n_logits_equal_dense) {
    const char *dense = tmp("dense5.gguf");
    REQUIRE_MSG(make_dense_layers(dense, 5), "%s", moe_last_error());
    int32_t toks[24];
    for (int i = 0; i < 24; i++) toks[i] = (int32_t)((i * 37 + 5) % 300);
    int64_t V = 0;
    float *a = eval_all(dense, toks, 24, &V);
    REQUIRE_MSG(a && V == 300, "%s", moe_last_error());
    static const char *const parts[] = {"gate", "up", "down"};
    for (int every = 2; every <= 3; every++) {
        const char *up = tmp(every == 2 ? "up_e2.gguf" : "up_e3.gguf");
        moe_upcycle_params p;
        moe_upcycle_default_params(&p);
        p.n_expert = 4;
        p.n_expert_used = 2;
        p.every = every;
        p.seed = 3;
        REQUIRE_MSG(moe_upcycle(&p, dense, up) == MOE_OK, "%s", moe_last_error());
        /* chosen layers: router + 4 copies of the dense FFN; the others: the dense FFN as it was */
        moe_gguf *gd = moe_gguf_open(dense), *gu = moe_gguf_open(up);
        REQUIRE(gd && gu);
        for (int il = 0; il < 5; il++) {
            char nr[64];
            snprintf(nr, sizeof nr, "blk.%d.ffn_gate_inp.weight", il);
            CHECK_MSG((moe_gguf_find_tensor(gu, nr) != NULL) == chosen(il, every), "every %d: %s", every, nr);
            for (int k = 0; k < 3; k++) {
                char nd[64], nx[64];
                snprintf(nd, sizeof nd, "blk.%d.ffn_%s.weight", il, parts[k]);
                snprintf(nx, sizeof nx, "blk.%d.ffn_%s_exps.weight", il, parts[k]);
                if (chosen(il, every)) {
                    CHECK_MSG(same_tensor(gd, nd, gu, nx, 4) && !moe_gguf_find_tensor(gu, nd), "every %d: %s", every, nx);
                } else {
                    CHECK_MSG(same_tensor(gd, nd, gu, nd, 1) && !moe_gguf_find_tensor(gu, nx), "every %d: %s", every, nd);
                }
            }
        }
        moe_gguf_close(gd);
        moe_gguf_close(gu);
        check_pattern(up, 5, every);
        /* step 0: the same function (as the --every 1 test: float rounding only) */
        int64_t V2 = 0;
        float *b = eval_all(up, toks, 24, &V2);
        REQUIRE_MSG(b && V2 == 300, "%s", moe_last_error());
        double worst = 0, scale = 0;
        for (int64_t i = 0; i < 24 * V; i++) {
            worst = fmax(worst, fabs((double)a[i] - b[i]));
            scale = fmax(scale, fabs((double)a[i]));
        }
        CHECK_MSG(worst <= 1e-5 * fmax(scale, 1.0), "every %d: upcycled logits differ from the dense model's by %g (scale %g)",
                  every, worst, scale);
        free(b);
    }
    free(a);
}

/* Trains from the dense model's loss, checkpoints and resumes bit for bit, and the
 * trained file keeps its dense/MoE pattern. */
TEST(upcycle_every_n_trains_on) {
    /* tmp() reuses 8 buffers: the paths that live through the test get their own */
    char dense[512], up[512], data[512], ck[512], full[512], full_log[512], half_log[512], resumed[512];
    snprintf(dense, sizeof dense, "%s", tmp("dense3l.gguf"));
    snprintf(up, sizeof up, "%s", tmp("up3l.gguf"));
    snprintf(data, sizeof data, "%s", tmp("data3.txt"));
    snprintf(ck, sizeof ck, "%s", tmp("u3_ck.gguf"));
    snprintf(full, sizeof full, "%s", tmp("u3_full.gguf"));
    snprintf(full_log, sizeof full_log, "%s", tmp("u3_full.jsonl"));
    snprintf(half_log, sizeof half_log, "%s", tmp("u3_half.jsonl"));
    snprintf(resumed, sizeof resumed, "%s", tmp("u3_resumed.gguf"));
    REQUIRE_MSG(make_dense_layers(dense, 3), "%s", moe_last_error());
    moe_upcycle_params up_p;
    moe_upcycle_default_params(&up_p);
    up_p.n_expert = 4;
    up_p.n_expert_used = 2;
    up_p.every = 2;
    REQUIRE_MSG(moe_upcycle(&up_p, dense, up) == MOE_OK, "%s", moe_last_error());
    FILE *f = fopen(data, "w");
    REQUIRE(f);
    for (int i = 0; i < 20; i++) fputs("the quick brown fox jumps over the lazy dog. ", f);
    fclose(f);
    moe_train_params t;
    moe_train_default_params(&t);
    t.data_path = data;
    t.batch = 4;
    t.ctx = 16;
    t.lr = 1e-2;
    t.warmup = 3;
    t.n_threads = 1;
    t.progress = false;
    t.seed = 5;
    /* the dense model's first loss */
    t.model_path = dense;
    t.steps = 1;
    t.out_path = tmp("d3_out.gguf");
    t.log_path = tmp("d3.jsonl");
    REQUIRE_MSG(moe_train(&t) == MOE_OK, "%s", moe_last_error());
    /* the upcycled model: 20 steps at once, and 10 + a resumed 10 */
    t.model_path = up;
    t.steps = 20;
    t.out_path = full;
    t.log_path = full_log;
    REQUIRE_MSG(moe_train(&t) == MOE_OK, "%s", moe_last_error());
    t.stop_at = 10;
    t.out_path = tmp("u3_half.gguf");
    t.log_path = half_log;
    t.checkpoint_path = ck;
    REQUIRE_MSG(moe_train(&t) == MOE_OK, "%s", moe_last_error());
    t.stop_at = 0;
    t.resume_path = ck;
    t.checkpoint_path = NULL;
    t.out_path = resumed;
    REQUIRE_MSG(moe_train(&t) == MOE_OK, "%s", moe_last_error());

    const double d0 = nth_loss(tmp("d3.jsonl"), 0), u0 = nth_loss(full_log, 0);
    const double ul = nth_loss(full_log, -1), rl = nth_loss(half_log, -1);
    CHECK_MSG(fabs(d0 - u0) <= 1e-4 * fabs(d0), "first loss: dense %g, upcycled every 2 %g", d0, u0);
    CHECK_MSG(u0 > 5.0 && ul < u0 - 2.0, "upcycled (every 2) loss %g → %g after 20 steps", u0, ul);
    CHECK_MSG(rl == ul, "resumed run's last loss %.17g, uninterrupted %.17g", rl, ul);
    moe_gguf *x = moe_gguf_open(full), *y = moe_gguf_open(resumed);
    REQUIRE(x && y);
    CHECK_EQ_INT(moe_gguf_n_tensors(x), moe_gguf_n_tensors(y));
    for (int64_t i = 0; i < moe_gguf_n_tensors(x); i++) {
        const moe_gguf_tensor *tx = moe_gguf_tensor_at(x, i), *ty = moe_gguf_find_tensor(y, tx->name);
        CHECK_MSG(ty && tx->nbytes == ty->nbytes && !memcmp(tx->data, ty->data, tx->nbytes), "%s differs", tx->name);
    }
    moe_gguf_close(x);
    moe_gguf_close(y);
    check_pattern(full, 3, 2);
    /* trained, the experts differ: moe_eval's logits equal the training forward pass's
     * (which test_train_grad checks against finite differences on this layer pattern) */
    int32_t toks[12];
    for (int i = 0; i < 12; i++) toks[i] = (int32_t)((i * 41 + 7) % 300);
    int64_t V = 0;
    float *a = eval_all(full, toks, 12, &V);
    REQUIRE_MSG(a && V == 300, "%s", moe_last_error());
    moe_gguf *g = moe_gguf_open(full);
    tm_config *c = malloc(sizeof *c);
    tm_model *tm = malloc(sizeof *tm);
    REQUIRE(g && c && tm);
    REQUIRE_MSG(tm_config_from_gguf(g, c) == MOE_OK, "%s", moe_last_error());
    REQUIRE(tm_model_init(tm, c, NULL) == MOE_OK);
    REQUIRE(tm_model_load_weights(tm, g, false, 0) == MOE_OK);
    REQUIRE(tm_forward(tm, toks, NULL, 1, 12) == MOE_OK);
    double worst = 0, scale = 0, spread = 0;
    for (int64_t i = 0; i < 12 * V; i++) {
        worst = fmax(worst, fabs(a[i] - tm->logits[i]));
        scale = fmax(scale, fabs(tm->logits[i]));
    }
    /* the experts of layer 1 did move apart (else this would compare dense paths only) */
    const tm_tensor *tg = tm_find(tm, "blk.1.ffn_gate_exps.weight");
    REQUIRE(tg);
    const size_t per = (size_t)(tg->ne[0] * tg->ne[1]);
    for (size_t j = 0; j < per; j++) spread = fmax(spread, fabs(tm->params[tg->off + j] - tm->params[tg->off + per + j]));
    CHECK_MSG(spread > 1e-3, "experts 0 and 1 of layer 1 still equal after training (max diff %g)", spread);
    CHECK_MSG(worst <= 1e-4 * fmax(scale, 1.0), "inference logits differ from training's by %g (scale %g)", worst, scale);
    tm_model_free(tm);
    tm_config_free(c);
    free(tm);
    free(c);
    moe_gguf_close(g);
    free(a);
    /* expert offloading (--mem, shared and per-layer cache) generates what the mapped file
     * does: the dense layers hold no experts, and the per-layer cache still has its slots */
    char cmd[2048], *ref = NULL, *out = NULL;
    snprintf(cmd, sizeof cmd, "%s run -m %s --prompt-tokens '1 5 9 12' -n 12 --temp 0 -t 1 2>&1", test_moe_bin(), full);
    REQUIRE(test_run(cmd, &ref) == 0 && ref);
    char *stats = strstr(ref, "moe run:"); /* the generated text comes first, the statistics after */
    REQUIRE(stats && stats > ref);
    *stats = 0;
    static const char *const modes[] = {"--mem 64M", "--mem 64M --cache-per-layer"};
    for (int k = 0; k < 2; k++) {
        snprintf(cmd, sizeof cmd, "%s run -m %s --prompt-tokens '1 5 9 12' -n 12 --temp 0 -t 1 %s 2>&1", test_moe_bin(),
                 full, modes[k]);
        CHECK_MSG(test_run(cmd, &out) == 0, "%s: %s", modes[k], out ? out : "");
        CHECK_MSG(out && !strncmp(out, ref, strlen(ref)) && strstr(out, "expert cache"), "%s: '%s' vs '%s'", modes[k],
                  out ? out : "", ref);
        free(out);
        out = NULL;
    }
    free(ref);
}

/* A copy of `src` without tensor `drop`. */
static bool copy_without(const char *src, const char *dst, const char *drop) {
    moe_gguf *g = moe_gguf_open(src);
    moe_gguf_writer *w = moe_gguf_writer_init();
    bool ok = g && w;
    for (int64_t i = 0; ok && i < moe_gguf_n_kv(g); i++)
        ok = moe_gguf_writer_set_value(w, moe_gguf_kv_key(g, i), moe_gguf_kv_value(g, i)) == MOE_OK;
    for (int64_t i = 0; ok && i < moe_gguf_n_tensors(g); i++) {
        const moe_gguf_tensor *t = moe_gguf_tensor_at(g, i);
        if (strcmp(t->name, drop) != 0)
            ok = moe_gguf_writer_add_tensor(w, t->name, t->type, t->n_dims, t->ne, t->data, t->nbytes) == MOE_OK;
    }
    ok = ok && moe_gguf_writer_write(w, dst) == MOE_OK;
    moe_gguf_writer_free(w);
    moe_gguf_close(g);
    return ok;
}

TEST(upcycle_every_n_layer_without_ffn_is_an_error) {
    const char *dense = tmp("dense_bad.gguf"), *up = tmp("up_bad.gguf");
    REQUIRE_MSG(make_dense_layers(dense, 3), "%s", moe_last_error());
    moe_upcycle_params p;
    moe_upcycle_default_params(&p);
    p.n_expert = 4;
    p.n_expert_used = 2;
    p.every = 2;
    REQUIRE_MSG(moe_upcycle(&p, dense, up) == MOE_OK, "%s", moe_last_error());
    /* layer 1 (MoE) loses its router, layer 2 (dense) its ffn_gate: neither kind remains */
    static const struct { const char *drop, *router, *ffn; } cases[] = {
        {"blk.1.ffn_gate_inp.weight", "blk.1.ffn_gate_inp.weight", "blk.1.ffn_gate.weight"},
        {"blk.2.ffn_gate.weight", "blk.2.ffn_gate_inp.weight", "blk.2.ffn_gate.weight"},
    };
    for (size_t k = 0; k < sizeof cases / sizeof *cases; k++) {
        const char *bad = tmp(k ? "bad2.gguf" : "bad1.gguf");
        REQUIRE_MSG(copy_without(up, bad, cases[k].drop), "%s", moe_last_error());
        CHECK(moe_model_load(bad, NULL) == NULL);
        CHECK_STR_CONTAINS(moe_last_error(), bad);
        CHECK_STR_CONTAINS(moe_last_error(), cases[k].router);
        CHECK_STR_CONTAINS(moe_last_error(), cases[k].ffn);
        CHECK_STR_CONTAINS(moe_last_error(), "neither");
        /* the training loader says the same */
        moe_gguf *g = moe_gguf_open(bad);
        REQUIRE(g);
        tm_config *c = malloc(sizeof *c);
        REQUIRE(c);
        CHECK(tm_config_from_gguf(g, c) != MOE_OK);
        CHECK_STR_CONTAINS(moe_last_error(), cases[k].router);
        CHECK_STR_CONTAINS(moe_last_error(), cases[k].ffn);
        free(c);
        moe_gguf_close(g);
    }
}
