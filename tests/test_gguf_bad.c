/* test_gguf_bad.c — the GGUF reader on malformed files, one test per defect. Each file
 * is built byte by byte here (a small GGUF builder below), and each test checks that
 * moe_gguf_open and moe_gguf_open_memory refuse it with a message naming the file, the
 * field (key or tensor name) and the problem. */
#include "test.h"
#include "moe.h"

#include <stdlib.h>

/* ------------------------------------------------------------ builder */

typedef struct { uint8_t *p; size_t n, cap; } gbuf;

static void put(gbuf *b, const void *d, size_t n) {
    if (b->n + n > b->cap) {
        b->cap = (b->n + n) * 2 + 64;
        b->p = realloc(b->p, b->cap);
        if (!b->p) abort();
    }
    memcpy(b->p + b->n, d, n);
    b->n += n;
}
static void u8_(gbuf *b, uint8_t x) { put(b, &x, 1); }
static void u32_(gbuf *b, uint32_t x) { put(b, &x, 4); }
static void u64_(gbuf *b, uint64_t x) { put(b, &x, 8); }
static void str_(gbuf *b, const char *s) { u64_(b, strlen(s)); put(b, s, strlen(s)); }
static void pad_(gbuf *b, size_t a) { while (b->n % a) u8_(b, 0); }

static void header(gbuf *b, uint32_t version, uint64_t n_tensors, uint64_t n_kv) {
    put(b, "GGUF", 4);
    u32_(b, version);
    u64_(b, n_tensors);
    u64_(b, n_kv);
}
static void kv_u32(gbuf *b, const char *k, uint32_t v) { str_(b, k); u32_(b, 4); u32_(b, v); }
static void kv_str(gbuf *b, const char *k, const char *v) { str_(b, k); u32_(b, 8); str_(b, v); }
static void tinfo(gbuf *b, const char *name, uint32_t n_dims, const uint64_t *ne, uint32_t type, uint64_t off) {
    str_(b, name);
    u32_(b, n_dims);
    for (uint32_t i = 0; i < n_dims; i++) u64_(b, ne[i]);
    u32_(b, type);
    u64_(b, off);
}

/* A small valid file touching every part of the format: scalars, a string, an array of
 * strings, an array of arrays, two tensors (q8_0 then f32). The last tensor ends exactly
 * at a multiple of 32, so the file has no trailing padding and every proper prefix of it
 * is a truncated file. */
static gbuf valid_file(void) {
    gbuf b = {0};
    header(&b, 3, 2, 6);
    kv_str(&b, "general.architecture", "llama");
    kv_u32(&b, "llama.block_count", 2);
    str_(&b, "llama.rope.freq_base"); u32_(&b, 6); float f = 10000.0f; put(&b, &f, 4);
    str_(&b, "tokenizer.ggml.add_bos_token"); u32_(&b, 7); u8_(&b, 1);
    str_(&b, "tokenizer.ggml.tokens"); u32_(&b, 9); u32_(&b, 8); u64_(&b, 2); str_(&b, "<s>"); str_(&b, "▁a");
    str_(&b, "test.nested"); u32_(&b, 9); u32_(&b, 9); u64_(&b, 2);
    u32_(&b, 0); u64_(&b, 2); u8_(&b, 1); u8_(&b, 2);
    u32_(&b, 0); u64_(&b, 0);
    tinfo(&b, "blk.0.ffn_up_exps.weight", 2, (uint64_t[]){32, 1}, 8, 0);
    tinfo(&b, "output_norm.weight", 1, (uint64_t[]){8}, 0, 64);
    pad_(&b, 32);
    for (int i = 0; i < 34; i++) u8_(&b, (uint8_t)i);
    pad_(&b, 32);
    for (int i = 0; i < 8; i++) { float x = (float)i; put(&b, &x, 4); }
    return b;
}

static const char *tmp_path(const char *name) {
    static char buf[512];
    snprintf(buf, sizeof buf, "%s/%s", test_tmpdir(), name);
    return buf;
}

static bool write_file(const char *path, const uint8_t *p, size_t n) {
    FILE *f = fopen(path, "wb");
    if (!f) return false;
    bool ok = fwrite(p, 1, n, f) == n;
    return fclose(f) == 0 && ok;
}

