import Sampling

#if canImport(Glibc)
import Glibc
#elseif canImport(Darwin)
import Darwin
#endif

/// `--draft-p-min`: the confidence threshold that decides how far each step's draft goes, chosen
/// per step by a multi-armed bandit (the adaptive exit threshold of UAT, "Beyond Greedy Exits",
/// NeurIPS 2025, applied to the draft tree).
///
/// The threshold is on a node's cumulative draft probability (the product along its path, the
/// score EAGLE-2 already ranks nodes by), not on its own token's probability: under a calibrated
/// draft that product is the chance the verifier's walk reaches and accepts the node, that is the
/// tokens the node is expected to add, so "verify only nodes worth at least p" is one rule at
/// every depth (with a per-token threshold a chain of 0.6-probability tokens would pass 0.5 at
/// every depth although its third token is reached 22% of the time). It is monotone along a path,
/// so pruning keeps a connected, best-first tree and stops expansion as soon as a level has no
/// node above it (the draft's work shrinks with the verify batch).
///
/// The bandit is Gaussian Thompson sampling over a few fixed thresholds. Its reward is what the
/// user feels, the step's tokens per second (drafting and verification), measured on the clock:
/// outputs do not depend on it (verification is lossless whatever the tree), only speed does.
/// UCB1 was the first candidate, but its exploration bonus (√(2 ln N / n) on rewards scaled to
/// [0, 1]) dwarfs the 10–20% gaps between thresholds for thousands of steps, so it stays close to
/// round-robin over a whole evaluation; Thompson sampling scales its exploration by the measured
/// spread of the rewards. Choices are deterministic given the seed and the rewards (no clock-seeded
/// randomness).
///
/// A class: one bandit learns across the generations of a run (eval's prompts, serve's requests);
/// a fixed threshold is a bandit with one arm (same bookkeeping, reported the same way).
public final class PMinBandit {
    /// Thresholds of `--draft-p-min auto`: off, and four levels of confidence.
    public static let defaultArms: [Float] = [0, 0.2, 0.4, 0.6, 0.8]

    public struct Arm: Sendable, Equatable, Encodable {
        public var p_min: Float
        /// Drafting steps that used this threshold.
        public var steps: Int
        /// Their mean reward (tokens per second of the step).
        public var mean_tokens_per_s: Double
    }

    public let thresholds: [Float]
    private var count: [Int]
    private var sum: [Double]
    private var sumSquares: [Double]
    private var rng: SeededGenerator

    /// `thresholds` in [0, 1) (0: no pruning).
    public init(thresholds: [Float] = PMinBandit.defaultArms, seed: UInt64 = 0x5EED) {
        precondition(!thresholds.isEmpty && thresholds.allSatisfy { $0 >= 0 && $0 < 1 }, "thresholds must lie in [0, 1)")
        self.thresholds = thresholds
        count = Array(repeating: 0, count: thresholds.count)
        sum = Array(repeating: 0, count: thresholds.count)
        sumSquares = Array(repeating: 0, count: thresholds.count)
        rng = SeededGenerator(seed: seed)
    }

    public var isAdaptive: Bool { thresholds.count > 1 }

    /// The arm to play this step.
    public func choose() -> Int {
        guard isAdaptive else { return 0 }
        // Every arm twice first, in order: a mean, and a spread for the pooled variance.
        if let a = count.firstIndex(where: { $0 < 2 }) { return a }
        let sd = pooledSD
        var best = 0, bestDraw = -Double.infinity
        for a in thresholds.indices {
            let draw = sum[a] / Double(count[a]) + sd / Double(count[a]).squareRoot() * gaussian()
            if draw > bestDraw { best = a; bestDraw = draw }
        }
        return best
    }

    /// The natural log of arm `a`'s threshold (−∞ for 0: nothing pruned), what the tree compares
    /// its cumulative log-probabilities with.
    public func minLogProb(_ a: Int) -> Float { thresholds[a] > 0 ? logf(thresholds[a]) : -.infinity }

    public func update(arm a: Int, reward: Double) {
        guard reward.isFinite else { return }
        count[a] += 1; sum[a] += reward; sumSquares[a] += reward * reward
    }

    /// What the bandit has learned: steps and mean reward per threshold.
    public var arms: [Arm] {
        thresholds.indices.map { Arm(p_min: thresholds[$0], steps: count[$0], mean_tokens_per_s: count[$0] > 0 ? sum[$0] / Double(count[$0]) : 0) }
    }

    /// The threshold with the best mean reward so far (nil before any step).
    public var best: Float? {
        let played = thresholds.indices.filter { count[$0] > 0 }
        return played.max { sum[$0] / Double(count[$0]) < sum[$1] / Double(count[$1]) }.map { thresholds[$0] }
    }

    /// One line for decode's summary and eval's table notes.
    public var summary: String {
        arms.map { String(format: "%g: %d steps, %.1f tok/s", $0.p_min, $0.steps, $0.mean_tokens_per_s) }.joined(separator: " | ")
            + (isAdaptive ? best.map { String(format: " (best %g)", $0) } ?? "" : "")
    }

    /// The reward noise, pooled over the arms (the machine and the prompts are the same for all;
    /// one arm's two first samples alone would give a spread too rough to trust).
    private var pooledSD: Double {
        let n = count.reduce(0, +), dof = n - thresholds.count
        guard dof > 0 else { return 0 }
        var ss = 0.0
        for a in thresholds.indices where count[a] > 0 { ss += sumSquares[a] - sum[a] * sum[a] / Double(count[a]) }
        return (max(ss, 0) / Double(dof)).squareRoot()
    }

    /// A standard normal draw (Box–Muller) from the seeded generator.
    private func gaussian() -> Double {
        let u = 1 - rng.nextUnitDouble(), v = rng.nextUnitDouble()
        return (-2 * log(u)).squareRoot() * cos(2 * Double.pi * v)
    }
}
