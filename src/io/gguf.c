/* gguf.c — the GGUF reader: maps a file read-only, validates every byte of its header
 * against the file size, and exposes metadata and tensor descriptions. Tensor data stay
 * in the mapping; metadata are copied into one arena so they are aligned and
 * NUL-terminated. */
#include "io/gguf.h"
#include "io/mapfile.h"
#include "core/arena.h"
#include "core/types.h"

#include <stdio.h>
#include <stdlib.h>

typedef struct {
    const char *key;
    moe_gguf_value v;
} gguf_kv;

struct moe_gguf {
    char *path;
    const uint8_t *base;   /* the whole file */
    uint64_t size;
    bool mapped;           /* base was mmap'ed by us */
    bool in_memory;        /* base is the file read into our memory (writable until sealed) */
    uint32_t version;
    int64_t n_kv, n_tensors;
    gguf_kv *kv;
    moe_gguf_tensor *tensors;
    uint64_t alignment, data_offset;
    /* open-addressing hash tables of indices (+1; 0 = empty), sizes are powers of two */
    uint32_t *kv_index, *tensor_index;
    uint64_t kv_cap, tensor_cap;
    moe_arena arena;
};

/* ---------------------------------------------------------------- hashing */

static uint64_t hash_str(const char *s) {
    uint64_t h = 1469598103934665603ull; /* FNV-1a */
    for (; *s; s++) h = (h ^ (uint8_t)*s) * 1099511628211ull;
    return h;
}

static uint64_t table_cap(int64_t n) {
    uint64_t cap = 16;
    while (cap < (uint64_t)n * 2) cap <<= 1;
    return cap;
}

/* Inserts name → idx; returns false if the name is already present. */
static bool table_insert(uint32_t *tab, uint64_t cap, const char *name, uint32_t idx,
                         const char *(*name_of)(const moe_gguf *, uint32_t), const moe_gguf *g) {
    uint64_t h = hash_str(name) & (cap - 1);
    while (tab[h]) {
        if (strcmp(name_of(g, tab[h] - 1), name) == 0) return false;
        h = (h + 1) & (cap - 1);
    }
    tab[h] = idx + 1;
    return true;
}

static int64_t table_find(const uint32_t *tab, uint64_t cap, const char *name,
                          const char *(*name_of)(const moe_gguf *, uint32_t), const moe_gguf *g) {
    if (!tab) return -1;
    uint64_t h = hash_str(name) & (cap - 1);
    while (tab[h]) {
        if (strcmp(name_of(g, tab[h] - 1), name) == 0) return tab[h] - 1;
        h = (h + 1) & (cap - 1);
    }
    return -1;
}

static const char *kv_name(const moe_gguf *g, uint32_t i) { return g->kv[i].key; }
static const char *tensor_name(const moe_gguf *g, uint32_t i) { return g->tensors[i].name; }

/* ---------------------------------------------------------------- parsing */

/* A bounds-checked cursor over the file. Every read checks the bytes left first; the
 * first failure records a message naming `field` and further reads fail too. */
typedef struct {
    moe_gguf *g;
    uint64_t pos;
    char field[320];   /* what is being read, for messages: "key 'general.name'" */
} cursor;

static moe_status fail(cursor *c, moe_status st, const char *problem) {
    return moe_error(st, "%s: %s: %s (at byte %llu of %llu)", c->g->path, c->field, problem,
                     (unsigned long long)c->pos, (unsigned long long)c->g->size);
}

static moe_status read_bytes(cursor *c, void *out, uint64_t n) {
    if (n > c->g->size - c->pos) return fail(c, MOE_ERR_FORMAT, "file is truncated");
    memcpy(out, c->g->base + c->pos, n);
    c->pos += n;
    return MOE_OK;
}

#define READ_SCALAR(c, var) read_bytes((c), &(var), sizeof(var))

