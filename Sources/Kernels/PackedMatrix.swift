/// A weight matrix kept in its packed GGUF form: `rows` rows of `cols` elements, row-major,
/// each row a whole number of quantization blocks. The bytes belong to the caller's mapping.
public struct PackedMatrix: @unchecked Sendable {
    public let type: QuantType
    public let rows: Int
    public let cols: Int
    public let rowBytes: Int
    public let data: UnsafeRawPointer
    /// The 8-row interleaved copy the int8-activation (`q8`) path multiplies with; nil until
    /// `withInterleavedCopy()` makes one (and for types without int8 kernels).
    public private(set) var interleaved: InterleavedWeights?

    public init(type: QuantType, rows: Int, cols: Int, data: UnsafeRawPointer) {
        precondition(cols % type.blockSize == 0, "row length must be whole blocks")
        self.type = type
        self.rows = rows
        self.cols = cols
        self.rowBytes = type.rowBytes(cols)!
        self.data = data
    }

    @inline(__always)
    public func row(_ r: Int) -> UnsafeRawPointer { data + r * rowBytes }

    /// This matrix with an interleaved copy for the `q8` path (Q4_0/Q4_1/Q8_0/Q4_K/Q5_K/Q6_K;
    /// others unchanged). The copy has the same bytes as the rows (reordered; Q4_K/Q5_K ≤ 2.8%
    /// more: their 6-bit scales unpacked), so it adds about the matrix's size in anonymous memory;
    /// the GGUF rows stay mapped for the f32 path and embedding lookups.
    public func withInterleavedCopy() -> PackedMatrix {
        guard interleaved == nil else { return self }
        var m = self
        m.interleaved = InterleavedWeights(type: type, rows: rows, cols: cols, data: data, rowBytes: rowBytes)
        return m
    }

    /// Dequantizes row `r` into `dst` (`cols` floats), e.g. an embedding lookup.
    public func dequantize(row r: Int, into dst: UnsafeMutablePointer<Float>) {
        dequantizeRow(type, row(r), count: cols, into: dst)
    }

    /// `y[t][r] = W[r] · x[t]` for `n` activation rows `x` (n × cols) into `y` (n × rows).
    ///
    /// Every output is one `dotRow` of one weight row with one activation row (on `path`), so the
    /// result of a token does not depend on how many tokens share the call or on the thread count
    /// (batch invariance: a verifier batch reproduces single-token decoding bit for bit). Rows
    /// are the outer loop so that a weight row is read from memory once for all tokens; contiguous
    /// row chunks run on `threads` threads of the shared pool.
    public func multiply(_ x: UnsafePointer<Float>, n: Int, into y: UnsafeMutablePointer<Float>, threads: Int,
                         path: KernelPath = .active) {
        PackedMatrix.multiply(parts: 1, { _ in (self, y) }, x: x, n: n, threads: threads, path: path)
    }

    /// `multiply` with a choice of activation format (`ActivationQuant`): `.none` is `multiply`;
    /// `.q8` quantizes the n activation rows once and runs the int8-activation kernels on the
    /// interleaved copy (matrices without one take the float path). Batch-invariant and
    /// thread-count invariant either way.
    public func multiply(_ x: UnsafePointer<Float>, n: Int, into y: UnsafeMutablePointer<Float>, threads: Int,
                         path: KernelPath = .active, activations: ActivationQuant) {
        PackedMatrix.multiply([(self, y)], x: x, n: n, threads: threads, path: path, activations: activations)
    }

    /// The several-matrix `multiply` with a choice of activation format (quantized once for all parts).
    public static func multiply(_ parts: [(matrix: PackedMatrix, output: UnsafeMutablePointer<Float>)],
                                x: UnsafePointer<Float>, n: Int, threads: Int, path: KernelPath = .active,
                                activations: ActivationQuant) {
        guard activations == .q8, let first = parts.first, n > 0,
              parts.contains(where: { $0.matrix.interleaved != nil }) else {
            multiply(parts, x: x, n: n, threads: threads, path: path)
            return
        }
        precondition(path != .avx2 || cpuSupportsAVX2, "multiply: the AVX2 kernels need an AVX2/FMA/F16C CPU")
        withQ8Activations(x, n: n, count: first.matrix.cols, path: path) { q8 in
            parts.withUnsafeBufferPointer { p in
                multiply(parts: p.count, { (p[$0].matrix, p[$0].output) }, x: x, n: n, threads: threads, path: path, q8: q8)
            }
        }
    }

