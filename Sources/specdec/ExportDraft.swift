import ArgumentParser
import Draft
import Foundation
import GGUF
import Kernels
import Llama
import SafeTensors

struct ExportDraft: ParsableCommand {
    static let configuration = CommandConfiguration(
        commandName: "export-draft",
        abstract: "Write an EAGLE-3 draft in the format another engine loads.",
        discussion: """
            --format llama.cpp writes one GGUF of llama.cpp's `eagle3` architecture (the target's \
            tokenizer included, as llama.cpp requires); run it with e.g. \
            `llama-speculative-simple -m TARGET.gguf -md DRAFT.gguf --spec-type draft-eagle3`. \
            `specdec decode --draft DRAFT.gguf` loads it too.
            --format hf-eagle3 writes a folder (config.json + model.safetensors) with the names and \
            keys of the EAGLE-3 reference code and vLLM's Eagle3LlamaForCausalLM.
            Only drafts trained with `train-adapter --arch eagle3` (or read from an eagle3 GGUF) \
            can be exported.
            """)

    enum Format: String, ExpressibleByArgument, CaseIterable {
        case llamaCpp = "llama.cpp", hfEagle3 = "hf-eagle3"
    }

    @Argument(help: "EAGLE-3 draft: a specdec checkpoint (.safetensors) or an eagle3 GGUF.")
    var draft: String

    @OptionGroup var modelOption: ModelOption

    @Option(help: "Output format: llama.cpp or hf-eagle3.")
    var format: Format

    @Option(help: "Output: a .gguf file (llama.cpp) or a folder (hf-eagle3).")
    var out: String

    @Option(help: "Float type of the matrices: f16 or f32 for llama.cpp (default f16); bf16, f16 or f32 for hf-eagle3 (default bf16).")
    var dtype: String?

    func run() throws {
        let modelPath = try modelOption.resolvedPath()
        let file = try GGUFFile(path: modelPath)
        let config = try LlamaConfig(gguf: file)
        let weights = try loadEagle3Weights(path: draft, target: config)
        switch format {
        case .llamaCpp:
            let t: QuantType
            switch dtype ?? "f16" {
            case "f16": t = .f16
            case "f32": t = .f32
            case let other: throw CLIError("--dtype \(other): llama.cpp export writes f16 or f32")
            }
            guard out.hasSuffix(".gguf") else { throw CLIError("--out \(out): a llama.cpp draft is one .gguf file") }
            try Eagle3Formats.writeGGUF(weights, targetFile: file, target: config, to: out, matrixType: t)
        case .hfEagle3:
            let t: SafeTensorsDType
            switch dtype ?? "bf16" {
            case "bf16": t = .BF16
            case "f16": t = .F16
            case "f32": t = .F32
            case let other: throw CLIError("--dtype \(other): hf-eagle3 export writes bf16, f16 or f32")
            }
            try Eagle3Formats.writeHF(weights, target: config, folder: out, dtype: t)
        }
        print("wrote \(out) (\(format.rawValue), eagle3 draft: vocab \(weights.config.vocab), target layers \(weights.config.auxLayers ?? []))")
    }
}

/// An EAGLE-3 draft's weights from a specdec checkpoint or an eagle3 GGUF.
func loadEagle3Weights(path: String, target: LlamaConfig) throws -> DraftWeights {
    guard FileManager.default.fileExists(atPath: path) else { throw CLIError("\(path): no such draft file") }
    let w: DraftWeights
    if path.hasSuffix(".gguf") {
        w = try Eagle3Formats.readGGUF(try GGUFFile(path: path), target: target)
    } else {
        w = try DraftWeights.load(path: path, target: target)
    }
    guard w.config.isEagle3 else {
        throw CLIError("\(path): an \(w.config.arch) draft; only eagle3 drafts (train-adapter --arch eagle3) can be exported")
    }
    return w
}
