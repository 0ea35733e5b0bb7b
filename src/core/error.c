/* error.c — the per-thread last-error message behind moe_last_error(), and the
 * allocation and clock helpers every other file uses. */
#include "core/common.h"

#include <errno.h>
#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <time.h>

/* Thread-local so that concurrent callers (the I/O thread, a server) never see each
 * other's messages. 1 KiB holds a path plus a field name plus the numbers. */
static _Thread_local char g_msg[1024];
static _Thread_local moe_status g_status;

static void set_msg(moe_status st, const char *fmt, va_list ap) {
    vsnprintf(g_msg, sizeof g_msg, fmt, ap);
    g_status = st;
}

moe_status moe_error(moe_status st, const char *fmt, ...) {
    va_list ap;
    va_start(ap, fmt);
    set_msg(st, fmt, ap);
    va_end(ap);
    return st;
}

void *moe_error_null(moe_status st, const char *fmt, ...) {
    va_list ap;
    va_start(ap, fmt);
    set_msg(st, fmt, ap);
    va_end(ap);
    return NULL;
}

const char *moe_last_error(void) { return g_msg; }
moe_status moe_last_status(void) { return g_status; }
void moe_clear_error(void) { g_msg[0] = 0; g_status = MOE_OK; }

const char *moe_status_str(moe_status st) {
    switch (st) {
    case MOE_OK: return "ok";
    case MOE_ERR_IO: return "i/o error";
    case MOE_ERR_FORMAT: return "format error";
    case MOE_ERR_UNSUPPORTED: return "unsupported";
    case MOE_ERR_INVALID: return "invalid argument";
    case MOE_ERR_NOMEM: return "out of memory";
    case MOE_ERR_NOT_FOUND: return "not found";
    }
    return "unknown error";
}

void *moe_malloc(size_t n) {
    void *p = malloc(n ? n : 1);
    if (!p) moe_error(MOE_ERR_NOMEM, "out of memory allocating %zu bytes", n);
    return p;
}

void *moe_calloc(size_t count, size_t size) {
    void *p = calloc(count ? count : 1, size ? size : 1);
    if (!p) moe_error(MOE_ERR_NOMEM, "out of memory allocating %zu x %zu bytes", count, size);
    return p;
}

void *moe_aligned_alloc(size_t n) {
    void *p = NULL;
    size_t rounded = (n + 63) & ~(size_t)63;
    if (rounded < n || posix_memalign(&p, 64, rounded ? rounded : 64) != 0) {
        moe_error(MOE_ERR_NOMEM, "out of memory allocating %zu bytes", n);
        return NULL;
    }
    return p;
}

double moe_time_s(void) {
    struct timespec ts;
    clock_gettime(CLOCK_MONOTONIC, &ts);
    return (double)ts.tv_sec + 1e-9 * (double)ts.tv_nsec;
}

/* The value of a "Key: N kB" line of a /proc file, in bytes; 0 if absent. fmt is the
 * line's scanf format, e.g. "VmHWM: %llu kB". */
static uint64_t proc_kb(const char *path, const char *fmt) {
    FILE *f = fopen(path, "r");
    if (!f) return 0;
    char line[256];
    unsigned long long kb = 0;
    while (fgets(line, sizeof line, f))
        if (sscanf(line, fmt, &kb) == 1) break;
    fclose(f);
    return (uint64_t)kb * 1024u;
}

uint64_t moe_peak_rss_bytes(void) { return proc_kb("/proc/self/status", "VmHWM: %llu kB"); }
uint64_t moe_mem_available_bytes(void) { return proc_kb("/proc/meminfo", "MemAvailable: %llu kB"); }
