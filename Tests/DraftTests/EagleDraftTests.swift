import Foundation
import XCTest
import Kernels
import Llama
import SafeTensors
import TestSupport
import Draft

/// The real SmolLM2 target (width 576, 9 heads, 3 kv heads, ff 1536, vocab 49152), loaded once.
enum Target {
    static let model: LlamaModel = { try! LlamaModel(path: TestPaths.model, threads: 2) }()
    /// The same weights in the exact (f32) precision, whose float kernels the sgemm path matches.
    static let f32Model: LlamaModel = {
        let m = try! LlamaModel(path: TestPaths.model, threads: 2)
        m.activationQuant = .none
        return m
    }()
    /// Some token ids and the target's final-norm hidden states at them.
    static let tokens: [Int32] = [1, 9690, 198, 2683, 359, 253, 5356, 5646, 11173, 3365, 3717, 314, 1789, 28, 2114, 30,
                                  2, 198, 1, 520, 9531, 198, 504, 3258, 1242, 314, 260, 1789, 16, 2683, 359,
                                  5356, 5646, 11173, 3365, 3717, 314, 1789, 28, 2114, 30, 198, 504, 3258, 1242, 314,
                                  260, 1789, 16, 2683, 359]
    static let hidden: [Float] = {
        let s = model.makeSession(contextSize: 64)
        return try! s.forward(tokens: tokens, logits: .none).hidden
    }()
    static var d: Int { model.config.width }
}

final class EagleDraftTests: XCTestCase {
    static let vocab = 2048
    static let d2t: [Int32] = (0..<vocab).map { Int32(($0 * 7919) % 49152) }

    func weights(numQ: Int = 0, seed: UInt64 = 7) throws -> DraftWeights {
        try DraftWeights.random(for: Target.model, vocab: Self.vocab, d2t: Self.d2t, numQ: numQ, seed: seed)
    }

    func tmpPath(_ name: String) -> String {
        let dir = FileManager.default.temporaryDirectory.appendingPathComponent("draft-tests-\(getpid())")
        try? FileManager.default.createDirectory(at: dir, withIntermediateDirectories: true)
        return dir.appendingPathComponent(name).path
    }

    /// Accepts positions `range` of the reference sequence.
    func accept(_ dr: EagleDraft, _ range: Range<Int>, images: [DraftImageSpan] = [], topK: Int = 4) throws -> [DraftCandidate] {
        let d = Target.d
        return try dr.accept(features: Array(Target.hidden[(range.lowerBound * d)..<(range.upperBound * d)]),
                             nextTokens: range.map { Target.tokens[$0 + 1] }, images: images, topK: topK)
    }

    /// A fixed tree of three levels: returns every node's candidates.
    func growTree(_ dr: EagleDraft, root: [DraftCandidate]) throws -> (tokens: [Int32], parents: [Int], out: [[DraftCandidate]]) {
        var tokens: [Int32] = [], parents: [Int] = [], out: [[DraftCandidate]] = []
        let l1 = root.prefix(3).map(\.token)
        out += try dr.expand(tokens: l1, parents: [-1, -1, -1], topK: 4)
        tokens += l1; parents += [-1, -1, -1]
        let l2: [Int32] = [out[0][0].token, out[0][1].token, out[2][0].token, out[1][3].token]
        let p2 = [0, 0, 2, 1]
        out += try dr.expand(tokens: l2, parents: p2, topK: 4)
        tokens += l2; parents += p2
        let l3: [Int32] = [out[3][0].token, out[5][2].token, 77]
        let p3 = [3, 5, 3]
        out += try dr.expand(tokens: l3, parents: p3, topK: 4)
        tokens += l3; parents += p3
        return (tokens, parents, out)
    }

