/* test_cachesim.c — expert cache policies and the trace simulator: Belady on hand-made
 * traces, Belady against an exhaustive search, no policy beating Belady, trace errors. */
#include "test.h"
#include "moe.h"
#include "offload/xcache.h"

#include <stdlib.h>
#include <string.h>

/* Writes a trace with one line per (layer, experts) group: spec like "0:1,2;1:0" */
static const char *write_trace(const char *name, const char *spec) {
    static char path[512];
    snprintf(path, sizeof path, "%s/%s", test_tmpdir(), name);
    FILE *f = fopen(path, "w");
    if (!f) return NULL;
    int pos = 0;
    const char *p = spec;
    while (*p) {
        int layer = (int)strtol(p, (char **)&p, 10);
        p++; /* ':' */
        fprintf(f, "{\"pos\":%d,\"token\":0,\"layer\":%d,\"experts\":[", pos++, layer);
        bool first = true;
        while (*p && *p != ';') {
            int e = (int)strtol(p, (char **)&p, 10);
            fprintf(f, "%s%d", first ? "" : ",", e);
            first = false;
            if (*p == ',') p++;
        }
        fprintf(f, "],\"weights\":[]}\n");
        if (*p == ';') p++;
    }
    fclose(f);
    return path;
}

static moe_cachesim_result sim(const moe_trace *t, moe_cache_policy p, int64_t slots, bool per_layer) {
    moe_cachesim_result r;
    moe_status st = moe_cachesim(t, p, slots, per_layer, &r);
    if (st) test_fail(__FILE__, __LINE__, "cachesim: %s", moe_last_error());
    return r;
}

TEST(cachesim_belady_hand_trace) {
    /* slots 2, accesses a b c a b: Belady evicts b at c (b's next use is later) → 1 hit;
     * LRU and FIFO evict a at c and then miss everything → 0 hits. */
    moe_trace *t = moe_trace_load(write_trace("t1.jsonl", "0:0;0:1;0:2;0:0;0:1"));
    REQUIRE_MSG(t, "%s", moe_last_error());
    CHECK_EQ_INT(moe_trace_n_accesses(t), 5);
    CHECK_EQ_INT(sim(t, MOE_CACHE_BELADY, 2, false).hits, 1);
    CHECK_EQ_INT(sim(t, MOE_CACHE_LRU, 2, false).hits, 0);
    CHECK_EQ_INT(sim(t, MOE_CACHE_FIFO, 2, false).hits, 0);
    moe_trace_free(t);
}

TEST(cachesim_lru_lfu_fifo_differ_as_defined) {
    /* slots 2: a a b a c b. LRU at c evicts b (a used at 3) → b misses: hits a,a = 2.
     * LFU at c evicts b (count 1 vs a 3) → same 2 hits. FIFO at c evicts a (inserted
     * first) → b hits: hits = a(1), a(3), b(5) = 3. */
    moe_trace *t = moe_trace_load(write_trace("t2.jsonl", "0:0;0:0;0:1;0:0;0:2;0:1"));
    REQUIRE(t);
    CHECK_EQ_INT(sim(t, MOE_CACHE_LRU, 2, false).hits, 2);
    CHECK_EQ_INT(sim(t, MOE_CACHE_LFU, 2, false).hits, 2);
    CHECK_EQ_INT(sim(t, MOE_CACHE_FIFO, 2, false).hits, 3);
    CHECK_EQ_INT(sim(t, MOE_CACHE_BELADY, 2, false).hits, 3);
    moe_trace_free(t);
}

/* Exhaustive optimum: tries every eviction choice on every miss (tiny traces only). */
static int best_hits(const int *seq, int n, int i, int *cache, int slots) {
    if (i == n) return 0;
    for (int s = 0; s < slots; s++)
        if (cache[s] == seq[i]) return 1 + best_hits(seq, n, i + 1, cache, slots);
    int best = -1;
    for (int s = 0; s < slots; s++) {
        int old = cache[s];
        cache[s] = seq[i];
        int h = best_hits(seq, n, i + 1, cache, slots);
        cache[s] = old;
        if (h > best) best = h;
        if (old == -1) break; /* filling a free slot is never worse than evicting */
    }
    return best;
}

