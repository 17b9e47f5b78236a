import Testing
import Tokenizer

/// Expected splits were produced with HF `tokenizers` 0.23 (pieces mapped back to text):
/// smollm = Sequence([Digits(individual_digits=True), ByteLevel(add_prefix_space=False)]),
/// gpt2 = ByteLevel(add_prefix_space=False), llama-bpe = Split(Regex(LLAMA3), "isolated").
@Suite("Pre-tokenizer splits")
struct PreTokenizerTests {
    static let smollm: [(String, [String])] = [
        ("Hello  world 123", ["Hello", " ", " world", " ", "1", "2", "3"]),
        ("I'm   here\n\n  ok", ["I", "'m", "  ", " here", "\n\n ", " ok"]),
        ("don't STOP'RE 'll 'ſ", ["don", "'t", " STOP", "'", "RE", " '", "ll", " '", "ſ"]),
        ("x  \ty", ["x", "  ", "\t", "y"]),
        ("a1b22 c333 4444 12345", ["a", "1", "b", "2", "2", " c", "3", "3", "3", " ", "4", "4", "4", "4", " ", "1", "2", "3", "4", "5"]),
        ("hi!!  ??\r\n\r\nend", ["hi", "!!", " ", " ??", "\r\n\r", "\n", "end"]),
        ("  lead and trail  ", [" ", " lead", " and", " trail", "  "]),
        ("naïve café 日本語", ["naïve", " café", " 日本語"]),
        ("\u{00A0}\u{3000}x \u{00A0}y", ["\u{00A0}", "\u{3000}", "x", " ", "\u{00A0}", "y"]),
        ("$(x)\n\t\tif", ["$(", "x", ")", "\n\t", "\t", "if"]),
        ("a ½ ²2", ["a", " ", "½", " ", "²", "2"]),
    ]

    static let gpt2: [(String, [String])] = [
        ("Hello  world 123", ["Hello", " ", " world", " 123"]),
        ("I'm   here\n\n  ok", ["I", "'m", "  ", " here", "\n\n ", " ok"]),
        ("don't STOP'RE 'll 'ſ", ["don", "'t", " STOP", "'", "RE", " '", "ll", " '", "ſ"]),
        ("x  \ty", ["x", "  ", "\t", "y"]),
        ("a1b22 c333 4444 12345", ["a", "1", "b", "22", " c", "333", " 4444", " 12345"]),
        ("hi!!  ??\r\n\r\nend", ["hi", "!!", " ", " ??", "\r\n\r", "\n", "end"]),
        ("  lead and trail  ", [" ", " lead", " and", " trail", "  "]),
        ("naïve café 日本語", ["naïve", " café", " 日本語"]),
        ("\u{00A0}\u{3000}x \u{00A0}y", ["\u{00A0}", "\u{3000}", "x", " ", "\u{00A0}", "y"]),
        ("$(x)\n\t\tif", ["$(", "x", ")", "\n\t", "\t", "if"]),
        ("a ½ ²2", ["a", " ½", " ²2"]),
    ]

    static let llamaBPE: [(String, [String])] = [
        ("Hello  world 123", ["Hello", " ", " world", " ", "123"]),
        ("I'm   here\n\n  ok", ["I", "'m", "  ", " here", "\n\n", " ", " ok"]),
        ("don't STOP'RE 'll 'ſ", ["don", "'t", " STOP", "'RE", " '", "ll", " '", "ſ"]),
        ("x  \ty", ["x", "  ", "\ty"]),
        ("a1b22 c333 4444 12345", ["a", "1", "b", "22", " c", "333", " ", "444", "4", " ", "123", "45"]),
        ("hi!!  ??\r\n\r\nend", ["hi", "!!", " ", " ??\r\n\r\n", "end"]),
        ("  lead and trail  ", [" ", " lead", " and", " trail", "  "]),
        ("naïve café 日本語", ["naïve", " café", " 日本語"]),
        ("\u{00A0}\u{3000}x \u{00A0}y", ["\u{00A0}", "\u{3000}x", " ", "\u{00A0}y"]),
        ("$(x)\n\t\tif", ["$(", "x", ")\n", "\t", "\tif"]),
        ("a ½ ²2", ["a", " ", "½", " ", "²2"]),
        ("'s 'S 'ſ 'Ll", ["'s", " '", "S", " '", "ſ", " '", "Ll"]),
        ("it'S we'Ll x'ſ", ["it", "'S", " we", "'Ll", " x", "'ſ"]),
    ]

    @Test("smollm: digits one by one, then the GPT-2 regex", arguments: smollm.indices)
    func smollmSplits(_ i: Int) {
        let (text, expected) = Self.smollm[i]
        #expect(PreTokenizer.smollm.split(text) == expected)
    }

    @Test("gpt2: the GPT-2 regex", arguments: gpt2.indices)
    func gpt2Splits(_ i: Int) {
        let (text, expected) = Self.gpt2[i]
        #expect(PreTokenizer.gpt2.split(text) == expected)
    }

    @Test("llama-bpe: the LLaMA-3 regex", arguments: llamaBPE.indices)
    func llamaSplits(_ i: Int) {
        let (text, expected) = Self.llamaBPE[i]
        #expect(PreTokenizer.llamaBPE.split(text) == expected)
    }

    @Test("Letters new in Unicode 17 are unassigned, as in HF tokenizers (Unicode 16 tables)")
    func unicodeVersion() {
        // U+10940 SIDETIC LETTER A and U+A7CE are letters since Unicode 17.0 (checked with HF 0.23).
        for p in [PreTokenizer.smollm, .gpt2] {
            #expect(p.split("a\u{10940}b") == ["a", "\u{10940}", "b"])
            #expect(p.split("x\u{A7CE}y") == ["x", "\u{A7CE}", "y"])
        }
        #expect(PreTokenizer.llamaBPE.split("a\u{10940}b") == ["a", "\u{10940}b"])
        #expect(PreTokenizer.llamaBPE.split("x\u{A7CE}y") == ["x", "\u{A7CE}y"])
        #expect(PreTokenizer.gpt2.split(" \u{10940}\u{10941}") == [" \u{10940}\u{10941}"])
    }

    @Test("Edge cases: empty text, lone whitespace, names from GGUF")
    func edges() {
        for p in PreTokenizer.allCases {
            #expect(p.split("") == [])
            #expect(p.split(" ") == [" "])
            #expect(p.split("\n") == ["\n"])
            #expect(p.split("   ") == ["   "])
        }
        #expect(PreTokenizer(ggufName: "smollm") == .smollm)
        #expect(PreTokenizer(ggufName: "llama-bpe") == .llamaBPE)
        #expect(PreTokenizer(ggufName: "gpt2") == .gpt2)
        #expect(PreTokenizer(ggufName: "qwen2") == nil)
    }
}
