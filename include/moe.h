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
/* Monotonic time in seconds (for timings). */
double moe_time_s(void);
/* The process's peak resident set size so far (VmHWM), in bytes; 0 if unknown. */
uint64_t moe_peak_rss_bytes(void);
/* The memory the kernel reports available now (MemAvailable), in bytes; 0 if unknown. */
uint64_t moe_mem_available_bytes(void);
/* This machine's DRAM read bandwidth in bytes/s: the median of `reps` streaming reads of
 * a buffer of `bytes` (≥ 64 MiB; pick one much larger than the caches) over n_threads. */
double moe_measure_read_bandwidth(int n_threads, size_t bytes, int reps);
/* What the kernels of this build use on this CPU, in one line for reports (as llama.cpp's
 * system info): the instruction sets compiled in and the software prefetch levels chosen
 * at load (docs/RUN.md, "Tuning the kernels to a CPU"), e.g. "simd avx2 fma f16c
 * vnni(avx512vl); prefetch row-major L2, interleaved none". Valid until the next call on the
 * same thread. */
const char *moe_system_info(void);

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
/* The same, or with read_into_memory the whole file read into the process's memory instead
 * of mapped (what `--no-mmap` does: see moe_model_params.no_mmap). */
moe_gguf *moe_gguf_open_ex(const char *path, bool read_into_memory);
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

/* ------------------------------------------------------------------ tensor types */

/* ggml's name of a tensor type id ("f32", "q4_K", ...); "type N" for an unknown id. */
const char *moe_type_name(int type);

/* ------------------------------------------------------------------ models */

/* A model loaded from a GGUF file (mapped, never copied) and a context that evaluates
 * tokens with it (KV cache + scratch). Architectures: llama (Mixtral when it has experts),
 * qwen2moe, qwen3moe, olmoe, deepseek (DeepSeek-MoE v1); docs/ARCHITECTURE.md. */
typedef struct moe_model moe_model;
typedef struct moe_context moe_context;

typedef enum moe_rope_type {
    MOE_ROPE_NORM = 0,      /* rotate adjacent pairs (x[2i], x[2i+1]): llama, deepseek */
    MOE_ROPE_NEOX = 2,      /* rotate halves (x[i], x[i + n_rot/2]): qwen2moe, qwen3moe, olmoe */
} moe_rope_type;

typedef enum moe_rope_scaling {
    MOE_ROPE_SCALING_NONE = 0,
    MOE_ROPE_SCALING_LINEAR = 1,
    MOE_ROPE_SCALING_YARN = 2,
} moe_rope_scaling;

/* Hyperparameters as read from the file's metadata ({arch}.*), with llama.cpp's defaults
 * where a key is absent and sizes checked against the tensors' shapes. */
typedef struct moe_hparams {
    char arch[32];               /* general.architecture */
    int64_t n_vocab;             /* tokenizer.ggml.tokens (or token_embd's rows) */
    int64_t n_ctx_train;         /* context_length */
    int64_t n_embd;              /* embedding_length */
    int64_t n_layer;             /* block_count */
    int64_t n_head, n_head_kv;   /* attention.head_count(_kv) */
    int64_t n_embd_head_k;       /* attention.key_length, default n_embd / n_head */
    int64_t n_embd_head_v;       /* attention.value_length, default n_embd / n_head */
    int64_t n_rot;               /* rope.dimension_count, default n_embd_head_k */
    int64_t n_ff;                /* feed_forward_length: dense FFN width (0 if no dense layer) */
    int64_t n_expert;            /* expert_count (0: a dense model) */
    int64_t n_expert_used;       /* expert_used_count (k) */
    int64_t n_ff_exp;            /* expert_feed_forward_length: one routed expert's width */
    int64_t n_ff_shexp;          /* width of the shared expert FFN (all shared experts), 0 if none */
    int64_t n_expert_shared;     /* expert_shared_count (deepseek) */
    int64_t n_layer_dense_lead;  /* leading_dense_block_count (deepseek) */
    bool expert_weights_norm;    /* renormalise the top-k weights to sum 1 */
    float expert_weights_scale;  /* multiply the routing weights (1 = none) */
    bool shared_expert_gate;     /* qwen2moe: shared expert scaled by sigmoid(x·ffn_gate_inp_shexp) */
    int qk_norm;                 /* 0 none, 1 RMS-norm per head (qwen3moe), 2 over the whole projection (olmoe) */
    float rms_eps;               /* attention.layer_norm_rms_epsilon */
    moe_rope_type rope_type;
    float rope_freq_base;        /* rope.freq_base, default 10000 */
    float rope_freq_scale;       /* 1 / rope.scaling.factor (1 if absent) */
    moe_rope_scaling rope_scaling;      /* rope.scaling.type, default linear (= none at factor 1) */
    int64_t rope_n_ctx_orig;     /* rope.scaling.original_context_length, default n_ctx_train */
    float yarn_ext_factor, yarn_attn_factor, yarn_beta_fast, yarn_beta_slow;
} moe_hparams;

