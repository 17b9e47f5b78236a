/// Dot products of packed GGML weight rows with float32 vectors.
///
/// Determinism contract: the result of `dotRow` depends only on the row bytes, `x` and
/// `count`. Every kernel accumulates in Float with a fixed lane layout and a fixed final
/// reduction tree, uses no threads, and Swift never reassociates or contracts
/// floating-point operations (no fast-math, no implicit FMA), so `matVec` and `matMul` (and
/// any batched caller) give results bit-identical to one `dotRow` call per row and vector.
/// The results do not depend on the build's target CPU either (no FMA contraction).
/// (Exception: when the result is NaN, its sign/payload is unspecified.)
///
/// Method.
/// - Q8_0, K-quants: one block (32 / 256 elements) at a time is dequantized into an aligned
///   stack buffer by exactly the code `dequantizeRow` uses (so the weights are bit-identical
///   to `dequantizeRow`'s output), then `acc += w[16i..<16i+16] * x[16i..<16i+16]` into one
///   16-lane accumulator; at the end the lanes are reduced pairwise (`hsum`).
/// - F16/BF16: the same, 32 elements at a time, plus an in-order scalar tail. F32: two
///   16-lane accumulators over the row, plus an in-order scalar tail.
/// - Q4_0/Q4_1: nibble-order kernel (see below). `matVec`/`matMul` rearrange `x` once per
///   call; `dotRow` rearranges it in registers per block (same bits, ~2x slower per row), so
///   prefer `matVec`/`matMul` for many rows.
///
/// Why this shape: Swift's SIMD operators reach LLVM as per-lane scalar code that the SLP
/// vectorizer re-packs. Store-seeded conversion loops and `acc += a * b` chains are re-packed
/// reliably (clean SSE2 code on the baseline x86-64 target); reduction trees and byte
/// shuffles inside one expression are not (LLVM then mixes lanes and the loop runs 2-3x
/// slower). The Q4 nibble kernel's tree is the one measured exception on the baseline target
/// (4 GB/s vs 2 GB/s for dequantize-and-accumulate) — but it degrades to ~1.5 GB/s when
/// built with `-target-cpu haswell`, where dequantize-and-accumulate reaches ~4 GB/s (Q4_1)
/// and ~10 GB/s (Q8_0). Re-measure (KernelsTests benchmark) before changing build flags or
/// "simplifying" the kernels.

// MARK: - Small helpers

@inline(__always)
func ld16(_ p: UnsafeRawPointer, _ byteOffset: Int) -> SIMD16<Float> {
    p.loadUnaligned(fromByteOffset: byteOffset, as: SIMD16<Float>.self)
}

/// Fixed-order horizontal sum: halves added pairwise down to one scalar.
@inline(__always)
func hsum(_ v: SIMD16<Float>) -> Float {
    let a = v.lowHalf + v.highHalf      // 8
    let b = a.lowHalf + a.highHalf      // 4
    let c = b.lowHalf + b.highHalf      // 2
    return c[0] + c[1]
}

// MARK: - Block accumulation

/// A 256-float, 16-byte-aligned scratch buffer on the stack.
@inline(__always)
func withBlockScratch<R>(_ body: (UnsafeMutablePointer<Float>) -> R) -> R {
    withUnsafeTemporaryAllocation(of: SIMD16<Float>.self, capacity: 16) { buf in
        body(UnsafeMutableRawPointer(buf.baseAddress!).assumingMemoryBound(to: Float.self))
    }
}

/// acc += w[16i ..< 16i+16] * x[16i ..< 16i+16] for i = 0, 1, … in order; `w` is
/// 16-byte aligned, `n` a multiple of 32. (One accumulator: keeps the 8 accumulator
/// registers + 8 weight registers of the two-accumulator form from spilling on SSE2.)
@inline(__always)
func accumulate(_ w: UnsafePointer<Float>, _ x: UnsafePointer<Float>, _ n: Int, _ acc: inout SIMD16<Float>) {
    let wr = UnsafeRawPointer(w), xr = UnsafeRawPointer(x)
    var o = 0
    while o < 4 * n {
        acc += wr.load(fromByteOffset: o, as: SIMD16<Float>.self) * ld16(xr, o)
        o += 64
    }
}

