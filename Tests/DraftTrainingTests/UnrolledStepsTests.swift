import DataSynth
import Shards
import XCTest
@testable import DraftTraining

/// EAGLE-3's training-time test on the EAGLE-2/ViSpec draft (`--ttt-steps K`): K − 1 self-fed
/// steps after the first pass. K = 2 must stay the former self-correction pass bit for bit.
final class UnrolledStepsTests: XCTestCase {
    let world = TinyWorld()

    /// Losses with every term whose central differences are reliable (see DraftModelTests).
    func losses(steps: Int?) -> LossConfig {
        var lc = LossConfig(l1: 0, rank: 0.5, reg: 1, ce: 0.7, selfCorrect: 0.8, rankK: 4)
        lc.tttSteps = steps
        return lc
    }

    func gradients(_ model: DraftModel, _ seq: DraftSequence, _ params: [Float], _ lc: LossConfig) -> (LossStats, [Float]) {
        var grads = [Float](repeating: 0, count: params.count)
        let st = grads.withUnsafeMutableBufferPointer { model.run(seq, params: params, grads: $0.baseAddress!, loss: lc) }
        return (st, grads)
    }

    /// The whole draft's gradient through K = 3 and 4 unrolled steps (each self-fed step reads
    /// its parent's f̂ through img_fc after the image and attends to the earlier steps' keys)
    /// against central differences at random coordinates of every trainable tensor; a
    /// corrupted gradient must fail. The chained steps make this loss (≈ 200 here) curve
    /// strongly on random weights: a plain central difference at ε = 1e-2 is off by up to 17 %
    /// on attention weights at K = 4 while converging to the analytic value as ε shrinks, and
    /// float32 noise (≈ 5e-3 absolute) rules out a small ε. Hence Richardson extrapolation, a
    /// floor of 0.2 (gradients here reach ≈ 7), and at K = 4 a smaller ε and a 4 % bound, still
    /// far below the 10 % + 0.05 of the corrupted gradient.
    func testUnrolledGradient() throws {
        let (model, params) = world.randomDraft(numQ: 3, seed: 21)
        let seq = try world.imageSequence(numQ: 3)
        for k in [3, 4] {
            let lc = losses(steps: k)
            let (st, grads) = gradients(model, seq, params, lc)
            XCTAssertEqual(st.steps.rows.count, k)
            var r = TestRNG(UInt64(3 + k))
            var coords: [Int] = []
            for s in model.layout.slots where s.trainable { coords += r.pick(5, of: s.count).map { s.offset + $0 } }
            var x = params
            let gc = k == 3 ? GradCheck(eps: 1e-2, tolerance: 2e-2, floor: 0.2, richardson: true)
                            : GradCheck(eps: 5e-3, tolerance: 4e-2, floor: 0.2, richardson: true)
            let f: ([Float]) -> Double = { model.run(seq, params: $0, grads: nil, loss: lc).loss }
            gc.assertMatches(&x, coords: coords, analytic: grads, slots: model.layout.slots, label: "K = \(k): ", f)
        }
    }

    /// The option is not ignored: K = 3 adds a step (its rows, loss and gradient); K = 2 given
    /// explicitly is the implicit default bit for bit; K = 1 is sc = 0 (no self-fed step).
    func testStepsOption() throws {
        let (model, params) = world.randomDraft(numQ: 3, seed: 21)
        let seq = try world.imageSequence(numQ: 3)
        let (s2, g2) = gradients(model, seq, params, losses(steps: nil))
        let (e2, eg2) = gradients(model, seq, params, losses(steps: 2))
        XCTAssertEqual(s2, e2); XCTAssertEqual(g2, eg2)
        XCTAssertEqual(s2.steps.rows.count, 2)
        let (s3, g3) = gradients(model, seq, params, losses(steps: 3))
        XCTAssertEqual(s3.steps.rows.count, 3)
        XCTAssertEqual(s3.steps.rows[2], (2..<seq.count).filter { seq.lossMask[$0] }.count)
        XCTAssertEqual(Array(s3.steps.rows.prefix(2)), s2.steps.rows, "steps 0 and 1 are the same rows")
        XCTAssertGreaterThan(s3.loss, s2.loss + 1e-3)
        XCTAssertNotEqual(g3, g2)
        var none = losses(steps: nil); none.selfCorrect = 0
        let (s1, g1) = gradients(model, seq, params, losses(steps: 1))
        let (z1, zg1) = gradients(model, seq, params, none)
        XCTAssertEqual(s1, z1); XCTAssertEqual(g1, zg1)
        XCTAssertEqual(s1.steps.rows.count, 1)
        // Step k weighs sc · 0.8^(k−1): step 1 keeps the self-correction weight.
        XCTAssertEqual(losses(steps: 3).selfFedWeight(1), 0.8)
        XCTAssertEqual(losses(steps: 3).selfFedWeight(3), 0.8 * 0.64, accuracy: 1e-7)
    }

