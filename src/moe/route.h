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

/* Routes one token: logits [E] → ids [k] (descending selection score, ties to the lower
 * index) and weights [k]. `scores` [E] is scratch (left holding the scores). */
void moe_route_topk(const moe_route_cfg *cfg, const float *logits, float *scores, int32_t *ids, float *weights);

#endif