/* Reads a length-prefixed string into the arena. */
static moe_status read_str(cursor *c, moe_gguf_str *out) {
    uint64_t len;
    moe_status st = READ_SCALAR(c, len);
    if (st) return st;
    if (len > c->g->size - c->pos) {
        char msg[128];
        snprintf(msg, sizeof msg, "string length %llu runs past the end of the file",
                 (unsigned long long)len);
        return fail(c, MOE_ERR_FORMAT, msg);
    }
    char *s = moe_arena_strndup(&c->g->arena, (const char *)c->g->base + c->pos, len);
    if (!s) return MOE_ERR_NOMEM;
    c->pos += len;
    out->ptr = s;
    out->len = len;
    return MOE_OK;
}

size_t moe_gguf_scalar_size(uint32_t t) {
    switch (t) {
    case MOE_GGUF_U8: case MOE_GGUF_I8: case MOE_GGUF_BOOL: return 1;
    case MOE_GGUF_U16: case MOE_GGUF_I16: return 2;
    case MOE_GGUF_U32: case MOE_GGUF_I32: case MOE_GGUF_F32: return 4;
    case MOE_GGUF_U64: case MOE_GGUF_I64: case MOE_GGUF_F64: return 8;
    default: return 0;
    }
}

static bool valid_value_type(uint32_t t) { return t <= MOE_GGUF_F64; }

static moe_status read_scalar_value(cursor *c, uint32_t t, moe_gguf_value *v) {
    uint8_t b[8];
    size_t n = moe_gguf_scalar_size(t);
    moe_status st = read_bytes(c, b, n);
    if (st) return st;
    v->type = (moe_gguf_type)t;
    switch (t) {
    case MOE_GGUF_U8: v->v.u64 = b[0]; break;
    case MOE_GGUF_I8: v->v.i64 = (int8_t)b[0]; break;
    case MOE_GGUF_BOOL: v->v.b = b[0] != 0; break;
    case MOE_GGUF_U16: { uint16_t x; memcpy(&x, b, 2); v->v.u64 = x; break; }
    case MOE_GGUF_I16: { int16_t x; memcpy(&x, b, 2); v->v.i64 = x; break; }
    case MOE_GGUF_U32: { uint32_t x; memcpy(&x, b, 4); v->v.u64 = x; break; }
    case MOE_GGUF_I32: { int32_t x; memcpy(&x, b, 4); v->v.i64 = x; break; }
    case MOE_GGUF_F32: { float x; memcpy(&x, b, 4); v->v.f64 = x; break; }
    case MOE_GGUF_U64: { uint64_t x; memcpy(&x, b, 8); v->v.u64 = x; break; }
    case MOE_GGUF_I64: { int64_t x; memcpy(&x, b, 8); v->v.i64 = x; break; }
    case MOE_GGUF_F64: { double x; memcpy(&x, b, 8); v->v.f64 = x; break; }
    }
    return MOE_OK;
}

static moe_status read_value(cursor *c, uint32_t t, moe_gguf_value *v, int depth);

