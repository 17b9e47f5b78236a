import Draft
import Generation
import Llama
import Sampling
import Verify

/// Speculative against plain decoding, side by side on the same prompts in one process (the
/// machine's noise hits both alike): what `eval` and `bench --prompts` run. Every prompt is
/// decoded plainly, then by each system, with the same sampling seed.
public enum Comparison {
    /// One speculative configuration: a draft, its tree, the fallback policy (nil: always draft),
    /// the `--draft-p-min` threshold (nil: off; a bandit learns across the prompts) and, with an
    /// auto budget, the verify cost that sizes the context-match chains (nil: whole chains).
    public struct System {
        public var name: String
        public var drafter: Drafter
        public var shape: TreeShape
        public var fallback: FallbackPolicy?
        public var pMin: PMinBandit?
        public var verifyCost: VerifyCostCurve?
        public init(name: String, drafter: Drafter, shape: TreeShape, fallback: FallbackPolicy?, pMin: PMinBandit? = nil,
                    verifyCost: VerifyCostCurve? = nil) {
            self.name = name; self.drafter = drafter; self.shape = shape; self.fallback = fallback; self.pMin = pMin
            self.verifyCost = verifyCost
        }
    }

    /// One prompt decoded by one system ("plain" for the baseline).
    public struct Run: Encodable, Sendable {
        public var system: String
        public var prompt: String
        public var kind: String
        public var temperature: Float
        public var prompt_tokens: Int
        public var generated: Int
        public var plain_tokens_per_s: Double
        public var tokens_per_s: Double
        public var speedup: Double
        /// Accepted draft tokens per step; context-matched ones (`+ngram`) apart, never in τ.
        public var tau: Double
        public var context_tokens_per_step: Double
        public var tokens_per_step: Double
        public var acceptance_by_depth: [Double]
        /// Drafting's share of decoding time (the draft's read of the prompt included).
        public var draft_share: Double
        public var identical: Bool
    }

    /// Medians (τ, speedup, tokens/s) over the prompts of one kind at one temperature.
    public struct Cell: Encodable, Sendable {
        public var system: String
        public var kind: String
        public var temperature: Float
        public var prompts: Int
        public var tau: Double
        public var context_tokens_per_step: Double
        public var tokens_per_step: Double
        public var speedup: Double
        public var tokens_per_s: Double
        public var plain_tokens_per_s: Double
        /// T = 0: prompts whose speculative tokens equal plain decoding's (must be all).
        public var identical: Int?
        /// Mean over prompts, per depth.
        public var acceptance_by_depth: [Double]
        public var draft_share: Double
    }

    /// The context each prompt gets: its tokens, the answer and a tree's worth of room.
    public static func contextSize(_ prompt: LMInput, maxTokens: Int, model: LlamaModel) -> Int {
        min(model.config.contextLength, prompt.count + maxTokens + 128)
    }

