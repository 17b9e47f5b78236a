import Draft
import Foundation

/// Tensor names come from the one table (`DraftConfig.tensors`, `DraftWeights.Name`).
private typealias N = DraftWeights.Name

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
        func at(_ n: String) -> UnsafePointer<Float> { p + layout.offset(N.of(n, layout.config)) }
        func opt(_ n: String) -> UnsafePointer<Float>? { layout.slot(n).map { p + $0.offset } }
        inputNorm = opt(N.inputNorm); hiddenNorm = opt(N.hiddenNorm)
        fc = at(N.fc); wq = at(N.q); wk = at(N.k)
        wv = at(N.v); wo = at(N.o)
        postNorm = at(N.postNorm)
        gate = at(N.gate); up = at(N.up); down = at(N.down)
        norm = at(N.norm)
        head = opt(N.lmHead) ?? tiedHead!
        queries = opt(N.queries); aq = opt(N.aq); ak = opt(N.ak)
        av = opt(N.av); ao = opt(N.ao); imgFc = opt(N.imgFc)
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
        func at(_ n: String) -> UnsafeMutablePointer<Float> { g + layout.offset(N.of(n, layout.config)) }
        func opt(_ n: String) -> UnsafeMutablePointer<Float>? { layout.slot(n).map { g + $0.offset } }
        norm = layout.slot(N.norm).flatMap { $0.trainable ? g + $0.offset : nil }
        inputNorm = opt(N.inputNorm); hiddenNorm = opt(N.hiddenNorm)
        fc = at(N.fc); wq = at(N.q); wk = at(N.k)
        wv = at(N.v); wo = at(N.o)
        postNorm = at(N.postNorm)
        gate = at(N.gate); up = at(N.up); down = at(N.down)
        head = opt(N.lmHead)
        queries = opt(N.queries); aq = opt(N.aq); ak = opt(N.ak)
        av = opt(N.av); ao = opt(N.ao); imgFc = opt(N.imgFc)
    }
}

/// One application of the draft's decoder over `n` entries whose fused inputs are
/// `fc([E ; F])`, with optional earlier keys/values (`prior`, already rotated) that the entries
/// may also attend to (the self-correction pass and chain drafting see the first pass's entries).
/// The fused input is both the layer's attention input and its residual.
final class DecoderPass {
    let n: Int
    let x0: Buf          // [E ; F]           n × 2d
    let layer: DecoderLayer

    /// `e`, `f`: n × d each. `prior`: nPrior rows of rotated keys and values.
    init(config c: DraftConfig, weights w: WeightPointers, e: UnsafePointer<Float>, f: UnsafePointer<Float>, n: Int,
         positions: [Int], prior: PriorKeys?, visible: Visibility) {
        self.n = n
        let d = c.width
        x0 = Buf(n * 2 * d)
        for t in 0..<n {
            (x0.p + t * 2 * d).update(from: e + t * d, count: d)
            (x0.p + t * 2 * d + d).update(from: f + t * d, count: d)
        }
        let inp = Buf(n * d)
        Linear.forward(x0.p, w.fc, n: n, inDim: 2 * d, outDim: d, into: inp.p)
        layer = DecoderLayer(config: c, weights: w, input: inp, inputWidth: d, residual: inp.p, n: n,
                             positions: positions, prior: prior, visible: visible)
    }

    /// The normed output f̂ (n × d), the head's input and the next chain node's feature.
    var fhat: Buf { layer.out }
    var ownK: UnsafePointer<Float> { layer.ownK }
    var ownV: UnsafePointer<Float> { layer.ownV }

    /// Backward from `dFhat` (n × d). Writes dE and dF (n × d, overwritten); `dOwnKV` (n rows
    /// each) holds gradient already flowing into this pass's own keys/values from later passes
    /// (rotated space); `dPrior` receives the prior keys'/values' gradient (accumulated).
    func backward(weights w: WeightPointers, grads gr: DraftGrads, dFhat: UnsafePointer<Float>,
                  dOwnKV: (k: UnsafePointer<Float>, v: UnsafePointer<Float>)?,
                  dPrior: (k: UnsafeMutablePointer<Float>, v: UnsafeMutablePointer<Float>)?,
                  dE: UnsafeMutablePointer<Float>, dF: UnsafeMutablePointer<Float>) {
        let d = layer.c.width
        // One buffer for both routes into fc's output: the residual's and the attention input's.
        let dinp = Buf(n * d)
        layer.backward(weights: w, grads: gr, dOut: dFhat, dS: nil, dOwnKV: dOwnKV, dPrior: dPrior, dResidual: dinp.p, dInput: dinp.p)
        let dx0 = Buf(n * 2 * d)
        Linear.backward(dy: dinp.p, x: x0.p, w: w.fc, n: n, inDim: 2 * d, outDim: d, dx: dx0.p, dw: gr.fc)
        for t in 0..<n {
            dE.advanced(by: t * d).update(from: dx0.p + t * 2 * d, count: d)
            dF.advanced(by: t * d).update(from: dx0.p + t * 2 * d + d, count: d)
        }
    }
}
