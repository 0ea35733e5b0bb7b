/* test_tokenizer_units.c — the pieces of the tokenizers: Unicode tables against Python's
 * unicodedata and the White_Space list, UTF-8 decoding of invalid input, the merge rules
 * on hand-made vocabularies (expected ids worked out by hand), special tokens, decoding,
 * errors for unknown or garbled metadata, and the `moe tokenize` command. */
#include "test.h"
#include "moe.h"
#include "model/tokenizer_regex.h"
#include "model/unicode.h"

#include <stdlib.h>

/* ------------------------------------------------------------------ unicode tables */

TEST(tokenizer_unicode_categories_match_python) {
    if (!test_have_python_module("unicodedata")) {
        test_skip("python3 is not available");
        return;
    }
    /* all of U+0000..U+07FF and every 61st codepoint above: category, and the lower case where Python's
     * str.lower() is a single codepoint (its full mapping differs from the simple one only
     * in a few multi-codepoint cases, which are skipped) */
    char *out = NULL;
    int rc = test_run("/usr/bin/python3 -c \"import unicodedata as u\n"
                      "for c in list(range(0,0x800))+list(range(0x800,0x110000,61)):\n"
                      " ch=chr(c); lo=ch.lower(); print(c, u.category(ch), ord(lo) if len(lo)==1 else -1)\"",
                      &out);
    REQUIRE_MSG(rc == 0 && out, "python3 failed");
    static const struct { const char cat[3]; uint16_t flag; } map[] = {
        {"Lu", MOE_UCP_LETTER}, {"Ll", MOE_UCP_LETTER}, {"Lt", MOE_UCP_LETTER}, {"Lm", MOE_UCP_LETTER},
        {"Lo", MOE_UCP_LETTER}, {"Mn", MOE_UCP_MARK}, {"Mc", MOE_UCP_MARK}, {"Me", MOE_UCP_MARK},
        {"Nd", MOE_UCP_NUMBER}, {"Nl", MOE_UCP_NUMBER}, {"No", MOE_UCP_NUMBER}, {"Pc", MOE_UCP_PUNCTUATION},
        {"Pd", MOE_UCP_PUNCTUATION}, {"Ps", MOE_UCP_PUNCTUATION}, {"Pe", MOE_UCP_PUNCTUATION},
        {"Pi", MOE_UCP_PUNCTUATION}, {"Pf", MOE_UCP_PUNCTUATION}, {"Po", MOE_UCP_PUNCTUATION},
        {"Sm", MOE_UCP_SYMBOL}, {"Sc", MOE_UCP_SYMBOL}, {"Sk", MOE_UCP_SYMBOL}, {"So", MOE_UCP_SYMBOL},
        {"Zs", MOE_UCP_SEPARATOR}, {"Zl", MOE_UCP_SEPARATOR}, {"Zp", MOE_UCP_SEPARATOR},
        {"Cc", MOE_UCP_CONTROL}, {"Cf", MOE_UCP_CONTROL}, {"Cs", MOE_UCP_CONTROL}, {"Co", MOE_UCP_CONTROL},
        {"Cn", MOE_UCP_UNDEFINED},
    };
    int n = 0, bad = 0, per_cat[8] = {0};
    char *line = out;
    while (*line) {
        long c, lo;
        char cat[8];
        if (sscanf(line, "%ld %7s %ld", &c, cat, &lo) != 3) break;
        char *nl = strchr(line, '\n');
        line = nl ? nl + 1 : line + strlen(line);
        n++;
        uint16_t want = 0;
        for (size_t k = 0; k < sizeof map / sizeof map[0]; k++)
            if (!strcmp(map[k].cat, cat)) want = map[k].flag;
        uint16_t got = moe_ucp_flags((uint32_t)c) & MOE_UCP_CATEGORIES;
        /* Python 3.11 has Unicode 14, the tables 15: a codepoint new in 15 is Cn to Python */
        if (want == MOE_UCP_UNDEFINED && got != MOE_UCP_UNDEFINED) continue;
        if (got != want && bad++ < 10) test_fail(__FILE__, __LINE__, "U+%04lX: %s but flags 0x%x", c, cat, got);
        for (int b = 0; b < 8; b++)
            if (want == 1u << b) per_cat[b]++;
        if (lo >= 0 && moe_ucp_tolower((uint32_t)c) != (uint32_t)lo && bad++ < 10)
            test_fail(__FILE__, __LINE__, "lower(U+%04lX) = U+%04X, Python says U+%04lX", c,
                      moe_ucp_tolower((uint32_t)c), lo);
    }
    CHECK(n > 19000);
    CHECK_EQ_INT(bad, 0);
    for (int b = 0; b < 8; b++) CHECK_MSG(per_cat[b] > 0, "no sample of category bit %d", b);
    free(out);
}

