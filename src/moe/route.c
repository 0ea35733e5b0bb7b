/* route.c — token-choice top-k routing for inference (see route.h), and the top-k
 * selection it shares with the training routers of router.h. */
#include "moe/route.h"

#include <math.h>

#define R float
#define SELECT_FN moe_route_select
#include "moe/route_select_impl.h"
#undef R
#undef SELECT_FN

#define R double
#define SELECT_FN moe_route_select_f64
#include "moe/route_select_impl.h"
#undef R
#undef SELECT_FN

void moe_route_topk(const moe_route_cfg *cfg, const float *logits, float *scores, int32_t *ids, float *weights) {
    const int E = cfg->n_expert, k = cfg->k;
    if (cfg->score == MOE_SCORE_SOFTMAX) {
        float mx = logits[0];
        for (int e = 1; e < E; e++) mx = logits[e] > mx ? logits[e] : mx;
        float sum = 0;
        for (int e = 0; e < E; e++) sum += (scores[e] = expf(logits[e] - mx));
        for (int e = 0; e < E; e++) scores[e] /= sum;
    } else {
        for (int e = 0; e < E; e++) scores[e] = 1.0f / (1.0f + expf(-logits[e]));
    }

    /* Selection key: score + bias (bias never enters the weights). */
    const float *key = scores;
    float biased[MOE_ROUTE_MAX_EXPERT];
    if (cfg->sel_bias) {
        for (int e = 0; e < E; e++) biased[e] = scores[e] + cfg->sel_bias[e];
        key = biased;
    }
    moe_route_select(key, E, k, cfg->n_group, cfg->topk_group, cfg->sel_bias != NULL, ids);

    float sum = 0;
    for (int j = 0; j < k; j++) sum += (weights[j] = scores[ids[j]]);
    if (cfg->renorm && sum > 0)
        for (int j = 0; j < k; j++) weights[j] /= sum;
    if (cfg->scale != 1.0f && cfg->scale != 0.0f)
        for (int j = 0; j < k; j++) weights[j] *= cfg->scale;
}
