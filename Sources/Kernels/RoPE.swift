import Foundation

/// Rotary position embedding, llama.cpp's "normal" mode: the adjacent pairs (2i, 2i+1) of the
/// first `ropeDim` dimensions of each head turn by position / scale · base^(−2i / ropeDim).
/// Angles are computed in double (float32 angles drift at long positions) and rounded once, so
/// the target's table, the draft at inference and the draft in training rotate by the same bits.
public struct RoPE: Sendable, Equatable {
    public let headDim: Int
    public let ropeDim: Int
    public let base: Double
    public let scale: Double

    public init(headDim: Int, ropeDim: Int, base: Double, scale: Double) {
        self.headDim = headDim; self.ropeDim = ropeDim; self.base = base; self.scale = scale
    }

    /// Frequencies per head: ropeDim / 2.
    public var half: Int { ropeDim / 2 }

    /// cos and sin of every frequency at position `p` (`half` values each).
    public func angles(position p: Int, cos c: UnsafeMutablePointer<Float>, sin s: UnsafeMutablePointer<Float>) {
        for i in 0..<half {
            let invFreq = pow(base, -2.0 * Double(i) / Double(ropeDim))
            let theta = Double(p) / scale * invFreq
            c[i] = Float(Foundation.cos(theta)); s[i] = Float(Foundation.sin(theta))
        }
    }

    /// Rotates one row of `heads` heads by the angles `c`, `s`. `inverse` turns the other way,
    /// which is also the backward pass (a rotation's Jacobian is its transpose).
    public func rotate(_ v: UnsafeMutablePointer<Float>, heads: Int, cos c: UnsafePointer<Float>, sin s: UnsafePointer<Float>,
                       inverse: Bool = false) {
        for hd in 0..<heads {
            let p = v + hd * headDim
            for i in 0..<half {
                let a = p[2 * i], b = p[2 * i + 1]
                let co = c[i], sn = inverse ? -s[i] : s[i]
                p[2 * i] = a * co - b * sn
                p[2 * i + 1] = a * sn + b * co
            }
        }
    }

    /// Rotates `n` rows of `heads` heads (rows `heads × headDim` apart), row t at `positions[t]`.
    public func apply(_ v: UnsafeMutablePointer<Float>, n: Int, heads: Int, positions: [Int], inverse: Bool = false) {
        withUnsafeTemporaryAllocation(of: Float.self, capacity: 2 * max(half, 1)) { cs in
            let c = cs.baseAddress!, s = c + max(half, 1)
            for t in 0..<n {
                angles(position: positions[t], cos: c, sin: s)
                rotate(v + t * heads * headDim, heads: heads, cos: c, sin: s, inverse: inverse)
            }
        }
    }
}

/// RoPE angles precomputed for positions 0..<count: a target session's whole context.
public final class RoPETable: @unchecked Sendable {
    public let rope: RoPE
    public let count: Int
    private let cosines: UnsafeMutablePointer<Float>
    private let sines: UnsafeMutablePointer<Float>

    public init(_ rope: RoPE, positions count: Int) {
        self.rope = rope
        self.count = count
        let half = rope.half
        cosines = .allocate(capacity: max(count * half, 1))
        sines = .allocate(capacity: max(count * half, 1))
        for p in 0..<count { rope.angles(position: p, cos: cosines + p * half, sin: sines + p * half) }
    }

    deinit { cosines.deallocate(); sines.deallocate() }

    /// Rotates one row of `heads` heads at `position` (< count).
    public func rotate(_ v: UnsafeMutablePointer<Float>, heads: Int, position: Int) {
        let half = rope.half
        rope.rotate(v, heads: heads, cos: cosines + position * half, sin: sines + position * half)
    }
}
