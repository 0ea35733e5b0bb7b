/* layer_run.c — `moe layer` as a library call (moe_layer_run in moe.h): reads the weights
 * and inputs from safetensors files, checks every name and shape against
 * ../shared/specs/moe-layer.md, runs the layer forward (and backward) and writes the
 * outputs the spec's table lists. */
#include "moe/layer.h"
#include "io/safetensors.h"

#include <errno.h>
#include <math.h>
#include <stdio.h>
#include <stdlib.h>

void moe_layer_opts_default(moe_layer_opts *o) {
    memset(o, 0, sizeof *o);
    o->renorm = -1;
    o->capacity_factor = NAN;
    o->min_capacity = -1;
    o->route_scale = NAN;
    o->gshard_sample = -1;
    o->usmoe_alpha = o->usmoe_beta = NAN;
}

void moe_layer_report_free(moe_layer_report *rep) {
    if (!rep) return;
    free(rep->load);
    rep->load = NULL;
}

/* ---------------------------------------------------------------- options → router cfg */

enum {
    OPT_K = 1 << 0, OPT_RENORM = 1 << 1, OPT_CF = 1 << 2, OPT_MINCAP = 1 << 3, OPT_GROUP = 1 << 4,
    OPT_RSCALE = 1 << 5, OPT_ASSIGN = 1 << 6, OPT_PRIO = 1 << 7, OPT_HASH = 1 << 8, OPT_SAMPLE = 1 << 9,
    OPT_USMOE = 1 << 10,
};
static const char *const g_opt_names[] = {"--k", "--renorm", "--capacity-factor", "--min-capacity",
                                          "--n-group/--topk-group", "--route-scale", "--assign", "--priority",
                                          "--hash-map", "--gshard-sample", "--usmoe-alpha/--usmoe-beta"};

/* Which options each router reads (the spec's flag table, plus capacity priority and
 * GShard sampling from the issue). */
static unsigned router_opts(moe_router_kind k) {
    switch (k) {
    case MOE_ROUTER_TOPK: return OPT_K | OPT_RENORM | OPT_CF | OPT_PRIO;
    case MOE_ROUTER_SWITCH: return OPT_CF | OPT_PRIO;
    case MOE_ROUTER_GSHARD: return OPT_CF | OPT_PRIO | OPT_SAMPLE;
    case MOE_ROUTER_EXPERT_CHOICE: return OPT_CF | OPT_MINCAP;
    case MOE_ROUTER_SOFT_MOE: return 0;
    case MOE_ROUTER_BASE: return OPT_ASSIGN;
    case MOE_ROUTER_DEEPSEEK_V3: case MOE_ROUTER_LOSS_FREE: return OPT_K | OPT_RENORM | OPT_GROUP | OPT_RSCALE;
    case MOE_ROUTER_ADAMOE: return OPT_K;
    case MOE_ROUTER_HASH: return OPT_HASH;
    case MOE_ROUTER_USMOE: return OPT_K | OPT_RENORM | OPT_USMOE;
    default: return 0;
    }
}

static unsigned opts_given(const moe_layer_opts *o) {
    unsigned m = 0;
    if (o->k != 0) m |= OPT_K;
    if (o->renorm >= 0) m |= OPT_RENORM;
    if (!isnan(o->capacity_factor)) m |= OPT_CF;
    if (o->min_capacity >= 0) m |= OPT_MINCAP;
    if (o->n_group != 0 || o->topk_group != 0) m |= OPT_GROUP;
    if (!isnan(o->route_scale)) m |= OPT_RSCALE;
    if (o->assign) m |= OPT_ASSIGN;
    if (o->priority) m |= OPT_PRIO;
    if (o->hash_map) m |= OPT_HASH;
    if (o->gshard_sample >= 0) m |= OPT_SAMPLE;
    if (!isnan(o->usmoe_alpha) || !isnan(o->usmoe_beta)) m |= OPT_USMOE;
    return m;
}

