/* cmd_plot.c — `moe plot LOG.jsonl... -o curves.svg`: the training curves of one or more
 * `moe train --log` files as an SVG drawn by a small writer of our own: loss (train and
 * eval), MaxVio per MoE layer, and the share of tokens per expert of the first MoE layer. */
#include "cli/cli.h"

#include <math.h>
#include <stdlib.h>
#include <string.h>

static const char *const USAGE =
    "usage: moe plot LOG.jsonl [LOG2.jsonl ...] -o curves.svg [--title TEXT] [--smooth N]\n"
    "\n"
    "Draws the curves of `moe train --log` files: train and eval loss, MaxVio per MoE layer\n"
    "(max load − mean load) / mean load, and each expert's share of the tokens of the first MoE\n"
    "layer (first file). Several logs are drawn on the same axes to compare runs.\n"
    "\n"
    "  -o, --output FILE   the SVG to write\n"
    "  --title TEXT        a title (the file names)\n"
    "  --smooth N          moving average over N steps of the train loss (1 = none)\n";

#define MAX_SERIES 256

typedef struct {
    char label[128];
    double *x, *y;
    size_t n, cap;
    int color, dash;
} series;

typedef struct {
    const char *title, *ylabel;
    series *s[MAX_SERIES];
    int n;
} panel;

static bool push(series *s, double x, double y) {
    if (!isfinite(x) || !isfinite(y)) return true;
    if (s->n == s->cap) {
        size_t cap = s->cap ? s->cap * 2 : 256;
        double *nx = realloc(s->x, cap * sizeof *nx);
        if (!nx) return false;
        s->x = nx;
        double *ny = realloc(s->y, cap * sizeof *ny);
        if (!ny) return false;
        s->y = ny;
        s->cap = cap;
    }
    s->x[s->n] = x;
    s->y[s->n++] = y;
    return true;
}

static series *new_series(panel *p, const char *label, int color, int dash) {
    if (p->n == MAX_SERIES) return NULL;
    series *s = calloc(1, sizeof *s);
    if (!s) return NULL;
    snprintf(s->label, sizeof s->label, "%s", label);
    s->color = color;
    s->dash = dash;
    p->s[p->n++] = s;
    return s;
}

/* The number after "key": in a JSON line; NAN when absent. */
static double num_after(const char *line, const char *key) {
    char pat[64];
    snprintf(pat, sizeof pat, "\"%s\":", key);
    const char *q = strstr(line, pat);
    if (!q) return NAN;
    q += strlen(pat);
    while (*q == ' ') q++;
    if (!strncmp(q, "null", 4)) return NAN;
    char *end;
    double v = strtod(q, &end);
    return end == q ? NAN : v;
}

/* Numbers of the array after "key": (the first inner array for nested ones). */
static int arr_after(const char *line, const char *key, double *out, int max) {
    char pat[64];
    snprintf(pat, sizeof pat, "\"%s\":", key);
    const char *q = strstr(line, pat);
    if (!q) return 0;
    q += strlen(pat);
    while (*q == ' ' || *q == '[') q++;
    int n = 0;
    while (*q && *q != ']' && n < max) {
        char *end;
        double v = strtod(q, &end);
        if (end == q) break;
        out[n++] = v;
        q = end;
        while (*q == ' ' || *q == ',') q++;
    }
    return n;
}

static void xml_text(FILE *f, const char *s) {
    for (; *s; s++) {
        switch (*s) {
        case '<': fputs("&lt;", f); break;
        case '>': fputs("&gt;", f); break;
        case '&': fputs("&amp;", f); break;
        case '"': fputs("&quot;", f); break;
        default: if ((unsigned char)*s >= 0x20 || *s == '\t') fputc(*s, f);
        }
    }
}

static const char *const COLORS[] = {"#1f77b4", "#d62728", "#2ca02c", "#ff7f0e", "#9467bd",
                                     "#8c564b", "#e377c2", "#7f7f7f", "#bcbd22", "#17becf"};

/* "nice" tick step for a range */
static double tick_step(double range) {
    if (!(range > 0)) return 1;
    double raw = range / 5, mag = pow(10, floor(log10(raw))), r = raw / mag;
    return (r < 1.5 ? 1 : r < 3 ? 2 : r < 7 ? 5 : 10) * mag;
}

#define W 860
#define PH 300
#define ML 70
#define MR 200
#define MT 40
#define MB 45

