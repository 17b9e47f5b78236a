import Draft
import COpenBLAS
import Foundation
import Kernels

/// One training sequence in the draft's own indexing (docs/draft-design.md): entry j stands for a
/// target position t whose next input exists; dropped image entries are already gone.
public struct DraftSequence: Sendable {
    public var count: Int
    /// RoPE position of each entry (its target position t).
    public var positions: [Int]
    /// e_{t+1} (n × d): the next token's embedding; ignored where `compImage` ≥ 0.
    public var inputs: [Float]
    /// Entries whose input is compressed token `compRow` of image `compImage` (−1: text).
    public var compImage: [Int]
    public var compRow: [Int]
    /// f_t before img_fc: the target's hidden state h_t (n × d), with the training noise added.
    public var features: [Float]
    /// Image whose global feature enters f_t through img_fc (−1: none, the plain EAGLE feature).
    public var globalOf: [Int]
    /// Image embeddings, one (rows × d) array per image span in order.
    public var images: [[Float]]
    public var imageRows: [Int]
    /// h_{t+1} (n × d): the regression target and, through the target's head, the distribution.
    public var targetHidden: [Float]
    /// x_{t+2} (−1 past the end).
    public var nextToken: [Int32]
    /// Loss at this entry: x_{t+2} is an answer token.
    public var lossMask: [Bool]
    /// EAGLE-3: the aux layers' states at t side by side (n × layers·d), with the training
    /// noise added; empty for the other archs.
    public var auxFeatures: [Float] = []

    public var lossCount: Int { lossMask.reduce(0) { $0 + ($1 ? 1 : 0) } }
}

/// The target's head restricted to the draft's vocabulary: row i is the target's output row
/// `d2t[i]`, dequantized once. This is V × d floats (18.9 MB for V = 8192, d = 576), not a copy
/// of the target model; the training targets softmax(head(h_{t+1})) come from it.
public final class TargetHead: @unchecked Sendable {
    public let rows: Int
    public let width: Int
    let weights: Buf
    public let d2t: [Int32]

    public init(rows: Int, width: Int, weights: [Float], d2t: [Int32]) {
        precondition(weights.count == rows * width && d2t.count == rows)
        self.rows = rows; self.width = width; self.weights = Buf(weights); self.d2t = d2t
    }
    public var values: [Float] { weights.array }
}

/// Weights of the loss terms (`--loss vispec|eagle`, `--loss-weights`).
public struct LossConfig: Codable, Equatable, Sendable {
    /// ViSpec: Σ|q − p| over the draft vocabulary.
    public var l1: Float
    /// ViSpec: Plackett–Luce NLL of the target's top-`rankK` ranking.
    public var rank: Float
    /// EAGLE: SmoothL1 of f̂_{t+1} against h_{t+1} (mean over d).
    public var reg: Float
    /// EAGLE: cross-entropy to the target's distribution.
    public var ce: Float
    /// Weight of the self-fed steps relative to the first (0: none): step k ≥ 1 weighs
    /// `selfCorrect · 0.8^(k−1)` (`selfFedWeight`); with K = 2 that one step is the former
    /// self-correction pass, hence the name (`sc` in `--loss-weights`).
    public var selfCorrect: Float
    public var rankK: Int = 10
    /// The training-time-test steps K: the first pass on the target's features, then K − 1 steps
    /// each fed the draft's own previous output. EAGLE-3: always set. EAGLE-2/ViSpec: nil means
    /// K = 2 with `selfCorrect` > 0 and 1 without (what runs before `--ttt-steps` applied to these
    /// archs meant), and only K ≥ 3 is stored, so their train_args, and with them checkpoints
    /// and `--resume` checks, are unchanged.
    public var tttSteps: Int? = nil

    public static let vispec = LossConfig(l1: 10, rank: 0.1, reg: 0, ce: 0, selfCorrect: 1)
    public static let eagle = LossConfig(l1: 0, rank: 0, reg: 1, ce: 0.1, selfCorrect: 1)