/* The file must be refused by both entry points with a message that names the file and
 * contains every needle (the field and the problem). The in-memory copy is exactly
 * n bytes long, so ASan sees any read past the end. */
#define EXPECT_BAD(b, fname, ...) expect_bad(__FILE__, __LINE__, (b), (fname), (const char *[]){__VA_ARGS__, NULL})
static void expect_bad(const char *file, int line, gbuf *b, const char *fname, const char **needles) {
    const char *path = tmp_path(fname);
    if (!write_file(path, b->p, b->n)) { test_fail(file, line, "cannot write %s", path); return; }
    moe_gguf *g = moe_gguf_open(path);
    if (g) {
        test_fail(file, line, "%s: opened, expected an error", fname);
        moe_gguf_close(g);
        return;
    }
    const char *m = moe_last_error();
    if (!strstr(m, path)) test_fail(file, line, "message does not name the file: %s", m);
    for (const char **n = needles; *n; n++)
        if (!strstr(m, *n)) test_fail(file, line, "message \"%s\" does not contain \"%s\"", m, *n);
    uint8_t *copy = malloc(b->n ? b->n : 1);
    memcpy(copy, b->p, b->n);
    g = moe_gguf_open_memory(copy, b->n, fname);
    if (g) {
        test_fail(file, line, "%s: opened from memory, expected an error", fname);
        moe_gguf_close(g);
    } else if (!strstr(moe_last_error(), fname)) {
        test_fail(file, line, "in-memory message does not name the file: %s", moe_last_error());
    }
    free(copy);
    free(b->p);
    b->p = NULL;
}

/* ------------------------------------------------------------ the base file is valid */

TEST(gguf_bad_base_file_is_valid) {
    gbuf b = valid_file();
    const char *path = tmp_path("valid.gguf");
    REQUIRE(write_file(path, b.p, b.n));
    moe_gguf *g = moe_gguf_open(path);
    REQUIRE_MSG(g, "%s", moe_last_error());
    CHECK_EQ_INT(moe_gguf_n_kv(g), 6);
    CHECK_EQ_INT(moe_gguf_n_tensors(g), 2);
    CHECK_EQ_INT(moe_gguf_file_size(g), b.n);
    const moe_gguf_tensor *t = moe_gguf_find_tensor(g, "output_norm.weight");
    REQUIRE(t);
    CHECK_EQ_INT(((const float *)t->data)[7], 7);
    CHECK_EQ_INT(moe_gguf_data_offset(g) + t->offset + t->nbytes, b.n);
    moe_gguf_close(g);
    /* version 2 has the same little-endian layout and must read too */
    b.p[4] = 2;
    g = moe_gguf_open_memory(b.p, b.n, "v2.gguf");
    CHECK_MSG(g != NULL, "%s", moe_last_error());
    moe_gguf_close(g);
    free(b.p);
}

/* ------------------------------------------------------------ truncation */

TEST(gguf_bad_truncated_every_prefix) {
    gbuf b = valid_file();
    const char *path = tmp_path("cut.gguf");
    int opened = 0, unnamed = 0;
    for (size_t n = 0; n < b.n; n++) {
        /* through a file (mmap, including the empty file) ... */
        if (!write_file(path, b.p, n)) { CHECK_MSG(0, "cannot write %s", path); break; }
        moe_gguf *g = moe_gguf_open(path);
        if (g) { opened++; moe_gguf_close(g); CHECK_MSG(0, "prefix of %zu bytes opened", n); continue; }
        if (!strstr(moe_last_error(), path)) unnamed++;
        /* ... and from an exact-size heap copy that ASan guards */
        uint8_t *copy = malloc(n ? n : 1);
        memcpy(copy, b.p, n);
        g = moe_gguf_open_memory(copy, n, "cut.gguf");
        if (g) { opened++; moe_gguf_close(g); CHECK_MSG(0, "prefix of %zu bytes opened from memory", n); }
        free(copy);
    }
    CHECK_EQ_INT(opened, 0);
    CHECK_EQ_INT(unnamed, 0);
    /* a cut inside the tensor data names the tensor */
    b.n -= 1;
    EXPECT_BAD(&b, "cut_data.gguf", "output_norm.weight", "past end of file");
}

