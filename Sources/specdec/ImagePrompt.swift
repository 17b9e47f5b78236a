import ArgumentParser
import Foundation
import Generation
import GGUF
import Kernels
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

/// Prompt processing for the CLI: options → `UserInputProcessor` → `LMInput`.
extension LMInput {
    /// Text prompt, or text and images when `images` has any.
    static func make(_ prompt: PromptOptions, _ images: ImageOptions, gguf: GGUFFile, tokenizer: BPETokenizer,
                     model: LlamaModel) throws -> LMInput {
        guard let towerPath = images.mmproj, !images.images.isEmpty else {
            return LMInput(tokens: try prompt.tokens(gguf: gguf, tokenizer: tokenizer))
        }
        let processor = try UserInputProcessor(model: model, tokenizer: tokenizer, gguf: gguf, tower: try VisionTower(path: towerPath))
        let t0 = monotonicSeconds()
        let pictures = try images.images.map { try ImageDecoder.load(path: $0) }
        let decodeSeconds = monotonicSeconds() - t0
        let user = UserMessage(role: "user", text: try prompt.text(), images: pictures)
        var input: LMInput
        if prompt.raw {
            input = try processor.prepare(raw: user.text, images: pictures)
        } else {
            guard processor.template != nil else {
                throw CLIError("\(processor.templateError ?? "the model has no chat template") — pass --raw to use the prompt without a template")
            }
            input = try processor.prepare(messages: (prompt.system.map { [UserMessage(role: "system", text: $0)] } ?? []) + [user])
        }
        input.imageSeconds += decodeSeconds
        return input
    }
}
