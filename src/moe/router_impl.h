/* router_impl.h — the routing rules of router.h, written once over a float type R and
 * compiled twice: router_f32.c (R = float: the library's moe_router_forward/backward) and
 * router_f64.c (R = double: the tests' finite-difference reference). Not a normal header:
 * the includer defines R, R_EPS, ROUTING, SELECT, FORWARD, BACKWARD, FREE. */
#include <float.h>
#include <stdlib.h>
#include <tgmath.h>

#include "moe/assign.h"
#include "moe/route.h"
#include "moe/router_internal.h"

/* ------------------------------------------------------------------------------------ */
/* small numerics                                                                        */

/* out = softmax(x[0..n)), max-subtracted; returns logsumexp(x). */
static R softmax_row(const R *x, int n, R *out) {
    R mx = x[0];
    for (int i = 1; i < n; i++) mx = x[i] > mx ? x[i] : mx;
    R sum = 0;
    for (int i = 0; i < n; i++) sum += (out[i] = exp(x[i] - mx));
    for (int i = 0; i < n; i++) out[i] /= sum;
    return mx + log(sum);
}

static R logsumexp_row(const R *x, int n) {
    R mx = x[0];
    for (int i = 1; i < n; i++) mx = x[i] > mx ? x[i] : mx;
    R sum = 0;
    for (int i = 0; i < n; i++) sum += exp(x[i] - mx);
    return mx + log(sum);
}

static R sigmoid(R x) { return (R)1 / ((R)1 + exp(-x)); }

/* Entropy (nats) of q / Σq over n entries. */
static double entropy_row(const R *q, int n) {
    double s = 0, h = 0;
    for (int i = 0; i < n; i++) s += (double)q[i];
    if (!(s > 0)) return 0;
    for (int i = 0; i < n; i++) {
        double p = (double)q[i] / s;
        if (p > 0) h -= p * log(p);
    }
    return h;
}

/* dl[i] += p_i (dp_i − Σ_j p_j dp_j): the softmax Jacobian applied to dp. */
static void softmax_backward(const R *p, const R *dp, int n, R *dl) {
    R dot = 0;
    for (int i = 0; i < n; i++) dot += p[i] * dp[i];
    for (int i = 0; i < n; i++) dl[i] += p[i] * (dp[i] - dot);
}

/* Ranking (value descending, index ascending) for expert-choice and usmoe selection. */
typedef struct ranked { R v; int64_t i; } ranked;
static int ranked_cmp(const void *a, const void *b) {
    const ranked *x = a, *y = b;
    if (x->v > y->v) return -1;
    if (x->v < y->v) return 1;
    return (x->i > y->i) - (x->i < y->i);
}

/* ------------------------------------------------------------------------------------ */
/* buffers                                                                               */

/* Grows the `n_ptr` buffers of one shape together: they share one capacity counter. */
static bool grow_set(size_t *cap, size_t n, int n_ptr, void **ptr[], const size_t size[]) {
    bool missing = false;
    for (int i = 0; i < n_ptr; i++) missing |= *ptr[i] == NULL;
    if (n <= *cap && !missing) return true;
    for (int i = 0; i < n_ptr; i++) {
        size_t c = 0;
        if (!moe_router_grow(ptr[i], &c, n, size[i])) return false;
    }
    *cap = n ? n : 1;
    return true;
}

static bool reserve(ROUTING *rt, int64_t T, int L, int nc, int ns, int E) {
    size_t tl = (size_t)T * (size_t)L, tc = (size_t)T * (size_t)nc, ts = (size_t)T * (size_t)ns;
    void **p_tl[] = { (void **)&rt->prob };
    void **p_tc[] = { (void **)&rt->expert, (void **)&rt->weight, (void **)&rt->choice };
    void **p_ts[] = { (void **)&rt->dispatch, (void **)&rt->combine };
    void **p_l[] = { (void **)&rt->aux_f };
    void **p_e[] = { (void **)&rt->stats.load, (void **)&rt->stats.load_before };
    const size_t s_tl[] = { sizeof(R) }, s_tc[] = { sizeof(int32_t), sizeof(R), sizeof(int32_t) },
                 s_ts[] = { sizeof(R), sizeof(R) }, s_l[] = { sizeof(R) }, s_e[] = { sizeof(int64_t), sizeof(int64_t) };
    return grow_set(&rt->cap_tl, tl, 1, p_tl, s_tl) && grow_set(&rt->cap_tc, tc, 3, p_tc, s_tc) &&
           grow_set(&rt->cap_ts, ts, 2, p_ts, s_ts) && grow_set(&rt->cap_l, (size_t)L, 1, p_l, s_l) &&
           grow_set(&rt->cap_e, (size_t)E, 2, p_e, s_e);
}

