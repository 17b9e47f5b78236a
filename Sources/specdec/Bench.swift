import ArgumentParser
import Evaluation
import Foundation
import GGUF
import Kernels
import Llama
import Sampling

struct Bench: ParsableCommand {
    static let configuration = CommandConfiguration(
        abstract: "Measure prompt processing, decoding, verification cost and memory bandwidth.",
        discussion: """
        ppN: one batched forward of N pseudo-random tokens from an empty cache (on the OpenBLAS \
        prompt path decode uses, unless --pp-exact), in tokens/s. tgN: N single-token forwards \
        after a short prompt, in tokens/s. Each is the median (and min/max) of --reps runs after \
        one warm-up run. verify_cost: the time of one batch-invariant forward of N new tokens with \
        logits for the last row (as llama-bench's ppN; the verifier runs the LM head only for the rows its walk visits) at each context of --verify-ctx, and its ratio to N=1. \
        bandwidth_gbs: the best of several multi-threaded read passes over a buffer of \
        --bandwidth-mib MiB (1 GB = 10^9 bytes); floor_tokens_per_s is that bandwidth divided by \
        the weight bytes one decoded token reads. Progress goes to stderr; stdout holds one table, \
        or with --json one JSON object. With --mmproj TOWER --image FILE, image_prefill: the time \
        to encode the image (decoding, resizing, ViT, projector) plus the prefill of a question \
        about it, in ms.

        With --draft DRAFT --prompts FILE.jsonl it instead compares speculative with plain \
        decoding over the prompts (one JSON object per line: "prompt" or "text", optional \
        "image"; image prompts need --vision-tower), at T=0 and T=1: medians over prompts.
        """
    )

    @OptionGroup var modelOption: ModelOption
    @OptionGroup var precisionOption: PrecisionOption
    @OptionGroup var imageOptions: ImageOptions

    @Option(name: [.short, .customLong("threads")], help: "Worker threads (default: all cores).")
    var threads: Int = defaultThreadCount

    @Option(help: "Timed runs per measurement (after one warm-up run).")
    var reps = 5

    @Option(help: "Prompt-processing batch sizes, comma-separated.")
    var pp = "64,512"

    @Option(help: "Decode lengths (single-token forwards), comma-separated.")
    var tg = "128"

    @Option(name: .customLong("tg-prompt"), help: "Prompt tokens before the timed decode forwards.")
    var tgPrompt = 16

    @Option(help: "Verification batch sizes N, comma-separated; the first is the ratio's base.")
    var verify = "1,2,3,4,5,6,7,8,9,10,11,12,13,14,15,16,32,64"

    @Option(name: .customLong("verify-ctx"), help: "Cached contexts before each verification forward, comma-separated (one curve each).")
    var verifyCtxList = "256,1024"

    @Option(name: .customLong("bandwidth-mib"), help: "Size of the bandwidth test buffer in MiB (0 = skip).")
    var bandwidthMiB = 1024

    @Option(name: .customLong("bandwidth-passes"), help: "Read passes over the bandwidth buffer.")
    var bandwidthPasses = 5

    @Flag(name: .customLong("pp-exact"), help: "Measure prompt processing on the batch-invariant path instead of OpenBLAS.")
    var ppExact = false

    @Flag(help: "Print one JSON object instead of the table.")
    var json = false

    @OptionGroup var draftOptions: DraftOptions

    @Option(help: ArgumentHelp("With --draft: JSONL prompts for the speculative-vs-plain bench.", valueName: "FILE"))
    var prompts: String?

    @Option(name: .customLong("vision-tower"), help: ArgumentHelp("With --prompts: the mmproj tower for image prompts.", valueName: "TOWER.gguf"))
    var visionTower: String?

    @Option(name: [.short, .customLong("n-predict")], help: "With --prompts: tokens generated per prompt.")
    var nPredict = 64

    /// The parsed lists (checked in `validate`).
    var ppSizes: [Int] { parseList(pp) ?? [] }
    var tgSizes: [Int] { parseList(tg) ?? [] }
    var verifySizes: [Int] { parseList(verify) ?? [] }
    var verifyContexts: [Int] { parseList(verifyCtxList) ?? [] }

