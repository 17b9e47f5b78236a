// SwiGLU with a vectorized exp: the scheme and why are in include/specdec_silu.h.
#include "specdec_silu.h"
#include <math.h>
#include <stdint.h>
#include <string.h>

// Each fma below is written as one (fused) and nothing else may be contracted, so that the three
// paths round identically.
#pragma clang fp contract(off)

#define EXP_LO (-87.0f)
// Up to 89: n = rint(x·log2 e) then reaches 128, whose exponent field (255) is +inf, so exp
// overflows to inf as expf does (from 88.38 on rather than 88.72; the SiLU there is −0 either way,
// against at most 4e-37) and no lane needs a separate test.
#define EXP_HI 89.0f
#define LOG2E 1.44269504088896341f
#define LN2_HI 0.693359375f
#define LN2_LO (-2.12194440e-4f)
#define P0 1.9875691500e-4f
#define P1 1.3981999507e-3f
#define P2 8.3334519073e-3f
#define P3 4.1665795894e-2f
#define P4 1.6666665459e-1f
#define P5 5.0000001201e-1f

static inline float silu_one(float a, float u) {
    // −a as 0 − a, as the vector code does (the bits differ only for ±0, where exp is 1 either way).
    const float xin = 0.0f - a;
    // As MAXPS/MINPS: a NaN becomes the bound (and the result is NaN through a anyway).
    float x = xin > EXP_LO ? xin : EXP_LO;
    x = x < EXP_HI ? x : EXP_HI;
    const float n = rintf(x * LOG2E);
    float r = fmaf(-n, LN2_HI, x);
    r = fmaf(-n, LN2_LO, r);
    float p = fmaf(P0, r, P1);
    p = fmaf(p, r, P2);
    p = fmaf(p, r, P3);
    p = fmaf(p, r, P4);
    p = fmaf(p, r, P5);
    const float r2 = r * r;
    const float er = fmaf(p, r2, r) + 1.0f;
    const int32_t bits = ((int32_t)n + 127) << 23;
    float scale;
    memcpy(&scale, &bits, 4);
    return a / (1.0f + er * scale) * u;
}

void specdec_swiglu(float *gate, const float *up, long count) {
    for (long i = 0; i < count; i++) gate[i] = silu_one(gate[i], up[i]);
}

#if defined(__x86_64__) && defined(__clang__)
#include <immintrin.h>

// silu_one on W/32 lanes at a time (W = 256 or 512: the intrinsics' names are pasted from it),
// then the tail through silu_one. ROUND: the width's round-to-nearest-even instruction.
#define SWIGLU_LANES(W, ROUND)                                                                             \
    const __m##W lo = _mm##W##_set1_ps(EXP_LO), hi = _mm##W##_set1_ps(EXP_HI);                             \
    const __m##W log2e = _mm##W##_set1_ps(LOG2E), one = _mm##W##_set1_ps(1.0f), zero = _mm##W##_setzero_ps(); \
    const __m##W c1 = _mm##W##_set1_ps(-LN2_HI), c2 = _mm##W##_set1_ps(-LN2_LO);                           \
    long i = 0;                                                                                            \
    for (; i + (W) / 32 <= count; i += (W) / 32) {                                                         \
        const __m##W a = _mm##W##_loadu_ps(gate + i);                                                      \
        const __m##W x = _mm##W##_min_ps(_mm##W##_max_ps(_mm##W##_sub_ps(zero, a), lo), hi);               \
        const __m##W n = ROUND(_mm##W##_mul_ps(x, log2e), _MM_FROUND_TO_NEAREST_INT | _MM_FROUND_NO_EXC);  \
        __m##W r = _mm##W##_fmadd_ps(n, c1, x);                                                            \
        r = _mm##W##_fmadd_ps(n, c2, r);                                                                   \
        __m##W p = _mm##W##_fmadd_ps(_mm##W##_set1_ps(P0), r, _mm##W##_set1_ps(P1));                       \
        p = _mm##W##_fmadd_ps(p, r, _mm##W##_set1_ps(P2));                                                 \
        p = _mm##W##_fmadd_ps(p, r, _mm##W##_set1_ps(P3));                                                 \
        p = _mm##W##_fmadd_ps(p, r, _mm##W##_set1_ps(P4));                                                 \
        p = _mm##W##_fmadd_ps(p, r, _mm##W##_set1_ps(P5));                                                 \
        const __m##W er = _mm##W##_add_ps(_mm##W##_fmadd_ps(p, _mm##W##_mul_ps(r, r), r), one);            \
        const __m##W##i bits = _mm##W##_slli_epi32(_mm##W##_add_epi32(_mm##W##_cvtps_epi32(n), _mm##W##_set1_epi32(127)), 23); \
        const __m##W e = _mm##W##_mul_ps(er, _mm##W##_castsi##W##_ps(bits));                              \
        const __m##W s = _mm##W##_div_ps(a, _mm##W##_add_ps(one, e));                                     \
        _mm##W##_storeu_ps(gate + i, _mm##W##_mul_ps(s, _mm##W##_loadu_ps(up + i)));                       \
    }                                                                                                      \
    for (; i < count; i++) gate[i] = silu_one(gate[i], up[i]);

__attribute__((target("avx,avx2,fma"))) void specdec_swiglu_avx2(float *gate, const float *up, long count) {
    SWIGLU_LANES(256, _mm256_round_ps)
}

__attribute__((target("avx512f,avx512vl,avx,avx2,fma"))) void specdec_swiglu_avx512(float *gate, const float *up, long count) {
    SWIGLU_LANES(512, _mm512_roundscale_ps)
}
#else
void specdec_swiglu_avx2(float *gate, const float *up, long count) { specdec_swiglu(gate, up, count); }
void specdec_swiglu_avx512(float *gate, const float *up, long count) { specdec_swiglu(gate, up, count); }
#endif
