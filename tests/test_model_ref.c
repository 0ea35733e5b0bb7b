/* test_model_ref.c — every architecture against an independent PyTorch reimplementation
 * of the published model definitions (tests/ref/moe_ref.py, float64): tiny random F32
 * models written with the GGUF writer, qwen3moe and deepseek (no llama.cpp fixtures
 * exist for them) and variants of the others (top-1, per-expert layout, linear RoPE
 * scaling, head size ≠ n_embd / n_head, tied embeddings). Same bounds as the F16 fixtures. */
#include "test.h"
#include "test_model_gen.h"

#include <stdlib.h>

#define N_TOK 40

typedef struct {
    const char *name;
    gen_spec spec;
} ref_case;

static const ref_case g_cases[] = {
    /* Qwen3-MoE: per-head q/k norm, head size 128 (as the real models; the attention's
     * register path for 128) with n_embd 64 / 4 heads = 16, GQA, renormalised top-2 (no
     * expert_weights_norm key, as real files), RoPE base 1e6. */
    {"qwen3moe", {.arch = "qwen3moe", .n_layer = 2, .n_embd = 64, .n_head = 4, .n_head_kv = 2, .head_dim = 128,
                  .n_vocab = 300, .n_expert = 8, .n_expert_used = 2, .n_ff_exp = 48, .qk_norm = 1,
                  .rope_base = 1e6f, .expert_weights_norm = -1, .router_scale = 4, .seed = 101}},
    /* DeepSeek-MoE v1: one dense leading layer, 2 shared experts, fine-grained top-3 of
     * 8, tied embeddings. */
    {"deepseek", {.arch = "deepseek", .n_layer = 3, .n_embd = 64, .n_head = 4, .n_head_kv = 4, .n_vocab = 300,
                  .n_expert = 8, .n_expert_used = 3, .n_ff_exp = 32, .n_ff = 96, .n_expert_shared = 2,
                  .n_dense_lead = 1, .tied = true, .expert_weights_norm = -1, .router_scale = 4, .seed = 102}},
    /* Mixtral-style llama: top-1 routing, per-expert tensors, linear RoPE scaling ×2. */
    {"llama-top1-per-expert", {.arch = "llama", .n_layer = 2, .n_embd = 64, .n_head = 4, .n_head_kv = 2,
                               .n_vocab = 300, .n_expert = 4, .n_expert_used = 1, .n_ff_exp = 64,
                               .per_expert = true, .rope_linear_factor = 2, .expert_weights_norm = -1,
                               .router_scale = 4, .seed = 103}},
    /* Qwen2-MoE: q/k/v biases, sigmoid-gated shared expert, top-2 of 6 unnormalised. */
    {"qwen2moe", {.arch = "qwen2moe", .n_layer = 2, .n_embd = 64, .n_head = 4, .n_head_kv = 2, .n_vocab = 300,
                  .n_expert = 6, .n_expert_used = 2, .n_ff_exp = 32, .n_ff_shexp = 96, .biases = true,
                  .shared_gate = true, .expert_weights_norm = -1, .router_scale = 4, .seed = 104}},
    /* OLMoE: q/k norm over the whole projection, top-2 of 8 unnormalised. */
    {"olmoe", {.arch = "olmoe", .n_layer = 2, .n_embd = 64, .n_head = 4, .n_head_kv = 4, .n_vocab = 300,
               .n_expert = 8, .n_expert_used = 2, .n_ff_exp = 32, .qk_norm = 2, .expert_weights_norm = -1,
               .router_scale = 4, .seed = 105}},
    /* OLMoE with YaRN RoPE scaling (factor 4 over an original context of 32 positions,
     * so the ramp between interpolated and extrapolated frequencies is exercised), heads
     * of 64 (the attention's register path for 64). */
    {"olmoe-yarn", {.arch = "olmoe", .n_layer = 2, .n_embd = 128, .n_head = 2, .n_head_kv = 2, .n_vocab = 300,
                    .n_expert = 8, .n_expert_used = 2, .n_ff_exp = 32, .qk_norm = 2, .rope_yarn_factor = 4,
                    .rope_orig_ctx = 32, .expert_weights_norm = -1, .router_scale = 4, .seed = 107}},
    /* A dense llama (no experts): the same forward pass without the MoE block. */
    {"llama-dense", {.arch = "llama", .n_layer = 2, .n_embd = 64, .n_head = 4, .n_head_kv = 1, .n_vocab = 300,
                     .n_ff = 96, .n_dense_lead = 2, .expert_weights_norm = -1, .seed = 106}},
};

