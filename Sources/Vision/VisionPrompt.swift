import GGUF
import Kernels
import Llama
import Tokenizer

/// Text put around each image's embeddings in the prompt, as the model family expects.
public struct ImageMarkers: Sendable, Equatable {
    public var prefix: String
    public var suffix: String

    public init(prefix: String, suffix: String) { self.prefix = prefix; self.suffix = suffix }

    public static let none = ImageMarkers(prefix: "", suffix: "")

    /// Keys a tower may set to choose its own markers (specdec's demo tower does).
    public static let prefixKey = "specdec.image.prefix"
    public static let suffixKey = "specdec.image.suffix"
}

/// Why a multimodal prompt cannot be built.
public struct VisionPromptError: Error, CustomStringConvertible, Equatable {
    public var description: String
    public init(_ d: String) { description = d }
}

/// A prompt of text and images as the language model's input: one embedding per position,
/// positions contiguous, image rows where the prompt placed each image.
public struct MultimodalSequence: Sendable {
    /// Model width.
    public let width: Int
    /// Token id of each position; `imagePlaceholder` where the position is an image row.
    public var tokens: [Int32]
    /// `count × width` input embeddings (token embeddings and image rows).
    public var embeddings: [Float]
    /// Which positions hold image embeddings (the draft's visual adapter reads these).
    public var imageMask: [Bool]
    /// The positions of each image, in prompt order.
    public var imageRanges: [Range<Int>]

    public static let imagePlaceholder: Int32 = -1

    /// A sequence laid out by the caller (`VisionPrompt.build` is the usual way).
    public init(width: Int, tokens: [Int32], embeddings: [Float], imageMask: [Bool], imageRanges: [Range<Int>]) {
        self.width = width; self.tokens = tokens; self.embeddings = embeddings
        self.imageMask = imageMask; self.imageRanges = imageRanges
    }

    public var count: Int { tokens.count }
    /// The text tokens alone (e.g. a repetition-penalty history).
    public var textTokens: [Int32] { tokens.filter { $0 != Self.imagePlaceholder } }
    /// Rows of image `i`'s embeddings.
    public func imageEmbeddings(_ i: Int) -> ArraySlice<Float> {
        embeddings[(imageRanges[i].lowerBound * width)..<(imageRanges[i].upperBound * width)]
    }
}

/// Builds VLM prompts: `<image>` in the (already templated) prompt text marks where each image
/// goes, in order.
public enum VisionPrompt {
    public static let marker = "<image>"

    /// Number of `<image>` markers in `text`.
    public static func markerCount(_ text: String) -> Int {
        text.components(separatedBy: marker).count - 1
    }

    /// The user text with `count` image markers: the text's own if it has exactly that many,
    /// else (none given) all images before the text, each followed by a newline unless its
    /// suffix already ends in one.
    public static func placeImages(in userText: String, count: Int, markers: ImageMarkers) throws -> String {
        let have = markerCount(userText)
        if have == count { return userText }
        guard have == 0 else {
            throw VisionPromptError("the prompt has \(have) \(marker) markers but \(count) image(s) were given")
        }
        let sep = markers.suffix.hasSuffix("\n") ? "" : "\n"
        return String(repeating: marker + sep, count: count) + userText
    }

    /// Splits `rendered` at its `<image>` markers and lays out the sequence: text segments
    /// tokenized separately (no BOS after the first), each image wrapped in `markers`.
    public static func build(rendered: String, images: [ImageEmbedding], markers: ImageMarkers,
                             tokenizer: BPETokenizer, target: any TargetModel) throws -> MultimodalSequence {
        let d = target.width
        let pieces = rendered.components(separatedBy: marker)
        guard pieces.count - 1 == images.count else {
            throw VisionPromptError("the prompt has \(pieces.count - 1) \(marker) markers but \(images.count) image(s) were given")
        }
        var tokens: [Int32] = []
        var emb: [Float] = []
        var mask: [Bool] = []
        var ranges: [Range<Int>] = []
        func addText(_ s: String, first: Bool) throws {
            guard !s.isEmpty else { return }
            let ids = first ? tokenizer.encode(s) : tokenizer.encode(s, addBos: false)
            var row = [Float](repeating: 0, count: d)
            for t in ids {
                guard t >= 0, Int(t) < target.vocabSize else {
                    throw VisionPromptError("token id \(t) is outside the model's vocabulary (0..<\(target.vocabSize))")
                }
                row.withUnsafeMutableBufferPointer { target.embed(token: t, into: $0.baseAddress!) }
                emb += row
                tokens.append(t)
                mask.append(false)
            }
        }
        for (i, piece) in pieces.enumerated() {
            try addText(piece, first: i == 0)
            guard i < images.count else { break }
            let img = images[i]
            guard img.width == d else {
                throw VisionPromptError("image \(i + 1) has embeddings of width \(img.width) but the language model's width is \(d) (tower and model do not belong together)")
            }
            try addText(markers.prefix, first: false)
            let start = tokens.count
            emb += img.data
            tokens += repeatElement(MultimodalSequence.imagePlaceholder, count: img.rows)
            mask += repeatElement(true, count: img.rows)
            ranges.append(start..<tokens.count)
            try addText(markers.suffix, first: false)
        }
        return MultimodalSequence(width: d, tokens: tokens, embeddings: emb, imageMask: mask, imageRanges: ranges)
    }
}
