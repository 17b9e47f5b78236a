import Foundation
import Testing
import Kernels

// Test vectors: Tests/KernelsTests/Fixtures/<TYPE>.bin, written by tools/make_quant_vectors.py
// from llama.cpp's `gguf` Python package (gguf.quants.dequantize). Layout (little-endian):
//   "QVEC", u32 ggml type id, u32 element count, u32 raw byte count, u32 row count,
//   raw block bytes, f32 expected values.

struct Fixture {
    let type: QuantType
    let count: Int
    let rows: Int
    let raw: [UInt8]
    let expected: [Float]
    var cols: Int { count / rows }
    var rowBytes: Int { type.rowBytes(cols)! }
}

enum FixtureError: Error, CustomStringConvertible {
    case missing(String)
    case malformed(String, String)
    var description: String {
        switch self {
        case .missing(let n): return "fixture \(n).bin is missing from the test bundle"
        case .malformed(let n, let why): return "fixture \(n).bin is malformed: \(why)"
        }
    }
}

func loadFixture(named name: String) throws -> Fixture {
    guard let url = Bundle.module.url(forResource: name, withExtension: "bin", subdirectory: "Fixtures") else {
        throw FixtureError.missing(name)
    }
    let data = [UInt8](try Data(contentsOf: url))
    func u32(_ o: Int) -> UInt32 {
        UInt32(data[o]) | UInt32(data[o + 1]) << 8 | UInt32(data[o + 2]) << 16 | UInt32(data[o + 3]) << 24
    }
    guard data.count >= 20, data[0..<4] == [0x51, 0x56, 0x45, 0x43] /* QVEC */ else {
        throw FixtureError.malformed(name, "bad magic")
    }
    guard let type = QuantType(rawValue: u32(4)) else { throw FixtureError.malformed(name, "unknown type id \(u32(4))") }
    guard type.description == name else { throw FixtureError.malformed(name, "holds type \(type)") }
    let count = Int(u32(8)), rawCount = Int(u32(12)), rows = Int(u32(16))
    guard rows > 0, count % rows == 0, type.rowBytes(count / rows) != nil,
          type.rowBytes(count) == rawCount, data.count == 20 + rawCount + 4 * count else {
        throw FixtureError.malformed(name, "inconsistent sizes")
    }
    let raw = Array(data[20..<(20 + rawCount)])
    var expected = [Float](repeating: 0, count: count)
    for i in 0..<count { expected[i] = Float(bitPattern: u32(20 + rawCount + 4 * i)) }
    return Fixture(type: type, count: count, rows: rows, raw: raw, expected: expected)
}

func loadFixture(_ type: QuantType) throws -> Fixture { try loadFixture(named: type.description) }

/// Deterministic pseudo-random floats in [-1, 1) (SplitMix64).
struct TestRNG {
    var state: UInt64
    mutating func next() -> UInt64 {
        state &+= 0x9E37_79B9_7F4A_7C15
        var z = state
        z = (z ^ (z >> 30)) &* 0xBF58_476D_1CE4_E5B9
        z = (z ^ (z >> 27)) &* 0x94D0_49BB_1331_11EB
        return z ^ (z >> 31)
    }
    mutating func float() -> Float { Float(next() >> 40) / Float(1 << 23) - 1 }
    mutating func floats(_ n: Int) -> [Float] { (0..<n).map { _ in float() } }
}

/// The kernel paths this CPU can run (both on an AVX2 machine).
let supportedPaths = KernelPath.allCases.filter(\.isSupported)

/// Number of positions whose bit patterns differ.
func bitMismatches(_ a: [Float], _ b: [Float]) -> Int {
    precondition(a.count == b.count)
    return zip(a, b).filter { $0.bitPattern != $1.bitPattern }.count
}

func dequantize(_ type: QuantType, _ raw: [UInt8], count: Int, misalign: Int = 0) -> [Float] {
    // Copy to a buffer at an arbitrary byte offset: GGUF data is only byte-aligned within blocks.
    var buf = [UInt8](repeating: 0xAA, count: raw.count + misalign + 8)
    buf.replaceSubrange(misalign..<(misalign + raw.count), with: raw)
    var out = [Float](repeating: .nan, count: count)
    buf.withUnsafeBytes { src in
        out.withUnsafeMutableBufferPointer { dst in
            dequantizeRow(type, src.baseAddress! + misalign, count: count, into: dst.baseAddress!)
        }
    }
    return out
}