TEST(gguf_bad_truncated_messages) {
    gbuf b = valid_file();
    b.n = 2;
    EXPECT_BAD(&b, "cut_magic.gguf", "truncated");
    b = valid_file();
    b.n = 6;
    EXPECT_BAD(&b, "cut_version.gguf", "version", "truncated");
    b = (gbuf){0};
    header(&b, 3, 0, 1);
    kv_str(&b, "general.architecture", "llama");
    b.n = 40; /* inside the key's name (its length, 20, is at bytes 24..31) */
    EXPECT_BAD(&b, "cut_key.gguf", "metadata entry 0", "string length 20 runs past the end");
    b = valid_file();
    b.n = 20; /* inside the metadata count */
    EXPECT_BAD(&b, "cut_count.gguf", "metadata count", "truncated");
    b = valid_file();
    b.n = 100; /* 6 key-value pairs cannot fit in 76 bytes */
    EXPECT_BAD(&b, "cut_kvs.gguf", "metadata count", "6 key-value pairs", "truncated");
}

/* ------------------------------------------------------------ header */

TEST(gguf_bad_magic) {
    gbuf b = valid_file();
    memcpy(b.p, "GGML", 4);
    EXPECT_BAD(&b, "magic.gguf", "magic", "47 47 4d 4c");
}

TEST(gguf_bad_version_unknown) {
    gbuf b = valid_file();
    b.p[4] = 4;
    EXPECT_BAD(&b, "v4.gguf", "version 4");
    b = valid_file();
    b.p[4] = 0;
    EXPECT_BAD(&b, "v0.gguf", "version 0");
}

TEST(gguf_bad_version_1) {
    gbuf b = valid_file();
    b.p[4] = 1;
    EXPECT_BAD(&b, "v1.gguf", "version 1", "not supported");
}

TEST(gguf_bad_version_big_endian) {
    gbuf b = valid_file();
    /* a big-endian file stores the version as 00 00 00 03 */
    uint8_t be[4] = {0, 0, 0, 3};
    memcpy(b.p + 4, be, 4);
    EXPECT_BAD(&b, "be.gguf", "big-endian");
}

TEST(gguf_bad_counts_larger_than_file) {
    gbuf b = valid_file();
    uint64_t huge = 1ull << 60;
    memcpy(b.p + 16, &huge, 8); /* n_kv */
    EXPECT_BAD(&b, "nkv.gguf", "metadata count", "key-value pairs cannot fit");
    b = valid_file();
    memcpy(b.p + 8, &huge, 8);  /* n_tensors */
    EXPECT_BAD(&b, "nt.gguf", "tensor count", "tensors cannot fit");
    /* a count that fits the file size but not its contents: the reader runs out of
     * bytes at the first missing entry */
    b = (gbuf){0};
    header(&b, 3, 0, 2);
    kv_str(&b, "general.architecture", "a string long enough to leave room for a second pair");
    EXPECT_BAD(&b, "nkv2.gguf", "metadata entry 1", "truncated");
}

/* ------------------------------------------------------------ metadata */

TEST(gguf_bad_string_length_past_end) {
    gbuf b = {0};
    header(&b, 3, 0, 1);
    str_(&b, "general.name");
    u32_(&b, 8);
    u64_(&b, 1000); /* only 5 bytes follow */
    put(&b, "short", 5);
    EXPECT_BAD(&b, "strlen.gguf", "general.name", "string length 1000");
    /* in a key name */
    b = (gbuf){0};
    header(&b, 3, 0, 1);
    u64_(&b, UINT64_MAX);
    put(&b, "abc and some more bytes to read", 31);
    EXPECT_BAD(&b, "keylen.gguf", "key of metadata entry 0", "string length 18446744073709551615");
    /* in an array of strings */
    b = (gbuf){0};
    header(&b, 3, 0, 1);
    str_(&b, "tokenizer.ggml.tokens");
    u32_(&b, 9); u32_(&b, 8); u64_(&b, 2);
    str_(&b, "ok");
    u64_(&b, 1ull << 40);
    EXPECT_BAD(&b, "arrstr.gguf", "tokenizer.ggml.tokens", "string length");
}