TEST(tokenizer_unicode_whitespace_is_white_space_property) {
    /* PropList.txt's White_Space: the 25 codepoints llama.cpp hard-codes */
    static const uint32_t ws[] = {0x09, 0x0A, 0x0B, 0x0C, 0x0D, 0x20, 0x85, 0xA0, 0x1680, 0x2000, 0x2001,
                                  0x2002, 0x2003, 0x2004, 0x2005, 0x2006, 0x2007, 0x2008, 0x2009, 0x200A,
                                  0x2028, 0x2029, 0x202F, 0x205F, 0x3000};
    int count = 0;
    for (uint32_t c = 0; c < 0x30000; c++) count += (moe_ucp_flags(c) & MOE_UCP_WHITESPACE) != 0;
    CHECK_EQ_INT(count, 25);
    for (size_t i = 0; i < sizeof ws / sizeof ws[0]; i++)
        CHECK_MSG(moe_ucp_flags(ws[i]) & MOE_UCP_WHITESPACE, "U+%04X is White_Space", ws[i]);
    /* look-alikes that are not */
    CHECK(!(moe_ucp_flags(0x1C) & MOE_UCP_WHITESPACE));
    CHECK(!(moe_ucp_flags(0x200B) & MOE_UCP_WHITESPACE));
    CHECK(!(moe_ucp_flags(0xFEFF) & MOE_UCP_WHITESPACE));
    CHECK(!(moe_ucp_flags(0x180E) & MOE_UCP_WHITESPACE));
    CHECK_EQ_INT(moe_ucp_flags(0x110000), MOE_UCP_UNDEFINED);
    CHECK_EQ_INT(moe_ucp_flags(0xFFFFFFFF), MOE_UCP_UNDEFINED);
}

TEST(tokenizer_gpt2_byte_map) {
    /* OpenAI's bytes_to_unicode: printable bytes map to themselves, the rest from U+0100 */
    CHECK_EQ_INT(moe_gpt2_byte_to_cpt(' '), 0x120);   /* Ġ */
    CHECK_EQ_INT(moe_gpt2_byte_to_cpt('\n'), 0x10A);  /* Ċ */
    CHECK_EQ_INT(moe_gpt2_byte_to_cpt('A'), 'A');
    CHECK_EQ_INT(moe_gpt2_byte_to_cpt(0xAD), 0x143);
    CHECK_EQ_INT(moe_gpt2_byte_to_cpt(0xFF), 0xFF);
    CHECK_EQ_INT(moe_gpt2_byte_to_cpt(0x7F), 0x121);
    for (int b = 0; b < 256; b++) CHECK_EQ_INT(moe_gpt2_cpt_to_byte(moe_gpt2_byte_to_cpt((uint8_t)b)), b);
    CHECK_EQ_INT(moe_gpt2_cpt_to_byte(0x144), -1);
    CHECK_EQ_INT(moe_gpt2_cpt_to_byte(0x20), -1);
}

/* ------------------------------------------------------------------ UTF-8 */

static size_t decode_all(const char *s, size_t n, uint32_t *out) {
    /* from a heap copy of exactly n bytes, so that the sanitizer sees any over-read */
    char *b = malloc(n ? n : 1);
    memcpy(b, s, n);
    size_t k = 0;
    for (size_t off = 0; off < n;) out[k++] = moe_utf8_decode(b, n, &off);
    free(b);
    return k;
}

TEST(tokenizer_utf8_invalid_input) {
    uint32_t c[16];
    /* valid sequences of each length */
    CHECK_EQ_INT(decode_all("a\xC3\xA9\xE2\x82\xAC\xF0\x9F\xA6\x99", 10, c), 4);
    CHECK(c[0] == 'a' && c[1] == 0xE9 && c[2] == 0x20AC && c[3] == 0x1F999);
    /* a truncated sequence at the end: U+FFFD per byte, no read past the end */
    CHECK_EQ_INT(decode_all("\xE2\x82", 2, c), 2);
    CHECK(c[0] == 0xFFFD && c[1] == 0xFFFD);
    CHECK_EQ_INT(decode_all("\xF0", 1, c), 1);
    CHECK(c[0] == 0xFFFD);
    /* a stray continuation byte, a bad continuation, F8..FF */
    CHECK_EQ_INT(decode_all("\x80z", 2, c), 2);
    CHECK(c[0] == 0xFFFD && c[1] == 'z');
    CHECK_EQ_INT(decode_all("\xC3z", 2, c), 2);
    CHECK(c[0] == 0xFFFD && c[1] == 'z');
    CHECK_EQ_INT(decode_all("\xFF\xF8", 2, c), 2);
    CHECK(c[0] == 0xFFFD && c[1] == 0xFFFD);
    /* beyond U+10FFFF: the lead byte is invalid, its continuation bytes too */
    CHECK_EQ_INT(decode_all("\xF4\x90\x80\x80", 4, c), 4);
    CHECK(c[0] == 0xFFFD && c[3] == 0xFFFD);
    /* like llama.cpp: overlong forms and surrogates are not rejected */
    CHECK_EQ_INT(decode_all("\xC0\xAF", 2, c), 1);
    CHECK_EQ_INT(c[0], '/');
    CHECK_EQ_INT(decode_all("\xED\xA0\x80", 3, c), 1);
    CHECK_EQ_INT(c[0], 0xD800);
}