/* Element type of a context's KV cache. */
typedef enum moe_kv_type {
    MOE_KV_F32 = 0, /* the precision llama.cpp's reference logits (fixtures) were computed with */
    MOE_KV_F16 = 1  /* llama.cpp's default: half the memory, and faster decoding at long contexts */
} moe_kv_type;
/* "f32" / "f16"; -1 for another name. */
int moe_kv_type_from_name(const char *name);
const char *moe_kv_type_name(moe_kv_type t);

typedef struct moe_model_params {
    int n_threads;               /* threads of each context's pool; <= 0: all cores */
    moe_kv_type kv_type;         /* KV cache of each context (default F32). With F16, keys and
                                    values are rounded to F16 as they are stored, as in llama.cpp's
                                    cache; queries and attention weights stay F32. */
    bool no_mmap;                /* read the file into memory (2 MiB-aligned, huge pages where the
                                    kernel allows) instead of mapping it, and interleave the weight
                                    matrices there for the four-row kernels: slower to load, the
                                    same RSS and logits, faster to decode (docs/BENCHMARKS.md). The
                                    tensor bytes seen through moe_model_gguf are then interleaved.
                                    Not with an offloader, whose budget counts on experts staying
                                    on disk. The CLI sets it when the file fits in memory. */
    bool resident_in_memory;     /* with the file mapped (no_mmap false): copy the matrices that
                                    every token reads and the kernels can interleave (attention,
                                    output head, dense and shared FFNs: all but the routed experts
                                    and the embedding table) out of the mapping into memory of our
                                    own, interleaved, and hand the mapped pages back; the experts
                                    stay mapped for an offloader. The same RSS and logits, faster
                                    resident weights. The CLI sets it with --mem (not --mmap). */
} moe_model_params;
moe_model_params moe_model_default_params(void);

/* Loads a model. NULL params = defaults. Fails (NULL + message) on an unsupported
 * architecture, a missing or misshapen tensor (named), or a tensor type that cannot be
 * computed with yet. */
moe_model *moe_model_load(const char *path, const moe_model_params *params);
void moe_model_free(moe_model *m);
const moe_hparams *moe_model_hparams(const moe_model *m);
const char *moe_model_arch(const moe_model *m);
int64_t moe_model_n_vocab(const moe_model *m);
int64_t moe_model_n_layer(const moe_model *m);
/* The file the model reads (for the tokenizer's metadata, the offloading planner, ...). */
const moe_gguf *moe_model_gguf(const moe_model *m);

/* A context of n_ctx positions (<= 0: min(n_ctx_train, 4096)); all memory (KV cache of
 * the model params' kv_type, scratch for batches of up to 512 tokens) is allocated here,
 * none per token. */
moe_context *moe_context_init(moe_model *m, int64_t n_ctx);
void moe_context_free(moe_context *c);
int64_t moe_context_n_ctx(const moe_context *c);
/* Tokens evaluated so far (the position of the next token). */
int64_t moe_context_pos(const moe_context *c);
/* Forgets the sequence: the next moe_eval starts at position 0. */
void moe_context_reset(moe_context *c);

#define MOE_EVAL_LAST_ONLY 1u  /* logits of the last token only (one row) */

/* Evaluates n tokens continuing the sequence at moe_context_pos(). logits receives
 * n × n_vocab floats (row i after token i), or n_vocab with MOE_EVAL_LAST_ONLY, or
 * nothing when NULL. Long inputs are processed in batches; token ids out of range or a
 * full context give MOE_ERR_INVALID and leave the context unchanged. */
