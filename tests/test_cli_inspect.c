/* test_cli_inspect.c — `moe inspect` run as a user runs it: text and JSON output on
 * llama.cpp's fixtures, checked against the fixtures' documented shapes
 * (../shared/fixtures/README.md) and against an independent Python reading of the JSON
 * (every tensor's byte count recomputed from ggml's block table, the expert split
 * recomputed from the names); exit codes and messages for bad input. */
#include "test.h"
#include "moe.h"

#include <stdlib.h>

static char *tmp(const char *name) {
    static char buf[4][512];
    static int k;
    char *b = buf[k++ & 3];
    snprintf(b, sizeof buf[0], "%s/%s", test_tmpdir(), name);
    return b;
}

static int inspect(const char *args, char **out) {
    char cmd[2048];
    snprintf(cmd, sizeof cmd, "%s inspect %s", test_moe_bin(), args);
    return test_run(cmd, out);
}

/* Runs `moe inspect --json FILE` into a file and the Python checker over it; returns
 * the checker's output (NULL + skip when python3 is missing). `expect` is a Python
 * dict literal of hyperparameters and totals the JSON must hold. */
static const char *g_checker =
    "import json, re, sys\n"
    "d = json.load(open(sys.argv[1], encoding='utf-8'))\n"
    "expect = eval(sys.argv[2])\n"
    "for k in ('architecture', 'metadata', 'tensors', 'n_params', 'expert_bytes', 'non_expert_bytes', 'hyperparameters'):\n"
    "    assert k in d, 'missing key ' + k\n"
    "# ggml block size and bytes per block, by type name (ggml-common.h)\n"
    "B = {'f32': (1, 4), 'f16': (1, 2), 'bf16': (1, 2), 'q4_0': (32, 18), 'q4_1': (32, 20), 'q5_0': (32, 22),\n"
    "     'q5_1': (32, 24), 'q8_0': (32, 34), 'q2_K': (256, 84), 'q3_K': (256, 110), 'q4_K': (256, 144),\n"
    "     'q5_K': (256, 176), 'q6_K': (256, 210), 'i32': (1, 4)}\n"
    "tot = ex = params = 0\n"
    "for t in d['tensors']:\n"
    "    n = 1\n"
    "    for x in t['shape']: n *= x\n"
    "    bs, ts = B[t['type']]\n"
    "    assert t['bytes'] == n // bs * ts, (t['name'], t['bytes'], n // bs * ts)\n"
    "    assert t['offset'] % d['alignment'] == 0, t['name']\n"
    "    is_ex = bool(re.match(r'blk\\.\\d+\\.ffn_(gate|up|down|gate_up)(_exps\\.|\\.\\d+\\.)', t['name']))\n"
    "    assert is_ex == t['expert'], t['name']\n"
    "    tot += t['bytes']; params += n\n"
    "    if is_ex: ex += t['bytes']\n"
    "assert d['expert_bytes'] == ex, (d['expert_bytes'], ex)\n"
    "assert d['non_expert_bytes'] == tot - ex, (d['non_expert_bytes'], tot - ex)\n"
    "assert d['n_params'] == params, (d['n_params'], params)\n"
    "assert len(d['metadata']) == len(d['metadata_types'])\n"
    "for k, v in expect.items():\n"
    "    got = d['hyperparameters'][k] if k in d['hyperparameters'] else d[k]\n"
    "    assert got == v, (k, got, v)\n"
    "toks = d['metadata'].get('tokenizer.ggml.tokens')\n"
    "print('ok', len(d['tensors']), ex, tot, len(toks) if toks is not None else -1)\n";

static char *check_json(const char *gguf, const char *expect) {
    if (!test_have_python_module("json")) { test_skip("/usr/bin/python3 not available"); return NULL; }
    const char *py = tmp("check.py"), *js = tmp("out.json");
    FILE *f = fopen(py, "w");
    if (!f) return NULL;
    fputs(g_checker, f);
    fclose(f);
    char args[1200], *out = NULL;
    snprintf(args, sizeof args, "--json '%s' > '%s'", gguf, js);
    int rc = inspect(args, &out);
    CHECK_MSG(rc == 0, "moe inspect --json exited %d: %s", rc, out ? out : "");
    free(out);
    char cmd[2400];
    snprintf(cmd, sizeof cmd, "/usr/bin/python3 '%s' '%s' \"%s\"", py, js, expect);
    out = NULL;
    rc = test_run(cmd, &out);
    CHECK_MSG(rc == 0, "JSON check failed: %s", out ? out : "");
    return out;
}

