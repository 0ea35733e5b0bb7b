/* safetensors.c — the safetensors reader and writer (see safetensors.h). The header is
 * parsed by a small JSON parser written for it: bounded nesting, strict grammar, every
 * number overflow-checked. The validation rules are the reference library's: header ≤
 * 100 MB and starting with '{', data_offsets consistent with dtype × shape, tensors
 * packed back to back without holes or overlaps, and the last one ending the file. */
#include "io/safetensors.h"
#include "io/mapfile.h"
#include "io/atomic.h"
#include "core/arena.h"
#include "core/f16.h"

#include <errno.h>
#include <stdarg.h>
#include <fcntl.h>
#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <sys/stat.h>
#include <unistd.h>

/* The tensor data are read as little-endian; the hosts the project targets are. */
#if defined(__BYTE_ORDER__) && __BYTE_ORDER__ != __ORDER_LITTLE_ENDIAN__
#error "safetensors.c assumes a little-endian host"
#endif

static const struct { const char *name; size_t size; } g_dtypes[MOE_ST_N_DTYPES] = {
    [MOE_ST_BOOL] = {"BOOL", 1},       [MOE_ST_U8] = {"U8", 1},     [MOE_ST_I8] = {"I8", 1},
    [MOE_ST_F8_E5M2] = {"F8_E5M2", 1}, [MOE_ST_F8_E4M3] = {"F8_E4M3", 1},
    [MOE_ST_I16] = {"I16", 2},         [MOE_ST_U16] = {"U16", 2},   [MOE_ST_F16] = {"F16", 2},
    [MOE_ST_BF16] = {"BF16", 2},       [MOE_ST_I32] = {"I32", 4},   [MOE_ST_U32] = {"U32", 4},
    [MOE_ST_F32] = {"F32", 4},         [MOE_ST_F64] = {"F64", 8},   [MOE_ST_I64] = {"I64", 8},
    [MOE_ST_U64] = {"U64", 8},
};

const char *moe_st_dtype_name(moe_st_dtype t) {
    return (unsigned)t < MOE_ST_N_DTYPES ? g_dtypes[t].name : "?";
}
size_t moe_st_dtype_size(moe_st_dtype t) {
    return (unsigned)t < MOE_ST_N_DTYPES ? g_dtypes[t].size : 0;
}

typedef struct { const char *key, *value; } st_meta;

struct moe_safetensors {
    char *path;
    const uint8_t *base;
    uint64_t size;
    bool mapped;
    uint64_t header_len;          /* N; data start at 8 + N */
    moe_st_tensor *tensors;
    int64_t n_tensors, cap_tensors;
    int64_t *by_name;             /* tensor indices sorted by name, for lookups */
    st_meta *meta;
    int64_t n_meta, cap_meta;
    moe_arena arena;
};

/* ---------------------------------------------------------------- the JSON header */

typedef struct {
    moe_safetensors *st;
    const char *s;
    uint64_t n, pos;
    bool seen_meta;
    char ctx[320];   /* what is being parsed: "tensor 'x': shape" */
} jparser;

static moe_status jfail(jparser *p, const char *fmt, ...) MOE_PRINTF(2, 3);
static moe_status jfail(jparser *p, const char *fmt, ...) {
    char msg[256];
    va_list ap;
    va_start(ap, fmt);
    vsnprintf(msg, sizeof msg, fmt, ap);
    va_end(ap);
    return moe_error(MOE_ERR_FORMAT, "%s: header: %s: %s (at byte %llu of the %llu-byte JSON header)",
                     p->st->path, p->ctx[0] ? p->ctx : "top level", msg,
                     (unsigned long long)p->pos, (unsigned long long)p->n);
}

static void skip_ws(jparser *p) {
    while (p->pos < p->n && (p->s[p->pos] == ' ' || p->s[p->pos] == '\t' || p->s[p->pos] == '\n' ||
                             p->s[p->pos] == '\r'))
        p->pos++;
}

static int peek(jparser *p) {
    skip_ws(p);
    return p->pos < p->n ? (unsigned char)p->s[p->pos] : -1;
}

static moe_status expect(jparser *p, char c) {
    int got = peek(p);
    if (got != c) {
        if (got < 0) return jfail(p, "expected '%c' but the header ends", c);
        return jfail(p, "expected '%c', found '%c'", c, got >= 0x20 && got < 0x7f ? got : '?');
    }
    p->pos++;
    return MOE_OK;
}

static int hexval(int c) {
    if (c >= '0' && c <= '9') return c - '0';
    if (c >= 'a' && c <= 'f') return c - 'a' + 10;
    if (c >= 'A' && c <= 'F') return c - 'A' + 10;
    return -1;
}

static moe_status read_hex4(jparser *p, uint32_t *out) {
    if (p->n - p->pos < 4) return jfail(p, "truncated \\u escape");
    uint32_t v = 0;
    for (int i = 0; i < 4; i++) {
        int h = hexval((unsigned char)p->s[p->pos + i]);
        if (h < 0) return jfail(p, "bad \\u escape");
        v = v * 16 + (uint32_t)h;
    }
    p->pos += 4;
    *out = v;
    return MOE_OK;
}

/* Parses a string at the cursor into the arena (decoded, NUL-terminated). The decoded
 * text is never longer than the raw text, which bounds the allocation. When `out` is
 * NULL the string is only validated. */
