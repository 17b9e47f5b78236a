// Interleaved int8-activation kernels; the layout and the exact formula are in include/specdec_x8.h.
// The portable function is compiled for the baseline target. The _avx2 and _vnni ones carry
// target attributes and run only after the matching CPU check. All compute the integer block sums
// exactly and the float steps in the same order (no contraction: fp contract is off), so they
// give the same bits.
#include "specdec_x8.h"
#include "specdec_q8act.h"
#include "CKernelsSupport.h"
#include <string.h>
#include <math.h>

#pragma clang fp contract(off)

static inline long block_bytes(int wtype) {
    return wtype == SPECDEC_Q8W_Q4_0 ? 18 : wtype == SPECDEC_Q8W_Q4_1 ? 20 : 34;
}

static inline long record_bytes(int wtype) {
    return wtype == SPECDEC_Q8W_Q4_0 ? 144 : wtype == SPECDEC_Q8W_Q4_1 ? 160 : 272;
}
long specdec_x8_record_bytes(int wtype) { return record_bytes(wtype); }

/// Byte offset of the quants in a record, and the size of each 4-row-element chunk group.
static inline long quant_offset(int wtype) { return wtype == SPECDEC_Q8W_Q4_1 ? 32 : 16; }

void specdec_x8_repack(int wtype, const void *rows, long rowBytes, long rowCount, long count, void *out) {
    const long blocks = count / 32, groups = (rowCount + 7) / 8, rb = record_bytes(wtype);
    const long bb = block_bytes(wtype), qoff = quant_offset(wtype);
    const long chunks = wtype == SPECDEC_Q8W_Q8_0 ? 8 : 4;   // 4-byte chunks per row in a block
    const long qsrc = wtype == SPECDEC_Q8W_Q4_1 ? 4 : 2;     // quants' offset in a GGUF block
    uint8_t *o = (uint8_t *)out;
    for (long g = 0; g < groups; g++) {
        for (long b = 0; b < blocks; b++) {
            uint8_t *rec = o + (g * blocks + b) * rb;
            memset(rec, 0, (size_t)rb);
            for (long r = 0; r < 8; r++) {
                const long row = g * 8 + r;
                if (row >= rowCount) break;   // padding rows stay zero (d = 0: they add nothing)
                const uint8_t *src = (const uint8_t *)rows + row * rowBytes + b * bb;
                memcpy(rec + 2 * r, src, 2);                                           // d
                if (wtype == SPECDEC_Q8W_Q4_1) memcpy(rec + 16 + 2 * r, src + 2, 2);   // m
                for (long j = 0; j < chunks; j++) memcpy(rec + qoff + 32 * j + 4 * r, src + qsrc + 4 * j, 4);
            }
        }
    }
}

void specdec_x8_block_sums(const int8_t *qs, long n, long count, int32_t *qsum, long bstride) {
    const long blocks = count / 32;
    for (long t = 0; t < n; t++) {
        for (long b = 0; b < bstride; b++) {
            int32_t s = 0;
            if (b < blocks) for (int e = 0; e < 32; e++) s += qs[t * count + 32 * b + e];
            qsum[t * bstride + b] = s;
        }
    }
}

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

// MARK: - Portable

void specdec_x8_matmul(int wtype, const void *packed, long rowCount, long g0, long g1,
                       const int8_t *xq, const float *xd, const float *xs, const int32_t *qsum, long bstride,
                       long n, long count, float *y, long yStride) {
    const long blocks = count / 32, rb = record_bytes(wtype), qoff = quant_offset(wtype);
    for (long g = g0; g < g1; g++) {
        const uint8_t *grp = (const uint8_t *)packed + g * blocks * rb;
        for (long r = 0; r < 8 && g * 8 + r < rowCount; r++) {
            for (long t = 0; t < n; t++) {
                const int8_t *x = xq + t * count;
                float acc = 0.0f;
                for (long b = 0; b < blocks; b++) {
                    const uint8_t *rec = grp + b * rb, *q = rec + qoff;
                    int32_t isum = 0;
                    if (wtype == SPECDEC_Q8W_Q8_0) {
                        for (int j = 0; j < 8; j++)
                            for (int i = 0; i < 4; i++) isum += (int8_t)q[32 * j + 4 * r + i] * x[32 * b + 4 * j + i];
                    } else {
                        for (int j = 0; j < 4; j++)
                            for (int i = 0; i < 4; i++) {
                                const uint8_t v = q[32 * j + 4 * r + i];
                                isum += (v & 15) * x[32 * b + 4 * j + i] + (v >> 4) * x[32 * b + 16 + 4 * j + i];
                            }
                        if (wtype == SPECDEC_Q8W_Q4_0) isum -= 8 * qsum[t * bstride + b];
                    }
                    acc = fmaf((float)isum, half_to_float(rec + 2 * r) * xd[t * bstride + b], acc);
                    if (wtype == SPECDEC_Q8W_Q4_1) acc = fmaf(half_to_float(rec + 16 + 2 * r), xs[t * bstride + b], acc);
                }
                y[t * yStride + g * 8 + r] = acc;
            }
        }
    }
}

