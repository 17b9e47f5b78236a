import COpenBLAS

extension PackedMatrix {
    /// Rows dequantized at a time by `multiplyBLAS`: bounds the float32 tile (4096 × cols) so no
    /// whole large matrix, such as a 49152-row LM head, is ever expanded.
    public static let blasTileRows = 4096

    /// Floats of scratch `multiplyBLAS` needs for this matrix.
    public var blasScratchCount: Int { min(rows, Self.blasTileRows) * cols }

    /// `y = x · Wᵀ` for n activation rows through OpenBLAS sgemm on dequantized row tiles.
    /// Much faster than the quantized kernels for large n (prefill), but sgemm's reduction order
    /// depends on n, so results are not batch-invariant: never use it to verify drafts.
    public func multiplyBLAS(_ x: UnsafePointer<Float>, n: Int, into y: UnsafeMutablePointer<Float>,
                             threads: Int, scratch: UnsafeMutablePointer<Float>) {
        openblas_set_num_threads(Int32(threads))
        var r0 = 0
        while r0 < rows {
            let nr = min(Self.blasTileRows, rows - r0)
            let first = r0
            parallelChunks(nr, threads: threads, minChunk: 32) { range in
                for r in range { dequantize(row: first + r, into: scratch + r * cols) }
            }
            cblas_sgemm(CblasRowMajor, CblasNoTrans, CblasTrans, Int32(n), Int32(nr), Int32(cols),
                        1, x, Int32(cols), scratch, Int32(cols), 0, y + r0, Int32(rows))
            r0 += nr
        }
    }
}
