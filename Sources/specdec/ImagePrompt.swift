import ArgumentParser
import Foundation
import GGUF
import Llama
import Tokenizer
import Vision

/// `--mmproj` / `--image`: pictures for a vision-language prompt.
struct ImageOptions: ParsableArguments {
    @Option(help: ArgumentHelp("Vision tower: a llama.cpp mmproj GGUF (with --image).", valueName: "TOWER.gguf"))
    var mmproj: String?

    @Option(name: .customLong("image"), help: ArgumentHelp(
        "Image (PNG, JPEG, binary PPM/PGM); repeat for several, in prompt order. Each goes where the prompt says <image>, else all go before the text.",
        valueName: "FILE"))
    var images: [String] = []

    func validate() throws {
        if !images.isEmpty && mmproj == nil { throw ValidationError("--image needs a vision tower: --mmproj TOWER.gguf") }
        if mmproj != nil && images.isEmpty { throw ValidationError("--mmproj needs at least one --image FILE") }
    }
}

/// The prompt as the target reads it: token ids (`-1` at image rows) and, with images, the
/// input embeddings and image mask.
struct PreparedPrompt {
    var tokens: [Int32]
    var sequence: MultimodalSequence?
    /// Image decoding, preprocessing and tower forward (the tower file's loading excluded).
    var imageSeconds: Double = 0

    var count: Int { tokens.count }
    /// Text tokens only, for the repetition-penalty history.
    var history: [Int32] { sequence?.textTokens ?? tokens }
    var imageCount: Int { sequence?.imageRanges.count ?? 0 }
    var imageTokenCount: Int { sequence?.imageMask.filter { $0 }.count ?? 0 }

    /// The whole prompt in one batched forward.
    func prefill(_ session: LlamaSession, batchInvariant: Bool = false, captureLayers: [Int] = []) throws -> ForwardOutput {
        if let s = sequence {
            return try session.forward(embeddings: s.embeddings, captureLayers: captureLayers, batchInvariant: batchInvariant)
        }
        return try session.forward(tokens: tokens, captureLayers: captureLayers, batchInvariant: batchInvariant)
    }

    /// Text prompt, or text and images when `images` has any.
    static func make(_ prompt: PromptOptions, _ images: ImageOptions, gguf: GGUFFile, tokenizer: BPETokenizer,
                     model: LlamaModel) throws -> PreparedPrompt {
        guard let towerPath = images.mmproj, !images.images.isEmpty else {
            return PreparedPrompt(tokens: try prompt.tokens(gguf: gguf, tokenizer: tokenizer))
        }
        let tower = try VisionTower(path: towerPath)
        try tower.check(compatibleWith: model)
        let markers = ImageMarkers.forTower(tower, tokenizer: tokenizer)
        let t0 = now()
        let embeddings = try images.images.map { try tower.encode(ImageDecoder.load(path: $0)) }
        let seconds = now() - t0
        let user = try VisionPrompt.placeImages(in: try prompt.text(), count: embeddings.count, markers: markers)
        let seq = try VisionPrompt.build(rendered: try prompt.render(user, gguf: gguf), images: embeddings, markers: markers,
                                         tokenizer: tokenizer, tokenEmbedding: model.weights.tokenEmbedding)
        return PreparedPrompt(tokens: seq.tokens, sequence: seq, imageSeconds: seconds)
    }
}

extension PromptOptions {
    /// `user` through the model's chat template (as `tokens(gguf:tokenizer:)` does), or as is with `--raw`.
    func render(_ user: String, gguf: GGUFFile) throws -> String {
        if raw { return user }
        let template: ChatTemplate
        do { template = try ChatTemplate(gguf: gguf) } catch {
            throw CLIError("\(error) — pass --raw to use the prompt without a template")
        }
        var messages: [ChatMessage] = []
        if let s = system { messages.append(.system(s)) }
        messages.append(.user(user))
        return template.render(messages: messages, addGenerationPrompt: true)
    }
}
