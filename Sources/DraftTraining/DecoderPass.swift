import Draft
import Foundation

/// One application of the draft's decoder over `n` entries whose fused inputs are
/// `fc([E ; F])`, with optional earlier keys/values (`prior`, already rotated) that the entries
/// may also attend to (the self-correction pass and chain drafting see the first pass's entries).
/// The fused input is both the layer's attention input and its residual.
final class DecoderPass {
    let n: Int
    let x0: Buf          // [E ; F]           n × 2d
    let layer: DecoderLayer

    /// `e`, `f`: n × d each. `prior`: nPrior rows of rotated keys and values.
    init(config c: DraftConfig, weights w: DraftWeightViews, e: UnsafePointer<Float>, f: UnsafePointer<Float>, n: Int,
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
    func backward(weights w: DraftWeightViews, grads gr: DraftGradViews, dFhat: UnsafePointer<Float>,
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
