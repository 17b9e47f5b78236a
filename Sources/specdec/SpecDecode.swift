import Draft
import DataSynth
import GGUF
import Foundation
import Llama
import Sampling
import Tokenizer
import Verify


/// Where a generation stopped and what it produced (plain or speculative).
struct GenerationRun {
    var tokens: [Int32] = []
    var text = ""
    var stop = "length"
    var prefillSeconds = 0.0
    var decodeSeconds = 0.0
    /// Decode speed as plain decoding reports it: tokens after the first (which comes from the
    /// prefill's logits) per second of decoding.
    var tokensPerSecond: Double {
        tokens.count > 1 && decodeSeconds > 0 ? Double(tokens.count - 1) / decodeSeconds : 0
    }
    var speculative: SpeculativeStats?
    var tree: TreeShape?
}

enum Generation {
    /// Plain autoregressive decoding (what `specdec decode` without a draft does).
    static func plain(model: LlamaModel, prompt: PreparedPrompt, contextSize: Int, params: SamplingParameters,
                      maxTokens n: Int, eog: Set<Int32>, onPiece: (Int32) -> Void) throws -> GenerationRun {
        let session = model.makeSession(contextSize: contextSize)
        var sampler = try Sampler(params)
        var run = GenerationRun()
        let t0 = now()
        var out = try prompt.prefill(session, batchInvariant: prefillBatchInvariant)
        let t1 = now()
        var history = prompt.history
        while run.tokens.count < n {
            let next = out.logits.withUnsafeBufferPointer { sampler.sample($0, history: history) }
            run.tokens.append(next)
            history.append(next)
            if eog.contains(next) { run.stop = "eos"; break }
            onPiece(next)
            guard run.tokens.count < n else { break }
            guard session.length < contextSize else { run.stop = "context"; break }
            out = try session.forward(tokens: [next])
        }
        run.prefillSeconds = t1 - t0
        run.decodeSeconds = now() - t1
        return run
    }

    /// The prompt prefill setting of both plain and speculative decoding: the same setting gives
    /// bit-identical caches, which greedy identity needs (OpenBLAS for the prompt, for speed).
    static let prefillBatchInvariant = false

    /// Speculative decoding: the same tokens as `plain` at temperature 0, the same distribution above.
    /// `budget` picks the tree size on the first step when `shape` came from `--tree-tokens auto`.
    static func speculative(model: LlamaModel, drafter: Drafter, prompt: PreparedPrompt, contextSize: Int,
                            params: SamplingParameters, shape: TreeShape, maxTokens n: Int, eog: Set<Int32>,
                            budget: ((Double) -> Int)? = nil, fallback: FallbackPolicy? = nil,
                            onPiece: (Int32) -> Void) throws -> GenerationRun {
        let session = model.makeSession(contextSize: contextSize)
        var run = GenerationRun()
        let t0 = now()
        let prefill = try prompt.prefill(session, batchInvariant: prefillBatchInvariant, captureLayers: drafter.featureLayers)
        let t1 = now()
        guard n > 0 else { run.prefillSeconds = t1 - t0; return run }
        let dec = try SpeculativeDecoder(session: session, drafter: drafter, sampler: try Sampler(params), shape: shape,
                                         prefill: prefill, prompt: prompt.tokens, images: prompt.draftImageSpans,
                                         history: prompt.history)
        dec.chooseBudget = budget
        dec.fallback = fallback
        var pending = [dec.firstToken]
        outer: while true {
            for t in pending {
                run.tokens.append(t)
                if eog.contains(t) { run.stop = "eos"; break outer }
                onPiece(t)
                if run.tokens.count >= n { break outer }
            }
            // Plain decoding stops when the cache is full before evaluating the next token.
            guard session.length < contextSize else { run.stop = "context"; break }
            pending = try dec.step()
        }
        run.prefillSeconds = t1 - t0
        run.decodeSeconds = now() - t1
        run.speculative = dec.stats
        run.tree = dec.shape
        return run
    }
}

extension PreparedPrompt {
    /// The image spans as the drafter reads them.
    var draftImageSpans: [DraftImageSpan] {
        guard let s = sequence else { return [] }
        return s.imageRanges.indices.map {
            DraftImageSpan(start: s.imageRanges[$0].lowerBound, rows: s.imageRanges[$0].count, embeddings: Array(s.imageEmbeddings($0)))
        }
    }
}

/// A loaded draft: the drafter and what `--tree-tokens auto` reads from it.
struct LoadedDraft {
    var drafter: Drafter
    var kind: String
    var metadata: [String: String]

