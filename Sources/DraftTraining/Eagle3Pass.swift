import Draft
import Foundation

/// One application of the EAGLE-3 draft layer (docs/draft-design.md, "EAGLE-3") over `n` rows,
/// each an input embedding `e` and a state `g` (the fused aux states `fc(aux)` of an entry, or a
/// parent's pre-norm output), exactly as `EagleDraft`'s forward: `DecoderLayer` with
///
///     a = [rms(e)·input_layernorm ; rms(g)·hidden_norm]   (2d)  as the attention input,
///     g                                                         as the residual.
///
/// The layer's pre-norm output `s` is the state a child row reads as its `g`. Optional earlier
/// keys/values (`prior`, already rotated) that the rows may attend to make the
/// training-time-test steps and chain drafting.
final class Eagle3Pass {
    let n: Int
    let e: Buf, g: Buf        // inputs, n × d each
    let rstdE: Buf, rstdG: Buf
    let layer: DecoderLayer

    init(config c: DraftConfig, weights w: DraftWeightViews, e ep: UnsafePointer<Float>, g gp: UnsafePointer<Float>, n: Int,
         positions: [Int], prior: PriorKeys?, visible: Visibility) {
        self.n = n
        let d = c.width
        e = Buf(n * d); g = Buf(n * d); rstdE = Buf(n); rstdG = Buf(n)
        e.p.update(from: ep, count: n * d)
        g.p.update(from: gp, count: n * d)
        let en = Buf(n * d), gn = Buf(n * d)
        RMSNorm.forward(e.p, weight: w.inputNorm!, n: n, d: d, eps: c.rmsEps, into: en.p, rstd: rstdE.p)
        RMSNorm.forward(g.p, weight: w.hiddenNorm!, n: n, d: d, eps: c.rmsEps, into: gn.p, rstd: rstdG.p)
        let a = Buf(n * 2 * d)
        for t in 0..<n {
            (a.p + t * 2 * d).update(from: en.p + t * d, count: d)
            (a.p + t * 2 * d + d).update(from: gn.p + t * d, count: d)
        }
        layer = DecoderLayer(config: c, weights: w, input: a, inputWidth: 2 * d, residual: g.p, n: n,
                             positions: positions, prior: prior, visible: visible)
    }

    /// The normed output (the head's input) and the pre-norm state children read, n × d each.
    var out: Buf { layer.out }
    var s: Buf { layer.s }
    var ownK: UnsafePointer<Float> { layer.ownK }
    var ownV: UnsafePointer<Float> { layer.ownV }

    /// Backward from the gradients of the normed output (`dOut`, the head's) and of the pre-norm
    /// state (`dS`, from rows that read it as their g); either may be nil. Writes dG (n × d,
    /// overwritten); `dOwnKV` holds gradient already flowing into this pass's own keys/values
    /// from later passes (rotated space); `dPrior` receives the prior keys'/values' gradient
    /// (accumulated). The embeddings are the frozen target's: no gradient.
    func backward(weights w: DraftWeightViews, grads gr: DraftGradViews, dOut: UnsafePointer<Float>?, dS: UnsafePointer<Float>?,
                  dOwnKV: (k: UnsafePointer<Float>, v: UnsafePointer<Float>)?,
                  dPrior: (k: UnsafeMutablePointer<Float>, v: UnsafeMutablePointer<Float>)?,
                  dG: UnsafeMutablePointer<Float>) {
        let d = layer.c.width
        let da = Buf(n * 2 * d)
        layer.backward(weights: w, grads: gr, dOut: dOut, dS: dS, dOwnKV: dOwnKV, dPrior: dPrior, dResidual: dG, dInput: da.p)
        // a = [rms(e)·wE ; rms(g)·wG]: g's norm adds to the residual's gradient already in dG.
        let den = Buf(n * d), dgn = Buf(n * d), deScratch = Buf(n * d)
        for t in 0..<n {
            (den.p + t * d).update(from: da.p + t * 2 * d, count: d)
            (dgn.p + t * d).update(from: da.p + t * 2 * d + d, count: d)
        }
        RMSNorm.backward(dy: den.p, x: e.p, weight: w.inputNorm!, rstd: rstdE.p, n: n, d: d, dx: deScratch.p, dw: gr.inputNorm)
        RMSNorm.backward(dy: dgn.p, x: g.p, weight: w.hiddenNorm!, rstd: rstdG.p, n: n, d: d, dx: dG, dw: gr.hiddenNorm)
    }
}