/* ------------------------------------------------------------------ regex engine */

static int split_count(const char *pat, const char *text, size_t *first_end) {
    uint32_t p[256], t[256];
    size_t np = 0, nt = 0;
    for (size_t off = 0, n = strlen(pat); off < n;) p[np++] = moe_utf8_decode(pat, n, &off);
    for (size_t off = 0, n = strlen(text); off < n;) t[nt++] = moe_utf8_decode(text, n, &off);
    moe_regex *re = moe_regex_compile(p, np, "test");
    if (!re) return -1;
    size_t from = 0, ms, me;
    int count = 0;
    *first_end = (size_t)-1;
    while (moe_regex_search(re, t, 0, nt, from, false, false, &ms, &me) == 1 && me > ms) {
        if (!count) *first_end = me;
        count++;
        from = me;
    }
    moe_regex_free(re);
    return count;
}

TEST(tokenizer_regex_semantics) {
    size_t e;
    /* leftmost-first alternation (not longest) */
    CHECK_EQ_INT(split_count("a|ab", "ab", &e), 1);
    CHECK_EQ_INT(e, 1);
    /* greedy with backtracking; \s+(?!\S) gives the last space back */
    CHECK_EQ_INT(split_count("\\s+(?!\\S)|\\s+", "   x", &e), 2);
    CHECK_EQ_INT(e, 2);
    /* counted repetition */
    CHECK_EQ_INT(split_count("\\d{1,3}", "1234567", &e), 3);
    CHECK_EQ_INT(e, 3);
    /* lazy */
    CHECK_EQ_INT(split_count("a+?", "aaa", &e), 3);
    /* lookahead with one-unit groups, as the gpt-4o pattern uses */
    CHECK_EQ_INT(split_count("((?=[A-Za-z])([^a-z]))*((?=[A-Za-z])([^A-Z]))+", "ABcDEf", &e), 2);
    CHECK_EQ_INT(e, 3);
    /* classes: ranges, negation, escapes, non-ASCII */
    CHECK_EQ_INT(split_count("[^\\s\\d]+", "ab 12 c\xC3\xA9", &e), 2);
    CHECK_EQ_INT(split_count("[\xE4\xB8\x80-\xE9\xBE\xA5]+", "x\xE4\xBD\xA0\xE5\xA5\xBDy", &e), 1);
    CHECK_EQ_INT(e, 3);
    /* $ and empty-iteration rules */
    CHECK_EQ_INT(split_count("\\s+$", "a  b  ", &e), 1);
    CHECK_EQ_INT(e, 6);
    CHECK_EQ_INT(split_count("(a?)*b", "aab", &e), 1);
    /* syntax errors are reported, not crashed on */
    CHECK_EQ_INT(split_count("(ab", "ab", &e), -1);
    CHECK_STR_CONTAINS(moe_last_error(), "test");
    CHECK_EQ_INT(split_count("[a-", "ab", &e), -1);
    CHECK_EQ_INT(split_count("*a", "ab", &e), -1);
    CHECK_EQ_INT(split_count("a{3,1}", "ab", &e), -1);
}

/* ------------------------------------------------------------------ hand-made vocabularies */

typedef struct {
    const char *model, *pre;
    const char *const *tokens;
    int n_tokens;
    const float *scores;
    const int32_t *types;
    int n_scores, n_types;
    const char *const *merges;
    int n_merges;
    int bos, eos;
    int add_bos;          /* -1: not written */
    bool types_as_f32;    /* garble: write token_type as floats */
} vocab_spec;

