import Foundation
import GGUF

/// `tokenizer.ggml.token_type` values (llama.cpp's `llama_token_type`). Unknown values are kept.
public struct TokenType: RawRepresentable, Hashable, Sendable, CustomStringConvertible {
    public var rawValue: Int
    public init(rawValue: Int) { self.rawValue = rawValue }

    public static let undefined = TokenType(rawValue: 0)
    public static let normal = TokenType(rawValue: 1)
    public static let unknown = TokenType(rawValue: 2)
    public static let control = TokenType(rawValue: 3)
    public static let userDefined = TokenType(rawValue: 4)
    public static let unused = TokenType(rawValue: 5)
    public static let byte = TokenType(rawValue: 6)

    /// Control and user-defined tokens are matched atomically in the input text and decode to
    /// their literal text rather than through the byte-level mapping.
    public var isSpecial: Bool { self == .control || self == .userDefined }

    public var description: String {
        switch rawValue {
        case 0: return "undefined"
        case 1: return "normal"
        case 2: return "unknown"
        case 3: return "control"
        case 4: return "user-defined"
        case 5: return "unused"
        case 6: return "byte"
        default: return "type \(rawValue)"
        }
    }
}

/// GPT-2 style byte-level BPE (`tokenizer.ggml.model == "gpt2"`), bit-exact with HF `tokenizers`
/// built from the same vocabulary, merges and pre-tokenizer.
///
/// Encoding: control and user-defined tokens are cut out of the text first (leftmost, longest
/// match); every remaining segment is split by the pre-tokenizer; every pre-token's UTF-8 bytes
/// are merged by BPE (lowest merge rank first, leftmost on ties). Thread-safe.
public final class BPETokenizer: Sendable {
    /// The file (or name) the vocabulary came from, for messages.
    public let source: String
    /// Vocabulary entries as stored (byte-level spelling for normal tokens).
    public let tokens: [String]
    public let tokenTypes: [TokenType]
    public let preTokenizer: PreTokenizer
    public let bosTokenId: Int32?
    public let eosTokenId: Int32?
    /// Whether `encode` prepends BOS by default (`tokenizer.ggml.add_bos_token`).
    public let addBosToken: Bool
    /// Tokens that end a generation: EOS, plus control tokens that llama.cpp also treats as
    /// end-of-generation (`<|im_end|>`, `<|endoftext|>`, `<|eot_id|>`, ...).
    public let endOfGenerationTokens: Set<Int32>

    /// Bytes that have no single-byte token: `encode` drops them (HF and llama.cpp do the same),
    /// so `decode(encode(s))` is `s` without these bytes. For SmolLM2: 0x04, 0x06, 0x13, 0x14,
    /// 0x16, 0x1D and bytes that never occur in UTF-8.
    public let unencodableBytes: Set<UInt8>

    public var vocabularySize: Int { tokens.count }

    let vocab: [String: Int32]
    /// Token id of each single byte; -1 where the vocabulary has none.
    let byteToId: [Int32]
    /// (left id << 32 | right id) → (rank << 32 | merged id).
    let mergeTable: [UInt64: UInt64]
    /// Decoded bytes of every token, concatenated; token i is pieceBytes[pieceOffsets[i]..<pieceOffsets[i+1]].
    let pieceBytes: [UInt8]
    let pieceOffsets: [Int]
    /// Control and user-defined tokens (parseSpecial: true) / user-defined only (parseSpecial: false).
    let specialAll: SpecialTokenMatcher
    let specialUserDefined: SpecialTokenMatcher
    let cache = WordCache()

    static let endOfGenerationTexts: Set<String> = [
        "<|im_end|>", "<|endoftext|>", "<|eot_id|>", "<|eom_id|>", "<|end|>", "<end_of_turn>",
        "<|end_of_text|>", "<EOT>", "<end_of_utterance>",
    ]

