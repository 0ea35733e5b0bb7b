/* test_offload.c — the offloading expert provider (--mem): logits bit-identical to the
 * mapped model at budgets that force misses, every policy, with and without the I/O
 * thread; read errors, short reads and a file changing under the process fail clearly. */
#include "test.h"
#include "moe.h"
#include "model/model.h" /* the mapped experts, to compare a slot's rows with */

#include <errno.h>
#include <stdlib.h>
#include <unistd.h>

#define N_TOK 16

static int32_t *fixture_tokens(int n) {
    FILE *f = fopen(test_fixture("gguf/tokens.txt"), "r");
    if (!f) return NULL;
    int32_t *t = malloc((size_t)n * sizeof *t);
    for (int i = 0; i < n; i++)
        if (fscanf(f, "%d", &t[i]) != 1) { free(t); fclose(f); return NULL; }
    fclose(f);
    return t;
}

/* Logits of the first N_TOK fixture tokens, evaluated one batch then token by token
 * (decode exercises the cache much more), with an offloader when params != NULL. */
static float *eval_logits(moe_model *m, const moe_offload_params *params, moe_offload_stats *stats) {
    int32_t *toks = fixture_tokens(N_TOK);
    if (!toks) return NULL;
    int64_t nv = moe_model_n_vocab(m);
    float *out = malloc((size_t)(N_TOK * nv) * sizeof *out);
    moe_context *c = moe_context_init(m, 64);
    moe_offload *o = NULL;
    bool ok = c && out;
    if (ok && params) {
        o = moe_offload_init(m, c, params);
        ok = o != NULL;
        if (o) moe_offload_attach(o, c);
    }
    /* the first half as one batch, the rest one token at a time */
    if (ok) ok = moe_eval(c, toks, N_TOK / 2, out, 0) == MOE_OK;
    for (int i = N_TOK / 2; ok && i < N_TOK; i++) ok = moe_eval(c, toks + i, 1, out + i * nv, 0) == MOE_OK;
    if (o && stats) moe_offload_get_stats(o, stats);
    moe_context_free(c);
    moe_offload_free(o);
    free(toks);
    if (!ok) { free(out); return NULL; }
    return out;
}

static uint64_t min_budget(moe_model *m) {
    moe_context *c = moe_context_init(m, 64);
    uint64_t b = c ? moe_offload_min_budget(m, c, false) : 0;
    moe_context_free(c);
    return b;
}

TEST(offload_logits_bit_identical_at_every_budget_and_policy) {
    moe_model *m = moe_model_load(test_fixture("gguf/mixtral-q4_0.gguf"), NULL);
    if (!m) { test_skip("cannot load mixtral-q4_0: %s", moe_last_error()); return; }
    int64_t nv = moe_model_n_vocab(m);
    float *ref = eval_logits(m, NULL, NULL);
    REQUIRE_MSG(ref, "%s", moe_last_error());
    uint64_t lo = min_budget(m);
    int runs = 0;
    /* every policy at a small budget; the others also at a medium one without the I/O
     * thread and at a budget that holds everything, split per layer */
    for (int pol = 0; pol < MOE_CACHE_BELADY; pol++) {
        for (int extra = 0; extra < (pol == MOE_CACHE_EDGEMOE ? 3 : 1); extra++) {
            moe_offload_params p = moe_offload_default_params();
            p.policy = (moe_cache_policy)pol;
            /* 2 slots over the minimum, ~10 (misses), and everything */
            p.budget = lo + (uint64_t)(extra == 0 ? 2 : extra == 1 ? 8 : 64) * (450u << 10);
            p.prefetch = extra != 1;
            p.per_layer = extra == 2;
            p.gate_lookahead = extra != 2;
            moe_offload_stats st;
            float *got = eval_logits(m, &p, &st);
            REQUIRE_MSG(got, "policy %d budget %llu: %s", pol, (unsigned long long)p.budget, moe_last_error());
            CHECK_MSG(memcmp(got, ref, (size_t)(N_TOK * nv) * sizeof *ref) == 0,
                      "policy %s, %lld slots: logits differ from the mapped model",
                      moe_cache_policy_name((moe_cache_policy)pol), (long long)st.n_slots);
            if (extra == 0) CHECK_MSG(st.misses + st.loads_background > st.n_slots, "a small budget must force evictions");
            if (p.prefetch && p.gate_lookahead)
                CHECK_MSG(st.predicted > 0, "the gate lookahead guesses the next layer's experts in decode");
            CHECK(st.accesses > 0);
            free(got);
            runs++;
        }
    }
    CHECK_EQ_INT(runs, 6);
    free(ref);
    moe_model_free(m);
}

