/* router.c — the router table (names, defaults, configuration checks), capacities and the
 * loss-free bias update. The routing rules themselves are in router_impl.h, compiled in
 * float (router_f32.c, the library's) and double (router_f64.c, for the tests). */
#include "moe/router_internal.h"
#include "moe/route.h"

#include <math.h>
#include <stdlib.h>

static const char *const router_names[MOE_ROUTER_COUNT] = {
    [MOE_ROUTER_TOPK] = "topk",
    [MOE_ROUTER_SWITCH] = "switch",
    [MOE_ROUTER_GSHARD] = "gshard",
    [MOE_ROUTER_EXPERT_CHOICE] = "expert-choice",
    [MOE_ROUTER_SOFT_MOE] = "soft-moe",
    [MOE_ROUTER_BASE] = "base",
    [MOE_ROUTER_DEEPSEEK_V3] = "deepseek-v3",
    [MOE_ROUTER_LOSS_FREE] = "loss-free",
    [MOE_ROUTER_ADAMOE] = "adamoe",
    [MOE_ROUTER_HASH] = "hash",
    [MOE_ROUTER_USMOE] = "usmoe",
};

const char *moe_router_name(moe_router_kind kind) {
    return (unsigned)kind < MOE_ROUTER_COUNT ? router_names[kind] : "?";
}

moe_status moe_router_from_name(const char *name, moe_router_kind *out) {
    for (int i = 0; i < MOE_ROUTER_COUNT; i++)
        if (name && strcmp(name, router_names[i]) == 0) {
            *out = (moe_router_kind)i;
            return MOE_OK;
        }
    return moe_error(MOE_ERR_INVALID,
                     "unknown router '%s' (expected one of: topk, switch, gshard, expert-choice, soft-moe, base, "
                     "deepseek-v3, loss-free, adamoe, hash, usmoe)",
                     name ? name : "(null)");
}

/* Defaults: ../shared/specs/moe-layer.md, "Routers and flags". */
void moe_router_cfg_default(moe_router_cfg *cfg, moe_router_kind kind, int n_expert) {
    memset(cfg, 0, sizeof(*cfg));
    cfg->kind = kind;
    cfg->n_expert = n_expert;
    cfg->k = 2;
    cfg->renorm = true;
    cfg->capacity_factor = 0.0;
    cfg->min_capacity = 4;
    cfg->priority = MOE_PRIORITY_TOKEN;
    cfg->n_group = 1;
    cfg->topk_group = 1;
    cfg->route_scale = 1.0f;
    cfg->assign = MOE_ASSIGN_BALANCED;
    cfg->slots_per_expert = 1;
    cfg->usmoe_alpha = 0.5f;   /* the authors' code: rate = 0.5 (see docs/ROUTERS.md) */
    cfg->usmoe_beta = 0.5f;
    switch (kind) {
    case MOE_ROUTER_SWITCH: cfg->k = 1; cfg->capacity_factor = 1.0; break;
    case MOE_ROUTER_GSHARD: cfg->capacity_factor = 1.0; break;
    case MOE_ROUTER_EXPERT_CHOICE: cfg->capacity_factor = 1.0; break;
    case MOE_ROUTER_BASE: case MOE_ROUTER_HASH: cfg->k = 1; break;
    case MOE_ROUTER_LOSS_FREE: cfg->renorm = false; break;
    case MOE_ROUTER_USMOE: cfg->renorm = false; break;
    default: break;
    }
}

int moe_router_n_logits(const moe_router_cfg *cfg) {
    switch (cfg->kind) {
    case MOE_ROUTER_ADAMOE: return cfg->n_expert + cfg->n_null;
    case MOE_ROUTER_SOFT_MOE: return cfg->n_expert * cfg->slots_per_expert;
    default: return cfg->n_expert;
    }
}

int moe_router_n_cols(const moe_router_cfg *cfg) {
    switch (cfg->kind) {
    case MOE_ROUTER_SWITCH: case MOE_ROUTER_BASE: case MOE_ROUTER_HASH: return 1;
    case MOE_ROUTER_GSHARD: return 2;
    case MOE_ROUTER_EXPERT_CHOICE: case MOE_ROUTER_USMOE: return cfg->n_expert;
    case MOE_ROUTER_SOFT_MOE: return 0;
    default: return cfg->k;
    }
}