/* ------------------------------------------------------------ fixtures */

TEST(cli_inspect_mixtral_text) {
    char *out = NULL, args[600];
    snprintf(args, sizeof args, "'%s'", test_fixture("gguf/mixtral-q4_0.gguf"));
    int rc = inspect(args, &out);
    REQUIRE_MSG(rc == 0, "exit %d: %s", rc, out ? out : "");
    CHECK_STR_CONTAINS(out, "architecture             llama");
    CHECK_STR_CONTAINS(out, "file type                Q4_0 (2)");
    CHECK_STR_CONTAINS(out, "  layers                 2\n");
    CHECK_STR_CONTAINS(out, "  embedding size         256\n");
    CHECK_STR_CONTAINS(out, "  attention heads        8\n");
    CHECK_STR_CONTAINS(out, "  KV heads               4\n");
    CHECK_STR_CONTAINS(out, "  experts                8\n");
    CHECK_STR_CONTAINS(out, "  experts used           2\n");
    /* Mixtral files have no expert_feed_forward_length: the tensors tell */
    CHECK_STR_CONTAINS(out, "  expert FF size         512 (expert tensor shape)");
    CHECK_STR_CONTAINS(out, "  vocabulary size        4096");
    CHECK_STR_CONTAINS(out, "  RoPE dimensions        32");
    CHECK_STR_CONTAINS(out, "  RoPE freq base         10000");
    CHECK_STR_CONTAINS(out, "  RoPE scaling           none");
    /* 6 expert tensors of 256x512x8 q4_0 = 589824 bytes each, out of 4961280 */
    CHECK_STR_CONTAINS(out, "3538944 bytes in 6 tensors (merged per layer)");
    CHECK_STR_CONTAINS(out, "71.3%");
    CHECK_STR_CONTAINS(out, "1422336 bytes: attention, embeddings, norms, routers");
    CHECK_STR_CONTAINS(out, "221184 bytes: gate+up+down of one expert in one layer");
    CHECK_STR_CONTAINS(out, "1769472 bytes; 16 expert slots");
    CHECK_STR_CONTAINS(out, "16 expert slots = 2 layers x 8 experts");
    /* long arrays summarized, the table present with type names */
    CHECK_STR_CONTAINS(out, "arr[str,4096]");
    CHECK_STR_CONTAINS(out, "4096 strings]");
    CHECK_STR_CONTAINS(out, "blk.1.ffn_up_exps.weight");
    CHECK_STR_CONTAINS(out, "q4_0     256 x 512 x 8  ");
    CHECK(strlen(out) < 20000); /* 4096 tokens were not printed */
    free(out);
}

TEST(cli_inspect_no_tables) {
    char *out = NULL, args[600];
    snprintf(args, sizeof args, "--no-tensors --no-metadata -m '%s'", test_fixture("gguf/olmoe-q4_0.gguf"));
    int rc = inspect(args, &out);
    REQUIRE_MSG(rc == 0, "exit %d: %s", rc, out ? out : "");
    CHECK_STR_CONTAINS(out, "architecture             olmoe");
    CHECK_STR_CONTAINS(out, "  experts                16\n");
    CHECK(strstr(out, "tokenizer.ggml.scores") == NULL);
    CHECK(strstr(out, "blk.0.attn_q.weight") == NULL);
    free(out);
}

TEST(cli_inspect_json_mixtral) {
    char *out = check_json(test_fixture("gguf/mixtral-q4_0.gguf"),
                           "{'architecture': 'llama', 'n_layer': 2, 'n_embd': 256, 'n_head': 8, 'n_head_kv': 4,"
                           " 'n_expert': 8, 'n_expert_used': 2, 'n_ff_exp': 512, 'n_vocab': 4096,"
                           " 'rope_dimension_count': 32, 'expert_bytes': 3538944, 'non_expert_bytes': 1422336,"
                           " 'n_tensors': 23}");
    if (out) CHECK_STR_CONTAINS(out, "ok 23 3538944 4961280 4096");
    free(out);
}

