/* test.h — the tiny test runner: TEST(name) { ... } registers a test; CHECK* macros
 * record a failure (with file:line) and, for REQUIRE*, end the test. The runner prints
 * one line per failing test and "N passed, N failed, N skipped" last. */
#ifndef MOE_TEST_H
#define MOE_TEST_H

#include <math.h>
#include <stdio.h>
#include <stdint.h>
#include <stdbool.h>
#include <string.h>

typedef void (*test_fn)(void);
void test_register(const char *name, const char *file, test_fn fn);
void test_fail(const char *file, int line, const char *fmt, ...) __attribute__((format(printf, 3, 4)));
/* Marks the running test skipped (with a reason) — use only for missing optional tools. */
void test_skip(const char *fmt, ...) __attribute__((format(printf, 1, 2)));
bool test_failed(void);
/* Path of a fixture under ../shared/fixtures (MOE_FIXTURES overrides the folder). */
const char *test_fixture(const char *rel);
/* A fresh temporary directory for this test, removed at the end of the run. */
const char *test_tmpdir(void);
/* Path of the `moe` binary under test (MOE_BIN, set by `make test`). */
const char *test_moe_bin(void);
/* Runs a shell command, returns its exit status (-1 if it could not run); stdout and
 * stderr are captured into *out (malloc'ed, may be NULL) when out != NULL. */
int test_run(const char *cmd, char **out);
/* True if /usr/bin/python3 can import the module (numpy, torch). */
bool test_have_python_module(const char *module);

#define TEST(name)                                                                    \
    static void test_##name(void);                                                    \
    __attribute__((constructor)) static void test_reg_##name(void) {                  \
        test_register(#name, __FILE__, test_##name);                                  \
    }                                                                                 \
    static void test_##name(void)

#define CHECK(cond)                                                                   \
    do { if (!(cond)) test_fail(__FILE__, __LINE__, "CHECK(%s)", #cond); } while (0)
#define REQUIRE(cond)                                                                 \
    do { if (!(cond)) { test_fail(__FILE__, __LINE__, "REQUIRE(%s)", #cond); return; } } while (0)
#define CHECK_MSG(cond, ...)                                                          \
    do { if (!(cond)) test_fail(__FILE__, __LINE__, __VA_ARGS__); } while (0)
#define REQUIRE_MSG(cond, ...)                                                        \
    do { if (!(cond)) { test_fail(__FILE__, __LINE__, __VA_ARGS__); return; } } while (0)
#define CHECK_EQ_INT(a, b)                                                            \
    do { long long a_ = (long long)(a), b_ = (long long)(b);                          \
         if (a_ != b_) test_fail(__FILE__, __LINE__, "%s == %s: %lld != %lld", #a, #b, a_, b_); } while (0)
#define CHECK_STR_CONTAINS(hay, needle)                                               \
    do { const char *h_ = (hay), *n_ = (needle);                                      \
         if (!h_ || !strstr(h_, n_)) test_fail(__FILE__, __LINE__, "\"%s\" does not contain \"%s\"", h_ ? h_ : "(null)", n_); } while (0)
#define CHECK_NEAR(a, b, tol)                                                         \
    do { double a_ = (a), b_ = (b);                                                   \
         if (!(fabs(a_ - b_) <= (tol))) test_fail(__FILE__, __LINE__, "%s ≈ %s: %g vs %g (tol %g)", #a, #b, a_, b_, (double)(tol)); } while (0)

#endif