moe_status moe_eval(moe_context *c, const int32_t *tokens, int64_t n, float *logits, unsigned flags);

/* Bytes the context allocated: KV cache and every scratch buffer (nothing is allocated
 * per token). */
uint64_t moe_context_memory_bytes(const moe_context *c);
/* Bytes of weights one decoded token reads: its embedding row, every layer's attention,
 * norms, router, shared expert (or dense FFN) and k routed experts, and the output head.
 * Bandwidth / this = the decode speed bound. */
uint64_t moe_model_bytes_per_token(const moe_model *m);
/* Seconds the context's thread pool spent waiting for its slowest thread (load imbalance
 * and wake-up), and how many parallel steps it ran, since creation or the last reset. */
void moe_context_pool_stats(moe_context *c, double *wait_seconds, uint64_t *runs, bool reset);
/* Seconds the context spent in the weight products of decoded tokens (every matrix-vector
 * product of a one-token moe_eval: attention, router, experts, output head), and the
 * bytes of weights they read, since creation or the last reset (moe_context_pool_stats'
 * reset clears these too). The rest of a token's time is the work between products. */
void moe_context_product_stats(moe_context *c, double *seconds, uint64_t *bytes, bool reset);

/* Routing visibility: called for every (token, MoE layer) with the chosen experts (in
 * selection order) and their combine weights. Within a batch the calls come layer by
 * layer (all tokens of layer 0, then layer 1, ...). */
typedef struct moe_routing_event {
    int64_t pos;
    int32_t token;
    int layer;
    int k;
    const int32_t *experts;
    const float *weights;
} moe_routing_event;
typedef void (*moe_routing_fn)(void *user, const moe_routing_event *ev);
void moe_context_set_routing_hook(moe_context *c, moe_routing_fn fn, void *user);

/* ------------------------------------------------------------------ offloading */

/* Eviction policies of the expert cache (docs/OFFLOAD.md gives each rule). BELADY is
 * the offline optimum (it needs the future) and ORACLE_LFU is LFU told every expert's
 * use count over the whole trace in advance (the ceiling of frequency-based policies):
 * only `moe cachesim` can run these two. */
typedef enum moe_cache_policy {
    MOE_CACHE_LRU = 0,
    MOE_CACHE_LFU,
    MOE_CACHE_FIFO,
    MOE_CACHE_EDGEMOE,
    MOE_CACHE_BELADY,
    MOE_CACHE_ORACLE_LFU,
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
    uint64_t kv_bytes;           /* KV cache for n_ctx tokens of kv_type elements */
    uint64_t overhead_bytes;     /* scratch buffers and bookkeeping (estimate) */
    uint64_t slot_bytes;         /* one expert slot: gate+up+down of the largest expert */
    int n_layers, n_moe_layers, n_experts, n_experts_used;
    int64_t n_slots;             /* expert slots the budget leaves room for */
    uint64_t min_budget;         /* the smallest budget that runs: one layer's worth of slots */
} moe_offload_plan;
/* Fills `plan` for running the model with `budget` bytes and a context of n_ctx tokens
 * whose KV cache holds kv_type elements (as moe_model_params.kv_type).
 * Fails with MOE_ERR_NOMEM and a message saying how much is needed when the budget cannot
 * hold the resident part plus one layer's worth of experts (the plan is filled anyway). */
moe_status moe_offload_plan_compute(const moe_gguf *g, uint64_t budget, int n_ctx, moe_kv_type kv_type,
                                    moe_offload_plan *plan);

/* EdgeMoE's statistical expert predictor: how often expert j of layer l+1 follows
 * expert i of layer l on the same token, counted over a profiling text. Built by
 * `moe profile`, stored as a small GGUF file (docs/FORMAT.md). */
typedef struct moe_profile moe_profile;
moe_profile *moe_profile_init(int n_layers, int n_experts);
void moe_profile_free(moe_profile *p);
/* Counts one token's routing at every layer: experts[l] holds k ids (-1 = none) of layer l. */
void moe_profile_add(moe_profile *p, int layer, const int32_t *prev_experts, int k_prev,
                     const int32_t *experts, int k);
/* The n most likely experts of layer `layer` given the experts chosen at the previous
 * MoE layer (ties to the lower id); returns how many it wrote (0 without data). */
