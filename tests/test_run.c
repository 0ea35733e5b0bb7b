/* test_run.c — `moe run` and `moe chat` end to end on the F16 fixture models: the first
 * greedy token is the argmax of llama.cpp's reference logits, every further greedy token
 * is the argmax of moe's own logits for the whole sequence evaluated at once, the same
 * seed gives the same tokens, and the errors a user meets are clear. */
#include "test.h"

#include "moe.h"

#include <stdlib.h>
#include <unistd.h>

#define N_PROMPT 64
#define N_VOCAB 4096

static bool read_prompt(int32_t *ids, char *str, size_t cap) {
    FILE *f = fopen(test_fixture("gguf/tokens.txt"), "r");
    if (!f) return false;
    size_t n = fread(str, 1, cap - 1, f);
    fclose(f);
    str[n] = 0;
    while (n && (str[n - 1] == '\n' || str[n - 1] == ' ')) str[--n] = 0;
    char *p = str;
    for (int i = 0; i < N_PROMPT; i++) {
        char *end;
        ids[i] = (int32_t)strtol(p, &end, 10);
        if (end == p) return false;
        p = end;
    }
    return true;
}

/* The row after the last prompt token of llama.cpp's reference logits. */
static bool read_ref_row(const char *model, int row, float *out) {
    char rel[128];
    snprintf(rel, sizeof rel, "gguf/%s.logits", model);
    FILE *f = fopen(test_fixture(rel), "rb");
    if (!f) return false;
    bool ok = fseek(f, (long)row * N_VOCAB * 4, SEEK_SET) == 0 && fread(out, 4, N_VOCAB, f) == N_VOCAB;
    fclose(f);
    return ok;
}

static int argmax(const float *x, int n, float *margin) {
    int b = 0;
    for (int i = 1; i < n; i++)
        if (x[i] > x[b]) b = i;
    float second = -INFINITY;
    for (int i = 0; i < n; i++)
        if (i != b && x[i] > second) second = x[i];
    if (margin) *margin = x[b] - second;
    return b;
}

/* Parses the ids of "key": [a, b, ...] in `moe run --json` output. */
static int parse_ids(const char *json, const char *key, int32_t *out, int cap) {
    char pat[64];
    snprintf(pat, sizeof pat, "\"%s\": [", key);
    const char *p = strstr(json, pat);
    if (!p) return -1;
    p += strlen(pat);
    int n = 0;
    while (*p && *p != ']') {
        char *end;
        long v = strtol(p, &end, 10);
        if (end == p) return -1;
        if (n < cap) out[n] = (int32_t)v;
        n++;
        p = end;
        while (*p == ',' || *p == ' ') p++;
    }
    return n;
}

static char *run_moe(const char *args, int *rc) {
    char cmd[8192];
    snprintf(cmd, sizeof cmd, "%s %s", test_moe_bin(), args);
    char *out = NULL;
    *rc = test_run(cmd, &out);
    return out;
}

static void check_first_token(const char *model) {
    int32_t ids[N_PROMPT];
    static char prompt[4096];
    REQUIRE_MSG(read_prompt(ids, prompt, sizeof prompt), "cannot read gguf/tokens.txt");
    static float ref[N_VOCAB];
    REQUIRE_MSG(read_ref_row(model, N_PROMPT - 1, ref), "cannot read %s.logits", model);
    float margin;
    int want = argmax(ref, N_VOCAB, &margin);
    char args[6000];
    snprintf(args, sizeof args, "run -m %s/gguf/%s.gguf --prompt-tokens \"%s\" -n 1 --temp 0 --json -t 1 2>/dev/null",
             test_fixture(""), model, prompt);
    int rc;
    char *out = run_moe(args, &rc);
    REQUIRE_MSG(rc == 0 && out, "%s: moe run failed (%d): %s", model, rc, out ? out : "");
    int32_t got[4];
    int n = parse_ids(out, "tokens", got, 4);
    CHECK_EQ_INT(parse_ids(out, "prompt_tokens", (int32_t[N_PROMPT]){0}, N_PROMPT), N_PROMPT);
    REQUIRE_MSG(n == 1, "%s: expected one generated token in %s", model, out);
    CHECK_MSG(got[0] == want, "%s: first greedy token %d, llama.cpp's argmax %d (margin %.4f)", model, got[0],
              want, (double)margin);
    free(out);
}

