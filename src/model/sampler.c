/* sampler.c — choosing the next token from logits: llama.cpp's default sampler chain
 * (penalties → top-k → top-p → min-p → temperature → draw) with its defaults, and a
 * portable seeded PRNG so that the same --seed gives the same tokens everywhere. */
#include "model/sampler.h"

#include "core/common.h"

#include <math.h>
#include <stdlib.h>
#include <time.h>
#include <unistd.h>

/* ------------------------------------------------------------------ PRNG */

static uint64_t splitmix64(uint64_t *x) {
    uint64_t z = (*x += 0x9E3779B97F4A7C15ull);
    z = (z ^ (z >> 30)) * 0xBF58476D1CE4E5B9ull;
    z = (z ^ (z >> 27)) * 0x94D049BB133111EBull;
    return z ^ (z >> 31);
}

void moe_rng_seed(moe_rng *r, uint64_t seed) {
    /* splitmix64 spreads even seed 0 over the state: xoshiro must not start all-zero. */
    uint64_t x = seed;
    for (int i = 0; i < 4; i++) r->s[i] = splitmix64(&x);
}

static inline uint64_t rotl(uint64_t x, int k) { return (x << k) | (x >> (64 - k)); }

uint64_t moe_rng_next(moe_rng *r) {
    uint64_t *s = r->s;
    const uint64_t result = rotl(s[1] * 5, 7) * 9;
    const uint64_t t = s[1] << 17;
    s[2] ^= s[0];
    s[3] ^= s[1];
    s[1] ^= s[2];
    s[0] ^= s[3];
    s[2] ^= t;
    s[3] = rotl(s[3], 45);
    return result;
}

double moe_rng_uniform(moe_rng *r) { return (double)(moe_rng_next(r) >> 11) * 0x1.0p-53; }

/* ------------------------------------------------------------------ steps */

static int cand_cmp(const void *a, const void *b) {
    const moe_cand *x = a, *y = b;
    if (x->logit > y->logit) return -1;
    if (x->logit < y->logit) return 1;
    return (x->id > y->id) - (x->id < y->id);
}

void sampler_sort(moe_cand_array *c) {
    if (!c->sorted && c->size > 1) qsort(c->data, c->size, sizeof(moe_cand), cand_cmp);
    c->sorted = true;
}

/* Moves the k best candidates (cand_cmp order) to the front, sorted, in O(n + k log k)
 * on average: quickselect, because a full sort of a 150k vocabulary per token costs
 * more than the forward pass of a small model. */
static void partial_sort(moe_cand *a, size_t n, size_t k) {
    if (k >= n) {
        qsort(a, n, sizeof *a, cand_cmp);
        return;
    }
    size_t lo = 0, hi = n - 1;
    uint64_t x = 0x2545F4914F6CDD1Dull;  /* pivot choice: fixed sequence, data-independent */
    while (lo < hi) {
        size_t pi = lo + (size_t)(splitmix64(&x) % (hi - lo + 1));
        moe_cand pivot = a[pi];
        a[pi] = a[hi];
        a[hi] = pivot;
        size_t st = lo;
        for (size_t i = lo; i < hi; i++) {
            if (cand_cmp(&a[i], &pivot) < 0) {
                moe_cand t = a[i];
                a[i] = a[st];
                a[st] = t;
                st++;
            }
        }
        a[hi] = a[st];
        a[st] = pivot;
        if (st == k) break;
        if (st < k) lo = st + 1;
        else hi = st - 1;
    }
    qsort(a, k, sizeof *a, cand_cmp);
}

/* p = exp(logit − max logit) for every candidate (size ≥ 1); returns their sum, in double. */
static double exp_shifted(moe_cand_array *c) {
    float mx = c->data[0].logit;
    for (size_t i = 1; i < c->size; i++) mx = fmaxf(mx, c->data[i].logit);
    double sum = 0;
    for (size_t i = 0; i < c->size; i++) {
        float e = expf(c->data[i].logit - mx);
        c->data[i].p = e;
        sum += e;
    }
    return sum;
}

void sampler_softmax(moe_cand_array *c) {
    if (c->size == 0) return;
    const double sum = exp_shifted(c);
    for (size_t i = 0; i < c->size; i++) c->data[i].p = (float)(c->data[i].p / sum);
}

static int i32_cmp(const void *a, const void *b) {
    int32_t x = *(const int32_t *)a, y = *(const int32_t *)b;
    return (x > y) - (x < y);
}

/* A token among the candidates: penalties run first in the chain, while the candidates
 * are still indexed by id (data[i].id == i), so the lookup is direct; a linear scan
 * covers any other order. */
static moe_cand *find_cand(moe_cand_array *c, int32_t id) {
    if (id >= 0 && (size_t)id < c->size && c->data[id].id == id) return &c->data[id];
    for (size_t i = 0; i < c->size; i++)
        if (c->data[i].id == id) return &c->data[i];
    return NULL;
}

