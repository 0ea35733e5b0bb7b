/* cpu.h — what the kernels choose by CPU at run time rather than at compile time: the
 * cache level into which the four-row matrix-vector kernels prefetch the next rows. */
#ifndef MOE_CORE_CPU_H
#define MOE_CORE_CPU_H

#include "core/common.h"

/* MOE_PF_L1: _MM_HINT_T0 (into L1); MOE_PF_L2: _MM_HINT_T1 (into L2). Which one streams
 * faster from DRAM depends on the core (docs/BENCHMARKS.md, "Matrix-vector kernels"). */
enum { MOE_PF_L1 = 0, MOE_PF_L2 = 1 };

/* Set when the library is loaded from moe_prefetch_detect(); each _x4 kernel call reads
 * it once. Benchmarks and tests may assign it (it changes speed, never results). */
extern int moe_prefetch_level;

/* The environment variable MOE_PREFETCH ("l1" or "l2") if set to one of those, otherwise
 * the choice for this CPU: L1 on AMD family 1Ah (Zen 5) and later, L2 elsewhere. */
int moe_prefetch_detect(void);

#endif
