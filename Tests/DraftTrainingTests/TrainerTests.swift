import DataSynth
import Shards
import SafeTensors
import XCTest
@testable import DraftTraining

final class TrainerTests: XCTestCase {
    let world = TinyWorld()

    /// 24 text samples (two of which fall in validation at 10 %) in a one-shard dataset.
    func dataset(_ name: String, images: Bool = false) throws -> TrainingData {
        let dir = scratchDir(name)
        let recs = (0..<24).map { i in
            world.record(index: i, length: 20 + i % 5, promptLen: 6, image: images && i % 2 == 0 ? (at: 2, rows: 3) : nil, seed: UInt64(100 + i))
        }
        try world.writeDataset(recs, to: dir)
        return try TrainingData(dirs: [dir])
    }

    func makeTrainer(_ data: TrainingData, options o: TrainOptions, images: ImageEmbedder? = nil) throws -> Trainer {
        let split = data.split(validationFraction: o.validationFraction, stage: o.stage)
        let d2t = try data.draftVocabulary(size: o.draftVocab, sampleIndices: split.train)
        let head = world.head(d2t: d2t)
        var p = DraftParameters(config: world.config(vocab: d2t.count, numQ: o.numQ))
        p.initialise(seed: o.seed)
        p.set("lm_head.weight", head.values)
        return try Trainer(model: DraftModel(layout: p, head: head), params: p.values, options: o, data: data, embedder: world.embedder, images: images)
    }

    func options(steps: Int) -> TrainOptions {
        var o = TrainOptions()
        o.totalSteps = steps; o.warmupSteps = 5; o.lr = 1e-2; o.batchTokens = 60; o.draftVocab = 24; o.validationFraction = 0.1
        o.seed = 7; o.noise = 0.05; o.weightDecay = 0
        return o
    }

    func testDraftVocabularyIsMostFrequentAnswerTokens() throws {
        let data = try dataset("vocab")
        let all = Array(0..<data.samples.count)
        let d2t = try data.draftVocabulary(size: 5, sampleIndices: all)
        var counts = [Int](repeating: 0, count: world.vocab)
        for s in data.samples { let r = try data.record(s); for (t, m) in zip(r.tokens, r.lossMask) where m == 1 { counts[Int(t)] += 1 } }
        XCTAssertEqual(d2t, TrainingData.topTokens(counts: counts, size: 5))
        XCTAssertTrue(zip(d2t.dropLast(), d2t.dropFirst()).allSatisfy { counts[Int($0)] >= counts[Int($1)] })
        // Coverage: the answer tokens the vocabulary holds, counted by hand.
        let total = counts.reduce(0, +), held = d2t.map { counts[Int($0)] }.reduce(0, +)
        XCTAssertEqual(try data.vocabularyCoverage(d2t, sampleIndices: all), Double(held) / Double(total), accuracy: 1e-12)
        XCTAssertLessThan(Double(held) / Double(total), 1, "the fixture must have answer tokens outside a 5-token vocabulary")
        XCTAssertEqual(try data.vocabularyCoverage((0..<Int32(world.vocab)).map { $0 }, sampleIndices: all), 1)
    }

    /// A tiny draft overfits a tiny dataset: the loss per answer position falls below 35 % of the
    /// first step's and top-1 agreement with the target's next tokens exceeds 0.5.
    func testTinyDraftOverfits() throws {
        let data = try dataset("overfit")
        let t = try makeTrainer(data, options: options(steps: 150))
        var first = 0.0, lastLosses: [Double] = [], lastTop1: [Double] = []
        for k in 0..<150 {
            let r = try t.trainStep()
            if k == 0 { first = r.stats.meanLoss }
            if k >= 140 { lastLosses.append(r.stats.meanLoss); lastTop1.append(r.stats.top1) }
        }
        let final = lastLosses.reduce(0, +) / Double(lastLosses.count)
        XCTAssertLessThan(final, 0.35 * first, "loss \(first) → \(final)")
        XCTAssertGreaterThan(lastTop1.reduce(0, +) / Double(lastTop1.count), 0.5)
        let v = try t.validate(maxSamples: 10, chainDepth: 5, maxChainStarts: 100)
        XCTAssertGreaterThan(v.positions, 0)
        // τ counts accepted draft tokens only: the histogram's mean, and well above 0 once overfit.
        let starts = v.acceptedHistogram.reduce(0, +)
        let mean = Double(v.acceptedHistogram.enumerated().reduce(0) { $0 + $1.offset * $1.element }) / Double(starts)
        XCTAssertEqual(starts, v.chainStarts)
        XCTAssertEqual(v.tau, mean, accuracy: 1e-12)
        XCTAssertGreaterThan(v.tau, 0.5)
    }