// MARK: - Portable entry points (the public API, with run-time dispatch, is in Dispatch.swift)

/// Dot product of one packed row of `count` elements (a whole number of blocks of `type`)
/// with the float32 vector `x`. The row may be at any byte alignment.
func portableDotRow(_ type: QuantType, _ row: UnsafeRawPointer, _ x: UnsafePointer<Float>, count: Int) -> Float {
    precondition(count >= 0 && count % type.blockSize == 0, "dotRow: \(count) is not a whole number of \(type) blocks")
    switch type {
    case .f32: return dotF32(row, x, count)
    case .f16: return dotHalfRow(row, x, count, bf16: false)
    case .bf16: return dotHalfRow(row, x, count, bf16: true)
    case .q8_0: return dotBlocks(row, x, count / 32, 34, 32) { dequantizeBlockQ8_0($0, $1) }
    case .q4_0: return dotRowQ4_0(row, x, count)
    case .q4_1: return dotRowQ4_1(row, x, count)
    case .q4_K: return dotBlocks(row, x, count / 256, 144, 256) { dequantizeBlockQ4_K($0, $1) }
    case .q5_K: return dotBlocks(row, x, count / 256, 176, 256) { dequantizeBlockQ5_K($0, $1) }
    case .q6_K: return dotBlocks(row, x, count / 256, 210, 256) { dequantizeBlockQ6_K($0, $1) }
    }
}

/// `y[r] = dotRow(type, rows + r * rowBytes, x, count: count)` for `r` in `0..<rowCount`,
/// single-threaded (callers split rows across threads), bit-identical to per-row `dotRow`.
/// `rowBytes` is the stride between rows (at least `type.rowBytes(count)`); rows may be at
/// any byte alignment.
func portableMatVec(_ type: QuantType, rows: UnsafeRawPointer, rowBytes: Int, rowCount: Int,
                   x: UnsafePointer<Float>, count: Int, into y: UnsafeMutablePointer<Float>) {
    precondition(count >= 0 && count % type.blockSize == 0, "matVec: \(count) is not a whole number of \(type) blocks")
    precondition(rowCount >= 0 && rowBytes >= type.rowBytes(count)!, "matVec: rowBytes too small")
    // Each case is specialised so the kernel is inlined into the row loop.
    switch type {
    case .f32:
        for r in 0..<rowCount { y[r] = dotF32(rows + r * rowBytes, x, count) }
    case .f16:
        for r in 0..<rowCount { y[r] = dotHalfRow(rows + r * rowBytes, x, count, bf16: false) }
    case .bf16:
        for r in 0..<rowCount { y[r] = dotHalfRow(rows + r * rowBytes, x, count, bf16: true) }
    case .q8_0:
        for r in 0..<rowCount { y[r] = dotBlocks(rows + r * rowBytes, x, count / 32, 34, 32) { dequantizeBlockQ8_0($0, $1) } }
    case .q4_0:
        withPreparedXQ4(x, n: 1, count) { xp, _ in
            for r in 0..<rowCount { y[r] = dotQ4(rows + r * rowBytes, prepared: xp, count, hasMin: false) }
        }
    case .q4_1:
        withPreparedXQ4(x, n: 1, count) { xp, _ in
            for r in 0..<rowCount { y[r] = dotQ4(rows + r * rowBytes, prepared: xp, count, hasMin: true) }
        }
    case .q4_K, .q5_K, .q6_K:
        for r in 0..<rowCount { y[r] = portableDotRow(type, rows + r * rowBytes, x, count: count) }
    }
}