// MARK: - AVX2 and AVX-512 VNNI

#if defined(__x86_64__) && defined(__clang__)
#include <immintrin.h>
#include <cpuid.h>

static inline int32_t load_i32(const int8_t *p) { int32_t v; memcpy(&v, p, 4); return v; }

int specdec_cpu_supports_avx512vnni(void) {
    unsigned a, b, c, d;
    if (!specdec_cpu_supports_haswell()) return 0;
    if (__get_cpuid_max(0, 0) < 7) return 0;
    __cpuid_count(7, 0, a, b, c, d);
    const int f = (b >> 16) & 1, bw = (b >> 30) & 1, vl = (b >> 31) & 1, vnni = (c >> 11) & 1;
    if (!(f && bw && vl && vnni)) return 0;
    // The OS must save the opmask and ZMM state too (XCR0 bits 5, 6, 7).
    uint32_t lo, hi;
    __asm__ __volatile__("xgetbv" : "=a"(lo), "=d"(hi) : "c"(0));
    return (lo & 0xe6) == 0xe6;
}

#ifndef X8_TILE
#define X8_TILE 4   // tokens per tile: 4 and 6 measured equal on Zen 3, 5 and 8 slower (register spills)
#endif
#define X8_CASE(SUFFIX, K) case K: if (K < X8_TILE) { x8_tile_##SUFFIX(wtype, K, grp, blocks, rb, x, d, s, qs, bstride, count, tmp); break; }
#define X8_GROUPS_ARGS const void *packed, long rowCount, long g0, long g1, const int8_t *xq, const float *xd, \
    const float *xs, const int32_t *qsum, long bstride, long n, long count, float *y, long yStride
// Groups g0..<g1 of one weight type (a compile-time constant, so the type tests fold away).
#define X8_GROUPS_BODY(SUFFIX, WT)                                                                               \
    const long blocks = count / 32, rb = record_bytes(WT);                                            \
    for (long g = g0; g < g1; g++) {                                                                             \
        const long rowsHere = rowCount - 8 * g < 8 ? rowCount - 8 * g : 8;                                       \
        x8_group_##SUFFIX(WT, (const uint8_t *)packed + g * blocks * rb, rowsHere, blocks, rb, xq, xd, xs, qsum, \
                          bstride, n, count, y + 8 * g, yStride);                                                \
    }

