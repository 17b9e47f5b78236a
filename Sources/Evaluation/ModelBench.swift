import Foundation
import Generation
import GGUF
import Kernels
import Llama
import Sampling
import Verify

/// `specdec bench` without a draft: prompt processing, decoding and verification cost of the
/// target, memory bandwidth and the floor it sets, machine facts. The CLI parses the options
/// into `ModelBench.Settings` and prints the report as a table or JSON.
public enum ModelBench {
    public struct Settings: Sendable {
        public var ppSizes: [Int] = [64, 512]
        public var tgSizes: [Int] = [128]
        public var tgPrompt = 16
        public var verifySizes: [Int] = []
        public var verifyContexts: [Int] = [256]
        public var reps = 5
        /// Prompt processing on the batch-invariant path instead of OpenBLAS.
        public var ppExact = false
        public var bandwidthMiB = 0
        public var bandwidthPasses = 5
        public var threads = defaultThreadCount
        public init() {}
    }

    public struct Throughput: Encodable {
        public var tokens: Int
        public var prompt_tokens: Int?
        public var batch_invariant: Bool
        public var median_tokens_per_s: Double
        public var min_tokens_per_s: Double
        public var max_tokens_per_s: Double
        public var percent_of_floor: Double?
    }

    public struct VerifyPoint: Encodable {
        public var n: Int
        public var median_ms: Double
        public var min_ms: Double
        public var max_ms: Double
        public var ratio: Double
        public var ms_per_token: Double
    }

    /// The LM head alone on `rows` final-norm rows (the verifier's head runs apart from the
    /// forward, on the rows its walk visits): whether a row more costs a row's worth.
    public struct HeadPoint: Encodable {
        public var rows: Int
        public var median_ms: Double
        public var ratio: Double
    }

    public struct VerifyCost: Encodable {
        public var context: Int
        public var batch_invariant: Bool
        public var logits: String
        public var points: [VerifyPoint]
    }

    public struct Report: Encodable {
        public var model: String
        public var model_path: String
        public var cpu: String
        public var cores: Int
        public var threads: Int
        public var date: String
        public var reps: Int
        /// Keyed "pp64", "tg128", … in the JSON object itself.
        public var throughput: [(String, Throughput)]
        /// The first context's curve (kept for older readers) and every context's.
        public var verify_cost: VerifyCost?
        public var verify_costs: [VerifyCost]
        public var head_cost: [HeadPoint]
        public var bandwidth_gbs: Double?
        public var bandwidth_median_gbs: Double?
        public var bandwidth_buffer_mib: Int
        public var bandwidth_passes: Int
        public var weight_bytes_per_token: Int
        public var floor_tokens_per_s: Double?
        public var peak_rss_mb: Double
        /// The 1-minute load average when the bench started and ended (the machine may be shared).
        public var load_average_start: Double?
        public var load_average_end: Double?
        public var image_prefill: ImagePrefillBench?

        struct Key: CodingKey {
            var stringValue: String
            var intValue: Int? { nil }
            init(_ s: String) { stringValue = s }
            init?(stringValue: String) { self.stringValue = stringValue }
            init?(intValue: Int) { nil }
        }

        public func encode(to encoder: Encoder) throws {
            var c = encoder.container(keyedBy: Key.self)
            try c.encode(model, forKey: Key("model"))
            try c.encode(model_path, forKey: Key("model_path"))
            try c.encode(cpu, forKey: Key("cpu"))
            try c.encode(cores, forKey: Key("cores"))
            try c.encode(threads, forKey: Key("threads"))
            try c.encode(date, forKey: Key("date"))
            try c.encode(reps, forKey: Key("reps"))
            for (name, t) in throughput {
                try c.encode(t, forKey: Key(name))
                if let p = t.percent_of_floor { try c.encode(p, forKey: Key(name + "_percent_of_floor")) }
            }
            try c.encodeIfPresent(verify_cost, forKey: Key("verify_cost"))
            try c.encode(verify_costs, forKey: Key("verify_costs"))
            try c.encode(head_cost, forKey: Key("head_cost"))
            try c.encodeIfPresent(bandwidth_gbs, forKey: Key("bandwidth_gbs"))
            try c.encodeIfPresent(bandwidth_median_gbs, forKey: Key("bandwidth_median_gbs"))
            try c.encode(bandwidth_buffer_mib, forKey: Key("bandwidth_buffer_mib"))
            try c.encode(bandwidth_passes, forKey: Key("bandwidth_passes"))
            try c.encode(weight_bytes_per_token, forKey: Key("weight_bytes_per_token"))
            try c.encodeIfPresent(floor_tokens_per_s, forKey: Key("floor_tokens_per_s"))
            try c.encode(peak_rss_mb, forKey: Key("peak_rss_mb"))
            try c.encodeIfPresent(load_average_start, forKey: Key("load_average_start"))
            try c.encodeIfPresent(load_average_end, forKey: Key("load_average_end"))
            try c.encodeIfPresent(image_prefill, forKey: Key("image_prefill"))
        }
    }