/// Batched form for several activation vectors:
/// `y[t * yStride + r] = dotRow(type, rows + r * rowBytes, x + t * count, count: count)`
/// for `r` in `0..<rowCount`, `t` in `0..<n` — bit-identical to those `dotRow` calls (and to
/// `matVec` per token). Rows are the outer loop, so each weight row is streamed from memory
/// once for all `n` vectors; per-vector preparation of `x` (Q4_0/Q4_1) is done once per call
/// instead of once per row. Single-threaded; callers split rows across threads.
func portableMatMul(_ type: QuantType, rows: UnsafeRawPointer, rowBytes: Int, rowCount: Int,
                   x: UnsafePointer<Float>, n: Int, count: Int,
                   into y: UnsafeMutablePointer<Float>, yStride: Int) {
    precondition(count >= 0 && count % type.blockSize == 0, "matMul: \(count) is not a whole number of \(type) blocks")
    precondition(rowCount >= 0 && n >= 0 && rowBytes >= type.rowBytes(count)!, "matMul: bad sizes")
    switch type {
    case .q4_0, .q4_1:
        let hasMin = type == .q4_1
        withPreparedXQ4(x, n: n, count) { xp, stride in
            for r in 0..<rowCount {
                let w = rows + r * rowBytes
                for t in 0..<n { y[t * yStride + r] = dotQ4(w, prepared: xp + t * stride, count, hasMin: hasMin) }
            }
        }
    case .q8_0:
        for r in 0..<rowCount {
            let w = rows + r * rowBytes
            for t in 0..<n {
                y[t * yStride + r] = dotBlocks(w, x + t * count, count / 32, 34, 32) { dequantizeBlockQ8_0($0, $1) }
            }
        }
    default:
        for r in 0..<rowCount {
            let w = rows + r * rowBytes
            for t in 0..<n { y[t * yStride + r] = portableDotRow(type, w, x + t * count, count: count) }
        }
    }
}

// MARK: - 4-bit blocks (Q4_0, Q4_1): nibble-order kernel

// The 16 quant bytes of a block are loaded as four 32-bit lanes; `(w >> 4g) & 15` isolates,
// in lane k, the nibble at bit 4g, i.e. element 16·(g & 1) + 4k + (g >> 1) of the block. The
// nibbles are never shuffled into element order: `x` is rearranged once into this order
// instead (`prepareXQ4`, once per vector per `matVec`/`matMul` call; `dotRow` does the same
// 4×4 transposes in registers, `dotRowQ4`). Per block:
//     s = Σ_g cvt(nibbles_g) · x'_g            (8 × 4 lanes, fixed tree)
//     acc += s · d;   macc += m · Σ x_block    (Q4_0: m = −8·d, exact)
// (This block's tree happens to be re-packed cleanly by LLVM's SLP vectorizer, which is not
// the case for byte-sized lanes — hence Q8_0 uses the dequantize-and-accumulate path.)

@inline(__always)
func ld4a(_ p: UnsafeRawPointer, _ byteOffset: Int) -> SIMD4<Float> {
    p.load(fromByteOffset: byteOffset, as: SIMD4<Float>.self)
}

@inline(__always)
func cvt(_ v: SIMD4<UInt32>) -> SIMD4<Float> { SIMD4<Float>(unsafeBitCast(v, to: SIMD4<Int32>.self)) }

/// Floats needed by `prepareXQ4` for `count` elements (a multiple of 4, so that consecutive
/// prepared vectors stay 16-byte aligned).
@inline(__always)
func preparedXQ4Stride(_ count: Int) -> Int {
    let blocks = count / 32
    return 32 * blocks + (blocks + 3) / 4 * 4
}