/* Reads a hash map file: line i holds the expert of token id i. */
static moe_status load_hash_map(const char *path, int E, int32_t **out, int64_t *out_len) {
    FILE *f = fopen(path, "r");
    if (!f) return moe_error(MOE_ERR_IO, "%s: cannot open: %s", path, strerror(errno));
    int64_t cap = 1024, n = 0;
    int32_t *map = moe_malloc((size_t)cap * sizeof *map);
    char line[256];
    moe_status st = map ? MOE_OK : MOE_ERR_NOMEM;
    while (!st && fgets(line, sizeof line, f)) {
        size_t len = strlen(line);
        if (len == sizeof line - 1 && line[len - 1] != '\n') {
            st = moe_error(MOE_ERR_FORMAT, "%s: line %lld is too long", path, (long long)n + 1);
            break;
        }
        while (len && (line[len - 1] == '\n' || line[len - 1] == '\r' || line[len - 1] == ' ')) line[--len] = 0;
        char *end;
        errno = 0;
        long v = strtol(line, &end, 10);
        if (!len || errno || *end || v < 0 || v >= E) {
            st = moe_error(MOE_ERR_FORMAT, "%s: line %lld: '%.40s' is not an expert id in [0, %d)", path,
                           (long long)n + 1, line, E);
            break;
        }
        if (n == cap) {
            cap *= 2;
            int32_t *nm = realloc(map, (size_t)cap * sizeof *nm);
            if (!nm) { st = moe_error(MOE_ERR_NOMEM, "%s: out of memory", path); break; }
            map = nm;
        }
        map[n++] = (int32_t)v;
    }
    if (!st && ferror(f)) st = moe_error(MOE_ERR_IO, "%s: read error", path);
    if (!st && n == 0) st = moe_error(MOE_ERR_FORMAT, "%s: the hash map is empty", path);
    fclose(f);
    if (st) { free(map); return st; }
    *out = map;
    *out_len = n;
    return MOE_OK;
}

static moe_status build_router_cfg(const moe_layer_opts *o, moe_router_kind kind, int E, int64_t R,
                                   moe_router_cfg *rc, int32_t **hash_map) {
    unsigned bad = opts_given(o) & ~router_opts(kind);
    if (bad) {
        char allowed[256] = "";
        unsigned a = router_opts(kind);
        for (size_t i = 0; i < MOE_ARRAY_LEN(g_opt_names); i++)
            if (a & (1u << i)) {
                if (*allowed) strncat(allowed, ", ", sizeof allowed - strlen(allowed) - 1);
                strncat(allowed, g_opt_names[i], sizeof allowed - strlen(allowed) - 1);
            }
        size_t i = 0;
        while (!(bad & (1u << i))) i++;
        return moe_error(MOE_ERR_INVALID, "option %s does not apply to router %s (its options: %s)", g_opt_names[i],
                         moe_router_name(kind), *allowed ? allowed : "none");
    }
    moe_router_cfg_default(rc, kind, E);
    if (kind == MOE_ROUTER_ADAMOE) rc->n_null = (int)(R - E);
    if (kind == MOE_ROUTER_SOFT_MOE) rc->slots_per_expert = (int)(R / E);
    if (o->k) rc->k = o->k;
    if (o->renorm >= 0) rc->renorm = o->renorm != 0;
    if (!isnan(o->capacity_factor)) rc->capacity_factor = (float)o->capacity_factor;
    if (o->min_capacity >= 0) rc->min_capacity = o->min_capacity;
    if (o->n_group) rc->n_group = o->n_group;
    if (o->topk_group) rc->topk_group = o->topk_group;
    if (!isnan(o->route_scale)) rc->route_scale = (float)o->route_scale;
    if (o->gshard_sample >= 0) { rc->gshard_sample = o->gshard_sample != 0; rc->seed = o->seed; }
    if (!isnan(o->usmoe_alpha)) rc->usmoe_alpha = (float)o->usmoe_alpha;
    if (!isnan(o->usmoe_beta)) rc->usmoe_beta = (float)o->usmoe_beta;
    if (o->assign) {
        if (strcmp(o->assign, "balanced") == 0) rc->assign = MOE_ASSIGN_BALANCED;
        else if (strcmp(o->assign, "greedy") == 0) rc->assign = MOE_ASSIGN_GREEDY;
        else if (strcmp(o->assign, "auction") == 0) rc->assign = MOE_ASSIGN_AUCTION;
        else return moe_error(MOE_ERR_INVALID, "--assign: '%s' is not one of balanced, greedy, auction", o->assign);
    }
    if (o->priority) {
        if (strcmp(o->priority, "token") == 0) rc->priority = MOE_PRIORITY_TOKEN;
        else if (strcmp(o->priority, "bpr") == 0) rc->priority = MOE_PRIORITY_BPR;
        else return moe_error(MOE_ERR_INVALID, "--priority: '%s' is not one of token, bpr", o->priority);
    }
    if (o->hash_map) {
        moe_status st = load_hash_map(o->hash_map, E, hash_map, &rc->hash_map_len);
        if (st) return st;
        rc->hash_map = *hash_map;
    }
    return moe_router_cfg_check(rc);
}

