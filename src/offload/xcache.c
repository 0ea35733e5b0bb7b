/* xcache.c — slot bookkeeping and eviction policies of the expert cache (xcache.h). */
#include "offload/xcache.h"

#include <math.h>
#include <stdlib.h>
#include <strings.h>

/* Decay of the EdgeMoE-style frequency estimates per step of a layer: an expert's usage
 * counts with weight 0.98^age, i.e. roughly the last 50 tokens matter. */
#define FREQ_DECAY 0.98

struct moe_xcache {
    moe_cache_policy policy;
    int64_t n_slots;
    bool per_layer;
    int n_layers, n_experts;
    int64_t *slot_key;        /* [n_slots] key = layer * n_experts + expert, -1 empty */
    bool *pinned;             /* [n_slots] */
    int *protect;             /* [n_slots] protected until this layer begins, -1 none */
    int64_t *layer_first;     /* [n_layers + 1] per-layer slot ranges (per_layer only) */
    int64_t *key_slot;        /* [n_layers * n_experts], -1 absent */
    uint64_t *last_use;       /* per key: clock of last use (LRU) */
    uint64_t *inserted;       /* per key: clock of insertion (FIFO) */
    uint64_t *count;          /* per key: uses ever, kept across evictions ("perfect" LFU) */
    double *freq;             /* per key: decayed uses (EdgeMoE) */
    double *layer_steps;      /* per layer: decayed number of steps */
    uint64_t clock;
    int cur_layer;
    int64_t evictions;
};

static const char *g_policy_names[MOE_CACHE_POLICY_COUNT] = {"lru", "lfu", "fifo", "edgemoe", "belady", "oracle-lfu"};

const char *moe_cache_policy_name(moe_cache_policy p) {
    return (unsigned)p < MOE_CACHE_POLICY_COUNT ? g_policy_names[p] : "?";
}

int moe_cache_policy_from_name(const char *name) {
    for (int i = 0; i < MOE_CACHE_POLICY_COUNT; i++)
        if (strcasecmp(name, g_policy_names[i]) == 0) return i;
    return -1;
}

moe_xcache *moe_xcache_init(moe_cache_policy policy, int64_t n_slots, bool per_layer, int n_layers, int n_experts,
                            const bool *has_experts) {
    if ((unsigned)policy >= MOE_CACHE_POLICY_COUNT)
        return moe_error_null(MOE_ERR_INVALID, "expert cache: unknown policy %d", (int)policy);
    if (n_slots <= 0 || n_layers <= 0 || n_experts <= 0)
        return moe_error_null(MOE_ERR_INVALID, "expert cache: %lld slots for %d layers of %d experts",
                              (long long)n_slots, n_layers, n_experts);
    int n_moe = 0; /* layers that get a share when per_layer */
    for (int l = 0; l < n_layers; l++) n_moe += !has_experts || has_experts[l];
    if (per_layer && n_slots < n_moe)
        return moe_error_null(MOE_ERR_INVALID, "expert cache: %lld slots cannot be split between %d layers",
                              (long long)n_slots, n_moe);
    int64_t n_keys = (int64_t)n_layers * n_experts;
    moe_xcache *c = moe_calloc(1, sizeof *c);
    if (!c) return NULL;
    c->policy = policy;
    c->n_slots = n_slots;
    c->per_layer = per_layer;
    c->n_layers = n_layers;
    c->n_experts = n_experts;
    c->slot_key = moe_malloc((size_t)n_slots * sizeof *c->slot_key);
    c->pinned = moe_calloc((size_t)n_slots, sizeof *c->pinned);
    c->protect = moe_malloc((size_t)n_slots * sizeof *c->protect);
    c->layer_first = moe_calloc((size_t)n_layers + 1, sizeof *c->layer_first);
    c->key_slot = moe_malloc((size_t)n_keys * sizeof *c->key_slot);
    c->last_use = moe_calloc((size_t)n_keys, sizeof *c->last_use);
    c->inserted = moe_calloc((size_t)n_keys, sizeof *c->inserted);
    c->count = moe_calloc((size_t)n_keys, sizeof *c->count);
    c->freq = moe_calloc((size_t)n_keys, sizeof *c->freq);
    c->layer_steps = moe_calloc((size_t)n_layers, sizeof *c->layer_steps);
    if (!c->slot_key || !c->pinned || !c->protect || !c->layer_first || !c->key_slot || !c->last_use || !c->inserted ||
        !c->count || !c->freq || !c->layer_steps) {
        moe_xcache_free(c);
        return NULL;
    }
    for (int64_t s = 0; s < n_slots; s++) c->slot_key[s] = c->protect[s] = -1;
    for (int64_t k = 0; k < n_keys; k++) c->key_slot[k] = -1;
    /* per-layer ranges over the layers with experts (the k-th gets n/M slots, the first
     * n % M one more); a layer without experts gets an empty range */
    for (int l = 0, k = 0; l <= n_layers; l++) {
        c->layer_first[l] = per_layer && n_moe ? k * (n_slots / n_moe) + MOE_MIN(k, n_slots % n_moe) : 0;
        if (l < n_layers && (!has_experts || has_experts[l])) k++;
    }
    return c;
}

void moe_xcache_free(moe_xcache *c) {
    if (!c) return;
    free(c->slot_key);
    free(c->pinned);
    free(c->protect);
    free(c->layer_first);
    free(c->key_slot);
    free(c->last_use);
    free(c->inserted);
    free(c->count);
    free(c->freq);
    free(c->layer_steps);
    free(c);
}

