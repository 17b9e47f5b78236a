import ArgumentParser
import Diagnostics
import Foundation
import Generation
import GGUF
import Kernels
import Llama
import Sampling
import Tokenizer

/// A user-facing failure: printed as one line, exit status 1.
struct CLIError: Error, CustomStringConvertible {
    var description: String
    init(_ d: String) { description = d }
}

/// `-m`, resolved to the setup script's cached model when absent.
struct ModelOption: ParsableArguments {
    @Option(name: [.short, .customLong("model")], help: "GGUF model file (default: the model scripts/setup.sh fetched).")
    var model: String?

    static var defaultPath: String { CacheDirectory.defaultModel }

    /// The target as every generating command loads it.
    func load(threads: Int, precision: PrecisionOption) throws -> LoadedTarget {
        try LoadedTarget(path: try resolvedPath(), threads: threads, activations: precision.activations)
    }

    func resolvedPath() throws -> String {
        if let m = model { return m }
        let p = Self.defaultPath
        guard FileManager.default.fileExists(atPath: p) else {
            throw CLIError("no model given (-m) and the default model \(p) is missing: run scripts/setup.sh")
        }
        return p
    }
}

/// `--precision`: for the commands that run the model's forward pass (decode, bench, eval,
/// synth-data); the others only read its weights or metadata.
struct PrecisionOption: ParsableArguments {
    @Option(help: ArgumentHelp("Arithmetic of the model's matrix products: q8 (default: int8 activations on repacked weights, the fast path, at least as faithful to the float64 reference as llama.cpp) or f32 (float32 activations: the exact mode for reference work, within 1e-2 of the float64 reference logits). Speculative output equals plain output in either.", valueName: "q8|f32"))
    var precision: Precision?

    /// `--precision`, else `SPECDEC_ACT`, else q8.
    var activations: ActivationQuant { precision?.activations ?? .environment }
}

/// `-p` / `-f` / `--raw` / `--system`: the text to feed, with the model's chat template unless raw.
struct PromptOptions: ParsableArguments {
    @Option(name: [.short, .customLong("prompt")], help: "Prompt text.")
    var prompt: String?

    @Option(name: [.short, .customLong("file")], help: "Read the prompt from a file.")
    var file: String?

    @Flag(help: "Use the prompt as is, without the model's chat template.")
    var raw = false

    @Option(help: "System message for the chat template (default: the template's own, if it has one).")
    var system: String?

    func text() throws -> String {
        switch (prompt, file) {
        case (let p?, nil): return p
        case (nil, let f?):
            guard let data = FileManager.default.contents(atPath: f) else { throw CLIError("\(f): cannot read the prompt file") }
            return String(decoding: data, as: UTF8.self)
        case (nil, nil): throw CLIError("no prompt: give -p TEXT or -f FILE")
        default: throw CLIError("give either -p or -f, not both")
        }
    }

    /// The prompt's token ids: templated for chat unless `--raw`.
    func tokens(gguf: GGUFFile, tokenizer: BPETokenizer) throws -> [Int32] {
        try UserInputProcessor.tokens(prompt: try text(), raw: raw, system: system, gguf: gguf, tokenizer: tokenizer)
    }
}

/// `-t`: the worker threads of the commands that run the model's forward pass.
struct ThreadsOption: ParsableArguments {
    @Option(name: [.short, .customLong("threads")], help: "Worker threads (default: all cores).")
    var threads: Int = defaultThreadCount

    func validate() throws {
        guard threads >= 1 else { throw ValidationError("--threads must be ≥ 1") }
    }
}

/// `--temp`, `--top-k`, `--top-p`, `--min-p`: how every generating command chooses tokens.
struct SamplingOptions: ParsableArguments {
    @Option(help: "Sampling temperature; 0 = greedy.")
    var temp: Float = 0

    @Option(name: .customLong("top-k"), help: "Keep the k most likely tokens (0 = off; sampling only).")
    var topK = 40

    @Option(name: .customLong("top-p"), help: "Keep the smallest set with this much probability (1 = off; sampling only).")
    var topP: Float = 0.95

    @Option(name: .customLong("min-p"), help: "Drop tokens below this fraction of the best one's probability (0 = off; sampling only).")
    var minP: Float = 0.05

    func apply(to p: inout SamplingParameters) {
        p.temperature = temp
        p.topK = topK
        p.topP = topP
        p.minP = minP
    }
}

/// Writes one JSON value to stdout (`snakeCase`: for the data commands' camelCase summaries).
func printJSON<T: Encodable>(_ value: T, snakeCase: Bool = false) throws {
    let enc = JSONEncoder()
    enc.outputFormatting = [.sortedKeys, .withoutEscapingSlashes]
    if snakeCase { enc.keyEncodingStrategy = .convertToSnakeCase }
    FileHandle.standardOutput.write(try enc.encode(value))
    FileHandle.standardOutput.write("\n".data(using: .utf8)!)
}

func printErr(_ s: String) {
    FileHandle.standardError.write((s + "\n").data(using: .utf8)!)
}

extension Precision: ExpressibleByArgument {}

/// A library's check of the options, run in `validate()`: its `SettingError` becomes the parser's
/// `ValidationError` (printed with the usage, exit status 64), as the command line's own checks.
func asValidation(_ check: () throws -> Void) throws {
    do { try check() } catch let e as SettingError { throw ValidationError(e.description) }
}
