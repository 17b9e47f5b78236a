import ArgumentParser
import Generation
import Llama
import Verify

/// `--tree-top-k`, `--tree-depth`, `--tree-tokens`: the shape of the draft tree (tree- prefixed
/// because --top-k is a sampling flag).
struct TreeOptions: ParsableArguments {
    @Option(name: .customLong("tree-top-k"), help: "Draft tree: children per node, and nodes expanded per level.")
    var treeTopK = 8

    @Option(name: .customLong("tree-depth"), help: "Draft tree: levels below the last emitted token.")
    var treeDepth = 6

    @Option(name: .customLong("tree-tokens"), help: ArgumentHelp(
        "Draft tree: nodes verified per step, or 'auto' (the budget that maximises expected tokens/s from the target's measured verify cost and the draft's acceptance statistics).",
        valueName: "N|auto"))
    var treeTokens = "auto"

    @Flag(name: .customLong("no-fallback"), help: "With --tree-tokens auto: keep drafting even while measured drafting steps emit fewer tokens per second than plain steps (by default the decoder then decodes plain steps for a while, and tries drafting again later).")
    var noFallback = false

    var isAuto: Bool { treeTokens == "auto" }

    /// Plain steps while drafting does not pay: on with auto, unless --no-fallback.
    var fallback: FallbackPolicy? { isAuto && !noFallback ? FallbackPolicy() : nil }

    func validate() throws {
        guard treeTopK >= 1 else { throw ValidationError("--tree-top-k must be ≥ 1") }
        guard treeDepth >= 1 else { throw ValidationError("--tree-depth must be ≥ 1") }
        if !isAuto {
            guard let n = Int(treeTokens), n >= 1 else { throw ValidationError("--tree-tokens must be a positive integer or 'auto', got '\(treeTokens)'") }
        }
    }

    /// The tree shape; with auto, `tokens` is the candidate count until the first step chooses.
    func shape() throws -> TreeShape {
        let probe = try TreeShape(topK: treeTopK, depth: treeDepth, tokens: 1)
        return try TreeShape(topK: treeTopK, depth: treeDepth, tokens: isAuto ? min(probe.candidateCount, 63) : Int(treeTokens)!)
    }

    /// For auto: a chooser run once on the first step with that step's drafting time.
    func budgetChooser(model: LlamaModel, modelPath: String, metadata: [String: String], shape: TreeShape,
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