/// Writes x in nibble order (see above), then the per-block sums of x, to `xp`
/// (`preparedXQ4Stride(count)` floats, 16-byte aligned); `count` a multiple of 32.
@inline(__always)
func prepareXQ4(_ x: UnsafePointer<Float>, _ count: Int, _ xp: UnsafeMutablePointer<Float>) {
    let blocks = count / 32
    let sums = xp + 32 * blocks
    for b in 0..<blocks {
        let src = UnsafeRawPointer(x + 32 * b), dst = UnsafeMutableRawPointer(xp + 32 * b)
        // Two 4×4 transposes: group g = 2t + h, lane k ← element 16h + 4k + t.
        for h in 0..<2 {
            let a = src.loadUnaligned(fromByteOffset: 64 * h, as: SIMD4<Float>.self)
            let c = src.loadUnaligned(fromByteOffset: 64 * h + 16, as: SIMD4<Float>.self)
            let e = src.loadUnaligned(fromByteOffset: 64 * h + 32, as: SIMD4<Float>.self)
            let f = src.loadUnaligned(fromByteOffset: 64 * h + 48, as: SIMD4<Float>.self)
            for t in 0..<4 {
                dst.storeBytes(of: SIMD4<Float>(a[t], c[t], e[t], f[t]), toByteOffset: 16 * (2 * t + h), as: SIMD4<Float>.self)
            }
        }
        // Σ x over the block in a fixed order (natural element order; same in `dotRowQ4`).
        sums[b] = hsum(ld16(src, 0) + ld16(src, 64))
    }
}

/// Runs `body` with `n` prepared copies of x (`prepareXQ4`), `stride` floats apart, in a
/// 16-byte-aligned temporary buffer (SIMD4<Float> elements), so the kernel's x loads are aligned.
@inline(__always)
func withPreparedXQ4<R>(_ x: UnsafePointer<Float>, n: Int, _ count: Int,
                        _ body: (UnsafeMutablePointer<Float>, Int) -> R) -> R {
    let stride = preparedXQ4Stride(count)
    return withUnsafeTemporaryAllocation(of: SIMD4<Float>.self, capacity: max(n * stride / 4, 1)) { buf in
        let xp = UnsafeMutableRawPointer(buf.baseAddress!).assumingMemoryBound(to: Float.self)
        for t in 0..<n { prepareXQ4(x + t * count, count, xp + t * stride) }
        return body(xp, stride)
    }
}

/// One row of Q4_0/Q4_1 against a prepared x (`prepareXQ4`).
@inline(__always)
func dotQ4(_ row: UnsafeRawPointer, prepared xp: UnsafePointer<Float>, _ count: Int, hasMin: Bool) -> Float {
    dotQ4(row, UnsafeRawPointer(xp), xp + 32 * (count / 32), count / 32, hasMin: hasMin)
}

/// The two adjacent fp16 fields (d, m) of a Q4_1 block, exactly as `halfToFloat` would give
/// them. Both normal (the usual case): rebias both exponents with integer ops on one 32-bit
/// load; otherwise the general conversion.
@inline(__always)
func ldHalfPair(_ p: UnsafeRawPointer) -> (Float, Float) {
    let v = p.loadUnaligned(as: UInt32.self)
    // exponent e of each half: (e + 1) & 0x1e == 0  <=>  e is 0 (zero/subnormal) or 31 (inf/NaN)
    let t = ((v & 0x7c00_7c00) &+ 0x0400_0400) & 0x7800_7800
    if _slowPath(t & 0x7800 == 0 || t & 0x7800_0000 == 0) {
        return (ldHalf(p, 0), ldHalf(p, 2))
    }
    let d = (((v & 0x7fff) &<< 13) &+ 0x3800_0000) | ((v & 0x8000) &<< 16)
    let m = (((v &>> 3) & 0x0fff_e000) &+ 0x3800_0000) | (v & 0x8000_0000)
    return (Float(bitPattern: d), Float(bitPattern: m))
}

/// One row of Q4_0 (`hasMin == false`) or Q4_1 blocks against nibble-ordered x.
@inline(__always)
func dotQ4(_ row: UnsafeRawPointer, _ xp: UnsafeRawPointer, _ sx: UnsafePointer<Float>, _ blocks: Int, hasMin: Bool) -> Float {
    var acc = SIMD4<Float>()
    var macc: Float = 0
    dotQ4(row, xp, sx, blocks, hasMin: hasMin, &acc, &macc)
    let h = acc.lowHalf + acc.highHalf
    return (h[0] + h[1]) + macc
}