static moe_status parse_string(jparser *p, char **out, size_t *out_len) {
    moe_status st;
    if ((st = expect(p, '"'))) return st;
    uint64_t start = p->pos, end = start;
    while (end < p->n && p->s[end] != '"') end += p->s[end] == '\\' ? 2 : 1;
    if (end >= p->n) return jfail(p, "unterminated string");
    char *buf = NULL;
    if (out) {
        buf = moe_arena_alloc(&p->st->arena, (size_t)(end - start) + 1, 1);
        if (!buf) return MOE_ERR_NOMEM;
    }
    size_t len = 0;
    while (p->s[p->pos] != '"') {
        unsigned char c = (unsigned char)p->s[p->pos];
        if (c < 0x20) return jfail(p, "control character in a string");
        if (c != '\\') {
            if (buf) buf[len] = (char)c;
            len++;
            p->pos++;
            continue;
        }
        p->pos++;
        char e = p->s[p->pos++];
        char r;
        switch (e) {
        case '"': r = '"'; break;
        case '\\': r = '\\'; break;
        case '/': r = '/'; break;
        case 'b': r = '\b'; break;
        case 'f': r = '\f'; break;
        case 'n': r = '\n'; break;
        case 'r': r = '\r'; break;
        case 't': r = '\t'; break;
        case 'u': {
            uint32_t cp;
            if ((st = read_hex4(p, &cp))) return st;
            if (cp >= 0xdc00 && cp <= 0xdfff) return jfail(p, "lone low surrogate in \\u escape");
            if (cp >= 0xd800 && cp <= 0xdbff) {
                uint32_t lo;
                if (p->n - p->pos < 2 || p->s[p->pos] != '\\' || p->s[p->pos + 1] != 'u')
                    return jfail(p, "high surrogate without its low half");
                p->pos += 2;
                if ((st = read_hex4(p, &lo))) return st;
                if (lo < 0xdc00 || lo > 0xdfff) return jfail(p, "bad surrogate pair");
                cp = 0x10000 + ((cp - 0xd800) << 10) + (lo - 0xdc00);
            }
            /* UTF-8 is at most as long as the 6 or 12 escape bytes it replaces */
            uint8_t u[4];
            int nu;
            if (cp < 0x80) { u[0] = (uint8_t)cp; nu = 1; }
            else if (cp < 0x800) { u[0] = (uint8_t)(0xc0 | (cp >> 6)); u[1] = (uint8_t)(0x80 | (cp & 0x3f)); nu = 2; }
            else if (cp < 0x10000) {
                u[0] = (uint8_t)(0xe0 | (cp >> 12)); u[1] = (uint8_t)(0x80 | ((cp >> 6) & 0x3f));
                u[2] = (uint8_t)(0x80 | (cp & 0x3f)); nu = 3;
            } else {
                u[0] = (uint8_t)(0xf0 | (cp >> 18)); u[1] = (uint8_t)(0x80 | ((cp >> 12) & 0x3f));
                u[2] = (uint8_t)(0x80 | ((cp >> 6) & 0x3f)); u[3] = (uint8_t)(0x80 | (cp & 0x3f)); nu = 4;
            }
            if (buf) memcpy(buf + len, u, (size_t)nu);
            len += (size_t)nu;
            continue;
        }
        default: p->pos--; return jfail(p, "bad escape sequence");
        }
        if (buf) buf[len] = r;
        len++;
    }
    p->pos++; /* closing quote */
    if (buf) buf[len] = 0;
    if (out) *out = buf;
    if (out_len) *out_len = len;
    return MOE_OK;
}

/* A JSON number that must be a non-negative integer fitting in 63 bits (shape entries
 * and offsets; the reference library deserialises them as usize). */
static moe_status parse_uint(jparser *p, uint64_t *out) {
    int c = peek(p);
    if (c == '-') return jfail(p, "negative number where a size is expected");
    if (c < '0' || c > '9') return jfail(p, "expected a non-negative integer");
    uint64_t v = 0;
    uint64_t start = p->pos;
    while (p->pos < p->n && p->s[p->pos] >= '0' && p->s[p->pos] <= '9') {
        if (!moe_mul_ok(v, 10, &v) || !moe_add_ok(v, (uint64_t)(p->s[p->pos] - '0'), &v) ||
            v > (uint64_t)INT64_MAX)
            return jfail(p, "integer too large");
        p->pos++;
    }
    if (p->pos - start > 1 && p->s[start] == '0') return jfail(p, "integer with a leading zero");
    if (p->pos < p->n && (p->s[p->pos] == '.' || p->s[p->pos] == 'e' || p->s[p->pos] == 'E'))
        return jfail(p, "expected an integer, found a fraction or exponent");
    *out = v;
    return MOE_OK;
}

