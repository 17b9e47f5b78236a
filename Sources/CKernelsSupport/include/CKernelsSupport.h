// Small C helpers for the Kernels module: CPU feature detection (cpuid/xgetbv cannot be written
// in Swift) and the few atomic operations the thread pool needs (C11 atomics, usable from Swift
// without the Synchronization module's OS-version requirements). Everything here is compiled for
// the baseline target: nothing in this target uses AVX, except the int8-activation kernels' and
// SwiGLU's functions marked `_avx2`/`_vnni`/`_avx512` (specdec_q8act.h, specdec_x8.h,
// specdec_silu.h), which carry per-function target attributes.
#ifndef SPECDEC_CKERNELSSUPPORT_H
#define SPECDEC_CKERNELSSUPPORT_H

#include <stdint.h>
#include "specdec_q8act.h"
#include "specdec_x8.h"
#include "specdec_silu.h"

/// 1 when the CPU and the OS support everything the KernelsAVX2 module is compiled for
/// (`-target-cpu haswell`: AVX, AVX2, FMA, F16C, BMI1, BMI2, LZCNT, MOVBE, POPCNT, with the YMM
/// state enabled by the OS), else 0. Always 0 on other architectures.
int specdec_cpu_supports_haswell(void);

/// A 64-bit atomic integer, accessed only through the functions below (all sequentially consistent).
/// (Allocate it 64-byte aligned so that it has a cache line to itself.)
typedef struct specdec_atomic64 { int64_t value; char pad[56]; } specdec_atomic64;

static inline int64_t specdec_atomic_load(specdec_atomic64 *a) {
    return __atomic_load_n(&a->value, __ATOMIC_SEQ_CST);
}
static inline void specdec_atomic_store(specdec_atomic64 *a, int64_t v) {
    __atomic_store_n(&a->value, v, __ATOMIC_SEQ_CST);
}
static inline int64_t specdec_atomic_fetch_add(specdec_atomic64 *a, int64_t v) {
    return __atomic_fetch_add(&a->value, v, __ATOMIC_SEQ_CST);
}
/// Replaces *expected by the current value when it differs (and returns 0); else stores desired.
static inline int specdec_atomic_compare_exchange(specdec_atomic64 *a, int64_t *expected, int64_t desired) {
    return __atomic_compare_exchange_n(&a->value, expected, desired, 0, __ATOMIC_SEQ_CST, __ATOMIC_SEQ_CST);
}

/// A spin-wait hint (x86 `pause`, ARM `yield`).
static inline void specdec_cpu_relax(void) {
#if defined(__x86_64__) || defined(__i386__)
    __builtin_ia32_pause();
#elif defined(__aarch64__) || defined(__arm__)
    __asm__ __volatile__("yield");
#endif
}

/// Asks for the cache line holding `p` ahead of its use: a hint that never faults, whatever `p` is.
static inline void specdec_prefetch(const void *p) { __builtin_prefetch(p, 0, 3); }

#endif