    /// The default (K = 2) is the former self-correction pass to the bit: losses, statistics and
    /// every gradient equal those of the two-pass code this generalised (kept below verbatim).
    func testDefaultIsTheSelfCorrectionPass() throws {
        let (model, params) = world.randomDraft(numQ: 3, seed: 21)
        let seq = try world.imageSequence(numQ: 3)
        for lc in [losses(steps: nil), LossConfig.vispec, LossConfig.eagle] {
            var lg = [Float](repeating: 0, count: params.count)
            let ls = lg.withUnsafeMutableBufferPointer { model.selfCorrectionRun(seq, params: params, grads: $0.baseAddress!, loss: lc, gradScale: 0.25) }
            var g4 = [Float](repeating: 0, count: params.count)
            let st4 = g4.withUnsafeMutableBufferPointer { model.run(seq, params: params, grads: $0.baseAddress!, loss: lc, gradScale: 0.25) }
            XCTAssertEqual(st4.loss, ls.loss); XCTAssertEqual(st4.rows2, ls.rows2); XCTAssertEqual(st4.correct2, ls.correct2)
            XCTAssertEqual(st4.l1, ls.l1); XCTAssertEqual(st4.rank, ls.rank); XCTAssertEqual(st4.ce, ls.ce); XCTAssertEqual(st4.reg, ls.reg)
            XCTAssertTrue(g4 == lg, "gradients differ from the self-correction pass's")
            XCTAssertGreaterThan(st4.rows2, 0)
        }
    }

    /// train-adapter's options → the loss: the default and --ttt-steps 2 write no ttt_steps (the
    /// train_args of earlier runs); --no-self-correct is --ttt-steps 1; contradictions are refused.
    func testRequestMapsSteps() throws {
        func loss(_ edit: (inout TrainRequest) -> Void) throws -> LossConfig {
            var r = TrainRequest(modelPath: "", dataDirs: ["d"], out: "o.safetensors")
            edit(&r)
            try r.validate()
            return try r.options().loss
        }
        XCTAssertEqual(try loss { _ in }, .vispec)
        XCTAssertFalse(Checkpoint.json(try loss { _ in }).contains("ttt_steps"))
        XCTAssertEqual(try loss { $0.tttSteps = 2 }, .vispec)
        XCTAssertEqual(try loss { $0.selfCorrect = true }, .vispec)
        var off = LossConfig.vispec; off.selfCorrect = 0
        XCTAssertEqual(try loss { $0.tttSteps = 1 }, off)
        XCTAssertEqual(try loss { $0.selfCorrect = false }, off)
        var three = LossConfig.eagle; three.tttSteps = 3
        XCTAssertEqual(try loss { $0.tttSteps = 3; $0.loss = "eagle" }, three)
        XCTAssertEqual(try loss { $0.tttSteps = 3; $0.loss = "eagle" }.unrolledSteps, 3)
        XCTAssertEqual(try loss { $0.tttSteps = 4; $0.selfCorrect = true }.unrolledSteps, 4)
        XCTAssertEqual(try loss { $0.arch = .eagle3 }.tttSteps, 3)
        XCTAssertThrowsError(try loss { $0.tttSteps = 3; $0.selfCorrect = false })
        XCTAssertThrowsError(try loss { $0.tttSteps = 1; $0.selfCorrect = true })
        XCTAssertThrowsError(try loss { $0.tttSteps = 0 })
        XCTAssertThrowsError(try loss { $0.tttSteps = 3; $0.lossWeights = "sc=0" })
        XCTAssertThrowsError(try loss { $0.arch = .eagle3; $0.selfCorrect = false })
    }

    /// The validation report gives every unrolled step's top-1 agreement for eagle2/ViSpec too.
    func testReportHasStepAgreement() throws {
        let dir = scratchDir("unrolled-report")
        try world.writeDataset((0..<12).map { world.record(index: $0, length: 16 + $0 % 4, promptLen: 5, seed: UInt64(200 + $0)) }, to: dir)
        let data = try TrainingData(dirs: [dir])
        for k in [1, 2, 3] {
            var r = TrainRequest(modelPath: "", dataDirs: [dir], out: "o.safetensors")
            r.tttSteps = k
            var o = try r.options()
            o.totalSteps = 2; o.warmupSteps = 1; o.batchTokens = 40; o.draftVocab = 24; o.validationFraction = 0.2; o.seed = 7
            let split = data.split(validationFraction: o.validationFraction, stage: o.stage)
            let d2t = try data.draftVocabulary(size: o.draftVocab, sampleIndices: split.train)
            var p = DraftParameters(config: world.config(vocab: d2t.count, numQ: 0))
            p.initialise(seed: o.seed)
            let t = try Trainer(model: DraftModel(layout: p, head: world.head(d2t: d2t)), params: p.values, options: o, data: data,
                                embedder: world.embedder, images: nil)
            XCTAssertEqual(try t.trainStep().stats.steps.rows.count, k)
            let v = try t.validate(maxSamples: 4, chainDepth: 5, maxChainStarts: 50)
            XCTAssertGreaterThan(v.positions, 0)
            XCTAssertEqual(v.stepTop1?.count, k == 1 ? nil : k)
            XCTAssertEqual(v.stepTop1?.first, k == 1 ? nil : v.top1)
        }
    }
}