// The kernel body, instantiated once per instruction set. T is the token tile (1...4);
// DOT(acc, w, x) adds the 4-byte dot products of the unsigned weights w and signed activations x
// to the int32 lanes of acc (AVX2: maddubs + madd; VNNI: vpdpbusd).
#define X8_KERNEL(SUFFIX, TARGET, INT_DOT_Q4, INT_DOT_Q8)                                                        \
    __attribute__((always_inline, target(TARGET))) static inline void x8_tile_##SUFFIX(                          \
        const int wtype, const int T, const uint8_t *grp, long blocks, long rb, const int8_t *xq,               \
        const float *xd, const float *xs, const int32_t *qsum, long bstride, long count, float *out /* T×8 */) { \
        const long qoff = quant_offset(wtype);                                                                   \
        const __m256i low4 = _mm256_set1_epi8(15);                                                               \
        __m256 acc[X8_TILE];                                                                                     \
        for (int t = 0; t < T; t++) acc[t] = _mm256_setzero_ps();    \
        for (long b = 0; b < blocks; b++) {                                                                      \
            const uint8_t *rec = grp + b * rb, *q = rec + qoff;                                                  \
            const __m256 d8 = _mm256_cvtph_ps(_mm_loadu_si128((const __m128i *)rec));                           \
            const __m256 m8 = wtype == SPECDEC_Q8W_Q4_1 ? _mm256_cvtph_ps(_mm_loadu_si128((const __m128i *)(rec + 16))) \
                                                        : _mm256_setzero_ps();                                   \
            /* Integer block sums for all T tokens: weights are decoded once per chunk j and used by */ \
            /* every token while in registers (T int16/int32 sums stay in registers too). */          \
            __m256i isum[X8_TILE];                                                                                     \
            if (wtype == SPECDEC_Q8W_Q8_0) { INT_DOT_Q8 } else { INT_DOT_Q4 }                                    \
            for (int t = 0; t < T; t++) {                                                                        \
                __m256i is = isum[t];                                                                            \
                if (wtype == SPECDEC_Q8W_Q4_0)                                                                   \
                    is = _mm256_sub_epi32(is, _mm256_set1_epi32(8 * qsum[t * bstride + b]));                     \
                const __m256 sc = _mm256_mul_ps(d8, _mm256_set1_ps(xd[t * bstride + b]));                        \
                acc[t] = _mm256_fmadd_ps(_mm256_cvtepi32_ps(is), sc, acc[t]);                                    \
                if (wtype == SPECDEC_Q8W_Q4_1) acc[t] = _mm256_fmadd_ps(m8, _mm256_set1_ps(xs[t * bstride + b]), acc[t]); \
            }                                                                                                    \
        }                                                                                                        \
        for (int t = 0; t < T; t++) _mm256_storeu_ps(out + 8 * t, acc[t]);                                       \
    }                                                                                                            \
    __attribute__((always_inline, target(TARGET))) static inline void x8_group_##SUFFIX(                         \
        const int wtype, const uint8_t *grp, long rowsHere, long blocks, long rb, const int8_t *xq,             \
        const float *xd, const float *xs, const int32_t *qsum, long bstride, long n, long count, float *y,     \
        long yStride) {                                                                                          \
        float tmp[8 * X8_TILE];                                                                                           \
        for (long t0 = 0; t0 < n; t0 += X8_TILE) {                                                                     \
            const long T = n - t0 < X8_TILE ? n - t0 : X8_TILE;                                                              \
            const int8_t *x = xq + t0 * count;                                                                   \
            const float *d = xd + t0 * bstride, *s = xs + t0 * bstride;                                          \
            const int32_t *qs = qsum + t0 * bstride;                                                             \
            switch (T) {                                                                                         \
            X8_CASE(SUFFIX, 1) X8_CASE(SUFFIX, 2) X8_CASE(SUFFIX, 3) X8_CASE(SUFFIX, 4) X8_CASE(SUFFIX, 5)        \
            X8_CASE(SUFFIX, 6) X8_CASE(SUFFIX, 7)                                                                \
            default: x8_tile_##SUFFIX(wtype, X8_TILE, grp, blocks, rb, x, d, s, qs, bstride, count, tmp); break; \
            }                                                                                                    \
            for (long t = 0; t < T; t++)                                                                         \
                for (long r = 0; r < rowsHere; r++) y[(t0 + t) * yStride + r] = tmp[8 * t + r];                 \
        }                                                                                                        \
    }                                                                                                            \
    __attribute__((noinline, target(TARGET))) static void x8_groups_##SUFFIX##_q40(X8_GROUPS_ARGS) { X8_GROUPS_BODY(SUFFIX, SPECDEC_Q8W_Q4_0) } \
    __attribute__((noinline, target(TARGET))) static void x8_groups_##SUFFIX##_q41(X8_GROUPS_ARGS) { X8_GROUPS_BODY(SUFFIX, SPECDEC_Q8W_Q4_1) } \
    __attribute__((noinline, target(TARGET))) static void x8_groups_##SUFFIX##_q80(X8_GROUPS_ARGS) { X8_GROUPS_BODY(SUFFIX, SPECDEC_Q8W_Q8_0) } \
    __attribute__((target(TARGET))) void specdec_x8_matmul_##SUFFIX(                                             \
        int wtype, const void *packed, long rowCount, long g0, long g1, const int8_t *xq, const float *xd,      \
        const float *xs, const int32_t *qsum, long bstride, long n, long count, float *y, long yStride) {      \
        switch (wtype) {                                                                                         \
        case SPECDEC_Q8W_Q4_0: x8_groups_##SUFFIX##_q40(packed, rowCount, g0, g1, xq, xd, xs, qsum, bstride, n, count, y, yStride); break; \
        case SPECDEC_Q8W_Q4_1: x8_groups_##SUFFIX##_q41(packed, rowCount, g0, g1, xq, xd, xs, qsum, bstride, n, count, y, yStride); break; \
        default: x8_groups_##SUFFIX##_q80(packed, rowCount, g0, g1, xq, xd, xs, qsum, bstride, n, count, y, yStride); break; \
        }                                                                                                        \
    }

