#if canImport(Glibc)
import Glibc
#elseif canImport(Darwin)
import Darwin
#endif

/// One candidate token of a draft tree with its log-probability under the draft.
public struct DraftCandidate: Sendable, Equatable {
    public var token: Int32
    public var logProb: Float
    public init(token: Int32, logProb: Float) { self.token = token; self.logProb = logProb }
}

/// An image span of the target's sequence: target positions `start ..< start + rows` whose inputs
/// are the projected image embeddings `embeddings` (rows × width, row-major).
public struct DraftImageSpan: Sendable, Equatable {
    public var start: Int
    public var rows: Int
    public var embeddings: [Float]
    public init(start: Int, rows: Int, embeddings: [Float]) {
        self.start = start; self.rows = rows; self.embeddings = embeddings
    }
}

/// A small model that proposes continuations from the target's own features (EAGLE / ViSpec).
/// Indexing and the meaning of an entry are defined in docs/draft-design.md.
///
/// One drafting round: `accept` the target's newly verified positions (it returns the candidates
/// for the token after them), then `expand` the tree level by level; the next `accept` discards
/// the round's tree nodes. Drafting is not lossless-critical: the verifier checks every token.
public protocol Drafter: AnyObject {
    /// Target positions accepted so far (the next `accept` starts at this target position).
    var acceptedPositions: Int { get }

    /// Appends target positions `acceptedPositions ..< acceptedPositions + n`:
    /// `features` (n × width) are the target's final-norm hidden states at those positions and
    /// `nextTokens[i]` is the token at the position after position i (the last one is the token
    /// the target has just emitted and not yet evaluated). `images` lists image spans lying in
    /// the new positions (+1), with their embeddings; tokens inside a span are placeholders. A span
    /// must end before the last new position + 1 (that input is the emitted token); on the first
    /// accept it may start at position 0.
    /// Returns the `topK` most likely tokens after `nextTokens.last`, best first.
    func accept(features: [Float], nextTokens: [Int32], images: [DraftImageSpan], topK: Int) throws -> [DraftCandidate]

    /// Adds tree nodes after those added by earlier `expand` calls of this round, in one batched
    /// forward. `parents[i]` is the index of node i's parent among all nodes of this round
    /// (earlier calls first, then this call's; −1 = the root, the last accepted token); a parent
    /// comes before its children. Returns each new node's `topK` next-token candidates, best first.
    func expand(tokens: [Int32], parents: [Int], topK: Int) throws -> [[DraftCandidate]]

    /// Starts over with an empty sequence.
    func reset()

    /// Target layers whose output states `accept` reads, side by side per position (EAGLE-3);
    /// empty: the target's final-norm state.
    var featureLayers: [Int] { get }
}

extension Drafter {
    public var featureLayers: [Int] { [] }
}

/// A drafter that needs the input of position 0 itself (EAGLE entries start at position 1's
/// input, so an EAGLE draft does not; a draft language model does).
public protocol SequenceStartDrafter: Drafter {
    /// Called after `reset()` and before the first `accept`: position 0's input embedding.
    func begin(firstInput: [Float])
}

extension DraftCandidate {
    /// The `k` most likely tokens of a logits row with their log-softmax, best first (ties: lower id).
    public static func top(_ k: Int, logits row: ArraySlice<Float>) -> [DraftCandidate] {
        guard k > 0, let m = row.max() else { return [] }
        var sum: Double = 0
        for v in row { sum += Double(expf(v - m)) }
        let lse = m + Float(log(sum))
        var best: [(Int32, Float)] = []
        best.reserveCapacity(k + 1)
        let base = row.startIndex
        for (off, v) in row.enumerated() {
            if best.count == k, let last = best.last, v <= last.1 { continue }
            let id = Int32(row.index(base, offsetBy: off) - base)
            var pos = best.count
            while pos > 0 && best[pos - 1].1 < v { pos -= 1 }
            best.insert((id, v), at: pos)
            if best.count > k { best.removeLast() }
        }
        return best.map { DraftCandidate(token: $0.0, logProb: $0.1 - lse) }
    }
}
