import Draft
import Foundation

/// Pointers to the draft's weights (and their gradients) inside the flat parameter vector.
struct WeightPointers {
    let fc, wq, wk, wv, wo, postNorm, gate, up, down, norm: UnsafePointer<Float>
    /// Draft head rows (V × d): `lm_head.weight`, or the target's head rows when tied.
    let head: UnsafePointer<Float>
    let queries, aq, ak, av, ao, imgFc: UnsafePointer<Float>?

    /// EAGLE-3 only: the norms of the embedding and state halves of the attention input.
    let inputNorm, hiddenNorm: UnsafePointer<Float>?

    init(params p: UnsafePointer<Float>, layout: DraftParameters, tiedHead: UnsafePointer<Float>?) {
        // Layer tensors are `midlayer.*` in an EAGLE-3 layout.
        func at(_ n: String) -> UnsafePointer<Float> { p + layout.offset(DraftWeights.Name.of(n, layout.config)) }
        func opt(_ n: String) -> UnsafePointer<Float>? { layout.slot(n).map { p + $0.offset } }
        inputNorm = opt(DraftWeights.Name.inputNorm); hiddenNorm = opt(DraftWeights.Name.hiddenNorm)
        fc = at("fc.weight"); wq = at("layers.0.self_attn.q_proj.weight"); wk = at("layers.0.self_attn.k_proj.weight")
        wv = at("layers.0.self_attn.v_proj.weight"); wo = at("layers.0.self_attn.o_proj.weight")
        postNorm = at("layers.0.post_attention_layernorm.weight")
        gate = at("layers.0.mlp.gate_proj.weight"); up = at("layers.0.mlp.up_proj.weight"); down = at("layers.0.mlp.down_proj.weight")
        norm = at("norm.weight")
        head = opt("lm_head.weight") ?? tiedHead!
        queries = opt("adapter.queries"); aq = opt("adapter.q_proj.weight"); ak = opt("adapter.k_proj.weight")
        av = opt("adapter.v_proj.weight"); ao = opt("adapter.o_proj.weight"); imgFc = opt("img_fc.weight")
    }
}

/// Gradient pointers, same layout; nil for tensors without gradient (frozen or tied).
struct DraftGrads {
    let fc, wq, wk, wv, wo, postNorm, gate, up, down: UnsafeMutablePointer<Float>
    let head: UnsafeMutablePointer<Float>?
    let queries, aq, ak, av, ao, imgFc: UnsafeMutablePointer<Float>?
    /// EAGLE-3 only (its output norm trains; the other archs keep the target's frozen).
    let norm, inputNorm, hiddenNorm: UnsafeMutablePointer<Float>?

    init(grads g: UnsafeMutablePointer<Float>, layout: DraftParameters) {
        func at(_ n: String) -> UnsafeMutablePointer<Float> { g + layout.offset(DraftWeights.Name.of(n, layout.config)) }
        func opt(_ n: String) -> UnsafeMutablePointer<Float>? { layout.slot(n).map { g + $0.offset } }
        norm = layout.slot("norm.weight").flatMap { $0.trainable ? g + $0.offset : nil }
        inputNorm = opt(DraftWeights.Name.inputNorm); hiddenNorm = opt(DraftWeights.Name.hiddenNorm)
        fc = at("fc.weight"); wq = at("layers.0.self_attn.q_proj.weight"); wk = at("layers.0.self_attn.k_proj.weight")
        wv = at("layers.0.self_attn.v_proj.weight"); wo = at("layers.0.self_attn.o_proj.weight")
        postNorm = at("layers.0.post_attention_layernorm.weight")
        gate = at("layers.0.mlp.gate_proj.weight"); up = at("layers.0.mlp.up_proj.weight"); down = at("layers.0.mlp.down_proj.weight")
        head = opt("lm_head.weight")
        queries = opt("adapter.queries"); aq = opt("adapter.q_proj.weight"); ak = opt("adapter.k_proj.weight")
        av = opt("adapter.v_proj.weight"); ao = opt("adapter.o_proj.weight"); imgFc = opt("img_fc.weight")
    }
}

