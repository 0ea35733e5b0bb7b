/* test_gemm.c — the batch tile kernels (moe_gemm_prepared) and the fused matrix-vector
 * run (moe_matvec_multi): bit-identical to the type's vec_dot for every output (the
 * property that keeps batch and token-by-token logits equal), and close to the scalar
 * reference vec_dot_ref, over shapes that hit the tiles' row remainders (rows in fours),
 * token remainders (tokens in eights) and the thread splits, for every type with a tile.
 * (The eight-row tiles read interleaved weights: test_matmul.c covers them.) */
#include "test.h"

#include "core/gemm.h"
#include "core/threads.h"
#include "core/types.h"
#include "moe.h"

#include <stdatomic.h>
#include <stdlib.h>
#include <string.h>

static uint64_t g_rng = 0x9e3779b97f4a7c15ull;
static float rnd(void) {
    g_rng ^= g_rng << 13; g_rng ^= g_rng >> 7; g_rng ^= g_rng << 17;
    return (float)((double)(g_rng >> 11) / 9007199254740992.0 * 2.0 - 1.0);
}

/* rows × cols weights of `type` (row r scaled by 1 + r % 3), quantized by the reference */
static uint8_t *make_weights(int type, int64_t rows, int64_t cols) {
    const moe_type_traits *t = moe_type_get(type);
    const size_t rb = moe_row_size(type, cols);
    uint8_t *wq = malloc(rb * (size_t)rows);
    float *src = malloc((size_t)cols * sizeof(float));
    if (!wq || !src) { free(wq); free(src); return NULL; }
    for (int64_t r = 0; r < rows; r++) {
        for (int64_t k = 0; k < cols; k++) src[k] = rnd() * (1.0f + (float)(r % 3));
        t->from_float_ref(src, wq + (size_t)r * rb, cols);
    }
    free(src);
    return wq;
}

static const int g_types[] = {MOE_TYPE_Q8_0, MOE_TYPE_Q4_0, MOE_TYPE_IQ4_NL, MOE_TYPE_Q2_K, MOE_TYPE_Q3_K,
                              MOE_TYPE_Q4_K, MOE_TYPE_Q5_K, MOE_TYPE_Q6_K, MOE_TYPE_IQ4_XS};