TEST(run_first_token_matches_llama_cpp_mixtral) { check_first_token("mixtral-f16"); }
TEST(run_first_token_matches_llama_cpp_qwen2moe) { check_first_token("qwen2moe-f16"); }
TEST(run_first_token_matches_llama_cpp_olmoe) { check_first_token("olmoe-f16"); }

/* Greedy decoding one token at a time (KV cache) picks, at every step, the argmax of the
 * logits the library gives for the whole sequence evaluated in one batch. */
TEST(run_greedy_consistent_with_batch_eval) {
    enum { N_GEN = 12 };
    int32_t ids[N_PROMPT + N_GEN];
    static char prompt[4096];
    REQUIRE(read_prompt(ids, prompt, sizeof prompt));
    char path[1024];
    snprintf(path, sizeof path, "%s", test_fixture("gguf/mixtral-f16.gguf"));
    char args[6000];
    snprintf(args, sizeof args, "run -m %s --prompt-tokens \"%s\" -n %d --temp 0 --ignore-eos --json -t 1 2>/dev/null",
             path, prompt, N_GEN);
    int rc;
    char *out = run_moe(args, &rc);
    REQUIRE_MSG(rc == 0 && out, "moe run failed (%d): %s", rc, out ? out : "");
    int32_t *gen = ids + N_PROMPT;
    int n = parse_ids(out, "tokens", gen, N_GEN);
    free(out);
    REQUIRE_MSG(n == N_GEN, "generated %d tokens, want %d", n, N_GEN);

    moe_model *m = moe_model_load(path, NULL);
    REQUIRE_MSG(m, "%s", moe_last_error());
    moe_context *c = moe_context_init(m, 0);
    REQUIRE_MSG(c, "%s", moe_last_error());
    const int n_seq = N_PROMPT + N_GEN - 1;  /* the last generated token is never fed */
    float *logits = malloc((size_t)n_seq * N_VOCAB * sizeof *logits);
    REQUIRE(logits);
    REQUIRE_MSG(moe_eval(c, ids, n_seq, logits, 0) == MOE_OK, "%s", moe_last_error());
    int checked = 0;
    for (int j = 0; j < N_GEN; j++) {
        float margin;
        int want = argmax(logits + (size_t)(N_PROMPT - 1 + j) * N_VOCAB, N_VOCAB, &margin);
        if (margin < 1e-4f) continue;  /* a near-tie may flip between batch and single-token paths */
        checked++;
        CHECK_MSG(gen[j] == want, "step %d: generated %d, batch argmax %d (margin %.5f)", j, gen[j], want,
                  (double)margin);
    }
    CHECK_MSG(checked >= N_GEN - 2, "only %d of %d steps were clear of ties", checked, N_GEN);
    free(logits);
    moe_context_free(c);
    moe_model_free(m);
}

static int sample_run(const char *prompt, const char *extra, int32_t *gen, int cap) {
    char args[6000];
    snprintf(args, sizeof args,
             "run -m %s --prompt-tokens \"%s\" -n %d --ignore-eos --json -t 1 %s 2>/dev/null",
             test_fixture("gguf/mixtral-f16.gguf"), prompt, cap, extra);
    int rc;
    char *out = run_moe(args, &rc);
    int n = rc == 0 && out ? parse_ids(out, "tokens", gen, cap) : -1;
    free(out);
    return n;
}

TEST(run_seed_reproducible) {
    enum { N = 16 };
    int32_t ids[N_PROMPT];
    static char prompt[4096];
    REQUIRE(read_prompt(ids, prompt, sizeof prompt));
    int32_t a[N], b[N], c[N];
    /* temperature 1.5 without top-k/top-p/min-p: the random model spreads its mass, so
     * two seeds agreeing on 16 tokens would be a broken PRNG, not luck */
    const char *s1 = "--seed 1234 --temp 1.5 --top-k 0 --top-p 1 --min-p 0";
    const char *s2 = "--seed 1235 --temp 1.5 --top-k 0 --top-p 1 --min-p 0";
    REQUIRE(sample_run(prompt, s1, a, N) == N);
    REQUIRE(sample_run(prompt, s1, b, N) == N);
    REQUIRE(sample_run(prompt, s2, c, N) == N);
    CHECK(memcmp(a, b, sizeof a) == 0);
    CHECK(memcmp(a, c, sizeof a) != 0);
    /* the default chain (top-k 40 etc.) with a seed is reproducible too */
    REQUIRE(sample_run(prompt, "--seed 7", a, N) == N);
    REQUIRE(sample_run(prompt, "--seed 7", b, N) == N);
    CHECK(memcmp(a, b, sizeof a) == 0);
}

