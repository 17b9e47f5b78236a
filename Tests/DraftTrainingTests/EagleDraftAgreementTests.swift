import DataSynth
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
    func testTrainerForwardMatchesEagleDraftAccept() throws {
        let path = TestPaths.model
        guard FileManager.default.fileExists(atPath: path) else { throw XCTSkip("model \(path) missing (scripts/setup.sh)") }
        let target = try LlamaModel(path: path, threads: 1)
        let tc = target.config
        let v = 256
        let d2t: [Int32] = (0..<v).map { Int32(($0 * 181) % tc.vocabSize) }
        var cfg = DraftConfig(width: tc.width, heads: tc.headCount, kvHeads: tc.kvHeadCount, headDim: tc.headDim, ffn: tc.ffnWidth,
                                            rmsEps: tc.rmsEpsilon, ropeBase: tc.ropeBase, vocab: v, targetVocab: tc.vocabSize, headTied: false, numQ: 0)
        cfg.arch = "eagle2"
        var p = DraftParameters(config: cfg)
        p.initialise(seed: 3)
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
        let tokens: [Int32] = (0..<n).map { _ in Int32(rng.next() % UInt64(tc.vocabSize)) }
        let h: [Float] = (0..<(n * tc.width)).map { _ in (rng.nextUnit() * 2 - 1) * 2 }
        let rec = SampleRecord(index: 0, id: "a", messages: [], stopReasons: [], tokens: tokens, lossMask: [UInt8](repeating: 1, count: n),
                               imageMask: [UInt8](repeating: 0, count: n), hidden: HiddenStates.encode(h, rows: n, width: tc.width, as: .fp16))
        let seq = try SequenceBuilder(width: tc.width, numQ: 0, maxLength: 100, noise: 0)
            .build(rec, embedder: target.weights.tokenEmbedding, images: nil, datasetDir: "", rng: nil)
        let model = DraftModel(layout: p, head: TargetHead(rows: v, width: tc.width, weights: headRows, d2t: d2t))
        let z = model.logits(seq, params: p.values)
        let last = Array(z[((seq.count - 1) * v)...])
        let mx = last.max()!
        let lse = log(last.reduce(0.0) { $0 + exp(Double($1 - mx)) }) + Double(mx)

        let draft = try EagleDraft(path: file, target: target, matrixType: .f32)
        let feats = rec.hidden.floats()
        let cands = try draft.accept(features: Array(feats[0..<((n - 1) * tc.width)]), nextTokens: Array(tokens[1...]), images: [], topK: 5)
        XCTAssertEqual(cands.count, 5)
        let best = (0..<v).max { last[$0] < last[$1] }!
        XCTAssertEqual(cands[0].token, d2t[best])
        for c in cands {
            let row = d2t.firstIndex(of: c.token)!
            XCTAssertEqual(Double(c.logProb), Double(last[row]) - lse, accuracy: 1e-3, "token \(c.token)")
        }
    }
}