static const char *write_vocab(const vocab_spec *v, const char *name) {
    static char path[1024];
    snprintf(path, sizeof path, "%s/%s.gguf", test_tmpdir(), name);
    moe_gguf_writer *w = moe_gguf_writer_init();
    if (!w) return NULL;
    moe_gguf_writer_set_str(w, "general.architecture", "llama");
    if (v->model) moe_gguf_writer_set_str(w, "tokenizer.ggml.model", v->model);
    if (v->pre) moe_gguf_writer_set_str(w, "tokenizer.ggml.pre", v->pre);
    if (v->tokens) moe_gguf_writer_set_arr(w, "tokenizer.ggml.tokens", MOE_GGUF_STRING, v->tokens, (uint64_t)v->n_tokens);
    if (v->scores) moe_gguf_writer_set_arr(w, "tokenizer.ggml.scores", MOE_GGUF_F32, v->scores, (uint64_t)v->n_scores);
    if (v->types && !v->types_as_f32)
        moe_gguf_writer_set_arr(w, "tokenizer.ggml.token_type", MOE_GGUF_I32, v->types, (uint64_t)v->n_types);
    if (v->types && v->types_as_f32)
        moe_gguf_writer_set_arr(w, "tokenizer.ggml.token_type", MOE_GGUF_F32, v->types, (uint64_t)v->n_types);
    if (v->merges) moe_gguf_writer_set_arr(w, "tokenizer.ggml.merges", MOE_GGUF_STRING, v->merges, (uint64_t)v->n_merges);
    if (v->bos >= 0) moe_gguf_writer_set_u32(w, "tokenizer.ggml.bos_token_id", (uint32_t)v->bos);
    if (v->eos >= 0) moe_gguf_writer_set_u32(w, "tokenizer.ggml.eos_token_id", (uint32_t)v->eos);
    if (v->add_bos >= 0) moe_gguf_writer_set_bool(w, "tokenizer.ggml.add_bos_token", v->add_bos != 0);
    moe_status st = moe_gguf_writer_write(w, path);
    moe_gguf_writer_free(w);
    return st == MOE_OK ? path : NULL;
}

static moe_tokenizer *load_spec(const vocab_spec *v, const char *name) {
    const char *path = write_vocab(v, name);
    if (!path) return NULL;
    moe_gguf *g = moe_gguf_open(path);
    if (!g) return NULL;
    moe_tokenizer *t = moe_tokenizer_load(g);
    moe_gguf_close(g);
    return t;
}

static int encode_eq(const moe_tokenizer *t, const char *text, bool add_special, bool parse_special,
                     const int32_t *want, size_t n_want) {
    int32_t *ids = NULL;
    size_t n = 0;
    if (moe_tokenizer_encode(t, text, strlen(text), add_special, parse_special, &ids, &n) != MOE_OK) return 0;
    int ok = n == n_want && (n == 0 || memcmp(ids, want, n * sizeof *ids) == 0);
    if (!ok) {
        fprintf(stderr, "    '%s' ->", text);
        for (size_t i = 0; i < n; i++) fprintf(stderr, " %d", ids[i]);
        fputc('\n', stderr);
    }
    free(ids);
    return ok;
}
#define ENC(t, text, as, ps, ...)                                                               \
    do {                                                                                          \
        static const int32_t want_[] = {__VA_ARGS__};                                             \
        CHECK_MSG(encode_eq(t, text, as, ps, want_, sizeof want_ / sizeof want_[0]), "encode '%s'", text); \
    } while (0)

/* "<unk>", "<s>", "</s>", 256 byte tokens, then the pieces of the test */
#define SPM_BASE 259
static void spm_tokens(const char **tok, float *score, int32_t *type, const char *const *extra,
                       const float *extra_score, int n_extra) {
    static char bytes[256][8];
    tok[0] = "<unk>", tok[1] = "<s>", tok[2] = "</s>";
    type[0] = 2, type[1] = type[2] = 3;
    score[0] = score[1] = score[2] = 0;
    for (int b = 0; b < 256; b++) {
        snprintf(bytes[b], sizeof bytes[b], "<0x%02X>", b);
        tok[3 + b] = bytes[b];
        type[3 + b] = 6;
        score[3 + b] = 0;
    }
    for (int i = 0; i < n_extra; i++) {
        tok[SPM_BASE + i] = extra[i];
        type[SPM_BASE + i] = 1;
        score[SPM_BASE + i] = extra_score[i];
    }
}

TEST(tokenizer_spm_merges_by_score) {
    /* pieces: 259 ▁ 260 a 261 b 262 c 263 ab 264 bc 265 ▁a 266 abc */
    static const char *const extra[] = {"\xE2\x96\x81", "a", "b", "c", "ab", "bc", ("\xE2\x96\x81" "a"), "abc"};
    const char *tok[SPM_BASE + 8];
    float score[SPM_BASE + 8];
    int32_t type[SPM_BASE + 8];
    /* bc beats ab: "abc" -> ▁a, bc (▁a wins over ab first: -1 > -2) */
    static const float s1[] = {-5, -5, -5, -5, -2, -1.5f, -1, -9};
    spm_tokens(tok, score, type, extra, s1, 8);
    vocab_spec v = {"llama", "default", tok, SPM_BASE + 8, score, type, SPM_BASE + 8, SPM_BASE + 8, NULL, 0, 1, 2, -1, false};
    moe_tokenizer *t = load_spec(&v, "spm1");
    REQUIRE_MSG(t, "%s", moe_last_error());
    ENC(t, "abc", false, false, 265, 264);           /* ▁a (-1) first, then bc (-1.5); abc unreachable */
    ENC(t, "abc", true, false, 1, 265, 264);         /* add_bos defaults to true for llama */
    ENC(t, "x", false, false, 259, 3 + 'x');         /* x is no piece: byte fallback <0x78> */
    ENC(t, "\xC3\xA9", false, false, 259, 3 + 0xC3, 3 + 0xA9);
    ENC(t, "", true, false, 1);
    int32_t *ids = NULL;
    size_t n = 99;
    CHECK(moe_tokenizer_encode(t, "", 0, false, false, &ids, &n) == MOE_OK && n == 0 && ids == NULL);
    moe_tokenizer_free(t);

    /* equal scores: the leftmost pair merges first ("ab" then no "bc") */
    static const float s2[] = {-5, -5, -5, -5, -1, -1, -9, -0.5f};
    spm_tokens(tok, score, type, extra, s2, 8);
    t = load_spec(&v, "spm2");
    REQUIRE(t);
    ENC(t, "abc", false, false, 259, 266);           /* ab, then abc (-0.5) */
    ENC(t, "bca", false, false, 259, 264, 260);      /* ▁ b c a: bc */
    moe_tokenizer_free(t);
}

