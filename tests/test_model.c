/* test_model.c — the model loader and the context: hyperparameters read from the
 * fixtures, errors that name the architecture / tensor / token, the per-expert tensor
 * layout (checked against the 3-D layout of the same llama.cpp fixture), the routing
 * hook, reset, and the expert-provider interface the offloading work plugs into. */
#include "test.h"
#include "test_model_gen.h"

#include <stdlib.h>
#include "model/experts.h"
#include "io/gguf.h"     /* moe_gguf_base */
#include "model/model.h" /* the loaded matrices: are they interleaved? */

static moe_model *load(const char *rel) {
    moe_model_params mp = moe_model_default_params();
    mp.n_threads = 2;
    return moe_model_load(test_fixture(rel), &mp);
}

static int64_t fixture_tokens(int32_t *out, int64_t cap) {
    FILE *f = fopen(test_fixture("gguf/tokens.txt"), "r");
    if (!f) return -1;
    int64_t n = 0;
    int v;
    while (n < cap && fscanf(f, "%d", &v) == 1) out[n++] = v;
    fclose(f);
    return n;
}

/* Both models give the same logits, bit for bit, on the n tokens as one batch (the
 * prefill kernels) and on the first few decoded one at a time (the decode kernels). */
static void check_same_logits(moe_model *a, moe_model *b, const int32_t *tokens, int64_t n) {
    const int64_t nv = moe_model_n_vocab(a);
    moe_context *ca = moe_context_init(a, n), *cb = moe_context_init(b, n);
    float *la = malloc((size_t)(n * nv) * sizeof *la), *lb = malloc((size_t)(n * nv) * sizeof *lb);
    CHECK(ca && cb && la && lb && moe_model_n_vocab(b) == nv);
    if (ca && cb && la && lb) {
        CHECK(moe_eval(ca, tokens, n, la, 0) == MOE_OK);
        CHECK(moe_eval(cb, tokens, n, lb, 0) == MOE_OK);
        CHECK(memcmp(la, lb, (size_t)(n * nv) * sizeof *la) == 0);
        moe_context_reset(ca);
        moe_context_reset(cb);
        for (int64_t t = 0; t < MOE_MIN(n, 6); t++) {
            CHECK(moe_eval(ca, tokens + t, 1, la, 0) == MOE_OK);
            CHECK(moe_eval(cb, tokens + t, 1, lb, 0) == MOE_OK);
            CHECK_MSG(memcmp(la, lb, (size_t)nv * sizeof *la) == 0, "decoded token %lld", (long long)t);
        }
    }
    free(la);
    free(lb);
    moe_context_free(ca);
    moe_context_free(cb);
}

TEST(model_hparams_fixtures) {
    moe_model *m = load("gguf/mixtral-f16.gguf");
    REQUIRE_MSG(m, "%s", moe_last_error());
    const moe_hparams *hp = moe_model_hparams(m);
    CHECK(strcmp(moe_model_arch(m), "llama") == 0);
    CHECK_EQ_INT(hp->n_vocab, 4096);
    CHECK_EQ_INT(hp->n_layer, 2);
    CHECK_EQ_INT(hp->n_embd, 256);
    CHECK_EQ_INT(hp->n_head, 8);
    CHECK_EQ_INT(hp->n_head_kv, 4);
    CHECK_EQ_INT(hp->n_embd_head_k, 32);
    CHECK_EQ_INT(hp->n_rot, 32);
    CHECK_EQ_INT(hp->n_expert, 8);
    CHECK_EQ_INT(hp->n_expert_used, 2);
    CHECK_EQ_INT(hp->n_ff_exp, 512);
    CHECK(hp->expert_weights_norm);
    CHECK_EQ_INT(hp->rope_type, MOE_ROPE_NORM);
    CHECK_NEAR(hp->rope_freq_base, 10000.0, 0);
    CHECK_NEAR(hp->rope_freq_scale, 1.0, 0);
    CHECK_NEAR(hp->rms_eps, 1e-5, 1e-12);
    moe_model_free(m);

    m = load("gguf/qwen2moe-f16.gguf");
    REQUIRE_MSG(m, "%s", moe_last_error());
    hp = moe_model_hparams(m);
    CHECK_EQ_INT(hp->n_ff_exp, 256);
    CHECK_EQ_INT(hp->n_ff_shexp, 512);
    CHECK(hp->shared_expert_gate);
    CHECK(!hp->expert_weights_norm);
    CHECK_EQ_INT(hp->rope_type, MOE_ROPE_NEOX);
    moe_model_free(m);

    m = load("gguf/olmoe-f16.gguf");
    REQUIRE_MSG(m, "%s", moe_last_error());
    hp = moe_model_hparams(m);
    CHECK_EQ_INT(hp->qk_norm, 2);
    CHECK_EQ_INT(hp->n_expert, 16);
    CHECK_EQ_INT(hp->n_expert_used, 4);
    CHECK(!hp->expert_weights_norm);
    CHECK_EQ_INT(hp->rope_type, MOE_ROPE_NEOX);
    moe_model_free(m);
}

