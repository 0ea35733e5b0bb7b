/* cmd_tokenize.c — `moe tokenize`: text -> token ids with a GGUF file's tokenizer (like
 * llama.cpp's llama-tokenize), and `moe detokenize`: ids -> text. Both work on
 * vocabulary-only GGUF files. */
#include "cli/cli.h"

#include <stdlib.h>
#include <string.h>

static bool read_all(FILE *f, char **out, size_t *n) {
    size_t cap = 1 << 16, len = 0, r;
    char *b = malloc(cap);
    while (b && (r = fread(b + len, 1, cap - len, f)) > 0) {
        len += r;
        if (len == cap) {
            char *nb = cap > SIZE_MAX / 2 ? NULL : realloc(b, cap * 2);
            if (!nb) { free(b); return false; }
            b = nb;
            cap *= 2;
        }
    }
    if (!b || ferror(f)) { free(b); return false; }
    *out = b;
    *n = len;
    return true;
}

static bool read_input(const char *sub, const char *file, char **out, size_t *n) {
    FILE *f = file ? fopen(file, "rb") : stdin;
    if (!f) {
        cli_fail(sub, "cannot open %s", file);
        return false;
    }
    bool ok = read_all(f, out, n);
    if (file) fclose(f);
    if (!ok) cli_fail(sub, "cannot read %s", file ? file : "standard input");
    return ok;
}

static moe_tokenizer *open_tokenizer(const char *sub, const char *path) {
    moe_gguf *g = moe_gguf_open(path);
    if (!g) {
        cli_fail_lib(sub);
        return NULL;
    }
    moe_tokenizer *t = moe_tokenizer_load(g);
    moe_gguf_close(g);
    if (!t) cli_fail_lib(sub);
    return t;
}

/* A JSON string of bytes that may not be UTF-8 (a byte token's piece): invalid bytes
 * become U+FFFD so that the output stays valid JSON. */
static void json_bytes(FILE *f, const char *s, size_t n) {
    char *b = malloc(3 * n + 1);
    if (!b) { cli_json_str(f, "", 0); return; }
    size_t k = 0;
    for (size_t i = 0; i < n;) {
        unsigned char c = (unsigned char)s[i];
        size_t len = c < 0x80 ? 1 : (c >> 5) == 6 ? 2 : (c >> 4) == 14 ? 3 : (c >> 3) == 30 ? 4 : 0;
        bool ok = len > 0 && i + len <= n;
        for (size_t j = 1; ok && j < len; j++) ok = ((unsigned char)s[i + j] >> 6) == 2;
        if (ok) {
            memcpy(b + k, s + i, len);
            k += len;
            i += len;
        } else {
            memcpy(b + k, "\xEF\xBF\xBD", 3);
            k += 3;
            i++;
        }
    }
    cli_json_str(f, b, k);
    free(b);
}

static void tokenize_usage(void) {
    printf("usage: moe tokenize -m FILE.gguf [-f TEXT_FILE | -p TEXT] [options]\n\n"
           "Prints the token ids of the text (standard input when neither -f nor -p is given; read\n"
           "byte for byte, no newline stripped), separated by single spaces on one line.\n\n"
           "  -m, --model FILE      a GGUF model or vocabulary-only file\n"
           "  -f, --file FILE       read the text from FILE\n"
           "  -p, --prompt TEXT     tokenize TEXT\n"
           "  --no-bos              do not add BOS/EOS even where the vocabulary asks for them\n"
           "  --no-parse-special    tokenize the text of control tokens (\"<s>\") as plain text\n"
           "  --pieces              print one 'ID -> 'piece'' line per token\n"
           "  --show-count          print the number of tokens last\n"
           "  --json                {\"n_tokens\", \"ids\", \"pieces\"}\n");
}

int cmd_tokenize(int argc, char **argv) {
    const char *sub = "tokenize", *model = NULL, *file = NULL, *prompt = NULL;
    bool no_bos = false, parse_special = true, pieces = false, json = false, show_count = false;
    for (int i = 1; i < argc; i++) {
        const char *a = argv[i];
        if (cli_is_help(a)) { tokenize_usage(); return 0; }
        else if (!strcmp(a, "-m") || !strcmp(a, "--model")) { if (!cli_arg_str(sub, argc, argv, &i, &model)) return 2; }
        else if (!strcmp(a, "-f") || !strcmp(a, "--file")) { if (!cli_arg_str(sub, argc, argv, &i, &file)) return 2; }
        else if (!strcmp(a, "-p") || !strcmp(a, "--prompt")) { if (!cli_arg_str(sub, argc, argv, &i, &prompt)) return 2; }
        else if (!strcmp(a, "--no-bos")) no_bos = true;
        else if (!strcmp(a, "--no-parse-special")) parse_special = false;
        else if (!strcmp(a, "--pieces")) pieces = true;
        else if (!strcmp(a, "--show-count")) show_count = true;
        else if (!strcmp(a, "--json")) json = true;
        else return cli_usage(sub, "unknown option %s", a);
    }
    if (!model) return cli_usage(sub, "no model given (-m FILE.gguf)");
    if (file && prompt) return cli_usage(sub, "give the text with -f or -p, not both");
    char *text = NULL;
    size_t len = 0;
    if (prompt) {
        len = strlen(prompt);
        text = malloc(len + 1);
        if (!text) return cli_fail(sub, "out of memory");
        memcpy(text, prompt, len + 1);
    } else if (!read_input(sub, file, &text, &len)) {
        return 1;
    }
    moe_tokenizer *t = open_tokenizer(sub, model);
    if (!t) { free(text); return 1; }
    /* as llama-tokenize: special tokens are added only where the vocabulary adds a BOS */
    bool add_special = moe_tokenizer_add_bos(t) && !no_bos;
    int32_t *ids = NULL;
    size_t n = 0;
    int rc = 0;
    if (moe_tokenizer_encode(t, text, len, add_special, parse_special, &ids, &n) != MOE_OK) {
        rc = cli_fail_lib(sub);
    } else if (json) {
        printf("{\"n_tokens\": %zu, \"ids\": [", n);
        for (size_t i = 0; i < n; i++) printf(i ? ", %d" : "%d", ids[i]);
        printf("], \"pieces\": [");
        for (size_t i = 0; i < n; i++) {
            size_t pl;
            const char *p = moe_tokenizer_piece(t, ids[i], true, &pl);
            if (i) printf(", ");
            json_bytes(stdout, p, pl);
        }
        printf("]}\n");
    } else if (pieces) {
        for (size_t i = 0; i < n; i++) {
            size_t pl;
            const char *p = moe_tokenizer_piece(t, ids[i], true, &pl);
            printf("%6d -> '", ids[i]);
            fwrite(p, 1, pl, stdout);
            printf("'\n");
        }
    } else {
        for (size_t i = 0; i < n; i++) printf(i ? " %d" : "%d", ids[i]);
        printf("\n");
    }
    if (rc == 0 && show_count && !json) printf("Total number of tokens: %zu\n", n);
    if (fflush(stdout) != 0 && rc == 0) rc = cli_fail(sub, "cannot write the output");
    free(ids);
    free(text);
    moe_tokenizer_free(t);
    return rc;
}