int64_t moe_router_capacity(const moe_router_cfg *cfg, int64_t T) {
    const int E = cfg->n_expert;
    switch (cfg->kind) {
    case MOE_ROUTER_TOPK: case MOE_ROUTER_SWITCH: case MOE_ROUTER_GSHARD: {
        /* ⌊cf·k·⌈T/E⌉⌋ (spec; fairseq top1gate int(cf·ceil(S/E)), top2gate 2·ceil(S/E)). */
        if (!(cfg->capacity_factor > 0)) return -1;
        double c = floor(cfg->capacity_factor * moe_router_n_cols(cfg) * (double)((T + E - 1) / E));
        return c > (double)INT64_MAX / 2 ? INT64_MAX / 2 : (int64_t)c;
    }
    case MOE_ROUTER_EXPERT_CHOICE: {
        /* flaxformer moe_layers.py: int(round(cf·tokens_per_group / E)), max with
         * min_expert_capacity; Python's round is half-to-even, as rint in the default
         * rounding mode. Capped at T (top-k over T tokens). */
        double c = rint(cfg->capacity_factor * (double)T / E);
        int64_t C = c < 0 ? 0 : (c > (double)T ? T : (int64_t)c);
        C = MOE_MAX(C, (int64_t)cfg->min_capacity);
        return MOE_MIN(C, T);
    }
    case MOE_ROUTER_BASE:
        return cfg->assign == MOE_ASSIGN_GREEDY ? -1 : (T + E - 1) / E;
    default:
        return -1;
    }
}

moe_status moe_router_cfg_check(const moe_router_cfg *cfg) {
    const char *name = moe_router_name(cfg->kind);
    if ((unsigned)cfg->kind >= MOE_ROUTER_COUNT) return moe_error(MOE_ERR_INVALID, "router: unknown kind %d", (int)cfg->kind);
    const int E = cfg->n_expert;
    if (E < 1 || E > MOE_ROUTE_MAX_EXPERT)
        return moe_error(MOE_ERR_INVALID, "router %s: n_expert %d out of range [1, %d]", name, E, MOE_ROUTE_MAX_EXPERT);
    if (cfg->n_null < 0 || (cfg->kind != MOE_ROUTER_ADAMOE && cfg->n_null != 0) ||
        E + cfg->n_null > MOE_ROUTE_MAX_EXPERT)
        return moe_error(MOE_ERR_INVALID, "router %s: n_null %d invalid (null experts are adamoe's, E + m ≤ %d)", name,
                         cfg->n_null, MOE_ROUTE_MAX_EXPERT);
    switch (cfg->kind) {
    case MOE_ROUTER_TOPK: case MOE_ROUTER_DEEPSEEK_V3: case MOE_ROUTER_LOSS_FREE: case MOE_ROUTER_USMOE:
        if (cfg->k < 1 || cfg->k > E) return moe_error(MOE_ERR_INVALID, "router %s: k = %d must be in [1, %d]", name, cfg->k, E);
        break;
    case MOE_ROUTER_GSHARD:
        if (E < 2) return moe_error(MOE_ERR_INVALID, "router gshard: needs at least 2 experts (has %d)", E);
        break;
    case MOE_ROUTER_ADAMOE:
        if (cfg->k < 1 || cfg->k > E + cfg->n_null)
            return moe_error(MOE_ERR_INVALID, "router adamoe: k = %d must be in [1, E + m = %d]", cfg->k, E + cfg->n_null);
        break;
    case MOE_ROUTER_SOFT_MOE:
        if (cfg->slots_per_expert < 1 || (int64_t)E * cfg->slots_per_expert > INT32_MAX / 2)
            return moe_error(MOE_ERR_INVALID, "router soft-moe: slots_per_expert %d invalid", cfg->slots_per_expert);
        break;
    case MOE_ROUTER_EXPERT_CHOICE:
        if (cfg->min_capacity < 0) return moe_error(MOE_ERR_INVALID, "router expert-choice: min_capacity %d < 0", cfg->min_capacity);
        if (isnan(cfg->capacity_factor) || cfg->capacity_factor < 0)
            return moe_error(MOE_ERR_INVALID, "router expert-choice: capacity factor %g < 0", cfg->capacity_factor);
        break;
    case MOE_ROUTER_HASH:
        if (cfg->hash_map && cfg->hash_map_len < 1) return moe_error(MOE_ERR_INVALID, "router hash: empty hash map");
        for (int64_t i = 0; cfg->hash_map && i < cfg->hash_map_len; i++)
            if (cfg->hash_map[i] < 0 || cfg->hash_map[i] >= E)
                return moe_error(MOE_ERR_INVALID, "router hash: hash map line %lld holds expert %d, not in [0, %d)",
                                 (long long)i + 1, cfg->hash_map[i], E);
        break;
    default: break;
    }
    if (isnan(cfg->capacity_factor)) return moe_error(MOE_ERR_INVALID, "router %s: capacity factor is NaN", name);
    if (cfg->kind == MOE_ROUTER_DEEPSEEK_V3 || cfg->kind == MOE_ROUTER_LOSS_FREE) {
        int g = cfg->n_group, tg = cfg->topk_group;
        if (g < 1 || g > MOE_ROUTE_MAX_GROUP || E % g != 0)
            return moe_error(MOE_ERR_INVALID, "router %s: n_group %d must divide n_expert %d (and be ≤ %d)", name, g, E,
                             MOE_ROUTE_MAX_GROUP);
        if (tg < 1 || tg > g)
            return moe_error(MOE_ERR_INVALID, "router %s: topk_group %d must be in [1, n_group = %d]", name, tg, g);
        if (g > 1 && tg < g && cfg->k > tg * (E / g))
            return moe_error(MOE_ERR_INVALID, "router %s: k = %d exceeds the %d experts of the %d kept groups", name,
                             cfg->k, tg * (E / g), tg);
    }
    return MOE_OK;
}

