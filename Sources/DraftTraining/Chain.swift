import Foundation

/// Simulated greedy chain drafting for the validation report: at each answer position the
/// draft runs on its own features, each step's token being the target's actual next token
/// while they agree; the count of agreeing steps (≤ depth) is what a chain of that depth
/// would have accepted there.
extension DraftModel {
    public struct ChainResult: Sendable, Equatable {
        public var starts = 0
        public var accepted = 0
        /// histogram[k]: starts that accepted exactly k tokens.
        public var histogram: [Int] = []
        public init(depth: Int) { histogram = [Int](repeating: 0, count: depth + 1) }
        public static func += (a: inout ChainResult, b: ChainResult) {
            a.starts += b.starts; a.accepted += b.accepted
            for i in 0..<min(a.histogram.count, b.histogram.count) { a.histogram[i] += b.histogram[i] }
        }
        /// Mean accepted draft tokens per round (ViSpec's τ; the target's own token not counted).
        public var tau: Double { starts == 0 ? 0 : Double(accepted) / Double(starts) }

        /// The chain model `--tree-tokens auto` uses: node i of a chain is accepted with
        /// probability first·decay^(i−1). `first` = P(at least one accepted); `decay` = the
        /// geometric mean of P(≥ k+1) / P(≥ k) over the depths that were reached. Nil without
        /// any acceptance to fit.
        public var acceptanceModel: (first: Double, decay: Double)? {
            guard starts > 0 else { return nil }
            var atLeast = [Double](repeating: 0, count: histogram.count)
            var tail = 0
            for k in stride(from: histogram.count - 1, through: 0, by: -1) { tail += histogram[k]; atLeast[k] = Double(tail) / Double(starts) }
            guard atLeast.count > 1, atLeast[1] > 0 else { return nil }
            var logSum = 0.0, terms = 0
            for k in 1..<(atLeast.count - 1) where atLeast[k] > 0 && atLeast[k + 1] > 0 {
                logSum += log(atLeast[k + 1] / atLeast[k]); terms += 1
            }
            let decay = terms > 0 ? min(0.99, exp(logSum / Double(terms))) : 0
            return (min(1, atLeast[1]), decay)
        }
    }

    func argmaxRow(_ w: DraftWeightViews, _ x: UnsafePointer<Float>) -> Int {
        let v = config.vocab
        let z = Buf(v)
        Linear.forward(x, w.head!, n: 1, inDim: config.width, outDim: v, into: z.p)
        var best = 0
        for k in 1..<v where z.p[k] > z.p[best] { best = k }
        return best
    }

    public func chain(_ s: DraftSequence, params: [Float], depth: Int, maxStarts: Int) -> ChainResult {
        params.withUnsafeBufferPointer { chain(s, params: $0.baseAddress!, depth: depth, maxStarts: maxStarts) }
    }

    public func chain(_ s: DraftSequence, params: UnsafePointer<Float>, depth: Int, maxStarts: Int) -> ChainResult {
        guard s.count > 0, depth > 0 else { return ChainResult(depth: depth) }
        let c = config, d = c.width
        let w = weights(params)
        if config.isEagle3 {
            // A node reads its parent's pre-norm state as its g.
            let first = tttForward(s, w, steps: 1).passes[0].layer
            return walkChains(s, w, depth: depth, maxStarts: maxStarts, first: first, state: \.s) { at, state, prior in
                s.inputs.withUnsafeBufferPointer { ip in
                    Eagle3Pass(config: c, weights: w, e: ip.baseAddress! + at * d, g: state, n: 1, positions: [s.positions[at]],
                               prior: prior, visible: Visible.all(queries: 1, keys: prior.count + 1)).layer
                }
            }
        }
        // A node's feature is its parent's f̂, through img_fc after an image.
        let first = firstPass(s, w)
        return walkChains(s, w, depth: depth, maxStarts: maxStarts, first: first.pass.layer, state: \.out) { at, state, prior in
            let (f, _) = imgFcForward(w: w, base: state, globalOf: [first.globals[at]], adapters: first.adapters, n: 1)
            return s.inputs.withUnsafeBufferPointer { ip in
                DecoderPass(config: c, weights: w, e: ip.baseAddress! + at * d, f: f.p, n: 1, positions: [s.positions[at]],
                            prior: prior, visible: Visible.all(queries: 1, keys: prior.count + 1)).layer
            }
        }
    }

