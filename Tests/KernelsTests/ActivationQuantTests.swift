import Foundation
import Testing
import Kernels

/// The int8-activation (`ActivationQuant.q8`) kernels: quantization, agreement with a
/// dequantize-then-dot reference, portable = AVX2 bit for bit, batch and thread invariance.
@Suite("Int8 activations (q8)")
struct ActivationQuantTests {
    static let types: [QuantType] = [.q4_0, .q4_1, .q8_0]

    /// Activations with a few outliers per row (as real hidden states have).
    func activations(_ count: Int, seed: UInt64) -> [Float] {
        var rng = TestRNG(state: seed)
        var x = rng.floats(count)
        for i in stride(from: 7, to: count, by: 97) { x[i] *= 20 }
        return x
    }

    @Test("quantization: |x − d·q| ≤ d/2, |q| ≤ 127, s = d·Σq; portable and AVX2 identical")
    func quantization() {
        let n = 5, cols = 32 * 19
        let x = activations(n * cols, seed: 3)
        var results: [KernelPath: Q8Activations] = [:]
        for path in supportedPaths {
            let a = x.withUnsafeBufferPointer { Q8Activations($0.baseAddress!, n: n, count: cols, path: path) }
            results[path] = a
            let xh = a.dequantized()
            for i in 0..<(n * cols) {
                let d = a.scales[i / 32]
                #expect(abs(a.quants[i]) <= 127)
                #expect(abs(xh[i] - x[i]) <= d * 0.5001 + 1e-30, "\(path) element \(i): \(x[i]) → \(xh[i]) (d \(d))")
            }
            for b in 0..<(n * cols / 32) {
                let sum = (0..<32).reduce(0) { $0 + Int(a.quants[32 * b + $1]) }
                #expect(a.sums[b] == a.scales[b] * Float(sum))
                let amax = (0..<32).map { abs(x[32 * b + $0]) }.max()!
                #expect(a.scales[b] == amax / 127)
            }
        }
        if let p = results[.portable], let v = results[.avx2] {
            #expect(p.quants == v.quants && p.scales == v.scales && p.sums == v.sums)
        }
    }

    @Test("q8 kernels agree with dequantize-then-dot on the quantized activations (float32 rounding) and with the float dot within the quantization bound",
          arguments: types)
    func agreesWithReference(_ type: QuantType) {
        let cols = 32 * 19, rowBytes = type.rowBytes(cols)!
        for rows in [1, 7, 37] {
            let n = 6
            let mat = randomMatrix(type, rows: rows, cols: cols, seed: 40 + UInt64(rows) + UInt64(type.rawValue))
            let x = activations(n * cols, seed: UInt64(rows))
            var outputs: [KernelPath: [Float]] = [:]
            for path in supportedPaths {
                var y = [Float](repeating: .nan, count: n * rows)
                mat.withUnsafeBytes { m in
                    x.withUnsafeBufferPointer { xp in
                        y.withUnsafeMutableBufferPointer { yp in
                            q8MatMul(type, rows: m.baseAddress!, rowBytes: rowBytes, rowCount: rows, x: xp.baseAddress!, n: n,
                                     count: cols, into: yp.baseAddress!, yStride: rows, path: path)
                        }
                    }
                }
                outputs[path] = y
            }
            let a = x.withUnsafeBufferPointer { Q8Activations($0.baseAddress!, n: n, count: cols) }
            let xh = a.dequantized()
            var w = [Float](repeating: 0, count: cols)
            for r in 0..<rows {
                mat.withUnsafeBytes { m in
                    w.withUnsafeMutableBufferPointer { dequantizeRow(type, m.baseAddress! + r * rowBytes, count: cols, into: $0.baseAddress!) }
                }
                for t in 0..<n {
                    var refQ = 0.0, magQ = 0.0, refF = 0.0, bound = 0.0
                    for j in 0..<cols {
                        let wj = Double(w[j])
                        refQ += wj * Double(xh[t * cols + j]); magQ += abs(wj * Double(xh[t * cols + j]))
                        refF += wj * Double(x[t * cols + j])
                        bound += abs(wj) * Double(a.scales[(t * cols + j) / 32]) / 2
                    }
                    for path in supportedPaths {
                        let got = Double(outputs[path]![t * rows + r])
                        #expect(abs(got - refQ) <= 2e-6 * magQ + 1e-6, "\(type) \(path) row \(r) token \(t): \(got) vs \(refQ)")
                        #expect(abs(got - refF) <= bound * 1.0001 + 1e-5, "\(type) \(path) row \(r) token \(t): \(got) vs float \(refF), bound \(bound)")
                    }
                }
            }
            if let p = outputs[.portable], let v = outputs[.avx2] {
                #expect(bitMismatches(p, v) == 0, "\(type) rows \(rows): portable and AVX2 q8 kernels differ")
            }
        }
    }