static moe_status read_array(cursor *c, moe_gguf_value *v, int depth) {
    uint32_t et;
    uint64_t n;
    moe_status st;
    if ((st = READ_SCALAR(c, et)) || (st = READ_SCALAR(c, n))) return st;
    if (!valid_value_type(et)) {
        char msg[96];
        snprintf(msg, sizeof msg, "unknown array element type %u", et);
        return fail(c, MOE_ERR_FORMAT, msg);
    }
    if (depth >= GGUF_MAX_DEPTH) return fail(c, MOE_ERR_FORMAT, "arrays nested too deeply");
    /* Every element takes at least this many bytes of the file: refuse counts the file
     * cannot hold before allocating anything for them. */
    uint64_t min_elem = et == MOE_GGUF_STRING ? 8 : et == MOE_GGUF_ARRAY ? 12 : moe_gguf_scalar_size(et);
    uint64_t need;
    if (!moe_mul_ok(n, min_elem, &need) || need > c->g->size - c->pos) {
        char msg[128];
        snprintf(msg, sizeof msg, "array of %llu elements runs past the end of the file",
                 (unsigned long long)n);
        return fail(c, MOE_ERR_FORMAT, msg);
    }
    v->type = MOE_GGUF_ARRAY;
    v->v.arr.type = (moe_gguf_type)et;
    v->v.arr.n = n;
    moe_arena *a = &c->g->arena;
    if (et == MOE_GGUF_STRING) {
        moe_gguf_str *strs = moe_arena_alloc(a, (size_t)n * sizeof *strs + 1, 8);
        if (!strs) return MOE_ERR_NOMEM;
        for (uint64_t i = 0; i < n; i++)
            if ((st = read_str(c, &strs[i]))) return st;
        v->v.arr.data = strs;
    } else if (et == MOE_GGUF_ARRAY) {
        moe_gguf_value *items = moe_arena_alloc(a, (size_t)n * sizeof *items + 1, 8);
        if (!items) return MOE_ERR_NOMEM;
        for (uint64_t i = 0; i < n; i++)
            if ((st = read_value(c, MOE_GGUF_ARRAY, &items[i], depth + 1))) return st;
        v->v.arr.data = items;
    } else {
        size_t es = moe_gguf_scalar_size(et);
        uint8_t *data = moe_arena_alloc(a, (size_t)need + 1, 8);
        if (!data) return MOE_ERR_NOMEM;
        if ((st = read_bytes(c, data, need))) return st;
        if (et == MOE_GGUF_BOOL) /* normalise to 0/1 so bool[] reads are defined */
            for (uint64_t i = 0; i < n; i++) data[i] = data[i] != 0;
        (void)es;
        v->v.arr.data = data;
    }
    return MOE_OK;
}

static moe_status read_value(cursor *c, uint32_t t, moe_gguf_value *v, int depth) {
    if (t == MOE_GGUF_STRING) {
        v->type = MOE_GGUF_STRING;
        return read_str(c, &v->v.str);
    }
    if (t == MOE_GGUF_ARRAY) return read_array(c, v, depth);
    if (!valid_value_type(t)) {
        char msg[64];
        snprintf(msg, sizeof msg, "unknown value type %u", t);
        return fail(c, MOE_ERR_FORMAT, msg);
    }
    return read_scalar_value(c, t, v);
}