static void draw_panel(FILE *f, const panel *p, double y0) {
    double xmin = INFINITY, xmax = -INFINITY, ymin = INFINITY, ymax = -INFINITY;
    for (int i = 0; i < p->n; i++)
        for (size_t j = 0; j < p->s[i]->n; j++) {
            xmin = fmin(xmin, p->s[i]->x[j]); xmax = fmax(xmax, p->s[i]->x[j]);
            ymin = fmin(ymin, p->s[i]->y[j]); ymax = fmax(ymax, p->s[i]->y[j]);
        }
    const double pw = W - ML - MR, ph = PH - MT - MB;
    fprintf(f, "<g class=\"panel\">\n<text x=\"%d\" y=\"%.1f\" font-size=\"15\" font-weight=\"bold\">", ML, y0 + 24);
    xml_text(f, p->title);
    fprintf(f, "</text>\n");
    fprintf(f, "<rect x=\"%d\" y=\"%.1f\" width=\"%.1f\" height=\"%.1f\" fill=\"none\" stroke=\"#444\"/>\n", ML, y0 + MT, pw, ph);
    if (!isfinite(xmin)) {
        fprintf(f, "<text x=\"%.1f\" y=\"%.1f\" font-size=\"13\" fill=\"#888\">no data</text>\n</g>\n", ML + pw / 2 - 25, y0 + MT + ph / 2);
        return;
    }
    if (xmax == xmin) { xmin -= 1; xmax += 1; }
    if (ymax == ymin) { ymin -= 0.5; ymax += 0.5; }
    double pad = (ymax - ymin) * 0.05;
    ymin -= pad; ymax += pad;
#define SX(x) (ML + ((x) - xmin) / (xmax - xmin) * pw)
#define SY(y) (y0 + MT + ph - ((y) - ymin) / (ymax - ymin) * ph)
    double st = tick_step(xmax - xmin);
    for (double t = ceil(xmin / st) * st; t <= xmax + 1e-9; t += st)
        fprintf(f, "<line x1=\"%.1f\" y1=\"%.1f\" x2=\"%.1f\" y2=\"%.1f\" stroke=\"#ddd\"/><text x=\"%.1f\" y=\"%.1f\" font-size=\"11\" text-anchor=\"middle\">%g</text>\n",
                SX(t), y0 + MT, SX(t), y0 + MT + ph, SX(t), y0 + MT + ph + 15, t);
    st = tick_step(ymax - ymin);
    for (double t = ceil(ymin / st) * st; t <= ymax + 1e-12; t += st)
        fprintf(f, "<line x1=\"%d\" y1=\"%.1f\" x2=\"%.1f\" y2=\"%.1f\" stroke=\"#ddd\"/><text x=\"%d\" y=\"%.1f\" font-size=\"11\" text-anchor=\"end\">%.4g</text>\n",
                ML, SY(t), ML + pw, SY(t), ML - 5, SY(t) + 4, t);
    fprintf(f, "<text x=\"%.1f\" y=\"%.1f\" font-size=\"12\" text-anchor=\"middle\">step</text>\n", ML + pw / 2, y0 + PH - 8);
    fprintf(f, "<text x=\"16\" y=\"%.1f\" font-size=\"12\" text-anchor=\"middle\" transform=\"rotate(-90 16 %.1f)\">", y0 + MT + ph / 2, y0 + MT + ph / 2);
    xml_text(f, p->ylabel);
    fprintf(f, "</text>\n");
    for (int i = 0; i < p->n; i++) {
        const series *s = p->s[i];
        const char *col = COLORS[s->color % (int)(sizeof COLORS / sizeof *COLORS)];
        fprintf(f, "<polyline class=\"series\" data-label=\"");
        xml_text(f, s->label);
        fprintf(f, "\" fill=\"none\" stroke=\"%s\" stroke-width=\"1.5\"%s points=\"", col, s->dash ? " stroke-dasharray=\"5,3\"" : "");
        for (size_t j = 0; j < s->n; j++) fprintf(f, "%s%.1f,%.1f", j ? " " : "", SX(s->x[j]), SY(s->y[j]));
        fprintf(f, "\"/>\n");
        if (s->n == 1) fprintf(f, "<circle cx=\"%.1f\" cy=\"%.1f\" r=\"3\" fill=\"%s\"/>\n", SX(s->x[0]), SY(s->y[0]), col);
        if (i < 16) {
            double ly = y0 + MT + 10 + i * 16;
            fprintf(f, "<line x1=\"%.1f\" y1=\"%.1f\" x2=\"%.1f\" y2=\"%.1f\" stroke=\"%s\" stroke-width=\"2\"%s/><text x=\"%.1f\" y=\"%.1f\" font-size=\"11\">",
                    ML + pw + 10, ly, ML + pw + 30, ly, col, s->dash ? " stroke-dasharray=\"5,3\"" : "", ML + pw + 35, ly + 4);
            xml_text(f, s->label);
            fprintf(f, "</text>\n");
        }
    }
#undef SX
#undef SY
    fprintf(f, "</g>\n");
}