func dot(_ type: QuantType, _ raw: ArraySlice<UInt8>, _ x: [Float], count: Int, misalign: Int = 0,
         path: KernelPath = .active) -> Float {
    var buf = [UInt8](repeating: 0x55, count: raw.count + misalign + 8)
    buf.replaceSubrange(misalign..<(misalign + raw.count), with: raw)
    return buf.withUnsafeBytes { src in
        x.withUnsafeBufferPointer { dotRow(type, src.baseAddress! + misalign, $0.baseAddress!, count: count, path: path) }
    }
}

/// Σ w·x in float64 and Σ |w·x|.
func referenceDot(_ w: ArraySlice<Float>, _ x: [Float]) -> (Double, Double) {
    var s = 0.0, a = 0.0
    for (wi, xi) in zip(w, x) {
        let p = Double(wi) * Double(xi)
        s += p
        a += abs(p)
    }
    return (s, a)
}

@Suite("Dequantization against gguf-py vectors")
struct DequantizeTests {
    @Test("every QuantType case has a well-formed fixture")
    func everyTypeHasFixture() throws {
        for type in QuantType.allCases {
            let f = try loadFixture(type)   // throws (fails the test) when missing or malformed
            #expect(f.type == type)
            #expect(f.count >= 2 * type.blockSize && f.rows >= 2)
        }
        // The loader really detects absence (so the loop above cannot pass vacuously).
        #expect(throws: FixtureError.self) { try loadFixture(named: "Q5_0") }
    }

    @Test("dequantizeRow is bit-exact", arguments: QuantType.allCases)
    func bitExact(_ type: QuantType) throws {
        let f = try loadFixture(type)
        // Every formula is evaluated in the same order and with the same float32 roundings as
        // gguf-py (and ggml's scalar reference), so no tolerance is needed: compare bit patterns
        // (NaN payloads included: F32/BF16 are bit copies, F16 NaNs keep their payload).
        for misalign in 0..<4 {
            let got = dequantize(type, f.raw, count: f.count, misalign: misalign)
            let bad = bitMismatches(got, f.expected)
            #expect(bad == 0, "\(type) misalign \(misalign): \(bad) of \(f.count) values differ")
            if bad > 0, let i = (0..<f.count).first(where: { got[$0].bitPattern != f.expected[$0].bitPattern }) {
                Issue.record("first mismatch at \(i): got \(got[i]) expected \(f.expected[i])")
            }
        }
        // Row by row (the row offset must be honoured).
        for r in 0..<f.rows {
            let raw = Array(f.raw[(r * f.rowBytes)..<((r + 1) * f.rowBytes)])
            let got = dequantize(type, raw, count: f.cols)
            #expect(bitMismatches(got, Array(f.expected[(r * f.cols)..<((r + 1) * f.cols)])) == 0)
        }
    }

    @Test("corrupting the data is detected", arguments: QuantType.allCases)
    func corruptionIsDetected(_ type: QuantType) throws {
        let f = try loadFixture(type)
        var rng = TestRNG(state: 7)
        let x = rng.floats(f.cols)
        let row = f.rowBytes
        // Flip one bit in several places of row 1 (payload bytes and scale bytes alike).
        for pos in [0, 1, 2, 3, 5, type.blockBytes - 1, row / 2 + 1, row - 1] where pos < row {
            var bad = f.raw
            bad[row + pos] ^= 0x10
            let deq = dequantize(type, bad, count: f.count)
            #expect(bitMismatches(deq, f.expected) > 0, "\(type): flipping byte \(pos) went unnoticed")
        }
        // A corrupted expected value is caught by the comparison.
        var expected = f.expected
        expected[f.count - 1] = expected[f.count - 1].nextUp
        #expect(bitMismatches(dequantize(type, f.raw, count: f.count), expected) == 1)
        // The dot product depends on the weights: change a quantized payload byte of row 1
        // (for F32 the top byte of element 0 of the finite row).
        let payload: Int
        switch type {
        case .f32: payload = 3
        case .f16, .bf16: payload = 1
        case .q4_0, .q8_0: payload = 2
        case .q4_1: payload = 4
        case .q4_K: payload = 16          // qs[0]
        case .q5_K: payload = 48          // qs[0]
        case .q6_K: payload = 0
        }
        var bad = f.raw
        bad[row + payload] ^= 0x40
        let d0 = dot(type, f.raw[row..<(2 * row)], x, count: f.cols)
        let d1 = dot(type, bad[row..<(2 * row)], x, count: f.cols)
        #expect(d0 != d1, "\(type): dotRow ignored a changed weight")
    }