static moe_status parse_header(moe_gguf *g) {
    cursor c = {.g = g, .pos = 0};
    moe_status st;
    char magic[4];
    snprintf(c.field, sizeof c.field, "header");
    if (g->size < 4 || (st = read_bytes(&c, magic, 4)))
        return moe_error(MOE_ERR_FORMAT, "%s: not a GGUF file: file is truncated (%llu bytes)",
                         g->path, (unsigned long long)g->size);
    if (memcmp(magic, "GGUF", 4) != 0)
        return moe_error(MOE_ERR_FORMAT, "%s: not a GGUF file: bad magic %02x %02x %02x %02x (expected \"GGUF\")",
                         g->path, (uint8_t)magic[0], (uint8_t)magic[1], (uint8_t)magic[2], (uint8_t)magic[3]);
    snprintf(c.field, sizeof c.field, "version");
    if ((st = READ_SCALAR(&c, g->version))) return st;
    if (g->version != 2 && g->version != 3) {
        if (g->version == 1)
            return moe_error(MOE_ERR_UNSUPPORTED, "%s: GGUF version 1 is not supported (versions 2 and 3 are); re-convert the model with a current llama.cpp", g->path);
        if (g->version != 0 && (g->version & 0xffff) == 0)
            return moe_error(MOE_ERR_UNSUPPORTED, "%s: GGUF version field is %u: a big-endian file, which is not supported", g->path, g->version);
        return moe_error(MOE_ERR_UNSUPPORTED, "%s: unknown GGUF version %u (versions 2 and 3 are supported)", g->path, g->version);
    }
    uint64_t n_tensors, n_kv;
    snprintf(c.field, sizeof c.field, "tensor count");
    if ((st = READ_SCALAR(&c, n_tensors))) return st;
    snprintf(c.field, sizeof c.field, "metadata count");
    if ((st = READ_SCALAR(&c, n_kv))) return st;
    /* a key-value pair takes at least 8+4+1 bytes, a tensor info at least 8+4+4+8 */
    if (n_kv > (g->size - c.pos) / 13) {
        char msg[160];
        snprintf(msg, sizeof msg, "%llu key-value pairs cannot fit in the %llu bytes left (truncated or corrupt file)",
                 (unsigned long long)n_kv, (unsigned long long)(g->size - c.pos));
        return fail(&c, MOE_ERR_FORMAT, msg);
    }
    if (n_tensors > (g->size - c.pos) / 24 || n_tensors > UINT32_MAX - 1) {
        char msg[160];
        snprintf(msg, sizeof msg, "%llu tensors cannot fit in the %llu bytes left (truncated or corrupt file)",
                 (unsigned long long)n_tensors, (unsigned long long)(g->size - c.pos));
        snprintf(c.field, sizeof c.field, "tensor count");
        return fail(&c, MOE_ERR_FORMAT, msg);
    }
    g->n_kv = (int64_t)n_kv;
    g->n_tensors = (int64_t)n_tensors;

    /* metadata */
    g->kv = moe_arena_calloc(&g->arena, (size_t)n_kv * sizeof *g->kv + 1, 8);
    g->kv_cap = table_cap(g->n_kv);
    g->kv_index = moe_arena_calloc(&g->arena, g->kv_cap * sizeof *g->kv_index, 8);
    if (!g->kv || !g->kv_index) return MOE_ERR_NOMEM;
    g->alignment = GGUF_DEFAULT_ALIGNMENT;
    for (int64_t i = 0; i < g->n_kv; i++) {
        moe_gguf_str key;
        uint32_t t;
        snprintf(c.field, sizeof c.field, "key of metadata entry %lld", (long long)i);
        if ((st = read_str(&c, &key))) return st;
        if (key.len == 0 || strlen(key.ptr) != key.len) return fail(&c, MOE_ERR_FORMAT, "empty key or key with a NUL byte");
        snprintf(c.field, sizeof c.field, "key '%.256s'", key.ptr);
        if ((st = READ_SCALAR(&c, t))) return st;
        g->kv[i].key = key.ptr;
        if ((st = read_value(&c, t, &g->kv[i].v, 0))) return st;
        if (!table_insert(g->kv_index, g->kv_cap, key.ptr, (uint32_t)i, kv_name, g))
            return fail(&c, MOE_ERR_FORMAT, "duplicate key");
        if (strcmp(key.ptr, "general.alignment") == 0) {
            const moe_gguf_value *v = &g->kv[i].v;
            if (v->type != MOE_GGUF_U32 || v->v.u64 == 0 || (v->v.u64 & (v->v.u64 - 1)))
                return fail(&c, MOE_ERR_FORMAT, "alignment must be a u32 power of two");
            g->alignment = v->v.u64;
        }
    }

    /* tensor infos */
    g->tensors = moe_arena_calloc(&g->arena, (size_t)n_tensors * sizeof *g->tensors + 1, 8);
    g->tensor_cap = table_cap(g->n_tensors);
    g->tensor_index = moe_arena_calloc(&g->arena, g->tensor_cap * sizeof *g->tensor_index, 8);
    if (!g->tensors || !g->tensor_index) return MOE_ERR_NOMEM;
    for (int64_t i = 0; i < g->n_tensors; i++) {
        moe_gguf_tensor *t = &g->tensors[i];
        moe_gguf_str name;
        uint32_t n_dims, type;
        snprintf(c.field, sizeof c.field, "name of tensor %lld", (long long)i);
        if ((st = read_str(&c, &name))) return st;
        if (strlen(name.ptr) != name.len) return fail(&c, MOE_ERR_FORMAT, "tensor name contains a NUL byte");
        t->name = name.ptr;
        snprintf(c.field, sizeof c.field, "tensor '%.256s'", name.ptr);
        if ((st = READ_SCALAR(&c, n_dims))) return st;
        if (n_dims > GGUF_MAX_DIMS) {
            char msg[96];
            snprintf(msg, sizeof msg, "%u dimensions (at most %d are allowed)", n_dims, GGUF_MAX_DIMS);
            return fail(&c, MOE_ERR_FORMAT, msg);
        }
        t->n_dims = (int)n_dims;
        uint64_t nelem = 1;
        for (int d = 0; d < GGUF_MAX_DIMS; d++) t->ne[d] = 1;
        for (uint32_t d = 0; d < n_dims; d++) {
            uint64_t ne;
            if ((st = READ_SCALAR(&c, ne))) return st;
            if (ne > (uint64_t)INT64_MAX) return fail(&c, MOE_ERR_FORMAT, "negative dimension");
            t->ne[d] = (int64_t)ne;
            if (!moe_mul_ok(nelem, ne, &nelem) || nelem > (uint64_t)INT64_MAX)
                return fail(&c, MOE_ERR_FORMAT, "shape overflows: the product of its dimensions does not fit in 64 bits");
        }
        if ((st = READ_SCALAR(&c, type))) return st;
        const moe_type_traits *tt = moe_type_get((int)type);
        if (!tt) {
            char msg[96];
            snprintf(msg, sizeof msg, "unknown tensor type id %u", type);
            return fail(&c, MOE_ERR_FORMAT, msg);
        }
        t->type = (int)type;
        if (t->ne[0] % tt->block_size != 0) {
            char msg[160];
            snprintf(msg, sizeof msg, "row length %lld is not a multiple of the %s block size %lld",
                     (long long)t->ne[0], tt->name, (long long)tt->block_size);
            return fail(&c, MOE_ERR_FORMAT, msg);
        }
        if ((st = READ_SCALAR(&c, t->offset))) return st;
        if (t->offset % g->alignment != 0) {
            char msg[128];
            snprintf(msg, sizeof msg, "data offset %llu is not a multiple of the alignment %llu",
                     (unsigned long long)t->offset, (unsigned long long)g->alignment);
            return fail(&c, MOE_ERR_FORMAT, msg);
        }
        uint64_t nbytes;
        if (!moe_mul_ok(nelem / (uint64_t)tt->block_size, tt->type_size, &nbytes))
            return fail(&c, MOE_ERR_FORMAT, "tensor size overflows");
        t->nbytes = nbytes;
        if (!table_insert(g->tensor_index, g->tensor_cap, t->name, (uint32_t)i, tensor_name, g))
            return fail(&c, MOE_ERR_FORMAT, "duplicate tensor name");
    }

    /* the data section starts at the next multiple of the alignment */
    uint64_t data_off;
    if (!moe_add_ok(c.pos, g->alignment - 1, &data_off))
        return moe_error(MOE_ERR_FORMAT, "%s: data offset overflows", g->path);
    data_off -= data_off % g->alignment;
    if (g->n_tensors > 0 && data_off > g->size)
        return moe_error(MOE_ERR_FORMAT, "%s: data section: starts at byte %llu, past the end of the file (%llu bytes)",
                         g->path, (unsigned long long)data_off, (unsigned long long)g->size);
    g->data_offset = data_off;
    uint64_t data_size = data_off <= g->size ? g->size - data_off : 0;
    for (int64_t i = 0; i < g->n_tensors; i++) {
        moe_gguf_tensor *t = &g->tensors[i];
        uint64_t end;
        if (!moe_add_ok(t->offset, t->nbytes, &end) || end > data_size)
            return moe_error(MOE_ERR_FORMAT,
                             "%s: tensor '%s' extends past end of file (offset %llu, size %llu, data section %llu bytes from byte %llu)",
                             g->path, t->name, (unsigned long long)t->offset, (unsigned long long)t->nbytes,
                             (unsigned long long)data_size, (unsigned long long)data_off);
        t->data = g->base + data_off + t->offset;
    }
    return MOE_OK;
}