/// One application of the draft's decoder over `n` entries whose fused inputs are
/// `fc([E ; F])`, with optional earlier keys/values (`prior`, already rotated) that the entries
/// may also attend to (the self-correction pass and chain drafting see the first pass's entries).
/// Keeps every activation the backward pass needs.
final class DecoderPass {
    let c: DraftConfig
    let n: Int, nPrior: Int
    let positions: [Int]
    let visible: Visibility
    let x0: Buf          // [E ; F]           n × 2d
    let inp: Buf         // fc output         n × d
    let q: Buf           // rotated queries   n × H·hd
    let kAll, vAll: Buf  // prior + own keys/values (rotated), (nPrior + n) × Hkv·hd
    let probs: Buf       // H × n × (nPrior + n)
    let att: Buf         // attention output  n × H·hd
    let r1: Buf          // inp + o           n × d
    let n2: Buf, rstd2: Buf
    let g: Buf, u: Buf, hh: Buf
    let r2: Buf
    let fhat: Buf, rstdF: Buf

    var attention: Attention { Attention(heads: c.heads, kvHeads: c.kvHeads, headDim: c.headDim) }
    var rope: RoPE { RoPE(headDim: c.headDim, ropeDim: c.headDim, base: c.ropeBase, scale: 1) }

    /// `e`, `f`: n × d each. `prior`: nPrior rows of rotated keys and values.
    init(config: DraftConfig, weights w: WeightPointers, e: UnsafePointer<Float>, f: UnsafePointer<Float>, n: Int,
         positions: [Int], prior: (k: UnsafePointer<Float>, v: UnsafePointer<Float>, count: Int)?, visible: Visibility) {
        c = config
        self.n = n; nPrior = prior?.count ?? 0
        self.positions = positions; self.visible = visible
        let d = c.width, qw = c.heads * c.headDim, kvw = c.kvHeads * c.headDim, ff = c.ffn
        let nk = nPrior + n
        x0 = Buf(n * 2 * d); inp = Buf(n * d); q = Buf(n * qw); kAll = Buf(nk * kvw); vAll = Buf(nk * kvw)
        probs = Buf(c.heads * n * nk); att = Buf(n * qw); r1 = Buf(n * d); n2 = Buf(n * d); rstd2 = Buf(n)
        g = Buf(n * ff); u = Buf(n * ff); hh = Buf(n * ff); r2 = Buf(n * d); fhat = Buf(n * d); rstdF = Buf(n)

        for t in 0..<n {
            (x0.p + t * 2 * d).update(from: e + t * d, count: d)
            (x0.p + t * 2 * d + d).update(from: f + t * d, count: d)
        }
        Linear.forward(x0.p, w.fc, n: n, inDim: 2 * d, outDim: d, into: inp.p)
        if let pr = prior {
            kAll.p.update(from: pr.k, count: pr.count * kvw)
            vAll.p.update(from: pr.v, count: pr.count * kvw)
        }
        let kOwn = kAll.p + nPrior * kvw, vOwn = vAll.p + nPrior * kvw
        Linear.forward(inp.p, w.wq, n: n, inDim: d, outDim: qw, into: q.p)
        Linear.forward(inp.p, w.wk, n: n, inDim: d, outDim: kvw, into: kOwn)
        Linear.forward(inp.p, w.wv, n: n, inDim: d, outDim: kvw, into: vOwn)
        rope.apply(q.p, n: n, heads: c.heads, positions: positions)
        rope.apply(kOwn, n: n, heads: c.kvHeads, positions: positions)
        attention.forward(q: q.p, k: kAll.p, v: vAll.p, nq: n, nk: nk, visible: visible, out: att.p, probs: probs.p)
        Linear.forward(att.p, w.wo, n: n, inDim: qw, outDim: d, into: r1.p)
        for i in 0..<(n * d) { r1.p[i] += inp.p[i] }
        RMSNorm.forward(r1.p, weight: w.postNorm, n: n, d: d, eps: c.rmsEps, into: n2.p, rstd: rstd2.p)
        Linear.forward(n2.p, w.gate, n: n, inDim: d, outDim: ff, into: g.p)
        Linear.forward(n2.p, w.up, n: n, inDim: d, outDim: ff, into: u.p)
        SwiGLU.forward(gate: g.p, up: u.p, count: n * ff, into: hh.p)
        Linear.forward(hh.p, w.down, n: n, inDim: ff, outDim: d, into: r2.p)
        for i in 0..<(n * d) { r2.p[i] += r1.p[i] }
        RMSNorm.forward(r2.p, weight: w.norm, n: n, d: d, eps: c.rmsEps, into: fhat.p, rstd: rstdF.p)
    }

    /// Own rotated keys/values (n rows), for later passes to attend to.
    var ownK: UnsafePointer<Float> { UnsafePointer(kAll.p + nPrior * c.kvHeads * c.headDim) }
    var ownV: UnsafePointer<Float> { UnsafePointer(vAll.p + nPrior * c.kvHeads * c.headDim) }

