/* cmd_inspect.c — `moe inspect FILE.gguf [--json]`: what a GGUF file holds, for people
 * (architecture, hyperparameters, the memory split an offloading user needs first, the
 * metadata and the tensor table, aligned like llama.cpp's loader prints) and for scripts
 * (one JSON object with everything, arrays in full). Works on any GGUF file: nothing
 * here needs the architecture to be supported by the model loader. */
#include "cli/cli.h"

#include <inttypes.h>
#include <math.h>
#include <stdlib.h>
#include <string.h>

#define INSPECT_MAX_DEPTH 16 /* nesting the printers follow; the reader allows less */

static void usage(FILE *f) {
    fprintf(f,
            "usage: moe inspect [options] FILE.gguf\n"
            "\n"
            "Shows what a GGUF file holds: architecture, hyperparameters, how many bytes are\n"
            "routed-expert weights and how many must stay resident, the metadata and the\n"
            "tensor table. Any GGUF file works, supported architecture or not.\n"
            "\n"
            "options:\n"
            "  -m, --model FILE   the file (instead of the positional argument)\n"
            "  --json             print one JSON object (metadata arrays in full) instead of text\n"
            "  --no-tensors       leave out the tensor table (text output)\n"
            "  --no-metadata      leave out the metadata listing (text output)\n"
            "  -h, --help         this text\n"
            "\n"
            "A malformed file gives the reader's message (file, field, problem) and exit status 1.\n");
}

/* ------------------------------------------------------------ value helpers */

static const char *gtype_name(moe_gguf_type t) {
    static const char *names[] = {"u8", "i8", "u16", "i16", "u32", "i32", "f32", "bool",
                                  "str", "arr", "u64", "i64", "f64"};
    return (unsigned)t < sizeof names / sizeof names[0] ? names[t] : "?";
}

static bool is_uint(moe_gguf_type t) {
    return t == MOE_GGUF_U8 || t == MOE_GGUF_U16 || t == MOE_GGUF_U32 || t == MOE_GGUF_U64;
}
static bool is_sint(moe_gguf_type t) {
    return t == MOE_GGUF_I8 || t == MOE_GGUF_I16 || t == MOE_GGUF_I32 || t == MOE_GGUF_I64;
}
static bool is_float(moe_gguf_type t) { return t == MOE_GGUF_F32 || t == MOE_GGUF_F64; }

/* Element i of a scalar array, widened like a scalar value. */
static moe_gguf_value arr_elem(const moe_gguf_value *a, uint64_t i) {
    moe_gguf_value v = {.type = a->v.arr.type};
    const void *d = a->v.arr.data;
    switch (a->v.arr.type) {
    case MOE_GGUF_U8: v.v.u64 = ((const uint8_t *)d)[i]; break;
    case MOE_GGUF_I8: v.v.i64 = ((const int8_t *)d)[i]; break;
    case MOE_GGUF_U16: v.v.u64 = ((const uint16_t *)d)[i]; break;
    case MOE_GGUF_I16: v.v.i64 = ((const int16_t *)d)[i]; break;
    case MOE_GGUF_U32: v.v.u64 = ((const uint32_t *)d)[i]; break;
    case MOE_GGUF_I32: v.v.i64 = ((const int32_t *)d)[i]; break;
    case MOE_GGUF_F32: v.v.f64 = ((const float *)d)[i]; break;
    case MOE_GGUF_BOOL: v.v.b = ((const bool *)d)[i]; break;
    case MOE_GGUF_U64: v.v.u64 = ((const uint64_t *)d)[i]; break;
    case MOE_GGUF_I64: v.v.i64 = ((const int64_t *)d)[i]; break;
    case MOE_GGUF_F64: v.v.f64 = ((const double *)d)[i]; break;
    case MOE_GGUF_STRING: v.v.str = ((const moe_gguf_str *)d)[i]; break;
    case MOE_GGUF_ARRAY: v = ((const moe_gguf_value *)d)[i]; break;
    }
    return v;
}

/* A scalar as a double (for sizes and sorting), false for strings and arrays. */
static bool value_num(const moe_gguf_value *v, double *out) {
    if (is_uint(v->type)) *out = (double)v->v.u64;
    else if (is_sint(v->type)) *out = (double)v->v.i64;
    else if (is_float(v->type)) *out = v->v.f64;
    else if (v->type == MOE_GGUF_BOOL) *out = v->v.b;
    else return false;
    return true;
}

/* ------------------------------------------------------------ JSON */

/* Strings from files need not be UTF-8 (a byte-level vocabulary can hold any bytes):
 * invalid sequences become U+FFFD so the output is always valid JSON. */
static size_t utf8_valid_prefix(const unsigned char *s, size_t n, size_t i) {
    unsigned char c = s[i];
    size_t len = c < 0x80 ? 1 : (c & 0xe0) == 0xc0 ? 2 : (c & 0xf0) == 0xe0 ? 3 : (c & 0xf8) == 0xf0 ? 4 : 0;
    if (len == 0 || i + len > n) return 0;
    uint32_t cp = len == 1 ? c : len == 2 ? (c & 0x1fu) : len == 3 ? (c & 0x0fu) : (c & 0x07u);
    for (size_t k = 1; k < len; k++) {
        if ((s[i + k] & 0xc0) != 0x80) return 0;
        cp = (cp << 6) | (s[i + k] & 0x3fu);
    }
    static const uint32_t min_cp[5] = {0, 0, 0x80, 0x800, 0x10000};
    if (cp < min_cp[len] || cp > 0x10ffff || (cp >= 0xd800 && cp <= 0xdfff)) return 0;
    return len;
}

