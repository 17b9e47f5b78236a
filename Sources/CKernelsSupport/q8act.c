// Int8-activation kernels: see include/specdec_q8act.h for the formats and the exact formula.
// The scalar functions are compiled for the baseline target; the *_avx2 ones carry target
// attributes and must only run after specdec_cpu_supports_haswell() said yes. Both compute
// the same IEEE operations in the same order (integer parts are exact), so they agree bit for bit.
#include "specdec_q8act.h"
#include <math.h>
#include <string.h>

#pragma clang fp contract(off)

enum { ROW_GROUP = 16 };

static inline long round8(long b) { return (b + 7) & ~7L; }

static inline float half_to_float(const uint8_t *p) {
    const uint16_t h = (uint16_t)(p[0] | (p[1] << 8));
    const uint32_t sign = (uint32_t)(h & 0x8000) << 16;
    const uint32_t exp = (h >> 10) & 0x1f, mant = h & 0x3ff;
    union { uint32_t u; float f; } r;
    if (exp == 0) {
        const float v = (float)mant * (1.0f / 16777216.0f);
        return sign ? -v : v;
    }
    if (exp == 31) r.u = sign | 0x7f800000u | (mant << 13);
    else r.u = sign | ((exp + 112) << 23) | (mant << 13);
    return r.f;
}

static inline float hsum8_scalar(const float *v) {
    float a[4], b[2];
    for (int i = 0; i < 4; i++) a[i] = v[i] + v[i + 4];
    b[0] = a[0] + a[2]; b[1] = a[1] + a[3];
    return b[0] + b[1];
}

static inline long block_bytes(int wtype) {
    return wtype == SPECDEC_Q8W_Q4_0 ? 18 : wtype == SPECDEC_Q8W_Q4_1 ? 20 : 34;
}

// MARK: - Scalar

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

void specdec_q8_matmul(int wtype, const void *rows, long rowBytes, long rowCount,
                       const int8_t *xq, const float *xd, const float *xs, long bstride,
                       long n, long count, float *y, long yStride) {
    const long blocks = count / 32, bp = round8(blocks), bb = block_bytes(wtype);
    float mw[bp > 0 ? bp : 1];
    for (long r = 0; r < rowCount; r++) {
        const uint8_t *row = (const uint8_t *)rows + r * rowBytes;
        for (long b = 0; b < bp; b++) mw[b] = (wtype == SPECDEC_Q8W_Q4_1 && b < blocks) ? half_to_float(row + b * bb + 2) : 0.0f;
        for (long t = 0; t < n; t++) {
            const int8_t *xt = xq + t * count;
            const float *dt = xd + t * bstride, *st = xs + t * bstride;
            float acc[8] = {0}, macc[8] = {0};
            for (long b = 0; b < blocks; b++) {
                const uint8_t *p = row + b * bb;
                const float dw = half_to_float(p);
                int w[32];
                if (wtype == SPECDEC_Q8W_Q8_0) {
                    for (int j = 0; j < 32; j++) w[j] = (int8_t)p[2 + j];
                } else {
                    const uint8_t *qb = p + (wtype == SPECDEC_Q8W_Q4_1 ? 4 : 2);
                    const int off = wtype == SPECDEC_Q8W_Q4_0 ? 8 : 0;
                    for (int j = 0; j < 16; j++) { w[j] = (qb[j] & 15) - off; w[j + 16] = (qb[j] >> 4) - off; }
                }
                const float sc = dw * dt[b];
                for (int k = 0; k < 8; k++) {
                    int is = 0;
                    for (int j = 4 * k; j < 4 * k + 4; j++) is += w[j] * xt[32 * b + j];
                    acc[k] = fmaf((float)is, sc, acc[k]);
                }
            }
            float out = hsum8_scalar(acc);
            if (wtype == SPECDEC_Q8W_Q4_1) {
                for (long c = 0; c < bp; c += 8)
                    for (int l = 0; l < 8; l++) macc[l] = fmaf(mw[c + l], st[c + l], macc[l]);
                out = out + hsum8_scalar(macc);
            }
            y[t * yStride + r] = out;
        }
    }
}

