import DataSynth
import Shards
import Draft
import Foundation
import Kernels
import Llama
import TestSupport
import XCTest
@testable import DraftTraining

extension TinyWorld {
    /// A tiny EAGLE-3 config: three aux layers (ids only label them here).
    func eagle3Config(vocab v: Int) -> DraftConfig {
        var c = config(vocab: v, numQ: 0)
        c.headTied = false
        c.arch = .eagle3
        c.auxLayers = [1, 2, 3]
        return c
    }

    /// `record` with three aux layer states that carry the next token (plus layer-dependent
    /// scale and position noise), as the target's middle layers do.
    func eagle3Record(index: Int, length: Int, promptLen: Int, seed: UInt64) -> SampleRecord {
        var r = record(index: index, length: length, promptLen: promptLen, seed: seed)
        var g = TestRNG(seed &+ 99)
        r.auxHidden = (0..<3).map { l in
            var x = [Float](repeating: 0, count: length * d)
            for t in 0..<length {
                let tok = max(Int(r.tokens[t]), 0)
                for i in 0..<d { x[t * d + i] = embeddings[tok * d + i] * Float(l + 1) + 0.3 * g.uniform(1)[0] }
            }
            return HiddenStates.encode(x, rows: length, width: d, as: .fp16)
        }
        return r
    }

    func eagle3Sequence(index: Int = 0, length: Int = 11, promptLen: Int = 3, seed: UInt64 = 5) throws -> DraftSequence {
        try SequenceBuilder(width: d, numQ: 0, maxLength: 100, noise: 0, auxLayers: [1, 2, 3])
            .build(eagle3Record(index: index, length: length, promptLen: promptLen, seed: seed), embedder: embedder, images: nil, datasetDir: "", rng: nil)
    }
}

final class Eagle3Tests: XCTestCase {
    let world = TinyWorld()

    /// Random (not initial) weights for every tensor, norms around 1.
    func randomDraft(seed: UInt64) -> (DraftModel, [Float]) {
        let d2t: [Int32] = (0..<12).map { Int32($0 * 3 % 40) }
        var p = DraftParameters(config: world.eagle3Config(vocab: 12))
        p.initialise(seed: seed)
        var r = TestRNG(seed + 1)
        for s in p.slots { p.set(s.name, r.uniform(s.count, scale: s.shape.count == 1 ? 0.5 : 0.6).map { s.shape.count == 1 ? $0 + 1 : $0 }) }
        return (DraftModel(layout: p, head: world.head(d2t: d2t)), p.values)
    }

    func testLayoutUsesTheCheckpointNames() {
        let c = world.eagle3Config(vocab: 12)
        let p = DraftParameters(config: c)
        XCTAssertEqual(p.slots.map(\.name), DraftWeights.shapes(c).map(\.name))
        XCTAssertEqual(p.slot("fc.weight")?.shape, [world.d, 3 * world.d])
        XCTAssertEqual(p.slot("midlayer.self_attn.q_proj.weight")?.shape, [c.qWidth, 2 * world.d])
        XCTAssertNotNil(p.slot("midlayer.hidden_norm.weight"))
        XCTAssertTrue(p.slots.allSatisfy(\.trainable), "every EAGLE-3 tensor trains (the output norm too)")
    }

