/* gguf_write.c — the GGUF writer: collects metadata (deep copies) and tensor references,
 * then writes a version-3 file laid out exactly as llama.cpp's gguf_write_to_file does
 * (data section aligned, each tensor padded to the alignment), atomically. */
#include "io/gguf.h"
#include "io/atomic.h"
#include "core/types.h"

#include <errno.h>
#include <fcntl.h>
#include <stdio.h>
#include <stdlib.h>
#include <sys/stat.h>
#include <unistd.h>

typedef struct {
    char *key;
    moe_gguf_value v;   /* owns its strings and array data (recursively) */
} wkv;

typedef struct {
    char *name;
    int type, n_dims;
    int64_t ne[GGUF_MAX_DIMS];
    const void *data;   /* the caller's, referenced until the write */
    uint64_t nbytes;
} wtensor;

struct moe_gguf_writer {
    wkv *kv;
    int64_t n_kv, cap_kv;
    wtensor *t;
    int64_t n_t, cap_t;
    /* open-addressing set of tensor indices (+1; 0 = empty) for duplicate detection:
     * per-expert files have tens of thousands of tensors, too many for a linear scan */
    uint32_t *t_index;
    uint64_t t_index_cap;
};

/* ---------------------------------------------------------------- values */

static void value_free(moe_gguf_value *v) {
    if (v->type == MOE_GGUF_STRING) {
        free((void *)v->v.str.ptr);
    } else if (v->type == MOE_GGUF_ARRAY) {
        if (v->v.arr.type == MOE_GGUF_STRING) {
            moe_gguf_str *s = (moe_gguf_str *)v->v.arr.data;
            for (uint64_t i = 0; s && i < v->v.arr.n; i++) free((void *)s[i].ptr);
        } else if (v->v.arr.type == MOE_GGUF_ARRAY) {
            moe_gguf_value *a = (moe_gguf_value *)v->v.arr.data;
            for (uint64_t i = 0; a && i < v->v.arr.n; i++) value_free(&a[i]);
        }
        free((void *)v->v.arr.data);
    }
    memset(v, 0, sizeof *v);
}

static bool str_copy(moe_gguf_str *dst, const char *src, uint64_t len) {
    if (len >= SIZE_MAX) return false;
    char *p = moe_malloc((size_t)len + 1);
    if (!p) return false;
    if (len) memcpy(p, src, (size_t)len);
    p[len] = 0;
    dst->ptr = p;
    dst->len = len;
    return true;
}

/* Checks that a widened scalar fits its declared type, so the bytes written are the
 * value the caller meant (a u8 holding 300 is a bug, not something to truncate). */
static bool scalar_fits(const moe_gguf_value *v) {
    switch (v->type) {
    case MOE_GGUF_U8: return v->v.u64 <= UINT8_MAX;
    case MOE_GGUF_U16: return v->v.u64 <= UINT16_MAX;
    case MOE_GGUF_U32: return v->v.u64 <= UINT32_MAX;
    case MOE_GGUF_I8: return v->v.i64 >= INT8_MIN && v->v.i64 <= INT8_MAX;
    case MOE_GGUF_I16: return v->v.i64 >= INT16_MIN && v->v.i64 <= INT16_MAX;
    case MOE_GGUF_I32: return v->v.i64 >= INT32_MIN && v->v.i64 <= INT32_MAX;
    default: return true;
    }
}