// MARK: - AVX2

#if defined(__x86_64__) && defined(__clang__)
#include <immintrin.h>

#define AVX2_FN __attribute__((target("avx,avx2,fma,f16c")))
#define AVX2_INLINE static inline __attribute__((always_inline, target("avx,avx2,fma,f16c")))

AVX2_INLINE float hsum8_avx(__m256 v) {
    const __m128 a = _mm_add_ps(_mm256_castps256_ps128(v), _mm256_extractf128_ps(v, 1));
    const __m128 b = _mm_add_ps(a, _mm_movehl_ps(a, a));
    return _mm_cvtss_f32(_mm_add_ss(b, _mm_shuffle_ps(b, b, 1)));
}

AVX2_INLINE float half_f16c(const uint8_t *p) {
    uint16_t h;
    memcpy(&h, p, 2);
    return _cvtsh_ss(h);
}

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

/// One row times T (1...4) quantized activation vectors.
AVX2_INLINE void q8_tile(const int wtype, const int T, const uint8_t *row, long blocks, long bp,
                         const float *mw, const int8_t *xq, const float *xd, const float *xs, long bstride,
                         long count, float *y, long yStride) {
    const long bb = block_bytes(wtype);
    const __m256i ones = _mm256_set1_epi16(1), m4 = _mm256_set1_epi8(15), eight = _mm256_set1_epi8(8);
    __m256 acc[4] = {_mm256_setzero_ps(), _mm256_setzero_ps(), _mm256_setzero_ps(), _mm256_setzero_ps()};
    const uint8_t *p = row;
    for (long b = 0; b < blocks; b++, p += bb) {
        const __m256 dwb = _mm256_set1_ps(half_f16c(p));
        __m256i w;   // Q4_1: unsigned nibbles; Q4_0, Q8_0: signed weights
        if (wtype == SPECDEC_Q8W_Q8_0) {
            w = _mm256_loadu_si256((const __m256i *)(p + 2));
        } else {
            const __m128i raw = _mm_loadu_si128((const __m128i *)(p + (wtype == SPECDEC_Q8W_Q4_1 ? 4 : 2)));
            w = _mm256_and_si256(_mm256_set_m128i(_mm_srli_epi16(raw, 4), raw), m4);
            if (wtype == SPECDEC_Q8W_Q4_0) w = _mm256_sub_epi8(w, eight);
        }
        const __m256i wabs = wtype == SPECDEC_Q8W_Q4_1 ? w : _mm256_abs_epi8(w);
        for (int t = 0; t < T; t++) {
            const __m256i x = _mm256_loadu_si256((const __m256i *)(xq + t * count + 32 * b));
            const __m256i xs8 = wtype == SPECDEC_Q8W_Q4_1 ? x : _mm256_sign_epi8(x, w);
            const __m256 f = _mm256_cvtepi32_ps(_mm256_madd_epi16(_mm256_maddubs_epi16(wabs, xs8), ones));
            const __m256 sc = _mm256_mul_ps(dwb, _mm256_broadcast_ss(xd + t * bstride + b));
            acc[t] = _mm256_fmadd_ps(f, sc, acc[t]);
        }
    }
    for (int t = 0; t < T; t++) {
        float out = hsum8_avx(acc[t]);
        if (wtype == SPECDEC_Q8W_Q4_1) {
            __m256 m = _mm256_setzero_ps();
            for (long c = 0; c < bp; c += 8)
                m = _mm256_fmadd_ps(_mm256_loadu_ps(mw + c), _mm256_loadu_ps(xs + t * bstride + c), m);
            out = out + hsum8_avx(m);
        }
        y[t * yStride] = out;
    }
}

#define Q8_ROWS_FN(NAME, WT, T) \
    __attribute__((noinline, target("avx,avx2,fma,f16c"))) static void NAME( \
        const uint8_t *rows, long rowBytes, long nr, long blocks, long bp, const float *mw, \
        const int8_t *xq, const float *xd, const float *xs, long bstride, long count, float *y, long yStride) { \
        for (long r = 0; r < nr; r++) \
            q8_tile(WT, T, rows + r * rowBytes, blocks, bp, mw + r * bp, xq, xd, xs, bstride, count, y + r, yStride); \
    }