/* byte-level BPE: tokens are GPT-2 byte-encoded ("Ġ" is a space) */
static const char *const BPE_TOK[] = {"a", "b", "c", "ab", "bc", "abc", "\xC4\xA0", ("\xC4\xA0" "a"), "aa",
                                      "<|endoftext|>", "<u>", ("\xC4\xA0" "ab")};
static const int32_t BPE_TYPE[] = {1, 1, 1, 1, 1, 1, 1, 1, 1, 3, 4, 1};
enum { A, B, C, AB, BC, ABC, SP, SPA, AA, EOT, USR, SPAB };

static moe_tokenizer *bpe(const char *pre, const char *const *merges, int n_merges, const char *name) {
    vocab_spec v = {"gpt2", pre, BPE_TOK, 12, NULL, BPE_TYPE, 0, 12, merges, n_merges, -1, 9, -1, false};
    return load_spec(&v, name);
}

TEST(tokenizer_bpe_merges_by_rank) {
    static const char *const m1[] = {"a b", "b c", "ab c"};
    moe_tokenizer *t = bpe("gpt-2", m1, 3, "bpe1");
    REQUIRE_MSG(t, "%s", moe_last_error());
    ENC(t, "abc", false, false, ABC);           /* a b (rank 0), then ab c (rank 2) */
    ENC(t, "az", false, false, A);              /* 'z' is no token, not even as a byte: dropped */
    moe_tokenizer_free(t);

    static const char *const m2[] = {"b c", "a b"};
    t = bpe("gpt-2", m2, 2, "bpe2");
    REQUIRE(t);
    ENC(t, "abc", false, false, A, BC);         /* b c first, then nothing merges a + bc */
    ENC(t, "ab abc", false, false, AB, SP, A, BC); /* the gpt-2 split: "ab", " abc" */
    moe_tokenizer_free(t);

    /* the same pair twice: the leftmost one merges first */
    static const char *const m3[] = {"a a"};
    t = bpe("gpt-2", m3, 1, "bpe3");
    REQUIRE(t);
    ENC(t, "aaa", false, false, AA, A);
    moe_tokenizer_free(t);

    /* llama3-style vocabularies take a word that is a token whole (ignore_merges) */
    t = bpe("llama-bpe", m2, 2, "bpe4");
    REQUIRE(t);
    ENC(t, "abc", false, false, ABC);
    CHECK(moe_tokenizer_add_bos(t) == false || moe_tokenizer_bos(t) >= 0);
    moe_tokenizer_free(t);
}

TEST(tokenizer_bpe_special_tokens) {
    static const char *const m[] = {"a b", "\xC4\xA0 a"};
    moe_tokenizer *t = bpe("gpt-2", m, 2, "bpe5");
    REQUIRE_MSG(t, "%s", moe_last_error());
    /* a control token only with parse_special; a user-defined one always */
    ENC(t, "ab<|endoftext|>", false, true, AB, EOT);
    ENC(t, "a<u>a", false, false, A, USR, A);
    int32_t *ids = NULL;
    size_t n = 0;
    REQUIRE(moe_tokenizer_encode(t, "<|endoftext|>", 13, false, false, &ids, &n) == MOE_OK);
    for (size_t i = 0; i < n; i++) CHECK(ids[i] != EOT);
    free(ids);
    CHECK(moe_tokenizer_is_eog(t, EOT));
    CHECK(!moe_tokenizer_is_eog(t, A));
    CHECK_EQ_INT(moe_tokenizer_eos(t), EOT);
    size_t pl = 9;
    CHECK(moe_tokenizer_piece(t, EOT, false, &pl) && pl == 0);
    const char *p = moe_tokenizer_piece(t, SPA, false, &pl);
    CHECK(p && pl == 2 && memcmp(p, " a", 2) == 0);
    CHECK(moe_tokenizer_piece(t, 12, false, &pl) == NULL);
    CHECK_EQ_INT(moe_tokenizer_find(t, "<u>", 3), USR);
    CHECK_EQ_INT(moe_tokenizer_find(t, "zz", 2), -1);
    moe_tokenizer_free(t);
}