static const gen_spec g_small = {.arch = "qwen2moe", .n_layer = 2, .n_embd = 32, .n_head = 2, .n_head_kv = 1,
                                 .n_vocab = 50, .n_expert = 4, .n_expert_used = 2, .n_ff_exp = 16, .n_ff_shexp = 24,
                                 .biases = true, .shared_gate = true, .expert_weights_norm = -1, .seed = 5};

TEST(model_errors_name_the_problem) {
    char path[512];
    snprintf(path, sizeof path, "%s/m.gguf", test_tmpdir());
    gen_spec s = g_small;
    s.arch = "gpt2";
    REQUIRE(gen_write(&s, path) == MOE_OK);
    CHECK(moe_model_load(path, NULL) == NULL);
    CHECK_STR_CONTAINS(moe_last_error(), "gpt2");
    CHECK_STR_CONTAINS(moe_last_error(), "not supported");

    s = g_small;
    s.skip_tensor = "blk.1.ffn_up_exps.weight";
    REQUIRE(gen_write(&s, path) == MOE_OK);
    CHECK(moe_model_load(path, NULL) == NULL);
    CHECK_STR_CONTAINS(moe_last_error(), "blk.1.ffn_up_exps.weight");
    CHECK_STR_CONTAINS(moe_last_error(), "m.gguf");

    s = g_small;
    s.skip_tensor = "blk.0.ffn_gate_inp_shexp.weight"; /* qwen2moe's shared-expert gate is required */
    REQUIRE(gen_write(&s, path) == MOE_OK);
    CHECK(moe_model_load(path, NULL) == NULL);
    CHECK_STR_CONTAINS(moe_last_error(), "blk.0.ffn_gate_inp_shexp.weight");

    s = g_small;
    s.arch = "olmoe"; /* olmoe needs attn_q_norm */
    REQUIRE(gen_write(&s, path) == MOE_OK);
    CHECK(moe_model_load(path, NULL) == NULL);
    CHECK_STR_CONTAINS(moe_last_error(), "attn_q_norm");

    /* a shape that disagrees with the metadata: expert_feed_forward_length 17 vs 16 */
    s = g_small;
    REQUIRE(gen_write(&s, path) == MOE_OK);
    char path2[512];
    snprintf(path2, sizeof path2, "%s/m2.gguf", test_tmpdir());
    moe_gguf *g = moe_gguf_open(path);
    moe_gguf_writer *w = moe_gguf_writer_init();
    REQUIRE(g && w);
    for (int64_t i = 0; i < moe_gguf_n_kv(g); i++)
        CHECK(moe_gguf_writer_set_value(w, moe_gguf_kv_key(g, i), moe_gguf_kv_value(g, i)) == MOE_OK);
    CHECK(moe_gguf_writer_set_u32(w, "qwen2moe.expert_feed_forward_length", 17) == MOE_OK);
    for (int64_t i = 0; i < moe_gguf_n_tensors(g); i++) {
        const moe_gguf_tensor *t = moe_gguf_tensor_at(g, i);
        CHECK(moe_gguf_writer_add_tensor(w, t->name, t->type, t->n_dims, t->ne, t->data, t->nbytes) == MOE_OK);
    }
    REQUIRE(moe_gguf_writer_write(w, path2) == MOE_OK);
    moe_gguf_writer_free(w);
    moe_gguf_close(g);
    CHECK(moe_model_load(path2, NULL) == NULL);
    CHECK_STR_CONTAINS(moe_last_error(), "blk.0.ffn_gate_exps.weight");
    CHECK_STR_CONTAINS(moe_last_error(), "expected [32, 17, 4, 1]");

    CHECK(moe_model_load("/nonexistent/x.gguf", NULL) == NULL);
    CHECK_STR_CONTAINS(moe_last_error(), "/nonexistent/x.gguf");

    moe_model_params bad = moe_model_default_params();
    bad.kv_type = (moe_kv_type)7;
    CHECK(moe_model_load(test_fixture("gguf/mixtral-q8_0.gguf"), &bad) == NULL);
    CHECK_STR_CONTAINS(moe_last_error(), "kv_type 7");
}

