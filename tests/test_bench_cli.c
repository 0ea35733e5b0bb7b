/* test_bench_cli.c — `moe bench --json` reports every documented key with consistent
 * values (the bound is bandwidth / bytes per token), and bytes per token (and the bytes
 * the weight products read) match the tensors a decoded token reads, recomputed here from
 * the file's tensor table. */
#include "test.h"
#include "moe.h"

#include <stdlib.h>

TEST(bench_json_keys_and_bound) {
    char cmd[2048], *out = NULL;
    snprintf(cmd, sizeof cmd,
             "MOE_PREFETCH=none MOE_PREFETCH_IL=L2 %s bench -m %s -p 8 -n 4 -d 5 -r 1 -t 1 --bw-bytes 64M --kv-type f16 --json"
             " 2>/dev/null | /usr/bin/python3 -c '"
             "import json,sys,math; d=json.load(sys.stdin)\n"
             "for k in [\"pp_tps\",\"tg_tps\",\"dram_gbps\",\"bytes_per_token\",\"tg_bound_tps\",\"tg_pct_of_bound\",\"peak_rss_bytes\"]:\n"
             "    assert k in d and d[k] is not None and d[k] > 0, k\n"
             "assert abs(d[\"tg_bound_tps\"] - d[\"dram_gbps\"] * 1e9 / d[\"bytes_per_token\"]) < 1e-6 * d[\"tg_bound_tps\"]\n"
             "assert abs(d[\"tg_pct_of_bound\"] - 100 * d[\"tg_tps\"] / d[\"tg_bound_tps\"]) < 1e-6 * d[\"tg_pct_of_bound\"]\n"
             "assert d[\"weights\"] == \"memory\", d[\"weights\"]\n"
             "assert d[\"n_depth\"] == 5 and d[\"n_prompt\"] == 8 and d[\"n_gen\"] == 4, d\n"
             "assert d[\"kv_type\"] == \"f16\", d[\"kv_type\"]\n"
             /* fixture: 2 layers x 4 KV heads x (32 + 32) values x 2 bytes, over 5 + (4 + 1) / 2 positions */
             "assert d[\"kv_bytes_per_token\"] == 2 * 4 * 64 * 2 * 7.5, d[\"kv_bytes_per_token\"]\n"
             "r = d[\"tg_pct_of_bound\"] * (d[\"bytes_per_token\"] + d[\"kv_bytes_per_token\"]) / d[\"bytes_per_token\"]\n"
             "assert abs(d[\"tg_pct_of_bound_with_kv\"] - r) < 1e-6 * r, d\n"
             "assert 0 < d[\"tg_product_share_pct\"] <= 100 and d[\"tg_product_pct_of_dram\"] > 0, d\n"
             /* the kernels in use, with the prefetch levels the environment asked for */
             "si = d[\"system_info\"]\n"
             "assert si.startswith(\"simd \") and (\"scalar\" in si or \"prefetch row-major none, interleaved L2\" in si), si\n"
             "print(d[\"bytes_per_token\"], d[\"tg_product_bytes_per_token\"])'",
             test_moe_bin(), test_fixture("gguf/mixtral-q8_0.gguf"));
    int rc = test_run(cmd, &out);
    REQUIRE_MSG(rc == 0, "rc %d: %s", rc, out ? out : "");
    long long bpt = 0, product_bpt = 0;
    CHECK(sscanf(out, "%lld %lld", &bpt, &product_bpt) == 2);
    free(out);
    /* independent count from the tensor table: per layer q,k,v,o + router + 2 norms +
     * 2 of 8 experts; plus one embedding row, the output norm and the output head */
    moe_gguf *g = moe_gguf_open(test_fixture("gguf/mixtral-q8_0.gguf"));
    REQUIRE(g);
    long long want = 0;
    char name[128];
    const char *per_layer[] = {"attn_q", "attn_k", "attn_v", "attn_output", "ffn_gate_inp", "attn_norm", "ffn_norm"};
    for (int l = 0; l < 2; l++) {
        for (size_t k = 0; k < sizeof per_layer / sizeof *per_layer; k++) {
            snprintf(name, sizeof name, "blk.%d.%s.weight", l, per_layer[k]);
            const moe_gguf_tensor *t = moe_gguf_find_tensor(g, name);
            REQUIRE_MSG(t, "%s", name);
            want += (long long)t->nbytes;
        }
        const char *ex[] = {"ffn_gate_exps", "ffn_up_exps", "ffn_down_exps"};
        for (int k = 0; k < 3; k++) {
            snprintf(name, sizeof name, "blk.%d.%s.weight", l, ex[k]);
            const moe_gguf_tensor *t = moe_gguf_find_tensor(g, name);
            REQUIRE(t);
            want += (long long)t->nbytes / t->ne[2] * 2;
        }
    }
    const moe_gguf_tensor *emb = moe_gguf_find_tensor(g, "token_embd.weight");
    const moe_gguf_tensor *outw = moe_gguf_find_tensor(g, "output.weight");
    const moe_gguf_tensor *onorm = moe_gguf_find_tensor(g, "output_norm.weight");
    REQUIRE(emb && outw && onorm);
    want += (long long)(emb->nbytes / (uint64_t)emb->ne[1]) + (long long)outw->nbytes + (long long)onorm->nbytes;
    CHECK_EQ_INT(bpt, want);
    /* the weight products of a decoded token (moe_context_product_stats) read all of it
     * but the embedding row and the norms (2 a layer + the output's, F32) */
    const moe_gguf_tensor *n0 = moe_gguf_find_tensor(g, "blk.0.attn_norm.weight");
    REQUIRE(n0);
    CHECK_EQ_INT(product_bpt, want - (long long)(emb->nbytes / (uint64_t)emb->ne[1]) - 5 * (long long)n0->nbytes);
    moe_gguf_close(g);
}

TEST(bench_usage_errors) {
    /* arguments, exit status, what the message must name; -d and --kv-type are checked
     * before the model is loaded */
    static const struct { const char *args; int rc; const char *says; } cases[] = {
        {"", 2, "-m"},
        {"-m /nonexistent.gguf", 1, "/nonexistent.gguf"},
        {"-m /nonexistent.gguf -d -3", 2, "-d"},
        {"-m /nonexistent.gguf --kv-type q4_0", 2, "--kv-type: 'q4_0' is not one of f32, f16"},
    };
    for (size_t k = 0; k < sizeof cases / sizeof cases[0]; k++) {
        char cmd[512], *out = NULL;
        snprintf(cmd, sizeof cmd, "%s bench %s", test_moe_bin(), cases[k].args);
        const int rc = test_run(cmd, &out);
        CHECK_MSG(rc == cases[k].rc, "'bench %s': exit %d, want %d", cases[k].args, rc, cases[k].rc);
        CHECK_STR_CONTAINS(out, cases[k].says);
        free(out);
    }
}