    /// The acceptance model fitted to validation chains (what `--tree-tokens auto` reads from a
    /// shipped draft): first = P(≥ 1 accepted), decay = geometric mean of P(≥ k+1) / P(≥ k).
    func testAcceptanceModelFit() throws {
        var r = DraftModel.ChainResult(depth: 3)
        r.starts = 100
        r.histogram = [50, 25, 12, 13]          // P(≥1) = .5, P(≥2) = .25, P(≥3) = .13
        let a = try XCTUnwrap(r.acceptanceModel)
        XCTAssertEqual(a.first, 0.5, accuracy: 1e-12)
        XCTAssertEqual(a.decay, (0.5 * 0.52).squareRoot(), accuracy: 1e-12)
        r.histogram = [100, 0, 0, 0]
        XCTAssertNil(r.acceptanceModel, "nothing accepted: nothing to fit")
        XCTAssertNil(DraftModel.ChainResult(depth: 3).acceptanceModel)
    }

    /// Stage 2 on image samples runs (adapter, img_fc, compressed tokens) and learns.
    func testStageTwoTrainsOnImageSamples() throws {
        let data = try dataset("stage2", images: true)
        var o = options(steps: 30)
        o.stage = 2; o.numQ = 3
        let t = try makeTrainer(data, options: o, images: FakeImages(d: world.d))
        XCTAssertTrue(t.trainIndices.allSatisfy { data.samples[$0].hasImage })
        var first = 0.0, last = 0.0
        for k in 0..<30 { let r = try t.trainStep(); if k == 0 { first = r.stats.meanLoss }; last = r.stats.meanLoss }
        XCTAssertLessThan(last, first)
        let queries = t.model.layout.slot("adapter.queries")!
        XCTAssertNotEqual(Array(t.params[queries.offset..<(queries.offset + queries.count)]),
                          Array(t.model.layout.values[queries.offset..<(queries.offset + queries.count)]), "the adapter was trained")
    }

    /// Stage 2 with `withText` trains on the text samples too (mixed with the image samples, each
    /// split by the same id hash), and learns on both.
    func testStageTwoWithTextTrainsOnBothKinds() throws {
        let data = try dataset("stage2text", images: true)
        var o = options(steps: 30)
        o.stage = 2; o.numQ = 3
        let imagesOnly = data.split(validationFraction: o.validationFraction, stage: 2)
        o.withText = true
        let t = try makeTrainer(data, options: o, images: FakeImages(d: world.d))
        let both = data.split(validationFraction: o.validationFraction, stage: 2, withText: true)
        XCTAssertEqual(t.trainIndices, both.train)
        XCTAssertTrue(t.trainIndices.contains { data.samples[$0].hasImage })
        XCTAssertTrue(t.trainIndices.contains { !data.samples[$0].hasImage })
        XCTAssertEqual(Set(imagesOnly.train).union(imagesOnly.validation),
                       Set(both.train.filter { data.samples[$0].hasImage }).union(both.validation.filter { data.samples[$0].hasImage }))
        XCTAssertEqual(both.train.count + both.validation.count, data.samples.count)
        var first = 0.0, last = 0.0
        for k in 0..<30 { let r = try t.trainStep(); if k == 0 { first = r.stats.meanLoss }; last = r.stats.meanLoss }
        XCTAssertLessThan(last, first)
        // The option is part of the run's arguments (a resume must match it) and absent when off.
        XCTAssertTrue(o.json.contains("\"with_text\":true"), o.json)
        XCTAssertFalse(options(steps: 1).json.contains("with_text"))
        // --with-text is a stage-2 option: stage 1 refuses it with the flag's name.
        var r = TrainRequest(modelPath: "", dataDirs: ["d"], out: "o.safetensors")
        r.withText = true
        XCTAssertThrowsError(try r.validate()) { XCTAssertTrue("\($0)".contains("--with-text"), "\($0)") }
        r.stage = 2; r.towerPath = "t.gguf"
        XCTAssertNoThrow(try r.validate())
        XCTAssertEqual(try r.options().withText, true)
    }

