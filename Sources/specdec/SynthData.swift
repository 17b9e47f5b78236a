import ArgumentParser
import DataSynth
import Shards
import Foundation
import GGUF
import Llama
import Tokenizer
import Vision

struct SynthData: ParsableCommand {
    static let configuration = CommandConfiguration(
        commandName: "synth-data",
        abstract: "Write draft-training data: the target answers prompts; tokens, masks and hidden states go into zstd shards.",
        discussion: """
        Prompts come from --prompts FILE.jsonl, --llava-json FILE (+ --image-dir), or --generate \
        text|images (built-in templates, seeded; `images` draws pictures of colours, shapes and simple \
        scenes with a question about each, for the demo tower). Image samples need --mmproj TOWER.gguf: \
        the record keeps the image mask and each image's path and SHA-256, and its bytes with \
        --embed-images (generated pictures, a few hundred bytes each, are always embedded). As ViSpec does, each user turn gets an instruction \
        asking for a long answer (--no-long-answer to turn it off). The target answers greedily unless \
        --temp > 0 (each sample's sampler seed derives from --seed and the sample's index). Every sample \
        stores its token ids, loss mask (the answers), image mask and, unless --hidden none, the target's \
        final-norm hidden state at every position; with --hidden-layers also the residual stream entering \
        those target layers (EAGLE-3's training features; format version 2). The shard format is in docs/shard-format.md.

        --shard i/N takes the samples whose index mod N = i (default from SLURM_ARRAY_TASK_ID or \
        JOB_COMPLETION_INDEX, with the count from SLURM_ARRAY_TASK_COUNT or SPECDEC_SHARD_COUNT); join \
        the workers' folders with `specdec data merge`. A killed run, rerun with the same arguments, \
        continues after its last complete record and ends with the same bytes.
        """
    )

    @OptionGroup var modelOption: ModelOption
    @OptionGroup var precisionOption: PrecisionOption

    @Option(help: ArgumentHelp("Vision tower (llama.cpp mmproj GGUF) for image samples.", valueName: "TOWER.gguf"))
    var mmproj: String?

    @Flag(name: .customLong("embed-images"), help: "Store each image file's bytes in its record (default: path and SHA-256 only).")
    var embedImages = false

    @Option(name: .customLong("llava-json"), help: "LLaVA-format JSON of conversations.")
    var llavaJSON: String?

    @Option(name: .customLong("image-dir"), help: "Folder that LLaVA image paths are relative to (default: the JSON's folder).")
    var imageDir: String?

    @Option(help: "JSONL file of text prompts, one JSON object a line ({\"prompt\": ...}, {\"turns\": [...]}, ...).")
    var prompts: String?

    @Flag(name: .customLong("text-only"), help: "Leave out the samples of --llava-json / --prompts that have images (the rest are renumbered).")
    var textOnly = false

    @Option(help: "Built-in prompt generator: text; images (needs --mmproj: pictures of every family with varied questions and answer lengths); images-classic (the 14 question templates of the evaluation set, one per index).")
    var generate: String?

    @Option(help: "Samples in the dataset (default: every prompt of the file; required with --generate).")
    var samples: Int?

    @Option(help: "Output folder.")
    var out: String

    @Option(name: .customLong("max-new"), help: "Maximum answer tokens per user turn.")
    var maxNew = 256

    @OptionGroup var sampling: SamplingOptions

    @Option(help: "Seed of the prompt generator and of sampling.")
    var seed: UInt64 = 0

    @Option(help: "This worker's part, i/N (default: from SLURM_ARRAY_TASK_ID or JOB_COMPLETION_INDEX, else 0/1).")
    var shard: String?

    @Option(help: "Hidden states: fp16 (lossless for fp16), int8 (per-row scaled) or none.")
    var hidden: String = "fp16"

    @Option(name: .customLong("hidden-layers"),
            help: ArgumentHelp("Also store the residual stream entering these target layers (EAGLE-3's auxiliary states; id j = the output of layer j − 1), comma-separated, or `eagle3` for the default 2, L/2, L−3.", valueName: "IDS"))
    var hiddenLayers: String?

    @Flag(name: .customLong("no-hidden"), help: "Same as --hidden none.")
    var noHidden = false

    @Option(name: .customLong("zstd-level"), help: "zstd compression level (1–22).")
    var zstdLevel: Int32 = 19

    @Flag(name: .customLong("no-long-answer"), help: "Do not append the long-answer instruction to user turns.")
    var noLongAnswer = false

    @Option(name: .customLong("long-answer"), help: "The instruction appended to each user turn; {words} stands for --long-answer-words.")
    var longAnswer = "Please answer with at least {words} words."

    @Option(name: .customLong("long-answer-words"), help: "Word count asked for.")
    var longAnswerWords = 1000

    @Option(help: "System message (default: the chat template's own).")
    var system: String?

    @Option(help: "Context size in tokens (default: the model's, at most 4096).")
    var ctx: Int?

    @Option(name: [.short, .customLong("threads")], help: "Worker threads (default: all cores).")
    var threads: Int = defaultThreadCount