/// Per-step numbers of EAGLE-3's training-time test (step 0: the entries on the target's states).
public struct StepStats: Sendable, Equatable {
    public var rows: [Int] = []
    public var correct: [Int] = []
    public init() {}
    mutating func add(step k: Int, rows r: Int, correct c: Int) {
        while rows.count <= k { rows.append(0); correct.append(0) }
        rows[k] += r; correct[k] += c
    }
    public static func += (a: inout StepStats, b: StepStats) {
        for k in 0..<b.rows.count { a.add(step: k, rows: b.rows[k], correct: b.correct[k]) }
    }
    /// Top-1 agreement of step k (nil without loss rows there).
    public func top1(_ k: Int) -> Double? { k < rows.count && rows[k] > 0 ? Double(correct[k]) / Double(rows[k]) : nil }
}

extension DraftModel {
    /// Weight of step k's loss (EAGLE-3's 0.8^k).
    static func tttWeight(_ k: Int) -> Float { powf(0.8, Float(k)) }

    /// The unrolled training-time test over one sequence: step 0 runs every entry causally from
    /// g = fc(aux); step k (1 ..< K) puts at entry j the token of entry j + k with g = step
    /// k − 1's pre-norm output at j, at position t_j + k, seeing step 0's keys of entries 0...j
    /// and steps 1...k's keys at j: the chain an inference draft builds from root j.
    struct TTTPasses {
        let g0: Buf
        let passes: [Eagle3Pass]
        /// Offset (in key rows) of each step's keys in the concatenation of all steps' keys.
        let offsets: [Int]
    }

    func tttForward(_ s: DraftSequence, _ w: DraftWeightViews, steps: Int) -> TTTPasses {
        let c = config, d = c.width, n = s.count, fw = c.featureWidth, kvw = c.kvHeads * c.headDim
        precondition(s.auxFeatures.count == n * fw, "an EAGLE-3 sequence needs the aux layers' states (n × \(fw))")
        let g0 = Buf(n * d)
        s.auxFeatures.withUnsafeBufferPointer { Linear.forward($0.baseAddress!, w.fc, n: n, inDim: fw, outDim: d, into: g0.p) }
        var passes: [Eagle3Pass] = [], offsets: [Int] = []
        var allK: [Float] = [], allV: [Float] = []
        for k in 0..<max(steps, 1) {
            let m = n - k
            guard m > 0 else { break }
            let off = allK.count / kvw
            let vis: Visibility = k == 0 ? Visible.causal(n) : (0..<m).map { j in
                [0..<(j + 1)] + (1..<k).map { i in (offsets[i] + j)..<(offsets[i] + j + 1) } + [(off + j)..<(off + j + 1)]
            }
            let gIn = k == 0 ? g0.p : passes[k - 1].s.p
            let pass = s.inputs.withUnsafeBufferPointer { ip in
                allK.withUnsafeBufferPointer { kp in
                    allV.withUnsafeBufferPointer { vp in
                        Eagle3Pass(config: c, weights: w, e: ip.baseAddress! + k * d, g: gIn, n: m,
                                   positions: (0..<m).map { s.positions[$0] + k },
                                   prior: k == 0 ? nil : (kp.baseAddress!, vp.baseAddress!, off), visible: vis)
                    }
                }
            }
            offsets.append(off)
            allK += UnsafeBufferPointer(start: pass.ownK, count: m * kvw)
            allV += UnsafeBufferPointer(start: pass.ownV, count: m * kvw)
            passes.append(pass)
        }
        return TTTPasses(g0: g0, passes: passes, offsets: offsets)
    }

