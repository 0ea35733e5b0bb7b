/* quantize.c — moe_quantize_file: converts a GGUF model's weight matrices to one type with
 * llama.cpp's reference quantizers, deciding per tensor as `llama-quantize --pure` does,
 * and writes the result with the GGUF writer. The tensor rules are in moe_quantize_plan. */
#include "model/quantize.h"
#include "core/threads.h"
#include "core/types.h"

#include <stdio.h>
#include <stdlib.h>
#include <strings.h>
#include <sys/stat.h>

/* llama.h's llama_ftype for a file of one type; K-quants map to their "_S" (small) mix,
 * which is what `llama-quantize --pure` writes for Q3_K_S/Q4_K_S/Q5_K_S. */
static const struct { int type, ftype; } k_ftypes[] = {
    {MOE_TYPE_Q4_0, 2},  {MOE_TYPE_Q4_1, 3},  {MOE_TYPE_Q5_0, 8},  {MOE_TYPE_Q5_1, 9},
    {MOE_TYPE_Q8_0, 7},  {MOE_TYPE_Q2_K, 10}, {MOE_TYPE_Q3_K, 11}, {MOE_TYPE_Q4_K, 14},
    {MOE_TYPE_Q5_K, 16}, {MOE_TYPE_Q6_K, 18}, {MOE_TYPE_F16, 1},   {MOE_TYPE_BF16, 32},
    {MOE_TYPE_F32, 0},   {MOE_TYPE_IQ4_NL, 25}, {MOE_TYPE_IQ4_XS, 30},
};

int moe_quantize_ftype(int type) {
    const moe_type_traits *t = moe_type_get(type);
    if (!t || !t->to_float || !t->from_float_ref) return -1; /* no quantizer (yet) */
    for (size_t i = 0; i < MOE_ARRAY_LEN(k_ftypes); i++)
        if (k_ftypes[i].type == type) return k_ftypes[i].ftype;
    return -1;
}

const char *moe_quantize_type_names(void) {
    static _Thread_local char buf[256];
    size_t len = 0;
    buf[0] = 0;
    for (size_t i = 0; i < MOE_ARRAY_LEN(k_ftypes); i++) {
        if (moe_quantize_ftype(k_ftypes[i].type) < 0) continue;
        int w = snprintf(buf + len, sizeof buf - len, "%s%s", len ? ", " : "", moe_type_name(k_ftypes[i].type));
        if (w < 0 || (size_t)w >= sizeof buf - len) break;
        len += (size_t)w;
    }
    return buf;
}

static bool ends_with(const char *s, const char *suffix) {
    size_t a = strlen(s), b = strlen(suffix);
    return a >= b && strcmp(s + a - b, suffix) == 0;
}

/* ggml_n_dims: trailing dimensions of 1 do not count */
static int n_dims_of(const int64_t ne[4]) {
    int n = 1;
    for (int d = 1; d < 4; d++)
        if (ne[d] > 1) n = d + 1;
    return n;
}

/* Matrices llama.cpp never quantizes (llama-quant.cpp), beyond norms and the router. */
static const char *const k_never[] = {
    "position_embd.weight", "token_types.weight", "ssm_conv1d.weight", "attn_rel_b.weight",
    "time_mix_first.weight",
};

moe_quant_action moe_quantize_plan(const char *name, int type, const int64_t ne[4], int target, const char **why) {
    const moe_type_traits *tt = moe_type_get(target);
    *why = "";
    if (ne[0] <= 0 || ne[1] <= 0 || ne[2] <= 0 || ne[3] <= 0) { *why = "empty"; return MOE_QUANT_KEEP; }
    if (n_dims_of(ne) < 2) {
        *why = "1-D";
        return type == MOE_TYPE_F32 ? MOE_QUANT_KEEP : MOE_QUANT_TO_F32;
    }
    if (strstr(name, "ffn_gate_inp.weight")) {
        *why = "router";
        return type == MOE_TYPE_F32 ? MOE_QUANT_KEEP : MOE_QUANT_TO_F32;
    }
    if (!ends_with(name, "weight")) { *why = "not a weight"; return MOE_QUANT_KEEP; }
    if (strstr(name, "_norm.weight")) { *why = "norm"; return MOE_QUANT_KEEP; }
    for (size_t i = 0; i < MOE_ARRAY_LEN(k_never); i++)
        if (strstr(name, k_never[i])) { *why = "llama.cpp keeps it"; return MOE_QUANT_KEEP; }
    if (type == target) { *why = "already the type"; return MOE_QUANT_KEEP; }
    if (!tt || ne[0] % tt->block_size) { *why = "rows do not fit the blocks"; return MOE_QUANT_KEEP; }
    return MOE_QUANT_CONVERT;
}

moe_quantize_params moe_quantize_default_params(void) {
    moe_quantize_params p = {0, true};
    return p;
}

/* ------------------------------------------------------------------ conversion */

