// SwiGLU's activation, vectorized: gate[i] = silu(gate[i]) · up[i] = gate[i] / (1 + exp(−gate[i])) · up[i].
//
// Why: with libm's scalar expf this loop was 15% of a decode step's wall time at 2 threads (one
// expf per FFN element, 46K per token for SmolLM2-135M, on the calling thread while the pool's
// other threads wait). exp here is the Cephes single-precision scheme: n = rint(x·log2 e),
// r = x − n·ln2 (two-part constant), e^r = 1 + r + r²·P(r) with a degree-5 polynomial, times 2^n
// through the exponent bits; its error is within 2 ulp of expf on the clamped range [−87, 88]
// (outside it the SiLU is x or 0 to well below a float's resolution of the result).
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
