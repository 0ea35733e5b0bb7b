/* safetensors.h — Hugging Face safetensors files: a validating reader (mmap, every offset
 * checked against the file, the header parsed by a small bounded JSON parser) with
 * conversions to float / int64, and a writer for F32, F64 and I64 tensors. */
#ifndef MOE_IO_SAFETENSORS_H
#define MOE_IO_SAFETENSORS_H

#include "core/common.h"

#define MOE_ST_MAX_DIMS 8                          /* more is refused as malformed */
#define MOE_ST_MAX_HEADER (100ull * 1000 * 1000)   /* the reference library's limit */
#define MOE_ST_MAX_DEPTH 32                        /* JSON nesting of skipped values */

/* The dtypes of the format, in the reference library's order. */
typedef enum moe_st_dtype {
    MOE_ST_BOOL, MOE_ST_U8, MOE_ST_I8, MOE_ST_F8_E5M2, MOE_ST_F8_E4M3, MOE_ST_I16, MOE_ST_U16,
    MOE_ST_F16, MOE_ST_BF16, MOE_ST_I32, MOE_ST_U32, MOE_ST_F32, MOE_ST_F64, MOE_ST_I64,
    MOE_ST_U64,
    MOE_ST_N_DTYPES
} moe_st_dtype;

/* "F32", "I64", ... */
const char *moe_st_dtype_name(moe_st_dtype t);
/* Bytes per element. */
size_t moe_st_dtype_size(moe_st_dtype t);

/* One tensor as the header describes it. shape[0] is the outermost dimension (numpy
 * order); a scalar has n_dims 0 and n_elem 1. `data` points into the mapping and may be
 * unaligned: read it through the conversion functions or memcpy. */
typedef struct moe_st_tensor {
    const char *name;
    moe_st_dtype dtype;
    int n_dims;
    int64_t shape[MOE_ST_MAX_DIMS];
    int64_t n_elem;
    uint64_t begin, end;    /* data_offsets: from the end of the header */
    const void *data;
} moe_st_tensor;

typedef struct moe_safetensors moe_safetensors;

/* Opens and validates a file (mapped read-only). NULL on error with a message naming the
 * file, the tensor and the field. */
moe_safetensors *moe_st_open(const char *path);
/* Validates an image in memory (`name` is used in messages); the bytes must outlive it. */
moe_safetensors *moe_st_open_memory(const void *data, size_t size, const char *name);
void moe_st_close(moe_safetensors *st);

const char *moe_st_path(const moe_safetensors *st);
int64_t moe_st_n_tensors(const moe_safetensors *st);
const moe_st_tensor *moe_st_tensor_at(const moe_safetensors *st, int64_t i);
/* NULL (no error recorded) when absent. */
const moe_st_tensor *moe_st_find(const moe_safetensors *st, const char *name);
/* __metadata__ entries (string → string). */
int64_t moe_st_n_metadata(const moe_safetensors *st);
const char *moe_st_metadata_key(const moe_safetensors *st, int64_t i);
const char *moe_st_metadata_value(const moe_safetensors *st, int64_t i);
/* NULL when absent. */
const char *moe_st_metadata_get(const moe_safetensors *st, const char *key);

/* Converts all n_elem elements to float (any float or integer dtype; F8 is refused). */
moe_status moe_st_read_f32(const moe_safetensors *st, const moe_st_tensor *t, float *out);
/* Converts to int64: integer dtypes (U64 above INT64_MAX refused) and float tensors whose
 * values are all integers. */
moe_status moe_st_read_i64(const moe_safetensors *st, const moe_st_tensor *t, int64_t *out);

/* Writing. Tensors are referenced, not copied, until the write; they are stored in the
 * order they were added, back to back, after a header padded with spaces to 8 bytes. */
typedef struct moe_st_writer moe_st_writer;
moe_st_writer *moe_st_writer_init(void);
void moe_st_writer_free(moe_st_writer *w);
/* dtype F32, F64 or I64; shape in numpy order (n_dims 0 = a scalar). */
moe_status moe_st_writer_add(moe_st_writer *w, const char *name, moe_st_dtype dtype, int n_dims,
                             const int64_t *shape, const void *data);
moe_status moe_st_writer_set_metadata(moe_st_writer *w, const char *key, const char *value);
/* Writes atomically (temporary file next to `path`, fsync, rename). */
moe_status moe_st_writer_write(moe_st_writer *w, const char *path);

#endif
