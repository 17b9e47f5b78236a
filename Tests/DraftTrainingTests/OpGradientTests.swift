import Draft
import Kernels
import XCTest
@testable import DraftTraining

/// Finite-difference checks of every layer's hand-written backward, each with a control: the
/// same check on a deliberately wrong gradient must fail (so the bound can fail at all).
final class OpGradientTests: XCTestCase {
    let gc = GradCheck()

    /// Runs the check on `analytic`, then on a corrupted copy, which must be rejected.
    func check(_ name: String, _ x: inout [Float], coords: [Int], analytic: [Float], _ f: ([Float]) -> Double) {
        let w = gc.worst(&x, coords: coords, analytic: analytic, f)
        XCTAssertLessThan(w.error, gc.tolerance, "\(name): coordinate \(w.at)")
        var wrong = analytic
        for i in coords { wrong[i] = wrong[i] * 1.1 + 0.05 }
        XCTAssertFalse(gc.passes(&x, coords: coords, analytic: wrong, f), "\(name): a wrong gradient passed the check")
    }

    func testLinear() {
        var r = TestRNG(1)
        let n = 3, i = 5, o = 4
        var x = r.uniform(n * i), w = r.uniform(o * i)
        let dy = r.uniform(n * o)
        func f(_ x: [Float], _ w: [Float]) -> Double {
            var y = [Float](repeating: 0, count: n * o)
            withPointers(x) { xp in withPointers(w) { wp in Linear.forward(xp, wp, n: n, inDim: i, outDim: o, into: &y) } }
            return dot(y, dy)
        }
        var dx = [Float](repeating: 0, count: n * i), dw = [Float](repeating: 0, count: o * i)
        Linear.backward(dy: dy, x: x, w: w, n: n, inDim: i, outDim: o, dx: &dx, dw: &dw)
        check("linear dx", &x, coords: Array(0..<(n * i)), analytic: dx) { f($0, w) }
        check("linear dw", &w, coords: Array(0..<(o * i)), analytic: dw) { f(x, $0) }
    }

    func testRMSNorm() {
        var r = TestRNG(2)
        let n = 3, d = 6
        var x = r.uniform(n * d), w = r.uniform(d).map { $0 + 1.5 }
        let dy = r.uniform(n * d)
        func f(_ x: [Float], _ w: [Float]) -> Double {
            var y = [Float](repeating: 0, count: n * d), rs = [Float](repeating: 0, count: n)
            RMSNorm.forward(x, weight: w, n: n, d: d, eps: 1e-5, into: &y, rstd: &rs)
            return dot(y, dy)
        }
        var y = [Float](repeating: 0, count: n * d), rs = [Float](repeating: 0, count: n)
        RMSNorm.forward(x, weight: w, n: n, d: d, eps: 1e-5, into: &y, rstd: &rs)
        var dx = [Float](repeating: 0, count: n * d), dw = [Float](repeating: 0, count: d)
        RMSNorm.backward(dy: dy, x: x, weight: w, rstd: rs, n: n, d: d, dx: &dx, dw: &dw)
        check("rmsnorm dx", &x, coords: Array(0..<(n * d)), analytic: dx) { f($0, w) }
        check("rmsnorm dw", &w, coords: Array(0..<d), analytic: dw) { f(x, $0) }
    }

    func testRoPE() {
        var r = TestRNG(3)
        let rope = RoPE(headDim: 4, ropeDim: 4, base: 10_000, scale: 1)
        let n = 3, heads = 2, pos = [0, 5, 17]
        var x = r.uniform(n * heads * 4)
        let dy = r.uniform(n * heads * 4)
        func f(_ x: [Float]) -> Double { var y = x; rope.apply(&y, n: n, heads: heads, positions: pos); return dot(y, dy) }
        var dx = dy
        rope.apply(&dx, n: n, heads: heads, positions: pos, inverse: true)
        check("rope", &x, coords: Array(0..<x.count), analytic: dx, f)
        // Same rotation as LlamaSession at position 1, head dim 4: pair (0,1) by θ = 1, pair (2,3) by 10000^(-1/2).
        var v: [Float] = [1, 0, 1, 0]
        rope.apply(&v, n: 1, heads: 1, positions: [1])
        XCTAssertEqual(v[0], cos(1), accuracy: 1e-6); XCTAssertEqual(v[1], sin(1), accuracy: 1e-6)
        XCTAssertEqual(v[2], cos(0.01), accuracy: 1e-6); XCTAssertEqual(v[3], sin(0.01), accuracy: 1e-6)
    }