/* ------------------------------------------------------------------ errors */

static void expect_load_error(const vocab_spec *v, const char *name, const char *needle) {
    const char *path = write_vocab(v, name);
    REQUIRE(path);
    moe_gguf *g = moe_gguf_open(path);
    REQUIRE_MSG(g, "%s", moe_last_error());
    moe_tokenizer *t = moe_tokenizer_load(g);
    CHECK_MSG(t == NULL, "%s: loaded although %s", name, needle);
    CHECK_STR_CONTAINS(moe_last_error(), needle);
    CHECK_STR_CONTAINS(moe_last_error(), path);
    moe_tokenizer_free(t);
    moe_gguf_close(g);
}

TEST(tokenizer_unknown_pre_tokenizer_is_an_error) {
    static const char *const m[] = {"a b"};
    vocab_spec v = {"gpt2", "no-such-pre", BPE_TOK, 12, NULL, BPE_TYPE, 0, 12, m, 1, -1, 9, -1, false};
    expect_load_error(&v, "unknown_pre", "'no-such-pre'");
    v.pre = "kimi-k2"; /* known to llama.cpp, needs a custom splitter we do not have */
    expect_load_error(&v, "unsupported_pre", "'kimi-k2'");
    /* the command fails too, naming the value */
    char cmd[2048], *out = NULL;
    v.pre = "no-such-pre";
    snprintf(cmd, sizeof cmd, "%s tokenize -m %s -p hi", test_moe_bin(), write_vocab(&v, "unknown_pre_cli"));
    CHECK(test_run(cmd, &out) != 0);
    CHECK_STR_CONTAINS(out, "no-such-pre");
    free(out);
}

TEST(tokenizer_garbled_metadata_is_an_error) {
    static const char *const m[] = {"a b"};
    static const float short_scores[3] = {0, 0, 0};
    vocab_spec v = {"gpt2", "gpt-2", BPE_TOK, 12, NULL, BPE_TYPE, 0, 12, NULL, 0, -1, 9, -1, false};
    expect_load_error(&v, "no_merges", "tokenizer.ggml.merges");
    v.merges = m, v.n_merges = 1;
    v.n_types = 5;
    expect_load_error(&v, "short_types", "tokenizer.ggml.token_type");
    v.n_types = 12, v.types_as_f32 = true;
    expect_load_error(&v, "float_types", "tokenizer.ggml.token_type");
    v.types_as_f32 = false, v.scores = short_scores, v.n_scores = 3;
    expect_load_error(&v, "short_scores", "tokenizer.ggml.scores");
    v.scores = NULL, v.eos = 99, v.add_bos = 1; /* gpt2's default BOS 11 is out of range: none */
    v.n_tokens = v.n_types = 5;
    expect_load_error(&v, "bos_missing", "add_bos_token");
    v.add_bos = -1;
    static const char *const dup[] = {"a", "b", "a"};
    v.tokens = dup, v.n_tokens = 3, v.n_types = 3;
    expect_load_error(&v, "duplicate", "duplicate token 'a'");
    v.tokens = NULL;
    expect_load_error(&v, "no_tokens", "tokenizer.ggml.tokens");
    v.tokens = BPE_TOK, v.n_tokens = 12, v.n_types = 12, v.model = "bert";
    expect_load_error(&v, "bert", "'bert' is not supported");
    v.model = NULL;
    expect_load_error(&v, "no_model", "tokenizer.ggml.model");
}

/* ------------------------------------------------------------------ llama.cpp's vocabularies */

static moe_tokenizer *fixture(const char *name) {
    char rel[256];
    snprintf(rel, sizeof rel, "tokenizer/ggml-vocab-%s.gguf", name);
    moe_gguf *g = moe_gguf_open(test_fixture(rel));
    if (!g) return NULL;
    moe_tokenizer *t = moe_tokenizer_load(g);
    moe_gguf_close(g);
    return t;
}

static char *decode(const moe_tokenizer *t, const char *text, bool add_special, bool remove_special, bool unparse) {
    int32_t *ids = NULL;
    size_t n = 0;
    char *s = NULL;
    if (moe_tokenizer_encode(t, text, strlen(text), add_special, false, &ids, &n) == MOE_OK)
        moe_tokenizer_decode(t, ids, n, remove_special, unparse, &s, NULL);
    free(ids);
    return s;
}