int moe_profile_predict(const moe_profile *p, int layer, const int32_t *prev_experts, int k_prev,
                        int32_t *out, int n);
moe_status moe_profile_save(const moe_profile *p, const char *path);
moe_profile *moe_profile_load(const char *path);
int moe_profile_n_layers(const moe_profile *p);
int moe_profile_n_experts(const moe_profile *p);

/* The offloading expert provider (`--mem`): non-expert weights stay mapped, routed
 * experts are read from the file into a fixed pool of slots sized from the budget. */
typedef struct moe_offload moe_offload;
/* Reads n bytes at offset off of fd into buf, like pread(2): replaceable so tests can
 * inject faults. Returns bytes read, 0 at end of file, -1 with errno set on error. */
typedef int64_t (*moe_pread_fn)(void *ctx, int fd, void *buf, size_t n, uint64_t off);
typedef struct moe_offload_params {
    uint64_t budget;             /* bytes for weights + expert cache + KV cache + scratch */
    moe_cache_policy policy;     /* default EDGEMOE (BELADY is not an online policy) */
    bool per_layer;              /* split the slots evenly between layers */
    bool prefetch;               /* run the I/O thread (default true) */
    bool no_direct;              /* do not try O_DIRECT */
    moe_pread_fn read_fn;        /* NULL: pread */
    void *read_ctx;
    bool gate_lookahead;         /* predictor: the next layer's router on this layer's input (default off) */
    const moe_profile *profile;  /* predictor: EdgeMoE's statistics (replaces the lookahead) */
    int prefetch_n;              /* experts to prefetch per predicted layer (0: experts used per token) */
} moe_offload_params;
typedef struct moe_offload_stats {
    int64_t n_slots;
    uint64_t slot_bytes;
    bool direct_io;              /* O_DIRECT reads (else page cache dropped after reads) */
    int64_t accesses;            /* routed experts (per layer and batch) */
    int64_t hits;                /* resident (or already being prefetched) when routed */
    int64_t misses;              /* had to be read after the router picked them */
    int64_t demand_loads;        /* read by the compute thread itself (not yet queued) */
    int64_t waits;               /* times the compute thread waited for the I/O thread */
    int64_t loads_background;    /* read by the I/O thread (routed or predicted) */
    int64_t prefetches;          /* predicted experts queued for reading */
    int64_t predicted, predicted_right, routed_with_guess;
    uint64_t bytes_read;
    double stall_seconds;        /* time the forward pass waited for experts */
    double hit_rate, prefetch_precision, prefetch_recall;
} moe_offload_stats;
moe_offload_params moe_offload_default_params(void);
/* Plans the budget for context c (its KV cache and scratch count against the budget) and
 * allocates the slots. Fails with a message giving the smallest workable budget when this
 * one is too small. */
moe_offload *moe_offload_init(const moe_model *m, const moe_context *c, const moe_offload_params *p);
/* The smallest budget moe_offload_init accepts for this model and context (0 if the
 * model has no routed experts). */
uint64_t moe_offload_min_budget(const moe_model *m, const moe_context *c, bool per_layer);
/* Free after the contexts that use it. */
void moe_offload_free(moe_offload *o);
/* Makes the context read its experts through the offloader (NULL: back to the mapping)
 * and turns the gate lookahead on when the parameters ask for it. */
void moe_offload_attach(moe_offload *o, moe_context *c);
void moe_offload_get_stats(moe_offload *o, moe_offload_stats *out);
uint64_t moe_offload_pool_bytes(const moe_offload *o);
int moe_offload_n_layers(const moe_offload *o);
/* Precision and recall of the predictor's guesses for one layer; false when the layer had
 * no scored guesses (a dense layer, the first MoE layer, or no predictor). */
bool moe_offload_layer_prediction(moe_offload *o, int layer, double *precision, double *recall);

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

/* ------------------------------------------------------------------ MoE layer on files */

/* One MoE layer run on safetensors files (`moe layer`, ../shared/specs/moe-layer.md):
 * weights W, input X (x, dy, token_ids) → OUT (y, routing, losses, and gradients with
 * `backward`). Fields left at their moe_layer_opts_default() values take the router's
 * defaults; a field set for a router that does not use it is an error. */