TEST(model_eval_errors_leave_context_unchanged) {
    char path[512];
    snprintf(path, sizeof path, "%s/m.gguf", test_tmpdir());
    REQUIRE(gen_write(&g_small, path) == MOE_OK);
    moe_model *m = moe_model_load(path, NULL);
    REQUIRE_MSG(m, "%s", moe_last_error());
    moe_context *c = moe_context_init(m, 8);
    REQUIRE(c);
    CHECK_EQ_INT(moe_context_n_ctx(c), 8);
    int32_t bad[3] = {1, 50, 2};
    CHECK(moe_eval(c, bad, 3, NULL, 0) == MOE_ERR_INVALID);
    CHECK_STR_CONTAINS(moe_last_error(), "50");
    CHECK_STR_CONTAINS(moe_last_error(), "index 1");
    bad[1] = -3;
    CHECK(moe_eval(c, bad, 3, NULL, 0) == MOE_ERR_INVALID);
    CHECK_EQ_INT(moe_context_pos(c), 0);
    int32_t ok[8] = {1, 2, 3, 4, 5, 6, 7, 8};
    CHECK(moe_eval(c, ok, 6, NULL, 0) == MOE_OK);
    CHECK_EQ_INT(moe_context_pos(c), 6);
    CHECK(moe_eval(c, ok, 3, NULL, 0) == MOE_ERR_INVALID);
    CHECK_STR_CONTAINS(moe_last_error(), "context is full");
    CHECK_EQ_INT(moe_context_pos(c), 6);
    CHECK(moe_eval(c, ok, 2, NULL, 0) == MOE_OK);
    CHECK_EQ_INT(moe_context_pos(c), 8);
    moe_context_free(c);
    moe_model_free(m);
}

/* The per-expert layout of the llama.cpp fixture (each expert its own 2-D tensors, in
 * the expert-major order DESIGN.md describes) gives bit-identical logits. */