void FREE(ROUTING *rt) {
    if (!rt) return;
    free(rt->prob);
    free(rt->expert);
    free(rt->weight);
    free(rt->choice);
    free(rt->dispatch);
    free(rt->combine);
    free(rt->aux_f);
    free(rt->stats.load);
    free(rt->stats.load_before);
    memset(rt, 0, sizeof(*rt));
}

/* ------------------------------------------------------------------------------------ */
/* forward, one function per family                                                      */

/* Token choice with capacity: topk (Shazeer et al. 2017; Mixtral/Qwen top-k on the softmax),
 * switch (Fedus et al. 2021, eq. 1-2 and capacity eq. 3; fairseq top1gating) and gshard
 * (Lepikhin et al. 2020, Algorithm 1; fairseq top2gating). Balance loss: Switch eq. 4-6,
 * aux = E·Σ_i f_i P_i with f_i the fraction of tokens whose top-1 expert is i before
 * dropping and P_i the mean router probability (fairseq: mean(me·ce)·E·E). */
static moe_status forward_token_choice(const moe_router_cfg *cfg, const R *logits, int64_t T, ROUTING *rt) {
    const int E = cfg->n_expert, k = rt->n_cols;
    const bool gshard = cfg->kind == MOE_ROUTER_GSHARD;
    uint64_t rng = cfg->seed;
    for (int64_t t = 0; t < T; t++) {
        const R *x = logits + t * E;
        R *p = rt->prob + t * E;
        int32_t *ch = rt->choice + t * k;
        R *w = rt->weight + t * k;
        softmax_row(x, E, p);
        if (gshard && cfg->gshard_sample) {
            /* fairseq second_expert_policy="sampling": argmax of logits + Gumbel noise with
             * the first expert masked (Gumbel-max draws the second expert ∝ its softmax
             * probability among the others). */
            SELECT(p, E, 1, 1, 1, false, ch);
            int best = -1;
            R bestv = 0;
            for (int e = 0; e < E; e++) {
                double u = ((double)(moe_router_rng(&rng) >> 11) + 0.5) * (1.0 / 9007199254740992.0);
                R v = x[e] - (R)log(-log(u));
                if (e != ch[0] && (best < 0 || v > bestv)) { best = e; bestv = v; }
            }
            ch[1] = best;
        } else {
            SELECT(p, E, k, 1, 1, false, ch);
        }
        R sum = 0;
        for (int j = 0; j < k; j++) sum += (w[j] = p[ch[j]]);
        if (cfg->kind == MOE_ROUTER_TOPK && cfg->renorm)
            for (int j = 0; j < k; j++) w[j] /= sum;
        for (int j = 0; j < k; j++) rt->expert[t * k + j] = ch[j];
    }

    /* aux loss on the choices before dropping */
    double *P = calloc((size_t)E, sizeof(double));
    int64_t *top1 = calloc((size_t)E, sizeof(int64_t));
    if (!P || !top1) { free(P); free(top1); return moe_error(MOE_ERR_NOMEM, "router %s: out of memory", moe_router_name(cfg->kind)); }
    for (int64_t t = 0; t < T; t++) {
        top1[rt->choice[t * k]]++;
        for (int e = 0; e < E; e++) P[e] += (double)rt->prob[t * E + e];
    }
    double aux = 0;
    for (int e = 0; e < E; e++) {
        rt->aux_f[e] = T ? (R)((double)top1[e] / (double)T) : 0;
        aux += T ? ((double)top1[e] / (double)T) * (P[e] / (double)T) : 0;
    }
    rt->aux_loss = (R)(E * aux);
    free(P);
    free(top1);

    /* capacity: every first choice in priority order, then every second choice, ... */
    const int64_t C = moe_router_capacity(cfg, T);
    if (C >= 0 && T > 0) {
        int64_t *order = malloc((size_t)T * sizeof(int64_t));
        int64_t *cnt = calloc((size_t)E, sizeof(int64_t));
        ranked *rk = cfg->priority == MOE_PRIORITY_BPR ? malloc((size_t)T * sizeof(ranked)) : NULL;
        if (!order || !cnt || (cfg->priority == MOE_PRIORITY_BPR && !rk)) {
            free(order); free(cnt); free(rk);
            return moe_error(MOE_ERR_NOMEM, "router %s: out of memory", moe_router_name(cfg->kind));
        }
        if (rk) {
            /* Batch-prioritised routing (Riquelme et al. 2021, V-MoE §3.3; fairseq
             * batch_prioritized_routing): tokens by descending top-1 probability. */
            for (int64_t t = 0; t < T; t++) rk[t] = (ranked){ rt->prob[t * E + rt->choice[t * k]], t };
            qsort(rk, (size_t)T, sizeof(ranked), ranked_cmp);
            for (int64_t t = 0; t < T; t++) order[t] = rk[t].i;
        } else {
            for (int64_t t = 0; t < T; t++) order[t] = t;
        }
        for (int j = 0; j < k; j++)
            for (int64_t i = 0; i < T; i++) {
                int64_t t = order[i];
                int e = rt->choice[t * k + j];
                if (cnt[e] < C) cnt[e]++;
                else {
                    rt->expert[t * k + j] = -1;
                    rt->weight[t * k + j] = 0;
                    rt->stats.n_dropped++;
                }
            }
        free(order);
        free(cnt);
        free(rk);
    }
    if (gshard) {
        /* fairseq top2gating: gates renormalised over the kept choices after dropping,
         * denominator clamped at the dtype's eps. */
        for (int64_t t = 0; t < T; t++) {
            R d = 0;
            for (int j = 0; j < 2; j++)
                if (rt->expert[t * 2 + j] >= 0) d += rt->prob[t * E + rt->choice[t * 2 + j]];
            if (d < R_EPS) d = R_EPS;
            for (int j = 0; j < 2; j++)
                rt->weight[t * 2 + j] = rt->expert[t * 2 + j] >= 0 ? rt->prob[t * E + rt->choice[t * 2 + j]] / d : 0;
        }
    }
    return MOE_OK;
}

