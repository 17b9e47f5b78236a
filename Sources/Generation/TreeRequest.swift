import Foundation
import Llama
import Verify

/// The draft tree a front end asks for (`--tree-top-k`, `--tree-depth`, `--tree-tokens`,
/// `--no-fallback`, `--draft-p-min`): a fixed node budget, or `auto` (the budget that maximises
/// expected tokens/s from the target's measured verify cost and the draft's acceptance
/// statistics, chosen on the first step); within it, the nodes above a confidence threshold.
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

    /// The tree shape; with auto, `tokens` is the candidate count until the first step chooses.
    public func shape() throws -> TreeShape {
        let probe = try TreeShape(topK: topK, depth: depth, tokens: 1)
        return try TreeShape(topK: topK, depth: depth, tokens: tokens ?? min(probe.candidateCount, 63))
    }

    /// For auto: the measured verify cost and a chooser run once on the first step with that
    /// step's drafting time (nil for a fixed budget).
    public func autoTree(model: LlamaModel, modelPath: String, metadata: [String: String], shape: TreeShape,
                         log: @escaping (String) -> Void) throws -> AutoTree? {
        guard isAuto else { return nil }
        let curve = try VerifyCostCache.curve(model: model, modelPath: modelPath, log: log)
        let acceptance = AcceptanceModel.from(metadata: metadata) ?? .default
        let maxNodes = min(shape.candidateCount, (curve.points.map(\.n).max() ?? 64) - 1)
        return AutoTree(curve: curve) { draftSeconds in
            let n = TreeBudget.choose(curve: curve, acceptance: acceptance, draftSeconds: draftSeconds, depth: shape.depth, maxNodes: maxNodes)
            let verify = curve.stepSeconds(tokens: n + 1, visitedRows: 1 + acceptance.tau(n))
            log(String(format: "tree budget: %d nodes (auto: drafting %.1f ms, verify %.1f ms for %d tokens, acceptance %@)",
                       n, draftSeconds * 1000, verify * 1000, n + 1, acceptance.source))
            return n
        }
    }
}
