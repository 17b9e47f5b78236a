/// Draft tokens that cost nothing: when the text's last few tokens occurred earlier in the prompt
/// or the output, the tokens that followed them then are proposed again (prompt-lookup decoding,
/// the idea behind llama.cpp's `ngram-*` modes and SuffixDecoding). The chain is merged into the
/// draft's tree as extra nodes; the target verifies them like any other, so the output does not
/// change, and their acceptance is counted apart from the draft's own (`SpeculativeStats`).
public struct ContextMatch: Sendable, Equatable, CustomStringConvertible {
    /// Most tokens proposed per step (nodes added to the tree at most).
    public var maxTokens: Int
    /// The longest and shortest suffix that is looked up: longer matches first; one token alone
    /// (n = 1) matches too often to be worth a verify slot.
    public var maxMatch = 4
    public var minMatch = 2

    public static let defaultTokens = 4

    public init(maxTokens: Int = ContextMatch.defaultTokens) throws {
        guard (1...64).contains(maxTokens) else {
            throw DraftError(file: "<draft>", field: "ngram", reason: "context-match tokens must be in 1...64, got \(maxTokens)")
        }
        self.maxTokens = maxTokens
    }

    public var description: String { "context match ≤ \(maxTokens) tokens" }

    /// The continuation of the latest earlier occurrence of the longest suffix of `history`
    /// (`maxMatch` down to `minMatch` tokens), at most `limit` tokens; empty when none occurs.
    /// Negative ids (image rows) never match.
    public func propose(history: [Int32], limit: Int) -> [Int32] {
        let n = history.count
        let limit = min(limit, maxTokens)
        guard limit > 0 else { return [] }
        return history.withUnsafeBufferPointer { h in
            var len = min(maxMatch, n - 1)
            while len >= minMatch {
                let suffix = n - len
                // The latest start s < suffix whose `len` tokens equal the suffix's.
                var s = suffix - 1
                while s >= 0 {
                    var same = true
                    for j in 0..<len where h[s + j] != h[suffix + j] || h[s + j] < 0 { same = false; break }
                    if same {
                        let from = s + len
                        let end = min(n, from + limit)
                        if from < end { return Array(h[from ..< end]) }
                    }
                    s -= 1
                }
                len -= 1
            }
            return []
        }
    }
}

/// Context matching on its own (no draft model), or on top of a draft: what `--draft ngram` and
/// `--draft PATH+ngram` load. It forwards the draft's work to `inner` and proposes nothing itself
/// without one; the decoder reads `contextMatch` and merges the chain.
public final class ContextMatchDrafter: SequenceStartDrafter {
    public let inner: Drafter?
    public let match: ContextMatch

    public init(inner: Drafter?, match: ContextMatch) { self.inner = inner; self.match = match }

    public var acceptedPositions: Int { inner?.acceptedPositions ?? positions }
    public var featureLayers: [Int] { inner?.featureLayers ?? [] }
    private var positions = 0

    public func accept(features: [Float], nextTokens: [Int32], images: [DraftImageSpan], topK: Int) throws -> [DraftCandidate] {
        guard let inner else { positions += nextTokens.count; return [] }
        return try inner.accept(features: features, nextTokens: nextTokens, images: images, topK: topK)
    }

    public func expand(tokens: [Int32], parents: [Int], topK: Int) throws -> [[DraftCandidate]] {
        guard let inner else { return tokens.map { _ in [] } }
        return try inner.expand(tokens: tokens, parents: parents, topK: topK)
    }

    public func reset() { positions = 0; inner?.reset() }

    public func begin(firstInput: [Float]) { (inner as? SequenceStartDrafter)?.begin(firstInput: firstInput) }
}