/* Expert choice, Zhou et al. 2022 ("Mixture-of-Experts with Expert Choice Routing"), eq. 1:
 * S = softmax(X·W), G, I = TopK(Sᵀ, C): every expert takes its C best tokens, with the
 * probabilities as weights; flaxformer ExpertsChooseMaskedRouter (lax.top_k: ties to the
 * lower token index). No balance loss. */
static moe_status forward_expert_choice(const moe_router_cfg *cfg, const R *logits, int64_t T, ROUTING *rt) {
    const int E = cfg->n_expert;
    for (int64_t t = 0; t < T; t++) {
        softmax_row(logits + t * E, E, rt->prob + t * E);
        for (int e = 0; e < E; e++) {
            rt->expert[t * E + e] = -1;
            rt->weight[t * E + e] = 0;
            rt->choice[t * E + e] = -1;
        }
    }
    const int64_t C = moe_router_capacity(cfg, T);
    if (T == 0 || C == 0) return MOE_OK;
    ranked *rk = malloc((size_t)T * sizeof(ranked));
    if (!rk) return moe_error(MOE_ERR_NOMEM, "router expert-choice: out of memory (T=%lld)", (long long)T);
    for (int e = 0; e < E; e++) {
        for (int64_t t = 0; t < T; t++) rk[t] = (ranked){ rt->prob[t * E + e], t };
        qsort(rk, (size_t)T, sizeof(ranked), ranked_cmp);
        for (int64_t i = 0; i < C; i++) {
            int64_t t = rk[i].i;
            rt->expert[t * E + e] = rt->choice[t * E + e] = e;
            rt->weight[t * E + e] = rt->prob[t * E + e];
        }
    }
    free(rk);
    return MOE_OK;
}

/* Soft MoE, Puigcerver et al. 2023 ("From Sparse to Soft Mixtures of Experts"), eq. 1-3 and
 * vmoe's soft_router.py: D = softmax over tokens of each slot's logits column (dispatch),
 * C = softmax over slots of each token's logits row (combine). The L2 normalisation and
 * the learnable scale are in the logits the layer computes. */
static void forward_soft_moe(const moe_router_cfg *cfg, const R *logits, int64_t T, ROUTING *rt) {
    const int S = rt->n_slots;
    for (int64_t t = 0; t < T; t++) softmax_row(logits + t * S, S, rt->combine + t * S);
    for (int s = 0; s < S; s++) {
        R mx = -(R)INFINITY, sum = 0;
        for (int64_t t = 0; t < T; t++) mx = logits[t * S + s] > mx ? logits[t * S + s] : mx;
        for (int64_t t = 0; t < T; t++) sum += (rt->dispatch[t * S + s] = exp(logits[t * S + s] - mx));
        for (int64_t t = 0; t < T; t++) rt->dispatch[t * S + s] /= sum;
    }
}

/* BASE layers, Lewis et al. 2021 ("BASE Layers: Simplifying Training of Large, Sparse
 * Models"), §2.2: maximise Σ_t h_t·w_{a_t} subject to every expert receiving T/E tokens
 * (here at most ⌈T/E⌉), greedy argmax at test time; §2.3: output x + σ(h_t·w_{a_t})·f(x)
 * (fairseq base_layer.py alpha = sigmoid(...)). The weight is that σ. */
