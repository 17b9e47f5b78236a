import Foundation
import Generation
import Verify

/// `specdec bench --draft DRAFT --prompts FILE.jsonl`: speculative against plain decoding over a
/// prompt set (text, and image prompts through a tower), at T = 0 and T = 1; the object `--json`
/// prints.
public struct SpeculativeBench: Encodable {
    public var model: String
    public var draft: String
    public var draft_kind: String
    public var prompts_file: String
    public var n_predict: Int
    public var threads: Int
    public var tree_top_k: Int
    public var tree_depth: Int
    public var tree_tokens: Int
    public var tree_tokens_auto: Bool
    /// Medians per temperature and kind ("all": both kinds pooled).
    public var groups: [Comparison.Cell]
    public var per_prompt: [Comparison.Run]
    var shape: TreeShape

    enum CodingKeys: String, CodingKey {
        case model, draft, draft_kind, prompts_file, n_predict, threads, tree_top_k, tree_depth, tree_tokens, tree_tokens_auto, groups, per_prompt
    }

    public static func run(target: LoadedTarget, draft: String, promptsPath: String, towerPath: String?, maxTokens: Int,
                           tree: TreeRequest, threads: Int, log: @escaping (String) -> Void) throws -> SpeculativeBench {
        let prepared = try PromptSet.load(path: promptsPath, towerPath: towerPath, model: target.model, tokenizer: target.tokenizer)
        let loaded = try DraftEvaluation.load([draft], target: target, threads: threads)[0]
        let entry = try DraftEvaluation.systems(drafts: [loaded], names: [loaded.kind], requests: [tree], labelBudgets: false,
                                                target: target, log: log)[0]
        let shape = entry.system.shape
        log("bench: \(prepared.count) prompts, \(maxTokens) tokens each, draft \(loaded.kind), tree \(shape)")
        let results = try Comparison.run(model: target.model, prompts: prepared, systems: [entry.system], temperatures: [0, 1],
                                         maxTokens: maxTokens, eog: target.tokenizer.endOfGenerationTokens, seedBase: 1000, log: log)
            .filter { $0.system != "plain" }
        let pooled = Set(results.map(\.kind)).count > 1
        let groups = [Float(0), 1].flatMap { t in
            Comparison.cells(results.filter { $0.temperature == t }, systems: [loaded.kind], kinds: ["text", "image"] + (pooled ? ["all"] : []))
        }
        return SpeculativeBench(model: (target.path as NSString).lastPathComponent, draft: draft, draft_kind: loaded.kind,
                                prompts_file: promptsPath, n_predict: maxTokens, threads: threads, tree_top_k: shape.topK,
                                tree_depth: shape.depth, tree_tokens: shape.tokens, tree_tokens_auto: tree.isAuto,
                                groups: groups, per_prompt: results, shape: shape)
    }

    /// A row per temperature and kind.
    public var table: String {
        var t = "speculative bench: \(model), draft \(draft_kind), tree \(shape), \(n_predict) tokens, \(threads) threads\n\n"
        t += "T".padding(4) + "prompts".padding(12) + "plain tok/s".leftPad(12) + "spec tok/s".leftPad(12) + "speedup".leftPad(9)
            + "tau".leftPad(7) + "tok/step".leftPad(9) + "identical".leftPad(11) + "\n"
        for g in groups {
            t += String(format: "%g", g.temperature).padding(4) + "\(g.kind) (\(g.prompts))".padding(12)
                + String(format: "%.1f", g.plain_tokens_per_s).leftPad(12) + String(format: "%.1f", g.tokens_per_s).leftPad(12)
                + String(format: "%.2fx", g.speedup).leftPad(9) + String(format: "%.2f", g.tau).leftPad(7)
                + String(format: "%.2f", g.tokens_per_step).leftPad(9)
                + (g.identical.map { "\($0)/\(g.prompts)" } ?? "-").leftPad(11) + "\n"
        }
        return t + "(medians over prompts; tau excludes context-matched tokens)"
    }
}