static int cmp_double(const void *a, const void *b) {
    double x = *(const double *)a, y = *(const double *)b;
    return (x > y) - (x < y);
}

TEST(model_ref_pytorch_all_archs) {
    const int n_cases = (int)(sizeof g_cases / sizeof g_cases[0]);
    char paths[12][3][512];
    char cmd[8192];
    int len = snprintf(cmd, sizeof cmd, "/usr/bin/python3 tests/ref/moe_ref.py");
    int32_t tokens[12][N_TOK];
    for (int i = 0; i < n_cases; i++) {
        const ref_case *rc = &g_cases[i];
        snprintf(paths[i][0], 512, "%s/%s.gguf", test_tmpdir(), rc->name);
        snprintf(paths[i][1], 512, "%s/%s.tok", test_tmpdir(), rc->name);
        snprintf(paths[i][2], 512, "%s/%s.ref", test_tmpdir(), rc->name);
        REQUIRE_MSG(gen_write(&rc->spec, paths[i][0]) == MOE_OK, "%s: %s", rc->name, moe_last_error());
        gen_rng r = {rc->spec.seed + 7, 0, 0};
        FILE *f = fopen(paths[i][1], "w");
        REQUIRE(f);
        for (int t = 0; t < N_TOK; t++) {
            tokens[i][t] = (int32_t)(gen_uniform(&r) * rc->spec.n_vocab);
            fprintf(f, "%d ", tokens[i][t]);
        }
        fclose(f);
        len += snprintf(cmd + len, sizeof cmd - (size_t)len, " %s %s %s", paths[i][0], paths[i][1], paths[i][2]);
    }
    char *log = NULL;
    int rc = test_run(cmd, &log);
    if (rc == 127) {
        test_skip("/usr/bin/python3 is not installed");
        free(log);
        return;
    }
    if (rc != 0 && log && strstr(log, "No module named")) { /* checked here, not up front: importing torch is slow */
        test_skip("python3 with torch and numpy is needed for the PyTorch reference (%s)", strstr(log, "No module named"));
        free(log);
        return;
    }
    REQUIRE_MSG(rc == 0, "moe_ref.py failed: %s", log ? log : "");
    free(log);

    for (int i = 0; i < n_cases; i++) {
        const char *name = g_cases[i].name;
        const int64_t V = g_cases[i].spec.n_vocab;
        moe_model_params mp = moe_model_default_params();
        mp.n_threads = 2;
        moe_model *m = moe_model_load(paths[i][0], &mp);
        CHECK_MSG(m, "%s: %s", name, moe_last_error());
        if (!m) continue;
        moe_context *c = moe_context_init(m, N_TOK);
        float *a = malloc((size_t)(N_TOK * V) * sizeof *a), *b = malloc((size_t)(N_TOK * V) * sizeof *b);
        FILE *f = fopen(paths[i][2], "rb");
        bool ok = c && a && b && f && fread(b, sizeof *b, (size_t)(N_TOK * V), f) == (size_t)(N_TOK * V);
        if (f) fclose(f);
        CHECK_MSG(ok, "%s: setup failed", name);
        if (ok) CHECK_MSG(moe_eval(c, tokens[i], N_TOK, a, 0) == MOE_OK, "%s: %s", name, moe_last_error());
        if (ok) {
            double r[N_TOK];
            int agree = 0;
            for (int t = 0; t < N_TOK; t++) {
                double num = 0, den = 0;
                int64_t ax = 0, ay = 0;
                for (int64_t j = 0; j < V; j++) {
                    double dd = (double)a[t * V + j] - b[t * V + j];
                    num += dd * dd;
                    den += (double)b[t * V + j] * b[t * V + j];
                    if (a[t * V + j] > a[t * V + ax]) ax = j;
                    if (b[t * V + j] > b[t * V + ay]) ay = j;
                }
                r[t] = sqrt(num / den);
                agree += ax == ay;
            }
            qsort(r, N_TOK, sizeof r[0], cmp_double);
            double med = 0.5 * (r[N_TOK / 2 - 1] + r[N_TOK / 2]), p90 = r[(int)ceil(0.9 * N_TOK) - 1];
            fprintf(stderr, "  pytorch ref %-22s median %.3g  p90 %.3g  max %.3g  argmax %.1f%%\n", name, med, p90,
                    r[N_TOK - 1], 100.0 * agree / N_TOK);
            CHECK_MSG(med <= 5e-3 && p90 <= 2e-2 && agree >= 0.95 * N_TOK, "%s: median %g p90 %g argmax %d/%d", name,
                      med, p90, agree, N_TOK);
        }
        free(a);
        free(b);
        moe_context_free(c);
        moe_model_free(m);
    }
}
