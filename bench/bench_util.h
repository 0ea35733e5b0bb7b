/* bench_util.h — what the benchmark programs of bench/ share: the order and median of
 * repeated measurements. Header-only, since each program is one .c file linked with
 * libmoe (the Makefile rebuilds them all when it changes). */
#ifndef MOE_BENCH_UTIL_H
#define MOE_BENCH_UTIL_H

#include "core/types.h"

#include <stdint.h>
#include <stdlib.h>
#include <string.h>
#include <sys/mman.h>

/* qsort's comparison for doubles, ascending */
static inline int bench_cmp_double(const void *a, const void *b) {
    const double x = *(const double *)a, y = *(const double *)b;
    return (x > y) - (x < y);
}

/* The median of v[0..n) (sorts v): the middle value, or the mean of the two middle ones */
static inline double bench_median(double *v, int n) {
    qsort(v, (size_t)n, sizeof *v, bench_cmp_double);
    return n % 2 ? v[n / 2] : 0.5 * (v[n / 2 - 1] + v[n / 2]);
}

/* n values uniform in [-1, 1), the same sequence in every benchmark (a fixed LCG) */
static inline void bench_fill_uniform(float *v, int64_t n) {
    uint64_t rng = 0x9e3779b97f4a7c15ull;
    for (int64_t i = 0; i < n; i++) {
        rng = rng * 6364136223846793005ull + 1442695040888963407ull;
        v[i] = (float)((int64_t)(rng >> 40) - (1 << 23)) / (float)(1 << 23);
    }
}

/* Weights of a speed test: rows [0, distinct) of w quantized from src's rows (cols values
 * each, rows rb bytes apart), the others copies of row r % distinct; the values do not
 * change the speed. */
static inline void bench_fill_rows(const moe_type_traits *tt, const float *src, uint8_t *w, int64_t rows, size_t rb,
                                   int64_t cols, int64_t distinct) {
    for (int64_t r = 0; r < rows; r++)
        if (r < distinct) tt->from_float_ref(src + r * cols, w + (size_t)r * rb, cols);
        else memcpy(w + (size_t)r * rb, w + (size_t)(r % distinct) * rb, rb);
}

/* Memory as the loader keeps weights read into memory (moe_read_file): one region in
 * 2 MiB pages where the kernel grants them; NULL when out of memory. */
static inline uint8_t *bench_region_alloc(size_t n) {
    const size_t huge = (size_t)2 << 20, len = (n + huge - 1) / huge * huge;
    uint8_t *p = mmap(NULL, len, PROT_READ | PROT_WRITE, MAP_PRIVATE | MAP_ANONYMOUS, -1, 0);
    if (p == MAP_FAILED) return NULL;
    (void)madvise(p, len, MADV_HUGEPAGE);
    return p;
}

static inline void bench_region_free(uint8_t *p, size_t n) {
    const size_t huge = (size_t)2 << 20;
    if (p) munmap(p, (n + huge - 1) / huge * huge);
}

#endif
