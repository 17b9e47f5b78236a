import ArgumentParser
import DataSynth
import Foundation

struct SynthData: ParsableCommand {
    static let configuration = CommandConfiguration(
        commandName: "synth-data",
        abstract: "Write draft-training data: the target answers prompts; tokens, masks and hidden states go into zstd shards.",
        discussion: """
        Prompts come from --prompts FILE.jsonl, --llava-json FILE (+ --image-dir), or --generate \
        text|text-varied|images (built-in templates, seeded; `images` draws pictures of colours, shapes and simple \
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

    @Option(help: "Built-in prompt generator: text (templates over a few hundred subjects; the seed-31 datasets); text-varied (a few thousand subjects, tasks and constraints, so that answers differ: use it for new text data); images (needs --mmproj: pictures of every family with varied questions and answer lengths); images-classic (the 14 question templates of the evaluation set, one per index).")
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

    @OptionGroup var threadsOption: ThreadsOption

    @Option(help: "Samples generated together: their decoding steps share one forward pass. Any value writes the same bytes (a run may be resumed with another).")
    var batch: Int = 8

    @Flag(help: "Print a JSON summary on stdout at the end.")
    var json = false

    /// The options as the library takes them; `validate` checks them before the model is resolved.
    func request(modelPath: String = "") -> SynthesisRequest {
        var r = SynthesisRequest(modelPath: modelPath, out: out)
        r.activations = precisionOption.activations
        r.llavaJSON = llavaJSON; r.imageDir = imageDir; r.prompts = prompts; r.generate = generate; r.textOnly = textOnly
        r.samples = samples; r.towerPath = mmproj; r.embedImages = embedImages
        r.maxNew = maxNew; r.temperature = sampling.temp; r.topK = sampling.topK; r.topP = sampling.topP; r.minP = sampling.minP
        r.seed = seed; r.shard = shard; r.hidden = noHidden ? "none" : hidden; r.hiddenLayers = hiddenLayers; r.zstdLevel = zstdLevel
        r.longAnswer = noLongAnswer ? nil : longAnswer; r.longAnswerWords = longAnswerWords
        r.system = system; r.ctx = ctx; r.threads = threadsOption.threads; r.batch = batch
        return r
    }

    func validate() throws { try asValidation(request().validate) }

    func run() throws {
        let r = request(modelPath: try modelOption.resolvedPath())
        let bar = ProgressBar()
        let summary: SynthSummary
        do { summary = try r.run { bar.update($0.statusLine(label: "synth-data \($0.shard)"), final: $0.done == $0.total, seconds: $0.seconds) } } catch {
            bar.clear()
            throw error
        }
        bar.finish()
        if json { try printJSON(summary, snakeCase: true) } else { printErr(summary.line) }
    }
}

/// One status line on stderr: rewritten in place on a terminal, a line every few seconds otherwise.
final class ProgressBar {
    let tty = isatty(2) != 0
    var lastPrint = -1.0
    var shown = false

    func update(_ line: @autoclosure () -> String, final: Bool, seconds: Double) {
        guard tty || final || seconds - lastPrint >= 10 || lastPrint < 0 else { return }
        lastPrint = seconds
        if tty {
            FileHandle.standardError.write(("\r\u{1B}[K" + line()).data(using: .utf8)!)
            shown = true
        } else {
            printErr(line())
        }
    }

    func clear() { if tty && shown { FileHandle.standardError.write("\r\u{1B}[K".data(using: .utf8)!) } }
    func finish() { if tty && shown { FileHandle.standardError.write("\n".data(using: .utf8)!) } }
}