typedef struct moe_layer_opts {
    const char *router;        /* topk switch gshard expert-choice soft-moe base deepseek-v3
                                  loss-free adamoe hash usmoe */
    int k;                     /* experts per token; 0 = default */
    int renorm;                /* -1 = default, 0 = off, 1 = on */
    double capacity_factor;    /* NAN = default */
    int min_capacity;          /* expert-choice; -1 = default */
    int n_group, topk_group;   /* deepseek-v3 / loss-free; 0 = default */
    double route_scale;        /* deepseek-v3 / loss-free; NAN = default */
    const char *assign;        /* base: "balanced" | "greedy" | "auction"; NULL = default */
    const char *priority;      /* token choice with capacity: "token" | "bpr"; NULL = default */
    const char *hash_map;      /* hash: file with one expert id per line; NULL = id mod E */
    int gshard_sample;         /* gshard: 1 = sample the second expert; -1 = default */
    uint64_t seed;             /* for gshard sampling */
    double usmoe_alpha, usmoe_beta; /* usmoe; NAN = default */
    const char *act;           /* expert MLP: "swiglu" (default) | "gelu" */
    bool backward;             /* also write dx and d.NAME (needs dy in X) */
    double aux_coef, z_coef;   /* L = Σ y⊙dy + aux_coef·aux_loss + z_coef·z_loss */
    int n_threads;             /* ≤ 0: all cores */
} moe_layer_opts;

/* What one run did (for printing). */
typedef struct moe_layer_report {
    int64_t n_tokens, d, ff, shared_ff;
    int n_expert, n_cols;      /* n_cols: columns of expert_index (0 for soft-moe) */
    double aux_loss, z_loss;
    int64_t n_dropped;         /* (token, choice) pairs dropped by capacity */
    int64_t n_dropped_tokens;  /* tokens left with no expert */
    int64_t n_null;            /* adamoe: null-expert selections */
    double maxvio, entropy;
    int64_t *load;             /* [n_expert] tokens per expert after dropping */
    double seconds_forward, seconds_backward;
} moe_layer_report;

void moe_layer_opts_default(moe_layer_opts *o);
/* Runs the layer. rep (may be NULL) is filled on success; free it with
 * moe_layer_report_free. Errors name the file, the tensor and the problem. */
moe_status moe_layer_run(const moe_layer_opts *o, const char *weights_path, const char *input_path,
                         const char *output_path, moe_layer_report *rep);
void moe_layer_report_free(moe_layer_report *rep);

/* ------------------------------------------------------------------ training */

/* `moe init`: a randomly initialised model (docs/TRAINING.md). Sizes ≤ 0 take the
 * defaults of moe_init_default_params. */
typedef struct moe_init_params {
    const char *arch;          /* mixtral | qwen2moe | qwen3moe | olmoe | deepseek */
    int64_t n_layer, n_embd, n_head, n_head_kv, n_ff, n_expert, n_expert_used;
    int64_t shared_ff;         /* shared expert width (qwen2moe: default n_ff; deepseek: k·n_ff) */
    int64_t dense_layers;      /* deepseek: leading dense layers */
    int64_t dense_ff;          /* deepseek: their width (default n_ff·n_expert_used) */
    int64_t n_ctx;
    int64_t vocab_size;        /* keep the first N tokens of the vocabulary (0: all) */
    uint64_t seed;
    bool f16;                  /* matrices in F16 (router, norms, biases stay F32) */
    bool tied;                 /* no output.weight: the head is token_embd */
} moe_init_params;
void moe_init_default_params(moe_init_params *p);
/* Writes a model with the tokenizer of vocab_path (a GGUF with tokenizer.* keys). */
moe_status moe_init_model(const moe_init_params *p, const char *vocab_path, const char *out_path);

/* `moe train`: options (docs/TRAINING.md). Start from moe_train_default_params. */
typedef struct moe_train_params {
    const char *model_path, *data_path, *eval_path, *out_path;
    moe_layer_opts router;     /* router.router = NULL keeps the model file's router; the
                                  other fields as for `moe layer` (k, capacity, groups, ...) */
    int n_null;                /* adamoe: null experts (router rows E + n_null) */
    int slots_per_expert;      /* soft-moe */
    int64_t steps, batch, ctx, warmup, grad_accum;
    int64_t stop_at;           /* stop after this step (the schedule still spans `steps`); 0 = steps */
    double lr, min_lr, clip, weight_decay, beta1, beta2, adam_eps;
    double aux_coef, z_coef, bias_update_rate;
    int n_threads;
    uint64_t seed;
    const char *checkpoint_path, *resume_path, *log_path;
    int64_t checkpoint_every, eval_every, eval_batches;
    bool f16_out;              /* write the output model's matrices as F16 */
    bool progress;             /* progress line on stderr */
} moe_train_params;
void moe_train_default_params(moe_train_params *p);
/* Trains; writes out_path (and checkpoints). Errors name the file and the problem. */
moe_status moe_train(const moe_train_params *p);

