/// Dot-product kernels for x86-64 CPUs with AVX2, FMA and F16C.
///
/// This module is compiled with `-target-cpu haswell` (see Package.swift), so every function in
/// it may use AVX2/FMA/F16C/BMI instructions: call into it only after
/// `specdec_cpu_supports_haswell()` (CKernelsSupport) said yes. It has no dependencies and no
/// global state, so merely loading the program runs none of its code. The Kernels module
/// dispatches to it at run time (`KernelPath.avx2`) and keeps the portable kernels as fallback.
///
/// Determinism contract (the same as the portable kernels', per path): the result for one
/// (row, vector) pair depends only on the row bytes, the vector and `count` — not on how many
/// rows or vectors share the call, their alignment, or the calling thread. Every vector is
/// computed by the same sequence of IEEE operations (FMAs included) whatever the tile it is
/// processed in, and Swift never reassociates floating-point operations. Results differ from
/// the portable path's in rounding only (FMA, different summation order).
///
/// Method (Q4_0/Q4_1/Q8_0): per 32-element block, the quants are widened to 4 × 8 floats once
/// and reused for up to 4 activation vectors; per vector
///     s = Σ_i q_i ⊙ x_i     (a multiply, then 3 FMAs, 8 lanes)
///     acc = fma(s, d, acc); macc = fma(m, Σx_block, macc)     (Q4_1; Q4_0: m = −8d)
/// and at the end `hsum(acc) + macc` with a fixed pairwise tree. The 4-bit quants are isolated
/// with masks on the block's 32-bit words, in an order the activation vector is rearranged to
/// once per call (`prepareQ4`). The fp16 scales are converted with F16C.

// MARK: - Helpers

@inline(__always)
func hsum8(_ v: SIMD8<Float>) -> Float {
    let a = v.lowHalf + v.highHalf
    let b = a.lowHalf + a.highHalf
    return b[0] + b[1]
}

@inline(__always)
func half(_ p: UnsafeRawPointer) -> Float {
#if os(macOS) && arch(x86_64)
    return halfToFloatSlow(p.loadUnaligned(as: UInt16.self))
#else
    return Float(p.loadUnaligned(as: Float16.self))
#endif
}

@inline(__always)
func halves8(_ p: UnsafeRawPointer) -> SIMD8<Float> {
#if os(macOS) && arch(x86_64)
    let v = p.loadUnaligned(as: SIMD8<UInt16>.self)
    var r = SIMD8<Float>()
    for i in 0..<8 { r[i] = halfToFloatSlow(v[i]) }
    return r
#else
    return SIMD8<Float>(p.loadUnaligned(as: SIMD8<Float16>.self))
#endif
}

#if os(macOS) && arch(x86_64)
/// Exact fp16 → float without Float16 (unavailable on x86-64 macOS).
@inline(never)
func halfToFloatSlow(_ h: UInt16) -> Float {
    let sign = UInt32(h & 0x8000) << 16
    let exp = UInt32(h >> 10) & 0x1f
    let mant = UInt32(h & 0x3ff)
    if exp == 0 {
        let v = Float(mant) * (1.0 / 16_777_216.0)
        return sign != 0 ? -v : v
    }
    if exp == 31 { return Float(bitPattern: sign | 0x7f80_0000 | (mant << 13)) }
    return Float(bitPattern: sign | ((exp + 112) << 23) | (mant << 13))
}
#endif

/// Int32 lanes → float (vcvtdq2ps). Non-generic wrappers around the standard library's generic
/// conversions: used inside the generic kernels, they get specialized and inlined here instead
/// of being left as out-of-line calls (to standard-library specializations that other modules,
/// compiled for baseline x86-64, might also emit under the same symbol name).
@inline(__always)
func float8(_ v: SIMD8<UInt32>) -> SIMD8<Float> { SIMD8<Float>(SIMD8<Int32>(truncatingIfNeeded: v)) }

@inline(__always)
func float8(_ v: SIMD8<Int8>) -> SIMD8<Float> { SIMD8<Float>(SIMD8<Int32>(truncatingIfNeeded: v)) }

/// Up to 4 accumulator sets, one per activation vector of a tile.
struct Acc4 {
    var a0 = SIMD8<Float>(), a1 = SIMD8<Float>(), a2 = SIMD8<Float>(), a3 = SIMD8<Float>()

