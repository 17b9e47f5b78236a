import Draft
import Foundation

/// One application of the EAGLE-3 draft layer (docs/draft-design.md, "EAGLE-3") over `n` rows,
/// each an input embedding `e` and a state `g` (the fused aux states `fc(aux)` of an entry, or a
/// parent's pre-norm output), exactly as `EagleDraft`'s forward:
///
///     a  = [rms(e)·input_layernorm ; rms(g)·hidden_norm]        (2d)
///     r1 = g + Wo · attention(RoPE(Wq a), RoPE(Wk a), Wv a)
///     s  = r1 + down(silu(gate(n2)) ∘ up(n2)),  n2 = rms(r1)·post_attention_layernorm
///     out = rms(s)·norm                                       (the head's input)
///
/// `s` is the state a child row reads as its `g`. Optional earlier keys/values (`prior`, already
/// rotated) that the rows may attend to make the training-time-test steps and chain drafting.
/// Keeps every activation the backward pass needs.
final class Eagle3Pass {
    let c: DraftConfig
    let n: Int, nPrior: Int
    let positions: [Int]
    let visible: Visibility
    let e: Buf, g: Buf        // inputs, n × d each
    let rstdE: Buf, rstdG: Buf
    let a: Buf                // [norm(e) ; norm(g)]    n × 2d
    let q: Buf                // rotated queries        n × H·hd
    let kAll, vAll: Buf       // prior + own keys/values (rotated), (nPrior + n) × Hkv·hd
    let probs: Buf            // H × n × (nPrior + n)
    let att: Buf              // attention output       n × H·hd
    let r1: Buf               // g + o                  n × d
    let n2: Buf, rstd2: Buf
    let gt: Buf, u: Buf, hh: Buf
    let s: Buf                // pre-norm output        n × d
    let out: Buf, rstdF: Buf  // normed output          n × d

    var attention: Attention { Attention(heads: c.heads, kvHeads: c.kvHeads, headDim: c.headDim) }
    var rope: RoPE { RoPE(headDim: c.headDim, ropeDim: c.headDim, base: c.ropeBase, scale: 1) }

    init(config: DraftConfig, weights w: WeightPointers, e ep: UnsafePointer<Float>, g gp: UnsafePointer<Float>, n: Int,
         positions: [Int], prior: (k: UnsafePointer<Float>, v: UnsafePointer<Float>, count: Int)?, visible: Visibility) {
        c = config
        self.n = n; nPrior = prior?.count ?? 0
        self.positions = positions; self.visible = visible
        let d = c.width, qw = c.heads * c.headDim, kvw = c.kvHeads * c.headDim, ff = c.ffn
        let nk = nPrior + n
        e = Buf(n * d); g = Buf(n * d); rstdE = Buf(n); rstdG = Buf(n); a = Buf(n * 2 * d)
        q = Buf(n * qw); kAll = Buf(nk * kvw); vAll = Buf(nk * kvw); probs = Buf(c.heads * n * nk); att = Buf(n * qw)
        r1 = Buf(n * d); n2 = Buf(n * d); rstd2 = Buf(n); gt = Buf(n * ff); u = Buf(n * ff); hh = Buf(n * ff)
        s = Buf(n * d); out = Buf(n * d); rstdF = Buf(n)

        e.p.update(from: ep, count: n * d)
        g.p.update(from: gp, count: n * d)
        let en = Buf(n * d), gn = Buf(n * d)
        RMSNorm.forward(e.p, weight: w.inputNorm!, n: n, d: d, eps: c.rmsEps, into: en.p, rstd: rstdE.p)
        RMSNorm.forward(g.p, weight: w.hiddenNorm!, n: n, d: d, eps: c.rmsEps, into: gn.p, rstd: rstdG.p)
        for t in 0..<n {
            (a.p + t * 2 * d).update(from: en.p + t * d, count: d)
            (a.p + t * 2 * d + d).update(from: gn.p + t * d, count: d)
        }
        if let pr = prior {
            kAll.p.update(from: pr.k, count: pr.count * kvw)
            vAll.p.update(from: pr.v, count: pr.count * kvw)
        }
        let kOwn = kAll.p + nPrior * kvw, vOwn = vAll.p + nPrior * kvw
        Linear.forward(a.p, w.wq, n: n, inDim: 2 * d, outDim: qw, into: q.p)
        Linear.forward(a.p, w.wk, n: n, inDim: 2 * d, outDim: kvw, into: kOwn)
        Linear.forward(a.p, w.wv, n: n, inDim: 2 * d, outDim: kvw, into: vOwn)
        rope.apply(q.p, n: n, heads: c.heads, positions: positions)
        rope.apply(kOwn, n: n, heads: c.kvHeads, positions: positions)
        attention.forward(q: q.p, k: kAll.p, v: vAll.p, nq: n, nk: nk, visible: visible, out: att.p, probs: probs.p)
        Linear.forward(att.p, w.wo, n: n, inDim: qw, outDim: d, into: r1.p)
        for i in 0..<(n * d) { r1.p[i] += g.p[i] }
        RMSNorm.forward(r1.p, weight: w.postNorm, n: n, d: d, eps: c.rmsEps, into: n2.p, rstd: rstd2.p)
        Linear.forward(n2.p, w.gate, n: n, inDim: d, outDim: ff, into: gt.p)
        Linear.forward(n2.p, w.up, n: n, inDim: d, outDim: ff, into: u.p)
        SwiGLU.forward(gate: gt.p, up: u.p, count: n * ff, into: hh.p)
        Linear.forward(hh.p, w.down, n: n, inDim: ff, outDim: d, into: s.p)
        for i in 0..<(n * d) { s.p[i] += r1.p[i] }
        RMSNorm.forward(s.p, weight: w.norm, n: n, d: d, eps: c.rmsEps, into: out.p, rstd: rstdF.p)
    }

