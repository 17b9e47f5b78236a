// Activation quantization of the int8-activation path (include/specdec_q8act.h). The scalar
// function is compiled for the baseline target; the _avx2 one carries target attributes and must
// only run after specdec_cpu_supports_haswell() said yes. Both give the same bits.
#include "specdec_q8act.h"
#include <math.h>
#include <string.h>

#pragma clang fp contract(off)

void specdec_q8_quantize(const float *x, long n, long count, int8_t *qs, float *d, float *s, long bstride) {
    const long blocks = count / 32;
    for (long t = 0; t < n; t++) {
        float *dd = d + t * bstride, *sd = s + t * bstride;
        for (long b = 0; b < blocks; b++) {
            const float *src = x + t * count + 32 * b;
            int8_t *q = qs + t * count + 32 * b;
            float amax = 0;
            for (int j = 0; j < 32; j++) { const float a = fabsf(src[j]); amax = a > amax ? a : amax; }
            const float dv = amax / 127.0f;
            const float id = dv != 0.0f ? 1.0f / dv : 0.0f;
            int sum = 0;
            for (int j = 0; j < 32; j++) {
                const float v = src[j] * id;
                int qi = (int)nearbyintf(v);
                qi = qi > 127 ? 127 : qi < -127 ? -127 : qi;
                q[j] = (int8_t)qi;
                sum += qi;
            }
            dd[b] = dv;
            sd[b] = dv * (float)sum;
        }
        for (long b = blocks; b < bstride; b++) { dd[b] = 0; sd[b] = 0; }
    }
}

#if defined(__x86_64__) && defined(__clang__)
#include <immintrin.h>

#define AVX2_FN __attribute__((target("avx,avx2,fma,f16c")))

AVX2_FN void specdec_q8_quantize_avx2(const float *x, long n, long count, int8_t *qs, float *d, float *s, long bstride) {
    const long blocks = count / 32;
    const __m256 signBit = _mm256_set1_ps(-0.0f);
    const __m256i perm = _mm256_setr_epi32(0, 4, 1, 5, 2, 6, 3, 7);
    const __m256i lo = _mm256_set1_epi32(-127), hi = _mm256_set1_epi32(127);
    for (long t = 0; t < n; t++) {
        float *dd = d + t * bstride, *sd = s + t * bstride;
        for (long b = 0; b < blocks; b++) {
            const float *src = x + t * count + 32 * b;
            __m256 v0 = _mm256_loadu_ps(src), v1 = _mm256_loadu_ps(src + 8);
            __m256 v2 = _mm256_loadu_ps(src + 16), v3 = _mm256_loadu_ps(src + 24);
            __m256 m = _mm256_max_ps(_mm256_max_ps(_mm256_andnot_ps(signBit, v0), _mm256_andnot_ps(signBit, v1)),
                                     _mm256_max_ps(_mm256_andnot_ps(signBit, v2), _mm256_andnot_ps(signBit, v3)));
            __m128 m4 = _mm_max_ps(_mm256_castps256_ps128(m), _mm256_extractf128_ps(m, 1));
            m4 = _mm_max_ps(m4, _mm_movehl_ps(m4, m4));
            m4 = _mm_max_ss(m4, _mm_movehdup_ps(m4));
            const float amax = _mm_cvtss_f32(m4);
            const float dv = amax / 127.0f;
            const float id = dv != 0.0f ? 1.0f / dv : 0.0f;
            const __m256 idv = _mm256_set1_ps(id);
            __m256i i0 = _mm256_cvtps_epi32(_mm256_mul_ps(v0, idv)), i1 = _mm256_cvtps_epi32(_mm256_mul_ps(v1, idv));
            __m256i i2 = _mm256_cvtps_epi32(_mm256_mul_ps(v2, idv)), i3 = _mm256_cvtps_epi32(_mm256_mul_ps(v3, idv));
            i0 = _mm256_min_epi32(_mm256_max_epi32(i0, lo), hi); i1 = _mm256_min_epi32(_mm256_max_epi32(i1, lo), hi);
            i2 = _mm256_min_epi32(_mm256_max_epi32(i2, lo), hi); i3 = _mm256_min_epi32(_mm256_max_epi32(i3, lo), hi);
            __m256i sum = _mm256_add_epi32(_mm256_add_epi32(i0, i1), _mm256_add_epi32(i2, i3));
            __m128i s4 = _mm_add_epi32(_mm256_castsi256_si128(sum), _mm256_extracti128_si256(sum, 1));
            s4 = _mm_add_epi32(s4, _mm_shuffle_epi32(s4, 0x4e));
            s4 = _mm_add_epi32(s4, _mm_shuffle_epi32(s4, 0xb1));
            const int isum = _mm_cvtsi128_si32(s4);
            __m256i p = _mm256_packs_epi16(_mm256_packs_epi32(i0, i1), _mm256_packs_epi32(i2, i3));
            p = _mm256_permutevar8x32_epi32(p, perm);
            _mm256_storeu_si256((__m256i *)(qs + t * count + 32 * b), p);
            dd[b] = dv;
            sd[b] = dv * (float)isum;
        }
        for (long b = blocks; b < bstride; b++) { dd[b] = 0; sd[b] = 0; }
    }
}

#else
void specdec_q8_quantize_avx2(const float *x, long n, long count, int8_t *qs, float *d, float *s, long bstride) {
    specdec_q8_quantize(x, n, count, qs, d, s, bstride);
}
#endif
