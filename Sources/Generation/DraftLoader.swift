import Checksum
import Draft
import Foundation
import GGUF
import Llama
import Verify

// Loading a `--draft` argument, and the verify-cost and draft-cost caches `--tree-tokens auto`
// reads: shared by decode, bench, eval and serve.

/// A loaded draft: the drafter and what `--tree-tokens auto` reads from it.
public struct LoadedDraft {
    public var drafter: Drafter
    public var kind: String
    public var metadata: [String: String]
    /// What the draft's cost depends on, for `DraftCostCache`: its file (or, for the target's
    /// own layers, the target file and layer count). Nil: drafts nothing itself (`ngram`).
    public var costSource: CostSource?

    public enum CostSource: Equatable {
        case file(String)
        case targetLayers(Int)
    }

    /// `.gguf`: an EAGLE-3 draft in llama.cpp's `eagle3` format, or a LLaMA-family language model
    /// sharing the target's vocabulary (the target's own file gives a perfect draft, for
    /// testing). Anything else: an EAGLE/ViSpec/EAGLE-3 checkpoint.
    ///
    /// `ngram[:N]` drafts by context matching alone (up to N tokens a step, default
    /// `ContextMatch.defaultTokens`); `DRAFT+ngram[:N]` merges context matches into DRAFT's trees.
    public static func load(path: String, target: LlamaModel, targetPath: String, contextSize: Int, threads: Int) throws -> LoadedDraft {
        if let (base, match) = try contextMatchSpec(path) {
            guard let base else {
                return LoadedDraft(drafter: ContextMatchDrafter(inner: nil, match: match), kind: match.description, metadata: [:],
                                   costSource: nil)
            }
            var inner = try load(path: base, target: target, targetPath: targetPath, contextSize: contextSize, threads: threads)
            inner.drafter = ContextMatchDrafter(inner: inner.drafter, match: match)
            inner.kind += " + \(match)"
            return inner
        }
        if path.hasPrefix("early-exit:") {
            // The training-free baseline: the target's first K layers, its final norm and LM head.
            guard let k = Int(path.dropFirst("early-exit:".count)), k >= 1, k < target.config.layerCount else {
                throw UserInputError("--draft \(path): early-exit:K needs K in 1...\(target.config.layerCount - 1) (layers of the target)")
            }
            let model = try LlamaModel(earlyExitOf: target, layers: k)
            return LoadedDraft(drafter: LlamaDrafter(model: model, contextSize: contextSize + 256,
                                                     prefillBatchInvariant: Generation.prefillBatchInvariant),
                               kind: "early exit after \(k) of \(target.config.layerCount) layers (self-draft)", metadata: [:],
                               costSource: .targetLayers(k))
        }
        guard FileManager.default.fileExists(atPath: path) else { throw UserInputError("\(path): no such draft file") }
        if path.hasSuffix(".gguf"), Eagle3Formats.isEagle3(try GGUFFile(path: path)) {
            return try loadEagle(path: path, target: target, contextSize: contextSize)
        }
        if path.hasSuffix(".gguf") {
            let same = (path as NSString).standardizingPath == (targetPath as NSString).standardizingPath
            let model = same ? target : try LlamaModel(path: path, threads: threads)
            model.activationQuant = target.activationQuant
            guard model.config.vocabSize == target.config.vocabSize else {
                throw UserInputError("\(path): the draft's vocabulary has \(model.config.vocabSize) tokens, the target's \(target.config.vocabSize)")
            }
            // Room for a round's tree nodes beyond the target's context.
            return LoadedDraft(drafter: LlamaDrafter(model: model, contextSize: contextSize + 256,
                                                     prefillBatchInvariant: Generation.prefillBatchInvariant),
                               kind: same ? "target model (self-draft)" : "llama gguf", metadata: [:], costSource: .file(path))
        }
        return try loadEagle(path: path, target: target, contextSize: contextSize)
    }
}

/// `ngram[:N]` → (nil, N tokens); `BASE+ngram[:N]` → (BASE, N); anything else (an existing file
/// whose name merely ends that way included) → nil.
func contextMatchSpec(_ spec: String) throws -> (base: String?, match: ContextMatch)? {
    guard !FileManager.default.fileExists(atPath: spec) else { return nil }
    let base: String?, tail: Substring
    if spec == "ngram" || spec.hasPrefix("ngram:") {
        base = nil; tail = spec.dropFirst("ngram".count)
    } else if let r = spec.range(of: "+ngram", options: .backwards),
              spec[r.upperBound...].isEmpty || spec[r.upperBound...].hasPrefix(":") {
        base = String(spec[..<r.lowerBound]); tail = spec[r.upperBound...]
    } else {
        return nil
    }
    var tokens = ContextMatch.defaultTokens
    if !tail.isEmpty {
        guard let n = Int(tail.dropFirst()), (1...64).contains(n) else {
            throw UserInputError("--draft \(spec): ngram:N needs N in 1...64 (context-matched tokens per step)")
        }
        tokens = n
    }
    return (base, try ContextMatch(maxTokens: tokens))
}