/// A Q4_0/Q4_1 block's scale and offset: y = d·q + m (Q4_0 has no stored minimum: m = −8d).
@inline(__always)
func q4Scales(_ p: UnsafeRawPointer, hasMin: Bool) -> (d: Float, m: Float) {
    if hasMin { return ldHalfPair(p) }
    let d = ldHalf(p, 0)
    return (d, -8 * d)
}

/// The block loop of `dotQ4`, continuing from (`acc`, `macc`): running it over consecutive
/// runs of blocks gives bit-for-bit the same state as one run over all of them.
@inline(__always)
func dotQ4(_ row: UnsafeRawPointer, _ xp: UnsafeRawPointer, _ sx: UnsafePointer<Float>, _ blocks: Int, hasMin: Bool,
           _ acc: inout SIMD4<Float>, _ macc: inout Float) {
    var p = row
    var x = xp
    let m15 = SIMD4<UInt32>(repeating: 15)
    let qsOffset = hasMin ? 4 : 2
    for b in 0..<blocks {
        let (d, m) = q4Scales(p, hasMin: hasMin)
        let w = p.loadUnaligned(fromByteOffset: qsOffset, as: SIMD4<UInt32>.self)
        let s = ((cvt(w & m15) * ld4a(x, 0) + cvt((w &>> 4) & m15) * ld4a(x, 16))
              + (cvt((w &>> 8) & m15) * ld4a(x, 32) + cvt((w &>> 12) & m15) * ld4a(x, 48)))
              + ((cvt((w &>> 16) & m15) * ld4a(x, 64) + cvt((w &>> 20) & m15) * ld4a(x, 80))
              + (cvt((w &>> 24) & m15) * ld4a(x, 96) + cvt(w &>> 28) * ld4a(x, 112)))
        acc += s * d
        macc += m * sx[b]
        p += hasMin ? 20 : 18
        x += 128
    }
}

/// `dotRow` for Q4_0/Q4_1 without a preparation pass: the same arithmetic as `dotQ4` on a
/// prepared x (bit-identical), with the nibble-order x vectors and block sums formed in
/// registers from the natural-order x.
@inline(__always)
func dotRowQ4(_ row: UnsafeRawPointer, _ x: UnsafePointer<Float>, _ count: Int, hasMin: Bool) -> Float {
    var acc = SIMD4<Float>()
    var macc: Float = 0
    var p = row
    var xr = UnsafeRawPointer(x)
    let m15 = SIMD4<UInt32>(repeating: 15)
    let qsOffset = hasMin ? 4 : 2
    for _ in 0..<(count / 32) {
        let (d, m) = q4Scales(p, hasMin: hasMin)
        let lo = ld16(xr, 0), hi = ld16(xr, 64)
        let sx = hsum(lo + hi)
        // group g = 2t + h, lane k <- element 16h + 4k + t
        @inline(__always) func xg(_ v: SIMD16<Float>, _ t: Int) -> SIMD4<Float> { SIMD4(v[t], v[4 + t], v[8 + t], v[12 + t]) }
        let w = p.loadUnaligned(fromByteOffset: qsOffset, as: SIMD4<UInt32>.self)
        let s = ((cvt(w & m15) * xg(lo, 0) + cvt((w &>> 4) & m15) * xg(hi, 0))
              + (cvt((w &>> 8) & m15) * xg(lo, 1) + cvt((w &>> 12) & m15) * xg(hi, 1)))
              + ((cvt((w &>> 16) & m15) * xg(lo, 2) + cvt((w &>> 20) & m15) * xg(hi, 2))
              + (cvt((w &>> 24) & m15) * xg(lo, 3) + cvt(w &>> 28) * xg(hi, 3)))
        acc += s * d
        macc += m * sx
        p += hasMin ? 20 : 18
        xr += 128
    }
    let h = acc.lowHalf + acc.highHalf
    return (h[0] + h[1]) + macc
}

