import Draft
import GGUF
import Llama
import Verify

extension LoadedDraft {
    /// An EAGLE/ViSpec draft checkpoint (safetensors): its metadata may carry acceptance
    /// statistics for `--tree-tokens auto`.
    static func loadEagle(path: String, target: LlamaModel, contextSize: Int) throws -> LoadedDraft {
        let weights = path.hasSuffix(".gguf") ? try Eagle3Formats.readGGUF(try GGUFFile(path: path), target: target.config)
                                              : try DraftWeights.load(path: path, target: target.config)
        let draft = try EagleDraft(weights: weights, target: target, contextSize: contextSize, file: path)
        return LoadedDraft(drafter: draft, kind: weights.config.arch, metadata: weights.metadata)
    }
}