TEST(run_errors) {
    int rc;
    char *out = run_moe("run -m /nonexistent/x.gguf -p hi 2>&1", &rc);
    CHECK(rc == 1);
    CHECK_STR_CONTAINS(out, "/nonexistent/x.gguf");
    free(out);
    out = run_moe("run -m x.gguf 2>&1", &rc);
    CHECK(rc == 2);
    CHECK_STR_CONTAINS(out, "no prompt");
    free(out);
    out = run_moe("run -m x.gguf -p hi --temp 2>&1", &rc);
    CHECK(rc == 2);
    free(out);
    out = run_moe("run --prompt-tokens '1 x' -m x.gguf 2>&1", &rc);
    CHECK(rc == 2);
    CHECK_STR_CONTAINS(out, "not a token id");
    free(out);
    /* no -m and a $MOE_MODEL that does not exist: an error, no fallback to another model */
    char cmd[1024];
    snprintf(cmd, sizeof cmd, "MOE_MODEL=/nonexistent/default.gguf %s run -p hi 2>&1", test_moe_bin());
    rc = test_run(cmd, &out);
    CHECK(rc == 1);
    CHECK_STR_CONTAINS(out, "$MOE_MODEL=/nonexistent/default.gguf");
    free(out);
    /* no -m and no default model next to the binary: says where it looked (a copy of
     * the binary in an empty directory) */
    snprintf(cmd, sizeof cmd, "mkdir -p %s/bin && cp %s %s/bin/moe && env -u MOE_MODEL %s/bin/moe run -p hi 2>&1",
             test_tmpdir(), test_moe_bin(), test_tmpdir(), test_tmpdir());
    rc = test_run(cmd, &out);
    CHECK(rc == 1);
    CHECK_STR_CONTAINS(out, "looked at");
    CHECK_STR_CONTAINS(out, "share/moe/default.gguf");
    free(out);
    /* $MOE_MODEL is used when it exists */
    snprintf(cmd, sizeof cmd, "MOE_MODEL=%s %s run --prompt-tokens '1 2554' -n 2 --temp 0 --json -t 1 2>/dev/null",
             test_fixture("gguf/mixtral-f16.gguf"), test_moe_bin());
    rc = test_run(cmd, &out);
    CHECK_MSG(rc == 0, "rc %d: %s", rc, out ? out : "");
    CHECK_STR_CONTAINS(out, "\"tokens\": [");
    free(out);
    out = run_moe("run --help", &rc);
    CHECK(rc == 0);
    CHECK_STR_CONTAINS(out, "--repeat-last-n");
    free(out);
    /* contradicting load options: usage errors (exit 2), before anything is opened */
    out = run_moe("run -m x.gguf -p hi --mmap --no-mmap 2>&1", &rc);
    CHECK(rc == 2);
    CHECK_STR_CONTAINS(out, "contradict");
    free(out);
    out = run_moe("chat -m x.gguf --mem 1G --no-mmap 2>&1 </dev/null", &rc);
    CHECK(rc == 2);
    CHECK_STR_CONTAINS(out, "cannot be combined with --mem");
    free(out);
}

/* A model larger than the available memory is mapped by default, with a note that says
 * why (a sparse file of that size: the loader then rejects its contents, exit 1). */
