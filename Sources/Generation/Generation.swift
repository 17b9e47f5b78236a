import Draft
import Llama
import Sampling
import Verify

/// Why a generation stopped.
public enum StopReason: String, Sendable, Codable {
    /// `maxTokens` reached.
    case length
    /// An end-of-generation token (it is the last of `tokens`).
    case eos
    /// The context is full.
    case context
}

/// What a generation produced and how long it took (plain or speculative).
public struct GenerationResult {
    public var tokens: [Int32] = []
    public var stop = StopReason.length
    public var prefillSeconds = 0.0
    public var decodeSeconds = 0.0
    /// Decode speed as plain decoding reports it: tokens after the first (which comes from the
    /// prefill's logits) per second of decoding.
    public var tokensPerSecond: Double {
        tokens.count > 1 && decodeSeconds > 0 ? Double(tokens.count - 1) / decodeSeconds : 0
    }
    public var speculative: SpeculativeStats?
    public var tree: TreeShape?
    public init() {}
}

/// The generation loop, plain and speculative: the code `specdec decode`, `eval`, `bench` and the
/// lossless tests all run. `SpeculativeDecoder.step` is the inner step of the speculative loop.
public enum Generation {
    /// The prompt prefill setting of both plain and speculative decoding: the same setting gives
    /// bit-identical caches, which greedy identity needs (OpenBLAS for the prompt in the f32 mode).
    public static let prefillBatchInvariant = false

    /// Plain autoregressive decoding. `onToken` sees each token but an end-of-generation one.
    public static func plain(model: any TargetModel, prompt: LMInput, contextSize: Int, params: SamplingParameters,
                             maxTokens n: Int, eog: Set<Int32>, onToken: (Int32) -> Void = { _ in }) throws -> GenerationResult {
        let it = try TokenIterator(model: model, prompt: prompt, contextSize: contextSize, params: params, maxTokens: n, eog: eog)
        return try run(it, onToken: onToken)
    }

    /// Speculative decoding: the same tokens as `plain` at temperature 0, the same distribution
    /// above. `auto` (from `--tree-tokens auto`) sets the tree's node budget and sizes the
    /// context-match chains by their verify cost; `fallback` pauses drafting while it does not
    /// pay; `pMin` prunes the trees to the nodes above its threshold (`--draft-p-min`; it learns across calls).
    public static func speculative(model: any TargetModel, drafter: Drafter, prompt: LMInput, contextSize: Int,
                                   params: SamplingParameters, shape: TreeShape, maxTokens n: Int, eog: Set<Int32>,
                                   auto: AutoTree? = nil, fallback: FallbackPolicy? = nil, pMin: PMinBandit? = nil,
                                   onToken: (Int32) -> Void = { _ in }) throws -> GenerationResult {
        let it = try TokenIterator(model: model, prompt: prompt, contextSize: contextSize, params: params, maxTokens: n,
                                   eog: eog, speculative: (drafter, shape), auto: auto, fallback: fallback, pMin: pMin)
        return try run(it, onToken: onToken)
    }

    private static func run(_ it: TokenIterator, onToken: (Int32) -> Void) throws -> GenerationResult {
        while it.stop == nil {
            for t in try it.step() { onToken(t) }
        }
        return it.result
    }
}
