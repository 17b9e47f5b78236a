import Foundation
import Testing
import Kernels

/// Random rows of `type` with sane scales: `rows` × `cols`, `rowBytes` apart.
func randomMatrix(_ type: QuantType, rows: Int, cols: Int, seed: UInt64) -> [UInt8] {
    var rng = TestRNG(state: seed)
    let rowBytes = type.rowBytes(cols)!
    var mat = (0..<(rows * rowBytes)).map { _ in UInt8(truncatingIfNeeded: rng.next()) }
    func putHalf(_ v: Float, at o: Int) {
        let h = floatToHalf(v)
        mat[o] = UInt8(h & 0xff); mat[o + 1] = UInt8(h >> 8)
    }
    switch type {
    case .f32:
        for i in 0..<(rows * cols) {
            let b = rng.float().bitPattern
            for k in 0..<4 { mat[4 * i + k] = UInt8(truncatingIfNeeded: b >> (8 * UInt32(k))) }
        }
    case .f16:
        for i in 0..<(rows * cols) { putHalf(rng.float(), at: 2 * i) }
    case .bf16:
        for i in 0..<(rows * cols) {
            let b = rng.float().bitPattern >> 16
            mat[2 * i] = UInt8(b & 0xff); mat[2 * i + 1] = UInt8(b >> 8)
        }
    default:
        let offsets: [Int]
        switch type {
        case .q4_1, .q4_K, .q5_K: offsets = [0, 2]
        case .q6_K: offsets = [208]
        default: offsets = [0]
        }
        for b in 0..<(rows * rowBytes / type.blockBytes) {
            for (k, o) in offsets.enumerated() {
                let v = 0.01 * (rng.float() + 1.5)
                putHalf(k == 1 && type == .q4_1 ? -8 * v : v, at: b * type.blockBytes + o)
            }
        }
    }
    return mat
}

func colsFor(_ type: QuantType) -> Int {
    switch type.blockSize {
    case 1: return 100          // not a multiple of 8 or 32: vector tails
    case 32: return 32 * 19
    default: return 256 * 3
    }
}

@Suite("Kernel paths: portable and AVX2")
struct KernelPathTests {
    @Test("every kernel agrees with dequantize-then-dot within float32 rounding, on every path",
          arguments: QuantType.allCases)
    func kernelsAgreeWithDequantizedDot(_ type: QuantType) {
        let rows = 37, cols = colsFor(type), rowBytes = type.rowBytes(cols)!
        let mat = randomMatrix(type, rows: rows, cols: cols, seed: 11 + UInt64(type.rawValue))
        var rng = TestRNG(state: 5)
        let x = rng.floats(cols)
        var w = [Float](repeating: 0, count: cols)
        var results: [KernelPath: [Float]] = [:]
        for path in supportedPaths {
            var y = [Float](repeating: .nan, count: rows)
            mat.withUnsafeBytes { m in
                x.withUnsafeBufferPointer { xp in
                    y.withUnsafeMutableBufferPointer { yp in
                        matVec(type, rows: m.baseAddress!, rowBytes: rowBytes, rowCount: rows, x: xp.baseAddress!,
                               count: cols, into: yp.baseAddress!, path: path)
                    }
                }
            }
            results[path] = y
        }
        for r in 0..<rows {
            mat.withUnsafeBytes { m in
                w.withUnsafeMutableBufferPointer { dequantizeRow(type, m.baseAddress! + r * rowBytes, count: cols, into: $0.baseAddress!) }
            }
            let (ref, mag) = referenceDot(w[...], x)
            for path in supportedPaths {
                let got = results[path]![r]
                #expect(abs(Double(got) - ref) <= 1e-6 * mag * Double(cols).squareRoot(),
                        "\(type) \(path) row \(r): \(got) vs \(ref) (Σ|w·x| = \(mag))")
            }
        }
        if let a = results[.avx2], let p = results[.portable] {
            // The paths differ in rounding only.
            #expect(zip(a, p).contains { $0 != $1 } || type.blockSize == 256, "\(type): paths gave identical bits (is the AVX2 path really used?)")
        }
    }

    @Test("PackedMatrix.multiply is batch- and thread-invariant bit for bit, on every path",
          arguments: QuantType.allCases, supportedPaths)
    func multiplyIsBatchInvariant(_ type: QuantType, _ path: KernelPath) {
        let cols = colsFor(type)
        for rows in [1, 13, 37, 101] {
            let mat = randomMatrix(type, rows: rows, cols: cols, seed: UInt64(rows) &* 31 &+ UInt64(type.rawValue))
            let nMax = 9
            var rng = TestRNG(state: UInt64(rows))
            let x = rng.floats(nMax * cols)
            mat.withUnsafeBytes { m in
                let w = PackedMatrix(type: type, rows: rows, cols: cols, data: m.baseAddress!)
                // Reference: one token at a time, one thread.
                var single = [Float](repeating: 0, count: nMax * rows)
                for t in 0..<nMax {
                    x.withUnsafeBufferPointer { xp in
                        single.withUnsafeMutableBufferPointer { yp in
                            w.multiply(xp.baseAddress! + t * cols, n: 1, into: yp.baseAddress! + t * rows, threads: 1, path: path)
                        }
                    }
                }
                for n in [1, 2, 3, 4, 5, 8, 9] {
                    for threads in [1, 2, 3, 4] {
                        var y = [Float](repeating: .nan, count: n * rows)
                        x.withUnsafeBufferPointer { xp in
                            y.withUnsafeMutableBufferPointer { yp in
                                w.multiply(xp.baseAddress!, n: n, into: yp.baseAddress!, threads: threads, path: path)
                            }
                        }
                        let bad = bitMismatches(y, Array(single[0..<(n * rows)]))
                        #expect(bad == 0, "\(type) \(path) rows \(rows) n \(n) threads \(threads): \(bad) outputs differ")
                    }
                }
            }
        }
    }

    @Test func environmentSelectsThePath() {
        #expect(KernelPath.fromEnvironment(nil).path == KernelPath.best)
        #expect(KernelPath.fromEnvironment("").path == KernelPath.best)
        #expect(KernelPath.fromEnvironment("portable") == (.portable, nil))
        #expect(KernelPath.fromEnvironment("PORTABLE").path == .portable)
        let bogus = KernelPath.fromEnvironment("sse9")
        #expect(bogus.path == KernelPath.best && bogus.warning != nil)
        let avx2 = KernelPath.fromEnvironment("avx2")
        if KernelPath.avx2.isSupported {
            #expect(avx2 == (.avx2, nil))
        } else {
            #expect(avx2.path == .portable && avx2.warning != nil)
        }
        #expect(KernelPath.active.isSupported)
        #expect(KernelPath.portable.isSupported)
        #if arch(x86_64)
        // Every x86-64 machine this project runs on has AVX2; make a silent fallback visible.
        print("kernel paths: active \(KernelPath.active), best \(KernelPath.best), AVX2 \(KernelPath.avx2.isSupported ? "supported" : "NOT supported")")
        #endif
    }
}
