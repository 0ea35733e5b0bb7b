/* test_quantize.c — `moe quantize` / moe_quantize_file: the output equals llama-quantize's
 * file byte for byte when both start from the same F32 weights, the F16 fixture converts
 * within the F16 rounding of its input, the per-tensor rules (--pure), and the errors. */
#include "test.h"

#include "core/f16.h"
#include "core/types.h"
#include "model/quantize.h"

#include <math.h>
#include <stdlib.h>
#include <unistd.h>

static bool read_file(const char *path, uint8_t **data, size_t *size) {
    FILE *f = fopen(path, "rb");
    if (!f) return false;
    fseek(f, 0, SEEK_END);
    long n = ftell(f);
    fseek(f, 0, SEEK_SET);
    *data = malloc(n > 0 ? (size_t)n : 1);
    bool ok = *data && n >= 0 && fread(*data, 1, (size_t)n, f) == (size_t)n;
    fclose(f);
    *size = (size_t)n;
    if (!ok) free(*data);
    return ok;
}

/* 0 if identical, else the offset of the first difference + 1 (or -1 for a read error) */
static long long file_diff(const char *a, const char *b) {
    uint8_t *x, *y;
    size_t nx, ny;
    if (!read_file(a, &x, &nx)) return -1;
    if (!read_file(b, &y, &ny)) { free(x); return -1; }
    long long r = 0;
    for (size_t i = 0; i < MOE_MIN(nx, ny) && !r; i++)
        if (x[i] != y[i]) r = (long long)i + 1;
    if (!r && nx != ny) r = (long long)MOE_MIN(nx, ny) + 1;
    free(x);
    free(y);
    return r;
}

/* The fixtures' F32 original, regenerated (see tests/test_quant_legacy.c). */
static bool make_f32_original(char *out, size_t cap) {
    if (!test_have_python_module("numpy")) {
        test_skip("python3 numpy is missing: cannot regenerate the F32 fixture (apt-get install python3-numpy)");
        return false;
    }
    snprintf(out, cap, "%s/mixtral-f32.gguf", test_tmpdir());
    char cmd[2048];
    snprintf(cmd, sizeof cmd,
             "/usr/bin/python3 %s --arch mixtral --layers 2 --embd 256 --heads 8 --kv-heads 4 --ff 512 "
             "--experts 8 --topk 2 --vocab-from %s --vocab-size 4096 --seed 11 --dtype f32 --out %s",
             test_fixture("mkmoe.py"), test_fixture("tokenizer/ggml-vocab-llama-spm.gguf"), out);
    char *log = NULL;
    int rc = test_run(cmd, &log);
    if (rc != 0) test_fail(__FILE__, __LINE__, "mkmoe.py failed (%d): %s", rc, log ? log : "");
    free(log);
    return rc == 0;
}

TEST(quantize_f32_original_gives_llama_quantize_files_byte_for_byte) {
    char f32[512];
    if (!make_f32_original(f32, sizeof f32)) return;
    const struct { const char *type, *fixture; } cases[] = {
        {"q8_0", "gguf/mixtral-q8_0.gguf"},
        {"q4_0", "gguf/mixtral-q4_0.gguf"},
        {"f16", "gguf/mixtral-f16.gguf"},
        /* the K-quants (q4_K → mixtral-q4_k_s.gguf, q6_K → mixtral-q6_k.gguf) also come out
         * identical, but their scale search takes ~2 s here: tests/test_quant_k.c has them */
    };
    moe_quantize_params p = moe_quantize_default_params();
    p.progress = false;
    p.n_threads = 2;
    for (size_t i = 0; i < MOE_ARRAY_LEN(cases); i++) {
        char out[600];
        snprintf(out, sizeof out, "%s/out-%s.gguf", test_tmpdir(), cases[i].type);
        moe_quantize_stats st;
        REQUIRE_MSG(moe_quantize_file(f32, out, cases[i].type, &p, &st) == MOE_OK, "%s", moe_last_error());
        CHECK_EQ_INT(st.n_tensors, 23);
        CHECK_EQ_INT(st.n_quantized, 16);
        CHECK_EQ_INT(st.n_kept, 7); /* 5 norms + 2 routers */
        const long long d = file_diff(out, test_fixture(cases[i].fixture));
        fprintf(stderr, "    f32 -> %-4s: %s\n", cases[i].type,
                d == 0 ? "identical to llama-quantize's file" : "DIFFERS from llama-quantize's file");
        CHECK_MSG(d == 0, "%s: first difference at byte %lld", cases[i].type, d - 1);
    }
}

