/* assign.c — balanced token→expert assignment for BASE layers (see assign.h): exact
 * min-cost flow, fairseq's ε-auction, greedy argmax. */
#include "moe/assign.h"

#include <math.h>
#include <stdlib.h>

void moe_assign_greedy(const double *score, int64_t T, int E, int32_t *assign) {
    for (int64_t t = 0; t < T; t++) {
        const double *s = score + t * E;
        int best = 0;
        for (int e = 1; e < E; e++)
            if (s[e] > s[best]) best = e;
        assign[t] = best;
    }
}

double moe_assign_total(const double *score, int64_t T, int E, const int32_t *assign) {
    double sum = 0;
    for (int64_t t = 0; t < T; t++) sum += score[t * E + assign[t]];
    return sum;
}

/* ---------------------------------------------------------------------------------------
 * Exact solver. The problem is a transportation problem: T sources of supply 1, E sinks of
 * capacity `cap`, cost c[t][e] = −score. Successive shortest paths adds the tokens one at a
 * time; after each addition the flow is a min-cost flow of the tokens added so far (no
 * negative cycle in the residual graph, certified by the potentials π). Because every
 * residual path between experts goes "token u leaves expert e for e′", the residual graph
 * compresses to the E expert nodes with edge cost min_{u at e} (c[u][e′] − c[u][e]); the
 * minimum is read from a heap per (e, e′) pair, entries invalidated lazily when u moves.
 * Dijkstra runs on the reduced costs c + π[from] − π[to] ≥ 0, with a virtual sink reached
 * from every expert that still has room, and stops when the sink is settled (potentials of
 * unsettled nodes then advance by the sink distance, which keeps reduced costs ≥ 0).
 * ------------------------------------------------------------------------------------- */

typedef struct hentry { double key; int32_t tok; } hentry;
typedef struct heap { hentry *a; int64_t n, cap; } heap;

static bool hless(hentry x, hentry y) { return x.key < y.key || (x.key == y.key && x.tok < y.tok); }

static bool heap_push(heap *h, hentry x) {
    if (h->n == h->cap) {
        int64_t nc = h->cap ? h->cap * 2 : 16;
        hentry *na = realloc(h->a, (size_t)nc * sizeof(hentry));
        if (!na) return false;
        h->a = na;
        h->cap = nc;
    }
    int64_t i = h->n++;
    while (i > 0) {
        int64_t p = (i - 1) / 2;
        if (!hless(x, h->a[p])) break;
        h->a[i] = h->a[p];
        i = p;
    }
    h->a[i] = x;
    return true;
}

static void heap_pop(heap *h) {
    hentry x = h->a[--h->n];
    int64_t i = 0;
    for (;;) {
        int64_t l = 2 * i + 1, r = l + 1, m = i;
        hentry best = x;
        if (l < h->n && hless(h->a[l], best)) { m = l; best = h->a[l]; }
        if (r < h->n && hless(h->a[r], best)) { m = r; }
        if (m == i) break;
        h->a[i] = h->a[m];
        i = m;
    }
    if (h->n > 0) h->a[i] = x;
}

typedef struct flow {
    const double *score;
    int64_t T;
    int E;
    int32_t *assign;
    heap *heaps;       /* [E × E], heaps[e*E + f]: tokens at e keyed by c[u][f] − c[u][e] */
} flow;

/* Token u now sits at expert e: offer its moves to every other expert. */
static bool flow_place(flow *F, int32_t u, int e) {
    F->assign[u] = e;
    const double *s = F->score + (int64_t)u * F->E;
    for (int f = 0; f < F->E; f++) {
        if (f == e) continue;
        hentry x = { s[e] - s[f], u };   /* c[u][f] − c[u][e] with c = −score */
        if (!heap_push(&F->heaps[e * F->E + f], x)) return false;
    }
    return true;
}

/* Cheapest valid move e → f (lazy deletion of tokens that left e), or NULL. */
static const hentry *flow_top(flow *F, int e, int f) {
    heap *h = &F->heaps[e * F->E + f];
    while (h->n > 0 && F->assign[h->a[0].tok] != e) heap_pop(h);
    return h->n > 0 ? &h->a[0] : NULL;
}

