import Testing
import Tokenizer

@Suite("Round trips and streaming decode")
struct RoundTripTests {
    static let whitespace: [String] = [" ", "  ", "\t", "\n", "\r\n", "\r", "\u{00A0}", "\u{3000}", "\u{2028}", "\u{0085}",
                                       "\u{000B}", "\u{000C}", "\u{1680}", "\u{2003}", "\u{202F}", "\u{205F}", "\u{200B}"]
    static let specials = ["<|im_start|>", "<|im_end|>", "<|endoftext|>", "<file_sep>", "<|im_", "|>"]

    /// A random Unicode scalar from many planes (BMP, SMP, SIP, TIP, unassigned 4–13, SSP, private
    /// use), no surrogates. SmolLM2 has no token for the lead bytes of planes 4–11 (F1, F2).
    static func randomScalar(_ rng: inout SplitMix64) -> Unicode.Scalar {
        let planes: [UInt32] = [0, 0, 0, 1, 1, 2, 3, 7, 12, 14, 15, 16]
        while true {
            let v = planes.randomElement(using: &rng)! << 16 | UInt32.random(in: 0...0xFFFF, using: &rng)
            if let s = Unicode.Scalar(v) { return s }
        }
    }

    /// Mixed random text: random scalars, ASCII, digits, whitespace runs, special tokens.
    static func randomText(_ rng: inout SplitMix64) -> String {
        var s = ""
        for _ in 0..<Int.random(in: 1...12, using: &rng) {
            switch Int.random(in: 0..<7, using: &rng) {
            case 0: for _ in 0..<Int.random(in: 1...5, using: &rng) { s.unicodeScalars.append(randomScalar(&rng)) }
            case 1: s += String((0..<Int.random(in: 1...8, using: &rng)).map { _ in "abcdefXYZ '.,!?-".randomElement(using: &rng)! })
            case 2: s += String((0..<Int.random(in: 1...9, using: &rng)).map { _ in "0123456789".randomElement(using: &rng)! })
            case 3: for _ in 0..<Int.random(in: 1...5, using: &rng) { s += whitespace.randomElement(using: &rng)! }
            case 4: s += specials.randomElement(using: &rng)!
            case 5: s += ["🙂", "👍🏽", "👨‍👩‍👧", "🇫🇷", "e\u{301}", "日本語", "ſ", "'s", "'LL"].randomElement(using: &rng)!
            default: s += ["½", "²", "٣", "０", "Ⅻ"].randomElement(using: &rng)!
            }
        }
        return s
    }

    @Test("decode(encode(s)) == s for random byte strings made valid UTF-8")
    func randomBytes() throws {
        let tok = try TestModel.tokenizer()
        var rng = SplitMix64(seed: 1)
        for _ in 0..<500 {
            let bytes = (0..<Int.random(in: 0...64, using: &rng)).map { _ in UInt8.random(in: 0...255, using: &rng) }
            let s = String(decoding: bytes, as: UTF8.self)
            for special in [true, false] {
                let ids = tok.encode(s, parseSpecial: special)
                #expect(tok.decode(ids) == tok.encodableBytes(s))
            }
        }
    }

    @Test("decode(encode(s)) == s for random Unicode, digits, whitespace runs and special tokens")
    func randomText() throws {
        let tok = try TestModel.tokenizer()
        var rng = SplitMix64(seed: 2)
        for _ in 0..<1500 {
            let s = Self.randomText(&rng)
            #expect(tok.decodeString(tok.encode(s)) == tok.encodable(s))
            #expect(tok.decode(tok.encode(s, parseSpecial: false)) == tok.encodableBytes(s))
        }
        for w in Self.whitespace {
            for n in 1...6 {
                let s = String(repeating: w, count: n)
                #expect(tok.decodeString(tok.encode(s)) == s)
                #expect(tok.decodeString(tok.encode("x" + s + "y" + s)) == "x" + s + "y" + s)
            }
        }
        let digits = String((0..<300).map { _ in "0123456789".randomElement(using: &rng)! })
        let ids = tok.encode(digits)
        #expect(ids.count == 300)  // one token per digit (smollm)
        #expect(tok.decodeString(ids) == digits)
    }