/* The F16 fixture to Q8_0 through the command line: the output reads back; norms and
 * routers are llama.cpp's bytes; quantized blocks differ from llama.cpp's (made from F32)
 * only as far as the F16 rounding of the input can move them: scale by ≤ 1 F16 ulp,
 * values by ≤ 1 step. */
TEST(quantize_cli_f16_fixture_to_q8_0) {
    char out[600], cmd[2048];
    snprintf(out, sizeof out, "%s/f16-q8_0.gguf", test_tmpdir());
    snprintf(cmd, sizeof cmd, "%s quantize %s %s q8_0 -t 2 --json", test_moe_bin(),
             test_fixture("gguf/mixtral-f16.gguf"), out);
    char *log = NULL;
    int rc = test_run(cmd, &log);
    CHECK_MSG(rc == 0, "exit %d: %s", rc, log ? log : "");
    if (log) {
        CHECK_STR_CONTAINS(log, "\"quantized\":16");
        CHECK_STR_CONTAINS(log, "blk.0.ffn_gate_inp.weight"); /* the progress lines */
    }
    free(log);
    if (rc) return;
    moe_gguf *a = moe_gguf_open(out), *b = moe_gguf_open(test_fixture("gguf/mixtral-q8_0.gguf"));
    REQUIRE_MSG(a && b, "%s", moe_last_error());
    uint32_t ftype = 0;
    CHECK(moe_gguf_get_u32(a, "general.file_type", &ftype) == MOE_OK && ftype == 7);
    CHECK_EQ_INT(moe_gguf_n_kv(a), moe_gguf_n_kv(b));
    CHECK_EQ_INT(moe_gguf_n_tensors(a), moe_gguf_n_tensors(b));
    int64_t blocks = 0, differ = 0, d_differ = 0, max_dq = 0;
    double max_d_rel = 0;
    for (int64_t i = 0; i < moe_gguf_n_tensors(a); i++) {
        const moe_gguf_tensor *x = moe_gguf_tensor_at(a, i), *y = moe_gguf_tensor_at(b, i);
        REQUIRE(strcmp(x->name, y->name) == 0 && x->type == y->type && x->nbytes == y->nbytes);
        if (x->type != MOE_TYPE_Q8_0) {
            CHECK_MSG(memcmp(x->data, y->data, x->nbytes) == 0, "%s differs", x->name);
            continue;
        }
        for (uint64_t k = 0; k < x->nbytes / 34; k++) {
            const uint8_t *p = (const uint8_t *)x->data + k * 34, *q = (const uint8_t *)y->data + k * 34;
            blocks++;
            if (!memcmp(p, q, 34)) continue;
            differ++;
            moe_f16 dp, dq;
            memcpy(&dp, p, 2);
            memcpy(&dq, q, 2);
            if (dp != dq) {
                d_differ++;
                max_d_rel = fmax(max_d_rel, fabs(moe_f16_to_f32(dp) / moe_f16_to_f32(dq) - 1));
                CHECK_MSG(abs((int)dp - (int)dq) <= 1, "%s block %llu: scale %04x vs %04x", x->name,
                          (unsigned long long)k, dp, dq);
            }
            for (int j = 2; j < 34; j++) max_dq = MOE_MAX(max_dq, abs((int8_t)p[j] - (int8_t)q[j]));
        }
    }
    fprintf(stderr, "    f16 -> q8_0: %lld of %lld blocks differ from llama.cpp's (made from F32): %lld scales by 1 F16 "
            "ulp (max rel. %.2e), values by at most %lld step\n", (long long)differ, (long long)blocks,
            (long long)d_differ, max_d_rel, (long long)max_dq);
    CHECK(max_dq <= 1);
    CHECK(blocks == 274432);
    moe_gguf_close(a);
    moe_gguf_close(b);
}

