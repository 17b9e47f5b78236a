import Draft
import Foundation
import Kernels
import Llama

/// The target's verification cost: seconds of one batch-invariant forward of n new tokens at a
/// fixed cached context, for n = 1 … 8, 12, 16, 24, 32, 64, and of the LM head on 1, 2, 4 and 8 rows (the
/// verifier computes logits only for the nodes its walk visits, the best path's in one batch).
public struct VerifyCostCurve: Codable, Sendable, Equatable {
    public struct Point: Codable, Sendable, Equatable {
        public var n: Int
        public var seconds: Double
        public init(n: Int, seconds: Double) { self.n = n; self.seconds = seconds }
    }
    public var context: Int
    public var threads: Int
    public var points: [Point]
    /// Seconds of the LM head for one row. Set: `points` time forwards without logits. Nil (a
    /// curve from before the lazy head): `points` include logits for every row.
    public var headSeconds: Double?
    /// Seconds of the LM head on `n` rows at once (n = 1, 2, 4, 8). The head is load-bound at
    /// these sizes (Intel Xeon, 2 threads: 0.55 ms for 1 row, 0.56 for 2, 0.64 for 4, 1.04 for
    /// 8), so a path's rows cost far less than a row each. Nil (a curve from before): `headSeconds`
    /// per row.
    public var headPoints: [Point]?
    /// Time the process's threads spent waiting for a core while the curve was measured, as a
    /// share of the time they ran (Linux schedstat; nil where unavailable). Other processes on
    /// the cores inflate every point, so a curve with a high share is not worth caching.
    public var runQueueShare: Double?

    // Every size up to 8 (the int8 kernels work in tiles of 4 tokens, so the curve has steps), then coarser.
    public static let sizes = [1, 2, 3, 4, 5, 6, 7, 8, 12, 16, 24, 32, 64]

    public init(context: Int, threads: Int, points: [Point], headSeconds: Double? = nil, headPoints: [Point]? = nil) {
        self.context = context; self.threads = threads; self.points = points; self.headSeconds = headSeconds
        self.headPoints = headPoints
    }

    /// Head row counts `measure` times.
    public static let headRows = [1, 2, 4, 8]

    /// Times each size (the fastest of `reps` after one warm-up: another process on the cores
    /// only ever adds time) over `context` cached random tokens, after single-token forwards for
    /// `warmUpSeconds`.
    public static func measure(model: any TargetModel, context: Int = 128, sizes: [Int] = sizes, reps: Int = 3,
                               warmUpSeconds: Double = 0.03) throws -> VerifyCostCurve {
        let before = SchedulerTimes.ofThisProcess()
        let maxN = sizes.max() ?? 1, maxRows = headRows.max()!
        // Room for the largest batch and for the head's rows (one forward gives them).
        let session = model.makeTargetSession(contextSize: context + max(maxN, maxRows))
        var state: UInt64 = 0x5EED
        func token() -> Int32 {
            state = state &* 6364136223846793005 &+ 1442695040888963407
            return Int32((state >> 33) % UInt64(model.vocabSize))
        }
        _ = try session.forward(tokens: (0..<context).map { _ in token() }, logits: .none, batchInvariant: false)
        // Steps right after a prefill run slow for ~20 ms (see DraftLevelCost.measure); the first
        // size, the ratios' base, was timed in that ramp: T(1) 2.32–2.88 ms on four fresh caches,
        // 2.17–2.54 ms after this warm-up (Xeon, 2 threads), so T(2)/T(1) read 1.18 for 1.29.
        let warmEnd = monotonicSeconds() + warmUpSeconds
        repeat {
            _ = try session.forward(tokens: [token()], logits: .none)
            session.truncate(to: context)
        } while monotonicSeconds() < warmEnd
        var points: [Point] = []
        for n in sizes {
            let ids = (0..<n).map { _ in token() }
            var times: [Double] = []
            for r in 0...reps {
                let t0 = monotonicSeconds()
                _ = try session.forward(tokens: ids, logits: .none)
                if r > 0 { times.append(monotonicSeconds() - t0) }
                session.truncate(to: context)
            }
            points.append(Point(n: n, seconds: times.min()!))
        }
        let hidden = try session.forward(tokens: (0..<maxRows).map { _ in token() }, logits: .none).hidden
        session.truncate(to: context)
        var logits = [Float](repeating: 0, count: maxRows * model.vocabSize)
        var head: [Point] = []
        for rows in headRows {
            var times: [Double] = []
            for r in 0...max(reps, 5) {
                let t0 = monotonicSeconds()
                hidden.withUnsafeBufferPointer { h in
                    logits.withUnsafeMutableBufferPointer { model.logits(hidden: h.baseAddress!, rows: rows, into: $0.baseAddress!) }
                }
                if r > 0 { times.append(monotonicSeconds() - t0) }
            }
            head.append(Point(n: rows, seconds: times.min()!))
        }
        var curve = VerifyCostCurve(context: context, threads: model.threads, points: points, headSeconds: head[0].seconds,
                                    headPoints: head)
        if let b = before, let a = SchedulerTimes.ofThisProcess() { curve.runQueueShare = a.waitShare(since: b) }
        return curve
    }

