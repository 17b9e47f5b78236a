/// How many of a context match's tokens are worth verifying. A chain costs verify time for
/// every token it adds to the batch (on an AVX2 Zen 1 a forward of 5 tokens takes 2.05× one of
/// 1, on an AVX-512 VNNI Zen 5 about 1.5×), and its tokens are right only as often as the text
/// repeats itself. So each step verifies the prefix of the chain that maximises expected tokens
/// per second, from the target's measured verify cost and how often chains have agreed with the
/// target so far in this generation.
///
/// The agreement is counted on every chain found, verified or not: the tokens the step emits are
/// the target's own, so the first chain tokens they spell out would have been accepted (at
/// temperature 0 exactly; when sampling, a chain token is accepted with the target's probability
/// of it, which is also the chance that the emitted token equals it). A chain withheld for being
/// too costly still teaches whether the text has started to repeat.
public struct ContextMatchOdds: Sendable, Equatable {
    /// Per chain position l (index l − 1): steps whose emitted tokens reached position l with the
    /// chain's earlier tokens all agreeing, and of those, steps where token l agreed too.
    public private(set) var reached: [Int] = []
    public private(set) var agreed: [Int] = []

    public init() {}

    /// P(chain token l agrees | tokens 1 … l − 1 did). Position 1: Laplace's rule (one agreement
    /// in two before any evidence). A deeper position starts from the estimate of the one before
    /// it (worth two observations): it is reached only when the chain's earlier tokens were
    /// verified and accepted, so it has little evidence of its own, and a chain that has been right
    /// so far tends to stay right (on a repeated list every position agreed: 9 of 9 verified
    /// tokens, while a prior of one in two at each deeper position kept chains at 1–2 tokens).
    public func probability(position l: Int) -> Double { probabilities(max(l, 1))[max(l, 1) - 1] }

    /// `probability(position:)` for positions 1 … `count`, in one pass (each starts from the last).
    func probabilities(_ count: Int) -> [Double] {
        var p = 0.5
        return (0..<count).map { i in
            let r = i < reached.count ? Double(reached[i]) : 0
            let a = i < agreed.count ? Double(agreed[i]) : 0
            p = (a + 2 * p) / (r + 2)
            return p
        }
    }

    /// Expected accepted tokens of a chain's first 0, 1, … `length` tokens.
    func expectedTokens(upTo length: Int) -> [Double] {
        var all = 1.0, sum = 0.0
        return [0] + probabilities(length).map { p in all *= p; sum += all; return sum }
    }

    /// Expected accepted tokens of a chain's first `length` tokens.
    public func expectedTokens(_ length: Int) -> Double { expectedTokens(upTo: length)[length] }

    /// Counts a chain against the tokens the step emitted (the target's own).
    public mutating func observe(chain: [Int32], emitted: [Int32]) {
        let positions = min(chain.count, emitted.count)
        if reached.count < positions {
            reached += Array(repeating: 0, count: positions - reached.count)
            agreed += Array(repeating: 0, count: positions - agreed.count)
        }
        for l in 0..<positions {
            reached[l] += 1
            guard chain[l] == emitted[l] else { break }
            agreed[l] += 1
        }
    }

    /// The number of the chain's first tokens to verify, in 0 … `added.count`, that maximises
    /// (baseTokens + expected chain tokens) / (fixedSeconds + verify seconds), where `added[l]`
    /// is the number of new tree nodes the first l + 1 chain tokens add to a tree of `treeNodes`
    /// (a chain token the draft proposed too costs nothing) and `baseTokens` what the step
    /// emits without the chain (1 + the draft's expected acceptance).
    public func bestLength(added: [Int], treeNodes: Int, baseTokens: Double, fixedSeconds: Double,
                           curve: VerifyCostCurve) -> Int {
        let expected = expectedTokens(upTo: added.count)
        func rate(_ length: Int, extraNodes: Int) -> Double {
            let tokens = baseTokens + expected[length]
            return tokens / (fixedSeconds + curve.stepSeconds(tokens: 1 + treeNodes + extraNodes, visitedRows: tokens))
        }
        var best = 0, bestRate = rate(0, extraNodes: 0)
        for (i, extra) in added.enumerated() {
            let r = rate(i + 1, extraNodes: extra)
            if r > bestRate { best = i + 1; bestRate = r }
        }
        return best
    }
}
