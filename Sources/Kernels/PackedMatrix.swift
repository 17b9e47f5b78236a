/// A weight matrix kept in its packed GGUF form: `rows` rows of `cols` elements, row-major,
/// each row a whole number of quantization blocks. The bytes belong to the caller's mapping.
public struct PackedMatrix: @unchecked Sendable {
    public let type: QuantType
    public let rows: Int
    public let cols: Int
    public let rowBytes: Int
    public let data: UnsafeRawPointer

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

    /// Dequantizes row `r` into `dst` (`cols` floats), e.g. an embedding lookup.
    public func dequantize(row r: Int, into dst: UnsafeMutablePointer<Float>) {
        dequantizeRow(type, row(r), count: cols, into: dst)
    }

    /// `y[t][r] = W[r] · x[t]` for `n` activation rows `x` (n × cols) into `y` (n × rows).
    ///
    /// Every output is one `dotRow` of one weight row with one activation row (on `path`), so the
    /// result of a token does not depend on how many tokens share the call or on the thread count
    /// (batch invariance: a verifier batch reproduces single-token decoding bit for bit). Rows are
    /// the outer loop so that a weight row is read from memory once for all tokens.
    public func multiply(_ x: UnsafePointer<Float>, n: Int, into y: UnsafeMutablePointer<Float>, threads: Int,
                         path: KernelPath = .active) {
        let rows = self.rows, cols = self.cols, type = self.type, rowBytes = self.rowBytes
        parallelChunks(rows, threads: threads, minChunk: 16) { range in
            matMul(type, rows: row(range.lowerBound), rowBytes: rowBytes, rowCount: range.count,
                   x: x, n: n, count: cols, into: y + range.lowerBound, yStride: rows, path: path)
        }
    }
}
