/// How the next token is chosen from the logits. `temperature == 0` is greedy decoding and
/// ignores the other filters; otherwise the order is llama.cpp's: repetition penalty, top-k,
/// top-p, min-p, temperature, then a draw.
public struct SamplingParameters: Sendable, Equatable {
    public var temperature: Float = 0
    public var topK: Int = 40            // 0 = off
    public var topP: Float = 0.95        // 1 = off
    public var minP: Float = 0.05        // 0 = off
    public var repetitionPenalty: Float = 1   // 1 = off
    public var repetitionWindow: Int = 64
    public var seed: UInt64 = 0

    public init() {}

    public var isGreedy: Bool { temperature <= 0 }
}

public struct SamplingError: Error, CustomStringConvertible {
    public var description: String
}

public struct Sampler {
    public let parameters: SamplingParameters
    private var rng: SeededGenerator

    public init(_ p: SamplingParameters) throws {
        guard p.temperature >= 0, p.temperature.isFinite else { throw SamplingError(description: "--temp must be ≥ 0, got \(p.temperature)") }
        guard p.topK >= 0 else { throw SamplingError(description: "--top-k must be ≥ 0, got \(p.topK)") }
        guard p.topP > 0, p.topP <= 1 else { throw SamplingError(description: "--top-p must be in (0, 1], got \(p.topP)") }
        guard p.minP >= 0, p.minP < 1 else { throw SamplingError(description: "--min-p must be in [0, 1), got \(p.minP)") }
        guard p.repetitionPenalty > 0 else { throw SamplingError(description: "--repeat-penalty must be > 0, got \(p.repetitionPenalty)") }
        parameters = p
        rng = SeededGenerator(seed: p.seed)
    }

    /// Index of the largest logit; the lowest index wins a tie, so greedy runs are reproducible.
    public static func argmax(_ logits: UnsafeBufferPointer<Float>) -> Int {
        var best = 0
        var bestValue = -Float.infinity
        for i in 0..<logits.count where logits[i] > bestValue {
            bestValue = logits[i]; best = i
        }
        return best
    }

    /// Chooses the next token. `history` is the text so far (for the repetition penalty).
    /// Exactly a draw from `distribution(_:history:)` (greedy: its single token, no draw).
    public mutating func sample(_ logits: UnsafeBufferPointer<Float>, history: [Int32] = []) -> Int32 {
        let p = parameters
        if p.isGreedy && p.repetitionPenalty == 1 { return Int32(Self.argmax(logits)) }
        let d = distribution(logits, history: history)
        if p.isGreedy { return d.ids[0] }
        return draw(from: d)
    }

    /// The distribution `sample` draws from after every filter: the surviving tokens (best first)
    /// and their probabilities. Greedy: the one chosen token with probability 1. Speculative
    /// verification needs the vector itself, to accept or reject drafted tokens against it.
    /// The sampling order: higher logit first, ties by lower id (so filters are deterministic).
    static func before(_ a: (id: Int32, logit: Float), _ b: (id: Int32, logit: Float)) -> Bool {
        a.logit != b.logit ? a.logit > b.logit : a.id < b.id
    }

    /// The first `k` of `cand` in `before` order, in one pass: what sorting the whole vocabulary
    /// and keeping `k` gives (top-k 40 of 49152 tokens: a pass instead of a sort, ~5 ms a token).
    static func best(_ k: Int, of cand: [(id: Int32, logit: Float)]) -> [(id: Int32, logit: Float)] {
        guard k > 0 else { return [] }
        var top: [(id: Int32, logit: Float)] = []
        top.reserveCapacity(k + 1)
        for c in cand {
            if top.count == k, !before(c, top[k - 1]) { continue }
            var j = top.count
            while j > 0, before(c, top[j - 1]) { j -= 1 }
            top.insert(c, at: j)
            if top.count > k { top.removeLast() }
        }
        return top
    }

