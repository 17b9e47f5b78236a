import Foundation
import Llama
import Verify

/// The draft tree a front end asks for (`--tree-top-k`, `--tree-depth`, `--tree-tokens`,
/// `--no-fallback`, `--draft-p-min`): a fixed node budget, or `auto` (the budget that maximises
/// expected tokens/s from the target's measured verify cost, the draft's measured cost per tree
/// level and its acceptance statistics, chosen before the first step); within it, the nodes above a confidence threshold.
public struct TreeRequest {
    public var topK: Int
    public var depth: Int
    /// Nodes verified per step; nil: auto.
    public var tokens: Int?
    /// With auto: decode plain steps while drafting does not pay (`FallbackPolicy`).
    public var allowsFallback: Bool
    /// The least cumulative draft probability of a verified node.
    public var pMin: PMin

    /// `--draft-p-min`: a fixed threshold (0: off, the default) or `auto`, a bandit over
    /// `PMinBandit.defaultArms` learning online which one gives the most tokens per second.
    public enum PMin: Hashable, Sendable, CustomStringConvertible {
        case fixed(Float)
        case auto

        /// "auto" or a probability in [0, 1).
        public init?(_ text: String) {
            if text == "auto" { self = .auto; return }
            guard let p = Float(text), p >= 0, p < 1 else { return nil }
            self = .fixed(p)
        }

        public var description: String {
            switch self {
            case .auto: return "auto"
            case .fixed(let p): return String(format: "%g", p)
            }
        }
    }

    public init(topK: Int = 8, depth: Int = 6, tokens: Int? = nil, allowsFallback: Bool = true, pMin: PMin = .fixed(0)) {
        self.topK = topK; self.depth = depth; self.tokens = tokens; self.allowsFallback = allowsFallback; self.pMin = pMin
    }

    /// A new threshold state for one run (a bandit learns across its generations); nil when off.
    /// The bandit's seed is fixed, so a run's choices depend only on its measured rewards.
    public func pMinBandit() -> PMinBandit? {
        switch pMin {
        case .auto: return PMinBandit()
        case .fixed(let p): return p > 0 ? PMinBandit(thresholds: [p]) : nil
        }
    }

    public var isAuto: Bool { tokens == nil }

    /// Plain steps while drafting does not pay: on with auto, unless turned off.
    public var fallback: FallbackPolicy? { isAuto && allowsFallback ? FallbackPolicy() : nil }

    /// The tree shape; with auto, `tokens` is the candidate count until `autoTree` chooses.
    public func shape() throws -> TreeShape {
        let probe = try TreeShape(topK: topK, depth: depth, tokens: 1)
        return try TreeShape(topK: topK, depth: depth, tokens: tokens ?? min(probe.candidateCount, 63))
    }

    /// For auto: the target's verify cost and the draft's cost per tree level (each measured once
    /// per model or draft file, CPU and thread count, then cached) and the node budget they give.
    /// Nil for a fixed budget.
    public func autoTree(model: LlamaModel, modelPath: String, draft: LoadedDraft, shape: TreeShape,
                         log: @escaping (String) -> Void) throws -> AutoTree? {
        guard isAuto else { return nil }
        let curve = try VerifyCostCache.curve(model: model, modelPath: modelPath, log: log)
        let level = try DraftCostCache.levelCost(draft: draft, model: model, modelPath: modelPath, topK: topK, log: log)
        let acceptance = AcceptanceModel.from(metadata: draft.metadata) ?? .default
        let maxNodes = min(shape.candidateCount, (curve.points.map(\.n).max() ?? 64) - 1)
        let draftSeconds = level.seconds * Double(max(1, shape.depth - 1))
        let n = TreeBudget.choose(curve: curve, acceptance: acceptance, draftSeconds: draftSeconds, depth: shape.depth, maxNodes: maxNodes)
        let verify = curve.stepSeconds(tokens: n + 1, visitedRows: 1 + acceptance.tau(n))
        log(String(format: "tree budget: %d nodes (auto: drafting %.2f ms per level of %d, verify %.1f ms for %d tokens, acceptance %@)",
                   n, level.seconds * 1000, topK, verify * 1000, n + 1, acceptance.source))
        return AutoTree(curve: curve, nodes: n)
    }
}
