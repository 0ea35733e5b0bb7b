/* cmd_chat.c — `moe chat`: an interactive conversation. Each turn is formatted with the
 * model's chat template; only the text the new turn adds is tokenized and evaluated, so
 * the conversation stays in the KV cache. Reads lines from stdin (a terminal or a pipe);
 * /exit or end of input quits. */
#include "cli/cli.h"

#include <stdlib.h>
#include <string.h>
#include <unistd.h>

static void chat_usage(FILE *f) {
    fprintf(f,
            "usage: moe chat [-m MODEL] [--system TEXT] [--chat-template NAME] [options]\n\n"
            "Talk with a model: one line of stdin is one user message; /exit or end of input quits.\n"
            "Replies stream to stdout; timings go to stderr at the end.\n\n"
            "  --system TEXT            a system message to start the conversation with\n"
            "  --chat-template NAME     use this template instead of the model's (see --list-templates)\n"
            "  --list-templates         print the names of the built-in templates\n"
            "  -n, --n-predict N        most tokens per reply; -1 = until end of turn (default -1)\n");
    cli_gen_print_opts_help(f);
}

typedef struct {
    moe_chat_msg *v;
    size_t n, cap;
} msgs;

static bool msgs_push(msgs *m, const char *role, const char *content, size_t len) {
    if (m->n == m->cap) {
        size_t nc = m->cap ? 2 * m->cap : 16;
        moe_chat_msg *q = realloc(m->v, nc * sizeof *q);
        if (!q) return false;
        m->v = q;
        m->cap = nc;
    }
    char *c = malloc(len + 1);
    if (!c) return false;
    memcpy(c, content, len);
    c[len] = 0;
    m->v[m->n++] = (moe_chat_msg){role, c};
    return true;
}

static void msgs_free(msgs *m) {
    for (size_t i = 0; i < m->n; i++) free((char *)m->v[i].content);
    free(m->v);
}

/* The template: --chat-template, else the model's, else chatml (said on stderr). */
static int pick_template(const char *sub, cli_gen *g, const char *name) {
    if (name) {
        int t = moe_chat_template_from_name(name);
        if (t < 0) {
            fprintf(stderr, "moe %s: unknown chat template '%s'; the built-in ones are:", sub, name);
            for (int i = 0; i < moe_chat_template_count(); i++) fprintf(stderr, " %s", moe_chat_template_name(i));
            fprintf(stderr, "\n");
        }
        return t;
    }
    const char *jinja = cli_gen_chat_template(g);
    int t = jinja ? moe_chat_template_detect(jinja) : -1;
    if (t >= 0) return t;
    fprintf(stderr, "moe %s: %s; using chatml (choose another with --chat-template NAME)\n", sub,
            jinja ? "the model's chat template (tokenizer.chat_template) is not one of the built-in families"
                  : "the model has no chat template (tokenizer.chat_template)");
    return moe_chat_template_from_name("chatml");
}