void moe_xcache_begin_layer(moe_xcache *c, int layer) {
    c->cur_layer = layer;
    for (int64_t s = 0; s < c->n_slots; s++)
        if (c->protect[s] == layer) c->protect[s] = -1;
    c->layer_steps[layer] = c->layer_steps[layer] * FREQ_DECAY + 1.0;
    double *f = c->freq + (int64_t)layer * c->n_experts;
    for (int e = 0; e < c->n_experts; e++) f[e] *= FREQ_DECAY;
}

static void record_use(moe_xcache *c, int64_t key) {
    c->last_use[key] = ++c->clock;
    c->count[key]++;
    c->freq[key] += 1.0;
}

int64_t moe_xcache_find(const moe_xcache *c, int layer, int expert) {
    return c->key_slot[(int64_t)layer * c->n_experts + expert];
}

void moe_xcache_use(moe_xcache *c, int layer, int expert) { record_use(c, (int64_t)layer * c->n_experts + expert); }

int64_t moe_xcache_lookup(moe_xcache *c, int layer, int expert) {
    int64_t slot = moe_xcache_find(c, layer, expert);
    if (slot >= 0) moe_xcache_use(c, layer, expert);
    return slot;
}

/* EdgeMoE-style eviction score: the expected number of layer steps until the expert is
 * used again. Layers run in a cycle, so layer l next runs d = 1..L steps from now; an
 * expert used with probability p per token is then expected after d + L(1-p)/p steps.
 * p is the recency-weighted usage frequency of the expert in its layer. Evicting the
 * largest expected distance favours experts used often and recently, and the experts of
 * the layers about to run (docs/OFFLOAD.md). */
static double edgemoe_distance(const moe_xcache *c, int64_t key) {
    int l = (int)(key / c->n_experts);
    int L = c->n_layers;
    int d = ((l - c->cur_layer - 1 + L) % L) + 1;
    double p = (c->freq[key] + 0.5) / (c->layer_steps[l] + 1.0);
    if (p > 1.0) p = 1.0;
    return d + L * (1.0 - p) / p;
}

/* True if key a is a better victim than key b under the policy; ties go to the least
 * recently used. */
static bool better_victim(const moe_xcache *c, int64_t a, int64_t b, const int64_t *next_use) {
    switch (c->policy) {
    case MOE_CACHE_FIFO:
        if (c->inserted[a] != c->inserted[b]) return c->inserted[a] < c->inserted[b];
        break;
    case MOE_CACHE_LFU:
        if (c->count[a] != c->count[b]) return c->count[a] < c->count[b];
        break;
    case MOE_CACHE_EDGEMOE: {
        double da = edgemoe_distance(c, a), db = edgemoe_distance(c, b);
        if (da != db) return da > db;
        break;
    }
    case MOE_CACHE_BELADY: {
        int64_t na = next_use ? next_use[a] : 0, nb = next_use ? next_use[b] : 0;
        if (na != nb) return na > nb;
        break;
    }
    case MOE_CACHE_ORACLE_LFU: { /* next_use holds each key's uses over the whole trace */
        int64_t na = next_use ? next_use[a] : 0, nb = next_use ? next_use[b] : 0;
        if (na != nb) return na < nb;
        break;
    }
    default:
        break;
    }
    return c->last_use[a] < c->last_use[b];
}

int64_t moe_xcache_insert(moe_xcache *c, int layer, int expert, const int64_t *next_use) {
    int64_t key = (int64_t)layer * c->n_experts + expert;
    int64_t s0 = c->per_layer ? c->layer_first[layer] : 0;
    int64_t s1 = c->per_layer ? c->layer_first[layer + 1] : c->n_slots;
    int64_t victim = -1;
    for (int64_t s = s0; s < s1; s++) {
        int64_t k = c->slot_key[s];
        if (k < 0) { victim = s; break; } /* a free slot wins */
        if (c->pinned[s]) continue;
        const bool pv = victim >= 0 && c->protect[victim] >= 0, ps = c->protect[s] >= 0;
        if (victim < 0 || (pv && !ps) || (pv == ps && better_victim(c, k, c->slot_key[victim], next_use)))
            victim = s;
    }
    if (victim < 0)
        return moe_error(MOE_ERR_NOMEM, "expert cache: all %lld slots%s are in use by the experts being computed",
                         (long long)(s1 - s0), c->per_layer ? " of this layer" : ""), -1;
    int64_t old = c->slot_key[victim];
    if (old >= 0) {
        c->key_slot[old] = -1;
        c->evictions++;
    }
    c->slot_key[victim] = key;
    c->key_slot[key] = victim;
    c->protect[victim] = -1;
    c->last_use[key] = ++c->clock;
    c->inserted[key] = c->clock;
    return victim;
}

void moe_xcache_pin(moe_xcache *c, int64_t slot, bool pinned) { c->pinned[slot] = pinned; }
void moe_xcache_protect(moe_xcache *c, int64_t slot, int layer) { c->protect[slot] = layer; }
int64_t moe_xcache_slot_key(const moe_xcache *c, int64_t slot) { return c->slot_key[slot]; }
int64_t moe_xcache_n_slots(const moe_xcache *c) { return c->n_slots; }
int64_t moe_xcache_evictions(const moe_xcache *c) { return c->evictions; }

void moe_xcache_remove(moe_xcache *c, int64_t slot) {
    int64_t k = c->slot_key[slot];
    if (k >= 0) c->key_slot[k] = -1;
    c->slot_key[slot] = -1;
    c->pinned[slot] = false;
    c->protect[slot] = -1;
}
