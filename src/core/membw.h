/* membw.h — the DRAM read-bandwidth probe (the public moe_measure_read_bandwidth is in
 * moe.h); this header adds the single timed read that benchmarks interleave with their
 * own work. */
#ifndef MOE_CORE_MEMBW_H
#define MOE_CORE_MEMBW_H

#include "core/threads.h"

/* Seconds for one streaming read of buf (64-byte aligned; bytes rounded down to a multiple
 * of 128) split over the pool's threads. */
double moe_read_seconds(moe_pool *pool, const void *buf, size_t bytes);

#endif
