import DataSynth
import Shards
import Foundation
import Generation
import Llama
import Tokenizer
import Vision

/// A prompt file (JSONL: id, user turns, image paths) as the target reads it: the chat template
/// and, for image prompts, the tower's embeddings, through the same `UserInputProcessor` that
/// decode and serve use. Image paths are resolved against the file's folder.
public enum PromptSet {
    public struct Item {
        public var id: String
        /// "image" or "text".
        public var kind: String
        public var prompt: LMInput
    }

    public static func load(path: String, towerPath: String?, model: LlamaModel, tokenizer: BPETokenizer) throws -> [Item] {
        let source: JSONLPromptSource
        do { source = try JSONLPromptSource(path: path) } catch { throw UserInputError("\(error)") }
        guard source.count > 0 else { throw UserInputError("\(path): no prompts") }
        let baseDir = (path as NSString).deletingLastPathComponent
        let needsTower = source.prompts.contains { !$0.imagePaths.isEmpty }
        if needsTower && towerPath == nil {
            let p = source.prompts.first { !$0.imagePaths.isEmpty }!
            throw UserInputError("prompt \(p.id) has an image: give the vision tower with --mmproj TOWER.gguf")
        }
        let processor = try UserInputProcessor(model: model, tokenizer: tokenizer, gguf: model.file,
                                               tower: needsTower ? try VisionTower(path: towerPath!) : nil)
        guard processor.template != nil else { throw UserInputError(processor.templateError ?? "the model has no chat template") }
        return try source.prompts.map { p in
            let images = try p.imagePaths.map { img -> RGBImage in
                let resolved = img.hasPrefix("/") || FileManager.default.fileExists(atPath: img) ? img : (baseDir as NSString).appendingPathComponent(img)
                return try ImageDecoder.load(path: resolved)
            }
            let input = try processor.prepare(messages: [UserMessage(role: "user", text: p.userTurns[0], images: images)])
            return Item(id: p.id, kind: images.isEmpty ? "text" : "image", prompt: input)
        }
    }
}
