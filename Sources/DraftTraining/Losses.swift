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

    /// The head losses of one row at once, with the same values and gradients as `l1`,
    /// `plackettLuce` and `crossEntropy` summed (each weighted; pass 0 to leave one out), and the
    /// draft's argmax: one exponential per item instead of one per loss, and 16-wide vector
    /// loops (the separate functions above are the readable reference the tests check this
    /// against). The draft's exponentials e = exp(z − max z) serve all three:
    ///   q = e / Σe;  Plackett–Luce's remaining sums are Σ_{j∉order} e + Σ_{m≥k} e_{order[m]},
    ///   which, unlike Σe − removed, never cancel when the top-k hold nearly all the mass.
    /// `dz` accumulates `w · ∂/∂z` when `gradient`; `e` is scratch (n floats).
    static func headRow(z: UnsafePointer<Float>, p: UnsafePointer<Float>, order: [Int], count n: Int,
                        l1 wl1: Float, rank wRank: Float, ce wce: Float, gradient: Bool,
                        dz: UnsafeMutablePointer<Float>, scratch e: UnsafeMutablePointer<Float>)
        -> (l1: Float, rank: Float, ce: Float, argmax: Int) {
        let mx = RowMath.max(z, count: n)
        var best = 0
        while best < n - 1 && z[best] != mx { best += 1 }   // the first maximum, as a scalar scan picks
        RowMath.expShifted(z, shift: mx, count: n, into: e)
        // Σ over the items outside the ranking, then the ranking's own exponentials.
        let top = wRank != 0 ? order : []
        let eTop = top.map { e[$0] }
        for j in top { e[j] = 0 }
        let outside = Double(RowMath.sum(e, count: n))
        for (m, j) in top.enumerated() { e[j] = eTop[m] }
        var total = outside
        for x in eTop { total += Double(x) }
        let inv = Float(1 / total)

        var l1: Float = 0, qs: Float = 0
        if wl1 != 0 { (l1, qs) = RowMath.l1Terms(e, scale: inv, p: p, count: n) }
        var rank: Double = 0, all: Double = 0
        var invRest: [Double] = []
        if wRank != 0 {
            // rest_k = outside + Σ_{m ≥ k} e_{order[m]}, built from the last stage back.
            var rest = [Double](repeating: 0, count: top.count)
            var acc = outside
            for k in stride(from: top.count - 1, through: 0, by: -1) { acc += Double(eTop[k]); rest[k] = acc }
            for k in 0..<top.count {
                let r = Swift.max(rest[k], Double.leastNormalMagnitude)
                rank += log(r) + Double(mx) - Double(z[top[k]])
                invRest.append(1 / r)
            }
            all = invRest.reduce(0, +)
        }
        var ce: Float = 0
        if wce != 0 {
            let lse = Float(log(total)) + mx
            for i in 0..<n where p[i] > 0 { ce -= p[i] * (z[i] - lse) }
        }
        if gradient {
            // dz += wl1·q(s − qs) + wRank·all·e + wce·(q − p), then the ranking's own terms.
            RowMath.headGradient(e, scale: inv, p: p, count: n, l1: wl1, qs: qs, rank: wRank * Float(all), ce: wce, dz: dz)
            if wRank != 0 {
                var prefix: Double = 0
                for (m, j) in top.enumerated() {
                    prefix += invRest[m]
                    dz[j] += wRank * Float(Double(eTop[m]) * (prefix - all) - 1)
                }
            }
        }
        return (l1, Float(rank), ce, best)
    }
}

/// Row loops over a vocabulary in 16-float vectors (DraftTraining is built for baseline x86-64,
/// so these are SSE-width and use no FMA). Sums keep 16 partial sums and add them at the end:
/// a fixed order, so results do not depend on anything but the row.
enum RowMath {
    typealias V = SIMD16<Float>

    static func max(_ x: UnsafePointer<Float>, count n: Int) -> Float {
        var m = V(repeating: -.infinity)
        var i = 0
        let raw = UnsafeRawPointer(x)
        // A compare and blend (the generic pointwiseMax is a per-lane loop over NaN rules).
        while i + 16 <= n {
            let v = raw.loadUnaligned(fromByteOffset: 4 * i, as: V.self)
            m.replace(with: v, where: v .> m)
            i += 16
        }
        var r = m[0]
        for k in 1..<16 where m[k] > r { r = m[k] }
        while i < n { r = Swift.max(r, x[i]); i += 1 }
        return r
    }

    static func sum(_ x: UnsafePointer<Float>, count n: Int) -> Float {
        var a = V()
        var i = 0
        let raw = UnsafeRawPointer(x)
        while i + 16 <= n { a += raw.loadUnaligned(fromByteOffset: 4 * i, as: V.self); i += 16 }
        var r = a.sum()
        while i < n { r += x[i]; i += 1 }
        return r
    }