/* Deep-copies src into dst (zeroed on failure). `key` is for messages. */
static moe_status value_copy(moe_gguf_value *dst, const moe_gguf_value *src, const char *key, int depth) {
    memset(dst, 0, sizeof *dst);
    if ((unsigned)src->type > MOE_GGUF_F64)
        return moe_error(MOE_ERR_INVALID, "gguf writer: key '%s': unknown value type %d", key, (int)src->type);
    if (src->type == MOE_GGUF_STRING) {
        if (!src->v.str.ptr && src->v.str.len)
            return moe_error(MOE_ERR_INVALID, "gguf writer: key '%s': string without data", key);
        if (!str_copy(&dst->v.str, src->v.str.ptr, src->v.str.len)) return MOE_ERR_NOMEM;
        dst->type = MOE_GGUF_STRING;
        return MOE_OK;
    }
    if (src->type != MOE_GGUF_ARRAY) {
        if (!scalar_fits(src))
            return moe_error(MOE_ERR_INVALID, "gguf writer: key '%s': value out of range for its type", key);
        *dst = *src;
        if (dst->type == MOE_GGUF_BOOL) dst->v.b = src->v.b != 0;
        return MOE_OK;
    }
    if (depth >= GGUF_MAX_DEPTH)
        return moe_error(MOE_ERR_INVALID, "gguf writer: key '%s': arrays nested more than %d deep", key, GGUF_MAX_DEPTH);
    moe_gguf_type et = src->v.arr.type;
    uint64_t n = src->v.arr.n;
    if ((unsigned)et > MOE_GGUF_F64)
        return moe_error(MOE_ERR_INVALID, "gguf writer: key '%s': unknown array element type %d", key, (int)et);
    if (n && !src->v.arr.data)
        return moe_error(MOE_ERR_INVALID, "gguf writer: key '%s': array of %llu elements without data", key,
                         (unsigned long long)n);
    size_t es = et == MOE_GGUF_STRING ? sizeof(moe_gguf_str) : et == MOE_GGUF_ARRAY ? sizeof(moe_gguf_value) : moe_gguf_scalar_size(et);
    uint64_t bytes;
    if (!moe_mul_ok(n, es, &bytes) || bytes >= SIZE_MAX)
        return moe_error(MOE_ERR_INVALID, "gguf writer: key '%s': array of %llu elements is too large", key,
                         (unsigned long long)n);
    /* calloc so that a partly copied array frees cleanly */
    void *data = moe_calloc(1, (size_t)bytes);
    if (!data) return MOE_ERR_NOMEM;
    dst->type = MOE_GGUF_ARRAY;
    dst->v.arr.type = et;
    dst->v.arr.data = data;
    if (et == MOE_GGUF_STRING) {
        const moe_gguf_str *s = src->v.arr.data;
        moe_gguf_str *d = data;
        for (uint64_t i = 0; i < n; i++) {
            if (!s[i].ptr && s[i].len) {
                dst->v.arr.n = i;
                value_free(dst);
                return moe_error(MOE_ERR_INVALID, "gguf writer: key '%s': string %llu of the array has no data",
                                 key, (unsigned long long)i);
            }
            if (!str_copy(&d[i], s[i].ptr, s[i].len)) { dst->v.arr.n = i; value_free(dst); return MOE_ERR_NOMEM; }
        }
    } else if (et == MOE_GGUF_ARRAY) {
        const moe_gguf_value *s = src->v.arr.data;
        moe_gguf_value *d = data;
        for (uint64_t i = 0; i < n; i++) {
            moe_status st = s[i].type == MOE_GGUF_ARRAY
                                ? value_copy(&d[i], &s[i], key, depth + 1)
                                : moe_error(MOE_ERR_INVALID, "gguf writer: key '%s': element %llu of an array of arrays is not an array",
                                            key, (unsigned long long)i);
            if (st) { dst->v.arr.n = i; value_free(dst); return st; }
        }
    } else {
        if (bytes) memcpy(data, src->v.arr.data, (size_t)bytes);
        if (et == MOE_GGUF_BOOL) /* bool[] from outside may hold any byte; GGUF wants 0/1 */
            for (uint64_t i = 0; i < n; i++) ((uint8_t *)data)[i] = ((uint8_t *)data)[i] != 0;
    }
    dst->v.arr.n = n;
    return MOE_OK;
}

/* ---------------------------------------------------------------- writer */

moe_gguf_writer *moe_gguf_writer_init(void) {
    return moe_calloc(1, sizeof(moe_gguf_writer));
}

void moe_gguf_writer_free(moe_gguf_writer *w) {
    if (!w) return;
    for (int64_t i = 0; i < w->n_kv; i++) {
        free(w->kv[i].key);
        value_free(&w->kv[i].v);
    }
    for (int64_t i = 0; i < w->n_t; i++) free(w->t[i].name);
    free(w->kv);
    free(w->t);
    free(w->t_index);
    free(w);
}

