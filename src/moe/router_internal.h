/* router_internal.h — what the router implementation files share and what the tests use:
 * the double-precision instance of every router (router_impl.h compiled with R = double,
 * for finite-difference checks of the backward pass) and small shared helpers. */
#ifndef MOE_MOE_ROUTER_INTERNAL_H
#define MOE_MOE_ROUTER_INTERNAL_H

#include "moe/router.h"

/* moe_routing with double values; same fields, same meaning. */
typedef struct moe_routing_f64 {
    int64_t T;
    int n_expert, n_logits, n_cols, n_slots;
    int32_t *expert;
    double *weight;
    double *dispatch, *combine;
    double aux_loss, z_loss;
    moe_routing_stats stats;
    double *prob;
    int32_t *choice;
    double *aux_f;
    size_t cap_tl, cap_tc, cap_ts, cap_l, cap_e;
} moe_routing_f64;

moe_status moe_router_forward_f64(const moe_router_cfg *cfg, const double *logits, const int32_t *token_ids,
                                  int64_t T, moe_routing_f64 *out);
moe_status moe_router_backward_f64(const moe_router_cfg *cfg, const double *logits, int64_t T,
                                   const moe_routing_f64 *rt, const double *d_weight, const double *d_dispatch,
                                   const double *d_combine, double aux_coef, double z_coef, double *d_logits);
void moe_routing_f64_free(moe_routing_f64 *rt);

/* Grows *p to hold n elements of `size` bytes (contents not kept); false on failure. */
bool moe_router_grow(void **p, size_t *cap, size_t n, size_t size);

/* splitmix64: the Gumbel noise of gshard's sampled second expert. */
static inline uint64_t moe_router_rng(uint64_t *s) {
    uint64_t z = (*s += 0x9E3779B97F4A7C15ull);
    z = (z ^ (z >> 30)) * 0xBF58476D1CE4E5B9ull;
    z = (z ^ (z >> 27)) * 0x94D049BB133111EBull;
    return z ^ (z >> 31);
}

#endif