    @inline(__always) subscript(t: Int) -> SIMD8<Float> {
        get { t == 0 ? a0 : t == 1 ? a1 : t == 2 ? a2 : a3 }
        set { if t == 0 { a0 = newValue } else if t == 1 { a1 = newValue } else if t == 2 { a2 = newValue } else { a3 = newValue } }
    }
}

/// Compile-time tile sizes and block formats: the kernels are generic over them so that every
/// combination is specialized with constant loop counts and branches.
protocol TileSize { static var count: Int { get } }
enum Tile1: TileSize { static var count: Int { 1 } }
enum Tile2: TileSize { static var count: Int { 2 } }
enum Tile3: TileSize { static var count: Int { 3 } }
enum Tile4: TileSize { static var count: Int { 4 } }

protocol Q4Format { static var hasMin: Bool { get } }
enum Q4_0Format: Q4Format { static var hasMin: Bool { false } }
enum Q4_1Format: Q4Format { static var hasMin: Bool { true } }

// MARK: - Q4_0 / Q4_1

// The 16 quant bytes of a block are loaded as 4 little-endian words w_k (both 128-bit halves of
// a ymm register hold all four). Byte c of w_k holds element 4k + c in its low nibble and element
// 16 + 4k + c in its high nibble. Chunk i (i = 0, 1, 2) masks, in lanes 0-3, the low nibble of
// byte i (`w & 15 << 8i`, i.e. q·2^8i) and in lanes 4-7 its high nibble (q·2^(8i+4)); chunk 3
// does the same for byte 3 on `w >> 4` (q·2^20, q·2^24: the mask must stay below the sign bit).
// The masked integers convert to float exactly, and x is prepared once per call in the same
// order, each element pre-scaled by the inverse power of two, so the products are exactly q·x
// (unless an x is below 2^-102 and the scaling rounds it: harmless, and still deterministic).

/// Floats of one prepared vector: 32 per block in chunk order, then 4 per block: (Σx, Σx, 0, 0);
/// a multiple of 8, so that consecutive prepared vectors stay 32-byte aligned.
@inline(__always)
func preparedStrideQ4(_ count: Int) -> Int { (36 * (count / 32) + 7) / 8 * 8 }

/// Writes x in chunk order with the per-lane scales (see above), then the block sums.
@inline(__always)
func prepareQ4(_ x: UnsafePointer<Float>, _ count: Int, _ xp: UnsafeMutablePointer<Float>, hasMin: Bool) {
    let blocks = count / 32
    let sums = xp + 32 * blocks
    for b in 0..<blocks {
        let src = x + 32 * b, dst = xp + 32 * b
        for c in 0..<4 {
            // 2^-8c for the low nibbles, 2^-(8c+4) for the high ones.
            let lo = Float(sign: .plus, exponent: -8 * c, significand: 1)
            let hi = Float(sign: .plus, exponent: -8 * c - 4, significand: 1)
            for k in 0..<4 {
                dst[8 * c + k] = src[4 * k + c] * lo
                dst[8 * c + 4 + k] = src[16 + 4 * k + c] * hi
            }
        }
        let r = UnsafeRawPointer(src)
        let c0 = r.loadUnaligned(as: SIMD8<Float>.self), c1 = r.loadUnaligned(fromByteOffset: 32, as: SIMD8<Float>.self)
        let c2 = r.loadUnaligned(fromByteOffset: 64, as: SIMD8<Float>.self), c3 = r.loadUnaligned(fromByteOffset: 96, as: SIMD8<Float>.self)
        let sx = hsum8((c0 + c1) + (c2 + c3))
        let top = (src[19] + src[23]) + (src[27] + src[31])
        let v = hasMin ? SIMD4<Float>(8 * top, sx, 0, 0) : SIMD4<Float>(sx - top, 0, 0, 0)
        UnsafeMutableRawPointer(sums + 4 * b).storeBytes(of: v, as: SIMD4<Float>.self)
    }
}

/// (d, m) of a Q4_1 block in lanes 0 and 1 (F16C, exact); Q4_0: (d, 0).
@inline(__always)
func blockScales(_ p: UnsafeRawPointer, hasMin: Bool) -> SIMD4<Float> {
    let bits = hasMin ? p.loadUnaligned(as: UInt32.self) : UInt32(p.loadUnaligned(as: UInt16.self))
#if os(macOS) && arch(x86_64)
    return SIMD4(halfToFloatSlow(UInt16(truncatingIfNeeded: bits)), halfToFloatSlow(UInt16(truncatingIfNeeded: bits >> 16)), 0, 0)
#else
    return SIMD4<Float>(unsafeBitCast(SIMD4<UInt32>(bits, 0, 0, 0), to: SIMD8<Float16>.self).lowHalf)
#endif
}