    @Test("PackedMatrix.multiply(activations: .q8) is batch- and thread-invariant bit for bit (N = 1...17, 1/2/3 threads)",
          arguments: types, supportedPaths)
    func batchInvariant(_ type: QuantType, _ path: KernelPath) {
        let cols = 32 * 18
        for rows in [13, 37, 101] {
            let mat = randomMatrix(type, rows: rows, cols: cols, seed: UInt64(rows) &* 17 &+ UInt64(type.rawValue))
            let nMax = 17
            let x = activations(nMax * cols, seed: UInt64(rows) + 1000)
            mat.withUnsafeBytes { m in
                let w = PackedMatrix(type: type, rows: rows, cols: cols, data: m.baseAddress!).withInterleavedCopy()
                var single = [Float](repeating: 0, count: nMax * rows)
                x.withUnsafeBufferPointer { xp in
                    single.withUnsafeMutableBufferPointer { yp in
                        for t in 0..<nMax {
                            w.multiply(xp.baseAddress! + t * cols, n: 1, into: yp.baseAddress! + t * rows, threads: 1,
                                       path: path, activations: .q8)
                        }
                    }
                }
                // The q8 path really differs from the float path.
                var float1 = [Float](repeating: 0, count: rows)
                x.withUnsafeBufferPointer { xp in
                    float1.withUnsafeMutableBufferPointer { w.multiply(xp.baseAddress!, n: 1, into: $0.baseAddress!, threads: 1, path: path) }
                }
                #expect(bitMismatches(float1, Array(single[0..<rows])) > 0, "\(type) \(path): q8 gave the float path's bits")
                for n in 1...nMax {
                    for threads in [1, 2, 3] {
                        var y = [Float](repeating: .nan, count: n * rows)
                        x.withUnsafeBufferPointer { xp in
                            y.withUnsafeMutableBufferPointer { yp in
                                w.multiply(xp.baseAddress!, n: n, into: yp.baseAddress!, threads: threads, path: path, activations: .q8)
                            }
                        }
                        let bad = bitMismatches(y, Array(single[0..<(n * rows)]))
                        #expect(bad == 0, "\(type) \(path) rows \(rows) n \(n) threads \(threads): \(bad) outputs differ")
                    }
                }
            }
        }
    }