static moe_status forward_base(const moe_router_cfg *cfg, const R *logits, int64_t T, ROUTING *rt) {
    const int E = cfg->n_expert;
    double *sc = malloc((size_t)(T * E > 0 ? T * E : 1) * sizeof(double));
    if (!sc) return moe_error(MOE_ERR_NOMEM, "router base: out of memory (T=%lld, E=%d)", (long long)T, E);
    for (int64_t i = 0; i < T * E; i++) sc[i] = (double)logits[i];
    moe_status st = MOE_OK;
    switch (cfg->assign) {
    case MOE_ASSIGN_GREEDY: moe_assign_greedy(sc, T, E, rt->expert); break;
    case MOE_ASSIGN_AUCTION: st = moe_assign_auction(sc, T, E, rt->expert, NULL); break;
    default: st = moe_assign_balanced(sc, T, E, (T + E - 1) / E, rt->expert); break;
    }
    free(sc);
    if (st != MOE_OK) return st;
    for (int64_t t = 0; t < T; t++) {
        rt->choice[t] = rt->expert[t];
        rt->weight[t] = sigmoid(logits[t * E + rt->expert[t]]);
        for (int e = 0; e < E; e++) rt->prob[t * E + e] = sigmoid(logits[t * E + e]);
    }
    return MOE_OK;
}

/* DeepSeek-V3 (DeepSeek-AI 2024, technical report §2.1.2, eq. 12-16; inference/model.py
 * Gate): s = σ(u·e) (loss-free: softmax), selection on s + b (eq. 16) limited to the best
 * topk_group of n_group groups, g = s of the chosen, normalised (eq. 13) × route_scale.
 * loss-free: Wang et al. 2024 ("Auxiliary-Loss-Free Load Balancing Strategy for
 * Mixture-of-Experts"), eq. 3: the bias enters the top-k only. Balance loss for
 * deepseek-v3: the complementary sequence-wise loss, report eq. 17-20,
 * Σ_i f_i P_i, f_i = E/(k·T)·#{t : i ∈ top-k(s_t)}, P_i = mean_t s_ti/Σ_j s_tj. */
static moe_status forward_deepseek(const moe_router_cfg *cfg, const R *logits, int64_t T, ROUTING *rt) {
    const int E = cfg->n_expert, k = cfg->k;
    const bool sig = cfg->kind == MOE_ROUTER_DEEPSEEK_V3;
    R key[MOE_ROUTE_MAX_EXPERT];
    int32_t top[MOE_ROUTE_MAX_EXPERT];
    double *f = sig ? calloc((size_t)E, sizeof(double)) : NULL;
    double *P = sig ? calloc((size_t)E, sizeof(double)) : NULL;
    if (sig && (!f || !P)) { free(f); free(P); return moe_error(MOE_ERR_NOMEM, "router deepseek-v3: out of memory"); }
    for (int64_t t = 0; t < T; t++) {
        const R *x = logits + t * E;
        R *s = rt->prob + t * E;
        if (sig)
            for (int e = 0; e < E; e++) s[e] = sigmoid(x[e]);
        else
            softmax_row(x, E, s);
        for (int e = 0; e < E; e++) key[e] = s[e] + (cfg->sel_bias ? (R)cfg->sel_bias[e] : 0);
        int32_t *ch = rt->choice + t * k;
        SELECT(key, E, k, cfg->n_group, cfg->topk_group, cfg->sel_bias != NULL, ch);
        R *w = rt->weight + t * k, sum = 0;
        for (int j = 0; j < k; j++) sum += (w[j] = s[ch[j]]);
        for (int j = 0; j < k; j++) {
            if (cfg->renorm) w[j] /= sum;
            w[j] *= (R)cfg->route_scale;
            rt->expert[t * k + j] = ch[j];
        }
        if (sig) {
            SELECT(s, E, k, 1, 1, false, top);
            for (int j = 0; j < k; j++) f[top[j]] += 1;
            double n = 0;
            for (int e = 0; e < E; e++) n += (double)s[e];
            for (int e = 0; e < E; e++) P[e] += (double)s[e] / n;
        }
    }
    rt->aux_loss = 0;
    if (sig && T > 0) {
        double aux = 0;
        for (int e = 0; e < E; e++) {
            double fe = (double)E / ((double)k * (double)T) * f[e];
            rt->aux_f[e] = (R)fe;
            aux += fe * P[e] / (double)T;
        }
        rt->aux_loss = (R)aux;
    }
    free(f);
    free(P);
    return MOE_OK;
}

/* AdaMoE, Zeng et al. 2024 ("AdaMoE: Token-Adaptive Routing with Null Experts for
 * Mixture-of-Experts Language Models"), §3: softmax over the E + m experts, top-k over all,
 * null experts output 0; the chosen true experts' weights renormalised among themselves
 * (authors' adaptive_moe_utils.py). Balance loss over E + m with the null experts' counts
 * replaced by their mean (§3.2; spec), f_i = c_i/(T·k). */