void sampler_penalties(moe_cand_array *c, const int32_t *window, size_t n_window,
                       float repeat, float freq, float present) {
    if (n_window == 0 || (repeat == 1.0f && freq == 0.0f && present == 0.0f)) return;
    int32_t *w = malloc(n_window * sizeof *w);
    if (!w) return;  /* penalties are advisory: without memory, sample unpenalised */
    memcpy(w, window, n_window * sizeof *w);
    qsort(w, n_window, sizeof *w, i32_cmp);
    for (size_t i = 0; i < n_window;) {
        size_t j = i;
        while (j < n_window && w[j] == w[i]) j++;
        int count = (int)(j - i);
        moe_cand *cd = find_cand(c, w[i]);
        if (cd) {
            /* Dividing a negative logit would raise it: multiply instead (llama.cpp). */
            if (cd->logit <= 0) cd->logit *= repeat;
            else cd->logit /= repeat;
            cd->logit -= (float)count * freq + (float)(count > 0) * present;
        }
        i = j;
    }
    free(w);
    c->sorted = false;
}

void sampler_top_k(moe_cand_array *c, int32_t k) {
    if (k <= 0) return;
    size_t kk = MOE_MIN((size_t)k, c->size);
    if (!c->sorted) partial_sort(c->data, c->size, kk);
    c->size = kk;
    c->sorted = true;
}

void sampler_top_p(moe_cand_array *c, float p, size_t min_keep) {
    if (p >= 1.0f || c->size == 0) return;
    sampler_sort(c);
    sampler_softmax(c);
    float cum = 0;
    size_t last = c->size;
    for (size_t i = 0; i < c->size; i++) {
        cum += c->data[i].p;
        if (cum >= p && i + 1 >= min_keep) {
            last = i + 1;
            break;
        }
    }
    c->size = last;
}

void sampler_min_p(moe_cand_array *c, float p, size_t min_keep) {
    if (p <= 0.0f || c->size == 0) return;
    float mx = c->data[0].logit;
    for (size_t i = 1; i < c->size; i++) mx = fmaxf(mx, c->data[i].logit);
    const float min_logit = mx + logf(p);  /* p_i >= p * p_max */
    size_t n = 0;
    for (size_t i = 0; i < c->size; i++)
        if (c->data[i].logit >= min_logit) n++;
    if (n >= 1 && n >= min_keep) {
        /* Stable compaction keeps the order (and the sorted flag) intact. */
        size_t o = 0;
        for (size_t i = 0; i < c->size; i++)
            if (c->data[i].logit >= min_logit) c->data[o++] = c->data[i];
        c->size = o;
        return;
    }
    /* Too few pass: keep the min_keep best (and never nothing: p > 1 passes none). */
    sampler_sort(c);
    c->size = MOE_MIN(c->size, MOE_MAX(min_keep, (size_t)1));
}

void sampler_temp(moe_cand_array *c, float t) {
    if (c->size == 0) return;
    if (t <= 0.0f) {
        size_t best = 0;
        for (size_t i = 1; i < c->size; i++) {
            const moe_cand *a = &c->data[i], *b = &c->data[best];
            if (a->logit > b->logit || (a->logit == b->logit && a->id < b->id)) best = i;
        }
        c->data[0] = c->data[best];
        c->size = 1;
        c->sorted = true;
        return;
    }
    for (size_t i = 0; i < c->size; i++) c->data[i].logit /= t;
}

size_t sampler_dist(moe_cand_array *c, double u) {
    if (c->size <= 1) {
        if (c->size == 1) c->data[0].p = 1.0f;
        return 0;
    }
    const double sum = exp_shifted(c);
    const double target = sum * u;
    double run = 0;
    size_t sel = c->size - 1;  /* rounding can leave run just below target at the end */
    for (size_t i = 0; i < c->size; i++) {
        run += c->data[i].p;
        if (run >= target && c->data[i].p > 0) {
            sel = i;
            break;
        }
    }
    for (size_t i = 0; i < c->size; i++) c->data[i].p = (float)(c->data[i].p / sum);
    return sel;
}

/* ------------------------------------------------------------------ the chain */

struct moe_sampler {
    moe_sampler_params par;
    uint32_t seed;            /* the seed in use */
    moe_rng rng;
    int32_t *hist;            /* ring buffer of the last penalty_last_n accepted tokens */
    size_t hist_cap, hist_n, hist_pos;
    int32_t *win;             /* the window, oldest first, rebuilt per sample */
    moe_cand *cand;
    size_t cand_cap;
};

moe_sampler_params moe_sampler_default_params(void) {
    moe_sampler_params p = {
        .seed = MOE_SEED_RANDOM,
        .temp = 0.80f,
        .top_k = 40,
        .top_p = 0.95f,
        .min_p = 0.05f,
        .penalty_last_n = 64,
        .penalty_repeat = 1.00f,
        .penalty_freq = 0.00f,
        .penalty_present = 0.00f,
        .min_keep = 0,
    };
    return p;
}

