import ArgumentParser
import Foundation
import Generation
import GGUF
import Llama
import Sampling
import Tokenizer

struct Decode: ParsableCommand {
    static let configuration = CommandConfiguration(
        abstract: "Generate text from a prompt (plain or speculative decoding).",
        discussion: """
        Streams the answer to stdout, then prints prompt and generated token counts and prefill \
        and decode speed to stderr. --temp 0 (the default) is greedy decoding; it stops at the \
        end-of-sequence token or after -n tokens. With --json, stdout holds only one JSON object.

        With --draft, decoding is speculative (EAGLE-2 draft trees verified by the target in one \
        batched forward): the same tokens as plain decoding at --temp 0, the same distribution \
        above. It also reports tau (accepted draft tokens per target forward, the target's own \
        token not counted), tokens per step, acceptance per tree depth and the draft / verify \
        time shares. Speeds count the tokens after the first (which comes from the prefill) per \
        second after the target's prefill; the draft's read of the prompt counts as decoding. \
        --compare also runs plain decoding on the same prompt in the same process and reports \
        the speedup and whether the tokens are identical (at --temp > 0 they differ: only the \
        distribution is the same).
        """
    )

    @OptionGroup var modelOption: ModelOption
    @OptionGroup var precisionOption: PrecisionOption
    @OptionGroup var promptOptions: PromptOptions
    @OptionGroup var imageOptions: ImageOptions

    @Option(name: [.short, .customLong("n-predict")], help: "Maximum tokens to generate.")
    var n = 256

    @OptionGroup var sampling: SamplingOptions

    @Option(name: .customLong("repeat-penalty"), help: "Penalty for tokens in the last 64 (1 = off).")
    var repeatPenalty: Float = 1

    @Option(help: "Random seed (default: drawn at random and reported).")
    var seed: UInt64?

    @Option(name: [.short, .customLong("threads")], help: "Worker threads (default: all cores).")
    var threads: Int = defaultThreadCount

    @Option(help: "Context size in tokens (default: the model's, at most 4096).")
    var ctx: Int?

    @Flag(help: "Print one JSON object with tokens, text and statistics instead of streaming.")
    var json = false

    @OptionGroup var draftOptions: DraftOptions

    @Flag(help: "With --draft: also run plain decoding and report the speedup and whether the outputs are identical.")
    var compare = false

    func validate() throws {
        guard n >= 0 else { throw ValidationError("-n must be ≥ 0") }
        guard threads >= 1 else { throw ValidationError("--threads must be ≥ 1") }
        if let c = ctx, c < 1 { throw ValidationError("--ctx must be ≥ 1") }
        if compare && draftOptions.draft == nil { throw ValidationError("--compare needs --draft") }
    }

    struct Stats: Encodable {
        var prompt_token_count: Int
        var generated_token_count: Int
        var prefill_seconds: Double
        var decode_seconds: Double
        var prompt_tokens_per_s: Double
        var decode_tokens_per_s: Double
        var stop_reason: String
        var seed: UInt64
        var threads: Int
        // with --image only
        var image_count: Int?
        var image_token_count: Int?
        var image_seconds: Double?
        // with --draft only
        var draft: String?
        var draft_kind: String?
        var tree_top_k: Int?
        var tree_depth: Int?
        var tree_tokens: Int?
        var tree_tokens_auto: Bool?
        var steps: Int?
        var tau: Double?
        /// Context-matched tokens (`+ngram`) accepted per step, apart from τ.
        var context_tokens_per_step: Double?
        var tokens_per_step: Double?
        var acceptance_by_depth: [Double]?
        var tokens_per_s: Double?
        var draft_seconds: Double?
        var draft_prefill_seconds: Double?
        var verify_seconds: Double?
        var draft_share: Double?
        var verify_share: Double?
        /// Steps decoded without drafting because drafting did not pay, and how often that began.
        var plain_steps: Int?
        var fallbacks: Int?
        // with --compare only
        var plain_tokens_per_s: Double?
        var speedup: Double?
        var identical: Bool?
        var plain_tokens: [Int32]?
    }

    struct Output: Encodable {
        var prompt_tokens: [Int32]
        var tokens: [Int32]
        var text: String
        var stats: Stats
    }

