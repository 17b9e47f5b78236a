/// The pre-tokenizers of the byte-level BPE models we support, named as llama.cpp names them in
/// `tokenizer.ggml.pre`. Each splits a text segment (special tokens already removed) into pieces
/// that BPE then encodes independently, exactly as HF `tokenizers` does:
///
/// - `smollm`: `Digits(individual_digits: true)` (every `\p{N}` character is its own piece), then
///   the GPT-2 regex on each remaining piece.
/// - `gpt2`: the GPT-2 regex
///   `'s|'t|'re|'ve|'m|'ll|'d| ?\p{L}+| ?\p{N}+| ?[^\s\p{L}\p{N}]+|\s+(?!\S)|\s+`.
/// - `llama-bpe`: the LLaMA-3 regex
///   `(?i:'s|'t|'re|'ve|'m|'ll|'d)|[^\r\n\p{L}\p{N}]?\p{L}+|\p{N}{1,3}| ?[^\s\p{L}\p{N}]+[\r\n]*|\s*[\r\n]+|\s+(?!\S)|\s+`.
///
/// The regexes are implemented by hand over Unicode scalars with Oniguruma's semantics (ordered
/// alternation, greedy repetition with backtracking): for example `\s+(?!\S)` gives back the last
/// whitespace character of a run that is followed by a non-space, so that it joins the next word.
public enum PreTokenizer: String, Sendable, CaseIterable {
    case smollm
    case gpt2
    case llamaBPE = "llama-bpe"

    /// The pre-tokenizer named by a `tokenizer.ggml.pre` value; nil for names we do not implement.
    public init?(ggufName: String) { self.init(rawValue: ggufName) }

    /// Splits `text` into pre-tokens (no special-token handling; no byte-level mapping).
    public func split(_ text: String) -> [String] {
        let bytes = Array(text.utf8)
        var st = ScalarText()
        var ends: [Int] = []
        bytes.withUnsafeBufferPointer { st.load($0) }
        split(st, into: &ends)
        var out: [String] = []
        out.reserveCapacity(ends.count)
        var start = 0
        for e in ends {
            out.append(String(decoding: bytes[st.offsets[start]..<st.offsets[e]], as: UTF8.self))
            start = e
        }
        return out
    }

    /// Appends the end (scalar index, exclusive) of every pre-token of `t` to `ends`; pre-tokens
    /// are contiguous and cover the whole text.
    func split(_ t: ScalarText, into ends: inout [Int]) {
        let n = t.values.count
        if n == 0 { return }
        t.values.withUnsafeBufferPointer { vp in
            t.flags.withUnsafeBufferPointer { fp in
                let m = RegexMatcher(v: vp, f: fp)
                switch self {
                case .gpt2:
                    m.gpt2(from: 0, to: n, into: &ends)
                case .smollm:
                    var pieceStart = 0
                    for k in 0..<n where fp[k] & CharClass.number != 0 {
                        if pieceStart < k { m.gpt2(from: pieceStart, to: k, into: &ends) }
                        ends.append(k + 1)
                        pieceStart = k + 1
                    }
                    if pieceStart < n { m.gpt2(from: pieceStart, to: n, into: &ends) }
                case .llamaBPE:
                    var i = 0
                    while i < n {
                        i = m.llama3Match(at: i, end: n)
                        ends.append(i)
                    }
                }
            }
        }
    }
}

/// A UTF-8 text segment decoded to scalars, with their classes and byte offsets.
struct ScalarText {
    var values: [UInt32] = []
    var flags: [UInt8] = []
    /// Byte offset of each scalar, plus the total byte count at the end.
    var offsets: [Int] = []

    /// Decodes valid UTF-8 (bytes from a Swift `String`, cut at scalar boundaries).
    mutating func load(_ bytes: UnsafeBufferPointer<UInt8>) {
        values.removeAll(keepingCapacity: true)
        flags.removeAll(keepingCapacity: true)
        offsets.removeAll(keepingCapacity: true)
        let n = bytes.count
        var i = 0
        while i < n {
            let b0 = bytes[i]
            var v: UInt32
            var len: Int
            if b0 < 0x80 {
                v = UInt32(b0); len = 1
            } else if b0 < 0xE0 {
                v = UInt32(b0 & 0x1F); len = 2
            } else if b0 < 0xF0 {
                v = UInt32(b0 & 0x0F); len = 3
            } else {
                v = UInt32(b0 & 0x07); len = 4
            }
            if i + len > n { len = n - i }  // cannot happen for valid UTF-8; stay in bounds anyway
            var k = 1
            while k < len { v = (v << 6) | UInt32(bytes[i + k] & 0x3F); k += 1 }
            offsets.append(i)
            values.append(v)
            flags.append(CharClass.of(v))
            i += len
        }
        offsets.append(n)
    }
}

/// The two regexes, matched at a position of a scalar buffer whose end counts as end of text.
struct RegexMatcher {
    let v: UnsafeBufferPointer<UInt32>
    let f: UnsafeBufferPointer<UInt8>