static int64_t kv_find(const moe_gguf_writer *w, const char *key) {
    for (int64_t i = 0; i < w->n_kv; i++)
        if (strcmp(w->kv[i].key, key) == 0) return i;
    return -1;
}

/* Takes ownership of *v (already a deep copy): replaces the key's value, or appends. */
static moe_status kv_put(moe_gguf_writer *w, const char *key, moe_gguf_value *v) {
    if (strcmp(key, "general.alignment") == 0 &&
        (v->type != MOE_GGUF_U32 || v->v.u64 == 0 || (v->v.u64 & (v->v.u64 - 1)))) {
        value_free(v);
        return moe_error(MOE_ERR_INVALID, "gguf writer: key 'general.alignment' must be a u32 power of two");
    }
    int64_t i = kv_find(w, key);
    if (i >= 0) {
        value_free(&w->kv[i].v);
        w->kv[i].v = *v;
        return MOE_OK;
    }
    if (w->n_kv == w->cap_kv) {
        int64_t cap = w->cap_kv ? 2 * w->cap_kv : 32;
        wkv *nk = realloc(w->kv, (size_t)cap * sizeof *nk);
        if (!nk) { value_free(v); return moe_error(MOE_ERR_NOMEM, "gguf writer: out of memory"); }
        w->kv = nk;
        w->cap_kv = cap;
    }
    char *k = moe_malloc(strlen(key) + 1);
    if (!k) { value_free(v); return MOE_ERR_NOMEM; }
    strcpy(k, key);
    w->kv[w->n_kv].key = k;
    w->kv[w->n_kv].v = *v;
    w->n_kv++;
    return MOE_OK;
}

static moe_status check_args(const moe_gguf_writer *w, const char *key) {
    if (!w) return moe_error(MOE_ERR_INVALID, "gguf writer: NULL writer");
    if (!key || !*key) return moe_error(MOE_ERR_INVALID, "gguf writer: empty key");
    return MOE_OK;
}

moe_status moe_gguf_writer_set_value(moe_gguf_writer *w, const char *key, const moe_gguf_value *v) {
    moe_status st = check_args(w, key);
    if (st) return st;
    if (!v) return moe_error(MOE_ERR_INVALID, "gguf writer: key '%s': NULL value", key);
    moe_gguf_value copy;
    if ((st = value_copy(&copy, v, key, 0))) return st;
    return kv_put(w, key, &copy);
}

static moe_status set_scalar(moe_gguf_writer *w, const char *key, moe_gguf_value v) {
    return moe_gguf_writer_set_value(w, key, &v);
}

moe_status moe_gguf_writer_set_u32(moe_gguf_writer *w, const char *key, uint32_t x) {
    return set_scalar(w, key, (moe_gguf_value){.type = MOE_GGUF_U32, .v.u64 = x});
}
moe_status moe_gguf_writer_set_i32(moe_gguf_writer *w, const char *key, int32_t x) {
    return set_scalar(w, key, (moe_gguf_value){.type = MOE_GGUF_I32, .v.i64 = x});
}
moe_status moe_gguf_writer_set_u64(moe_gguf_writer *w, const char *key, uint64_t x) {
    return set_scalar(w, key, (moe_gguf_value){.type = MOE_GGUF_U64, .v.u64 = x});
}
moe_status moe_gguf_writer_set_f32(moe_gguf_writer *w, const char *key, float x) {
    return set_scalar(w, key, (moe_gguf_value){.type = MOE_GGUF_F32, .v.f64 = x});
}
moe_status moe_gguf_writer_set_bool(moe_gguf_writer *w, const char *key, bool x) {
    return set_scalar(w, key, (moe_gguf_value){.type = MOE_GGUF_BOOL, .v.b = x});
}
moe_status moe_gguf_writer_set_str(moe_gguf_writer *w, const char *key, const char *s) {
    if (!s) return moe_error(MOE_ERR_INVALID, "gguf writer: key '%s': NULL string", key ? key : "");
    return set_scalar(w, key, (moe_gguf_value){.type = MOE_GGUF_STRING, .v.str = {s, strlen(s)}});
}