TEST(quantize_plan_follows_llama_quantize_pure) {
    const int64_t mat[4] = {256, 512, 1, 1}, vec[4] = {256, 1, 1, 1}, odd[4] = {100, 64, 1, 1};
    const int64_t exps[4] = {256, 512, 8, 1};
    const char *why;
    CHECK(moe_quantize_plan("blk.0.attn_q.weight", MOE_TYPE_F16, mat, MOE_TYPE_Q4_0, &why) == MOE_QUANT_CONVERT);
    CHECK(moe_quantize_plan("blk.0.ffn_up_exps.weight", MOE_TYPE_F32, exps, MOE_TYPE_Q8_0, &why) == MOE_QUANT_CONVERT);
    CHECK(moe_quantize_plan("token_embd.weight", MOE_TYPE_F16, mat, MOE_TYPE_Q4_0, &why) == MOE_QUANT_CONVERT);
    CHECK(moe_quantize_plan("output.weight", MOE_TYPE_BF16, mat, MOE_TYPE_Q8_0, &why) == MOE_QUANT_CONVERT);
    /* the router and 1-D tensors: F32 */
    CHECK(moe_quantize_plan("blk.3.ffn_gate_inp.weight", MOE_TYPE_F32, mat, MOE_TYPE_Q4_0, &why) == MOE_QUANT_KEEP);
    CHECK(moe_quantize_plan("blk.3.ffn_gate_inp.weight", MOE_TYPE_F16, mat, MOE_TYPE_Q4_0, &why) == MOE_QUANT_TO_F32);
    CHECK(moe_quantize_plan("blk.0.attn_norm.weight", MOE_TYPE_F32, vec, MOE_TYPE_Q4_0, &why) == MOE_QUANT_KEEP);
    CHECK(moe_quantize_plan("blk.0.attn_q.bias", MOE_TYPE_F16, vec, MOE_TYPE_Q4_0, &why) == MOE_QUANT_TO_F32);
    CHECK(moe_quantize_plan("blk.0.ffn_gate_inp_shexp.weight", MOE_TYPE_F16, vec, MOE_TYPE_Q4_0, &why) == MOE_QUANT_TO_F32);
    /* rows that are not whole blocks, and 2-D norms, stay as they are */
    CHECK(moe_quantize_plan("blk.0.attn_q.weight", MOE_TYPE_F16, odd, MOE_TYPE_Q4_0, &why) == MOE_QUANT_KEEP);
    CHECK_STR_CONTAINS(why, "blocks");
    CHECK(moe_quantize_plan("blk.0.attn_q.weight", MOE_TYPE_F16, mat, MOE_TYPE_Q4_K, &why) ==
          (moe_type_get(MOE_TYPE_Q4_K)->block_size == 256 ? MOE_QUANT_CONVERT : MOE_QUANT_KEEP));
    CHECK(moe_quantize_plan("blk.0.attn_k_norm.weight", MOE_TYPE_F32, mat, MOE_TYPE_Q4_0, &why) == MOE_QUANT_KEEP);
    CHECK(moe_quantize_plan("blk.0.attn_q.weight", MOE_TYPE_Q4_0, mat, MOE_TYPE_Q4_0, &why) == MOE_QUANT_KEEP);
    CHECK(moe_quantize_plan("rope_freqs", MOE_TYPE_F32, mat, MOE_TYPE_Q4_0, &why) == MOE_QUANT_KEEP);
    const int64_t empty[4] = {256, 0, 1, 1};
    CHECK(moe_quantize_plan("blk.0.attn_q.weight", MOE_TYPE_F16, empty, MOE_TYPE_Q4_0, &why) == MOE_QUANT_KEEP);
    /* llama.cpp's file types */
    CHECK_EQ_INT(moe_quantize_ftype(MOE_TYPE_Q4_0), 2);
    CHECK_EQ_INT(moe_quantize_ftype(MOE_TYPE_Q8_0), 7);
    CHECK_EQ_INT(moe_quantize_ftype(MOE_TYPE_Q5_1), 9);
    CHECK_EQ_INT(moe_quantize_ftype(MOE_TYPE_BF16), 32);
    CHECK_EQ_INT(moe_quantize_ftype(MOE_TYPE_Q8_1), -1); /* activations only */
    CHECK_EQ_INT(moe_quantize_ftype(MOE_TYPE_IQ4_NL), 25);
    CHECK_EQ_INT(moe_quantize_ftype(MOE_TYPE_IQ4_XS), 30);
    CHECK_EQ_INT(moe_quantize_ftype(MOE_TYPE_IQ2_XXS), -1);
}

