import Llama

/// A language model used as the draft (classic speculative decoding: it must share the target's
/// vocabulary): any `TargetModel`, such as a small GGUF LLaMA, the target's early-exit layers or
/// the target itself. It reads tokens, not the target's features. With the target model
/// itself it is a perfect greedy draft: every top-1 is the target's argmax (its prompt goes
/// through the same batch as the target's prefill, everything after batch-invariantly).
public final class LlamaDrafter: SequenceStartDrafter {
    public let model: any TargetModel
    private let session: any TargetSession
    private let prefillBatchInvariant: Bool
    public private(set) var acceptedPositions = 0
    private var firstInput: [Float]?
    private var roundTokens: [Int32] = []
    private var roundParents: [Int] = []

    /// `prefillBatchInvariant` should be what the target's prefill used.
    public init(model: any TargetModel, contextSize: Int, prefillBatchInvariant: Bool) {
        self.model = model
        self.session = model.makeTargetSession(contextSize: contextSize)
        self.prefillBatchInvariant = prefillBatchInvariant
    }

    public func begin(firstInput: [Float]) {
        self.firstInput = firstInput
    }

    public func reset() {
        acceptedPositions = 0
        session.truncate(to: 0)
        firstInput = nil
        roundTokens = []; roundParents = []
    }

    public func accept(features: [Float], nextTokens: [Int32], images: [DraftImageSpan], topK: Int) throws -> [DraftCandidate] {
        let n = nextTokens.count, d = model.width
        guard n >= 1 else { throw DraftError(file: "<draft>", field: "accept", reason: "needs at least one token") }
        var x = [Float](repeating: 0, count: n * d)
        try x.withUnsafeMutableBufferPointer { xb in
            for (i, t) in nextTokens.enumerated() {
                let pos = acceptedPositions + i + 1
                if let span = images.first(where: { pos >= $0.start && pos < $0.start + $0.rows }) {
                    guard span.embeddings.count == span.rows * d else { throw DraftError(file: "<draft>", field: "images", reason: "image rows are not \(d) wide") }
                    let r = (pos - span.start) * d
                    for j in 0..<d { xb[i * d + j] = span.embeddings[r + j] }
                } else {
                    guard t >= 0, Int(t) < model.vocabSize else { throw DraftError(file: "<draft>", field: "nextTokens", reason: "token \(t) is outside the draft's vocabulary") }
                    model.embed(token: t, into: xb.baseAddress! + i * d)
                }
            }
        }
        roundTokens = []; roundParents = []
        let out: ForwardOutput
        if acceptedPositions == 0 {
            // Positions 0..<n as one batch, exactly the target's prefill, then the new root alone.
            guard let f = firstInput, f.count == d else { throw DraftError(file: "<draft>", field: "begin", reason: "begin(firstInput:) was not called") }
            session.truncate(to: 0)
            _ = try session.forward(embeddings: f + x[0 ..< (n - 1) * d], logits: .none, batchInvariant: prefillBatchInvariant)
            out = try session.forward(embeddings: Array(x[(n - 1) * d ..< n * d]), logits: .last)
        } else {
            session.truncate(to: acceptedPositions + 1)
            out = try session.forward(embeddings: x, logits: .last)
        }
        acceptedPositions += n
        return DraftCandidate.top(topK, logits: out.logits[...])
    }

    public func expand(tokens: [Int32], parents: [Int], topK: Int) throws -> [[DraftCandidate]] {
        guard !tokens.isEmpty else { return [] }
        guard tokens.count == parents.count else { throw DraftError(file: "<draft>", field: "expand", reason: "\(tokens.count) tokens, \(parents.count) parents") }
        roundTokens += tokens
        roundParents += parents
        // The cache has no tree mask across calls, so the whole round goes again in one batch
        // (cheap enough for a draft model and exact).
        session.truncate(to: acceptedPositions + 1)
        let out = try session.forward(tokens: roundTokens, logits: .all, mask: .tree(parents: roundParents))
        let v = model.vocabSize
        return (roundTokens.count - tokens.count ..< roundTokens.count).map {
            DraftCandidate.top(topK, logits: out.logits[$0 * v ..< ($0 + 1) * v])
        }
    }
}