    /// `--val-split prompt`: copies of one prompt (with answers of other lengths) all fall on one
    /// side, where the id split scatters them over both; the answers do not enter the key, the
    /// images do; the option is recorded for --resume and checked by name.
    func testPromptSplitKeepsRepeatedPromptsOnOneSide() throws {
        let dir = scratchDir("promptsplit")
        // 12 prompts, 5 copies each; a copy's answer length differs, so only its prompt repeats.
        let recs = (0..<60).map { i in world.record(index: i, length: 14 + i / 12, promptLen: 6, seed: UInt64(500 + i % 12)) }
        try world.writeDataset(recs, to: dir)
        let data = try TrainingData(dirs: [dir])
        func straddling(_ sp: (train: [Int], validation: [Int])) -> Int {
            let t = Set(sp.train.map { data.samples[$0].promptKey }), v = Set(sp.validation.map { data.samples[$0].promptKey })
            return t.intersection(v).count
        }
        XCTAssertEqual(Set(data.samples.map(\.promptKey)).count, 12, "the key is the prompt, not the answer")
        let byId = data.split(validationFraction: 0.3, stage: 1)
        XCTAssertGreaterThan(straddling(byId), 0, "the fixture must show the id split's leak")
        let byPrompt = data.split(validationFraction: 0.3, stage: 1, by: .prompt)
        XCTAssertEqual(straddling(byPrompt), 0)
        XCTAssertEqual(data.repeatedPrompts(train: byPrompt.train, validation: byPrompt.validation), 0)
        XCTAssertEqual(data.repeatedPrompts(train: byId.train, validation: byId.validation),
                       byId.validation.filter { v in byId.train.contains { data.samples[$0].promptKey == data.samples[v].promptKey } }.count)
        XCTAssertGreaterThan(data.repeatedPrompts(train: byId.train, validation: byId.validation), 0)
        XCTAssertFalse(byPrompt.validation.isEmpty)
        XCTAssertFalse(byPrompt.train.isEmpty)
        XCTAssertEqual(byPrompt.validation.count % 5, 0, "whole groups of 5 copies")
        XCTAssertEqual(byPrompt.train.count + byPrompt.validation.count, 60)
        // The same prompt with another image is another request.
        var withImage = recs[0]
        withImage.images = [ImageRef(path: "a.png", sha256: "aa")]
        var otherImage = withImage
        otherImage.images = [ImageRef(path: "a.png", sha256: "bb")]
        XCTAssertNotEqual(TrainingData.promptKey(withImage), TrainingData.promptKey(recs[0]))
        XCTAssertNotEqual(TrainingData.promptKey(withImage), TrainingData.promptKey(otherImage))
        XCTAssertEqual(TrainingData.promptKey(recs[0]), TrainingData.promptKey(recs[12]))
        // The trainer uses the rule in its options, and the options record it (absent for id).
        var o = options(steps: 1)
        o.validationFraction = 0.3
        o.validationSplit = .prompt
        let t = try makeTrainer(data, options: o)
        XCTAssertEqual(t.trainIndices, byPrompt.train)
        XCTAssertEqual(t.validationIndices, byPrompt.validation)
        XCTAssertTrue(o.json.contains("\"validation_split\":\"prompt\""), o.json)
        XCTAssertFalse(options(steps: 1).json.contains("validation_split"))
        var r = TrainRequest(modelPath: "", dataDirs: ["d"], out: "o.safetensors")
        XCTAssertNil(try r.options().validationSplit)
        r.valSplit = "prompt"
        XCTAssertEqual(try r.options().validationSplit, .prompt)
        r.valSplit = "hash"
        XCTAssertThrowsError(try r.validate()) { XCTAssertTrue("\($0)".contains("--val-split"), "\($0)") }
    }

