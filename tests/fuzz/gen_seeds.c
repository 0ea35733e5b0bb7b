/* gen_seeds.c — writes the fuzzer's seed corpus: for each GGUF file given, its first
 * 64 KiB (the header as llama.cpp laid it out, cut mid-way for large vocabularies) and a
 * shrunk but complete copy (arrays cut to 8 elements, every tensor reduced to one block,
 * so the fuzzer reaches the tensor infos and the data section in a few KiB); plus one
 * file with every metadata type and nested arrays, and one with a 64-byte alignment.
 * usage: gen_seeds OUTDIR FILE.gguf... */
#include "moe.h"
#include "core/types.h"

#include <stdio.h>
#include <stdlib.h>
#include <string.h>

static int fail(const char *what) {
    fprintf(stderr, "gen_seeds: %s: %s\n", what, moe_last_error());
    return 1;
}

static int write_head(const char *out, const char *src, size_t max) {
    FILE *f = fopen(src, "rb");
    if (!f) { perror(src); return 1; }
    unsigned char *buf = malloc(max);
    size_t n = buf ? fread(buf, 1, max, f) : 0;
    fclose(f);
    FILE *o = fopen(out, "wb");
    if (!o || fwrite(buf, 1, n, o) != n) { perror(out); free(buf); if (o) fclose(o); return 1; }
    fclose(o);
    free(buf);
    return 0;
}

/* Arrays keep their first 8 elements (nested arrays recursively). */
static moe_gguf_value shrink(const moe_gguf_value *v) {
    moe_gguf_value r = *v;
    if (r.type == MOE_GGUF_ARRAY && r.v.arr.n > 8) r.v.arr.n = 8;
    return r;
}

static int write_shrunk(const char *out, const char *src) {
    moe_gguf *g = moe_gguf_open(src);
    if (!g) return fail(src);
    moe_gguf_writer *w = moe_gguf_writer_init();
    static unsigned char zeros[4096];
    for (int64_t i = 0; i < moe_gguf_n_kv(g); i++) {
        moe_gguf_value v = shrink(moe_gguf_kv_value(g, i));
        if (moe_gguf_writer_set_value(w, moe_gguf_kv_key(g, i), &v)) return fail(src);
    }
    for (int64_t i = 0; i < moe_gguf_n_tensors(g) && i < 24; i++) {
        const moe_gguf_tensor *t = moe_gguf_tensor_at(g, i);
        /* one block per tensor keeps the names, types and ranks at a few bytes each */
        const moe_type_traits *tt = moe_type_get(t->type);
        if (!tt) continue;
        int64_t ne[4] = {tt->block_size, 1, 1, 1};
        uint64_t nbytes = tt->type_size;
        if (nbytes > sizeof zeros) continue;
        if (moe_gguf_writer_add_tensor(w, t->name, t->type, t->n_dims, ne, zeros, nbytes) != MOE_OK) continue;
    }
    int rc = moe_gguf_writer_write(w, out) ? fail(out) : 0;
    moe_gguf_writer_free(w);
    moe_gguf_close(g);
    return rc;
}

static int write_all_types(const char *out, bool aligned64) {
    moe_gguf_writer *w = moe_gguf_writer_init();
    moe_gguf_value v;
    int bad = 0;
    bad |= moe_gguf_writer_set_str(w, "general.architecture", "mixtral");
    if (aligned64) bad |= moe_gguf_writer_set_u32(w, "general.alignment", 64);
    moe_gguf_type scalars[] = {MOE_GGUF_U8, MOE_GGUF_I8, MOE_GGUF_U16, MOE_GGUF_I16, MOE_GGUF_U32, MOE_GGUF_I32,
                               MOE_GGUF_F32, MOE_GGUF_BOOL, MOE_GGUF_U64, MOE_GGUF_I64, MOE_GGUF_F64};
    char key[64];
    uint64_t raw[4] = {1, 2, 3, 4};
    for (size_t i = 0; i < sizeof scalars / sizeof scalars[0]; i++) {
        snprintf(key, sizeof key, "s.%d", (int)scalars[i]);
        v = (moe_gguf_value){.type = scalars[i], .v.u64 = 1};
        if (scalars[i] == MOE_GGUF_F32 || scalars[i] == MOE_GGUF_F64) v.v.f64 = 0.5;
        bad |= moe_gguf_writer_set_value(w, key, &v);
        snprintf(key, sizeof key, "a.%d", (int)scalars[i]);
        bad |= moe_gguf_writer_set_arr(w, key, scalars[i], raw, 2);
    }
    const char *strs[] = {"a", "bc", ""};
    bad |= moe_gguf_writer_set_arr(w, "a.str", MOE_GGUF_STRING, strs, 3);
    moe_gguf_value lv[4];
    lv[0] = (moe_gguf_value){.type = MOE_GGUF_ARRAY, .v.arr = {MOE_GGUF_U32, 2, raw}};
    for (int i = 1; i < 4; i++) lv[i] = (moe_gguf_value){.type = MOE_GGUF_ARRAY, .v.arr = {MOE_GGUF_ARRAY, 1, &lv[i - 1]}};
    bad |= moe_gguf_writer_set_value(w, "nested", &lv[3]);
    static unsigned char zeros[512];
    bad |= moe_gguf_writer_add_tensor(w, "token_embd.weight", 0, 2, (int64_t[]){4, 2}, zeros, 32);
    bad |= moe_gguf_writer_add_tensor(w, "blk.0.ffn_up_exps.weight", 2, 3, (int64_t[]){32, 1, 2}, zeros, 36);
    bad |= moe_gguf_writer_add_tensor(w, "blk.0.ffn_down.1.weight", 12, 1, (int64_t[]){256}, zeros, 144);
    if (bad) return fail("all-types");
    int rc = moe_gguf_writer_write(w, out) ? fail(out) : 0;
    moe_gguf_writer_free(w);
    return rc;
}

int main(int argc, char **argv) {
    if (argc < 2) {
        fprintf(stderr, "usage: gen_seeds OUTDIR FILE.gguf...\n");
        return 2;
    }
    char out[4096];
    int rc = 0;
    for (int i = 2; i < argc; i++) {
        const char *base = strrchr(argv[i], '/');
        base = base ? base + 1 : argv[i];
        snprintf(out, sizeof out, "%s/%s.head64k", argv[1], base);
        rc |= write_head(out, argv[i], 64 * 1024);
        snprintf(out, sizeof out, "%s/%s.shrunk", argv[1], base);
        rc |= write_shrunk(out, argv[i]);
    }
    snprintf(out, sizeof out, "%s/all-types.gguf", argv[1]);
    rc |= write_all_types(out, false);
    snprintf(out, sizeof out, "%s/all-types-align64.gguf", argv[1]);
    rc |= write_all_types(out, true);
    return rc;
}
