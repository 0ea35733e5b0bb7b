/* test_train_infer.c — models trained with each router of the literature run in the
 * inference engine (`moe run` / moe_eval) and route exactly as training does: the logits of
 * moe_eval equal the training forward pass's on the same tokens. Capacity dropping is a
 * training-time rule, so the token-choice routers are trained without it here; BASE layers
 * are trained with greedy assignment, which is also their inference rule. */
#include "test.h"
#include "moe.h"
#include "train/tmodel.h"

#include <stdlib.h>

static const char *tmp(const char *name) {
    static char buf[4][512];
    static int i;
    char *b = buf[i++ % 4];
    snprintf(b, sizeof buf[0], "%s/%s", test_tmpdir(), name);
    return b;
}

typedef struct { const char *router, *flags; bool per_token; } router_case;

TEST(train_routers_run_in_inference) {
    static const router_case cases[] = {
        {"topk", "--capacity-factor 0", true},
        {"switch", "--capacity-factor 0", true},
        {"gshard", "--capacity-factor 0", true},
        {"deepseek-v3", "--n-group 2 --topk-group 1", true},
        {"loss-free", "", true},
        {"adamoe", "--null-experts 2", true},
        {"hash", "", true},
        {"base", "--assign greedy", true},
        {"expert-choice", "", false},
        {"usmoe", "", false},
        {"soft-moe", "--slots 2", false},
    };
    const char *text = tmp("text.txt");
    FILE *f = fopen(text, "w");
    REQUIRE(f);
    for (int i = 0; i < 300; i++) fprintf(f, "%s ", (const char *[]){"the", "cat", "sat", "on", "a", "mat", "dog", "ran"}[i * 7 % 8]);
    fclose(f);
    char cmd[2048], *out = NULL;
    const char *base = tmp("base.gguf");
    snprintf(cmd, sizeof cmd, "%s init --arch mixtral --layers 2 --embd 32 --heads 4 --kv-heads 2 --ff 24 --experts 4 "
             "--topk 2 --ctx 64 --vocab %s --vocab-size 300 -o %s", test_moe_bin(),
             test_fixture("tokenizer/ggml-vocab-llama-spm.gguf"), base);
    REQUIRE_MSG(test_run(cmd, &out) == 0, "%s", out);
    free(out);
    for (size_t k = 0; k < sizeof cases / sizeof *cases; k++) {
        const router_case *rc = &cases[k];
        const char *trained = tmp("trained.gguf");
        snprintf(cmd, sizeof cmd, "%s train -m %s --data %s --router %s %s --steps 2 --batch 2 --ctx 8 -t 1 -o %s",
                 test_moe_bin(), base, text, rc->router, rc->flags, trained);
        int r = test_run(cmd, &out);
        REQUIRE_MSG(r == 0, "%s: %s", rc->router, out);
        free(out);
        moe_model *m = moe_model_load(trained, NULL);
        REQUIRE_MSG(m, "%s: %s", rc->router, moe_last_error());
        moe_context *c = moe_context_init(m, 16);
        REQUIRE(c);
        int32_t toks[10];
        for (int i = 0; i < 10; i++) toks[i] = (int32_t)((i * 41 + 7) % 300);
        const int64_t V = moe_model_n_vocab(m);
        float *a = malloc((size_t)(10 * V) * sizeof *a), *b = malloc((size_t)(10 * V) * sizeof *b);
        REQUIRE(a && b);
        REQUIRE_MSG(moe_eval(c, toks, 10, a, 0) == MOE_OK, "%s: %s", rc->router, moe_last_error());
        /* the training forward pass on the same file and tokens */
        moe_gguf *g = moe_gguf_open(trained);
        tm_config cfg;
        tm_model tm;
        REQUIRE_MSG(tm_config_from_gguf(g, &cfg) == MOE_OK, "%s", moe_last_error());
        REQUIRE(tm_model_init(&tm, &cfg, NULL) == MOE_OK);
        REQUIRE(tm_model_load_weights(&tm, g, false, 0) == MOE_OK);
        REQUIRE(tm_forward(&tm, toks, NULL, 1, 10) == MOE_OK);
        double worst = 0, scale = 0;
        for (int64_t i = 0; i < 10 * V; i++) {
            worst = fmax(worst, fabs(a[i] - tm.logits[i]));
            scale = fmax(scale, fabs(tm.logits[i]));
        }
        CHECK_MSG(worst <= 1e-4 * fmax(scale, 1.0), "%s: inference logits differ from training's by %g (scale %g)",
                  rc->router, worst, scale);
        /* per-token rules: decoding one token at a time routes the same way */
        if (rc->per_token) {
            moe_context_reset(c);
            for (int i = 0; i < 10; i++) REQUIRE(moe_eval(c, toks + i, 1, b + i * V, 0) == MOE_OK);
            double w2 = 0;
            for (int64_t i = 0; i < 10 * V; i++) w2 = fmax(w2, fabs(a[i] - b[i]));
            CHECK_MSG(w2 <= 1e-4 * fmax(scale, 1.0), "%s: token by token differs from the batch by %g", rc->router, w2);
        }
        tm_model_free(&tm);
        tm_config_free(&cfg);
        moe_gguf_close(g);
        free(a);
        free(b);
        moe_context_free(c);
        moe_model_free(m);
    }
}

TEST(train_soft_moe_runs_but_not_offloaded) {
    char cmd[2048], *out = NULL;
    const char *base = tmp("b.gguf"), *trained = tmp("s.gguf"), *text = tmp("t.txt");
    FILE *f = fopen(text, "w");
    REQUIRE(f);
    fputs("the cat sat on the mat and the dog ran to the big red house again and again", f);
    fclose(f);
    snprintf(cmd, sizeof cmd, "%s init --arch mixtral --layers 1 --embd 16 --heads 2 --kv-heads 2 --ff 16 --experts 2 "
             "--topk 1 --ctx 32 --vocab %s --vocab-size 300 -o %s && %s train -m %s --data %s --router soft-moe --steps 1 "
             "--batch 1 --ctx 8 -t 1 -o %s", test_moe_bin(), test_fixture("tokenizer/ggml-vocab-llama-spm.gguf"), base,
             test_moe_bin(), base, text, trained);
    REQUIRE_MSG(test_run(cmd, &out) == 0, "%s", out);
    free(out);
    /* generation runs; --mem is refused with a reason */
    snprintf(cmd, sizeof cmd, "%s run -m %s --prompt-tokens '1 5 9' -n 4 --temp 0", test_moe_bin(), trained);
    CHECK_EQ_INT(test_run(cmd, &out), 0);
    free(out);
    snprintf(cmd, sizeof cmd, "%s run -m %s --prompt-tokens '1 5 9' -n 4 --temp 0 --mem 64M", test_moe_bin(), trained);
    CHECK_EQ_INT(test_run(cmd, &out), 1);
    CHECK_STR_CONTAINS(out, "Soft MoE");
    free(out);
}
