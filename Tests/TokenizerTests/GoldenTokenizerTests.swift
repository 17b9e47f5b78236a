import Testing
import GGUF
import TestSupport
import Tokenizer

@Suite("Golden token ids (SmolLM2, HF tokenizers reference)")
struct GoldenTokenizerTests {
    @Test("All golden cases encode to the reference ids and decode back")
    func goldenIds() throws {
        let tok = try TestModel.tokenizer()
        let cases = try GoldenCase.load()
        #expect(cases.count == 8)
        for c in cases {
            let ids = tok.encode(c.input)
            #expect(ids == c.ids.map(Int32.init), "\(c.name)")
            #expect(tok.decodeString(ids) == c.input, "\(c.name)")
        }
    }

    @Test("Chat cases: the template renders exactly the reference input")
    func chatTemplate() throws {
        let template = try ChatTemplate(gguf: try TestModel.gguf())
        #expect(template.format == .chatML)
        #expect(template.defaultSystemMessage == "You are a helpful AI assistant named SmolLM, trained by Hugging Face")
        let chats = try GoldenCase.load().filter(\.chat)
        #expect(chats.count == 3)
        for c in chats {
            #expect(template.render(messages: [.user(c.text)]) == c.input, "\(c.name)")
        }
    }

    @Test("Metadata read from the GGUF")
    func metadata() throws {
        let tok = try TestModel.tokenizer()
        #expect(tok.vocabularySize == 49152)
        #expect(tok.preTokenizer == .smollm)
        #expect(tok.bosTokenId == 1)
        #expect(tok.eosTokenId == 2)
        #expect(tok.addBosToken == false)
        #expect(tok.endOfGenerationTokens.contains(2))   // <|im_end|>
        #expect(tok.endOfGenerationTokens.contains(0))   // <|endoftext|>
        #expect(!tok.endOfGenerationTokens.contains(1))  // <|im_start|>
        #expect(tok.tokenTypes[1] == .control)
        #expect(tok.isSpecial(1) && !tok.isSpecial(100))
        #expect(tok.tokenId("Ġthe") != nil)
        #expect(tok.encode("x", addBos: true).first == 1)
        // SmolLM2 has no token for a few bytes; HF drops them.
        #expect(tok.unencodableBytes.sorted().prefix(6) == [0x04, 0x06, 0x13, 0x14, 0x16, 0x1D])
        #expect(tok.unencodableBytes.count == 21)
        #expect(tok.encode("a\u{04}b") == [81, 82])
        #expect(tok.encode("x").first != 1)
    }

    @Test("Control tokens are atomic; parseSpecial: false treats them as text")
    func specialTokens() throws {
        let tok = try TestModel.tokenizer()
        #expect(tok.encode("<|im_start|>") == [1])
        #expect(tok.encode("a<|im_end|>b<|endoftext|>") == tok.encode("a") + [2] + tok.encode("b") + [0])
        let plain = tok.encode("<|im_start|>user", parseSpecial: false)
        #expect(!plain.contains(1))
        #expect(plain.count > 3)
        #expect(tok.decodeString(plain) == "<|im_start|>user")
        // A partial control token is plain text.
        #expect(!tok.encode("<|im_start|").contains(1))
        #expect(tok.decodeString([1, 2, 0]) == "<|im_start|><|im_end|><|endoftext|>")
    }
}
