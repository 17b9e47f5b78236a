import Foundation

/// Rotary position embedding, llama.cpp's "normal" (adjacent-pair) rotation of the first
/// `ropeDim` dimensions of each head, exactly as `LlamaSession.rope`, at arbitrary per-row
/// positions (the draft's entries keep the target positions, which skip dropped image entries).
struct RoPE {
    let headDim: Int
    let ropeDim: Int
    let base: Double
    let scale: Double

    /// cos/sin for one position (ropeDim/2 each), computed in Double as the target's table is.
    func table(position p: Int) -> (cos: [Float], sin: [Float]) {
        let half = ropeDim / 2
        var c = [Float](repeating: 0, count: half), s = c
        for i in 0..<half {
            let invFreq = pow(base, -2.0 * Double(i) / Double(ropeDim))
            let theta = Double(p) / scale * invFreq
            c[i] = Float(cos(theta)); s[i] = Float(sin(theta))
        }
        return (c, s)
    }

    /// Rotates rows in place: `v` holds n rows of `heads` heads; `sign` −1 applies the inverse
    /// rotation, which is also the backward pass (a rotation's Jacobian is orthogonal).
    func apply(_ v: UnsafeMutablePointer<Float>, n: Int, heads: Int, positions: [Int], inverse: Bool = false) {
        let half = ropeDim / 2
        var cache: [Int: (cos: [Float], sin: [Float])] = [:]
        let rowWidth = heads * headDim
        for t in 0..<n {
            let p = positions[t]
            let cs: (cos: [Float], sin: [Float])
            if let c = cache[p] { cs = c } else { cs = table(position: p); cache[p] = cs }
            let sg: Float = inverse ? -1 : 1
            for h in 0..<heads {
                let q = v + t * rowWidth + h * headDim
                for i in 0..<half {
                    let a = q[2 * i], b = q[2 * i + 1]
                    let c = cs.cos[i], s = sg * cs.sin[i]
                    q[2 * i] = a * c - b * s
                    q[2 * i + 1] = a * s + b * c
                }
            }
        }
    }
}