/* Logits of the F16 fixture quantized to `type`, as one batch or token by token (rows of
 * `n` tokens; *nv_out the vocabulary), from a model read into memory (interleaved
 * matrices) or mapped. NULL on a failure, which is CHECKed. */
static float *quantized_logits(const char *type, const int32_t *tokens, int64_t n, bool in_memory, bool decode,
                               int64_t *nv_out) {
    char out[600];
    snprintf(out, sizeof out, "%s/f16-%s.gguf", test_tmpdir(), type);
    moe_quantize_params p = moe_quantize_default_params();
    p.progress = false;
    moe_quantize_stats st;
    if (strcmp(type, "f16") && access(out, F_OK) != 0)
        CHECK_MSG(moe_quantize_file(test_fixture("gguf/mixtral-f16.gguf"), out, type, &p, &st) == MOE_OK, "%s", moe_last_error());
    moe_model_params mp = moe_model_default_params();
    mp.n_threads = 2;
    mp.no_mmap = in_memory;
    moe_model *m = moe_model_load(strcmp(type, "f16") ? out : test_fixture("gguf/mixtral-f16.gguf"), &mp);
    CHECK_MSG(m, "%s", moe_last_error());
    if (!m) return NULL;
    const int64_t nv = *nv_out = moe_model_n_vocab(m);
    moe_context *c = moe_context_init(m, n);
    float *l = malloc((size_t)(n * nv) * sizeof *l);
    bool ok = c && l;
    if (ok && !decode) ok = moe_eval(c, tokens, n, l, 0) == MOE_OK;
    for (int64_t t = 0; ok && decode && t < n; t++) ok = moe_eval(c, tokens + t, 1, l + t * nv, 0) == MOE_OK;
    CHECK_MSG(ok, "%s: %s", type, moe_last_error());
    moe_context_free(c);
    moe_model_free(m);
    if (!ok) { free(l); l = NULL; }
    return l;
}

static double rel_l2(const float *a, const float *b, size_t n) {
    double d = 0, s = 0;
    for (size_t i = 0; i < n; i++) { d += ((double)a[i] - b[i]) * ((double)a[i] - b[i]); s += (double)b[i] * b[i]; }
    return sqrt(d / s);
}

/* The F16 fixture quantized to each of `types` runs through every path the model has
 * (batch and decode, read in and interleaved or mapped and row-major) with the same bits,
 * and its logits are within slack[k] × Q4_0's distance from the F16 model's. */
static void check_types_end_to_end(const char *const *types, const double *slack, int count, const int32_t *tokens,
                                   int64_t n) {
    int64_t nv0 = 0, nv1 = 0;
    float *f16 = quantized_logits("f16", tokens, n, true, false, &nv0);
    float *q40 = quantized_logits("q4_0", tokens, n, true, false, &nv1);
    REQUIRE(f16 && q40 && nv0 == nv1 && nv0 > 0);
    const size_t all = (size_t)n * (size_t)nv0;
    const double e_q40 = rel_l2(q40, f16, all);
    for (int k = 0; k < count; k++) {
        int64_t nv[4] = {0};
        float *mem = quantized_logits(types[k], tokens, n, true, false, &nv[0]);
        float *mem_dec = quantized_logits(types[k], tokens, n, true, true, &nv[1]);
        float *map = quantized_logits(types[k], tokens, n, false, false, &nv[2]);
        float *map_dec = quantized_logits(types[k], tokens, n, false, true, &nv[3]);
        CHECK_MSG(mem && mem_dec && map && map_dec, "%s: a run failed", types[k]);
        if (mem && mem_dec && map && map_dec) {
            for (int j = 0; j < 4; j++) REQUIRE(nv[j] == nv0);
            CHECK_MSG(memcmp(mem, mem_dec, all * sizeof *mem) == 0, "%s: batch != decode", types[k]);
            CHECK_MSG(memcmp(mem, map, all * sizeof *mem) == 0, "%s: interleaved != row-major", types[k]);
            CHECK_MSG(memcmp(mem, map_dec, all * sizeof *mem) == 0, "%s: mapped decode", types[k]);
            const double e = rel_l2(mem, f16, all);
            fprintf(stderr, "    logits vs the F16 model (relative L2): %s %.4f, q4_0 %.4f\n", types[k], e, e_q40);
            CHECK_MSG(e > 0 && e <= slack[k] * e_q40, "%s: %.4f vs q4_0 %.4f", types[k], e, e_q40);
        }
        free(mem); free(mem_dec); free(map); free(map_dec);
    }
    free(f16); free(q40);
}