/* ---------------------------------------------------------------- tensors */

enum { W_ROUTER_W, W_ROUTER_B, W_ROUTER_S, W_GATE, W_UP, W_DOWN, W_SH_GATE, W_SH_UP, W_SH_DOWN, W_COUNT };
static const char *const g_wnames[W_COUNT] = {"router.weight", "router.bias", "router.scale",
                                              "experts.gate", "experts.up", "experts.down",
                                              "shared.gate", "shared.up", "shared.down"};

typedef struct {
    const moe_st_tensor *t[W_COUNT];
    float *data[W_COUNT], *grad[W_COUNT];
} wset;

static bool is_float_dtype(moe_st_dtype t) {
    return t == MOE_ST_F32 || t == MOE_ST_F64 || t == MOE_ST_F16 || t == MOE_ST_BF16;
}

static char *shape_str(const moe_st_tensor *t, char *buf, size_t n) {
    size_t at = (size_t)snprintf(buf, n, "[");
    for (int i = 0; i < t->n_dims && at < n; i++)
        at += (size_t)snprintf(buf + at, n - at, i ? ", %lld" : "%lld", (long long)t->shape[i]);
    if (at < n) snprintf(buf + at, n - at, "]");
    return buf;
}

/* Checks t's shape against `want` (n dims; -1 = any). */
static moe_status check_shape(const moe_safetensors *st, const moe_st_tensor *t, int n, const int64_t *want,
                              const char *meaning) {
    bool ok = t->n_dims == n;
    for (int i = 0; ok && i < n; i++) ok = want[i] < 0 || t->shape[i] == want[i];
    if (ok) return MOE_OK;
    char got[160], exp[160] = "[";
    for (int i = 0; i < n; i++) {
        char one[32];
        if (want[i] < 0) snprintf(one, sizeof one, i ? ", *" : "*");
        else snprintf(one, sizeof one, i ? ", %lld" : "%lld", (long long)want[i]);
        strncat(exp, one, sizeof exp - strlen(exp) - 1);
    }
    strncat(exp, "]", sizeof exp - strlen(exp) - 1);
    return moe_error(MOE_ERR_FORMAT, "%s: tensor '%s': shape %s, expected %s (%s)", moe_st_path(st), t->name,
                     shape_str(t, got, sizeof got), exp, meaning);
}

static float *read_floats(const moe_safetensors *st, const moe_st_tensor *t) {
    float *p = moe_aligned_alloc((size_t)(t->n_elem ? t->n_elem : 1) * sizeof *p);
    if (p && moe_st_read_f32(st, t, p) != MOE_OK) { free(p); return NULL; }
    return p;
}

/* ---------------------------------------------------------------- the run */

typedef struct {
    moe_safetensors *W, *X;
    wset w;
    float *x, *dy, *y, *dx;
    int32_t *tok, *hash_map;
    int64_t *idx;
    moe_layer layer;
    bool layer_ready;
    moe_pool *pool;
    moe_st_writer *out;
} run_ctx;

static void ctx_free(run_ctx *c) {
    for (int i = 0; i < W_COUNT; i++) { free(c->w.data[i]); free(c->w.grad[i]); }
    free(c->x); free(c->dy); free(c->y); free(c->dx); free(c->tok); free(c->hash_map); free(c->idx);
    if (c->layer_ready) moe_layer_free(&c->layer);
    moe_pool_free(c->pool);
    moe_st_writer_free(c->out);
    moe_st_close(c->W);
    moe_st_close(c->X);
}

