/// Dequantization of packed GGML rows to float32, bit-compatible with llama.cpp's
/// `dequantize_row_*` (ggml-quants.c) and the `gguf` Python package.
///
/// Every formula is evaluated exactly as the reference writes it, one IEEE operation at a
/// time (Swift never contracts `a * b + c` into an FMA), so the output is bit-identical to
/// gguf-py's numpy implementation. All loads are unaligned: GGUF tensor data is only
/// guaranteed 1-byte alignment inside blocks. The host is assumed little-endian (as GGUF is).

// MARK: - Unaligned loads

@inline(__always)
func ldU16(_ p: UnsafeRawPointer, _ offset: Int) -> UInt16 {
    p.loadUnaligned(fromByteOffset: offset, as: UInt16.self)
}

/// A fp16 scale field. Same result as `halfToFloat` for every input, but normals and
/// subnormals take one exact multiplication (by 2^112) instead of branches.
@inline(__always)
func ldHalf(_ p: UnsafeRawPointer, _ offset: Int) -> Float {
    let h = p.loadUnaligned(fromByteOffset: offset, as: UInt16.self)
    if _slowPath(h & 0x7c00 == 0x7c00) { return halfToFloat(h) }   // inf / NaN
    let mag = Float(bitPattern: UInt32(h & 0x7fff) &<< 13) * 0x1p112
    return Float(bitPattern: mag.bitPattern | (UInt32(h & 0x8000) &<< 16))
}

@inline(__always)
func ldU8(_ p: UnsafeRawPointer, _ offset: Int) -> UInt8 {
    p.load(fromByteOffset: offset, as: UInt8.self)
}

// MARK: - Public entry point

/// Dequantizes `count` elements (a whole number of blocks of `type`) from `src` into `dst`.
public func dequantizeRow(_ type: QuantType, _ src: UnsafeRawPointer, count: Int, into dst: UnsafeMutablePointer<Float>) {
    precondition(count >= 0 && count % type.blockSize == 0, "dequantizeRow: \(count) is not a whole number of \(type) blocks")
    let blocks = count / type.blockSize
    let bb = type.blockBytes
    switch type {
    case .f32:
        UnsafeMutableRawPointer(dst).copyMemory(from: src, byteCount: count * 4)
    case .f16:
        for i in 0..<count { dst[i] = halfToFloat(ldU16(src, 2 * i)) }
    case .bf16:
        for i in 0..<count { dst[i] = bf16ToFloat(ldU16(src, 2 * i)) }
    case .q4_0:
        for b in 0..<blocks { dequantizeBlockQ4_0(src + b * bb, dst + b * 32) }
    case .q4_1:
        for b in 0..<blocks { dequantizeBlockQ4_1(src + b * bb, dst + b * 32) }
    case .q8_0:
        for b in 0..<blocks { dequantizeBlockQ8_0(src + b * bb, dst + b * 32) }
    case .q4_K:
        for b in 0..<blocks { dequantizeBlockQ4_K(src + b * bb, dst + b * 256) }
    case .q5_K:
        for b in 0..<blocks { dequantizeBlockQ5_K(src + b * bb, dst + b * 256) }
    case .q6_K:
        for b in 0..<blocks { dequantizeBlockQ6_K(src + b * bb, dst + b * 256) }
    }
}

// MARK: - 32-element blocks

/// block_q4_0 { f16 d; u8 qs[16] }: element j = (qs[j] & 15) - 8, element j+16 = (qs[j] >> 4) - 8; y = q * d.
@inline(__always)
func dequantizeBlockQ4_0(_ p: UnsafeRawPointer, _ y: UnsafeMutablePointer<Float>) {
    let d = ldHalf(p, 0)
    for j in 0..<16 {
        let q = ldU8(p, 2 + j)
        y[j] = Float(Int32(q & 0x0F) - 8) * d
        y[j + 16] = Float(Int32(q >> 4) - 8) * d
    }
}

/// block_q4_1 { f16 d; f16 m; u8 qs[16] }: y = q * d + m (rounded after the product, as the reference).
@inline(__always)
func dequantizeBlockQ4_1(_ p: UnsafeRawPointer, _ y: UnsafeMutablePointer<Float>) {
    let d = ldHalf(p, 0)
    let m = ldHalf(p, 2)
    for j in 0..<16 {
        let q = ldU8(p, 4 + j)
        y[j] = Float(q & 0x0F) * d + m
        y[j + 16] = Float(q >> 4) * d + m
    }
}

/// block_q8_0 { f16 d; i8 qs[32] }: y = q * d.
@inline(__always)
func dequantizeBlockQ8_0(_ p: UnsafeRawPointer, _ y: UnsafeMutablePointer<Float>) {
    let d = ldHalf(p, 0)
    for j in 0..<32 {
        y[j] = Float(Int8(bitPattern: ldU8(p, 2 + j))) * d
    }
}

// MARK: - K-quants (256-element super-blocks)

/// ggml's `get_scale_min_k4`: the 8 (6-bit scale, 6-bit min) pairs packed into 12 bytes.
@inline(__always)
func scaleMinK4(_ j: Int, _ q: UnsafeRawPointer) -> (UInt8, UInt8) {
    if j < 4 {
        return (ldU8(q, j) & 63, ldU8(q, j + 4) & 63)
    } else {
        let d = (ldU8(q, j + 4) & 0x0F) | ((ldU8(q, j - 4) >> 6) << 4)
        let m = (ldU8(q, j + 4) >> 4) | ((ldU8(q, j) >> 6) << 4)
        return (d, m)
    }
}