@inline(never)
func dotRowQ4_0(_ row: UnsafeRawPointer, _ x: UnsafePointer<Float>, _ count: Int) -> Float {
    dotRowQ4(row, x, count, hasMin: false)
}

@inline(never)
func dotRowQ4_1(_ row: UnsafeRawPointer, _ x: UnsafePointer<Float>, _ count: Int) -> Float {
    dotRowQ4(row, x, count, hasMin: true)
}

// MARK: - Kernels

/// Σ over blocks of (dequantized block) · x, `blockElems` a multiple of 32.
@inline(__always)
func dotBlocks(_ row: UnsafeRawPointer, _ x: UnsafePointer<Float>, _ blocks: Int, _ blockBytes: Int, _ blockElems: Int,
               _ dequantizeBlock: (UnsafeRawPointer, UnsafeMutablePointer<Float>) -> Void) -> Float {
    withBlockScratch { w in
        var acc = SIMD16<Float>()
        var p = row
        var xb = x
        for _ in 0..<blocks {
            dequantizeBlock(p, w)
            accumulate(w, xb, blockElems, &acc)
            p += blockBytes
            xb += blockElems
        }
        return hsum(acc)
    }
}

@inline(__always)
func dotF32(_ w: UnsafeRawPointer, _ x: UnsafePointer<Float>, _ count: Int) -> Float {
    let xr = UnsafeRawPointer(x)
    var acc0 = SIMD16<Float>(), acc1 = SIMD16<Float>()
    var i = 0
    while i + 32 <= count {
        acc0 += ld16(w, 4 * i) * ld16(xr, 4 * i)
        acc1 += ld16(w, 4 * i + 64) * ld16(xr, 4 * i + 64)
        i += 32
    }
    var s = hsum(acc0 + acc1)
    while i < count {
        s += w.loadUnaligned(fromByteOffset: 4 * i, as: Float.self) * x[i]
        i += 1
    }
    return s
}

/// Branch-free exact half → float (same results as `halfToFloat` for every input), written
/// with selects so that a loop of it vectorizes.
@inline(__always)
func halfToFloatBranchless(_ h16: UInt16) -> Float {
    let h = UInt32(h16)
    let mag = (h & 0x7fff) &<< 13
    let exp = h & 0x7c00
    var bits = mag &+ (exp == 0x7c00 ? 0x7000_0000 : 0x3800_0000)   // rebias by 224 (inf/NaN) or 112
    let sub = Float(Int32(bitPattern: h & 0x3ff)) * 0x1p-24           // zero / subnormal, exact
    bits = exp == 0 ? sub.bitPattern : bits
    return Float(bitPattern: bits | ((h & 0x8000) &<< 16))
}

/// F16 / BF16 rows: 32 elements at a time converted into the scratch buffer, then accumulated;
/// a tail of count % 32 elements is added in order at the end.
@inline(__always)
func dotHalfRow(_ row: UnsafeRawPointer, _ x: UnsafePointer<Float>, _ count: Int, bf16: Bool) -> Float {
    withBlockScratch { w in
        var acc = SIMD16<Float>()
        let chunks = count / 32
        for c in 0..<chunks {
            let p = row + 64 * c
            if bf16 {
                for j in 0..<32 { w[j] = bf16ToFloat(ldU16(p, 2 * j)) }
            } else {
                for j in 0..<32 { w[j] = halfToFloatBranchless(ldU16(p, 2 * j)) }
            }
            accumulate(w, x + 32 * c, 32, &acc)
        }
        var s = hsum(acc)
        for i in (32 * chunks)..<count {
            let h = ldU16(row, 2 * i)
            s += (bf16 ? bf16ToFloat(h) : halfToFloat(h)) * x[i]
        }
        return s
    }
}