/* Validates any JSON value (for fields the format does not define). */
static moe_status skip_value(jparser *p, int depth) {
    moe_status st;
    if (depth > MOE_ST_MAX_DEPTH) return jfail(p, "values nested deeper than %d levels", MOE_ST_MAX_DEPTH);
    int c = peek(p);
    if (c == '"') return parse_string(p, NULL, NULL);
    if (c == '{' || c == '[') {
        char close = c == '{' ? '}' : ']';
        p->pos++;
        if (peek(p) == close) { p->pos++; return MOE_OK; }
        for (;;) {
            if (c == '{') {
                if ((st = parse_string(p, NULL, NULL)) || (st = expect(p, ':'))) return st;
            }
            if ((st = skip_value(p, depth + 1))) return st;
            int d = peek(p);
            if (d == ',') { p->pos++; continue; }
            return expect(p, close);
        }
    }
    if (c == '-' || (c >= '0' && c <= '9')) {
        /* -?(0|[1-9][0-9]*)(\.[0-9]+)?([eE][+-]?[0-9]+)? */
        if (c == '-') p->pos++;
        uint64_t s0 = p->pos;
        while (p->pos < p->n && p->s[p->pos] >= '0' && p->s[p->pos] <= '9') p->pos++;
        if (p->pos == s0 || (p->pos - s0 > 1 && p->s[s0] == '0')) return jfail(p, "malformed number");
        if (p->pos < p->n && p->s[p->pos] == '.') {
            uint64_t s1 = ++p->pos;
            while (p->pos < p->n && p->s[p->pos] >= '0' && p->s[p->pos] <= '9') p->pos++;
            if (p->pos == s1) return jfail(p, "malformed number");
        }
        if (p->pos < p->n && (p->s[p->pos] == 'e' || p->s[p->pos] == 'E')) {
            p->pos++;
            if (p->pos < p->n && (p->s[p->pos] == '+' || p->s[p->pos] == '-')) p->pos++;
            uint64_t s2 = p->pos;
            while (p->pos < p->n && p->s[p->pos] >= '0' && p->s[p->pos] <= '9') p->pos++;
            if (p->pos == s2) return jfail(p, "malformed number");
        }
        return MOE_OK;
    }
    static const char *lits[] = {"true", "false", "null"};
    for (size_t i = 0; i < MOE_ARRAY_LEN(lits); i++) {
        size_t l = strlen(lits[i]);
        if (p->n - p->pos >= l && memcmp(p->s + p->pos, lits[i], l) == 0) {
            p->pos += l;
            return MOE_OK;
        }
    }
    if (c < 0) return jfail(p, "expected a value but the header ends");
    return jfail(p, "expected a JSON value");
}

static moe_status parse_metadata(jparser *p) {
    moe_safetensors *st = p->st;
    moe_status s;
    snprintf(p->ctx, sizeof p->ctx, "__metadata__");
    if (peek(p) != '{') return jfail(p, "must be an object of strings");
    p->pos++;
    if (peek(p) == '}') { p->pos++; return MOE_OK; }
    for (;;) {
        char *key, *val;
        snprintf(p->ctx, sizeof p->ctx, "__metadata__");
        if ((s = parse_string(p, &key, NULL)) || (s = expect(p, ':'))) return s;
        snprintf(p->ctx, sizeof p->ctx, "__metadata__: key '%.200s'", key);
        if (peek(p) != '"') return jfail(p, "metadata values must be strings");
        if ((s = parse_string(p, &val, NULL))) return s;
        for (int64_t i = 0; i < st->n_meta; i++)
            if (strcmp(st->meta[i].key, key) == 0) return jfail(p, "duplicate key");
        if (st->n_meta == st->cap_meta) {
            int64_t cap = st->cap_meta ? 2 * st->cap_meta : 8;
            st_meta *m = realloc(st->meta, (size_t)cap * sizeof *m);
            if (!m) return moe_error(MOE_ERR_NOMEM, "%s: out of memory reading the header", st->path);
            st->meta = m;
            st->cap_meta = cap;
        }
        st->meta[st->n_meta++] = (st_meta){key, val};
        int c = peek(p);
        if (c == ',') { p->pos++; continue; }
        return expect(p, '}');
    }
}

static moe_status parse_dtype(jparser *p, moe_st_dtype *out) {
    char *name;
    moe_status s;
    uint64_t at = p->pos;
    if (peek(p) != '"') return jfail(p, "dtype must be a string");
    if ((s = parse_string(p, &name, NULL))) return s;
    for (int i = 0; i < MOE_ST_N_DTYPES; i++)
        if (strcmp(name, g_dtypes[i].name) == 0) { *out = (moe_st_dtype)i; return MOE_OK; }
    p->pos = at;
    return jfail(p, "unknown dtype \"%.40s\"", name);
}

