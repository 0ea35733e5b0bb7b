/* bench_util.h — what the benchmark programs of bench/ share: the order and median of
 * repeated measurements. Header-only, since each program is one .c file linked with
 * libmoe (the Makefile rebuilds them all when it changes). */
#ifndef MOE_BENCH_UTIL_H
#define MOE_BENCH_UTIL_H

#include <stdlib.h>

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

#endif
