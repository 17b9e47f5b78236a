import Foundation
import Testing
import Kernels

/// `attendHead`: agreement with a float64 softmax-attention reference on both kernel paths,
/// head sizes that take each code path, and independence from the other rows of the cache.
@Suite("Attention kernel")
struct AttentionTests {
    /// Float64 reference of one head over the slot rows.
    func reference(q: [Float], k: [Float], v: [Float], stride: Int, slots: [Int], hd: Int, scale: Float) -> [Double] {
        let s = slots.map { j in (0..<hd).reduce(0.0) { $0 + Double(q[$1]) * Double(k[j * stride + $1]) } * Double(scale) }
        let m = s.max()!
        let e = s.map { exp($0 - m) }
        let z = e.reduce(0, +)
        return (0..<hd).map { c in zip(slots, e).reduce(0.0) { $0 + $1.1 / z * Double(v[$1.0 * stride + c]) } }
    }

    @Test("matches a float64 reference", arguments: [8, 24, 64, 72, 128, 20], [1, 7, 8, 9, 300])
    func matchesReference(hd: Int, count: Int) {
        var rng = TestRNG(state: UInt64(hd * 1000 + count))
        let stride = hd * 3 + 5, rows = count + 11
        let k = rng.floats(rows * stride).map { $0 * 3 }, v = rng.floats(rows * stride), q = rng.floats(hd).map { $0 * 2 }
        // Every other row, then a few late ones out of order, as a tree mask's slot list may be.
        var slots = (0..<count).map { ($0 * 2) % rows }
        if count > 3 { slots[count - 1] = rows - 1; slots[count - 2] = 1 }
        let scale = 1 / Float(hd).squareRoot()
        let want = reference(q: q, k: k, v: v, stride: stride, slots: slots, hd: hd, scale: scale)
        for path in supportedPaths {
            var out = [Float](repeating: .nan, count: hd), scores = [Float](repeating: 0, count: count)
            k.withUnsafeBufferPointer { kb in v.withUnsafeBufferPointer { vb in slots.withUnsafeBufferPointer { sb in
                attendHeads(q: q, heads: 1, keys: kb.baseAddress!, values: vb.baseAddress!, rowStride: stride, slots: sb.baseAddress!,
                            count: count, headDim: hd, scale: scale, scores: &scores, out: &out, path: path)
            } } }
            let err = zip(out, want).map { abs(Double($0) - $1) }.max()!
            #expect(err < 2e-6, "\(path) hd \(hd) count \(count): max error \(err)")
        }
    }

    /// A head's bits are the same computed alone or in a group of any size (what lets the
    /// session group heads and queries freely without losing batch invariance), and the
    /// count crosses several blocks.
    @Test("grouping heads changes no bits", arguments: supportedPaths)
    func groupingIsInvariant(path: KernelPath) {
        var rng = TestRNG(state: 9)
        let hd = 64, stride = 64, count = 203, heads = 18
        let k = rng.floats(count * stride), v = rng.floats(count * stride), q = rng.floats(heads * hd)
        let slots = Array(0..<count)
        func run(_ h0: Int, _ g: Int) -> [Float] {
            var out = [Float](repeating: 0, count: g * hd), scores = [Float](repeating: 0, count: g * count)
            k.withUnsafeBufferPointer { kb in v.withUnsafeBufferPointer { vb in q.withUnsafeBufferPointer { qb in
                attendHeads(q: qb.baseAddress! + h0 * hd, heads: g, keys: kb.baseAddress!, values: vb.baseAddress!, rowStride: stride,
                            slots: slots, count: count, headDim: hd, scale: 0.125, scores: &scores, out: &out, path: path)
            } } }
            return out
        }
        let all = run(0, heads)
        for h in 0..<heads { #expect(bitMismatches(Array(all[h * hd ..< (h + 1) * hd]), run(h, 1)) == 0, "head \(h)") }
        #expect(bitMismatches(Array(all[3 * hd ..< 6 * hd]), run(3, 3)) == 0)
    }

    @Test("the result depends only on the named rows", arguments: supportedPaths)
    func onlyNamedRowsMatter(path: KernelPath) {
        var rng = TestRNG(state: 5)
        let hd = 64, stride = 192, rows = 40
        var k = rng.floats(rows * stride), v = rng.floats(rows * stride)
        let q = rng.floats(hd), slots = [0, 3, 4, 9, 17, 18, 30]
        func run() -> [Float] {
            var out = [Float](repeating: 0, count: hd), scores = [Float](repeating: 0, count: slots.count)
            k.withUnsafeBufferPointer { kb in v.withUnsafeBufferPointer { vb in
                attendHeads(q: q, heads: 1, keys: kb.baseAddress!, values: vb.baseAddress!, rowStride: stride, slots: slots,
                            count: slots.count, headDim: hd, scale: 0.125, scores: &scores, out: &out, path: path)
            } }
            return out
        }
        let before = run()
        for r in 0..<rows where !slots.contains(r) {
            for c in 0..<stride { k[r * stride + c] = 1e3; v[r * stride + c] = -1e3 }
        }
        #expect(bitMismatches(before, run()) == 0)
    }
}
