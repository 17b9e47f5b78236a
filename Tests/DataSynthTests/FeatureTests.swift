import Foundation
import Testing
import TestSupport
import Shards

/// `data features`: recomputing a dataset's states from its tokens gives what `synth-data`
/// writes, byte for byte, with the same or with other stored layers; bad input is refused.
@Suite(.serialized, .enabled(if: FileManager.default.fileExists(atPath: TestPaths.model), "needs the model (scripts/setup.sh)"))
struct FeatureTests {
    static let tower = TestPaths.repoRoot.appendingPathComponent("checkpoints/demo-tower.gguf").path
    static let shard = "shard-00000-of-00001.sds"

    func synth(_ out: String, _ extra: [String]) throws {
        let r = try Specdec.run(["synth-data", "--generate", "text", "--samples", "3", "--seed", "9", "--max-new", "6",
                                 "--long-answer-words", "20", "--zstd-level", "3", "--out", out, "-t", "2"] + extra)
        #expect(r.status == 0, "\(r.stderr)")
    }

    @Test func textFeaturesEqualSynthesisWithThoseLayers() throws {
        let plain = scratchDir("feat-plain"), direct = scratchDir("feat-direct"), derived = scratchDir("feat-derived")
        try synth(plain, [])
        try synth(direct, ["--hidden-layers", "2,15"])
        let r = try Specdec.run(["data", "features", plain, "--out", derived, "--hidden-layers", "2,15", "-t", "1"])
        #expect(r.status == 0, "\(r.stderr)")
        #expect(r.stderr.contains("identical to the stored ones in 3 of 3"), "\(r.stderr)")
        // The same bytes as generating with the layers, at another thread count.
        #expect(try readBytes("\(derived)/\(Self.shard)") == readBytes("\(direct)/\(Self.shard)"))
        #expect(try readBytes("\(derived)/manifest.json") == readBytes("\(direct)/manifest.json"))
        // Rerun: the finished shard is kept, not rewritten.
        let again = try Specdec.run(["data", "features", plain, "--out", derived, "--hidden-layers", "2,15", "--json"])
        #expect(again.status == 0 && again.stdout.contains("\"resumed_records\":3"), "\(again.stdout)\(again.stderr)")
        // Other layers into that folder: refused, nothing overwritten.
        let other = try Specdec.run(["data", "features", plain, "--out", derived, "--hidden-layers", "3"])
        #expect(other.status != 0 && other.stderr.contains("other settings"), "\(other.stderr)")
    }

    @Test func imageFeaturesNeedTheTowerAndReproduceTheShard() throws {
        let src = scratchDir("feat-img"), same = scratchDir("feat-img-same")
        let r = try Specdec.run(["synth-data", "--generate", "images", "--mmproj", Self.tower, "--samples", "2", "--seed", "5",
                                 "--max-new", "5", "--zstd-level", "3", "--out", src, "-t", "2"])
        #expect(r.status == 0, "\(r.stderr)")
        let noTower = try Specdec.run(["data", "features", src, "--out", scratchDir("feat-img-nt")])
        #expect(noTower.status != 0 && noTower.stderr.contains("--mmproj"), "\(noTower.stderr)")
        let ok = try Specdec.run(["data", "features", src, "--out", same, "--mmproj", Self.tower])
        #expect(ok.status == 0, "\(ok.stderr)")
        #expect(try readBytes("\(same)/\(Self.shard)") == readBytes("\(src)/\(Self.shard)"))
        // int8 output: still checked against the stored fp16 states.
        let int8 = try Specdec.run(["data", "features", src, "--out", scratchDir("feat-img-i8"), "--mmproj", Self.tower,
                                    "--hidden", "int8", "--hidden-layers", "eagle3"])
        #expect(int8.status == 0 && int8.stderr.contains("identical to the stored ones in 2 of 2"), "\(int8.stderr)")
    }

    @Test func refusesWhatItCannotUse() throws {
        let src = scratchDir("feat-bad")
        try synth(src, [])
        let cases: [([String], String)] = [
            ([scratchDir("feat-none"), "--out", scratchDir("feat-x")], "does not verify"),
            ([src, "--out", src], "must differ"),
            ([src, "--out", scratchDir("feat-y"), "--hidden", "none"], "fp16 or int8"),
            ([src, "--out", scratchDir("feat-z"), "--hidden-layers", "0"], "is not the input"),
        ]
        for (args, fragment) in cases {
            let r = try Specdec.run(["data", "features"] + args)
            #expect(r.status != 0 && r.stderr.contains(fragment), "\(args): \(r.stderr)")
        }
        // A dataset that another model wrote: its header names another SHA-256.
        let reader = try ShardReader(path: "\(src)/\(Self.shard)")
        var h = reader.header
        h.model.sha256 = String(repeating: "0", count: 64)
        h.samples = 1
        let forged = scratchDir("feat-forged")
        let w = try ShardWriter(path: "\(forged)/\(Self.shard)", header: h)
        try w.append(try reader.record(0))
        try w.finish()
        let done = try ShardReader(path: "\(forged)/\(Self.shard)")
        try DatasetManifest(samples: h.samples, shards: [try DatasetManifest.Entry(reader: done, path: "\(forged)/\(Self.shard)")])
            .write(to: "\(forged)/manifest.json")
        let wrong = try Specdec.run(["data", "features", forged, "--out", scratchDir("feat-w")])
        #expect(wrong.status != 0 && wrong.stderr.contains("only the model that wrote the tokens"), "\(wrong.stderr)")
    }
}
