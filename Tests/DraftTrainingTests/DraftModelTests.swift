import DataSynth
import Shards
import XCTest
@testable import DraftTraining

final class DraftModelTests: XCTestCase {
    let world = TinyWorld()

    /// The whole draft's loss (both passes, adapter and img_fc; Plackett–Luce, SmoothL1 and
    /// cross-entropy) against central differences at random coordinates of every trainable
    /// tensor; a corrupted gradient must fail. The probability L1 is left out here: its kinks
    /// (q_i = p_i) make central differences over many positions unreliable; its gradient is
    /// checked on its own in OpGradientTests.testLosses.
    func testWholeDraftGradient() throws {
        let (model, params) = world.randomDraft(numQ: 3, seed: 21)
        let seq = try world.imageSequence(numQ: 3)
        XCTAssertEqual(seq.compImage.filter { $0 >= 0 }.count, 2, "K−1 = 2 entries of the span are kept")
        XCTAssertTrue(seq.globalOf.contains(0))
        let lc = LossConfig(l1: 0, rank: 0.5, reg: 1, ce: 0.7, selfCorrect: 0.8, rankK: 4)
        var grads = [Float](repeating: 0, count: params.count)
        _ = grads.withUnsafeMutableBufferPointer { model.run(seq, params: params, grads: $0.baseAddress!, loss: lc) }
        var r = TestRNG(3)
        var coords: [Int] = []
        for s in model.layout.slots where s.trainable { coords += r.pick(5, of: s.count).map { s.offset + $0 } }
        var x = params
        // The loss sums O(10) terms evaluated in float32, so a central difference carries an
        // absolute noise of about 1e-3; the floor keeps tiny gradients (the adapter's, which act
        // through two entries) from being judged on that noise alone.
        let gc = GradCheck(eps: 1e-2, tolerance: 2e-2, floor: 5e-2)
        let f: ([Float]) -> Double = { model.run(seq, params: $0, grads: nil, loss: lc).loss }
        gc.assertMatches(&x, coords: coords, analytic: grads, slots: model.layout.slots, f)
    }

    /// img_fc at its initial [I ; 0] makes f_t = h_t, and on text the adapter draft is the plain draft.
    func testAdapterAtInitIsPlainDraft() throws {
        var plain = DraftParameters(config: world.config(vocab: 12, numQ: 0))
        plain.initialise(seed: 4)
        var vis = DraftParameters(config: world.config(vocab: 12, numQ: 3))
        vis.initialise(seed: 4)
        for s in plain.slots { vis.set(s.name, plain.tensor(s.name)!) }
        let head = world.head(d2t: (0..<12).map { Int32($0) })
        let mp = DraftModel(layout: plain, head: head), mv = DraftModel(layout: vis, head: head)
        // Text sample: identical losses and gradients of the shared tensors.
        let text = try SequenceBuilder(width: world.d, numQ: 3, maxLength: 100, noise: 0)
            .build(world.record(index: 1, length: 12, promptLen: 4, seed: 8), embedder: world.embedder, images: nil, datasetDir: "", rng: nil)
        let a = mp.run(text, params: plain.values, grads: nil, loss: .vispec)
        let b = mv.run(text, params: vis.values, grads: nil, loss: .vispec)
        XCTAssertEqual(a, b)
        // After an image: img_fc([h ; g]) = h exactly.
        let seq = try world.imageSequence(numQ: 3)
        vis.values.withUnsafeBufferPointer { vp in
            let w = mv.weights(vp.baseAddress!)
            let ad = seq.images[0].withUnsafeBufferPointer { AdapterPass(config: mv.config, weights: w, embeddings: $0.baseAddress!, rows: seq.imageRows[0]) }
            let (f, inputs) = seq.features.withUnsafeBufferPointer { mv.imgFcForward(w: w, base: $0.baseAddress!, globalOf: seq.globalOf, adapters: [ad], n: seq.count) }
            XCTAssertFalse(inputs.rows.isEmpty)
            XCTAssertEqual(f.array, seq.features)
        }
    }

    func testSequenceIndexing() throws {
        // Span of 4 at target positions 2..<6, K = 3: entries t+1 ∈ {4, 5} keep compressed tokens 0, 1.
        let seq = try world.imageSequence(numQ: 3)
        XCTAssertEqual(seq.positions, [0, 3, 4, 5, 6, 7, 8, 9, 10, 11, 12])
        XCTAssertEqual(seq.compImage, [-1, 0, 0, -1, -1, -1, -1, -1, -1, -1, -1])
        XCTAssertEqual(seq.compRow, [-1, 0, 1, -1, -1, -1, -1, -1, -1, -1, -1])
        XCTAssertEqual(seq.globalOf, [-1, -1, -1, 0, 0, 0, 0, 0, 0, 0, 0])
        // A span shorter than K−1 uses the last compressed tokens.
        let rec = world.record(index: 0, length: 10, promptLen: 5, image: (at: 2, rows: 1), seed: 5)
        let s2 = try SequenceBuilder(width: world.d, numQ: 4, maxLength: 100, noise: 0)
            .build(rec, embedder: world.embedder, images: FakeImages(d: world.d), datasetDir: "", rng: nil)
        XCTAssertEqual(s2.compRow[1], 2)
    }
}
