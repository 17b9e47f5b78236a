import Foundation
import Testing
import Kernels

/// The int8-activation (`ActivationQuant.q8`) kernels: quantization, agreement with a
/// dequantize-then-dot reference, portable = AVX2 bit for bit, batch and thread invariance.
@Suite("Int8 activations (q8)")
struct ActivationQuantTests {
    static let types: [QuantType] = [.q4_0, .q4_1, .q8_0, .q4_K, .q5_K, .q6_K]
    static let kQuants: [QuantType] = [.q4_K, .q5_K, .q6_K]

    /// A row length for `type`: K-quants need whole 256-element super-blocks.
    static func cols(_ type: QuantType, blocks32: Int) -> Int {
        type.blockSize == 256 ? (blocks32 * 32 + 255) / 256 * 256 : blocks32 * 32
    }

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
        let cols = Self.cols(type, blocks32: 19), rowBytes = type.rowBytes(cols)!
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
        let cols = Self.cols(type, blocks32: 18)
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
        let shapes: [(QuantType, Int)] = [(.q4_1, 45), (.f16, 19), (.q8_0, 23), (.q6_K, 21), (.q4_K, 11)]
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
        // The F16 part took the float path.
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

    /// Dequantize-then-dot on the quantized activations, in float64: (value, Σ|terms|) for row r, token t.
    func reference(_ type: QuantType, _ mat: [UInt8], rows: Int, cols: Int, _ a: Q8Activations) -> [(Double, Double)] {
        let rowBytes = type.rowBytes(cols)!, xh = a.dequantized()
        var out = [(Double, Double)](repeating: (0, 0), count: a.n * rows)
        var w = [Float](repeating: 0, count: cols)
        for r in 0..<rows {
            mat.withUnsafeBytes { m in
                w.withUnsafeMutableBufferPointer { dequantizeRow(type, m.baseAddress! + r * rowBytes, count: cols, into: $0.baseAddress!) }
            }
            for t in 0..<a.n {
                var v = 0.0, mag = 0.0
                for j in 0..<cols { let p = Double(w[j]) * Double(xh[t * cols + j]); v += p; mag += abs(p) }
                out[t * rows + r] = (v, mag)
            }
        }
        return out
    }

    @Test("K-quant x8 kernels agree with dequantize-then-dot for every N = 1...17, rows not multiples of 8, every int8 kernel and 1/2/3 threads",
          arguments: kQuants)
    func kQuantsAgreeForEveryN(_ type: QuantType) {
        let cols = 256 * 3, rowBytes = type.rowBytes(cols)!, nMax = 17
        for rows in [5, 13, 29] {
            let mat = randomMatrix(type, rows: rows, cols: cols, seed: 500 + UInt64(rows) + UInt64(type.rawValue))
            let x = activations(nMax * cols, seed: 600 + UInt64(rows))
            // A token's quantized activations do not depend on the batch, so one reference serves every N.
            let ref = reference(type, mat, rows: rows, cols: cols, x.withUnsafeBufferPointer { Q8Activations($0.baseAddress!, n: nMax, count: cols) })
            func check(_ y: [Float], n: Int, _ what: String) {
                var bad = 0
                for t in 0..<n {
                    for r in 0..<rows {
                        let (v, mag) = ref[t * rows + r]
                        if !(abs(Double(y[t * rows + r]) - v) <= 2e-6 * mag + 1e-6) { bad += 1 }
                    }
                }
                #expect(bad == 0, "\(type) rows \(rows) n \(n) \(what): \(bad) outputs off the reference")
            }
            mat.withUnsafeBytes { m in
                let w = PackedMatrix(type: type, rows: rows, cols: cols, data: m.baseAddress!).withInterleavedCopy()
                x.withUnsafeBufferPointer { xp in
                    for n in 1...nMax {
                        for k in Int8Kernel.allCases where k.isSupported {
                            var y = [Float](repeating: .nan, count: n * rows)
                            q8MatMul(type, rows: m.baseAddress!, rowBytes: rowBytes, rowCount: rows, x: xp.baseAddress!, n: n,
                                     count: cols, into: &y, yStride: rows, path: k == .portable ? .portable : .avx2, kernel: k)
                            check(y, n: n, "kernel \(k)")
                        }
                        for path in supportedPaths {
                            for threads in [1, 2, 3] {
                                var y = [Float](repeating: .nan, count: n * rows)
                                w.multiply(xp.baseAddress!, n: n, into: &y, threads: threads, path: path, activations: .q8)
                                check(y, n: n, "\(path) threads \(threads)")
                            }
                        }
                    }
                }
            }
        }
    }