TEST(gemm_tiles_bit_identical_to_vec_dot_and_near_reference) {
    const struct { int64_t rows, cols, n; } shapes[] = {
        {4, 256, 4}, {1, 256, 2}, {7, 512, 5}, {45, 512, 1}, {17, 256, 9}, {33, 768, 13}, {64, 256, 3}, {21, 1024, 32},
        {12, 256, 7}, {8, 512, 14}, /* Q4_0 passes of up to 8 tokens: every remainder */
    };
    const int threads[] = {1, 2, 3};
    for (size_t ty = 0; ty < MOE_ARRAY_LEN(g_types); ty++) {
        const int type = g_types[ty];
        const moe_type_traits *t = moe_type_get(type);
        if (!moe_gemm_tile_for(type)) {
            fprintf(stderr, "    %-5s no tile kernel on this build (no AVX2): skipped\n", t->name);
            continue;
        }
        double worst = 0;
        int cases = 0;
        for (size_t ti = 0; ti < MOE_ARRAY_LEN(threads); ti++) {
            moe_pool *pool = moe_pool_create(threads[ti]);
            REQUIRE(pool);
            for (size_t si = 0; si < MOE_ARRAY_LEN(shapes); si++) {
                const int64_t rows = shapes[si].rows, cols = shapes[si].cols, n = shapes[si].n;
                const int64_t ldy = rows + 2;
                const size_t xb = moe_act_row_size(type, cols);
                uint8_t *wq = make_weights(type, rows, cols);
                float *x = malloc((size_t)(cols * n) * sizeof(float)), *y = malloc((size_t)(ldy * n) * sizeof(float));
                void *xq = malloc(xb * (size_t)n);
                REQUIRE(wq && x && y && xq);
                for (int64_t k = 0; k < cols * n; k++) x[k] = rnd();
                moe_act_prepare(pool, type, x, xq, n, cols);
                for (int64_t k = 0; k < ldy * n; k++) y[k] = NAN;
                moe_mat W = moe_mat_make(wq, type, rows, cols);
                moe_gemm_prepared(pool, y, ldy, &W, xq, n);
                float *wf = malloc((size_t)cols * sizeof(float)), *xf = malloc((size_t)cols * sizeof(float));
                REQUIRE(wf && xf);
                for (int64_t tok = 0; tok < n; tok++) {
                    const uint8_t *xt = (const uint8_t *)xq + (size_t)tok * xb;
                    moe_type_get(t->vec_dot_type)->to_float(xt, xf, cols);
                    for (int64_t r = 0; r < rows; r++) {
                        float fast, ref;
                        t->vec_dot(cols, &fast, wq + (size_t)r * W.row_bytes, xt);
                        t->vec_dot_ref(cols, &ref, wq + (size_t)r * W.row_bytes, xt);
                        t->to_float(wq + (size_t)r * W.row_bytes, wf, cols);
                        double mag = 1e-30; /* Σ|w·x|: the scale of a float accumulation's error */
                        for (int64_t k = 0; k < cols; k++) mag += fabs((double)wf[k] * xf[k]);
                        const float got = y[tok * ldy + r];
                        CHECK_MSG(memcmp(&got, &fast, sizeof got) == 0, "%s %lldx%lld n=%lld t=%d: y[%lld,%lld] = %.9g, vec_dot %.9g",
                                  t->name, (long long)rows, (long long)cols, (long long)n, threads[ti], (long long)tok,
                                  (long long)r, got, fast);
                        const double err = fabs((double)got - ref) / mag;
                        worst = fmax(worst, err);
                        CHECK_MSG(err < 2e-6, "%s: y[%lld,%lld] = %.9g, reference %.9g", t->name, (long long)tok,
                                  (long long)r, got, ref);
                    }
                    for (int64_t k = rows; k < ldy; k++) CHECK(isnan(y[tok * ldy + k])); /* gaps untouched */
                }
                cases++;
                free(wf); free(xf);
                free(wq); free(x); free(y); free(xq);
            }
            moe_pool_free(pool);
        }
        fprintf(stderr, "    %-5s %d cases bit-identical to vec_dot, worst relative error vs reference %.2e\n", t->name,
                cases, worst);
    }
}