moe_status moe_assign_balanced(const double *score, int64_t T, int E, int64_t cap, int32_t *assign) {
    if (E < 1 || T < 0 || cap < 0 || (T > 0 && (cap == 0 || (T + cap - 1) / cap > E)))
        return moe_error(MOE_ERR_INVALID, "moe_assign_balanced: %lld tokens do not fit %d experts of capacity %lld",
                         (long long)T, E, (long long)cap);
    if (T > INT32_MAX) return moe_error(MOE_ERR_INVALID, "moe_assign_balanced: too many tokens (%lld)", (long long)T);
    for (int64_t t = 0; t < T; t++) assign[t] = -1;
    if (T == 0) return MOE_OK;

    const int V = E + 1;   /* experts and the sink */
    flow F = { score, T, E, assign, calloc((size_t)E * E, sizeof(heap)) };
    double *pi = calloc((size_t)V, sizeof(double));
    double *d = malloc((size_t)V * sizeof(double));
    int *prev = malloc((size_t)V * sizeof(int));
    int32_t *via = malloc((size_t)V * sizeof(int32_t));
    bool *done = malloc((size_t)V * sizeof(bool));
    int64_t *cnt = calloc((size_t)E, sizeof(int64_t));
    moe_status st = MOE_OK;
    if (!F.heaps || !pi || !d || !prev || !via || !done || !cnt) {
        st = moe_error(MOE_ERR_NOMEM, "moe_assign_balanced: out of memory (T=%lld, E=%d)", (long long)T, E);
        goto out;
    }

    for (int64_t t = 0; t < T; t++) {
        const double *s = score + t * E;
        /* Edges out of the new token t: cost −s[e], reduced by −π[e] (π[t] := 0). */
        for (int e = 0; e < E; e++) {
            d[e] = -s[e] - pi[e];
            prev[e] = -1;
            via[e] = -1;
            done[e] = false;
        }
        d[E] = INFINITY;
        prev[E] = -1;
        done[E] = false;
        for (;;) {
            int v = -1;
            for (int w = 0; w < V; w++)
                if (!done[w] && (v < 0 || d[w] < d[v])) v = w;
            done[v] = true;
            if (v == E) break;   /* the sink: shortest augmenting path found */
            if (cnt[v] < cap) {  /* room left: edge v → sink, cost 0 */
                double nd = d[v] + pi[v] - pi[E];
                if (nd < d[E]) { d[E] = nd; prev[E] = v; }
            }
            for (int f = 0; f < E; f++) {
                if (done[f] || f == v) continue;
                const hentry *x = flow_top(&F, v, f);
                if (!x) continue;
                double nd = d[v] + x->key + pi[v] - pi[f];
                if (nd < d[f]) { d[f] = nd; prev[f] = v; via[f] = x->tok; }
            }
        }
        /* Potentials: settled nodes advance by their distance, the others by the sink's. */
        const double D = d[E];
        for (int w = 0; w < V; w++) pi[w] += done[w] ? d[w] : D;
        /* Augment: walk back from the expert that reached the sink. */
        int v = prev[E];
        cnt[v]++;
        while (prev[v] >= 0) {
            int32_t u = via[v];
            if (!flow_place(&F, u, v)) goto nomem;
            v = prev[v];
        }
        if (!flow_place(&F, (int32_t)t, v)) goto nomem;
    }
    goto out;
nomem:
    st = moe_error(MOE_ERR_NOMEM, "moe_assign_balanced: out of memory growing move heaps (T=%lld, E=%d)",
                   (long long)T, E);
out:
    if (F.heaps)
        for (int i = 0; i < E * E; i++) free(F.heaps[i].a);
    free(F.heaps);
    free(pi);
    free(d);
    free(prev);
    free(via);
    free(done);
    free(cnt);
    return st;
}

/* ---------------------------------------------------------------------------------------
 * fairseq's auction, transcribed from balanced_assignment.cpp (tensor ops → loops).
 * Workers = experts, jobs = tokens. value[w][j] = score − cost[j], except that the job a
 * worker won last round is pinned to max_value so it stays in that worker's top set.
 * ------------------------------------------------------------------------------------- */

typedef struct vi { double v; int32_t j; } vi;

/* Is a ranked before b: larger value first, ties → lower index (torch.topk's order on CPU
 * is unspecified for ties; this is the spec's tie rule). */
static bool vi_before(vi a, vi b) { return a.v > b.v || (a.v == b.v && a.j < b.j); }

/* top[0..m) = the m best of row[0..n) in rank order, by insertion into a sorted window:
 * m is ⌈T/E⌉ + 1, small next to T. */
static void topm(const double *row, int64_t n, int64_t m, vi *top) {
    int64_t have = 0;
    for (int64_t j = 0; j < n; j++) {
        vi x = { row[j], (int32_t)j };
        if (have == m && !vi_before(x, top[m - 1])) continue;
        int64_t i = have < m ? have++ : m - 1;
        while (i > 0 && vi_before(x, top[i - 1])) { top[i] = top[i - 1]; i--; }
        top[i] = x;
    }
}

