/* test_core.c — errors, arena, thread pool, F16/BF16 conversion. */
#include "test.h"
#include "core/arena.h"
#include "core/f16.h"
#include "core/threads.h"
#include "core/types.h"

#include <stdatomic.h>
#include <stdio.h>
#include <stdlib.h>

TEST(error_message_and_status) {
    moe_clear_error();
    CHECK(moe_last_error()[0] == 0);
    moe_status st = moe_error(MOE_ERR_FORMAT, "%s: key '%s': bad", "f.gguf", "k");
    CHECK_EQ_INT(st, MOE_ERR_FORMAT);
    CHECK(strcmp(moe_last_error(), "f.gguf: key 'k': bad") == 0);
    CHECK_EQ_INT(moe_last_status(), MOE_ERR_FORMAT);
    CHECK(strcmp(moe_status_str(MOE_ERR_IO), "i/o error") == 0);
}

TEST(arena_alignment_and_big_blocks) {
    moe_arena a;
    moe_arena_init(&a, 128);
    for (int i = 0; i < 100; i++) {
        size_t al = (size_t)1 << (i % 7);
        unsigned char *p = moe_arena_alloc(&a, (size_t)(i * 7 + 1), al);
        REQUIRE(p);
        CHECK(((uintptr_t)p & (al - 1)) == 0);
        memset(p, 0xab, (size_t)(i * 7 + 1));
    }
    char *big = moe_arena_alloc(&a, 100000, 64);
    REQUIRE(big);
    memset(big, 1, 100000);
    char *s = moe_arena_strndup(&a, "hello world", 5);
    CHECK(strcmp(s, "hello") == 0);
    moe_arena_reset(&a);
    CHECK(moe_arena_alloc(&a, 16, 8) != NULL);
    moe_arena_free(&a);
}

typedef struct { atomic_int hits[64]; atomic_long sum; int64_t n; } pool_job;

static void pool_task(void *arg, int ith, int nth) {
    pool_job *j = arg;
    atomic_fetch_add(&j->hits[ith], 1);
    int64_t b, e;
    moe_split(j->n, ith, nth, 4, &b, &e);
    long s = 0;
    for (int64_t i = b; i < e; i++) s += (long)i;
    atomic_fetch_add(&j->sum, s);
}

TEST(thread_pool_runs_every_index_once) {
    for (int nt = 1; nt <= 4; nt++) {
        moe_pool *p = moe_pool_create(nt);
        REQUIRE(p);
        CHECK_EQ_INT(moe_pool_size(p), nt);
        for (int rep = 0; rep < 200; rep++) {
            pool_job j;
            memset(&j, 0, sizeof j);
            j.n = 1000 + rep;
            moe_pool_run(p, pool_task, &j);
            for (int t = 0; t < nt; t++) CHECK_EQ_INT(atomic_load(&j.hits[t]), 1);
            CHECK_EQ_INT(atomic_load(&j.sum), (long)j.n * (j.n - 1) / 2);
        }
        moe_pool_free(p);
    }
}

TEST(split_covers_range_in_aligned_chunks) {
    for (int nth = 1; nth <= 7; nth++) {
        int64_t prev_end = 0;
        for (int ith = 0; ith < nth; ith++) {
            int64_t b, e;
            moe_split(1003, ith, nth, 32, &b, &e);
            CHECK_EQ_INT(b, prev_end);
            CHECK(b % 32 == 0);
            prev_end = e;
        }
        CHECK_EQ_INT(prev_end, 1003);
    }
}

TEST(f16_conversion_matches_reference_on_all_halves) {
    /* every half → float → half round trip is exact (except NaN payload quieting) */
    for (uint32_t h = 0; h < 65536; h++) {
        float f = moe_f16_to_f32_ref((moe_f16)h);
        CHECK(moe_f32_bits(f) == moe_f32_bits(moe_f16_to_f32((moe_f16)h)));
        if (((h >> 10) & 0x1f) == 0x1f && (h & 0x3ff)) continue;
        CHECK_EQ_INT(moe_f32_to_f16_ref(f), h);
    }
    /* random floats: the scalar rounding equals the hardware's */
    uint32_t s = 12345;
    for (int i = 0; i < 200000; i++) {
        s = s * 1664525u + 1013904223u;
        float f = moe_f32_from_bits(s);
        if (f != f) continue;
        CHECK_EQ_INT(moe_f32_to_f16_ref(f), moe_f32_to_f16(f));
    }
    CHECK_EQ_INT(moe_f32_to_f16(65520.0f), 0x7c00);
    CHECK_EQ_INT(moe_f32_to_f16(1.0f), 0x3c00);
}

TEST(bf16_round_to_nearest_even) {
    CHECK_EQ_INT(moe_f32_to_bf16(1.0f), 0x3f80);
    CHECK_EQ_INT(moe_f32_to_bf16(moe_f32_from_bits(0x3f808000u)), 0x3f80); /* tie → even */
    CHECK_EQ_INT(moe_f32_to_bf16(moe_f32_from_bits(0x3f818000u)), 0x3f82);
    CHECK_EQ_INT(moe_f32_to_bf16(moe_f32_from_bits(0x3f808001u)), 0x3f81);
    CHECK(moe_bf16_to_f32(0x3f80) == 1.0f);
}