    /// Seconds of a verification step: a forward of `n` tokens plus the head for the `visitedRows`
    /// rows the walk is expected to visit (the accepted path and one more).
    public func stepSeconds(tokens n: Int, visitedRows: Double) -> Double {
        seconds(n) + headSeconds(rows: visitedRows)
    }

    /// Seconds of the head on `rows` rows: from `headPoints` where measured, else `headSeconds`
    /// per row (0 for a curve whose points include the logits).
    public func headSeconds(rows: Double) -> Double {
        if let h = headPoints, !h.isEmpty { return VerifyCostCurve.interpolate(h, at: rows) }
        return (headSeconds ?? 0) * rows
    }

    /// Seconds for a batch of n, linear between measured sizes and beyond the last two.
    public func seconds(_ n: Int) -> Double { VerifyCostCurve.interpolate(points, at: Double(n)) }

    /// Linear between the points around x, beyond the last two along their line, and never below
    /// the first point's time (one point: proportional to it).
    static func interpolate(_ points: [Point], at x: Double) -> Double {
        let p = points.sorted { $0.n < $1.n }
        guard let first = p.first else { return 0 }
        if p.count == 1 { return first.seconds * x / Double(first.n) }
        if x <= Double(first.n) { return first.seconds }
        var lo = p[p.count - 2], hi = p[p.count - 1]
        for i in 1..<p.count where x <= Double(p[i].n) { lo = p[i - 1]; hi = p[i]; break }
        let slope = (hi.seconds - lo.seconds) / Double(hi.n - lo.n)
        return max(lo.seconds + slope * (x - Double(lo.n)), first.seconds)
    }
}

/// The kernel's scheduler accounting of this process's threads (`/proc/self/task/*/schedstat`:
/// nanoseconds on a core, nanoseconds runnable but waiting for one). Waiting means another process
/// held the cores: that is what makes a timing unrepresentative, whatever the load average says.
public struct SchedulerTimes: Sendable, Equatable {
    public var runNanos: UInt64
    public var waitNanos: UInt64

    public init(runNanos: UInt64, waitNanos: UInt64) { self.runNanos = runNanos; self.waitNanos = waitNanos }

    /// Summed over the process's threads; nil where the kernel does not provide it.
    public static func ofThisProcess() -> SchedulerTimes? {
        guard let tasks = try? FileManager.default.contentsOfDirectory(atPath: "/proc/self/task") else { return nil }
        var total = SchedulerTimes(runNanos: 0, waitNanos: 0)
        for t in tasks {
            guard let text = try? String(contentsOfFile: "/proc/self/task/\(t)/schedstat", encoding: .utf8) else { continue }
            let fields = text.split(separator: " ")
            guard fields.count >= 2, let run = UInt64(fields[0]), let wait = UInt64(fields[1].trimmingCharacters(in: .whitespacesAndNewlines)) else { continue }
            total.runNanos += run
            total.waitNanos += wait
        }
        return total.runNanos > 0 ? total : nil
    }

    /// Wait time over run time since `earlier` (threads that ended in between drop out of the
    /// sums, so a negative difference counts as none).
    public func waitShare(since earlier: SchedulerTimes) -> Double {
        let run = runNanos > earlier.runNanos ? Double(runNanos - earlier.runNanos) : 0
        let wait = waitNanos > earlier.waitNanos ? Double(waitNanos - earlier.waitNanos) : 0
        return run > 0 ? wait / run : 0
    }
}

/// Expected accepted draft tokens per step as a function of the tree's node count: the best node
/// is on the accepted path with probability `first`, and each further node (in the tree's
/// best-first order) adds `decay` times what the one before added, so τ(n) = first·(1 − decayⁿ)/(1 − decay).
public struct AcceptanceModel: Codable, Sendable, Equatable {
    public var first: Double
    public var decay: Double
    public var source: String

    public init(first: Double, decay: Double, source: String) {
        self.first = first; self.decay = decay; self.source = source
    }

    /// Stated default for a trained EAGLE-style draft when its checkpoint says nothing:
    /// first = 0.7, decay = 0.8 (τ ≈ 2.1 at 4 nodes, 2.9 at 8, 3.5 at most).
    public static let `default` = AcceptanceModel(first: 0.7, decay: 0.8, source: "default (first 0.7, decay 0.8)")

    /// From a draft checkpoint's metadata key `acceptance`: JSON `{"first": a, "decay": r}`.
    public static func from(metadata: [String: String]) -> AcceptanceModel? {
        guard let s = metadata["acceptance"], let o = try? JSONSerialization.jsonObject(with: Data(s.utf8)) as? [String: Any],
              let a = (o["first"] as? NSNumber)?.doubleValue, let r = (o["decay"] as? NSNumber)?.doubleValue,
              a > 0, a <= 1, r >= 0, r < 1 else { return nil }
        return AcceptanceModel(first: a, decay: r, source: "checkpoint metadata (first \(a), decay \(r))")
    }