moe_status moe_gguf_writer_set_arr(moe_gguf_writer *w, const char *key, moe_gguf_type type,
                                   const void *data, uint64_t n) {
    moe_status st = check_args(w, key);
    if (st) return st;
    if (type == MOE_GGUF_ARRAY)
        return moe_error(MOE_ERR_INVALID, "gguf writer: key '%s': arrays of arrays go through moe_gguf_writer_set_value", key);
    if (type != MOE_GGUF_STRING) {
        moe_gguf_value v = {.type = MOE_GGUF_ARRAY, .v.arr = {type, n, data}};
        return moe_gguf_writer_set_value(w, key, &v);
    }
    /* strings come as C strings: describe them as moe_gguf_str for value_copy */
    const char *const *strs = data;
    if (n && !strs) return moe_error(MOE_ERR_INVALID, "gguf writer: key '%s': array of %llu strings without data",
                                     key, (unsigned long long)n);
    uint64_t bytes;
    if (!moe_mul_ok(n, sizeof(moe_gguf_str), &bytes) || bytes >= SIZE_MAX)
        return moe_error(MOE_ERR_INVALID, "gguf writer: key '%s': array of %llu strings is too large", key,
                         (unsigned long long)n);
    moe_gguf_str *tmp = moe_malloc((size_t)bytes);
    if (!tmp) return MOE_ERR_NOMEM;
    for (uint64_t i = 0; i < n; i++) {
        if (!strs[i]) {
            free(tmp);
            return moe_error(MOE_ERR_INVALID, "gguf writer: key '%s': string %llu of the array is NULL", key,
                             (unsigned long long)i);
        }
        tmp[i].ptr = strs[i];
        tmp[i].len = strlen(strs[i]);
    }
    moe_gguf_value v = {.type = MOE_GGUF_ARRAY, .v.arr = {MOE_GGUF_STRING, n, tmp}};
    st = moe_gguf_writer_set_value(w, key, &v);
    free(tmp);
    return st;
}

moe_status moe_gguf_writer_remove(moe_gguf_writer *w, const char *key) {
    moe_status st = check_args(w, key);
    if (st) return st;
    int64_t i = kv_find(w, key);
    if (i < 0) return MOE_ERR_NOT_FOUND;
    free(w->kv[i].key);
    value_free(&w->kv[i].v);
    memmove(&w->kv[i], &w->kv[i + 1], (size_t)(w->n_kv - i - 1) * sizeof *w->kv);
    w->n_kv--;
    return MOE_OK;
}

/* ---------------------------------------------------------------- tensors */

static uint64_t hash_str(const char *s) {
    uint64_t h = 1469598103934665603ull; /* FNV-1a, as the reader */
    for (; *s; s++) h = (h ^ (uint8_t)*s) * 1099511628211ull;
    return h;
}

static bool t_index_has(const moe_gguf_writer *w, const char *name) {
    if (!w->t_index) return false;
    for (uint64_t h = hash_str(name) & (w->t_index_cap - 1); w->t_index[h]; h = (h + 1) & (w->t_index_cap - 1))
        if (strcmp(w->t[w->t_index[h] - 1].name, name) == 0) return true;
    return false;
}

static void t_index_put(moe_gguf_writer *w, uint32_t idx) {
    uint64_t h = hash_str(w->t[idx].name) & (w->t_index_cap - 1);
    while (w->t_index[h]) h = (h + 1) & (w->t_index_cap - 1);
    w->t_index[h] = idx + 1;
}

