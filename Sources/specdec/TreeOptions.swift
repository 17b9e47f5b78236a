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

    @Option(name: .customLong("draft-p-min"), help: ArgumentHelp(
        "Draft tree: verify (and expand) only nodes whose cumulative draft probability (the product along the path) is at least P, so steps where the draft is unsure verify fewer nodes or none; 0 = off. 'auto': a bandit (Thompson sampling, fixed seed) picks the threshold per step among 0, 0.2, 0.4, 0.6, 0.8 from the measured tokens/s of its steps, learning over the run (--json: stats.draft_p_min_arms). Outputs are the same at any P (only speed changes). Unlike llama.cpp's --draft-p-min (a per-token minimum for a greedy chain), P bounds the whole path.",
        valueName: "P|auto"))
    var draftPMin = "0"

    @Flag(name: .customLong("no-fallback"), help: "With --tree-tokens auto: keep drafting even while measured drafting steps emit fewer tokens per second than plain steps (by default the decoder then decodes plain steps for a while, and tries drafting again later).")
    var noFallback = false

    func validate() throws {
        guard treeTopK >= 1 else { throw ValidationError("--tree-top-k must be ≥ 1") }
        guard treeDepth >= 1 else { throw ValidationError("--tree-depth must be ≥ 1") }
        if treeTokens != "auto" {
            guard let n = Int(treeTokens), n >= 1 else { throw ValidationError("--tree-tokens must be a positive integer or 'auto', got '\(treeTokens)'") }
        }
        _ = try pMin(draftPMin)
    }

    /// A `--draft-p-min` value: "auto" or a probability in [0, 1).
    func pMin(_ text: String) throws -> TreeRequest.PMin {
        guard let p = TreeRequest.PMin(text) else { throw ValidationError("--draft-p-min must be a probability in [0, 1) or 'auto', got '\(text)'") }
        return p
    }

    /// The tree asked for, with `budget` ("auto" or a node count, checked in `validate`) as its
    /// node budget and `pMin` as its threshold: --tree-tokens and --draft-p-min unless a sweep
    /// gives others.
    func request(budget: String? = nil, pMin: TreeRequest.PMin? = nil) -> TreeRequest {
        let b = budget ?? treeTokens
        return TreeRequest(topK: treeTopK, depth: treeDepth, tokens: b == "auto" ? nil : Int(b)!, allowsFallback: !noFallback,
                           pMin: pMin ?? TreeRequest.PMin(draftPMin)!)
    }
}