static moe_status load_weights(run_ctx *c, moe_router_kind kind, bool swiglu, moe_layer_cfg *lc, int64_t *R_out) {
    const moe_safetensors *W = c->W;
    for (int64_t i = 0; i < moe_st_n_tensors(W); i++) {
        const moe_st_tensor *t = moe_st_tensor_at(W, i);
        int k = 0;
        while (k < W_COUNT && strcmp(t->name, g_wnames[k]) != 0) k++;
        if (k == W_COUNT)
            return moe_error(MOE_ERR_FORMAT, "%s: tensor '%s': unknown name (the layer reads router.weight, router.bias, "
                             "router.scale, experts.gate, experts.up, experts.down, shared.gate, shared.up, shared.down)",
                             moe_st_path(W), t->name);
        if (!is_float_dtype(t->dtype))
            return moe_error(MOE_ERR_FORMAT, "%s: tensor '%s': dtype %s, expected a float type (F32, F64, F16, BF16)",
                             moe_st_path(W), t->name, moe_st_dtype_name(t->dtype));
        c->w.t[k] = t;
    }
    const moe_st_tensor *const *t = c->w.t;
    const int64_t d = lc->d;
    if (!t[W_UP] || !t[W_DOWN] || (swiglu && !t[W_GATE]))
        return moe_error(MOE_ERR_FORMAT, "%s: missing tensor '%s' (experts: gate and up [E, ff, d], down [E, d, ff])",
                         moe_st_path(W), !t[W_UP] ? "experts.up" : !t[W_DOWN] ? "experts.down" : "experts.gate");
    if (!swiglu && t[W_GATE])
        return moe_error(MOE_ERR_FORMAT, "%s: tensor 'experts.gate' is not used by GELU experts", moe_st_path(W));
    moe_status st;
    int64_t up_shape[3] = {-1, -1, d};
    if ((st = check_shape(W, t[W_UP], 3, up_shape, "[E, ff, d]"))) return st;
    const int64_t E = t[W_UP]->shape[0], ff = t[W_UP]->shape[1];
    if (E < 1 || ff < 1 || E > 65536)
        return moe_error(MOE_ERR_FORMAT, "%s: tensor 'experts.up': %lld experts of width %lld", moe_st_path(W),
                         (long long)E, (long long)ff);
    int64_t s_eff[3] = {E, ff, d}, s_down[3] = {E, d, ff};
    if (swiglu && (st = check_shape(W, t[W_GATE], 3, s_eff, "[E, ff, d] like experts.up"))) return st;
    if ((st = check_shape(W, t[W_DOWN], 3, s_down, "[E, d, ff]"))) return st;
    /* shared expert: all of its tensors or none */
    int64_t S = 0;
    if (t[W_SH_GATE] || t[W_SH_UP] || t[W_SH_DOWN]) {
        if (!t[W_SH_UP] || !t[W_SH_DOWN] || (swiglu && !t[W_SH_GATE]))
            return moe_error(MOE_ERR_FORMAT, "%s: the shared expert needs %s shared.up [S, d] and shared.down [d, S]",
                             moe_st_path(W), swiglu ? "shared.gate [S, d]," : "");
        if (!swiglu && t[W_SH_GATE])
            return moe_error(MOE_ERR_FORMAT, "%s: tensor 'shared.gate' is not used by GELU experts", moe_st_path(W));
        int64_t s_up[2] = {-1, d};
        if ((st = check_shape(W, t[W_SH_UP], 2, s_up, "[S, d]"))) return st;
        S = t[W_SH_UP]->shape[0];
        int64_t s_sd[2] = {S, d}, s_dn[2] = {d, S};
        if (S < 1) return moe_error(MOE_ERR_FORMAT, "%s: tensor 'shared.up': width 0", moe_st_path(W));
        if (swiglu && (st = check_shape(W, t[W_SH_GATE], 2, s_sd, "[S, d] like shared.up"))) return st;
        if ((st = check_shape(W, t[W_SH_DOWN], 2, s_dn, "[d, S]"))) return st;
    }
    /* router */
    int64_t R = E;
    if (!t[W_ROUTER_W]) {
        if (kind != MOE_ROUTER_HASH)
            return moe_error(MOE_ERR_FORMAT, "%s: missing tensor 'router.weight' [E, d]", moe_st_path(W));
    } else {
        int64_t s_rw[2] = {-1, d};
        if ((st = check_shape(W, t[W_ROUTER_W], 2, s_rw, "[rows, d]"))) return st;
        R = t[W_ROUTER_W]->shape[0];
        if (kind == MOE_ROUTER_SOFT_MOE) {
            if (R < E || R % E)
                return moe_error(MOE_ERR_FORMAT, "%s: tensor 'router.weight': %lld rows, expected a multiple of E = %lld "
                                 "(soft-moe: E·p slot rows)", moe_st_path(W), (long long)R, (long long)E);
        } else if (kind == MOE_ROUTER_ADAMOE) {
            if (R < E)
                return moe_error(MOE_ERR_FORMAT, "%s: tensor 'router.weight': %lld rows, expected E + m ≥ E = %lld "
                                 "(adamoe: the last m rows are null experts)", moe_st_path(W), (long long)R, (long long)E);
        } else {
            int64_t s_e[2] = {E, d};
            if ((st = check_shape(W, t[W_ROUTER_W], 2, s_e, "[E, d]"))) return st;
        }
    }
    if (t[W_ROUTER_B]) {
        int64_t s_b[1] = {R};
        if ((st = check_shape(W, t[W_ROUTER_B], 1, s_b, "one per router row"))) return st;
    }
    if (t[W_ROUTER_S] && !(t[W_ROUTER_S]->n_elem == 1 && t[W_ROUTER_S]->n_dims <= 1))
        return moe_error(MOE_ERR_FORMAT, "%s: tensor 'router.scale': expected shape [] or [1]", moe_st_path(W));
    for (int k = 0; k < W_COUNT; k++) {
        if (!t[k]) continue;
        if (!(c->w.data[k] = read_floats(W, t[k]))) return moe_last_status();
        c->w.grad[k] = moe_calloc((size_t)(t[k]->n_elem ? t[k]->n_elem : 1), sizeof(float));
        if (!c->w.grad[k]) return MOE_ERR_NOMEM;
    }
    lc->ff = ff;
    lc->shared_ff = S;
    lc->router.n_expert = (int)E;
    *R_out = R;
    return MOE_OK;
}

