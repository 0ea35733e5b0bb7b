/* trace.c — routing traces (one JSON object per line: {"pos":P,"token":T,"layer":L,
 * "experts":[...],"weights":[...]}) and the cache simulator that replays them. */
#include "offload/xcache.h"

#include <errno.h>
#include <stdio.h>
#include <stdlib.h>

typedef struct {
    int layer;
    int n;            /* experts in this line */
    int64_t first;    /* index into experts[] */
} trace_group;

struct moe_trace {
    trace_group *groups;
    int32_t *experts;
    int64_t n_groups, n_experts_total;
    int n_layers, n_experts, max_group;
};

/* ---------------------------------------------------------------- parsing */

typedef struct {
    const char *p, *end, *path;
    int64_t line;
} jscan;

static void skip_ws(jscan *s) {
    while (s->p < s->end && (*s->p == ' ' || *s->p == '\t' || *s->p == '\r')) s->p++;
}

static moe_status jfail(jscan *s, const char *what) {
    return moe_error(MOE_ERR_FORMAT, "%s: line %lld: %s", s->path, (long long)s->line, what);
}

/* Skips a JSON string (the cursor is on the opening quote) and copies up to cap-1 bytes. */
static moe_status scan_string(jscan *s, char *out, size_t cap) {
    size_t n = 0;
    s->p++;
    while (s->p < s->end && *s->p != '"') {
        if (*s->p == '\\') {
            if (++s->p >= s->end) break;
        }
        if (n + 1 < cap) out[n++] = *s->p;
        s->p++;
    }
    if (s->p >= s->end) return jfail(s, "unterminated string");
    s->p++;
    out[n] = 0;
    return MOE_OK;
}

static moe_status scan_number(jscan *s, double *out) {
    char buf[64];
    size_t n = 0;
    while (s->p < s->end && n < sizeof buf - 1 && strchr("+-0123456789.eE", *s->p)) buf[n++] = *s->p++;
    buf[n] = 0;
    char *e;
    errno = 0;
    *out = strtod(buf, &e);
    if (n == 0 || *e || errno) return jfail(s, "expected a number");
    return MOE_OK;
}

/* Skips any JSON value we do not need (strings, numbers, literals, flat arrays). */
static moe_status skip_value(jscan *s) {
    skip_ws(s);
    if (s->p >= s->end) return jfail(s, "missing value");
    if (*s->p == '"') {
        char tmp[2];
        return scan_string(s, tmp, sizeof tmp);
    }
    if (*s->p == '[' || *s->p == '{') {
        int depth = 0;
        do {
            if (*s->p == '"') {
                char tmp[2];
                moe_status st = scan_string(s, tmp, sizeof tmp);
                if (st) return st;
                continue;
            }
            if (*s->p == '[' || *s->p == '{') depth++;
            else if (*s->p == ']' || *s->p == '}') depth--;
            s->p++;
        } while (depth > 0 && s->p < s->end);
        return depth ? jfail(s, "unterminated array or object") : MOE_OK;
    }
    while (s->p < s->end && !strchr(",}] \t", *s->p)) s->p++;
    return MOE_OK;
}

static moe_status grow(void **arr, int64_t *cap, int64_t need, size_t elem) {
    if (need <= *cap) return MOE_OK;
    int64_t nc = *cap ? *cap * 2 : 1024;
    while (nc < need) nc *= 2;
    void *p = realloc(*arr, (size_t)nc * elem);
    if (!p) return moe_error(MOE_ERR_NOMEM, "out of memory reading a routing trace");
    *arr = p;
    *cap = nc;
    return MOE_OK;
}