static moe_status parse_tensor(jparser *p, moe_st_tensor *t) {
    moe_status s;
    bool have_dtype = false, have_shape = false, have_off = false;
    if (peek(p) != '{') return jfail(p, "a tensor entry must be an object");
    p->pos++;
    char base_ctx[sizeof p->ctx];
    snprintf(base_ctx, sizeof base_ctx, "%s", p->ctx);
    if (peek(p) != '}') for (;;) {
        char *field;
        if ((s = parse_string(p, &field, NULL)) || (s = expect(p, ':'))) return s;
        snprintf(p->ctx, sizeof p->ctx, "%.270s: %.40s", base_ctx, field);
        bool *seen = NULL;
        if (strcmp(field, "dtype") == 0) {
            seen = &have_dtype;
            if (!*seen && (s = parse_dtype(p, &t->dtype))) return s;
        } else if (strcmp(field, "shape") == 0) {
            seen = &have_shape;
            if (!*seen) {
                if ((s = expect(p, '['))) return s;
                t->n_dims = 0;
                if (peek(p) == ']') p->pos++;
                else for (;;) {
                    uint64_t v;
                    if (t->n_dims == MOE_ST_MAX_DIMS) return jfail(p, "more than %d dimensions", MOE_ST_MAX_DIMS);
                    if ((s = parse_uint(p, &v))) return s;
                    t->shape[t->n_dims++] = (int64_t)v;
                    if (peek(p) == ',') { p->pos++; continue; }
                    if ((s = expect(p, ']'))) return s;
                    break;
                }
            }
        } else if (strcmp(field, "data_offsets") == 0) {
            seen = &have_off;
            if (!*seen) {
                if ((s = expect(p, '[')) || (s = parse_uint(p, &t->begin)) || (s = expect(p, ',')) ||
                    (s = parse_uint(p, &t->end)))
                    return s;
                if (peek(p) != ']') return jfail(p, "must be exactly two integers [begin, end]");
                p->pos++;
            }
        } else if ((s = skip_value(p, 1))) {
            return s; /* unknown fields are allowed, as serde allows them */
        }
        if (seen) {
            if (*seen) return jfail(p, "field given twice");
            *seen = true;
        }
        snprintf(p->ctx, sizeof p->ctx, "%s", base_ctx);
        if (peek(p) == ',') { p->pos++; continue; }
        if ((s = expect(p, '}'))) return s;
        break;
    } else p->pos++;
    if (!have_dtype) return jfail(p, "missing field \"dtype\"");
    if (!have_shape) return jfail(p, "missing field \"shape\"");
    if (!have_off) return jfail(p, "missing field \"data_offsets\"");
    return MOE_OK;
}

static moe_status parse_json(moe_safetensors *st) {
    jparser p = {.st = st, .s = (const char *)st->base + 8, .n = st->header_len};
    moe_status s;
    if (p.n == 0 || p.s[0] != '{')
        return moe_error(MOE_ERR_FORMAT, "%s: header: does not start with '{' (not a safetensors file?)", st->path);
    p.pos = 1;
    if (peek(&p) == '}') p.pos++;
    else for (;;) {
        char *name;
        size_t len;
        p.ctx[0] = 0;
        if ((s = parse_string(&p, &name, &len)) || (s = expect(&p, ':'))) return s;
        if (strlen(name) != len) return jfail(&p, "tensor name contains a NUL character");
        if (strcmp(name, "__metadata__") == 0) {
            if (p.seen_meta) return jfail(&p, "__metadata__ given twice");
            p.seen_meta = true;
            if ((s = parse_metadata(&p))) return s;
        } else {
            if (len == 0) return jfail(&p, "empty tensor name");
            if (st->n_tensors == st->cap_tensors) {
                int64_t cap = st->cap_tensors ? 2 * st->cap_tensors : 16;
                moe_st_tensor *nt = realloc(st->tensors, (size_t)cap * sizeof *nt);
                if (!nt) return moe_error(MOE_ERR_NOMEM, "%s: out of memory reading the header", st->path);
                st->tensors = nt;
                st->cap_tensors = cap;
            }
            moe_st_tensor *t = &st->tensors[st->n_tensors];
            memset(t, 0, sizeof *t);
            t->name = name;
            snprintf(p.ctx, sizeof p.ctx, "tensor '%.256s'", name);
            if ((s = parse_tensor(&p, t))) return s;
            st->n_tensors++;
        }
        p.ctx[0] = 0;
        if (peek(&p) == ',') { p.pos++; continue; }
        if ((s = expect(&p, '}'))) return s;
        break;
    }
    p.ctx[0] = 0;
    if (peek(&p) >= 0) return jfail(&p, "extra bytes after the header object");
    return MOE_OK;
}

/* The reference library parses the header as a UTF-8 string and refuses anything else. */
static moe_status check_utf8(const moe_safetensors *st, const uint8_t *s, uint64_t n) {
    uint64_t i = 0;
    while (i < n) {
        uint8_t c = s[i];
        int len = c < 0x80 ? 1 : (c & 0xe0) == 0xc0 ? 2 : (c & 0xf0) == 0xe0 ? 3 : (c & 0xf8) == 0xf0 ? 4 : 0;
        bool ok = len > 0 && (uint64_t)len <= n - i;
        uint32_t cp = len == 1 ? c : len == 2 ? (c & 0x1fu) : len == 3 ? (c & 0x0fu) : (c & 0x07u);
        for (int k = 1; ok && k < len; k++) {
            if ((s[i + k] & 0xc0) != 0x80) ok = false;
            cp = (cp << 6) | (s[i + k] & 0x3fu);
        }
        /* no overlong forms, no surrogates, nothing past U+10FFFF */
        if (ok && ((len == 2 && cp < 0x80) || (len == 3 && cp < 0x800) || (len == 4 && cp < 0x10000) ||
                   (cp >= 0xd800 && cp <= 0xdfff) || cp > 0x10ffff))
            ok = false;
        if (!ok)
            return moe_error(MOE_ERR_FORMAT, "%s: header: not valid UTF-8 (at byte %llu of the header)",
                             st->path, (unsigned long long)i);
        i += (uint64_t)len;
    }
    return MOE_OK;
}

/* Sort keys carry what they compare, so qsort needs no context. */
typedef struct { uint64_t begin, end; int64_t idx; } off_key;
typedef struct { const char *name; int64_t idx; } name_key;