    @Test("dotRow matches a float64 dot of the dequantized row", arguments: QuantType.allCases, supportedPaths)
    func dotMatchesReference(_ type: QuantType, _ path: KernelPath) throws {
        let f = try loadFixture(type)
        var rng = TestRNG(state: 42)
        for trial in 0..<3 {
            let x = rng.floats(f.cols)
            for r in 0..<f.rows {
                let w = f.expected[(r * f.cols)..<((r + 1) * f.cols)]
                let raw = f.raw[(r * f.rowBytes)..<((r + 1) * f.rowBytes)]
                let got = dot(type, raw, x, count: f.cols, path: path)
                let (ref, mag) = referenceDot(w, x)
                if !w.allSatisfy({ $0.isFinite }) || !ref.isFinite {
                    // Row 0 of the float fixtures holds ±inf and NaN on purpose.
                    #expect(got.isNaN == ref.isNaN && (ref.isNaN || Double(got) == ref), "\(type) row \(r): \(got) vs \(ref)")
                    continue
                }
                let err = abs(Double(got) - ref)
                #expect(err <= 1e-5 * mag + 1e-30, "\(type) \(path) row \(r) trial \(trial): \(got) vs \(ref), err \(err / mag) of Σ|w·x|")
                // Alignment of the row does not change a single bit.
                for misalign in 1..<4 {
                    #expect(dot(type, raw, x, count: f.cols, misalign: misalign, path: path).bitPattern == got.bitPattern)
                }
            }
        }
    }