    /// Own rotated keys/values (n rows), for later passes to attend to.
    var ownK: UnsafePointer<Float> { UnsafePointer(kAll.p + nPrior * c.kvHeads * c.headDim) }
    var ownV: UnsafePointer<Float> { UnsafePointer(vAll.p + nPrior * c.kvHeads * c.headDim) }

    /// Backward from the gradients of the normed output (`dOut`, the head's) and of the pre-norm
    /// state (`dS`, from rows that read it as their g); either may be nil. Writes dG (n × d,
    /// overwritten); `dOwnKV` holds gradient already flowing into this pass's own keys/values
    /// from later passes (rotated space); `dPrior` receives the prior keys'/values' gradient
    /// (accumulated). The embeddings are the frozen target's: no gradient.
    func backward(weights w: WeightPointers, grads gr: DraftGrads, dOut: UnsafePointer<Float>?, dS: UnsafePointer<Float>?,
                  dOwnKV: (k: UnsafePointer<Float>, v: UnsafePointer<Float>)?,
                  dPrior: (k: UnsafeMutablePointer<Float>, v: UnsafeMutablePointer<Float>)?,
                  dG: UnsafeMutablePointer<Float>) {
        let d = c.width, qw = c.heads * c.headDim, kvw = c.kvHeads * c.headDim, ff = c.ffn
        let nk = nPrior + n
        // s = r1 + down(hh);  out = rms(s)·norm
        let ds = Buf(n * d)
        if let x = dS { ds.p.update(from: x, count: n * d) }
        if let x = dOut { RMSNorm.backward(dy: x, x: s.p, weight: w.norm, rstd: rstdF.p, n: n, d: d, dx: ds.p, dw: gr.norm) }
        let dr1 = Buf(ds.array)
        let dhh = Buf(n * ff)
        Linear.backward(dy: ds.p, x: hh.p, w: w.down, n: n, inDim: ff, outDim: d, dx: dhh.p, dw: gr.down)
        let dgt = Buf(n * ff), du = Buf(n * ff)
        SwiGLU.backward(dh: dhh.p, gate: gt.p, up: u.p, count: n * ff, dg: dgt.p, du: du.p)
        let dn2 = Buf(n * d)
        Linear.backward(dy: dgt.p, x: n2.p, w: w.gate, n: n, inDim: d, outDim: ff, dx: dn2.p, dw: gr.gate)
        Linear.backward(dy: du.p, x: n2.p, w: w.up, n: n, inDim: d, outDim: ff, dx: dn2.p, dw: gr.up)
        RMSNorm.backward(dy: dn2.p, x: r1.p, weight: w.postNorm, rstd: rstd2.p, n: n, d: d, dx: dr1.p, dw: gr.postNorm)
        // r1 = g + att Woᵀ: the residual is the raw g.
        dG.update(from: dr1.p, count: n * d)
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
        let da = Buf(n * 2 * d)
        Linear.backward(dy: dq.p, x: a.p, w: w.wq, n: n, inDim: 2 * d, outDim: qw, dx: da.p, dw: gr.wq)
        Linear.backward(dy: dkOwn, x: a.p, w: w.wk, n: n, inDim: 2 * d, outDim: kvw, dx: da.p, dw: gr.wk)
        Linear.backward(dy: dvOwn, x: a.p, w: w.wv, n: n, inDim: 2 * d, outDim: kvw, dx: da.p, dw: gr.wv)
        // a = [rms(e)·wE ; rms(g)·wG]
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

    func tttForward(_ s: DraftSequence, _ w: WeightPointers, steps: Int) -> TTTPasses {
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
        let gr = grads.map { DraftGrads(grads: $0, layout: layout) }
        let ttt = tttForward(s, w, steps: lc.tttSteps ?? 1)
        var dOuts: [Buf] = []
        let ce = LossConfig(l1: 0, rank: 0, reg: 0, ce: lc.ce, selfCorrect: 0)
        for (k, pass) in ttt.passes.enumerated() {
            let m = pass.n
            let rows = (0..<m).filter { s.lossMask[$0 + k] }
            let dOut = Buf(m * d)
            var sub = LossStats()
            let weight = Self.tttWeight(k)
            s.targetHidden.withUnsafeBufferPointer { th in
                headLoss(w: w, gr: gr, fhat: pass.out.p, rows: rows, targetRows: rows.map { $0 + k }, targetHidden: th.baseAddress!,
                         nextToken: s.nextToken, lc: ce, scale: gradScale * weight, dFhat: dOut.p, stats: &sub, second: k > 0)
            }
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
                Linear.forward(pass.out.p, w.head, n: pass.n, inDim: d, outDim: v, into: z.p)
                return z.array
            }
        }
    }

