import Foundation
import Sampling
import Testing

func sampleMany(_ logits: [Float], _ p: SamplingParameters, draws: Int, history: [Int32] = []) throws -> [Int] {
    var s = try Sampler(p)
    var counts = [Int](repeating: 0, count: logits.count)
    for _ in 0..<draws {
        let t = logits.withUnsafeBufferPointer { s.sample($0, history: history) }
        counts[Int(t)] += 1
    }
    return counts
}

func params(temp: Float, topK: Int = 0, topP: Float = 1, minP: Float = 0, penalty: Float = 1, seed: UInt64 = 1) -> SamplingParameters {
    var p = SamplingParameters()
    p.temperature = temp; p.topK = topK; p.topP = topP; p.minP = minP; p.repetitionPenalty = penalty; p.seed = seed
    return p
}

@Suite struct SamplerTests {
    let logits: [Float] = [1, 3, 2, 0.5, 3]

    @Test func greedyTakesTheFirstMaximum() throws {
        #expect(logits.withUnsafeBufferPointer { Sampler.argmax($0) } == 1)
        #expect(try sampleMany(logits, params(temp: 0), draws: 5) == [0, 5, 0, 0, 0])
    }

    @Test func temperatureOneDrawsFromTheSoftmax() throws {
        // Chi-square goodness of fit against softmax(logits); 4 degrees of freedom, p = 0.001 critical value 18.47.
        let n = 40_000
        let counts = try sampleMany(logits, params(temp: 1), draws: n)
        let probs = softmax(logits, temperature: 1)
        let chi2 = zip(counts, probs).reduce(0.0) { acc, cp in
            let e = Double(cp.1) * Double(n)
            return acc + (Double(cp.0) - e) * (Double(cp.0) - e) / e
        }
        #expect(chi2 < 18.47, "counts \(counts) vs probs \(probs)")
    }

    @Test func temperatureSharpensAndFlattens() throws {
        let cold = try sampleMany(logits, params(temp: 0.1), draws: 2000)
        #expect(cold[1] + cold[4] > 1990)
        let hot = try sampleMany(logits, params(temp: 10), draws: 2000)
        #expect(hot.allSatisfy { $0 > 250 })
    }

    @Test func filtersKeepOnlyWhatTheyShould() throws {
        // top-k 2 keeps the two 3s (ties broken by id).
        #expect(try sampleMany(logits, params(temp: 1, topK: 2), draws: 1000).enumerated().allSatisfy { [1, 4].contains($0.offset) || $0.element == 0 })
        // top-p small keeps only the single best.
        #expect(try sampleMany(logits, params(temp: 1, topP: 0.1), draws: 500)[1] == 500)
        // min-p 0.5: e^2 / e^3 = 0.37 < 0.5 drops token 2; the two 3s stay.
        let m = try sampleMany(logits, params(temp: 1, minP: 0.5), draws: 1000)
        #expect(m[0] == 0 && m[2] == 0 && m[3] == 0 && m[1] > 0 && m[4] > 0)
    }

    /// Top-k on a large vocabulary takes the one-pass selection; it must equal sorting everything
    /// (ties by id) and keeping k, through the other filters and the penalty.
    @Test func largeVocabularyTopKEqualsFullSort() throws {
        var state: UInt64 = 99
        func next() -> UInt64 { state = state &* 6364136223846793005 &+ 1442695040888963407; return state >> 33 }
        // Coarse values: many ties.
        let big = (0..<5000).map { _ in Float(next() % 64) / 8 }
        for (k, pen) in [(40, Float(1)), (7, 1.3), (300, 1)] {
            var p = params(temp: 0.8, topK: k, topP: 0.97, minP: 0.01, penalty: pen)
            let fast = big.withUnsafeBufferPointer { try! Sampler(p).distribution($0, history: [3, 17, 4000]) }
            // The same with top-k off and the sort done here.
            p.topK = 0
            var cand = (0..<big.count).map { (id: Int32($0), logit: big[$0]) }
            if pen != 1 { for id in Set([3, 17, 4000]) { let l = cand[id].logit; cand[id].logit = l > 0 ? l / pen : l * pen } }
            cand.sort { $0.logit != $1.logit ? $0.logit > $1.logit : $0.id < $1.id }
            let topIDs = cand.prefix(k).map(\.id)
            #expect(Array(fast.ids) == Array(topIDs.prefix(fast.ids.count)), "k \(k)")
            #expect(fast.ids.count <= k && fast.ids.count >= 1)
        }
    }

    @Test func repetitionPenaltyIsOffByDefaultAndWorksWhenOn() throws {
        #expect(SamplingParameters().repetitionPenalty == 1)
        #expect(try sampleMany(logits, params(temp: 0, penalty: 2), draws: 1, history: [1]) == [0, 0, 0, 0, 1])
        #expect(try sampleMany(logits, params(temp: 0, penalty: 2), draws: 1, history: [1, 4]) == [0, 0, 1, 0, 0])
    }

    @Test func seedsReproduceAndDiffer() throws {
        func run(_ seed: UInt64) throws -> [Int32] {
            var s = try Sampler(params(temp: 1, seed: seed))
            return (0..<64).map { _ in logits.withUnsafeBufferPointer { s.sample($0) } }
        }
        #expect(try run(42) == run(42))
        #expect(try run(42) != run(43))
    }

    @Test func rejectsNonsense() {
        #expect(throws: SamplingError.self) { try Sampler(params(temp: -1)) }
        #expect(throws: SamplingError.self) { try Sampler(params(temp: 1, topP: 0)) }
        #expect(throws: SamplingError.self) { try Sampler(params(temp: 1, minP: 1)) }
        #expect(throws: SamplingError.self) { try Sampler(params(temp: .nan)) }
    }
}