TEST(run_maps_a_model_larger_than_memory) {
    const uint64_t avail = moe_mem_available_bytes();
    if (!avail) { test_skip("no MemAvailable in /proc/meminfo"); return; }
    char path[512], cmd[1024];
    snprintf(path, sizeof path, "%s/huge.gguf", test_tmpdir());
    FILE *f = fopen(path, "wb");
    REQUIRE(f);
    const int ok = ftruncate(fileno(f), (off_t)(4 * avail)) == 0;
    fclose(f);
    if (!ok) { test_skip("cannot make a sparse file of %llu bytes", (unsigned long long)(4 * avail)); return; }
    snprintf(cmd, sizeof cmd, "%s run -m %s -p hi -n 1 2>&1", test_moe_bin(), path);
    char *out = NULL;
    CHECK_EQ_INT(test_run(cmd, &out), 1);
    CHECK_STR_CONTAINS(out, "does not fit in the available memory");
    CHECK_STR_CONTAINS(out, "mapping it");
    free(out);
    remove(path);
}

/* `moe run --json` of 6 greedy tokens after a fixed prompt on the mixtral-q4_0 fixture,
 * with extra options; checks that it ran and that --json has `"key": "want"`. */
static char *run_json_with(const char *opts, const char *key, const char *want) {
    char cmd[1024], kv[64];
    snprintf(cmd, sizeof cmd, "%s run -m %s --prompt-tokens '1 2554 1049' -n 6 --temp 0 --ignore-eos -t 2 --json %s 2>/dev/null",
             test_moe_bin(), test_fixture("gguf/mixtral-q4_0.gguf"), opts);
    char *out = NULL;
    int rc = test_run(cmd, &out);
    CHECK_MSG(rc == 0, "rc %d: %s", rc, out ? out : "");
    snprintf(kv, sizeof kv, "\"%s\": \"%s\"", key, want);
    CHECK_MSG(out && strstr(out, kv), "'%s': no %s in %s", opts, kv, out ? out : "");
    return out;
}

/* Where the weights go: by default (a fixture fits in memory) read into memory, with
 * --mmap or --mem mapped; --json says which, and the tokens are the same. */
TEST(run_weights_in_memory_or_mapped) {
    const char *how[] = {"", "--mmap", "--mem 1G", "--no-mmap"}, *want[] = {"memory", "mapped", "mapped", "memory"};
    char *first = NULL;
    for (int k = 0; k < 4; k++) {
        char *out = run_json_with(how[k], "weights", want[k]);
        const char *toks = out ? strstr(out, "\"tokens\": [") : NULL;
        REQUIRE(toks);
        const size_t len = strcspn(toks, "]");
        if (!first) first = strndup(toks, len);
        else CHECK_MSG(strncmp(first, toks, len) == 0 && strlen(first) == len, "%s: %.*s vs %s", how[k], (int)len, toks, first);
        free(out);
    }
    free(first);
}

/* --kv-type: --json names the cache's type (f32 by default); another name is a usage
 * error that names the option. */
TEST(run_kv_type) {
    const char *how[] = {"", "--kv-type f16", "--kv-type f32"}, *want[] = {"f32", "f16", "f32"};
    for (int k = 0; k < 3; k++) free(run_json_with(how[k], "kv_type", want[k]));
    char cmd[1024], *out = NULL;
    snprintf(cmd, sizeof cmd, "%s run -m %s -p hi --kv-type bf16", test_moe_bin(), test_fixture("gguf/mixtral-q4_0.gguf"));
    CHECK_EQ_INT(test_run(cmd, &out), 2);
    CHECK_STR_CONTAINS(out, "--kv-type: 'bf16' is not one of f32, f16");
    free(out);
}

/* Timings reach stderr, the text stdout. */
TEST(run_prints_speeds) {
    char cmd[1024];
    /* the braces keep test_run's own 2>&1 from undoing the redirection: only stderr stays */
    snprintf(cmd, sizeof cmd, "{ %s run -m %s --prompt-tokens '1 2554 1049' -n 3 --temp 0 --ignore-eos -t 1 2>&1 >/dev/null; }",
             test_moe_bin(), test_fixture("gguf/mixtral-f16.gguf"));
    char *out = NULL;
    int rc = test_run(cmd, &out);
    CHECK_MSG(rc == 0, "rc %d: %s", rc, out ? out : "");
    CHECK_STR_CONTAINS(out, "load time");
    CHECK_STR_CONTAINS(out, "prompt eval");
    CHECK_STR_CONTAINS(out, "tokens/s");
    CHECK_STR_CONTAINS(out, "3 tokens");
    free(out);
}

