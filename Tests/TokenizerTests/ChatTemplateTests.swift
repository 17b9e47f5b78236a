import Testing
import GGUF
import Tokenizer

@Suite("Chat templates")
struct ChatTemplateTests {
    static let sys = "You are a helpful AI assistant named SmolLM, trained by Hugging Face"

    @Test("ChatML rendering with and without a system message")
    func render() throws {
        let t = ChatTemplate(format: .chatML, defaultSystemMessage: Self.sys)
        #expect(t.render(messages: [.user("Hi")]) ==
            "<|im_start|>system\n\(Self.sys)<|im_end|>\n<|im_start|>user\nHi<|im_end|>\n<|im_start|>assistant\n")
        #expect(t.render(messages: [.system("Be brief."), .user("Hi")], addGenerationPrompt: false) ==
            "<|im_start|>system\nBe brief.<|im_end|>\n<|im_start|>user\nHi<|im_end|>\n")
        #expect(t.render(messages: [.user("a"), .assistant("b"), .user("c")]) ==
            "<|im_start|>system\n\(Self.sys)<|im_end|>\n<|im_start|>user\na<|im_end|>\n<|im_start|>assistant\nb<|im_end|>\n<|im_start|>user\nc<|im_end|>\n<|im_start|>assistant\n")
        let bare = ChatTemplate(format: .chatML)
        #expect(bare.render(messages: [.user("Hi")]) == "<|im_start|>user\nHi<|im_end|>\n<|im_start|>assistant\n")
    }

    @Test("Default system message: extracted only from a constant literal")
    func extraction() throws {
        // Escaped newline inside a Jinja literal (Qwen-style: a computed one first, then a constant).
        let qwen = "{%- if messages[0]['role'] == 'system' %}{{- '<|im_start|>system\\n' + messages[0]['content'] + '<|im_end|>\\n' }}{%- else %}{{- '<|im_start|>system\\nYou are Qwen, created by Alibaba Cloud.<|im_end|>\\n' }}{%- endif %}"
        #expect(try ChatTemplate(template: qwen).defaultSystemMessage == "You are Qwen, created by Alibaba Cloud.")
        let computed = "{{ '<|im_start|>system\\n' + messages[0]['content'] + '<|im_end|>' }}"
        #expect(try ChatTemplate(template: computed).defaultSystemMessage == nil)
        let none = "{% for m in messages %}{{'<|im_start|>' + m['role'] + '\\n' + m['content'] + '<|im_end|>\\n'}}{% endfor %}"
        #expect(try ChatTemplate(template: none).defaultSystemMessage == nil)
    }

    @Test("Unknown or missing template: typed error naming the field")
    func errors() throws {
        do {
            _ = try ChatTemplate(template: "[INST] {{ message }} [/INST]", file: "m.gguf")
            Issue.record("expected an error")
        } catch let e as TokenizerError {
            #expect(e.file == "m.gguf" && e.field == "tokenizer.chat_template")
        }
        let noTemplate = try BPEUnitTests.gguf([("tokenizer.chat_template", nil)], name: "n.gguf")
        #expect(throws: TokenizerError.self) { try ChatTemplate(gguf: noTemplate) }
        let ok = try ChatTemplate(gguf: try BPEUnitTests.gguf([]))
        #expect(ok.format == .chatML && ok.defaultSystemMessage == nil)
    }
}
