import Draft
import Kernels
import Llama
import Sampling
import Verify

/// One generation, plain or speculative, advanced a step at a time (mlx-swift-examples'
/// `TokenIterator`). `Generation.plain/speculative` loop over it; the server steps many of them,
/// and batches the plain ones into one forward (`stepPlain`). Stop rules live here once:
/// an end-of-generation token, `maxTokens`, or a full context.
public final class TokenIterator {
    /// Every token so far, an end-of-generation token included.
    public private(set) var tokens: [Int32] = []
    /// Set once the generation has ended.
    public private(set) var stop: StopReason?
    public let prefillSeconds: Double
    /// Time spent in `step` (and, speculative, the draft's read of the prompt).
    public private(set) var decodeSeconds = 0.0

    public let session: any TargetSession
    public let maxTokens: Int
    public let contextSize: Int
    private let eog: Set<Int32>

    // Plain decoding: the logits the next token is sampled from, or the token that must be
    // evaluated first.
    private var sampler: Sampler
    private var history: [Int32]
    private var logits: [Float]
    private var toEvaluate: Int32?

    // Speculative decoding: the decoder and the tokens it has decided but not yet emitted.
    public private(set) var decoder: SpeculativeDecoder?
    private var decided: [Int32] = []

    /// Prefills `prompt` into a new session. With `speculative`, decoding is speculative (the same
    /// tokens as plain at temperature 0, the same distribution above); `auto` sets the tree's
    /// node budget and sizes the context-match chains by their verify cost, `fallback` pauses drafting while it does not pay, `pMin` prunes
    /// each step's tree to the nodes above its threshold (`--draft-p-min`).
    public init(model: any TargetModel, prompt: LMInput, contextSize: Int, params: SamplingParameters,
                maxTokens: Int, eog: Set<Int32>, speculative: (drafter: Drafter, shape: TreeShape)? = nil,
                auto: AutoTree? = nil, fallback: FallbackPolicy? = nil, pMin: PMinBandit? = nil) throws {
        self.maxTokens = maxTokens
        self.contextSize = contextSize
        self.eog = eog
        session = model.makeTargetSession(contextSize: contextSize)
        sampler = try Sampler(params)
        history = prompt.history
        let t0 = monotonicSeconds()
        let out = try prompt.prefill(session, captureLayers: speculative?.drafter.featureLayers ?? [])
        let t1 = monotonicSeconds()
        prefillSeconds = t1 - t0
        logits = out.logits
        guard maxTokens > 0 else { stop = .length; return }
        if let (drafter, shape) = speculative {
            var shape = shape
            if let n = auto?.nodes { shape.tokens = n }
            let dec = try SpeculativeDecoder(session: session, drafter: drafter, sampler: sampler, shape: shape,
                                             prefill: out, prompt: prompt.tokens, images: prompt.draftImageSpans,
                                             history: prompt.history)
            dec.verifyCost = auto?.curve
            dec.fallback = fallback
            dec.pMin = pMin
            decoder = dec
            decided = [dec.firstToken]
            logits = []
            decodeSeconds = monotonicSeconds() - t1
        }
    }

    public var isSpeculative: Bool { decoder != nil }

    /// The next tokens (one for plain decoding, one or more for speculative), end-of-generation
    /// tokens left out; empty once `stop` is set.
    public func step() throws -> [Int32] {
        guard stop == nil else { return [] }
        let t0 = monotonicSeconds()
        defer { decodeSeconds += monotonicSeconds() - t0 }
        if let dec = decoder {
            if decided.isEmpty {
                // As plain decoding: stop when the cache is full before evaluating the next token.
                guard session.length < contextSize else { stop = .context; return [] }
                decided = try dec.step()
            }
            defer { decided = [] }
            return emit(decided)
        }
        if let t = toEvaluate {
            logits = try session.forward(tokens: [t]).logits
            toEvaluate = nil
        }
        return sampleFromLogits()
    }

    /// One plain step of several plain generations in one batched forward: each gets bit for bit
    /// what its own `step` gives (the batch-invariant kernels). Returns each one's new tokens.
    public static func stepPlain(_ iterators: [TokenIterator]) throws -> [[Int32]] {
        precondition(iterators.allSatisfy { !$0.isSpeculative }, "stepPlain takes plain generations only")
        let t0 = monotonicSeconds()
        let evaluating = iterators.filter { $0.stop == nil && $0.toEvaluate != nil }
        if !evaluating.isEmpty {
            let outs = try evaluating[0].session.target.step(evaluating.map(\.session), tokens: evaluating.map { $0.toEvaluate! },
                                                             logits: Array(repeating: true, count: evaluating.count))
            for (it, out) in zip(evaluating, outs) { it.logits = out.logits; it.toEvaluate = nil }
        }
        let shared = monotonicSeconds() - t0
        return iterators.map { it in
            guard it.stop == nil else { return [] }
            let t1 = monotonicSeconds()
            let new = it.sampleFromLogits()
            it.decodeSeconds += shared + monotonicSeconds() - t1
            return new
        }
    }

    private func sampleFromLogits() -> [Int32] {
        let vocab = session.target.vocabSize
        let next = logits[(logits.count - vocab)...].withUnsafeBufferPointer { sampler.sample($0, history: history) }
        history.append(next)
        let out = emit([next])
        if stop == nil {
            // Plain decoding stops when the cache is full before evaluating the next token.
            if session.length < contextSize { toEvaluate = next } else { stop = .context }
        }
        return out
    }

    /// Appends `new` up to a stop; returns the tokens to show.
    private func emit(_ new: [Int32]) -> [Int32] {
        var shown: [Int32] = []
        for t in new {
            tokens.append(t)
            if eog.contains(t) { stop = .eos; break }
            shown.append(t)
            if tokens.count >= maxTokens { stop = .length; break }
        }
        return shown
    }

    /// The run so far as a `GenerationResult`.
    public var result: GenerationResult {
        var r = GenerationResult()
        r.tokens = tokens
        r.stop = stop ?? .length
        r.prefillSeconds = prefillSeconds
        r.decodeSeconds = decodeSeconds
        r.speculative = decoder?.stats
        r.tree = decoder?.shape
        return r
    }
}
