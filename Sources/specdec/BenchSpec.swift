import DataSynth
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

    struct PromptResult: Encodable {
        var id: String
        var kind: String
        var temperature: Float
        var prompt_tokens: Int
        var generated: Int
        var plain_tokens_per_s: Double
        var tokens_per_s: Double
        var speedup: Double
        var tau: Double
        var tokens_per_step: Double
        var identical: Bool
    }

    struct Group: Encodable {
        var temperature: Float
        var kind: String
        var prompts: Int
        var plain_tokens_per_s_median: Double
        var tokens_per_s_median: Double
        var speedup_median: Double
        var tau_mean: Double
        var tokens_per_step_mean: Double
        /// T = 0: prompts whose speculative tokens equal plain decoding's (must be all).
        var identical: Int?
    }

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
        var groups: [Group]
        var per_prompt: [PromptResult]
    }

    func run(modelPath: String) throws {
        guard let draftPath = draftOptions.draft else { throw CLIError("--prompts needs --draft") }
        let gguf = try GGUFFile(path: modelPath)
        let model = try LlamaModel(file: gguf, threads: threads)
        model.activationQuant = activations
        let tokenizer = try BPETokenizer(gguf: gguf)
        // Prompts as the target reads them.
        let prepared = try SpecPromptSet.load(path: promptsPath, towerPath: towerPath, model: model, tokenizer: tokenizer)
            .map { (id: $0.id, prompt: $0.prompt) }

        let loaded = try LoadedDraft.load(path: draftPath, target: model, targetPath: modelPath,
                                          contextSize: min(model.config.contextLength, 4096), threads: threads)
        var shape = try draftOptions.shape()
        if draftOptions.isAuto, let first = prepared.first {
            // One budget for the whole bench, chosen on the first prompt's first step.
            let chooser = try draftOptions.budgetChooser(model: model, modelPath: modelPath, metadata: loaded.metadata, shape: shape, log: printErr)
            let r = try Generation.speculative(model: model, drafter: loaded.drafter, prompt: first.prompt, contextSize: contextSize(first.prompt, model),
                                               params: SamplingParameters(), shape: shape, maxTokens: 4, eog: tokenizer.endOfGenerationTokens,
                                               budget: chooser)
            shape = r.tree ?? shape
        }
        printErr("bench: \(prepared.count) prompts, \(maxTokens) tokens each, draft \(loaded.kind), tree \(shape)")

        var results: [PromptResult] = []
        for temperature: Float in [0, 1] {
            var params = SamplingParameters()
            params.temperature = temperature
            for (i, (id, prompt)) in prepared.enumerated() {
                params.seed = UInt64(1000 + i)
                let ctx = contextSize(prompt, model)
                let eog = tokenizer.endOfGenerationTokens
                let plain = try Generation.plain(model: model, prompt: prompt, contextSize: ctx, params: params, maxTokens: maxTokens,
                                                 eog: eog)
                let spec = try Generation.speculative(model: model, drafter: loaded.drafter, prompt: prompt, contextSize: ctx,
                                                      params: params, shape: shape, maxTokens: maxTokens, eog: eog,
                                                      fallback: draftOptions.tree.fallback)
                let s = spec.speculative ?? SpeculativeStats()
                let r = PromptResult(id: id, kind: prompt.sequence == nil ? "text" : "image", temperature: temperature,
                                     prompt_tokens: prompt.count, generated: spec.tokens.count,
                                     plain_tokens_per_s: plain.tokensPerSecond, tokens_per_s: spec.tokensPerSecond,
                                     speedup: plain.tokensPerSecond > 0 ? spec.tokensPerSecond / plain.tokensPerSecond : 0,
                                     tau: s.tau, tokens_per_step: s.tokensPerStep, identical: plain.tokens == spec.tokens)
                results.append(r)
                printErr(String(format: "  T=%g %@ %@: plain %.1f tok/s, speculative %.1f tok/s (%.2fx), tau %.2f%@",
                                temperature, r.kind, id, r.plain_tokens_per_s, r.tokens_per_s, r.speedup, r.tau,
                                temperature == 0 && !r.identical ? " OUTPUT DIFFERS" : ""))
            }
        }

        var groups: [Group] = []
        for temperature: Float in [0, 1] {
            for kind in ["text", "image", "all"] {
                let rs = results.filter { $0.temperature == temperature && (kind == "all" || $0.kind == kind) }
                guard !rs.isEmpty, kind != "all" || Set(results.map(\.kind)).count > 1 else { continue }
                groups.append(Group(temperature: temperature, kind: kind, prompts: rs.count,
                                    plain_tokens_per_s_median: median(rs.map(\.plain_tokens_per_s)),
                                    tokens_per_s_median: median(rs.map(\.tokens_per_s)),
                                    speedup_median: median(rs.map(\.speedup)),
                                    tau_mean: rs.map(\.tau).reduce(0, +) / Double(rs.count),
                                    tokens_per_step_mean: rs.map(\.tokens_per_step).reduce(0, +) / Double(rs.count),
                                    identical: temperature == 0 ? rs.filter(\.identical).count : nil))
            }
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
                + String(format: "%.1f", g.plain_tokens_per_s_median).leftPad(12) + String(format: "%.1f", g.tokens_per_s_median).leftPad(12)
                + String(format: "%.2fx", g.speedup_median).leftPad(9) + String(format: "%.2f", g.tau_mean).leftPad(7)
                + String(format: "%.2f", g.tokens_per_step_mean).leftPad(9)
                + (g.identical.map { "\($0)/\(g.prompts)" } ?? "-").leftPad(11) + "\n"
        }
        t += "(tok/s and speedup: medians over prompts; tau and tokens per step: means)"
        print(t)
    }

    private func contextSize(_ p: PreparedPrompt, _ model: LlamaModel) -> Int {
        min(model.config.contextLength, p.count + maxTokens + 128)
    }
}