#define XB(t, off) _mm256_set1_epi32(load_i32(xq + (t) * count + 32 * b + (off)))
#define AVX2_DOT_Q4                                                                                              \
    __m256i p[X8_TILE];                                                                                                \
    for (int j = 0; j < 4; j++) {                                                                                \
        const __m256i raw = _mm256_loadu_si256((const __m256i *)(q + 32 * j));                                   \
        const __m256i wl = _mm256_and_si256(raw, low4), wh = _mm256_and_si256(_mm256_srli_epi16(raw, 4), low4); \
        for (int t = 0; t < T; t++) {                                                                            \
            const __m256i s = _mm256_add_epi16(_mm256_maddubs_epi16(wl, XB(t, 4 * j)), _mm256_maddubs_epi16(wh, XB(t, 16 + 4 * j))); \
            p[t] = j == 0 ? s : _mm256_add_epi16(p[t], s);                                                       \
        }                                                                                                        \
    }                                                                                                            \
    for (int t = 0; t < T; t++) isum[t] = _mm256_madd_epi16(p[t], _mm256_set1_epi16(1));
#define AVX2_DOT_Q8                                                                                              \
    for (int j = 0; j < 8; j++) {                                                                                \
        const __m256i w = _mm256_loadu_si256((const __m256i *)(q + 32 * j)), wa = _mm256_abs_epi8(w);           \
        for (int t = 0; t < T; t++) {                                                                            \
            const __m256i s = _mm256_madd_epi16(_mm256_maddubs_epi16(wa, _mm256_sign_epi8(XB(t, 4 * j), w)), _mm256_set1_epi16(1)); \
            isum[t] = j == 0 ? s : _mm256_add_epi32(isum[t], s);                                                 \
        }                                                                                                        \
    }
X8_KERNEL(avx2, "avx,avx2,fma,f16c", AVX2_DOT_Q4, AVX2_DOT_Q8)

// AVX-512 VNNI on 256-bit registers: vpdpbusd fuses maddubs + madd (and never saturates).
#define VNNI_DOT_Q4                                                                                              \
    for (int t = 0; t < T; t++) isum[t] = _mm256_setzero_si256();                                                \
    for (int j = 0; j < 4; j++) {                                                                                \
        const __m256i raw = _mm256_loadu_si256((const __m256i *)(q + 32 * j));                                   \
        const __m256i wl = _mm256_and_si256(raw, low4), wh = _mm256_and_si256(_mm256_srli_epi16(raw, 4), low4); \
        for (int t = 0; t < T; t++)                                                                              \
            isum[t] = _mm256_dpbusd_epi32(_mm256_dpbusd_epi32(isum[t], wl, XB(t, 4 * j)), wh, XB(t, 16 + 4 * j)); \
    }
#define VNNI_DOT_Q8                                                                                              \
    for (int t = 0; t < T; t++) isum[t] = _mm256_setzero_si256();                                                \
    for (int j = 0; j < 8; j++) {                                                                                \
        const __m256i w = _mm256_loadu_si256((const __m256i *)(q + 32 * j)), wa = _mm256_abs_epi8(w);           \
        for (int t = 0; t < T; t++) isum[t] = _mm256_dpbusd_epi32(isum[t], wa, _mm256_sign_epi8(XB(t, 4 * j), w)); \
    }
X8_KERNEL(vnni, "avx,avx2,fma,f16c,avx512f,avx512bw,avx512vl,avx512vnni", VNNI_DOT_Q4, VNNI_DOT_Q8)

#else
int specdec_cpu_supports_avx512vnni(void) { return 0; }
void specdec_x8_matmul_avx2(int wtype, const void *packed, long rowCount, long g0, long g1,
                            const int8_t *xq, const float *xd, const float *xs, const int32_t *qsum, long bstride,
                            long n, long count, float *y, long yStride) {
    specdec_x8_matmul(wtype, packed, rowCount, g0, g1, xq, xd, xs, qsum, bstride, n, count, y, yStride);
}
void specdec_x8_matmul_vnni(int wtype, const void *packed, long rowCount, long g0, long g1,
                            const int8_t *xq, const float *xd, const float *xs, const int32_t *qsum, long bstride,
                            long n, long count, float *y, long yStride) {
    specdec_x8_matmul(wtype, packed, rowCount, g0, g1, xq, xd, xs, qsum, bstride, n, count, y, yStride);
}
#endif