static void json_str(FILE *f, const char *s, size_t n) {
    const unsigned char *u = (const unsigned char *)s;
    size_t i = 0;
    while (i < n) {
        size_t k = utf8_valid_prefix(u, n, i);
        if (!k) break;
        i += k;
    }
    if (i == n) { cli_json_str(f, s, n); return; }
    char *clean = malloc(n * 3 + 1);
    if (!clean) { cli_json_str(f, "", 0); return; }
    size_t m = 0;
    for (i = 0; i < n;) {
        size_t k = utf8_valid_prefix(u, n, i);
        if (k) { memcpy(clean + m, s + i, k); m += k; i += k; }
        else { memcpy(clean + m, "\xef\xbf\xbd", 3); m += 3; i++; }
    }
    cli_json_str(f, clean, m);
    free(clean);
}

static void json_cstr(FILE *f, const char *s) { json_str(f, s, strlen(s)); }

static void json_value(FILE *f, const moe_gguf_value *v, int depth) {
    if (is_uint(v->type)) fprintf(f, "%" PRIu64, v->v.u64);
    else if (is_sint(v->type)) fprintf(f, "%" PRId64, v->v.i64);
    else if (v->type == MOE_GGUF_F32) cli_json_num(f, v->v.f64);
    else if (v->type == MOE_GGUF_F64) {
        if (isfinite(v->v.f64)) fprintf(f, "%.17g", v->v.f64); else fputs("null", f);
    } else if (v->type == MOE_GGUF_BOOL) fputs(v->v.b ? "true" : "false", f);
    else if (v->type == MOE_GGUF_STRING) json_str(f, v->v.str.ptr, v->v.str.len);
    else if (v->type == MOE_GGUF_ARRAY && depth < INSPECT_MAX_DEPTH) {
        fputc('[', f);
        for (uint64_t i = 0; i < v->v.arr.n; i++) {
            if (i) fputc(',', f);
            moe_gguf_value e = arr_elem(v, i);
            json_value(f, &e, depth + 1);
        }
        fputc(']', f);
    } else fputs("null", f);
}

/* "arr[str,4096]" / "arr[arr[u32,2],3]" */
static void type_desc(char *buf, size_t cap, const moe_gguf_value *v) {
    if (v->type != MOE_GGUF_ARRAY) { snprintf(buf, cap, "%s", gtype_name(v->type)); return; }
    if (v->v.arr.type == MOE_GGUF_ARRAY && v->v.arr.n > 0) {
        char inner[64];
        moe_gguf_value e = arr_elem(v, 0);
        type_desc(inner, sizeof inner, &e);
        snprintf(buf, cap, "arr[%s,%" PRIu64 "]", inner, v->v.arr.n);
    } else {
        snprintf(buf, cap, "arr[%s,%" PRIu64 "]", gtype_name(v->v.arr.type), v->v.arr.n);
    }
}

/* ------------------------------------------------------------ text values */

/* A string for a terminal: control bytes escaped, cut after `max` bytes. */
static void text_str(FILE *f, const char *s, uint64_t n, size_t max) {
    fputc('"', f);
    for (uint64_t i = 0; i < n && i < max; i++) {
        unsigned char c = (unsigned char)s[i];
        if (c == '\n') fputs("\\n", f);
        else if (c == '\t') fputs("\\t", f);
        else if (c == '"' || c == '\\') { fputc('\\', f); fputc(c, f); }
        else if (c < 0x20 || c == 0x7f) fprintf(f, "\\x%02x", c);
        else fputc(c, f);
    }
    fputc('"', f);
    if (n > max) fputs("…", f);
}

static void text_scalar(FILE *f, const moe_gguf_value *v) {
    if (is_uint(v->type)) fprintf(f, "%" PRIu64, v->v.u64);
    else if (is_sint(v->type)) fprintf(f, "%" PRId64, v->v.i64);
    else if (is_float(v->type)) fprintf(f, "%g", v->v.f64);
    else if (v->type == MOE_GGUF_BOOL) fputs(v->v.b ? "true" : "false", f);
    else if (v->type == MOE_GGUF_STRING) text_str(f, v->v.str.ptr, v->v.str.len, 120);
}

/* Arrays show their first few elements, then how many there are in all. */
static void text_value(FILE *f, const moe_gguf_value *v, int depth) {
    if (v->type != MOE_GGUF_ARRAY) { text_scalar(f, v); return; }
    uint64_t n = v->v.arr.n, show = n <= 8 ? n : 5;
    if (depth >= 3) { fprintf(f, "[%" PRIu64 " values]", n); return; }
    fputc('[', f);
    for (uint64_t i = 0; i < show; i++) {
        if (i) fputs(", ", f);
        moe_gguf_value e = arr_elem(v, i);
        if (e.type == MOE_GGUF_STRING) text_str(f, e.v.str.ptr, e.v.str.len, 24);
        else text_value(f, &e, depth + 1);
    }
    if (show < n) {
        const char *what = v->v.arr.type == MOE_GGUF_STRING ? "strings" : v->v.arr.type == MOE_GGUF_ARRAY ? "arrays" : "values";
        fprintf(f, ", ... %" PRIu64 " %s", n, what);
    }
    fputc(']', f);
}