    @Test("float rows of any length (vector tails)", arguments: [QuantType.f32, .f16, .bf16], supportedPaths)
    func floatTails(_ type: QuantType, _ path: KernelPath) throws {
        let f = try loadFixture(type)
        var rng = TestRNG(state: 3)
        let x = rng.floats(f.cols)
        let r = 1   // the all-finite row
        let w = f.expected[(r * f.cols)..<((r + 1) * f.cols)]
        let bpe = type.blockBytes
        for n in [0, 1, 2, 7, 15, 16, 17, 31, 32, 33, 47, 48, 63, 100, 257, 511, 512] {
            let raw = f.raw[(r * f.rowBytes)..<(r * f.rowBytes + n * bpe)]
            let got = dot(type, raw, x, count: n, path: path)
            let (ref, mag) = referenceDot(w.prefix(n), x)
            #expect(abs(Double(got) - ref) <= 1e-5 * mag, "\(type) n=\(n): \(got) vs \(ref)")
            if n == 0 { #expect(got == 0) }
        }
    }

    @Test("matVec equals per-row dotRow bit for bit", arguments: QuantType.allCases, supportedPaths)
    func matVecMatchesDotRow(_ type: QuantType, _ path: KernelPath) throws {
        let f = try loadFixture(type)
        let blocks = f.raw.count / type.blockBytes
        let perRow = f.cols / type.blockSize
        let rowCount = 9
        let rowBytes = f.rowBytes + 3   // padded, so most rows start unaligned
        var mat = [UInt8](repeating: 0, count: rowCount * rowBytes + 1)
        // Row r: the blocks of fixture row r % 2, rotated by 3r blocks, so all rows differ
        // (for F32/F16/BF16, even rows are finite and odd rows hold ±inf/NaN).
        precondition(blocks == 2 * perRow)
        for r in 0..<rowCount {
            for b in 0..<perRow {
                let src = (perRow * ((r + 1) % 2) + (b + 3 * r) % perRow) * type.blockBytes
                let dst = 1 + r * rowBytes + b * type.blockBytes
                mat.replaceSubrange(dst..<(dst + type.blockBytes), with: f.raw[src..<(src + type.blockBytes)])
            }
        }
        var rng = TestRNG(state: 99)
        let x = rng.floats(f.cols)
        var y = [Float](repeating: .nan, count: rowCount)
        mat.withUnsafeBytes { m in
            x.withUnsafeBufferPointer { xp in
                y.withUnsafeMutableBufferPointer { yp in
                    matVec(type, rows: m.baseAddress! + 1, rowBytes: rowBytes, rowCount: rowCount,
                           x: xp.baseAddress!, count: f.cols, into: yp.baseAddress!, path: path)
                }
            }
        }
        // Bit-identical; the only latitude is a NaN's sign/payload (LLVM may commute the
        // operands of an add differently in different inlining contexts, and SSE propagates the
        // first operand's NaN), which the float fixtures' special-value rows do produce.
        func same(_ a: Float, _ b: Float) -> Bool { a.bitPattern == b.bitPattern || (a.isNaN && b.isNaN) }
        var finiteRows = 0
        for r in 0..<rowCount {
            let single = dot(type, mat[(1 + r * rowBytes)..<(1 + r * rowBytes + f.rowBytes)], x, count: f.cols, path: path)
            #expect(same(y[r], single), "\(type) row \(r): matVec \(y[r]) vs dotRow \(single)")
            if single.isFinite { finiteRows += 1 }
        }
        #expect(finiteRows > 0)
        // Repeated calls are deterministic as well.
        let again = x.withUnsafeBufferPointer { xp in
            mat.withUnsafeBytes { dotRow(type, $0.baseAddress! + 1, xp.baseAddress!, count: f.cols, path: path) }
        }
        #expect(same(again, y[0]))
        // rowCount 0 writes nothing; a single row equals dotRow.
        var one: [Float] = [.nan, -7]
        mat.withUnsafeBytes { m in
            x.withUnsafeBufferPointer { xp in
                one.withUnsafeMutableBufferPointer { yp in
                    matVec(type, rows: m.baseAddress! + 1, rowBytes: rowBytes, rowCount: 0, x: xp.baseAddress!, count: f.cols, into: yp.baseAddress! + 1, path: path)
                    matVec(type, rows: m.baseAddress! + 1, rowBytes: f.rowBytes, rowCount: 1, x: xp.baseAddress!, count: f.cols, into: yp.baseAddress!, path: path)
                }
            }
        }
        #expect(same(one[0], y[0]) && one[1] == -7)
    }

    @Test("matMul equals dotRow per (row, vector) bit for bit", arguments: QuantType.allCases, supportedPaths)
    func matMulMatchesDotRow(_ type: QuantType, _ path: KernelPath) throws {
        let f = try loadFixture(type)
        let n = 7, rowCount = f.rows, yStride = rowCount + 2   // 7 = a tile of 4 and one of 3
        var rng = TestRNG(state: 5)
        let x = rng.floats(n * f.cols)
        var y = [Float](repeating: -1, count: n * yStride)
        f.raw.withUnsafeBytes { m in
            x.withUnsafeBufferPointer { xp in
                y.withUnsafeMutableBufferPointer { yp in
                    matMul(type, rows: m.baseAddress!, rowBytes: f.rowBytes, rowCount: rowCount,
                           x: xp.baseAddress!, n: n, count: f.cols, into: yp.baseAddress!, yStride: yStride, path: path)
                }
            }
        }
        for t in 0..<n {
            let xt = Array(x[(t * f.cols)..<((t + 1) * f.cols)])
            for r in 0..<rowCount {
                let single = dot(type, f.raw[(r * f.rowBytes)..<((r + 1) * f.rowBytes)], xt, count: f.cols, path: path)
                let got = y[t * yStride + r]
                #expect(got.bitPattern == single.bitPattern || (got.isNaN && single.isNaN), "\(type) t=\(t) r=\(r)")
            }
            #expect(y[t * yStride + rowCount] == -1 && y[t * yStride + rowCount + 1] == -1)   // untouched
        }
    }

    @Test("F16 SIMD conversion in dotRow agrees with halfToFloat for all 65536 halves", arguments: supportedPaths)
    func f16DotLanesExhaustive(_ path: KernelPath) {
        // One half in one of 32 lanes, the rest +0, x = 1: the dot is exactly that half
        // (converted by the vector path), or NaN for NaN inputs.
        var row = [UInt16](repeating: 0, count: 32)
        let x = [Float](repeating: 1, count: 32)
        var failures = 0
        for h in 0...0xFFFF {
            let lane = h % 32
            row[lane] = UInt16(h)
            let got = row.withUnsafeBytes { r in x.withUnsafeBufferPointer { dotRow(.f16, r.baseAddress!, $0.baseAddress!, count: 32, path: path) } }
            let want = halfToFloat(UInt16(h))
            if want.isNaN ? !got.isNaN : got != want { failures += 1 }
            row[lane] = 0
        }
        #expect(failures == 0)
    }

    @Test("block scales: every fp16 d (and Q4_1 m) is converted exactly by the dot kernels",
          arguments: [QuantType.q4_0, .q4_1, .q8_0], supportedPaths)
    func scaleConversionExhaustive(_ type: QuantType, _ path: KernelPath) {
        // One block whose element 0 has q = 1 (Q4_0: stored nibble 9), every other element q = 0
        // (Q4_0: 8), and x = e0: the dot is then exactly element 0 of the dequantized block,
        // d (or 1·d + m), as long as everything is finite (otherwise 0·inf makes the dot NaN).
        var x = [Float](repeating: 0, count: 32)
        x[0] = 1
        var block = [UInt8](repeating: 0, count: type.blockBytes)
        var failures = 0
        for field in (type == .q4_1 ? [0, 2] : [0]) {
            for h in 0...0xFFFF {
                for i in 0..<block.count { block[i] = 0 }
                switch type {
                case .q4_0:
                    for i in 2..<18 { block[i] = 0x88 }
                    block[2] = 0x89
                case .q4_1:
                    block[4] = 1
                    if field == 2 { block[0] = 0x00; block[1] = 0x3c }   // d = 1, q = 0 except q0 = 1
                case .q8_0:
                    block[2] = 1
                default: break
                }
                block[field] = UInt8(h & 0xff)
                block[field + 1] = UInt8(h >> 8)
                let deq = dequantize(type, block, count: 32)[0]
                let got = dot(type, block[...], x, count: 32, path: path)
                if !deq.isFinite || deq == 0 {
                    if deq.isNaN || deq.isInfinite { if !got.isNaN && got != deq { failures += 1 } }
                    else if got != 0 { failures += 1 }   // ±0: the accumulator's +0 absorbs the sign
                } else if got.bitPattern != deq.bitPattern {
                    failures += 1
                }
            }
        }
        #expect(failures == 0, "\(type): \(failures) scale patterns converted differently")
    }

    @Test("benchmark: single-thread matVec throughput (prints GB/s; no assertion on speed)", .serialized,
          arguments: supportedPaths)
    func benchmark(_ path: KernelPath) {
        func bench(_ type: QuantType, rows: Int, cols: Int, perRowDotRow: Bool = false) {
            let rowBytes = type.rowBytes(cols)!
            var rng = TestRNG(state: 1)
            var mat = (0..<(rows * rowBytes)).map { _ in UInt8(truncatingIfNeeded: rng.next()) }
            // sane fp16 scales
            let scaleOffsets: [Int]
            switch type {
            case .q4_1, .q4_K, .q5_K: scaleOffsets = [0, 2]
            case .q6_K: scaleOffsets = [208]
            default: scaleOffsets = [0]
            }
            for b in 0..<(rows * rowBytes / type.blockBytes) {
                for o in scaleOffsets {
                    let h = floatToHalf(0.01 * (rng.float() + 1.5))
                    mat[b * type.blockBytes + o] = UInt8(h & 0xff)
                    mat[b * type.blockBytes + o + 1] = UInt8(h >> 8)
                }
            }
            let x = rng.floats(cols)
            var y = [Float](repeating: 0, count: rows)
            let bytes = Double(rows * rowBytes)
            let iters = max(3, Int(2e9 / bytes))
            var best = Double.infinity
            mat.withUnsafeBytes { m in
                x.withUnsafeBufferPointer { xp in
                    y.withUnsafeMutableBufferPointer { yp in
                        for _ in 0..<iters {
                            let t0 = DispatchTime.now().uptimeNanoseconds
                            if perRowDotRow {
                                for r in 0..<rows { yp[r] = dotRow(type, m.baseAddress! + r * rowBytes, xp.baseAddress!, count: cols, path: path) }
                            } else {
                                matVec(type, rows: m.baseAddress!, rowBytes: rowBytes, rowCount: rows,
                                       x: xp.baseAddress!, count: cols, into: yp.baseAddress!, path: path)
                            }
                            let t = Double(DispatchTime.now().uptimeNanoseconds - t0) * 1e-9
                            best = min(best, t)
                        }
                    }
                }
            }
            let gbs = bytes / best / 1e9
            print("BENCH \(path) \(type) \(rows)x\(cols) \(perRowDotRow ? "dotRow per row" : "matVec"): \(String(format: "%.3f", best * 1e3)) ms, \(String(format: "%.2f", gbs)) GB/s weights, \(String(format: "%.2f", Double(rows * cols) / best / 1e9)) Gelem/s (best of \(iters))")
            if type.blockSize > 1 { #expect(y.allSatisfy { $0.isFinite }) }
        }
        bench(.q4_1, rows: 1536, cols: 576)
        bench(.q4_1, rows: 576, cols: 1536)
        bench(.q8_0, rows: 49152, cols: 576)
        bench(.q8_0, rows: 1536, cols: 576)
        bench(.f16, rows: 1536, cols: 576)
        bench(.f32, rows: 1536, cols: 576)
        bench(.q4_K, rows: 1536, cols: 512)
        bench(.q6_K, rows: 1536, cols: 512)
        bench(.q4_1, rows: 1536, cols: 576, perRowDotRow: true)
        bench(.q8_0, rows: 1536, cols: 576, perRowDotRow: true)
    }
}