TEST(type_table_sizes_match_ggml) {
    CHECK_EQ_INT(moe_row_size(MOE_TYPE_Q4_0, 256), 8 * 18);
    CHECK_EQ_INT(moe_row_size(MOE_TYPE_Q4_K, 512), 2 * 144);
    CHECK_EQ_INT(moe_row_size(MOE_TYPE_Q6_K, 256), 210);
    CHECK_EQ_INT(moe_row_size(MOE_TYPE_Q8_K, 256), 292);
    CHECK(moe_type_get(4) == NULL);
    CHECK(moe_type_get(31) == NULL);
    CHECK_EQ_INT(moe_type_from_name("Q4_K"), MOE_TYPE_Q4_K);
    CHECK_EQ_INT(moe_type_from_name("nope"), -1);
    CHECK(moe_type_check_compute(MOE_TYPE_IQ2_XXS) != MOE_OK);
    CHECK_STR_CONTAINS(moe_last_error(), "iq2_xxs");
}

/* The /proc readers: the peak RSS (restarted from the current RSS through clear_refs, as
 * `moe bench` does) grows by what this test touches, and the available memory is what
 * /proc/meminfo says (read here independently), within what may change between the two
 * reads. */
TEST(proc_memory_readers) {
    FILE *cr = fopen("/proc/self/clear_refs", "w");
    REQUIRE(cr);
    fputs("5", cr);
    fclose(cr);
    const uint64_t before = moe_peak_rss_bytes();
    const size_t n = (size_t)64 << 20;
    volatile char *p = malloc(n); /* volatile: the stores must happen */
    REQUIRE(p);
    for (size_t i = 0; i < n; i += 4096) p[i] = 1;
    const uint64_t after = moe_peak_rss_bytes();
    CHECK_MSG(before > 0 && after >= before + n / 2, "VmHWM %llu -> %llu", (unsigned long long)before,
              (unsigned long long)after);
    free((void *)p);
    FILE *f = fopen("/proc/meminfo", "r");
    REQUIRE(f);
    char line[256];
    unsigned long long kb = 0;
    while (fgets(line, sizeof line, f) && sscanf(line, "MemAvailable: %llu kB", &kb) != 1) {}
    fclose(f);
    const double ours = (double)moe_mem_available_bytes(), theirs = (double)kb * 1024.0;
    CHECK_MSG(theirs > 0 && fabs(ours - theirs) < 0.25 * theirs + (double)(256 << 20), "%.0f vs %.0f", ours, theirs);
}

#if defined(__AVX2__) && defined(__FMA__)
#include "core/simd.h"
#include <math.h>

/* v_expf (simd.h, the 8-wide e^x of SiLU and attention) against libm's expf: within 2 ulp
 * where e^x is a normal float, within 2·2^-149 where it is subnormal, 0 far below and ∞
 * above; v_silu within 4 ulp of x / (1 + expf(−x)) (for large −x, SiLU ≈ x·e^x carries
 * e^x's error). x runs over [−150, 95], which covers both slow paths (|x| > 126·ln 2 and
 * > 192·ln 2). */
static double ulps(float a, float b) { /* |a − b| in units of b's last place */
    if (a == b) return 0;
    return fabs((double)a - (double)b) / ((double)nextafterf(fabsf(b), INFINITY) - fabs((double)b));
}
TEST(v_expf_and_v_silu_match_libm) {
    double worst = 0, worst_silu = 0, worst_sub = 0;
    float x[8], e[8], si[8];
    for (int64_t k = 0; k < 400000; k++) {
        for (int l = 0; l < 8; l++) x[l] = -150.0f + 245.0f * (float)(k * 8 + l) / (400000.0f * 8);
        _mm256_storeu_ps(e, v_expf(_mm256_loadu_ps(x)));
        _mm256_storeu_ps(si, v_silu(_mm256_loadu_ps(x)));
        for (int l = 0; l < 8; l++) {
            const float ref = expf(x[l]);
            if (ref == 0 || isinf(ref)) {
                CHECK_MSG(e[l] <= 1e-37f || isinf(e[l]) == isinf(ref), "e^%g: %g, libm %g", x[l], e[l], ref);
            } else if (ref >= 0x1p-126f) {
                worst = fmax(worst, ulps(e[l], ref));
            } else { /* subnormal: in units of the smallest subnormal */
                worst_sub = fmax(worst_sub, fabs((double)e[l] - (double)ref) / 0x1p-149);
            }
            const float sref = x[l] / (1.0f + expf(-x[l]));
            if (isfinite(sref) && fabsf(sref) >= 0x1p-126f) worst_silu = fmax(worst_silu, ulps(si[l], sref));
        }
    }
    fprintf(stderr, "    v_expf worst %.2f ulp (subnormal results: %.0f × 2^-149), v_silu worst %.2f ulp vs libm over [-150, 95]\n",
            worst, worst_sub, worst_silu);
    CHECK_MSG(worst_sub <= 2.0, "v_expf subnormal: %g × 2^-149", worst_sub);
    CHECK_MSG(worst <= 2.0, "v_expf: %g ulp", worst);
    CHECK_MSG(worst_silu <= 4.0, "v_silu: %g ulp", worst_silu);
}
#endif
