import ArgumentParser
import Foundation
import GGUF
import Llama
import Sampling
import Tokenizer

struct Decode: ParsableCommand {
    static let configuration = CommandConfiguration(
        abstract: "Generate text from a prompt (plain autoregressive decoding).",
        discussion: """
        Streams the answer to stdout, then prints prompt and generated token counts and prefill \
        and decode speed to stderr. --temp 0 (the default) is greedy decoding; it stops at the \
        end-of-sequence token or after -n tokens. With --json, stdout holds only one JSON object.
        """
    )

    @OptionGroup var modelOption: ModelOption
    @OptionGroup var promptOptions: PromptOptions
    @OptionGroup var imageOptions: ImageOptions

    @Option(name: [.short, .customLong("n-predict")], help: "Maximum tokens to generate.")
    var n = 256

    @OptionGroup var sampling: SamplingOptions

    @Option(name: .customLong("repeat-penalty"), help: "Penalty for tokens in the last 64 (1 = off).")
    var repeatPenalty: Float = 1

    @Option(help: "Random seed (default: drawn at random and reported).")
    var seed: UInt64?

    @Option(name: [.short, .customLong("threads")], help: "Worker threads (default: all cores).")
    var threads: Int = defaultThreadCount

    @Option(help: "Context size in tokens (default: the model's, at most 4096).")
    var ctx: Int?

    @Flag(help: "Print one JSON object with tokens, text and statistics instead of streaming.")
    var json = false

    func validate() throws {
        guard n >= 0 else { throw ValidationError("-n must be ≥ 0") }
        guard threads >= 1 else { throw ValidationError("--threads must be ≥ 1") }
        if let c = ctx, c < 1 { throw ValidationError("--ctx must be ≥ 1") }
    }

    struct Stats: Encodable {
        var prompt_token_count: Int
        var generated_token_count: Int
        var prefill_seconds: Double
        var decode_seconds: Double
        var prompt_tokens_per_s: Double
        var decode_tokens_per_s: Double
        var stop_reason: String
        var seed: UInt64
        var threads: Int
        // with --image only
        var image_count: Int?
        var image_token_count: Int?
        var image_seconds: Double?
    }

    struct Output: Encodable {
        var prompt_tokens: [Int32]
        var tokens: [Int32]
        var text: String
        var stats: Stats
    }

    func run() throws {
        let path = try modelOption.resolvedPath()
        let gguf = try GGUFFile(path: path)
        let model = try LlamaModel(file: gguf, threads: threads)
        let tokenizer = try BPETokenizer(gguf: gguf)
        let prompt = try PreparedPrompt.make(promptOptions, imageOptions, gguf: gguf, tokenizer: tokenizer, model: model)
        let promptTokens = prompt.tokens  // -1 at image rows

        let contextSize = min(ctx ?? min(model.config.contextLength, 4096), model.config.contextLength)
        guard promptTokens.count < contextSize else {
            throw CLIError("the prompt has \(promptTokens.count) tokens but the context holds \(contextSize) (raise --ctx; the model allows \(model.config.contextLength))")
        }
        let session = model.makeSession(contextSize: contextSize)

        var params = SamplingParameters()
        sampling.apply(to: &params)
        params.repetitionPenalty = repeatPenalty
        params.seed = seed ?? UInt64.random(in: 0...UInt64(UInt32.max))
        var sampler = try Sampler(params)

        let t0 = now()
        var out = try prompt.prefill(session, batchInvariant: false)
        let t1 = now()

        var generated: [Int32] = []
        var history = prompt.history
        var stream = StreamingDecoder(tokenizer: tokenizer)
        var text = ""
        var stop = "length"
        let eog = tokenizer.endOfGenerationTokens
        while generated.count < n {
            let next = out.logits.withUnsafeBufferPointer { sampler.sample($0, history: history) }
            generated.append(next)
            history.append(next)
            if eog.contains(next) { stop = "eos"; break }
            let piece = stream.push(next)
            text += piece
            if !json { FileHandle.standardOutput.write(piece.data(using: .utf8)!) }
            guard generated.count < n else { break }
            guard session.length < contextSize else { stop = "context"; break }
            out = try session.forward(tokens: [next])
        }
        let tail = stream.flush()
        text += tail
        let t2 = now()

        // The first token comes from the prefill's logits; decode speed counts the forwards after it.
        let decodeForwards = max(generated.count - 1, 0)
        let stats = Stats(
            prompt_token_count: promptTokens.count, generated_token_count: generated.count,
            prefill_seconds: t1 - t0, decode_seconds: t2 - t1,
            prompt_tokens_per_s: Double(promptTokens.count) / (t1 - t0),
            decode_tokens_per_s: decodeForwards > 0 ? Double(decodeForwards) / (t2 - t1) : 0,
            stop_reason: stop, seed: params.seed, threads: threads,
            image_count: prompt.sequence == nil ? nil : prompt.imageCount,
            image_token_count: prompt.sequence == nil ? nil : prompt.imageTokenCount,
            image_seconds: prompt.sequence == nil ? nil : prompt.imageSeconds)
        if json {
            try printJSON(Output(prompt_tokens: promptTokens, tokens: generated, text: text, stats: stats))
        } else {
            FileHandle.standardOutput.write((tail + "\n").data(using: .utf8)!)
            printErr(String(format: "\nprompt: %d tokens, %.1f tok/s | generated: %d tokens, %.1f tok/s | stop: %@ | seed %llu, %d threads",
                            promptTokens.count, stats.prompt_tokens_per_s, generated.count, stats.decode_tokens_per_s,
                            stop, params.seed, threads))
            if prompt.imageCount > 0 {
                printErr(String(format: "images: %d, %d positions of the prompt, encoded in %.3f s", prompt.imageCount,
                                prompt.imageTokenCount, prompt.imageSeconds))
            }
        }
    }
}
