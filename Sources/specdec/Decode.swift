import ArgumentParser
import Foundation
import Generation
import Sampling
import Tokenizer

struct Decode: ParsableCommand {
    static let configuration = CommandConfiguration(
        abstract: "Generate text from a prompt (plain or speculative decoding).",
        discussion: """
        Streams the answer to stdout, then prints prompt and generated token counts and prefill \
        and decode speed to stderr. --temp 0 (the default) is greedy decoding; it stops at the \
        end-of-sequence token or after -n tokens. With --json, stdout holds only one JSON object.

        With --draft, decoding is speculative (EAGLE-2 draft trees verified by the target in one \
        batched forward): the same tokens as plain decoding at --temp 0, the same distribution \
        above. It also reports tau (accepted draft tokens per target forward, the target's own \
        token not counted), tokens per step, acceptance per tree depth and the draft / verify \
        time shares. Speeds count the tokens after the first (which comes from the prefill) per \
        second after the target's prefill; the draft's read of the prompt counts as decoding. \
        --compare also runs plain decoding on the same prompt in the same process and reports \
        the speedup and whether the tokens are identical (at --temp > 0 they differ: only the \
        distribution is the same); an untimed plain warm-up of 16 tokens runs first, so that \
        neither timed run pays for the process's first use of its memory.
        """
    )

    @OptionGroup var modelOption: ModelOption
    @OptionGroup var precisionOption: PrecisionOption
    @OptionGroup var promptOptions: PromptOptions
    @OptionGroup var imageOptions: ImageOptions

    @Option(name: [.short, .customLong("n-predict")], help: "Maximum tokens to generate.")
    var n = 256

    @OptionGroup var sampling: SamplingOptions

    @Option(name: .customLong("repeat-penalty"), help: "Penalty for tokens in the last 64 (1 = off).")
    var repeatPenalty: Float = 1

    @Option(help: "Random seed (default: drawn at random and reported).")
    var seed: UInt64?

    @OptionGroup var threadsOption: ThreadsOption

    @Option(help: "Context size in tokens (default: the model's, at most 4096).")
    var ctx: Int?

    @Flag(help: "Print one JSON object with tokens, text and statistics instead of streaming.")
    var json = false

    @OptionGroup var draftOptions: DraftOptions

    @Flag(help: "With --draft: also run plain decoding and report the speedup and whether the outputs are identical.")
    var compare = false

    func validate() throws {
        guard n >= 0 else { throw ValidationError("-n must be ≥ 0") }
        if let c = ctx, c < 1 { throw ValidationError("--ctx must be ≥ 1") }
        if compare && draftOptions.draft == nil { throw ValidationError("--compare needs --draft") }
    }

    func run() throws {
        let threads = threadsOption.threads
        let target = try modelOption.load(threads: threads, precision: precisionOption)
        let prompt = try UserInputProcessor.input(prompt: try promptOptions.text(), raw: promptOptions.raw, system: promptOptions.system,
                                                  towerPath: imageOptions.mmproj, imagePaths: imageOptions.images, target: target)
        var params = SamplingParameters()
        sampling.apply(to: &params)
        params.repetitionPenalty = repeatPenalty
        params.seed = seed ?? UInt64.random(in: 0...UInt64(UInt32.max))

        var stream = StreamingDecoder(tokenizer: target.tokenizer)
        var text = ""
        let decoded = try DecodeRun(target: target, prompt: prompt, contextSize: target.model.config.contextSize(requested: ctx),
                                    params: params, maxTokens: n, draft: draftOptions.draft, tree: draftOptions.tree.request(),
                                    threads: threads, compare: compare, log: printErr) { t in
            let piece = stream.push(t)
            text += piece
            if !json { FileHandle.standardOutput.write(piece.data(using: .utf8)!) }
        }
        let tail = stream.flush()
        text += tail
        if json { return try printJSON(decoded.report(text: text)) }
        FileHandle.standardOutput.write((tail + "\n").data(using: .utf8)!)
        decoded.summaryLines.forEach(printErr)
    }
}