static int cmp_off(const void *a, const void *b) {
    const off_key *x = a, *y = b;
    if (x->begin != y->begin) return x->begin < y->begin ? -1 : 1;
    if (x->end != y->end) return x->end < y->end ? -1 : 1;
    return 0;
}
static int cmp_name(const void *a, const void *b) {
    return strcmp(((const name_key *)a)->name, ((const name_key *)b)->name);
}

/* Offsets against shapes and the file: each tensor's bytes = n_elem × dtype size, and the
 * tensors tile the data section exactly (the reference library's validate()). */
static moe_status check_layout(moe_safetensors *st) {
    uint64_t data_size = st->size - 8 - st->header_len;
    for (int64_t i = 0; i < st->n_tensors; i++) {
        moe_st_tensor *t = &st->tensors[i];
        uint64_t n = 1, bytes;
        for (int d = 0; d < t->n_dims; d++)
            if (!moe_mul_ok(n, (uint64_t)t->shape[d], &n) || n > (uint64_t)INT64_MAX)
                return moe_error(MOE_ERR_FORMAT, "%s: tensor '%s': shape: the number of elements overflows 64 bits",
                                 st->path, t->name);
        if (!moe_mul_ok(n, moe_st_dtype_size(t->dtype), &bytes))
            return moe_error(MOE_ERR_FORMAT, "%s: tensor '%s': shape: the size in bytes overflows 64 bits",
                             st->path, t->name);
        t->n_elem = (int64_t)n;
        if (t->end < t->begin)
            return moe_error(MOE_ERR_FORMAT, "%s: tensor '%s': data_offsets: end %llu is before begin %llu",
                             st->path, t->name, (unsigned long long)t->end, (unsigned long long)t->begin);
        if (t->end > data_size)
            return moe_error(MOE_ERR_FORMAT,
                             "%s: tensor '%s': data_offsets: extends past end of file (offsets [%llu, %llu], data section %llu bytes)",
                             st->path, t->name, (unsigned long long)t->begin, (unsigned long long)t->end,
                             (unsigned long long)data_size);
        if (t->end - t->begin != bytes)
            return moe_error(MOE_ERR_FORMAT,
                             "%s: tensor '%s': data_offsets: [%llu, %llu] is %llu bytes but %s × %lld elements is %llu bytes",
                             st->path, t->name, (unsigned long long)t->begin, (unsigned long long)t->end,
                             (unsigned long long)(t->end - t->begin), moe_st_dtype_name(t->dtype),
                             (long long)n, (unsigned long long)bytes);
        t->data = st->base + 8 + st->header_len + t->begin;
    }
    size_t nt = (size_t)st->n_tensors;
    off_key *ok = malloc((nt + 1) * sizeof *ok);
    name_key *nk = malloc((nt + 1) * sizeof *nk);
    st->by_name = malloc((nt + 1) * sizeof *st->by_name);
    if (!ok || !nk || !st->by_name) { free(ok); free(nk); return moe_error(MOE_ERR_NOMEM, "%s: out of memory", st->path); }
    for (size_t i = 0; i < nt; i++) {
        ok[i] = (off_key){st->tensors[i].begin, st->tensors[i].end, (int64_t)i};
        nk[i] = (name_key){st->tensors[i].name, (int64_t)i};
    }
    qsort(ok, nt, sizeof *ok, cmp_off);
    qsort(nk, nt, sizeof *nk, cmp_name);
    uint64_t at = 0;
    moe_status s = MOE_OK;
    /* names first: a duplicate also overlaps, and its name is the clearer message */
    for (size_t i = 1; i < nt && !s; i++)
        if (strcmp(nk[i].name, nk[i - 1].name) == 0)
            s = moe_error(MOE_ERR_FORMAT, "%s: tensor '%s': duplicate tensor name", st->path, nk[i].name);
    for (size_t i = 0; i < nt && !s; i++) {
        const moe_st_tensor *t = &st->tensors[ok[i].idx];
        if (t->begin != at)
            s = moe_error(MOE_ERR_FORMAT,
                          t->begin < at ? "%s: tensor '%s': data_offsets: begin %llu overlaps the previous tensor (which ends at %llu)"
                                        : "%s: tensor '%s': data_offsets: begin %llu leaves a hole after the previous tensor (which ends at %llu)",
                          st->path, t->name, (unsigned long long)t->begin, (unsigned long long)at);
        at = t->end;
    }
    if (!s && at != data_size)
        s = moe_error(MOE_ERR_FORMAT, "%s: the tensors end at data byte %llu but the file has %llu data bytes after the header",
                      st->path, (unsigned long long)at, (unsigned long long)data_size);
    for (size_t i = 0; i < nt; i++) st->by_name[i] = nk[i].idx;
    free(ok);
    free(nk);
    return s;
}