    /// One pass with prior keys, a TTT-style visibility, and gradient arriving at the normed
    /// output, the pre-norm state and the own keys/values: every weight, g and the prior
    /// keys/values against central differences; a corrupted gradient must fail.
    func testPassGradient() {
        let (model, params) = randomDraft(seed: 31)
        let c = model.config, d = c.width, kvw = c.kvHeads * c.headDim
        let n = 4, nPrior = 5
        var r = TestRNG(7)
        let e = r.uniform(n * d, scale: 1.5)
        var g = r.uniform(n * d, scale: 2)
        var pk = r.uniform(nPrior * kvw), pv = r.uniform(nPrior * kvw)
        let rOut = r.uniform(n * d), rS = r.uniform(n * d), rK = r.uniform(n * kvw), rV = r.uniform(n * kvw)
        let vis: Visibility = (0..<n).map { j in [0..<(j + 1), (3 + j % 2)..<(4 + j % 2), (nPrior + j)..<(nPrior + j + 1)] }
        let positions = [3, 4, 5, 6]
        func pass(_ p: [Float], _ g: [Float], _ pk: [Float], _ pv: [Float]) -> Eagle3Pass {
            p.withUnsafeBufferPointer { pp in
                pk.withUnsafeBufferPointer { kp in
                    pv.withUnsafeBufferPointer { vp in
                        Eagle3Pass(config: c, weights: model.weights(pp.baseAddress!), e: e, g: g, n: n, positions: positions,
                                   prior: (kp.baseAddress!, vp.baseAddress!, nPrior), visible: vis)
                    }
                }
            }
        }
        func f(_ p: [Float], _ g: [Float], _ pk: [Float], _ pv: [Float]) -> Double {
            let x = pass(p, g, pk, pv)
            return dot(x.out.array, rOut) + dot(x.s.array, rS)
                + dot(Array(UnsafeBufferPointer(start: x.ownK, count: n * kvw)), rK) + dot(Array(UnsafeBufferPointer(start: x.ownV, count: n * kvw)), rV)
        }
        var grads = [Float](repeating: 0, count: params.count)
        var dG = [Float](repeating: 0, count: n * d)
        var dPk = [Float](repeating: 0, count: nPrior * kvw), dPv = dPk
        let x = pass(params, g, pk, pv)
        params.withUnsafeBufferPointer { pp in
            grads.withUnsafeMutableBufferPointer { gp in
                rK.withUnsafeBufferPointer { kp in
                    rV.withUnsafeBufferPointer { vp in
                        dPk.withUnsafeMutableBufferPointer { dk in
                            dPv.withUnsafeMutableBufferPointer { dv in
                                x.backward(weights: model.weights(pp.baseAddress!), grads: DraftGradViews(grads: gp.baseAddress!, layout: model.layout),
                                           dOut: rOut, dS: rS, dOwnKV: (kp.baseAddress!, vp.baseAddress!), dPrior: (dk.baseAddress!, dv.baseAddress!),
                                           dG: &dG)
                            }
                        }
                    }
                }
            }
        }
        let gc = GradCheck(eps: 1e-2, tolerance: 2e-2, floor: 2e-2)
        var rr = TestRNG(9)
        var p = params
        for s in model.layout.slots where s.name != "fc.weight" && s.name != "lm_head.weight" {
            let coords = rr.pick(6, of: s.count).map { s.offset + $0 }
            let w = gc.worst(&p, coords: coords, analytic: grads) { f($0, g, pk, pv) }
            XCTAssertLessThan(w.error, gc.tolerance, "\(s.name) coordinate \(w.at)")
            var wrong = grads
            for i in coords { wrong[i] = wrong[i] * 1.1 + 0.05 }
            XCTAssertFalse(gc.passes(&p, coords: coords, analytic: wrong) { f($0, g, pk, pv) }, "\(s.name): a wrong gradient passed")
        }
        for (name, check) in [("g", { gc.worst(&g, coords: Array(0..<(n * d)), analytic: dG) { f(params, $0, pk, pv) } }),
                              ("prior k", { gc.worst(&pk, coords: Array(0..<(nPrior * kvw)), analytic: dPk) { f(params, g, $0, pv) } }),
                              ("prior v", { gc.worst(&pv, coords: Array(0..<(nPrior * kvw)), analytic: dPv) { f(params, g, pk, $0) } })] {
            let w = check()
            XCTAssertLessThan(w.error, gc.tolerance, "\(name) coordinate \(w.at)")
        }
    }

    /// The whole unrolled training-time-test loss (K = 3: the chain of states and the keys of
    /// earlier steps) against central differences at random coordinates of every tensor.
    func testUnrolledLossGradient() throws {
        let (model, params) = randomDraft(seed: 41)
        let seq = try world.eagle3Sequence()
        XCTAssertEqual(seq.auxFeatures.count, seq.count * 3 * world.d)
        let lc = LossConfig.eagle3(tttSteps: 3)
        var grads = [Float](repeating: 0, count: params.count)
        let stats = grads.withUnsafeMutableBufferPointer { model.run(seq, params: params, grads: $0.baseAddress!, loss: lc) }
        XCTAssertEqual(stats.steps.rows.count, 3)
        XCTAssertEqual(stats.steps.rows[0], seq.lossCount)
        XCTAssertEqual(stats.steps.rows[2], (2..<seq.count).filter { seq.lossMask[$0] }.count)
        // The later steps add to the loss.
        XCTAssertGreaterThan(stats.loss, model.run(seq, params: params, grads: nil, loss: .eagle3(tttSteps: 1)).loss + 1e-3)
        var r = TestRNG(3)
        var x = params
        let gc = GradCheck(eps: 1e-2, tolerance: 2e-2, floor: 5e-2)
        let f: ([Float]) -> Double = { model.run(seq, params: $0, grads: nil, loss: lc).loss }
        for s in model.layout.slots {
            let coords = r.pick(5, of: s.count).map { s.offset + $0 }
            let w = gc.worst(&x, coords: coords, analytic: grads, f)
            XCTAssertLessThan(w.error, gc.tolerance, "\(s.name) coordinate \(w.at)")
        }
        var coords: [Int] = []
        for s in model.layout.slots { coords += r.pick(3, of: s.count).map { s.offset + $0 } }
        var wrong = grads
        for i in coords { wrong[i] = wrong[i] * 1.1 + 0.05 }
        XCTAssertFalse(gc.passes(&x, coords: coords, analytic: wrong, f), "a wrong gradient passed")
    }

