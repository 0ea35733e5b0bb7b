/* profile.c — EdgeMoE's statistical expert predictor: transition counts between the
 * experts of consecutive MoE layers on the same token, saved as a GGUF file with one
 * tensor "profile.counts" [L, E, E] (counts[l][i][j]: expert i at the MoE layer before l,
 * then expert j at layer l). Prediction sums, for each candidate j, the conditional
 * frequencies P(j | i) over the experts i chosen one layer earlier (Yi et al., EdgeMoE,
 * 2023: the experts activated in earlier layers predict the next layer's). */
#include "core/common.h"

#include <stdlib.h>

struct moe_profile {
    int n_layers, n_experts;
    float *counts;   /* [n_layers][n_experts][n_experts] */
};

moe_profile *moe_profile_init(int n_layers, int n_experts) {
    if (n_layers <= 0 || n_experts <= 0 || n_layers > 4096 || n_experts > 4096)
        return moe_error_null(MOE_ERR_INVALID, "profile: %d layers x %d experts is out of range", n_layers, n_experts);
    moe_profile *p = moe_calloc(1, sizeof *p);
    if (!p) return NULL;
    p->n_layers = n_layers;
    p->n_experts = n_experts;
    p->counts = moe_calloc((size_t)n_layers * (size_t)n_experts * (size_t)n_experts, sizeof *p->counts);
    if (!p->counts) { free(p); return NULL; }
    return p;
}

void moe_profile_free(moe_profile *p) {
    if (!p) return;
    free(p->counts);
    free(p);
}

int moe_profile_n_layers(const moe_profile *p) { return p->n_layers; }
int moe_profile_n_experts(const moe_profile *p) { return p->n_experts; }

static float *row(const moe_profile *p, int layer, int prev) {
    return p->counts + ((size_t)layer * (size_t)p->n_experts + (size_t)prev) * (size_t)p->n_experts;
}

void moe_profile_add(moe_profile *p, int layer, const int32_t *prev, int k_prev, const int32_t *experts, int k) {
    if (layer < 0 || layer >= p->n_layers) return;
    for (int a = 0; a < k_prev; a++) {
        if (prev[a] < 0 || prev[a] >= p->n_experts) continue;
        float *r = row(p, layer, prev[a]);
        for (int b = 0; b < k; b++)
            if (experts[b] >= 0 && experts[b] < p->n_experts) r[experts[b]] += 1.0f;
    }
}

int moe_profile_predict(const moe_profile *p, int layer, const int32_t *prev, int k_prev, int32_t *out, int n) {
    if (layer < 0 || layer >= p->n_layers || n <= 0) return 0;
    const int E = p->n_experts;
    double score[4096];
    bool any = false;
    for (int j = 0; j < E; j++) score[j] = 0;
    for (int a = 0; a < k_prev; a++) {
        if (prev[a] < 0 || prev[a] >= E) continue;
        const float *r = row(p, layer, prev[a]);
        double tot = 0;
        for (int j = 0; j < E; j++) tot += r[j];
        if (tot <= 0) continue;
        for (int j = 0; j < E; j++) score[j] += r[j] / tot;
        any = true;
    }
    if (!any) return 0;
    int m = MOE_MIN(n, E);
    for (int t = 0; t < m; t++) { /* selection of the m best, ties to the lower id */
        int best = -1;
        for (int j = 0; j < E; j++) {
            bool taken = false;
            for (int u = 0; u < t; u++) taken |= out[u] == j;
            if (!taken && (best < 0 || score[j] > score[best])) best = j;
        }
        out[t] = best;
    }
    return m;
}

moe_status moe_profile_save(const moe_profile *p, const char *path) {
    moe_gguf_writer *w = moe_gguf_writer_init();
    if (!w) return moe_last_status();
    int64_t ne[3] = {p->n_experts, p->n_experts, p->n_layers};
    uint64_t nbytes = (uint64_t)p->n_layers * (uint64_t)p->n_experts * (uint64_t)p->n_experts * 4u;
    moe_status st = moe_gguf_writer_set_str(w, "general.architecture", "moe-profile");
    if (!st) st = moe_gguf_writer_set_u32(w, "moe.profile.version", 1);
    if (!st) st = moe_gguf_writer_add_tensor(w, "profile.counts", 0 /* F32 */, 3, ne, p->counts, nbytes);
    if (!st) st = moe_gguf_writer_write(w, path);
    moe_gguf_writer_free(w);
    return st;
}

moe_profile *moe_profile_load(const char *path) {
    moe_gguf *g = moe_gguf_open(path);
    if (!g) return NULL;
    moe_profile *p = NULL;
    const moe_gguf_tensor *t = moe_gguf_find_tensor(g, "profile.counts");
    if (!t || t->type != 0 || t->n_dims != 3 || t->ne[0] != t->ne[1]) {
        moe_error(MOE_ERR_FORMAT, "%s: not an expert profile: tensor 'profile.counts' (f32, [E, E, L]) is missing or misshapen", path);
    } else if ((p = moe_profile_init((int)t->ne[2], (int)t->ne[0])) != NULL) {
        memcpy(p->counts, t->data, (size_t)t->nbytes);
        for (size_t i = 0; i < (size_t)t->nbytes / 4; i++)
            if (!(p->counts[i] >= 0) || p->counts[i] > 1e30f) { /* NaN, negative or absurd */
                moe_error(MOE_ERR_FORMAT, "%s: tensor 'profile.counts' holds an invalid count at element %zu", path, i);
                moe_profile_free(p);
                p = NULL;
                break;
            }
    }
    moe_gguf_close(g);
    return p;
}