TEST(cachesim_belady_is_optimal_and_unbeaten) {
    uint32_t rng = 7;
    for (int trial = 0; trial < 60; trial++) {
        int n = 10 + trial % 5, keys = 3 + trial % 3, slots = 2 + trial % 2;
        int seq[16];
        char spec[256] = "";
        for (int i = 0; i < n; i++) {
            rng = rng * 1103515245u + 12345u;
            seq[i] = (int)((rng >> 16) % (uint32_t)keys);
            char item[16];
            snprintf(item, sizeof item, "%s0:%d", i ? ";" : "", seq[i]);
            strcat(spec, item);
        }
        moe_trace *t = moe_trace_load(write_trace("r.jsonl", spec));
        REQUIRE(t);
        int cache[4] = {-1, -1, -1, -1};
        int opt = best_hits(seq, n, 0, cache, slots);
        int64_t bel = sim(t, MOE_CACHE_BELADY, slots, false).hits;
        CHECK_MSG(bel == opt, "trial %d: Belady %lld hits, exhaustive optimum %d (%s)", trial, (long long)bel, opt, spec);
        for (int p = 0; p < MOE_CACHE_POLICY_COUNT; p++)
            CHECK(sim(t, (moe_cache_policy)p, slots, false).hits <= bel);
        moe_trace_free(t);
    }
}

TEST(cachesim_oracle_lfu_knows_the_whole_trace) {
    /* A is used 3 times, then never; B and C 4 times each, alternating. LFU (counts so
     * far) keeps A until B's and C's counts catch up with it, missing B/C four more times:
     * 2 + 2 hits. The oracle knows A's total is the smallest, evicts it at C's first miss
     * and then hits every B and C: 2 + 6 = 8, Belady's too. */
    const char *spec = "0:0;0:0;0:0;0:1;0:2;0:1;0:2;0:1;0:2;0:1;0:2";
    moe_trace *t = moe_trace_load(write_trace("o.jsonl", spec));
    REQUIRE(t);
    CHECK_EQ_INT(sim(t, MOE_CACHE_LFU, 2, false).hits, 4);
    CHECK_EQ_INT(sim(t, MOE_CACHE_ORACLE_LFU, 2, false).hits, 8);
    CHECK_EQ_INT(sim(t, MOE_CACHE_BELADY, 2, false).hits, 8);
    CHECK(strcmp(moe_cache_policy_name(MOE_CACHE_ORACLE_LFU), "oracle-lfu") == 0);
    CHECK_EQ_INT(moe_cache_policy_from_name("oracle-lfu"), MOE_CACHE_ORACLE_LFU);
    moe_trace_free(t);
}

TEST(cachesim_per_layer_split_skips_layers_without_experts) {
    /* layers 1 and 3 route, 0 and 2 are dense (upcycle --every 2): per layer, 4 slots are
     * 2 for each routed layer, enough to keep both pairs after their first use */
    const char *spec = "1:0,1;3:2,3;1:0,1;3:2,3;1:1,0;3:3,2";
    moe_trace *t = moe_trace_load(write_trace("d.jsonl", spec));
    REQUIRE(t);
    moe_cachesim_result r = sim(t, MOE_CACHE_LRU, 4, true);
    CHECK_EQ_INT(r.accesses, 12);
    CHECK_EQ_INT(r.misses, 4);
    CHECK_EQ_INT(r.hits, 8);
    moe_trace_free(t);
}

TEST(cachesim_multi_layer_groups_and_per_layer_split) {
    /* 2 layers, top-2, 4 experts; a cyclic pattern. Per-layer with 4 slots = 2 per layer. */
    const char *spec = "0:0,1;1:2,3;0:0,2;1:2,1;0:0,1;1:2,3;0:3,1;1:0,3";
    moe_trace *t = moe_trace_load(write_trace("t3.jsonl", spec));
    REQUIRE(t);
    CHECK_EQ_INT(moe_trace_n_layers(t), 2);
    CHECK_EQ_INT(moe_trace_n_experts(t), 4);
    CHECK_EQ_INT(moe_trace_max_group(t), 2);
    moe_cachesim_result b = sim(t, MOE_CACHE_BELADY, 4, false);
    CHECK_EQ_INT(b.accesses, 16);
    CHECK_EQ_INT(b.hits + b.misses, 16);
    for (int p = 0; p < MOE_CACHE_POLICY_COUNT; p++) {
        CHECK(sim(t, (moe_cache_policy)p, 4, false).hits <= b.hits);
        CHECK(sim(t, (moe_cache_policy)p, 4, true).hits <= sim(t, MOE_CACHE_BELADY, 4, true).hits);
    }
    /* a cache holding everything misses only the first use of each key (4 + 4 distinct) */
    CHECK_EQ_INT(sim(t, MOE_CACHE_LRU, 8, false).misses, 8);
    /* too small: one line needs 2 slots; per layer needs 2 per layer */
    moe_cachesim_result r;
    CHECK(moe_cachesim(t, MOE_CACHE_LRU, 1, false, &r) != MOE_OK);
    CHECK_STR_CONTAINS(moe_last_error(), "at least 2");
    CHECK(moe_cachesim(t, MOE_CACHE_LRU, 3, true, &r) != MOE_OK);
    moe_trace_free(t);
}