    /// EAGLE-3: cross-entropy only, over K training-time-test steps.
    public static func eagle3(tttSteps: Int) -> LossConfig {
        var l = LossConfig(l1: 0, rank: 0, reg: 0, ce: 1, selfCorrect: 0)
        l.tttSteps = tttSteps
        return l
    }

    enum CodingKeys: String, CodingKey { case l1, rank, reg, ce, selfCorrect = "self_correct", rankK = "rank_k", tttSteps = "ttt_steps" }

    /// EAGLE-2/ViSpec: K, the unrolled steps `DraftModel.run` trains (see `tttSteps`).
    public var unrolledSteps: Int { selfCorrect > 0 ? max(tttSteps ?? 2, 1) : 1 }

    /// EAGLE-2/ViSpec: the loss weight of self-fed step k ≥ 1. EAGLE-3 weighs step k 0.8^k
    /// against its first; here the first self-fed step keeps the self-correction weight
    /// (`selfCorrect`, 1 by default) and the decay starts after it, so K = 2 trains as before.
    public func selfFedWeight(_ k: Int) -> Float { k == 1 ? selfCorrect : selfCorrect * powf(0.8, Float(k - 1)) }
}

/// Sums over one sequence (or a batch): weighted loss and its parts, and top-1 agreement.
public struct LossStats: Sendable, Equatable {
    public var loss: Double = 0
    public var l1: Double = 0, rank: Double = 0, reg: Double = 0, ce: Double = 0
    /// Loss entries of the first pass, and how many of them the draft's argmax got right.
    public var rows = 0
    public var correct = 0
    /// The same for the first self-fed step (EAGLE-2/ViSpec's self-correction pass).
    public var rows2 = 0
    public var correct2 = 0
    public var tokens = 0
    /// Loss rows and top-1 hits of every unrolled (training-time-test) step, step 0 included.
    public var steps = StepStats()

    public init() {}
    public static func += (a: inout LossStats, b: LossStats) {
        a.loss += b.loss; a.l1 += b.l1; a.rank += b.rank; a.reg += b.reg; a.ce += b.ce
        a.rows += b.rows; a.correct += b.correct; a.rows2 += b.rows2; a.correct2 += b.correct2; a.tokens += b.tokens
        a.steps += b.steps
    }
    public var top1: Double { rows == 0 ? 0 : Double(correct) / Double(rows) }
    /// Mean weighted loss per first-pass loss entry.
    public var meanLoss: Double { rows == 0 ? 0 : loss / Double(rows) }
}

/// The draft's forward and backward over whole sequences (no KV cache), float32.
public struct DraftModel {
    public let layout: DraftParameters
    public let head: TargetHead
    public var config: DraftConfig { layout.config }

    public init(layout: DraftParameters, head: TargetHead) {
        precondition(head.rows == layout.config.vocab && head.width == layout.config.width)
        self.layout = layout; self.head = head
    }

    func weights(_ p: UnsafePointer<Float>) -> DraftWeightViews {
        DraftWeightViews(params: p, layout: layout, tiedHead: config.headTied ? UnsafePointer(head.weights.p) : nil)
    }

    /// The first pass every use of the draft over a whole sequence starts with (training,
    /// chain simulation, logits): the adapter over each image, the entries' inputs (compressed
    /// tokens where the adapter replaces image rows), the target's features through img_fc, and
    /// the decoder over all entries with a causal mask.
    struct FirstPass {
        let adapters: [AdapterPass]
        let inputs: Buf
        let globals: [Int]
        let imgFcInputs: (rows: [Int], x: Buf)
        let pass: DecoderPass
    }

