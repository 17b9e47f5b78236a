import Diagnostics
import Foundation
import GGUF
import Generation
import Kernels
import Llama
import Shards
import Tokenizer
import Vision

/// `synth-data`'s settings as plain values (the command line, parsed): `validate()` checks them,
/// `run` builds the source, the model, the synthesizer and the header from them and writes this
/// worker's shard. Errors name the option (`SettingError`) or the file (`DataError`).
public struct SynthesisRequest {
    public var modelPath: String
    public var activations: ActivationQuant = .environment
    public var out: String
    /// The prompts: exactly one of a LLaVA JSON (with `imageDir`), a JSONL file, or a generator
    /// (text, images, images-classic).
    public var llavaJSON: String?
    public var imageDir: String?
    public var prompts: String?
    public var generate: String?
    /// Leave out the file's samples that have images.
    public var textOnly = false
    /// Samples in the dataset (nil: every prompt of the file; required with a generator).
    public var samples: Int?
    public var towerPath: String?
    public var embedImages = false
    public var maxNew = 256
    public var temperature: Float = 0
    public var topK = 40
    public var topP: Float = 0.95
    public var minP: Float = 0.05
    public var seed: UInt64 = 0
    /// This worker's part, "i/N" (nil: from the environment, else 0/1).
    public var shard: String?
    /// fp16, int8 or none.
    public var hidden = "fp16"
    /// Comma-separated target layer ids whose input states are also stored, or "eagle3".
    public var hiddenLayers: String?
    public var zstdLevel: Int32 = 19
    /// The instruction appended to each user turn ({words} stands for `longAnswerWords`); nil: none.
    public var longAnswer: String? = "Please answer with at least {words} words."
    public var longAnswerWords = 1000
    public var system: String?
    /// Context in tokens (nil: the model's, at most 4096).
    public var ctx: Int?
    public var threads = defaultThreadCount
    /// Samples generated together (any value writes the same bytes).
    public var batch = 8

    public init(modelPath: String, out: String) {
        self.modelPath = modelPath; self.out = out
    }

    /// The checks that need no file.
    public func validate() throws {
        guard maxNew >= 0 else { throw SettingError("--max-new", "--max-new must be ≥ 0") }
        guard threads >= 1 else { throw SettingError("--threads", "--threads must be ≥ 1") }
        guard batch >= 1 else { throw SettingError("--batch", "--batch must be ≥ 1") }
        guard (1...22).contains(zstdLevel) else { throw SettingError("--zstd-level", "--zstd-level must be in 1…22") }
        if let s = samples, s < 0 { throw SettingError("--samples", "--samples must be ≥ 0") }
        if let c = ctx, c < 2 { throw SettingError("--ctx", "--ctx must be ≥ 2") }
        guard longAnswerWords >= 1 else { throw SettingError("--long-answer-words", "--long-answer-words must be ≥ 1") }
        let sources = [llavaJSON != nil, prompts != nil, generate != nil].filter { $0 }.count
        guard sources == 1 else { throw SettingError("--prompts", "give exactly one of --llava-json, --prompts, --generate") }
        if imageDir != nil && llavaJSON == nil { throw SettingError("--image-dir", "--image-dir goes with --llava-json") }
        if textOnly && generate != nil { throw SettingError("--text-only", "--text-only goes with --llava-json or --prompts") }
    }