TEST(cachesim_trace_errors_name_file_and_line) {
    const char *path = write_trace("ok.jsonl", "0:1");
    FILE *f = fopen(path, "a");
    REQUIRE(f);
    fputs("{\"layer\":1,\"experts\":[1,\"x\"]}\n", f);
    fclose(f);
    CHECK(moe_trace_load(path) == NULL);
    CHECK_STR_CONTAINS(moe_last_error(), "ok.jsonl: line 2");
    f = fopen(path, "w");
    fputs("{\"pos\":3}\n", f);
    fclose(f);
    CHECK(moe_trace_load(path) == NULL);
    CHECK_STR_CONTAINS(moe_last_error(), "\"layer\" and \"experts\"");
    CHECK(moe_trace_load("/nonexistent/t.jsonl") == NULL);
    CHECK_STR_CONTAINS(moe_last_error(), "/nonexistent/t.jsonl");
}

TEST(cachesim_cli_json_and_errors) {
    const char *path = write_trace("c.jsonl", "0:0,1;1:2,3;0:0,2;1:2,1;0:0,1;1:2,3");
    char cmd[1024], *out = NULL;
    snprintf(cmd, sizeof cmd, "%s cachesim --trace %s --slots 4 --json | /usr/bin/python3 -c "
             "'import json,sys; d=json.load(sys.stdin); p=d[\"policies\"]; "
             "assert all(v[\"hit_rate\"] <= p[\"belady\"][\"hit_rate\"] + 1e-12 for v in p.values()); print(len(p))'",
             test_moe_bin(), path);
    int rc = test_run(cmd, &out);
    CHECK_MSG(rc == 0, "rc %d: %s", rc, out);
    CHECK_STR_CONTAINS(out, "6"); /* 4 online policies, Belady, oracle-lfu */
    free(out);
    snprintf(cmd, sizeof cmd, "%s cachesim --trace %s --slots 1", test_moe_bin(), path);
    rc = test_run(cmd, &out);
    CHECK_EQ_INT(rc, 1);
    CHECK_STR_CONTAINS(out, "at least 2");
    free(out);
    snprintf(cmd, sizeof cmd, "%s cachesim --trace %s --slots 4 --policy nope", test_moe_bin(), path);
    rc = test_run(cmd, &out);
    CHECK_EQ_INT(rc, 2);
    free(out);
    /* --mem sizes the slots as a run would, with the run's KV type: with an F16 cache the
     * same budget leaves more slots (4,096 positions: 4 MiB more on this fixture) */
    int64_t slots[2] = {0, 0};
    for (int k = 0; k < 2; k++) {
        snprintf(cmd, sizeof cmd, "%s cachesim --trace %s --mem 64M -m %s -c 4096 --kv-type %s --json | /usr/bin/python3 -c "
                 "'import json,sys; print(\"slots=%%d\" %% json.load(sys.stdin)[\"slots\"])'",
                 test_moe_bin(), path, test_fixture("gguf/mixtral-q8_0.gguf"), k ? "f16" : "f32");
        rc = test_run(cmd, &out);
        CHECK_MSG(rc == 0, "rc %d: %s", rc, out);
        const char *e = out ? strstr(out, "slots=") : NULL;
        if (e) slots[k] = atoll(e + 6);
        free(out);
    }
    CHECK(slots[0] > 0);
    CHECK_MSG(slots[1] - slots[0] >= 9 && slots[1] - slots[0] <= 11, "slots f32 %lld, f16 %lld", (long long)slots[0],
              (long long)slots[1]);
    snprintf(cmd, sizeof cmd, "%s cachesim --trace %s --mem 64M -m %s --kv-type q8_0", test_moe_bin(), path,
             test_fixture("gguf/mixtral-q8_0.gguf"));
    rc = test_run(cmd, &out);
    CHECK_EQ_INT(rc, 2);
    CHECK_STR_CONTAINS(out, "'q8_0' is not one of f32, f16");
    free(out);
}