/* A text prompt goes through the tokenizer, and `moe chat` reads piped lines. */
TEST(run_text_prompt_and_chat) {
    char args[2048];
    snprintf(args, sizeof args, "run -m %s -p 'Hello world' -n 4 --temp 0 --ignore-eos --json -t 1 2>&1",
             test_fixture("gguf/mixtral-f16.gguf"));
    int rc;
    char *out = run_moe(args, &rc);
    REQUIRE_MSG(rc == 0, "rc %d: %s", rc, out ? out : "");
    int32_t p[16];
    /* llama SentencePiece: BOS, then "▁Hello" "▁world" (ids below 4096 in this vocab) */
    int n = parse_ids(out, "prompt_tokens", p, 16);
    CHECK_MSG(n >= 2 && p[0] == 1, "prompt tokens of 'Hello world': %s", out);
    free(out);

    char cmd[2048];
    snprintf(cmd, sizeof cmd, "printf 'Hello\\nHow are you?\\n/exit\\n' | %s chat -m %s -n 4 --temp 0 -t 1 2>&1",
             test_moe_bin(), test_fixture("gguf/mixtral-f16.gguf"));
    rc = test_run(cmd, &out);
    CHECK_MSG(rc == 0, "rc %d: %s", rc, out ? out : "");
    /* the fixture has no chat template: the fallback is said, and speeds are printed */
    CHECK_STR_CONTAINS(out, "using chatml");
    CHECK_STR_CONTAINS(out, "generation");
    free(out);
    snprintf(cmd, sizeof cmd, "%s chat -m %s --chat-template nope </dev/null 2>&1", test_moe_bin(),
             test_fixture("gguf/mixtral-f16.gguf"));
    rc = test_run(cmd, &out);
    CHECK(rc == 2);
    CHECK_STR_CONTAINS(out, "chatml");
    free(out);
}

/* Streaming never loses, repeats or reorders bytes, even when byte tokens split UTF-8
 * characters between tokens: stdout is exactly the tokens' pieces end to end. */
TEST(run_stream_is_concatenated_pieces) {
    enum { N = 64 };
    const char *model = test_fixture("gguf/mixtral-f16.gguf");
    const char *opts = "--prompt-tokens '1 3 200 250' -n 64 --ignore-eos --seed 99 --temp 1.5 --top-k 0 --top-p 1 --min-p 0 -t 1";
    char cmd[2048];
    snprintf(cmd, sizeof cmd, "%s run -m %s %s --json 2>/dev/null", test_moe_bin(), model, opts);
    char *out = NULL;
    int rc = test_run(cmd, &out);
    REQUIRE_MSG(rc == 0 && out, "rc %d", rc);
    int32_t gen[N];
    int n = parse_ids(out, "tokens", gen, N);
    free(out);
    REQUIRE(n == N);
    snprintf(cmd, sizeof cmd, "{ %s run -m %s %s 2>/dev/null; }", test_moe_bin(), model, opts);
    rc = test_run(cmd, &out);
    REQUIRE_MSG(rc == 0 && out, "rc %d", rc);

    moe_gguf *g = moe_gguf_open(model);
    REQUIRE(g);
    moe_tokenizer *tok = moe_tokenizer_load(g);
    REQUIRE_MSG(tok, "%s", moe_last_error());
    char want[N * 64 + 2];
    size_t wl = 0;
    int n_byte_tokens = 0;
    for (int i = 0; i < N; i++) {
        size_t len;
        const char *p = moe_tokenizer_piece(tok, gen[i], false, &len);
        REQUIRE(p && wl + len < sizeof want - 2);
        memcpy(want + wl, p, len);
        wl += len;
        n_byte_tokens += (moe_tokenizer_token_attr(tok, gen[i]) & MOE_TOKEN_ATTR_BYTE) != 0;
    }
    want[wl++] = '\n';  /* moe run ends the text with a newline */
    want[wl] = 0;
    CHECK_MSG(strlen(out) == wl && memcmp(out, want, wl) == 0, "stdout differs from the pieces (%zu vs %zu bytes)",
              strlen(out), wl);
    /* the case this test exists for: this seed draws byte tokens */
    CHECK_MSG(n_byte_tokens > 0, "no byte token drawn: pick another seed");
    moe_tokenizer_free(tok);
    moe_gguf_close(g);
    free(out);
}