    /// The chain simulation of `chain(_:params:depth:maxStarts:)` for an EAGLE-3 draft: from each
    /// answer position, greedy chain nodes fed the previous node's pre-norm state.
    func chainEagle3(_ s: DraftSequence, params: UnsafePointer<Float>, depth: Int, maxStarts: Int) -> ChainResult {
        var res = ChainResult(depth: depth)
        let c = config, d = c.width, n = s.count, kvw = c.kvHeads * c.headDim
        guard n > 0, depth > 0 else { return res }
        let w = weights(params)
        let first = tttForward(s, w, steps: 1).passes[0]
        for j in 0..<n where s.lossMask[j] && res.starts < maxStarts {
            res.starts += 1
            var acc = 0
            if head.d2t[argmaxRow(w, first.out.p + j * d)] == s.nextToken[j] {
                acc = 1
                var chainK: [Float] = [], chainV: [Float] = []
                var sPrev = Buf(d)
                sPrev.p.update(from: first.s.p + j * d, count: d)
                var at = j
                while acc < depth {
                    let nx = at + 1
                    guard nx < n, s.positions[nx] == s.positions[at] + 1, s.nextToken[nx] >= 0 else { break }
                    let nPrior = j + 1 + chainK.count / kvw
                    let pk = Buf(nPrior * kvw), pv = Buf(nPrior * kvw)
                    pk.p.update(from: first.ownK, count: (j + 1) * kvw); pv.p.update(from: first.ownV, count: (j + 1) * kvw)
                    for i in 0..<chainK.count { pk.p[(j + 1) * kvw + i] = chainK[i]; pv.p[(j + 1) * kvw + i] = chainV[i] }
                    let node = s.inputs.withUnsafeBufferPointer { ip in
                        Eagle3Pass(config: c, weights: w, e: ip.baseAddress! + nx * d, g: sPrev.p, n: 1, positions: [s.positions[nx]],
                                   prior: (UnsafePointer(pk.p), UnsafePointer(pv.p), nPrior), visible: [[0..<(nPrior + 1)]])
                    }
                    guard head.d2t[argmaxRow(w, node.out.p)] == s.nextToken[nx] else { break }
                    acc += 1
                    chainK += UnsafeBufferPointer(start: node.ownK, count: kvw); chainV += UnsafeBufferPointer(start: node.ownV, count: kvw)
                    sPrev = node.s
                    at = nx
                }
            }
            res.accepted += acc
            res.histogram[acc] += 1
        }
        return res
    }
}