TEST(offload_plan_on_fixture) {
    moe_gguf *g = moe_gguf_open(test_fixture("gguf/mixtral-q8_0.gguf"));
    REQUIRE(g);
    moe_offload_plan p;
    /* generous budget: everything fits */
    CHECK(moe_offload_plan_compute(g, 1ull << 30, 512, MOE_KV_F32, &p) == MOE_OK);
    CHECK_EQ_INT(p.n_moe_layers, 2);
    CHECK_EQ_INT(p.n_experts, 8);
    CHECK_EQ_INT(p.n_experts_used, 2);
    /* one expert = gate+up (512 x 256) + down (256 x 512) in q8_0: 3 * 131072 / 32 * 34 */
    CHECK_EQ_INT(p.slot_bytes, 3 * 131072 / 32 * 34);
    CHECK_EQ_INT(p.expert_bytes, 2 * 8 * p.slot_bytes);
    CHECK(p.resident_bytes + p.expert_bytes <= p.file_bytes);
    /* KV: 2 layers x 512 ctx x 4 kv heads x (32 + 32) x 4 bytes */
    CHECK_EQ_INT(p.kv_bytes, 2 * 512 * 4 * 64 * 4);
    CHECK(p.n_slots > 16);
    /* too small: the message says how much is needed */
    CHECK(moe_offload_plan_compute(g, 1 << 20, 512, MOE_KV_F32, &p) == MOE_ERR_NOMEM);
    CHECK_STR_CONTAINS(moe_last_error(), "need at least");
    /* an F16 cache takes half the bytes, and the budget those leave goes to slots: at
     * 4,096 positions the F32 cache is 8 MiB, so a budget 1 MiB short of the F32 plan's
     * minimum runs with F16 */
    moe_offload_plan p32, p16;
    CHECK(moe_offload_plan_compute(g, 1ull << 30, 4096, MOE_KV_F32, &p32) == MOE_OK);
    CHECK(moe_offload_plan_compute(g, 1ull << 30, 4096, MOE_KV_F16, &p16) == MOE_OK);
    CHECK_EQ_INT(p16.kv_bytes * 2, p32.kv_bytes);
    /* the 4 MiB saved hold ten more 408 KiB slots */
    CHECK(p16.n_slots - p32.n_slots >= 9 && p16.n_slots - p32.n_slots <= 11);
    CHECK(moe_offload_plan_compute(g, p32.min_budget - (1 << 20), 4096, MOE_KV_F32, &p) == MOE_ERR_NOMEM);
    CHECK(moe_offload_plan_compute(g, p32.min_budget - (1 << 20), 4096, MOE_KV_F16, &p) == MOE_OK);
    CHECK(moe_offload_plan_compute(g, 1ull << 30, 512, (moe_kv_type)7, &p) == MOE_ERR_INVALID);
    CHECK_STR_CONTAINS(moe_last_error(), "KV type 7");
    moe_gguf_close(g);
}

/* The expert cache's bookkeeping as the offloading provider uses it: find has no side
 * effects, uses are counted only by moe_xcache_use, and a protected slot (a prefetch
 * whose layer has not run) is the victim only when every candidate is protected. */
TEST(xcache_find_use_and_protect) {
    moe_xcache *c = moe_xcache_init(MOE_CACHE_LFU, 2, false, 1, 4, NULL);
    REQUIRE(c);
    moe_xcache_begin_layer(c, 0);
    int64_t s0 = moe_xcache_insert(c, 0, 0, NULL), s1 = moe_xcache_insert(c, 0, 1, NULL);
    CHECK(s0 >= 0 && s1 >= 0 && s0 != s1);
    for (int i = 0; i < 5; i++) CHECK_EQ_INT(moe_xcache_find(c, 0, 0), s0); /* no uses recorded */
    moe_xcache_use(c, 0, 1);
    /* LFU: expert 0 has no use, 1 has one: 0 goes first */
    CHECK_EQ_INT(moe_xcache_insert(c, 0, 2, NULL), s0);
    CHECK_EQ_INT(moe_xcache_find(c, 0, 0), -1);
    /* protect expert 2 (no use, the natural victim) until layer 0 begins: expert 1 goes */
    moe_xcache_protect(c, s0, 0);
    CHECK_EQ_INT(moe_xcache_insert(c, 0, 3, NULL), s1);
    CHECK_EQ_INT(moe_xcache_find(c, 0, 2), s0);
    /* every candidate protected: the policy decides among them */
    moe_xcache_protect(c, s1, 0);
    const int64_t v = moe_xcache_insert(c, 0, 1, NULL);
    CHECK(v == s0 || v == s1);
    moe_xcache_free(c);
    /* the protection lasts until its layer begins */
    c = moe_xcache_init(MOE_CACHE_LFU, 2, false, 2, 4, NULL);
    REQUIRE(c);
    const int64_t a = moe_xcache_insert(c, 0, 0, NULL), b = moe_xcache_insert(c, 0, 1, NULL);
    moe_xcache_use(c, 0, 1);
    moe_xcache_protect(c, a, 1); /* expert 0 (no use): protected until layer 1 */
    moe_xcache_begin_layer(c, 0);
    CHECK_EQ_INT(moe_xcache_insert(c, 0, 2, NULL), b);
    moe_xcache_use(c, 0, 2);
    moe_xcache_begin_layer(c, 1);
    CHECK_EQ_INT(moe_xcache_insert(c, 0, 3, NULL), a);
    moe_xcache_free(c);
}