/* ------------------------------------------------------------------ upcycling */

/* `moe upcycle`: sparse upcycling (Komatsuzaki et al. 2022) of a dense llama model into a
 * Mixtral-layout MoE model (docs/TRAINING.md). Start from moe_upcycle_default_params. */
typedef struct moe_upcycle_params {
    int64_t n_expert, n_expert_used; /* E experts per layer, top-k (8, 2) */
    int64_t every;             /* upcycle the layers il with (il+1) % every == 0, the others stay
                                  dense (1: all); every > 1 files run in moe.c only (docs) */
    uint64_t seed;             /* router initialisation (1) */
    float router_std;          /* router weights N(0, std²) (0.02) */
    bool f16;                  /* matrices F16 (also when the dense file's are F16) */
} moe_upcycle_params;
void moe_upcycle_default_params(moe_upcycle_params *p);
/* Reads the dense model, writes the upcycled one (atomically). Its logits at step 0 equal
 * the dense model's up to float rounding. */
moe_status moe_upcycle(const moe_upcycle_params *p, const char *dense_path, const char *out_path);

/* ------------------------------------------------------------------ Tokenizer */

/* A tokenizer read from a GGUF file's `tokenizer.ggml.*` metadata, matching llama.cpp:
 * `llama` (SentencePiece BPE with byte fallback) and `gpt2` (byte-level BPE with the
 * pre-tokenizer named by tokenizer.ggml.pre). Immutable once loaded: every function
 * below may be called from several threads at once. See docs/TOKENIZERS.md. */
typedef struct moe_tokenizer moe_tokenizer;

/* Token attributes (llama.cpp's llama_token_attr bits). */
enum {
    MOE_TOKEN_ATTR_UNKNOWN      = 1 << 0,
    MOE_TOKEN_ATTR_UNUSED       = 1 << 1,
    MOE_TOKEN_ATTR_NORMAL       = 1 << 2,
    MOE_TOKEN_ATTR_CONTROL      = 1 << 3,
    MOE_TOKEN_ATTR_USER_DEFINED = 1 << 4,
    MOE_TOKEN_ATTR_BYTE         = 1 << 5,
    MOE_TOKEN_ATTR_LSTRIP       = 1 << 7,
    MOE_TOKEN_ATTR_RSTRIP       = 1 << 8,
};

/* Builds the tokenizer of a GGUF file (a model or a vocabulary-only file); the file may be
 * closed afterwards. NULL on error, e.g. an unknown tokenizer.ggml.pre, or token/score/
 * merge arrays that are missing, of the wrong type or of mismatched lengths. */
moe_tokenizer *moe_tokenizer_load(const moe_gguf *g);
void moe_tokenizer_free(moe_tokenizer *tok);

/* Text -> ids. `add_special` adds BOS/EOS where the vocabulary asks for them
 * (tokenizer.ggml.add_bos_token / add_eos_token, with llama.cpp's defaults);
 * `parse_special` turns the text of control tokens ("<|im_start|>") into those tokens
 * (user-defined tokens are always matched). *ids is malloc'ed (free() it; NULL when
 * *n_ids is 0). Invalid UTF-8 does not fail: it is tokenized as llama.cpp does. */
moe_status moe_tokenizer_encode(const moe_tokenizer *tok, const char *text, size_t len, bool add_special,
                                bool parse_special, int32_t **ids, size_t *n_ids);
/* Ids -> text by llama.cpp's llama_detokenize rules (a SentencePiece vocabulary drops the
 * leading space it added; `remove_special` drops a leading BOS / trailing EOS the
 * vocabulary adds; control tokens are rendered only with `unparse_special`; some
 * vocabularies clean up spaces before punctuation). *text is malloc'ed and NUL-terminated. */