TEST(matvec_multi_equals_matmul_per_segment) {
    /* segments of different types and sizes (a tiny one, remainders of 4, a large one: 0.9
     * MB in all, ~28 of the 32 KB chunks that threads claim and steal) */
    const struct { int type; int64_t rows, cols; } segs[] = {
        {MOE_TYPE_Q8_0, 37, 256}, {MOE_TYPE_Q4_0, 3, 512}, {MOE_TYPE_Q4_K, 130, 512}, {MOE_TYPE_F32, 9, 64},
        {MOE_TYPE_Q8_0, 800, 1024},
    };
    enum { NS = MOE_ARRAY_LEN(segs) };
    uint8_t *wq[NS];
    void *xq[NS];
    float *y[NS];
    moe_mat W[NS];
    moe_mv_seg sg[NS];
    for (int s = 0; s < NS; s++) {
        const int64_t cols = segs[s].cols;
        float *x = malloc((size_t)cols * sizeof(float));
        REQUIRE(x);
        for (int64_t k = 0; k < cols; k++) x[k] = rnd();
        if (segs[s].type == MOE_TYPE_F32) {
            wq[s] = malloc((size_t)(segs[s].rows * cols) * sizeof(float));
            REQUIRE(wq[s]);
            for (int64_t k = 0; k < segs[s].rows * cols; k++) ((float *)wq[s])[k] = rnd();
        } else {
            wq[s] = make_weights(segs[s].type, segs[s].rows, cols);
        }
        xq[s] = malloc(moe_act_row_size(segs[s].type, cols));
        y[s] = malloc((size_t)segs[s].rows * sizeof(float));
        REQUIRE(wq[s] && xq[s] && y[s]);
        moe_act_prepare(NULL, segs[s].type, x, xq[s], 1, cols);
        free(x);
        W[s] = moe_mat_make(wq[s], segs[s].type, segs[s].rows, cols);
        sg[s] = (moe_mv_seg){&W[s], xq[s], y[s]};
    }
    float *want[NS];
    for (int s = 0; s < NS; s++) { /* the kernels over all the rows in one call, on one thread */
        want[s] = malloc((size_t)segs[s].rows * sizeof(float));
        REQUIRE(want[s]);
        moe_mat_dot_rows(&W[s], 0, segs[s].rows, xq[s], want[s]);
        for (int64_t r = 0; r < segs[s].rows; r++) { /* and near the scalar reference */
            float ref;
            moe_type_get(segs[s].type)->vec_dot_ref(segs[s].cols, &ref, wq[s] + (size_t)r * W[s].row_bytes, xq[s]);
            CHECK_NEAR(want[s][r], ref, 1e-4 * (1.0 + fabs(ref)));
        }
    }
    const int threads[] = {1, 2, 3, 5};
    for (size_t ti = 0; ti < MOE_ARRAY_LEN(threads); ti++) {
        moe_pool *pool = moe_pool_create(threads[ti]);
        REQUIRE(pool);
        for (int first = 0; first < 2; first++) { /* all segments, then only the tiny ones */
            const int ns = first ? 2 : NS;
            for (int s = 0; s < NS; s++)
                for (int64_t r = 0; r < segs[s].rows; r++) y[s][r] = NAN;
            moe_matvec_multi(pool, sg, ns);
            for (int s = 0; s < NS; s++) {
                const moe_type_traits *t = moe_type_get(segs[s].type);
                for (int64_t r = 0; r < segs[s].rows; r++) {
                    if (s >= ns) { CHECK(isnan(y[s][r])); continue; }
                    CHECK_MSG(memcmp(&want[s][r], &y[s][r], sizeof(float)) == 0, "threads %d seg %d (%s) row %lld: %.9g != %.9g",
                              threads[ti], s, t->name, (long long)r, y[s][r], want[s][r]);
                }
            }
        }
        moe_pool_free(pool);
    }
    for (int s = 0; s < NS; s++) { free(wq[s]); free(xq[s]); free(y[s]); free(want[s]); }
}

/* The pool's claims (moe_pool_run_n): every index of every run runs exactly once, also
 * with more indices than threads, more threads than cores, and tasks of uneven length
 * (which make late workers arrive after a run has moved on). */
typedef struct {
    _Atomic int hits[64];
    int n;
} claim_job;

static void claim_task(void *arg, int i, int n) {
    claim_job *j = arg;
    if (n != j->n || i < 0 || i >= n) { atomic_fetch_add(&j->hits[63], 1000); return; }
    if (i % 7 == 3) { volatile double s = 0; for (int k = 0; k < 2000; k++) s += k; (void)s; }
    atomic_fetch_add(&j->hits[i], 1);
}

TEST(pool_run_n_claims_each_index_once) {
    const int threads[] = {2, 3, 5};
    for (size_t ti = 0; ti < MOE_ARRAY_LEN(threads); ti++) {
        moe_pool *pool = moe_pool_create(threads[ti]);
        REQUIRE(pool);
        int bad = 0;
        for (int run = 0; run < 3000 && !bad; run++) {
            claim_job j;
            j.n = 1 + run % 40;
            for (int k = 0; k < 64; k++) atomic_store(&j.hits[k], 0);
            if (run % 2) moe_pool_run_n(pool, claim_task, &j, j.n);
            else { j.n = threads[ti]; moe_pool_run(pool, claim_task, &j); }
            for (int k = 0; k < 64; k++)
                if (atomic_load(&j.hits[k]) != (k < j.n ? 1 : 0)) bad = 1;
        }
        CHECK_MSG(!bad, "pool of %d threads: an index ran twice, never, or with the wrong count", threads[ti]);
        moe_pool_free(pool);
    }
}

/* moe_pool_run_parts: every item exactly once, each call a non-empty span of at most
 * `span` items. On one thread the order is fixed, which pins down both ways of claiming:
 * task 0 streams part 0 from its front, then takes the other parts' items one by one
 * from their backs (a thread that finished early doing the work of a slow one). */
