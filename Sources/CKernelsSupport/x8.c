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

static inline int is_kquant(int wtype) { return wtype >= SPECDEC_Q8W_Q4_K; }

static inline long block_bytes(int wtype) {
    switch (wtype) {
    case SPECDEC_Q8W_Q4_0: return 18;
    case SPECDEC_Q8W_Q4_1: return 20;
    case SPECDEC_Q8W_Q8_0: return 34;
    case SPECDEC_Q8W_Q4_K: return 144;
    case SPECDEC_Q8W_Q5_K: return 176;
    default: return 210;   // Q6_K
    }
}

static inline long record_bytes(int wtype) {
    switch (wtype) {
    case SPECDEC_Q8W_Q4_0: return 144;
    case SPECDEC_Q8W_Q4_1: return 160;
    case SPECDEC_Q8W_Q8_0: return 272;
    case SPECDEC_Q8W_Q4_K: return 1184;
    case SPECDEC_Q8W_Q5_K: return 1440;
    default: return 1680;   // Q6_K
    }
}
long specdec_x8_record_bytes(int wtype) { return record_bytes(wtype); }

static inline long block_elems(int wtype) { return is_kquant(wtype) ? 256 : 32; }
long specdec_x8_block_elements(int wtype) { return block_elems(wtype); }

/// Bytes of one 8-row group of a row of `count` elements.
static inline long group_bytes(int wtype, long count) { return count / block_elems(wtype) * record_bytes(wtype); }

/// Group g's first record and the distance between its records. Groups are stored in pairs, block
/// by block (group 2p's block b, then group 2p+1's block b, then block b+1 of each), so that the
/// 16-row VNNI tile reads one stream; the 8-row tiles read every other record. A last, unpaired
/// group (an odd group count) is stored alone, record after record.
static inline const uint8_t *group_records(const void *packed, int wtype, long rowCount, long count, long g, long *stride) {
    const long groups = (rowCount + 7) / 8, rb = record_bytes(wtype), gb = group_bytes(wtype, count);
    if ((g | 1) < groups) {
        *stride = 2 * rb;
        return (const uint8_t *)packed + (g & ~1L) * gb + (g & 1) * rb;
    }
    *stride = rb;
    return (const uint8_t *)packed + g * gb;
}

/// Byte offset of the quants in a record, and the size of each 4-row-element chunk group.
static inline long quant_offset(int wtype) { return wtype == SPECDEC_Q8W_Q4_1 ? 32 : 16; }

// Offsets inside a K-quant record (specdec_x8.h).
enum {
    XK_SC = 32, XK_MN = 96, XK_Q = 160, XK_H = 1184,   // Q4_K / Q5_K
    XK6_SC = 16, XK6_QL = 144, XK6_QH = 1168            // Q6_K
};

/// ggml's get_scale_min_k4: the 6-bit scale and min of sub-block j from the 12 packed bytes.
static inline void scale_min_k4(int j, const uint8_t *q, uint8_t *sc, uint8_t *mn) {
    if (j < 4) {
        *sc = q[j] & 63; *mn = q[j + 4] & 63;
    } else {
        *sc = (uint8_t)((q[j + 4] & 0xF) | ((q[j - 4] >> 6) << 4));
        *mn = (uint8_t)((q[j + 4] >> 4) | ((q[j] >> 6) << 4));
    }
}

/// The 6-bit value (0..63; the weight is it − 32) of element e < 256 of a GGUF Q6_K block:
/// half n = e/128; in it, quarter c = (e/32)%4 and l = e%32 read ql[64n + 32(c&1) + l] (low nibble
/// for c < 2, high for c ≥ 2) and bits 2c, 2c+1 of qh[32n + l].
static inline int q6k_value(const uint8_t *blk, int e) {
    const int n = e / 128, c = (e / 32) % 4, l = e % 32;
    const uint8_t lb = blk[64 * n + 32 * (c & 1) + l], hb = blk[128 + 32 * n + l];
    return ((c < 2 ? lb & 15 : lb >> 4)) | (((hb >> (2 * c)) & 3) << 4);
}