moe_status moe_tokenizer_decode(const moe_tokenizer *tok, const int32_t *ids, size_t n_ids, bool remove_special,
                                bool unparse_special, char **text, size_t *len);
/* The bytes one token stands for (what streaming output prints): "" for control tokens
 * unless `special`. The pointer lives as long as the tokenizer; NULL for a bad id. The
 * bytes may be part of a UTF-8 sequence (byte tokens). */
const char *moe_tokenizer_piece(const moe_tokenizer *tok, int32_t id, bool special, size_t *len);

int32_t moe_tokenizer_n_vocab(const moe_tokenizer *tok);
/* Special ids, -1 when the vocabulary has none. */
int32_t moe_tokenizer_bos(const moe_tokenizer *tok);
int32_t moe_tokenizer_eos(const moe_tokenizer *tok);
int32_t moe_tokenizer_eot(const moe_tokenizer *tok);
int32_t moe_tokenizer_unk(const moe_tokenizer *tok);
int32_t moe_tokenizer_pad(const moe_tokenizer *tok);
/* Whether encode(add_special = true) adds BOS / EOS. */
bool moe_tokenizer_add_bos(const moe_tokenizer *tok);
bool moe_tokenizer_add_eos(const moe_tokenizer *tok);
/* End of generation: EOS, EOT, and the other turn/stream enders llama.cpp recognizes. */
bool moe_tokenizer_is_eog(const moe_tokenizer *tok, int32_t id);
/* The vocabulary's text of a token (SentencePiece "▁the", GPT-2 "Ġthe"); NULL for a bad id. */
const char *moe_tokenizer_token_text(const moe_tokenizer *tok, int32_t id, size_t *len);
float moe_tokenizer_token_score(const moe_tokenizer *tok, int32_t id);
int moe_tokenizer_token_attr(const moe_tokenizer *tok, int32_t id);  /* MOE_TOKEN_ATTR_* bits */
/* The id whose vocabulary text is exactly s[0..len), -1 when none ("<|im_start|>"). */
int32_t moe_tokenizer_find(const moe_tokenizer *tok, const char *s, size_t len);
/* tokenizer.ggml.model ("llama", "gpt2") and the pre-tokenizer name ("" for llama). */
const char *moe_tokenizer_model(const moe_tokenizer *tok);
const char *moe_tokenizer_pre(const moe_tokenizer *tok);

/* ------------------------------------------------------------------ quantization */

/* Options of moe_quantize_file; start from moe_quantize_default_params(). */
typedef struct moe_quantize_params {
    int n_threads;   /* ≤ 0: one per core */
    bool progress;   /* one line per tensor on stderr, as llama-quantize prints */
} moe_quantize_params;

/* What moe_quantize_file did (sizes are tensor data bytes). */
typedef struct moe_quantize_stats {
    int64_t n_tensors;     /* in the file */
    int64_t n_quantized;   /* converted to the target type */
    int64_t n_kept;        /* left as they were or stored as F32 (norms, biases, router) */
    int64_t n_misfit;      /* weight matrices kept because their rows do not fit the blocks */
    uint64_t bytes_in, bytes_out;
    double seconds;
} moe_quantize_stats;

moe_quantize_params moe_quantize_default_params(void);
/* The target types moe_quantize_file accepts, e.g. "q4_0, q4_1, q5_0, q5_1, q8_0, ...,
 * f16, bf16, f32" (static string). */
const char *moe_quantize_type_names(void);
/* Writes `out_path`: the GGUF model `in_path` with every weight matrix converted to `type`
 * (a ggml type name, case-insensitive) by llama.cpp's reference quantizers, as
 * `llama-quantize --pure` does: 1-D tensors (norms, biases) and the MoE router
 * (*ffn_gate_inp.weight) are stored as F32, matrices whose rows are not a whole number of
 * the type's blocks keep their type. Inputs may be F32, F16, BF16 or any type moe.c can
 * dequantize. All metadata are copied; general.file_type is set to llama.cpp's
 * LLAMA_FTYPE for the type. The output is written atomically. `stats` may be NULL. */
moe_status moe_quantize_file(const char *in_path, const char *out_path, const char *type,
                             const moe_quantize_params *params, moe_quantize_stats *stats);

#ifdef __cplusplus
}
#endif
#endif /* MOE_H */