static moe_layer_params params_of(float *const *p) {
    moe_layer_params w = {.router_w = p[W_ROUTER_W], .router_b = p[W_ROUTER_B], .router_scale = p[W_ROUTER_S],
                          .experts = {p[W_GATE], p[W_UP], p[W_DOWN]}, .shared = {p[W_SH_GATE], p[W_SH_UP], p[W_SH_DOWN]}};
    return w;
}

static moe_status run(run_ctx *c, const moe_layer_opts *o, const char *wpath, const char *xpath, const char *opath,
                      moe_layer_report *rep) {
    moe_status st;
    moe_router_kind kind;
    if (!o->router) return moe_error(MOE_ERR_INVALID, "no router given");
    if ((st = moe_router_from_name(o->router, &kind))) return st;
    bool swiglu = true;
    if (o->act && strcmp(o->act, "swiglu") != 0) {
        if (strcmp(o->act, "gelu") != 0) return moe_error(MOE_ERR_INVALID, "--act: '%s' is not one of swiglu, gelu", o->act);
        swiglu = false;
    }
    if (!(c->W = moe_st_open(wpath)) || !(c->X = moe_st_open(xpath))) return moe_last_status();

    /* X: x [T, d], dy [T, d] with backward, token_ids [T] for hash */
    const moe_st_tensor *tx = NULL, *tdy = NULL, *tid = NULL;
    for (int64_t i = 0; i < moe_st_n_tensors(c->X); i++) {
        const moe_st_tensor *t = moe_st_tensor_at(c->X, i);
        if (strcmp(t->name, "x") == 0) tx = t;
        else if (strcmp(t->name, "dy") == 0) tdy = t;
        else if (strcmp(t->name, "token_ids") == 0) tid = t;
        else return moe_error(MOE_ERR_FORMAT, "%s: tensor '%s': unknown name (the input holds x, dy, token_ids)", xpath, t->name);
    }
    if (!tx) return moe_error(MOE_ERR_FORMAT, "%s: missing tensor 'x' [T, d]", xpath);
    if (!is_float_dtype(tx->dtype))
        return moe_error(MOE_ERR_FORMAT, "%s: tensor 'x': dtype %s, expected a float type", xpath, moe_st_dtype_name(tx->dtype));
    int64_t s_x[2] = {-1, -1};
    if ((st = check_shape(c->X, tx, 2, s_x, "[T, d]"))) return st;
    const int64_t T = tx->shape[0], d = tx->shape[1];
    if (T < 1 || d < 1 || T > INT32_MAX / 2 || d > INT32_MAX / 2)
        return moe_error(MOE_ERR_FORMAT, "%s: tensor 'x': shape [%lld, %lld] is empty or too large", xpath, (long long)T, (long long)d);
    if (o->backward) {
        if (!tdy) return moe_error(MOE_ERR_FORMAT, "%s: missing tensor 'dy' [T, d] (needed by --backward)", xpath);
        if (!is_float_dtype(tdy->dtype))
            return moe_error(MOE_ERR_FORMAT, "%s: tensor 'dy': dtype %s, expected a float type", xpath, moe_st_dtype_name(tdy->dtype));
        int64_t s_dy[2] = {T, d};
        if ((st = check_shape(c->X, tdy, 2, s_dy, "like x"))) return st;
    }
    if (kind == MOE_ROUTER_HASH) {
        if (!tid) return moe_error(MOE_ERR_FORMAT, "%s: missing tensor 'token_ids' [T] (needed by hash routing)", xpath);
        int64_t s_id[1] = {T};
        if ((st = check_shape(c->X, tid, 1, s_id, "one id per token"))) return st;
    }

    moe_layer_cfg lc = {.d = d, .act = swiglu ? MOE_FFN_SWIGLU : MOE_FFN_GELU};
    int64_t R = 0;
    if ((st = load_weights(c, kind, swiglu, &lc, &R))) return st;
    const int E = lc.router.n_expert;
    if ((st = build_router_cfg(o, kind, E, R, &lc.router, &c->hash_map))) return st;

    if (!(c->x = read_floats(c->X, tx))) return moe_last_status();
    if (o->backward && !(c->dy = read_floats(c->X, tdy))) return moe_last_status();
    if (kind == MOE_ROUTER_HASH) {
        int64_t *ids = moe_malloc((size_t)T * sizeof *ids);
        c->tok = moe_malloc((size_t)T * sizeof *c->tok);
        if (!ids || !c->tok) { free(ids); return MOE_ERR_NOMEM; }
        st = moe_st_read_i64(c->X, tid, ids);
        for (int64_t i = 0; !st && i < T; i++) {
            int64_t lim = lc.router.hash_map ? lc.router.hash_map_len : INT32_MAX;
            if (ids[i] < 0 || ids[i] >= lim)
                st = moe_error(MOE_ERR_FORMAT, "%s: tensor 'token_ids': element %lld is %lld, outside [0, %lld)%s", xpath,
                               (long long)i, (long long)ids[i], (long long)lim,
                               lc.router.hash_map ? " (the lines of the hash map)" : "");
            else c->tok[i] = (int32_t)ids[i];
        }
        free(ids);
        if (st) return st;
    }

    /* run */
    int nt = o->n_threads > 0 ? o->n_threads : moe_default_threads();
    if (!(c->pool = moe_pool_create(nt))) return moe_last_status();
    moe_blas_set_threads(nt);
    if ((st = moe_layer_init(&c->layer, &lc))) return st;
    c->layer_ready = true;
    c->y = moe_aligned_alloc((size_t)(T * d) * sizeof(float));
    if (!c->y) return MOE_ERR_NOMEM;
    moe_layer_params w = params_of(c->w.data), g = params_of(c->w.grad);
    double t0 = moe_time_s();
    if ((st = moe_layer_forward(&c->layer, c->y, c->x, c->tok, &w, T, c->pool))) return st;
    double t1 = moe_time_s();
    if (o->backward) {
        c->dx = moe_calloc((size_t)(T * d), sizeof(float));
        if (!c->dx) return MOE_ERR_NOMEM;
        if ((st = moe_layer_backward(&c->layer, c->dx, &g, c->dy, c->x, &w, (float)o->aux_coef, (float)o->z_coef, c->pool)))
            return st;
    }
    double t2 = moe_time_s();

    /* outputs */
    const moe_routing *rt = &c->layer.rt;
    if (!(c->out = moe_st_writer_init())) return MOE_ERR_NOMEM;
    int64_t s_td[2] = {T, d};
    if ((st = moe_st_writer_add(c->out, "y", MOE_ST_F32, 2, s_td, c->y))) return st;
    if (kind == MOE_ROUTER_SOFT_MOE) {
        int64_t s_tl[2] = {T, rt->n_slots};
        if ((st = moe_st_writer_add(c->out, "dispatch", MOE_ST_F32, 2, s_tl, rt->dispatch)) ||
            (st = moe_st_writer_add(c->out, "combine", MOE_ST_F32, 2, s_tl, rt->combine)))
            return st;
    } else {
        const int64_t n = T * rt->n_cols;
        if (!(c->idx = moe_malloc((size_t)(n ? n : 1) * sizeof *c->idx))) return MOE_ERR_NOMEM;
        for (int64_t i = 0; i < n; i++) c->idx[i] = rt->expert[i];
        int64_t s_tk[2] = {T, rt->n_cols};
        if ((st = moe_st_writer_add(c->out, "expert_index", MOE_ST_I64, 2, s_tk, c->idx)) ||
            (st = moe_st_writer_add(c->out, "expert_weight", MOE_ST_F32, 2, s_tk, rt->weight)))
            return st;
    }
    if ((st = moe_st_writer_add(c->out, "aux_loss", MOE_ST_F32, 0, NULL, &rt->aux_loss)) ||
        (st = moe_st_writer_add(c->out, "z_loss", MOE_ST_F32, 0, NULL, &rt->z_loss)))
        return st;
    if (o->backward) {
        if ((st = moe_st_writer_add(c->out, "dx", MOE_ST_F32, 2, s_td, c->dx))) return st;
        for (int64_t i = 0; i < moe_st_n_tensors(c->W); i++) {
            const moe_st_tensor *t = moe_st_tensor_at(c->W, i);
            int k = 0;
            while (strcmp(t->name, g_wnames[k]) != 0) k++;
            char name[64];
            snprintf(name, sizeof name, "d.%s", t->name);
            if ((st = moe_st_writer_add(c->out, name, MOE_ST_F32, t->n_dims, t->shape, c->w.grad[k]))) return st;
        }
    }
    if ((st = moe_st_writer_set_metadata(c->out, "router", moe_router_name(kind))) ||
        (st = moe_st_writer_write(c->out, opath)))
        return st;

    if (rep) {
        memset(rep, 0, sizeof *rep);
        rep->n_tokens = T;
        rep->d = d;
        rep->ff = lc.ff;
        rep->shared_ff = lc.shared_ff;
        rep->n_expert = E;
        rep->n_cols = kind == MOE_ROUTER_SOFT_MOE ? 0 : rt->n_cols;
        rep->aux_loss = rt->aux_loss;
        rep->z_loss = rt->z_loss;
        rep->n_dropped = rt->stats.n_dropped;
        rep->n_dropped_tokens = rt->stats.n_dropped_tokens;
        rep->n_null = rt->stats.n_null;
        rep->maxvio = rt->stats.maxvio;
        rep->entropy = rt->stats.entropy;
        rep->seconds_forward = t1 - t0;
        rep->seconds_backward = o->backward ? t2 - t1 : 0;
        rep->load = moe_calloc((size_t)E, sizeof *rep->load);
        if (!rep->load) return MOE_ERR_NOMEM;
        if (rt->stats.load) memcpy(rep->load, rt->stats.load, (size_t)E * sizeof *rep->load);
    }
    return MOE_OK;
}

moe_status moe_layer_run(const moe_layer_opts *o, const char *weights_path, const char *input_path,
                         const char *output_path, moe_layer_report *rep) {
    run_ctx c;
    memset(&c, 0, sizeof c);
    moe_status st = run(&c, o, weights_path, input_path, output_path, rep);
    ctx_free(&c);
    return st;
}
