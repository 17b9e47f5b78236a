/// RMSNorm as LLaMA: `y = x / sqrt(mean(x²) + eps) · w`, row by row.
enum RMSNorm {
    /// Writes y and the per-row reciprocal RMS (kept for the backward pass).
    static func forward(_ x: UnsafePointer<Float>, weight w: UnsafePointer<Float>, n: Int, d: Int, eps: Float,
                        into y: UnsafeMutablePointer<Float>, rstd: UnsafeMutablePointer<Float>) {
        for t in 0..<n {
            let xr = x + t * d, yr = y + t * d
            var ss: Float = 0
            for i in 0..<d { ss += xr[i] * xr[i] }
            let r = 1 / (ss / Float(d) + eps).squareRoot()
            rstd[t] = r
            for i in 0..<d { yr[i] = xr[i] * r * w[i] }
        }
    }

    /// With u = x·r:  dx = r·(dy∘w) − r³/d · x · Σ(dy∘w∘x);  dw += Σ_t dy∘u.  dx accumulates.
    static func backward(dy: UnsafePointer<Float>, x: UnsafePointer<Float>, weight w: UnsafePointer<Float>, rstd: UnsafePointer<Float>,
                         n: Int, d: Int, dx: UnsafeMutablePointer<Float>, dw: UnsafeMutablePointer<Float>?) {
        for t in 0..<n {
            let xr = x + t * d, dyr = dy + t * d, dxr = dx + t * d
            let r = rstd[t]
            var dot: Float = 0
            for i in 0..<d { dot += dyr[i] * w[i] * xr[i] }
            let c = r * r * r * dot / Float(d)
            for i in 0..<d { dxr[i] += r * dyr[i] * w[i] - c * xr[i] }
            if let dw = dw { for i in 0..<d { dw[i] += dyr[i] * xr[i] * r } }
        }
    }
}
