import Foundation
import Kernels

/// A fault in the adapter's weights or input (`field` names the tensor or argument).
public struct VisualAdapterError: Error, CustomStringConvertible, Equatable, Sendable {
    public var field: String
    public var reason: String
    public init(field: String, reason: String) { self.field = field; self.reason = reason }
    public var description: String { "visual adapter: \(field): \(reason)" }
}

/// ViSpec's compressor (docs/draft-design.md): K learned queries attend over one image's
/// embeddings E (m × d) with H heads of size hd (H · hd = d), no RoPE:
///
///     A = softmax((Q Wq)(E Wk)ᵀ / √hd per head) (E Wv),   O = A Wo      (K × d)
///
/// `O[0..<K−1]` are the compressed tokens, `O[K−1]` the global feature. Matrices are `[out, in]`.
public final class CrossAttentionAdapter: VisualAdapter, @unchecked Sendable {
    public let width: Int
    public let queryCount: Int
    public let heads: Int
    public let headDim: Int
    public var threads: Int

    private let wk: OwnedPackedMatrix, wv: OwnedPackedMatrix, wo: OwnedPackedMatrix
    /// Q Wqᵀ: fixed, so computed once.
    private let projectedQueries: [Float]

    public init(width d: Int, heads: Int, queries: [Float], qProj: [Float], kProj: [Float], vProj: [Float], oProj: [Float],
                threads: Int = 1) throws {
        guard d > 0, heads > 0, d % heads == 0 else {
            throw VisualAdapterError(field: "heads", reason: "\(heads) heads do not divide the width \(d)")
        }
        let k = queries.count / d
        guard k >= 1, queries.count == k * d else {
            throw VisualAdapterError(field: "adapter.queries", reason: "\(queries.count) values are not K × \(d) with K ≥ 1")
        }
        for (name, m) in [("adapter.q_proj.weight", qProj), ("adapter.k_proj.weight", kProj),
                          ("adapter.v_proj.weight", vProj), ("adapter.o_proj.weight", oProj)] where m.count != d * d {
            throw VisualAdapterError(field: name, reason: "\(m.count) values, needs \(d) × \(d)")
        }
        width = d; queryCount = k; self.heads = heads; headDim = d / heads; self.threads = max(1, threads)
        wk = try OwnedPackedMatrix(type: .f32, rows: d, cols: d, floats: kProj)
        wv = try OwnedPackedMatrix(type: .f32, rows: d, cols: d, floats: vProj)
        wo = try OwnedPackedMatrix(type: .f32, rows: d, cols: d, floats: oProj)
        let wq = try OwnedPackedMatrix(type: .f32, rows: d, cols: d, floats: qProj)
        var pq = [Float](repeating: 0, count: k * d)
        queries.withUnsafeBufferPointer { q in
            pq.withUnsafeMutableBufferPointer { wq.matrix.multiply(q.baseAddress!, n: k, into: $0.baseAddress!, threads: 1) }
        }
        projectedQueries = pq
    }

    public func compress(imageEmbeddings: UnsafeBufferPointer<Float>, rows m: Int) throws -> (tokens: [Float], global: [Float]) {
        let d = width, k = queryCount, hd = headDim
        guard m >= 1, imageEmbeddings.count == m * d else {
            throw VisualAdapterError(field: "imageEmbeddings", reason: "\(imageEmbeddings.count) values are not \(m) rows of width \(d)")
        }
        let e = imageEmbeddings.baseAddress!
        var kp = [Float](repeating: 0, count: m * d), vp = kp
        // Large images go through sgemm (exactness across batch sizes is not needed here: an
        // image is always compressed whole); small ones through the packed kernel.
        if m >= 16 {
            let scratch = UnsafeMutablePointer<Float>.allocate(capacity: wk.matrix.blasScratchCount)
            defer { scratch.deallocate() }
            kp.withUnsafeMutableBufferPointer { wk.matrix.multiplyBLAS(e, n: m, into: $0.baseAddress!, threads: threads, scratch: scratch) }
            vp.withUnsafeMutableBufferPointer { wv.matrix.multiplyBLAS(e, n: m, into: $0.baseAddress!, threads: threads, scratch: scratch) }
        } else {
            kp.withUnsafeMutableBufferPointer { kb in
                vp.withUnsafeMutableBufferPointer { vb in
                    PackedMatrix.multiply([(wk.matrix, kb.baseAddress!), (wv.matrix, vb.baseAddress!)], x: e, n: m, threads: threads)
                }
            }
        }
        var a = [Float](repeating: 0, count: k * d)
        let scale = 1 / Float(hd).squareRoot()
        var scores = [Float](repeating: 0, count: m)
        for qi in 0..<k {
            for h in 0..<heads {
                let off = h * hd
                var mx = -Float.infinity
                for j in 0..<m {
                    var s: Float = 0
                    for c in 0..<hd { s += projectedQueries[qi * d + off + c] * kp[j * d + off + c] }
                    s *= scale
                    scores[j] = s
                    mx = max(mx, s)
                }
                var sum: Float = 0
                for j in 0..<m { scores[j] = expf(scores[j] - mx); sum += scores[j] }
                let inv = 1 / sum
                for j in 0..<m {
                    let p = scores[j] * inv
                    for c in 0..<hd { a[qi * d + off + c] += p * vp[j * d + off + c] }
                }
            }
        }
        var o = [Float](repeating: 0, count: k * d)
        a.withUnsafeBufferPointer { ab in
            o.withUnsafeMutableBufferPointer { wo.matrix.multiply(ab.baseAddress!, n: k, into: $0.baseAddress!, threads: threads) }
        }
        return (Array(o[0..<((k - 1) * d)]), Array(o[((k - 1) * d)...]))
    }
}