    /// Decodes every prompt at every temperature plainly and with each system. Prompt i is
    /// sampled with seed `seedBase + i`. `log` gets one line per speculative run.
    public static func run(model: LlamaModel, prompts: [PromptSet.Item], systems: [System], temperatures: [Float],
                           maxTokens: Int, eog: Set<Int32>, seedBase: UInt64, log: (String) -> Void) throws -> [Run] {
        var runs: [Run] = []
        for temperature in temperatures {
            for (i, p) in prompts.enumerated() {
                var params = SamplingParameters()
                params.temperature = temperature
                params.seed = seedBase + UInt64(i)
                let ctx = contextSize(p.prompt, maxTokens: maxTokens, model: model)
                let plain = try Generation.plain(model: model, prompt: p.prompt, contextSize: ctx, params: params, maxTokens: maxTokens, eog: eog)
                runs.append(Run(system: "plain", prompt: p.id, kind: p.kind, temperature: temperature, prompt_tokens: p.prompt.count,
                                generated: plain.tokens.count, plain_tokens_per_s: plain.tokensPerSecond, tokens_per_s: plain.tokensPerSecond,
                                speedup: 1, tau: 0, context_tokens_per_step: 0, tokens_per_step: 1, acceptance_by_depth: [],
                                draft_share: 0, identical: true))
                for system in systems {
                    let spec = try Generation.speculative(model: model, drafter: system.drafter, prompt: p.prompt, contextSize: ctx,
                                                          params: params, shape: system.shape, maxTokens: maxTokens, eog: eog,
                                                          auto: system.verifyCost.map { AutoTree(curve: $0, nodes: nil) },
                                                          fallback: system.fallback, pMin: system.pMin)
                    let s = spec.speculative ?? SpeculativeStats()
                    let r = Run(system: system.name, prompt: p.id, kind: p.kind, temperature: temperature, prompt_tokens: p.prompt.count,
                                generated: spec.tokens.count, plain_tokens_per_s: plain.tokensPerSecond, tokens_per_s: spec.tokensPerSecond,
                                speedup: plain.tokensPerSecond > 0 ? spec.tokensPerSecond / plain.tokensPerSecond : 0,
                                tau: s.tau, context_tokens_per_step: s.contextTokensPerStep, tokens_per_step: s.tokensPerStep,
                                acceptance_by_depth: s.acceptanceByDepth,
                                draft_share: spec.decodeSeconds > 0 ? s.draftSeconds / spec.decodeSeconds : 0,
                                identical: spec.tokens == plain.tokens)
                    runs.append(r)
                    let context = r.context_tokens_per_step > 0 ? String(format: " + %.2f context", r.context_tokens_per_step) : ""
                    log(String(format: "  T=%g %@ %@ %@: plain %.1f tok/s, speculative %.1f tok/s (%.2fx), tau %.2f%@%@",
                               temperature, p.kind, p.id, system.name, r.plain_tokens_per_s, r.tokens_per_s, r.speedup, r.tau, context,
                               temperature == 0 && !r.identical ? "  OUTPUT DIFFERS FROM PLAIN" : ""))
                }
            }
        }
        return runs
    }

    /// One cell per system, kind and temperature that has runs; `kinds` in that order ("all" pools them).
    public static func cells(_ runs: [Run], systems: [String], kinds: [String] = ["image", "text"]) -> [Cell] {
        var temperatures: [Float] = []
        for t in runs.map(\.temperature) where !temperatures.contains(t) { temperatures.append(t) }
        var cells: [Cell] = []
        for system in systems {
            for kind in kinds {
                for temperature in temperatures {
                    let rs = runs.filter { $0.system == system && (kind == "all" || $0.kind == kind) && $0.temperature == temperature }
                    guard !rs.isEmpty else { continue }
                    let depth = rs.map(\.acceptance_by_depth.count).max() ?? 0
                    let acc = (0..<depth).map { k -> Double in
                        let v = rs.compactMap { k < $0.acceptance_by_depth.count ? $0.acceptance_by_depth[k] : nil }
                        return v.isEmpty ? 0 : v.reduce(0, +) / Double(v.count)
                    }
                    cells.append(Cell(system: system, kind: kind, temperature: temperature, prompts: rs.count, tau: median(rs.map(\.tau)),
                                      context_tokens_per_step: median(rs.map(\.context_tokens_per_step)),
                                      tokens_per_step: median(rs.map(\.tokens_per_step)),
                                      speedup: median(rs.map(\.speedup)), tokens_per_s: median(rs.map(\.tokens_per_s)),
                                      plain_tokens_per_s: median(rs.map(\.plain_tokens_per_s)),
                                      identical: temperature == 0 ? rs.filter(\.identical).count : nil, acceptance_by_depth: acc,
                                      draft_share: median(rs.map(\.draft_share))))
                }
            }
        }
        return cells
    }
}

/// The median (the mean of the middle two for an even count); 0 for none.
public func median(_ v: [Double]) -> Double {
    let s = v.sorted()
    guard !s.isEmpty else { return 0 }
    return s.count % 2 == 1 ? s[s.count / 2] : (s[s.count / 2 - 1] + s[s.count / 2]) / 2
}
