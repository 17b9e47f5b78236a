import Foundation
import Kernels

/// Per-position losses between the draft's logits `z` (over the V draft rows) and the target's
/// probabilities `p` over the same rows (renormalised there). Each returns the loss and
/// *accumulates* `weight · ∂loss/∂z` into `dz`.
enum Losses {

    /// ViSpec's probability L1: Σ|q − p| with q = softmax(z).
    /// ∂/∂z_j = q_j (s_j − Σ_i q_i s_i), s = sign(q − p).
    static func l1(z: UnsafePointer<Float>, p: UnsafePointer<Float>, count n: Int, weight: Float,
                   dz: UnsafeMutablePointer<Float>, scratch q: UnsafeMutablePointer<Float>) -> Float {
        softmax(z, count: n, into: q)
        var loss: Float = 0, qs: Float = 0
        for i in 0..<n {
            let diff = q[i] - p[i]
            loss += abs(diff)
            let s: Float = diff > 0 ? 1 : (diff < 0 ? -1 : 0)
            qs += q[i] * s
        }
        if weight != 0 {
            for i in 0..<n {
                let diff = q[i] - p[i]
                let s: Float = diff > 0 ? 1 : (diff < 0 ? -1 : 0)
                dz[i] += weight * q[i] * (s - qs)
            }
        }
        return loss
    }

    /// The target's top-k rows by probability, best first (ties by lower row).
    static func topK(_ p: UnsafePointer<Float>, count n: Int, k: Int) -> [Int] {
        var best: [Int] = []
        best.reserveCapacity(k + 1)
        for i in 0..<n {
            if best.count == k, p[i] <= p[best[k - 1]] { continue }
            var at = best.count
            while at > 0 && p[best[at - 1]] < p[i] { at -= 1 }
            best.insert(i, at: at)
            if best.count > k { best.removeLast() }
        }
        return best
    }

    /// Plackett–Luce negative log-likelihood of the target's ranking `order` (its top-k) under
    /// the draft's logits: Σ_k [log Σ_{j ∉ order[..<k]} e^{z_j} − z_{order[k]}], i.e. the top-k
    /// items drawn in order from the whole vocabulary without replacement (ListMLE).
    /// ∂/∂z_j = Σ_k [j ∉ order[..<k]] softmax_k(j) − [j ∈ order].
    static func plackettLuce(z: UnsafePointer<Float>, order: [Int], count n: Int, weight: Float,
                             dz: UnsafeMutablePointer<Float>, scratch e: UnsafeMutablePointer<Float>) -> Float {
        var mx = -Float.infinity
        for i in 0..<n { mx = max(mx, z[i]) }
        var total: Double = 0
        for i in 0..<n { let v = expf(z[i] - mx); e[i] = v; total += Double(v) }
        var loss: Double = 0
        var removed: Double = 0
        // coef[k] = 1 / (sum of the remaining exponentials at stage k).
        var inv: [Double] = []
        for k in 0..<order.count {
            let rest = max(total - removed, Double.leastNormalMagnitude)
            loss += log(rest) + Double(mx) - Double(z[order[k]])
            inv.append(1 / rest)
            removed += Double(e[order[k]])
        }
        if weight != 0 {
            // Every non-top item is in every stage's remaining set; item order[m] in stages 0...m.
            let all = inv.reduce(0, +)
            for i in 0..<n { dz[i] += weight * Float(Double(e[i]) * all) }
            var prefix: Double = 0
            for (m, j) in order.enumerated() {
                prefix += inv[m]
                // Remove the stages after m from the all-stage sum, subtract the indicator.
                dz[j] += weight * Float(Double(e[j]) * (prefix - all) - 1)
            }
        }
        return Float(loss)
    }

    /// Cross-entropy −Σ p log softmax(z);  ∂/∂z = q − p (p sums to 1).
    static func crossEntropy(z: UnsafePointer<Float>, p: UnsafePointer<Float>, count n: Int, weight: Float,
                             dz: UnsafeMutablePointer<Float>, scratch q: UnsafeMutablePointer<Float>) -> Float {
        var mx = -Float.infinity
        for i in 0..<n { mx = max(mx, z[i]) }
        var s: Double = 0
        for i in 0..<n { s += Double(expf(z[i] - mx)) }
        let lse = Float(log(s)) + mx
        var loss: Float = 0
        for i in 0..<n where p[i] > 0 { loss -= p[i] * (z[i] - lse) }
        if weight != 0 {
            for i in 0..<n { q[i] = expf(z[i] - lse); dz[i] += weight * (q[i] - p[i]) }
        }
        return loss
    }

    /// EAGLE's feature regression: mean over d of SmoothL1(x − y) (β = 1).
    static func smoothL1(x: UnsafePointer<Float>, y: UnsafePointer<Float>, count d: Int, weight: Float,
                         dx: UnsafeMutablePointer<Float>) -> Float {
        var loss: Float = 0
        let invD = 1 / Float(d)
        for i in 0..<d {
            let r = x[i] - y[i]
            if abs(r) < 1 { loss += 0.5 * r * r; dx[i] += weight * r * invD } else {
                loss += abs(r) - 0.5; dx[i] += weight * (r > 0 ? 1 : -1) * invD
            }
        }
        return loss * invD
    }
}
