// SwiGLU with a vectorized exp: the scheme and why are in include/specdec_silu.h.
#include "specdec_silu.h"
#include <math.h>
#include <stdint.h>
#include <string.h>

// Each fma below is written as one (fused) and nothing else may be contracted, so that the three
// paths round identically.
#pragma clang fp contract(off)

#define EXP_LO (-87.0f)
#define EXP_HI 88.0f
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
    // Past the top the exponential is infinite, as expf's, and the SiLU −0.
    const float e = xin > EXP_HI ? INFINITY : er * scale;
    return a / (1.0f + e) * u;
}

void specdec_swiglu(float *gate, const float *up, long count) {
    for (long i = 0; i < count; i++) gate[i] = silu_one(gate[i], up[i]);
}

#if defined(__x86_64__) && defined(__clang__)
#include <immintrin.h>

#define AVX2_FN __attribute__((target("avx,avx2,fma")))
#define AVX512_FN __attribute__((target("avx512f,avx512vl,avx,avx2,fma")))

AVX2_FN void specdec_swiglu_avx2(float *gate, const float *up, long count) {
    const __m256 lo = _mm256_set1_ps(EXP_LO), hi = _mm256_set1_ps(EXP_HI), log2e = _mm256_set1_ps(LOG2E);
    const __m256 c1 = _mm256_set1_ps(-LN2_HI), c2 = _mm256_set1_ps(-LN2_LO), one = _mm256_set1_ps(1.0f);
    const __m256 zero = _mm256_setzero_ps(), inf = _mm256_set1_ps(INFINITY);
    long i = 0;
    for (; i + 8 <= count; i += 8) {
        const __m256 a = _mm256_loadu_ps(gate + i);
        // −a as 0 − a: the same bits as the scalar negation for every a but ±0 (where exp is 1 either way).
        const __m256 xin = _mm256_sub_ps(zero, a);
        const __m256 x = _mm256_min_ps(_mm256_max_ps(xin, lo), hi);
        const __m256 n = _mm256_round_ps(_mm256_mul_ps(x, log2e), _MM_FROUND_TO_NEAREST_INT | _MM_FROUND_NO_EXC);
        __m256 r = _mm256_fmadd_ps(n, c1, x);
        r = _mm256_fmadd_ps(n, c2, r);
        __m256 p = _mm256_fmadd_ps(_mm256_set1_ps(P0), r, _mm256_set1_ps(P1));
        p = _mm256_fmadd_ps(p, r, _mm256_set1_ps(P2));
        p = _mm256_fmadd_ps(p, r, _mm256_set1_ps(P3));
        p = _mm256_fmadd_ps(p, r, _mm256_set1_ps(P4));
        p = _mm256_fmadd_ps(p, r, _mm256_set1_ps(P5));
        const __m256 r2 = _mm256_mul_ps(r, r);
        const __m256 er = _mm256_add_ps(_mm256_fmadd_ps(p, r2, r), one);
        const __m256i bits = _mm256_slli_epi32(_mm256_add_epi32(_mm256_cvtps_epi32(n), _mm256_set1_epi32(127)), 23);
        const __m256 e = _mm256_blendv_ps(_mm256_mul_ps(er, _mm256_castsi256_ps(bits)), inf,
                                          _mm256_cmp_ps(xin, hi, _CMP_GT_OQ));
        const __m256 s = _mm256_div_ps(a, _mm256_add_ps(one, e));
        _mm256_storeu_ps(gate + i, _mm256_mul_ps(s, _mm256_loadu_ps(up + i)));
    }
    for (; i < count; i++) gate[i] = silu_one(gate[i], up[i]);
}

AVX512_FN void specdec_swiglu_avx512(float *gate, const float *up, long count) {
    const __m512 lo = _mm512_set1_ps(EXP_LO), hi = _mm512_set1_ps(EXP_HI), log2e = _mm512_set1_ps(LOG2E);
    const __m512 c1 = _mm512_set1_ps(-LN2_HI), c2 = _mm512_set1_ps(-LN2_LO), one = _mm512_set1_ps(1.0f);
    const __m512 zero = _mm512_setzero_ps(), inf = _mm512_set1_ps(INFINITY);
    long i = 0;
    for (; i + 16 <= count; i += 16) {
        const __m512 a = _mm512_loadu_ps(gate + i);
        const __m512 xin = _mm512_sub_ps(zero, a);
        const __m512 x = _mm512_min_ps(_mm512_max_ps(xin, lo), hi);
        const __m512 n = _mm512_roundscale_ps(_mm512_mul_ps(x, log2e), _MM_FROUND_TO_NEAREST_INT | _MM_FROUND_NO_EXC);
        __m512 r = _mm512_fmadd_ps(n, c1, x);
        r = _mm512_fmadd_ps(n, c2, r);
        __m512 p = _mm512_fmadd_ps(_mm512_set1_ps(P0), r, _mm512_set1_ps(P1));
        p = _mm512_fmadd_ps(p, r, _mm512_set1_ps(P2));
        p = _mm512_fmadd_ps(p, r, _mm512_set1_ps(P3));
        p = _mm512_fmadd_ps(p, r, _mm512_set1_ps(P4));
        p = _mm512_fmadd_ps(p, r, _mm512_set1_ps(P5));
        const __m512 r2 = _mm512_mul_ps(r, r);
        const __m512 er = _mm512_add_ps(_mm512_fmadd_ps(p, r2, r), one);
        const __m512i bits = _mm512_slli_epi32(_mm512_add_epi32(_mm512_cvtps_epi32(n), _mm512_set1_epi32(127)), 23);
        const __m512 e = _mm512_mask_blend_ps(_mm512_cmp_ps_mask(xin, hi, _CMP_GT_OQ),
                                              _mm512_mul_ps(er, _mm512_castsi512_ps(bits)), inf);
        const __m512 s = _mm512_div_ps(a, _mm512_add_ps(one, e));
        _mm512_storeu_ps(gate + i, _mm512_mul_ps(s, _mm512_loadu_ps(up + i)));
    }
    specdec_swiglu_avx2(gate + i, up + i, count - i);
}
#else
void specdec_swiglu_avx2(float *gate, const float *up, long count) { specdec_swiglu(gate, up, count); }
void specdec_swiglu_avx512(float *gate, const float *up, long count) { specdec_swiglu(gate, up, count); }
#endif