/// block_q4_K { f16 d; f16 dmin; u8 scales[12]; u8 qs[128] }.
/// Four 64-element groups; in group g, elements 0..31 use the low nibbles of qs[32g..<32g+32]
/// with (scale, min) pair 2g, elements 32..63 the high nibbles with pair 2g+1.
/// y = (d * sc) * q - (dmin * m).
@inline(__always)
func dequantizeBlockQ4_K(_ p: UnsafeRawPointer, _ y: UnsafeMutablePointer<Float>) {
    let d = ldHalf(p, 0)
    let dmin = ldHalf(p, 2)
    let scales = p + 4
    let qs = p + 16
    for g in 0..<4 {
        let (sc1, m1b) = scaleMinK4(2 * g, scales)
        let (sc2, m2b) = scaleMinK4(2 * g + 1, scales)
        let d1 = d * Float(sc1), m1 = dmin * Float(m1b)
        let d2 = d * Float(sc2), m2 = dmin * Float(m2b)
        let q = qs + 32 * g
        let out = y + 64 * g
        for l in 0..<32 {
            let b = ldU8(q, l)
            out[l] = d1 * Float(b & 0x0F) - m1
            out[l + 32] = d2 * Float(b >> 4) - m2
        }
    }
}

/// block_q5_K { f16 d; f16 dmin; u8 scales[12]; u8 qh[32]; u8 qs[128] }.
/// As q4_K, with the fifth bit of element l of group g (low half) in bit 2g of qh[l],
/// and of element l+32 (high half) in bit 2g+1 of qh[l].
@inline(__always)
func dequantizeBlockQ5_K(_ p: UnsafeRawPointer, _ y: UnsafeMutablePointer<Float>) {
    let d = ldHalf(p, 0)
    let dmin = ldHalf(p, 2)
    let scales = p + 4
    let qh = p + 16
    let qs = p + 48
    for g in 0..<4 {
        let (sc1, m1b) = scaleMinK4(2 * g, scales)
        let (sc2, m2b) = scaleMinK4(2 * g + 1, scales)
        let d1 = d * Float(sc1), m1 = dmin * Float(m1b)
        let d2 = d * Float(sc2), m2 = dmin * Float(m2b)
        let q = qs + 32 * g
        let out = y + 64 * g
        let s1 = UInt8(2 * g), s2 = UInt8(2 * g + 1)
        for l in 0..<32 {
            let b = ldU8(q, l)
            let h = ldU8(qh, l)
            let lo = (b & 0x0F) | (((h >> s1) & 1) << 4)
            let hi = (b >> 4) | (((h >> s2) & 1) << 4)
            out[l] = d1 * Float(lo) - m1
            out[l + 32] = d2 * Float(hi) - m2
        }
    }
}

/// block_q6_K { u8 ql[128]; u8 qh[64]; i8 scales[16]; f16 d }.
/// Two 128-element halves n (ql += 64, qh += 32, scales += 8); for l in 0..<32:
///   y[l]    = d*sc[l/16+0] * ((ql[l]    & 15 | (qh[l]>>0 & 3) << 4) - 32)
///   y[l+32] = d*sc[l/16+2] * ((ql[l+32] & 15 | (qh[l]>>2 & 3) << 4) - 32)
///   y[l+64] = d*sc[l/16+4] * ((ql[l]    >> 4 | (qh[l]>>4 & 3) << 4) - 32)
///   y[l+96] = d*sc[l/16+6] * ((ql[l+32] >> 4 | (qh[l]>>6 & 3) << 4) - 32)
@inline(__always)
func dequantizeBlockQ6_K(_ p: UnsafeRawPointer, _ y: UnsafeMutablePointer<Float>) {
    let d = ldHalf(p, 208)
    for n in 0..<2 {
        let ql = p + 64 * n
        let qh = p + 128 + 32 * n
        let sc = p + 192 + 8 * n
        let out = y + 128 * n
        for half in 0..<2 {
            let da = d * Float(Int8(bitPattern: ldU8(sc, half + 0)))
            let db = d * Float(Int8(bitPattern: ldU8(sc, half + 2)))
            let dc = d * Float(Int8(bitPattern: ldU8(sc, half + 4)))
            let dd = d * Float(Int8(bitPattern: ldU8(sc, half + 6)))
            for l in (16 * half)..<(16 * half + 16) {
                let a = ldU8(ql, l), b = ldU8(ql, l + 32), h = ldU8(qh, l)
                let q1 = Int32((a & 0x0F) | ((h & 3) << 4)) - 32
                let q2 = Int32((b & 0x0F) | (((h >> 2) & 3) << 4)) - 32
                let q3 = Int32((a >> 4) | (((h >> 4) & 3) << 4)) - 32
                let q4 = Int32((b >> 4) | (((h >> 6) & 3) << 4)) - 32
                out[l] = da * Float(q1)
                out[l + 32] = db * Float(q2)
                out[l + 64] = dc * Float(q3)
                out[l + 96] = dd * Float(q4)
            }
        }
    }
}
