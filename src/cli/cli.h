/* cli.h — what the subcommands of `moe` share: the entry points (one file each) and
 * small argument-parsing helpers. The CLI only uses the public API in moe.h. */
#ifndef MOE_CLI_H
#define MOE_CLI_H

#include <stdbool.h>
#include <stdint.h>
#include <stdio.h>
#include "moe.h"

/* Each subcommand: argv[0] is the subcommand's name. Returns the process exit status. */
typedef int (*cli_cmd_fn)(int argc, char **argv);

typedef struct {
    const char *name;
    cli_cmd_fn fn;
    const char *summary;
} cli_command;

/* Prints "moe SUB: message" to stderr and returns 1 (the usage-error exit status is 2). */
int cli_fail(const char *sub, const char *fmt, ...) __attribute__((format(printf, 2, 3)));
/* Prints "moe SUB: <moe_last_error()>" and returns 1. */
int cli_fail_lib(const char *sub);
/* Usage error: message + "try 'moe SUB --help'", returns 2. */
int cli_usage(const char *sub, const char *fmt, ...) __attribute__((format(printf, 2, 3)));

/* Option value helpers: they print a usage error and return false on bad input.
 * `i` is advanced past the value. */
bool cli_arg_str(const char *sub, int argc, char **argv, int *i, const char **out);
bool cli_arg_int(const char *sub, int argc, char **argv, int *i, int64_t min, int64_t max, int64_t *out);
bool cli_arg_float(const char *sub, int argc, char **argv, int *i, double *out);
/* Sizes like 700M, 2G, 1.5G, 512K, 1000000 (bytes); powers of 1024. */
bool cli_parse_size(const char *s, uint64_t *out);
bool cli_arg_size(const char *sub, int argc, char **argv, int *i, uint64_t *out);
/* --kv-type's value: f32 or f16. */
bool cli_arg_kv_type(const char *sub, int argc, char **argv, int *i, moe_kv_type *out);
/* True if argv[i] is -h or --help. */
bool cli_is_help(const char *a);

/* The --mem options shared by run, chat, logits and bench (offload_opts.c), and the
 * other model-loading options of those four (--no-mmap, --mmap, --kv-type). */
typedef struct cli_offload_opts {
    moe_offload_params params;    /* params.budget == 0: no offloading */
    const char *profile_path;     /* --profile: the statistical predictor's table */
    moe_profile *profile;         /* loaded by cli_offload_attach, freed by cli_offload_close */
    bool no_mmap;                 /* --no-mmap: read the model into memory (moe_model_params.no_mmap) */
    bool mmap;                    /* --mmap: map it (the library's default) */
    moe_kv_type kv_type;          /* --kv-type: the KV cache's element type */
} cli_offload_opts;
void cli_offload_opts_default(cli_offload_opts *o);
/* 1 if argv[*i] was an offload option (value consumed), 0 if not, -1 on a usage error. */
int cli_offload_parse_opt(const char *sub, int argc, char **argv, int *i, cli_offload_opts *o);
void cli_offload_print_help(FILE *f);
/* false (with a usage message) when the options contradict each other: run and chat
 * check before opening anything, so that a usage error exits 2. */
bool cli_offload_opts_check(const char *sub, const cli_offload_opts *o);
/* The model parameters these options imply for the model file at `path`; false (with a
 * usage message) when cli_offload_opts_check fails. Without
 * --mem, --mmap or --no-mmap the model is read into memory if it fits in the memory
 * available now with room to spare, and mapped otherwise (with a note on stderr). */
bool cli_offload_model_params(const char *sub, const cli_offload_opts *o, int threads, const char *path,
                              moe_model_params *mp);
/* With --mem: creates the offloader and attaches it to c (NULL + message on failure;
 * NULL without --mem too: check o->params.budget). Free it after the context. */
moe_offload *cli_offload_attach(const char *sub, cli_offload_opts *o, moe_model *m, moe_context *c);
/* Frees the offloader (after the context) and the profile. */
void cli_offload_close(moe_offload *off, cli_offload_opts *o);
/* A routing hook (moe_context_set_routing_hook) that writes each event as one JSON line
 * to the FILE* in `user` (the trace format of docs/FORMAT.md). */