/* The smallest budget (one layer's experts) with the I/O thread guessing ahead, 64 tokens
 * decoded one at a time: a guess being read holds a slot, and decoding must still get
 * every expert it needs, with the same logits as without the offloader. */
TEST(offload_smallest_budget_with_lookahead_decodes) {
    moe_model *m = moe_model_load(test_fixture("gguf/mixtral-q4_0.gguf"), NULL);
    REQUIRE_MSG(m, "%s", moe_last_error());
    enum { N = 64 };
    int32_t *toks = fixture_tokens(N);
    const int64_t nv = moe_model_n_vocab(m);
    float *a = malloc((size_t)nv * sizeof *a), *b = malloc((size_t)nv * sizeof *b);
    moe_context *ca = moe_context_init(m, N), *cb = moe_context_init(m, N);
    REQUIRE(toks && a && b && ca && cb);
    moe_offload_params p = moe_offload_default_params();
    p.budget = min_budget(m);
    p.gate_lookahead = true;
    moe_offload *o = moe_offload_init(m, cb, &p);
    REQUIRE_MSG(o, "%s", moe_last_error());
    moe_offload_attach(o, cb);
    for (int t = 0; t < N; t++) {
        REQUIRE_MSG(moe_eval(cb, toks + t, 1, b, 0) == MOE_OK, "token %d: %s", t, moe_last_error());
        REQUIRE(moe_eval(ca, toks + t, 1, a, 0) == MOE_OK);
        CHECK_MSG(memcmp(a, b, (size_t)nv * sizeof *a) == 0, "token %d: logits differ", t);
    }
    moe_offload_stats st;
    moe_offload_get_stats(o, &st);
    CHECK(st.predicted > 0 && st.n_slots == 2);
    moe_context_free(cb);
    moe_offload_free(o);
    moe_context_free(ca);
    free(toks);
    free(a);
    free(b);
    moe_model_free(m);
}

/* A slot holds the expert's rows as read at its first use and interleaved for the
 * kernels from its second on (where the type has such kernels), the same values as the
 * mapped expert row by row either way. */
TEST(offload_slots_hold_interleaved_experts) {
    moe_model *m = moe_model_load(test_fixture("gguf/mixtral-q4_0.gguf"), NULL);
    REQUIRE_MSG(m, "%s", moe_last_error());
    moe_context *c = moe_context_init(m, 64);
    REQUIRE(c);
    moe_offload_params prm = moe_offload_default_params();
    prm.budget = (uint64_t)1 << 30;
    prm.prefetch = false;
    moe_offload *o = moe_offload_init(m, c, &prm);
    REQUIRE_MSG(o, "%s", moe_last_error());
    moe_expert_provider *p = (moe_expert_provider *)o; /* its first member (provider.c) */
    const moe_expert_weights *w = p->ops->get(p, 1, 3), *ref = moe_mapped_provider_slot(m->experts, 1, 3);
    REQUIRE_MSG(w, "%s", moe_last_error());
    CHECK(!w->gate.interleaved && !w->down.interleaved);
    p->ops->release(p, 1, 3);
    CHECK(p->ops->get(p, 1, 3) == w); /* a hit: the same slot */
    const bool simd = moe_type_vec_dot_x4i(w->gate.type) != NULL;
    CHECK(w->gate.interleaved == simd && w->up.interleaved == simd && w->down.interleaved == simd && !ref->gate.interleaved);
    float *a = malloc((size_t)w->down.cols * sizeof *a), *b = malloc((size_t)w->down.cols * sizeof *b);
    REQUIRE(a && b);
    for (int64_t r = 0; r < w->down.rows; r += 7) {
        moe_mat_get_row(&w->down, r, a);
        moe_mat_get_row(&ref->down, r, b);
        CHECK_MSG(memcmp(a, b, (size_t)w->down.cols * sizeof *a) == 0, "row %lld", (long long)r);
    }
    free(a);
    free(b);
    p->ops->release(p, 1, 3);
    moe_context_free(c);
    moe_offload_free(o);
    moe_model_free(m);
}