static uint32_t fresh_seed(void) {
    struct timespec ts;
    clock_gettime(CLOCK_REALTIME, &ts);
    uint64_t x = (uint64_t)ts.tv_sec * 1000000007ull ^ (uint64_t)ts.tv_nsec ^ ((uint64_t)getpid() << 32);
    uint32_t s = (uint32_t)splitmix64(&x);
    return s == MOE_SEED_RANDOM ? 0 : s;
}

moe_sampler *moe_sampler_init(const moe_sampler_params *params) {
    moe_sampler_params p = params ? *params : moe_sampler_default_params();
    if (isnan(p.temp) || isnan(p.top_p) || isnan(p.min_p) || isnan(p.penalty_repeat) ||
        isnan(p.penalty_freq) || isnan(p.penalty_present))
        return moe_error_null(MOE_ERR_INVALID, "sampler: a parameter is NaN");
    if (p.penalty_repeat <= 0.0f)
        return moe_error_null(MOE_ERR_INVALID, "sampler: repeat penalty %g must be > 0", (double)p.penalty_repeat);
    if (p.penalty_last_n < 0)
        return moe_error_null(MOE_ERR_INVALID, "sampler: penalty window %d must be >= 0 (resolve -1 to the context size first)",
                              (int)p.penalty_last_n);
    if (p.min_keep < 0) p.min_keep = 0;
    moe_sampler *s = moe_calloc(1, sizeof *s);
    if (!s) return NULL;
    s->par = p;
    s->seed = p.seed == MOE_SEED_RANDOM ? fresh_seed() : p.seed;
    moe_rng_seed(&s->rng, s->seed);
    s->hist_cap = (size_t)p.penalty_last_n;
    if (s->hist_cap) {
        s->hist = moe_malloc(s->hist_cap * sizeof *s->hist);
        s->win = moe_malloc(s->hist_cap * sizeof *s->win);
        if (!s->hist || !s->win) {
            moe_sampler_free(s);
            return NULL;
        }
    }
    return s;
}

void moe_sampler_free(moe_sampler *s) {
    if (!s) return;
    free(s->hist);
    free(s->win);
    free(s->cand);
    free(s);
}

void moe_sampler_accept(moe_sampler *s, int32_t token) {
    if (!s || s->hist_cap == 0) return;
    s->hist[s->hist_pos] = token;
    s->hist_pos = (s->hist_pos + 1) % s->hist_cap;
    if (s->hist_n < s->hist_cap) s->hist_n++;
}

void moe_sampler_reset(moe_sampler *s) {
    if (!s) return;
    s->hist_n = s->hist_pos = 0;
    moe_rng_seed(&s->rng, s->seed);
}

uint32_t moe_sampler_seed(const moe_sampler *s) { return s ? s->seed : 0; }

int32_t moe_sampler_sample(moe_sampler *s, const float *logits, int32_t n_vocab) {
    if (!s || !logits || n_vocab < 1) {
        moe_error(MOE_ERR_INVALID, "sampler: no logits to sample from (n_vocab %d)", (int)n_vocab);
        return -1;
    }
    if ((size_t)n_vocab > s->cand_cap) {
        moe_cand *c = realloc(s->cand, (size_t)n_vocab * sizeof *c);
        if (!c) {
            moe_error(MOE_ERR_NOMEM, "sampler: out of memory for %d candidates", (int)n_vocab);
            return -1;
        }
        s->cand = c;
        s->cand_cap = (size_t)n_vocab;
    }
    bool any = false;
    for (int32_t i = 0; i < n_vocab; i++) {
        float l = logits[i];
        /* NaN would poison every comparison: it can never be chosen. */
        if (isnan(l)) l = -INFINITY;
        if (l > -INFINITY) any = true;
        s->cand[i] = (moe_cand){i, l, 0.0f};
    }
    if (!any) {
        moe_error(MOE_ERR_INVALID, "sampler: all %d logits are -inf or NaN", (int)n_vocab);
        return -1;
    }
    moe_cand_array c = {s->cand, (size_t)n_vocab, false};
    const moe_sampler_params *p = &s->par;

    if (s->hist_n) {
        size_t start = (s->hist_pos + s->hist_cap - s->hist_n) % s->hist_cap;
        for (size_t i = 0; i < s->hist_n; i++) s->win[i] = s->hist[(start + i) % s->hist_cap];
        sampler_penalties(&c, s->win, s->hist_n, p->penalty_repeat, p->penalty_freq, p->penalty_present);
    }
    if (p->temp <= 0.0f) {
        /* Greedy: the filters below always keep the largest logit, so skip them. */
        sampler_temp(&c, 0.0f);
        return c.data[0].id;
    }
    sampler_top_k(&c, p->top_k);
    sampler_top_p(&c, p->top_p, (size_t)p->min_keep);
    sampler_min_p(&c, p->min_p, (size_t)p->min_keep);
    sampler_temp(&c, p->temp);
    /* -inf survivors (possible without top-k) get p = 0 and are never drawn. */
    size_t sel = sampler_dist(&c, moe_rng_uniform(&s->rng));
    return c.data[sel].id;
}