bool moe_router_grow(void **p, size_t *cap, size_t n, size_t size) {
    if (n <= *cap && *p) return true;
    size_t want = n ? n : 1, bytes;
    if (__builtin_mul_overflow(want, size, &bytes)) return false;
    void *q = realloc(*p, bytes);
    if (!q) return false;
    *p = q;
    *cap = want;
    return true;
}

/* Auxiliary-loss-free load balancing, Wang et al. 2024 ("Auxiliary-Loss-Free Load
 * Balancing Strategy for Mixture-of-Experts"), Algorithm 1: b_i ← b_i + u·sign(e_i) with
 * e_i = mean load − load_i (an under-loaded expert's bias rises). */
void moe_router_bias_update(float *bias, const int64_t *load, int n_expert, float u) {
    double mean = 0;
    for (int e = 0; e < n_expert; e++) mean += (double)load[e];
    mean /= n_expert;
    for (int e = 0; e < n_expert; e++) {
        double err = mean - (double)load[e];
        bias[e] += err > 0 ? u : (err < 0 ? -u : 0.0f);
    }
}

moe_status moe_router_hash_map_random(int32_t *map, int64_t vocab, int n_expert, uint64_t seed) {
    if (n_expert < 1 || vocab < 0)
        return moe_error(MOE_ERR_INVALID, "hash map: bad sizes (vocab %lld, %d experts)", (long long)vocab, n_expert);
    uint64_t s = seed;
    for (int64_t i = 0; i < vocab; i++) map[i] = (int32_t)(moe_router_rng(&s) % (uint64_t)n_expert);
    return MOE_OK;
}

typedef struct freq_id { int64_t f, id; } freq_id;
static int freq_cmp(const void *a, const void *b) {
    const freq_id *x = a, *y = b;
    if (x->f != y->f) return x->f > y->f ? -1 : 1;
    return (x->id > y->id) - (x->id < y->id);
}

moe_status moe_router_hash_map_balanced(int32_t *map, const int64_t *freq, int64_t vocab, int n_expert) {
    if (n_expert < 1 || vocab < 0)
        return moe_error(MOE_ERR_INVALID, "hash map: bad sizes (vocab %lld, %d experts)", (long long)vocab, n_expert);
    freq_id *v = malloc(sizeof(freq_id) * (size_t)(vocab ? vocab : 1));
    int64_t *load = calloc((size_t)n_expert, sizeof(int64_t));
    if (!v || !load) {
        free(v);
        free(load);
        return moe_error(MOE_ERR_NOMEM, "hash map: out of memory (vocab %lld)", (long long)vocab);
    }
    for (int64_t i = 0; i < vocab; i++) v[i] = (freq_id){ freq[i] < 0 ? 0 : freq[i], i };
    qsort(v, (size_t)vocab, sizeof(freq_id), freq_cmp);
    /* n_expert is small next to vocab: a linear scan for the lightest expert is fine */
    for (int64_t i = 0; i < vocab; i++) {
        int best = 0;
        for (int e = 1; e < n_expert; e++)
            if (load[e] < load[best]) best = e;
        map[v[i].id] = best;
        load[best] += v[i].f;
    }
    free(v);
    free(load);
    return MOE_OK;
}