TEST(cli_inspect_json_qwen2moe_shared_expert) {
    /* the shared expert (ffn_*_shexp) is resident, not routed */
    char *out = check_json(test_fixture("gguf/qwen2moe-q8_0.gguf"),
                           "{'architecture': 'qwen2moe', 'n_expert': 8, 'n_expert_used': 4, 'n_ff_exp': 256,"
                           " 'n_ff_shexp': 512, 'n_head_kv': 4}");
    if (out) CHECK_STR_CONTAINS(out, "ok 37 3342336 ");
    free(out);
}

TEST(cli_inspect_json_olmoe) {
    char *out = check_json(test_fixture("gguf/olmoe-f16.gguf"),
                           "{'architecture': 'olmoe', 'n_expert': 16, 'n_expert_used': 4, 'n_head_kv': 8, 'n_ff_exp': 256}");
    free(out);
}

TEST(cli_inspect_json_vocab_only) {
    /* no tensors, a byte-level vocabulary: valid JSON, every token present */
    char *out = check_json(test_fixture("tokenizer/ggml-vocab-gpt-2.gguf"), "{'expert_bytes': 0, 'n_tensors': 0}");
    if (out) CHECK_STR_CONTAINS(out, "ok 0 0 0 50257");
    free(out);
}

/* ------------------------------------------------------------ files written here */

TEST(cli_inspect_per_expert_layout_and_odd_values) {
    moe_gguf_writer *w = moe_gguf_writer_init();
    REQUIRE(w);
    static uint8_t zeros[4096];
    moe_gguf_writer_set_str(w, "general.architecture", "mixtral");
    moe_gguf_writer_set_u32(w, "mixtral.expert_count", 2);
    moe_gguf_writer_set_f32(w, "mixtral.rope.scaling.factor", 4.0f);
    moe_gguf_writer_set_str(w, "mixtral.rope.scaling.type", "yarn");
    /* strings that are not UTF-8, control bytes, a NUL, nested arrays */
    moe_gguf_value bad = {.type = MOE_GGUF_STRING, .v.str = {"a\xff\xc3(\x01\"\\\0z", 9}};
    moe_gguf_writer_set_value(w, "test.bytes", &bad);
    uint32_t u[2] = {1, 2};
    moe_gguf_value in[2] = {{.type = MOE_GGUF_ARRAY, .v.arr = {MOE_GGUF_U32, 2, u}},
                            {.type = MOE_GGUF_ARRAY, .v.arr = {MOE_GGUF_STRING, 1, &bad.v.str}}};
    moe_gguf_value nested = {.type = MOE_GGUF_ARRAY, .v.arr = {MOE_GGUF_ARRAY, 2, in}};
    moe_gguf_writer_set_value(w, "test.nested", &nested);
    moe_gguf_value big = {.type = MOE_GGUF_U64, .v.u64 = UINT64_MAX};
    moe_gguf_writer_set_value(w, "test.u64max", &big);
    moe_gguf_value inf = {.type = MOE_GGUF_F64, .v.f64 = INFINITY};
    moe_gguf_writer_set_value(w, "test.inf", &inf);
    /* expert 0 in q8_0, expert 1 in q4_0: per-expert sizes differ */
    const char *parts[] = {"gate", "up", "down"};
    char name[64];
    for (int e = 0; e < 2; e++)
        for (int p = 0; p < 3; p++) {
            snprintf(name, sizeof name, "blk.0.ffn_%s.%d.weight", parts[p], e);
            int type = e == 0 ? 8 : 2;
            uint64_t nb = e == 0 ? 4 * 34 : 4 * 18;
            CHECK(moe_gguf_writer_add_tensor(w, name, type, 2, (int64_t[]){32, 4}, zeros, nb) == MOE_OK);
        }
    CHECK(moe_gguf_writer_add_tensor(w, "blk.0.ffn_gate_inp.weight", 0, 2, (int64_t[]){32, 2}, zeros, 256) == MOE_OK);
    const char *path = tmp("perexp.gguf");
    REQUIRE_MSG(moe_gguf_writer_write(w, path) == MOE_OK, "%s", moe_last_error());
    moe_gguf_writer_free(w);

    char *out = check_json(path, "{'expert_bytes': 3 * 136 + 3 * 72, 'non_expert_bytes': 256, 'n_expert': 2,"
                                 " 'rope_scaling_factor': 4.0, 'rope_scaling_type': 'yarn', 'expert_layout': 'per-expert',"
                                 " 'per_expert_bytes': {'min': 216, 'max': 408, 'mean': 312, 'slots': 2, 'max_layer_bytes': 624}}");
    free(out);
    /* the same values in text: readable, escaped, one line each */
    char args[600];
    snprintf(args, sizeof args, "'%s'", path);
    out = NULL;
    int rc = inspect(args, &out);
    REQUIRE_MSG(rc == 0, "exit %d", rc);
    CHECK_STR_CONTAINS(out, "one tensor per expert");
    CHECK_STR_CONTAINS(out, "(mean; 216 B to 408 B)");
    CHECK_STR_CONTAINS(out, "RoPE scaling           yarn, factor 4");
    CHECK_STR_CONTAINS(out, "\"a\xff\xc3(\\x01\\\"\\\\\\x00z\"");
    CHECK_STR_CONTAINS(out, "arr[arr[u32,2],2]");
    CHECK_STR_CONTAINS(out, "[[1, 2], [\"a");
    CHECK_STR_CONTAINS(out, "18446744073709551615");
    free(out);
}