    /// Builds a tokenizer from vocabulary arrays (GGUF field names are used in errors).
    ///
    /// - Parameters:
    ///   - tokens: vocabulary in id order (`tokenizer.ggml.tokens`); must contain the 256 single-byte tokens.
    ///   - tokenTypes: one per token (`tokenizer.ggml.token_type`); nil means all normal.
    ///   - merges: `"left right"` in rank order (`tokenizer.ggml.merges`).
    public init(tokens: [String], tokenTypes: [TokenType]? = nil, merges: [String],
                preTokenizer: PreTokenizer, bosTokenId: Int? = nil, eosTokenId: Int? = nil,
                addBosToken: Bool = false, source: String = "<memory>") throws {
        func fail(_ field: String, _ reason: String) -> TokenizerError {
            TokenizerError(file: source, field: field, reason: reason)
        }
        guard !tokens.isEmpty else { throw fail("tokenizer.ggml.tokens", "vocabulary is empty") }
        guard tokens.count < Int(Int32.max) else { throw fail("tokenizer.ggml.tokens", "vocabulary too large (\(tokens.count))") }
        let types = tokenTypes ?? [TokenType](repeating: .normal, count: tokens.count)
        guard types.count == tokens.count else {
            throw fail("tokenizer.ggml.token_type", "has \(types.count) entries but tokenizer.ggml.tokens has \(tokens.count)")
        }
        func checkId(_ id: Int?, _ field: String) throws -> Int32? {
            guard let id else { return nil }
            guard id >= 0 && id < tokens.count else {
                throw fail(field, "token id \(id) is outside the vocabulary (0..<\(tokens.count))")
            }
            return Int32(id)
        }
        let bos = try checkId(bosTokenId, "tokenizer.ggml.bos_token_id")
        let eos = try checkId(eosTokenId, "tokenizer.ggml.eos_token_id")
        if addBosToken && bos == nil {
            throw fail("tokenizer.ggml.bos_token_id", "missing, but tokenizer.ggml.add_bos_token is true")
        }

        // Vocabulary (a repeated entry maps to its last id, as in HF and llama.cpp).
        var vocab = [String: Int32](minimumCapacity: tokens.count)
        for (i, t) in tokens.enumerated() { vocab[t] = Int32(i) }

        // Token of every single byte. Vocabularies may lack some (SmolLM2 has none for the bytes
        // that never occur in UTF-8, nor for a few control characters): such bytes are dropped
        // when encoding, as HF tokenizers (BPE without unk_token) and llama.cpp do.
        var byteToId = [Int32](repeating: -1, count: 256)
        var unencodable = Set<UInt8>()
        for b in 0..<256 {
            if let id = vocab[String(Character(ByteLevel.byteToScalar[b]))] {
                byteToId[b] = id
            } else {
                unencodable.insert(UInt8(b))
            }
        }
        guard unencodable.count < 256 else {
            throw fail("tokenizer.ggml.tokens", "no single-byte token at all: not a byte-level BPE vocabulary")
        }

        // Merges, ranked by order. As in HF, every part and the merged token must be in the vocabulary.
        var table = [UInt64: UInt64](minimumCapacity: merges.count)
        for (rank, m) in merges.enumerated() {
            let scalars = m.unicodeScalars
            guard let first = scalars.first,
                  let sp = scalars[scalars.index(after: scalars.startIndex)...].firstIndex(of: " ") else {
                throw fail("tokenizer.ggml.merges", "entry \(rank) (\"\(m)\") is not two tokens separated by a space")
            }
            _ = first
            let a = String(scalars[..<sp])
            let b = String(scalars[scalars.index(after: sp)...])
            guard let ia = vocab[a], let ib = vocab[b] else {
                throw fail("tokenizer.ggml.merges", "entry \(rank) (\"\(m)\") names a token that is not in the vocabulary")
            }
            guard let merged = vocab[a + b] else {
                throw fail("tokenizer.ggml.merges", "entry \(rank) (\"\(m)\"): merged token \"\(a + b)\" is not in the vocabulary")
            }
            table[UInt64(UInt32(ia)) << 32 | UInt64(UInt32(ib))] = UInt64(rank) << 32 | UInt64(UInt32(merged))
        }

        // Decoded bytes of every token.
        var bytes: [UInt8] = []
        var offsets: [Int] = [0]
        offsets.reserveCapacity(tokens.count + 1)
        var all: [SpecialTokenMatcher.Entry] = []
        var userDefined: [SpecialTokenMatcher.Entry] = []
        var eog = Set<Int32>()
        if let eos { eog.insert(eos) }
        for (i, t) in tokens.enumerated() {
            let ty = types[i]
            if ty.isSpecial {
                bytes.append(contentsOf: t.utf8)
                if !t.isEmpty, let id = vocab[t] {
                    let e = SpecialTokenMatcher.Entry(bytes: Array(t.utf8), id: id)
                    all.append(e)
                    if ty == .userDefined { userDefined.append(e) }
                }
                if ty == .control && Self.endOfGenerationTexts.contains(t) { eog.insert(Int32(i)) }
            } else if let raw = ByteLevel.decode(t) {
                bytes.append(contentsOf: raw)
            } else {
                bytes.append(contentsOf: t.utf8)  // HF ByteLevel decoder: such tokens stay as they are
            }
            offsets.append(bytes.count)
        }

        self.source = source
        self.tokens = tokens
        self.tokenTypes = types
        self.preTokenizer = preTokenizer
        self.bosTokenId = bos
        self.eosTokenId = eos
        self.addBosToken = addBosToken
        self.endOfGenerationTokens = eog
        self.vocab = vocab
        self.byteToId = byteToId
        self.unencodableBytes = unencodable
        self.mergeTable = table
        self.pieceBytes = bytes
        self.pieceOffsets = offsets
        self.specialAll = SpecialTokenMatcher(all)
        self.specialUserDefined = SpecialTokenMatcher(userDefined)
    }

