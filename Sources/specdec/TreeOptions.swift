import ArgumentParser
import Generation

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

    func validate() throws {
        guard treeTopK >= 1 else { throw ValidationError("--tree-top-k must be ≥ 1") }
        guard treeDepth >= 1 else { throw ValidationError("--tree-depth must be ≥ 1") }
        if treeTokens != "auto" {
            guard let n = Int(treeTokens), n >= 1 else { throw ValidationError("--tree-tokens must be a positive integer or 'auto', got '\(treeTokens)'") }
        }
    }

    /// The tree asked for, with `budget` ("auto" or a node count, checked in `validate`) as its
    /// node budget: --tree-tokens unless a sweep gives others.
    func request(budget: String? = nil) -> TreeRequest {
        let b = budget ?? treeTokens
        return TreeRequest(topK: treeTopK, depth: treeDepth, tokens: b == "auto" ? nil : Int(b)!, allowsFallback: !noFallback)
    }
}