typedef struct {
    const moe_type_traits *src, *dst;
    moe_from_float_fn quant;   /* NULL: rows dequantized into F32 output */
    const uint8_t *in;
    uint8_t *out;
    int64_t rows, ne0;
    size_t in_rb, out_rb;
    bool failed;               /* a thread could not get its scratch row */
} convert_job;

static void convert_task(void *arg, int ith, int nth) {
    convert_job *j = arg;
    int64_t r0, r1;
    moe_split(j->rows, ith, nth, 1, &r0, &r1);
    if (r0 >= r1) return;
    float *row = NULL;
    if (j->quant && j->src != moe_type_get(MOE_TYPE_F32)) {
        row = malloc((size_t)j->ne0 * sizeof(float));
        if (!row) { j->failed = true; return; }
    }
    for (int64_t r = r0; r < r1; r++) {
        const uint8_t *in = j->in + (size_t)r * j->in_rb;
        uint8_t *out = j->out + (size_t)r * j->out_rb;
        if (!j->quant) { j->src->to_float(in, (float *)out, j->ne0); continue; }
        const float *x = (const float *)in; /* F32 input rows are used in place */
        if (row) { j->src->to_float(in, row, j->ne0); x = row; }
        j->quant(x, out, j->ne0);
    }
    free(row);
}

static double mib(uint64_t b) { return (double)b / 1048576.0; }

/* llama.cpp's loader orders tensors by layer ("blk.N." prefix; others first), then by
 * name (weight_name_comparer), and llama-quantize writes them in that order: following
 * it makes our output byte-identical to llama-quantize's. */
static int layer_of(const char *name) {
    int layer = -1;
    if (strncmp(name, "blk.", 4) == 0) {
        const char *p = name + 4;
        long v = 0;
        if (*p < '0' || *p > '9') return -1;
        while (*p >= '0' && *p <= '9' && v < 100000000) v = v * 10 + (*p++ - '0');
        layer = (int)v;
    }
    return layer;
}

/* qsort has no context argument in C11: the file being sorted, per thread */
static _Thread_local const moe_gguf *t_sort_file;
static int cmp_llama_order(const void *a, const void *b) {
    const moe_gguf_tensor *x = moe_gguf_tensor_at(t_sort_file, *(const int64_t *)a);
    const moe_gguf_tensor *y = moe_gguf_tensor_at(t_sort_file, *(const int64_t *)b);
    const int lx = layer_of(x->name), ly = layer_of(y->name);
    if (lx != ly) return lx < ly ? -1 : 1;
    return strcmp(x->name, y->name);
}

