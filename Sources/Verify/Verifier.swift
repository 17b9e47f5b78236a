import Draft
import Llama
import Sampling

/// Outcome of checking one draft tree against the target.
public struct VerifyResult: Sendable, Equatable {
    /// Tokens emitted this step: the accepted draft path plus the target's own next token.
    public var emitted: [Int32]
    /// How many of `emitted` came from the tree (`acceptedNodes.count`).
    public var acceptedDraftTokens: Int
    /// The deepest tree level the walk tried (accepted levels, plus one when it stopped at a node
    /// with children); 0 for an empty tree.
    public var triedDepth: Int
    /// The target's final-norm hidden states of the root and the accepted nodes (rows × width):
    /// what the drafter's next `accept` reads.
    public var features: [Float]
    /// Tree indices of the accepted nodes, root side first.
    public var acceptedNodes: [Int]

    public init(emitted: [Int32], acceptedDraftTokens: Int, triedDepth: Int = 0, features: [Float] = [], acceptedNodes: [Int] = []) {
        self.emitted = emitted; self.acceptedDraftTokens = acceptedDraftTokens
        self.triedDepth = triedDepth; self.features = features; self.acceptedNodes = acceptedNodes
    }
}


/// How drafted tokens are accepted when sampling. Only `.exact` is lossless; the other exists so
/// that the statistical test can show it notices a wrong rule.
public enum AcceptanceRule: Sendable, Equatable {
    /// EAGLE's tree rule: children tried in order, child x accepted with probability p(x) under
    /// the residual distribution, which loses x (and is renormalised) on rejection; the extra
    /// token is drawn from what remains.
    case exact
    /// Deliberately wrong (tests only): the first child is always accepted.
    case acceptFirstChild
    /// Deliberately wrong (tests only): a drawn child is accepted with min(1, p(x)/q(x)), but its
    /// rejection leaves p as it was instead of max(0, p − q). (Accepting a drawn child with p(x)
    /// as if it had been chosen is not wrong, only slower: that rule is exact for any child picked
    /// independently of the target's draws.)
    case keepDistributionAfterDrawnRejection
}

/// The distribution a tree node's token was drawn from (`SpeculativeDecoder` samples the root's
/// single child from the draft's candidates when sampling). Without one a node counts as chosen
/// deterministically (q = a point mass on its token).
public struct Proposal: Sendable, Equatable {
    public var tokens: [Int32]
    /// Normalised probabilities of `tokens`.
    public var probs: [Double]
    public init(tokens: [Int32], probs: [Double]) { self.tokens = tokens; self.probs = probs }

    public func probability(of token: Int32) -> Double {
        tokens.firstIndex(of: token).map { probs[$0] } ?? 0
    }

    /// A token drawn with exactly these probabilities (in Double, as the verifier reads them).
    public func draw(_ rng: inout SeededGenerator) -> Int32 {
        let u = rng.nextUnitDouble()
        var cum = 0.0
        for (t, p) in zip(tokens, probs) {
            cum += p
            if u < cum { return t }
        }
        return tokens[probs.lastIndex { $0 > 0 } ?? tokens.count - 1]
    }
}

/// The target side of speculative decoding: its session holds the prefix; `root` is the last
/// emitted token, not yet evaluated. One `verify` runs [root, tree nodes…] in one forward with
/// the tree mask, walks the tree, compacts the cache to root + accepted path and makes the
/// extra token the next root.
public final class TargetVerifier {
    public let session: any TargetSession
    public private(set) var sampler: Sampler
    /// Text so far (prompt text tokens and everything emitted), for the repetition penalty.
    public private(set) var history: [Int32]
    public private(set) var root: Int32
    public var rule: AcceptanceRule = .exact
    /// Target layers whose states the drafter reads (`Drafter.featureLayers`); empty: final norm.
    public var featureLayers: [Int] = []

    public init(session: any TargetSession, sampler: Sampler, history: [Int32], root: Int32) {
        self.session = session; self.sampler = sampler; self.history = history; self.root = root
    }

