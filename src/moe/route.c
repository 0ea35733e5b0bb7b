/* route.c — token-choice top-k routing for inference (see route.h). */
#include "moe/route.h"

#include <math.h>

/* Index of the largest v[i] among the candidates not yet taken; ties → lower index. */
static int argmax_free(const float *v, const bool *taken, int n) {
    int best = -1;
    for (int i = 0; i < n; i++)
        if (!taken[i] && (best < 0 || v[i] > v[best])) best = i;
    return best;
}

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

    /* Selection key: score + bias (bias never enters the weights). E is small (≤ 256)
     * so fixed stack arrays and repeated argmax are fine and branch-predictable. */
    float key[1024];
    bool taken[1024];
    for (int e = 0; e < E; e++) {
        key[e] = scores[e] + (cfg->sel_bias ? cfg->sel_bias[e] : 0.0f);
        taken[e] = false;
    }
    if (cfg->n_group > 1 && cfg->topk_group < cfg->n_group) {
        /* DeepSeek-V3 group-limited routing: keep the topk_group groups with the best
         * group score (sum of the group's top-2 keys with a bias, else its max), mask
         * the others out. */
        int per = E / cfg->n_group;
        float gscore[64];
        bool gtaken[64] = {false};
        for (int g = 0; g < cfg->n_group; g++) {
            float a = -INFINITY, b = -INFINITY;
            for (int e = g * per; e < (g + 1) * per; e++) {
                if (key[e] > a) { b = a; a = key[e]; }
                else if (key[e] > b) b = key[e];
            }
            gscore[g] = cfg->sel_bias ? a + b : a;
        }
        bool keep[64] = {false};
        for (int r = 0; r < cfg->topk_group; r++) {
            int g = argmax_free(gscore, gtaken, cfg->n_group);
            gtaken[g] = keep[g] = true;
        }
        for (int e = 0; e < E; e++)
            if (!keep[e / per]) taken[e] = true;
    }
    float sum = 0;
    for (int j = 0; j < k; j++) {
        int e = argmax_free(key, taken, E);
        taken[e] = true;
        ids[j] = e;
        weights[j] = scores[e];
        sum += scores[e];
    }
    if (cfg->renorm && sum > 0)
        for (int j = 0; j < k; j++) weights[j] /= sum;
    if (cfg->scale != 1.0f && cfg->scale != 0.0f)
        for (int j = 0; j < k; j++) weights[j] *= cfg->scale;
}
