// SwiGLU's activation, vectorized: gate[i] = silu(gate[i]) · up[i] = gate[i] / (1 + exp(−gate[i])) · up[i].
//
// Why: with libm's scalar expf this loop took 7.8% of all CPU samples of a two-thread decode (one
// expf per FFN element, 46K per token for SmolLM2-135M), all on the calling thread while the
// pool's other thread waited; now 1.6%. exp here is the Cephes single-precision scheme: n = rint(x·log2 e),
// r = x − n·ln2 (two-part constant), e^r = 1 + r + r²·P(r) with a degree-5 polynomial, times 2^n
// through the exponent bits, with x clamped to [−87, 89] (n = 128 is the exponent of +inf, so it
// overflows as expf does). The SiLU's error is at most 1.74e-7 relative over every float in
// [−100, 100] (checked exhaustively); below −88.38 it returns −0 where the exact value is under
// 4e-37 in magnitude, above 87 it returns x.
//
// Every path does the same float operations in the same order (each fma fused, the division
// correctly rounded), so the scalar, AVX2 and AVX-512 functions agree bit for bit and an
// element's result never depends on `count` or its position: batch invariance holds. The _avx2
// function needs specdec_cpu_supports_haswell(), the _avx512 one specdec_cpu_supports_avx512vnni().
#ifndef SPECDEC_SILU_H
#define SPECDEC_SILU_H

void specdec_swiglu(float *gate, const float *up, long count);
void specdec_swiglu_avx2(float *gate, const float *up, long count);
void specdec_swiglu_avx512(float *gate, const float *up, long count);

#endif
