// Int8-activation kernels (the optional `ActivationQuant.q8` path of the Kernels module).
//
// Activations are quantized per 32-element block as llama.cpp's Q8_0/Q8_1 do: d = max|x| / 127,
// q = x / d rounded to nearest-even (the CPU's default mode), s = d · Σq (for the weights' min
// term). A weight block (Q4_0, Q4_1, Q8_0) times an activation block is an exact integer dot
// product; each (row, token) result is then
//     acc[k] = fma(float(isum_b[k]), dw_b · dx_b, acc[k])   for blocks b in order, lanes k = 0..7
//     (isum_b[k]: the exact integer sum of elements 4k..4k+3 of block b)
//     macc[l] = fma(mw_c+l, s_c+l, macc[l])                 over blocks c = 0, 8, 16, … (Q4_0/Q4_1;
//                                                           Q4_0: mw = −8·dw; zero-padded)
//     y = hsum(acc) + hsum(macc)                            (pairwise halves tree, like KernelsAVX2)
// so the result of one (row, token) pair never depends on the batch, the tile or the thread, and
// the scalar and AVX2 versions here give the same bits.
//
// The AVX2 functions carry `target` attributes: call them only when
// specdec_cpu_supports_haswell() says yes. The scalar ones run anywhere.
#ifndef SPECDEC_Q8ACT_H
#define SPECDEC_Q8ACT_H

#include <stdint.h>

/// Weight formats of the int8-activation kernels.
enum { SPECDEC_Q8W_Q4_0 = 0, SPECDEC_Q8W_Q4_1 = 1, SPECDEC_Q8W_Q8_0 = 2 };

/// Quantizes `n` rows of `count` floats (count a multiple of 32), rows `count` apart, into
/// qs (n × count int8), d and s (n × bstride floats each; bstride ≥ count/32 rounded up to a
/// multiple of 8; the padding is set to 0).
void specdec_q8_quantize(const float *x, long n, long count, int8_t *qs, float *d, float *s, long bstride);
void specdec_q8_quantize_avx2(const float *x, long n, long count, int8_t *qs, float *d, float *s, long bstride);

/// y[t * yStride + r] = row r · (quantized activation t), for r < rowCount, t < n: the formula
/// above. Rows `rowBytes` apart at any alignment; count a multiple of 32; xq/xd/xs as
/// `specdec_q8_quantize` writes them (bstride as there).
void specdec_q8_matmul(int wtype, const void *rows, long rowBytes, long rowCount,
                       const int8_t *xq, const float *xd, const float *xs, long bstride,
                       long n, long count, float *y, long yStride);
void specdec_q8_matmul_avx2(int wtype, const void *rows, long rowBytes, long rowCount,
                            const int8_t *xq, const float *xd, const float *xs, long bstride,
                            long n, long count, float *y, long yStride);

#endif