extension DraftModel {
    /// The EAGLE-2/ViSpec loss before `--ttt-steps` applied to it (first pass, then one
    /// self-correction pass of weight `selfCorrect`), unchanged: the reference the default must
    /// reproduce bit for bit.
    func selfCorrectionRun(_ s: DraftSequence, params: [Float], grads: UnsafeMutablePointer<Float>, loss lc: LossConfig,
                           gradScale: Float) -> LossStats {
        params.withUnsafeBufferPointer { pp in
            let c = config, d = c.width, n = s.count
            var stats = LossStats()
            stats.tokens = n
            let w = weights(pp.baseAddress!)
            let gr = DraftGradViews(grads: grads, layout: layout)
            let first = firstPass(s, w)
            let adapters = first.adapters, useAdapter = !adapters.isEmpty
            let e1 = first.inputs, globals1 = first.globals, imgIn1 = first.imgFcInputs, pass1 = first.pass
            let rows1 = (0..<n).filter { s.lossMask[$0] }
            let dFhat1 = Buf(n * d)
            let targets = TargetDistributions(head: head, targetHidden: s.targetHidden, count: n)
            headLoss(w: w, gr: gr, fhat: pass1.fhat.p, rows: rows1, targetRows: rows1, targets: targets,
                     nextToken: s.nextToken, lc: lc, scale: gradScale, dFhat: dFhat1.p, stats: &stats, second: false)
            var pass2: DecoderPass? = nil
            var imgIn2: (rows: [Int], x: Buf)? = nil
            let n2 = n - 1
            let dFhat2 = Buf(max(n2, 1) * d)
            var globals2: [Int] = []
            if lc.selfCorrect > 0 && n2 > 0 {
                let e2 = Buf(n2 * d)
                (e2.p).update(from: e1.p + d, count: n2 * d)
                globals2 = Array(globals1[1...])
                let (f2, ii2) = imgFcForward(w: w, base: pass1.fhat.p, globalOf: globals2, adapters: adapters, n: n2)
                imgIn2 = ii2
                let vis: Visibility = (0..<n2).map { i in [0..<(i + 1), (n + i)..<(n + i + 1)] }
                let p2 = DecoderPass(config: c, weights: w, e: e2.p, f: f2.p, n: n2, positions: Array(s.positions[1...]),
                                     prior: (pass1.ownK, pass1.ownV, n), visible: vis)
                pass2 = p2
                let rows2 = (0..<n2).filter { s.lossMask[$0 + 1] }
                var sub = LossStats()
                headLoss(w: w, gr: gr, fhat: p2.fhat.p, rows: rows2, targetRows: rows2.map { $0 + 1 }, targets: targets,
                         nextToken: s.nextToken, lc: lc, scale: gradScale * lc.selfCorrect, dFhat: dFhat2.p, stats: &sub, second: true)
                stats.loss += Double(lc.selfCorrect) * sub.loss
                stats.rows2 = sub.rows2; stats.correct2 = sub.correct2
            }
            let g = gr
            let kvw = c.kvHeads * c.headDim
            let dK1 = Buf(n * kvw), dV1 = Buf(n * kvw)
            let dE1 = Buf(n * d)
            let dOut = adapters.map { _ in Buf(c.numQ * d) }
            if let p2 = pass2 {
                let dE2 = Buf(n2 * d), dF2 = Buf(n2 * d)
                p2.backward(weights: w, grads: g, dFhat: dFhat2.p, dOwnKV: nil, dPrior: (dK1.p, dV1.p), dE: dE2.p, dF: dF2.p)
                for i in 0..<(n2 * d) { dE1.p[d + i] += dE2.p[i] }
                imgFcBackward(w: w, gr: g, dF: dF2.p, inputs: imgIn2!, globalOf: globals2, dOut: dOut, n: n2, dBase: dFhat1.p)
            }
            let dE1b = Buf(n * d), dF1 = Buf(n * d)
            pass1.backward(weights: w, grads: g, dFhat: dFhat1.p, dOwnKV: (UnsafePointer(dK1.p), UnsafePointer(dV1.p)), dPrior: nil, dE: dE1b.p, dF: dF1.p)
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
    }
}