/* ------------------------------------------------------------ sizes */

static void human_bytes(char *buf, size_t cap, double b) {
    const char *u[] = {"B", "KiB", "MiB", "GiB", "TiB"};
    int k = 0;
    while (b >= 1024 && k < 4) { b /= 1024; k++; }
    if (k == 0) snprintf(buf, cap, "%.0f B", b);
    else snprintf(buf, cap, "%.2f %s", b, u[k]);
}

static void human_count(char *buf, size_t cap, double n) {
    if (n >= 1e12) snprintf(buf, cap, "%.2f T", n / 1e12);
    else if (n >= 1e9) snprintf(buf, cap, "%.2f B", n / 1e9);
    else if (n >= 1e6) snprintf(buf, cap, "%.2f M", n / 1e6);
    else if (n >= 1e3) snprintf(buf, cap, "%.2f K", n / 1e3);
    else snprintf(buf, cap, "%.0f", n);
}

/* llama.cpp's llama_ftype names (general.file_type). */
static const char *ftype_name(uint64_t t) {
    static const struct { unsigned id; const char *name; } names[] = {
        {0, "F32"}, {1, "F16"}, {2, "Q4_0"}, {3, "Q4_1"}, {7, "Q8_0"}, {8, "Q5_0"}, {9, "Q5_1"},
        {10, "Q2_K - Medium"}, {11, "Q3_K - Small"}, {12, "Q3_K - Medium"}, {13, "Q3_K - Large"},
        {14, "Q4_K - Small"}, {15, "Q4_K - Medium"}, {16, "Q5_K - Small"}, {17, "Q5_K - Medium"},
        {18, "Q6_K"}, {19, "IQ2_XXS"}, {20, "IQ2_XS"}, {21, "Q2_K - Small"}, {22, "IQ3_XS"},
        {23, "IQ3_XXS"}, {24, "IQ1_S"}, {25, "IQ4_NL"}, {26, "IQ3_S"}, {27, "IQ3_M"}, {28, "IQ2_S"},
        {29, "IQ2_M"}, {30, "IQ4_XS"}, {31, "IQ1_M"}, {32, "BF16"}, {36, "TQ1_0"}, {37, "TQ2_0"},
        {38, "MXFP4 MoE"},
    };
    for (size_t i = 0; i < sizeof names / sizeof names[0]; i++)
        if (names[i].id == t) return names[i].name;
    return NULL;
}

/* ------------------------------------------------------------ tensors */

/* Routed-expert weights: merged 3-D tensors (blk.N.ffn_gate_exps.weight, also
 * ffn_gate_up_exps and the _exps biases), or one tensor per expert
 * (blk.N.ffn_{gate,up,down}.E.weight). Shared experts (_shexp) and the router
 * (ffn_gate_inp) are not: they run for every token and stay resident. */
static bool parse_layer(const char *name, long *layer, const char **rest) {
    if (strncmp(name, "blk.", 4) != 0) return false;
    char *end;
    long l = strtol(name + 4, &end, 10);
    if (end == name + 4 || *end != '.' || l < 0) return false;
    *layer = l;
    *rest = end + 1;
    return true;
}

/* Returns 0 if not an expert tensor, 1 for a merged one, 2 for a per-expert one
 * (setting *expert). */
static int expert_kind(const char *name, long *layer, long *expert) {
    const char *rest;
    if (!parse_layer(name, layer, &rest)) return 0;
    if (strstr(rest, "_exps")) return 1;
    static const char *pre[] = {"ffn_gate.", "ffn_up.", "ffn_down.", "ffn_gate_up."};
    for (size_t i = 0; i < sizeof pre / sizeof pre[0]; i++) {
        size_t k = strlen(pre[i]);
        if (strncmp(rest, pre[i], k) != 0) continue;
        char *end;
        long e = strtol(rest + k, &end, 10);
        if (end != rest + k && *end == '.' && e >= 0) { *expert = e; return 2; }
    }
    return 0;
}

typedef struct {
    uint64_t total_bytes, expert_bytes, shared_bytes;
    double n_params;
    int64_t n_expert_tensors;
    int layout;                 /* 0 none, 1 merged, 2 per-expert, 3 both */
    long n_layers_seen;         /* 1 + largest layer index of an expert tensor */
    long n_moe_layers;          /* layers holding routed experts (dense ones in between: deepseek, upcycle --every) */
    long n_experts_seen;        /* 1 + largest expert index */
    /* one routed expert (gate+up+down of one layer): sizes over all (layer, expert) */
    uint64_t per_expert_min, per_expert_max;
    double per_expert_mean;
    int64_t n_expert_slots;     /* (layer, expert) pairs that hold weights */
    uint64_t max_layer_expert_bytes;   /* the largest layer's routed experts, all of them */
} tensor_stats;

static double tensor_nelem(const moe_gguf_tensor *t) {
    double n = 1;
    for (int d = 0; d < 4; d++) n *= (double)t->ne[d];
    return n;
}