    func testExpandEqualsPathByPath() throws {
        for type in [QuantType.f16, .q8_0, .f32] {
            let w = try weights()
            let a = try EagleDraft(weights: w, target: Target.model, matrixType: type)
            let root = try accept(a, 0..<20)
            let tree = try growTree(a, root: root)
            let b = try EagleDraft(weights: w, target: Target.model, matrixType: type)
            for i in 0..<tree.tokens.count {
                var path: [Int] = []
                var j = i
                while j >= 0 { path.insert(j, at: 0); j = tree.parents[j] }
                b.reset()
                XCTAssertEqual(try accept(b, 0..<20), root)
                var last: [DraftCandidate] = []
                for (k, node) in path.enumerated() {
                    last = try b.expand(tokens: [tree.tokens[node]], parents: [k - 1], topK: 4)[0]
                }
                XCTAssertEqual(last, tree.out[i], "\(type) node \(i) (path \(path))")
            }
            // The whole tree in one call (parents inside the call) gives the same nodes.
            let one = try EagleDraft(weights: w, target: Target.model, matrixType: type)
            XCTAssertEqual(try accept(one, 0..<20), root)
            XCTAssertEqual(try one.expand(tokens: tree.tokens, parents: tree.parents, topK: 4), tree.out, "\(type) one call")
            // The next accept discards the tree: same as never having drafted.
            let c = try EagleDraft(weights: w, target: Target.model, matrixType: type)
            _ = try accept(c, 0..<20)
            XCTAssertEqual(try accept(a, 20..<24), try accept(c, 20..<24), "\(type)")
        }
    }

    func testAcceptInPiecesEqualsAtOnce() throws {
        let w = try weights()
        let a = try EagleDraft(weights: w, target: Target.model, contextSize: 8)   // grows the cache too
        let b = try EagleDraft(weights: w, target: Target.model)
        // 48 entries at once: more than `blasMinimumBatch`, which in the q8 mode still runs on the
        // batch-invariant int8 kernels (sgemm is the f32 mode's prompt path only), so bit for bit.
        let whole = try accept(a, 0..<48)
        _ = try accept(b, 0..<11)
        _ = try accept(b, 11..<12)
        let pieces = try accept(b, 12..<48)
        XCTAssertEqual(whole, pieces)
        XCTAssertEqual(a.acceptedPositions, 48)
        XCTAssertEqual(a.entryPositions, Array(0..<48))
        XCTAssertEqual(try a.expand(tokens: [5, 6], parents: [-1, -1], topK: 3), try b.expand(tokens: [5, 6], parents: [-1, -1], topK: 3))
        XCTAssertEqual(whole.count, 4)
        for (x, y) in zip(whole, whole.dropFirst()) { XCTAssertGreaterThanOrEqual(x.logProb, y.logProb) }
        XCTAssertTrue(whole.allSatisfy { $0.logProb <= 0 && Self.d2t.contains($0.token) })
    }

    /// A prompt-sized accept through sgemm agrees with the batch-invariant float kernels closely
    /// (the f32 precision: the q8 kernels round differently by design).
    func testLargeAcceptThroughBLAS() throws {
        let w = try weights()
        let n = 48, d = Target.d
        var rng = TestRNG(seed: 8)
        let feats = (0..<(n * d)).map { _ in rng.normal() }
        let toks = (0..<n).map { Int32(($0 * 131) % 40000 + 50) }
        let a = try EagleDraft(weights: w, target: Target.f32Model)
        let b = try EagleDraft(weights: w, target: Target.f32Model)
        b.blasMinimumBatch = .max
        let ca = try a.accept(features: feats, nextTokens: toks, images: [], topK: 5)
        let cb = try b.accept(features: feats, nextTokens: toks, images: [], topK: 5)
        XCTAssertEqual(ca[0].token, cb[0].token)
        for (x, y) in zip(ca, cb) { XCTAssertEqual(x.logProb, y.logProb, accuracy: 1e-3) }
        let ea = try a.expand(tokens: [7, 8], parents: [-1, 0], topK: 3), eb = try b.expand(tokens: [7, 8], parents: [-1, 0], topK: 3)
        for (x, y) in zip(ea.joined(), eb.joined()) { XCTAssertEqual(x.logProb, y.logProb, accuracy: 1e-3) }
    }