/// One block's quants as floats (times the per-lane powers of two), its d broadcast, and its
/// (d, m) pair as `blockScales` gives it (Q4_0: m = −8d in lane 0, exact).
struct Q4Block {
    var q0, q1, q2, q3, d: SIMD8<Float>
    var m: SIMD4<Float>

    @inline(__always)
    init(_ p: UnsafeRawPointer, hasMin: Bool, flip: SIMD8<UInt32>) {
        let k0 = SIMD8<UInt32>(15, 15, 15, 15, 15 << 4, 15 << 4, 15 << 4, 15 << 4)
        let sc = blockScales(p, hasMin: hasMin)
        m = hasMin ? sc : sc * -8
        d = SIMD8<Float>(repeating: sc[0])
        let w4 = p.loadUnaligned(fromByteOffset: hasMin ? 4 : 2, as: SIMD4<UInt32>.self)
        let w = SIMD8<UInt32>(lowHalf: w4, highHalf: w4)
        q0 = float8(w & k0)
        q1 = float8(w & (k0 &<< 8))
        q2 = float8(w & (k0 &<< 16))
        q3 = float8((w ^ flip) & (k0 &<< 24))
    }

    /// Σ q ⊙ x over the block for a prepared vector at `x` (a multiply, then 3 FMAs).
    @inline(__always)
    func dot(_ x: UnsafeRawPointer) -> SIMD8<Float> {
        var s = q0 * x.load(as: SIMD8<Float>.self)
        s = s.addingProduct(q1, x.load(fromByteOffset: 32, as: SIMD8<Float>.self))
        s = s.addingProduct(q2, x.load(fromByteOffset: 64, as: SIMD8<Float>.self))
        return s.addingProduct(q3, x.load(fromByteOffset: 96, as: SIMD8<Float>.self))
    }
}

/// Per-vector accumulators of a tile (up to 4 vectors).
struct MAcc4 {
    var m0 = SIMD4<Float>(), m1 = SIMD4<Float>(), m2 = SIMD4<Float>(), m3 = SIMD4<Float>()

    @inline(__always) subscript(t: Int) -> SIMD4<Float> {
        get { t == 0 ? m0 : t == 1 ? m1 : t == 2 ? m2 : m3 }
        set { if t == 0 { m0 = newValue } else if t == 1 { m1 = newValue } else if t == 2 { m2 = newValue } else { m3 = newValue } }
    }
}

/// One row of Q4_0 / Q4_1 blocks times `T.count` (1...4) prepared vectors: per vector and block,
///     acc = fma(s_b, d_b, acc);  macc = fma(m_b, S_b, macc)     (S: the prepared block sums)
/// Every vector sees the same operations whatever `T` is (batch invariance). (Taking blocks in
/// pairs to shorten the accumulator chains measured slower: the loop is throughput-bound.)
@inline(__always)
func q4Tile<F: Q4Format, T: TileSize>(_: F.Type, _: T.Type, _ row: UnsafeRawPointer, _ blocks: Int,
                                      _ xp: UnsafePointer<Float>, _ stride: Int, _ y: UnsafeMutablePointer<Float>, _ yStride: Int,
                                      _ flip: SIMD8<UInt32>) {
    let hasMin = F.hasMin, tiles = T.count
    var acc = Acc4()
    var macc = MAcc4()
    // Running pointers with wrapping arithmetic: no overflow checks in the loop.
    var xb = UnsafeRawPointer(xp)
    var sums = xb + 128 &* blocks
    let tileStride = 4 &* stride
    var p = row
    let bb = hasMin ? 20 : 18
    for _ in 0..<blocks {
        let blk = Q4Block(p, hasMin: hasMin, flip: flip)
        for t in 0..<tiles {
            let o = t &* tileStride
            acc[t] = acc[t].addingProduct(blk.dot(xb + o), blk.d)
            macc[t] = macc[t].addingProduct(blk.m, sums.load(fromByteOffset: o, as: SIMD4<Float>.self))
        }
        p += bb
        xb += 128
        sums += 16
    }
    for t in 0..<tiles {
        let m = macc[t]
        y[t * yStride] = hasMin ? (hsum8(acc[t]) + m[1]) + m[0] : hsum8(acc[t]) + m[0]
    }
}

