/* cpu.c — the run-time choices of cpu.h. */
#include "core/cpu.h"

#include <stdlib.h>
#include <strings.h>
#if defined(__x86_64__) || defined(__i386__)
#include <cpuid.h>
#endif

int moe_prefetch_level = MOE_PF_L2;
size_t moe_prefetch_min_bytes = 4096;

/* Why by CPU: the _x4 kernels prefetch the same position rows ahead, one line per
 * row at a time. Into L1, each prefetch holds one of the core's few L1 miss buffers until
 * the line arrives, which caps a core's stream at (buffers × 64 B) / DRAM latency; into
 * L2 the demand loads then hit L2, which the kernels' out-of-order window hides. On Zen 4
 * (family 19h, measured) the L1 prefetch held a core to ~13 GB/s from DRAM where the L2
 * one reached the read bandwidth (~22 GB/s per core); on Zen 5 (family 1Ah, measured
 * before this switch existed) L1 was 10–40 % faster. Other CPUs were not measured; L2 is
 * what Intel's guides advise for streams. bench/prefetch measures both on any machine, and
 * docs/BENCHMARKS.md has the numbers. */
int moe_prefetch_detect(void) {
    const char *e = getenv("MOE_PREFETCH");
    if (e && strcasecmp(e, "l1") == 0) return MOE_PF_L1;
    if (e && strcasecmp(e, "l2") == 0) return MOE_PF_L2;
#if defined(__x86_64__) || defined(__i386__)
    unsigned a, b, c, d;
    /* vendor "AuthenticAMD": ebx = "Auth"; family = base + extended when base is 0Fh */
    if (__get_cpuid(0, &a, &b, &c, &d) && b == 0x68747541u && __get_cpuid(1, &a, &b, &c, &d)) {
        const unsigned base = (a >> 8) & 0xf, family = base == 0xf ? base + ((a >> 20) & 0xff) : base;
        if (family >= 0x1a) return MOE_PF_L1;
    }
#endif
    return MOE_PF_L2;
}

__attribute__((constructor)) static void init_prefetch_level(void) {
    moe_prefetch_level = moe_prefetch_detect();
    const char *e = getenv("MOE_PREFETCH_BYTES");
    char *end;
    const long long v = e ? strtoll(e, &end, 10) : -1;
    if (e && *e && !*end && v >= 0 && v <= (1 << 20)) moe_prefetch_min_bytes = (size_t)v;
}
