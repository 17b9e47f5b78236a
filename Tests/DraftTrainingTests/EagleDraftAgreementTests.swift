import DataSynth
import Shards
import Draft
import Foundation
import Kernels
import Llama
import TestSupport
import XCTest
@testable import DraftTraining

/// The trainer's forward and the inference draft (`EagleDraft.accept`) read the same checkpoint
/// and must give the same distribution for the next token.
final class EagleDraftAgreementTests: XCTestCase {
    /// Fixed image rows, whatever the reference (the tower is not under test here).
    final class StubImages: ImageEmbedder {
        let rows: Int, data: [Float]
        init(rows: Int, data: [Float]) { self.rows = rows; self.data = data }
        func embeddings(for image: ImageRef, datasetDir: String) throws -> (rows: Int, data: [Float]) { (rows, data) }
    }

    func testTrainerForwardMatchesEagleDraftAccept() throws { try agreement(imageSpan: nil) }

    /// Without an adapter (stage 2 with --num-q 0, ViSpec's EAGLE baseline) image rows are the
    /// draft's inputs at their positions, in training as at decode time.
    func testImageRowsWithoutAdapterMatchEagleDraftAccept() throws { try agreement(imageSpan: 2..<5) }

    /// K = 1: the image span leaves no entry; only its global feature reaches the text after it.
    func testGlobalFeatureOnlyMatchesEagleDraftAccept() throws { try agreement(imageSpan: 2..<5, numQ: 1) }

    /// The ablation without the global feature: compressed tokens only, in training as at decode
    /// time; and leaving the feature out changes the draft (the flag is not a no-op).
    func testWithoutGlobalFeatureMatchesEagleDraftAccept() throws {
        let without = try agreement(imageSpan: 2..<5, numQ: 3, globalFeature: false)
        let with = try agreement(imageSpan: 2..<5, numQ: 3, globalFeature: true)
        XCTAssertNotEqual(without, with)
    }

    /// Returns the trainer's logits at the last entry.
    @discardableResult
    func agreement(imageSpan: Range<Int>?, numQ: Int = 0, globalFeature: Bool = true) throws -> [Float] {
        let path = TestPaths.model
        guard FileManager.default.fileExists(atPath: path) else { throw XCTSkip("model \(path) missing (scripts/setup.sh)") }
        let target = try LlamaModel(path: path, threads: 1)
        let tc = target.config
        let v = 256
        let d2t: [Int32] = (0..<v).map { Int32(($0 * 181) % tc.vocabSize) }
        var cfg = DraftConfig(width: tc.width, heads: tc.headCount, kvHeads: tc.kvHeadCount, headDim: tc.headDim, ffn: tc.ffnWidth,
                                            rmsEps: tc.rmsEpsilon, ropeBase: tc.ropeBase, vocab: v, targetVocab: tc.vocabSize, headTied: false, numQ: numQ)
        if !globalFeature { cfg.globalFeature = false }
        var p = DraftParameters(config: cfg)
        p.initialise(seed: 3)
        if numQ > 0 {
            // img_fc away from its initial [I ; 0], so that the global feature counts.
            var g = SplitMix64(seed: 11)
            p.set("img_fc.weight", (0..<(2 * tc.width * tc.width)).map { _ in (g.nextUnit() * 2 - 1) * 0.05 })
        }
        p.set("norm.weight", target.weights.outputNorm)
        var headRows = [Float](repeating: 0, count: v * tc.width)
        headRows.withUnsafeMutableBufferPointer { for i in 0..<v { target.weights.output.dequantize(row: Int(d2t[i]), into: $0.baseAddress! + i * tc.width) } }
        p.set("lm_head.weight", headRows)
        let file = NSTemporaryDirectory() + "draft-agree-\(getpid()).safetensors"
        defer { try? FileManager.default.removeItem(atPath: file) }
        let meta = CheckpointMeta(config: cfg, targetSHA256: "x", towerSHA256: nil, step: 0, seed: 3, dataManifestSHA256: "m", trainArgs: "{}")
        try Checkpoint.save(to: file, params: p, d2t: d2t, meta: meta, optimizer: nil, dtype: .F32)

        // A sample of 10 positions with feature rows of a realistic scale.
        let n = 10
        var rng = SplitMix64(seed: 5)
        var tokens: [Int32] = (0..<n).map { _ in Int32(rng.next() % UInt64(tc.vocabSize)) }
        let h: [Float] = (0..<(n * tc.width)).map { _ in (rng.nextUnit() * 2 - 1) * 2 }
        var imageMask = [UInt8](repeating: 0, count: n)
        var spans: [DraftImageSpan] = [], refs: [ImageRef] = []
        var stub: StubImages? = nil
        if let r = imageSpan {
            for t in r { tokens[t] = -1; imageMask[t] = 1 }
            let e: [Float] = (0..<(r.count * tc.width)).map { _ in rng.nextUnit() * 2 - 1 }
            stub = StubImages(rows: r.count, data: e)
            refs = [ImageRef(path: "img.png", sha256: "0")]
            spans = [DraftImageSpan(start: r.lowerBound, rows: r.count, embeddings: e)]
        }
        let rec = SampleRecord(index: 0, id: "a", messages: [], stopReasons: [], tokens: tokens, lossMask: [UInt8](repeating: 1, count: n),
                               imageMask: imageMask, images: refs, hidden: HiddenStates.encode(h, rows: n, width: tc.width, as: .fp16))
        let seq = try SequenceBuilder(width: tc.width, numQ: numQ, maxLength: 100, noise: 0, globalFeature: cfg.usesGlobalFeature)
            .build(rec, embedder: target.weights.tokenEmbedding, images: stub, datasetDir: "", rng: nil)
        let dropped = numQ == 0 ? 0 : (imageSpan?.count ?? 0) - min(numQ - 1, imageSpan?.count ?? 0)
        XCTAssertEqual(seq.count, n - 1 - dropped, "without an adapter every position keeps its entry; with one, only the span's last K−1")
        let model = DraftModel(layout: p, head: TargetHead(rows: v, width: tc.width, weights: headRows, d2t: d2t))
        let z = model.logits(seq, params: p.values)
        let last = Array(z[((seq.count - 1) * v)...])
        let mx = last.max()!
        let lse = log(last.reduce(0.0) { $0 + exp(Double($1 - mx)) }) + Double(mx)

        let draft = try EagleDraft(path: file, target: target, matrixType: .f32)
        let feats = rec.hidden.floats()
        let cands = try draft.accept(features: Array(feats[0..<((n - 1) * tc.width)]), nextTokens: Array(tokens[1...]), images: spans, topK: 5)
        XCTAssertEqual(cands.count, 5)
        let best = (0..<v).max { last[$0] < last[$1] }!
        XCTAssertEqual(cands[0].token, d2t[best])
        for c in cands {
            let row = d2t.firstIndex(of: c.token)!
            XCTAssertEqual(Double(c.logProb), Double(last[row]) - lse, accuracy: 1e-3, "token \(c.token)")
        }
        return last
    }

