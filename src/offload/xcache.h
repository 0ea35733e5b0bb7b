/* xcache.h — the expert cache's bookkeeping: which (layer, expert) sits in which slot,
 * and which one to evict (LRU, LFU, FIFO, EdgeMoE-style, Belady). The same object runs
 * inside the offloading expert provider and inside `moe cachesim`, so a simulated hit
 * rate is the hit rate the engine gets. It manages slot numbers only; the memory of the
 * slots belongs to the caller. */
#ifndef MOE_OFFLOAD_XCACHE_H
#define MOE_OFFLOAD_XCACHE_H

#include "core/common.h"

typedef struct moe_xcache moe_xcache;

/* n_slots in total; per_layer splits them evenly between the layers that have experts
 * (has_experts[l]; NULL: every layer), each layer then evicting only its own experts;
 * otherwise all layers share them. */
moe_xcache *moe_xcache_init(moe_cache_policy policy, int64_t n_slots, bool per_layer,
                            int n_layers, int n_experts, const bool *has_experts);
void moe_xcache_free(moe_xcache *c);

/* Marks the start of a new token (step) at `layer`: used by the frequency estimates, and
 * ends the protection of the slots protected until this layer. */
void moe_xcache_begin_layer(moe_xcache *c, int layer);

/* The slot holding (layer, expert), or -1; changes nothing. */
int64_t moe_xcache_find(const moe_xcache *c, int layer, int expert);

/* Records one use of (layer, expert), cached or not: the counts LFU and the EdgeMoE score
 * go by, and the recency LRU goes by. Exactly one per time the router picks the expert. */
void moe_xcache_use(moe_xcache *c, int layer, int expert);

/* find, and on a hit records the use (moe_cachesim's replay: one call per access). */
int64_t moe_xcache_lookup(moe_xcache *c, int layer, int expert);

/* Places (layer, expert), which must be absent, into a free slot or the slot of the
 * policy's victim, and returns the slot (or -1 with an error when every candidate slot
 * is pinned). Records no use (moe_xcache_use does); the entry counts as just touched for
 * LRU. Entries pinned with moe_xcache_pin are never evicted. For Belady,
 * `next_use` gives for every key (layer * n_experts + expert) the time of its next use
 * (INT64_MAX if never); for ORACLE_LFU, the key's number of uses over the whole trace;
 * other policies ignore it (may be NULL). */
int64_t moe_xcache_insert(moe_xcache *c, int layer, int expert, const int64_t *next_use);

/* Empties a slot (its expert failed to load). */
void moe_xcache_remove(moe_xcache *c, int64_t slot);

/* Pinning protects the experts of the layer being computed from eviction. */
void moe_xcache_pin(moe_xcache *c, int64_t slot, bool pinned);
/* Protects a slot (a prefetched expert) until `layer` next begins (moe_xcache_begin_layer):
 * it is evicted only when every other candidate is protected too, softer than a pin, so
 * prefetches can never starve a demand load of slots. Cleared when the slot gets a new
 * expert. */
void moe_xcache_protect(moe_xcache *c, int64_t slot, int layer);
/* The key in a slot, -1 if empty. */
int64_t moe_xcache_slot_key(const moe_xcache *c, int64_t slot);
int64_t moe_xcache_n_slots(const moe_xcache *c);
/* Insertions that replaced a resident expert. */
int64_t moe_xcache_evictions(const moe_xcache *c);

#endif