static bool compute_stats(const moe_gguf *g, tensor_stats *s) {
    memset(s, 0, sizeof *s);
    int64_t nt = moe_gguf_n_tensors(g);
    long max_l = -1, max_e = -1;
    for (int64_t i = 0; i < nt; i++) {
        const moe_gguf_tensor *t = moe_gguf_tensor_at(g, i);
        s->total_bytes += t->nbytes;
        s->n_params += tensor_nelem(t);
        if (strstr(t->name, "_shexp")) s->shared_bytes += t->nbytes;
        long l = 0, e = 0;
        int k = expert_kind(t->name, &l, &e);
        if (!k) continue;
        s->expert_bytes += t->nbytes;
        s->n_expert_tensors++;
        s->layout |= k;
        if (l > max_l) max_l = l;
        long ne = k == 1 ? (long)(t->n_dims >= 3 ? t->ne[2] : 1) - 1 : e;
        if (ne > max_e) max_e = ne;
    }
    s->n_layers_seen = max_l + 1;
    s->n_experts_seen = max_e + 1;
    if (s->n_expert_tensors == 0) return true;
    /* bytes per (layer, expert); bounded by the file: every pair is backed by bytes of
     * at least one tensor, and indices come from names, so cap the table size */
    if (s->n_layers_seen > 100000 || s->n_experts_seen > 100000 ||
        (double)s->n_layers_seen * (double)s->n_experts_seen > 5e7)
        return true;
    size_t cells = (size_t)s->n_layers_seen * (size_t)s->n_experts_seen;
    double *cell = calloc(cells, sizeof *cell);
    if (!cell) return false;
    for (int64_t i = 0; i < nt; i++) {
        const moe_gguf_tensor *t = moe_gguf_tensor_at(g, i);
        long l = 0, e = 0;
        int k = expert_kind(t->name, &l, &e);
        if (k == 1) {
            int64_t n_e = t->n_dims >= 3 && t->ne[2] > 0 ? t->ne[2] : 1;
            for (int64_t x = 0; x < n_e; x++) cell[(size_t)l * (size_t)s->n_experts_seen + (size_t)x] += (double)t->nbytes / (double)n_e;
        } else if (k == 2) {
            cell[(size_t)l * (size_t)s->n_experts_seen + (size_t)e] += (double)t->nbytes;
        }
    }
    double sum = 0;
    s->per_expert_min = UINT64_MAX;
    for (long l = 0; l < s->n_layers_seen; l++) {
        double layer_sum = 0;
        for (long e = 0; e < s->n_experts_seen; e++) {
            double b = cell[(size_t)l * (size_t)s->n_experts_seen + (size_t)e];
            if (b <= 0) continue;
            uint64_t ub = (uint64_t)llround(b);
            if (ub < s->per_expert_min) s->per_expert_min = ub;
            if (ub > s->per_expert_max) s->per_expert_max = ub;
            sum += b;
            layer_sum += b;
            s->n_expert_slots++;
        }
        s->n_moe_layers += layer_sum > 0;
        if ((uint64_t)llround(layer_sum) > s->max_layer_expert_bytes) s->max_layer_expert_bytes = (uint64_t)llround(layer_sum);
    }
    if (s->n_expert_slots == 0) s->per_expert_min = 0;
    s->per_expert_mean = s->n_expert_slots ? sum / (double)s->n_expert_slots : 0;
    free(cell);
    return true;
}

/* ------------------------------------------------------------ hyperparameters */

typedef struct {
    const char *json;      /* key in the JSON "hyperparameters" object */
    const char *label;     /* text label */
    const char *suffix;    /* metadata key after "{arch}." (NULL: derived only) */
} hp_def;

static const hp_def g_hp[] = {
    {"n_layer", "layers", "block_count"},
    {"n_embd", "embedding size", "embedding_length"},
    {"n_head", "attention heads", "attention.head_count"},
    {"n_head_kv", "KV heads", "attention.head_count_kv"},
    {"n_embd_head_k", "head size (K)", "attention.key_length"},
    {"n_embd_head_v", "head size (V)", "attention.value_length"},
    {"n_ff", "feed-forward size", "feed_forward_length"},
    {"n_expert", "experts", "expert_count"},
    {"n_expert_used", "experts used", "expert_used_count"},
    {"n_ff_exp", "expert FF size", "expert_feed_forward_length"},
    {"n_expert_shared", "shared experts", "expert_shared_count"},
    {"n_ff_shexp", "shared expert FF size", "expert_shared_feed_forward_length"},
    {"n_layer_dense_lead", "leading dense layers", "leading_dense_block_count"},
    {"expert_weights_scale", "expert weights scale", "expert_weights_scale"},
    {"expert_weights_norm", "expert weights norm", "expert_weights_norm"},
    {"expert_gating_func", "expert gating function", "expert_gating_func"},
    {"n_vocab", "vocabulary size", "vocab_size"},
    {"n_ctx_train", "context length", "context_length"},
    {"rope_dimension_count", "RoPE dimensions", "rope.dimension_count"},
    {"rope_freq_base", "RoPE freq base", "rope.freq_base"},
    {"rope_scaling_type", "RoPE scaling", "rope.scaling.type"},
    {"rope_scaling_factor", "RoPE scaling factor", "rope.scaling.factor"},
    {"rope_scaling_original_context_length", "RoPE original context", "rope.scaling.original_context_length"},
    {"rms_eps", "RMS norm epsilon", "attention.layer_norm_rms_epsilon"},
    {"norm_eps", "norm epsilon", "attention.layer_norm_epsilon"},
};
#define N_HP (sizeof g_hp / sizeof g_hp[0])