static void detokenize_usage(void) {
    printf("usage: moe detokenize -m FILE.gguf [--ids \"1 2 3\" | -f IDS_FILE] [options]\n\n"
           "Writes the text of token ids (read from --ids, a file, or standard input; separated\n"
           "by spaces, commas or newlines, brackets allowed) exactly, with no newline added.\n\n"
           "  -m, --model FILE      a GGUF model or vocabulary-only file\n"
           "  --ids LIST            the ids\n"
           "  -f, --file FILE       read the ids from FILE\n"
           "  --no-special          do not render control tokens (\"<s>\")\n"
           "  --remove-special      drop a leading BOS / trailing EOS the vocabulary adds\n"
           "  --json                {\"text\": ...}\n");
}

int cmd_detokenize(int argc, char **argv) {
    const char *sub = "detokenize", *model = NULL, *file = NULL, *list = NULL;
    bool special = true, remove_special = false, json = false;
    for (int i = 1; i < argc; i++) {
        const char *a = argv[i];
        if (cli_is_help(a)) { detokenize_usage(); return 0; }
        else if (!strcmp(a, "-m") || !strcmp(a, "--model")) { if (!cli_arg_str(sub, argc, argv, &i, &model)) return 2; }
        else if (!strcmp(a, "-f") || !strcmp(a, "--file")) { if (!cli_arg_str(sub, argc, argv, &i, &file)) return 2; }
        else if (!strcmp(a, "--ids")) { if (!cli_arg_str(sub, argc, argv, &i, &list)) return 2; }
        else if (!strcmp(a, "--no-special")) special = false;
        else if (!strcmp(a, "--remove-special")) remove_special = true;
        else if (!strcmp(a, "--json")) json = true;
        else return cli_usage(sub, "unknown option %s", a);
    }
    if (!model) return cli_usage(sub, "no model given (-m FILE.gguf)");
    if (file && list) return cli_usage(sub, "give the ids with --ids or -f, not both");
    char *src = NULL;
    size_t len = 0;
    if (list) {
        len = strlen(list);
        src = malloc(len + 1);
        if (!src) return cli_fail(sub, "out of memory");
        memcpy(src, list, len + 1);
    } else if (!read_input(sub, file, &src, &len)) {
        return 1;
    }
    int32_t *ids = malloc((len / 2 + 1) * sizeof *ids); /* at least one separator per id */
    size_t n = 0;
    if (!ids) { free(src); return cli_fail(sub, "out of memory"); }
    for (size_t i = 0; i < len;) {
        char c = src[i];
        if (c == ' ' || c == ',' || c == '\n' || c == '\r' || c == '\t' || c == '[' || c == ']') { i++; continue; }
        if (c < '0' || c > '9') {
            free(ids);
            free(src);
            return cli_usage(sub, "'%c' in the id list is not a digit", c);
        }
        long long v = 0;
        while (i < len && src[i] >= '0' && src[i] <= '9' && v <= INT32_MAX) v = v * 10 + (src[i++] - '0');
        if (v > INT32_MAX) {
            free(ids);
            free(src);
            return cli_usage(sub, "token id too large");
        }
        ids[n++] = (int32_t)v;
    }
    free(src);
    moe_tokenizer *t = open_tokenizer(sub, model);
    if (!t) { free(ids); return 1; }
    char *text = NULL;
    size_t tl = 0;
    int rc = 0;
    if (moe_tokenizer_decode(t, ids, n, remove_special, special, &text, &tl) != MOE_OK) {
        rc = cli_fail_lib(sub);
    } else if (json) {
        printf("{\"text\": ");
        json_bytes(stdout, text, tl);
        printf("}\n");
    } else {
        fwrite(text, 1, tl, stdout);
    }
    if (fflush(stdout) != 0 && rc == 0) rc = cli_fail(sub, "cannot write the output");
    free(text);
    free(ids);
    moe_tokenizer_free(t);
    return rc;
}