    @Option(help: "Samples generated together: their decoding steps share one forward pass. Any value writes the same bytes (a run may be resumed with another).")
    var batch: Int = 8

    @Flag(help: "Print a JSON summary on stdout at the end.")
    var json = false

    func validate() throws {
        guard maxNew >= 0 else { throw ValidationError("--max-new must be ≥ 0") }
        guard threads >= 1 else { throw ValidationError("--threads must be ≥ 1") }
        guard batch >= 1 else { throw ValidationError("--batch must be ≥ 1") }
        guard (1...22).contains(zstdLevel) else { throw ValidationError("--zstd-level must be in 1…22") }
        if let s = samples, s < 0 { throw ValidationError("--samples must be ≥ 0") }
        if let c = ctx, c < 2 { throw ValidationError("--ctx must be ≥ 2") }
        guard longAnswerWords >= 1 else { throw ValidationError("--long-answer-words must be ≥ 1") }
        let sources = [llavaJSON != nil, prompts != nil, generate != nil].filter { $0 }.count
        guard sources == 1 else { throw ValidationError("give exactly one of --llava-json, --prompts, --generate") }
        if imageDir != nil && llavaJSON == nil { throw ValidationError("--image-dir goes with --llava-json") }
        if textOnly && generate != nil { throw ValidationError("--text-only goes with --llava-json or --prompts") }
    }

    func run() throws {
        let encoding: HiddenEncoding
        if noHidden { encoding = .none } else {
            guard let e = HiddenEncoding(rawValue: hidden) else { throw CLIError("--hidden must be fp16, int8 or none, not \(hidden)") }
            encoding = e
        }
        let spec: ShardSpec
        do { spec = try ShardSpec.resolve(shard, environment: ProcessInfo.processInfo.environment) } catch let e as DataError {
            throw CLIError(e.reason.hasPrefix("SLURM") || e.reason.hasPrefix("JOB") ? e.reason : "--shard: \(e.reason)")
        }

        var source: DataSource
        do {
            if let g = generate {
                switch g {
                case "text": source = TextPromptGenerator(seed: seed)
                case "images":
                    guard mmproj != nil else { throw CLIError("--generate images needs a vision tower: --mmproj TOWER.gguf (e.g. checkpoints/demo-tower.gguf)") }
                    source = ImagePromptGenerator(seed: seed, questions: .varied)
                case "images-classic":
                    guard mmproj != nil else { throw CLIError("--generate images-classic needs a vision tower: --mmproj TOWER.gguf") }
                    source = ImagePromptGenerator(seed: seed, questions: .classic)
                default: throw CLIError("--generate must be text, images or images-classic, not \(g)")
                }
            } else if let p = prompts {
                source = try JSONLPromptSource(path: p)
            } else {
                source = try LLaVASource(path: llavaJSON!, imageDir: imageDir)
            }
            if textOnly { source = try TextOnlySource(source) }
        } catch let e as DataError { throw CLIError(e.description) }
        guard let count = samples ?? (source.count == Int.max ? nil : source.count) else {
            throw CLIError("--samples N is required with --generate")
        }
        if count > source.count {
            throw CLIError("--samples \(count): the prompt file has only \(source.count) prompts")
        }
        // Without a tower, image samples cannot be made: say so before any work.
        if source.count != Int.max && mmproj == nil {
            for i in spec.indices(samples: count) {
                let p: SynthPrompt
                do { p = try source.prompt(at: i) } catch let e as DataError { throw CLIError(e.description) }
                if !p.imagePaths.isEmpty {
                    throw CLIError("sample \(i) (\(p.id)) has an image (\(p.imagePaths[0])): image samples need a vision tower (--mmproj TOWER.gguf); --text-only keeps the samples without images")
                }
            }
        }

        let path = try modelOption.resolvedPath()
        let gguf = try GGUFFile(path: path)
        let model = try LlamaModel(file: gguf, threads: threads)
        model.activationQuant = precisionOption.activations
        let tokenizer = try BPETokenizer(gguf: gguf)
        let template: ChatTemplate
        do { template = try ChatTemplate(gguf: gguf) } catch { throw CLIError("\(error)") }

        var settings = GenerationSettings()
        settings.maxNew = maxNew
        settings.temperature = sampling.temp
        settings.topK = sampling.topK; settings.topP = sampling.topP; settings.minP = sampling.minP
        settings.seed = seed
        settings.longAnswer = noLongAnswer ? nil : longAnswer.replacingOccurrences(of: "{words}", with: String(longAnswerWords))
        settings.system = system
        settings.contextSize = min(ctx ?? min(model.config.contextLength, 4096), model.config.contextLength)
        settings.template = template.format.rawValue

        var vision: SynthVision? = nil
        var towerInfo: TowerInfo? = nil
        if let towerPath = mmproj {
            let tower = try VisionTower(path: towerPath)
            try tower.check(compatibleWith: model)
            vision = SynthVision(tower: tower, markers: ImageMarkers.forTower(tower, tokenizer: tokenizer), embedImages: embedImages)
            towerInfo = TowerInfo(file: (towerPath as NSString).lastPathComponent, sha256: try cachedFileSHA256(towerPath))
            if embedImages { settings.embedImages = true }
        }
        var auxLayers: [Int]? = nil
        if let text = hiddenLayers {
            if text == "eagle3" {
                auxLayers = [2, model.config.layerCount / 2, model.config.layerCount - 3]
            } else {
                let ids = text.split(separator: ",").map { Int($0.trimmingCharacters(in: .whitespaces)) }
                guard !ids.isEmpty, ids.allSatisfy({ $0 != nil }) else {
                    throw CLIError("--hidden-layers must be comma-separated layer ids (e.g. 2,15,27) or eagle3, not \(text)")
                }
                auxLayers = ids.map { $0! }
            }
            guard encoding != .none else { throw CLIError("--hidden-layers needs stored hidden states: --hidden fp16 or int8, not none") }
            if let bad = auxLayers!.first(where: { $0 < 1 || $0 >= model.config.layerCount }) {
                throw CLIError("--hidden-layers: \(bad) is not the input of one of the model's layers 1..<\(model.config.layerCount) (id j = the output of layer j − 1)")
            }
        }
        let header = ShardHeader(model: try ModelInfo(model: model, path: path), tower: towerInfo, source: source.info,
                                 generation: settings, hidden: encoding, zstdLevel: Int(zstdLevel), samples: count, shard: spec,
                                 auxLayers: auxLayers)
        let synth: Synthesizer
        do {
            synth = try Synthesizer(model: model, tokenizer: tokenizer, template: template, settings: settings, hidden: encoding,
                                    vision: vision, auxLayers: auxLayers ?? [])
        } catch let e as DataError { throw CLIError(e.reason) }

        let bar = ProgressBar(label: "synth-data \(spec)")
        let summary: SynthSummary
        do {
            summary = try runSynthesis(source: source, synthesizer: synth, header: header, outDir: out, batch: batch) { bar.update($0) }
        } catch let e as DataError {
            bar.clear()
            throw CLIError(e.description)
        }
        bar.finish()
        if json {
            try printJSON(summary, snakeCase: true)
        } else {
            let done = summary.alreadyComplete ? "already complete" : "wrote \(summary.generatedSamples) samples"
                + (summary.resumedRecords > 0 ? " (resumed after \(summary.resumedRecords))" : "")
            printErr(String(format: "%@: %@ | %d records, %d bytes (%.0f per sample), %.2fx smaller than raw fp16 hidden states | %.2f samples/s, %.1f tok/s",
                            summary.shardFile, done, summary.records, summary.bytes, summary.bytesPerSample, summary.compressionRatio,
                            summary.samplesPerSecond, summary.tokensPerSecond))
        }
    }
}