    func testSwiGLU() {
        var r = TestRNG(4)
        let n = 10
        var g = r.uniform(n, scale: 3), u = r.uniform(n, scale: 2)
        let dh = r.uniform(n)
        func f(_ g: [Float], _ u: [Float]) -> Double { var h = [Float](repeating: 0, count: n); SwiGLU.forward(gate: g, up: u, count: n, into: &h); return dot(h, dh) }
        var dg = [Float](repeating: 0, count: n), du = dg
        SwiGLU.backward(dh: dh, gate: g, up: u, count: n, dg: &dg, du: &du)
        check("swiglu dg", &g, coords: Array(0..<n), analytic: dg) { f($0, u) }
        check("swiglu du", &u, coords: Array(0..<n), analytic: du) { f(g, $0) }
    }

    /// Causal GQA attention with an extra irregular mask (the self-correction pattern).
    func testAttention() {
        var r = TestRNG(5)
        let att = Attention(heads: 4, kvHeads: 2, headDim: 3)
        let nq = 4, nk = 6
        let vis: Visibility = [[0..<1, 4..<5], [0..<2], [0..<3, 5..<6], [0..<6]]
        var q = r.uniform(nq * 12), k = r.uniform(nk * 6), v = r.uniform(nk * 6)
        let dy = r.uniform(nq * 12)
        func f(_ q: [Float], _ k: [Float], _ v: [Float]) -> Double {
            var o = [Float](repeating: 0, count: nq * 12), p = [Float](repeating: 0, count: 4 * nq * nk)
            att.forward(q: q, k: k, v: v, nq: nq, nk: nk, visible: vis, out: &o, probs: &p)
            return dot(o, dy)
        }
        var o = [Float](repeating: 0, count: nq * 12), p = [Float](repeating: 0, count: 4 * nq * nk)
        att.forward(q: q, k: k, v: v, nq: nq, nk: nk, visible: vis, out: &o, probs: &p)
        var dq = [Float](repeating: 0, count: nq * 12), dk = [Float](repeating: 0, count: nk * 6), dv = dk
        att.backward(dOut: dy, q: q, k: k, v: v, probs: p, nq: nq, nk: nk, dq: &dq, dk: &dk, dv: &dv)
        check("attention dq", &q, coords: Array(0..<q.count), analytic: dq) { f($0, k, v) }
        check("attention dk", &k, coords: Array(0..<k.count), analytic: dk) { f(q, $0, v) }
        check("attention dv", &v, coords: Array(0..<v.count), analytic: dv) { f(q, k, $0) }
        // Masked keys get exactly zero weight.
        XCTAssertEqual(p[0 * nk + 2], 0); XCTAssertEqual(p[1 * nk + 5], 0)
    }

    func testLosses() {
        var r = TestRNG(6)
        let v = 12
        var z = r.uniform(v, scale: 2)
        let t = r.uniform(v, scale: 2)
        var p = [Float](repeating: 0, count: v)
        softmax(t, count: v, into: &p)
        var scratch = [Float](repeating: 0, count: v)
        let order = Losses.topK(p, count: v, k: 5)
        XCTAssertEqual(order, Array((0..<v).sorted { p[$0] > p[$1] }.prefix(5)))
        typealias LossFn = (UnsafePointer<Float>, UnsafeMutablePointer<Float>) -> Float
        let losses: [(String, LossFn)] = [
            ("l1", { z, dz in var s = [Float](repeating: 0, count: v); return Losses.l1(z: z, p: p, count: v, weight: 1, dz: dz, scratch: &s) }),
            ("plackett-luce", { z, dz in var s = [Float](repeating: 0, count: v); return Losses.plackettLuce(z: z, order: order, count: v, weight: 1, dz: dz, scratch: &s) }),
            ("cross-entropy", { z, dz in var s = [Float](repeating: 0, count: v); return Losses.crossEntropy(z: z, p: p, count: v, weight: 1, dz: dz, scratch: &s) }),
            ("smooth-l1", { z, dz in Losses.smoothL1(x: z, y: t, count: v, weight: 1, dx: dz) }),
        ]
        _ = scratch
        for (name, fn) in losses {
            var dz = [Float](repeating: 0, count: v)
            _ = z.withUnsafeBufferPointer { fn($0.baseAddress!, &dz) }
            check(name, &z, coords: Array(0..<v), analytic: dz) { zz in
                var junk = [Float](repeating: 0, count: v)
                return Double(zz.withUnsafeBufferPointer { fn($0.baseAddress!, &junk) })
            }
        }
        scratch[0] = 0
    }

