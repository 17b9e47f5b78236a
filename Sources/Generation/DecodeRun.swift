import Diagnostics
import Foundation
import Llama
import Sampling
import Verify

/// One prompt decoded as `decode` does it: plainly, or speculatively with a draft (and with
/// `compare` plainly again in the same process, for the speedup and the identity check).
public struct DecodeRun {
    public var prompt: LMInput
    public var run: GenerationResult
    /// With `compare`: the plain decoding of the same prompt with the same parameters.
    public var plain: GenerationResult?
    public var params: SamplingParameters
    public var threads: Int
    /// The `--draft` argument and what it loaded as.
    public var draft: String?
    public var draftKind: String?
    public var treeAuto: Bool
    /// `--draft-p-min` and, when set, its threshold state after the run (what the bandit learned).
    public var pMin: TreeRequest.PMin
    public var pMinBandit: PMinBandit?

    /// Tokens of `compare`'s untimed plain warm-up run.
    public static let warmUpTokens = 16

    /// `onToken` sees each token of the (first) run as it is emitted.
    public init(target: LoadedTarget, prompt: LMInput, contextSize: Int, params: SamplingParameters, maxTokens: Int,
                draft: String?, tree: TreeRequest, threads: Int, compare: Bool, log: @escaping (String) -> Void,
                onToken: (Int32) -> Void) throws {
        let model = target.model
        guard prompt.tokens.count < contextSize else {
            throw SettingError("--ctx", "the prompt has \(prompt.tokens.count) tokens but the context holds \(contextSize) (raise --ctx; the model allows \(model.config.contextLength))")
        }
        _ = try Sampler(params)   // checks the parameters before any work
        let eog = target.tokenizer.endOfGenerationTokens
        self.prompt = prompt; self.params = params; self.threads = threads; self.draft = draft; treeAuto = tree.isAuto
        pMin = tree.pMin
        if compare {
            // An untimed warm-up, so that neither timed run is the process's first generation:
            // the first one faults in fresh memory for its cache and workspace, which the second
            // then reuses (a plain run first measured 0.97x of itself when timed second).
            _ = try Generation.plain(model: model, prompt: prompt, contextSize: contextSize, params: params,
                                     maxTokens: min(maxTokens, Self.warmUpTokens), eog: eog)
        }
        if let draft {
            let loaded = try LoadedDraft.load(path: draft, target: model, targetPath: target.path, contextSize: contextSize, threads: threads)
            draftKind = loaded.kind
            let shape = try tree.shape()
            let auto = try tree.autoTree(model: model, modelPath: target.path, draft: loaded, shape: shape, log: log)
            pMinBandit = tree.pMinBandit()
            run = try Generation.speculative(model: model, drafter: loaded.drafter, prompt: prompt, contextSize: contextSize,
                                             params: params, shape: shape, maxTokens: maxTokens, eog: eog, auto: auto,
                                             fallback: tree.fallback, pMin: pMinBandit, onToken: onToken)
        } else {
            run = try Generation.plain(model: model, prompt: prompt, contextSize: contextSize, params: params,
                                       maxTokens: maxTokens, eog: eog, onToken: onToken)
        }
        if compare {
            plain = try Generation.plain(model: model, prompt: prompt, contextSize: contextSize, params: params,
                                         maxTokens: maxTokens, eog: eog)
        }
    }

    /// `decode --json`'s statistics (keys as printed).
    public struct Stats: Encodable {
        public var prompt_token_count: Int
        public var generated_token_count: Int
        public var prefill_seconds: Double
        public var decode_seconds: Double
        public var prompt_tokens_per_s: Double
        public var decode_tokens_per_s: Double
        public var stop_reason: String
        public var seed: UInt64
        public var threads: Int
        // with images only
        public var image_count: Int?
        public var image_token_count: Int?
        public var image_seconds: Double?
        // with a draft only
        public var draft: String?
        public var draft_kind: String?
        public var tree_top_k: Int?
        public var tree_depth: Int?
        public var tree_tokens: Int?
        public var tree_tokens_auto: Bool?
        public var steps: Int?
        public var tau: Double?
        /// Context-matched tokens (`+ngram`) accepted per step, apart from τ.
        public var context_tokens_per_step: Double?
        /// Context-matched tokens found but not verified (with `auto`: expected not to pay).
        public var context_withheld: Int?
        public var tokens_per_step: Double?
        public var acceptance_by_depth: [Double]?
        public var tokens_per_s: Double?
        public var draft_seconds: Double?
        public var draft_prefill_seconds: Double?
        public var verify_seconds: Double?
        public var draft_share: Double?
        public var verify_share: Double?
        /// Steps decoded without drafting because drafting did not pay, and how often that began.
        public var plain_steps: Int?
        public var fallbacks: Int?
        /// `--draft-p-min` ("auto" or the threshold) and, unless off, steps and mean tokens/s per threshold.
        public var draft_p_min: String?
        public var draft_p_min_arms: [PMinBandit.Arm]?
        // with compare only
        public var plain_tokens_per_s: Double?
        public var speedup: Double?
        public var identical: Bool?
        public var plain_tokens: [Int32]?
    }