    /// `.gguf`: an EAGLE-3 draft in llama.cpp's `eagle3` format, or a LLaMA-family language model
    /// sharing the target's vocabulary (the target's own file gives a perfect draft, for
    /// testing). Anything else: an EAGLE/ViSpec/EAGLE-3 checkpoint.
    static func load(path: String, target: LlamaModel, targetPath: String, contextSize: Int, threads: Int) throws -> LoadedDraft {
        if path.hasPrefix("early-exit:") {
            // The training-free baseline: the target's first K layers, its final norm and LM head.
            guard let k = Int(path.dropFirst("early-exit:".count)), k >= 1, k < target.config.layerCount else {
                throw CLIError("--draft \(path): early-exit:K needs K in 1...\(target.config.layerCount - 1) (layers of the target)")
            }
            let model = try LlamaModel(earlyExitOf: target, layers: k)
            return LoadedDraft(drafter: LlamaDrafter(model: model, contextSize: contextSize + 256,
                                                     prefillBatchInvariant: Generation.prefillBatchInvariant),
                               kind: "early exit after \(k) of \(target.config.layerCount) layers (self-draft)", metadata: [:])
        }
        guard FileManager.default.fileExists(atPath: path) else { throw CLIError("\(path): no such draft file") }
        if path.hasSuffix(".gguf"), Eagle3Formats.isEagle3(try GGUFFile(path: path)) {
            return try loadEagle(path: path, target: target, contextSize: contextSize)
        }
        if path.hasSuffix(".gguf") {
            let same = (path as NSString).standardizingPath == (targetPath as NSString).standardizingPath
            let model = same ? target : try LlamaModel(path: path, threads: threads)
            model.activationQuant = target.activationQuant
            guard model.config.vocabSize == target.config.vocabSize else {
                throw CLIError("\(path): the draft's vocabulary has \(model.config.vocabSize) tokens, the target's \(target.config.vocabSize)")
            }
            // Room for a round's tree nodes beyond the target's context.
            return LoadedDraft(drafter: LlamaDrafter(model: model, contextSize: contextSize + 256,
                                                     prefillBatchInvariant: Generation.prefillBatchInvariant),
                               kind: same ? "target model (self-draft)" : "llama gguf", metadata: [:])
        }
        return try loadEagle(path: path, target: target, contextSize: contextSize)
    }
}

/// The verify-cost curve for `--tree-tokens auto`, measured once per model file (SHA-256), CPU,
/// thread count and activation mode, cached as JSON in $SPECDEC_CACHE (default ~/.cache/specdec).
enum VerifyCostCache {
    static var directory: String {
        let env = ProcessInfo.processInfo.environment
        let cache = env["SPECDEC_CACHE"].flatMap { $0.isEmpty ? nil : $0 } ?? (NSHomeDirectory() + "/.cache/specdec")
        return cache + "/verify-cost"
    }

    static func curve(model: LlamaModel, modelPath: String, log: (String) -> Void) throws -> VerifyCostCurve {
        let sha = try modelSHA(modelPath)
        let cpu = cpuName()
        // "v3": curves since the interleaved int8 kernels; one curve per activation mode (the
        // curves differ several-fold between q8 and f32).
        let key = SHA256.hex(SHA256.hash(Array("v3|\(sha)|\(cpu)|\(model.threads)|\(model.activationQuant)".utf8))).prefix(16)
        let file = directory + "/\(key).json"
        if let data = FileManager.default.contents(atPath: file),
           let c = try? JSONDecoder().decode(CachedCurve.self, from: data), c.model_sha256 == sha {
            return c.curve
        }
        log("tree budget: measuring the target's verify cost once for this model and CPU (a few seconds; cached in \(file))")
        let curve = try VerifyCostCurve.measure(model: model)
        let entry = CachedCurve(model_sha256: sha, cpu: cpu, curve: curve)
        try? FileManager.default.createDirectory(atPath: directory, withIntermediateDirectories: true)
        let enc = JSONEncoder()
        enc.outputFormatting = [.prettyPrinted, .sortedKeys]
        // A cache: failing to write it only costs a re-measurement next time.
        if let data = try? enc.encode(entry) { try? writeAtomically(Array(data), to: file) }
        return curve
    }

    struct CachedCurve: Codable {
        var model_sha256: String
        var cpu: String
        var curve: VerifyCostCurve
    }

    /// SHA-256 of the model file, remembered by path, size and modification time so that later
    /// runs do not hash it again.
    static func modelSHA(_ path: String) throws -> String {
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
        guard let fh = FileHandle(forReadingAtPath: path) else { throw CLIError("\(path): cannot read the model") }
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

    static func cpuName() -> String {
        guard let info = try? String(contentsOfFile: "/proc/cpuinfo", encoding: .utf8) else { return "unknown CPU" }
        for line in info.split(separator: "\n") where line.hasPrefix("model name") {
            if let colon = line.firstIndex(of: ":") { return line[line.index(after: colon)...].trimmingCharacters(in: .whitespaces) }
        }
        return "unknown CPU"
    }
}