    func testCheckpointRoundTrip() throws {
        let w = try weights(numQ: 4)
        let path = tmpPath("rt.safetensors")
        try w.save(to: path)
        let loaded = try DraftWeights.load(path: path, target: Target.model.config)
        XCTAssertEqual(loaded.tensors, w.tensors)
        XCTAssertEqual(loaded.d2t, w.d2t)
        XCTAssertEqual(loaded.config, w.config)
        XCTAssertEqual(loaded.metadata["seed"], "7")
        let a = try EagleDraft(weights: w, target: Target.model)
        let b = try EagleDraft(path: path, target: Target.model)
        let img = imageSpan(start: 3, rows: 6, seed: 1)
        XCTAssertEqual(try accept(a, 0..<20, images: [img]), try accept(b, 0..<20, images: [img]))
        XCTAssertEqual(try growTree(a, root: try accept(a, 20..<22)).out, try growTree(b, root: try accept(b, 20..<22)).out)
        // Same weights, same bytes; F16/BF16 checkpoints load as the rounded values.
        XCTAssertEqual(try w.writer().serialize(), try loaded.writer().serialize())
        for dt in [SafeTensorsDType.F16, .BF16] {
            try w.save(to: path, dtype: dt)
            let h = try DraftWeights.load(path: path, target: Target.model.config)
            let e = zip(h.fc, w.fc).map { abs($0 - $1) }.max()!
            XCTAssertLessThan(e, dt == .F16 ? 1e-3 : 1e-2, "\(dt)")
            XCTAssertEqual(h.imgFc, w.imgFc, "identity is exact in \(dt)")
        }
        // Tied head: no lm_head stored.
        let t = try DraftWeights.random(for: Target.model, headTied: true, seed: 3)
        try t.save(to: path)
        let tf = try SafeTensorsFile(path: path)
        XCTAssertFalse(tf.contains("lm_head.weight"))
        XCTAssertFalse(tf.contains("d2t"))
        let td = try EagleDraft(path: path, target: Target.model)
        XCTAssertEqual(try accept(td, 0..<5).count, 4)
    }