/* Keeps the table at most half full (rebuilds it twice as large). */
static moe_status t_index_grow(moe_gguf_writer *w) {
    if ((uint64_t)(w->n_t + 1) * 2 <= w->t_index_cap) return MOE_OK;
    uint64_t cap = w->t_index_cap ? w->t_index_cap * 2 : 64;
    uint32_t *tab = moe_calloc((size_t)cap, sizeof *tab);
    if (!tab) return MOE_ERR_NOMEM;
    free(w->t_index);
    w->t_index = tab;
    w->t_index_cap = cap;
    for (int64_t i = 0; i < w->n_t; i++) t_index_put(w, (uint32_t)i);
    return MOE_OK;
}

moe_status moe_gguf_writer_add_tensor(moe_gguf_writer *w, const char *name, int type, int n_dims,
                                      const int64_t *ne, const void *data, uint64_t nbytes) {
    if (!w) return moe_error(MOE_ERR_INVALID, "gguf writer: NULL writer");
    if (!name || !*name) return moe_error(MOE_ERR_INVALID, "gguf writer: tensor with an empty name");
    size_t len = strlen(name);
    if (len >= GGUF_MAX_NAME)
        return moe_error(MOE_ERR_INVALID, "gguf writer: tensor '%s': name is %zu bytes; llama.cpp allows at most %d",
                         name, len, GGUF_MAX_NAME - 1);
    const moe_type_traits *tt = moe_type_get(type);
    if (!tt) return moe_error(MOE_ERR_INVALID, "gguf writer: tensor '%s': unknown type id %d", name, type);
    if (n_dims < 0 || n_dims > GGUF_MAX_DIMS)
        return moe_error(MOE_ERR_INVALID, "gguf writer: tensor '%s': %d dimensions (at most %d are allowed)",
                         name, n_dims, GGUF_MAX_DIMS);
    if (n_dims > 0 && !ne) return moe_error(MOE_ERR_INVALID, "gguf writer: tensor '%s': NULL shape", name);
    uint64_t nelem = 1;
    for (int d = 0; d < n_dims; d++) {
        if (ne[d] < 0)
            return moe_error(MOE_ERR_INVALID, "gguf writer: tensor '%s': dimension %d is negative (%lld)",
                             name, d, (long long)ne[d]);
        if (!moe_mul_ok(nelem, (uint64_t)ne[d], &nelem) || nelem > (uint64_t)INT64_MAX)
            return moe_error(MOE_ERR_INVALID, "gguf writer: tensor '%s': shape overflows", name);
    }
    int64_t ne0 = n_dims > 0 ? ne[0] : 1;
    if (ne0 % tt->block_size != 0)
        return moe_error(MOE_ERR_INVALID, "gguf writer: tensor '%s': row length %lld is not a multiple of the %s block size %lld",
                         name, (long long)ne0, tt->name, (long long)tt->block_size);
    uint64_t want;
    if (!moe_mul_ok(nelem / (uint64_t)tt->block_size, tt->type_size, &want))
        return moe_error(MOE_ERR_INVALID, "gguf writer: tensor '%s': size overflows", name);
    if (nbytes != want)
        return moe_error(MOE_ERR_INVALID, "gguf writer: tensor '%s': %llu bytes given, but a %s tensor of this shape has %llu",
                         name, (unsigned long long)nbytes, tt->name, (unsigned long long)want);
    if (nbytes && !data) return moe_error(MOE_ERR_INVALID, "gguf writer: tensor '%s': NULL data", name);
    if (t_index_has(w, name)) return moe_error(MOE_ERR_INVALID, "gguf writer: tensor '%s': duplicate tensor name", name);
    if (w->n_t >= (int64_t)UINT32_MAX - 1) return moe_error(MOE_ERR_INVALID, "gguf writer: too many tensors");
    moe_status st = t_index_grow(w);
    if (st) return st;
    if (w->n_t == w->cap_t) {
        int64_t cap = w->cap_t ? 2 * w->cap_t : 64;
        wtensor *nt = realloc(w->t, (size_t)cap * sizeof *nt);
        if (!nt) return moe_error(MOE_ERR_NOMEM, "gguf writer: out of memory");
        w->t = nt;
        w->cap_t = cap;
    }
    wtensor *t = &w->t[w->n_t];
    memset(t, 0, sizeof *t);
    if (!(t->name = moe_malloc(len + 1))) return MOE_ERR_NOMEM;
    memcpy(t->name, name, len + 1);
    t->type = type;
    t->n_dims = n_dims;
    for (int d = 0; d < GGUF_MAX_DIMS; d++) t->ne[d] = d < n_dims ? ne[d] : 1;
    t->data = data;
    t->nbytes = nbytes;
    t_index_put(w, (uint32_t)w->n_t);
    w->n_t++;
    return MOE_OK;
}