    /// 8 uninterrupted steps equal 4 steps, a checkpoint round trip, and 4 more: bit for bit.
    func testResumeEqualsUninterrupted() throws {
        let data = try dataset("resume")
        let o = options(steps: 8)
        let a = try makeTrainer(data, options: o)
        let full = try (0..<8).map { _ in try a.trainStep().stats }
        let b = try makeTrainer(data, options: o)
        let firstHalf = try (0..<4).map { _ in try b.trainStep().stats }
        let path = scratchDir("resume-ck") + "/draft.train.safetensors"
        let meta = CheckpointMeta(config: b.model.config, targetSHA256: "t", towerSHA256: nil, step: b.step, seed: o.seed,
                                  dataManifestSHA256: data.manifestSHA256, trainArgs: o.json, rngState: "x", dataCursor: b.cursor)
        var layout = b.model.layout; layout.values = b.params
        try Checkpoint.save(to: path, params: layout, d2t: b.model.head.d2t, meta: meta, optimizer: (b.m, b.v))
        let ck = try Checkpoint.load(path)
        XCTAssertEqual(ck.meta, meta)
        XCTAssertEqual(ck.d2t, b.model.head.d2t)
        let c = try makeTrainer(data, options: o)
        c.restore(params: ck.params.values, m: ck.m!, v: ck.v!, step: ck.meta.step, cursor: ck.meta.dataCursor!)
        let secondHalf = try (0..<4).map { _ in try c.trainStep().stats }
        XCTAssertEqual(firstHalf + secondHalf, full)
        XCTAssertEqual(c.params, a.params)
    }

    /// -t 2 runs a step's sequences on two threads with a gradient buffer each: the same loss
    /// curve as one thread up to float summation order, bit-identical between runs, and a
    /// resumed two-thread run repeats an uninterrupted one.
    func testTwoThreadsAreDeterministicAndResumable() throws {
        let data = try dataset("threads")
        let o = options(steps: 6)
        func trainer() throws -> Trainer { let t = try makeTrainer(data, options: o); t.threads = 2; return t }
        let one = try makeTrainer(data, options: o)
        let single = try (0..<6).map { _ in try one.trainStep().stats }
        let a = try trainer(), b = try trainer()
        let twoA = try (0..<6).map { _ in try a.trainStep().stats }
        let twoB = try (0..<6).map { _ in try b.trainStep().stats }
        XCTAssertEqual(twoA, twoB)
        XCTAssertEqual(a.params, b.params)
        for (x, y) in zip(single, twoA) {
            XCTAssertEqual(x.rows, y.rows); XCTAssertEqual(x.tokens, y.tokens)
            XCTAssertEqual(x.loss, y.loss, accuracy: 1e-3 * max(1, abs(x.loss)))
        }
        let c = try trainer()
        _ = try (0..<3).map { _ in try c.trainStep() }
        let d = try trainer()
        d.restore(params: c.params, m: c.m, v: c.v, step: c.step, cursor: c.cursor)
        let rest = try (0..<3).map { _ in try d.trainStep().stats }
        XCTAssertEqual(rest, Array(twoA[3...]))
        XCTAssertEqual(d.params, a.params)
    }