/// The verify-cost curve for `--tree-tokens auto`, measured once per model file (SHA-256), CPU,
/// thread count and activation mode, cached as JSON in $SPECDEC_CACHE (default ~/.cache/specdec).
public enum VerifyCostCache {
    public static var directory: String { CacheDirectory.path + "/verify-cost" }
    /// The most time the measuring threads may wait for a core (a share of their run time) for
    /// the curve to be cached. An idle machine: 0–2%; one competing busy process on 2 cores: 30%+.
    public static let maxRunQueueShare = 0.1

    /// `SPECDEC_VERIFY_COST_MAX_WAIT` overrides `maxRunQueueShare`: a machine that is never idle
    /// (a shared CI host) may cache what it measures rather than measure on every run.
    static func allowedRunQueueShare() throws -> Double {
        guard let text = ProcessInfo.processInfo.environment["SPECDEC_VERIFY_COST_MAX_WAIT"] else { return maxRunQueueShare }
        guard let v = Double(text), v >= 0, v.isFinite else {
            throw SettingError("SPECDEC_VERIFY_COST_MAX_WAIT", "SPECDEC_VERIFY_COST_MAX_WAIT must be a share of run time ≥ 0 (default \(maxRunQueueShare)), got '\(text)'")
        }
        return v
    }

    public static func curve(model: LlamaModel, modelPath: String, log: (String) -> Void) throws -> VerifyCostCurve {
        let sha = try modelSHA(modelPath)
        let cpu = cpuName()
        // "v7": with the head timed on 1, 2, 4 and 8 rows (v6: one row, charged per row; timed after
        // a warm-up, with the vectorized SwiGLU; v5: since the AVX2
        // attention prefetches its cached rows; v4: since the int8 tile prefetches its weights, T(1)
        // fell by up to a third on Zen 1, so older curves overstate it); one curve per activation
        // mode (the curves differ several-fold between q8 and f32).
        let key = SHA256.hex(SHA256.hash(Array("v7|\(sha)|\(cpu)|\(model.threads)|\(model.activationQuant)".utf8))).prefix(16)
        let file = directory + "/\(key).json"
        return try cached(file: file, valid: { (c: CachedCurve) in c.model_sha256 == sha }, what: "the target's verify cost",
                          announce: "tree budget: measuring the target's verify cost once for this model and CPU (a few seconds; cached in \(file))",
                          log: log) {
            let curve = try VerifyCostCurve.measure(model: model)
            return (CachedCurve(model_sha256: sha, cpu: cpu, curve: curve), curve.runQueueShare)
        }.curve
    }

    /// A cost measured once and cached as JSON at `file`: read back where `valid` accepts it, else
    /// measured and written, unless the measuring threads waited for a core more than
    /// `allowedRunQueueShare()` of their run time. Measured on a busy machine, every timing is too
    /// slow, and unevenly so: cached, it would steer every later run's budget; unsaved, the next
    /// run measures again.
    static func cached<Entry: Codable>(file: String, valid: (Entry) -> Bool, what: String, announce: String, log: (String) -> Void,
                                       measure: () throws -> (entry: Entry, runQueueShare: Double?)) throws -> Entry {
        if let data = FileManager.default.contents(atPath: file), let e = try? JSONDecoder().decode(Entry.self, from: data), valid(e) {
            return e
        }
        let allowed = try allowedRunQueueShare()
        log(announce)
        let (entry, share) = try measure()
        if let share, share > allowed {
            log(String(format: "tree budget: other processes held the cores while measuring %@ (threads waited %.0f%% of their run time for one); used for this run only, not cached (SPECDEC_VERIFY_COST_MAX_WAIT: %.2f)", what, share * 100, allowed))
            return entry
        }
        try? FileManager.default.createDirectory(atPath: (file as NSString).deletingLastPathComponent, withIntermediateDirectories: true)
        let enc = JSONEncoder()
        enc.outputFormatting = [.prettyPrinted, .sortedKeys]
        // A cache: failing to write it only costs a re-measurement next time.
        if let data = try? enc.encode(entry) { try? writeAtomically(Array(data), to: file) }
        return entry
    }

    struct CachedCurve: Codable {
        var model_sha256: String
        var cpu: String
        var curve: VerifyCostCurve
    }

