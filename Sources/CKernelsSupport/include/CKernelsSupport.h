// Small C helpers for the Kernels module: CPU feature detection (cpuid/xgetbv cannot be written
// in Swift). Everything here is compiled for the baseline target: nothing in this target uses AVX.
#ifndef SPECDEC_CKERNELSSUPPORT_H
#define SPECDEC_CKERNELSSUPPORT_H

#include <stdint.h>

/// 1 when the CPU and the OS support everything the KernelsAVX2 module is compiled for
/// (`-target-cpu haswell`: AVX, AVX2, FMA, F16C, BMI1, BMI2, LZCNT, MOVBE, POPCNT, with the YMM
/// state enabled by the OS), else 0. Always 0 on other architectures.
int specdec_cpu_supports_haswell(void);

#endif