TEST(model_per_expert_layout_matches_3d) {
    const char *src = test_fixture("gguf/mixtral-f16.gguf");
    moe_gguf *g = moe_gguf_open(src);
    REQUIRE_MSG(g, "%s", moe_last_error());
    moe_gguf_writer *w = moe_gguf_writer_init();
    REQUIRE(w);
    for (int64_t i = 0; i < moe_gguf_n_kv(g); i++)
        CHECK(moe_gguf_writer_set_value(w, moe_gguf_kv_key(g, i), moe_gguf_kv_value(g, i)) == MOE_OK);
    for (int64_t i = 0; i < moe_gguf_n_tensors(g); i++) {
        const moe_gguf_tensor *t = moe_gguf_tensor_at(g, i);
        const char *kind = strstr(t->name, "_exps.weight");
        if (!kind) {
            CHECK(moe_gguf_writer_add_tensor(w, t->name, t->type, t->n_dims, t->ne, t->data, t->nbytes) == MOE_OK);
            continue;
        }
        int layer;
        char proj[16];
        REQUIRE(sscanf(t->name, "blk.%d.ffn_%15[a-z]_exps.weight", &layer, proj) == 2);
        const uint64_t per = t->nbytes / (uint64_t)t->ne[2];
        for (int64_t e = 0; e < t->ne[2]; e++) {
            char name[96];
            snprintf(name, sizeof name, "blk.%d.ffn_%s.%lld.weight", layer, proj, (long long)e);
            CHECK(moe_gguf_writer_add_tensor(w, name, t->type, 2, t->ne, (const uint8_t *)t->data + e * per, per) ==
                  MOE_OK);
        }
    }
    char path[512];
    snprintf(path, sizeof path, "%s/per-expert.gguf", test_tmpdir());
    REQUIRE_MSG(moe_gguf_writer_write(w, path) == MOE_OK, "%s", moe_last_error());
    moe_gguf_writer_free(w);
    moe_gguf_close(g);

    int32_t tokens[64];
    int64_t n = fixture_tokens(tokens, 64);
    REQUIRE(n == 64);
    moe_model *a = load("gguf/mixtral-f16.gguf"), *b = moe_model_load(path, NULL);
    REQUIRE_MSG(a && b, "%s", moe_last_error());
    check_same_logits(a, b, tokens, n);
    moe_model_free(a);
    moe_model_free(b);
}

/* no_mmap reads the file into anonymous memory and interleaves the weight matrices there
 * (core/matmul.h): the same logits bit for bit, batch and decode, for each quantized type
 * of the fixtures; the matrices really are interleaved (else this test would prove
 * nothing); an offloader refuses such a model (its budget counts on experts left on
 * disk); a missing file is still an error naming it. */
TEST(model_no_mmap_same_logits) {
    int32_t tokens[64];
    const int64_t n = fixture_tokens(tokens, 64);
    REQUIRE(n == 64);
    moe_model_params mp = moe_model_default_params();
    mp.n_threads = 2;
    mp.no_mmap = true;
    const char *files[] = {"gguf/mixtral-q4_0.gguf", "gguf/mixtral-q8_0.gguf", "gguf/mixtral-q4_k_s.gguf",
                           "gguf/mixtral-q6_k.gguf"};
    for (size_t f = 0; f < sizeof files / sizeof *files; f++) {
        moe_model *a = load(files[f]), *b = moe_model_load(test_fixture(files[f]), &mp);
        REQUIRE_MSG(a && b, "%s", moe_last_error());
        const moe_expert_weights *w = moe_mapped_provider_slot(b->experts, 1, 3);
        const bool simd = moe_type_vec_dot_x4i(w->gate.type) != NULL;
        CHECK_MSG(w->gate.interleaved == simd && w->down.interleaved == simd && b->layers[0].attn.wq.interleaved == simd,
                  "%s", files[f]);
        CHECK(!moe_mapped_provider_slot(a->experts, 1, 3)->gate.interleaved);
        check_same_logits(a, b, tokens, n);
        if (f == 0) {
            moe_context *cb = moe_context_init(b, n);
            REQUIRE(cb);
            moe_offload_params op = moe_offload_default_params();
            op.budget = (uint64_t)1 << 30;
            CHECK(moe_offload_init(b, cb, &op) == NULL);
            CHECK_MSG(strstr(moe_last_error(), "no_mmap") != NULL, "%s", moe_last_error());
            moe_context_free(cb);
        }
        moe_model_free(a);
        moe_model_free(b);
    }
    CHECK(moe_model_load("/nonexistent/x.gguf", &mp) == NULL);
    CHECK_MSG(strstr(moe_last_error(), "/nonexistent/x.gguf") != NULL, "%s", moe_last_error());
}

/* Attention scores eight keys at a time (forward.c, hsum8x8) give the bits of one key at a
 * time, with either cache type: batch and decode logits compared bit for bit. */
