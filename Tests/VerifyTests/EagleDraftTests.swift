import Draft
import Foundation
import Llama
import Testing
import TestSupport
import Verify

/// Greedy identity with a random-weight EagleDraft (a bad but real EAGLE draft reading the
/// target's features) and a random ViSpec draft (adapter) on the image prompts.
@Suite(.serialized) struct EagleDraftTests {
    static func eagle(seed: UInt64, numQ: Int = 0) throws -> EagleDraft {
        let w = try DraftWeights.random(for: Target.model, numQ: numQ, seed: seed)
        return try EagleDraft(weights: w, target: Target.model, contextSize: 512)
    }

    @Test func randomEagleDraftMatchesPlainOnEveryPrompt() throws {
        let shapes = [shape(1, 4, 4), shape(4, 4, 12), shape(1, 1, 1), shape(4, 5, 16)]
        let draft = try Self.eagle(seed: 11)
        let vispec = try Self.eagle(seed: 12, numQ: 4)
        for (i, p) in TestPrompt.all.enumerated() {
            let s = shapes[i % shapes.count]
            let d: Drafter = p.sequence != nil && i % 2 == 0 ? vispec : draft
            let r = try speculativeDecode(p, n: GreedyIdentityTests.n, drafter: d, shape: s)
            #expect(r.tokens == GreedyIdentityTests.references[i], "prompt \(i) '\(p.name)', \(s)")
        }
    }
}

/// `decode --draft` with an EAGLE checkpoint file (random weights saved as safetensors).
@Suite(.serialized) struct EagleCLITests {
    @Test func decodeWithAnEagleCheckpointIsIdenticalToPlain() throws {
        let path = FileManager.default.temporaryDirectory.appendingPathComponent("specdec-verify-\(UUID().uuidString).safetensors").path
        defer { try? FileManager.default.removeItem(atPath: path) }
        try DraftWeights.random(for: Target.model, seed: 5).save(to: path)
        let r = try SpecdecCLI.run(["decode", "--draft", path, "--compare", "--json", "-t", "2", "-n", "16",
                                             "--tree-top-k", "4", "--tree-depth", "3", "--tree-tokens", "8", "-p", "Count to five."])
        #expect(r.status == 0, "\(r.stderr)")
        let o = try SpecdecCLI.json(r.stdout)
        let s = try #require(o["stats"] as? [String: Any])
        #expect(s["identical"] as? Bool == true)
        #expect(s["draft_kind"] as? String == "eagle2")
        #expect(s["tau"] as? Double != nil && s["speedup"] as? Double != nil)
    }
}

/// EAGLE-3: the drafter reads three target layers' states, which the verifier and the prefill
/// capture; a random eagle3 draft (and its llama.cpp GGUF export) must change no token.
@Suite(.serialized) struct Eagle3DraftTests {
    static func weights(seed: UInt64) throws -> DraftWeights {
        try DraftWeights.random(config: .eagle3(target: Target.model.config, vocab: 4096), seed: seed,
                                outputNorm: Target.model.weights.outputNorm, targetOutput: Target.model.weights.output,
                                d2t: (0..<4096).map { Int32($0) })
    }

    @Test func randomEagle3DraftMatchesPlainOnEveryPrompt() throws {
        let shapes = [shape(1, 4, 4), shape(4, 4, 12), shape(4, 5, 16)]
        let draft = try EagleDraft(weights: Self.weights(seed: 21), target: Target.model, contextSize: 512)
        #expect(draft.featureLayers == [1, 14, 26])
        for (i, p) in TestPrompt.all.enumerated() where i % 3 == 0 {
            let s = shapes[i % shapes.count]
            let r = try speculativeDecode(p, n: GreedyIdentityTests.n, drafter: draft, shape: s)
            #expect(r.tokens == GreedyIdentityTests.references[i], "prompt \(i) '\(p.name)', \(s)")
        }
    }

    /// export-draft to llama.cpp's format, then `decode --draft DRAFT.gguf`: identical to plain.
    @Test func exportedGGUFDecodesIdenticallyToPlain() throws {
        let dir = FileManager.default.temporaryDirectory.appendingPathComponent("specdec-e3-\(UUID().uuidString)").path
        try FileManager.default.createDirectory(atPath: dir, withIntermediateDirectories: true)
        defer { try? FileManager.default.removeItem(atPath: dir) }
        try Self.weights(seed: 22).save(to: dir + "/d.safetensors")
        let e = try SpecdecCLI.run(["export-draft", dir + "/d.safetensors", "--format", "llama.cpp", "--out", dir + "/d.gguf"])
        #expect(e.status == 0, "\(e.stderr)")
        let h = try SpecdecCLI.run(["export-draft", dir + "/d.gguf", "--format", "hf-eagle3", "--out", dir + "/hf"])
        #expect(h.status == 0, "\(h.stderr)")
        #expect(FileManager.default.fileExists(atPath: dir + "/hf/config.json"))
        let r = try SpecdecCLI.run(["decode", "--draft", dir + "/d.gguf", "--compare", "--json", "-t", "2", "-n", "16",
                                    "--tree-top-k", "4", "--tree-depth", "3", "--tree-tokens", "8", "-p", "Name three fruits."])
        #expect(r.status == 0, "\(r.stderr)")
        let s = try #require(try SpecdecCLI.json(r.stdout)["stats"] as? [String: Any])
        #expect(s["identical"] as? Bool == true)
        #expect(s["draft_kind"] as? String == "eagle3")
        // An eagle2 checkpoint is refused with one line naming it.
        try DraftWeights.random(for: Target.model, seed: 5).save(to: dir + "/e2.safetensors")
        let bad = try SpecdecCLI.run(["export-draft", dir + "/e2.safetensors", "--format", "llama.cpp", "--out", dir + "/x.gguf"])
        #expect(bad.status != 0)
        #expect(bad.stderr.contains("e2.safetensors") && bad.stderr.contains("eagle3"), "\(bad.stderr)")
        #expect(!FileManager.default.fileExists(atPath: dir + "/x.gguf"))
    }
}