int cmd_chat(int argc, char **argv) {
    const char *sub = "chat";
    cli_gen_opts o;
    cli_gen_opts_default(&o);
    const char *system = NULL, *tmpl_name = NULL;
    int64_t n_predict = -1;
    for (int i = 1; i < argc; i++) {
        const char *a = argv[i];
        int r = cli_gen_parse_opt(sub, argc, argv, &i, &o);
        if (r < 0) return 2;
        if (r > 0) continue;
        if (cli_is_help(a)) {
            chat_usage(stdout);
            return 0;
        } else if (!strcmp(a, "--system")) {
            if (!cli_arg_str(sub, argc, argv, &i, &system)) return 2;
        } else if (!strcmp(a, "--chat-template")) {
            if (!cli_arg_str(sub, argc, argv, &i, &tmpl_name)) return 2;
        } else if (!strcmp(a, "--list-templates")) {
            for (int t = 0; t < moe_chat_template_count(); t++) printf("%s\n", moe_chat_template_name(t));
            return 0;
        } else if (!strcmp(a, "-n") || !strcmp(a, "--n-predict")) {
            if (!cli_arg_int(sub, argc, argv, &i, -1, INT32_MAX, &n_predict)) return 2;
        } else {
            return cli_usage(sub, "unknown option %s", a);
        }
    }
    if (tmpl_name && moe_chat_template_from_name(tmpl_name) < 0) {
        pick_template(sub, NULL, tmpl_name);
        return 2;
    }
    if (!cli_offload_opts_check(sub, &o.offload)) return 2;
    cli_gen *g = cli_gen_open(sub, &o);
    if (!g) return 1;
    int tmpl = pick_template(sub, g, tmpl_name);
    const bool tty = isatty(STDIN_FILENO);
    if (tty) fprintf(stderr, "moe %s: template %s; /exit or Ctrl-D to quit\n", sub, moe_chat_template_name(tmpl));

    msgs m = {0};
    char *prev = NULL;       /* the conversation so far, formatted without a generation prompt */
    size_t prev_len = 0;
    char *line = NULL;
    size_t line_cap = 0;
    int rc = 0;
    if (system && !msgs_push(&m, "system", system, strlen(system))) goto oom;
    for (;;) {
        if (tty) {
            fprintf(stderr, "\n> ");
            fflush(stderr);
        }
        ssize_t n = getline(&line, &line_cap, stdin);
        if (n < 0) break;
        while (n > 0 && (line[n - 1] == '\n' || line[n - 1] == '\r')) line[--n] = 0;
        if (!strcmp(line, "/exit") || !strcmp(line, "/quit")) break;
        if (n == 0) continue;
        if (!msgs_push(&m, "user", line, (size_t)n)) goto oom;
        char *full = moe_chat_format(tmpl, m.v, m.n, true, cli_gen_bos_text(g), cli_gen_eos_text(g));
        if (!full) {
            rc = cli_fail_lib(sub);
            break;
        }
        /* Every built-in template extends the previous turns' text; should one not (the
         * KV cache would then hold a stale prefix), say so rather than answer wrongly. */
        if (strncmp(full, prev ? prev : "", prev_len) != 0) {
            free(full);
            rc = cli_fail(sub, "the chat template rewrote earlier turns; cannot continue the conversation");
            break;
        }
        int32_t *ids = NULL;
        int64_t n_ids = 0;
        bool first = cli_gen_pos(g) == 0;
        bool ok = cli_gen_tokenize(g, full + prev_len, strlen(full + prev_len), first && cli_gen_add_bos(g), true,
                                   &ids, &n_ids) &&
                  cli_gen_feed(g, ids, n_ids);
        free(ids);
        free(full);
        if (!ok) {
            rc = 1;
            break;
        }
        char *reply = NULL;
        size_t reply_len = 0;
        ok = cli_gen_generate(g, n_predict, stdout, &reply, &reply_len, NULL, NULL);
        printf("\n");
        fflush(stdout);
        bool pushed = msgs_push(&m, "assistant", reply ? reply : "", reply_len);
        free(reply);
        if (!pushed) goto oom;
        if (!ok) {
            rc = 1;
            break;
        }
        free(prev);
        prev = moe_chat_format(tmpl, m.v, m.n, false, cli_gen_bos_text(g), cli_gen_eos_text(g));
        if (!prev) {
            rc = cli_fail_lib(sub);
            break;
        }
        prev_len = strlen(prev);
        if (cli_gen_pos(g) >= cli_gen_n_ctx(g)) {
            rc = cli_fail(sub, "the context is full (%lld tokens); start again with a larger -c",
                          (long long)cli_gen_n_ctx(g));
            break;
        }
    }
    goto done;
oom:
    rc = cli_fail(sub, "out of memory");
done:
    cli_gen_print_stats(g, stderr);
    free(line);
    free(prev);
    msgs_free(&m);
    cli_gen_close(g);
    return rc;
}