    /// Measures `model` (loaded from `path`) as `settings` say; `imagePrefill` runs between the
    /// verification curves and the bandwidth test (so that the bandwidth buffer is not in the
    /// peak RSS). Progress goes to `log`.
    public static func run(model: LlamaModel, path: String, settings st: Settings,
                           imagePrefill measureImagePrefill: () throws -> ImagePrefillBench? = { nil },
                           log: (String) -> Void) throws -> Report {
        let c = model.config
        let loadStart = loadAverage()

        let pp = st.ppSizes, tg = st.tgSizes, verify = st.verifySizes, reps = st.reps, threads = st.threads
        let needed = max(pp.max() ?? 0, st.tgPrompt + (tg.max() ?? 0), verify.isEmpty ? 0 : st.verifyContexts.max()! + verify.max()!)
        guard needed <= c.contextLength else {
            throw UserInputError("the bench needs \(needed) positions but the model's context is \(c.contextLength) (lower --pp, --tg or --verify-ctx/--verify)")
        }
        let session = model.makeSession(contextSize: max(needed, 1))
        var rng = SplitMix64(seed: 0x5EED_BE4C)
        func tokens(_ n: Int) -> [Int32] { (0..<n).map { _ in Int32(rng.next() % UInt64(c.vocabSize)) } }
        let fileName = (path as NSString).lastPathComponent
        log("bench: \(fileName), \(threads) thread\(threads == 1 ? "" : "s"), \(reps) rep\(reps == 1 ? "" : "s") after 1 warm-up")

        /// Runs `body` once to warm up, then `reps` times; returns the timed values.
        func measure(_ label: String, _ body: () throws -> Double) rethrows -> [Double] {
            _ = try body()
            var out: [Double] = []
            for r in 0..<reps {
                out.append(try body())
                log("  \(label) \(r + 1)/\(reps): \(fmt(out.last!, 2))")
            }
            return out
        }

        var throughput: [(String, Throughput)] = []
        for n in pp {
            let ids = tokens(n)
            let rates = try measure("pp\(n) tok/s") {
                session.truncate(to: 0)
                let t0 = monotonicSeconds()
                _ = try session.forward(tokens: ids, logits: .last, batchInvariant: st.ppExact)
                return Double(n) / (monotonicSeconds() - t0)
            }
            throughput.append(("pp\(n)", Throughput(tokens: n, batch_invariant: st.ppExact, rates)))
        }
        for n in tg {
            let prompt = tokens(st.tgPrompt), ids = tokens(n)
            let rates = try measure("tg\(n) tok/s") {
                session.truncate(to: 0)
                _ = try session.forward(tokens: prompt, logits: .last, batchInvariant: false)
                let t0 = monotonicSeconds()
                for t in ids { _ = try session.forward(tokens: [t], logits: .last) }
                return Double(n) / (monotonicSeconds() - t0)
            }
            throughput.append(("tg\(n)", Throughput(tokens: n, prompt_tokens: st.tgPrompt, batch_invariant: true, rates)))
        }

        var verifyCosts: [VerifyCost] = []
        for verifyCtx in verify.isEmpty ? [] : st.verifyContexts {
            session.truncate(to: 0)
            _ = try session.forward(tokens: tokens(verifyCtx), logits: .none, batchInvariant: false)
            var points: [VerifyPoint] = []
            for n in verify {
                let ids = tokens(n)
                let ms = try measure("verify ctx \(verifyCtx) N=\(n) ms") {
                    let t0 = monotonicSeconds()
                    _ = try session.forward(tokens: ids, logits: .last)
                    let dt = monotonicSeconds() - t0
                    session.truncate(to: verifyCtx)
                    return dt * 1000
                }
                let med = median(ms)
                points.append(VerifyPoint(n: n, median_ms: med, min_ms: ms.min()!, max_ms: ms.max()!,
                                          ratio: points.first.map { med / $0.median_ms } ?? 1, ms_per_token: med / Double(n)))
            }
            verifyCosts.append(VerifyCost(context: verifyCtx, batch_invariant: true, logits: "last", points: points))
        }

        var headCost: [HeadPoint] = []
        if !verify.isEmpty {
            // The row counts the tree budget's cost curve times (`VerifyCostCurve.measure`).
            let width = c.width, vocab = c.vocabSize, maxRows = VerifyCostCurve.headRows.max()!
            var hidden = [Float](repeating: 0, count: maxRows * width)
            for i in hidden.indices { hidden[i] = Float(Int(rng.next() % 2001) - 1000) / 1000 }
            var logits = [Float](repeating: 0, count: maxRows * vocab)
            for rows in VerifyCostCurve.headRows {
                let ms = measure("head rows=\(rows) ms") {
                    hidden.withUnsafeBufferPointer { h in
                        logits.withUnsafeMutableBufferPointer { out in
                            let t0 = monotonicSeconds()
                            model.logits(hidden: h.baseAddress!, rows: rows, into: out.baseAddress!)
                            return (monotonicSeconds() - t0) * 1000
                        }
                    }
                }
                let med = median(ms)
                headCost.append(HeadPoint(rows: rows, median_ms: med, ratio: headCost.first.map { med / $0.median_ms } ?? 1))
            }
        }

        let imagePrefill = try measureImagePrefill()

        // Before the bandwidth buffer exists, so that it does not count.
        let peakRSS = peakRSSMiB()

        var bandwidth: [Double] = []
        if st.bandwidthMiB > 0 {
            log("  bandwidth: filling \(st.bandwidthMiB) MiB")
            bandwidth = try measureBandwidth(bytes: st.bandwidthMiB << 20, threads: threads, passes: st.bandwidthPasses) {
                log("  bandwidth pass \($0 + 1)/\(st.bandwidthPasses): \(fmt($1, 2)) GB/s")
            }
        }
        let bytesPerToken = model.weights.bytesPerToken
        let best = bandwidth.max()
        let floor = best.map { $0 * 1e9 / Double(bytesPerToken) }
        if let f = floor {
            for i in throughput.indices where throughput[i].0.hasPrefix("tg") {
                throughput[i].1.percent_of_floor = 100 * throughput[i].1.median_tokens_per_s / f
            }
        }

        let out = Report(
            model: fileName, model_path: path, cpu: cpuModel(), cores: defaultThreadCount, threads: threads,
            date: ISO8601DateFormatter().string(from: Date()), reps: reps, throughput: throughput,
            verify_cost: verifyCosts.first, verify_costs: verifyCosts, head_cost: headCost, bandwidth_gbs: best, bandwidth_median_gbs: bandwidth.isEmpty ? nil : median(bandwidth),
            bandwidth_buffer_mib: st.bandwidthMiB, bandwidth_passes: st.bandwidthMiB > 0 ? st.bandwidthPasses : 0,
            weight_bytes_per_token: bytesPerToken, floor_tokens_per_s: floor, peak_rss_mb: peakRSS,
            load_average_start: loadStart, load_average_end: loadAverage(), image_prefill: imagePrefill)
        return out
    }
}