TEST(gguf_bad_huge_array_count) {
    gbuf b = {0};
    header(&b, 3, 0, 1);
    str_(&b, "tokenizer.ggml.scores");
    u32_(&b, 9); u32_(&b, 6);
    u64_(&b, 1ull << 62); /* 2^62 floats: the byte count itself overflows */
    for (int i = 0; i < 4; i++) u32_(&b, 0);
    EXPECT_BAD(&b, "arrn.gguf", "tokenizer.ggml.scores", "array of 4611686018427387904 elements");
    /* a count that fits 64-bit arithmetic but not the file */
    b = (gbuf){0};
    header(&b, 3, 0, 1);
    str_(&b, "tokenizer.ggml.token_type");
    u32_(&b, 9); u32_(&b, 5);
    u64_(&b, 100000);
    u32_(&b, 1);
    EXPECT_BAD(&b, "arrn2.gguf", "tokenizer.ggml.token_type", "runs past the end");
    /* strings: each takes at least 8 bytes, so 2^61 of them cannot be in a small file */
    b = (gbuf){0};
    header(&b, 3, 0, 1);
    str_(&b, "tokenizer.ggml.merges");
    u32_(&b, 9); u32_(&b, 8);
    u64_(&b, 1ull << 61);
    EXPECT_BAD(&b, "arrn3.gguf", "tokenizer.ggml.merges", "runs past the end");
}

TEST(gguf_bad_unknown_value_type) {
    gbuf b = {0};
    header(&b, 3, 0, 1);
    str_(&b, "general.weird");
    u32_(&b, 13);
    u32_(&b, 0);
    EXPECT_BAD(&b, "vtype.gguf", "general.weird", "unknown value type 13");
    b = (gbuf){0};
    header(&b, 3, 0, 1);
    str_(&b, "general.weird_arr");
    u32_(&b, 9); u32_(&b, 0xffffffffu); u64_(&b, 0);
    EXPECT_BAD(&b, "etype.gguf", "general.weird_arr", "unknown array element type 4294967295");
}

TEST(gguf_bad_duplicate_keys) {
    gbuf b = {0};
    header(&b, 3, 0, 3);
    kv_u32(&b, "llama.block_count", 2);
    kv_str(&b, "general.architecture", "llama");
    kv_u32(&b, "llama.block_count", 3);
    EXPECT_BAD(&b, "dupkey.gguf", "llama.block_count", "duplicate key");
}

TEST(gguf_bad_empty_key) {
    gbuf b = {0};
    header(&b, 3, 0, 1);
    kv_u32(&b, "", 2);
    EXPECT_BAD(&b, "emptykey.gguf", "metadata entry 0", "empty key");
    /* a key with a NUL inside would be unreachable by name */
    b = (gbuf){0};
    header(&b, 3, 0, 1);
    u64_(&b, 3); put(&b, "a\0b", 3); u32_(&b, 4); u32_(&b, 1);
    EXPECT_BAD(&b, "nulkey.gguf", "metadata entry 0", "NUL");
}

TEST(gguf_bad_alignment_key) {
    static const uint32_t bad[] = {0, 48, 3, 0x80000001u};
    for (size_t i = 0; i < sizeof bad / sizeof bad[0]; i++) {
        gbuf b = {0};
        header(&b, 3, 0, 1);
        kv_u32(&b, "general.alignment", bad[i]);
        char name[32];
        snprintf(name, sizeof name, "align%u.gguf", bad[i]);
        EXPECT_BAD(&b, name, "general.alignment", "power of two");
    }
    /* the right value with the wrong type: llama.cpp reads it as a u32 */
    gbuf b = {0};
    header(&b, 3, 0, 1);
    str_(&b, "general.alignment"); u32_(&b, 10); u64_(&b, 64);
    EXPECT_BAD(&b, "align_u64.gguf", "general.alignment", "u32");
}

