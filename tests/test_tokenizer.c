/* test_tokenizer.c — the tokenizers against llama.cpp's test vectors
 * (../shared/fixtures/tokenizer/ggml-vocab-NAME.gguf{,.inp,.out}, made by llama.cpp's
 * test-tokenizer-0: add_special = false, parse_special = false), and round trips. */
#include "test.h"
#include "moe.h"

#include <stdlib.h>

static char *slurp(const char *path, size_t *n) {
    FILE *f = fopen(path, "rb");
    if (!f) return NULL;
    size_t cap = 4096, len = 0, r;
    char *b = malloc(cap);
    while (b && (r = fread(b + len, 1, cap - len, f)) > 0) {
        len += r;
        if (len == cap) {
            char *nb = realloc(b, cap *= 2);
            if (!nb) { free(b); b = NULL; }
            else b = nb;
        }
    }
    fclose(f);
    if (b) *n = len;
    return b;
}

typedef struct {
    char *inp, *out;           /* file contents */
    const char *str[128];      /* test strings (into inp) */
    size_t str_len[128];
    int32_t *ids[128];
    size_t n_ids[128];
    int n;
} vectors;

/* llama.cpp's read_tests: strings separated by "\n__ggml_vocab_test__\n" (a trailing
 * separator ends the list), one output line of space-separated ids per string. */
static bool read_vectors(const char *name, vectors *v) {
    memset(v, 0, sizeof *v);
    char path[512];
    size_t ni, no;
    snprintf(path, sizeof path, "tokenizer/ggml-vocab-%s.gguf.inp", name);
    v->inp = slurp(test_fixture(path), &ni);
    snprintf(path, sizeof path, "tokenizer/ggml-vocab-%s.gguf.out", name);
    v->out = slurp(test_fixture(path), &no);
    if (!v->inp || !v->out) return false;
    static const char sep[] = "\n__ggml_vocab_test__\n";
    size_t pos = 0;
    while (pos < ni && v->n < 128) {
        const char *nx = memmem(v->inp + pos, ni - pos, sep, sizeof sep - 1);
        size_t end = nx ? (size_t)(nx - v->inp) : ni;
        v->str[v->n] = v->inp + pos;
        v->str_len[v->n] = end - pos;
        v->n++;
        if (!nx) break;
        pos = end + sizeof sep - 1;
    }
    int line = 0;
    char *save = NULL;
    for (size_t i = 0, start = 0; i <= no && line < v->n; i++) {
        if (i < no && v->out[i] != '\n') continue;
        v->ids[line] = malloc(sizeof(int32_t) * (i - start + 1));
        size_t k = 0;
        for (size_t j = start; j < i;) {
            while (j < i && v->out[j] == ' ') j++;
            if (j >= i) break;
            v->ids[line][k++] = (int32_t)strtol(v->out + j, &save, 10);
            j = (size_t)(save - v->out);
        }
        v->n_ids[line++] = k;
        start = i + 1;
    }
    return line == v->n;
}

static void free_vectors(vectors *v) {
    for (int i = 0; i < v->n; i++) free(v->ids[i]);
    free(v->inp);
    free(v->out);
}

static moe_tokenizer *load_vocab(const char *name) {
    char rel[256];
    snprintf(rel, sizeof rel, "tokenizer/ggml-vocab-%s.gguf", name);
    moe_gguf *g = moe_gguf_open(test_fixture(rel));
    if (!g) return NULL;
    moe_tokenizer *t = moe_tokenizer_load(g);
    moe_gguf_close(g);
    return t;
}

static void print_ids(const char *what, const int32_t *ids, size_t n) {
    fprintf(stderr, "    %s:", what);
    for (size_t i = 0; i < n; i++) fprintf(stderr, " %d", ids[i]);
    fputc('\n', stderr);
}