    func validate() throws {
        for (name, list) in [("--pp", pp), ("--tg", tg), ("--verify", verify)] {
            guard parseList(list) != nil else {
                throw ValidationError("\(name) '\(list)' is not a comma-separated list of positive integers")
            }
        }
        guard threads >= 1 else { throw ValidationError("--threads must be ≥ 1") }
        guard reps >= 1 else { throw ValidationError("--reps must be ≥ 1") }
        guard tgPrompt >= 1 else { throw ValidationError("--tg-prompt must be ≥ 1") }
        guard let vc = parseList(verifyCtxList), !vc.isEmpty, vc.allSatisfy({ $0 >= 1 }) else {
            throw ValidationError("--verify-ctx must be a comma-separated list of contexts ≥ 1")
        }
        guard bandwidthMiB >= 0 else { throw ValidationError("--bandwidth-mib must be ≥ 0") }
        guard bandwidthPasses >= 1 else { throw ValidationError("--bandwidth-passes must be ≥ 1") }
    }

    // MARK: Output

    struct Throughput: Encodable {
        var tokens: Int
        var prompt_tokens: Int?
        var batch_invariant: Bool
        var median_tokens_per_s: Double
        var min_tokens_per_s: Double
        var max_tokens_per_s: Double
        var percent_of_floor: Double?
    }

    struct VerifyPoint: Encodable {
        var n: Int
        var median_ms: Double
        var min_ms: Double
        var max_ms: Double
        var ratio: Double
        var ms_per_token: Double
    }

    struct VerifyCost: Encodable {
        var context: Int
        var batch_invariant: Bool
        var logits: String
        var points: [VerifyPoint]
    }

    struct Output: Encodable {
        var model: String
        var model_path: String
        var cpu: String
        var cores: Int
        var threads: Int
        var date: String
        var reps: Int
        /// Keyed "pp64", "tg128", … in the JSON object itself.
        var throughput: [(String, Throughput)]
        /// The first context's curve (kept for older readers) and every context's.
        var verify_cost: VerifyCost?
        var verify_costs: [VerifyCost]
        var bandwidth_gbs: Double?
        var bandwidth_median_gbs: Double?
        var bandwidth_buffer_mib: Int
        var bandwidth_passes: Int
        var weight_bytes_per_token: Int
        var floor_tokens_per_s: Double?
        var peak_rss_mb: Double
        /// The 1-minute load average when the bench started and ended (the machine may be shared).
        var load_average_start: Double?
        var load_average_end: Double?
        var image_prefill: ImagePrefillBench?

        struct Key: CodingKey {
            var stringValue: String
            var intValue: Int? { nil }
            init(_ s: String) { stringValue = s }
            init?(stringValue: String) { self.stringValue = stringValue }
            init?(intValue: Int) { nil }
        }