    /// Step k at entry j is the chain node k steps after root j: its logits equal a pass over
    /// the entries 0...j plus the k nodes, computed one at a time as chain drafting does.
    func testStepKEqualsAChainFromEachRoot() throws {
        let (model, params) = randomDraft(seed: 51)
        let seq = try world.eagle3Sequence()
        let steps = model.tttLogits(seq, params: params, steps: 3)
        let v = model.config.vocab, d = world.d, kvw = model.config.kvHeads * model.config.headDim
        params.withUnsafeBufferPointer { pp in
            let w = model.weights(pp.baseAddress!)
            let first = model.tttForward(seq, w, steps: 1).passes[0]
            for j in [0, 3, 6] {
                var keys = Array(UnsafeBufferPointer(start: first.ownK, count: (j + 1) * kvw))
                var vals = Array(UnsafeBufferPointer(start: first.ownV, count: (j + 1) * kvw))
                var state = Array(first.s.array[(j * d)..<((j + 1) * d)])
                for k in 1..<3 {
                    let node = seq.inputs.withUnsafeBufferPointer { ip in
                        keys.withUnsafeBufferPointer { kp in
                            vals.withUnsafeBufferPointer { vp in
                                Eagle3Pass(config: model.config, weights: w, e: ip.baseAddress! + (j + k) * d, g: state, n: 1,
                                           positions: [seq.positions[j] + k], prior: (kp.baseAddress!, vp.baseAddress!, keys.count / kvw),
                                           visible: [[0..<(keys.count / kvw + 1)]])
                            }
                        }
                    }
                    var z = [Float](repeating: 0, count: v)
                    Linear.forward(node.out.p, w.head!, n: 1, inDim: d, outDim: v, into: &z)
                    for i in 0..<v { XCTAssertEqual(z[i], steps[k][j * v + i], accuracy: 1e-4, "root \(j) step \(k) row \(i)") }
                    keys += UnsafeBufferPointer(start: node.ownK, count: kvw); vals += UnsafeBufferPointer(start: node.ownV, count: kvw)
                    state = node.s.array
                }
            }
        }
    }

    /// Training on two samples with K = 2 drives the loss down.
    func testTinyOverfit() throws {
        let c = world.eagle3Config(vocab: 24)
        let d2t: [Int32] = (0..<24).map { Int32($0) }
        var p = DraftParameters(config: c)
        p.initialise(seed: 2)
        let head = world.head(d2t: d2t)
        p.set("lm_head.weight", head.values)
        let model = DraftModel(layout: p, head: head)
        let seqs = try [world.eagle3Sequence(index: 0, length: 16, promptLen: 3, seed: 5),
                        world.eagle3Sequence(index: 1, length: 16, promptLen: 3, seed: 6)]
        let lc = LossConfig.eagle3(tttSteps: 2)
        let opt = AdamW(lr: 1e-2, weightDecay: 0, warmupSteps: 0, totalSteps: 200, clipNorm: 1)
        var params = p.values, m = [Float](repeating: 0, count: params.count), vv = m
        let rows = seqs.reduce(0) { $0 + $1.lossCount }
        func loss() -> Double { seqs.reduce(0) { $0 + model.run($1, params: params, grads: nil, loss: lc).loss } / Double(rows) }
        let before = loss()
        for step in 0..<60 {
            var grads = [Float](repeating: 0, count: params.count)
            params.withUnsafeBufferPointer { pp in
                grads.withUnsafeMutableBufferPointer { g in
                    for s in seqs { _ = model.run(s, params: pp.baseAddress!, grads: g.baseAddress!, loss: lc, gradScale: 1 / Float(rows)) }
                }
            }
            opt.update(params: &params, grads: &grads, m: &m, v: &vv, slots: p.slots, step: step)
        }
        let after = loss()
        XCTAssertLessThan(after, 0.5 * before, "loss \(before) → \(after)")
        var stats = LossStats()
        for s in seqs { stats += model.run(s, params: params, grads: nil, loss: lc) }
        XCTAssertGreaterThan(stats.steps.top1(1) ?? 0, 0.5, "step-1 top-1 after training")
    }