TEST(offload_budget_too_small_says_what_is_needed) {
    moe_model *m = moe_model_load(test_fixture("gguf/mixtral-q4_0.gguf"), NULL);
    if (!m) { test_skip("cannot load mixtral-q4_0: %s", moe_last_error()); return; }
    moe_offload_params p = moe_offload_default_params();
    p.budget = 1 << 20;
    moe_context *c = moe_context_init(m, 64);
    REQUIRE(c);
    CHECK(moe_offload_init(m, c, &p) == NULL);
    CHECK_STR_CONTAINS(moe_last_error(), "need at least");
    CHECK_STR_CONTAINS(moe_last_error(), "mixtral-q4_0.gguf");
    moe_context_free(c);
    moe_model_free(m);
}

/* Fault injection: a read function that fails once `budget` bytes have been read. */
typedef struct { int64_t calls_left; int mode; } fault;
enum { FAULT_EIO = 1, FAULT_SHORT = 2 };

static int64_t faulty_read(void *ctx, int fd, void *buf, size_t n, uint64_t off) {
    fault *f = ctx;
    if (f->calls_left-- > 0) return pread(fd, buf, n, (off_t)off);
    if (f->mode == FAULT_EIO) { errno = EIO; return -1; }
    return 0; /* end of file where data should be: a short read */
}

static void expect_fault(int mode, const char *needle) {
    moe_model *m = moe_model_load(test_fixture("gguf/mixtral-q4_0.gguf"), NULL);
    if (!m) { test_skip("cannot load mixtral-q4_0: %s", moe_last_error()); return; }
    fault f = {5, mode};
    moe_offload_params p = moe_offload_default_params();
    p.budget = min_budget(m) + 2 * (450u << 10);
    p.read_fn = faulty_read;
    p.read_ctx = &f;
    p.prefetch = false;
    moe_offload_stats st;
    float *got = eval_logits(m, &p, &st);
    CHECK_MSG(got == NULL, "a failing read must fail the evaluation");
    CHECK_STR_CONTAINS(moe_last_error(), needle);
    CHECK_STR_CONTAINS(moe_last_error(), "mixtral-q4_0.gguf");
    CHECK_STR_CONTAINS(moe_last_error(), "expert");
    free(got);
    moe_model_free(m);
}

TEST(offload_read_error_names_file_and_expert) { expect_fault(FAULT_EIO, "Input/output error"); }
TEST(offload_short_read_names_file_and_expert) { expect_fault(FAULT_SHORT, "short read"); }

TEST(offload_file_changed_under_the_process) {
    char path[512], cmd[1200];
    snprintf(path, sizeof path, "%s/m.gguf", test_tmpdir());
    snprintf(cmd, sizeof cmd, "cp '%s' '%s'", test_fixture("gguf/mixtral-q4_0.gguf"), path);
    REQUIRE(system(cmd) == 0);
    moe_model *m = moe_model_load(path, NULL);
    REQUIRE_MSG(m, "%s", moe_last_error());
    moe_offload_params p = moe_offload_default_params();
    p.budget = min_budget(m) + 2 * (450u << 10);
    p.prefetch = false;
    moe_context *c = moe_context_init(m, 64);
    moe_offload *o = c ? moe_offload_init(m, c, &p) : NULL;
    REQUIRE(c && o);
    moe_offload_attach(o, c);
    int32_t tok = 1;
    CHECK(moe_eval(c, &tok, 1, NULL, 0) == MOE_OK);
    /* append to the file: its size and mtime change */
    FILE *f = fopen(path, "ab");
    REQUIRE(f);
    fputs("x", f);
    fclose(f);
    moe_status st = MOE_OK;
    /* different tokens route to different experts: misses come quickly */
    for (int i = 0; i < 40 && st == MOE_OK; i++) {
        tok = (int32_t)(100 + 97 * i);
        st = moe_eval(c, &tok, 1, NULL, 0);
    }
    CHECK(st != MOE_OK);
    CHECK_STR_CONTAINS(moe_last_error(), "changed");
    moe_context_free(c);
    moe_offload_free(o);
    moe_model_free(m);
}