TEST(tokenizer_llama_special_tokens_and_flags) {
    moe_tokenizer *t = fixture("llama-spm");
    REQUIRE_MSG(t, "%s", moe_last_error());
    CHECK_EQ_INT(moe_tokenizer_n_vocab(t), 32000);
    CHECK_EQ_INT(moe_tokenizer_bos(t), 1);
    CHECK_EQ_INT(moe_tokenizer_eos(t), 2);
    CHECK_EQ_INT(moe_tokenizer_unk(t), 0);
    CHECK(moe_tokenizer_add_bos(t) && !moe_tokenizer_add_eos(t));
    CHECK(moe_tokenizer_is_eog(t, 2) && !moe_tokenizer_is_eog(t, 1) && !moe_tokenizer_is_eog(t, 15043));
    CHECK(!strcmp(moe_tokenizer_model(t), "llama"));
    /* 15043 is "▁Hello" (llama.cpp's vector: "Hello world" -> 15043 3186) */
    ENC(t, "<s>Hello</s>", false, true, 1, 15043, 2);
    ENC(t, "Hello world", true, false, 1, 15043, 3186);
    int32_t *ids = NULL;
    size_t n = 0;
    REQUIRE(moe_tokenizer_encode(t, "<s>", 3, false, false, &ids, &n) == MOE_OK);
    CHECK(n > 1);
    for (size_t i = 0; i < n; i++) CHECK(ids[i] != 1);
    free(ids);
    /* pieces: byte tokens, ▁ -> space, control tokens rendered only on request */
    size_t pl;
    const char *p = moe_tokenizer_piece(t, 3 + '\n', false, &pl);
    CHECK(p && pl == 1 && p[0] == '\n');
    p = moe_tokenizer_piece(t, 15043, false, &pl);
    CHECK(p && pl == 6 && !memcmp(p, " Hello", 6));
    CHECK(moe_tokenizer_piece(t, 1, false, &pl) && pl == 0);
    p = moe_tokenizer_piece(t, 1, true, &pl);
    CHECK(p && pl == 3 && !memcmp(p, "<s>", 3));
    /* decode drops the space the tokenizer put in front, but not after a BOS (llama.cpp) */
    char *s = decode(t, "Hello world", false, false, false);
    CHECK(s && !strcmp(s, "Hello world"));
    free(s);
    s = decode(t, "Hello world", true, true, false);
    CHECK(s && !strcmp(s, " Hello world"));
    free(s);
    s = decode(t, "Hello world", true, false, true);
    CHECK(s && !strcmp(s, "<s> Hello world"));
    free(s);
    int32_t bad = 32000;
    char *out = NULL;
    CHECK(moe_tokenizer_decode(t, &bad, 1, false, false, &out, NULL) == MOE_ERR_INVALID && out == NULL);
    /* invalid UTF-8 goes through byte fallback, byte for byte */
    ENC(t, "\xFF", false, false, 29871, 3 + 0xFF);
    static const char junk[] = "a\xC3(\xE2\x82\xF0\x9F\x98 \xFF\xFE\x80z";
    s = decode(t, junk, false, false, false);
    CHECK(s && !strcmp(s, junk));
    free(s);
    moe_tokenizer_free(t);
}

TEST(tokenizer_phi3_strips_after_special_tokens) {
    moe_tokenizer *t = fixture("phi-3");
    REQUIRE_MSG(t, "%s", moe_last_error());
    CHECK_EQ_INT(moe_tokenizer_eos(t), 32000);
    CHECK(moe_tokenizer_is_eog(t, 32000) && moe_tokenizer_is_eog(t, 32007) && !moe_tokenizer_is_eog(t, 32010));
    /* <|user|> and <|end|> strip the whitespace after them (llama.cpp's phi-3 rule) */
    ENC(t, "<|user|>\nHello<|end|>\n", false, true, 32010, 15043, 32007);
    /* </s> is user-defined here: split out even without parse_special */
    int32_t *ids = NULL;
    size_t n = 0;
    REQUIRE(moe_tokenizer_encode(t, "a</s>b", 6, false, false, &ids, &n) == MOE_OK);
    CHECK_EQ_INT(n, 3);
    if (n == 3) CHECK_EQ_INT(ids[1], 2);
    free(ids);
    moe_tokenizer_free(t);
}

TEST(tokenizer_decode_cleans_spaces_like_llama) {
    moe_tokenizer *t = fixture("gpt-2");
    REQUIRE_MSG(t, "%s", moe_last_error());
    CHECK(!moe_tokenizer_add_bos(t));
    CHECK(moe_tokenizer_is_eog(t, 50256));
    ENC(t, "<|endoftext|>", false, true, 50256);
    /* gpt-2 has clean_up_tokenization_spaces */
    char *s = decode(t, "Hello , world ! a 's b 're c 'll d ' e .", false, false, false);
    CHECK(s && !strcmp(s, "Hello, world! a's b're c 'll d'e."));
    free(s);
    /* invalid UTF-8 becomes U+FFFD before the byte-level encoding, as in llama.cpp */
    int32_t *a = NULL, *b = NULL;
    size_t na = 0, nb = 0;
    REQUIRE(moe_tokenizer_encode(t, "x\xFFy", 3, false, false, &a, &na) == MOE_OK);
    REQUIRE(moe_tokenizer_encode(t, "x\xEF\xBF\xBDy", 5, false, false, &b, &nb) == MOE_OK);
    CHECK(na == nb && na > 0 && !memcmp(a, b, na * sizeof *a));
    free(a);
    free(b);
    moe_tokenizer_free(t);
    /* deepseek-coder does not clean up */
    t = fixture("deepseek-coder");
    REQUIRE(t);
    CHECK(moe_tokenizer_add_bos(t));
    s = decode(t, "Hello , world !", false, false, false);
    CHECK(s && !strcmp(s, "Hello , world !"));
    free(s);
    moe_tokenizer_free(t);
}