void cli_routing_jsonl(void *user, const moe_routing_event *ev);
/* Statistics of the offloader as JSON members (",\"offload\":{...}"; nothing without one)
 * followed by ",\"peak_rss_bytes\":N". */
void cli_offload_json_stats(moe_offload *off, FILE *f);
/* Cache statistics (when offloading) and peak RSS, to f. */
void cli_offload_print_stats(const char *sub, moe_offload *off, FILE *f);

/* Text generation shared by `moe run` and `moe chat` (defined in cmd_run.c). */
typedef struct cli_gen_opts {
    const char *model;            /* -m; NULL: the default model (cli_default_model) */
    int threads;                  /* -t; <= 0: all cores */
    int64_t n_ctx;                /* -c; <= 0: the library's default */
    int64_t repeat_last_n;        /* --repeat-last-n; -1: the context size */
    moe_sampler_params sp;        /* --temp, --top-k, ... */
    bool ignore_eos;              /* --ignore-eos */
    bool verbose;                 /* -v */
    cli_offload_opts offload;     /* --mem, --cache-policy, ... */
    const char *dump_routing;     /* --dump-routing FILE.jsonl */
} cli_gen_opts;
typedef struct cli_gen cli_gen;
void cli_gen_opts_default(cli_gen_opts *o);
/* Parses one generation option at argv[*i]: 1 if it took it (and its value), 0 if it is
 * not one, -1 after printing a usage error. */
int cli_gen_parse_opt(const char *sub, int argc, char **argv, int *i, cli_gen_opts *o);
/* The help lines of those options. */
void cli_gen_print_opts_help(FILE *f);
/* The default model: $MOE_MODEL, <exe dir>/models/default.gguf, <exe dir>/../models/
 * default.gguf, <exe dir>/../share/moe/default.gguf. On failure prints where it looked
 * and returns false. */
bool cli_default_model(const char *sub, char *path, size_t cap);
/* Loads the model, its tokenizer, a context and a sampler; prints why on failure. */
cli_gen *cli_gen_open(const char *sub, const cli_gen_opts *o);
void cli_gen_close(cli_gen *g);
/* Text → token ids (malloc'ed); special tokens in the text are parsed when `special`. */
bool cli_gen_tokenize(cli_gen *g, const char *text, size_t len, bool add_bos, bool special,
                      int32_t **ids, int64_t *n);
bool cli_gen_add_bos(const cli_gen *g);
/* Evaluates prompt tokens (they also enter the sampler's penalty window). */
bool cli_gen_feed(cli_gen *g, const int32_t *ids, int64_t n);
/* Samples up to n_max tokens (< 0: until the context is full), feeding each back, and
 * stops before an end-of-generation token. Text is streamed to `out` (if not NULL) as
 * it is produced, never splitting a UTF-8 character; the generated text and ids are
 * appended to *text / *ids when those are not NULL. */
bool cli_gen_generate(cli_gen *g, int64_t n_max, FILE *out, char **text, size_t *text_len,
                      int32_t **ids, int64_t *n_ids);
/* The model's `tokenizer.chat_template` (NULL if none), the texts of BOS and EOS. */
const char *cli_gen_chat_template(const cli_gen *g);
const char *cli_gen_bos_text(const cli_gen *g);
const char *cli_gen_eos_text(const cli_gen *g);
int64_t cli_gen_pos(const cli_gen *g);
int64_t cli_gen_n_ctx(const cli_gen *g);
uint32_t cli_gen_seed(const cli_gen *g);
/* Load time, prompt and generation speeds, to `f`. */
void cli_gen_print_stats(const cli_gen *g, FILE *f);
void cli_gen_json_stats(const cli_gen *g, FILE *f);

/* JSON output helpers (stdout): strings are escaped, non-finite numbers become null. */
void cli_json_str(FILE *f, const char *s, size_t len);
void cli_json_num(FILE *f, double x);

#endif
