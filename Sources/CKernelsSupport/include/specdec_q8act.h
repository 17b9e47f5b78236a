// Activation quantization for the int8-activation kernels (`ActivationQuant.q8`; the kernels
// themselves are in specdec_x8.h).
//
// Activations are quantized per 32-element block as llama.cpp's Q8_0/Q8_1 do: d = max|x| / 127,
// q = x / d rounded to nearest-even (the CPU's default mode), s = d · Σq (for Q4_1's min term).
// The AVX2 function carries `target` attributes: call it only when specdec_cpu_supports_haswell()
// says yes. The scalar one runs anywhere; both give the same bits.
#ifndef SPECDEC_Q8ACT_H
#define SPECDEC_Q8ACT_H

#include <stdint.h>

/// Weight formats of the int8-activation kernels.
enum {
    SPECDEC_Q8W_Q4_0 = 0, SPECDEC_Q8W_Q4_1 = 1, SPECDEC_Q8W_Q8_0 = 2,
    SPECDEC_Q8W_Q4_K = 3, SPECDEC_Q8W_Q5_K = 4, SPECDEC_Q8W_Q6_K = 5   // 256-element super-blocks
};

/// Quantizes `n` rows of `count` floats (count a multiple of 32), rows `count` apart, into
/// qs (n × count int8), d and s (n × bstride floats each; bstride ≥ count/32 rounded up to a
/// multiple of 8; the padding is set to 0).
void specdec_q8_quantize(const float *x, long n, long count, int8_t *qs, float *d, float *s, long bstride);
void specdec_q8_quantize_avx2(const float *x, long n, long count, int8_t *qs, float *d, float *s, long bstride);

#endif
