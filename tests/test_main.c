/* test_main.c — the runner behind test.h: runs every registered test (or those whose
 * name contains argv[1]), each under its own temporary directory, and prints
 * "N passed, N failed, N skipped" as its last line. Exit status 1 if any test failed. */
#include "test.h"

#include <stdarg.h>
#include <stdlib.h>
#include <time.h>
#include <unistd.h>
#include <sys/stat.h>
#include <sys/wait.h>

typedef struct { const char *name, *file; test_fn fn; } test_case;
static test_case *g_tests;
static int g_n, g_cap;
static int g_cur_failures;
static bool g_cur_skipped;
static const char *g_cur_name;
static char g_tmp[256];

void test_register(const char *name, const char *file, test_fn fn) {
    if (g_n == g_cap) {
        g_cap = g_cap ? 2 * g_cap : 256;
        g_tests = realloc(g_tests, (size_t)g_cap * sizeof *g_tests);
        if (!g_tests) { fprintf(stderr, "out of memory\n"); _exit(2); }
    }
    g_tests[g_n++] = (test_case){name, file, fn};
}

void test_fail(const char *file, int line, const char *fmt, ...) {
    if (g_cur_failures < 20) { /* keep the log readable when a loop fails many times */
        va_list ap;
        va_start(ap, fmt);
        fprintf(stderr, "  FAIL %s (%s:%d): ", g_cur_name, file, line);
        vfprintf(stderr, fmt, ap);
        fputc('\n', stderr);
        va_end(ap);
    }
    g_cur_failures++;
}

void test_skip(const char *fmt, ...) {
    va_list ap;
    va_start(ap, fmt);
    fprintf(stderr, "  SKIP %s: ", g_cur_name);
    vfprintf(stderr, fmt, ap);
    fputc('\n', stderr);
    va_end(ap);
    g_cur_skipped = true;
}

bool test_failed(void) { return g_cur_failures > 0; }

const char *test_fixture(const char *rel) {
    static char buf[8][1024];
    static int k;
    const char *root = getenv("MOE_FIXTURES");
    char *b = buf[k++ & 7];
    snprintf(b, sizeof buf[0], "%s/%s", root ? root : "../shared/fixtures", rel);
    return b;
}

const char *test_tmpdir(void) { return g_tmp; }

const char *test_moe_bin(void) {
    const char *b = getenv("MOE_BIN");
    return b ? b : "./moe";
}

int test_run(const char *cmd, char **out) {
    char *full = NULL;
    if (asprintf(&full, "%s 2>&1", cmd) < 0) return -1;
    FILE *f = popen(full, "r");
    free(full);
    if (!f) return -1;
    size_t cap = 4096, len = 0;
    char *buf = malloc(cap);
    size_t r;
    while (buf && (r = fread(buf + len, 1, cap - len - 1, f)) > 0) {
        len += r;
        if (cap - len < 2) {
            char *nb = realloc(buf, cap * 2);
            if (!nb) { free(buf); buf = NULL; break; }
            buf = nb;
            cap *= 2;
        }
    }
    if (buf) buf[len] = 0;
    int status = pclose(f);
    if (out) *out = buf; else free(buf);
    if (status == -1) return -1;
    return WIFEXITED(status) ? WEXITSTATUS(status) : 128 + WTERMSIG(status);
}

bool test_have_python_module(const char *module) {
    char cmd[256];
    snprintf(cmd, sizeof cmd, "/usr/bin/python3 -c 'import %s' >/dev/null 2>&1", module);
    return system(cmd) == 0;
}

static int cmp_tests(const void *a, const void *b) {
    const test_case *x = a, *y = b;
    int c = strcmp(x->file, y->file);
    return c ? c : 0;
}

int main(int argc, char **argv) {
    const char *filter = argc > 1 ? argv[1] : NULL;
    /* stable sort by file keeps each file's tests in definition order */
    for (int i = 1; i < g_n; i++)
        for (int j = i; j > 0 && cmp_tests(&g_tests[j - 1], &g_tests[j]) > 0; j--) {
            test_case t = g_tests[j]; g_tests[j] = g_tests[j - 1]; g_tests[j - 1] = t;
        }
    int passed = 0, failed = 0, skipped = 0;
    char root[200];
    snprintf(root, sizeof root, "/tmp/moe-test-XXXXXX");
    if (!mkdtemp(root)) { perror("mkdtemp"); return 2; }
    for (int i = 0; i < g_n; i++) {
        test_case *t = &g_tests[i];
        if (filter && !strstr(t->name, filter) && !strstr(t->file, filter)) continue;
        snprintf(g_tmp, sizeof g_tmp, "%s/%d", root, i);
        if (mkdir(g_tmp, 0700) != 0) { perror("mkdir"); return 2; }
        g_cur_failures = 0;
        g_cur_skipped = false;
        g_cur_name = t->name;
        double t0 = (double)clock() / CLOCKS_PER_SEC;
        struct timespec a, b;
        clock_gettime(CLOCK_MONOTONIC, &a);
        t->fn();
        clock_gettime(CLOCK_MONOTONIC, &b);
        (void)t0;
        double dt = (double)(b.tv_sec - a.tv_sec) + 1e-9 * (double)(b.tv_nsec - a.tv_nsec);
        const char *tag = g_cur_failures ? "FAIL" : g_cur_skipped ? "skip" : "ok  ";
        fprintf(stderr, "%s %-48s %7.2fs  (%s)\n", tag, t->name, dt, t->file);
        if (g_cur_failures) failed++; else if (g_cur_skipped) skipped++; else passed++;
    }
    char rm[300];
    snprintf(rm, sizeof rm, "rm -rf '%s'", root);
    if (system(rm) != 0) fprintf(stderr, "warning: could not remove %s\n", root);
    fflush(stderr);
    printf("%d passed, %d failed, %d skipped\n", passed, failed, skipped);
    return failed ? 1 : 0;
}