    /// Reads the tokenizer of a GGUF file (`tokenizer.ggml.*`). Throws `TokenizerError` naming the
    /// file and field for anything missing, malformed or unsupported.
    public convenience init(gguf: GGUFFile) throws {
        let file = gguf.path
        func wrap<T>(_ body: () throws -> T) throws -> T {
            do { return try body() } catch let e as GGUFError {
                throw TokenizerError(file: e.file, field: e.field, reason: e.reason)
            }
        }
        func optionalInt(_ key: String) throws -> Int? {
            guard gguf[key] != nil else { return nil }
            return try wrap { try gguf.int(key) }
        }
        let model = try wrap { try gguf.string("tokenizer.ggml.model") }
        guard model == "gpt2" else {
            throw TokenizerError(file: file, field: "tokenizer.ggml.model",
                                 reason: "unsupported tokenizer model \"\(model)\" (only \"gpt2\" byte-level BPE is supported)")
        }
        let preName = try wrap { try gguf.string("tokenizer.ggml.pre") }
        guard let pre = PreTokenizer(ggufName: preName) else {
            let known = PreTokenizer.allCases.map { "\"\($0.rawValue)\"" }.joined(separator: ", ")
            throw TokenizerError(file: file, field: "tokenizer.ggml.pre",
                                 reason: "unsupported pre-tokenizer \"\(preName)\" (supported: \(known))")
        }
        let tokens = try wrap { try gguf.stringArray("tokenizer.ggml.tokens") }
        let types = try wrap { try gguf.intArray("tokenizer.ggml.token_type") }.map(TokenType.init(rawValue:))
        let merges = try wrap { try gguf.stringArray("tokenizer.ggml.merges") }
        let bos = try optionalInt("tokenizer.ggml.bos_token_id")
        let eos = try optionalInt("tokenizer.ggml.eos_token_id")
        var addBos = false
        if let v = gguf["tokenizer.ggml.add_bos_token"] {
            switch v {
            case .bool(let b): addBos = b
            default:
                guard let i = v.intValue else {
                    throw TokenizerError(file: file, field: "tokenizer.ggml.add_bos_token", reason: "expected bool, found \(v.type)")
                }
                addBos = i != 0
            }
        }
        try self.init(tokens: tokens, tokenTypes: types, merges: merges, preTokenizer: pre,
                      bosTokenId: bos, eosTokenId: eos, addBosToken: addBos, source: file)
    }

