import Testing
import GGUF
import Tokenizer

@Suite("BPE on small vocabularies")
struct BPEUnitTests {
    @Test("Merges apply by rank, not by position")
    func mergeOrder() throws {
        // "abc": with "a b" first the word becomes ab+c → abc; with "b c" first, a+bc → abc via "a bc".
        let vocab = byteVocabulary(["ab", "bc", "abc"])
        let t1 = try BPETokenizer(tokens: vocab, merges: ["a b", "ab c"], preTokenizer: .gpt2)
        #expect(t1.encode("abc") == [258])
        let t2 = try BPETokenizer(tokens: vocab, merges: ["b c", "a b"], preTokenizer: .gpt2)
        #expect(t2.encode("abc") == [97, 257])  // "b c" wins; "a bc" is not a merge
        let t3 = try BPETokenizer(tokens: vocab, merges: ["a b", "b c"], preTokenizer: .gpt2)
        #expect(t3.encode("abc") == [256, 99])
    }

    @Test("Equal-rank pairs merge leftmost first")
    func leftmostTies() throws {
        let vocab = byteVocabulary(["aa", "aaa"])
        let t = try BPETokenizer(tokens: vocab, merges: ["a a"], preTokenizer: .gpt2)
        #expect(t.encode("aaa") == [256, 97])
        #expect(t.encode("aaaaa") == [256, 256, 97])
        let t2 = try BPETokenizer(tokens: vocab, merges: ["a a", "aa a"], preTokenizer: .gpt2)
        #expect(t2.encode("aaa") == [257])
        #expect(t2.encode("aaaa") == [256, 256])      // both "a a" (rank 0) before "aa a"
        #expect(t2.encode("aaaaa") == [256, 257])
    }

    @Test("Spaces are byte-level Ġ and merge with the following word")
    func byteLevelSpace() throws {
        let vocab = byteVocabulary(["Ġh", "Ġhi"])
        let t = try BPETokenizer(tokens: vocab, merges: ["Ġ h", "Ġh i"], preTokenizer: .gpt2)
        #expect(t.encode(" hi") == [257])
        #expect(t.encode("hi hi") == [104, 105, 257])
        #expect(t.decodeString([104, 105, 257]) == "hi hi")
        #expect(ByteLevel.encode(Array(" \n".utf8)) == "ĠĊ")
        #expect(ByteLevel.decode("ĠĊ") == [0x20, 0x0A])
    }

    @Test("Special tokens: longest match, user-defined always, control only with parseSpecial")
    func specials() throws {
        let vocab = byteVocabulary(["<s>", "<s>x", "<u>"])
        var types = [TokenType](repeating: .normal, count: vocab.count)
        types[256] = .control; types[257] = .control; types[258] = .userDefined
        let t = try BPETokenizer(tokens: vocab, tokenTypes: types, merges: [], preTokenizer: .gpt2, bosTokenId: 256)
        #expect(t.encode("<s>x<s>y") == [257, 256, 121])
        #expect(t.encode("a<u>b", parseSpecial: false) == [97, 258, 98])
        #expect(t.encode("<s>", parseSpecial: false) == [60, 115, 62])
        #expect(t.encode("q", addBos: true) == [256, 113])
        #expect(t.decodeString([257, 258]) == "<s>x<u>")
    }

    @Test("Bytes without a token are dropped and their neighbours merge (as HF)")
    func droppedBytes() throws {
        var vocab = byteVocabulary(["!!"])
        vocab[4] = "<unused>"  // no token for byte 0x04
        let t = try BPETokenizer(tokens: vocab, merges: ["! !"], preTokenizer: .gpt2)
        #expect(t.unencodableBytes == [4])
        #expect(t.encode("!\u{04}!") == [256])
        #expect(t.encode("\u{04}") == [])
        #expect(t.encode("a\u{04}\u{04}b") == [97, 98])
    }

    @Test("Invalid ids decode to U+FFFD instead of trapping")
    func invalidIds() throws {
        let t = try BPETokenizer(tokens: byteVocabulary(), merges: [], preTokenizer: .gpt2)
        #expect(t.decodeString([-1, 104, 99999]) == "\u{FFFD}h\u{FFFD}")
    }

