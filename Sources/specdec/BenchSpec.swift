import Evaluation
import Foundation
import Generation
import GGUF
import Kernels
import Llama
import Sampling
import Tokenizer
import Verify
import Vision

/// `specdec bench --draft DRAFT --prompts FILE.jsonl`: speculative against plain decoding over a
/// prompt set (text, and image prompts through `--vision-tower`), at T = 0 and T = 1.
struct SpeculativeBench {
    var draftOptions: DraftOptions
    var promptsPath: String
    var towerPath: String?
    var maxTokens: Int
    var threads: Int
    var json: Bool
    var activations: ActivationQuant

    struct Output: Encodable {
        var model: String
        var draft: String
        var draft_kind: String
        var prompts_file: String
        var n_predict: Int
        var threads: Int
        var tree_top_k: Int
        var tree_depth: Int
        var tree_tokens: Int
        var tree_tokens_auto: Bool
        /// Medians per temperature and kind ("all": both kinds pooled).
        var groups: [Comparison.Cell]
        var per_prompt: [Comparison.Run]
    }

    func run(modelPath: String) throws {
        guard let draftPath = draftOptions.draft else { throw CLIError("--prompts needs --draft") }
        let gguf = try GGUFFile(path: modelPath)
        let model = try LlamaModel(file: gguf, threads: threads)
        model.activationQuant = activations
        let tokenizer = try BPETokenizer(gguf: gguf)
        // Prompts as the target reads them.
        let prepared = try PromptSet.load(path: promptsPath, towerPath: towerPath, model: model, tokenizer: tokenizer)

        let loaded = try LoadedDraft.load(path: draftPath, target: model, targetPath: modelPath,
                                          contextSize: min(model.config.contextLength, 4096), threads: threads)
        var shape = try draftOptions.shape()
        if draftOptions.isAuto, let first = prepared.first {
            // One budget for the whole bench, chosen on the first prompt's first step.
            let chooser = try draftOptions.budgetChooser(model: model, modelPath: modelPath, metadata: loaded.metadata, shape: shape, log: printErr)
            let r = try Generation.speculative(model: model, drafter: loaded.drafter, prompt: first.prompt, contextSize: Comparison.contextSize(first.prompt, maxTokens: maxTokens, model: model),
                                               params: SamplingParameters(), shape: shape, maxTokens: 4, eog: tokenizer.endOfGenerationTokens,
                                               budget: chooser)
            shape = r.tree ?? shape
        }
        printErr("bench: \(prepared.count) prompts, \(maxTokens) tokens each, draft \(loaded.kind), tree \(shape)")

        let system = Comparison.System(name: loaded.kind, drafter: loaded.drafter, shape: shape, fallback: draftOptions.tree.fallback)
        let results = try Comparison.run(model: model, prompts: prepared, systems: [system], temperatures: [0, 1], maxTokens: maxTokens,
                                         eog: tokenizer.endOfGenerationTokens, seedBase: 1000, log: printErr)
            .filter { $0.system != "plain" }
        let pooled = Set(results.map(\.kind)).count > 1
        let groups = [Float(0), 1].flatMap { t in
            Comparison.cells(results.filter { $0.temperature == t }, systems: [loaded.kind], kinds: ["text", "image"] + (pooled ? ["all"] : []))
        }
        let out = Output(model: (modelPath as NSString).lastPathComponent, draft: draftPath, draft_kind: loaded.kind,
                         prompts_file: promptsPath, n_predict: maxTokens, threads: threads, tree_top_k: shape.topK,
                         tree_depth: shape.depth, tree_tokens: shape.tokens, tree_tokens_auto: draftOptions.isAuto,
                         groups: groups, per_prompt: results)
        if json { try printJSON(out); return }
        var t = "speculative bench: \(out.model), draft \(loaded.kind), tree \(shape), \(maxTokens) tokens, \(threads) threads\n\n"
        t += "T".padding(4) + "prompts".padding(12) + "plain tok/s".leftPad(12) + "spec tok/s".leftPad(12) + "speedup".leftPad(9)
            + "tau".leftPad(7) + "tok/step".leftPad(9) + "identical".leftPad(11) + "\n"
        for g in groups {
            t += String(format: "%g", g.temperature).padding(4) + "\(g.kind) (\(g.prompts))".padding(12)
                + String(format: "%.1f", g.plain_tokens_per_s).leftPad(12) + String(format: "%.1f", g.tokens_per_s).leftPad(12)
                + String(format: "%.2fx", g.speedup).leftPad(9) + String(format: "%.2f", g.tau).leftPad(7)
                + String(format: "%.2f", g.tokens_per_step).leftPad(9)
                + (g.identical.map { "\($0)/\(g.prompts)" } ?? "-").leftPad(11) + "\n"
        }
        t += "(medians over prompts; tau excludes context-matched tokens)"
        print(t)
    }
}