moe_status moe_quantize_file(const char *in_path, const char *out_path, const char *type_name,
                             const moe_quantize_params *params, moe_quantize_stats *stats) {
    moe_quantize_params p = params ? *params : moe_quantize_default_params();
    moe_quantize_stats st = {0};
    if (!in_path || !out_path || !type_name)
        return moe_error(MOE_ERR_INVALID, "quantize: input, output and type are required");
    const int target = moe_type_from_name(type_name);
    const int ftype = target < 0 ? -1 : moe_quantize_ftype(target);
    if (ftype < 0)
        return moe_error(MOE_ERR_INVALID, "quantize: unknown target type '%s' (valid: %s)", type_name,
                         moe_quantize_type_names());
    /* The input is memory-mapped while the output is written: never the same file. */
    struct stat si, so;
    if (strcmp(in_path, out_path) == 0 ||
        (stat(in_path, &si) == 0 && stat(out_path, &so) == 0 && si.st_dev == so.st_dev && si.st_ino == so.st_ino))
        return moe_error(MOE_ERR_INVALID, "quantize: %s: the output must be a different file from the input", out_path);

    const double t0 = moe_time_s();
    moe_gguf *g = moe_gguf_open(in_path);
    if (!g) return moe_last_status();
    const moe_type_traits *dt = moe_type_get(target);
    moe_gguf_writer *w = moe_gguf_writer_init();
    moe_pool *pool = NULL;
    const int64_t nt = moe_gguf_n_tensors(g);
    void **bufs = moe_calloc((size_t)MOE_MAX(nt, 1), sizeof *bufs); /* outputs live until the write */
    int64_t *order = NULL; /* the tensors in llama.cpp's order */
    moe_status rc = MOE_OK;
    if (!w || !bufs) { rc = MOE_ERR_NOMEM; goto done; }
    pool = moe_pool_create(p.n_threads);
    if (!pool) { rc = moe_last_status(); goto done; }

    for (int64_t i = 0; i < moe_gguf_n_kv(g) && !rc; i++)
        rc = moe_gguf_writer_set_value(w, moe_gguf_kv_key(g, i), moe_gguf_kv_value(g, i));
    /* what llama-quantize sets (it appends both; an input that has them keeps their place) */
    if (!rc) rc = moe_gguf_writer_set_u32(w, "general.quantization_version", 2);
    if (!rc) rc = moe_gguf_writer_set_u32(w, "general.file_type", (uint32_t)ftype);
    if (rc) goto done;

    order = moe_malloc((size_t)MOE_MAX(nt, 1) * sizeof *order);
    if (!order) { rc = MOE_ERR_NOMEM; goto done; }
    for (int64_t i = 0; i < nt; i++) order[i] = i;
    t_sort_file = g;
    qsort(order, (size_t)nt, sizeof *order, cmp_llama_order);

    bool warned_requant = false;
    for (int64_t i = 0; i < nt; i++) {
        const moe_gguf_tensor *t = moe_gguf_tensor_at(g, order[i]);
        const char *why;
        moe_quant_action act = moe_quantize_plan(t->name, t->type, t->ne, target, &why);
        const moe_type_traits *stt = moe_type_get(t->type);
        const int n_dims = n_dims_of(t->ne);
        const int64_t n = t->ne[0] * t->ne[1] * t->ne[2] * t->ne[3];
        if (act != MOE_QUANT_KEEP && (!stt || !stt->to_float)) {
            rc = moe_error(MOE_ERR_UNSUPPORTED, "quantize: %s: tensor '%s' is %s, which moe.c cannot dequantize",
                           in_path, t->name, moe_type_name(t->type));
            goto done;
        }
        int out_type = t->type;
        const void *out_data = t->data;
        uint64_t out_bytes = t->nbytes;
        if (act != MOE_QUANT_KEEP) {
            const moe_type_traits *ot = act == MOE_QUANT_CONVERT ? dt : moe_type_get(MOE_TYPE_F32);
            out_type = act == MOE_QUANT_CONVERT ? target : MOE_TYPE_F32;
            const int64_t rows = n / t->ne[0];
            const size_t out_rb = moe_row_size((moe_type)out_type, t->ne[0]);
            out_bytes = (uint64_t)out_rb * (uint64_t)rows;
            if (!(bufs[i] = moe_malloc(out_bytes ? out_bytes : 1))) { rc = MOE_ERR_NOMEM; goto done; }
            if (act == MOE_QUANT_CONVERT && stt->is_quantized && !warned_requant && p.progress) {
                fprintf(stderr, "warning: %s holds %s tensors: requantizing them to %s loses more than quantizing "
                        "the original F32/F16 weights would\n", in_path, stt->name, dt->name);
                warned_requant = true;
            }
            convert_job j = {stt, ot, act == MOE_QUANT_CONVERT ? dt->from_float_ref : NULL, t->data, bufs[i], rows,
                             t->ne[0], moe_row_size((moe_type)t->type, t->ne[0]), out_rb, false};
            moe_pool_run(pool, convert_task, &j);
            if (j.failed) { rc = moe_error(MOE_ERR_NOMEM, "quantize: out of memory converting '%s'", t->name); goto done; }
            out_data = bufs[i];
        }
        if ((rc = moe_gguf_writer_add_tensor(w, t->name, out_type, n_dims, t->ne, out_data, out_bytes))) goto done;

        st.n_tensors++;
        st.bytes_in += t->nbytes;
        st.bytes_out += out_bytes;
        if (act == MOE_QUANT_CONVERT) st.n_quantized++;
        else if (strcmp(why, "rows do not fit the blocks") == 0) st.n_misfit++;
        else st.n_kept++;
        if (p.progress) {
            char shape[96];
            int len = snprintf(shape, sizeof shape, "%lld", (long long)t->ne[0]);
            for (int d = 1; d < n_dims && len > 0 && len < (int)sizeof shape; d++)
                len += snprintf(shape + len, sizeof shape - (size_t)len, " x %lld", (long long)t->ne[d]);
            fprintf(stderr, "[%4lld/%4lld] %-36s %-7s [%s]", (long long)i + 1, (long long)nt, t->name,
                    moe_type_name(t->type), shape);
            if (act == MOE_QUANT_KEEP && strcmp(why, "rows do not fit the blocks") == 0)
                fprintf(stderr, "  kept as %s: rows of %lld values are not a whole number of %s blocks (%lld)\n",
                        moe_type_name(t->type), (long long)t->ne[0], dt->name, (long long)dt->block_size);
            else
                fprintf(stderr, "  -> %-5s %9.2f MiB -> %9.2f MiB%s%s%s\n", moe_type_name(out_type), mib(t->nbytes),
                        mib(out_bytes), *why ? " (" : "", why, *why ? ")" : "");
        }
    }
    if ((rc = moe_gguf_writer_write(w, out_path))) goto done;
    st.seconds = moe_time_s() - t0;
    if (p.progress)
        fprintf(stderr, "%s: %lld tensors, %lld converted to %s, %lld kept%s; %.2f MiB -> %.2f MiB in %.2f s\n", out_path,
                (long long)st.n_tensors, (long long)st.n_quantized, dt->name, (long long)(st.n_kept + st.n_misfit),
                st.n_misfit ? " (some because their rows do not fit the blocks)" : "", mib(st.bytes_in),
                mib(st.bytes_out), st.seconds);
done:
    if (stats) *stats = st;
    moe_pool_free(pool);
    moe_gguf_writer_free(w);
    for (int64_t i = 0; bufs && i < nt; i++) free(bufs[i]);
    free(bufs);
    free(order);
    moe_gguf_close(g);
    return rc;
}
