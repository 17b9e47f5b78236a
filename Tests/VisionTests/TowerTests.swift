import Foundation
import GGUF
import Testing
import TestSupport
import Vision

/// Fixtures made by tools/vision_reference.py (numpy float64 over llama.cpp's gguf package).
enum Fixtures {
    static let dir = TestPaths.repoRoot.appendingPathComponent("Tests/VisionTests/Fixtures")
    static func path(_ name: String) -> String { dir.appendingPathComponent(name).path }

    struct Tower: Decodable {
        let file: String
        let input: [Float]
        let rows: Int
        let width: Int
        let embeddings: [Float]
    }

    struct Golden: Decodable {
        let image: String
        let image_size: [Int]
        let bilinear_50x37: [Float]
        let bicubic_20x13: [Float]
        let towers: [String: Tower]
    }

    static let golden: Result<Golden, any Error> = Result {
        try JSONDecoder().decode(Golden.self, from: Data(contentsOf: dir.appendingPathComponent("vision-golden.json")))
    }
}

func maxAbsDiff(_ a: [Float], _ b: [Float]) -> Float {
    precondition(a.count == b.count, "\(a.count) vs \(b.count)")
    var m: Float = 0
    for i in a.indices { m = max(m, abs(a[i] - b[i])) }
    return m
}

struct TowerGoldenTests {
    @Test func resizeMatchesReference() throws {
        let g = try Fixtures.golden.get()
        let img = try ImageDecoder.load(path: Fixtures.path(g.image))
        #expect([img.width, img.height] == g.image_size)
        let bl = Preprocess.resize(img, width: 50, height: 37, algorithm: .bilinear)
        #expect(maxAbsDiff(bl.pixels, g.bilinear_50x37) < 1e-5)
        let bc = Preprocess.resize(img, width: 20, height: 13, algorithm: .bicubic)
        #expect(maxAbsDiff(bc.pixels, g.bicubic_20x13) < 1e-5)
    }

    @Test(arguments: ["tiny-mlp", "tiny-mlp-layers", "tiny-idefics3"])
    func towerMatchesReference(name: String) throws {
        let g = try Fixtures.golden.get()
        let t = try #require(g.towers[name])
        let tower = try VisionTower(path: Fixtures.path(t.file))
        let img = try ImageDecoder.load(path: Fixtures.path(g.image))
        let input = tower.preprocess(img)
        #expect(maxAbsDiff(input, t.input) < 1e-5, "preprocessed input")
        let e = tower.forward(planar: input)
        #expect(e.rows == t.rows && e.width == t.width)
        #expect(tower.config.tokensPerImage == t.rows)
        let diff = maxAbsDiff(e.data, t.embeddings)
        #expect(diff < 1e-3, "max |Δ| = \(diff)")
        print("tower \(name): \(e.rows)×\(e.width) embeddings, max |Δ| vs numpy float64 = \(diff)")
        // The golden input itself (not our preprocessing) gives the same answer.
        #expect(maxAbsDiff(tower.forward(planar: t.input).data, t.embeddings) < 1e-3)
    }

    @Test func configOfFixtures() throws {
        let mlp = try VisionTower(path: Fixtures.path("tiny-mlp.gguf")).config
        #expect(mlp.projector == .mlp && mlp.activation == .geluQuick && mlp.blocksRun == 2 && mlp.tokensPerImage == 16)
        let layers = try VisionTower(path: Fixtures.path("tiny-mlp-layers.gguf")).config
        #expect(layers.featureLayers == [1, 3] && layers.blocksRun == 3 && layers.featureWidth == 32)
        let ide = try VisionTower(path: Fixtures.path("tiny-idefics3.gguf")).config
        #expect(ide.projector == .idefics3 && ide.activation == .gelu && ide.scaleFactor == 2 && ide.tokensPerImage == 9)
    }
}
