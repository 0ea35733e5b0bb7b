/* common.h — what every file of libmoe includes: status codes, error reporting,
 * overflow-checked arithmetic and a few small helpers. */
#ifndef MOE_CORE_COMMON_H
#define MOE_CORE_COMMON_H

#include <stddef.h>
#include <stdint.h>
#include <stdbool.h>
#include <string.h>
#include "moe.h"

#define MOE_MIN(a, b) ((a) < (b) ? (a) : (b))
#define MOE_MAX(a, b) ((a) > (b) ? (a) : (b))
#define MOE_ARRAY_LEN(a) (sizeof(a) / sizeof((a)[0]))

#if defined(__GNUC__)
#define MOE_PRINTF(f, a) __attribute__((format(printf, f, a)))
#define MOE_UNLIKELY(x) __builtin_expect(!!(x), 0)
#else
#define MOE_PRINTF(f, a)
#define MOE_UNLIKELY(x) (x)
#endif

/* Records an error message for moe_last_error() and returns `st`, so a failing path
 * reads `return moe_error(MOE_ERR_FORMAT, "%s: ...", path);`. */
moe_status moe_error(moe_status st, const char *fmt, ...) MOE_PRINTF(2, 3);
/* Like moe_error() but for functions that return a pointer: returns NULL. */
void *moe_error_null(moe_status st, const char *fmt, ...) MOE_PRINTF(2, 3);
/* The status of the last recorded error on this thread. */
moe_status moe_last_status(void);
/* Forgets the last error (used by code that tries something and falls back). */
void moe_clear_error(void);

/* Overflow-checked size arithmetic: return false on overflow. Every size computed from
 * file contents goes through these before it is used. */
static inline bool moe_mul_ok(uint64_t a, uint64_t b, uint64_t *out) {
    return !__builtin_mul_overflow(a, b, out);
}
static inline bool moe_add_ok(uint64_t a, uint64_t b, uint64_t *out) {
    return !__builtin_add_overflow(a, b, out);
}

/* Allocation helpers that record an error on failure. Memory from moe_aligned_alloc is
 * 64-byte aligned (one cache line, and enough for every SIMD load) and freed with free(). */
void *moe_malloc(size_t n);
void *moe_calloc(size_t count, size_t size);
void *moe_aligned_alloc(size_t n);

/* moe_time_s() (monotonic seconds) is public: see moe.h. */

#endif
