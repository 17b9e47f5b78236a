import COpenBLAS
import Foundation

/// Which keys each query may see: a few index ranges per query (causal: `[0..<i+1]`; the
/// self-correction pass: the first pass's prefix plus the node itself; the adapter: all keys).
typealias Visibility = [[Range<Int>]]

enum Visible {
    static func causal(_ n: Int) -> Visibility { (0..<n).map { [0..<($0 + 1)] } }
    static func all(queries: Int, keys: Int) -> Visibility { Array(repeating: [0..<keys], count: queries) }
}

/// Multi-head scaled-dot-product attention with grouped key/value heads over whole sequences:
/// `out_h = softmax(q_h k_gᵀ / √hd + mask) v_g`, g = h / (H / Hkv). Scores and products go
/// through sgemm on strided head slices; the probabilities are kept for the backward pass.
struct Attention {
    let heads: Int
    let kvHeads: Int
    let headDim: Int

    var group: Int { heads / kvHeads }
    var qWidth: Int { heads * headDim }
    var kvWidth: Int { kvHeads * headDim }

    /// q [nq, H·hd], k/v [nk, Hkv·hd] → out [nq, H·hd]; probs [H, nq, nk] (zero where masked).
    func forward(q: UnsafePointer<Float>, k: UnsafePointer<Float>, v: UnsafePointer<Float>, nq: Int, nk: Int,
                 visible: Visibility, out: UnsafeMutablePointer<Float>, probs: UnsafeMutablePointer<Float>) {
        let scale = 1 / Float(headDim).squareRoot()
        // Visibility as a dense 0/1 mask, shared by every head.
        var mask = [Bool](repeating: false, count: nq * nk)
        for i in 0..<nq { for r in visible[i] { for j in r { mask[i * nk + j] = true } } }
        for h in 0..<heads {
            let g = h / group
            let p = probs + h * nq * nk
            cblas_sgemm(CblasRowMajor, CblasNoTrans, CblasTrans, Int32(nq), Int32(nk), Int32(headDim),
                        scale, q + h * headDim, Int32(qWidth), k + g * headDim, Int32(kvWidth), 0, p, Int32(nk))
            for i in 0..<nq {
                let row = p + i * nk
                var mx = -Float.infinity
                for j in 0..<nk where mask[i * nk + j] { mx = max(mx, row[j]) }
                var sum: Float = 0
                for j in 0..<nk {
                    if mask[i * nk + j] { let e = expf(row[j] - mx); row[j] = e; sum += e } else { row[j] = 0 }
                }
                let inv = sum > 0 ? 1 / sum : 0
                for j in 0..<nk { row[j] *= inv }
            }
            cblas_sgemm(CblasRowMajor, CblasNoTrans, CblasNoTrans, Int32(nq), Int32(headDim), Int32(nk),
                        1, p, Int32(nk), v + g * headDim, Int32(kvWidth), 0, out + h * headDim, Int32(qWidth))
        }
    }

    /// dq overwrites; dk, dv accumulate (several query sets may share keys).
    /// dP = dO vᵀ;  dv += Pᵀ dO;  dS = P∘(dP − Σ_j P dP);  dq = dS k / √hd;  dk += dSᵀ q / √hd.
    func backward(dOut: UnsafePointer<Float>, q: UnsafePointer<Float>, k: UnsafePointer<Float>, v: UnsafePointer<Float>,
                  probs: UnsafePointer<Float>, nq: Int, nk: Int,
                  dq: UnsafeMutablePointer<Float>, dk: UnsafeMutablePointer<Float>, dv: UnsafeMutablePointer<Float>) {
        let scale = 1 / Float(headDim).squareRoot()
        let ds = UnsafeMutablePointer<Float>.allocate(capacity: max(1, nq * nk))
        defer { ds.deallocate() }
        for h in 0..<heads {
            let g = h / group
            let p = probs + h * nq * nk
            cblas_sgemm(CblasRowMajor, CblasNoTrans, CblasTrans, Int32(nq), Int32(nk), Int32(headDim),
                        1, dOut + h * headDim, Int32(qWidth), v + g * headDim, Int32(kvWidth), 0, ds, Int32(nk))
            cblas_sgemm(CblasRowMajor, CblasTrans, CblasNoTrans, Int32(nk), Int32(headDim), Int32(nq),
                        1, p, Int32(nk), dOut + h * headDim, Int32(qWidth), 1, dv + g * headDim, Int32(kvWidth))
            for i in 0..<nq {
                let pr = p + i * nk, dr = ds + i * nk
                var dot: Float = 0
                for j in 0..<nk { dot += pr[j] * dr[j] }
                for j in 0..<nk { dr[j] = pr[j] * (dr[j] - dot) }
            }
            cblas_sgemm(CblasRowMajor, CblasNoTrans, CblasNoTrans, Int32(nq), Int32(headDim), Int32(nk),
                        scale, ds, Int32(nk), k + g * headDim, Int32(kvWidth), 0, dq + h * headDim, Int32(qWidth))
            cblas_sgemm(CblasRowMajor, CblasTrans, CblasNoTrans, Int32(nk), Int32(headDim), Int32(nq),
                        scale, ds, Int32(nk), q + h * headDim, Int32(qWidth), 1, dk + g * headDim, Int32(kvWidth))
        }
    }
}
