import GGUF
import Llama
import Tokenizer

/// The seam between prompts and the vision tower: what the input processor, the data synthesizer,
/// the trainer and the image-prefill benchmark need from an image encoder. `VisionTower` (a
/// llama.cpp mmproj GGUF) is the one this package ships; another encoder plugs in by conforming.
public protocol VisionEncoder: AnyObject {
    /// Its file or name, for messages.
    var path: String { get }
    /// Width of the embedding rows it outputs: the language model's width.
    var outputWidth: Int { get }
    /// The text its image rows are wrapped in, in the prompt (the tokens the model was trained on).
    func markers(tokenizer: BPETokenizer) -> ImageMarkers
    /// The image's embedding rows, ready to replace the prompt's image marker.
    func encode(_ image: RGBImage) -> ImageEmbedding
}

extension VisionEncoder {
    /// Refuses a language model its embeddings do not fit.
    public func check(compatibleWith model: any TargetModel) throws {
        guard outputWidth == model.width else {
            throw GGUFError(file: path, field: "projector output",
                            reason: "embeddings of width \(outputWidth) do not fit the language model \(model.name) of width \(model.width)")
        }
    }
}

extension VisionTower: VisionEncoder {
    /// The tower's own markers if it names them; else SmolVLM's `<fake_token_around_image>`
    /// `<global-img>` … `<fake_token_around_image>` for an idefics3 tower whose language model
    /// has those tokens; else none (LLaVA: the embeddings stand alone where `<image>` was).
    public func markers(tokenizer: BPETokenizer) -> ImageMarkers {
        let p = metadata[ImageMarkers.prefixKey]?.stringValue, s = metadata[ImageMarkers.suffixKey]?.stringValue
        if p != nil || s != nil { return ImageMarkers(prefix: p ?? "", suffix: s ?? "") }
        if config.projector == .idefics3, tokenizer.tokenId("<fake_token_around_image>") != nil,
           tokenizer.tokenId("<global-img>") != nil {
            return ImageMarkers(prefix: "<fake_token_around_image><global-img>", suffix: "<fake_token_around_image>")
        }
        return .none
    }
}