    /// The trainer's steps and `EagleDraft` on the same checkpoint and data: step 0 at the last
    /// accepted entry = `accept`'s candidates; steps 1 and 2 = `expand` along the chain.
    func testTrainerMatchesEagleDraftAcceptAndExpand() throws {
        let path = TestPaths.model
        guard FileManager.default.fileExists(atPath: path) else { throw XCTSkip("model \(path) missing (scripts/setup.sh)") }
        let target = try LlamaModel(path: path, threads: 1)
        let tc = target.config, d = tc.width
        let v = 256
        let d2t: [Int32] = (0..<v).map { Int32(($0 * 181) % tc.vocabSize) }
        let cfg = DraftConfig.eagle3(target: tc, vocab: v)
        XCTAssertEqual(cfg.auxLayers, [2, 15, 27])
        var p = DraftParameters(config: cfg)
        p.initialise(seed: 3)
        var rng = SplitMix64(seed: 5)
        // Norms away from 1 so that each one matters.
        for s in p.slots where s.shape.count == 1 { p.set(s.name, (0..<s.count).map { _ in 0.5 + rng.nextUnit() }) }
        var headRows = [Float](repeating: 0, count: v * d)
        headRows.withUnsafeMutableBufferPointer { for i in 0..<v { target.weights.output.dequantize(row: Int(d2t[i]), into: $0.baseAddress! + i * d) } }
        p.set("lm_head.weight", headRows)
        let file = NSTemporaryDirectory() + "draft-e3-agree-\(getpid()).safetensors"
        defer { try? FileManager.default.removeItem(atPath: file) }
        let meta = CheckpointMeta(config: cfg, targetSHA256: "x", towerSHA256: nil, step: 0, seed: 3, dataManifestSHA256: "m", trainArgs: "{}")
        try Checkpoint.save(to: file, params: p, d2t: d2t, meta: meta, optimizer: nil, dtype: .F32)

        let n = 10
        let tokens: [Int32] = (0..<n).map { _ in Int32(rng.next() % UInt64(tc.vocabSize)) }
        func states(_ scale: Float) -> HiddenStates {
            HiddenStates.encode((0..<(n * d)).map { _ in (rng.nextUnit() * 2 - 1) * scale }, rows: n, width: d, as: .fp16)
        }
        let rec = SampleRecord(index: 0, id: "a", messages: [], stopReasons: [], tokens: tokens, lossMask: [UInt8](repeating: 1, count: n),
                               imageMask: [UInt8](repeating: 0, count: n), images: [], hidden: states(2),
                               auxHidden: [states(1), states(3), states(8)])
        let seq = try SequenceBuilder(width: d, numQ: 0, maxLength: 100, noise: 0, auxLayers: [2, 15, 27])
            .build(rec, embedder: target.weights.tokenEmbedding, images: nil, datasetDir: "", rng: nil)
        let model = DraftModel(layout: p, head: TargetHead(rows: v, width: d, weights: headRows, d2t: d2t))
        let steps = model.tttLogits(seq, params: p.values, steps: 3)

        let draft = try EagleDraft(path: file, target: target, matrixType: .f32)
        XCTAssertEqual(draft.featureLayers, [1, 14, 26])
        let m = 5, fw = cfg.featureWidth
        let feats = rec.auxFeatures()
        func compare(_ cands: [DraftCandidate], step k: Int, row j: Int) {
            let z = Array(steps[k][(j * v)..<((j + 1) * v)])
            let mx = z.max()!
            let lse = log(z.reduce(0.0) { $0 + exp(Double($1 - mx)) }) + Double(mx)
            let best = (0..<v).max { z[$0] < z[$1] }!
            XCTAssertEqual(cands[0].token, d2t[best], "step \(k)")
            for c in cands {
                let row = d2t.firstIndex(of: c.token)!
                XCTAssertEqual(Double(c.logProb), Double(z[row]) - lse, accuracy: 1e-3, "step \(k) token \(c.token)")
            }
        }
        let root = try draft.accept(features: Array(feats[0..<(m * fw)]), nextTokens: Array(tokens[1...m]), images: [], topK: 5)
        XCTAssertEqual(root.count, 5)
        compare(root, step: 0, row: m - 1)
        let one = try draft.expand(tokens: [tokens[m + 1]], parents: [-1], topK: 5)
        compare(one[0], step: 1, row: m - 1)
        let two = try draft.expand(tokens: [tokens[m + 2]], parents: [0], topK: 5)
        compare(two[0], step: 2, row: m - 1)
    }