TEST(model_attention_key_blocks_same_bits) {
    int32_t tokens[64];
    const int64_t n = fixture_tokens(tokens, 64);
    REQUIRE(n == 64);
    for (int f16 = 0; f16 < 2; f16++) {
        moe_model_params mp = moe_model_default_params();
        mp.n_threads = 2;
        mp.kv_type = f16 ? MOE_KV_F16 : MOE_KV_F32;
        moe_model *m = moe_model_load(test_fixture("gguf/mixtral-q8_0.gguf"), &mp);
        REQUIRE_MSG(m, "%s", moe_last_error());
        const int64_t nv = moe_model_n_vocab(m);
        float *la = malloc((size_t)(n * nv) * sizeof *la), *lb = malloc((size_t)(n * nv) * sizeof *lb);
        REQUIRE(la && lb);
        for (int one = 0; one < 2; one++) {
            moe_forward_test_one_key_at_a_time = one;
            moe_context *c = moe_context_init(m, n);
            REQUIRE_MSG(c, "%s", moe_last_error());
            float *l = one ? lb : la;
            CHECK(moe_eval(c, tokens, n - 8, l, 0) == MOE_OK); /* a batch, then tokens one at a time */
            for (int64_t t = n - 8; t < n; t++) CHECK(moe_eval(c, tokens + t, 1, l + t * nv, 0) == MOE_OK);
            moe_context_free(c);
        }
        moe_forward_test_one_key_at_a_time = 0;
        CHECK_MSG(memcmp(la, lb, (size_t)(n * nv) * sizeof *la) == 0, "kv %s", f16 ? "f16" : "f32");
        free(la);
        free(lb);
        moe_model_free(m);
    }
}

/* resident_in_memory (what --mem uses): the attention and output matrices are copied out
 * of the mapping and interleaved, the experts and the (untied) embedding table stay in the
 * mapping, and the logits are the same bit for bit, batch and decode, with and without an
 * offloader reading the experts. */
TEST(model_resident_in_memory_same_logits) {
    int32_t tokens[64];
    const int64_t n = fixture_tokens(tokens, 64);
    REQUIRE(n == 64);
    moe_model_params mp = moe_model_default_params();
    mp.n_threads = 2;
    mp.resident_in_memory = true;
    const char *files[] = {"gguf/mixtral-q4_0.gguf", "gguf/mixtral-q4_k_s.gguf", "gguf/mixtral-q8_0.gguf"};
    for (size_t f = 0; f < sizeof files / sizeof *files; f++) {
        moe_model *a = load(files[f]), *b = moe_model_load(test_fixture(files[f]), &mp);
        REQUIRE_MSG(a && b, "%s", moe_last_error());
        const bool simd = moe_type_vec_dot_x4i(b->layers[0].attn.wq.type) != NULL;
        const uint8_t *base = moe_gguf_base(b->gguf); /* the mapping */
        const uint64_t size = moe_gguf_file_size(b->gguf);
        const uint8_t *wq = b->layers[0].attn.wq.data, *gate = moe_mapped_provider_slot(b->experts, 1, 3)->gate.data;
        CHECK_MSG(b->layers[0].attn.wq.interleaved == simd && b->layers[1].attn.wo.interleaved == simd, "%s", files[f]);
        CHECK_MSG(!simd || wq < base || wq >= base + size, "%s: wq still in the mapping", files[f]);
        CHECK_MSG(gate >= base && gate < base + size, "%s: an expert left the mapping", files[f]);
        CHECK(!moe_mapped_provider_slot(b->experts, 1, 3)->gate.interleaved);
        check_same_logits(a, b, tokens, n);
        moe_context *cb = moe_context_init(b, n);
        REQUIRE(cb);
        moe_offload_params op = moe_offload_default_params();
        op.budget = (uint64_t)1 << 30;
        moe_offload *off = moe_offload_init(b, cb, &op);
        REQUIRE_MSG(off, "%s", moe_last_error());
        moe_offload_attach(off, cb);
        moe_context *ca = moe_context_init(a, n);
        REQUIRE(ca);
        float *la = malloc((size_t)moe_model_n_vocab(a) * sizeof(float)), *lb = malloc((size_t)moe_model_n_vocab(b) * sizeof(float));
        REQUIRE(la && lb);
        for (int64_t t = 0; t < 8; t++) { /* decode through the offloader */
            REQUIRE(moe_eval(ca, tokens + t, 1, la, 0) == MOE_OK && moe_eval(cb, tokens + t, 1, lb, 0) == MOE_OK);
            CHECK_MSG(memcmp(la, lb, (size_t)moe_model_n_vocab(a) * sizeof(float)) == 0, "%s token %lld", files[f], (long long)t);
        }
        free(la);
        free(lb);
        moe_context_free(ca);
        moe_context_free(cb);
        moe_offload_free(off);
        moe_model_free(a);
        moe_model_free(b);
    }
}