/// `q4Tile` for `rowCount` rows. Not inlined: each (format, tile) specialization stays small
/// enough for the optimizer to inline everything inside it.
@inline(never)
func q4Rows<F: Q4Format, T: TileSize>(_ f: F.Type, _ t: T.Type, _ rows: UnsafeRawPointer, _ rowBytes: Int, _ rowCount: Int,
                                      _ blocks: Int, _ xp: UnsafePointer<Float>, _ stride: Int,
                                      _ y: UnsafeMutablePointer<Float>, _ yStride: Int, _ flip: UnsafePointer<SIMD8<UInt32>>) {
    let flip = flip.pointee
    for r in 0..<rowCount {
        q4Tile(f, t, rows + r * rowBytes, blocks, xp, stride, y + r, yStride, flip)
    }
}

/// Rows at a time for which all token tiles run before moving on (their bytes stay in L1).
let rowGroup = 16

@inline(__always)
func matMulQ4<F: Q4Format>(_ f: F.Type, rows: UnsafeRawPointer, rowBytes: Int, rowCount: Int,
                           x: UnsafePointer<Float>, n: Int, count: Int, y: UnsafeMutablePointer<Float>, yStride: Int) {
    let stride = preparedStrideQ4(count), blocks = count / 32
    withUnsafeTemporaryAllocation(of: SIMD8<Float>.self, capacity: max(1, (n * stride + 7) / 8)) { buf in
        let xp = UnsafeMutableRawPointer(buf.baseAddress!).assumingMemoryBound(to: Float.self)
        for t in 0..<n { prepareQ4(x + t * count, count, xp + t * stride, hasMin: F.hasMin) }
        // Passed by address so that the optimizer cannot see it is zero in lanes 0-3 (it would
        // then split the XOR into 128-bit halves, costing more instructions than it saves).
        var flipBits = SIMD8<UInt32>(0, 0, 0, 0, 1 << 31, 1 << 31, 1 << 31, 1 << 31)
        withUnsafePointer(to: &flipBits) { flip in
        var r0 = 0
        while r0 < rowCount {
            let nr = n <= 4 ? rowCount : min(rowGroup, rowCount - r0)
            let w = rows + r0 * rowBytes
            var t = 0
            while t + 4 <= n {
                q4Rows(f, Tile4.self, w, rowBytes, nr, blocks, xp + t * stride, stride, y + t * yStride + r0, yStride, flip)
                t += 4
            }
            switch n - t {
            case 3: q4Rows(f, Tile3.self, w, rowBytes, nr, blocks, xp + t * stride, stride, y + t * yStride + r0, yStride, flip)
            case 2: q4Rows(f, Tile2.self, w, rowBytes, nr, blocks, xp + t * stride, stride, y + t * yStride + r0, yStride, flip)
            case 1: q4Rows(f, Tile1.self, w, rowBytes, nr, blocks, xp + t * stride, stride, y + t * yStride + r0, yStride, flip)
            default: break
            }
            r0 += nr
        }
        }
    }
}

// MARK: - Q8_0

/// One Q8_0 block's quants as floats and its d broadcast.
struct Q8Block {
    var q0, q1, q2, q3, d: SIMD8<Float>

    @inline(__always)
    init(_ p: UnsafeRawPointer) {
        d = SIMD8<Float>(repeating: half(p))
        q0 = float8(p.loadUnaligned(fromByteOffset: 2, as: SIMD8<Int8>.self))
        q1 = float8(p.loadUnaligned(fromByteOffset: 10, as: SIMD8<Int8>.self))
        q2 = float8(p.loadUnaligned(fromByteOffset: 18, as: SIMD8<Int8>.self))
        q3 = float8(p.loadUnaligned(fromByteOffset: 26, as: SIMD8<Int8>.self))
    }

    @inline(__always)
    func dot(_ x: UnsafeRawPointer) -> SIMD8<Float> {
        var s = q0 * x.loadUnaligned(as: SIMD8<Float>.self)
        s = s.addingProduct(q1, x.loadUnaligned(fromByteOffset: 32, as: SIMD8<Float>.self))
        s = s.addingProduct(q2, x.loadUnaligned(fromByteOffset: 64, as: SIMD8<Float>.self))
        return s.addingProduct(q3, x.loadUnaligned(fromByteOffset: 96, as: SIMD8<Float>.self))
    }
}