TEST(profile_predicts_the_most_frequent_successors) {
    moe_profile *p = moe_profile_init(3, 4);
    REQUIRE(p);
    /* at layer 1: after expert 0 comes 2 (3 times) and 3 (once); after 1 comes 1 */
    int32_t a[1] = {0}, b2[1] = {2}, b3[1] = {3}, one[1] = {1};
    for (int i = 0; i < 3; i++) moe_profile_add(p, 1, a, 1, b2, 1);
    moe_profile_add(p, 1, a, 1, b3, 1);
    moe_profile_add(p, 1, one, 1, one, 1);
    int32_t out[4];
    CHECK_EQ_INT(moe_profile_predict(p, 1, a, 1, out, 2), 2);
    CHECK_EQ_INT(out[0], 2);
    CHECK_EQ_INT(out[1], 3);
    /* both 0 and 1 chosen: P(2|0)=.75, P(1|1)=1 → 1 first, then 2 */
    int32_t both[2] = {0, 1};
    CHECK_EQ_INT(moe_profile_predict(p, 1, both, 2, out, 2), 2);
    CHECK_EQ_INT(out[0], 1);
    CHECK_EQ_INT(out[1], 2);
    /* no data for layer 2 */
    CHECK_EQ_INT(moe_profile_predict(p, 2, a, 1, out, 2), 0);
    char path[512];
    snprintf(path, sizeof path, "%s/p.gguf", test_tmpdir());
    REQUIRE(moe_profile_save(p, path) == MOE_OK);
    moe_profile *q = moe_profile_load(path);
    REQUIRE_MSG(q, "%s", moe_last_error());
    CHECK_EQ_INT(moe_profile_n_layers(q), 3);
    CHECK_EQ_INT(moe_profile_predict(q, 1, a, 1, out, 1), 1);
    CHECK_EQ_INT(out[0], 2);
    moe_profile_free(q);
    moe_profile_free(p);
    /* a GGUF that is not a profile */
    CHECK(moe_profile_load(test_fixture("gguf/mixtral-q4_0.gguf")) == NULL);
    CHECK_STR_CONTAINS(moe_last_error(), "profile.counts");
}

TEST(offload_with_profile_prefetch_keeps_logits_identical) {
    moe_model *m = moe_model_load(test_fixture("gguf/mixtral-q4_0.gguf"), NULL);
    if (!m) { test_skip("cannot load mixtral-q4_0: %s", moe_last_error()); return; }
    int64_t nv = moe_model_n_vocab(m);
    float *ref = eval_logits(m, NULL, NULL);
    REQUIRE(ref);
    /* a deliberately wrong profile: always predicts experts 6 and 7 */
    moe_profile *prof = moe_profile_init(2, 8);
    int32_t prev[8] = {0, 1, 2, 3, 4, 5, 6, 7}, next[2] = {6, 7};
    moe_profile_add(prof, 1, prev, 8, next, 2);
    moe_offload_params p = moe_offload_default_params();
    p.budget = min_budget(m) + 3 * (450u << 10);
    p.profile = prof;
    moe_offload_stats st;
    float *got = eval_logits(m, &p, &st);
    REQUIRE_MSG(got, "%s", moe_last_error());
    CHECK(memcmp(got, ref, (size_t)(N_TOK * nv) * sizeof *ref) == 0);
    CHECK(st.predicted > 0);
    CHECK(st.prefetch_precision >= 0 && st.prefetch_precision <= 1);
    free(got);
    free(ref);
    moe_profile_free(prof);
    moe_model_free(m);
}

