/// ViSpec's entry layout: which draft entries a sequence with image spans has, and what each
/// reads. The entry at position t predicts t + 1 from the input of position t + 1 ("next"):
/// - outside image spans, the next token's embedding;
/// - inside a span, without an adapter (num_q = 0, EAGLE's baseline), the image row itself;
/// - inside a span, with an adapter of K queries, only the span's last K − 1 places keep an
///   entry, reading the adapter's compressed tokens in order; the other places are dropped;
/// - text entries after a span get that span's global feature (the latest span that ended).
/// Inference (`EagleDraft.accept`) and training (`TrainingData`) both lay entries out with it,
/// so the draft trains on exactly the sequence it drafts over.
public enum DraftEntryLayout {
    public enum Input: Equatable, Sendable {
        case token
        case imageRow(span: Int, row: Int)
        case compressed(span: Int, row: Int)
        case dropped
    }

    /// The input of the entry whose next position is `next`. `spans` are (start, rows), sorted
    /// by start and not overlapping.
    public static func input(next: Int, spans: [(start: Int, rows: Int)], numQ: Int) -> Input {
        guard let s = spans.firstIndex(where: { next >= $0.start && next < $0.start + $0.rows }) else { return .token }
        let o = next - spans[s].start
        if numQ == 0 { return .imageRow(span: s, row: o) }
        let c = o - spans[s].rows + numQ - 1
        return c < 0 ? .dropped : .compressed(span: s, row: c)
    }

    /// The span whose global feature a text entry at `next` reads: the latest one that ended at or
    /// before it (nil: none yet in these spans).
    public static func globalSpan(next: Int, spans: [(start: Int, rows: Int)]) -> Int? {
        spans.lastIndex { $0.start + $0.rows <= next }
    }
}
