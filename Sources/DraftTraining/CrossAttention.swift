import Draft
/// ViSpec's visual adapter for one image: K learned queries attend (H heads of size hd, no RoPE,
/// no mask) over the image's m embeddings with their own projections:
/// `O = softmax((Q Wq)(E Wk)ᵀ/√hd) (E Wv) Wo`. Rows 0..<K−1 of O are the compressed tokens,
/// row K−1 the global feature. The embeddings are the target's (frozen): no gradient to E.
final class AdapterPass {
    let k: Int, m: Int, d: Int
    let heads: Int
    let e: Buf, qa: Buf, ka: Buf, va: Buf, probs: Buf, att: Buf, out: Buf
    var attention: Attention { Attention(heads: heads, kvHeads: heads, headDim: d / heads) }

    init(config c: DraftConfig, weights w: DraftWeightViews, embeddings: UnsafePointer<Float>, rows m: Int) {
        k = c.numQ; self.m = m; d = c.width; heads = c.heads
        e = Buf(m * d); e.p.update(from: embeddings, count: m * d)
        qa = Buf(k * d); ka = Buf(m * d); va = Buf(m * d); probs = Buf(heads * k * m); att = Buf(k * d); out = Buf(k * d)
        Linear.forward(w.queries!, w.aq!, n: k, inDim: d, outDim: d, into: qa.p)
        Linear.forward(e.p, w.ak!, n: m, inDim: d, outDim: d, into: ka.p)
        Linear.forward(e.p, w.av!, n: m, inDim: d, outDim: d, into: va.p)
        attention.forward(q: qa.p, k: ka.p, v: va.p, nq: k, nk: m, visible: Visible.all(queries: k, keys: m), out: att.p, probs: probs.p)
        Linear.forward(att.p, w.ao!, n: k, inDim: d, outDim: d, into: out.p)
    }

    /// Compressed token r (r < K−1).
    func token(_ r: Int) -> UnsafePointer<Float> { UnsafePointer(out.p + r * d) }
    var global: UnsafePointer<Float> { UnsafePointer(out.p + (k - 1) * d) }

    /// dOut: K × d (compressed tokens' and global feature's gradients).
    func backward(weights w: DraftWeightViews, grads g: DraftGradViews, dOut: UnsafePointer<Float>) {
        let datt = Buf(k * d)
        Linear.backward(dy: dOut, x: att.p, w: w.ao!, n: k, inDim: d, outDim: d, dx: datt.p, dw: g.ao)
        let dq = Buf(k * d), dk = Buf(m * d), dv = Buf(m * d)
        attention.backward(dOut: datt.p, q: qa.p, k: ka.p, v: va.p, probs: probs.p, nq: k, nk: m, dq: dq.p, dk: dk.p, dv: dv.p)
        Linear.backward(dy: dq.p, x: w.queries!, w: w.aq!, n: k, inDim: d, outDim: d, dx: g.queries, dw: g.aq)
        Linear.backward(dy: dk.p, x: e.p, w: w.ak!, n: m, inDim: d, outDim: d, dx: nil, dw: g.ak)
        Linear.backward(dy: dv.p, x: e.p, w: w.av!, n: m, inDim: d, outDim: d, dx: nil, dw: g.av)
    }
}
