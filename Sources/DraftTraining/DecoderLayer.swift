import Draft
import Foundation
import Kernels

/// Earlier keys and values (already rotated) that a pass's rows may attend to besides their own.
typealias PriorKeys = (k: UnsafePointer<Float>, v: UnsafePointer<Float>, count: Int)

/// The draft's one decoder layer over `n` rows, forward and backward; both passes run it and
/// differ only in what they feed it:
///
///     r1  = residual + Wo · attention(RoPE(Wq a), RoPE(Wk a), Wv a)   (over prior + own keys)
///     s   = r1 + down(silu(gate(n2)) ∘ up(n2)),  n2 = rms(r1)·post_attention_layernorm
///     out = rms(s)·norm
///
/// EAGLE-2 / ViSpec (`DecoderPass`): a = fc([e ; f]) of width d, and the residual is a itself.
/// EAGLE-3 (`Eagle3Pass`): a = [rms(e)·input_layernorm ; rms(g)·hidden_norm] of width 2d, and
/// the residual is the raw state g. Keeps every activation the backward pass needs.
final class DecoderLayer {
    let c: DraftConfig
    let n: Int, nPrior: Int
    let inputWidth: Int
    let positions: [Int]
    let visible: Visibility
    let input: Buf            // a, the attention input    n × inputWidth
    let q: Buf                // rotated queries           n × H·hd
    let kAll, vAll: Buf       // prior + own keys/values (rotated), (nPrior + n) × Hkv·hd
    let probs: Buf            // H × n × (nPrior + n)
    let att: Buf              // attention output          n × H·hd
    let r1: Buf               // residual + o              n × d
    let n2: Buf, rstd2: Buf
    let gate: Buf, up: Buf, hh: Buf
    let s: Buf                // pre-norm output           n × d
    let out: Buf, rstdOut: Buf  // normed output (the head's input)   n × d

    var attention: Attention { Attention(heads: c.heads, kvHeads: c.kvHeads, headDim: c.headDim) }
    var rope: RoPE { c.rope }

    /// `input`: the attention input (n × inputWidth), kept for the backward pass rather than
    /// copied. `residual`: n × d, read during init only.
    init(config: DraftConfig, weights w: DraftWeightViews, input: Buf, inputWidth: Int, residual: UnsafePointer<Float>, n: Int,
         positions: [Int], prior: PriorKeys?, visible: Visibility) {
        c = config
        self.n = n; nPrior = prior?.count ?? 0
        self.inputWidth = inputWidth; self.input = input
        self.positions = positions; self.visible = visible
        let d = c.width, qw = c.heads * c.headDim, kvw = c.kvHeads * c.headDim, ff = c.ffn
        let nk = nPrior + n
        q = Buf(n * qw); kAll = Buf(nk * kvw); vAll = Buf(nk * kvw); probs = Buf(c.heads * n * nk); att = Buf(n * qw)
        r1 = Buf(n * d); n2 = Buf(n * d); rstd2 = Buf(n); gate = Buf(n * ff); up = Buf(n * ff); hh = Buf(n * ff)
        s = Buf(n * d); out = Buf(n * d); rstdOut = Buf(n)

        if let pr = prior {
            kAll.p.update(from: pr.k, count: pr.count * kvw)
            vAll.p.update(from: pr.v, count: pr.count * kvw)
        }
        let kOwn = kAll.p + nPrior * kvw, vOwn = vAll.p + nPrior * kvw
        Linear.forward(input.p, w.wq, n: n, inDim: inputWidth, outDim: qw, into: q.p)
        Linear.forward(input.p, w.wk, n: n, inDim: inputWidth, outDim: kvw, into: kOwn)
        Linear.forward(input.p, w.wv, n: n, inDim: inputWidth, outDim: kvw, into: vOwn)
        rope.apply(q.p, n: n, heads: c.heads, positions: positions)
        rope.apply(kOwn, n: n, heads: c.kvHeads, positions: positions)
        attention.forward(q: q.p, k: kAll.p, v: vAll.p, nq: n, nk: nk, visible: visible, out: att.p, probs: probs.p)
        Linear.forward(att.p, w.wo, n: n, inDim: qw, outDim: d, into: r1.p)
        for i in 0..<(n * d) { r1.p[i] += residual[i] }
        RMSNorm.forward(r1.p, weight: w.postNorm, n: n, d: d, eps: c.rmsEps, into: n2.p, rstd: rstd2.p)
        Linear.forward(n2.p, w.gate, n: n, inDim: d, outDim: ff, into: gate.p)
        Linear.forward(n2.p, w.up, n: n, inDim: d, outDim: ff, into: up.p)
        SwiGLU.forward(gate: gate.p, up: up.p, count: n * ff, into: hh.p)
        Linear.forward(hh.p, w.down, n: n, inDim: ff, outDim: d, into: s.p)
        for i in 0..<(n * d) { s.p[i] += r1.p[i] }
        RMSNorm.forward(s.p, weight: w.norm!, n: n, d: d, eps: c.rmsEps, into: out.p, rstd: rstdOut.p)
    }

