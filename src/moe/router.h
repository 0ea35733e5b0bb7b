/* router.h — the training routers of the literature behind one interface: router logits
 * [T × L] → per-token expert ids and combine weights (or Soft-MoE dispatch/combine), the
 * balance and z losses, routing statistics, and the backward pass to the logits. The rules
 * follow ../shared/specs/moe-layer.md; docs/ROUTERS.md describes each one. */
#ifndef MOE_MOE_ROUTER_H
#define MOE_MOE_ROUTER_H

#include "core/common.h"

typedef enum moe_router_kind {
    MOE_ROUTER_TOPK = 0,      /* softmax → top-k (Mixtral, Qwen-MoE); optional capacity */
    MOE_ROUTER_SWITCH,        /* top-1, Switch Transformer / fairseq top1gate */
    MOE_ROUTER_GSHARD,        /* top-2, GShard / fairseq top2gate */
    MOE_ROUTER_EXPERT_CHOICE, /* experts pick tokens (Zhou et al. 2022; flaxformer) */
    MOE_ROUTER_SOFT_MOE,      /* slots as softmax mixtures of tokens (Puigcerver et al.; vmoe) */
    MOE_ROUTER_BASE,          /* balanced assignment (Lewis et al. 2021; fairseq BaseLayer) */
    MOE_ROUTER_DEEPSEEK_V3,   /* sigmoid scores, bias-corrected group-limited top-k */
    MOE_ROUTER_LOSS_FREE,     /* auxiliary-loss-free balancing (Wang et al. 2024) */
    MOE_ROUTER_ADAMOE,        /* null experts (Zeng et al. 2024) */
    MOE_ROUTER_HASH,          /* fixed token-id → expert map (Roller et al. 2021; ParlAI) */
    MOE_ROUTER_USMOE,         /* unified token/expert-choice scores (Do et al. 2025) */
    MOE_ROUTER_COUNT
} moe_router_kind;

/* Order in which token-choice capacity slots are filled. */
typedef enum moe_priority {
    MOE_PRIORITY_TOKEN = 0,   /* token order (spec default; fairseq) */
    MOE_PRIORITY_BPR,         /* batch-prioritised routing: highest top-1 probability first
                                 (Riquelme et al. 2021, V-MoE; fairseq batch_prioritized_routing) */
} moe_priority;

/* BASE-layer assignment. */
typedef enum moe_assign_mode {
    MOE_ASSIGN_BALANCED = 0,  /* exactly optimal balanced assignment (min-cost flow) */
    MOE_ASSIGN_GREEDY,        /* argmax, no balancing (BASE at inference) */
    MOE_ASSIGN_AUCTION,       /* fairseq's ε-auction (libbase balanced_assignment) */
} moe_assign_mode;

typedef struct moe_router_cfg {
    moe_router_kind kind;
    int n_expert;             /* E (real experts) */
    int n_null;               /* adamoe: m null experts (logit columns E..E+m-1); else 0 */
    int k;                    /* experts per token (topk, gshard=2, deepseek-v3, loss-free,
                                 adamoe; usmoe: budget T·k pairs); switch/base/hash use 1 */
    bool renorm;              /* divide the chosen weights by their sum */
    double capacity_factor;   /* topk/switch/gshard: C = ⌊cf·k·⌈T/E⌉⌋, ≤ 0 = no dropping;
                                 expert-choice: C = max(round(cf·T/E), min_capacity) ≤ T.
                                 double, as the references compute it in Python floats
                                 (0.7f·10 floors to 6, 0.7·10 to 7) */
    int min_capacity;         /* expert-choice */
    moe_priority priority;    /* token-choice capacity fill order */
    int n_group, topk_group;  /* deepseek-v3 / loss-free group-limited selection */
    float route_scale;        /* deepseek-v3 / loss-free: multiplies the final weights */
    moe_assign_mode assign;   /* base */
    bool gshard_sample;       /* gshard: second expert sampled (Gumbel-max on the logits
                                 without the first, as fairseq's 'sampling' policy) */
    uint64_t seed;            /* for gshard_sample */
    const int32_t *hash_map;  /* hash: expert of each token id, or NULL = token_id mod E */
    int64_t hash_map_len;     /* entries in hash_map */
    int slots_per_expert;     /* soft-moe: p (L = E·p) */
    float usmoe_alpha, usmoe_beta; /* usmoe: f = α·f_expert + β·f_token */
    const float *sel_bias;    /* deepseek-v3 / loss-free: [E] added to the scores for
                                 selection only (never part of a weight), or NULL */
} moe_router_cfg;

/* Fills *cfg with the spec's defaults for `kind` with E experts (n_null, hash map,
 * sel_bias stay empty). */
void moe_router_cfg_default(moe_router_cfg *cfg, moe_router_kind kind, int n_expert);
/* "topk", "switch", "gshard", "expert-choice", "soft-moe", "base", "deepseek-v3",
 * "loss-free", "adamoe", "hash", "usmoe" ↔ kind. from_name returns MOE_ERR_INVALID
 * (message lists the names) for an unknown name. */
moe_status moe_router_from_name(const char *name, moe_router_kind *out);
const char *moe_router_name(moe_router_kind kind);
/* Checks a configuration (E ≥ 1, 1 ≤ k ≤ E(+m), groups divide E, ...). */
moe_status moe_router_cfg_check(const moe_router_cfg *cfg);
/* Columns of the logits the router reads: E, E+m (adamoe), E·p (soft-moe). */
int moe_router_n_logits(const moe_router_cfg *cfg);
/* Columns of expert/weight: k (topk, gshard, deepseek-v3, loss-free, adamoe), 1 (switch,
 * base, hash), E (expert-choice, usmoe: column e holds e or −1), 0 (soft-moe). */