static moe_status forward_adamoe(const moe_router_cfg *cfg, const R *logits, int64_t T, ROUTING *rt) {
    const int E = cfg->n_expert, L = rt->n_logits, k = cfg->k, m = cfg->n_null;
    double *c = calloc((size_t)L, sizeof(double)), *P = calloc((size_t)L, sizeof(double));
    if (!c || !P) { free(c); free(P); return moe_error(MOE_ERR_NOMEM, "router adamoe: out of memory"); }
    for (int64_t t = 0; t < T; t++) {
        R *p = rt->prob + t * L;
        softmax_row(logits + t * L, L, p);
        int32_t *ch = rt->choice + t * k;
        SELECT(p, L, k, 1, 1, false, ch);
        R sum = 0;
        for (int j = 0; j < k; j++) {
            c[ch[j]] += 1;
            if (ch[j] < E) sum += p[ch[j]];
        }
        for (int j = 0; j < k; j++) {
            bool real = ch[j] < E;
            rt->expert[t * k + j] = real ? ch[j] : -1;
            rt->weight[t * k + j] = real && sum > 0 ? p[ch[j]] / sum : 0;
            if (!real) rt->stats.n_null++;
        }
        for (int i = 0; i < L; i++) P[i] += (double)p[i];
    }
    if (m > 0) {
        double mean = 0;
        for (int i = E; i < L; i++) mean += c[i];
        mean /= m;
        for (int i = E; i < L; i++) c[i] = mean;
    }
    double aux = 0;
    for (int i = 0; i < L; i++) {
        double fi = T ? c[i] / ((double)T * k) : 0;
        rt->aux_f[i] = (R)fi;
        aux += T ? fi * P[i] / (double)T : 0;
    }
    rt->aux_loss = (R)(L * aux);
    free(c);
    free(P);
    return MOE_OK;
}

/* Hash layers, Roller et al. 2021 ("Hash Layers For Large Sparse Models"), §3: a fixed
 * hash of the token id picks the expert; ParlAI's hash layer uses a precomputed map
 * (random or frequency-balanced), passed in as cfg->hash_map. */
static moe_status forward_hash(const moe_router_cfg *cfg, const int32_t *ids, int64_t T, ROUTING *rt) {
    const int E = cfg->n_expert;
    for (int64_t t = 0; t < T; t++) {
        int32_t id = ids[t];
        if (id < 0 || (cfg->hash_map && id >= cfg->hash_map_len))
            return moe_error(MOE_ERR_INVALID, "router hash: token %lld has id %d, outside the hash map [0, %lld)",
                             (long long)t, id, cfg->hash_map ? (long long)cfg->hash_map_len : (long long)INT32_MAX);
        rt->expert[t] = rt->choice[t] = cfg->hash_map ? cfg->hash_map[id] : id % E;
        rt->weight[t] = 1;
    }
    return MOE_OK;
}

/* USMoE, Do et al. 2025 ("Unified Sparse Mixture of Experts", arXiv 2503.22996), unified
 * score f = α·f_e + β·f_t and the unified mechanism (top T·k token–expert pairs of the
 * flattened score matrix). As the authors' code (Training_Free moee.py / modeling_*.py):
 * f_e = softmax over experts, f_t = 2·σ(logit)/E, weight = f of the pair (renorm: divided
 * by Σ_e f over all E experts of the token). See docs/ROUTERS.md for the ambiguities. */
static moe_status forward_usmoe(const moe_router_cfg *cfg, const R *logits, int64_t T, ROUTING *rt) {
    const int E = cfg->n_expert;
    const R a = (R)cfg->usmoe_alpha, b = (R)cfg->usmoe_beta, tscale = (R)2 / (R)E;
    R sm[MOE_ROUTE_MAX_EXPERT];
    for (int64_t t = 0; t < T; t++) {
        const R *x = logits + t * E;
        R *u = rt->prob + t * E;
        softmax_row(x, E, sm);
        for (int e = 0; e < E; e++) {
            u[e] = a * sm[e] + b * tscale * sigmoid(x[e]);
            rt->expert[t * E + e] = rt->choice[t * E + e] = -1;
            rt->weight[t * E + e] = 0;
        }
    }
    const int64_t N = T * (int64_t)MOE_MIN(cfg->k, E);
    if (N == 0) return MOE_OK;
    ranked *rk = malloc((size_t)(T * E) * sizeof(ranked));
    if (!rk) return moe_error(MOE_ERR_NOMEM, "router usmoe: out of memory (T=%lld, E=%d)", (long long)T, E);
    for (int64_t i = 0; i < T * E; i++) rk[i] = (ranked){ rt->prob[i], i };
    qsort(rk, (size_t)(T * E), sizeof(ranked), ranked_cmp);
    for (int64_t i = 0; i < N; i++) {
        int64_t t = rk[i].i / E;
        int e = (int)(rk[i].i % E);
        rt->expert[t * E + e] = rt->choice[t * E + e] = e;
    }
    free(rk);
    for (int64_t t = 0; t < T; t++) {
        R usum = 0;
        for (int e = 0; e < E; e++) usum += rt->prob[t * E + e];
        for (int e = 0; e < E; e++)
            if (rt->expert[t * E + e] >= 0)
                rt->weight[t * E + e] = cfg->renorm ? rt->prob[t * E + e] / usum : rt->prob[t * E + e];
    }
    return MOE_OK;
}

