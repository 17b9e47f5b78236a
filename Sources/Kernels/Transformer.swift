#if canImport(Glibc)
import Glibc
#elseif canImport(Darwin)
import Darwin
#endif

// Row-wise transformer pieces shared by the target model and the draft. Each row is computed on
// its own, in a fixed order, so a token's result never depends on how many rows share the call
// (batch invariance, as the matrix kernels).

/// RMSNorm of `n` rows of `d` floats: out[t] = x[t] / sqrt(mean(x[t]²) + eps) · weight.
/// The sum of squares runs in 8 lanes (then a fixed pairwise tree), so it vectorizes.
public func rmsNorm(_ x: UnsafePointer<Float>, weight: UnsafePointer<Float>, n: Int, d: Int, eps: Float,
                    into out: UnsafeMutablePointer<Float>) {
    for t in 0..<n {
        let row = x + t * d, o = out + t * d
        var acc = SIMD8<Float>(repeating: 0)
        var i = 0
        while i + 8 <= d {
            let v = UnsafeRawPointer(row + i).loadUnaligned(as: SIMD8<Float>.self)
            acc += v * v
            i += 8
        }
        var ss = ((acc[0] + acc[4]) + (acc[2] + acc[6])) + ((acc[1] + acc[5]) + (acc[3] + acc[7]))
        while i < d { ss += row[i] * row[i]; i += 1 }
        let scale = 1 / (ss / Float(d) + eps).squareRoot()
        for j in 0..<d { o[j] = row[j] * scale * weight[j] }
    }
}

/// SwiGLU in place: gate[i] = silu(gate[i]) · up[i] for `count` elements.
public func swiGLU(gate: UnsafeMutablePointer<Float>, up: UnsafePointer<Float>, count: Int) {
    for i in 0..<count {
        let a = gate[i]
        gate[i] = a / (1 + expf(-a)) * up[i]
    }
}

/// x[i] += y[i] for `count` elements (the residual connection).
public func addInPlace(_ x: UnsafeMutablePointer<Float>, _ y: UnsafePointer<Float>, count: Int) {
    for i in 0..<count { x[i] += y[i] }
}