/* ---------------------------------------------------------------- open / close */

static moe_gguf *gguf_new(const char *name) {
    moe_gguf *g = moe_calloc(1, sizeof *g);
    if (!g) return NULL;
    moe_arena_init(&g->arena, 256 * 1024);
    g->path = moe_arena_strndup(&g->arena, name, strlen(name));
    if (!g->path) { moe_arena_free(&g->arena); free(g); return NULL; }
    return g;
}

moe_gguf *moe_gguf_open_memory(const void *data, size_t size, const char *name) {
    moe_gguf *g = gguf_new(name ? name : "<memory>");
    if (!g) return NULL;
    g->base = data;
    g->size = size;
    if (parse_header(g) != MOE_OK) { moe_gguf_close(g); return NULL; }
    return g;
}

static moe_gguf *open_file(const char *path, bool read_into_memory) {
    const void *base;
    uint64_t size;
    if ((read_into_memory ? moe_read_file(path, &base, &size) : moe_map_file(path, &base, &size)) != MOE_OK) return NULL;
    moe_gguf *g = gguf_new(path);
    if (!g) { moe_unmap_file(base, size); return NULL; }
    g->base = base;
    g->size = size;
    g->mapped = base != NULL;
    g->in_memory = read_into_memory;
    if (parse_header(g) != MOE_OK) { moe_gguf_close(g); return NULL; }
    return g;
}

