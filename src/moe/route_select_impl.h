/* route_select_impl.h — template body of the top-k selection that inference (route.c) and
 * the training routers share, instantiated by route.c for float and double: included with
 * R (the float type) and SELECT_FN (the function name) defined. Not a normal header. */

/* ids[0..k) = the k largest key[e] in descending order, ties to the lower index, among
 * the experts that DeepSeek-V3's group-limited routing allows (n_group > 1 and
 * topk_group < n_group: keep the topk_group groups with the best group score — the sum
 * of the group's two largest keys when group_top2, else its largest — ties to the lower
 * group). DeepSeek-V3 inference code, model.py Gate.forward. Repeated argmax: k and E
 * are small and this keeps the tie rule obvious. */
void SELECT_FN(const R *key, int E, int k, int n_group, int topk_group, bool group_top2, int32_t *ids) {
    bool taken[MOE_ROUTE_MAX_EXPERT];
    for (int e = 0; e < E; e++) taken[e] = false;
    if (n_group > 1 && topk_group < n_group) {
        const int per = E / n_group;
        R gscore[MOE_ROUTE_MAX_GROUP];
        bool keep[MOE_ROUTE_MAX_GROUP];
        for (int g = 0; g < n_group; g++) {
            R a = -(R)INFINITY, b = -(R)INFINITY;
            for (int e = g * per; e < (g + 1) * per; e++) {
                if (key[e] > a) { b = a; a = key[e]; }
                else if (key[e] > b) b = key[e];
            }
            gscore[g] = group_top2 && per > 1 ? a + b : a;
            keep[g] = false;
        }
        for (int r = 0; r < topk_group; r++) {
            int best = -1;
            for (int g = 0; g < n_group; g++)
                if (!keep[g] && (best < 0 || gscore[g] > gscore[best])) best = g;
            keep[best] = true;
        }
        for (int e = 0; e < E; e++)
            if (!keep[e / per]) taken[e] = true;
    }
    for (int j = 0; j < k; j++) {
        int best = -1;
        for (int e = 0; e < E; e++)
            if (!taken[e] && (best < 0 || key[e] > key[best])) best = e;
        ids[j] = best;   /* -1 only if k exceeds the allowed experts (cfg checks forbid it) */
        if (best >= 0) taken[best] = true;
    }
}