    /// Writes (or resumes, or confirms) this worker's shard in `out`; `progress` after each record.
    public func run(progress: (SynthProgress) -> Void) throws -> SynthSummary {
        guard let encoding = HiddenEncoding(rawValue: hidden) else { throw SettingError("--hidden", "--hidden must be fp16, int8 or none, not \(hidden)") }
        let spec: ShardSpec
        do { spec = try ShardSpec.resolve(shard, environment: ProcessInfo.processInfo.environment) } catch let e as DataError {
            throw SettingError("--shard", e.reason.hasPrefix("SLURM") || e.reason.hasPrefix("JOB") ? e.reason : "--shard: \(e.reason)")
        }
        let source = try makeSource()
        guard let count = samples ?? (source.count == Int.max ? nil : source.count) else {
            throw SettingError("--samples", "--samples N is required with --generate")
        }
        if count > source.count {
            throw SettingError("--samples", "--samples \(count): the prompt file has only \(source.count) prompts")
        }
        // Without a tower, image samples cannot be made: say so before any work.
        if source.count != Int.max && towerPath == nil {
            for i in spec.indices(samples: count) {
                let p = try source.prompt(at: i)
                if !p.imagePaths.isEmpty {
                    throw SettingError("--mmproj", "sample \(i) (\(p.id)) has an image (\(p.imagePaths[0])): image samples need a vision tower (--mmproj TOWER.gguf); --text-only keeps the samples without images")
                }
            }
        }

        let target = try LoadedTarget(path: modelPath, threads: threads, activations: activations)
        let (model, tokenizer) = (target.model, target.tokenizer)
        let template = try ChatTemplate(gguf: target.gguf)

        var settings = GenerationSettings()
        settings.maxNew = maxNew
        settings.temperature = temperature
        settings.topK = topK; settings.topP = topP; settings.minP = minP
        settings.seed = seed
        settings.longAnswer = longAnswer?.replacingOccurrences(of: "{words}", with: String(longAnswerWords))
        settings.system = system
        settings.contextSize = model.config.contextSize(requested: ctx)
        settings.template = template.format.rawValue

        var vision: SynthVision? = nil
        var towerInfo: TowerInfo? = nil
        if let towerPath {
            let tower = try VisionTower(path: towerPath)
            try tower.check(compatibleWith: model)
            vision = SynthVision(tower: tower, markers: tower.markers(tokenizer: tokenizer), embedImages: embedImages)
            towerInfo = try TowerInfo(path: towerPath)
            if embedImages { settings.embedImages = true }
        }
        let auxLayers = try self.auxLayers(layerCount: model.config.layerCount, encoding: encoding)
        let header = ShardHeader(model: try ModelInfo(model: model, path: modelPath), tower: towerInfo, source: source.info,
                                 generation: settings, hidden: encoding, zstdLevel: Int(zstdLevel), samples: count, shard: spec,
                                 auxLayers: auxLayers)
        let synth: Synthesizer
        do {
            synth = try Synthesizer(model: model, tokenizer: tokenizer, template: template, settings: settings, hidden: encoding,
                                    vision: vision, auxLayers: auxLayers ?? [])
        } catch let e as DataError { throw SettingError(e.file, e.reason) }
        return try runSynthesis(source: source, synthesizer: synth, header: header, outDir: out, batch: batch, progress: progress)
    }

    private func makeSource() throws -> DataSource {
        var source: DataSource
        if let g = generate {
            switch g {
            case "text": source = TextPromptGenerator(seed: seed)
            case "text-varied": source = VariedTextPromptGenerator(seed: seed)
            case "images":
                guard towerPath != nil else { throw SettingError("--generate", "--generate images needs a vision tower: --mmproj TOWER.gguf (e.g. checkpoints/demo-tower.gguf)") }
                source = ImagePromptGenerator(seed: seed, questions: .varied)
            case "images-classic":
                guard towerPath != nil else { throw SettingError("--generate", "--generate images-classic needs a vision tower: --mmproj TOWER.gguf") }
                source = ImagePromptGenerator(seed: seed, questions: .classic)
            default: throw SettingError("--generate", "--generate must be text, text-varied, images or images-classic, not \(g)")
            }
        } else if let p = prompts {
            source = try JSONLPromptSource(path: p)
        } else {
            source = try LLaVASource(path: llavaJSON!, imageDir: imageDir)
        }
        return textOnly ? try TextOnlySource(source) : source
    }

    /// `hiddenLayers` as layer ids, checked against the model.
    private func auxLayers(layerCount: Int, encoding: HiddenEncoding) throws -> [Int]? {
        try hiddenLayers.map { try hiddenLayerIDs($0, layerCount: layerCount, encoding: encoding) }
    }
}

/// `--hidden-layers` as layer ids ("eagle3": 2, L/2, L−3), checked against the model.
func hiddenLayerIDs(_ text: String, layerCount: Int, encoding: HiddenEncoding) throws -> [Int] {
    let layers: [Int]
    if text == "eagle3" {
        layers = [2, layerCount / 2, layerCount - 3]
    } else {
        let ids = text.split(separator: ",").map { Int($0.trimmingCharacters(in: .whitespaces)) }
        guard !ids.isEmpty, ids.allSatisfy({ $0 != nil }) else {
            throw SettingError("--hidden-layers", "--hidden-layers must be comma-separated layer ids (e.g. 2,15,27) or eagle3, not \(text)")
        }
        layers = ids.map { $0! }
    }
    guard encoding != .none else { throw SettingError("--hidden-layers", "--hidden-layers needs stored hidden states: --hidden fp16 or int8, not none") }
    if let bad = layers.first(where: { $0 < 1 || $0 >= layerCount }) {
        throw SettingError("--hidden-layers", "--hidden-layers: \(bad) is not the input of one of the model's layers 1..<\(layerCount) (id j = the output of layer j − 1)")
    }
    return layers
}