/* ------------------------------------------------------------------------------------ */

static void compute_stats(const moe_router_cfg *cfg, const R *logits, int64_t T, ROUTING *rt) {
    const int E = cfg->n_expert, L = rt->n_logits, nc = rt->n_cols;
    moe_routing_stats *st = &rt->stats;
    for (int e = 0; e < E; e++) st->load[e] = st->load_before[e] = 0;
    st->n_dropped_tokens = 0;
    if (cfg->kind == MOE_ROUTER_SOFT_MOE) {
        for (int e = 0; e < E; e++) st->load[e] = st->load_before[e] = cfg->slots_per_expert;
    }
    for (int64_t t = 0; t < T; t++) {
        bool any = false;
        for (int j = 0; j < nc; j++) {
            int e = rt->expert[t * nc + j], c = rt->choice[t * nc + j];
            if (e >= 0) { st->load[e]++; any = true; }
            if (c >= 0 && c < E) st->load_before[c]++;
        }
        if (!any && nc > 0) st->n_dropped_tokens++;
    }
    double sum = 0, mx = 0;
    for (int e = 0; e < E; e++) {
        sum += (double)st->load[e];
        mx = MOE_MAX(mx, (double)st->load[e]);
    }
    st->maxvio = sum > 0 ? (mx - sum / E) / (sum / E) : 0;

    double h = 0;
    R tmp[MOE_ROUTE_MAX_EXPERT];
    for (int64_t t = 0; t < T; t++) {
        switch (cfg->kind) {
        case MOE_ROUTER_HASH: break;
        case MOE_ROUTER_SOFT_MOE: h += entropy_row(rt->combine + t * rt->n_slots, rt->n_slots); break;
        case MOE_ROUTER_BASE: softmax_row(logits + t * E, E, tmp); h += entropy_row(tmp, E); break;
        default: h += entropy_row(rt->prob + t * L, L); break;   /* normalised sigmoid / unified score */
        }
    }
    st->entropy = T > 0 ? h / (double)T : 0;
}

moe_status FORWARD(const moe_router_cfg *cfg, const R *logits, const int32_t *token_ids, int64_t T, ROUTING *out) {
    moe_status st = moe_router_cfg_check(cfg);
    if (st != MOE_OK) return st;
    if (T < 0 || T > INT32_MAX) return moe_error(MOE_ERR_INVALID, "router %s: token count %lld out of range", moe_router_name(cfg->kind), (long long)T);
    if (cfg->kind == MOE_ROUTER_HASH ? !token_ids : !logits)
        return moe_error(MOE_ERR_INVALID, "router %s: %s is NULL", moe_router_name(cfg->kind),
                         cfg->kind == MOE_ROUTER_HASH ? "token_ids" : "logits");
    const int E = cfg->n_expert, L = moe_router_n_logits(cfg), nc = moe_router_n_cols(cfg);
    const int ns = cfg->kind == MOE_ROUTER_SOFT_MOE ? L : 0;
    if (!reserve(out, T, L, nc, ns, E))
        return moe_error(MOE_ERR_NOMEM, "router %s: out of memory for %lld tokens", moe_router_name(cfg->kind), (long long)T);
    out->T = T;
    out->n_expert = E;
    out->n_logits = L;
    out->n_cols = nc;
    out->n_slots = ns;
    out->aux_loss = out->z_loss = 0;
    out->stats.n_dropped = out->stats.n_dropped_tokens = out->stats.n_null = 0;
    for (int i = 0; i < L; i++) out->aux_f[i] = 0;

    switch (cfg->kind) {
    case MOE_ROUTER_TOPK: case MOE_ROUTER_SWITCH: case MOE_ROUTER_GSHARD:
        st = forward_token_choice(cfg, logits, T, out); break;
    case MOE_ROUTER_EXPERT_CHOICE: st = forward_expert_choice(cfg, logits, T, out); break;
    case MOE_ROUTER_SOFT_MOE: forward_soft_moe(cfg, logits, T, out); break;
    case MOE_ROUTER_BASE: st = forward_base(cfg, logits, T, out); break;
    case MOE_ROUTER_DEEPSEEK_V3: case MOE_ROUTER_LOSS_FREE: st = forward_deepseek(cfg, logits, T, out); break;
    case MOE_ROUTER_ADAMOE: st = forward_adamoe(cfg, logits, T, out); break;
    case MOE_ROUTER_HASH: st = forward_hash(cfg, token_ids, T, out); break;
    case MOE_ROUTER_USMOE: st = forward_usmoe(cfg, logits, T, out); break;
    default: return moe_error(MOE_ERR_INVALID, "router: unknown kind %d", (int)cfg->kind);
    }
    if (st != MOE_OK) return st;

    /* Router z-loss, Zoph et al. 2022 (ST-MoE), eq. 5: (1/T)·Σ_t logsumexp(logits_t)². */
    if (cfg->kind != MOE_ROUTER_SOFT_MOE && cfg->kind != MOE_ROUTER_HASH && T > 0) {
        double z = 0;
        for (int64_t t = 0; t < T; t++) {
            double lse = (double)logsumexp_row(logits + t * L, L);
            z += lse * lse;
        }
        out->z_loss = (R)(z / (double)T);
    }
    compute_stats(cfg, logits, T, out);
    return MOE_OK;
}

