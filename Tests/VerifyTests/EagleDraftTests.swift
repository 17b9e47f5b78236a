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