static moe_status parse_file(moe_safetensors *st) {
    if (st->size < 8)
        return moe_error(MOE_ERR_FORMAT, "%s: not a safetensors file: %llu bytes, shorter than the 8-byte header length",
                         st->path, (unsigned long long)st->size);
    uint64_t n;
    memcpy(&n, st->base, 8);
    if (n > MOE_ST_MAX_HEADER)
        return moe_error(MOE_ERR_FORMAT, "%s: header length %llu is larger than the format's limit of %llu bytes",
                         st->path, (unsigned long long)n, (unsigned long long)MOE_ST_MAX_HEADER);
    if (n > st->size - 8)
        return moe_error(MOE_ERR_FORMAT, "%s: header length %llu runs past the end of the file (%llu bytes)",
                         st->path, (unsigned long long)n, (unsigned long long)st->size);
    st->header_len = n;
    moe_status s;
    if ((s = check_utf8(st, st->base + 8, n)) || (s = parse_json(st))) return s;
    return check_layout(st);
}

/* ---------------------------------------------------------------- open / close */

static moe_safetensors *st_new(const char *name) {
    moe_safetensors *st = moe_calloc(1, sizeof *st);
    if (!st) return NULL;
    moe_arena_init(&st->arena, 64 * 1024);
    st->path = moe_arena_strndup(&st->arena, name, strlen(name));
    if (!st->path) { moe_arena_free(&st->arena); free(st); return NULL; }
    return st;
}

moe_safetensors *moe_st_open_memory(const void *data, size_t size, const char *name) {
    moe_safetensors *st = st_new(name ? name : "<memory>");
    if (!st) return NULL;
    st->base = data;
    st->size = size;
    if (parse_file(st) != MOE_OK) { moe_st_close(st); return NULL; }
    return st;
}

moe_safetensors *moe_st_open(const char *path) {
    const void *base;
    uint64_t size;
    if (moe_map_file(path, &base, &size) != MOE_OK) return NULL;
    moe_safetensors *st = st_new(path);
    if (!st) { moe_unmap_file(base, size); return NULL; }
    st->base = base;
    st->size = size;
    st->mapped = base != NULL;
    if (parse_file(st) != MOE_OK) { moe_st_close(st); return NULL; }
    return st;
}

void moe_st_close(moe_safetensors *st) {
    if (!st) return;
    if (st->mapped) moe_unmap_file(st->base, st->size);
    free(st->tensors);
    free(st->by_name);
    free(st->meta);
    moe_arena_free(&st->arena);
    free(st);
}

/* ---------------------------------------------------------------- accessors */

const char *moe_st_path(const moe_safetensors *st) { return st->path; }
int64_t moe_st_n_tensors(const moe_safetensors *st) { return st->n_tensors; }
const moe_st_tensor *moe_st_tensor_at(const moe_safetensors *st, int64_t i) {
    return i >= 0 && i < st->n_tensors ? &st->tensors[i] : NULL;
}

const moe_st_tensor *moe_st_find(const moe_safetensors *st, const char *name) {
    int64_t lo = 0, hi = st->n_tensors;
    while (lo < hi) {
        int64_t mid = lo + (hi - lo) / 2;
        int c = strcmp(st->tensors[st->by_name[mid]].name, name);
        if (c == 0) return &st->tensors[st->by_name[mid]];
        if (c < 0) lo = mid + 1; else hi = mid;
    }
    return NULL;
}

int64_t moe_st_n_metadata(const moe_safetensors *st) { return st->n_meta; }
const char *moe_st_metadata_key(const moe_safetensors *st, int64_t i) {
    return i >= 0 && i < st->n_meta ? st->meta[i].key : NULL;
}
const char *moe_st_metadata_value(const moe_safetensors *st, int64_t i) {
    return i >= 0 && i < st->n_meta ? st->meta[i].value : NULL;
}
const char *moe_st_metadata_get(const moe_safetensors *st, const char *key) {
    for (int64_t i = 0; i < st->n_meta; i++)
        if (strcmp(st->meta[i].key, key) == 0) return st->meta[i].value;
    return NULL;
}

/* ---------------------------------------------------------------- conversions */

/* Element i of an integer or float tensor as a double (integers above 2^53 round; the
 * exact int64 path below does not go through here). */
static double elem_f64(const moe_st_tensor *t, int64_t i) {
    const uint8_t *p = (const uint8_t *)t->data + (size_t)i * moe_st_dtype_size(t->dtype);
    switch (t->dtype) {
    case MOE_ST_BOOL: return p[0] != 0;
    case MOE_ST_U8: return p[0];
    case MOE_ST_I8: return (int8_t)p[0];
    case MOE_ST_I16: { int16_t v; memcpy(&v, p, 2); return v; }
    case MOE_ST_U16: { uint16_t v; memcpy(&v, p, 2); return v; }
    case MOE_ST_F16: { uint16_t v; memcpy(&v, p, 2); return moe_f16_to_f32(v); }
    case MOE_ST_BF16: { uint16_t v; memcpy(&v, p, 2); return moe_bf16_to_f32(v); }
    case MOE_ST_I32: { int32_t v; memcpy(&v, p, 4); return v; }
    case MOE_ST_U32: { uint32_t v; memcpy(&v, p, 4); return v; }
    case MOE_ST_F32: { float v; memcpy(&v, p, 4); return v; }
    case MOE_ST_F64: { double v; memcpy(&v, p, 8); return v; }
    case MOE_ST_I64: { int64_t v; memcpy(&v, p, 8); return (double)v; }
    case MOE_ST_U64: { uint64_t v; memcpy(&v, p, 8); return (double)v; }
    default: return NAN;
    }
}