/* ------------------------------------------------------------------------------------ */
/* backward                                                                              */

/* dp[i] += ∂(Σ_j g_j·w_j)/∂q_i for w_j = q_{c_j}/S (S = Σ_j q_{c_j} over every listed
 * choice, including ones whose weight is held at 0) when renorm, else w_j = q_{c_j};
 * times `scale`. g_j = 0 where a choice's weight is a constant 0 (dropped, null). */
static void renorm_backward(const R *q, const int32_t *ch, const R *g, int n, bool renorm, R scale, R *dp) {
    if (!renorm) {
        for (int j = 0; j < n; j++)
            if (ch[j] >= 0) dp[ch[j]] += scale * g[j];
        return;
    }
    R S = 0, G = 0;
    for (int j = 0; j < n; j++)
        if (ch[j] >= 0) { S += q[ch[j]]; G += g[j] * q[ch[j]]; }
    if (!(S > 0)) return;
    for (int j = 0; j < n; j++)
        if (ch[j] >= 0) dp[ch[j]] += scale * (g[j] / S - G / (S * S));
}

moe_status BACKWARD(const moe_router_cfg *cfg, const R *logits, int64_t T, const ROUTING *rt, const R *d_weight,
                    const R *d_dispatch, const R *d_combine, R aux_coef, R z_coef, R *d_logits) {
    moe_status st = moe_router_cfg_check(cfg);
    if (st != MOE_OK) return st;
    const int E = cfg->n_expert, L = moe_router_n_logits(cfg), nc = moe_router_n_cols(cfg);
    if (rt->T != T || rt->n_logits != L || rt->n_cols != nc)
        return moe_error(MOE_ERR_INVALID, "router %s backward: routing is for %lld tokens × %d logits, called with %lld × %d",
                         moe_router_name(cfg->kind), (long long)rt->T, rt->n_logits, (long long)T, L);
    if (cfg->kind == MOE_ROUTER_HASH || T == 0) return MOE_OK;   /* no differentiable path */
    if (!logits || !d_logits) return moe_error(MOE_ERR_INVALID, "router %s backward: logits or d_logits is NULL", moe_router_name(cfg->kind));

    if (cfg->kind == MOE_ROUTER_SOFT_MOE) {
        const int S = rt->n_slots;
        if (d_dispatch)
            for (int s = 0; s < S; s++) {
                R dot = 0;
                for (int64_t t = 0; t < T; t++) dot += rt->dispatch[t * S + s] * d_dispatch[t * S + s];
                for (int64_t t = 0; t < T; t++)
                    d_logits[t * S + s] += rt->dispatch[t * S + s] * (d_dispatch[t * S + s] - dot);
            }
        if (d_combine)
            for (int64_t t = 0; t < T; t++) softmax_backward(rt->combine + t * S, d_combine + t * S, S, d_logits + t * S);
        return MOE_OK;
    }

    R dp[MOE_ROUTE_MAX_EXPERT], sm[MOE_ROUTE_MAX_EXPERT], g[MOE_ROUTE_MAX_EXPERT];
    const R invT = (R)1 / (R)T;
    for (int64_t t = 0; t < T; t++) {
        const R *x = logits + t * L, *p = rt->prob + t * L;
        const int32_t *ex = rt->expert + t * nc, *ch = rt->choice + t * nc;
        R *dl = d_logits + t * L;
        for (int j = 0; j < nc; j++) g[j] = d_weight && ex[j] >= 0 ? d_weight[t * nc + j] : 0;
        for (int i = 0; i < L; i++) dp[i] = 0;
        const R lse = softmax_row(x, L, sm);   /* for the z-loss (and usmoe, base) */

        switch (cfg->kind) {
        case MOE_ROUTER_TOPK: case MOE_ROUTER_SWITCH:
            for (int i = 0; i < E; i++) dp[i] = aux_coef * (R)E * rt->aux_f[i] * invT;
            renorm_backward(p, ch, g, nc, cfg->kind == MOE_ROUTER_TOPK && cfg->renorm, 1, dp);
            softmax_backward(p, dp, L, dl);
            break;
        case MOE_ROUTER_GSHARD: {
            for (int i = 0; i < E; i++) dp[i] = aux_coef * (R)E * rt->aux_f[i] * invT;
            int32_t kept[2] = { ex[0], ex[1] };
            R d = 0;
            for (int j = 0; j < 2; j++)
                if (kept[j] >= 0) d += p[kept[j]];
            if (d < R_EPS) {   /* clamped denominator: w = p/eps */
                for (int j = 0; j < 2; j++)
                    if (kept[j] >= 0) dp[kept[j]] += g[j] / R_EPS;
            } else {
                renorm_backward(p, kept, g, 2, true, 1, dp);
            }
            softmax_backward(p, dp, L, dl);
            break;
        }
        case MOE_ROUTER_EXPERT_CHOICE:
            for (int e = 0; e < E; e++) dp[e] = g[e];
            softmax_backward(p, dp, L, dl);
            break;
        case MOE_ROUTER_BASE:
            if (ex[0] >= 0) dl[ex[0]] += g[0] * p[ex[0]] * (1 - p[ex[0]]);
            break;
        case MOE_ROUTER_DEEPSEEK_V3: case MOE_ROUTER_LOSS_FREE: {
            renorm_backward(p, ch, g, nc, cfg->renorm, (R)cfg->route_scale, dp);
            if (cfg->kind == MOE_ROUTER_DEEPSEEK_V3) {
                /* aux = (1/T)Σ_t Σ_i f_i s_ti/n_t → ∂/∂s_tj = (f_j − Σ_i f_i q_ti)/(T·n_t) */
                R n = 0, fq = 0;
                for (int i = 0; i < E; i++) n += p[i];
                for (int i = 0; i < E; i++) fq += rt->aux_f[i] * p[i] / n;
                for (int i = 0; i < E; i++) dp[i] += aux_coef * (rt->aux_f[i] - fq) / n * invT;
                for (int i = 0; i < E; i++) dl[i] += dp[i] * p[i] * (1 - p[i]);
            } else {
                softmax_backward(p, dp, L, dl);
            }
            break;
        }
        case MOE_ROUTER_ADAMOE: {
            for (int i = 0; i < L; i++) dp[i] = aux_coef * (R)L * rt->aux_f[i] * invT;
            int32_t real[MOE_ROUTE_MAX_EXPERT];
            for (int j = 0; j < nc; j++) real[j] = ch[j] < E ? ch[j] : -1;
            renorm_backward(p, real, g, nc, true, 1, dp);
            softmax_backward(p, dp, L, dl);
            break;
        }
        case MOE_ROUTER_USMOE: {
            /* u = α·softmax + β·(2/E)·σ; weight = u (or u/Σ_e u). */
            R du[MOE_ROUTE_MAX_EXPERT];
            for (int e = 0; e < E; e++) du[e] = 0;
            if (cfg->renorm) {
                R U = 0, G = 0;
                for (int e = 0; e < E; e++) { U += p[e]; G += g[e] * p[e]; }
                for (int e = 0; e < E; e++) du[e] = g[e] / U - G / (U * U);
            } else {
                for (int e = 0; e < E; e++) du[e] = g[e];
            }
            const R a = (R)cfg->usmoe_alpha, b = (R)cfg->usmoe_beta * (R)2 / (R)E;
            for (int e = 0; e < E; e++) dp[e] = a * du[e];
            softmax_backward(sm, dp, E, dl);
            for (int e = 0; e < E; e++) {
                R s = sigmoid(x[e]);
                dl[e] += b * s * (1 - s) * du[e];
            }
            break;
        }
        default: break;
        }
        /* z-loss: ∂/∂x_ti (1/T)Σ lse_t² = (2/T)·lse_t·softmax_i */
        if (z_coef != 0)
            for (int i = 0; i < L; i++) dl[i] += z_coef * 2 * invT * lse * sm[i];
    }
    return MOE_OK;
}