    public func distribution(_ logits: UnsafeBufferPointer<Float>, history: [Int32] = []) -> TokenDistribution {
        let p = parameters
        if p.isGreedy && p.repetitionPenalty == 1 { return TokenDistribution(ids: [Int32(Self.argmax(logits))], probs: [1]) }

        var cand: [(id: Int32, logit: Float)] = []
        cand.reserveCapacity(logits.count)
        for i in 0..<logits.count { cand.append((Int32(i), logits[i])) }

        if p.repetitionPenalty != 1 {
            // As llama.cpp: positive logits are divided, negative ones multiplied, once per distinct token.
            for id in Set(history.suffix(p.repetitionWindow)) where id >= 0 && Int(id) < cand.count {
                let l = cand[Int(id)].logit
                cand[Int(id)].logit = l > 0 ? l / p.repetitionPenalty : l * p.repetitionPenalty
            }
        }
        if p.isGreedy {
            return TokenDistribution(ids: [cand.max { ($0.logit, -$0.id) < ($1.logit, -$1.id) }!.id], probs: [1])
        }

        // Sorted by logit descending, ties by id, so filters are deterministic.
        let k = p.topK > 0 ? min(p.topK, cand.count) : cand.count
        if k <= cand.count / 16 {
            cand = Self.best(k, of: cand)
        } else {
            cand.sort(by: Self.before)
            cand.removeSubrange(k...)
        }

        var probs = softmax(cand.map(\.logit), temperature: 1)
        if p.topP < 1 {
            var cum: Float = 0
            var keep = probs.count
            for (i, q) in probs.enumerated() {
                cum += q
                if cum >= p.topP { keep = i + 1; break }
            }
            cand.removeSubrange(keep...)
            probs.removeSubrange(keep...)
        }
        if p.minP > 0, let top = probs.first {
            let keep = probs.firstIndex { $0 < p.minP * top } ?? probs.count
            cand.removeSubrange(max(keep, 1)...)
        }
        probs = softmax(cand.map(\.logit), temperature: p.temperature)
        return TokenDistribution(ids: cand.map(\.id), probs: probs)
    }

    /// A token drawn from `d` with this sampler's generator (what `sample` does after filtering).
    public mutating func draw(from d: TokenDistribution) -> Int32 {
        d.ids[Self.draw(d.probs, &rng)]
    }

    /// A uniform number in [0, 1) from this sampler's generator (53 bits).
    public mutating func uniform() -> Double {
        rng.nextUnitDouble()
    }

    /// Index drawn from normalised probabilities.
    public static func draw(_ probs: [Float], _ rng: inout SeededGenerator) -> Int {
        let u = Float(rng.nextUnitDouble()) * probs.reduce(0, +)
        var cum: Float = 0
        for (i, q) in probs.enumerated() {
            cum += q
            if u < cum { return i }
        }
        return probs.count - 1
    }
}

/// Tokens and their probabilities (same order, best first as the sampler filtered them).
/// Probabilities need not sum to exactly 1 (`Sampler.draw` scales by their sum).
public struct TokenDistribution: Sendable, Equatable {
    public var ids: [Int32]
    public var probs: [Float]
    public init(ids: [Int32], probs: [Float]) { self.ids = ids; self.probs = probs }

    /// Probability of `token` (0 when filtered out).
    public func probability(of token: Int32) -> Float {
        ids.firstIndex(of: token).map { probs[$0] } ?? 0
    }
}

/// Softmax of `logits / temperature`, computed stably (max subtracted first).
public func softmax(_ logits: [Float], temperature: Float) -> [Float] {
    guard let m = logits.max() else { return [] }
    let t = temperature > 0 ? temperature : 1
    var e = logits.map { expf(($0 - m) / t) }
    let s = e.reduce(0, +)
    for i in e.indices { e[i] /= s }
    return e
}

#if canImport(Glibc)
import Glibc
#elseif canImport(Darwin)
import Darwin
#endif