    /// `decode --json`'s object: the prompt's ids (-1 at image rows), the answer and the statistics.
    public struct Report: Encodable {
        public var prompt_tokens: [Int32]
        public var tokens: [Int32]
        public var text: String
        public var stats: Stats
    }

    public func report(text: String) -> Report {
        Report(prompt_tokens: prompt.tokens, tokens: run.tokens, text: text, stats: stats)
    }

    public var stats: Stats {
        let images = prompt.sequence != nil
        var stats = Stats(
            prompt_token_count: prompt.count, generated_token_count: run.tokens.count,
            prefill_seconds: run.prefillSeconds, decode_seconds: run.decodeSeconds,
            prompt_tokens_per_s: Double(prompt.count) / run.prefillSeconds,
            decode_tokens_per_s: run.tokensPerSecond,
            stop_reason: run.stop.rawValue, seed: params.seed, threads: threads,
            image_count: images ? prompt.imageCount : nil,
            image_token_count: images ? prompt.imageTokenCount : nil,
            image_seconds: images ? prompt.imageSeconds : nil)
        if let s = run.speculative, let shape = run.tree {
            stats.draft = draft
            stats.draft_kind = draftKind
            stats.tree_top_k = shape.topK
            stats.tree_depth = shape.depth
            stats.tree_tokens = shape.tokens
            stats.tree_tokens_auto = treeAuto
            stats.steps = s.steps
            stats.tau = s.tau
            stats.context_tokens_per_step = s.contextNodes > 0 ? s.contextTokensPerStep : nil
            stats.context_withheld = s.contextNodes > 0 || s.contextWithheld > 0 ? s.contextWithheld : nil
            stats.tokens_per_step = s.tokensPerStep
            stats.acceptance_by_depth = s.acceptanceByDepth
            stats.tokens_per_s = run.tokensPerSecond
            stats.draft_seconds = s.draftSeconds
            stats.draft_prefill_seconds = s.draftPrefillSeconds
            stats.verify_seconds = s.verifySeconds
            stats.plain_steps = s.plainSteps
            stats.fallbacks = s.fallbacks
            stats.draft_p_min = pMin.description
            stats.draft_p_min_arms = pMinBandit?.arms
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
        return stats
    }

    /// The summary `decode` prints after the answer: counts and speeds, images, the speculative
    /// statistics and the comparison with plain decoding.
    public var summaryLines: [String] {
        let stats = stats
        var lines = [String(format: "\nprompt: %d tokens, %.1f tok/s | generated: %d tokens, %.1f tok/s | stop: %@ | seed %llu, %d threads",
                            prompt.count, stats.prompt_tokens_per_s, run.tokens.count, stats.decode_tokens_per_s,
                            run.stop.rawValue, params.seed, threads)]
        if prompt.imageCount > 0 {
            lines.append(String(format: "images: %d, %d positions of the prompt, encoded in %.3f s", prompt.imageCount,
                                prompt.imageTokenCount, prompt.imageSeconds))
        }
        if let s = run.speculative, let shape = run.tree {
            let depths = s.acceptanceByDepth.enumerated().map { String(format: "%d:%.2f", $0.offset + 1, $0.element) }.joined(separator: " ")
            lines.append(String(format: "speculative (%@, %@%@): tau %.2f accepted draft tokens per target forward, %.2f tokens per step over %d steps",
                                draftKind ?? "", shape.description, treeAuto ? " auto" : "", s.tau, s.tokensPerStep, s.steps))
            lines.append("acceptance by depth: \(depths.isEmpty ? "-" : depths)")
            if s.contextNodes > 0 || s.contextWithheld > 0 {
                let withheld = s.contextWithheld > 0 ? ", \(s.contextWithheld) more found but not verified: expected to cost more verify time than they bring" : ""
                lines.append(String(format: "context match: %.2f tokens per step accepted (%d of %d proposed; not in tau%@)",
                                    s.contextTokensPerStep, s.acceptedContextTokens, s.contextNodes, withheld))
            }
            if s.fallbacks > 0 {
                lines.append("fallback: \(s.plainSteps) plain steps (drafting paused \(s.fallbacks) time\(s.fallbacks == 1 ? "" : "s") while it emitted fewer tokens/s than plain steps)")
            } else if s.plainSteps > 0 {
                lines.append("fallback: none (drafting paid; \(s.plainSteps) plain steps measured a plain step's time)")
            }
            if let b = pMinBandit {
                lines.append("draft-p-min \(pMin): \(b.summary)")
            }
            lines.append(String(format: "time: draft %.0f%% (prompt %.3f s), verify %.0f%% | %.1f tok/s",
                                100 * (stats.draft_share ?? 0), s.draftPrefillSeconds, 100 * (stats.verify_share ?? 0), run.tokensPerSecond))
        }
        if let p = plain {
            lines.append(String(format: "plain decoding: %.1f tok/s | speedup %.2fx | outputs %@", p.tokensPerSecond, stats.speedup ?? 0,
                                stats.identical == true ? "identical" : (params.isGreedy ? "DIFFER" : "differ (expected when sampling: same distribution, different draws)")))
        }
        return lines
    }
}