typedef struct {
    _Atomic int hits[300];
    int64_t n, span;
    _Atomic int bad;
    int64_t calls[300][2]; /* serial runs only: the spans in call order */
    int ncalls;
    bool record;
} parts_rec;

static void parts_fn(void *arg, int64_t i0, int64_t i1) {
    parts_rec *r = arg;
    if (i0 < 0 || i1 > r->n || i1 <= i0 || i1 - i0 > r->span) { atomic_fetch_add(&r->bad, 1); return; }
    if (r->record && r->ncalls < 300) { r->calls[r->ncalls][0] = i0; r->calls[r->ncalls][1] = i1; r->ncalls++; }
    if (i0 % 5 == 2) { volatile double s = 0; for (int k = 0; k < 3000; k++) s += k; (void)s; } /* uneven items */
    for (int64_t i = i0; i < i1; i++) atomic_fetch_add(&r->hits[i], 1);
}

static bool parts_once(parts_rec *r) {
    for (int64_t i = 0; i < 300; i++)
        if (atomic_load(&r->hits[i]) != (i < r->n ? 1 : 0)) return false;
    return atomic_load(&r->bad) == 0;
}

static void parts_reset(parts_rec *r, int64_t n, int64_t span, bool record) {
    for (int i = 0; i < 300; i++) atomic_store(&r->hits[i], 0);
    atomic_store(&r->bad, 0);
    r->n = n, r->span = span, r->ncalls = 0, r->record = record;
}

TEST(pool_run_parts_streams_each_item_once) {
    parts_rec *r = calloc(1, sizeof *r);
    REQUIRE(r);
    /* serial: 50 items in 3 parts [0,17) [17,34) [34,50), spans of at most 4 */
    parts_reset(r, 50, 4, true);
    moe_pool_run_parts(NULL, parts_fn, r, 50, 3, 4);
    CHECK(parts_once(r));
    int k = 0;
    for (int64_t next = 0; k < r->ncalls && next < 17; k++) { /* part 0: consecutive spans from 0 */
        CHECK_MSG(r->calls[k][0] == next, "call %d starts at %lld, want %lld", k, (long long)r->calls[k][0], (long long)next);
        next = r->calls[k][1];
    }
    CHECK(k >= 5); /* 17 items in spans of ≤ 4 */
    for (int64_t want = 33; k < r->ncalls; k++, want--) { /* then parts 1 and 2, one item at a time from the back */
        if (want == 16) want = 49;
        CHECK_MSG(r->calls[k][0] == want && r->calls[k][1] == want + 1, "call %d: [%lld, %lld), want item %lld", k,
                  (long long)r->calls[k][0], (long long)r->calls[k][1], (long long)want);
    }
    /* more parts than items, and no items */
    parts_reset(r, 3, 2, false);
    moe_pool_run_parts(NULL, parts_fn, r, 3, 8, 2);
    CHECK(parts_once(r));
    parts_reset(r, 0, 2, false);
    moe_pool_run_parts(NULL, parts_fn, r, 0, 2, 2);
    CHECK(parts_once(r));
    /* threads: parts of uneven speed, so that threads take from each other's backs */
    const int threads[] = {2, 3, 5};
    for (size_t ti = 0; ti < MOE_ARRAY_LEN(threads); ti++) {
        moe_pool *pool = moe_pool_create(threads[ti]);
        REQUIRE(pool);
        bool ok = true;
        for (int run = 0; run < 2000 && ok; run++) {
            const int64_t n = 1 + (run * 37) % 300, span = 1 + run % 6;
            parts_reset(r, n, span, false);
            moe_pool_run_parts(pool, parts_fn, r, n, 1 + run % 7, span);
            ok = parts_once(r);
        }
        CHECK_MSG(ok, "pool of %d threads: an item ran twice or never, or a span was out of bounds", threads[ti]);
        moe_pool_free(pool);
    }
    free(r);
}

/* Logits of the fixture gguf/NAME.gguf for n fixed tokens, [n × *V] (malloc'd; NULL after
 * a failed check), evaluated as one batch or one token at a time, on `threads` threads
 * with a KV cache of type kv. */