    /// EAGLE-3 training: Σ_k 0.8^k · cross-entropy of step k to the target's distribution at
    /// the matching position, where the token after it is an answer token; backward through the
    /// chain of states and every key/value.
    func runEagle3(_ s: DraftSequence, params: UnsafePointer<Float>, grads: UnsafeMutablePointer<Float>?, loss lc: LossConfig,
                   gradScale: Float) -> LossStats {
        let c = config, d = c.width, n = s.count, kvw = c.kvHeads * c.headDim
        var stats = LossStats()
        stats.tokens = n
        guard n > 0 else { return stats }
        let w = weights(params)
        let gr = grads.map { DraftGradViews(grads: $0, layout: layout) }
        let ttt = tttForward(s, w, steps: lc.tttSteps ?? 1)
        var dOuts: [Buf] = []
        let targets = TargetDistributions(head: head, targetHidden: s.targetHidden, count: s.count)
        let ce = LossConfig(l1: 0, rank: 0, reg: 0, ce: lc.ce, selfCorrect: 0)
        for (k, pass) in ttt.passes.enumerated() {
            let m = pass.n
            let rows = (0..<m).filter { s.lossMask[$0 + k] }
            let dOut = Buf(m * d)
            var sub = LossStats()
            let weight = Self.tttWeight(k)
            headLoss(w: w, gr: gr, fhat: pass.out.p, rows: rows, targetRows: rows.map { $0 + k }, targets: targets,
                     nextToken: s.nextToken, lc: ce, scale: gradScale * weight, dFhat: dOut.p, stats: &sub, second: k > 0)
            stats.loss += Double(weight) * sub.loss
            stats.ce += Double(weight) * sub.ce
            if k == 0 {
                stats.rows = sub.rows; stats.correct = sub.correct
                stats.steps.add(step: 0, rows: sub.rows, correct: sub.correct)
            } else {
                if k == 1 { stats.rows2 = sub.rows2; stats.correct2 = sub.correct2 }
                stats.steps.add(step: k, rows: sub.rows2, correct: sub.correct2)
            }
            dOuts.append(dOut)
        }

        guard let g = gr else { return stats }
        let totalKeys = (ttt.offsets.last ?? 0) + (ttt.passes.last?.n ?? 0)
        let dK = Buf(totalKeys * kvw), dV = Buf(totalKeys * kvw)
        var dS: Buf? = nil   // gradient into step k's pre-norm state from step k + 1
        for k in stride(from: ttt.passes.count - 1, through: 0, by: -1) {
            let pass = ttt.passes[k], m = pass.n, off = ttt.offsets[k]
            let dG = Buf(m * d)
            pass.backward(weights: w, grads: g, dOut: dOuts[k].p, dS: dS.map { UnsafePointer($0.p) },
                          dOwnKV: (UnsafePointer(dK.p + off * kvw), UnsafePointer(dV.p + off * kvw)),
                          dPrior: k == 0 ? nil : (dK.p, dV.p), dG: dG.p)
            if k > 0 {
                // Step k's row j read step k − 1's row j (which has one row more).
                let next = Buf(ttt.passes[k - 1].n * d)
                next.p.update(from: dG.p, count: m * d)
                dS = next
            } else {
                s.auxFeatures.withUnsafeBufferPointer { ap in
                    Linear.backward(dy: dG.p, x: ap.baseAddress!, w: w.fc, n: n, inDim: c.featureWidth, outDim: d, dx: nil, dw: g.fc)
                }
            }
        }
        return stats
    }

    /// The draft's logits of each training-time-test step (step k: (n − k) × V, row j = the
    /// chain node k steps after root entry j), no losses: for checking against `EagleDraft`.
    public func tttLogits(_ s: DraftSequence, params: [Float], steps: Int) -> [[Float]] {
        let v = config.vocab, d = config.width
        return params.withUnsafeBufferPointer { pp -> [[Float]] in
            let w = weights(pp.baseAddress!)
            return tttForward(s, w, steps: steps).passes.map { pass in
                let z = Buf(pass.n * v)
                Linear.forward(pass.out.p, w.head!, n: pass.n, inDim: d, outDim: v, into: z.p)
                return z.array
            }
        }
    }
}