/// Row r of one K-quant record from the row's GGUF super-block `src` (the record is zeroed).
static void repack_k(int wtype, const uint8_t *src, int r, uint8_t *rec) {
    if (wtype == SPECDEC_Q8W_Q6_K) {
        memcpy(rec + 2 * r, src + 208, 2);                                            // d
        for (int k = 0; k < 16; k++) rec[XK6_SC + 8 * k + r] = src[192 + k];            // int8 scales
        for (int s = 0; s < 8; s++)
            for (int j = 0; j < 8; j++)
                for (int i = 0; i < 4; i++) {
                    const int q = q6k_value(src, 32 * s + 4 * j + i);
                    rec[XK6_QL + 256 * (s / 2) + 32 * j + 4 * r + i] |= (uint8_t)((q & 15) << (4 * (s & 1)));
                    rec[XK6_QH + 256 * (s / 4) + 32 * j + 4 * r + i] |= (uint8_t)((q >> 4) << (2 * (s % 4)));
                }
        return;
    }
    // Q4_K / Q5_K: f16 d, f16 dmin, 12 bytes of scales, [Q5_K: qh[32]], qs[128].
    memcpy(rec + 2 * r, src, 2);
    memcpy(rec + 16 + 2 * r, src + 2, 2);
    for (int s = 0; s < 8; s++) scale_min_k4(s, src + 4, rec + XK_SC + 8 * s + r, rec + XK_MN + 8 * s + r);
    const uint8_t *qs = src + (wtype == SPECDEC_Q8W_Q5_K ? 48 : 16);
    for (int p = 0; p < 4; p++)
        for (int j = 0; j < 8; j++) memcpy(rec + XK_Q + 256 * p + 32 * j + 4 * r, qs + 32 * p + 4 * j, 4);
    if (wtype == SPECDEC_Q8W_Q5_K) {
        // GGUF: bit 2g+h of qh[l] is the 5th bit of element 64g + 32h + l, i.e. bit s of qh[l] is
        // that of element l of sub-block s.
        const uint8_t *qh = src + 16;
        for (int s = 0; s < 8; s++)
            for (int j = 0; j < 8; j++)
                for (int i = 0; i < 4; i++)
                    rec[XK_H + 32 * s + 4 * r + i] |= (uint8_t)(((qh[4 * j + i] >> s) & 1) << j);
    }
}

