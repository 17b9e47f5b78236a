#if canImport(Glibc)
import Glibc
#elseif canImport(Darwin)
import Darwin
#endif
import CKernelsSupport

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

/// Which vector width `swiGLU` runs at. All give the same bits (specdec_silu.h), so the widest
/// the CPU has is the default; the others exist so that tests can compare them.
public enum SwiGLUWidth: CaseIterable, Sendable {
    case scalar, avx2, avx512

    public var isSupported: Bool {
        switch self {
        case .scalar: return true
        case .avx2: return cpuSupportsAVX2
        case .avx512: return cpuSupportsAVX512VNNI
        }
    }

    public static let widest: SwiGLUWidth = cpuSupportsAVX512VNNI ? .avx512 : cpuSupportsAVX2 ? .avx2 : .scalar
}

/// SwiGLU in place: gate[i] = silu(gate[i]) · up[i] for `count` elements, with the vectorized
/// exp of specdec_silu.h.
public func swiGLU(gate: UnsafeMutablePointer<Float>, up: UnsafePointer<Float>, count: Int,
                   width: SwiGLUWidth = .widest) {
    switch width {
    case .avx512: specdec_swiglu_avx512(gate, up, count)
    case .avx2: specdec_swiglu_avx2(gate, up, count)
    case .scalar: specdec_swiglu(gate, up, count)
    }
}

/// x[i] += y[i] for `count` elements (the residual connection).
public func addInPlace(_ x: UnsafeMutablePointer<Float>, _ y: UnsafePointer<Float>, count: Int) {
    for i in 0..<count { x[i] += y[i] }
}
