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

extension UserInputProcessor {
    /// One user prompt as `decode` and `tokenize` take it, without pictures: the chat template
    /// (with `system`) unless `raw`. Needs no model, only its file's template and tokenizer.
    public static func tokens(prompt: String, raw: Bool, system: String?, gguf: GGUFFile, tokenizer: BPETokenizer) throws -> [Int32] {
        guard !prompt.isEmpty else { throw UserInputError("the prompt is empty") }
        guard !raw else { return tokenizer.encode(prompt) }
        let template: ChatTemplate
        do { template = try ChatTemplate(gguf: gguf) } catch {
            throw UserInputError("\(error) — pass --raw to use the prompt without a template")
        }
        let messages = (system.map { [ChatMessage(role: "system", content: $0)] } ?? []) + [ChatMessage(role: "user", content: prompt)]
        return tokenizer.encode(template.render(messages: messages, addGenerationPrompt: true))
    }

    /// `decode`'s prompt: text alone, or with the pictures in `imagePaths` (in prompt order) through
    /// the tower at `towerPath`; the time spent reading the image files counts as image time.
    public static func input(prompt: String, raw: Bool, system: String?, towerPath: String?, imagePaths: [String],
                             target: LoadedTarget) throws -> LMInput {
        guard let towerPath, !imagePaths.isEmpty else {
            return LMInput(tokens: try tokens(prompt: prompt, raw: raw, system: system, gguf: target.gguf, tokenizer: target.tokenizer))
        }
        let processor = try UserInputProcessor(model: target.model, tokenizer: target.tokenizer, gguf: target.gguf,
                                               tower: try VisionTower(path: towerPath))
        let t0 = monotonicSeconds()
        let pictures = try imagePaths.map { try ImageDecoder.load(path: $0) }
        let decodeSeconds = monotonicSeconds() - t0
        let user = UserMessage(role: "user", text: prompt, images: pictures)
        var input: LMInput
        if raw {
            input = try processor.prepare(raw: user.text, images: pictures)
        } else {
            guard processor.template != nil else {
                throw UserInputError("\(processor.templateError ?? "the model has no chat template") — pass --raw to use the prompt without a template")
            }
            input = try processor.prepare(messages: (system.map { [UserMessage(role: "system", text: $0)] } ?? []) + [user])
        }
        input.imageSeconds += decodeSeconds
        return input
    }
}