        func encode(to encoder: Encoder) throws {
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

    // MARK: Run

    func run() throws {
        if draftOptions.draft != nil || prompts != nil {
            guard let p = prompts, draftOptions.draft != nil else { throw CLIError("the speculative bench needs both --draft and --prompts") }
            try SpeculativeBench(draftOptions: draftOptions, promptsPath: p, towerPath: visionTower, maxTokens: nPredict,
                                 threads: threads, json: json, activations: precisionOption.activations).run(modelPath: try modelOption.resolvedPath())
            return
        }
        let path = try modelOption.resolvedPath()
        let gguf = try GGUFFile(path: path)
        let model = try LlamaModel(file: gguf, threads: threads)
        model.activationQuant = precisionOption.activations
        let c = model.config
        let loadStart = loadAverage()

        let pp = ppSizes, tg = tgSizes, verify = verifySizes
        let needed = max(pp.max() ?? 0, tgPrompt + (tg.max() ?? 0), verify.isEmpty ? 0 : verifyContexts.max()! + verify.max()!)
        guard needed <= c.contextLength else {
            throw CLIError("the bench needs \(needed) positions but the model's context is \(c.contextLength) (lower --pp, --tg or --verify-ctx/--verify)")
        }
        let session = model.makeSession(contextSize: max(needed, 1))
        var rng = SplitMix64(seed: 0x5EED_BE4C)
        func tokens(_ n: Int) -> [Int32] { (0..<n).map { _ in Int32(rng.next() % UInt64(c.vocabSize)) } }
        let fileName = (path as NSString).lastPathComponent
        printErr("bench: \(fileName), \(threads) thread\(threads == 1 ? "" : "s"), \(reps) rep\(reps == 1 ? "" : "s") after 1 warm-up")

        /// Runs `body` once to warm up, then `reps` times; returns the timed values.
        func measure(_ label: String, _ body: () throws -> Double) rethrows -> [Double] {
            _ = try body()
            var out: [Double] = []
            for r in 0..<reps {
                out.append(try body())
                printErr("  \(label) \(r + 1)/\(reps): \(fmt(out.last!, 2))")
            }
            return out
        }

        var throughput: [(String, Throughput)] = []
        for n in pp {
            let ids = tokens(n)
            let rates = try measure("pp\(n) tok/s") {
                session.truncate(to: 0)
                let t0 = monotonicSeconds()
                _ = try session.forward(tokens: ids, logits: .last, batchInvariant: ppExact)
                return Double(n) / (monotonicSeconds() - t0)
            }
            throughput.append(("pp\(n)", Throughput(tokens: n, batch_invariant: ppExact, rates)))
        }
        for n in tg {
            let prompt = tokens(tgPrompt), ids = tokens(n)
            let rates = try measure("tg\(n) tok/s") {
                session.truncate(to: 0)
                _ = try session.forward(tokens: prompt, logits: .last, batchInvariant: false)
                let t0 = monotonicSeconds()
                for t in ids { _ = try session.forward(tokens: [t], logits: .last) }
                return Double(n) / (monotonicSeconds() - t0)
            }
            throughput.append(("tg\(n)", Throughput(tokens: n, prompt_tokens: tgPrompt, batch_invariant: true, rates)))
        }

        var verifyCosts: [VerifyCost] = []
        for verifyCtx in verify.isEmpty ? [] : verifyContexts {
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

        let imagePrefill = try ImagePrefillBench.measure(imageOptions, model: model, gguf: gguf, reps: reps, log: printErr)

        // Before the bandwidth buffer exists, so that it does not count.
        let peakRSS = peakRSSMiB()

        var bandwidth: [Double] = []
        if bandwidthMiB > 0 {
            printErr("  bandwidth: filling \(bandwidthMiB) MiB")
            bandwidth = try measureBandwidth(bytes: bandwidthMiB << 20, threads: threads, passes: bandwidthPasses) {
                printErr("  bandwidth pass \($0 + 1)/\(bandwidthPasses): \(fmt($1, 2)) GB/s")
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

        let out = Output(
            model: fileName, model_path: path, cpu: cpuModel(), cores: defaultThreadCount, threads: threads,
            date: ISO8601DateFormatter().string(from: Date()), reps: reps, throughput: throughput,
            verify_cost: verifyCosts.first, verify_costs: verifyCosts, bandwidth_gbs: best, bandwidth_median_gbs: bandwidth.isEmpty ? nil : median(bandwidth),
            bandwidth_buffer_mib: bandwidthMiB, bandwidth_passes: bandwidthMiB > 0 ? bandwidthPasses : 0,
            weight_bytes_per_token: bytesPerToken, floor_tokens_per_s: floor, peak_rss_mb: peakRSS,
            load_average_start: loadStart, load_average_end: loadAverage(), image_prefill: imagePrefill)
        if json {
            try printJSON(out)
        } else {
            print(table(out))
        }
    }

    func table(_ o: Output) -> String {
        var s = "specdec bench: \(o.model), \(o.threads) thread\(o.threads == 1 ? "" : "s"), \(o.cpu) (\(o.cores) cores), \(o.date)\n"
        s += "\n" + "test".padding(8) + "  " + "tok/s median".leftPad(12) + "  " + "min".leftPad(9) + "  " + "max".leftPad(9) + "\n"
        for (name, t) in o.throughput {
            s += name.padding(8) + "  " + fmt(t.median_tokens_per_s, 1).leftPad(12) + "  " + fmt(t.min_tokens_per_s, 1).leftPad(9)
                + "  " + fmt(t.max_tokens_per_s, 1).leftPad(9)
            if let p = t.percent_of_floor { s += "   \(fmt(p, 1))% of floor" }
            s += "\n"
        }
        s += "(median of \(o.reps) after 1 warm-up; pp on the \(ppExact ? "batch-invariant" : "OpenBLAS") path)\n"
        for v in o.verify_costs {
            s += "\nverify cost at context \(v.context) (batch-invariant, logits for the last row):\n"
            s += "N".leftPad(4) + "  " + "ms".leftPad(9) + "  " + "×N=\(v.points.first?.n ?? 1)".leftPad(7) + "  " + "ms/token".leftPad(9) + "\n"
            for p in v.points {
                s += String(p.n).leftPad(4) + "  " + fmt(p.median_ms, 2).leftPad(9) + "  " + fmt(p.ratio, 2).leftPad(7)
                    + "  " + fmt(p.ms_per_token, 3).leftPad(9) + "\n"
            }
        }
        s += "\n"
        if let bw = o.bandwidth_gbs {
            s += "memory read bandwidth: \(fmt(bw, 2)) GB/s best, \(fmt(o.bandwidth_median_gbs ?? 0, 2)) median (\(o.bandwidth_passes) passes over \(o.bandwidth_buffer_mib) MiB, \(o.threads) threads)\n"
        }
        s += "weights per token: \(fmt(Double(o.weight_bytes_per_token) / 1e6, 1)) MB"
        if let f = o.floor_tokens_per_s { s += " -> bandwidth floor \(fmt(f, 1)) tok/s" }
        s += "\npeak RSS: \(fmt(o.peak_rss_mb, 1)) MiB"
        if let a = o.load_average_start, let b = o.load_average_end {
            s += "\nload average (1 min): \(fmt(a, 2)) at start, \(fmt(b, 2)) at end"
        }
        if let i = o.image_prefill { s += "\n" + i.tableLine }
        return s
    }
}

extension Bench.Throughput {
    init(tokens: Int, prompt_tokens: Int? = nil, batch_invariant: Bool, _ rates: [Double]) {
        self.init(tokens: tokens, prompt_tokens: prompt_tokens, batch_invariant: batch_invariant,
                  median_tokens_per_s: median(rates), min_tokens_per_s: rates.min()!, max_tokens_per_s: rates.max()!,
                  percent_of_floor: nil)
    }
}

/// "64,512" → [64, 512]; nil unless every entry is a positive integer. "" is the empty list.
private func parseList(_ s: String) -> [Int]? {
    if s.isEmpty { return [] }
    var out: [Int] = []
    for part in s.split(separator: ",", omittingEmptySubsequences: false) {
        guard let v = Int(part.trimmingCharacters(in: .whitespaces)), v >= 1 else { return nil }
        out.append(v)
    }
    return out
}

private func fmt(_ x: Double, _ digits: Int) -> String { String(format: "%.\(digits)f", x) }

extension String {
    func leftPad(_ width: Int) -> String { count >= width ? self : String(repeating: " ", count: width - count) + self }
}


// MARK: Machine facts

private func cpuModel() -> String {
    guard let info = try? String(contentsOfFile: "/proc/cpuinfo", encoding: .utf8) else { return "unknown CPU" }
    for line in info.split(separator: "\n") where line.hasPrefix("model name") {
        if let colon = line.firstIndex(of: ":") {
            return line[line.index(after: colon)...].trimmingCharacters(in: .whitespaces)
        }
    }
    return "unknown CPU"
}

/// The 1-minute load average (/proc/loadavg), if known.
private func loadAverage() -> Double? {
    guard let s = try? String(contentsOfFile: "/proc/loadavg", encoding: .utf8) else { return nil }
    return s.split(separator: " ").first.flatMap { Double($0) }
}

/// The process's peak resident set so far, in MiB (VmHWM, else getrusage).
private func peakRSSMiB() -> Double {
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
private func measureBandwidth(bytes: Int, threads: Int, passes: Int, progress: (Int, Double) -> Void) throws -> [Double] {
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
        guard sum == expected else { throw CLIError("bandwidth test: checksum \(sum) != \(expected) (memory corrupted?)") }
        rates.append(Double(total) / dt / 1e9)
        progress(pass, rates.last!)
    }
    return rates
}