TEST(gguf_bad_nesting_too_deep) {
    /* 8 levels of arrays read; 9 do not */
    for (int levels = 8; levels <= 9; levels++) {
        gbuf b = {0};
        header(&b, 3, 0, 1);
        str_(&b, "test.deep");
        u32_(&b, 9);
        for (int i = 0; i < levels - 1; i++) { u32_(&b, 9); u64_(&b, 1); }
        u32_(&b, 0); u64_(&b, 0);
        if (levels == 8) {
            moe_gguf *g = moe_gguf_open_memory(b.p, b.n, "deep8.gguf");
            CHECK_MSG(g != NULL, "%s", moe_last_error());
            moe_gguf_close(g);
            free(b.p);
        } else {
            EXPECT_BAD(&b, "deep9.gguf", "test.deep", "nested too deeply");
        }
    }
    /* a hostile depth far beyond: refused at the limit, no deep recursion */
    gbuf b = {0};
    header(&b, 3, 0, 1);
    str_(&b, "test.deeper");
    u32_(&b, 9);
    for (int i = 0; i < 100000; i++) { u32_(&b, 9); u64_(&b, 1); }
    EXPECT_BAD(&b, "deep100k.gguf", "test.deeper", "nested too deeply");
}

/* ------------------------------------------------------------ tensors */

/* A file with no metadata and the given tensor infos, then `data` bytes of data. */
static gbuf tensor_file(void (*infos)(gbuf *), uint64_t n_tensors, size_t data) {
    gbuf b = {0};
    header(&b, 3, n_tensors, 0);
    infos(&b);
    pad_(&b, 32);
    for (size_t i = 0; i < data; i++) u8_(&b, 0);
    return b;
}

static void ti_past_end(gbuf *b) { tinfo(b, "blk.3.ffn_up_exps.weight", 2, (uint64_t[]){32, 4}, 0, 0); }
static void ti_past_end_off(gbuf *b) { tinfo(b, "blk.0.attn_q.weight", 1, (uint64_t[]){8}, 0, 1ull << 63); }
static void ti_overflow(gbuf *b) { tinfo(b, "big.weight", 2, (uint64_t[]){1ull << 32, 1ull << 32}, 0, 0); }
static void ti_overflow_bytes(gbuf *b) { tinfo(b, "big2.weight", 2, (uint64_t[]){1ull << 31, 1ull << 31}, 0, 0); }
static void ti_neg(gbuf *b) { tinfo(b, "neg.weight", 2, (uint64_t[]){8, (uint64_t)-1}, 0, 0); }
static void ti_type4(gbuf *b) { tinfo(b, "retired.weight", 1, (uint64_t[]){32}, 4, 0); }
static void ti_type40(gbuf *b) { tinfo(b, "future.weight", 1, (uint64_t[]){32}, 40, 0); }
static void ti_dup(gbuf *b) {
    tinfo(b, "blk.0.ffn_gate_inp.weight", 1, (uint64_t[]){8}, 0, 0);
    tinfo(b, "blk.0.ffn_gate_inp.weight", 1, (uint64_t[]){8}, 0, 32);
}
static void ti_misaligned(gbuf *b) {
    tinfo(b, "a.weight", 1, (uint64_t[]){4}, 0, 0);
    tinfo(b, "b.weight", 1, (uint64_t[]){4}, 0, 16);
}
static void ti_dims(gbuf *b) { tinfo(b, "five.weight", 5, (uint64_t[]){1, 1, 1, 1, 1}, 0, 0); }
static void ti_dims_huge(gbuf *b) { str_(b, "many.weight"); u32_(b, 0xffffffffu); }
static void ti_block(gbuf *b) { tinfo(b, "blk.1.ffn_down_exps.weight", 2, (uint64_t[]){48, 2}, 2, 0); }
static void ti_block_k(gbuf *b) { tinfo(b, "kq.weight", 1, (uint64_t[]){128}, 12, 0); }
static void ti_nul(gbuf *b) { u64_(b, 3); put(b, "a\0b", 3); u32_(b, 1); u64_(b, 4); u32_(b, 0); u64_(b, 0); }