int cmd_plot(int argc, char **argv) {
    const char *sub = "plot", *out = NULL, *title = NULL;
    const char *logs[32];
    int n_logs = 0;
    int64_t smooth = 1;
    for (int i = 1; i < argc; i++) {
        const char *a = argv[i];
        if (cli_is_help(a)) { fputs(USAGE, stdout); return 0; }
        else if (!strcmp(a, "-o") || !strcmp(a, "--output")) { if (!cli_arg_str(sub, argc, argv, &i, &out)) return 2; }
        else if (!strcmp(a, "--title")) { if (!cli_arg_str(sub, argc, argv, &i, &title)) return 2; }
        else if (!strcmp(a, "--smooth")) { if (!cli_arg_int(sub, argc, argv, &i, 1, 1 << 20, &smooth)) return 2; }
        else if (a[0] == '-' && a[1]) return cli_usage(sub, "unknown option %s", a);
        else if (n_logs == 32) return cli_usage(sub, "at most 32 logs");
        else logs[n_logs++] = a;
    }
    if (!n_logs) return cli_usage(sub, "no log file given");
    if (!out) return cli_usage(sub, "-o is required");
    panel loss = {"Loss", "cross-entropy (nats)", {0}, 0}, vio = {"Expert load: MaxVio per MoE layer", "MaxVio", {0}, 0},
          share = {"Tokens per expert, first MoE layer (first log)", "share of tokens", {0}, 0};
    int rc = 0;
    char *line = NULL;
    size_t cap = 0;
    for (int li = 0; li < n_logs && !rc; li++) {
        FILE *f = fopen(logs[li], "r");
        if (!f) { rc = cli_fail(sub, "%s: cannot open", logs[li]); break; }
        const char *base = strrchr(logs[li], '/') ? strrchr(logs[li], '/') + 1 : logs[li];
        char lab[128];
        snprintf(lab, sizeof lab, n_logs > 1 ? "%s train" : "train", base);
        series *tr = new_series(&loss, lab, 2 * li, 0);
        snprintf(lab, sizeof lab, n_logs > 1 ? "%s eval" : "eval", base);
        series *ev = new_series(&loss, lab, 2 * li + 1, 1);
        series *lv[64] = {0}, *sh[64] = {0};
        double win[4096], acc = 0, vals[1024];
        int64_t nw = 0, lines = 0;
        while (getline(&line, &cap, f) > 0) {
            double step = num_after(line, "step");
            if (!isfinite(step)) continue;
            lines++;
            double el = num_after(line, "eval_loss");
            if (isfinite(el)) { if (ev && !push(ev, step, el)) rc = 1; continue; }
            double l = num_after(line, "loss");
            if (isfinite(l) && tr) { /* moving average */
                win[nw % 4096] = l;
                acc += l;
                nw++;
                if (nw > smooth) acc -= win[(nw - 1 - smooth) % 4096];
                if (!push(tr, step, acc / (double)(nw < smooth ? nw : smooth))) rc = 1;
            }
            int nv = arr_after(line, "max_vio", vals, 64);
            for (int k = 0; k < nv; k++) {
                if (!lv[k]) {
                    if (n_logs > 1) snprintf(lab, sizeof lab, "%s layer %d", base, k);
                    else snprintf(lab, sizeof lab, "MoE layer %d", k);
                    lv[k] = new_series(&vio, lab, n_logs > 1 ? li * 3 + k : k, n_logs > 1 ? li % 2 : 0);
                }
                if (lv[k] && !push(lv[k], step, vals[k])) rc = 1;
            }
            if (li == 0) {
                int ne = arr_after(line, "load", vals, 64);
                double tot = 0;
                for (int e = 0; e < ne; e++) tot += vals[e];
                for (int e = 0; e < ne && tot > 0; e++) {
                    if (!sh[e]) {
                        snprintf(lab, sizeof lab, "expert %d", e);
                        sh[e] = new_series(&share, lab, e, 0);
                    }
                    if (sh[e] && !push(sh[e], step, vals[e] / tot)) rc = 1;
                }
            }
        }
        fclose(f);
        if (rc) rc = cli_fail(sub, "out of memory");
        else if (!lines) rc = cli_fail(sub, "%s: no log lines (expected the JSONL of moe train --log)", logs[li]);
    }
    free(line);
    if (!rc) {
        FILE *f = fopen(out, "w");
        if (!f) rc = cli_fail(sub, "%s: cannot write", out);
        else {
            const int H = 3 * PH + 40;
            fprintf(f, "<?xml version=\"1.0\" encoding=\"UTF-8\"?>\n<svg xmlns=\"http://www.w3.org/2000/svg\" width=\"%d\" height=\"%d\" viewBox=\"0 0 %d %d\" font-family=\"sans-serif\">\n",
                    W, H, W, H);
            fprintf(f, "<rect width=\"100%%\" height=\"100%%\" fill=\"white\"/>\n<text x=\"%d\" y=\"24\" font-size=\"17\">", ML);
            if (title) xml_text(f, title);
            else for (int i = 0; i < n_logs; i++) { if (i) fputs(", ", f); xml_text(f, logs[i]); }
            fprintf(f, "</text>\n");
            draw_panel(f, &loss, 40);
            draw_panel(f, &vio, 40 + PH);
            draw_panel(f, &share, 40 + 2 * PH);
            fprintf(f, "</svg>\n");
            if (fclose(f)) rc = cli_fail(sub, "%s: write error", out);
        }
    }
    panel *ps[3] = {&loss, &vio, &share};
    for (int k = 0; k < 3; k++)
        for (int i = 0; i < ps[k]->n; i++) { free(ps[k]->s[i]->x); free(ps[k]->s[i]->y); free(ps[k]->s[i]); }
    return rc;
}
