/* cpu.c — the run-time choices of cpu.h. */
#include "core/cpu.h"
#if defined(__AVX2__) && defined(__FMA__) && defined(__F16C__)
#include "core/simd.h" /* MOE_VNNI */
#endif

#include <stdio.h>
#include <stdlib.h>
#include <strings.h>
#if defined(__x86_64__) || defined(__i386__)
#include <cpuid.h>
#endif

int moe_prefetch_level = MOE_PF_L2;
int moe_prefetch_il_level = MOE_PF_L2;
size_t moe_prefetch_min_bytes = 4096;

/* "l1", "l2", "none" (any case) → MOE_PF_*; anything else (or unset) → -1 */
static int prefetch_choice(const char *e) {
    if (!e) return -1;
    if (strcasecmp(e, "l1") == 0) return MOE_PF_L1;
    if (strcasecmp(e, "l2") == 0) return MOE_PF_L2;
    if (strcasecmp(e, "none") == 0) return MOE_PF_NONE;
    return -1;
}

/* Why by CPU. The row-major four-row kernels prefetch the same position rows ahead, one
 * line per row at a time: four streams a few KB apart. Into L1, each prefetch holds one
 * of the core's few L1 miss buffers until the line arrives, which caps a core's stream at
 * (buffers × 64 B) / DRAM latency; into L2 the demand loads then hit L2, which the
 * kernels' out-of-order window hides. On Zen 4 the L1 prefetch held a core to ~13 GB/s
 * from DRAM where the L2 one reached the read bandwidth (~22 GB/s per core); on Zen 5
 * (family 1Ah) L1 was 10–40 % faster. The interleaved layouts are one stream in address
 * order, which the hardware prefetchers follow by themselves: on Zen 5 a prefetch 4.5 KB
 * ahead still made Q4_0 a third faster per core, but on Zen 4 every software prefetch,
 * into L1 or L2, near or far, slowed the interleaved kernels from DRAM (one core: Q4_0
 * 26 → 10 GB/s, Q5_0 20 → 8, Q8_0 25 → 20; mix-1b Q4_0 decode at two threads 146-158 → 88-90 tokens/s)
 * while the float types' row-major kernels still gained from L2 (F16 15-18 → 22). Zen 4
 * is told from Zen 3 (the same family, 19h, not measured) by AVX-512, which Zen 4 is the
 * first AMD core to have. Other CPUs were not measured: for row-major matrices they keep
 * L2, what Intel's guides advise for streams; for interleaved ones L1, the choice that
 * lost least on the two cores measured (paired decode, mix-1b: Zen 5 L1 best, L2 0.96×;
 * Zen 4 none best, L1 0.98×, L2 0.47× for Q4_0). bench/prefetch measures the choices on
 * any machine, and docs/BENCHMARKS.md has the numbers. */
int moe_prefetch_detect(bool il) {
    int v = il ? prefetch_choice(getenv("MOE_PREFETCH_IL")) : -1;
    if (v < 0) v = prefetch_choice(getenv("MOE_PREFETCH"));
    if (v >= 0) return v;
#if defined(__x86_64__) || defined(__i386__)
    unsigned a, b, c, d;
    /* vendor "AuthenticAMD": ebx = "Auth"; family = base + extended when base is 0Fh */
    if (__get_cpuid(0, &a, &b, &c, &d) && b == 0x68747541u && __get_cpuid(1, &a, &b, &c, &d)) {
        const unsigned base = (a >> 8) & 0xf, family = base == 0xf ? base + ((a >> 20) & 0xff) : base;
        if (family >= 0x1a) return MOE_PF_L1;
        /* leaf 7, ebx bit 16: AVX512F */
        if (family == 0x19 && __get_cpuid_count(7, 0, &a, &b, &c, &d) && (b >> 16 & 1)) return il ? MOE_PF_NONE : MOE_PF_L2;
    }
#endif
    return il ? MOE_PF_L1 : MOE_PF_L2;
}

__attribute__((constructor)) static void init_prefetch_level(void) {
    moe_prefetch_level = moe_prefetch_detect(false);
    moe_prefetch_il_level = moe_prefetch_detect(true);
    const char *e = getenv("MOE_PREFETCH_BYTES");
    char *end;
    const long long v = e ? strtoll(e, &end, 10) : -1;
    if (e && *e && !*end && v >= 0 && v <= (1 << 20)) moe_prefetch_min_bytes = (size_t)v;
}

const char *moe_system_info(void) {
    static _Thread_local char buf[160];
    /* the paths the kernels were compiled with; only the SIMD kernels prefetch */
#if defined(__AVX2__) && defined(__FMA__) && defined(__F16C__)
#if MOE_VNNI
    const char *simd = "avx2 fma f16c vnni(" MOE_VNNI_NAME ")";
#else
    const char *simd = "avx2 fma f16c";
#endif
    snprintf(buf, sizeof buf, "simd %s; prefetch row-major %s, interleaved %s", simd, moe_prefetch_name(moe_prefetch_level),
             moe_prefetch_name(moe_prefetch_il_level));
#else
    snprintf(buf, sizeof buf, "simd none (scalar kernels, no prefetch)");
#endif
    return buf;
}
