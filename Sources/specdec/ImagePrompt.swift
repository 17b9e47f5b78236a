import ArgumentParser
import Foundation
import Generation
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

/// Prompt processing for the CLI (mlx-swift-examples' `UserInputProcessor`): options → `LMInput`.
extension LMInput {
    /// Text prompt, or text and images when `images` has any.
    static func make(_ prompt: PromptOptions, _ images: ImageOptions, gguf: GGUFFile, tokenizer: BPETokenizer,
                     model: LlamaModel) throws -> LMInput {
        guard let towerPath = images.mmproj, !images.images.isEmpty else {
            return LMInput(tokens: try prompt.tokens(gguf: gguf, tokenizer: tokenizer))
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
        return LMInput(tokens: seq.tokens, sequence: seq, imageSeconds: seconds)
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