extension ModelBench.Throughput {
    init(tokens: Int, prompt_tokens: Int? = nil, batch_invariant: Bool, _ rates: [Double]) {
        self.init(tokens: tokens, prompt_tokens: prompt_tokens, batch_invariant: batch_invariant,
                  median_tokens_per_s: median(rates), min_tokens_per_s: rates.min()!, max_tokens_per_s: rates.max()!,
                  percent_of_floor: nil)
    }
}

private func fmt(_ x: Double, _ digits: Int) -> String { String(format: "%.\(digits)f", x) }

// MARK: Machine facts

public func cpuModel() -> String {
    guard let info = try? String(contentsOfFile: "/proc/cpuinfo", encoding: .utf8) else { return "unknown CPU" }
    for line in info.split(separator: "\n") where line.hasPrefix("model name") {
        if let colon = line.firstIndex(of: ":") {
            return line[line.index(after: colon)...].trimmingCharacters(in: .whitespaces)
        }
    }
    return "unknown CPU"
}

/// The 1-minute load average (/proc/loadavg), if known.
public func loadAverage() -> Double? {
    guard let s = try? String(contentsOfFile: "/proc/loadavg", encoding: .utf8) else { return nil }
    return s.split(separator: " ").first.flatMap { Double($0) }
}

/// The process's peak resident set so far, in MiB (VmHWM, else getrusage).
public func peakRSSMiB() -> Double {
    if let status = try? String(contentsOfFile: "/proc/self/status", encoding: .utf8) {
        for line in status.split(separator: "\n") where line.hasPrefix("VmHWM:") {
            let kib = line.split(separator: " ").compactMap { Double($0) }.first
            if let k = kib { return k / 1024 }
        }
    }
    var u = rusage()
    #if os(Linux)
    getrusage(__rusage_who_t(RUSAGE_SELF.rawValue), &u)
    return Double(u.ru_maxrss) / 1024
    #else
    getrusage(RUSAGE_SELF, &u)
    return Double(u.ru_maxrss) / (1024 * 1024)
    #endif
}