    func testBrokenAndMismatchedCheckpointsAreRejected() throws {
        let dir = scratchDir("broken")
        var p = DraftParameters(config: world.config(vocab: 12, numQ: 0))
        p.initialise(seed: 1)
        let d2t: [Int32] = (0..<12).map { Int32($0) }
        let meta = CheckpointMeta(config: p.config, targetSHA256: "t", towerSHA256: nil, step: 3, seed: 1, dataManifestSHA256: "m", trainArgs: "{}")
        let good = dir + "/good.safetensors"
        try Checkpoint.save(to: good, params: p, d2t: d2t, meta: meta, optimizer: (p.values, p.values))
        XCTAssertNoThrow(try Checkpoint.load(good))
        let bytes = [UInt8](FileManager.default.contents(atPath: good)!)

        func rejects(_ name: String, _ b: [UInt8], mentioning: String, file: StaticString = #filePath, line: UInt = #line) {
            let path = dir + "/\(name).safetensors"
            _ = FileManager.default.createFile(atPath: path, contents: Data(b))
            XCTAssertThrowsError(try Checkpoint.load(path), name, file: file, line: line) { e in
                XCTAssertTrue("\(e)".contains(mentioning), "\(name): \(e)", file: file, line: line)
            }
        }
        rejects("truncated", Array(bytes.prefix(bytes.count - 100)), mentioning: "truncated")
        var huge = bytes; huge[0] = 0xFF; huge[1] = 0xFF; huge[2] = 0xFF; huge[3] = 0x7F
        rejects("header-past-end", huge, mentioning: "header")

        func written(_ edit: (inout SafeTensorsWriter) throws -> Void, metadata: [String: String] = [:]) throws -> [UInt8] {
            var md: [String: String] = ["format": "specdec-draft", "version": "1", "config": Checkpoint.json(p.config), "target_sha256": "t",
                                        "step": "3", "seed": "1", "data_manifest_sha256": "m", "train_args": "{}"]
            for (k, v) in metadata { md[k] = v }
            var w = SafeTensorsWriter(metadata: md)
            for s in p.slots { try w.add(s.name, floats: p.tensor(s.name)!, shape: s.shape) }
            try w.add("d2t", int32s: d2t, shape: [12])
            try edit(&w)
            return w.serialize()
        }
        var bad = try written({ _ in }, metadata: ["format": "something-else"])
        rejects("format", bad, mentioning: "format")
        bad = try written({ _ in }, metadata: ["version": "2"])
        rejects("version", bad, mentioning: "version")
        bad = try written({ _ in }, metadata: ["config": "{\"width\": 3}"])
        rejects("config", bad, mentioning: "config")
        // Config says d = 16, the tensors are of another draft.
        var other = DraftParameters(config: world.config(vocab: 12, numQ: 3))
        other.initialise(seed: 1)
        bad = try written({ _ in }, metadata: ["config": Checkpoint.json(other.config)])
        rejects("missing-adapter", bad, mentioning: "adapter.queries")
        // A wrong shape.
        var w = SafeTensorsWriter(metadata: ["format": "specdec-draft", "version": "1", "config": Checkpoint.json(p.config), "target_sha256": "t",
                                             "step": "3", "seed": "1", "data_manifest_sha256": "m"])
        for s in p.slots { try w.add(s.name, floats: p.tensor(s.name)!, shape: s.name == "fc.weight" ? [s.shape[1], s.shape[0]] : s.shape) }
        rejects("shape", w.serialize(), mentioning: "fc.weight")
        // Incomplete optimizer state.
        bad = try written({ w in try w.add("optimizer.m.fc.weight", floats: p.tensor("fc.weight")!, shape: p.slot("fc.weight")!.shape) })
        rejects("optimizer", bad, mentioning: "optimizer")
        // NaN weights.
        var nanP = p; nanP.set("layers.0.post_attention_layernorm.weight", [Float](repeating: .nan, count: 16))
        try Checkpoint.save(to: dir + "/nan.safetensors", params: nanP, d2t: d2t, meta: meta, optimizer: nil)
        XCTAssertThrowsError(try Checkpoint.load(dir + "/nan.safetensors"))
        // d2t out of range.
        var cfg = p.config; cfg.targetVocab = 40
        var p40 = DraftParameters(config: cfg); p40.values = p.values
        try Checkpoint.save(to: dir + "/d2t.safetensors", params: p40, d2t: d2t.map { $0 + 35 }, meta: meta, optimizer: nil)
        XCTAssertThrowsError(try Checkpoint.load(dir + "/d2t.safetensors")) { XCTAssertTrue("\($0)".contains("d2t")) }
    }

    /// The shipped f16 draft is the f32 weights rounded, without optimizer state.
    func testHalfPrecisionExport() throws {
        var p = DraftParameters(config: world.config(vocab: 12, numQ: 3))
        p.initialise(seed: 2)
        var meta = CheckpointMeta(config: p.config, targetSHA256: "t", towerSHA256: "tw", step: 1, seed: 2, dataManifestSHA256: "m", trainArgs: "{}")
        meta.acceptance = #"{"first": 0.5000, "decay": 0.5099}"#
        let path = scratchDir("f16") + "/d.safetensors"
        try Checkpoint.save(to: path, params: p, d2t: (0..<12).map { Int32($0) }, meta: meta, optimizer: nil, dtype: .F16)
        let ck = try Checkpoint.load(path)
        XCTAssertNil(ck.m)
        for (a, b) in zip(ck.params.values, p.values) { XCTAssertEqual(a, b, accuracy: abs(b) * 1e-3 + 1e-6) }
        XCTAssertEqual(ck.meta.towerSHA256, "tw")
        XCTAssertEqual(try SafeTensorsFile(path: path).metadata["acceptance"], meta.acceptance)
    }
}