static moe_status parse_line(moe_trace *t, jscan *s, int64_t *gcap, int64_t *ecap) {
    skip_ws(s);
    if (s->p >= s->end) return MOE_OK; /* blank line */
    if (*s->p != '{') return jfail(s, "expected a JSON object");
    s->p++;
    int layer = -1;
    bool have_experts = false;
    int64_t first = t->n_experts_total;
    int n = 0;
    moe_status st;
    for (;;) {
        skip_ws(s);
        if (s->p < s->end && *s->p == '}') { s->p++; break; }
        if (s->p >= s->end || *s->p != '"') return jfail(s, "expected a key");
        char key[32];
        if ((st = scan_string(s, key, sizeof key))) return st;
        skip_ws(s);
        if (s->p >= s->end || *s->p != ':') return jfail(s, "expected ':'");
        s->p++;
        skip_ws(s);
        if (strcmp(key, "layer") == 0) {
            double v;
            if ((st = scan_number(s, &v))) return st;
            if (v < 0 || v > 100000 || v != (int)v) return jfail(s, "\"layer\" must be an integer in [0, 100000]");
            layer = (int)v;
        } else if (strcmp(key, "experts") == 0) {
            if (s->p >= s->end || *s->p != '[') return jfail(s, "\"experts\" must be an array");
            s->p++;
            have_experts = true;
            for (;;) {
                skip_ws(s);
                if (s->p < s->end && *s->p == ']') { s->p++; break; }
                double v;
                if ((st = scan_number(s, &v))) return st;
                if (v != (int)v || v < -1 || v > 1000000) return jfail(s, "expert ids must be integers ≥ -1");
                if (v >= 0) { /* -1 = empty choice (dropped / null expert) */
                    if ((st = grow((void **)&t->experts, ecap, t->n_experts_total + 1, sizeof *t->experts))) return st;
                    t->experts[t->n_experts_total++] = (int32_t)v;
                    n++;
                    if ((int)v + 1 > t->n_experts) t->n_experts = (int)v + 1;
                }
                skip_ws(s);
                if (s->p < s->end && *s->p == ',') s->p++;
            }
        } else {
            if ((st = skip_value(s))) return st;
        }
        skip_ws(s);
        if (s->p < s->end && *s->p == ',') s->p++;
    }
    if (layer < 0 || !have_experts) return jfail(s, "a trace line needs \"layer\" and \"experts\"");
    if ((st = grow((void **)&t->groups, gcap, t->n_groups + 1, sizeof *t->groups))) return st;
    t->groups[t->n_groups++] = (trace_group){layer, n, first};
    if (layer + 1 > t->n_layers) t->n_layers = layer + 1;
    if (n > t->max_group) t->max_group = n;
    return MOE_OK;
}

moe_trace *moe_trace_load(const char *path) {
    FILE *f = fopen(path, "rb");
    if (!f) return moe_error_null(MOE_ERR_IO, "%s: cannot open: %s", path, strerror(errno));
    moe_trace *t = moe_calloc(1, sizeof *t);
    if (!t) { fclose(f); return NULL; }
    int64_t gcap = 0, ecap = 0, line_no = 0;
    char *line = NULL;
    size_t lcap = 0;
    ssize_t len;
    moe_status st = MOE_OK;
    while ((len = getline(&line, &lcap, f)) >= 0) {
        jscan s = {line, line + len, path, ++line_no};
        while (s.end > s.p && (s.end[-1] == '\n' || s.end[-1] == '\r')) s.end--;
        if ((st = parse_line(t, &s, &gcap, &ecap))) break;
    }
    if (!st && ferror(f)) st = moe_error(MOE_ERR_IO, "%s: read error", path);
    free(line);
    fclose(f);
    if (!st && t->n_groups == 0) st = moe_error(MOE_ERR_FORMAT, "%s: the trace holds no routing lines", path);
    if (st) { moe_trace_free(t); return NULL; }
    return t;
}

void moe_trace_free(moe_trace *t) {
    if (!t) return;
    free(t->groups);
    free(t->experts);
    free(t);
}

int64_t moe_trace_n_groups(const moe_trace *t) { return t->n_groups; }
int64_t moe_trace_n_accesses(const moe_trace *t) { return t->n_experts_total; }
int moe_trace_n_layers(const moe_trace *t) { return t->n_layers; }
int moe_trace_n_experts(const moe_trace *t) { return t->n_experts; }
int moe_trace_max_group(const moe_trace *t) { return t->max_group; }

/* ---------------------------------------------------------------- simulation */