TEST(gguf_bad_tensor_past_end) {
    gbuf b = tensor_file(ti_past_end, 1, 64); /* needs 512 bytes */
    EXPECT_BAD(&b, "past.gguf", "blk.3.ffn_up_exps.weight", "extends past end of file", "size 512");
    b = tensor_file(ti_past_end_off, 1, 64);
    EXPECT_BAD(&b, "pastoff.gguf", "blk.0.attn_q.weight", "extends past end of file");
    /* the data section itself starts past the end */
    b = (gbuf){0};
    header(&b, 3, 1, 0);
    tinfo(&b, "x", 1, (uint64_t[]){0}, 0, 0);
    EXPECT_BAD(&b, "nodata.gguf", "data section", "past the end");
}

TEST(gguf_bad_shape_overflow) {
    gbuf b = tensor_file(ti_overflow, 1, 64);
    EXPECT_BAD(&b, "ovf.gguf", "big.weight", "shape overflows");
    /* elements fit in 63 bits, the byte count of an f32 tensor does not */
    b = tensor_file(ti_overflow_bytes, 1, 64);
    EXPECT_BAD(&b, "ovf2.gguf", "big2.weight", "overflows");
    b = tensor_file(ti_neg, 1, 64);
    EXPECT_BAD(&b, "neg.gguf", "neg.weight", "negative dimension");
}

TEST(gguf_bad_unknown_tensor_type) {
    gbuf b = tensor_file(ti_type4, 1, 64);
    EXPECT_BAD(&b, "type4.gguf", "retired.weight", "unknown tensor type id 4");
    b = tensor_file(ti_type40, 1, 64);
    EXPECT_BAD(&b, "type40.gguf", "future.weight", "unknown tensor type id 40");
}

TEST(gguf_bad_duplicate_tensor_names) {
    gbuf b = tensor_file(ti_dup, 2, 64);
    EXPECT_BAD(&b, "duptensor.gguf", "blk.0.ffn_gate_inp.weight", "duplicate tensor name");
}

TEST(gguf_bad_misaligned_tensor_offset) {
    gbuf b = tensor_file(ti_misaligned, 2, 64);
    EXPECT_BAD(&b, "misaligned.gguf", "b.weight", "data offset 16", "alignment 32");
}

TEST(gguf_bad_too_many_dims) {
    gbuf b = tensor_file(ti_dims, 1, 64);
    EXPECT_BAD(&b, "dims.gguf", "five.weight", "5 dimensions");
    b = tensor_file(ti_dims_huge, 1, 0);
    EXPECT_BAD(&b, "dims2.gguf", "many.weight", "4294967295 dimensions");
}

TEST(gguf_bad_row_not_multiple_of_block) {
    gbuf b = tensor_file(ti_block, 1, 128);
    EXPECT_BAD(&b, "block.gguf", "blk.1.ffn_down_exps.weight", "row length 48", "q4_0 block size 32");
    b = tensor_file(ti_block_k, 1, 256);
    EXPECT_BAD(&b, "blockk.gguf", "kq.weight", "q4_K block size 256");
}

TEST(gguf_bad_tensor_name_with_nul) {
    gbuf b = tensor_file(ti_nul, 1, 64);
    EXPECT_BAD(&b, "tnul.gguf", "tensor 0", "NUL");
}

/* An error in a later part of the file keeps the context of that part: the message
 * says which tensor among many, not only "format error". */
TEST(gguf_bad_error_names_tensor_among_many) {
    gbuf b = {0};
    header(&b, 3, 5, 1);
    kv_str(&b, "general.architecture", "llama");
    tinfo(&b, "t0", 1, (uint64_t[]){8}, 0, 0);
    tinfo(&b, "t1", 1, (uint64_t[]){8}, 0, 32);
    tinfo(&b, "t2", 1, (uint64_t[]){8}, 0, 64);
    tinfo(&b, "blk.1.ffn_up.3.weight", 1, (uint64_t[]){8}, 0, 96);
    tinfo(&b, "t4", 1, (uint64_t[]){8}, 0, 128);
    pad_(&b, 32);
    for (int i = 0; i < 128 + 16; i++) u8_(&b, 0); /* t4 is cut short */
    EXPECT_BAD(&b, "many.gguf", "'t4'", "extends past end of file");
}