Q8_ROWS_FN(rows_q40_1, SPECDEC_Q8W_Q4_0, 1)
Q8_ROWS_FN(rows_q40_2, SPECDEC_Q8W_Q4_0, 2)
Q8_ROWS_FN(rows_q40_3, SPECDEC_Q8W_Q4_0, 3)
Q8_ROWS_FN(rows_q40_4, SPECDEC_Q8W_Q4_0, 4)
Q8_ROWS_FN(rows_q41_1, SPECDEC_Q8W_Q4_1, 1)
Q8_ROWS_FN(rows_q41_2, SPECDEC_Q8W_Q4_1, 2)
Q8_ROWS_FN(rows_q41_3, SPECDEC_Q8W_Q4_1, 3)
Q8_ROWS_FN(rows_q41_4, SPECDEC_Q8W_Q4_1, 4)
Q8_ROWS_FN(rows_q80_1, SPECDEC_Q8W_Q8_0, 1)
Q8_ROWS_FN(rows_q80_2, SPECDEC_Q8W_Q8_0, 2)
Q8_ROWS_FN(rows_q80_3, SPECDEC_Q8W_Q8_0, 3)
Q8_ROWS_FN(rows_q80_4, SPECDEC_Q8W_Q8_0, 4)

typedef void (*rows_fn)(const uint8_t *, long, long, long, long, const float *, const int8_t *, const float *,
                        const float *, long, long, float *, long);

AVX2_FN void specdec_q8_matmul_avx2(int wtype, const void *rows, long rowBytes, long rowCount,
                                    const int8_t *xq, const float *xd, const float *xs, long bstride,
                                    long n, long count, float *y, long yStride) {
    static const rows_fn fns[3][4] = {
        {rows_q40_1, rows_q40_2, rows_q40_3, rows_q40_4},
        {rows_q41_1, rows_q41_2, rows_q41_3, rows_q41_4},
        {rows_q80_1, rows_q80_2, rows_q80_3, rows_q80_4},
    };
    const long blocks = count / 32, bp = round8(blocks), bb = block_bytes(wtype);
    float mw[ROW_GROUP * (bp > 0 ? bp : 1)];
    // Rows in groups (their bytes stay in L1 while every token tile passes over them).
    for (long r0 = 0; r0 < rowCount; r0 += ROW_GROUP) {
        const long nr = rowCount - r0 < ROW_GROUP ? rowCount - r0 : ROW_GROUP;
        const uint8_t *w = (const uint8_t *)rows + r0 * rowBytes;
        if (wtype == SPECDEC_Q8W_Q4_1) {
            for (long r = 0; r < nr; r++)
                for (long b = 0; b < bp; b++)
                    mw[r * bp + b] = b < blocks ? half_f16c(w + r * rowBytes + b * bb + 2) : 0.0f;
        }
        long t = 0;
        for (; t + 4 <= n; t += 4)
            fns[wtype][3](w, rowBytes, nr, blocks, bp, mw, xq + t * count, xd + t * bstride, xs + t * bstride, bstride,
                          count, y + t * yStride + r0, yStride);
        if (n - t > 0)
            fns[wtype][n - t - 1](w, rowBytes, nr, blocks, bp, mw, xq + t * count, xd + t * bstride, xs + t * bstride,
                                  bstride, count, y + t * yStride + r0, yStride);
    }
}

#else
void specdec_q8_quantize_avx2(const float *x, long n, long count, int8_t *qs, float *d, float *s, long bstride) {
    specdec_q8_quantize(x, n, count, qs, d, s, bstride);
}
void specdec_q8_matmul_avx2(int wtype, const void *rows, long rowBytes, long rowCount,
                            const int8_t *xq, const float *xd, const float *xs, long bstride,
                            long n, long count, float *y, long yStride) {
    specdec_q8_matmul(wtype, rows, rowBytes, rowCount, xq, xd, xs, bstride, n, count, y, yStride);
}
#endif
