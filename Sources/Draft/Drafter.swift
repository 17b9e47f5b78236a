/// One candidate token of a draft tree with its log-probability under the draft.
public struct DraftCandidate: Sendable, Equatable {
    public var token: Int32
    public var logProb: Float
    public init(token: Int32, logProb: Float) { self.token = token; self.logProb = logProb }
}

/// A small model that proposes continuations from the target's own features (EAGLE / ViSpec).
/// Filled in by the draft issue; the protocol fixes the seam now.
public protocol Drafter {
    /// Feeds tokens the target accepted together with the target's final-norm hidden states
    /// (`features`: tokens.count × width) so the draft's cache follows the accepted sequence.
    mutating func accept(tokens: [Int32], features: [Float]) throws
    /// Expands candidate nodes in one batched forward; `parents[i]` is the index of node i's parent
    /// (−1 = the last accepted token). Returns the top-`k` candidates per node.
    mutating func expand(tokens: [Int32], parents: [Int], topK k: Int) throws -> [[DraftCandidate]]
    /// Forgets everything after `length` accepted tokens.
    mutating func truncate(to length: Int)
}
