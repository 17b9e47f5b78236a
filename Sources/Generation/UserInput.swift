import Foundation
import GGUF
import Kernels
import Llama
import Tokenizer
import Verify
import Vision

/// One message of a conversation as a user gives it: a role and its parts, text and pictures in
/// order (the OpenAI chat format's `content` list, or `decode -p … --image …`).
public struct UserMessage: Sendable {
    public enum Part: Sendable {
        case text(String)
        case image(RGBImage)
    }
    public var role: String
    public var parts: [Part]

    public init(role: String, parts: [Part]) { self.role = role; self.parts = parts }
    public init(role: String, text: String, images: [RGBImage] = []) {
        self.init(role: role, parts: images.map { .image($0) } + [.text(text)])
    }

    /// The text parts, joined by newlines.
    public var text: String {
        parts.compactMap { if case .text(let s) = $0 { return s } else { return nil } }.joined(separator: "\n")
    }
    public var images: [RGBImage] {
        parts.compactMap { if case .image(let i) = $0 { return i } else { return nil } }
    }
}

/// Why a prompt could not be prepared; `description` is meant for the user as is.
public struct UserInputError: Error, CustomStringConvertible, Equatable, Sendable {
    public var description: String
    public init(_ description: String) { self.description = description }
}

/// Turns user input into model input (mlx-swift-examples' `UserInputProcessor`): the one place
/// for the recipe image markers → placement → chat template → tokens and image embeddings.
/// `decode`, `bench`, `eval` and `serve` all prepare prompts here, which is what makes a server
/// answer equal `decode`'s for the same messages.
public final class UserInputProcessor {
    public let model: any TargetModel
    public let tokenizer: BPETokenizer
    /// The model's chat template (nil: it has none; only raw prompts can be prepared).
    public let template: ChatTemplate?
    public let templateError: String?
    public let tower: (any VisionEncoder)?
    private let markers: ImageMarkers?

    public init(model: any TargetModel, tokenizer: BPETokenizer, gguf: GGUFFile, tower: (any VisionEncoder)? = nil) throws {
        self.model = model
        self.tokenizer = tokenizer
        do { template = try ChatTemplate(gguf: gguf); templateError = nil } catch {
            template = nil; templateError = "\(error)"
        }
        if let tower { try tower.check(compatibleWith: model) }
        self.tower = tower
        markers = tower?.markers(tokenizer: tokenizer)
    }

    /// A conversation through the chat template, ending with the assistant's turn to speak.
    /// A message's pictures go where its text says `<image>`, else all before its text.
    public func prepare(messages: [UserMessage]) throws -> LMInput {
        guard let template else {
            throw UserInputError("\(templateError ?? "the model has no chat template") — use a raw prompt instead")
        }
        let images = messages.flatMap(\.images)
        var chat: [ChatMessage] = []
        for m in messages {
            let count = m.images.count
            var text = m.text
            if count > 0 { text = try VisionPrompt.placeImages(in: text, count: count, markers: try requireMarkers()) }
            chat.append(ChatMessage(role: m.role, content: text))
        }
        return try prepare(rendered: template.render(messages: chat, addGenerationPrompt: true), images: images)
    }

    /// Text used as is (no chat template), with pictures placed as in `prepare(messages:)`.
    public func prepare(raw text: String, images: [RGBImage] = []) throws -> LMInput {
        guard !images.isEmpty else { return try prepare(rendered: text, images: []) }
        return try prepare(rendered: VisionPrompt.placeImages(in: text, count: images.count, markers: try requireMarkers()),
                           images: images)
    }

    /// `rendered` holds one `<image>` marker per picture when there are any.
    private func prepare(rendered: String, images: [RGBImage]) throws -> LMInput {
        guard !images.isEmpty else { return LMInput(tokens: tokenizer.encode(rendered)) }
        guard let tower, let markers else { throw UserInputError("an image was given but no vision tower is loaded (--mmproj)") }
        let t0 = monotonicSeconds()
        let embeddings = try images.map { try tower.encode($0) }
        let seconds = monotonicSeconds() - t0
        let seq = try VisionPrompt.build(rendered: rendered, images: embeddings, markers: markers, tokenizer: tokenizer,
                                         target: model)
        return LMInput(tokens: seq.tokens, sequence: seq, imageSeconds: seconds)
    }

    private func requireMarkers() throws -> ImageMarkers {
        guard let markers else { throw UserInputError("an image was given but no vision tower is loaded (--mmproj)") }
        return markers
    }
}