    /// The trainer on an EAGLE-3 dataset: steps run, validation reports top-1 per TTT step and τ.
    func testTrainerStepsAndValidatesEagle3() throws {
        let dir = scratchDir("e3-trainer")
        let recs = (0..<16).map { i in world.eagle3Record(index: i, length: 18 + i % 4, promptLen: 5, seed: UInt64(200 + i)) }
        try world.writeDataset(recs, auxLayers: [1, 2, 3], to: dir)
        let data = try TrainingData(dirs: [dir])
        var o = TrainOptions()
        o.totalSteps = 12; o.warmupSteps = 2; o.lr = 1e-2; o.batchTokens = 60; o.draftVocab = 24; o.validationFraction = 0.2
        o.seed = 7; o.noise = 0.05; o.weightDecay = 0; o.arch = .eagle3; o.auxLayers = [1, 2, 3]; o.loss = .eagle3(tttSteps: 3)
        let split = data.split(validationFraction: o.validationFraction, stage: 1)
        XCTAssertFalse(split.validation.isEmpty)
        let d2t = try data.draftVocabulary(size: 24, sampleIndices: split.train)
        let head = world.head(d2t: d2t)
        var p = DraftParameters(config: world.eagle3Config(vocab: 24))
        p.initialise(seed: 7)
        p.set("lm_head.weight", head.values)
        let trainer = try Trainer(model: DraftModel(layout: p, head: head), params: p.values, options: o, data: data, embedder: world.embedder, images: nil)
        let v0 = try trainer.validate(maxSamples: 10, chainDepth: 4, maxChainStarts: 100)
        var last: StepResult? = nil
        for _ in 0..<12 { last = try trainer.trainStep() }
        XCTAssertEqual(last?.stats.steps.rows.count, 3)
        let v = try trainer.validate(maxSamples: 10, chainDepth: 4, maxChainStarts: 100)
        XCTAssertEqual(v.stepTop1?.count, 3)
        XCTAssertLessThan(v.loss, v0.loss)
        XCTAssertGreaterThan(v.chainStarts, 0)
        XCTAssertEqual(v.acceptedHistogram.reduce(0, +), v.chainStarts)
        XCTAssertEqual(v.tau, Double(v.acceptedHistogram.enumerated().reduce(0) { $0 + $1.offset * $1.element }) / Double(v.chainStarts), accuracy: 1e-12)
    }

    /// `train-adapter --arch eagle3` on data made with other layers (or none): one error that
    /// names the shard and both lists.
    func testDataWithOtherAuxLayersIsRefused() throws {
        let path = TestPaths.model
        guard FileManager.default.fileExists(atPath: path) else { throw XCTSkip("model \(path) missing (scripts/setup.sh)") }
        let dir = scratchDir("e3-layers")
        let recs = (0..<2).map { i -> SampleRecord in
            var r = world.eagle3Record(index: i, length: 8, promptLen: 3, seed: UInt64(i))
            r.auxHidden.removeLast()
            return r
        }
        try world.writeDataset(recs, auxLayers: [2, 15], to: dir)
        var rc = TrainRunConfig(modelPath: path, dataDirs: [dir], out: dir + "/d.safetensors")
        rc.options.arch = .eagle3
        rc.progress = false
        XCTAssertThrowsError(try runTraining(rc)) { e in
            let t = e as? TrainingError
            XCTAssertEqual(t?.field, "hidden.aux_layers")
            XCTAssertTrue(t?.file.hasSuffix(".sds") == true, "\(String(describing: t))")
            XCTAssertTrue(t?.reason.contains("[2, 15]") == true && t?.reason.contains("[2, 15, 27]") == true, "\(String(describing: t))")
        }
        // Version-1 data (no aux states at all).
        let v1 = scratchDir("e3-v1")
        try world.writeDataset([world.record(index: 0, length: 8, promptLen: 3, seed: 1)], to: v1)
        rc.dataDirs = [v1]
        XCTAssertThrowsError(try runTraining(rc)) { e in
            XCTAssertTrue((e as? TrainingError)?.reason.contains("no aux layer states") == true, "\(e)")
        }
    }
}