    /// `--init-from-target-layer`: the draft's layer holds the target layer's weights, dequantized
    /// row by row; −1 is the last layer; a layer out of range or an EAGLE-3 layout is refused.
    func testInitFromTargetLayerCopiesItsWeights() throws {
        let path = TestPaths.model
        guard FileManager.default.fileExists(atPath: path) else { throw XCTSkip("model \(path) missing (scripts/setup.sh)") }
        let target = try LlamaModel(path: path, threads: 1)
        let tc = target.config
        let cfg = DraftConfig(width: tc.width, heads: tc.headCount, kvHeads: tc.kvHeadCount, headDim: tc.headDim, ffn: tc.ffnWidth,
                              rmsEps: tc.rmsEpsilon, ropeBase: tc.ropeBase, vocab: 64, targetVocab: tc.vocabSize, headTied: false, numQ: 2)
        var p = DraftParameters(config: cfg)
        p.initialise(seed: 1)
        let before = p.tensor("adapter.q_proj.weight")
        try copyTargetLayer(-1, of: target, into: &p, file: "test")
        let last = target.weights.layers[tc.layerCount - 1]
        for (name, m) in [("self_attn.k_proj", last.wk), ("mlp.down_proj", last.down)] {
            let t = try XCTUnwrap(p.tensor("layers.0.\(name).weight"))
            var row = [Float](repeating: 0, count: m.cols)
            for r in [0, m.rows / 2, m.rows - 1] {
                row.withUnsafeMutableBufferPointer { m.dequantize(row: r, into: $0.baseAddress!) }
                XCTAssertEqual(Array(t[r * m.cols ..< (r + 1) * m.cols]), row, "\(name) row \(r)")
            }
        }
        XCTAssertEqual(p.tensor("layers.0.post_attention_layernorm.weight"), last.ffnNorm)
        XCTAssertEqual(p.tensor("adapter.q_proj.weight"), before, "only the decoder layer changes")
        XCTAssertThrowsError(try copyTargetLayer(tc.layerCount, of: target, into: &p, file: "test"))
        var e3 = DraftParameters(config: DraftConfig.eagle3(target: tc, vocab: 64))
        XCTAssertThrowsError(try copyTargetLayer(0, of: target, into: &e3, file: "test")) { error in
            XCTAssertTrue("\(error)".contains("EAGLE-3"), "\(error)")
        }
    }
}
