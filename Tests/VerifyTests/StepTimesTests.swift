import Foundation
import Generation
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

/// The verify-cost curve says when it was measured on a busy machine (`runQueueShare`), so the
/// cache can refuse it: threads that wait for a core time every point too slow.
@Suite(.serialized) struct CostCurveContentionTests {
    /// A fixed amount of arithmetic on this thread; returns its wait share.
    private func waitShareOfBusyLoop() throws -> Double {
        let before = try #require(SchedulerTimes.ofThisProcess(), "schedstat is read on Linux")
        var x: UInt64 = 1
        // Not foldable by the optimiser (the shift makes it non-linear): tens of milliseconds.
        for i in 0..<20_000_000 { x = (x &* 0x9E37_79B9_7F4A_7C15) ^ (x >> 29) &+ UInt64(i) }
        #expect(x != 0)
        let after = try #require(SchedulerTimes.ofThisProcess())
        return after.waitShare(since: before)
    }

    @Test func busyCoresShowAsWaitForACore() throws {
        #if os(Linux)
        // The same loop alone and beside twice as many spinning threads as cores: only the
        // second must wait for a core (whatever else the machine runs, the spinners add to it).
        let alone = try waitShareOfBusyLoop()
        let spinners = 2 * ProcessInfo.processInfo.activeProcessorCount
        let stop = SpinFlag()
        let started = DispatchGroup()
        for _ in 0..<spinners {
            started.enter()
            Thread.detachNewThread {
                started.leave()
                var x: UInt64 = 1
                while !stop.isSet { for _ in 0..<10_000 { x = x &* 6364136223846793005 &+ 1 } }
                _ = x
            }
        }
        started.wait()
        let crowded = try waitShareOfBusyLoop()
        let curve = try VerifyCostCurve.measure(model: TinyTarget.model, context: 64, sizes: [1, 2, 4], reps: 2)
        stop.set()
        #expect(crowded > alone + 0.5, "wait share alone \(alone), beside \(spinners) spinners \(crowded)")
        #expect(crowded > VerifyCostCache.maxRunQueueShare)
        // The curve carries its own measurement's share for the cache to judge.
        #expect(curve.runQueueShare != nil && curve.points.map(\.n) == [1, 2, 4])
        #endif
    }

    @Test func waitShareIsWaitOverRun() {
        let a = SchedulerTimes(runNanos: 1_000, waitNanos: 100)
        let b = SchedulerTimes(runNanos: 3_000, waitNanos: 600)
        #expect(b.waitShare(since: a) == 0.25)
        // Threads that ended between the two readings drop out of the sums: never negative.
        #expect(a.waitShare(since: b) == 0)
    }
}

private final class SpinFlag: @unchecked Sendable {
    private let lock = NSLock()
    private var value = false
    var isSet: Bool { lock.lock(); defer { lock.unlock() }; return value }
    func set() { lock.lock(); value = true; lock.unlock() }
}