    @Test("Special tokens inside text are single ids and decode to their text")
    func specialsInText() throws {
        let tok = try TestModel.tokenizer()
        let s = "pre<|im_start|>user\nhi  <|im_end|>\n<|endoftext|>post"
        let ids = tok.encode(s)
        #expect(ids.filter { $0 <= 2 } == [1, 2, 0])
        #expect(tok.decodeString(ids) == s)
    }

    /// Feeds `ids` to a streaming decoder; returns the chunks.
    static func stream(_ tok: BPETokenizer, _ ids: [Int32]) -> [String] {
        var d = tok.makeStreamingDecoder()
        var chunks = ids.map { d.push($0) }
        chunks.append(d.flush())
        #expect(!d.hasPendingBytes)
        return chunks
    }

    @Test("Streaming output concatenates to the full decode, holding back split characters")
    func streaming() throws {
        let tok = try TestModel.tokenizer()
        // An emoji whose bytes span several tokens: nothing is emitted until it is complete.
        let emoji = "🙂"
        let ids = tok.encode(emoji)
        #expect(ids.count > 1)
        let chunks = Self.stream(tok, ids)
        #expect(chunks.joined() == emoji)
        #expect(chunks.dropLast(2).allSatisfy { $0.isEmpty })
        #expect(chunks[ids.count - 1] == emoji)
        for chunk in chunks { #expect(!chunk.contains("\u{FFFD}")) }

        var rng = SplitMix64(seed: 3)
        for _ in 0..<500 {
            let s = Self.randomText(&rng)
            let ids = tok.encode(s)
            let chunks = Self.stream(tok, ids)
            #expect(chunks.joined() == tok.encodable(s))
            #expect(chunks.joined() == tok.decodeString(ids))
        }
        // Arbitrary id sequences (invalid UTF-8 included): same text as a full decode.
        for _ in 0..<500 {
            let ids = (0..<Int.random(in: 0...20, using: &rng)).map { _ in Int32.random(in: 0..<Int32(tok.vocabularySize), using: &rng) }
            #expect(Self.stream(tok, ids).joined() == tok.decodeString(ids))
        }
    }

    @Test("Streaming: invalid and truncated bytes become U+FFFD like a full decode")
    func streamingBytes() throws {
        let tok = try TestModel.tokenizer()
        let cases: [[UInt8]] = [
            [0xF0, 0x9F, 0x99, 0x82],        // 🙂
            [0xF0, 0x9F, 0x99],              // truncated at the end
            [0xF0, 0x9F, 0x41],              // broken by ASCII
            [0xE2, 0x82, 0xF0, 0x9F, 0x99, 0x82],
            [0xFF, 0xC0, 0x80, 0xED, 0xA0, 0x80, 0x61],  // never valid: emitted at once
            [0xF4, 0x90, 0x80, 0x80],
            [0xE0, 0x80, 0x80, 0xE0, 0xA0, 0x80],
        ]
        for bytes in cases {
            var d = StreamingDecoder(tokenizer: tok)
            var out = ""
            for b in bytes { out += d.push(bytes: [b]) }
            out += d.flush()
            #expect(out == String(decoding: bytes, as: UTF8.self), "\(bytes)")
        }
        var d = StreamingDecoder(tokenizer: tok)
        #expect(d.push(bytes: [0xF0, 0x9F]) == "")
        #expect(d.hasPendingBytes)
        #expect(d.push(bytes: [0x99, 0x82, 0x21]) == "🙂!")
        #expect(d.push(bytes: [0xFF]) == "\u{FFFD}")
    }
}
