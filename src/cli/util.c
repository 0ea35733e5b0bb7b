/* util.c — argument parsing, error printing and JSON helpers shared by the subcommands. */
#include "cli/cli.h"

#include <errno.h>
#include <math.h>
#include <stdarg.h>
#include <stdlib.h>
#include <string.h>

int cli_fail(const char *sub, const char *fmt, ...) {
    va_list ap;
    va_start(ap, fmt);
    fprintf(stderr, "moe %s: ", sub);
    vfprintf(stderr, fmt, ap);
    fputc('\n', stderr);
    va_end(ap);
    return 1;
}

int cli_fail_lib(const char *sub) {
    const char *m = moe_last_error();
    fprintf(stderr, "moe %s: %s\n", sub, m && *m ? m : "unknown error");
    return 1;
}

int cli_usage(const char *sub, const char *fmt, ...) {
    va_list ap;
    va_start(ap, fmt);
    fprintf(stderr, "moe %s: ", sub);
    vfprintf(stderr, fmt, ap);
    fprintf(stderr, "\ntry 'moe %s --help'\n", sub);
    va_end(ap);
    return 2;
}

bool cli_is_help(const char *a) { return strcmp(a, "-h") == 0 || strcmp(a, "--help") == 0; }

bool cli_arg_str(const char *sub, int argc, char **argv, int *i, const char **out) {
    if (*i + 1 >= argc) {
        cli_usage(sub, "option %s needs a value", argv[*i]);
        return false;
    }
    *out = argv[++*i];
    return true;
}

bool cli_arg_int(const char *sub, int argc, char **argv, int *i, int64_t min, int64_t max, int64_t *out) {
    const char *s;
    if (!cli_arg_str(sub, argc, argv, i, &s)) return false;
    char *end;
    errno = 0;
    long long v = strtoll(s, &end, 10);
    if (errno || end == s || *end || v < min || v > max) {
        cli_usage(sub, "option %s: '%s' is not an integer in [%lld, %lld]", argv[*i - 1], s,
                  (long long)min, (long long)max);
        return false;
    }
    *out = v;
    return true;
}

bool cli_arg_float(const char *sub, int argc, char **argv, int *i, double *out) {
    const char *s;
    if (!cli_arg_str(sub, argc, argv, i, &s)) return false;
    char *end;
    errno = 0;
    double v = strtod(s, &end);
    if (errno || end == s || *end || !isfinite(v)) {
        cli_usage(sub, "option %s: '%s' is not a number", argv[*i - 1], s);
        return false;
    }
    *out = v;
    return true;
}

bool cli_parse_size(const char *s, uint64_t *out) {
    char *end;
    errno = 0;
    double v = strtod(s, &end);
    if (errno || end == s || !(v >= 0)) return false;
    double mul = 1;
    switch (*end) {
    case 'k': case 'K': mul = 1024.0; end++; break;
    case 'm': case 'M': mul = 1024.0 * 1024; end++; break;
    case 'g': case 'G': mul = 1024.0 * 1024 * 1024; end++; break;
    case 't': case 'T': mul = 1024.0 * 1024 * 1024 * 1024; end++; break;
    default: break;
    }
    if (*end == 'i' && mul > 1) end++;          /* 2Gi */
    if (*end == 'B' || *end == 'b') end++;      /* 2GB, 700MiB */
    if (*end) return false;
    double bytes = v * mul;
    if (bytes >= 18446744073709551616.0) return false;
    *out = (uint64_t)bytes;
    return true;
}

bool cli_arg_size(const char *sub, int argc, char **argv, int *i, uint64_t *out) {
    const char *s;
    if (!cli_arg_str(sub, argc, argv, i, &s)) return false;
    if (!cli_parse_size(s, out)) {
        cli_usage(sub, "option %s: '%s' is not a size (examples: 700M, 2G, 1.5G)", argv[*i - 1], s);
        return false;
    }
    return true;
}

bool cli_arg_kv_type(const char *sub, int argc, char **argv, int *i, moe_kv_type *out) {
    const char *s;
    if (!cli_arg_str(sub, argc, argv, i, &s)) return false;
    const int t = moe_kv_type_from_name(s);
    if (t < 0) {
        cli_usage(sub, "option %s: '%s' is not one of f32, f16", argv[*i - 1], s);
        return false;
    }
    *out = (moe_kv_type)t;
    return true;
}

void cli_json_str(FILE *f, const char *s, size_t len) {
    fputc('"', f);
    for (size_t i = 0; i < len; i++) {
        unsigned char c = (unsigned char)s[i];
        switch (c) {
        case '"': fputs("\\\"", f); break;
        case '\\': fputs("\\\\", f); break;
        case '\n': fputs("\\n", f); break;
        case '\r': fputs("\\r", f); break;
        case '\t': fputs("\\t", f); break;
        default:
            if (c < 0x20) fprintf(f, "\\u%04x", c);
            else fputc(c, f);
        }
    }
    fputc('"', f);
}

void cli_json_num(FILE *f, double x) {
    if (!isfinite(x)) fputs("null", f);
    else if (x == (double)(long long)x && fabs(x) < 9e15) fprintf(f, "%lld", (long long)x);
    else fprintf(f, "%.9g", x);
}