/* Every string of the vocabulary's vectors; returns the number that failed. */
static int check_vectors(const char *name, bool lossless) {
    vectors v;
    if (!read_vectors(name, &v)) {
        test_fail(__FILE__, __LINE__, "cannot read the test vectors of %s", name);
        free_vectors(&v);
        return -1;
    }
    moe_tokenizer *t = load_vocab(name);
    if (!t) {
        test_fail(__FILE__, __LINE__, "%s: %s", name, moe_last_error());
        free_vectors(&v);
        return -1;
    }
    int bad = 0;
    for (int i = 0; i < v.n; i++) {
        int32_t *ids = NULL;
        size_t n = 0;
        moe_status st = moe_tokenizer_encode(t, v.str[i], v.str_len[i], false, false, &ids, &n);
        bool ok = st == MOE_OK && n == v.n_ids[i] && (n == 0 || memcmp(ids, v.ids[i], n * sizeof *ids) == 0);
        if (!ok) {
            bad++;
            test_fail(__FILE__, __LINE__, "%s: string %d '%.*s' tokenizes differently", name, i, (int)v.str_len[i],
                      v.str[i]);
            print_ids("expected", v.ids[i], v.n_ids[i]);
            print_ids("got     ", ids, n);
        }
        /* the pieces of llama.cpp's ids give back the string (SentencePiece: minus the space
         * it put in front) */
        if (lossless) {
            char *cat = malloc(v.str_len[i] * 4 + 64);
            size_t cl = 0;
            for (size_t k = 0; k < v.n_ids[i]; k++) {
                size_t pl;
                const char *p = moe_tokenizer_piece(t, v.ids[i][k], true, &pl);
                if (p && cl + pl < v.str_len[i] * 4 + 64) memcpy(cat + cl, p, pl), cl += pl;
            }
            const char *c = cat;
            if (strcmp(moe_tokenizer_model(t), "llama") == 0 && cl > 0 && c[0] == ' ') c++, cl--;
            CHECK_MSG(cl == v.str_len[i] && memcmp(c, v.str[i], cl) == 0, "%s: string %d does not round-trip: '%.*s'",
                      name, i, (int)cl, c);
            free(cat);
        }
        free(ids);
    }
    moe_tokenizer_free(t);
    free_vectors(&v);
    return bad;
}

TEST(tokenizer_llama_spm_vectors) { CHECK_EQ_INT(check_vectors("llama-spm", true), 0); }
TEST(tokenizer_phi3_vectors) { CHECK_EQ_INT(check_vectors("phi-3", true), 0); }
TEST(tokenizer_gpt2_vectors) { CHECK_EQ_INT(check_vectors("gpt-2", true), 0); }
TEST(tokenizer_starcoder_vectors) { CHECK_EQ_INT(check_vectors("starcoder", true), 0); }
TEST(tokenizer_deepseek_coder_vectors) { CHECK_EQ_INT(check_vectors("deepseek-coder", true), 0); }

/* `moe tokenize --no-bos -f FILE` prints llama.cpp's ids for every string, one line of
 * space-separated ids (the command parses special tokens, which these strings have none of). */
TEST(tokenizer_cli_no_bos_vectors) {
    vectors v;
    if (!read_vectors("llama-spm", &v)) {
        test_fail(__FILE__, __LINE__, "cannot read the test vectors");
        free_vectors(&v);
        return;
    }
    const char *vocab = test_fixture("tokenizer/ggml-vocab-llama-spm.gguf");
    for (int i = 0; i < v.n; i++) {
        char path[1024], cmd[2048], want[4096], *out = NULL;
        snprintf(path, sizeof path, "%s/s%d.txt", test_tmpdir(), i);
        FILE *f = fopen(path, "wb");
        REQUIRE(f);
        fwrite(v.str[i], 1, v.str_len[i], f);
        fclose(f);
        size_t k = 0;
        for (size_t j = 0; j < v.n_ids[i] && k < sizeof want - 16; j++)
            k += (size_t)snprintf(want + k, sizeof want - k, j ? " %d" : "%d", v.ids[i][j]);
        snprintf(want + k, sizeof want - k, "\n");
        snprintf(cmd, sizeof cmd, "%s tokenize -m %s --no-bos -f %s", test_moe_bin(), vocab, path);
        CHECK_EQ_INT(test_run(cmd, &out), 0);
        CHECK_MSG(out && !strcmp(out, want), "string %d: got '%s', want '%s'", i, out ? out : "", want);
        free(out);
    }
    free_vectors(&v);
}