/* ---------------------------------------------------------------- output */

/* A buffered file writer; the first error sticks and later writes do nothing. */
typedef struct {
    int fd;
    const char *path;   /* the destination, for messages */
    uint8_t *buf;
    size_t len, cap;
    uint64_t pos;       /* bytes of the file so far */
    moe_status st;
} out;

static void out_flush(out *o) {
    size_t done = 0;
    while (o->st == MOE_OK && done < o->len) {
        ssize_t r = write(o->fd, o->buf + done, o->len - done);
        if (r < 0 && errno == EINTR) continue;
        if (r <= 0) o->st = moe_error(MOE_ERR_IO, "%s: cannot write: %s", o->path, r < 0 ? strerror(errno) : "short write");
        else done += (size_t)r;
    }
    o->len = 0;
}

static void out_bytes(out *o, const void *p, uint64_t n) {
    if (o->st) return;
    o->pos += n;
    if (n <= o->cap - o->len) {
        if (n) memcpy(o->buf + o->len, p, (size_t)n);
        o->len += (size_t)n;
        return;
    }
    out_flush(o);
    /* large blocks (tensor data) go straight from the caller's memory */
    const uint8_t *b = p;
    while (o->st == MOE_OK && n > 0) {
        size_t chunk = n > ((size_t)1 << 30) ? (size_t)1 << 30 : (size_t)n;
        ssize_t r = write(o->fd, b, chunk);
        if (r < 0 && errno == EINTR) continue;
        if (r <= 0) o->st = moe_error(MOE_ERR_IO, "%s: cannot write: %s", o->path, r < 0 ? strerror(errno) : "short write");
        else { b += r; n -= (uint64_t)r; }
    }
}

static void out_u32(out *o, uint32_t x) { out_bytes(o, &x, 4); }
static void out_u64(out *o, uint64_t x) { out_bytes(o, &x, 8); }
static void out_str(out *o, const char *s, uint64_t len) { out_u64(o, len); out_bytes(o, s, len); }

static void out_pad(out *o, uint64_t alignment) {
    static const uint8_t zeros[64];
    uint64_t pad = (alignment - o->pos % alignment) % alignment;
    while (pad > 0) {
        uint64_t k = pad < sizeof zeros ? pad : sizeof zeros;
        out_bytes(o, zeros, k);
        pad -= k;
    }
}

static void out_scalar(out *o, const moe_gguf_value *v) {
    uint8_t b[8];
    switch (v->type) {
    case MOE_GGUF_U8: b[0] = (uint8_t)v->v.u64; break;
    case MOE_GGUF_I8: b[0] = (uint8_t)(int8_t)v->v.i64; break;
    case MOE_GGUF_BOOL: b[0] = v->v.b ? 1 : 0; break;
    case MOE_GGUF_U16: { uint16_t x = (uint16_t)v->v.u64; memcpy(b, &x, 2); break; }
    case MOE_GGUF_I16: { int16_t x = (int16_t)v->v.i64; memcpy(b, &x, 2); break; }
    case MOE_GGUF_U32: { uint32_t x = (uint32_t)v->v.u64; memcpy(b, &x, 4); break; }
    case MOE_GGUF_I32: { int32_t x = (int32_t)v->v.i64; memcpy(b, &x, 4); break; }
    case MOE_GGUF_F32: { float x = (float)v->v.f64; memcpy(b, &x, 4); break; }
    case MOE_GGUF_U64: memcpy(b, &v->v.u64, 8); break;
    case MOE_GGUF_I64: memcpy(b, &v->v.i64, 8); break;
    case MOE_GGUF_F64: memcpy(b, &v->v.f64, 8); break;
    default: return;
    }
    out_bytes(o, b, moe_gguf_scalar_size(v->type));
}

