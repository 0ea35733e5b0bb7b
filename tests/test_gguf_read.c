/* test_gguf_read.c — the GGUF reader on llama.cpp's fixture files. */
#include "test.h"
#include "moe.h"

TEST(gguf_reads_mixtral_fixture) {
    moe_gguf *g = moe_gguf_open(test_fixture("gguf/mixtral-q4_0.gguf"));
    REQUIRE_MSG(g, "%s", moe_last_error());
    CHECK_EQ_INT(moe_gguf_version(g), 3);
    const char *arch = NULL;
    CHECK(moe_gguf_get_str(g, "general.architecture", &arch) == MOE_OK);
    CHECK(arch && strcmp(arch, "llama") == 0);
    uint32_t n_expert = 0;
    CHECK(moe_gguf_get_u32(g, "llama.expert_count", &n_expert) == MOE_OK);
    CHECK_EQ_INT(n_expert, 8);
    const void *toks;
    uint64_t n;
    CHECK(moe_gguf_get_arr(g, "tokenizer.ggml.tokens", MOE_GGUF_STRING, &toks, &n) == MOE_OK);
    CHECK_EQ_INT(n, 4096);
    const moe_gguf_tensor *t = moe_gguf_find_tensor(g, "blk.1.ffn_up_exps.weight");
    REQUIRE(t);
    CHECK_EQ_INT(t->ne[0], 256);
    CHECK_EQ_INT(t->ne[1], 512);
    CHECK_EQ_INT(t->ne[2], 8);
    CHECK_EQ_INT(t->type, 2);
    CHECK(moe_gguf_find_tensor(g, "blk.9.nope") == NULL);
    moe_gguf_close(g);
}

TEST(gguf_missing_file_names_path) {
    moe_gguf *g = moe_gguf_open("/nonexistent/x.gguf");
    CHECK(g == NULL);
    CHECK_STR_CONTAINS(moe_last_error(), "/nonexistent/x.gguf");
}
