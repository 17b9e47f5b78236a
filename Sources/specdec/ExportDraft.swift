import ArgumentParser
import Draft

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

    @Argument(help: "EAGLE-3 draft: a specdec checkpoint (.safetensors) or an eagle3 GGUF.")
    var draft: String

    @OptionGroup var modelOption: ModelOption

    @Option(help: "Output format: llama.cpp or hf-eagle3.")
    var format: Eagle3Export.Format

    @Option(help: "Output: a .gguf file (llama.cpp) or a folder (hf-eagle3).")
    var out: String

    @Option(help: "Float type of the matrices: f16 or f32 for llama.cpp (default f16); bf16, f16 or f32 for hf-eagle3 (default bf16).")
    var dtype: String?

    func run() throws {
        let weights = try Eagle3Export.export(draft: draft, modelPath: try modelOption.resolvedPath(), format: format, out: out, dtype: dtype)
        print("wrote \(out) (\(format.rawValue), eagle3 draft: vocab \(weights.config.vocab), target layers \(weights.config.auxLayers ?? []))")
    }
}

extension Eagle3Export.Format: ExpressibleByArgument {}