static bool is_float(moe_st_dtype t) {
    return t == MOE_ST_F16 || t == MOE_ST_BF16 || t == MOE_ST_F32 || t == MOE_ST_F64 ||
           t == MOE_ST_F8_E4M3 || t == MOE_ST_F8_E5M2;
}

moe_status moe_st_read_f32(const moe_safetensors *st, const moe_st_tensor *t, float *out) {
    if (t->dtype == MOE_ST_F8_E4M3 || t->dtype == MOE_ST_F8_E5M2)
        return moe_error(MOE_ERR_UNSUPPORTED, "%s: tensor '%s': dtype %s cannot be read as floats (F32, F64, F16, BF16 and integers can)",
                         st->path, t->name, moe_st_dtype_name(t->dtype));
    if (t->dtype == MOE_ST_F32) {
        memcpy(out, t->data, (size_t)t->n_elem * 4);
        return MOE_OK;
    }
    for (int64_t i = 0; i < t->n_elem; i++) out[i] = (float)elem_f64(t, i);
    return MOE_OK;
}

moe_status moe_st_read_i64(const moe_safetensors *st, const moe_st_tensor *t, int64_t *out) {
    if (t->dtype == MOE_ST_F8_E4M3 || t->dtype == MOE_ST_F8_E5M2)
        return moe_error(MOE_ERR_UNSUPPORTED, "%s: tensor '%s': dtype %s cannot be read as integers",
                         st->path, t->name, moe_st_dtype_name(t->dtype));
    for (int64_t i = 0; i < t->n_elem; i++) {
        const uint8_t *p = (const uint8_t *)t->data + (size_t)i * moe_st_dtype_size(t->dtype);
        if (t->dtype == MOE_ST_I64) {
            memcpy(&out[i], p, 8);
        } else if (t->dtype == MOE_ST_U64) {
            uint64_t v;
            memcpy(&v, p, 8);
            if (v > (uint64_t)INT64_MAX)
                return moe_error(MOE_ERR_FORMAT, "%s: tensor '%s': element %lld (%llu) does not fit in int64",
                                 st->path, t->name, (long long)i, (unsigned long long)v);
            out[i] = (int64_t)v;
        } else {
            double v = elem_f64(t, i);
            if (is_float(t->dtype) && !(v == floor(v) && fabs(v) < 9.0e15))
                return moe_error(MOE_ERR_FORMAT, "%s: tensor '%s': element %lld (%g) is not an integer",
                                 st->path, t->name, (long long)i, v);
            out[i] = (int64_t)v;
        }
    }
    return MOE_OK;
}

/* ---------------------------------------------------------------- writer */

typedef struct {
    char *name;
    moe_st_dtype dtype;
    int n_dims;
    int64_t shape[MOE_ST_MAX_DIMS];
    uint64_t nbytes;
    const void *data;
} wtensor;

struct moe_st_writer {
    wtensor *t;
    int64_t n, cap;
    st_meta *meta;   /* owned copies */
    int64_t n_meta, cap_meta;
};

moe_st_writer *moe_st_writer_init(void) { return moe_calloc(1, sizeof(moe_st_writer)); }

void moe_st_writer_free(moe_st_writer *w) {
    if (!w) return;
    for (int64_t i = 0; i < w->n; i++) free(w->t[i].name);
    for (int64_t i = 0; i < w->n_meta; i++) { free((char *)w->meta[i].key); free((char *)w->meta[i].value); }
    free(w->t);
    free(w->meta);
    free(w);
}

moe_status moe_st_writer_add(moe_st_writer *w, const char *name, moe_st_dtype dtype, int n_dims,
                             const int64_t *shape, const void *data) {
    if (!name || !*name || strcmp(name, "__metadata__") == 0)
        return moe_error(MOE_ERR_INVALID, "safetensors writer: invalid tensor name '%s'", name ? name : "(null)");
    if (dtype != MOE_ST_F32 && dtype != MOE_ST_F64 && dtype != MOE_ST_I64)
        return moe_error(MOE_ERR_INVALID, "safetensors writer: tensor '%s': dtype %s is not written (F32, F64, I64 are)",
                         name, moe_st_dtype_name(dtype));
    if (n_dims < 0 || n_dims > MOE_ST_MAX_DIMS)
        return moe_error(MOE_ERR_INVALID, "safetensors writer: tensor '%s': %d dimensions", name, n_dims);
    for (int64_t i = 0; i < w->n; i++)
        if (strcmp(w->t[i].name, name) == 0)
            return moe_error(MOE_ERR_INVALID, "safetensors writer: tensor '%s' added twice", name);
    uint64_t n = 1;
    for (int d = 0; d < n_dims; d++)
        if (shape[d] < 0 || !moe_mul_ok(n, (uint64_t)shape[d], &n))
            return moe_error(MOE_ERR_INVALID, "safetensors writer: tensor '%s': bad shape", name);
    uint64_t nbytes;
    if (!moe_mul_ok(n, moe_st_dtype_size(dtype), &nbytes))
        return moe_error(MOE_ERR_INVALID, "safetensors writer: tensor '%s': size overflows", name);
    if (w->n == w->cap) {
        int64_t cap = w->cap ? 2 * w->cap : 16;
        wtensor *nt = realloc(w->t, (size_t)cap * sizeof *nt);
        if (!nt) return moe_error(MOE_ERR_NOMEM, "safetensors writer: out of memory");
        w->t = nt;
        w->cap = cap;
    }
    wtensor *t = &w->t[w->n];
    memset(t, 0, sizeof *t);
    t->name = strdup(name);
    if (!t->name) return moe_error(MOE_ERR_NOMEM, "safetensors writer: out of memory");
    t->dtype = dtype;
    t->n_dims = n_dims;
    for (int d = 0; d < n_dims; d++) t->shape[d] = shape[d];
    t->nbytes = nbytes;
    t->data = data;
    w->n++;
    return MOE_OK;
}