    // MARK: lookup

    /// Id of a vocabulary entry, spelled as stored (byte-level for normal tokens, e.g. "Ġthe").
    public func tokenId(_ token: String) -> Int32? { vocab[token] }

    /// Whether `id` is a control or user-defined token.
    public func isSpecial(_ id: Int32) -> Bool {
        id >= 0 && Int(id) < tokens.count && tokenTypes[Int(id)].isSpecial
    }

    public func isEndOfGeneration(_ id: Int32) -> Bool { endOfGenerationTokens.contains(id) }

    // MARK: encode

    /// Token ids of `text`.
    ///
    /// - Parameters:
    ///   - addBos: prepend BOS; nil uses `addBosToken` (nothing is added when the vocabulary has no BOS).
    ///   - parseSpecial: when false, control tokens such as `<|im_start|>` in the text are encoded as
    ///     plain text (user-defined tokens are still matched, as in llama.cpp).
    public func encode(_ text: String, addBos: Bool? = nil, parseSpecial: Bool = true) -> [Int32] {
        var out: [Int32] = []
        out.reserveCapacity(text.utf8.count / 3 + 2)
        if addBos ?? addBosToken, let bos = bosTokenId { out.append(bos) }
        let matcher = parseSpecial ? specialAll : specialUserDefined
        var ctx = EncodeContext()
        var text = text
        text.withUTF8 { p in
            let n = p.count
            if matcher.isEmpty {
                encodeSegment(UnsafeBufferPointer(rebasing: p[0..<n]), into: &out, ctx: &ctx)
                return
            }
            var segStart = 0
            var i = 0
            while i < n {
                if let (len, id) = matcher.match(p, at: i) {
                    if segStart < i {
                        encodeSegment(UnsafeBufferPointer(rebasing: p[segStart..<i]), into: &out, ctx: &ctx)
                    }
                    out.append(id)
                    i += len
                    segStart = i
                } else {
                    i += 1
                }
            }
            if segStart < n {
                encodeSegment(UnsafeBufferPointer(rebasing: p[segStart..<n]), into: &out, ctx: &ctx)
            }
        }
        return out
    }

    /// Pre-tokenizes and BPE-encodes a segment without special tokens.
    private func encodeSegment(_ bytes: UnsafeBufferPointer<UInt8>, into out: inout [Int32], ctx: inout EncodeContext) {
        ctx.text.load(bytes)
        ctx.ends.removeAll(keepingCapacity: true)
        preTokenizer.split(ctx.text, into: &ctx.ends)
        var start = 0
        for e in ctx.ends {
            let word = UnsafeBufferPointer(rebasing: bytes[ctx.text.offsets[start]..<ctx.text.offsets[e]])
            start = e
            encodeWord(word, into: &out, ctx: &ctx)
        }
    }

    private func encodeWord(_ word: UnsafeBufferPointer<UInt8>, into out: inout [Int32], ctx: inout EncodeContext) {
        let n = word.count
        if n == 1 {
            let id = byteToId[Int(word[0])]
            if id >= 0 { out.append(id) }
            return
        }
        guard let key = WordCache.Key(word) else {
            bpe(word, into: &out, scratch: &ctx.bpe)
            return
        }
        if let ids = cache.get(key) { out.append(contentsOf: ids); return }
        let before = out.count
        bpe(word, into: &out, scratch: &ctx.bpe)
        cache.put(key, Array(out[before...]))
    }