    /// The walk every arch shares: from each answer position j where `first` (the pass over the
    /// whole sequence) predicts the next token, nodes at entries j+1, j+2, … while they keep
    /// agreeing, each made by `node` from its entry, its parent's `state` row and the keys it
    /// sees (`first`'s entries 0...j, then the earlier nodes').
    func walkChains(_ s: DraftSequence, _ w: DraftWeightViews, depth: Int, maxStarts: Int, first: DecoderLayer,
                    state: KeyPath<DecoderLayer, Buf>,
                    node: (_ at: Int, _ state: UnsafePointer<Float>, _ prior: PriorKeys) -> DecoderLayer) -> ChainResult {
        var res = ChainResult(depth: depth)
        let c = config, d = c.width, n = s.count, kvw = c.kvHeads * c.headDim
        for j in 0..<n where s.lossMask[j] && res.starts < maxStarts {
            res.starts += 1
            var acc = 0
            if head.d2t[argmaxRow(w, first.out.p + j * d)] == s.nextToken[j] {
                acc = 1
                var chainK: [Float] = [], chainV: [Float] = []
                var parentState = Buf(d)
                parentState.p.update(from: first[keyPath: state].p + j * d, count: d)
                var at = j
                while acc < depth {
                    let nx = at + 1
                    // A compressed image entry (ViSpec's adapter) has no token to draft; EAGLE-3 has none.
                    guard nx < n, s.compImage[nx] < 0, s.positions[nx] == s.positions[at] + 1, s.nextToken[nx] >= 0 else { break }
                    let nPrior = j + 1 + chainK.count / kvw
                    let pk = Buf(nPrior * kvw), pv = Buf(nPrior * kvw)
                    pk.p.update(from: first.ownK, count: (j + 1) * kvw); pv.p.update(from: first.ownV, count: (j + 1) * kvw)
                    for i in 0..<chainK.count { pk.p[(j + 1) * kvw + i] = chainK[i]; pv.p[(j + 1) * kvw + i] = chainV[i] }
                    let next = node(nx, parentState.p, (UnsafePointer(pk.p), UnsafePointer(pv.p), nPrior))
                    guard head.d2t[argmaxRow(w, next.out.p)] == s.nextToken[nx] else { break }
                    acc += 1
                    chainK += UnsafeBufferPointer(start: next.ownK, count: kvw); chainV += UnsafeBufferPointer(start: next.ownV, count: kvw)
                    parentState = next[keyPath: state]
                    at = nx
                }
            }
            res.accepted += acc
            res.histogram[acc] += 1
        }
        return res
    }
}

extension DraftModel {
    /// The draft's logits (n × V) at every entry of the first pass, no losses: what inference
    /// computes for accepted positions (used to check the trainer against `EagleDraft`).
    public func logits(_ s: DraftSequence, params: [Float]) -> [Float] {
        if config.isEagle3 { return tttLogits(s, params: params, steps: 1)[0] }
        let c = config, d = c.width, n = s.count, v = c.vocab
        return params.withUnsafeBufferPointer { pp -> [Float] in
            let w = weights(pp.baseAddress!)
            let pass = firstPass(s, w).pass
            let z = Buf(n * v)
            Linear.forward(pass.fhat.p, w.head!, n: n, inDim: d, outDim: v, into: z.p)
            return z.array
        }
    }
}

extension ValidationResult {
    /// `ChainResult.acceptanceModel` of the validation chains.
    public var acceptance: (first: Double, decay: Double)? {
        var r = DraftModel.ChainResult(depth: max(0, acceptedHistogram.count - 1))
        r.starts = chainStarts
        r.histogram = acceptedHistogram
        return r.acceptanceModel
    }
}