    @Test("Malformed vocabularies throw TokenizerError naming the field")
    func errors() throws {
        func field(_ body: () throws -> Void) -> String? {
            do { try body(); return nil } catch let e as TokenizerError { return e.field } catch { return "other: \(error)" }
        }
        #expect(field { _ = try BPETokenizer(tokens: ["<a>", "<b>"], merges: [], preTokenizer: .gpt2) } == "tokenizer.ggml.tokens")
        #expect(field { _ = try BPETokenizer(tokens: [], merges: [], preTokenizer: .gpt2) } == "tokenizer.ggml.tokens")
        #expect(field { _ = try BPETokenizer(tokens: byteVocabulary(), merges: ["ab"], preTokenizer: .gpt2) } == "tokenizer.ggml.merges")
        #expect(field { _ = try BPETokenizer(tokens: byteVocabulary(), merges: ["a b"], preTokenizer: .gpt2) } == "tokenizer.ggml.merges")
        #expect(field { _ = try BPETokenizer(tokens: byteVocabulary(), tokenTypes: [.normal], merges: [], preTokenizer: .gpt2) } == "tokenizer.ggml.token_type")
        #expect(field { _ = try BPETokenizer(tokens: byteVocabulary(), merges: [], preTokenizer: .gpt2, eosTokenId: 256) } == "tokenizer.ggml.eos_token_id")
        #expect(field { _ = try BPETokenizer(tokens: byteVocabulary(), merges: [], preTokenizer: .gpt2, addBosToken: true) } == "tokenizer.ggml.bos_token_id")
    }

    /// A minimal tokenizer GGUF in memory, with `override` applied.
    static func gguf(_ override: [(String, GGUFValue?)], name: String = "test.gguf") throws -> GGUFFile {
        var meta: [(String, GGUFValue?)] = [
            ("tokenizer.ggml.model", .string("gpt2")),
            ("tokenizer.ggml.pre", .string("smollm")),
            ("tokenizer.ggml.tokens", .array(elementType: .string, byteVocabulary(["<|im_end|>"]).map { .string($0) })),
            ("tokenizer.ggml.token_type", .array(elementType: .int32, (0..<257).map { .int32($0 == 256 ? 3 : 1) })),
            ("tokenizer.ggml.merges", .array(elementType: .string, [])),
            ("tokenizer.ggml.eos_token_id", .uint32(256)),
            ("tokenizer.chat_template", .string("{{'<|im_start|>' + message['role'] + '\\n' + message['content'] + '<|im_end|>\\n'}}")),
        ]
        for (k, v) in override {
            if let i = meta.firstIndex(where: { $0.0 == k }) { meta[i].1 = v } else { meta.append((k, v)) }
        }
        var w = GGUFWriter()
        for (k, v) in meta { if let v { w.set(k, v) } }
        return try GGUFFile(bytes: w.serialize(), name: name)
    }

    @Test("GGUF loading: typed errors name file and field")
    func ggufErrors() throws {
        let ok = try BPETokenizer(gguf: try Self.gguf([]))
        #expect(ok.encode("hi<|im_end|>") == [104, 105, 256])
        #expect(ok.eosTokenId == 256 && ok.bosTokenId == nil && !ok.addBosToken)

        func error(_ override: [(String, GGUFValue?)]) -> TokenizerError? {
            do { _ = try BPETokenizer(gguf: try Self.gguf(override, name: "bad.gguf")); return nil } catch {
                return error as? TokenizerError
            }
        }
        let notGPT2 = error([("tokenizer.ggml.model", .string("llama"))])
        #expect(notGPT2?.file == "bad.gguf")
        #expect(notGPT2?.field == "tokenizer.ggml.model")
        #expect(notGPT2?.description.contains("llama") == true)
        let unknownPre = error([("tokenizer.ggml.pre", .string("qwen2"))])
        #expect(unknownPre?.field == "tokenizer.ggml.pre")
        #expect(unknownPre?.description.contains("qwen2") == true)
        #expect(error([("tokenizer.ggml.pre", nil)])?.field == "tokenizer.ggml.pre")
        #expect(error([("tokenizer.ggml.tokens", nil)])?.field == "tokenizer.ggml.tokens")
        #expect(error([("tokenizer.ggml.merges", .string("x"))])?.field == "tokenizer.ggml.merges")
        #expect(error([("tokenizer.ggml.add_bos_token", .string("yes"))])?.field == "tokenizer.ggml.add_bos_token")
        #expect(error([("tokenizer.ggml.add_bos_token", .bool(true))])?.field == "tokenizer.ggml.bos_token_id")
        let withBos = try BPETokenizer(gguf: try Self.gguf([("tokenizer.ggml.add_bos_token", .bool(true)), ("tokenizer.ggml.bos_token_id", .int32(256))]))
        #expect(withBos.encode("h") == [256, 104])
        #expect(withBos.encode("h", addBos: false) == [104])
    }
}