    /// e^x for x ≤ 0, Cephes' expf as KernelsAVX2's exp8 (about 1 ulp; inputs below −87.3 give
    /// ≈ 2^−126 instead of 0), with separate multiplies and adds.
    @inline(__always)
    static func exp(_ v: V) -> V {
        let x = v.replacing(with: -87.336_54, where: v .< -87.336_54)
        let shifted = (x + x * 0.442_695_04) + 12_582_912
        let n = shifted - 12_582_912
        var r = x - n * 0.693_359_375
        r = r + n * 2.121_944_4e-4
        var p = V(repeating: 1.987_569_15e-4)
        p = p * r + 1.398_199_95e-3
        p = p * r + 8.333_451_9e-3
        p = p * r + 4.166_579_6e-2
        p = p * r + 1.666_666_55e-1
        p = p * r + 5.000_000_1e-1
        let y = (r + 1) + p * (r * r)
        let biased = unsafeBitCast(shifted + 127, to: SIMD16<UInt32>.self)
        return y * unsafeBitCast(biased &<< 23, to: V.self)
    }

    @inline(__always)
    static func exp(_ x: Float) -> Float { exp(V(repeating: x))[0] }

    /// e = exp(x − shift).
    static func expShifted(_ x: UnsafePointer<Float>, shift: Float, count n: Int, into e: UnsafeMutablePointer<Float>) {
        var i = 0
        let raw = UnsafeRawPointer(x), out = UnsafeMutableRawPointer(e)
        while i + 16 <= n {
            out.storeBytes(of: exp(raw.loadUnaligned(fromByteOffset: 4 * i, as: V.self) - shift), toByteOffset: 4 * i, as: V.self)
            i += 16
        }
        while i < n { e[i] = exp(x[i] - shift); i += 1 }
    }

    /// In place: x = softmax(x).
    static func softmax(_ x: UnsafeMutablePointer<Float>, count n: Int) {
        let mx = max(x, count: n)
        expShifted(x, shift: mx, count: n, into: x)
        let inv = 1 / sum(x, count: n)
        var i = 0
        let raw = UnsafeMutableRawPointer(x)
        while i + 16 <= n { raw.storeBytes(of: raw.loadUnaligned(fromByteOffset: 4 * i, as: V.self) * inv, toByteOffset: 4 * i, as: V.self); i += 16 }
        while i < n { x[i] *= inv; i += 1 }
    }

    @inline(__always)
    static func sign(_ d: V) -> V { V().replacing(with: 1, where: d .> 0).replacing(with: -1, where: d .< 0) }

    /// With q = e·scale: (Σ|q − p|, Σ q·sign(q − p)).
    static func l1Terms(_ e: UnsafePointer<Float>, scale: Float, p: UnsafePointer<Float>, count n: Int) -> (Float, Float) {
        var la = V(), qa = V()
        var i = 0
        let re = UnsafeRawPointer(e), rp = UnsafeRawPointer(p)
        while i + 16 <= n {
            let q = re.loadUnaligned(fromByteOffset: 4 * i, as: V.self) * scale
            let d = q - rp.loadUnaligned(fromByteOffset: 4 * i, as: V.self)
            let s = sign(d)
            la += d * s; qa += q * s
            i += 16
        }
        var loss = la.sum(), qs = qa.sum()
        while i < n {
            let q = e[i] * scale, d = q - p[i]
            let s: Float = d > 0 ? 1 : (d < 0 ? -1 : 0)
            loss += d * s; qs += q * s
            i += 1
        }
        return (loss, qs)
    }

    /// dz += l1·q(sign(q − p) − qs) + rank·e + ce·(q − p), q = e·scale.
    static func headGradient(_ e: UnsafePointer<Float>, scale: Float, p: UnsafePointer<Float>, count n: Int,
                             l1: Float, qs: Float, rank: Float, ce: Float, dz: UnsafeMutablePointer<Float>) {
        var i = 0
        let re = UnsafeRawPointer(e), rp = UnsafeRawPointer(p), rd = UnsafeMutableRawPointer(dz)
        while i + 16 <= n {
            let ev = re.loadUnaligned(fromByteOffset: 4 * i, as: V.self)
            let q = ev * scale
            let d = q - rp.loadUnaligned(fromByteOffset: 4 * i, as: V.self)
            var g = rd.loadUnaligned(fromByteOffset: 4 * i, as: V.self)
            if l1 != 0 { g += l1 * (q * (sign(d) - qs)) }
            if rank != 0 { g += rank * ev }
            if ce != 0 { g += ce * d }
            rd.storeBytes(of: g, toByteOffset: 4 * i, as: V.self)
            i += 16
        }
        while i < n {
            let q = e[i] * scale, d = q - p[i]
            let s: Float = d > 0 ? 1 : (d < 0 ? -1 : 0)
            var g = dz[i]
            if l1 != 0 { g += l1 * (q * (s - qs)) }
            if rank != 0 { g += rank * e[i] }
            if ce != 0 { g += ce * d }
            dz[i] = g
            i += 1
        }
    }
}