typedef struct {
    const moe_gguf_value *v;   /* from the metadata, or NULL */
    bool have_derived;
    double derived;            /* from other keys or the tensors' shapes */
    const char *source;        /* where a derived value comes from */
} hp_val;

static const moe_gguf_value *arch_key(const moe_gguf *g, const char *arch, const char *suffix) {
    char key[256];
    snprintf(key, sizeof key, "%s.%s", arch, suffix);
    return moe_gguf_find(g, key);
}

static bool hp_number(const hp_val *h, double *out) {
    if (h->v) return value_num(h->v, out);
    if (h->have_derived) { *out = h->derived; return true; }
    return false;
}

static int hp_index(const char *json) {
    for (size_t i = 0; i < N_HP; i++)
        if (strcmp(g_hp[i].json, json) == 0) return (int)i;
    return -1;
}

static void derive(hp_val *hv, const char *json, double x, const char *source) {
    int i = hp_index(json);
    if (i < 0 || hv[i].v) return;
    hv[i].have_derived = true;
    hv[i].derived = x;
    hv[i].source = source;
}

/* The first tensor whose name ends in `suffix` (after "blk.N."). */
static const moe_gguf_tensor *find_layer_tensor(const moe_gguf *g, const char *suffix) {
    for (int64_t i = 0; i < moe_gguf_n_tensors(g); i++) {
        const moe_gguf_tensor *t = moe_gguf_tensor_at(g, i);
        long l;
        const char *rest;
        if (parse_layer(t->name, &l, &rest) && strcmp(rest, suffix) == 0) return t;
    }
    return NULL;
}

static void read_hparams(const moe_gguf *g, const char *arch, const tensor_stats *st, hp_val *hv) {
    memset(hv, 0, sizeof *hv * N_HP);
    if (arch)
        for (size_t i = 0; i < N_HP; i++) hv[i].v = arch_key(g, arch, g_hp[i].suffix);
    double x, embd, head;
    /* llama.cpp's defaults, and sizes the tensors tell when the keys are absent */
    const void *d;
    uint64_t n;
    if (moe_gguf_get_arr(g, "tokenizer.ggml.tokens", -1, &d, &n) == MOE_OK)
        derive(hv, "n_vocab", (double)n, "tokenizer.ggml.tokens");
    else if (moe_gguf_find_tensor(g, "token_embd.weight"))
        derive(hv, "n_vocab", (double)moe_gguf_find_tensor(g, "token_embd.weight")->ne[1], "token_embd.weight");
    if (hp_number(&hv[hp_index("n_embd")], &embd) && hp_number(&hv[hp_index("n_head")], &head) && head > 0) {
        derive(hv, "n_embd_head_k", floor(embd / head), "embedding size / heads");
        derive(hv, "n_embd_head_v", floor(embd / head), "embedding size / heads");
    }
    if (hp_number(&hv[hp_index("n_head")], &head)) derive(hv, "n_head_kv", head, "= attention heads");
    /* RoPE defaults only where the architecture uses RoPE at all (gpt2 does not) */
    bool rope = false;
    for (size_t i = 0; i < N_HP; i++) rope |= hv[i].v && strncmp(g_hp[i].suffix, "rope.", 5) == 0;
    if (rope) {
        if (hp_number(&hv[hp_index("n_embd_head_k")], &x)) derive(hv, "rope_dimension_count", x, "head size");
        derive(hv, "rope_freq_base", 10000, "default");
    }
    const moe_gguf_tensor *t;
    if ((t = find_layer_tensor(g, "ffn_gate_inp.weight"))) derive(hv, "n_expert", (double)t->ne[1], "router shape");
    else if (st->layout) derive(hv, "n_expert", (double)st->n_experts_seen, "expert tensors");
    if ((t = find_layer_tensor(g, "ffn_gate_exps.weight")) || (t = find_layer_tensor(g, "ffn_up_exps.weight")))
        derive(hv, "n_ff_exp", (double)t->ne[1], "expert tensor shape");
    else if ((t = find_layer_tensor(g, "ffn_gate.0.weight")) || (t = find_layer_tensor(g, "ffn_up.0.weight")))
        derive(hv, "n_ff_exp", (double)t->ne[1], "expert tensor shape");
    if ((t = find_layer_tensor(g, "ffn_gate_shexp.weight")) || (t = find_layer_tensor(g, "ffn_up_shexp.weight"))) {
        derive(hv, "n_ff_shexp", (double)t->ne[1], "shared expert tensor shape");
        derive(hv, "n_expert_shared", 1, "shared expert tensors");
    }
}