    /// Byte-level BPE of one pre-token: start from single bytes and repeatedly apply the merge of
    /// lowest rank (leftmost first), with a binary heap over a linked list of symbols.
    func bpe(_ word: UnsafeBufferPointer<UInt8>, into out: inout [Int32], scratch s: inout BPEScratch) {
        s.reset(word.count)
        var n = 0
        for b in word {
            let id = byteToId[Int(b)]
            if id < 0 { continue }  // no token for this byte: dropped, its neighbours become adjacent
            s.ids[n] = id
            s.prev[n] = Int32(n - 1)
            s.next[n] = Int32(n + 1)
            n += 1
        }
        if n == 0 { return }
        if n == 1 { out.append(s.ids[0]); return }
        @inline(__always) func key(_ a: Int32, _ b: Int32) -> UInt64 { UInt64(UInt32(a)) << 32 | UInt64(UInt32(b)) }
        for i in 0..<(n - 1) {
            if let m = mergeTable[key(s.ids[i], s.ids[i + 1])] {
                s.heap.push(m & 0xFFFF_FFFF_0000_0000 | UInt64(i))
            }
        }
        while let top = s.heap.pop() {
            let rank = top >> 32
            let pos = Int(top & 0xFFFF_FFFF)
            let left = s.ids[pos]
            if left < 0 { continue }                       // symbol merged into its left neighbour
            let r = Int(s.next[pos])
            if r >= n { continue }
            guard let m = mergeTable[key(left, s.ids[r])], m >> 32 == rank else { continue }  // stale
            s.ids[pos] = Int32(truncatingIfNeeded: m & 0xFFFF_FFFF)
            s.ids[r] = -1
            let rn = Int(s.next[r])
            s.next[pos] = Int32(rn)
            if rn < n { s.prev[rn] = Int32(pos) }
            let p = Int(s.prev[pos])
            if p >= 0, let m2 = mergeTable[key(s.ids[p], s.ids[pos])] {
                s.heap.push(m2 & 0xFFFF_FFFF_0000_0000 | UInt64(p))
            }
            if rn < n, let m3 = mergeTable[key(s.ids[pos], s.ids[rn])] {
                s.heap.push(m3 & 0xFFFF_FFFF_0000_0000 | UInt64(pos))
            }
        }
        var i = 0
        while i < n {
            out.append(s.ids[i])
            i = Int(s.next[i])
        }
    }

    // MARK: decode

    /// The bytes token `id` stands for (control tokens: their text); U+FFFD for an id outside the vocabulary.
    public func tokenBytes(_ id: Int32) -> [UInt8] {
        guard id >= 0 && Int(id) < tokens.count else { return Self.replacement }
        return Array(pieceBytes[pieceOffsets[Int(id)]..<pieceOffsets[Int(id) + 1]])
    }

    /// Appends the bytes of `id` to `out`.
    public func appendBytes(of id: Int32, to out: inout [UInt8]) {
        guard id >= 0 && Int(id) < tokens.count else { out.append(contentsOf: Self.replacement); return }
        out.append(contentsOf: pieceBytes[pieceOffsets[Int(id)]..<pieceOffsets[Int(id) + 1]])
    }

    /// The exact bytes of a token sequence (ids outside the vocabulary decode to U+FFFD).
    public func decode(_ ids: [Int32]) -> [UInt8] {
        var out: [UInt8] = []
        out.reserveCapacity(ids.count * 4)
        for id in ids { appendBytes(of: id, to: &out) }
        return out
    }

    /// `decode` as text; invalid UTF-8 becomes U+FFFD (one per maximal invalid subsequence).
    public func decodeString(_ ids: [Int32]) -> String {
        String(decoding: decode(ids), as: UTF8.self)
    }

    /// A decoder that turns ids, one at a time, into complete UTF-8 text.
    public func makeStreamingDecoder() -> StreamingDecoder { StreamingDecoder(tokenizer: self) }

    static let replacement: [UInt8] = [0xEF, 0xBF, 0xBD]
}