/* ---------------------------------------------------------------- routing hook */

typedef struct {
    int events;
    int per_layer[4];
    int64_t last_pos;
    bool ordered, weights_ok;
} hook_log;

static void on_route(void *user, const moe_routing_event *ev) {
    hook_log *h = user;
    h->events++;
    if (ev->layer >= 0 && ev->layer < 4) h->per_layer[ev->layer]++;
    float sum = 0;
    for (int j = 0; j < ev->k; j++) {
        sum += ev->weights[j];
        if (j && ev->weights[j] > ev->weights[j - 1]) h->weights_ok = false;
    }
    if (ev->k != 4 || sum > 1.0f + 1e-6f || sum <= 0) h->weights_ok = false; /* qwen2moe: no renorm */
    h->last_pos = ev->pos;
}

TEST(model_routing_hook_and_reset) {
    moe_model *m = load("gguf/qwen2moe-f16.gguf");
    REQUIRE_MSG(m, "%s", moe_last_error());
    int32_t tokens[64];
    int64_t n = fixture_tokens(tokens, 64);
    moe_context *c = moe_context_init(m, 0);
    REQUIRE(c);
    CHECK_EQ_INT(moe_context_n_ctx(c), 4096); /* min(context_length, 4096) */
    hook_log h = {0, {0}, -1, true, true};
    moe_context_set_routing_hook(c, on_route, &h);
    float *a = malloc(4096 * sizeof *a), *b = malloc(4096 * sizeof *b);
    CHECK(moe_eval(c, tokens, n, a, MOE_EVAL_LAST_ONLY) == MOE_OK);
    CHECK_EQ_INT(h.events, 2 * n);
    CHECK_EQ_INT(h.per_layer[0], n);
    CHECK_EQ_INT(h.per_layer[1], n);
    CHECK_EQ_INT(h.last_pos, n - 1);
    CHECK(h.weights_ok);
    moe_context_set_routing_hook(c, NULL, NULL);
    moe_context_reset(c);
    CHECK_EQ_INT(moe_context_pos(c), 0);
    CHECK(moe_eval(c, tokens, n - 1, NULL, 0) == MOE_OK);
    CHECK(moe_eval(c, tokens + n - 1, 1, b, 0) == MOE_OK);
    CHECK(memcmp(a, b, 4096 * sizeof *a) == 0);
    CHECK_EQ_INT(h.events, 2 * n);
    free(a);
    free(b);
    moe_context_free(c);
    moe_model_free(m);
}

/* ---------------------------------------------------------------- expert provider */

typedef struct {
    moe_expert_provider base;
    moe_expert_provider *inner;
    int gets[2][8], hints, hinted, releases;
    bool fail;
} counting_provider;

