import Draft

/// Outcome of checking one draft tree against the target.
public struct VerifyResult: Sendable, Equatable {
    /// Tokens emitted this step: the accepted draft path plus the target's own next token.
    public var emitted: [Int32]
    /// How many of `emitted` came from the draft (τ counts these).
    public var acceptedDraftTokens: Int
    public init(emitted: [Int32], acceptedDraftTokens: Int) {
        self.emitted = emitted; self.acceptedDraftTokens = acceptedDraftTokens
    }
}

/// Checks a draft tree with the target in one batched forward and keeps the longest accepted path,
/// losslessly (greedy: token-identical; sampling: the target's distribution). Filled in by the
/// verification issue.
public protocol Verifier {
    mutating func verify(tree tokens: [Int32], parents: [Int]) throws -> VerifyResult
}
