/* test_gguf_fuzz.c — the fuzz target (tests/fuzz/fuzz_gguf.c) run as a unit test: a few
 * valid GGUF images built here, and tens of thousands of deterministic mutations of them
 * (bit flips, boundary values over counts and lengths, cuts, insertions), go through
 * the reader and, where they parse, through a full walk. It runs in well under a second
 * so CI exercises the parser on hostile input without clang or libFuzzer; the fuzzer
 * itself (docs/FUZZING.md) searches far wider. */
#include "test.h"
#include "moe.h"

#include <dirent.h>
#include <stdlib.h>
#include <time.h>

static int g_fuzz_failures;
#define FUZZ_CHECK(cond)                                                                  \
    do {                                                                                  \
        if (!(cond)) {                                                                    \
            if (g_fuzz_failures++ < 5) test_fail(__FILE__, __LINE__, "FUZZ_CHECK(%s)", #cond); \
        }                                                                                 \
    } while (0)
#include "fuzz/fuzz_gguf.c"

typedef struct { uint8_t *p; size_t n; } image;

static image read_file(const char *path, size_t max) {
    image im = {0};
    FILE *f = fopen(path, "rb");
    if (!f) return im;
    im.p = malloc(max);
    im.n = im.p ? fread(im.p, 1, max, f) : 0;
    fclose(f);
    return im;
}

/* A complete small file: every value type, nested arrays, tensors of three types. */
static image all_types_image(void) {
    moe_gguf_writer *w = moe_gguf_writer_init();
    uint32_t u[3] = {1, 2, 3};
    const char *s[] = {"<s>", "▁the", ""};
    moe_gguf_value in[2] = {{.type = MOE_GGUF_ARRAY, .v.arr = {MOE_GGUF_U32, 3, u}},
                            {.type = MOE_GGUF_ARRAY, .v.arr = {MOE_GGUF_STRING, 0, NULL}}};
    moe_gguf_value nested = {.type = MOE_GGUF_ARRAY, .v.arr = {MOE_GGUF_ARRAY, 2, in}};
    moe_gguf_value i8 = {.type = MOE_GGUF_I8, .v.i64 = -3}, f64 = {.type = MOE_GGUF_F64, .v.f64 = 2.5};
    moe_gguf_writer_set_str(w, "general.architecture", "llama");
    moe_gguf_writer_set_u32(w, "llama.expert_count", 8);
    moe_gguf_writer_set_f32(w, "llama.rope.freq_base", 1e4f);
    moe_gguf_writer_set_bool(w, "tokenizer.ggml.add_bos_token", true);
    moe_gguf_writer_set_u64(w, "general.size", 99);
    moe_gguf_writer_set_value(w, "t.i8", &i8);
    moe_gguf_writer_set_value(w, "t.f64", &f64);
    moe_gguf_writer_set_arr(w, "tokenizer.ggml.tokens", MOE_GGUF_STRING, s, 3);
    moe_gguf_writer_set_arr(w, "t.u32", MOE_GGUF_U32, u, 3);
    moe_gguf_writer_set_value(w, "t.nested", &nested);
    static uint8_t zeros[256];
    moe_gguf_writer_add_tensor(w, "token_embd.weight", 0, 2, (int64_t[]){4, 2}, zeros, 32);
    moe_gguf_writer_add_tensor(w, "blk.0.ffn_up_exps.weight", 2, 3, (int64_t[]){32, 1, 2}, zeros, 36);
    moe_gguf_writer_add_tensor(w, "blk.0.ffn_down.1.weight", 12, 1, (int64_t[]){256}, zeros, 144);
    char path[512];
    snprintf(path, sizeof path, "%s/seed.gguf", test_tmpdir());
    image im = {0};
    if (moe_gguf_writer_write(w, path) == MOE_OK) im = read_file(path, 1 << 20);
    moe_gguf_writer_free(w);
    return im;
}

static uint64_t g_rng;
static uint64_t rnd(void) { /* xorshift64*: deterministic across runs */
    g_rng ^= g_rng >> 12; g_rng ^= g_rng << 25; g_rng ^= g_rng >> 27;
    return g_rng * 2685821657736338717ull;
}

/* Values that sit on the reader's boundaries: type ids, small counts, sign bits, the
 * largest sizes, and the image's own size (a length that ends exactly at the end). */
static uint64_t interesting(size_t n) {
    static const uint64_t v[] = {0, 1, 2, 3, 4, 5, 8, 9, 12, 13, 31, 32, 33, 64, 255, 256, 0x7fffffff,
                                 0x80000000u, 0xffffffffu, 1ull << 32, 1ull << 62, 1ull << 63,
                                 UINT64_MAX, UINT64_MAX - 7};
    uint64_t k = rnd() % (sizeof v / sizeof v[0] + 2);
    return k < sizeof v / sizeof v[0] ? v[k] : k == sizeof v / sizeof v[0] ? n : n - rnd() % (n + 1);
}

/* Applies 1 to 4 random edits to a copy of `src` (at most cap bytes). */
static size_t mutate(const image *src, uint8_t *out, size_t cap) {
    size_t n = src->n < cap ? src->n : cap;
    memcpy(out, src->p, n);
    int edits = 1 + (int)(rnd() % 4);
    for (int e = 0; e < edits && n > 0; e++) {
        size_t pos = rnd() % n;
        switch (rnd() % 6) {
        case 0: out[pos] ^= (uint8_t)(1u << (rnd() % 8)); break;
        case 1: out[pos] = (uint8_t[]){0, 0xff, 0x7f, 0x80, 9, 8}[rnd() % 6]; break;
        case 2: { uint32_t x = (uint32_t)interesting(n); if (pos + 4 <= n) memcpy(out + pos, &x, 4); break; }
        case 3: { uint64_t x = interesting(n); if (pos + 8 <= n) memcpy(out + pos, &x, 8); break; }
        case 4: n = pos; break; /* cut */
        case 5: { /* duplicate a chunk in place of what follows it */
            size_t len = 1 + rnd() % 32;
            size_t from = rnd() % n;
            if (from + len <= n && pos + len <= n) memmove(out + pos, out + from, len);
            break;
        }
        }
    }
    return n;
}

TEST(gguf_fuzz_replay_mutations) {
    image seeds[4];
    int n_seeds = 0;
    seeds[n_seeds] = all_types_image();
    if (seeds[n_seeds].p) n_seeds++;
    /* the first 16 KiB of llama.cpp files: real key names, long token arrays cut short */
    const char *fx[] = {"gguf/mixtral-q4_0.gguf", "gguf/qwen2moe-q8_0.gguf", "tokenizer/ggml-vocab-gpt-2.gguf"};
    for (int i = 0; i < 3; i++) {
        seeds[n_seeds] = read_file(test_fixture(fx[i]), 16 * 1024);
        if (seeds[n_seeds].p && seeds[n_seeds].n) n_seeds++;
    }
    REQUIRE(n_seeds >= 1);
    /* the seeds themselves: the complete one must parse */
    moe_gguf *g = moe_gguf_open_memory(seeds[0].p, seeds[0].n, "seed");
    CHECK_MSG(g != NULL, "%s", moe_last_error());
    moe_gguf_close(g);

    g_fuzz_failures = 0;
    g_rng = 0x9e3779b97f4a7c15ull;
    uint8_t *buf = malloc(1 << 20);
    REQUIRE(buf);
    struct timespec t0, t1;
    clock_gettime(CLOCK_MONOTONIC, &t0);
    long runs = 0, parsed = 0;
    for (; runs < 40000; runs++) {
        /* mostly the complete file: its mutants reach the tensor infos and data checks */
        const image *src = &seeds[(rnd() % 4 == 0) ? rnd() % (uint64_t)n_seeds : 0];
        size_t n = mutate(src, buf, 1 << 20);
        /* an exact-size copy, so a read past the end is a heap overflow under ASan */
        uint8_t *exact = malloc(n ? n : 1);
        memcpy(exact, buf, n);
        moe_gguf *p = moe_gguf_open_memory(exact, n, "x");
        if (p) { parsed++; moe_gguf_close(p); }
        LLVMFuzzerTestOneInput(exact, n);
        free(exact);
        if ((runs & 255) == 0) {
            clock_gettime(CLOCK_MONOTONIC, &t1);
            if ((double)(t1.tv_sec - t0.tv_sec) + 1e-9 * (double)(t1.tv_nsec - t0.tv_nsec) > 0.7) break;
        }
    }
    free(buf);
    for (int i = 0; i < n_seeds; i++) free(seeds[i].p);
    CHECK_EQ_INT(g_fuzz_failures, 0);
    /* the mutations must exercise both paths, or the test proves nothing */
    CHECK_MSG(runs >= 1000, "only %ld runs", runs);
    CHECK_MSG(parsed > runs / 50 && parsed < runs, "%ld of %ld mutants parsed", parsed, runs);
}

/* The libFuzzer corpus and any saved crash inputs, when `make fuzz` has made them
 * (both folders are git-ignored): each file goes through the target once. */
TEST(gguf_fuzz_replay_corpus) {
    const char *dirs[] = {"tests/fuzz/corpus", "tests/fuzz/crashes"};
    int files = 0;
    g_fuzz_failures = 0;
    for (int d = 0; d < 2; d++) {
        DIR *dir = opendir(dirs[d]);
        if (!dir) continue;
        for (struct dirent *e; (e = readdir(dir));) {
            if (e->d_name[0] == '.') continue;
            char path[1024];
            snprintf(path, sizeof path, "%s/%s", dirs[d], e->d_name);
            image im = read_file(path, 1 << 20);
            if (!im.p) continue;
            uint8_t *exact = malloc(im.n ? im.n : 1);
            memcpy(exact, im.p, im.n);
            LLVMFuzzerTestOneInput(exact, im.n);
            free(exact);
            free(im.p);
            files++;
        }
        closedir(dir);
    }
    CHECK_EQ_INT(g_fuzz_failures, 0);
    if (files == 0) test_skip("no corpus in tests/fuzz/corpus (run `make fuzz` to make one)");
}