moe_gguf *moe_gguf_open_ex(const char *path, bool read_into_memory) {
    moe_gguf *g = open_file(path, read_into_memory);
    if (g) moe_gguf_seal(g);
    return g;
}

moe_gguf *moe_gguf_open_writable(const char *path) { return open_file(path, true); }

void moe_gguf_seal(moe_gguf *g) {
    if (g->in_memory) moe_protect_file(g->base, g->size);
}

moe_gguf *moe_gguf_open(const char *path) { return moe_gguf_open_ex(path, false); }

void moe_gguf_close(moe_gguf *g) {
    if (!g) return;
    if (g->mapped) moe_unmap_file(g->base, g->size);
    moe_arena_free(&g->arena);
    free(g);
}

/* ---------------------------------------------------------------- accessors */

const char *moe_gguf_path(const moe_gguf *g) { return g->path; }
uint32_t moe_gguf_version(const moe_gguf *g) { return g->version; }
uint64_t moe_gguf_file_size(const moe_gguf *g) { return g->size; }
uint64_t moe_gguf_data_offset(const moe_gguf *g) { return g->data_offset; }
uint64_t moe_gguf_alignment(const moe_gguf *g) { return g->alignment; }
int64_t moe_gguf_n_kv(const moe_gguf *g) { return g->n_kv; }
int64_t moe_gguf_n_tensors(const moe_gguf *g) { return g->n_tensors; }
const void *moe_gguf_base(const moe_gguf *g) { return g->base; }

const char *moe_gguf_kv_key(const moe_gguf *g, int64_t i) {
    return i >= 0 && i < g->n_kv ? g->kv[i].key : NULL;
}
const moe_gguf_value *moe_gguf_kv_value(const moe_gguf *g, int64_t i) {
    return i >= 0 && i < g->n_kv ? &g->kv[i].v : NULL;
}
const moe_gguf_value *moe_gguf_find(const moe_gguf *g, const char *key) {
    int64_t i = table_find(g->kv_index, g->kv_cap, key, kv_name, g);
    return i >= 0 ? &g->kv[i].v : NULL;
}
const moe_gguf_tensor *moe_gguf_tensor_at(const moe_gguf *g, int64_t i) {
    return i >= 0 && i < g->n_tensors ? &g->tensors[i] : NULL;
}
const moe_gguf_tensor *moe_gguf_find_tensor(const moe_gguf *g, const char *name) {
    int64_t i = table_find(g->tensor_index, g->tensor_cap, name, tensor_name, g);
    return i >= 0 ? &g->tensors[i] : NULL;
}

static bool is_unsigned(moe_gguf_type t) {
    return t == MOE_GGUF_U8 || t == MOE_GGUF_U16 || t == MOE_GGUF_U32 || t == MOE_GGUF_U64;
}
static bool is_signed(moe_gguf_type t) {
    return t == MOE_GGUF_I8 || t == MOE_GGUF_I16 || t == MOE_GGUF_I32 || t == MOE_GGUF_I64;
}

