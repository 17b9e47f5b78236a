// Interleaved ("x8") int8-activation kernels: the default fast path of the Kernels module.
//
// Why: with one weight row per register (the plain layout), every extra token of a batch pays a
// horizontal reduction and float work per 32-weight block. Interleaving 8 weight rows so that one
// 256-bit register holds 4 consecutive weights of each of the 8 rows lets one broadcast of 4
// activation bytes feed 8 rows at once, and the int32 lanes of the result are the 8 rows' partial
// sums directly: no horizontal work at all. A decoded weight block then serves every token of the
// tile while it sits in registers (llama.cpp's Q4_0x8 repack and llamafile's tinyBLAS do the same).
//
// Layout. Rows are taken in groups of 8 (the last group zero-padded), and groups in pairs: a pair
// is stored block by block, group 2p's record of block b followed by group 2p+1's, so that the
// 16-row VNNI tile reads both as one stream (an odd last group is stored alone, record after
// record). One block of 8 rows is a record:
//     Q4_0: d[8] (f16)            | q[128]     (144 bytes, = 8 × 18 of the GGUF layout)
//     Q4_1: d[8] (f16) | m[8] (f16) | q[128]   (160 bytes, = 8 × 20)
//     Q8_0: d[8] (f16)            | q[256]     (272 bytes, = 8 × 34)
// 4-bit q: byte 32·j + 4·r + i (j < 4, r < 8, i < 4) is the GGUF byte qs[4j + i] of row r, i.e. it
// holds element 4j+i in its low nibble and element 16+4j+i in its high nibble.
// Q8_0 q:  byte 32·j + 4·r + i (j < 8) is element 4j+i of row r.
// So the repacked matrix has exactly the bytes of the original (plus the padding rows).
//
// K-quants (256-element super-blocks of 8 sub-blocks of 32; one record per super-block of 8 rows).
// Their weights are, per 32-element sub-block, exactly of the forms above, so the same formula
// below applies per 32-element block b = 8·B + s (super-block B, sub-block s), with the block's
// scales computed exactly from the record (an f16 times a 6-bit or int8 integer is exact in f32):
//     Q4_K: d[8] (f16) | dmin[8] (f16) | sc[8][8] (u8) | mn[8][8] (u8) | q[4][256]
//           (1184 bytes = 8 × 148; the GGUF rows have 8 × 144: the 12 bytes of packed 6-bit
//           scales/mins are stored unpacked, one byte each, +2.8%)
//     Q5_K: as Q4_K, then h[8][32]                                  (1440 bytes = 8 × 180; GGUF 8 × 176)
//     Q6_K: d[8] (f16) | sc[16][8] (i8) | ql[4][256] | qh[2][256]  (1680 bytes = 8 × 210; GGUF 8 × 210)
// sc[s][r], mn[s][r] (byte 8·s + r): row r's 6-bit scale and min of sub-block s (ggml's
// get_scale_min_k4), so d_b = d·sc and m_b = −(dmin·mn): the element is d_b·q + m_b, Q4_1's form
// (q = 0..15, Q5_K: 0..31). Q6_K: sc[k][r] is row r's int8 scale of elements 16k..16k+15.
// Q4_K q and Q6_K ql: byte 256·p + 32·j + 4·r + i (p < 4, j < 8, r < 8, i < 4) holds, of row r,
// element 4j+i of sub-block 2p in its low nibble and element 4j+i of sub-block 2p+1 in its high
// nibble (for Q4_K/Q5_K this is the GGUF byte qs[32p + 4j + i], unchanged).
// Q5_K h: bit j of byte 32·s + 4·r + i is the 5th bit (16) of element 4j+i of sub-block s, row r.
// Q6_K qh: bits 2t, 2t+1 of byte 256·u + 32·j + 4·r + i are the top two bits (16, 32) of element
// 4j+i of sub-block 4u+t, row r. Q6_K's weight is q − 32 (q = 0..63, the 6-bit value).
// Q6_K's int8 scales differ between the two 16-element halves of a 32-element block, so they are
// applied in the integer domain (exact: |isum| < 2^24):
//     isum_b = sc_lo·Σ_{e<16} w_e·q_e + sc_hi·Σ_{e≥16} w_e·q_e,  then  acc = fma(float(isum_b), d·dx_b, acc)
//
// Activations are quantized per 32-element block as llama.cpp's Q8_0/Q8_1 do (specdec_q8act.h:
// d = max|x|/127, q = round-to-nearest-even(x/d), s = d·Σq), plus the integer block sum Σq.
// Result of one (row, token) pair, over blocks b in order, in one float accumulator:
//     isum_b = Σ_e w_e·q_e          (the exact integer dot product of the block; Q4_0: w = u − 8)
//     acc    = fma(float(isum_b), d_b·dx_b, acc)
//     acc    = fma(m_b, s_b, acc)   (Q4_1, Q4_K, Q5_K)
// Every path (portable C, AVX2, AVX-512 VNNI) computes the integers exactly and the float steps in
// the same order, so the paths agree bit for bit, and a token's result never depends on the batch,
// the tile, the row group or the thread count. The VNNI path takes the two groups of a pair at
// once in 512-bit registers (16 rows a lane set, tiles of up to 8 tokens): the same per-lane
// steps, half the instructions per token.
#ifndef SPECDEC_X8_H
#define SPECDEC_X8_H

#include <stdint.h>

/// Bytes of one 8-row block record of weight type `wtype` (SPECDEC_Q8W_*).
long specdec_x8_record_bytes(int wtype);
/// Elements of a row one record covers: 32, or 256 for the K-quants. `count` must be a multiple.
long specdec_x8_block_elements(int wtype);

/// Repacks `rowCount` GGUF rows of `count` elements (rows `rowBytes` apart) into `out`, which must
/// hold ceil(rowCount/8) · (count/block_elements) · record_bytes bytes.
void specdec_x8_repack(int wtype, const void *rows, long rowBytes, long rowCount, long count, void *out);

/// Integer block sums Σq of quantized activations: qsum[t·bstride + b] for n rows (padding 0).
void specdec_x8_block_sums(const int8_t *qs, long n, long count, int32_t *qsum, long bstride);

/// y[t·yStride + r] for rows r of groups g0..<g1 (r < rowCount) and tokens t < n.
/// `packed` is the whole repacked matrix; xq/xd/xs/qsum as specdec_q8_quantize and
/// specdec_x8_block_sums write them.
void specdec_x8_matmul(int wtype, const void *packed, long rowCount, long g0, long g1,
                       const int8_t *xq, const float *xd, const float *xs, const int32_t *qsum, long bstride,
                       long n, long count, float *y, long yStride);
void specdec_x8_matmul_avx2(int wtype, const void *packed, long rowCount, long g0, long g1,
                            const int8_t *xq, const float *xd, const float *xs, const int32_t *qsum, long bstride,
                            long n, long count, float *y, long yStride);
void specdec_x8_matmul_vnni(int wtype, const void *packed, long rowCount, long g0, long g1,
                            const int8_t *xq, const float *xd, const float *xs, const int32_t *qsum, long bstride,
                            long n, long count, float *y, long yStride);

/// 1 when the CPU and OS support AVX-512 F/BW/VL with VNNI (for specdec_x8_matmul_vnni), else 0.
int specdec_cpu_supports_avx512vnni(void);

#endif