    /// Several matrices with the same `cols` applied to the same activations in one parallel
    /// region (e.g. the Q, K and V projections): for each part, `y[t][r] = W[r] · x[t]` into the
    /// part's output (n × its rows). Bit-identical to one `multiply` per part.
    public static func multiply(_ parts: [(matrix: PackedMatrix, output: UnsafeMutablePointer<Float>)],
                                x: UnsafePointer<Float>, n: Int, threads: Int, path: KernelPath = .active) {
        parts.withUnsafeBufferPointer { p in
            multiply(parts: p.count, { (p[$0].matrix, p[$0].output) }, x: x, n: n, threads: threads, path: path)
        }
    }

    /// Rows per chunk at least this many (per-chunk costs: a claim, preparing x).
    static let minChunkRows = 16

    @inline(__always)
    static func multiply(parts count: Int, _ part: (Int) -> (PackedMatrix, UnsafeMutablePointer<Float>),
                         x: UnsafePointer<Float>, n: Int, threads: Int, path: KernelPath,
                         q8: Q8ActivationPointers? = nil) {
        guard count > 0 else { return }
        let cols = part(0).0.cols
        for i in 0..<count { precondition(part(i).0.cols == cols, "PackedMatrix.multiply: parts differ in cols") }
        let int8Kernel = Int8Kernel.forPath(path)
        /// Whether a part runs on the int8 kernels: activations quantized and an interleaved copy.
        @inline(__always)
        func int8(_ m: PackedMatrix) -> Bool { q8 != nil && m.interleaved != nil }
        /// Units a part is split in: 8-row groups for the int8 kernels, rows for the float ones.
        @inline(__always)
        func units(_ m: PackedMatrix) -> Int { int8(m) ? (m.rows + 7) / 8 : m.rows }
        /// Units lo..<hi of one part: the int8-activation kernel when activations are quantized
        /// and the matrix has an interleaved copy, else the float kernel.
        @inline(__always)
        func run(_ m: PackedMatrix, _ y: UnsafeMutablePointer<Float>, _ lo: Int, _ hi: Int) {
            if let q8, let w = m.interleaved {
                x8MatMul(w, groups: lo..<hi, q8, n: n, into: y, yStride: m.rows, kernel: int8Kernel)
            } else {
                matMul(m.type, rows: m.row(lo), rowBytes: m.rowBytes, rowCount: hi - lo, x: x, n: n, count: cols,
                       into: y + lo, yStride: m.rows, path: path)
            }
        }
        if threads <= 1 || n == 0 {
            for i in 0..<count {
                let (m, y) = part(i)
                run(m, y, 0, units(m))
            }
            return
        }
        // Chunks per part, in proportion to its bytes; `first[i]` is part i's first chunk.
        withUnsafeTemporaryAllocation(of: Int.self, capacity: count + 1) { first in
            var total = 0
            for i in 0..<count { total += part(i).0.rows * part(i).0.rowBytes }
            let target = threads * chunksPerThread
            first[0] = 0
            for i in 0..<count {
                let m = part(i).0
                let share = (target * m.rows * m.rowBytes + total - 1) / max(total, 1)
                first[i + 1] = first[i] + max(1, min(share, m.rows / minChunkRows, units(m)))
            }
            parallelFor(first[count], threads: threads) { c in
                var i = 0
                while first[i + 1] <= c { i += 1 }
                let (m, y) = part(i)
                let chunks = first[i + 1] - first[i], j = c - first[i]
                let u = units(m)
                if int8(m) {
                    // Whole pairs of groups: a pair is stored as one stream for the 16-row VNNI
                    // tile (specdec_x8.h), which a boundary inside it would split.
                    let pairs = (u + 1) / 2
                    run(m, y, min(u, 2 * (pairs * j / chunks)), min(u, 2 * (pairs * (j + 1) / chunks)))
                } else {
                    run(m, y, u * j / chunks, u * (j + 1) / chunks)
                }
            }
        }
    }
}