void specdec_x8_repack(int wtype, const void *rows, long rowBytes, long rowCount, long count, void *out) {
    const long blocks = count / block_elems(wtype), groups = (rowCount + 7) / 8, rb = record_bytes(wtype);
    const long bb = block_bytes(wtype), qoff = quant_offset(wtype);
    const long chunks = wtype == SPECDEC_Q8W_Q8_0 ? 8 : 4;   // 4-byte chunks per row in a block
    const long qsrc = wtype == SPECDEC_Q8W_Q4_1 ? 4 : 2;     // quants' offset in a GGUF block
    for (long g = 0; g < groups; g++) {
        long stride;
        uint8_t *grp = (uint8_t *)group_records(out, wtype, rowCount, count, g, &stride);
        for (long b = 0; b < blocks; b++) {
            uint8_t *rec = grp + b * stride;
            memset(rec, 0, (size_t)rb);
            for (long r = 0; r < 8; r++) {
                const long row = g * 8 + r;
                if (row >= rowCount) break;   // padding rows stay zero (d = 0: they add nothing)
                const uint8_t *src = (const uint8_t *)rows + row * rowBytes + b * bb;
                if (is_kquant(wtype)) { repack_k(wtype, src, (int)r, rec); continue; }
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

/// One (row r, token) result of a K-quant group: the formula of specdec_x8.h per 32-element block.
static float xk_dot_portable(int wtype, const uint8_t *grp, long stride, long r, long sblocks, const int8_t *x,
                             const float *xd, const float *xs) {
    float acc = 0.0f;
    for (long B = 0; B < sblocks; B++) {
        const uint8_t *rec = grp + B * stride;
        const float d = half_to_float(rec + 2 * r);
        for (int s = 0; s < 8; s++) {
            const long b = 8 * B + s;
            const int8_t *xb = x + 32 * b;
            if (wtype == SPECDEC_Q8W_Q6_K) {
                int32_t half[2] = {0, 0};
                for (int j = 0; j < 8; j++)
                    for (int i = 0; i < 4; i++) {
                        const int lo = (rec[XK6_QL + 256 * (s / 2) + 32 * j + 4 * r + i] >> (4 * (s & 1))) & 15;
                        const int hi = (rec[XK6_QH + 256 * (s / 4) + 32 * j + 4 * r + i] >> (2 * (s % 4))) & 3;
                        half[j / 4] += ((lo | (hi << 4)) - 32) * xb[4 * j + i];
                    }
                const int32_t isum = (int8_t)rec[XK6_SC + 8 * (2 * s) + r] * half[0] +
                                     (int8_t)rec[XK6_SC + 8 * (2 * s + 1) + r] * half[1];
                acc = fmaf((float)isum, d * xd[b], acc);
            } else {
                int32_t isum = 0;
                for (int j = 0; j < 8; j++)
                    for (int i = 0; i < 4; i++) {
                        int q = (rec[XK_Q + 256 * (s / 2) + 32 * j + 4 * r + i] >> (4 * (s & 1))) & 15;
                        if (wtype == SPECDEC_Q8W_Q5_K) q |= ((rec[XK_H + 32 * s + 4 * r + i] >> j) & 1) << 4;
                        isum += q * xb[4 * j + i];
                    }
                const float db = d * (float)rec[XK_SC + 8 * s + r];                             // exact
                const float mb = -(half_to_float(rec + 16 + 2 * r) * (float)rec[XK_MN + 8 * s + r]); // exact
                acc = fmaf((float)isum, db * xd[b], acc);
                acc = fmaf(mb, xs[b], acc);
            }
        }
    }
    return acc;
}

void specdec_x8_matmul(int wtype, const void *packed, long rowCount, long g0, long g1,
                       const int8_t *xq, const float *xd, const float *xs, const int32_t *qsum, long bstride,
                       long n, long count, float *y, long yStride) {
    const long blocks = count / 32, qoff = quant_offset(wtype);
    for (long g = g0; g < g1; g++) {
        long stride;
        const uint8_t *grp = group_records(packed, wtype, rowCount, count, g, &stride);
        for (long r = 0; r < 8 && g * 8 + r < rowCount; r++) {
            for (long t = 0; t < n; t++) {
                const int8_t *x = xq + t * count;
                if (is_kquant(wtype)) {
                    y[t * yStride + g * 8 + r] = xk_dot_portable(wtype, grp, stride, r, count / 256, x, xd + t * bstride, xs + t * bstride);
                    continue;
                }
                float acc = 0.0f;
                for (long b = 0; b < blocks; b++) {
                    const uint8_t *rec = grp + b * stride, *q = rec + qoff;
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

#ifndef X8_PREFETCH
// Blocks ahead both tiles fetch their group's record stream by hand, where the hardware
// prefetcher alone does not run far enough ahead. VNNI wide tile (Zen 5): 4, 8, 16, 24, 32
// measured, 16 best up to 4 tokens. AVX2 8-row tile (Zen 1): 16, 24 and 32 alike, and tg128 36.3
// -> 49.8 tok/s at 1 thread, 57.8 -> 68.9 at 2 against none (README "Speed", Zen 1).
#define X8_PREFETCH 16
#endif
// Fetches the stride-byte record X8_PREFETCH records after rec (past a matrix's end it never faults).
__attribute__((always_inline)) static inline void x8_prefetch_ahead(const uint8_t *rec, long stride) {
    for (long o = 0; o < stride; o += 64) _mm_prefetch((const char *)rec + X8_PREFETCH * stride + o, _MM_HINT_T0);
}
#ifndef X8_TILE
#define X8_TILE 4   // tokens per tile: 4 and 6 measured equal on Zen 3, 5 and 8 slower (register spills)
#endif
#define X8_CASE(SUFFIX, K) case K: if (K < X8_TILE) { x8_tile_##SUFFIX(wtype, K, grp, blocks, stride, x, d, s, qs, bstride, count, tmp); break; }
#define X8_GROUPS_ARGS const void *packed, long rowCount, long g0, long g1, const int8_t *xq, const float *xd, \
    const float *xs, const int32_t *qsum, long bstride, long n, long count, float *y, long yStride
#define X8_VNNI_TARGET "avx,avx2,fma,f16c,avx512f,avx512bw,avx512vl,avx512vnni"
// The VNNI path multiplies two row groups at once in 512-bit registers (below); the AVX2 one
// cannot. The flag is a constant, so the branch folds away in the AVX2 functions.
#define X8_WIDE_avx2 0
#define X8_WIDE_vnni 1
// From this many tokens on the VNNI path takes the 16-row tile (paired groups are stored as one
// stream, so it reads as fast as the 8-row tile and decodes 16 rows per instruction).
#ifndef X8_WIDE_MIN_TOKENS
#define X8_WIDE_MIN_TOKENS 1
#endif
__attribute__((noinline, target(X8_VNNI_TARGET))) static void x8_wide_groups(int wtype, X8_GROUPS_ARGS);
// Groups g0..<g1 of one weight type (a compile-time constant, so the type tests fold away).
#define X8_GROUPS_BODY(SUFFIX, WT)                                                                               \
    const long blocks = count / 32;                                                                              \
    for (long g = g0; g < g1; g++) {                                                                             \
        const long rowsHere = rowCount - 8 * g < 8 ? rowCount - 8 * g : 8;                                       \
        long stride;                                                                                             \
        const uint8_t *grp = group_records(packed, WT, rowCount, count, g, &stride);                             \
        x8_group_##SUFFIX(WT, grp, rowsHere, blocks, stride, xq, xd, xs, qsum, bstride, n, count, y + 8 * g, yStride); \
    }

#define X8_WIDE_OR_BODY(SUFFIX, WT)                                                                              \
    if (X8_WIDE_##SUFFIX && n >= X8_WIDE_MIN_TOKENS) {                                                          \
        x8_wide_groups(WT, packed, rowCount, g0, g1, xq, xd, xs, qsum, bstride, n, count, y, yStride);          \
        return;                                                                                                  \
    }                                                                                                            \
    X8_GROUPS_BODY(SUFFIX, WT)

// The K-quant tile: T tokens × 8 rows over the super-blocks of one group. Per 32-element block
// (sub-block s of super-block B) the integer sums of all T tokens are formed with the weights
// decoded once (DOT45 / DOT6 below, per instruction set), then the float steps of specdec_x8.h.
// The block's scales come from the record: Q4_K/Q5_K d_b = d·sc and m_b = −(dmin·mn), both exact;
// Q6_K applies its int8 scales to the two 16-element halves in the integer domain.
#define XK_KERNEL(SUFFIX, TARGET, DOT45, DOT6)                                                                   \
    __attribute__((always_inline, target(TARGET))) static inline void xk_tile_##SUFFIX(                          \
        const int wtype, const int T, const uint8_t *grp, long blocks, long stride, const int8_t *xq,               \
        const float *xd, const float *xs, long bstride, long count, float *out /* T×8 */) {                     \
        const __m256i low4 = _mm256_set1_epi8(15);                                                               \
        const __m256 signBit = _mm256_set1_ps(-0.0f);                                                            \
        __m256 acc[X8_TILE];                                                                                     \
        for (int t = 0; t < T; t++) acc[t] = _mm256_setzero_ps();                                                \
        for (long B = 0; B < blocks / 8; B++) {                                                                  \
            const uint8_t *rec = grp + B * stride;                                                               \
            const __m256 d8 = _mm256_cvtph_ps(_mm_loadu_si128((const __m128i *)rec));                           \
            const __m256 dm8 = wtype != SPECDEC_Q8W_Q6_K ? _mm256_cvtph_ps(_mm_loadu_si128((const __m128i *)(rec + 16))) \
                                                         : _mm256_setzero_ps();                                  \
            /* unrolled: the sub-block's nibble and bit shifts become immediates (2x faster measured) */         \
            _Pragma("clang loop unroll(full)") for (int s = 0; s < 8; s++) {                                     \
                const long b = 8 * B + s;                                                                        \
                __m256i isum[X8_TILE];                                                                           \
                __m256 db8 = d8, mb8 = _mm256_setzero_ps();                                                      \
                if (wtype == SPECDEC_Q8W_Q6_K) {                                                                 \
                    DOT6                                                                                         \
                } else {                                                                                         \
                    DOT45                                                                                        \
                    const __m256 sc = _mm256_cvtepi32_ps(_mm256_cvtepu8_epi32(_mm_loadl_epi64((const __m128i *)(rec + XK_SC + 8 * s)))); \
                    const __m256 mn = _mm256_cvtepi32_ps(_mm256_cvtepu8_epi32(_mm_loadl_epi64((const __m128i *)(rec + XK_MN + 8 * s)))); \
                    db8 = _mm256_mul_ps(d8, sc);                              /* exact */                        \
                    mb8 = _mm256_xor_ps(_mm256_mul_ps(dm8, mn), signBit);     /* exact; −x as C's unary minus */ \
                }                                                                                                \
                for (int t = 0; t < T; t++) {                                                                    \
                    const __m256 scale = _mm256_mul_ps(db8, _mm256_set1_ps(xd[t * bstride + b]));                \
                    acc[t] = _mm256_fmadd_ps(_mm256_cvtepi32_ps(isum[t]), scale, acc[t]);                        \
                    if (wtype != SPECDEC_Q8W_Q6_K)                                                               \
                        acc[t] = _mm256_fmadd_ps(mb8, _mm256_set1_ps(xs[t * bstride + b]), acc[t]);              \
                }                                                                                                \
            }                                                                                                    \
        }                                                                                                        \
        for (int t = 0; t < T; t++) _mm256_storeu_ps(out + 8 * t, acc[t]);                                       \
    }

// Decoding one 32-byte chunk j (4 elements × 8 rows) of sub-block s into bytes.
// Q4_K/Q5_K: the nibble of sub-block s (low for even s), plus for Q5_K bit j of h moved to bit 4.
// Q6_K: the nibble, or the two high bits (bits 2(s%4), +1 of qh) moved to bits 4, 5, minus 32.
// 16-bit shifts move bits between the two bytes of a lane, but only into bits the masks clear.
#define XK_Q45_CHUNK(j)                                                                                          \
    __m256i w = _mm256_and_si256(_mm256_srli_epi16(_mm256_loadu_si256((const __m256i *)(q + 32 * (j))), 4 * (s & 1)), low4); \
    if (wtype == SPECDEC_Q8W_Q5_K)                                                                               \
        w = _mm256_or_si256(w, _mm256_and_si256((j) <= 4 ? _mm256_slli_epi16(h, 4 - (j)) : _mm256_srli_epi16(h, (j) - 4), \
                                                _mm256_set1_epi8(16)));
#define XK_Q6_CHUNK(j)                                                                                           \
    const __m256i nib = _mm256_and_si256(_mm256_srli_epi16(_mm256_loadu_si256((const __m256i *)(ql + 32 * (j))), 4 * (s & 1)), low4); \
    const __m256i hraw = _mm256_loadu_si256((const __m256i *)(qh + 32 * (j)));                                   \
    const __m256i hb = _mm256_and_si256(hs <= 4 ? _mm256_slli_epi16(hraw, 4 - hs) : _mm256_srli_epi16(hraw, hs - 4), \
                                        _mm256_set1_epi8(0x30));                                                 \
    const __m256i w = _mm256_sub_epi8(_mm256_or_si256(nib, hb), _mm256_set1_epi8(32)), wa = _mm256_abs_epi8(w);
#define XK_Q45_PTRS                                                                                              \
    const uint8_t *q = rec + XK_Q + 256 * (s / 2);                                                               \
    const __m256i h = wtype == SPECDEC_Q8W_Q5_K ? _mm256_loadu_si256((const __m256i *)(rec + XK_H + 32 * s)) : _mm256_setzero_si256();
#define XK_Q6_PTRS                                                                                               \
    const uint8_t *ql = rec + XK6_QL + 256 * (s / 2), *qh = rec + XK6_QH + 256 * (s / 4);                        \
    const int hs = 2 * (s % 4);                                                                                  \
    const __m256i sclo = _mm256_cvtepi8_epi32(_mm_loadl_epi64((const __m128i *)(rec + XK6_SC + 8 * (2 * s))));   \
    const __m256i schi = _mm256_cvtepi8_epi32(_mm_loadl_epi64((const __m128i *)(rec + XK6_SC + 8 * (2 * s + 1))));

// The kernel body, instantiated once per instruction set. T is the token tile (1...4);
// DOT(acc, w, x) adds the 4-byte dot products of the unsigned weights w and signed activations x
// to the int32 lanes of acc (AVX2: maddubs + madd; VNNI: vpdpbusd).
#define X8_KERNEL(SUFFIX, TARGET, INT_DOT_Q4, INT_DOT_Q8)                                                        \
    __attribute__((always_inline, target(TARGET))) static inline void x8_tile_##SUFFIX(                          \
        const int wtype, const int T, const uint8_t *grp, long blocks, long stride, const int8_t *xq,               \
        const float *xd, const float *xs, const int32_t *qsum, long bstride, long count, float *out /* T×8 */) { \
        if (is_kquant(wtype)) { xk_tile_##SUFFIX(wtype, T, grp, blocks, stride, xq, xd, xs, bstride, count, out); return; } \
        const long qoff = quant_offset(wtype);                                                                   \
        const __m256i low4 = _mm256_set1_epi8(15);                                                               \
        __m256 acc[X8_TILE];                                                                                     \
        for (int t = 0; t < T; t++) acc[t] = _mm256_setzero_ps();    \
        for (long b = 0; b < blocks; b++) {                                                                      \
            const uint8_t *rec = grp + b * stride, *q = rec + qoff;                                              \
            x8_prefetch_ahead(rec, stride);                                                                      \
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
        const int wtype, const uint8_t *grp, long rowsHere, long blocks, long stride, const int8_t *xq,           \
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
            default: x8_tile_##SUFFIX(wtype, X8_TILE, grp, blocks, stride, x, d, s, qs, bstride, count, tmp); break; \
            }                                                                                                    \
            for (long t = 0; t < T; t++)                                                                         \
                for (long r = 0; r < rowsHere; r++) y[(t0 + t) * yStride + r] = tmp[8 * t + r];                 \
        }                                                                                                        \
    }                                                                                                            \
    __attribute__((noinline, target(TARGET))) static void x8_groups_##SUFFIX##_q40(X8_GROUPS_ARGS) { X8_WIDE_OR_BODY(SUFFIX, SPECDEC_Q8W_Q4_0) } \
    __attribute__((noinline, target(TARGET))) static void x8_groups_##SUFFIX##_q41(X8_GROUPS_ARGS) { X8_WIDE_OR_BODY(SUFFIX, SPECDEC_Q8W_Q4_1) } \
    __attribute__((noinline, target(TARGET))) static void x8_groups_##SUFFIX##_q80(X8_GROUPS_ARGS) { X8_WIDE_OR_BODY(SUFFIX, SPECDEC_Q8W_Q8_0) } \
    __attribute__((noinline, target(TARGET))) static void x8_groups_##SUFFIX##_q4k(X8_GROUPS_ARGS) { X8_GROUPS_BODY(SUFFIX, SPECDEC_Q8W_Q4_K) } \
    __attribute__((noinline, target(TARGET))) static void x8_groups_##SUFFIX##_q5k(X8_GROUPS_ARGS) { X8_GROUPS_BODY(SUFFIX, SPECDEC_Q8W_Q5_K) } \
    __attribute__((noinline, target(TARGET))) static void x8_groups_##SUFFIX##_q6k(X8_GROUPS_ARGS) { X8_GROUPS_BODY(SUFFIX, SPECDEC_Q8W_Q6_K) } \
    __attribute__((target(TARGET))) void specdec_x8_matmul_##SUFFIX(                                             \
        int wtype, const void *packed, long rowCount, long g0, long g1, const int8_t *xq, const float *xd,      \
        const float *xs, const int32_t *qsum, long bstride, long n, long count, float *y, long yStride) {      \
        switch (wtype) {                                                                                         \
        case SPECDEC_Q8W_Q4_0: x8_groups_##SUFFIX##_q40(packed, rowCount, g0, g1, xq, xd, xs, qsum, bstride, n, count, y, yStride); break; \
        case SPECDEC_Q8W_Q4_1: x8_groups_##SUFFIX##_q41(packed, rowCount, g0, g1, xq, xd, xs, qsum, bstride, n, count, y, yStride); break; \
        case SPECDEC_Q8W_Q4_K: x8_groups_##SUFFIX##_q4k(packed, rowCount, g0, g1, xq, xd, xs, qsum, bstride, n, count, y, yStride); break; \
        case SPECDEC_Q8W_Q5_K: x8_groups_##SUFFIX##_q5k(packed, rowCount, g0, g1, xq, xd, xs, qsum, bstride, n, count, y, yStride); break; \
        case SPECDEC_Q8W_Q6_K: x8_groups_##SUFFIX##_q6k(packed, rowCount, g0, g1, xq, xd, xs, qsum, bstride, n, count, y, yStride); break; \
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
// AVX2 K-quants. Q4_K: 8 chunks of maddubs pair sums (each |·| ≤ 2·15·127) fit int16 (30480).
// Q5_K (≤ 2·31·127 each) is widened to int32 at every chunk: keeping int16 partial sums next to
// the int32 ones spilled registers at 4 tokens (1.4x slower measured). Q6_K: signed weights, so
// maddubs(|w|, sign(x, w)) (each pair ≤ 2·32·127), widened at every chunk by vpmaddwd with the
// half's int8 scale in both int16 lanes of each row: sc·Σ exactly in int32 (same integers as VNNI).
#define AVX2_DOT_Q45                                                                                             \
    XK_Q45_PTRS                                                                                                  \
    __m256i p[X8_TILE];                                                                                          \
    for (int j = 0; j < 8; j++) {                                                                                \
        XK_Q45_CHUNK(j)                                                                                          \
        for (int t = 0; t < T; t++) {                                                                            \
            const __m256i m = _mm256_maddubs_epi16(w, XB(t, 4 * j));                                             \
            if (wtype == SPECDEC_Q8W_Q5_K) {                                                                     \
                const __m256i m32 = _mm256_madd_epi16(m, _mm256_set1_epi16(1));                                  \
                isum[t] = j == 0 ? m32 : _mm256_add_epi32(isum[t], m32);                                         \
            } else p[t] = j == 0 ? m : _mm256_add_epi16(p[t], m);                                                \
        }                                                                                                        \
    }                                                                                                            \
    if (wtype != SPECDEC_Q8W_Q5_K)                                                                               \
        for (int t = 0; t < T; t++) isum[t] = _mm256_madd_epi16(p[t], _mm256_set1_epi16(1));
#define AVX2_DOT_Q6                                                                                              \
    XK_Q6_PTRS                                                                                                   \
    /* each row's scale in both int16 halves of its int32 lane, for vpmaddwd */                                  \
    const __m256i slo16 = _mm256_blend_epi16(sclo, _mm256_slli_epi32(sclo, 16), 0xAA);                          \
    const __m256i shi16 = _mm256_blend_epi16(schi, _mm256_slli_epi32(schi, 16), 0xAA);                          \
    for (int j = 0; j < 8; j++) {                                                                                \
        XK_Q6_CHUNK(j)                                                                                           \
        for (int t = 0; t < T; t++) {                                                                            \
            const __m256i m = _mm256_madd_epi16(_mm256_maddubs_epi16(wa, _mm256_sign_epi8(XB(t, 4 * j), w)), j < 4 ? slo16 : shi16); \
            isum[t] = j == 0 ? m : _mm256_add_epi32(isum[t], m);                                                 \
        }                                                                                                        \
    }
XK_KERNEL(avx2, "avx,avx2,fma,f16c", AVX2_DOT_Q45, AVX2_DOT_Q6)
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
// VNNI K-quants: vpdpbusd straight into int32 (no int16 stage); Q6_K's halves are scaled with
// vpmulld (the same exact integers as AVX2's vpmaddwd).
#define VNNI_DOT_Q45                                                                                             \
    XK_Q45_PTRS                                                                                                  \
    for (int t = 0; t < T; t++) isum[t] = _mm256_setzero_si256();                                                \
    for (int j = 0; j < 8; j++) {                                                                                \
        XK_Q45_CHUNK(j)                                                                                          \
        for (int t = 0; t < T; t++) isum[t] = _mm256_dpbusd_epi32(isum[t], w, XB(t, 4 * j));                     \
    }
#define VNNI_DOT_Q6                                                                                              \
    XK_Q6_PTRS                                                                                                   \
    __m256i hsum[X8_TILE];                                                                                       \
    for (int j = 0; j < 8; j++) {                                                                                \
        XK_Q6_CHUNK(j)                                                                                           \
        for (int t = 0; t < T; t++) {                                                                            \
            if (j % 4 == 0) hsum[t] = _mm256_setzero_si256();                                                    \
            hsum[t] = _mm256_dpbusd_epi32(hsum[t], wa, _mm256_sign_epi8(XB(t, 4 * j), w));                       \
            if (j == 3) isum[t] = _mm256_mullo_epi32(hsum[t], sclo);                                             \
            if (j == 7) isum[t] = _mm256_add_epi32(isum[t], _mm256_mullo_epi32(hsum[t], schi));                  \
        }                                                                                                        \
    }
XK_KERNEL(vnni, "avx,avx2,fma,f16c,avx512f,avx512bw,avx512vl,avx512vnni", VNNI_DOT_Q45, VNNI_DOT_Q6)
X8_KERNEL(vnni, "avx,avx2,fma,f16c,avx512f,avx512bw,avx512vl,avx512vnni", VNNI_DOT_Q4, VNNI_DOT_Q8)

// Q4_0, Q4_1 and Q8_0 on AVX-512 VNNI: the two groups of a stored pair (16 rows) per 512-bit
// register, lanes 0-7 group 2p and 8-15 group 2p+1, so one broadcast of 4 activation bytes and one
// vpdpbusd serve 16 rows, and the float steps run on 16 lanes: half the instructions per token of
// the 8-row tile. On Zen 5 (26-35 GB/s from one core) that is what a token costs, the first one
// included: one token over 63 MB of Q4_1 takes 1.32 ms against 1.61-1.73 with the 8-row tile, 4
// tokens 1.64 against 2.42 ms. Every lane does exactly the integer sums and float steps of the
// 8-row tile, so the bits are the same as the other paths', however many tokens a tile holds. A
// group whose partner is outside a thread's range takes the 8-row tile.
#ifndef X8_WIDE_TILE
#define X8_WIDE_TILE 8   // tokens per tile: 8 measured best on Zen 5 (N = 6: 17.7 us against 21.0 at 4)
#endif
#define XB16(t, off) _mm512_set1_epi32(load_i32(xq + (t) * count + 32 * b + (off)))
__attribute__((always_inline, target(X8_VNNI_TARGET))) static inline __m512i x8_both(const uint8_t *a, const uint8_t *b) {
    return _mm512_inserti64x4(_mm512_castsi256_si512(_mm256_loadu_si256((const __m256i *)a)), _mm256_loadu_si256((const __m256i *)b), 1);
}
__attribute__((always_inline, target(X8_VNNI_TARGET))) static inline __m512 x8_both_scales(const uint8_t *a, const uint8_t *b) {
    // (vinsertf64x4: AVX-512F; the float32x8 form needs AVX-512DQ, which the CPU check does not require)
    const __m256 lo = _mm256_cvtph_ps(_mm_loadu_si128((const __m128i *)a)), hi = _mm256_cvtph_ps(_mm_loadu_si128((const __m128i *)b));
    return _mm512_castpd_ps(_mm512_insertf64x4(_mm512_castpd256_pd512(_mm256_castps_pd(lo)), _mm256_castps_pd(hi), 1));
}
__attribute__((always_inline, target(X8_VNNI_TARGET))) static inline void x8_wide_tile(
    const int wtype, const int T, const uint8_t *pair, long blocks, long stride, long rb, const int8_t *xq,
    const float *xd, const float *xs, const int32_t *qsum, long bstride, long count, float *out /* T×16 */) {
    const long qoff = quant_offset(wtype);
    const __m512i low4 = _mm512_set1_epi8(15);
    __m512 acc[X8_WIDE_TILE];
    for (int t = 0; t < T; t++) acc[t] = _mm512_setzero_ps();
    for (long b = 0; b < blocks; b++) {
        const uint8_t *ra = pair + b * stride, *rbk = ra + rb, *qa = ra + qoff, *qb = rbk + qoff;
        // The pair's records lie back to back: one stream, fetched ahead by hand (the hardware
        // prefetcher alone left one token over 63 MB of Q4_1 at 1.7 ms against 1.4 ms with this).
        x8_prefetch_ahead(ra, stride);
        const __m512 d16 = x8_both_scales(ra, rbk);
        const __m512 m16 = wtype == SPECDEC_Q8W_Q4_1 ? x8_both_scales(ra + 16, rbk + 16) : _mm512_setzero_ps();
        __m512i isum[X8_WIDE_TILE];
        for (int t = 0; t < T; t++) isum[t] = _mm512_setzero_si512();
        if (wtype == SPECDEC_Q8W_Q8_0) {
            for (int j = 0; j < 8; j++) {
                const __m512i w = x8_both(qa + 32 * j, qb + 32 * j), wa = _mm512_abs_epi8(w);
                const __mmask64 negative = _mm512_movepi8_mask(w);
                // vpsignb has no 512-bit form: negate the activations where the weight is negative
                // (|q| <= 127, so exact; where the weight is 0, |w| = 0 zeroes the product anyway).
                for (int t = 0; t < T; t++) {
                    const __m512i x = XB16(t, 4 * j);
                    isum[t] = _mm512_dpbusd_epi32(isum[t], wa, _mm512_mask_sub_epi8(x, negative, _mm512_setzero_si512(), x));
                }
            }
        } else {
            for (int j = 0; j < 4; j++) {
                const __m512i raw = x8_both(qa + 32 * j, qb + 32 * j);
                const __m512i wl = _mm512_and_si512(raw, low4), wh = _mm512_and_si512(_mm512_srli_epi16(raw, 4), low4);
                for (int t = 0; t < T; t++)
                    isum[t] = _mm512_dpbusd_epi32(_mm512_dpbusd_epi32(isum[t], wl, XB16(t, 4 * j)), wh, XB16(t, 16 + 4 * j));
            }
        }
        for (int t = 0; t < T; t++) {
            __m512i is = isum[t];
            if (wtype == SPECDEC_Q8W_Q4_0) is = _mm512_sub_epi32(is, _mm512_set1_epi32(8 * qsum[t * bstride + b]));
            const __m512 sc = _mm512_mul_ps(d16, _mm512_set1_ps(xd[t * bstride + b]));
            acc[t] = _mm512_fmadd_ps(_mm512_cvtepi32_ps(is), sc, acc[t]);
            if (wtype == SPECDEC_Q8W_Q4_1) acc[t] = _mm512_fmadd_ps(m16, _mm512_set1_ps(xs[t * bstride + b]), acc[t]);
        }
    }
    for (int t = 0; t < T; t++) _mm512_storeu_ps(out + 16 * t, acc[t]);
}
#define X8_WIDE_CASE(K) case K: if (K <= X8_WIDE_TILE) { x8_wide_tile(WT, K, pair, blocks, stride, rb, x, d, s, qs, bstride, count, tmp); break; }
__attribute__((always_inline, target(X8_VNNI_TARGET))) static inline void x8_wide_body(const int WT, X8_GROUPS_ARGS) {
    const long blocks = count / 32, rb = record_bytes(WT);
    long g = g0;
    while (g < g1) {
        if (g % 2 == 1 || g + 1 >= g1) {
            // A group whose partner is outside this range (or that has none): the 8-row tile.
            const long rowsHere = rowCount - 8 * g < 8 ? rowCount - 8 * g : 8;
            long stride;
            const uint8_t *grp = group_records(packed, WT, rowCount, count, g, &stride);
            x8_group_vnni(WT, grp, rowsHere, blocks, stride, xq, xd, xs, qsum, bstride, n, count, y + 8 * g, yStride);
            g += 1;
            continue;
        }
        long stride;   // 2·rb: the pair's records alternate
        const uint8_t *pair = group_records(packed, WT, rowCount, count, g, &stride);
        const long rowsB = rowCount - 8 * (g + 1) < 8 ? rowCount - 8 * (g + 1) : 8;
        float tmp[16 * X8_WIDE_TILE];
        for (long t0 = 0; t0 < n; t0 += X8_WIDE_TILE) {
            const long T = n - t0 < X8_WIDE_TILE ? n - t0 : X8_WIDE_TILE;
            const int8_t *x = xq + t0 * count;
            const float *d = xd + t0 * bstride, *s = xs + t0 * bstride;
            const int32_t *qs = qsum + t0 * bstride;
            switch (T) {
            X8_WIDE_CASE(1) X8_WIDE_CASE(2) X8_WIDE_CASE(3) X8_WIDE_CASE(4) X8_WIDE_CASE(5) X8_WIDE_CASE(6) X8_WIDE_CASE(7)
            default: x8_wide_tile(WT, X8_WIDE_TILE, pair, blocks, stride, rb, x, d, s, qs, bstride, count, tmp); break;
            }
            for (long t = 0; t < T; t++) {
                float *row = y + (t0 + t) * yStride + 8 * g;
                for (long r = 0; r < 8; r++) row[r] = tmp[16 * t + r];
                for (long r = 0; r < rowsB; r++) row[8 + r] = tmp[16 * t + 8 + r];
            }
        }
        g += 2;
    }
}
__attribute__((noinline, target(X8_VNNI_TARGET))) static void x8_wide_groups(int wtype, X8_GROUPS_ARGS) {
    switch (wtype) {
    case SPECDEC_Q8W_Q4_0: x8_wide_body(SPECDEC_Q8W_Q4_0, packed, rowCount, g0, g1, xq, xd, xs, qsum, bstride, n, count, y, yStride); break;
    case SPECDEC_Q8W_Q4_1: x8_wide_body(SPECDEC_Q8W_Q4_1, packed, rowCount, g0, g1, xq, xd, xs, qsum, bstride, n, count, y, yStride); break;
    default: x8_wide_body(SPECDEC_Q8W_Q8_0, packed, rowCount, g0, g1, xq, xd, xs, qsum, bstride, n, count, y, yStride); break;
    }
}

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