moe_status moe_assign_auction(const double *score, int64_t T, int E, int32_t *assign, int *rounds) {
    if (E < 1 || T < 0 || T > INT32_MAX)
        return moe_error(MOE_ERR_INVALID, "moe_assign_auction: bad sizes (T=%lld, E=%d)", (long long)T, E);
    if (rounds) *rounds = 0;
    if (T == 0) return MOE_OK;
    const int64_t jpw = (T + E - 1) / E;          /* jobs per worker */
    const int64_t m = MOE_MIN(jpw + 1, T);        /* topk(jpw + 1) needs jpw + 1 ≤ T */
    const int max_iterations = 100;
    double smax = -INFINITY, smin = INFINITY;
    for (int64_t i = 0; i < T * E; i++) {
        smax = MOE_MAX(smax, score[i]);
        smin = MOE_MIN(smin, score[i]);
    }
    const double eps = MOE_MAX((smax - smin) / 50, 1e-4);

    double *value = malloc((size_t)(T * E) * sizeof(double));   /* [E × T] */
    double *cost = calloc((size_t)T, sizeof(double));
    double *high = malloc((size_t)T * sizeof(double));
    int32_t *bidder = malloc((size_t)T * sizeof(int32_t));
    int32_t *won = malloc((size_t)T * sizeof(int32_t));           /* last round's winners, −1 = none */
    double *bids = malloc((size_t)(T * E) * sizeof(double));     /* [E × T] */
    vi *top = malloc((size_t)m * sizeof(vi));
    moe_status st = MOE_OK;
    if (!value || !cost || !high || !bidder || !won || !bids || !top) {
        st = moe_error(MOE_ERR_NOMEM, "moe_assign_auction: out of memory (T=%lld, E=%d)", (long long)T, E);
        goto out;
    }
    for (int w = 0; w < E; w++)
        for (int64_t j = 0; j < T; j++) value[w * T + j] = score[j * E + w];
    for (int64_t j = 0; j < T; j++) won[j] = -1;

    /* A hard stop far past fairseq's 100 rounds: its approximation phase converges in
     * practice, but a library must not loop forever; leftovers are repaired below. */
    const int hard_stop = max_iterations + 100000;
    int counter = 0;
    bool all = false;
    while (counter < hard_stop) {
        for (int64_t i = 0; i < T * E; i++) bids[i] = 0;
        for (int w = 0; w < E; w++) {
            topm(value + w * T, T, m, top);
            const double kth = m > jpw ? top[jpw].v : top[m - 1].v;
            for (int64_t i = 0; i < MOE_MIN(jpw, m); i++)
                bids[w * T + top[i].j] = top[i].v - kth + eps;
        }
        if (counter < max_iterations && counter > 0)
            for (int64_t j = 0; j < T; j++)
                if (won[j] >= 0) bids[won[j] * T + j] = eps;   /* minimal bid to retain */
        all = true;
        for (int64_t j = 0; j < T; j++) {
            int b = 0;
            for (int w = 1; w < E; w++)
                if (bids[w * T + j] > bids[b * T + j]) b = w;
            high[j] = bids[b * T + j];
            bidder[j] = b;
            if (!(high[j] > 0)) all = false;
        }
        if (all) break;
        for (int64_t j = 0; j < T; j++) cost[j] += high[j];
        for (int w = 0; w < E; w++)
            for (int64_t j = 0; j < T; j++) value[w * T + j] = score[j * E + w] - cost[j];
        for (int64_t j = 0; j < T; j++) {
            won[j] = high[j] > 0 ? bidder[j] : -1;
            if (won[j] >= 0)
                value[won[j] * T + j] = counter < max_iterations ? smax : score[j * E + won[j]];
        }
        counter++;
    }
    if (rounds) *rounds = counter + 1;
    for (int64_t j = 0; j < T; j++) assign[j] = high[j] > 0 ? bidder[j] : -1;
    if (!all) {
        /* Not converged (never seen in practice): give the jobs nobody bid for to the
         * best-scoring expert with room, so the result is still a valid assignment. */
        int64_t *cnt = calloc((size_t)E, sizeof(int64_t));
        if (!cnt) { st = moe_error(MOE_ERR_NOMEM, "moe_assign_auction: out of memory"); goto out; }
        for (int64_t j = 0; j < T; j++)
            if (assign[j] >= 0) cnt[assign[j]]++;
        for (int64_t j = 0; j < T; j++) {
            if (assign[j] >= 0) continue;
            int b = -1;
            for (int w = 0; w < E; w++)
                if (cnt[w] < jpw && (b < 0 || score[j * E + w] > score[j * E + b])) b = w;
            assign[j] = b;
            cnt[b]++;
        }
        free(cnt);
    }
out:
    free(value);
    free(cost);
    free(high);
    free(bidder);
    free(won);
    free(bids);
    free(top);
    return st;
}