    func run() throws {
        let (path, gguf, model, tokenizer) = try modelOption.load(threads: threads, precision: precisionOption)
        let prompt = try PreparedPrompt.make(promptOptions, imageOptions, gguf: gguf, tokenizer: tokenizer, model: model)
        let promptTokens = prompt.tokens  // -1 at image rows

        let contextSize = min(ctx ?? min(model.config.contextLength, 4096), model.config.contextLength)
        guard promptTokens.count < contextSize else {
            throw CLIError("the prompt has \(promptTokens.count) tokens but the context holds \(contextSize) (raise --ctx; the model allows \(model.config.contextLength))")
        }

        var params = SamplingParameters()
        sampling.apply(to: &params)
        params.repetitionPenalty = repeatPenalty
        params.seed = seed ?? UInt64.random(in: 0...UInt64(UInt32.max))
        _ = try Sampler(params)   // checks the parameters before any work

        var stream = StreamingDecoder(tokenizer: tokenizer)
        var text = ""
        let onPiece: (Int32) -> Void = { t in
            let piece = stream.push(t)
            text += piece
            if !json { FileHandle.standardOutput.write(piece.data(using: .utf8)!) }
        }
        let eog = tokenizer.endOfGenerationTokens

        var run: GenerationRun
        var draftKind: String?
        if let draftPath = draftOptions.draft {
            let loaded = try LoadedDraft.load(path: draftPath, target: model, targetPath: path, contextSize: contextSize, threads: threads)
            draftKind = loaded.kind
            let shape = try draftOptions.shape()
            let chooser = try draftOptions.budgetChooser(model: model, modelPath: path, metadata: loaded.metadata, shape: shape, log: printErr)
            run = try Generation.speculative(model: model, drafter: loaded.drafter, prompt: prompt, contextSize: contextSize,
                                             params: params, shape: shape, maxTokens: n, eog: eog, budget: chooser,
                                             fallback: draftOptions.tree.fallback, onToken: onPiece)
        } else {
            run = try Generation.plain(model: model, prompt: prompt, contextSize: contextSize, params: params,
                                       maxTokens: n, eog: eog, onToken: onPiece)
        }
        let tail = stream.flush()
        text += tail

        var plain: GenerationRun?
        if compare {
            plain = try Generation.plain(model: model, prompt: prompt, contextSize: contextSize, params: params,
                                         maxTokens: n, eog: eog)
        }

        var stats = Stats(
            prompt_token_count: promptTokens.count, generated_token_count: run.tokens.count,
            prefill_seconds: run.prefillSeconds, decode_seconds: run.decodeSeconds,
            prompt_tokens_per_s: Double(promptTokens.count) / run.prefillSeconds,
            decode_tokens_per_s: run.tokensPerSecond,
            stop_reason: run.stop.rawValue, seed: params.seed, threads: threads,
            image_count: prompt.sequence == nil ? nil : prompt.imageCount,
            image_token_count: prompt.sequence == nil ? nil : prompt.imageTokenCount,
            image_seconds: prompt.sequence == nil ? nil : prompt.imageSeconds)
        if let s = run.speculative, let shape = run.tree {
            stats.draft = draftOptions.draft
            stats.draft_kind = draftKind
            stats.tree_top_k = shape.topK
            stats.tree_depth = shape.depth
            stats.tree_tokens = shape.tokens
            stats.tree_tokens_auto = draftOptions.isAuto
            stats.steps = s.steps
            stats.tau = s.tau
            stats.context_tokens_per_step = s.contextNodes > 0 ? s.contextTokensPerStep : nil
            stats.tokens_per_step = s.tokensPerStep
            stats.acceptance_by_depth = s.acceptanceByDepth
            stats.tokens_per_s = run.tokensPerSecond
            stats.draft_seconds = s.draftSeconds
            stats.draft_prefill_seconds = s.draftPrefillSeconds
            stats.verify_seconds = s.verifySeconds
            stats.plain_steps = s.plainSteps
            stats.fallbacks = s.fallbacks
            let busy = s.draftSeconds + s.verifySeconds
            stats.draft_share = busy > 0 ? s.draftSeconds / busy : 0
            stats.verify_share = busy > 0 ? s.verifySeconds / busy : 0
        }
        if let p = plain {
            stats.plain_tokens_per_s = p.tokensPerSecond
            stats.speedup = p.tokensPerSecond > 0 ? run.tokensPerSecond / p.tokensPerSecond : 0
            stats.identical = p.tokens == run.tokens
            stats.plain_tokens = p.tokens
        }

        if json {
            try printJSON(Output(prompt_tokens: promptTokens, tokens: run.tokens, text: text, stats: stats))
            return
        }
        FileHandle.standardOutput.write((tail + "\n").data(using: .utf8)!)
        printErr(String(format: "\nprompt: %d tokens, %.1f tok/s | generated: %d tokens, %.1f tok/s | stop: %@ | seed %llu, %d threads",
                        promptTokens.count, stats.prompt_tokens_per_s, run.tokens.count, stats.decode_tokens_per_s,
                        run.stop.rawValue, params.seed, threads))
        if prompt.imageCount > 0 {
            printErr(String(format: "images: %d, %d positions of the prompt, encoded in %.3f s", prompt.imageCount,
                            prompt.imageTokenCount, prompt.imageSeconds))
        }
        if let s = run.speculative, let shape = run.tree {
            let depths = s.acceptanceByDepth.enumerated().map { String(format: "%d:%.2f", $0.offset + 1, $0.element) }.joined(separator: " ")
            printErr(String(format: "speculative (%@, %@%@): tau %.2f accepted draft tokens per target forward, %.2f tokens per step over %d steps",
                            draftKind ?? "", shape.description, draftOptions.isAuto ? " auto" : "", s.tau, s.tokensPerStep, s.steps))
            printErr("acceptance by depth: \(depths.isEmpty ? "-" : depths)")
            if s.contextNodes > 0 {
                printErr(String(format: "context match: %.2f tokens per step accepted (%d of %d proposed; not in tau)",
                                s.contextTokensPerStep, s.acceptedContextTokens, s.contextNodes))
            }
            if s.fallbacks > 0 {
                printErr("fallback: \(s.plainSteps) plain steps (drafting paused \(s.fallbacks) time\(s.fallbacks == 1 ? "" : "s") while it emitted fewer tokens/s than plain steps)")
            } else if s.plainSteps > 0 {
                printErr("fallback: none (drafting paid; \(s.plainSteps) plain steps measured a plain step's time)")
            }
            printErr(String(format: "time: draft %.0f%% (prompt %.3f s), verify %.0f%% | %.1f tok/s",
                            100 * (stats.draft_share ?? 0), s.draftPrefillSeconds, 100 * (stats.verify_share ?? 0), run.tokensPerSecond))
        }
        if let p = plain {
            printErr(String(format: "plain decoding: %.1f tok/s | speedup %.2fx | outputs %@", p.tokensPerSecond, stats.speedup ?? 0,
                            stats.identical == true ? "identical" : (params.isGreedy ? "DIFFER" : "differ (expected when sampling: same distribution, different draws)")))
        }
    }
}
