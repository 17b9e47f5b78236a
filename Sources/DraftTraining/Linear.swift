import COpenBLAS

/// A bias-free linear layer `y = x · Wᵀ` with `W` stored `[out, in]` row-major (PyTorch's
/// `nn.Linear.weight`, the checkpoint layout), over `n` rows at once through OpenBLAS sgemm.
enum Linear {
    /// y[n, out] = x[n, in] · W[out, in]ᵀ  (overwrites y).
    static func forward(_ x: UnsafePointer<Float>, _ w: UnsafePointer<Float>, n: Int, inDim: Int, outDim: Int,
                        into y: UnsafeMutablePointer<Float>) {
        guard n > 0 else { return }
        cblas_sgemm(CblasRowMajor, CblasNoTrans, CblasTrans, Int32(n), Int32(outDim), Int32(inDim),
                    1, x, Int32(inDim), w, Int32(inDim), 0, y, Int32(outDim))
    }

    /// dx[n, in] += dy[n, out] · W[out, in];  dW[out, in] += dyᵀ · x.  Either may be nil (frozen
    /// weights, or an input that needs no gradient).
    static func backward(dy: UnsafePointer<Float>, x: UnsafePointer<Float>, w: UnsafePointer<Float>, n: Int, inDim: Int, outDim: Int,
                         dx: UnsafeMutablePointer<Float>?, dw: UnsafeMutablePointer<Float>?) {
        guard n > 0 else { return }
        if let dx = dx {
            cblas_sgemm(CblasRowMajor, CblasNoTrans, CblasNoTrans, Int32(n), Int32(inDim), Int32(outDim),
                        1, dy, Int32(outDim), w, Int32(inDim), 1, dx, Int32(inDim))
        }
        if let dw = dw {
            cblas_sgemm(CblasRowMajor, CblasTrans, CblasNoTrans, Int32(outDim), Int32(inDim), Int32(n),
                        1, dy, Int32(outDim), x, Int32(inDim), 1, dw, Int32(inDim))
        }
    }
}