    /// `parents[i]`: index of node i's parent in `tokens`, −1 = the root; parents first, siblings
    /// in the order they are to be tried (best draft first).
    /// `proposals[i]`: the distribution node i's token was drawn from (absent: chosen
    /// deterministically); used only when sampling.
    public func verify(tree tokens: [Int32], parents: [Int], proposals: [Int: Proposal] = [:]) throws -> VerifyResult {
        guard parents.count == tokens.count else {
            throw VerifyError.drafter("\(tokens.count) tree tokens but \(parents.count) parents")
        }
        let start = session.length
        let batch = [root] + tokens
        let batchParents = [-1] + parents.map { $0 + 1 }
        guard start + batch.count <= session.contextSize else { throw VerifyError.contextFull(session.contextSize) }
        // No logits here: the head runs for the draft's best path (first children) in one batch,
        // and for other nodes only when the walk reaches them; the same bits as a head over every row.
        let out = try session.forward(tokens: batch, logits: .none, mask: .tree(parents: batchParents), captureLayers: featureLayers)
        var children = [[Int]](repeating: [], count: batch.count)
        for (i, p) in batchParents.enumerated() where p >= 0 { children[p].append(i) }

        let model = session.target
        let vocab = model.vocabSize, width = model.width
        var bestPath = [0]
        while let c = children[bestPath.last!].first { bestPath.append(c) }
        var bestLogits = [Float](repeating: 0, count: bestPath.count * vocab)
        let bestHidden = out.features(rows: bestPath, layers: [], width: width)!
        bestHidden.withUnsafeBufferPointer { h in
            bestLogits.withUnsafeMutableBufferPointer { model.logits(hidden: h.baseAddress!, rows: bestPath.count, into: $0.baseAddress!) }
        }
        var offPath = [Float](repeating: 0, count: vocab)
        var node = 0
        var path: [Int] = []
        var pathTokens: [Int32] = []
        var extra: Int32 = 0
        var tried = 0
        /// The logits of `node`, the walk's node at depth `path.count`: precomputed while the walk
        /// follows the best path, else computed now.
        func logitsRow() -> ArraySlice<Float> {
            let k = path.count
            if k < bestPath.count && bestPath[k] == node { return bestLogits[k * vocab ..< (k + 1) * vocab] }
            out.hidden.withUnsafeBufferPointer { h in
                offPath.withUnsafeMutableBufferPointer { model.logits(hidden: h.baseAddress! + node * width, into: $0.baseAddress!) }
            }
            return offPath[...]
        }
        while true {
            if !children[node].isEmpty { tried = path.count + 1 }
            let chosen: Int? = try logitsRow().withUnsafeBufferPointer { row in
                try choose(row, children: children[node], batch: batch, history: history + pathTokens,
                           proposals: proposals, extra: &extra)
            }
            guard let c = chosen else { break }
            path.append(c)
            pathTokens.append(batch[c])
            node = c
        }

        let kept = [0] + path
        session.compact(batchStart: start, keeping: kept)
        let features = out.features(rows: kept, layers: featureLayers, width: model.width) ?? []
        let emitted = pathTokens + [extra]
        history += emitted
        root = extra
        return VerifyResult(emitted: emitted, acceptedDraftTokens: path.count, triedDepth: tried, features: features,
                            acceptedNodes: path.map { $0 - 1 })
    }

    /// The accepted child (a batch index), or nil with `extra` set to the target's own token.
    ///
    /// Sampling: SpecInfer's recursive rejection sampling. With r the target's distribution, each
    /// child x drawn from q is accepted with probability min(1, r(x)/q(x)); on rejection r becomes
    /// max(0, r − q), renormalised, and the next child is tried against it. A deterministic child
    /// has q = a point mass: accepted with probability r(x), after which only x leaves r. The token
    /// emitted is distributed exactly as r at every node (Leviathan et al. 2023, Miao et al. 2024).
    private func choose(_ logits: UnsafeBufferPointer<Float>, children: [Int], batch: [Int32], history: [Int32],
                        proposals: [Int: Proposal], extra: inout Int32) throws -> Int? {
        if sampler.parameters.isGreedy {
            // Exactly what plain greedy decoding picks from these (bit-identical) logits.
            let t = sampler.sample(logits, history: history)
            if let c = children.first(where: { batch[$0] == t }) { return c }
            extra = t
            return nil
        }
        if rule == .acceptFirstChild, let c = children.first { return c }
        // Without children this is plain sampling: the extra token is a draw from the distribution.
        if children.isEmpty {
            extra = sampler.sample(logits, history: history)
            return nil
        }
        let dist = sampler.distribution(logits, history: history)
        var residual = dist.probs.map(Double.init)
        var wanted = Set(children.map { batch[$0] })
        for c in children { if let q = proposals[c - 1] { wanted.formUnion(q.tokens) } }
        var index: [Int32: Int] = [:]
        for (i, id) in dist.ids.enumerated() where wanted.contains(id) { index[id] = i }
        for c in children {
            // Batch index c is tree node c − 1.
            if let q = proposals[c - 1] {
                let total = residual.reduce(0, +)
                guard total > 0 else { break }
                let x = batch[c], qx = q.probability(of: x)
                let rx = index[x].map { residual[$0] / total } ?? 0
                // min(1, r(x)/q(x)) as u·q(x) < r(x); qx = 0 (a token q cannot give) is never accepted.
                if qx > 0, sampler.uniform() * qx < rx { return c }
                if rule == .keepDistributionAfterDrawnRejection { continue }
                var left = residual.map { $0 / total }
                for (id, p) in zip(q.tokens, q.probs) { if let k = index[id] { left[k] = max(0, left[k] - p) } }
                // r ≤ q everywhere means r = q, where rejection has probability 0; rounding aside, keep r.
                if left.reduce(0, +) > 0 { residual = left }
                continue
            }
            guard let i = index[batch[c]], residual[i] > 0 else { continue }   // p(x) = 0: never accepted
            let total = residual.reduce(0, +)
            if sampler.uniform() * total < residual[i] { return c }
            residual[i] = 0
        }
        let rest = TokenDistribution(ids: dist.ids, probs: residual.map { Float($0) })
        extra = sampler.draw(from: rest)
        // A draw can only land on a zero entry when the uniform rounds up to 1 in Float.
        if rest.probability(of: extra) == 0, let last = residual.lastIndex(where: { $0 > 0 }) { extra = dist.ids[last] }
        return nil
    }
}