    /// A checkpoint written before the config recorded the RoPE dimensions and scale loads with
    /// the target's; one recorded for another RoPE names the field.
    func testCheckpointRoPEFields() throws {
        let w = try weights()
        let path = tmpPath("rope.safetensors")
        let full = try SafeTensorsFile(bytes: try w.writer().serialize())
        func write(config: String) throws {
            var meta = full.metadata
            meta["config"] = config
            var wr = SafeTensorsWriter(metadata: meta)
            for n in full.names { let i = try full.info(n); try wr.add(n, dtype: i.dtype, shape: i.shape, bytes: try full.bytes(n)) }
            try wr.write(to: path)
        }
        let json = w.config.json()
        XCTAssertTrue(json.contains("\"rope_dim\":\(Target.model.config.ropeDim)") && json.contains("\"rope_scale\":1"), json)
        try write(config: json.replacingOccurrences(of: #""rope_(dim|scale)":[^,}]*,"#, with: "", options: .regularExpression))
        XCTAssertFalse(try SafeTensorsFile(path: path).metadata["config"]!.contains("rope_dim"))
        XCTAssertEqual(try DraftWeights.load(path: path, target: Target.model.config).config, w.config)
        try write(config: json.replacingOccurrences(of: "\"rope_dim\":\(Target.model.config.ropeDim)", with: "\"rope_dim\":32"))
        XCTAssertThrowsError(try DraftWeights.load(path: path, target: Target.model.config)) { e in
            let s = "\(e)"
            XCTAssertTrue(s.contains(path) && s.contains("config.rope_dim") && s.contains("32"), s)
        }
    }

    func testBadCheckpointsAreClearErrors() throws {
        let path = tmpPath("bad.safetensors")
        // Another width.
        var c = DraftConfig(target: Target.model.config, vocab: 512)
        c.width = 64; c.heads = 4; c.kvHeads = 2; c.headDim = 16; c.ropeDim = 16; c.ffn = 128
        let other = try DraftWeights.random(config: c, seed: 1)
        try other.save(to: path)
        XCTAssertThrowsError(try DraftWeights.load(path: path, target: Target.model.config)) { e in
            let s = "\(e)"
            XCTAssertTrue(s.contains(path) && s.contains("width") && s.contains("another model"), s)
        }
        // A missing tensor.
        let w = try weights()
        var wr = SafeTensorsWriter(metadata: try w.writer().metadata)
        let full = try SafeTensorsFile(bytes: try w.writer().serialize())
        for n in full.names where n != "layers.0.mlp.up_proj.weight" {
            let i = try full.info(n)
            try wr.add(n, dtype: i.dtype, shape: i.shape, bytes: try full.bytes(n))
        }
        try wr.write(to: path)
        XCTAssertThrowsError(try DraftWeights.load(path: path, target: Target.model.config)) { e in
            let s = "\(e)"
            XCTAssertTrue(s.contains(path) && s.contains("layers.0.mlp.up_proj.weight") && s.contains("missing"), s)
        }
        // A misshapen tensor, a bad d2t, a NaN.
        func rewrite(_ name: String, shape: [Int], floats: [Float]? = nil, ints: [Int32]? = nil) throws {
            var wr = SafeTensorsWriter(metadata: full.metadata)
            for n in full.names where n != name {
                let i = try full.info(n); try wr.add(n, dtype: i.dtype, shape: i.shape, bytes: try full.bytes(n))
            }
            if let f = floats { try wr.add(name, floats: f, shape: shape) }
            if let v = ints { try wr.add(name, int32s: v, shape: shape) }
            try wr.write(to: path)
        }
        try rewrite("norm.weight", shape: [575], floats: [Float](repeating: 1, count: 575))
        XCTAssertThrowsError(try DraftWeights.load(path: path, target: Target.model.config)) { e in
            XCTAssertTrue("\(e)".contains("norm.weight") && "\(e)".contains("575"), "\(e)")
        }
        var bad = Self.d2t; bad[5] = 49152
        try rewrite("d2t", shape: [Self.vocab], ints: bad)
        XCTAssertThrowsError(try DraftWeights.load(path: path, target: Target.model.config)) { e in
            XCTAssertTrue("\(e)".contains("d2t") && "\(e)".contains("entry 5"), "\(e)")
        }
        var nan = [Float](repeating: 1, count: 576); nan[9] = .nan
        try rewrite("norm.weight", shape: [576], floats: nan)
        XCTAssertThrowsError(try DraftWeights.load(path: path, target: Target.model.config)) { e in
            XCTAssertTrue("\(e)".contains("norm.weight") && "\(e)".contains("element 9"), "\(e)")
        }
        // Not a checkpoint at all.
        try [UInt8](repeating: 0xff, count: 100).withUnsafeBytes { try Data($0).write(to: URL(fileURLWithPath: path)) }
        XCTAssertThrowsError(try DraftWeights.load(path: path, target: Target.model.config)) { e in
            XCTAssertTrue(e is SafeTensorsError && "\(e)".contains(path), "\(e)")
        }
    }

    func imageSpan(start: Int, rows: Int, seed: UInt64) -> DraftImageSpan {
        var r = TestRNG(seed: seed)
        return DraftImageSpan(start: start, rows: rows, embeddings: (0..<(rows * Target.d)).map { _ in r.normal() * 0.05 })
    }

    func testAdapterWithoutImageIsBitIdentical() throws {
        let w = try weights(numQ: 4)
        var plain = w
        plain.config = DraftConfig(target: Target.model.config, vocab: Self.vocab, numQ: 0)
        plain.adapter = nil; plain.imgFc = nil
        for type in [QuantType.f16, .q8_0] {
            let a = try EagleDraft(weights: w, target: Target.model, matrixType: type)
            let b = try EagleDraft(weights: plain, target: Target.model, matrixType: type)
            XCTAssertTrue(a.hasAdapter); XCTAssertFalse(b.hasAdapter)
            XCTAssertEqual(try accept(a, 0..<25), try accept(b, 0..<25))
            XCTAssertEqual(try growTree(a, root: try accept(a, 25..<27)).out, try growTree(b, root: try accept(b, 25..<27)).out)
        }
    }

    func testInitialImgFcLeavesFeaturesUnchanged() throws {
        let w = try weights(numQ: 4)
        // img_fc([f ; g]) = f exactly, for any g.
        let dr = try EagleDraft(weights: w, target: Target.model)
        var r = TestRNG(seed: 9)
        let d = Target.d
        var x0 = (0..<(3 * 2 * d)).map { _ in r.normal() }
        let before = x0
        try dr.applyImageFusion(&x0, rows: [0, 2], globals: [(0..<d).map { _ in r.normal() }, (0..<d).map { _ in r.normal() * 100 }])
        XCTAssertEqual(x0.map(\.bitPattern), before.map(\.bitPattern))
        // End to end: changing only the global feature (the last query acts on O[K−1] alone)
        // changes nothing while img_fc is [I ; 0], and changes the draft once it is not.
        var w2 = w
        for i in (3 * d)..<(4 * d) { w2.adapter!.queries[i] += 0.5 }
        let img = imageSpan(start: 4, rows: 9, seed: 2)
        let a = try EagleDraft(weights: w, target: Target.model), b = try EagleDraft(weights: w2, target: Target.model)
        XCTAssertEqual(try accept(a, 0..<20, images: [img]), try accept(b, 0..<20, images: [img]))
        XCTAssertNotEqual(a.globalFeature, b.globalFeature)
        XCTAssertEqual(try growTree(a, root: try accept(a, 20..<21)).out, try growTree(b, root: try accept(b, 20..<21)).out)
        var w3 = w, w4 = w2
        var rr = TestRNG(seed: 4)
        for i in 0..<(d * 2 * d) where i % (2 * d) >= d { w3.imgFc![i] = rr.normal() * 0.05 }
        w4.imgFc = w3.imgFc
        let c = try EagleDraft(weights: w3, target: Target.model), e = try EagleDraft(weights: w4, target: Target.model)
        XCTAssertNotEqual(try accept(c, 0..<20, images: [img]), try accept(e, 0..<20, images: [img]))
    }

    func testImageSpanEntries() throws {
        let k = 4
        let w = try weights(numQ: k)
        let a = try EagleDraft(weights: w, target: Target.model)
        // Span of 9 rows at target positions 4..<13: entries t with t+1 in the span are dropped
        // except the last K−1 = 3 (t = 9, 10, 11); the rest keep their own positions.
        _ = try accept(a, 0..<20, images: [imageSpan(start: 4, rows: 9, seed: 3)])
        XCTAssertEqual(a.entryPositions, [0, 1, 2] + [9, 10, 11] + Array(12..<20))
        XCTAssertNotNil(a.globalFeature)
        // A span shorter than K−1 keeps every entry; a second image in a later accept.
        _ = try accept(a, 20..<28, images: [imageSpan(start: 22, rows: 2, seed: 4)])
        XCTAssertEqual(a.entryPositions.suffix(8), Array(20..<28))
        XCTAssertEqual(a.acceptedPositions, 28)
        // Without an adapter image rows are plain entries.
        let b = try EagleDraft(weights: try weights(), target: Target.model)
        _ = try accept(b, 0..<20, images: [imageSpan(start: 4, rows: 9, seed: 3)])
        XCTAssertEqual(b.entryPositions, Array(0..<20))
        XCTAssertNil(b.globalFeature)
        // An image first in the sequence: position 0 has no entry, the rest as usual.
        let c = try EagleDraft(weights: w, target: Target.model)
        _ = try accept(c, 0..<12, images: [imageSpan(start: 0, rows: 6, seed: 5)])
        XCTAssertEqual(c.entryPositions, [2, 3, 4] + Array(5..<12))
        let e = try EagleDraft(weights: try weights(), target: Target.model)
        _ = try accept(e, 0..<12, images: [imageSpan(start: 0, rows: 6, seed: 5)])
        XCTAssertEqual(e.entryPositions, Array(0..<12))
        // A span outside the new positions is an error.
        XCTAssertThrowsError(try accept(b, 20..<22, images: [imageSpan(start: 5, rows: 2, seed: 3)]))
        // The tree after an image sees the compressed entries and uses img_fc.
        let root = try accept(a, 28..<29)
        XCTAssertEqual(try growTree(a, root: root).out.count, 10)
    }

    func testPromptWindowKeepsTheLastTextEntriesAndEveryImageEntry() throws {
        let img = imageSpan(start: 4, rows: 9, seed: 3)
        // With the adapter: of the prompt's token entries only t >= 20 − 5 stay, and the image's
        // compressed entries (9, 10, 11) all do; later accepts are not windowed.
        let a = try EagleDraft(weights: try weights(numQ: 4), target: Target.model)
        a.promptWindow = 5
        _ = try accept(a, 0..<20, images: [img])
        XCTAssertEqual(a.entryPositions, [9, 10, 11] + Array(15..<20))
        XCTAssertNotNil(a.globalFeature)
        _ = try accept(a, 20..<24)
        XCTAssertEqual(a.entryPositions, [9, 10, 11] + Array(15..<24))
        // Without it every image row is an entry and stays.
        let b = try EagleDraft(weights: try weights(), target: Target.model)
        b.promptWindow = 5
        _ = try accept(b, 0..<20, images: [img])
        XCTAssertEqual(b.entryPositions, Array(3..<12) + Array(15..<20))
        // A window as long as the prompt keeps it all; a window of 0 still keeps the last position,
        // whose entry the first tree grows from.
        let c = try EagleDraft(weights: try weights(), target: Target.model)
        c.promptWindow = 20
        _ = try accept(c, 0..<20)
        XCTAssertEqual(c.entryPositions, Array(0..<20))
        let e = try EagleDraft(weights: try weights(), target: Target.model)
        e.promptWindow = 0
        _ = try accept(e, 0..<20)
        XCTAssertEqual(e.entryPositions, [19])
    }

    func testRequestErrors() throws {
        let a = try EagleDraft(weights: try weights(), target: Target.model)
        XCTAssertThrowsError(try a.expand(tokens: [1], parents: [-1], topK: 2))
        _ = try accept(a, 0..<3)
        XCTAssertThrowsError(try a.expand(tokens: [1], parents: [0], topK: 2))
        XCTAssertThrowsError(try a.expand(tokens: [49152], parents: [-1], topK: 2))
        XCTAssertThrowsError(try a.accept(features: [1, 2], nextTokens: [3], images: [], topK: 2))
        XCTAssertEqual(try a.expand(tokens: [1], parents: [-1], topK: 0), [[]])
    }
}

/// SplitMix64 with Box–Muller normals, seeded.
struct TestRNG {
    var state: UInt64
    init(seed: UInt64) { state = seed }
    mutating func next() -> UInt64 {
        state &+= 0x9E37_79B9_7F4A_7C15
        var z = state
        z = (z ^ (z >> 30)) &* 0xBF58_476D_1CE4_E5B9
        z = (z ^ (z >> 27)) &* 0x94D0_49BB_1331_11EB
        return z ^ (z >> 31)
    }
    mutating func normal() -> Float {
        let u1 = (Double(next() >> 11) + 1) / 9_007_199_254_740_992.0, u2 = Double(next() >> 11) / 9_007_199_254_740_992.0
        return Float((-2 * log(u1)).squareRoot() * cos(2 * Double.pi * u2))
    }
}
