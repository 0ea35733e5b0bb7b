/* sampler.h — the steps of the token sampler (penalties, top-k, top-p, min-p,
 * temperature, the final draw) over a candidate list, and the PRNG behind --seed. The
 * public chain (moe_sampler_*) is in moe.h; the steps are exposed here so tests can
 * check each one by hand. */
#ifndef MOE_MODEL_SAMPLER_H
#define MOE_MODEL_SAMPLER_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

typedef struct moe_cand {
    int32_t id;
    float logit;
    float p;      /* filled by sampler_softmax */
} moe_cand;

typedef struct moe_cand_array {
    moe_cand *data;
    size_t size;
    bool sorted;  /* descending by logit, ties by ascending id */
} moe_cand_array;

/* Sorts descending by logit; equal logits keep the lower id first, so every step is
 * deterministic (llama.cpp leaves tie order unspecified). */
void sampler_sort(moe_cand_array *c);
/* p = softmax(logit) over the current candidates (does not reorder). */
void sampler_softmax(moe_cand_array *c);

/* llama.cpp's penalties: for each candidate that occurs `count` > 0 times in `window`:
 * logit = logit <= 0 ? logit * repeat : logit / repeat;  logit -= count*freq + present. */
void sampler_penalties(moe_cand_array *c, const int32_t *window, size_t n_window,
                       float repeat, float freq, float present);
/* Keeps the k largest logits (k <= 0: no-op). Leaves the array sorted. */
void sampler_top_k(moe_cand_array *c, int32_t k);
/* Keeps the smallest prefix (in descending order) whose probability mass reaches p
 * (p >= 1: no-op), and at least min_keep. Probabilities are softmax of the current
 * logits, as in llama.cpp (before temperature). */
void sampler_top_p(moe_cand_array *c, float p, size_t min_keep);
/* Keeps tokens whose probability is >= p times the largest one, i.e. logit >= max +
 * log(p) (p <= 0: no-op), and at least min_keep. */
void sampler_min_p(moe_cand_array *c, float p, size_t min_keep);
/* Divides logits by t; t <= 0 keeps only the largest logit (lowest id on ties). */
void sampler_temp(moe_cand_array *c, float t);
/* Draws an index into c->data with probability softmax(logit), using u in [0,1): the
 * first index whose running mass reaches u * total (llama.cpp's dist sampler). Fills p. */
size_t sampler_dist(moe_cand_array *c, double u);

/* xoshiro256** seeded through splitmix64: small, fast, and the same sequence on every
 * platform (std::mt19937 + uniform_real_distribution are not portable bit-for-bit). */
typedef struct moe_rng {
    uint64_t s[4];
} moe_rng;
void moe_rng_seed(moe_rng *r, uint64_t seed);
uint64_t moe_rng_next(moe_rng *r);
/* Uniform in [0, 1) with 53 random bits. */
double moe_rng_uniform(moe_rng *r);

#endif
