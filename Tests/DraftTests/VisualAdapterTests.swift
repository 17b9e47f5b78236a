import Foundation
import XCTest
import VisualAdapter

final class VisualAdapterTests: XCTestCase {
    /// The adapter against a direct float64 evaluation of docs/draft-design.md's formula, for a
    /// small image (packed-kernel path) and a large one (sgemm path).
    func testCompressMatchesFloat64Reference() throws {
        let d = 64, heads = 4, hd = 16, k = 5
        var r = TestRNG(seed: 11)
        func rand(_ n: Int, _ s: Float) -> [Float] { (0..<n).map { _ in r.normal() * s } }
        let qs = rand(k * d, 1), wq = rand(d * d, 0.2), wk = rand(d * d, 0.2), wv = rand(d * d, 0.2), wo = rand(d * d, 0.2)
        let a = try CrossAttentionAdapter(width: d, heads: heads, queries: qs, qProj: wq, kProj: wk, vProj: wv, oProj: wo, threads: 2)
        XCTAssertEqual(a.queryCount, k)
        for m in [3, 40] {
            let e = rand(m * d, 1)
            let (tokens, global) = try e.withUnsafeBufferPointer { try a.compress(imageEmbeddings: $0, rows: m) }
            XCTAssertEqual(tokens.count, (k - 1) * d); XCTAssertEqual(global.count, d)
            // Reference: y = x Wᵀ with W [out, in].
            func lin(_ x: [Float], _ n: Int, _ w: [Float]) -> [Double] {
                var y = [Double](repeating: 0, count: n * d)
                for t in 0..<n { for o in 0..<d { var s = 0.0; for i in 0..<d { s += Double(x[t * d + i]) * Double(w[o * d + i]) }; y[t * d + o] = s } }
                return y
            }
            let q = lin(qs, k, wq), kk = lin(e, m, wk), v = lin(e, m, wv)
            var att = [Float](repeating: 0, count: k * d)
            for qi in 0..<k {
                for h in 0..<heads {
                    var sc = (0..<m).map { j in (0..<hd).reduce(0.0) { $0 + q[qi * d + h * hd + $1] * kk[j * d + h * hd + $1] } / Double(hd).squareRoot() }
                    let mx = sc.max()!
                    sc = sc.map { exp($0 - mx) }
                    let sum = sc.reduce(0, +)
                    for c in 0..<hd { att[qi * d + h * hd + c] = Float((0..<m).reduce(0.0) { $0 + sc[$1] / sum * v[$1 * d + h * hd + c] }) }
                }
            }
            let o = lin(att, k, wo)
            let got = tokens + global
            let err = zip(got, o).map { abs(Double($0) - $1) }.max()!
            XCTAssertLessThan(err, 1e-3, "m = \(m)")
        }
        XCTAssertThrowsError(try [Float](repeating: 0, count: 10).withUnsafeBufferPointer { try a.compress(imageEmbeddings: $0, rows: 1) })
        XCTAssertThrowsError(try CrossAttentionAdapter(width: d, heads: 5, queries: qs, qProj: wq, kProj: wk, vProj: wv, oProj: wo))
    }
}