/* The value's bytes after its type id: scalars, strings, (u32 type, u64 n, items). */
static void out_value(out *o, const moe_gguf_value *v) {
    if (v->type == MOE_GGUF_STRING) {
        out_str(o, v->v.str.ptr, v->v.str.len);
    } else if (v->type == MOE_GGUF_ARRAY) {
        out_u32(o, (uint32_t)v->v.arr.type);
        out_u64(o, v->v.arr.n);
        if (v->v.arr.type == MOE_GGUF_STRING) {
            const moe_gguf_str *s = v->v.arr.data;
            for (uint64_t i = 0; i < v->v.arr.n; i++) out_str(o, s[i].ptr, s[i].len);
        } else if (v->v.arr.type == MOE_GGUF_ARRAY) {
            const moe_gguf_value *a = v->v.arr.data;
            for (uint64_t i = 0; i < v->v.arr.n; i++) out_value(o, &a[i]);
        } else {
            out_bytes(o, v->v.arr.data, v->v.arr.n * moe_gguf_scalar_size(v->v.arr.type));
        }
    } else {
        out_scalar(o, v);
    }
}

moe_status moe_gguf_writer_write(moe_gguf_writer *w, const char *path) {
    if (!w) return moe_error(MOE_ERR_INVALID, "gguf writer: NULL writer");
    if (!path || !*path) return moe_error(MOE_ERR_INVALID, "gguf writer: empty output path");
    uint64_t alignment = GGUF_DEFAULT_ALIGNMENT;
    int64_t ai = kv_find(w, "general.alignment");
    if (ai >= 0) alignment = w->kv[ai].v.v.u64; /* kv_put checked it */

    /* offsets of the tensors in the data section, each padded as llama.cpp does */
    uint64_t *offsets = moe_calloc((size_t)w->n_t + 1, sizeof *offsets);
    if (!offsets) return MOE_ERR_NOMEM;
    uint64_t cur = 0;
    for (int64_t i = 0; i < w->n_t; i++) {
        offsets[i] = cur;
        uint64_t padded;
        if (!moe_add_ok(w->t[i].nbytes, alignment - 1, &padded) ||
            !moe_add_ok(cur, padded - padded % alignment, &cur)) {
            free(offsets);
            return moe_error(MOE_ERR_INVALID, "%s: data section size overflows", path);
        }
    }

    moe_atomic_file af;
    moe_status ost = moe_atomic_open(&af, path);
    if (ost) {
        free(offsets);
        return ost;
    }
    int fd = af.fd;

    out o = {.fd = fd, .path = path, .cap = (size_t)1 << 20};
    o.buf = moe_malloc(o.cap);
    if (!o.buf) o.st = MOE_ERR_NOMEM;

    out_bytes(&o, "GGUF", 4);
    out_u32(&o, 3);
    out_u64(&o, (uint64_t)w->n_t);
    out_u64(&o, (uint64_t)w->n_kv);
    for (int64_t i = 0; i < w->n_kv; i++) {
        out_str(&o, w->kv[i].key, strlen(w->kv[i].key));
        out_u32(&o, (uint32_t)w->kv[i].v.type);
        out_value(&o, &w->kv[i].v);
    }
    for (int64_t i = 0; i < w->n_t; i++) {
        const wtensor *t = &w->t[i];
        out_str(&o, t->name, strlen(t->name));
        out_u32(&o, (uint32_t)t->n_dims);
        for (int d = 0; d < t->n_dims; d++) out_u64(&o, (uint64_t)t->ne[d]);
        out_u32(&o, (uint32_t)t->type);
        out_u64(&o, offsets[i]);
    }
    out_pad(&o, alignment);
    for (int64_t i = 0; i < w->n_t; i++) {
        out_bytes(&o, w->t[i].data, w->t[i].nbytes);
        out_pad(&o, alignment);
    }
    out_flush(&o);
    free(o.buf);
    free(offsets);

    return moe_atomic_close(&af, o.st);
}