    @Test("a Q4_K/Q5_K/Q6_K matrix takes the x8 path under q8 (not the float fallback)", arguments: kQuants)
    func kQuantTakesX8Path(_ type: QuantType) {
        #expect(type.hasQ8ActivationKernel)
        let cols = 512, rows = 19, n = 3
        let mat = randomMatrix(type, rows: rows, cols: cols, seed: 9 + UInt64(type.rawValue))
        let x = activations(n * cols, seed: 10)
        mat.withUnsafeBytes { m in
            let w = PackedMatrix(type: type, rows: rows, cols: cols, data: m.baseAddress!).withInterleavedCopy()
            #expect(w.interleaved != nil, "\(type): no interleaved copy")
            // The record sizes of specdec_x8.h: 8 × 148 (Q4_K), 8 × 180 (Q5_K), 8 × 210 (Q6_K) per 256 elements.
            let perRecord = type == .q4_K ? 1184 : type == .q5_K ? 1440 : 1680
            #expect(w.interleaved?.byteCount == 3 * 2 * perRecord)
            var q8 = [Float](repeating: .nan, count: n * rows), direct = q8, float = q8
            x.withUnsafeBufferPointer { xp in
                w.multiply(xp.baseAddress!, n: n, into: &q8, threads: 1, activations: .q8)
                q8MatMul(type, rows: m.baseAddress!, rowBytes: type.rowBytes(cols)!, rowCount: rows, x: xp.baseAddress!, n: n,
                         count: cols, into: &direct, yStride: rows)
                w.multiply(xp.baseAddress!, n: n, into: &float, threads: 1, activations: .none)
            }
            #expect(bitMismatches(q8, direct) == 0, "\(type): multiply(.q8) is not the x8 kernel's result")
            #expect(bitMismatches(q8, float) > 0, "\(type): multiply(.q8) gave the float path's bits")
        }
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

/// Single-thread timing of the q8 path (activation quantization + the x8 kernel) for the K-quants
/// against Q4_1 at the same shapes. Prints medians; asserts nothing about speed. The kernel is the
/// best the CPU has (AVX-512 VNNI unless `SPECDEC_VNNI=0`, then AVX2). Rows × cols: 576 × 1536 and
/// 1536 × 512 (K-quant rows must be whole 256-element super-blocks, so 1536 × 576 exists only for
/// Q4_1, timed too). A benchmark, not a test: it runs only with SPECDEC_BENCH=1
/// (`SPECDEC_BENCH=1 swift test -c release --filter X8BenchmarkTests`), so the suite stays short.
@Suite("x8 benchmark", .serialized, .enabled(if: ProcessInfo.processInfo.environment["SPECDEC_BENCH"] == "1"))
struct X8BenchmarkTests {
    @Test("benchmark: q8 matmul, K-quants vs Q4_1, N = 1, 2, 4, 8 (prints medians)")
    func benchmark() {
        let shapes: [(QuantType, Int, Int)] = [
            (.q4_1, 576, 1536), (.q4_K, 576, 1536), (.q5_K, 576, 1536), (.q6_K, 576, 1536),
            (.q4_1, 1536, 576), (.q4_1, 1536, 512), (.q4_K, 1536, 512), (.q5_K, 1536, 512), (.q6_K, 1536, 512),
        ]
        let path: KernelPath = supportedPaths.contains(.avx2) ? .avx2 : .portable
        print("BENCH x8 kernel: \(Int8Kernel.forPath(path).rawValue)")
        for (type, rows, cols) in shapes {
            let mat = randomMatrix(type, rows: rows, cols: cols, seed: 1)
            var rng = TestRNG(state: 2)
            let x = rng.floats(8 * cols)
            var y = [Float](repeating: 0, count: 8 * rows)
            mat.withUnsafeBytes { m in
                let w = PackedMatrix(type: type, rows: rows, cols: cols, data: m.baseAddress!).withInterleavedCopy()
                var line = "BENCH x8 \(type) \(rows)x\(cols) (\(w.interleaved!.byteCount) B repacked, \(rows * w.rowBytes) B GGUF):"
                for n in [1, 2, 4, 8] {
                    var times: [Double] = []
                    let deadline = DispatchTime.now().uptimeNanoseconds + 400_000_000
                    x.withUnsafeBufferPointer { xp in
                        y.withUnsafeMutableBufferPointer { yp in
                            while times.count < 15 || (DispatchTime.now().uptimeNanoseconds < deadline && times.count < 2001) {
                                let t0 = DispatchTime.now().uptimeNanoseconds
                                w.multiply(xp.baseAddress!, n: n, into: yp.baseAddress!, threads: 1, path: path, activations: .q8)
                                times.append(Double(DispatchTime.now().uptimeNanoseconds - t0) * 1e-3)
                            }
                        }
                    }
                    times.sort()
                    line += String(format: " N=%d %.1f us (min %.1f, %d runs)", n, times[times.count / 2], times[0], times.count)
                }
                print(line)
            }
            #expect(y.allSatisfy { $0.isFinite })
        }
    }
}
