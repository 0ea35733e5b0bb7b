/* router_gguf.c — reads a router's configuration from a GGUF file's moe.router.* keys
 * (docs/FORMAT.md, "Training routers"): what `moe train` writes and both the training
 * loader and the inference loader read. */
#include "moe/router.h"

#include <stdlib.h>

/* An optional small integer key: *dst is left alone when the key is absent. */
static moe_status opt_int(const moe_gguf *g, const char *key, int *dst) {
    int64_t v;
    moe_status st = moe_gguf_get_i64(g, key, &v);
    if (st == MOE_ERR_NOT_FOUND) return MOE_OK;
    if (st) return st;
    if (v < 0 || v > 1 << 20) return moe_error(MOE_ERR_FORMAT, "%s: '%s' = %lld is out of range", moe_gguf_path(g), key, (long long)v);
    *dst = (int)v;
    return MOE_OK;
}

moe_status moe_router_cfg_from_gguf(const moe_gguf *g, int n_expert, int k_default, bool renorm_default, int64_t R,
                                    moe_router_cfg *r, int32_t **hash_map) {
    const char *path = moe_gguf_path(g);
    const int E = n_expert;
    *hash_map = NULL;
    const char *name = NULL;
    moe_status st = moe_gguf_get_str(g, "moe.router.kind", &name);
    if (st && st != MOE_ERR_NOT_FOUND) return st;
    moe_router_kind kind = MOE_ROUTER_TOPK;
    if (name && moe_router_from_name(name, &kind))
        return moe_error(MOE_ERR_FORMAT, "%s: moe.router.kind '%s' is not a router moe.c knows", path, name);
    moe_router_cfg_default(r, kind, E);
    if (!name) { /* the architecture's own rule */
        r->k = k_default;
        r->renorm = renorm_default;
    }
    bool b;
    float f;
    if ((st = opt_int(g, "moe.router.k", &r->k))) return st;
    if ((st = moe_gguf_get_bool(g, "moe.router.renorm", &b)) == MOE_OK) r->renorm = b;
    else if (st != MOE_ERR_NOT_FOUND) return st;
    if ((st = moe_gguf_get_f32(g, "moe.router.capacity_factor", &f)) == MOE_OK) r->capacity_factor = f;
    else if (st != MOE_ERR_NOT_FOUND) return st;
    if ((st = opt_int(g, "moe.router.min_capacity", &r->min_capacity))) return st;
    if ((st = opt_int(g, "moe.router.n_group", &r->n_group))) return st;
    if ((st = opt_int(g, "moe.router.topk_group", &r->topk_group))) return st;
    if ((st = moe_gguf_get_f32(g, "moe.router.route_scale", &f)) == MOE_OK) r->route_scale = f;
    else if (st != MOE_ERR_NOT_FOUND) return st;
    if ((st = moe_gguf_get_f32(g, "moe.router.usmoe_alpha", &f)) == MOE_OK) r->usmoe_alpha = f;
    else if (st != MOE_ERR_NOT_FOUND) return st;
    if ((st = moe_gguf_get_f32(g, "moe.router.usmoe_beta", &f)) == MOE_OK) r->usmoe_beta = f;
    else if (st != MOE_ERR_NOT_FOUND) return st;
    const char *s;
    if ((st = moe_gguf_get_str(g, "moe.router.assign", &s)) == MOE_OK)
        r->assign = !strcmp(s, "greedy") ? MOE_ASSIGN_GREEDY : !strcmp(s, "auction") ? MOE_ASSIGN_AUCTION : MOE_ASSIGN_BALANCED;
    else if (st != MOE_ERR_NOT_FOUND) return st;
    if ((st = moe_gguf_get_str(g, "moe.router.priority", &s)) == MOE_OK)
        r->priority = !strcmp(s, "bpr") ? MOE_PRIORITY_BPR : MOE_PRIORITY_TOKEN;
    else if (st != MOE_ERR_NOT_FOUND) return st;
    if (kind == MOE_ROUTER_ADAMOE) r->n_null = (int)(R - E);
    if (kind == MOE_ROUTER_SOFT_MOE) r->slots_per_expert = E ? (int)(R / E) : 1;
    const void *map;
    uint64_t n;
    if ((st = moe_gguf_get_arr(g, "moe.router.hash_map", MOE_GGUF_I32, &map, &n)) == MOE_OK) {
        if (n == 0 || n > (uint64_t)INT32_MAX)
            return moe_error(MOE_ERR_FORMAT, "%s: moe.router.hash_map has %llu entries", path, (unsigned long long)n);
        int32_t *hm = moe_malloc(n * sizeof(int32_t));
        if (!hm) return MOE_ERR_NOMEM;
        memcpy(hm, map, n * sizeof(int32_t));
        *hash_map = hm;
        for (uint64_t i = 0; i < n; i++)
            if (hm[i] < 0 || hm[i] >= E)
                return moe_error(MOE_ERR_FORMAT, "%s: moe.router.hash_map[%llu] = %d is not an expert id", path,
                                 (unsigned long long)i, hm[i]);
        r->hash_map = hm;
        r->hash_map_len = (int64_t)n;
    } else if (st != MOE_ERR_NOT_FOUND) {
        return st;
    }
    moe_clear_error();
    if (moe_router_n_logits(r) != R)
        return moe_error(MOE_ERR_FORMAT, "%s: router %s needs %lld rows in ffn_gate_inp.weight, the file has %lld", path,
                         moe_router_name(kind), (long long)moe_router_n_logits(r), (long long)R);
    if ((st = moe_router_cfg_check(r)))
        return moe_error(st, "%s: moe.router.*: %s", path, moe_last_error());
    return MOE_OK;
}