static const char *type_str(moe_gguf_type t) {
    static const char *names[] = {"u8", "i8", "u16", "i16", "u32", "i32", "f32", "bool",
                                  "string", "array", "u64", "i64", "f64"};
    return (unsigned)t < MOE_ARRAY_LEN(names) ? names[t] : "?";
}

static moe_status bad_type(const moe_gguf *g, const char *key, moe_gguf_type t, const char *want) {
    return moe_error(MOE_ERR_FORMAT, "%s: key '%s' has type %s, expected %s", g->path, key, type_str(t), want);
}

moe_status moe_gguf_get_i64(const moe_gguf *g, const char *key, int64_t *out) {
    const moe_gguf_value *v = moe_gguf_find(g, key);
    if (!v) return MOE_ERR_NOT_FOUND;
    if (is_signed(v->type)) { *out = v->v.i64; return MOE_OK; }
    if (is_unsigned(v->type)) {
        if (v->v.u64 > (uint64_t)INT64_MAX)
            return moe_error(MOE_ERR_FORMAT, "%s: key '%s': value %llu is too large", g->path, key,
                             (unsigned long long)v->v.u64);
        *out = (int64_t)v->v.u64;
        return MOE_OK;
    }
    return bad_type(g, key, v->type, "an integer");
}

moe_status moe_gguf_get_u32(const moe_gguf *g, const char *key, uint32_t *out) {
    int64_t x;
    moe_status st = moe_gguf_get_i64(g, key, &x);
    if (st) return st;
    if (x < 0 || x > (int64_t)UINT32_MAX)
        return moe_error(MOE_ERR_FORMAT, "%s: key '%s': value %lld is out of range for a u32", g->path, key, (long long)x);
    *out = (uint32_t)x;
    return MOE_OK;
}

moe_status moe_gguf_get_f32(const moe_gguf *g, const char *key, float *out) {
    const moe_gguf_value *v = moe_gguf_find(g, key);
    if (!v) return MOE_ERR_NOT_FOUND;
    if (v->type == MOE_GGUF_F32 || v->type == MOE_GGUF_F64) { *out = (float)v->v.f64; return MOE_OK; }
    if (is_signed(v->type)) { *out = (float)v->v.i64; return MOE_OK; }
    if (is_unsigned(v->type)) { *out = (float)v->v.u64; return MOE_OK; }
    return bad_type(g, key, v->type, "a number");
}

moe_status moe_gguf_get_bool(const moe_gguf *g, const char *key, bool *out) {
    const moe_gguf_value *v = moe_gguf_find(g, key);
    if (!v) return MOE_ERR_NOT_FOUND;
    if (v->type == MOE_GGUF_BOOL) { *out = v->v.b; return MOE_OK; }
    if (is_unsigned(v->type)) { *out = v->v.u64 != 0; return MOE_OK; }
    if (is_signed(v->type)) { *out = v->v.i64 != 0; return MOE_OK; }
    return bad_type(g, key, v->type, "a bool");
}

moe_status moe_gguf_get_str(const moe_gguf *g, const char *key, const char **out) {
    const moe_gguf_value *v = moe_gguf_find(g, key);
    if (!v) return MOE_ERR_NOT_FOUND;
    if (v->type != MOE_GGUF_STRING) return bad_type(g, key, v->type, "a string");
    *out = v->v.str.ptr;
    return MOE_OK;
}

moe_status moe_gguf_get_arr(const moe_gguf *g, const char *key, int type, const void **data, uint64_t *n) {
    const moe_gguf_value *v = moe_gguf_find(g, key);
    if (!v) return MOE_ERR_NOT_FOUND;
    if (v->type != MOE_GGUF_ARRAY) return bad_type(g, key, v->type, "an array");
    if (type >= 0 && v->v.arr.type != (moe_gguf_type)type)
        return moe_error(MOE_ERR_FORMAT, "%s: key '%s' is an array of %s, expected an array of %s",
                         g->path, key, type_str(v->v.arr.type), type_str((moe_gguf_type)type));
    *data = v->v.arr.data;
    *n = v->v.arr.n;
    return MOE_OK;
}