TEST(tokenizer_random_bytes_never_crash) {
    static const char *names[] = {"llama-spm", "gpt-2", "starcoder", "deepseek-coder", "phi-3"};
    uint64_t x = 88172645463325252ull;
    for (size_t v = 0; v < 5; v++) {
        moe_tokenizer *t = fixture(names[v]);
        REQUIRE(t);
        for (int r = 0; r < 60; r++) {
            char buf[96];
            size_t len = (size_t)(r % 96);
            for (size_t i = 0; i < len; i++) {
                x ^= x << 13, x ^= x >> 7, x ^= x << 17;
                /* bias towards bytes that make UTF-8 and pre-tokenizer edge cases */
                static const char pool[] = " \n\t'sA9.<|>\xC3\xA9\xE2\x82\xAC\xF0\x9F\x98\x81\x80\xFF";
                buf[i] = (x >> 60) & 1 ? (char)(x >> 24) : pool[(x >> 32) % (sizeof pool - 1)];
            }
            int32_t *ids = NULL;
            size_t n = 0;
            CHECK(moe_tokenizer_encode(t, buf, len, true, true, &ids, &n) == MOE_OK);
            for (size_t i = 0; i < n; i++) CHECK(ids[i] >= 0 && ids[i] < moe_tokenizer_n_vocab(t));
            char *s = NULL;
            CHECK(moe_tokenizer_decode(t, ids, n, true, true, &s, NULL) == MOE_OK);
            free(s);
            free(ids);
        }
        moe_tokenizer_free(t);
    }
}

/* ------------------------------------------------------------------ the command */

TEST(tokenizer_cli_tokenize_matches_vectors) {
    const char *vocab = test_fixture("tokenizer/ggml-vocab-llama-spm.gguf");
    char path[1024], cmd[4096], *out = NULL;
    /* string 28 of the vectors and llama.cpp's ids for it; a trailing newline is kept */
    snprintf(path, sizeof path, "%s/text.txt", test_tmpdir());
    FILE *f = fopen(path, "wb");
    REQUIRE(f);
    fputs("    Hello\n    Hello", f);
    fclose(f);
    snprintf(cmd, sizeof cmd, "%s tokenize -m %s --no-bos -f %s", test_moe_bin(), vocab, path);
    CHECK_EQ_INT(test_run(cmd, &out), 0);
    CHECK(out && !strcmp(out, "268 15043 13 1678 15043\n"));
    free(out);
    snprintf(cmd, sizeof cmd, "%s tokenize -m %s < %s", test_moe_bin(), vocab, path);
    CHECK_EQ_INT(test_run(cmd, &out), 0);
    CHECK(out && !strcmp(out, "1 268 15043 13 1678 15043\n"));
    free(out);
    snprintf(cmd, sizeof cmd, "printf 'Hello\\n' | %s tokenize -m %s --no-bos", test_moe_bin(), vocab);
    CHECK_EQ_INT(test_run(cmd, &out), 0);
    CHECK(out && !strcmp(out, "15043 13\n"));
    free(out);
    snprintf(cmd, sizeof cmd, "%s tokenize -m %s -p '<s>Hi' --json", test_moe_bin(), vocab);
    CHECK_EQ_INT(test_run(cmd, &out), 0);
    CHECK_STR_CONTAINS(out, "\"ids\": [1, 1, 6324]");
    free(out);
    snprintf(cmd, sizeof cmd, "%s tokenize -m %s -p '<s>' --no-bos --no-parse-special --pieces", test_moe_bin(), vocab);
    CHECK_EQ_INT(test_run(cmd, &out), 0);
    CHECK(out && !strstr(out, "     1 -> "));
    free(out);
    snprintf(cmd, sizeof cmd, "%s detokenize -m %s --ids '268 15043 13 1678 15043'", test_moe_bin(), vocab);
    CHECK_EQ_INT(test_run(cmd, &out), 0);
    CHECK(out && !strcmp(out, "    Hello\n    Hello"));
    free(out);
    snprintf(cmd, sizeof cmd, "%s tokenize --help", test_moe_bin());
    CHECK_EQ_INT(test_run(cmd, &out), 0);
    free(out);
    snprintf(cmd, sizeof cmd, "%s tokenize -p x", test_moe_bin());
    CHECK(test_run(cmd, &out) != 0);
    free(out);
}