/// Per-call working memory of `encode`.
struct EncodeContext {
    var text = ScalarText()
    var ends: [Int] = []
    var bpe = BPEScratch()
}

struct BPEScratch {
    var ids: [Int32] = []
    var prev: [Int32] = []
    var next: [Int32] = []
    var heap = MinHeap()

    mutating func reset(_ n: Int) {
        if ids.count < n {
            ids = [Int32](repeating: 0, count: n)
            prev = [Int32](repeating: 0, count: n)
            next = [Int32](repeating: 0, count: n)
        }
        heap.items.removeAll(keepingCapacity: true)
    }
}

/// Binary min-heap of packed (rank << 32 | position) keys.
struct MinHeap {
    var items: [UInt64] = []

    mutating func push(_ x: UInt64) {
        items.append(x)
        var i = items.count - 1
        while i > 0 {
            let parent = (i - 1) / 2
            if items[parent] <= x { break }
            items[i] = items[parent]
            i = parent
        }
        items[i] = x
    }

    mutating func pop() -> UInt64? {
        guard let last = items.popLast() else { return nil }
        if items.isEmpty { return last }
        let top = items[0]
        let n = items.count
        var i = 0
        while true {
            let l = 2 * i + 1
            if l >= n { break }
            let r = l + 1
            let c = (r < n && items[r] < items[l]) ? r : l
            if items[c] >= last { break }
            items[i] = items[c]
            i = c
        }
        items[i] = last
        return top
    }
}

/// Finds control / user-defined tokens in UTF-8 text: at each position the longest one that matches.
struct SpecialTokenMatcher: Sendable {
    struct Entry: Sendable {
        var bytes: [UInt8]
        var id: Int32
    }

    /// Entries by first byte, longest first.
    let buckets: [[Entry]]
    let isEmpty: Bool

    init(_ entries: [Entry]) {
        var b = [[Entry]](repeating: [], count: 256)
        for e in entries { b[Int(e.bytes[0])].append(e) }
        for i in 0..<256 { b[i].sort { $0.bytes.count != $1.bytes.count ? $0.bytes.count > $1.bytes.count : $0.id < $1.id } }
        buckets = b
        isEmpty = entries.isEmpty
    }

    @inline(__always)
    func match(_ p: UnsafeBufferPointer<UInt8>, at i: Int) -> (Int, Int32)? {
        let bucket = buckets[Int(p[i])]
        if bucket.isEmpty { return nil }
        let left = p.count - i
        for e in bucket where e.bytes.count <= left {
            var k = 1
            let m = e.bytes.count
            while k < m && e.bytes[k] == p[i + k] { k += 1 }
            if k == m { return (m, e.id) }
        }
        return nil
    }
}

/// Pre-token bytes → ids, shared across calls (pre-tokens of at most 16 bytes).
final class WordCache: @unchecked Sendable {
    /// Up to 16 bytes packed in two words, plus the length: hashing it allocates nothing.
    struct Key: Hashable {
        var lo: UInt64
        var hi: UInt64
        var count: Int

        init?(_ w: UnsafeBufferPointer<UInt8>) {
            guard w.count <= 16 else { return nil }
            var lo: UInt64 = 0, hi: UInt64 = 0
            for i in 0..<w.count {
                if i < 8 { lo |= UInt64(w[i]) << (8 * UInt64(i)) } else { hi |= UInt64(w[i]) << (8 * UInt64(i - 8)) }
            }
            self.lo = lo; self.hi = hi; self.count = w.count
        }
    }

    private let lock = NSLock()
    private var map: [Key: [Int32]] = [:]
    static let capacity = 1 << 17

    func get(_ k: Key) -> [Int32]? {
        lock.lock(); defer { lock.unlock() }
        return map[k]
    }

    func put(_ k: Key, _ ids: [Int32]) {
        lock.lock(); defer { lock.unlock() }
        if map.count >= Self.capacity { map.removeAll(keepingCapacity: true) }
        map[k] = ids
    }
}
