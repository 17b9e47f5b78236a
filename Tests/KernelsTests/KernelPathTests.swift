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

    @Test("a fused multiply of several matrices equals one multiply per matrix", arguments: supportedPaths)
    func fusedMultiplyEqualsSeparate(_ path: KernelPath) {
        let cols = 32 * 18
        let shapes: [(QuantType, Int)] = [(.q4_1, 576), (.q4_1, 192), (.q8_0, 67)]
        let mats = shapes.enumerated().map { randomMatrix($1.0, rows: $1.1, cols: cols, seed: UInt64($0) + 100) }
        var rng = TestRNG(state: 8)
        let n = 5
        let x = rng.floats(n * cols)
        var separate = shapes.map { [Float](repeating: 0, count: n * $0.1) }
        var fused = shapes.map { [Float](repeating: .nan, count: n * $0.1) }
        let bases = mats.map { m -> UnsafeMutableRawPointer in
            let p = UnsafeMutableRawPointer.allocate(byteCount: m.count, alignment: 16)
            p.copyMemory(from: m, byteCount: m.count)
            return p
        }
        defer { bases.forEach { $0.deallocate() } }
        let ws = shapes.enumerated().map { PackedMatrix(type: $1.0, rows: $1.1, cols: cols, data: bases[$0]) }
        x.withUnsafeBufferPointer { xp in
            for i in 0..<ws.count {
                separate[i].withUnsafeMutableBufferPointer { ws[i].multiply(xp.baseAddress!, n: n, into: $0.baseAddress!, threads: 1, path: path) }
            }
            for threads in [1, 2, 3] {
                let outs = (0..<ws.count).map { i in UnsafeMutablePointer<Float>.allocate(capacity: n * shapes[i].1) }
                PackedMatrix.multiply(Array(zip(ws, outs)).map { (matrix: $0.0, output: $0.1) },
                                      x: xp.baseAddress!, n: n, threads: threads, path: path)
                for i in 0..<ws.count {
                    fused[i] = Array(UnsafeBufferPointer(start: outs[i], count: n * shapes[i].1))
                    outs[i].deallocate()
                    #expect(bitMismatches(fused[i], separate[i]) == 0, "part \(i) threads \(threads)")
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

@Suite("Thread pool")
struct ThreadPoolTests {
    @Test func everyIndexRunsExactlyOnce() {
        for threads in 1...5 {
            for count in [0, 1, 2, 3, 7, 64, 1000] {
                let hits = UnsafeMutablePointer<Int>.allocate(capacity: max(count, 1))
                hits.initialize(repeating: 0, count: max(count, 1))
                // Each index is written by exactly one thread, so plain stores are race-free.
                parallelFor(count, threads: threads) { i in hits[i] += 1 }
                #expect((0..<count).allSatisfy { hits[$0] == 1 }, "threads \(threads) count \(count)")
                hits.deallocate()
            }
        }
    }

    @Test func workersRunChunksConcurrently() {
        // Each of the two chunks waits for the other to start: only completes in time when two
        // threads really run them at once.
        let a = DispatchSemaphore(value: 0), b = DispatchSemaphore(value: 0)
        let met = UnsafeMutablePointer<Bool>.allocate(capacity: 2)
        defer { met.deallocate() }
        met.initialize(repeating: false, count: 2)
        // A pool of its own: the shared one may be busy with other tests (then a call runs serially).
        let pool = ThreadPool()
        pool.parallelFor(2, threads: 2) { i in
            if i == 0 { b.signal(); met[0] = a.wait(timeout: .now() + 10) == .success }
            else { a.signal(); met[1] = b.wait(timeout: .now() + 10) == .success }
        }
        #expect(met[0] && met[1])
        #expect(pool.workers == 1)
    }

    @Test func chunksAreContiguousAndCoverTheRange() {
        for threads in 1...4 {
            for count in [0, 1, 5, 16, 17, 100] {
                let owner = UnsafeMutablePointer<Int>.allocate(capacity: max(count, 1))
                owner.initialize(repeating: -1, count: max(count, 1))
                parallelChunks(count, threads: threads, minChunk: 4) { r in
                    for i in r { owner[i] = r.lowerBound }
                }
                #expect((0..<count).allSatisfy { owner[$0] >= 0 && owner[$0] <= $0 })
                owner.deallocate()
            }
        }
    }

    @Test func nestedAndConcurrentCallsComplete() {
        let n = 64
        let sums = UnsafeMutablePointer<Int>.allocate(capacity: 8 * n)
        sums.initialize(repeating: 0, count: 8 * n)
        // 8 callers at once (most run serially because the pool is busy), each with nested calls.
        DispatchQueue.concurrentPerform(iterations: 8) { caller in
            for _ in 0..<50 {
                parallelFor(n, threads: 3) { i in
                    var inner = 0
                    parallelFor(4, threads: 2) { _ in }   // nested: runs inline
                    inner += 1
                    sums[caller * n + i] += inner
                }
            }
        }
        #expect((0..<(8 * n)).allSatisfy { sums[$0] == 50 })
        sums.deallocate()
    }

    @Test func manySmallJobs() {
        var total = 0
        let cell = UnsafeMutablePointer<Int>.allocate(capacity: 4)
        for _ in 0..<20_000 {
            cell.initialize(repeating: 0, count: 4)
            parallelFor(4, threads: 4) { i in cell[i] = i + 1 }
            total += cell[0] + cell[1] + cell[2] + cell[3]
        }
        cell.deallocate()
        #expect(total == 20_000 * 10)
    }
}
