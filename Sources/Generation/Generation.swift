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
    public static func plain(model: LlamaModel, prompt: LMInput, contextSize: Int, params: SamplingParameters,
                             maxTokens n: Int, eog: Set<Int32>, onToken: (Int32) -> Void = { _ in }) throws -> GenerationResult {
        let session = model.makeSession(contextSize: contextSize)
        var sampler = try Sampler(params)
        var run = GenerationResult()
        let t0 = monotonicSeconds()
        var out = try prompt.prefill(session)
        let t1 = monotonicSeconds()
        var history = prompt.history
        while run.tokens.count < n {
            let next = out.logits.withUnsafeBufferPointer { sampler.sample($0, history: history) }
            run.tokens.append(next)
            history.append(next)
            if eog.contains(next) { run.stop = .eos; break }
            onToken(next)
            guard run.tokens.count < n else { break }
            guard session.length < contextSize else { run.stop = .context; break }
            out = try session.forward(tokens: [next])
        }
        run.prefillSeconds = t1 - t0
        run.decodeSeconds = monotonicSeconds() - t1
        return run
    }

    /// Speculative decoding: the same tokens as `plain` at temperature 0, the same distribution
    /// above. `budget` picks the tree size on the first step when `shape` came from
    /// `--tree-tokens auto`; `fallback` pauses drafting while it does not pay.
    public static func speculative(model: LlamaModel, drafter: Drafter, prompt: LMInput, contextSize: Int,
                                   params: SamplingParameters, shape: TreeShape, maxTokens n: Int, eog: Set<Int32>,
                                   budget: ((Double) -> Int)? = nil, fallback: FallbackPolicy? = nil,
                                   onToken: (Int32) -> Void = { _ in }) throws -> GenerationResult {
        let session = model.makeSession(contextSize: contextSize)
        var run = GenerationResult()
        let t0 = monotonicSeconds()
        let prefill = try prompt.prefill(session, captureLayers: drafter.featureLayers)
        let t1 = monotonicSeconds()
        guard n > 0 else { run.prefillSeconds = t1 - t0; return run }
        let dec = try SpeculativeDecoder(session: session, drafter: drafter, sampler: try Sampler(params), shape: shape,
                                         prefill: prefill, prompt: prompt.tokens, images: prompt.draftImageSpans,
                                         history: prompt.history)
        dec.chooseBudget = budget
        dec.fallback = fallback
        var pending = [dec.firstToken]
        outer: while true {
            for t in pending {
                run.tokens.append(t)
                if eog.contains(t) { run.stop = .eos; break outer }
                onToken(t)
                if run.tokens.count >= n { break outer }
            }
            // Plain decoding stops when the cache is full before evaluating the next token.
            guard session.length < contextSize else { run.stop = .context; break }
            pending = try dec.step()
        }
        run.prefillSeconds = t1 - t0
        run.decodeSeconds = monotonicSeconds() - t1
        run.speculative = dec.stats
        run.tree = dec.shape
        return run
    }
}