static void rope_scaling_text(char *buf, size_t cap, const hp_val *hv) {
    const hp_val *type = &hv[hp_index("rope_scaling_type")];
    double factor = 0, orig = 0;
    bool have_factor = hp_number(&hv[hp_index("rope_scaling_factor")], &factor);
    bool have_orig = hp_number(&hv[hp_index("rope_scaling_original_context_length")], &orig);
    const char *name = type->v && type->v->type == MOE_GGUF_STRING ? type->v->v.str.ptr : NULL;
    if ((!name || strcmp(name, "none") == 0) && (!have_factor || factor == 0 || factor == 1)) {
        snprintf(buf, cap, "none");
        return;
    }
    int k = snprintf(buf, cap, "%s", name ? name : "linear");
    if (have_factor && k >= 0 && (size_t)k < cap) k += snprintf(buf + k, cap - (size_t)k, ", factor %g", factor);
    if (have_orig && k >= 0 && (size_t)k < cap) snprintf(buf + k, cap - (size_t)k, ", original context %.0f", orig);
}

/* ------------------------------------------------------------ text output */

/* "256 x 512 x 8" (ne[0] first, as llama.cpp prints shapes); returns its length. */
static int shape_text(char *buf, size_t cap, const moe_gguf_tensor *t) {
    int k = 0;
    buf[0] = 0;
    for (int d = 0; d < (t->n_dims > 0 ? t->n_dims : 1) && k >= 0 && (size_t)k < cap; d++)
        k += snprintf(buf + k, cap - (size_t)k, d ? " x %" PRId64 : "%" PRId64, t->ne[d]);
    return (int)strlen(buf);
}