    func firstPass(_ s: DraftSequence, _ w: DraftWeightViews) -> FirstPass {
        let c = config, d = c.width, n = s.count
        let useAdapter = c.numQ > 0 && !s.images.isEmpty
        let adapters: [AdapterPass] = useAdapter ? (0..<s.images.count).map { i in
            s.images[i].withUnsafeBufferPointer { AdapterPass(config: c, weights: w, embeddings: $0.baseAddress!, rows: s.imageRows[i]) }
        } : []
        let e = Buf(n * d)
        for j in 0..<n {
            if s.compImage[j] >= 0, useAdapter {
                (e.p + j * d).update(from: adapters[s.compImage[j]].token(s.compRow[j]), count: d)
            } else {
                for k in 0..<d { e.p[j * d + k] = s.inputs[j * d + k] }
            }
        }
        let globals = useAdapter ? s.globalOf : [Int](repeating: -1, count: n)
        let (f, imgIn) = s.features.withUnsafeBufferPointer { imgFcForward(w: w, base: $0.baseAddress!, globalOf: globals, adapters: adapters, n: n) }
        let pass = DecoderPass(config: c, weights: w, e: e.p, f: f.p, n: n, positions: s.positions, prior: nil, visible: Visible.causal(n))
        return FirstPass(adapters: adapters, inputs: e, globals: globals, imgFcInputs: imgIn, pass: pass)
    }

    /// Forward, losses, and (with `grads`) backward accumulating `gradScale · ∂loss/∂θ`.
    public func run(_ s: DraftSequence, params: [Float], grads: UnsafeMutablePointer<Float>?, loss lc: LossConfig,
                    gradScale: Float = 1) -> LossStats {
        params.withUnsafeBufferPointer { run(s, params: $0.baseAddress!, grads: grads, loss: lc, gradScale: gradScale) }
    }