    /// Own rotated keys/values (n rows), for later passes to attend to.
    var ownK: UnsafePointer<Float> { UnsafePointer(kAll.p + nPrior * c.kvHeads * c.headDim) }
    var ownV: UnsafePointer<Float> { UnsafePointer(vAll.p + nPrior * c.kvHeads * c.headDim) }

    /// Backward from the gradients of `out` (`dOut`, the head's) and of `s` (`dS`, from rows
    /// that read it as their state); either may be nil. First overwrites `dResidual` (n × d)
    /// with the residual's gradient, then adds the attention input's into `dInput`
    /// (n × inputWidth). They may be the same buffer: where the residual is the attention input
    /// (EAGLE-2), the sum then comes out in the same order of additions as a single gradient.
    /// `dOwnKV` holds gradient already flowing into this layer's own keys/values from later
    /// passes (rotated space); `dPrior` receives the prior keys'/values' gradient (accumulated).
    func backward(weights w: DraftWeightViews, grads gr: DraftGradViews, dOut: UnsafePointer<Float>?, dS: UnsafePointer<Float>?,
                  dOwnKV: (k: UnsafePointer<Float>, v: UnsafePointer<Float>)?,
                  dPrior: (k: UnsafeMutablePointer<Float>, v: UnsafeMutablePointer<Float>)?,
                  dResidual: UnsafeMutablePointer<Float>, dInput: UnsafeMutablePointer<Float>) {
        let d = c.width, qw = c.heads * c.headDim, kvw = c.kvHeads * c.headDim, ff = c.ffn
        let nk = nPrior + n
        // s = r1 + down(hh);  out = rms(s)·norm (gr.norm is nil where the norm is frozen)
        let ds = Buf(n * d)
        if let x = dS { ds.p.update(from: x, count: n * d) }
        if let x = dOut { RMSNorm.backward(dy: x, x: s.p, weight: w.norm!, rstd: rstdOut.p, n: n, d: d, dx: ds.p, dw: gr.norm) }
        let dr1 = Buf(ds.array)
        let dhh = Buf(n * ff)
        Linear.backward(dy: ds.p, x: hh.p, w: w.down, n: n, inDim: ff, outDim: d, dx: dhh.p, dw: gr.down)
        let dgate = Buf(n * ff), dup = Buf(n * ff)
        SwiGLU.backward(dh: dhh.p, gate: gate.p, up: up.p, count: n * ff, dg: dgate.p, du: dup.p)
        let dn2 = Buf(n * d)
        Linear.backward(dy: dgate.p, x: n2.p, w: w.gate, n: n, inDim: d, outDim: ff, dx: dn2.p, dw: gr.gate)
        Linear.backward(dy: dup.p, x: n2.p, w: w.up, n: n, inDim: d, outDim: ff, dx: dn2.p, dw: gr.up)
        RMSNorm.backward(dy: dn2.p, x: r1.p, weight: w.postNorm, rstd: rstd2.p, n: n, d: d, dx: dr1.p, dw: gr.postNorm)
        // r1 = residual + att Woᵀ
        dResidual.update(from: dr1.p, count: n * d)
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
        Linear.backward(dy: dq.p, x: input.p, w: w.wq, n: n, inDim: inputWidth, outDim: qw, dx: dInput, dw: gr.wq)
        Linear.backward(dy: dkOwn, x: input.p, w: w.wk, n: n, inDim: inputWidth, outDim: kvw, dx: dInput, dw: gr.wk)
        Linear.backward(dy: dvOwn, x: input.p, w: w.wv, n: n, inDim: inputWidth, outDim: kvw, dx: dInput, dw: gr.wv)
    }
}
