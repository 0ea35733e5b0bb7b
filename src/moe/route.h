/* route.h — the routing rule that inference uses for every architecture: scores from
 * the router logits (softmax or sigmoid), top-k selection (optionally on score + bias,
 * optionally group-limited), combine weights. The training routers in router.h build
 * on the same functions, so inference and training route identically. */
#ifndef MOE_MOE_ROUTE_H
#define MOE_MOE_ROUTE_H

#include "core/common.h"

typedef enum moe_score_fn {
    MOE_SCORE_SOFTMAX = 0,  /* Mixtral, Qwen-MoE, OLMoE, DeepSeek-MoE v1 */
    MOE_SCORE_SIGMOID = 1,  /* DeepSeek-V3 */
} moe_score_fn;

/* How one architecture routes a token. */
typedef struct moe_route_cfg {
    int n_expert;          /* E */
    int k;                 /* experts used per token */
    moe_score_fn score;
    bool renorm;           /* divide the chosen weights by their sum */
    float scale;           /* multiply the final weights (routed_scaling_factor); 1 if unused */
    const float *sel_bias; /* [E] added to the scores for selection only, or NULL */
    int n_group, topk_group; /* group-limited selection (DeepSeek-V3); n_group ≤ 1 disables */
} moe_route_cfg;

/* Largest E and n_group the selection handles (stack arrays; DeepSeek-V3 has 256, 8). */
#define MOE_ROUTE_MAX_EXPERT 1024
#define MOE_ROUTE_MAX_GROUP 64

/* The top-k selection shared by inference and every token-choice training router:
 * ids [k] = the k largest key[e], descending, ties to the lower index, restricted to the
 * best topk_group of n_group groups when n_group > 1 (group score: sum of its two largest
 * keys if group_top2, else its largest; DeepSeek-V3 uses the sum exactly when a selection
 * bias exists). Requires E ≤ MOE_ROUTE_MAX_EXPERT, n_group ≤ MOE_ROUTE_MAX_GROUP dividing
 * E, and k ≤ the experts left by the group limit. The double version exists so that the
 * training routers can be instantiated in double precision for finite-difference tests. */
void moe_route_select(const float *key, int E, int k, int n_group, int topk_group, bool group_top2, int32_t *ids);
void moe_route_select_f64(const double *key, int E, int k, int n_group, int topk_group, bool group_top2,
                          int32_t *ids);

/* Routes one token: logits [E] → ids [k] (descending selection score, ties to the lower
 * index) and weights [k]. `scores` [E] is scratch (left holding the scores). */
void moe_route_topk(const moe_route_cfg *cfg, const float *logits, float *scores, int32_t *ids, float *weights);

#endif
