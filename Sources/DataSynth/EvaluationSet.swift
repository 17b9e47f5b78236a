import Foundation
import GGUF
import Vision
import Shards

/// The evaluation prompts of the results table (issue: trained drafts and results), kept apart from
/// training data: image questions from `ImagePromptGenerator` with a seed that no training run
/// uses (`imageSeed`), two per question template, and hand-written text prompts of the kinds the
/// text generator makes (instructions, questions, code, lists, arithmetic) but worded differently.
/// Written as a JSONL prompt file (`{"id", "kind", "prompt", "image"?}`, readable by
/// `JSONLPromptSource`) plus the pictures as PNG files beside it.
public enum EvaluationSet {
    /// Reserved for evaluation: never pass it to `synth-data --generate images --seed`.
    public static let imageSeed: UInt64 = 1000
    public static let imagesPerTemplate = 2

    public static let textPrompts = [
        "Give three practical tips for learning to play the guitar as an adult.",
        "What causes the northern lights? Explain it for a curious ten-year-old.",
        "Write a Python function that returns the second largest number in a list, and explain how it works.",
        "Summarise the plot of a heist story in which nothing goes to plan.",
        "List five differences between living in a big city and living in the countryside.",
        "Explain what a database index is and when it makes queries faster.",
        "A shop sells pens at 3 dollars each and notebooks at 5 dollars each. How much do 4 pens and 2 notebooks cost? Show each step.",
        "Write a short, friendly email inviting colleagues to a farewell lunch.",
        "What is the difference between a simile and a metaphor? Give examples.",
        "Describe how a bill becomes a law, step by step.",
        "Write a JavaScript function that debounces another function, with comments.",
        "Why do we have leap years?",
        "Explain the idea of opportunity cost with an everyday example.",
        "Write a haiku sequence about a train journey at night.",
    ]

    public struct Entry: Codable, Equatable, Sendable {
        public var id: String
        public var kind: String
        public var prompt: String
        public var image: String?
    }

    /// The entries and, for image entries, the PNG bytes to write at `image` (relative path).
    public static func build() -> [(entry: Entry, png: [UInt8]?)] {
        let g = ImagePromptGenerator(seed: imageSeed)
        var out: [(Entry, [UInt8]?)] = []
        for i in 0..<(ImagePromptGenerator.templates.count * imagesPerTemplate) {
            let s = g.sample(at: i)
            out.append((Entry(id: "image-\(i)", kind: "image", prompt: s.question, image: "images/eval-\(i).png"), ImageEncoder.png(s.image)))
        }
        for (i, p) in textPrompts.enumerated() {
            out.append((Entry(id: "text-\(i)", kind: "text", prompt: p, image: nil), nil))
        }
        return out
    }

    /// Writes `prompts.jsonl` and `images/*.png` into `dir` (each file atomically).
    public static func write(to dir: String) throws {
        let images = (dir as NSString).appendingPathComponent("images")
        try FileManager.default.createDirectory(atPath: images, withIntermediateDirectories: true)
        let enc = JSONEncoder()
        enc.outputFormatting = [.sortedKeys, .withoutEscapingSlashes]
        var lines: [UInt8] = []
        for (e, png) in build() {
            lines += Array(try enc.encode(e)) + [UInt8(ascii: "\n")]
            if let png, let rel = e.image { try writeAtomically(png, to: (dir as NSString).appendingPathComponent(rel)) }
        }
        try writeAtomically(lines, to: (dir as NSString).appendingPathComponent("prompts.jsonl"))
    }
}