int moe_router_n_cols(const moe_router_cfg *cfg);
/* Per-expert capacity for T tokens, or -1 when nothing is dropped. */
int64_t moe_router_capacity(const moe_router_cfg *cfg, int64_t T);

typedef struct moe_routing_stats {
    int64_t *load;            /* [E] tokens per expert after dropping */
    int64_t *load_before;     /* [E] before dropping (= load where nothing is dropped) */
    int64_t n_dropped;        /* (token, choice) pairs removed by capacity */
    int64_t n_dropped_tokens; /* tokens left with no expert at all (by capacity, by
                                 expert-choice, or adamoe tokens that picked only nulls) */
    int64_t n_null;           /* adamoe: selections of null experts */
    double maxvio;            /* (max load − mean load) / mean load, on `load` */
    double entropy;           /* mean over tokens of the entropy (nats) of the routing
                                 distribution (softmax, normalised sigmoid, soft-moe combine) */
} moe_routing_stats;

/* The result of one call, for T tokens. Owned by the caller: zero-initialise, pass to
 * moe_router_forward as often as wanted (buffers are reused and grown), free with
 * moe_routing_free. */
typedef struct moe_routing {
    int64_t T;
    int n_expert, n_logits, n_cols, n_slots;
    int32_t *expert;          /* [T × n_cols]: expert id, −1 = empty (dropped, null, not taken) */
    float *weight;            /* [T × n_cols]: combine weight, 0 where expert is −1 */
    float *dispatch, *combine;/* soft-moe: [T × n_slots] (dispatch: softmax over tokens for
                                 each slot; combine: softmax over slots for each token) */
    float aux_loss, z_loss;   /* without coefficients, as the spec defines per router */
    moe_routing_stats stats;
    /* private state for the backward pass (router_internal.h mirrors this struct in
     * double precision for the finite-difference tests: keep the two in step) */
    float *prob;              /* [T × n_logits] scores the weights come from (softmax,
                                 sigmoid, usmoe unified score) */
    int32_t *choice;          /* [T × n_cols] selections before capacity dropping (adamoe:
                                 null experts keep their id ≥ E) */
    float *aux_f;             /* [n_logits] the constant factor f_i of the balance loss */
    size_t cap_tl, cap_tc, cap_ts, cap_l, cap_e; /* allocated element counts */
} moe_routing;

/* Routes T tokens. logits [T × n_logits] (row-major) already include any logit bias
 * (router.bias for topk/switch/gshard/expert-choice/adamoe); deepseek-v3/loss-free use
 * cfg->sel_bias for selection only. token_ids [T] only for hash (logits may then be NULL).
 * Soft-moe: logits are scale·⟨x̂_t, φ̂_s⟩ [T × E·p]. Base: logits are x·c_e; weight =
 * σ(logit of the assigned expert) (the layer adds the residual x). */
moe_status moe_router_forward(const moe_router_cfg *cfg, const float *logits, const int32_t *token_ids,
                              int64_t T, moe_routing *out);

/* d_logits [T × n_logits] += ∂L/∂logits for
 *   L = Σ d_weight ⊙ weight + Σ d_dispatch ⊙ dispatch + Σ d_combine ⊙ combine
 *       + aux_coef·aux_loss + z_coef·z_loss,
 * with the discrete decisions of `rt` (top-k sets, drops, assignments) held constant.
 * d_weight [T × n_cols] (NULL = 0); d_dispatch, d_combine [T × n_slots] (soft-moe; NULL = 0).
 * `logits` and `rt` must be those of the forward call. */
moe_status moe_router_backward(const moe_router_cfg *cfg, const float *logits, int64_t T, const moe_routing *rt,
                               const float *d_weight, const float *d_dispatch, const float *d_combine,
                               float aux_coef, float z_coef, float *d_logits);

void moe_routing_free(moe_routing *rt);

/* Reads moe.router.* of a file (absent keys: the architecture's softmax top-k with k_default
 * and renorm_default). rows = rows of the router weight (checked against the kind: E, E + m
 * for adamoe, E·p for soft-moe). *hash_map receives a malloc'ed copy of the hash router's
 * map (or NULL); cfg->hash_map points at it. Errors name the file and the key. */
moe_status moe_router_cfg_from_gguf(const moe_gguf *g, int n_expert, int k_default, bool renorm_default, int64_t rows,
                                    moe_router_cfg *cfg, int32_t **hash_map);

/* Hash-layer maps (Roller et al. 2021, §3 "Hash functions"; ParlAI): map[id] for every
 * token id < vocab. random: uniform experts from `seed`. balanced: tokens by descending
 * frequency (ties → lower id), each to the expert with the least total frequency so far
 * (ties → lower expert), so experts see about equal token counts on the training data. */
moe_status moe_router_hash_map_random(int32_t *map, int64_t vocab, int n_expert, uint64_t seed);
moe_status moe_router_hash_map_balanced(int32_t *map, const int64_t *freq, int64_t vocab, int n_expert);

/* Auxiliary-loss-free balancing (Wang et al. 2024, Alg. 1): bias_i += u·sign(mean load −
 * load_i), with load from stats.load of the last batch. */
void moe_router_bias_update(float *bias, const int64_t *load, int n_expert, float u);

#endif