/// One status line on stderr: rewritten in place on a terminal, a line every few seconds otherwise.
final class ProgressBar {
    let label: String
    let tty = isatty(2) != 0
    var lastPrint = -1.0
    var shown = false

    init(label: String) { self.label = label }

    static func duration(_ s: Double) -> String {
        guard s.isFinite, s >= 0 else { return "?" }
        let t = Int(s.rounded())
        if t >= 3600 { return "\(t / 3600)h\(String(format: "%02d", (t % 3600) / 60))m" }
        if t >= 60 { return "\(t / 60)m\(String(format: "%02d", t % 60))s" }
        return "\(t)s"
    }

    func update(_ p: SynthProgress) {
        let t = p.seconds
        guard tty || p.done == p.total || t - lastPrint >= 10 || lastPrint < 0 else { return }
        lastPrint = t
        let sps = t > 0 ? Double(p.generatedSamples) / t : 0
        let tps = t > 0 ? Double(p.generatedTokens) / t : 0
        let left = p.total - p.done
        let eta = sps > 0 ? Self.duration(Double(left) / sps) : "?"
        let pct = p.total > 0 ? 100 * Double(p.done) / Double(p.total) : 100
        let width = 24
        let filled = p.total > 0 ? width * p.done / p.total : width
        let bar = String(repeating: "#", count: filled) + String(repeating: "-", count: width - filled)
        let line = String(format: "%@ [%@] %d/%d (%.0f%%) | %.2f samples/s | %.1f tok/s | ETA %@",
                          label, bar, p.done, p.total, pct, sps, tps, eta)
        if tty {
            FileHandle.standardError.write(("\r\u{1B}[K" + line).data(using: .utf8)!)
            shown = true
        } else {
            printErr(line)
        }
    }

    func clear() { if tty && shown { FileHandle.standardError.write("\r\u{1B}[K".data(using: .utf8)!) } }
    func finish() { if tty && shown { FileHandle.standardError.write("\n".data(using: .utf8)!) } }
}

/// Writes one JSON value to stdout with snake_case keys.
func printJSON<T: Encodable>(_ value: T, snakeCase: Bool) throws {
    let enc = JSONEncoder()
    enc.outputFormatting = [.sortedKeys, .withoutEscapingSlashes]
    if snakeCase { enc.keyEncodingStrategy = .convertToSnakeCase }
    FileHandle.standardOutput.write(try enc.encode(value))
    FileHandle.standardOutput.write("\n".data(using: .utf8)!)
}