    public func tau(_ n: Int) -> Double {
        decay == 1 ? first * Double(n) : first * (1 - pow(decay, Double(n))) / (1 - decay)
    }
}

public enum TreeBudget {
    /// The node count in 1...maxNodes that maximises expected tokens per second:
    /// (1 + τ(n)) / (draft seconds of n + verify seconds of n + 1 tokens with 1 + τ(n) head rows,
    /// an estimate: the verifier runs the head for the best path and the nodes it reaches off it).
    /// `draftSeconds` is the time of a full expansion (`depth` levels, depth − 1 expand calls); a budget of n needs
    /// only min(depth, n) − 1 of those calls (`DraftCandidates.grow` prunes what n nodes cannot
    /// use), so its drafting time is taken in proportion.
    public static func choose(curve: VerifyCostCurve, acceptance: AcceptanceModel, draftSeconds: Double, depth: Int,
                              maxNodes: Int) -> Int {
        let perLevel = draftSeconds / Double(max(1, depth - 1))
        var best = 1, bestRate = -Double.infinity
        for n in 1...max(1, maxNodes) {
            let draft = perLevel * Double(min(depth, n) - 1)
            let tau = acceptance.tau(n)
            let rate = (1 + tau) / (draft + curve.stepSeconds(tokens: n + 1, visitedRows: 1 + tau))
            if rate > bestRate { best = n; bestRate = rate }
        }
        return best
    }
}

/// The draft's cost of one tree level: seconds of one `expand` of `topK` nodes (each level of a
/// top-k tree is one such call; `TreeBudget.choose` weighs them against the verify curve).
/// Measured once on synthetic input, as the verify curve is, and not on a generation's first
/// step: timing that step's expansion cost 1.3 ms of a 15-token answer's 45 ms (Intel Xeon,
/// 2 threads), and it timed a cold draft right after the prompt read.
public struct DraftLevelCost: Codable, Sendable, Equatable {
    public var topK: Int
    public var seconds: Double
    /// As `VerifyCostCurve.runQueueShare`: how long the threads waited for a core while measuring.
    public var runQueueShare: Double?

    public init(topK: Int, seconds: Double, runQueueShare: Double? = nil) {
        self.topK = topK; self.seconds = seconds; self.runQueueShare = runQueueShare
    }

    /// The fastest of `reps` expansions of the root's `topK` candidates, with `positions` synthetic
    /// accepted positions before them (features of `width` per captured layer, tokens below
    /// `vocab`), after whole rounds (accept, expand) for at least `warmUpSeconds`: right after the
    /// models load or a prefill, steps on the VMs measured here run 1.5–2.5× slow for their first
    /// ~20 ms (caches and clocks), and a level timed then would steer every later budget. The
    /// drafter is reset afterwards.
    public static func measure(drafter: Drafter, width: Int, vocab: Int, topK: Int, positions: Int = 16,
                               reps: Int = 3, warmUpSeconds: Double = 0.03) throws -> DraftLevelCost {
        let before = SchedulerTimes.ofThisProcess()
        defer { drafter.reset() }
        let featureWidth = width * max(1, drafter.featureLayers.count)
        // Values of a hidden state's scale; the time does not depend on them.
        let features = (0..<(positions * featureWidth)).map { Float(sin(Double($0) * 0.37)) }
        let tokens = (0..<positions).map { Int32(($0 * 7919 + 13) % max(1, vocab)) }
        func round() throws -> [DraftCandidate] {
            drafter.reset()
            if let d = drafter as? SequenceStartDrafter { d.begin(firstInput: [Float](repeating: 0, count: width)) }
            return try drafter.accept(features: features, nextTokens: tokens, images: [], topK: topK)
        }
        let warmEnd = monotonicSeconds() + warmUpSeconds
        var root: [DraftCandidate]
        repeat {
            root = try round()
            if !root.isEmpty { _ = try drafter.expand(tokens: root.map(\.token), parents: root.map { _ in -1 }, topK: topK) }
        } while monotonicSeconds() < warmEnd && !root.isEmpty
        root = try round()
        var times: [Double] = []
        if !root.isEmpty {
            let level = root.map(\.token)
            let parents = [Int](repeating: -1, count: level.count)
            for _ in 0..<reps {
                let t0 = monotonicSeconds()
                _ = try drafter.expand(tokens: level, parents: parents, topK: topK)
                times.append(monotonicSeconds() - t0)
            }
        }
        var cost = DraftLevelCost(topK: topK, seconds: times.min() ?? 0)
        if let b = before, let a = SchedulerTimes.ofThisProcess() { cost.runQueueShare = a.waitShare(since: b) }
        return cost
    }
}

/// What `--tree-tokens auto` gives a decoder: the target's measured verify cost, which also sizes
/// every step's context-match chain (`ContextMatchOdds`), and the node budget chosen from it and
/// the draft's level cost (nil: keep the shape's).
public struct AutoTree {
    public var curve: VerifyCostCurve
    public var nodes: Int?

    public init(curve: VerifyCostCurve, nodes: Int?) {
        self.curve = curve; self.nodes = nodes
    }
}