moe_status moe_cachesim(const moe_trace *t, moe_cache_policy policy, int64_t n_slots, bool per_layer,
                        moe_cachesim_result *out) {
    memset(out, 0, sizeof *out);
    const int L = t->n_layers, E = t->n_experts;
    /* per layer, only the layers the trace routes at get slots (dense layers never appear) */
    bool *present = moe_calloc((size_t)L, sizeof *present);
    if (!present) return MOE_ERR_NOMEM;
    int n_present = 0;
    for (int64_t g = 0; g < t->n_groups; g++) {
        n_present += !present[t->groups[g].layer];
        present[t->groups[g].layer] = true;
    }
    int64_t need = per_layer ? (int64_t)t->max_group * n_present : t->max_group;
    if (n_slots < need) {
        free(present);
        return moe_error(MOE_ERR_NOMEM, "cachesim: %lld slots cannot hold one line's %d experts%s (need at least %lld)",
                         (long long)n_slots, t->max_group, per_layer ? " in every layer" : "", (long long)need);
    }
    moe_xcache *c = moe_xcache_init(policy, n_slots, per_layer, L, E, present);
    free(present);
    if (!c) return moe_last_status();
    int64_t n_keys = (int64_t)L * E;
    /* For Belady: next_at[i] = group index of the next use of access i's key. */
    int64_t *next_at = moe_malloc((size_t)MOE_MAX(t->n_experts_total, 1) * sizeof *next_at);
    int64_t *cur_next = moe_malloc((size_t)n_keys * sizeof *cur_next);
    int64_t *last_seen = moe_malloc((size_t)n_keys * sizeof *last_seen);
    int64_t *slots = moe_malloc((size_t)MOE_MAX(t->max_group, 1) * sizeof *slots);
    moe_status st = MOE_OK;
    if (!next_at || !cur_next || !last_seen || !slots) { st = MOE_ERR_NOMEM; goto done; }
    for (int64_t k = 0; k < n_keys; k++) last_seen[k] = cur_next[k] = INT64_MAX;
    if (policy == MOE_CACHE_ORACLE_LFU) { /* the whole trace's use counts, known in advance */
        memset(cur_next, 0, (size_t)n_keys * sizeof *cur_next);
        for (int64_t g = 0; g < t->n_groups; g++)
            for (int j = 0; j < t->groups[g].n; j++)
                cur_next[(int64_t)t->groups[g].layer * E + t->experts[t->groups[g].first + j]]++;
    }
    for (int64_t g = t->n_groups - 1; g >= 0; g--) {
        const trace_group *gr = &t->groups[g];
        for (int j = 0; j < gr->n; j++) {
            int64_t key = (int64_t)gr->layer * E + t->experts[gr->first + j];
            next_at[gr->first + j] = last_seen[key];
        }
        for (int j = 0; j < gr->n; j++) last_seen[(int64_t)gr->layer * E + t->experts[gr->first + j]] = g;
    }
    for (int64_t g = 0; g < t->n_groups; g++) {
        const trace_group *gr = &t->groups[g];
        moe_xcache_begin_layer(c, gr->layer);
        /* hits first, pinned so the misses of the same line cannot evict them */
        for (int j = 0; j < gr->n; j++) {
            int e = t->experts[gr->first + j];
            bool dup = false;
            for (int i = 0; i < j; i++) dup |= t->experts[gr->first + i] == e;
            slots[j] = dup ? -2 : moe_xcache_lookup(c, gr->layer, e);
            if (dup) continue;
            out->accesses++;
            if (slots[j] >= 0) { out->hits++; moe_xcache_pin(c, slots[j], true); }
        }
        for (int j = 0; j < gr->n; j++) {
            if (slots[j] != -1) continue;
            int e = t->experts[gr->first + j];
            moe_xcache_use(c, gr->layer, e);
            slots[j] = moe_xcache_insert(c, gr->layer, e, cur_next);
            if (slots[j] < 0) { st = moe_last_status(); goto done; }
            out->misses++;
            moe_xcache_pin(c, slots[j], true);
        }
        for (int j = 0; j < gr->n; j++) {
            if (policy == MOE_CACHE_BELADY)
                cur_next[(int64_t)gr->layer * E + t->experts[gr->first + j]] = next_at[gr->first + j];
            if (slots[j] >= 0) moe_xcache_pin(c, slots[j], false);
        }
    }
    out->evictions = moe_xcache_evictions(c);
    out->hit_rate = out->accesses ? (double)out->hits / (double)out->accesses : 0.0;
done:
    free(next_at);
    free(cur_next);
    free(last_seen);
    free(slots);
    moe_xcache_free(c);
    return st;
}