    @Test("a fused q8 multiply (mixed types, one with no q8 kernel) equals one multiply per matrix")
    func fusedMixed() {
        let cols = 256 * 3
        let shapes: [(QuantType, Int)] = [(.q4_1, 45), (.q6_K, 19), (.q8_0, 23)]
        let mats = shapes.enumerated().map { randomMatrix($1.0, rows: $1.1, cols: cols, seed: UInt64($0) + 7) }
        let n = 7
        let x = activations(n * cols, seed: 99)
        var separate = shapes.map { [Float](repeating: 0, count: n * $0.1) }
        var fused = shapes.map { [Float](repeating: .nan, count: n * $0.1) }
        let bases = mats.map { m -> UnsafeMutableRawPointer in
            let p = UnsafeMutableRawPointer.allocate(byteCount: m.count, alignment: 16)
            p.copyMemory(from: m, byteCount: m.count)
            return p
        }
        defer { bases.forEach { $0.deallocate() } }
        let ms = shapes.enumerated().map { PackedMatrix(type: $1.0, rows: $1.1, cols: cols, data: bases[$0]).withInterleavedCopy() }
        x.withUnsafeBufferPointer { xp in
            for i in ms.indices {
                separate[i].withUnsafeMutableBufferPointer {
                    ms[i].multiply(xp.baseAddress!, n: n, into: $0.baseAddress!, threads: 1, activations: .q8)
                }
            }
            let outs = shapes.map { UnsafeMutablePointer<Float>.allocate(capacity: n * $0.1) }
            defer { outs.forEach { $0.deallocate() } }
            PackedMatrix.multiply(zip(ms, outs).map { ($0, $1) }, x: xp.baseAddress!, n: n, threads: 2, activations: .q8)
            for i in outs.indices { fused[i] = Array(UnsafeBufferPointer(start: outs[i], count: n * shapes[i].1)) }
        }
        for i in ms.indices { #expect(bitMismatches(fused[i], separate[i]) == 0, "part \(i) (\(shapes[i].0))") }
        // The Q6_K part took the float path.
        var float6 = [Float](repeating: 0, count: n * shapes[1].1)
        x.withUnsafeBufferPointer { xp in
            float6.withUnsafeMutableBufferPointer { ms[1].multiply(xp.baseAddress!, n: n, into: $0.baseAddress!, threads: 1) }
        }
        #expect(bitMismatches(float6, separate[1]) == 0)
    }

    @Test("SPECDEC_ACT values: q8 by default, f32/none for the exact mode")
    func environment() {
        #expect(ActivationQuant.fromEnvironment(nil).quant == .q8)
        #expect(ActivationQuant.fromEnvironment("q8").quant == .q8)
        #expect(ActivationQuant.fromEnvironment("Q8").quant == .q8)
        #expect(ActivationQuant.fromEnvironment("f32").quant == .none)
        #expect(ActivationQuant.fromEnvironment("none").quant == .none)
        let bad = ActivationQuant.fromEnvironment("int4")
        #expect(bad.quant == .q8 && bad.warning != nil)
    }

    @Test("a matrix without an interleaved copy takes the float path under q8")
    func noCopyMeansFloat() {
        let cols = 64, rows = 9
        let mat = randomMatrix(.q4_1, rows: rows, cols: cols, seed: 5)
        let x = activations(cols, seed: 6)
        mat.withUnsafeBytes { m in
            let plain = PackedMatrix(type: .q4_1, rows: rows, cols: cols, data: m.baseAddress!)
            var a = [Float](repeating: 0, count: rows), b = a, c = a
            x.withUnsafeBufferPointer { xp in
                plain.multiply(xp.baseAddress!, n: 1, into: &a, threads: 1, activations: .q8)
                plain.multiply(xp.baseAddress!, n: 1, into: &b, threads: 1)
                plain.withInterleavedCopy().multiply(xp.baseAddress!, n: 1, into: &c, threads: 1, activations: .q8)
            }
            #expect(bitMismatches(a, b) == 0)
            #expect(bitMismatches(a, c) > 0)
        }
    }

    @Test("portable, AVX2 and AVX-512 VNNI int8 kernels give the same bits (each where the CPU has it)",
          arguments: types)
    func int8KernelsAgree(_ type: QuantType) {
        let cols = 32 * 48, rows = 29, n = 9
        let mat = randomMatrix(type, rows: rows, cols: cols, seed: 77 + UInt64(type.rawValue))
        let x = activations(n * cols, seed: 78)
        var results: [Int8Kernel: [Float]] = [:]
        for k in Int8Kernel.allCases where k.isSupported {
            var y = [Float](repeating: .nan, count: n * rows)
            mat.withUnsafeBytes { m in
                x.withUnsafeBufferPointer { xp in
                    q8MatMul(type, rows: m.baseAddress!, rowBytes: type.rowBytes(cols)!, rowCount: rows, x: xp.baseAddress!,
                             n: n, count: cols, into: &y, yStride: rows, path: k == .portable ? .portable : .avx2, kernel: k)
                }
            }
            results[k] = y
        }
        let base = results[.portable]!
        for (k, y) in results { #expect(bitMismatches(y, base) == 0, "\(k) differs from portable") }
        print("int8 kernels compared for \(type): \(results.keys.map(\.rawValue).sorted())")
    }
}

/// Packing float rows (drafts are packed at load): Q8_0 round-trips within half a step; Q4_0
/// follows ggml's reference rule (the largest-magnitude value maps to −8·d exactly, the other
/// sign clamps at +7·d), so within one step.
@Suite("Packing float rows")
struct QuantizeRowTests {
    @Test(arguments: [QuantType.q4_0, .q8_0])
    func roundTripWithinHalfAStep(_ type: QuantType) throws {
        var rng = TestRNG(state: 31)
        let count = 32 * 9
        var x = rng.floats(count)
        x[40] = -3.5; x[70] = 2.75   // a negative and a positive block maximum
        var packed = [UInt8](repeating: 0, count: type.rowBytes(count)!)
        try packed.withUnsafeMutableBytes { try quantizeRow(type, x, count: count, into: $0.baseAddress!) }
        var y = [Float](repeating: .nan, count: count)
        packed.withUnsafeBytes { dequantizeRow(type, $0.baseAddress!, count: count, into: &y) }
        for b in 0..<(count / 32) {
            let block = x[(32 * b)..<(32 * b + 32)]
            let amax = block.map(abs).max()!
            let step = type == .q4_0 ? amax / 8 : amax / 127
            for i in (32 * b)..<(32 * b + 32) {
                // Plus the f16 rounding of the block scale (2^-11 relative) times up to 128 levels.
                let bound = (type == .q4_0 ? step : step * 0.5) + 128 * step / 2048
                #expect(abs(y[i] - x[i]) <= bound + 1e-6, "\(type) element \(i): \(x[i]) → \(y[i])")
            }
            if type == .q4_0 {
                let m = block.max { abs($0) < abs($1) }!
                let i = x.indices[(32 * b)...].first { x[$0] == m }!
                #expect(abs(y[i] - m) <= abs(m) * 1e-3, "the block maximum maps onto a level")
            }
        }
        #expect(throws: QuantizeError.self) { try packed.withUnsafeMutableBytes { try quantizeRow(type, x, count: 31, into: $0.baseAddress!) } }
    }
}