/// `data features`' settings as plain values: the source dataset, the model (and tower) that
/// wrote it, and the states to store.
public struct FeatureRequest {
    public var source: String
    public var out: String
    public var modelPath: String
    public var activations: ActivationQuant = .environment
    public var towerPath: String?
    /// fp16 or int8; nil: the source's.
    public var hidden: String?
    public var hiddenLayers: String?
    public var zstdLevel: Int32?
    public var threads = defaultThreadCount

    public init(source: String, out: String, modelPath: String) {
        self.source = source; self.out = out; self.modelPath = modelPath
    }

    public func run(progress: (FeatureProgress) -> Void) throws -> FeatureSummary {
        guard threads >= 1 else { throw SettingError("--threads", "--threads must be ≥ 1") }
        if let z = zstdLevel, !(1...22).contains(z) { throw SettingError("--zstd-level", "--zstd-level must be in 1…22") }
        var encoding: HiddenEncoding? = nil
        if let h = hidden {
            guard let e = HiddenEncoding(rawValue: h), e != .none else { throw SettingError("--hidden", "--hidden must be fp16 or int8, not \(h)") }
            encoding = e
        }
        let target = try LoadedTarget(path: modelPath, threads: threads, activations: activations)
        let model = target.model
        var tower: (encoder: any VisionEncoder, info: TowerInfo)? = nil
        if let towerPath {
            let t = try VisionTower(path: towerPath)
            try t.check(compatibleWith: model)
            tower = (t, try TowerInfo(path: towerPath))
        }
        let layers = try hiddenLayers.map { try hiddenLayerIDs($0, layerCount: model.config.layerCount, encoding: encoding ?? .fp16) } ?? []
        let extractor = FeatureExtractor(model: model, modelInfo: try ModelInfo(model: model, path: modelPath), tower: tower,
                                         auxLayers: layers, encoding: encoding, zstdLevel: zstdLevel.map(Int.init))
        return try extractFeatures(source: source, out: out, extractor: extractor, progress: progress)
    }
}

extension FeatureSummary {
    /// The line `data features` prints at the end.
    public var line: String {
        "\(out): \(records) records in \(shards) shard(s), \(bytes) bytes | recomputed \(recomputedRecords)"
            + (resumedRecords > 0 ? " (kept \(resumedRecords))" : "")
            + ", final states identical to the stored ones in \(identicalHidden) of \(recomputedRecords)"
            + String(format: " | %.0f positions/s", positionsPerSecond)
    }
}

extension SynthProgress {
    /// One status line: bar, counts, rates and the time left (rates over the last minute).
    public func statusLine(label: String) -> String {
        let sps = recentSamplesPerSecond ?? (seconds > 0 ? Double(generatedSamples) / seconds : 0)
        let tps = recentTokensPerSecond ?? (seconds > 0 ? Double(generatedTokens) / seconds : 0)
        let eta = sps > 0 ? Self.duration(Double(total - done) / sps) : "?"
        let pct = total > 0 ? 100 * Double(done) / Double(total) : 100
        let width = 24
        let filled = total > 0 ? width * done / total : width
        let bar = String(repeating: "#", count: filled) + String(repeating: "-", count: width - filled)
        return String(format: "%@ [%@] %d/%d (%.0f%%) | %.2f samples/s | %.1f tok/s | ETA %@",
                      label, bar, done, total, pct, sps, tps, eta)
    }

    /// "45s", "3m07s", "2h05m"; "?" when unknown.
    public static func duration(_ s: Double) -> String {
        guard s.isFinite, s >= 0 else { return "?" }
        let t = Int(s.rounded())
        if t >= 3600 { return "\(t / 3600)h\(String(format: "%02d", (t % 3600) / 60))m" }
        if t >= 60 { return "\(t / 60)m\(String(format: "%02d", t % 60))s" }
        return "\(t)s"
    }
}

extension SynthSummary {
    /// The line `synth-data` prints at the end.
    public var line: String {
        let done = alreadyComplete ? "already complete" : "wrote \(generatedSamples) samples"
            + (resumedRecords > 0 ? " (resumed after \(resumedRecords))" : "")
        // Counts by interpolation: a shard passes 2^31 bytes, which a C `%d` would wrap.
        return "\(shardFile): \(done) | \(records) records, \(bytes) bytes ("
            + String(format: "%.0f per sample), %.2fx smaller than raw fp16 hidden states | %.2f samples/s, %.1f tok/s",
                     bytesPerSample, compressionRatio, samplesPerSecond, tokensPerSecond)
    }
}
