import Testing
import Verify

/// The rates the fallback compares: mean tokens per step over the median step time.
@Suite struct StepTimesTests {
    @Test func oneSlowStepDoesNotMoveTheRate() throws {
        var plain = StepTimes(capacity: 16)
        for s in [3.6e-3, 3.5e-3, 3.7e-3, 3.6e-3] { plain.add(seconds: s, tokens: 1) }
        let steady = try #require(plain.rate())
        plain.add(seconds: 9.0e-3, tokens: 1)   // another process took the core for this one
        let spiked = try #require(plain.rate())
        #expect(abs(spiked - steady) / steady < 0.02, "\(steady) -> \(spiked)")
        // A total-time rate (the rule before) would have dropped by a quarter.
        #expect(5 / (3.6e-3 * 3 + 3.5e-3 + 3.7e-3 + 9.0e-3 - 3.6e-3) < 0.8 * steady)
    }

    @Test func tokensPerStepAndMedian() throws {
        var draft = StepTimes()
        #expect(draft.rate() == nil)
        draft.add(seconds: 4e-3, tokens: 1)
        draft.add(seconds: 5e-3, tokens: 3)
        draft.add(seconds: 6e-3, tokens: 2)
        // 2 tokens a step over a 5 ms median step.
        #expect(abs(try #require(draft.rate()) - 400) < 1e-9)
        #expect(draft.count == 3 && draft.totalTokens == 6)
        // Context-matched tokens per step, added to the mean: 2.5 a step.
        #expect(abs(try #require(draft.rate(plus: 0.5)) - 500) < 1e-9)
        // An even count takes the mean of the middle two.
        draft.add(seconds: 7e-3, tokens: 2)
        #expect(abs(try #require(draft.rate()) - 2 / 5.5e-3) < 1e-9)
    }

    @Test func capacityKeepsTheLatestSteps() throws {
        var t = StepTimes(capacity: 3)
        for i in 1...5 { t.add(seconds: Double(i) * 1e-3, tokens: i) }
        #expect(t.seconds == [3e-3, 4e-3, 5e-3] && t.tokens == [3, 4, 5])
    }
}