    /// Backward from `dFhat` (n × d). Writes dE and dF (n × d, overwritten); `dOwnKV` (n rows
    /// each) holds gradient already flowing into this pass's own keys/values from later passes
    /// (rotated space); `dPrior` receives the prior keys'/values' gradient (accumulated).
    func backward(weights w: WeightPointers, grads gr: DraftGrads, dFhat: UnsafePointer<Float>,
                  dOwnKV: (k: UnsafePointer<Float>, v: UnsafePointer<Float>)?,
                  dPrior: (k: UnsafeMutablePointer<Float>, v: UnsafeMutablePointer<Float>)?,
                  dE: UnsafeMutablePointer<Float>, dF: UnsafeMutablePointer<Float>) {
        let d = c.width, qw = c.heads * c.headDim, kvw = c.kvHeads * c.headDim, ff = c.ffn
        let nk = nPrior + n
        let dr2 = Buf(n * d)
        RMSNorm.backward(dy: dFhat, x: r2.p, weight: w.norm, rstd: rstdF.p, n: n, d: d, dx: dr2.p, dw: nil)
        // r2 = r1 + down(hh)
        let dr1 = Buf(dr2.array)
        let dhh = Buf(n * ff)
        Linear.backward(dy: dr2.p, x: hh.p, w: w.down, n: n, inDim: ff, outDim: d, dx: dhh.p, dw: gr.down)
        let dg = Buf(n * ff), du = Buf(n * ff)
        SwiGLU.backward(dh: dhh.p, gate: g.p, up: u.p, count: n * ff, dg: dg.p, du: du.p)
        let dn2 = Buf(n * d)
        Linear.backward(dy: dg.p, x: n2.p, w: w.gate, n: n, inDim: d, outDim: ff, dx: dn2.p, dw: gr.gate)
        Linear.backward(dy: du.p, x: n2.p, w: w.up, n: n, inDim: d, outDim: ff, dx: dn2.p, dw: gr.up)
        RMSNorm.backward(dy: dn2.p, x: r1.p, weight: w.postNorm, rstd: rstd2.p, n: n, d: d, dx: dr1.p, dw: gr.postNorm)
        // r1 = inp + o,  o = att Woᵀ
        let dinp = Buf(dr1.array)
        let datt = Buf(n * qw)
        Linear.backward(dy: dr1.p, x: att.p, w: w.wo, n: n, inDim: qw, outDim: d, dx: datt.p, dw: gr.wo)
        let dq = Buf(n * qw), dk = Buf(nk * kvw), dv = Buf(nk * kvw)
        if let o = dOwnKV {
            (dk.p + nPrior * kvw).update(from: o.k, count: n * kvw)
            (dv.p + nPrior * kvw).update(from: o.v, count: n * kvw)
        }
        attention.backward(dOut: datt.p, q: q.p, k: kAll.p, v: vAll.p, probs: probs.p, nq: n, nk: nk, dq: dq.p, dk: dk.p, dv: dv.p)
        if let dp = dPrior {
            for i in 0..<(nPrior * kvw) { dp.k[i] += dk.p[i]; dp.v[i] += dv.p[i] }
        }
        let dkOwn = dk.p + nPrior * kvw, dvOwn = dv.p + nPrior * kvw
        rope.apply(dq.p, n: n, heads: c.heads, positions: positions, inverse: true)
        rope.apply(dkOwn, n: n, heads: c.kvHeads, positions: positions, inverse: true)
        Linear.backward(dy: dq.p, x: inp.p, w: w.wq, n: n, inDim: d, outDim: qw, dx: dinp.p, dw: gr.wq)
        Linear.backward(dy: dkOwn, x: inp.p, w: w.wk, n: n, inDim: d, outDim: kvw, dx: dinp.p, dw: gr.wk)
        Linear.backward(dy: dvOwn, x: inp.p, w: w.wv, n: n, inDim: d, outDim: kvw, dx: dinp.p, dw: gr.wv)
        let dx0 = Buf(n * 2 * d)
        Linear.backward(dy: dinp.p, x: x0.p, w: w.fc, n: n, inDim: 2 * d, outDim: d, dx: dx0.p, dw: gr.fc)
        for t in 0..<n {
            dE.advanced(by: t * d).update(from: dx0.p + t * 2 * d, count: d)
            dF.advanced(by: t * d).update(from: dx0.p + t * 2 * d + d, count: d)
        }
    }
}