    /// SHA-256 of the model file, remembered by path, size and modification time so that later
    /// runs do not hash it again.
    public static func modelSHA(_ path: String) throws -> String {
        let attrs = try FileManager.default.attributesOfItem(atPath: path)
        let size = (attrs[.size] as? NSNumber)?.intValue ?? 0
        let mtime = (attrs[.modificationDate] as? Date)?.timeIntervalSince1970 ?? 0
        let real = (path as NSString).resolvingSymlinksInPath
        let indexKey = SHA256.hex(SHA256.hash(Array("\(real)|\(size)|\(mtime)".utf8))).prefix(16)
        let indexFile = directory + "/sha-\(indexKey).txt"
        if let d = FileManager.default.contents(atPath: indexFile) {
            let s = String(decoding: d, as: UTF8.self).trimmingCharacters(in: .whitespacesAndNewlines)
            if s.count == 64 { return s }
        }
        guard let fh = FileHandle(forReadingAtPath: path) else { throw UserInputError("\(path): cannot read the model") }
        defer { try? fh.close() }
        var h = SHA256()
        while let chunk = try fh.read(upToCount: 1 << 22), !chunk.isEmpty {
            chunk.withUnsafeBytes { h.update($0) }
        }
        let sha = SHA256.hex(h.finalize())
        try? FileManager.default.createDirectory(atPath: directory, withIntermediateDirectories: true)
        try? writeAtomically(Array(sha.utf8), to: indexFile)
        return sha
    }

    public static func cpuName() -> String {
        guard let info = try? String(contentsOfFile: "/proc/cpuinfo", encoding: .utf8) else { return "unknown CPU" }
        for line in info.split(separator: "\n") where line.hasPrefix("model name") {
            if let colon = line.firstIndex(of: ":") { return line[line.index(after: colon)...].trimmingCharacters(in: .whitespaces) }
        }
        return "unknown CPU"
    }
}

/// The draft's cost per tree level for `--tree-tokens auto` (`DraftLevelCost`), measured once per
/// draft file (SHA-256), target, CPU, thread count, activation mode and top-k, cached as JSON next
/// to the verify-cost curves, with the same rule for a busy machine.
public enum DraftCostCache {
    public static var directory: String { CacheDirectory.path + "/draft-cost" }

    public static func levelCost(draft: LoadedDraft, model: LlamaModel, modelPath: String, topK: Int,
                                 log: (String) -> Void) throws -> DraftLevelCost {
        func measure() throws -> DraftLevelCost {
            try DraftLevelCost.measure(drafter: draft.drafter, width: model.config.width, vocab: model.vocabSize, topK: topK)
        }
        guard let source = draft.costSource else { return try measure() }   // nothing of its own to time
        let what: String
        switch source {
        case .file(let path): what = "file " + (try VerifyCostCache.modelSHA(path))
        case .targetLayers(let k): what = "target layers \(k)"
        }
        let modelSHA = try VerifyCostCache.modelSHA(modelPath)
        let cpu = VerifyCostCache.cpuName()
        // "d2": levels timed after a warm-up (d1 timed them in the post-load ramp).
        let key = SHA256.hex(SHA256.hash(Array("d2|\(what)|\(modelSHA)|\(cpu)|\(model.threads)|\(model.activationQuant)|\(topK)".utf8))).prefix(16)
        let file = directory + "/\(key).json"
        return try VerifyCostCache.cached(file: file, valid: { (c: Cached) in c.key == what && c.cost.topK == topK },
                                          what: "the draft's cost",
                                          announce: "tree budget: measuring the draft's cost per tree level once for this draft and CPU (cached in \(file))",
                                          log: log) {
            let cost = try measure()
            return (Cached(key: what, cpu: cpu, cost: cost), cost.runQueueShare)
        }.cost
    }

    struct Cached: Codable {
        var key: String
        var cpu: String
        var cost: DraftLevelCost
    }
}

extension LoadedDraft {
    /// An EAGLE/ViSpec draft checkpoint (safetensors): its metadata may carry acceptance
    /// statistics for `--tree-tokens auto`.
    static func loadEagle(path: String, target: LlamaModel, contextSize: Int) throws -> LoadedDraft {
        let weights = path.hasSuffix(".gguf") ? try Eagle3Formats.readGGUF(try GGUFFile(path: path), target: target.config)
                                              : try DraftWeights.load(path: path, target: target.config)
        let draft = try EagleDraft(weights: weights, target: target, contextSize: contextSize, file: path)
        draft.promptWindow = EagleDraft.defaultPromptWindow
        return LoadedDraft(drafter: draft, kind: weights.config.arch.rawValue, metadata: weights.metadata, costSource: .file(path))
    }
}
