import Llama
import Verify

extension LoadedDraft {
    /// An EAGLE/ViSpec draft checkpoint (safetensors).
    static func loadEagle(path: String, target: LlamaModel, contextSize: Int) throws -> LoadedDraft {
        throw CLIError("\(path): this build cannot run EAGLE/ViSpec checkpoints yet (no EagleDraft in Sources/Draft); a .gguf draft model works")
    }
}