    /// The fused row (what training runs) against the separate reference losses: values,
    /// summed weighted gradients and the argmax, over a vocabulary with a vector tail.
    func testFusedHeadRowMatchesSeparateLosses() {
        var r = TestRNG(16)
        let v = 40
        let z = r.uniform(v, scale: 3)
        var p = [Float](repeating: 0, count: v)
        softmax(r.uniform(v, scale: 3), count: v, into: &p)
        let order = Losses.topK(p, count: v, k: 10)
        var scratch = [Float](repeating: 0, count: v)
        var want = [Float](repeating: 0, count: v)
        let l1 = Losses.l1(z: z, p: p, count: v, weight: 0.7, dz: &want, scratch: &scratch)
        let pl = Losses.plackettLuce(z: z, order: order, count: v, weight: 0.3, dz: &want, scratch: &scratch)
        let ce = Losses.crossEntropy(z: z, p: p, count: v, weight: 0.2, dz: &want, scratch: &scratch)
        var got = [Float](repeating: 0, count: v)
        let f = Losses.headRow(z: z, p: p, order: order, count: v, l1: 0.7, rank: 0.3, ce: 0.2, gradient: true, dz: &got, scratch: &scratch)
        XCTAssertEqual(f.l1, l1, accuracy: 1e-5 * max(1, abs(l1)))
        XCTAssertEqual(f.rank, pl, accuracy: 1e-5 * max(1, abs(pl)))
        XCTAssertEqual(f.ce, ce, accuracy: 1e-5 * max(1, abs(ce)))
        XCTAssertEqual(f.argmax, z.indices.max { z[$0] < z[$1] })
        for i in 0..<v { XCTAssertEqual(got[i], want[i], accuracy: 1e-5, "dz[\(i)]") }
    }

    func testAdapterCrossAttention() {
        var r = TestRNG(7)
        let c = DraftConfig(width: 8, heads: 2, kvHeads: 1, headDim: 4, ffn: 12, rmsEps: 1e-5, ropeBase: 10_000,
                            vocab: 5, targetVocab: 20, headTied: false, numQ: 3)
        var params = DraftParameters(config: c)
        params.initialise(seed: 9)
        // A non-trivial adapter: random queries and projections of a usable scale.
        for n in ["adapter.queries", "adapter.q_proj.weight", "adapter.k_proj.weight", "adapter.v_proj.weight", "adapter.o_proj.weight"] {
            params.set(n, r.uniform(params.slot(n)!.count, scale: 0.8))
        }
        let m = 5
        let emb = r.uniform(m * 8)
        let dOut = r.uniform(3 * 8)
        func f(_ values: [Float]) -> Double {
            values.withUnsafeBufferPointer { vp in
                let w = DraftWeightViews(params: vp.baseAddress!, layout: params, tiedHead: nil)
                let a = emb.withUnsafeBufferPointer { AdapterPass(config: c, weights: w, embeddings: $0.baseAddress!, rows: m) }
                return dot(a.out.array, dOut)
            }
        }
        var grads = [Float](repeating: 0, count: params.count)
        params.values.withUnsafeBufferPointer { vp in
            let w = DraftWeightViews(params: vp.baseAddress!, layout: params, tiedHead: nil)
            let a = emb.withUnsafeBufferPointer { AdapterPass(config: c, weights: w, embeddings: $0.baseAddress!, rows: m) }
            grads.withUnsafeMutableBufferPointer { g in
                a.backward(weights: w, grads: DraftGradViews(grads: g.baseAddress!, layout: params), dOut: dOut)
            }
        }
        var coords: [Int] = []
        for n in ["adapter.queries", "adapter.q_proj.weight", "adapter.k_proj.weight", "adapter.v_proj.weight", "adapter.o_proj.weight"] {
            let s = params.slot(n)!
            coords += r.pick(6, of: s.count).map { s.offset + $0 }
        }
        var values = params.values
        check("adapter", &values, coords: coords, analytic: grads, f)
    }
}
