#include "CKernelsSupport.h"

#if defined(__x86_64__) || defined(__i386__)
#include <cpuid.h>

static uint64_t xgetbv0(void) {
    uint32_t eax, edx;
    __asm__ __volatile__("xgetbv" : "=a"(eax), "=d"(edx) : "c"(0));
    return ((uint64_t)edx << 32) | eax;
}

int specdec_cpu_supports_haswell(void) {
    unsigned a, b, c, d;
    if (!__get_cpuid(1, &a, &b, &c, &d)) return 0;
    const int fma = (c >> 12) & 1, movbe = (c >> 22) & 1, popcnt = (c >> 23) & 1;
    const int osxsave = (c >> 27) & 1, avx = (c >> 28) & 1, f16c = (c >> 29) & 1;
    if (!(fma && movbe && popcnt && osxsave && avx && f16c)) return 0;
    // The OS must save the XMM and YMM registers (XCR0 bits 1 and 2).
    if ((xgetbv0() & 6) != 6) return 0;
    if (__get_cpuid_max(0, 0) < 7) return 0;
    __cpuid_count(7, 0, a, b, c, d);
    const int bmi1 = (b >> 3) & 1, avx2 = (b >> 5) & 1, bmi2 = (b >> 8) & 1;
    if (!(bmi1 && avx2 && bmi2)) return 0;
    if (__get_cpuid_max(0x80000000, 0) < 0x80000001) return 0;
    __cpuid(0x80000001, a, b, c, d);
    const int lzcnt = (c >> 5) & 1;
    return lzcnt;
}
#else
int specdec_cpu_supports_haswell(void) { return 0; }
#endif
