/* moe.h — the public API of libmoe, a C engine for sparse Mixture-of-Experts models.
 *
 * Conventions: opaque handles, `moe_` prefix, `_init`/`_free` (or `_open`/`_close`)
 * pairs. Functions that can fail return a moe_status (or NULL) and leave a message in
 * moe_last_error(); the library never exits or aborts on bad input.
 */
#ifndef MOE_H
#define MOE_H

#include <stddef.h>
#include <stdint.h>
#include <stdbool.h>

#ifdef __cplusplus
extern "C" {
#endif

#define MOE_VERSION "0.1.0"

/* ------------------------------------------------------------------ errors */

typedef enum moe_status {
    MOE_OK = 0,
    MOE_ERR_IO,          /* a file could not be opened, read, written or mapped */
    MOE_ERR_FORMAT,      /* a file is malformed (bad magic, out-of-bounds offset, ...) */
    MOE_ERR_UNSUPPORTED, /* well-formed but not supported (architecture, type, version) */
    MOE_ERR_INVALID,     /* a bad argument from the caller */
    MOE_ERR_NOMEM,       /* an allocation failed or a memory budget is too small */
    MOE_ERR_NOT_FOUND,   /* a key, tensor or token that was asked for does not exist */
} moe_status;

/* The message of the last error on this thread ("" if none). Valid until the next
 * failing call on the same thread. */
const char *moe_last_error(void);
/* A short name for a status code ("io error", "format error", ...). */
const char *moe_status_str(moe_status st);

/* ------------------------------------------------------------------ threads */

/* Number of online CPU cores (the default thread count). */
int moe_default_threads(void);

/* ------------------------------------------------------------------ GGUF files */

typedef struct moe_gguf moe_gguf;

/* Value types of GGUF metadata, with the ids the format uses. */
typedef enum moe_gguf_type {
    MOE_GGUF_U8 = 0, MOE_GGUF_I8 = 1, MOE_GGUF_U16 = 2, MOE_GGUF_I16 = 3,
    MOE_GGUF_U32 = 4, MOE_GGUF_I32 = 5, MOE_GGUF_F32 = 6, MOE_GGUF_BOOL = 7,
    MOE_GGUF_STRING = 8, MOE_GGUF_ARRAY = 9, MOE_GGUF_U64 = 10, MOE_GGUF_I64 = 11,
    MOE_GGUF_F64 = 12,
} moe_gguf_type;

/* A string of a GGUF file: NUL-terminated copy, `len` bytes (may contain NULs). */
typedef struct moe_gguf_str {
    const char *ptr;
    uint64_t len;
} moe_gguf_str;

/* A metadata value. Scalars widen into u64 (unsigned ids), i64 (signed ids), f64 (floats)
 * and b. Arrays hold `n` elements of `type` at `data`, stored natively and aligned:
 * uint8_t[] for U8, float[] for F32, ..., bool[] for BOOL, moe_gguf_str[] for STRING,
 * moe_gguf_value[] (each an ARRAY) for nested arrays. */
typedef struct moe_gguf_value {
    moe_gguf_type type;
    union {
        uint64_t u64;
        int64_t i64;
        double f64;
        bool b;
        moe_gguf_str str;
        struct { moe_gguf_type type; uint64_t n; const void *data; } arr;
    } v;
} moe_gguf_value;

/* A tensor as the file describes it; `data` points into the read-only mapping. ne[0] is
 * the innermost (contiguous) dimension, as in ggml; unused dimensions are 1. */
typedef struct moe_gguf_tensor {
    const char *name;
    int type;           /* ggml type id (see moe_type_name) */
    int n_dims;
    int64_t ne[4];
    uint64_t offset;    /* from the start of the data section */
    uint64_t nbytes;
    const void *data;
} moe_gguf_tensor;

/* Opens and validates a GGUF file (versions 2 and 3), memory-mapped read-only; tensor data
 * are never copied. Returns NULL on error with a message naming the file, the field and
 * the problem. */
moe_gguf *moe_gguf_open(const char *path);
/* Validates a GGUF image already in memory (`name` is used in messages). The bytes must
 * outlive the handle. Used by the fuzzer and by tests. */
moe_gguf *moe_gguf_open_memory(const void *data, size_t size, const char *name);
void moe_gguf_close(moe_gguf *g);

const char *moe_gguf_path(const moe_gguf *g);
uint32_t moe_gguf_version(const moe_gguf *g);
uint64_t moe_gguf_file_size(const moe_gguf *g);
uint64_t moe_gguf_data_offset(const moe_gguf *g);  /* file offset of the tensor data */
uint64_t moe_gguf_alignment(const moe_gguf *g);

int64_t moe_gguf_n_kv(const moe_gguf *g);
const char *moe_gguf_kv_key(const moe_gguf *g, int64_t i);
const moe_gguf_value *moe_gguf_kv_value(const moe_gguf *g, int64_t i);
/* NULL (no error recorded) when the key is absent. */
const moe_gguf_value *moe_gguf_find(const moe_gguf *g, const char *key);

/* Typed getters. They return MOE_ERR_NOT_FOUND (no message) when the key is absent, and
 * MOE_ERR_FORMAT with a message naming the file and key when it has an unusable type or
 * value (e.g. a negative count into an unsigned). Integers convert between widths when
 * the value fits; floats accept F32/F64 and integer keys. */
moe_status moe_gguf_get_i64(const moe_gguf *g, const char *key, int64_t *out);
moe_status moe_gguf_get_u32(const moe_gguf *g, const char *key, uint32_t *out);
moe_status moe_gguf_get_f32(const moe_gguf *g, const char *key, float *out);
moe_status moe_gguf_get_bool(const moe_gguf *g, const char *key, bool *out);
moe_status moe_gguf_get_str(const moe_gguf *g, const char *key, const char **out);
/* An array of `type` (any element type when type < 0). */
moe_status moe_gguf_get_arr(const moe_gguf *g, const char *key, int type, const void **data, uint64_t *n);

int64_t moe_gguf_n_tensors(const moe_gguf *g);
const moe_gguf_tensor *moe_gguf_tensor_at(const moe_gguf *g, int64_t i);
/* NULL (no error recorded) when absent. */
const moe_gguf_tensor *moe_gguf_find_tensor(const moe_gguf *g, const char *name);

/* Writing GGUF (version 3, llama.cpp's conventions: alignment 32 unless the metadata sets
 * general.alignment). Keys keep the order they were first set in; setting a key again
 * replaces its value. Tensor data are referenced, not copied, until the write. */
typedef struct moe_gguf_writer moe_gguf_writer;
moe_gguf_writer *moe_gguf_writer_init(void);
void moe_gguf_writer_free(moe_gguf_writer *w);
moe_status moe_gguf_writer_set_u32(moe_gguf_writer *w, const char *key, uint32_t v);
moe_status moe_gguf_writer_set_i32(moe_gguf_writer *w, const char *key, int32_t v);
moe_status moe_gguf_writer_set_u64(moe_gguf_writer *w, const char *key, uint64_t v);
moe_status moe_gguf_writer_set_f32(moe_gguf_writer *w, const char *key, float v);
moe_status moe_gguf_writer_set_bool(moe_gguf_writer *w, const char *key, bool v);
moe_status moe_gguf_writer_set_str(moe_gguf_writer *w, const char *key, const char *v);
/* An array of n scalars of `type` (native layout), or of strings (type STRING, data is
 * `const char *const *`). */
moe_status moe_gguf_writer_set_arr(moe_gguf_writer *w, const char *key, moe_gguf_type type,
                                   const void *data, uint64_t n);
/* Copies any value (nested arrays included), e.g. from a file being converted. */
moe_status moe_gguf_writer_set_value(moe_gguf_writer *w, const char *key, const moe_gguf_value *v);
moe_status moe_gguf_writer_remove(moe_gguf_writer *w, const char *key);
/* ne has n_dims entries (innermost first); nbytes must equal the size the type implies. */
moe_status moe_gguf_writer_add_tensor(moe_gguf_writer *w, const char *name, int type, int n_dims,
                                      const int64_t *ne, const void *data, uint64_t nbytes);
/* Writes the file atomically (temporary file, fsync, rename). */
moe_status moe_gguf_writer_write(moe_gguf_writer *w, const char *path);

#ifdef __cplusplus
}
#endif
#endif /* MOE_H */