// MARK: Memory bandwidth

/// Sums `count` bytes (a multiple of 128, 64-byte aligned) as 32-bit lanes with four
/// independent accumulators. Not inlined, and its result is checked, so it is never dropped.
@inline(never)
private func sumLanes(_ p: UnsafeRawPointer, _ count: Int) -> UInt32 {
    var a0 = SIMD8<UInt32>(), a1 = SIMD8<UInt32>(), a2 = SIMD8<UInt32>(), a3 = SIMD8<UInt32>()
    var off = 0
    while off < count {
        a0 &+= p.load(fromByteOffset: off, as: SIMD8<UInt32>.self)
        a1 &+= p.load(fromByteOffset: off + 32, as: SIMD8<UInt32>.self)
        a2 &+= p.load(fromByteOffset: off + 64, as: SIMD8<UInt32>.self)
        a3 &+= p.load(fromByteOffset: off + 96, as: SIMD8<UInt32>.self)
        off += 128
    }
    return (a0 &+ a1 &+ a2 &+ a3).wrappedSum()
}

/// One slot per thread for its chunk's sum.
private final class PassResult: @unchecked Sendable {
    let sums: UnsafeMutablePointer<UInt32>
    let count: Int
    init(_ n: Int) { count = n; sums = .allocate(capacity: n); sums.initialize(repeating: 0, count: n) }
    deinit { sums.deallocate() }
    var total: UInt32 { (0..<count).reduce(0) { $0 &+ sums[$1] } }
}

/// GB/s (10^9 bytes) of each of `passes` read passes over a buffer of `bytes`, split into
/// `threads` contiguous chunks read by as many threads.
public func measureBandwidth(bytes: Int, threads: Int, passes: Int, progress: (Int, Double) -> Void) throws -> [Double] {
    let total = bytes / 128 * 128
    let buffer = UnsafeMutableRawPointer.allocate(byteCount: total, alignment: 4096)
    defer { buffer.deallocate() }
    // Touch every page (untouched pages would all read the shared zero page) with a known pattern.
    memset(buffer, 0x01, total)
    let lanes = UInt32(truncatingIfNeeded: total / 4)
    let expected = lanes &* 0x0101_0101

    // Chunk t is bytes bounds[t]..<bounds[t + 1], each a multiple of 128.
    let bounds = (0...threads).map { $0 == threads ? total : total / 128 * $0 / threads * 128 }
    let base = UInt(bitPattern: buffer)
    var rates: [Double] = []
    for pass in 0..<passes {
        let result = PassResult(threads)
        let done = DispatchGroup()
        let t0 = monotonicSeconds()
        for t in 0..<threads {
            done.enter()
            let lo = bounds[t], hi = bounds[t + 1]
            let th = Thread {
                result.sums[t] = sumLanes(UnsafeRawPointer(bitPattern: base)! + lo, hi - lo)
                done.leave()
            }
            th.stackSize = 1 << 20
            th.start()
        }
        done.wait()
        let dt = monotonicSeconds() - t0
        let sum = result.total
        guard sum == expected else { throw UserInputError("bandwidth test: checksum \(sum) != \(expected) (memory corrupted?)") }
        rates.append(Double(total) / dt / 1e9)
        progress(pass, rates.last!)
    }
    return rates
}