    @inline(__always) func isLetter(_ i: Int) -> Bool { f[i] & CharClass.letter != 0 }
    @inline(__always) func isNumber(_ i: Int) -> Bool { f[i] & CharClass.number != 0 }
    @inline(__always) func isSpaceChar(_ i: Int) -> Bool { f[i] & CharClass.space != 0 }
    @inline(__always) func isWhitespace(_ i: Int) -> Bool { f[i] & CharClass.whitespace != 0 }
    /// `[^\s\p{L}\p{N}]`
    @inline(__always) func isOther(_ i: Int) -> Bool { f[i] & CharClass.lnw == 0 }

    @inline(__always) func run(from i: Int, to end: Int, while mask: UInt8) -> Int {
        var k = i
        while k < end && f[k] & mask != 0 { k += 1 }
        return k
    }

    @inline(__always) func runOther(from i: Int, to end: Int) -> Int {
        var k = i
        while k < end && f[k] & CharClass.lnw == 0 { k += 1 }
        return k
    }

    /// `\s+(?!\S)|\s+` at a whitespace character: the run, less its last character when a
    /// non-space follows and the run is longer than one.
    @inline(__always) func trailingWhitespace(at i: Int, runEnd k: Int, end: Int) -> Int {
        (k == end || k - i == 1) ? k : k - 1
    }

    func gpt2(from start: Int, to end: Int, into ends: inout [Int]) {
        var i = start
        while i < end {
            i = gpt2Match(at: i, end: end)
            ends.append(i)
        }
    }

    /// End of the GPT-2 regex match that starts at `i` (there always is one, non-empty).
    func gpt2Match(at i: Int, end: Int) -> Int {
        let c = v[i]
        // 's|'t|'re|'ve|'m|'ll|'d (case-sensitive)
        if c == 0x27 && i + 1 < end {
            switch v[i + 1] {
            case 0x73, 0x74, 0x6D, 0x64: return i + 2                                  // s t m d
            case 0x72, 0x76: if i + 2 < end && v[i + 2] == 0x65 { return i + 3 }        // re ve
            case 0x6C: if i + 2 < end && v[i + 2] == 0x6C { return i + 3 }              // ll
            default: break
            }
        }
        let spaceThen = isSpaceChar(i) && i + 1 < end
        // ` ?\p{L}+`
        if isLetter(i) { return run(from: i + 1, to: end, while: CharClass.letter) }
        if spaceThen && isLetter(i + 1) { return run(from: i + 2, to: end, while: CharClass.letter) }
        // ` ?\p{N}+`
        if isNumber(i) { return run(from: i + 1, to: end, while: CharClass.number) }
        if spaceThen && isNumber(i + 1) { return run(from: i + 2, to: end, while: CharClass.number) }
        // ` ?[^\s\p{L}\p{N}]+`
        if isOther(i) { return runOther(from: i + 1, to: end) }
        if spaceThen && isOther(i + 1) { return runOther(from: i + 2, to: end) }
        // `\s+(?!\S)|\s+` (the character at i is whitespace here)
        let k = run(from: i + 1, to: end, while: CharClass.whitespace)
        return trailingWhitespace(at: i, runEnd: k, end: end)
    }

    /// `(?i:…)` folds: ASCII case, plus U+017F LATIN SMALL LETTER LONG S, which folds to `s`.
    @inline(__always) static func fold(_ c: UInt32) -> UInt32 {
        if c >= 0x41 && c <= 0x5A { return c | 0x20 }
        if c == 0x17F { return 0x73 }
        return c
    }

    /// End of the LLaMA-3 regex match that starts at `i`.
    func llama3Match(at i: Int, end: Int) -> Int {
        let c = v[i]
        // (?i:'s|'t|'re|'ve|'m|'ll|'d)
        if c == 0x27 && i + 1 < end {
            switch Self.fold(v[i + 1]) {
            case 0x73, 0x74, 0x6D, 0x64: return i + 2
            case 0x72, 0x76: if i + 2 < end && Self.fold(v[i + 2]) == 0x65 { return i + 3 }
            case 0x6C: if i + 2 < end && Self.fold(v[i + 2]) == 0x6C { return i + 3 }
            default: break
            }
        }
        // [^\r\n\p{L}\p{N}]?\p{L}+
        if isLetter(i) { return run(from: i + 1, to: end, while: CharClass.letter) }
        if f[i] & (CharClass.crlf | CharClass.number) == 0 && i + 1 < end && isLetter(i + 1) {
            return run(from: i + 2, to: end, while: CharClass.letter)
        }
        // \p{N}{1,3}
        if isNumber(i) {
            var k = i + 1
            while k < end && k < i + 3 && isNumber(k) { k += 1 }
            return k
        }
        //  ?[^\s\p{L}\p{N}]+[\r\n]*
        var j = -1
        if isOther(i) { j = i } else if isSpaceChar(i) && i + 1 < end && isOther(i + 1) { j = i + 1 }
        if j >= 0 {
            let k = runOther(from: j + 1, to: end)
            return run(from: k, to: end, while: CharClass.crlf)
        }
        // \s*[\r\n]+ : up to the last CR/LF of the whitespace run, if it has one
        var k = i
        var lastNewline = -1
        while k < end && isWhitespace(k) {
            if f[k] & CharClass.crlf != 0 { lastNewline = k }
            k += 1
        }
        if lastNewline >= 0 { return lastNewline + 1 }
        // \s+(?!\S)|\s+
        return trailingWhitespace(at: i, runEnd: k, end: end)
    }
}
