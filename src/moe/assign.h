/* assign.h — balanced assignment of T tokens to E experts for BASE layers (Lewis et al.
 * 2021): the exactly optimal solver (successive shortest paths on the transportation
 * problem), fairseq's ε-auction, and greedy argmax. Scores are double: the exact solver's
 * potentials accumulate sums of score differences. */
#ifndef MOE_MOE_ASSIGN_H
#define MOE_MOE_ASSIGN_H

#include "core/common.h"

/* assign [T] = an assignment with at most `cap` tokens per expert (E·cap ≥ T) that
 * maximises Σ_t score[t·E + assign[t]] — exactly (up to double rounding of the potentials),
 * by min-cost flow with successive shortest paths over the E expert nodes (Dijkstra on
 * reduced costs, one heap of "move a token from e to e'" costs per expert pair).
 * O(T·E² + moves·E·log T) time, O(T·E) memory. */
moe_status moe_assign_balanced(const double *score, int64_t T, int E, int64_t cap, int32_t *assign);

/* fairseq's auction (fairseq/clib/libbase/balanced_assignment.cpp, after Bertsekas): each
 * expert bids for its ⌈T/E⌉ best-valued tokens, ε = max(range/50, 1e-4); after 100 rounds
 * it switches to fairseq's "suboptimal approximation". Only ε-optimal. For T not divisible
 * by E each expert bids for ⌈T/E⌉ tokens (fairseq requires divisibility) and a token goes
 * to its highest bidder. `rounds` (may be NULL) receives the number of bidding rounds. */
moe_status moe_assign_auction(const double *score, int64_t T, int E, int32_t *assign, int *rounds);

/* assign[t] = argmax_e score (ties → lower index): BASE at inference. */
void moe_assign_greedy(const double *score, int64_t T, int E, int32_t *assign);

/* Σ_t score[t·E + assign[t]]. */
double moe_assign_total(const double *score, int64_t T, int E, const int32_t *assign);

#endif
