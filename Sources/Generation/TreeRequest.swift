import Foundation
import Llama
import Verify

/// The draft tree a front end asks for (`--tree-top-k`, `--tree-depth`, `--tree-tokens`,
/// `--no-fallback`): a fixed node budget, or `auto` (the budget that maximises expected tokens/s
/// from the target's measured verify cost and the draft's acceptance statistics, chosen on the
/// first step).
public struct TreeRequest {
    public var topK: Int
    public var depth: Int
    /// Nodes verified per step; nil: auto.
    public var tokens: Int?
    /// With auto: decode plain steps while drafting does not pay (`FallbackPolicy`).
    public var allowsFallback: Bool

    public init(topK: Int = 8, depth: Int = 6, tokens: Int? = nil, allowsFallback: Bool = true) {
        self.topK = topK; self.depth = depth; self.tokens = tokens; self.allowsFallback = allowsFallback
    }

    public var isAuto: Bool { tokens == nil }

    /// Plain steps while drafting does not pay: on with auto, unless turned off.
    public var fallback: FallbackPolicy? { isAuto && allowsFallback ? FallbackPolicy() : nil }

    /// The tree shape; with auto, `tokens` is the candidate count until the first step chooses.
    public func shape() throws -> TreeShape {
        let probe = try TreeShape(topK: topK, depth: depth, tokens: 1)
        return try TreeShape(topK: topK, depth: depth, tokens: tokens ?? min(probe.candidateCount, 63))
    }

    /// For auto: a chooser run once on the first step with that step's drafting time (nil for a
    /// fixed budget).
    public func budgetChooser(model: LlamaModel, modelPath: String, metadata: [String: String], shape: TreeShape,
                              log: @escaping (String) -> Void) throws -> ((Double) -> Int)? {
        guard isAuto else { return nil }
        let curve = try VerifyCostCache.curve(model: model, modelPath: modelPath, log: log)
        let acceptance = AcceptanceModel.from(metadata: metadata) ?? .default
        let maxNodes = min(shape.candidateCount, (curve.points.map(\.n).max() ?? 64) - 1)
        return { draftSeconds in
            let n = TreeBudget.choose(curve: curve, acceptance: acceptance, draftSeconds: draftSeconds, depth: shape.depth, maxNodes: maxNodes)
            let verify = curve.stepSeconds(tokens: n + 1, visitedRows: 1 + acceptance.tau(n))
            log(String(format: "tree budget: %d nodes (auto: drafting %.1f ms, verify %.1f ms for %d tokens, acceptance %@)",
                       n, draftSeconds * 1000, verify * 1000, n + 1, acceptance.source))
            return n
        }
    }
}
