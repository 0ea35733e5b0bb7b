/* membw.c — this machine's DRAM read bandwidth, measured by streaming a buffer much
 * larger than the caches over the thread pool: the yardstick the benchmarks divide by
 * (a decode that reads B bytes per token cannot beat bandwidth / B tokens/s). */
#include "core/membw.h"

#include <stdlib.h>
#if defined(__AVX2__)
#include <immintrin.h>
#endif

typedef struct {
    const uint8_t *buf;
    size_t size;
    uint64_t sink[64];
} bw_job;

/* Sums 128-byte lines with independent accumulators: pure loads, as a weight stream is. */
static void bw_task(void *arg, int ith, int nth) {
    bw_job *j = arg;
    int64_t b, e;
    moe_split((int64_t)(j->size / 128), ith, nth, 1, &b, &e);
#if defined(__AVX2__)
    __m256i s0 = _mm256_setzero_si256(), s1 = s0, s2 = s0, s3 = s0;
    for (int64_t i = b; i < e; i++) {
        const __m256i *p = (const __m256i *)(j->buf + (size_t)i * 128);
        s0 = _mm256_add_epi64(s0, _mm256_load_si256(p));
        s1 = _mm256_add_epi64(s1, _mm256_load_si256(p + 1));
        s2 = _mm256_add_epi64(s2, _mm256_load_si256(p + 2));
        s3 = _mm256_add_epi64(s3, _mm256_load_si256(p + 3));
    }
    s0 = _mm256_add_epi64(_mm256_add_epi64(s0, s1), _mm256_add_epi64(s2, s3));
    j->sink[ith % 64] = (uint64_t)_mm256_extract_epi64(s0, 0);
#else
    uint64_t s[4] = {0};
    for (int64_t i = b; i < e; i++) {
        const uint64_t *p = (const uint64_t *)(j->buf + (size_t)i * 128);
        for (int k = 0; k < 16; k++) s[k & 3] += p[k];
    }
    j->sink[ith % 64] = s[0] + s[1] + s[2] + s[3];
#endif
}

double moe_read_seconds(moe_pool *pool, const void *buf, size_t bytes) {
    bw_job j = {buf, bytes & ~(size_t)127, {0}};
    double t0 = moe_time_s();
    moe_pool_run(pool, bw_task, &j);
    return moe_time_s() - t0;
}

static int cmp_double(const void *a, const void *b) {
    double x = *(const double *)a, y = *(const double *)b;
    return (x > y) - (x < y);
}

double moe_measure_read_bandwidth(int n_threads, size_t bytes, int reps) {
    if (bytes < (64u << 20)) bytes = 64u << 20;
    if (reps < 1) reps = 1;
    if (reps > 64) reps = 64;
    bytes &= ~(size_t)127;
    uint8_t *buf = moe_aligned_alloc(bytes);
    moe_pool *pool = buf ? moe_pool_create(n_threads) : NULL;
    if (!pool) { free(buf); return 0; }
    for (size_t i = 0; i < bytes; i += 4096) buf[i] = (uint8_t)i; /* fault every page in */
    memset(buf, 1, bytes);
    double t[64];
    moe_read_seconds(pool, buf, bytes); /* warm-up */
    for (int r = 0; r < reps; r++) t[r] = moe_read_seconds(pool, buf, bytes);
    qsort(t, (size_t)reps, sizeof *t, cmp_double);
    double med = reps % 2 ? t[reps / 2] : 0.5 * (t[reps / 2 - 1] + t[reps / 2]);
    moe_pool_free(pool);
    free(buf);
    return med > 0 ? (double)bytes / med : 0;
}