static void print_text(const char *path, const moe_gguf *g, const char *arch, const hp_val *hv,
                       const tensor_stats *st, bool show_meta, bool show_tensors) {
    char a[64], b[64], c[64];
    FILE *f = stdout;
    const int W = 24; /* label column */
    human_bytes(a, sizeof a, (double)moe_gguf_file_size(g));
    printf("%-*s %s\n", W, "file", path);
    printf("%-*s GGUF v%u, %s (%" PRIu64 " bytes), alignment %" PRIu64 ", data at byte %" PRIu64 "\n", W, "format",
           moe_gguf_version(g), a, moe_gguf_file_size(g), moe_gguf_alignment(g), moe_gguf_data_offset(g));
    printf("%-*s %s\n", W, "architecture", arch ? arch : "(none: general.architecture is missing)");
    const char *s;
    if (moe_gguf_get_str(g, "general.name", &s) == MOE_OK)
        printf("%-*s %s\n", W, "name", s);
    uint32_t ft;
    if (moe_gguf_get_u32(g, "general.file_type", &ft) == MOE_OK) {
        const char *fn = ftype_name(ft);
        printf("%-*s %s (%u)\n", W, "file type", fn ? fn : "unknown", ft);
    }
    human_count(a, sizeof a, st->n_params);
    human_bytes(b, sizeof b, (double)st->total_bytes);
    printf("%-*s %" PRId64 " tensors, %s params, %s", W, "weights", moe_gguf_n_tensors(g), a, b);
    if (st->n_params > 0) printf(" (%.2f bits per weight)", (double)st->total_bytes * 8 / st->n_params);
    printf("\n");

    printf("\nhyperparameters\n");
    for (size_t i = 0; i < N_HP; i++) {
        const hp_val *h = &hv[i];
        if (strncmp(g_hp[i].json, "rope_scaling", 12) == 0) continue; /* one line below */
        if (!h->v && !h->have_derived) {
            /* keep the list stable for the basics; hide the rarer ones when absent */
            static const char *always[] = {"n_layer", "n_embd", "n_head", "n_head_kv", "n_expert", "n_expert_used",
                                           "n_ff_exp", "n_expert_shared", "n_ff_shexp", "n_vocab", "n_ctx_train"};
            bool show = false;
            for (size_t k = 0; k < sizeof always / sizeof always[0]; k++) show |= strcmp(always[k], g_hp[i].json) == 0;
            if (show) printf("  %-*s -\n", W - 2, g_hp[i].label);
            continue;
        }
        printf("  %-*s ", W - 2, g_hp[i].label);
        if (h->v) {
            if (h->v->type == MOE_GGUF_ARRAY) {
                /* per-layer values (e.g. head counts that vary by layer) */
                double lo = INFINITY, hi = -INFINITY, x;
                for (uint64_t k = 0; k < h->v->v.arr.n; k++) {
                    moe_gguf_value e = arr_elem(h->v, k);
                    if (value_num(&e, &x)) { lo = fmin(lo, x); hi = fmax(hi, x); }
                }
                if (lo <= hi) printf("%g..%g per layer (%" PRIu64 " values)", lo, hi, h->v->v.arr.n);
                else text_value(f, h->v, 0);
            } else {
                text_scalar(f, h->v);
            }
        } else {
            printf("%g (%s)", h->derived, h->source);
        }
        printf("\n");
    }
    char rs[160];
    rope_scaling_text(rs, sizeof rs, hv);
    printf("  %-*s %s\n", W - 2, "RoPE scaling", rs);

    /* the split an offloading user needs first */
    printf("\nmemory (what offloading needs)\n");
    human_bytes(a, sizeof a, (double)st->total_bytes);
    if (moe_gguf_n_tensors(g) == 0)
        printf("  %-*s none (a vocabulary or metadata-only file)\n", W - 2, "all tensors");
    else
        printf("  %-*s %11s  %6.1f%%  %" PRIu64 " bytes\n", W - 2, "all tensors", a, 100.0, st->total_bytes);
    if (moe_gguf_n_tensors(g) == 0) {
        /* nothing to split */
    } else if (st->n_expert_tensors > 0) {
        uint64_t non = st->total_bytes - st->expert_bytes;
        double pe = st->total_bytes ? 100.0 * (double)st->expert_bytes / (double)st->total_bytes : 0;
        human_bytes(a, sizeof a, (double)st->expert_bytes);
        human_bytes(b, sizeof b, (double)non);
        printf("  %-*s %11s  %6.1f%%  %" PRIu64 " bytes in %" PRId64 " tensors (%s)\n", W - 2, "routed experts", a, pe,
               st->expert_bytes, st->n_expert_tensors,
               st->layout == 1 ? "merged per layer" : st->layout == 2 ? "one tensor per expert" : "merged and per-expert");
        printf("  %-*s %11s  %6.1f%%  %" PRIu64 " bytes: attention, embeddings, norms, routers%s\n", W - 2,
               "non-expert (resident)", b, 100.0 - pe, non, st->shared_bytes ? ", shared experts" : "");
        if (st->n_expert_slots > 0) {
            human_bytes(a, sizeof a, st->per_expert_mean);
            printf("  %-*s %11s  %7s  %.0f bytes: gate+up+down of one expert in one layer", W - 2, "per expert", a, "",
                   st->per_expert_mean);
            if (st->per_expert_min != st->per_expert_max) {
                human_bytes(b, sizeof b, (double)st->per_expert_min);
                human_bytes(c, sizeof c, (double)st->per_expert_max);
                printf(" (mean; %s to %s)", b, c);
            }
            printf("\n");
            human_bytes(a, sizeof a, (double)st->max_layer_expert_bytes);
            printf("  %-*s %11s  %7s  %" PRIu64 " bytes; %" PRId64 " expert slots = %ld layers x %ld experts\n", W - 2,
                   "experts of one layer", a, "", st->max_layer_expert_bytes, st->n_expert_slots, st->n_moe_layers,
                   st->n_experts_seen);
        }
    } else {
        printf("  %-*s none (a dense model: every weight is used for every token)\n", W - 2, "routed experts");
    }

    if (show_meta) {
        int64_t n_kv = moe_gguf_n_kv(g);
        int kw = 0;
        for (int64_t i = 0; i < n_kv; i++) {
            int l = (int)strlen(moe_gguf_kv_key(g, i));
            if (l > kw) kw = l;
        }
        if (kw > 56) kw = 56;
        printf("\nmetadata (%" PRId64 " keys)\n", n_kv);
        for (int64_t i = 0; i < n_kv; i++) {
            const moe_gguf_value *v = moe_gguf_kv_value(g, i);
            char td[96];
            type_desc(td, sizeof td, v);
            printf("  %4" PRId64 "  %-*s  %-15s ", i, kw, moe_gguf_kv_key(g, i), td);
            text_value(f, v, 0);
            printf("\n");
        }
    }

    if (show_tensors && moe_gguf_n_tensors(g) > 0) {
        int64_t nt = moe_gguf_n_tensors(g);
        int nw = 4, sw = 5;
        char shape[96];
        for (int64_t i = 0; i < nt; i++) {
            const moe_gguf_tensor *t = moe_gguf_tensor_at(g, i);
            int l = (int)strlen(t->name);
            if (l > nw) nw = l;
            l = shape_text(shape, sizeof shape, t);
            if (l > sw) sw = l;
        }
        if (nw > 64) nw = 64;
        human_bytes(a, sizeof a, (double)st->total_bytes);
        printf("\ntensors (%" PRId64 ", %s; offsets from the data section at byte %" PRIu64 ")\n", nt, a,
               moe_gguf_data_offset(g));
        printf("  %5s  %-*s  %-7s  %-*s  %12s  %12s\n", "#", nw, "name", "type", sw, "shape", "offset", "bytes");
        for (int64_t i = 0; i < nt; i++) {
            const moe_gguf_tensor *t = moe_gguf_tensor_at(g, i);
            shape_text(shape, sizeof shape, t);
            long l, e;
            bool ex = expert_kind(t->name, &l, &e) != 0;
            printf("  %5" PRId64 "  %-*s  %-7s  %-*s  %12" PRIu64 "  %12" PRIu64 "%s\n", i, nw, t->name,
                   moe_type_name(t->type), sw, shape, t->offset, t->nbytes, ex ? "  expert" : "");
        }
    }
}

/* ------------------------------------------------------------ JSON output */