    public func run(_ s: DraftSequence, params: UnsafePointer<Float>, grads: UnsafeMutablePointer<Float>?, loss lc: LossConfig,
                    gradScale: Float = 1) -> LossStats {
        if config.isEagle3 { return runEagle3(s, params: params, grads: grads, loss: lc, gradScale: gradScale) }
        let c = config, d = c.width, n = s.count
        var stats = LossStats()
        stats.tokens = n
        guard n > 0 else { return stats }
        let w = weights(params)
        let gr = grads.map { DraftGradViews(grads: $0, layout: layout) }

        // Step 0: the target's features.
        let first = firstPass(s, w)
        let adapters = first.adapters, useAdapter = !adapters.isEmpty
        let e1 = first.inputs, globals1 = first.globals, imgIn1 = first.imgFcInputs, pass1 = first.pass
        let rows1 = (0..<n).filter { s.lossMask[$0] }
        let dFhat1 = Buf(n * d)
        let targets = TargetDistributions(head: head, targetHidden: s.targetHidden, count: n)
        headLoss(w: w, gr: gr, fhat: pass1.fhat.p, rows: rows1, targetRows: rows1, targets: targets,
                 nextToken: s.nextToken, lc: lc, scale: gradScale, dFhat: dFhat1.p, stats: &stats, second: false)
        stats.steps.add(step: 0, rows: stats.rows, correct: stats.correct)

        // Self-fed steps k = 1 ..< K (EAGLE-3's training-time test on this draft; K = 2 is the
        // former self-correction pass): row i of step k stands at entry i + k with step k − 1's
        // f̂ at row i as its feature (through img_fc after an image), and sees step 0's entries
        // 0...i, the earlier steps' row i and itself: the depth-(k+1) node of the chain an
        // inference draft grows from entry i, where the draft feeds itself. Keys of all steps sit
        // in one buffer (step 0's n rows, then each step's), as in Eagle3Pass; step k keeps
        // H·(n−k)·(k+1)·n attention probabilities for its backward (dense masked attention), so
        // memory grows as K²·n²: ~0.6 GB for the last step at n = 2048, K = 4; 6 MB at n = 200.
        let kvw = c.kvHeads * c.headDim
        let steps = lc.unrolledSteps
        let stepRows = (1..<max(steps, 1)).map { n - $0 }.filter { $0 > 0 }
        let totalKeys = n + stepRows.reduce(0, +)
        let keysK = Buf(totalKeys * kvw), keysV = Buf(totalKeys * kvw)
        keysK.p.update(from: pass1.ownK, count: n * kvw); keysV.p.update(from: pass1.ownV, count: n * kvw)
        var fed: [SelfFedStep] = []
        for (km1, m) in stepRows.enumerated() {
            let k = km1 + 1
            let off = n + fed.reduce(0) { $0 + $1.pass.n }
            let e = Buf(m * d)
            e.p.update(from: e1.p + k * d, count: m * d)
            let globals = Array(globals1[k...])
            let parent = fed.last?.pass.fhat ?? pass1.fhat
            let (f, imgIn) = imgFcForward(w: w, base: parent.p, globalOf: globals, adapters: adapters, n: m)
            let vis: Visibility = (0..<m).map { i in [0..<(i + 1)] + fed.map { ($0.offset + i)..<($0.offset + i + 1) } + [(off + i)..<(off + i + 1)] }
            let pass = DecoderPass(config: c, weights: w, e: e.p, f: f.p, n: m, positions: Array(s.positions[k...]),
                                   prior: (UnsafePointer(keysK.p), UnsafePointer(keysV.p), off), visible: vis)
            (keysK.p + off * kvw).update(from: pass.ownK, count: m * kvw); (keysV.p + off * kvw).update(from: pass.ownV, count: m * kvw)
            let rows = (0..<m).filter { s.lossMask[$0 + k] }
            let weight = lc.selfFedWeight(k)
            let dFhat = Buf(m * d)
            var sub = LossStats()
            headLoss(w: w, gr: gr, fhat: pass.fhat.p, rows: rows, targetRows: rows.map { $0 + k }, targets: targets,
                     nextToken: s.nextToken, lc: lc, scale: gradScale * weight, dFhat: dFhat.p, stats: &sub, second: true)
            stats.loss += Double(weight) * sub.loss
            if k == 1 { stats.rows2 = sub.rows2; stats.correct2 = sub.correct2 }
            stats.steps.add(step: k, rows: sub.rows2, correct: sub.correct2)
            fed.append(SelfFedStep(pass: pass, offset: off, globals: globals, imgFcInputs: imgIn, dFhat: dFhat))
        }

        guard let g = gr else { return stats }
        let dK = Buf(totalKeys * kvw), dV = Buf(totalKeys * kvw)
        let dE1 = Buf(n * d)
        // Gradient of the adapter outputs, per image: K × d.
        let dOut = adapters.map { _ in Buf(c.numQ * d) }
        // Last step first: each adds into its parent's f̂ gradient and into the keys before it.
        for k in stride(from: fed.count, through: 1, by: -1) {
            let st = fed[k - 1], m = st.pass.n
            let dE = Buf(m * d), dF = Buf(m * d)
            // The last step's keys are seen by no later step.
            let dOwn: (k: UnsafePointer<Float>, v: UnsafePointer<Float>)? =
                k == fed.count ? nil : (UnsafePointer(dK.p + st.offset * kvw), UnsafePointer(dV.p + st.offset * kvw))
            st.pass.backward(weights: w, grads: g, dFhat: st.dFhat.p, dOwnKV: dOwn, dPrior: (dK.p, dV.p), dE: dE.p, dF: dF.p)
            for i in 0..<(m * d) { dE1.p[k * d + i] += dE.p[i] }
            // f_k = f̂_{k−1} or img_fc([f̂_{k−1} ; g]): route into the parent step's output gradient.
            let parent = k == 1 ? dFhat1 : fed[k - 2].dFhat
            imgFcBackward(w: w, gr: g, dF: dF.p, inputs: st.imgFcInputs, globalOf: st.globals, dOut: dOut, n: m, dBase: parent.p)
        }
        let dE1b = Buf(n * d), dF1 = Buf(n * d)
        pass1.backward(weights: w, grads: g, dFhat: dFhat1.p, dOwnKV: (UnsafePointer(dK.p), UnsafePointer(dV.p)), dPrior: nil, dE: dE1b.p, dF: dF1.p)
        for i in 0..<(n * d) { dE1.p[i] += dE1b.p[i] }
        imgFcBackward(w: w, gr: g, dF: dF1.p, inputs: imgIn1, globalOf: globals1, dOut: dOut, n: n, dBase: nil)
        if useAdapter {
            for j in 0..<n where s.compImage[j] >= 0 {
                let o = dOut[s.compImage[j]].p + s.compRow[j] * d
                for k in 0..<d { o[k] += dE1.p[j * d + k] }
            }
            for (i, a) in adapters.enumerated() { a.backward(weights: w, grads: g, dOut: dOut[i].p) }
        }
        return stats
    }