static float *fixture_logits(const char *name, int threads, moe_kv_type kv, int n, bool batch, int64_t *V) {
    char rel[128];
    snprintf(rel, sizeof rel, "gguf/%s.gguf", name);
    moe_model_params mp = moe_model_default_params();
    mp.n_threads = threads;
    mp.kv_type = kv;
    moe_model *m = moe_model_load(test_fixture(rel), &mp);
    CHECK_MSG(m, "%s", moe_last_error());
    if (!m) return NULL;
    *V = moe_model_n_vocab(m);
    int32_t *tokens = malloc((size_t)n * sizeof *tokens);
    float *out = malloc((size_t)n * (size_t)*V * sizeof *out);
    moe_context *c = moe_context_init(m, n);
    bool ok = tokens && out && c;
    for (int i = 0; ok && i < n; i++) tokens[i] = (int32_t)((i * 7919 + 13) % *V);
    if (ok && batch) ok = moe_eval(c, tokens, n, out, 0) == MOE_OK;
    for (int i = 0; ok && !batch && i < n; i++) ok = moe_eval(c, tokens + i, 1, out + (int64_t)i * *V, 0) == MOE_OK;
    CHECK_MSG(ok, "%s: %s", name, moe_last_error());
    free(tokens);
    moe_context_free(c);
    moe_model_free(m);
    if (!ok) {
        free(out);
        return NULL;
    }
    return out;
}

/* How many of n floats differ in their bits. */
static int64_t bits_differ(const float *a, const float *b, int64_t n) {
    int64_t diff = 0;
    for (int64_t k = 0; k < n; k++) diff += memcmp(&a[k], &b[k], sizeof(float)) != 0;
    return diff;
}

/* The forward pass on quantized llama.cpp files: a batch (tile kernels) and one token at
 * a time (the fused decode runs) give bit-identical logits, with 2 threads, with a KV
 * cache of either type. */
static void batch_equals_tokens(const char *name, moe_kv_type kv) {
    enum { N = 40 };
    int64_t V = 0;
    float *a = fixture_logits(name, 2, kv, N, true, &V), *b = fixture_logits(name, 2, kv, N, false, &V);
    if (a && b) {
        const int64_t diff = bits_differ(a, b, (int64_t)N * V);
        CHECK_MSG(diff == 0, "%s: %lld of %lld logits differ between batch and token-by-token", name, (long long)diff,
                  (long long)N * V);
    }
    free(a);
    free(b);
}

TEST(gemm_forward_batch_bit_identical_q8_0) { batch_equals_tokens("mixtral-q8_0", MOE_KV_F32); }
TEST(gemm_forward_batch_bit_identical_q8_0_kv_f16) { batch_equals_tokens("mixtral-q8_0", MOE_KV_F16); }
TEST(gemm_forward_batch_bit_identical_q4_0) { batch_equals_tokens("mixtral-q4_0", MOE_KV_F32); }
TEST(gemm_forward_batch_bit_identical_q4_k_s) { batch_equals_tokens("mixtral-q4_k_s", MOE_KV_F32); }

/* Attention takes the query heads of a KV head together, or splits them between tasks
 * when there are more threads than (token, KV head) pairs (forward.c,
 * attn_heads_per_task): each head's arithmetic is the same either way, so decoding with 1
 * thread and with 6 (mixtral fixture: 4 KV heads of 2 query heads) gives the same bits,
 * with a KV cache of either type. */
static void attention_threads(moe_kv_type kv) {
    enum { N = 24 };
    int64_t V = 0;
    float *a = fixture_logits("mixtral-q8_0", 1, kv, N, false, &V), *b = fixture_logits("mixtral-q8_0", 6, kv, N, false, &V);
    if (a && b) {
        const int64_t diff = bits_differ(a, b, (int64_t)N * V);
        CHECK_MSG(diff == 0, "KV %s: %lld of %lld logits differ between 1 and 6 threads", moe_kv_type_name(kv),
                  (long long)diff, (long long)N * V);
    }
    free(a);
    free(b);
}
TEST(attention_head_runs_bit_identical_across_threads) { attention_threads(MOE_KV_F32); }
TEST(attention_head_runs_bit_identical_across_threads_kv_f16) { attention_threads(MOE_KV_F16); }