/* ------------------------------------------------------------ errors */

TEST(cli_inspect_malformed_file_exit_1) {
    /* the first 1000 bytes of a real file: the reader's message, on stderr, exit 1 */
    const char *src = test_fixture("gguf/mixtral-q4_0.gguf");
    const char *cut = tmp("cut.gguf");
    char cmd[1400], *out = NULL;
    snprintf(cmd, sizeof cmd, "head -c 1000 '%s' > '%s'", src, cut);
    REQUIRE(test_run(cmd, NULL) == 0);
    /* braces: test_run sends the group's stderr to the pipe, the command's goes away */
    snprintf(cmd, sizeof cmd, "{ %s inspect '%s' 2>/dev/null; }", test_moe_bin(), cut);
    int rc = test_run(cmd, &out);
    CHECK_EQ_INT(rc, 1);
    CHECK(out && out[0] == 0); /* nothing on stdout */
    free(out);
    out = NULL;
    snprintf(cmd, sizeof cmd, "{ %s inspect --json '%s' 2>&1 >/dev/null; }", test_moe_bin(), cut);
    rc = test_run(cmd, &out);
    CHECK_EQ_INT(rc, 1);
    CHECK_STR_CONTAINS(out, "moe inspect: ");
    CHECK_STR_CONTAINS(out, cut);
    CHECK_STR_CONTAINS(out, "tokenizer.ggml.tokens"); /* the field the cut falls in */
    free(out);
}

TEST(cli_inspect_not_gguf_and_missing) {
    const char *p = tmp("notgguf.bin");
    FILE *f = fopen(p, "w");
    REQUIRE(f);
    fputs("this is not a GGUF file at all, just text\n", f);
    fclose(f);
    char args[600], *out = NULL;
    snprintf(args, sizeof args, "'%s'", p);
    CHECK_EQ_INT(inspect(args, &out), 1);
    CHECK_STR_CONTAINS(out, "bad magic");
    free(out);
    out = NULL;
    CHECK_EQ_INT(inspect("/nonexistent/model.gguf", &out), 1);
    CHECK_STR_CONTAINS(out, "/nonexistent/model.gguf");
    free(out);
}

TEST(cli_inspect_usage) {
    char *out = NULL;
    CHECK_EQ_INT(inspect("--help", &out), 0);
    CHECK_STR_CONTAINS(out, "usage: moe inspect");
    CHECK_STR_CONTAINS(out, "--json");
    free(out);
    out = NULL;
    CHECK_EQ_INT(inspect("", &out), 2);
    CHECK_STR_CONTAINS(out, "no file given");
    free(out);
    out = NULL;
    CHECK_EQ_INT(inspect("--bogus x.gguf", &out), 2);
    CHECK_STR_CONTAINS(out, "unknown option --bogus");
    free(out);
    out = NULL;
    CHECK_EQ_INT(inspect("a.gguf b.gguf", &out), 2);
    free(out);
}