    /// One self-fed step's pass and what its backward needs.
    struct SelfFedStep {
        let pass: DecoderPass
        /// First key row of this step in the buffer of all steps' keys.
        let offset: Int
        let globals: [Int]
        let imgFcInputs: (rows: [Int], x: Buf)
        /// Gradient of the step's f̂: its own head loss, then what the next step sends back.
        let dFhat: Buf
    }

    /// f = base, or img_fc([base ; g]) at rows with a global feature. Returns f and the img_fc inputs.
    func imgFcForward(w: DraftWeightViews, base: UnsafePointer<Float>, globalOf: [Int], adapters: [AdapterPass], n: Int)
        -> (Buf, (rows: [Int], x: Buf)) {
        let d = config.width
        let f = Buf(n * d)
        f.p.update(from: base, count: n * d)
        let rows = (0..<n).filter { globalOf[$0] >= 0 }
        let x = Buf(rows.count * 2 * d)
        guard !rows.isEmpty, let imgFc = w.imgFc else { return (f, ([], x)) }
        for (i, r) in rows.enumerated() {
            (x.p + i * 2 * d).update(from: base + r * d, count: d)
            (x.p + i * 2 * d + d).update(from: adapters[globalOf[r]].global, count: d)
        }
        let y = Buf(rows.count * d)
        Linear.forward(x.p, imgFc, n: rows.count, inDim: 2 * d, outDim: d, into: y.p)
        for (i, r) in rows.enumerated() { (f.p + r * d).update(from: y.p + i * d, count: d) }
        return (f, (rows, x))
    }

    /// Backward of `imgFcForward`: the base's gradient is added to dBase (nil: not needed).
    func imgFcBackward(w: DraftWeightViews, gr: DraftGradViews, dF: UnsafePointer<Float>, inputs: (rows: [Int], x: Buf), globalOf: [Int],
                       dOut: [Buf], n: Int, dBase: UnsafeMutablePointer<Float>?) {
        let d = config.width, k = config.numQ
        let set = Set(inputs.rows)
        if let db = dBase {
            for r in 0..<n where !set.contains(r) { for i in 0..<d { db[r * d + i] += dF[r * d + i] } }
        }
        guard !inputs.rows.isEmpty, let imgFc = w.imgFc else { return }
        let m = inputs.rows.count
        let dy = Buf(m * d)
        gatherRows(dF, rows: inputs.rows, width: d, into: dy.p)
        let dx = Buf(m * 2 * d)
        Linear.backward(dy: dy.p, x: inputs.x.p, w: imgFc, n: m, inDim: 2 * d, outDim: d, dx: dx.p, dw: gr.imgFc)
        for (i, r) in inputs.rows.enumerated() {
            if let db = dBase { for t in 0..<d { db[r * d + t] += dx.p[i * 2 * d + t] } }
            let gd = dOut[globalOf[r]].p + (k - 1) * d
            for t in 0..<d { gd[t] += dx.p[i * 2 * d + d + t] }
        }
    }

