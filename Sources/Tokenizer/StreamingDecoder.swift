/// Turns token ids, one at a time, into text, emitting only complete UTF-8: the bytes of a
/// character split across tokens (an emoji, say) are held back until its last byte arrives.
/// Bytes that can never become valid are emitted as U+FFFD at once; an incomplete sequence
/// left at the end becomes U+FFFD in `flush()`. The concatenation of everything returned equals
/// `tokenizer.decodeString(allIds)`.
public struct StreamingDecoder: Sendable {
    public let tokenizer: BPETokenizer
    private var pending: [UInt8] = []

    public init(tokenizer: BPETokenizer) { self.tokenizer = tokenizer }

    /// Whether bytes of an incomplete character are being held back.
    public var hasPendingBytes: Bool { !pending.isEmpty }

    /// Adds one token; returns the text that became complete (possibly empty).
    public mutating func push(_ id: Int32) -> String {
        tokenizer.appendBytes(of: id, to: &pending)
        return takeComplete()
    }

    /// Adds raw bytes (for callers that produce bytes themselves); returns the completed text.
    public mutating func push(bytes: [UInt8]) -> String {
        pending.append(contentsOf: bytes)
        return takeComplete()
    }

    /// Ends the stream: whatever is held back is returned, incomplete sequences as U+FFFD.
    public mutating func flush() -> String {
        defer { pending.removeAll() }
        return String(decoding: pending, as: UTF8.self)
    }

    private mutating func takeComplete() -> String {
        let hold = Self.incompleteSuffixLength(pending)
        let cut = pending.count - hold
        if cut == 0 { return "" }
        let text = String(decoding: pending[..<cut], as: UTF8.self)
        pending.removeFirst(cut)
        return text
    }

    /// Length of a trailing sequence that is a valid but incomplete UTF-8 prefix (0 if none).
    /// Cutting before it never changes how the bytes before it decode: they end before a lead
    /// byte, where a decoder has to end any sequence anyway.
    static func incompleteSuffixLength(_ p: [UInt8]) -> Int {
        let m = p.count
        var k = m - 1
        var cont = 0
        while k >= 0 && cont < 3 && p[k] & 0xC0 == 0x80 { cont += 1; k -= 1 }
        guard k >= 0, p[k] & 0xC0 != 0x80 else { return 0 }
        let lead = p[k]
        let need: Int
        switch lead {
        case 0xC2...0xDF: need = 2
        case 0xE0...0xEF: need = 3
        case 0xF0...0xF4: need = 4
        default: return 0  // ASCII, or a byte that never starts a sequence
        }
        let have = m - k
        if have >= need { return 0 }
        if have >= 2 {
            let b1 = p[k + 1]
            let ok: Bool
            switch lead {
            case 0xE0: ok = (0xA0...0xBF).contains(b1)
            case 0xED: ok = (0x80...0x9F).contains(b1)
            case 0xF0: ok = (0x90...0xBF).contains(b1)
            case 0xF4: ok = (0x80...0x8F).contains(b1)
            default: ok = true
            }
            if !ok { return 0 }
        }
        return have
    }
}
