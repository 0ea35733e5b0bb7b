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

/* ------------------------------------------------------------------ offloading */

/* Eviction policies of the expert cache (docs/OFFLOAD.md gives each rule). BELADY is
 * the offline optimum (it needs the future): only `moe cachesim` can run it. */
typedef enum moe_cache_policy {
    MOE_CACHE_LRU = 0,
    MOE_CACHE_LFU,
    MOE_CACHE_FIFO,
    MOE_CACHE_EDGEMOE,
    MOE_CACHE_BELADY,
    MOE_CACHE_POLICY_COUNT
} moe_cache_policy;
const char *moe_cache_policy_name(moe_cache_policy p);
/* -1 for an unknown name. */
int moe_cache_policy_from_name(const char *name);

/* How a memory budget splits for a model (see docs/OFFLOAD.md). */
typedef struct moe_offload_plan {
    uint64_t file_bytes;
    uint64_t expert_bytes;       /* all routed experts of all layers */
    uint64_t resident_bytes;     /* everything else: attention, embeddings, norms, shared experts */
    uint64_t kv_bytes;           /* KV cache for n_ctx tokens (F32) */
    uint64_t overhead_bytes;     /* scratch buffers and bookkeeping (estimate) */
    uint64_t slot_bytes;         /* one expert slot: gate+up+down of the largest expert */
    int n_layers, n_moe_layers, n_experts, n_experts_used;
    int64_t n_slots;             /* expert slots the budget leaves room for */
    uint64_t min_budget;         /* the smallest budget that runs: one layer's worth of slots */
} moe_offload_plan;
/* Fills `plan` for running the model with `budget` bytes and a context of n_ctx tokens.
 * Fails with MOE_ERR_NOMEM and a message saying how much is needed when the budget cannot
 * hold the resident part plus one layer's worth of experts (the plan is filled anyway). */
moe_status moe_offload_plan_compute(const moe_gguf *g, uint64_t budget, int n_ctx, moe_offload_plan *plan);

/* A routing trace (the JSON lines `--dump-routing` writes; docs/FORMAT.md). */
typedef struct moe_trace moe_trace;
moe_trace *moe_trace_load(const char *path);
void moe_trace_free(moe_trace *t);
int64_t moe_trace_n_groups(const moe_trace *t);     /* (token, layer) lines */
int64_t moe_trace_n_accesses(const moe_trace *t);   /* expert uses */
int moe_trace_n_layers(const moe_trace *t);         /* 1 + largest layer index */
int moe_trace_n_experts(const moe_trace *t);        /* 1 + largest expert id */
int moe_trace_max_group(const moe_trace *t);        /* most experts one line uses */

typedef struct moe_cachesim_result {
    int64_t accesses, hits, misses, evictions;
    double hit_rate;
} moe_cachesim_result;
/* Replays the trace in file order through an expert cache of n_slots slots. Fails if the
 * slots cannot hold one line's experts (per layer, with per_layer). */
moe_status moe_cachesim(const moe_trace *t, moe_cache_policy policy, int64_t n_slots, bool per_layer,
                        moe_cachesim_result *out);

/* ------------------------------------------------------------------ sampling */

/* The sampler picks the next token from a row of logits. It applies llama.cpp's default
 * chain in llama.cpp's order — penalties, top-k, top-p, min-p, temperature — then draws
 * from softmax of what is left (docs/RUN.md). temp <= 0 is greedy: the largest logit
 * (after penalties), the lowest id on ties. */
#define MOE_SEED_RANDOM 0xFFFFFFFFu   /* seed from the clock (llama.cpp's LLAMA_DEFAULT_SEED) */

typedef struct moe_sampler_params {
    uint32_t seed;           /* MOE_SEED_RANDOM: a fresh seed (see moe_sampler_seed) */
    float temp;              /* 0.80; <= 0: greedy */
    int32_t top_k;           /* 40; <= 0: off */
    float top_p;             /* 0.95; >= 1: off */
    float min_p;             /* 0.05; <= 0: off */
    int32_t penalty_last_n;  /* 64: how many past tokens the penalties look at; 0: off */
    float penalty_repeat;    /* 1.0 (off): divide positive / multiply negative logits */
    float penalty_freq;      /* 0.0 (off): subtract count * freq */
    float penalty_present;   /* 0.0 (off): subtract present once if seen */
    int32_t min_keep;        /* 0: top-p and min-p keep at least this many tokens */
} moe_sampler_params;

typedef struct moe_sampler moe_sampler;

/* llama.cpp's defaults (common_params_sampling). */
moe_sampler_params moe_sampler_default_params(void);
/* NULL with a message on invalid parameters (NaN, negative temperature is fine). */
moe_sampler *moe_sampler_init(const moe_sampler_params *params);
void moe_sampler_free(moe_sampler *s);
/* Picks a token from logits[0..n_vocab). Does not record it: call moe_sampler_accept
 * with the token that is actually used. Returns -1 with a message if n_vocab < 1 or no
 * logit is finite. */
int32_t moe_sampler_sample(moe_sampler *s, const float *logits, int32_t n_vocab);
/* Records a token in the penalty window (prompt tokens too, as llama.cpp does). */
void moe_sampler_accept(moe_sampler *s, int32_t token);
/* Forgets the history and restarts the random sequence from the seed. */
void moe_sampler_reset(moe_sampler *s);
/* The seed in use (the drawn one when MOE_SEED_RANDOM was asked for). */
uint32_t moe_sampler_seed(const moe_sampler *s);

/* ------------------------------------------------------------------ chat templates */

/* Chat templates are applied the way llama.cpp's llm_chat_apply_template does: the
 * family is recognised from substrings of the model's Jinja text
 * (`tokenizer.chat_template`) and formatted in C; no Jinja interpreter. */
typedef struct moe_chat_msg {
    const char *role;      /* "system", "user", "assistant" */
    const char *content;
} moe_chat_msg;

/* Number of built-in templates; ids are 0 .. n-1. */
int moe_chat_template_count(void);
/* "chatml", "llama2", "mistral-v7", ... ; NULL for an invalid id. */
const char *moe_chat_template_name(int tmpl);
/* The id of a template name, or -1. */
int moe_chat_template_from_name(const char *name);
/* The id detected from a Jinja template text (or a template name), or -1 if unknown. */
int moe_chat_template_detect(const char *jinja);
/* Formats a conversation. bos/eos are the texts of the model's BOS/EOS tokens, used by the
 * few templates that spell them inside the text (NULL: ""). With add_assistant the
 * result ends with the assistant's turn header. Returns a malloc'ed string (free()),
 * or NULL with a message. */
char *moe_chat_format(int tmpl, const moe_chat_msg *msgs, size_t n_msgs, bool add_assistant,
                      const char *bos, const char *eos);

#ifdef __cplusplus
}
#endif
#endif /* MOE_H */