    /// The draft head and the losses at `rows` of `fhat` (targets at `targetRows` of the sequence).
    /// One sgemm for the l rows' logits and one each for their gradients; the target side comes
    /// from `targets`, shared by all passes over the sequence.
    func headLoss(w: DraftWeightViews, gr: DraftGradViews?, fhat: UnsafePointer<Float>, rows: [Int], targetRows: [Int],
                  targets: TargetDistributions, nextToken: [Int32], lc: LossConfig, scale: Float,
                  dFhat: UnsafeMutablePointer<Float>, stats: inout LossStats, second: Bool) {
        let d = config.width, v = config.vocab, l = rows.count
        guard l > 0 else { return }
        targets.prepare(targetRows, rankK: lc.rank != 0 ? min(lc.rankK, v) : 0)
        let x = Buf(l * d)
        gatherRows(fhat, rows: rows, width: d, into: x.p)
        let z = Buf(l * v)
        Linear.forward(x.p, w.head!, n: l, inDim: d, outDim: v, into: z.p)
        let dz = Buf(l * v), dx = Buf(l * d), scratch = Buf(v)
        for i in 0..<l {
            let zi = z.p + i * v, dzi = dz.p + i * v
            let t = targetRows[i]
            let pi = targets.p(t)
            let r = Losses.headRow(z: zi, p: pi, order: lc.rank != 0 ? targets.order(t) : [], count: v,
                                   l1: lc.l1 * scale, rank: lc.rank * scale, ce: lc.ce * scale, gradient: gr != nil,
                                   dz: dzi, scratch: scratch.p)
            // The weighted parts as the separate losses returned them (their weights are nonzero).
            var rowLoss: Double = 0
            if lc.l1 != 0 { stats.l1 += Double(r.l1); rowLoss += Double(lc.l1 * r.l1) }
            if lc.rank != 0 { stats.rank += Double(r.rank); rowLoss += Double(lc.rank * r.rank) }
            if lc.ce != 0 { stats.ce += Double(r.ce); rowLoss += Double(lc.ce * r.ce) }
            if lc.reg != 0 {
                let a = targets.hidden { th in
                    Losses.smoothL1(x: x.p + i * d, y: th + t * d, count: d, weight: lc.reg * scale, dx: dx.p + i * d)
                }
                stats.reg += Double(a); rowLoss += Double(lc.reg * a)
            }
            stats.loss += rowLoss
            let ok = head.d2t[r.argmax] == nextToken[t]
            if second { stats.rows2 += 1; if ok { stats.correct2 += 1 } } else { stats.rows += 1; if ok { stats.correct += 1 } }
        }
        guard gr != nil else { return }
        Linear.backward(dy: dz.p, x: x.p, w: w.head!, n: l, inDim: d, outDim: v, dx: dx.p, dw: gr?.head)
        scatterAddRows(dx.p, rows: rows, width: d, into: dFhat)
    }
}

/// The target's distributions softmax(head(h_{t+1})) over the draft vocabulary at a sequence's
/// rows, and their top-k orders, computed once per row: the self-correction pass (and
/// EAGLE-3's later steps) score against the same rows as the first pass, one entry on, so
/// recomputing them per pass would repeat a V × d product per row.
final class TargetDistributions {
    let head: TargetHead
    let targetHidden: [Float]
    private var rowP: [UnsafeMutablePointer<Float>?]
    private var orders: [[Int]]
    private var blocks: [Buf] = []

    init(head: TargetHead, targetHidden: [Float], count: Int) {
        self.head = head; self.targetHidden = targetHidden
        rowP = Array(repeating: nil, count: count); orders = Array(repeating: [], count: count)
    }

    func hidden<R>(_ body: (UnsafePointer<Float>) -> R) -> R { targetHidden.withUnsafeBufferPointer { body($0.baseAddress!) } }

    /// Computes the rows of `rows` not yet held, in one sgemm; with `rankK` > 0 their top-k too.
    func prepare(_ rows: [Int], rankK: Int) {
        let d = head.width, v = head.rows
        var missing: [Int] = []
        var seen = Set<Int>()
        for r in rows where rowP[r] == nil && seen.insert(r).inserted { missing.append(r) }
        if !missing.isEmpty {
            let th = Buf(missing.count * d), p = Buf(missing.count * v)
            hidden { gatherRows($0, rows: missing, width: d, into: th.p) }
            Linear.forward(th.p, head.weights.p, n: missing.count, inDim: d, outDim: v, into: p.p)
            for (i, r) in missing.enumerated() {
                RowMath.softmax(p.p + i * v, count: v)
                rowP[r] = p.p + i * v
            }
            blocks.append(p)
        }
        if rankK > 0 {
            for r in rows where orders[r].count != rankK { orders[r] = Losses.topK(rowP[r]!, count: v, k: rankK) }
        }
    }

    func p(_ row: Int) -> UnsafePointer<Float> { UnsafePointer(rowP[row]!) }
    func order(_ row: Int) -> [Int] { orders[row] }
}