/* True if the two files hold the same bytes. */
static bool same_file(const char *a, const char *b) {
    char cmd[1100];
    snprintf(cmd, sizeof cmd, "cmp -s %s %s", a, b);
    return system(cmd) == 0;
}

TEST(offload_cli_logits_mem_bit_identical) {
    char a[512], b[512], cmd[2048], *out = NULL;
    snprintf(a, sizeof a, "%s/a.f32", test_tmpdir());
    snprintf(b, sizeof b, "%s/b.f32", test_tmpdir());
    const char *model = test_fixture("gguf/qwen2moe-q8_0.gguf"), *toks = test_fixture("gguf/tokens.txt");
    snprintf(cmd, sizeof cmd, "%s logits -m %s --tokens %s -o %s --mmap", test_moe_bin(), model, toks, a);
    REQUIRE_MSG(test_run(cmd, &out) == 0, "%s", out);
    free(out);
    /* a budget that leaves 9 slots for 16 experts, one token at a time: the cache must
     * evict and read experts again */
    snprintf(cmd, sizeof cmd, "%s logits -m %s --tokens %s -o %s --mem 24M --cache-policy lru --token-by-token",
             test_moe_bin(), model, toks, b);
    int rc = test_run(cmd, &out);
    REQUIRE_MSG(rc == 0, "%s", out);
    long long slots = 0, hits = 0, misses = 0;
    const char *at = out ? strstr(out, "expert cache: ") : NULL;
    REQUIRE_MSG(at, "%s", out);
    CHECK(sscanf(at, "expert cache: %lld slots", &slots) == 1);
    at = strstr(at, "% (");
    REQUIRE(at);
    CHECK(sscanf(at, "%% (%lld hits, %lld misses)", &hits, &misses) == 2);
    CHECK_MSG(slots > 0 && slots < 16 && misses > slots && hits > 0, "slots %lld hits %lld misses %lld", slots, hits, misses);
    free(out);
    CHECK_MSG(same_file(a, b), "logits with --mem differ from the mapped model's");
    /* too small a budget: exit 1 and the number that would work */
    snprintf(cmd, sizeof cmd, "%s logits -m %s --tokens %s -o %s --mem 1M", test_moe_bin(), model, toks, b);
    CHECK_EQ_INT(test_run(cmd, &out), 1);
    CHECK_STR_CONTAINS(out, "need at least");
    free(out);
    /* --no-mmap (and the default, here: the fixture fits in memory) read the model into
     * memory, interleaved: the same logits; with --mem or --mmap, a usage error (exit 2)
     * that says why */
    snprintf(cmd, sizeof cmd, "%s logits -m %s --tokens %s -o %s --no-mmap", test_moe_bin(), model, toks, b);
    REQUIRE_MSG(test_run(cmd, &out) == 0, "%s", out);
    free(out);
    CHECK_MSG(same_file(a, b), "logits with --no-mmap differ from the mapped model's");
    snprintf(cmd, sizeof cmd, "%s logits -m %s --tokens %s -o %s", test_moe_bin(), model, toks, b);
    REQUIRE_MSG(test_run(cmd, &out) == 0, "%s", out);
    free(out);
    CHECK_MSG(same_file(a, b), "logits by default differ from the mapped model's");
    snprintf(cmd, sizeof cmd, "%s logits -m %s --tokens %s -o %s --no-mmap --mmap", test_moe_bin(), model, toks, b);
    CHECK_EQ_INT(test_run(cmd, &out), 2);
    CHECK_STR_CONTAINS(out, "contradict");
    free(out);
    snprintf(cmd, sizeof cmd, "%s logits -m %s --tokens %s -o %s --no-mmap --mem 24M", test_moe_bin(), model, toks, b);
    CHECK_EQ_INT(test_run(cmd, &out), 2);
    CHECK_STR_CONTAINS(out, "cannot be combined with --mem");
    free(out);
}