static void print_json(const char *path, const moe_gguf *g, const char *arch, const hp_val *hv, const tensor_stats *st) {
    FILE *f = stdout;
    fputs("{\"file\":", f);
    json_cstr(f, path);
    fprintf(f, ",\"version\":%u,\"file_size\":%" PRIu64 ",\"alignment\":%" PRIu64 ",\"data_offset\":%" PRIu64,
            moe_gguf_version(g), moe_gguf_file_size(g), moe_gguf_alignment(g), moe_gguf_data_offset(g));
    fputs(",\"architecture\":", f);
    if (arch) json_cstr(f, arch); else fputs("null", f);

    fputs(",\"hyperparameters\":{", f);
    for (size_t i = 0; i < N_HP; i++) {
        if (i) fputc(',', f);
        json_cstr(f, g_hp[i].json);
        fputc(':', f);
        if (hv[i].v) json_value(f, hv[i].v, 0);
        else if (hv[i].have_derived) cli_json_num(f, hv[i].derived);
        else fputs("null", f);
    }
    fputs("}", f);

    fputs(",\"metadata\":{", f);
    for (int64_t i = 0; i < moe_gguf_n_kv(g); i++) {
        if (i) fputc(',', f);
        json_cstr(f, moe_gguf_kv_key(g, i));
        fputc(':', f);
        json_value(f, moe_gguf_kv_value(g, i), 0);
    }
    /* the GGUF type of each key, which JSON values alone lose (u32 vs i64, f32 vs f64) */
    fputs("},\"metadata_types\":{", f);
    for (int64_t i = 0; i < moe_gguf_n_kv(g); i++) {
        char td[96];
        type_desc(td, sizeof td, moe_gguf_kv_value(g, i));
        if (i) fputc(',', f);
        json_cstr(f, moe_gguf_kv_key(g, i));
        fputc(':', f);
        json_cstr(f, td);
    }
    fputs("},\"tensors\":[", f);
    for (int64_t i = 0; i < moe_gguf_n_tensors(g); i++) {
        const moe_gguf_tensor *t = moe_gguf_tensor_at(g, i);
        long l, e;
        if (i) fputc(',', f);
        fputs("{\"name\":", f);
        json_cstr(f, t->name);
        fputs(",\"type\":", f);
        json_cstr(f, moe_type_name(t->type));
        fputs(",\"shape\":[", f);
        for (int d = 0; d < t->n_dims; d++) fprintf(f, d ? ",%" PRId64 : "%" PRId64, t->ne[d]);
        fprintf(f, "],\"offset\":%" PRIu64 ",\"bytes\":%" PRIu64 ",\"expert\":%s}", t->offset, t->nbytes,
                expert_kind(t->name, &l, &e) ? "true" : "false");
    }
    fprintf(f, "],\"n_tensors\":%" PRId64 ",\"n_params\":%.0f,\"total_bytes\":%" PRIu64, moe_gguf_n_tensors(g),
            st->n_params, st->total_bytes);
    fprintf(f, ",\"expert_bytes\":%" PRIu64 ",\"non_expert_bytes\":%" PRIu64 ",\"shared_expert_bytes\":%" PRIu64,
            st->expert_bytes, st->total_bytes - st->expert_bytes, st->shared_bytes);
    fputs(",\"expert_fraction\":", f);
    cli_json_num(f, st->total_bytes ? (double)st->expert_bytes / (double)st->total_bytes : 0);
    fprintf(f, ",\"expert_layout\":\"%s\"",
            st->layout == 0 ? "none" : st->layout == 1 ? "merged" : st->layout == 2 ? "per-expert" : "mixed");
    if (st->n_expert_slots > 0) {
        fprintf(f, ",\"per_expert_bytes\":{\"min\":%" PRIu64 ",\"max\":%" PRIu64 ",\"mean\":", st->per_expert_min,
                st->per_expert_max);
        cli_json_num(f, st->per_expert_mean);
        fprintf(f, ",\"slots\":%" PRId64 ",\"max_layer_bytes\":%" PRIu64 "}", st->n_expert_slots, st->max_layer_expert_bytes);
    } else {
        fputs(",\"per_expert_bytes\":null", f);
    }
    fputs("}\n", f);
}

/* ------------------------------------------------------------ entry */

int cmd_inspect(int argc, char **argv) {
    const char *path = NULL;
    bool json = false, show_tensors = true, show_meta = true;
    for (int i = 1; i < argc; i++) {
        const char *a = argv[i];
        if (cli_is_help(a)) { usage(stdout); return 0; }
        else if (strcmp(a, "--json") == 0) json = true;
        else if (strcmp(a, "--no-tensors") == 0) show_tensors = false;
        else if (strcmp(a, "--no-metadata") == 0) show_meta = false;
        else if (strcmp(a, "-m") == 0 || strcmp(a, "--model") == 0) {
            const char *p;
            if (!cli_arg_str("inspect", argc, argv, &i, &p)) return 2;
            if (path) return cli_usage("inspect", "more than one file given");
            path = p;
        } else if (a[0] == '-' && a[1]) {
            return cli_usage("inspect", "unknown option %s", a);
        } else if (!path) {
            path = a;
        } else {
            return cli_usage("inspect", "more than one file given");
        }
    }
    if (!path) return cli_usage("inspect", "no file given");
    moe_gguf *g = moe_gguf_open(path);
    if (!g) return cli_fail_lib("inspect");
    const char *arch = NULL;
    if (moe_gguf_get_str(g, "general.architecture", &arch) != MOE_OK) arch = NULL;
    tensor_stats st;
    if (!compute_stats(g, &st)) {
        moe_gguf_close(g);
        return cli_fail("inspect", "out of memory");
    }
    hp_val hv[N_HP];
    read_hparams(g, arch, &st, hv);
    if (json) print_json(path, g, arch, hv, &st);
    else print_text(path, g, arch, hv, &st, show_meta, show_tensors);
    moe_gguf_close(g);
    if (fflush(stdout) != 0 || ferror(stdout)) return cli_fail("inspect", "cannot write the output");
    return 0;
}
