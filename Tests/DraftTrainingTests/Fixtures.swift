import Draft
import DataSynth
import Shards
import Foundation
@testable import DraftTraining

/// A tiny synthetic "target" and dataset: random embeddings and head, hidden states that are a
/// fixed function of the next token (so the draft's task is learnable), image spans with
/// synthetic embeddings.
struct TinyWorld {
    let d: Int, vocab: Int
    let embeddings: [Float]
    let headAll: [Float]          // vocab × d, the target's output matrix
    let hiddenOf: [Float]         // vocab × d: h_t = hiddenOf[x_{t+1}] (+ a little position noise)

    init(d: Int = 16, vocab: Int = 40, seed: UInt64 = 11) {
        self.d = d; self.vocab = vocab
        var r = TestRNG(seed)
        embeddings = r.uniform(vocab * d)
        hiddenOf = r.uniform(vocab * d, scale: 1.5)
        // The target's head favours token x at h = hiddenOf[x], so (as with greedy data) the
        // target's argmax after position t is the sample's token t+1.
        headAll = hiddenOf.map { $0 * 2 }
    }

    var embedder: FloatEmbedder { FloatEmbedder(width: d, table: embeddings) }

    func head(d2t: [Int32]) -> TargetHead {
        var rows: [Float] = []
        for t in d2t { rows += headAll[(Int(t) * d)..<((Int(t) + 1) * d)] }
        return TargetHead(rows: d2t.count, width: d, weights: rows, d2t: d2t)
    }

    func config(vocab v: Int, numQ: Int) -> DraftConfig {
        DraftConfig(width: d, heads: 2, kvHeads: 1, headDim: d / 2, ffn: 24, rmsEps: 1e-5, ropeBase: 10_000,
                    vocab: v, targetVocab: vocab, headTied: v == vocab, numQ: numQ)
    }

    /// A sample: a prompt of `promptLen` tokens, an optional image span of `imageRows` at `imageAt`,
    /// then an answer following a fixed cycle through part of the vocabulary.
    func record(index: Int, length: Int, promptLen: Int, image: (at: Int, rows: Int)? = nil, seed: UInt64) -> SampleRecord {
        var r = TestRNG(seed)
        var tokens: [Int32] = []
        var lossMask: [UInt8] = [], imageMask: [UInt8] = []
        let start = Int(r.s.next() % 7)
        for t in 0..<length {
            let inImage = image.map { t >= $0.at && t < $0.at + $0.rows } ?? false
            let tok: Int32 = inImage ? -1 : (t < promptLen ? Int32(r.s.next() % UInt64(vocab)) : Int32((start + 3 * t) % 17 + 2))
            tokens.append(tok)
            lossMask.append(t >= promptLen && !inImage ? 1 : 0)
            imageMask.append(inImage ? 1 : 0)
        }
        var h = [Float](repeating: 0, count: length * d)
        for t in 0..<length {
            let nx = t + 1 < length ? max(Int(tokens[t + 1]), 0) : 1
            for i in 0..<d { h[t * d + i] = hiddenOf[nx * d + i] + 0.05 * Float((t * 7 + i) % 5) }
        }
        let images = image.map { [ImageRef(path: "img\($0.rows).png", sha256: "synthetic-\($0.rows)")] } ?? []
        return SampleRecord(index: index, id: "sample-\(index)", messages: [Message(role: "user", content: "x")], stopReasons: ["eos"],
                            tokens: tokens, lossMask: lossMask, imageMask: imageMask, images: images,
                            hidden: HiddenStates.encode(h, rows: length, width: d, as: .fp16))
    }

    /// Writes records as a one-shard dataset folder (manifest included). With `auxLayers` the
    /// header is version 2 naming those layers (of a 30-layer model, so EAGLE-3's ids exist).
    func writeDataset(_ records: [SampleRecord], auxLayers: [Int]? = nil, to dir: String) throws {
        try FileManager.default.createDirectory(atPath: dir, withIntermediateDirectories: true)
        let model = ModelInfo(file: "tiny.gguf", sha256: "tiny-sha", architecture: "llama", width: d, vocabSize: vocab,
                              layers: auxLayers == nil ? 1 : 30)
        let header = ShardHeader(model: model, source: SourceInfo(kind: "generate-text", seed: 0), generation: GenerationSettings(),
                                 hidden: .fp16, zstdLevel: 3, samples: records.count, shard: ShardSpec(index: 0, count: 1),
                                 auxLayers: auxLayers)
        let path = (dir as NSString).appendingPathComponent(ShardSpec(index: 0, count: 1).shardFileName)
        let w = try ShardWriter(path: path, header: header, durable: false)
        for r in records { try w.append(r) }
        try w.finish()
        let entry = try DatasetManifest.Entry(reader: try ShardReader(path: path), path: path)
        try DatasetManifest(samples: records.count, shards: [entry]).write(to: (dir as NSString).appendingPathComponent("manifest.json"))
    }
}

/// Synthetic image embeddings keyed by the image path (rows taken from the name).
final class FakeImages: ImageEmbedder {
    let d: Int
    init(d: Int) { self.d = d }
    func embeddings(for image: ImageRef, datasetDir: String) throws -> (rows: Int, data: [Float]) {
        let rows = Int(image.path.dropFirst(3).dropLast(4))!
        var r = TestRNG(UInt64(rows) * 977)
        return (rows, r.uniform(rows * d))
    }
}

func scratchDir(_ name: String) -> String {
    let dir = NSTemporaryDirectory() + "draft-training-\(name)-\(getpid())"
    try? FileManager.default.removeItem(atPath: dir)
    try! FileManager.default.createDirectory(atPath: dir, withIntermediateDirectories: true)
    return dir
}

extension TinyWorld {
    /// A tiny vispec draft with random (not initial) weights, so that every path carries gradient.
    func randomDraft(numQ: Int, seed: UInt64) -> (DraftModel, [Float]) {
        let d2t: [Int32] = (0..<12).map { Int32($0 * 3 % 40) }
        var p = DraftParameters(config: config(vocab: 12, numQ: numQ))
        p.initialise(seed: seed)
        var r = TestRNG(seed + 1)
        for s in p.slots { p.set(s.name, r.uniform(s.count, scale: s.shape.count == 1 ? 0.5 : 0.6).map { s.shape.count == 1 ? $0 + 1 : $0 }) }
        return (DraftModel(layout: p, head: head(d2t: d2t)), p.values)
    }

    /// A 14-entry sequence with a 4-row image at entry 2.
    func imageSequence(numQ: Int) throws -> DraftSequence {
        let rec = record(index: 0, length: 14, promptLen: 6, image: (at: 2, rows: 4), seed: 5)
        let b = SequenceBuilder(width: d, numQ: numQ, maxLength: 100, noise: 0)
        return try b.build(rec, embedder: embedder, images: FakeImages(d: d), datasetDir: "", rng: nil)
    }
}