/* The IQ types end to end: IQ4_NL (4.5 bits per weight) and IQ4_XS (4.25) as close to
 * the F16 model's logits as Q4_0's (4.5 bits on a uniform grid; IQ4_XS within 10 % of it). */
TEST(quantize_iq4_models_run_and_are_as_close_as_q4_0) {
    const int32_t tokens[16] = {1, 415, 2936, 906, 285, 1142, 2870, 2877, 2873, 2723, 13, 1014, 349, 264, 1369, 2};
    const char *const types[] = {"iq4_nl", "iq4_xs"};
    const double slack[] = {1.0, 1.1};
    check_types_end_to_end(types, slack, 2, tokens, 16);
}

/* The types whose interleaved layouts are their own since 2026-12-08 (docs/QUANTS.md), end
 * to end, and not garbage: the 5-bit types at least as close to the F16 model's logits as
 * Q4_0's, Q4_1's within 25 % of it (it measured 0.245 against Q4_0's 0.219 on this
 * fixture, the same with the kernels before these layouts; a wrong kernel is off by far
 * more). */
TEST(quantize_legacy_and_q5_K_models_same_bits_on_every_path) {
    const int32_t tokens[12] = {1, 415, 2936, 906, 285, 1142, 2870, 2877, 2873, 2723, 13, 2};
    const char *const types[] = {"q5_0", "q4_1", "q5_1", "q5_K"};
    const double slack[] = {1.0, 1.25, 1.0, 1.0};
    check_types_end_to_end(types, slack, 4, tokens, 12);
}

/* A small file with a misfit matrix, an F16 bias and a BF16 matrix, quantized to Q5_1. */
TEST(quantize_keeps_misfit_rows_and_stores_vectors_as_f32) {
    char in[600], out[600];
    snprintf(in, sizeof in, "%s/small.gguf", test_tmpdir());
    snprintf(out, sizeof out, "%s/small-q5_1.gguf", test_tmpdir());
    static float odd[100 * 4], bias_f32[64];
    static moe_bf16 mat[64 * 8];
    static moe_f16 bias[64];
    for (int i = 0; i < 400; i++) odd[i] = (float)i / 100.0f;
    for (int i = 0; i < 512; i++) mat[i] = moe_f32_to_bf16(sinf((float)i));
    for (int i = 0; i < 64; i++) { bias[i] = moe_f32_to_f16((float)i / 8.0f); bias_f32[i] = (float)i / 8.0f; }
    moe_gguf_writer *w = moe_gguf_writer_init();
    REQUIRE(w);
    CHECK(moe_gguf_writer_set_str(w, "general.architecture", "llama") == MOE_OK);
    CHECK(moe_gguf_writer_set_u32(w, "general.file_type", 1) == MOE_OK);
    const int64_t ne_odd[2] = {100, 4}, ne_mat[2] = {64, 8}, ne_bias[1] = {64};
    CHECK(moe_gguf_writer_add_tensor(w, "blk.0.attn_q.weight", MOE_TYPE_F32, 2, ne_odd, odd, sizeof odd) == MOE_OK);
    CHECK(moe_gguf_writer_add_tensor(w, "blk.0.attn_k.weight", MOE_TYPE_BF16, 2, ne_mat, mat, sizeof mat) == MOE_OK);
    CHECK(moe_gguf_writer_add_tensor(w, "blk.0.attn_k.bias", MOE_TYPE_F16, 1, ne_bias, bias, sizeof bias) == MOE_OK);
    REQUIRE_MSG(moe_gguf_writer_write(w, in) == MOE_OK, "%s", moe_last_error());
    moe_gguf_writer_free(w);

    moe_quantize_params p = moe_quantize_default_params();
    p.progress = false;
    moe_quantize_stats st;
    REQUIRE_MSG(moe_quantize_file(in, out, "Q5_1", &p, &st) == MOE_OK, "%s", moe_last_error());
    CHECK_EQ_INT(st.n_quantized, 1);
    CHECK_EQ_INT(st.n_misfit, 1);
    CHECK_EQ_INT(st.n_kept, 1);
    moe_gguf *g = moe_gguf_open(out);
    REQUIRE_MSG(g, "%s", moe_last_error());
    uint32_t ft = 0;
    CHECK(moe_gguf_get_u32(g, "general.file_type", &ft) == MOE_OK && ft == 9);
    const moe_gguf_tensor *q = moe_gguf_find_tensor(g, "blk.0.attn_q.weight");
    const moe_gguf_tensor *k = moe_gguf_find_tensor(g, "blk.0.attn_k.weight");
    const moe_gguf_tensor *b = moe_gguf_find_tensor(g, "blk.0.attn_k.bias");
    REQUIRE(q && k && b);
    CHECK(q->type == MOE_TYPE_F32 && memcmp(q->data, odd, sizeof odd) == 0);
    CHECK(k->type == MOE_TYPE_Q5_1 && k->nbytes == 8 * 2 * 24);
    CHECK(b->type == MOE_TYPE_F32 && b->n_dims == 1 && memcmp(b->data, bias_f32, sizeof bias_f32) == 0);
    float deq[64 * 8];
    moe_type_get(MOE_TYPE_Q5_1)->to_float(k->data, deq, 64 * 8);
    for (int i = 0; i < 512; i++) CHECK_NEAR(deq[i], moe_bf16_to_f32(mat[i]), 2.0 / 31);
    moe_gguf_close(g);
}