/// One row of Q8_0 blocks times `T.count` (1...4) vectors: per vector and block,
/// acc = fma(s_b, d_b, acc).
@inline(__always)
func q8Tile<T: TileSize>(_: T.Type, _ row: UnsafeRawPointer, _ blocks: Int, _ x: UnsafePointer<Float>, _ count: Int,
                         _ y: UnsafeMutablePointer<Float>, _ yStride: Int) {
    let tiles = T.count
    var acc = Acc4()
    var p = row
    var xb = UnsafeRawPointer(x)
    let tileStride = 4 &* count
    for _ in 0..<blocks {
        let blk = Q8Block(p)
        for t in 0..<tiles {
            acc[t] = acc[t].addingProduct(blk.dot(xb + t &* tileStride), blk.d)
        }
        p += 34
        xb += 128
    }
    for t in 0..<tiles { y[t * yStride] = hsum8(acc[t]) }
}

@inline(never)
func q8Rows<T: TileSize>(_ t: T.Type, _ rows: UnsafeRawPointer, _ rowBytes: Int, _ rowCount: Int, _ blocks: Int,
                         _ x: UnsafePointer<Float>, _ count: Int, _ y: UnsafeMutablePointer<Float>, _ yStride: Int) {
    for r in 0..<rowCount {
        q8Tile(t, rows + r * rowBytes, blocks, x, count, y + r, yStride)
    }
}

@inline(__always)
func matMulQ8_0(rows: UnsafeRawPointer, rowBytes: Int, rowCount: Int,
                x: UnsafePointer<Float>, n: Int, count: Int, y: UnsafeMutablePointer<Float>, yStride: Int) {
    let blocks = count / 32
    var r0 = 0
    while r0 < rowCount {
        let nr = n <= 4 ? rowCount : min(rowGroup, rowCount - r0)
        let w = rows + r0 * rowBytes
        var t = 0
        while t + 4 <= n {
            q8Rows(Tile4.self, w, rowBytes, nr, blocks, x + t * count, count, y + t * yStride + r0, yStride)
            t += 4
        }
        switch n - t {
        case 3: q8Rows(Tile3.self, w, rowBytes, nr, blocks, x + t * count, count, y + t * yStride + r0, yStride)
        case 2: q8Rows(Tile2.self, w, rowBytes, nr, blocks, x + t * count, count, y + t * yStride + r0, yStride)
        case 1: q8Rows(Tile1.self, w, rowBytes, nr, blocks, x + t * count, count, y + t * yStride + r0, yStride)
        default: break
        }
        r0 += nr
    }
}

// MARK: - Float rows (F32, F16, BF16)

/// One row of any length: 4 × 8-lane FMA accumulators over 32 elements at a time, combined
/// pairwise, then the remaining elements in order.
@inline(__always)
func dotFloatRow(_ row: UnsafeRawPointer, _ x: UnsafePointer<Float>, _ count: Int, _ elementBytes: Int,
                 _ load8: (UnsafeRawPointer) -> SIMD8<Float>, _ load1: (UnsafeRawPointer) -> Float) -> Float {
    let xr = UnsafeRawPointer(x)
    var a0 = SIMD8<Float>(), a1 = SIMD8<Float>(), a2 = SIMD8<Float>(), a3 = SIMD8<Float>()
    var i = 0
    while i + 32 <= count {
        let w = row + i * elementBytes
        a0 = a0.addingProduct(load8(w), xr.loadUnaligned(fromByteOffset: 4 * i, as: SIMD8<Float>.self))
        a1 = a1.addingProduct(load8(w + 8 * elementBytes), xr.loadUnaligned(fromByteOffset: 4 * i + 32, as: SIMD8<Float>.self))
        a2 = a2.addingProduct(load8(w + 16 * elementBytes), xr.loadUnaligned(fromByteOffset: 4 * i + 64, as: SIMD8<Float>.self))
        a3 = a3.addingProduct(load8(w + 24 * elementBytes), xr.loadUnaligned(fromByteOffset: 4 * i + 96, as: SIMD8<Float>.self))
        i += 32
    }
    var s = hsum8((a0 + a1) + (a2 + a3))
    while i < count {
        s = s.addingProduct(load1(row + i * elementBytes), x[i])
        i += 1
    }
    return s
}