static const moe_expert_weights *cp_get(moe_expert_provider *p, int layer, int expert) {
    counting_provider *cp = (counting_provider *)p;
    if (cp->fail) {
        moe_clear_error();
        moe_error(MOE_ERR_IO, "injected read error for expert %d of layer %d", expert, layer);
        return NULL;
    }
    cp->gets[layer][expert]++;
    return cp->inner->ops->get(cp->inner, layer, expert);
}
static void cp_hint(moe_expert_provider *p, int layer, const int32_t *experts, int n, bool predicted) {
    counting_provider *cp = (counting_provider *)p;
    cp->hints++;
    cp->hinted += n;
    for (int i = 1; i < n; i++)
        if (experts[i] <= experts[i - 1]) cp->hinted = -1000; /* must be sorted and unique */
    (void)layer;
    (void)predicted;
}
static void cp_release(moe_expert_provider *p, int layer, int expert) {
    ((counting_provider *)p)->releases++;
    (void)layer;
    (void)expert;
}
static void cp_destroy(moe_expert_provider *p) { (void)p; }
static const moe_expert_provider_ops g_cp_ops = {cp_get, cp_hint, cp_release, cp_destroy};

TEST(model_expert_provider_interface) {
    moe_model *m = load("gguf/mixtral-f16.gguf");
    REQUIRE_MSG(m, "%s", moe_last_error());
    int32_t tokens[64];
    int64_t n = fixture_tokens(tokens, 64);
    moe_context *c = moe_context_init(m, n), *c0 = moe_context_init(m, n);
    REQUIRE(c && c0);
    counting_provider cp = {{&g_cp_ops}, moe_model_default_experts(m), {{0}}, 0, 0, 0, false};
    moe_context_set_expert_provider(c, &cp.base);
    float *a = malloc((size_t)n * 4096 * sizeof *a), *b = malloc((size_t)n * 4096 * sizeof *b);
    CHECK(moe_eval(c, tokens, n, a, 0) == MOE_OK);
    CHECK(moe_eval(c0, tokens, n, b, 0) == MOE_OK);
    CHECK(memcmp(a, b, (size_t)n * 4096 * sizeof *a) == 0);
    /* one batch: each used expert fetched once per layer; hints list exactly those */
    int used = 0;
    for (int l = 0; l < 2; l++)
        for (int e = 0; e < 8; e++) {
            CHECK(cp.gets[l][e] <= 1);
            used += cp.gets[l][e];
        }
    CHECK_EQ_INT(cp.hints, 2);
    CHECK_EQ_INT(cp.hinted, used);
    CHECK_EQ_INT(cp.releases, used);
    /* a provider error fails the evaluation with its message, and the position is kept */
    moe_context_reset(c);
    CHECK(moe_eval(c, tokens, 4, NULL, 0) == MOE_OK);
    cp.fail = true;
    CHECK(moe_eval(c, tokens, 4, NULL, 0) == MOE_ERR_IO);
    CHECK_STR_CONTAINS(moe_last_error(), "injected read error");
    CHECK_EQ_INT(moe_context_pos(c), 4);
    free(a);
    free(b);
    moe_context_free(c);
    moe_context_free(c0);
    moe_model_free(m);
}

/* Inputs longer than a batch (512 tokens) are split; the split does not change the
 * logits (each token's computation depends only on its own row and the cache). */
TEST(model_long_input_split_into_batches) {
    moe_model *m = load("gguf/olmoe-f16.gguf");
    REQUIRE_MSG(m, "%s", moe_last_error());
    int32_t base[64], tokens[600];
    int64_t nb = fixture_tokens(base, 64);
    REQUIRE(nb == 64);
    for (int i = 0; i < 600; i++) tokens[i] = base[(i * 5 + i / 64) % 64];
    moe_context *c = moe_context_init(m, 600);
    float *a = malloc((size_t)600 * 4096 * sizeof *a), *b = malloc((size_t)600 * 4096 * sizeof *b);
    REQUIRE(c && a && b);
    CHECK(moe_eval(c, tokens, 600, a, 0) == MOE_OK);
    moe_context_reset(c);
    CHECK(moe_eval(c, tokens, 100, b, 0) == MOE_OK);
    CHECK(moe_eval(c, tokens + 100, 500, b + (size_t)100 * 4096, 0) == MOE_OK);
    CHECK(memcmp(a, b, (size_t)600 * 4096 * sizeof *a) == 0);
    free(a);
    free(b);
    moe_context_free(c);
    moe_model_free(m);
}