TEST(quantize_cli_errors) {
    char cmd[2048], out[600];
    char *log = NULL;
    snprintf(out, sizeof out, "%s/x.gguf", test_tmpdir());
    snprintf(cmd, sizeof cmd, "%s quantize %s %s q9_0", test_moe_bin(), test_fixture("gguf/mixtral-f16.gguf"), out);
    CHECK_EQ_INT(test_run(cmd, &log), 1);
    CHECK_STR_CONTAINS(log, "unknown target type 'q9_0'");
    CHECK_STR_CONTAINS(log, "q4_0, q4_1, q5_0, q5_1, q8_0");
    free(log);
    snprintf(cmd, sizeof cmd, "%s quantize %s %s q4_0", test_moe_bin(), test_fixture("gguf/mixtral-f16.gguf"),
             test_fixture("gguf/mixtral-f16.gguf"));
    CHECK_EQ_INT(test_run(cmd, &log), 1);
    CHECK_STR_CONTAINS(log, "different file");
    free(log);
    snprintf(cmd, sizeof cmd, "%s quantize %s/missing.gguf %s q4_0", test_moe_bin(), test_tmpdir(), out);
    CHECK_EQ_INT(test_run(cmd, &log), 1);
    CHECK_STR_CONTAINS(log, "missing.gguf");
    free(log);
    snprintf(cmd, sizeof cmd, "%s quantize only-one.gguf", test_moe_bin());
    CHECK_EQ_INT(test_run(cmd, &log), 2);
    CHECK_STR_CONTAINS(log, "IN.gguf OUT.gguf TYPE");
    free(log);
    snprintf(cmd, sizeof cmd, "%s quantize --help", test_moe_bin());
    CHECK_EQ_INT(test_run(cmd, &log), 0);
    CHECK_STR_CONTAINS(log, "llama-cli -m OUT.gguf");
    free(log);
    /* a requantization (Q8_0 → Q4_0) works, with a warning */
    snprintf(cmd, sizeof cmd, "%s quantize %s %s q4_0 -t 1", test_moe_bin(), test_fixture("gguf/mixtral-q8_0.gguf"), out);
    CHECK_EQ_INT(test_run(cmd, &log), 0);
    CHECK_STR_CONTAINS(log, "requantizing");
    free(log);
}