moe_status moe_st_writer_set_metadata(moe_st_writer *w, const char *key, const char *value) {
    for (int64_t i = 0; i < w->n_meta; i++)
        if (strcmp(w->meta[i].key, key) == 0) {
            char *v = strdup(value);
            if (!v) return moe_error(MOE_ERR_NOMEM, "safetensors writer: out of memory");
            free((char *)w->meta[i].value);
            w->meta[i].value = v;
            return MOE_OK;
        }
    if (w->n_meta == w->cap_meta) {
        int64_t cap = w->cap_meta ? 2 * w->cap_meta : 8;
        st_meta *m = realloc(w->meta, (size_t)cap * sizeof *m);
        if (!m) return moe_error(MOE_ERR_NOMEM, "safetensors writer: out of memory");
        w->meta = m;
        w->cap_meta = cap;
    }
    char *k = strdup(key), *v = strdup(value);
    if (!k || !v) { free(k); free(v); return moe_error(MOE_ERR_NOMEM, "safetensors writer: out of memory"); }
    w->meta[w->n_meta++] = (st_meta){k, v};
    return MOE_OK;
}

/* A growable string for the header. */
typedef struct { char *s; size_t len, cap; bool oom; } sbuf;

static void sb_put(sbuf *b, const char *s, size_t n) {
    if (b->oom) return;
    if (b->len + n + 1 > b->cap) {
        size_t cap = b->cap ? b->cap : 256;
        while (cap < b->len + n + 1) cap *= 2;
        char *ns = realloc(b->s, cap);
        if (!ns) { b->oom = true; return; }
        b->s = ns;
        b->cap = cap;
    }
    memcpy(b->s + b->len, s, n);
    b->len += n;
    b->s[b->len] = 0;
}
static void sb_str(sbuf *b, const char *s) { sb_put(b, s, strlen(s)); }
static void sb_json_str(sbuf *b, const char *s) {
    sb_str(b, "\"");
    for (; *s; s++) {
        unsigned char c = (unsigned char)*s;
        char esc[8];
        if (c == '"' || c == '\\') { esc[0] = '\\'; esc[1] = (char)c; sb_put(b, esc, 2); }
        else if (c < 0x20) { snprintf(esc, sizeof esc, "\\u%04x", c); sb_str(b, esc); }
        else sb_put(b, (const char *)&c, 1);
    }
    sb_str(b, "\"");
}
static void sb_u64(sbuf *b, uint64_t v) {
    char num[32];
    snprintf(num, sizeof num, "%llu", (unsigned long long)v);
    sb_str(b, num);
}

moe_status moe_st_writer_write(moe_st_writer *w, const char *path) {
    sbuf h = {0};
    uint64_t off = 0;
    sb_str(&h, "{");
    for (int64_t i = 0; i < w->n; i++) {
        const wtensor *t = &w->t[i];
        if (i) sb_str(&h, ",");
        sb_json_str(&h, t->name);
        sb_str(&h, ":{\"dtype\":\"");
        sb_str(&h, moe_st_dtype_name(t->dtype));
        sb_str(&h, "\",\"shape\":[");
        for (int d = 0; d < t->n_dims; d++) {
            if (d) sb_str(&h, ",");
            sb_u64(&h, (uint64_t)t->shape[d]);
        }
        sb_str(&h, "],\"data_offsets\":[");
        sb_u64(&h, off);
        sb_str(&h, ",");
        off += t->nbytes;
        sb_u64(&h, off);
        sb_str(&h, "]}");
    }
    if (w->n_meta) {
        sb_str(&h, w->n ? ",\"__metadata__\":{" : "\"__metadata__\":{");
        for (int64_t i = 0; i < w->n_meta; i++) {
            if (i) sb_str(&h, ",");
            sb_json_str(&h, w->meta[i].key);
            sb_str(&h, ":");
            sb_json_str(&h, w->meta[i].value);
        }
        sb_str(&h, "}");
    }
    sb_str(&h, "}");
    while (!h.oom && (8 + h.len) % 8) sb_str(&h, " "); /* the data start 8-byte aligned */
    if (h.oom) { free(h.s); return moe_error(MOE_ERR_NOMEM, "%s: out of memory building the header", path); }

    moe_atomic_file af;
    moe_status st = moe_atomic_open(&af, path);
    if (st) { free(h.s); return st; }
    uint64_t hl = h.len; /* little-endian on every platform moe.c builds for */
    st = moe_atomic_write(&af, &hl, 8);
    if (!st) st = moe_atomic_write(&af, h.s, h.len);
    for (int64_t i = 0; !st && i < w->n; i++)
        if (w->t[i].nbytes) st = moe_atomic_write(&af, w->t[i].data, w->t[i].nbytes);
    free(h.s);
    return moe_atomic_close(&af, st);
}
