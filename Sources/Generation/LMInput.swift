import Draft
import Llama
import Vision

/// A prompt as the target reads it (mlx-swift-examples' `LMInput`): token ids (−1 at image rows)
/// and, with images, the mixed sequence of token embeddings and projected image rows. Built by the
/// CLI's prompt processing (chat template, `<image>` markers, the tower) or by callers directly.
public struct LMInput {
    public var tokens: [Int32]
    public var sequence: MultimodalSequence?
    /// Image decoding, preprocessing and tower forward (the tower file's loading excluded).
    public var imageSeconds: Double = 0

    public init(tokens: [Int32], sequence: MultimodalSequence? = nil, imageSeconds: Double = 0) {
        self.tokens = tokens; self.sequence = sequence; self.imageSeconds = imageSeconds
    }

    public var count: Int { tokens.count }
    /// Text tokens only, for the repetition-penalty history.
    public var history: [Int32] { sequence?.textTokens ?? tokens }
    public var imageCount: Int { sequence?.imageRanges.count ?? 0 }
    public var imageTokenCount: Int { sequence?.imageMask.filter { $0 }.count ?? 0 }

    /// The whole prompt in one batched forward.
    public func prefill(_ session: any TargetSession, batchInvariant: Bool = Generation.prefillBatchInvariant,
                        captureLayers: [Int] = []) throws -> ForwardOutput {
        if let s = sequence {
            return try session.forward(embeddings: s.embeddings, captureLayers: captureLayers, batchInvariant: batchInvariant)
        }
        return try session.forward(tokens: tokens, captureLayers: captureLayers, batchInvariant: batchInvariant)
    }

    /// The image spans as the drafter reads them.
    public var draftImageSpans: [DraftImageSpan] {
        guard let s = sequence else { return [] }
        return s.imageRanges.indices.map {
            DraftImageSpan(start: s.imageRanges[$0].lowerBound, rows: s.imageRanges[$0].count, embeddings: Array(s.imageEmbeddings($0)))
        }
    }
}