@inline(__always)
func bf16x8(_ p: UnsafeRawPointer) -> SIMD8<Float> {
    let v = SIMD8<UInt32>(truncatingIfNeeded: p.loadUnaligned(as: SIMD8<UInt16>.self)) &<< 16
    return unsafeBitCast(v, to: SIMD8<Float>.self)
}

@inline(__always)
func matMulFloat(_ elementBytes: Int, _ load8: (UnsafeRawPointer) -> SIMD8<Float>, _ load1: (UnsafeRawPointer) -> Float,
                 rows: UnsafeRawPointer, rowBytes: Int, rowCount: Int,
                 x: UnsafePointer<Float>, n: Int, count: Int, y: UnsafeMutablePointer<Float>, yStride: Int) {
    for r in 0..<rowCount {
        for t in 0..<n {
            y[t * yStride + r] = dotFloatRow(rows + r * rowBytes, x + t * count, count, elementBytes, load8, load1)
        }
    }
}

// MARK: - Entry points

// Each computes `y[t * yStride + r] = row r · x[t*count ..< (t+1)*count]` for `r < rowCount`,
// `t < n`, single-threaded; rows `rowBytes` apart at any byte alignment; `count` a whole number
// of blocks. The result of each (row, vector) pair is independent of `rowCount`, `n` and
// alignment. They require an AVX2/FMA/F16C CPU (see the module comment). Plain functions on
// raw pointers only: no types, conformances or globals live in this module, so that nothing of
// it can run (or be merged into other modules' code) unless one of these is called.

@inline(never)
public func avx2MatMulQ4_0(rows: UnsafeRawPointer, rowBytes: Int, rowCount: Int, x: UnsafePointer<Float>, n: Int,
                           count: Int, into y: UnsafeMutablePointer<Float>, yStride: Int) {
    matMulQ4(Q4_0Format.self, rows: rows, rowBytes: rowBytes, rowCount: rowCount, x: x, n: n, count: count, y: y, yStride: yStride)
}

@inline(never)
public func avx2MatMulQ4_1(rows: UnsafeRawPointer, rowBytes: Int, rowCount: Int, x: UnsafePointer<Float>, n: Int,
                           count: Int, into y: UnsafeMutablePointer<Float>, yStride: Int) {
    matMulQ4(Q4_1Format.self, rows: rows, rowBytes: rowBytes, rowCount: rowCount, x: x, n: n, count: count, y: y, yStride: yStride)
}

@inline(never)
public func avx2MatMulQ8_0(rows: UnsafeRawPointer, rowBytes: Int, rowCount: Int, x: UnsafePointer<Float>, n: Int,
                           count: Int, into y: UnsafeMutablePointer<Float>, yStride: Int) {
    matMulQ8_0(rows: rows, rowBytes: rowBytes, rowCount: rowCount, x: x, n: n, count: count, y: y, yStride: yStride)
}

@inline(never)
public func avx2MatMulF32(rows: UnsafeRawPointer, rowBytes: Int, rowCount: Int, x: UnsafePointer<Float>, n: Int,
                          count: Int, into y: UnsafeMutablePointer<Float>, yStride: Int) {
    matMulFloat(4, { $0.loadUnaligned(as: SIMD8<Float>.self) }, { $0.loadUnaligned(as: Float.self) },
                rows: rows, rowBytes: rowBytes, rowCount: rowCount, x: x, n: n, count: count, y: y, yStride: yStride)
}

@inline(never)
public func avx2MatMulF16(rows: UnsafeRawPointer, rowBytes: Int, rowCount: Int, x: UnsafePointer<Float>, n: Int,
                          count: Int, into y: UnsafeMutablePointer<Float>, yStride: Int) {
    matMulFloat(2, { halves8($0) }, { half($0) },
                rows: rows, rowBytes: rowBytes, rowCount: rowCount, x: x, n: n, count: count, y: y, yStride: yStride)
}

@inline(never)
public func avx2MatMulBF16(rows: UnsafeRawPointer, rowBytes: Int, rowCount: Int, x: UnsafePointer<Float>, n: Int,
                           count: Int, into y: UnsafeMutablePointer<Float>, yStride: Int) {
    matMulFloat(2, { bf16x8($0) }, { Float(bitPattern: UInt32($0.loadUnaligned(as: UInt16.self)) << 16) },
                rows: rows, rowBytes: rowBytes, rowCount: rowCount, x: x, n: n, count: count, y: y, yStride: yStride)
}
