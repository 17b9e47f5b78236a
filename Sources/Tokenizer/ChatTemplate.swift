import GGUF

/// One chat turn.
public struct ChatMessage: Sendable, Equatable, Codable {
    public var role: String
    public var content: String

    public init(role: String, content: String) { self.role = role; self.content = content }

    public static func system(_ content: String) -> ChatMessage { ChatMessage(role: "system", content: content) }
    public static func user(_ content: String) -> ChatMessage { ChatMessage(role: "user", content: content) }
    public static func assistant(_ content: String) -> ChatMessage { ChatMessage(role: "assistant", content: content) }
}

/// A chat template recognised from `tokenizer.chat_template` (no Jinja interpreter: the known
/// formats are rendered natively). Today: ChatML, as used by SmolLM2 and Qwen.
public struct ChatTemplate: Sendable, Equatable {
    public enum Format: String, Sendable, Equatable {
        /// `<|im_start|>{role}\n{content}<|im_end|>\n` per message, `<|im_start|>assistant\n` to prompt.
        case chatML
    }

    public var format: Format
    /// System message the template inserts when the conversation does not start with one
    /// (SmolLM2: "You are a helpful AI assistant named SmolLM, trained by Hugging Face").
    public var defaultSystemMessage: String?

    public init(format: Format, defaultSystemMessage: String? = nil) {
        self.format = format
        self.defaultSystemMessage = defaultSystemMessage
    }

    /// Recognises a Jinja template text. `file` and `field` are only used in the error.
    public init(template: String, file: String = "<memory>", field: String = "tokenizer.chat_template") throws {
        guard template.contains("<|im_start|>") else {
            throw TokenizerError(file: file, field: field,
                                 reason: "unrecognised chat template (only ChatML, with <|im_start|>, is supported; use --raw to send the prompt as is)")
        }
        self.init(format: .chatML, defaultSystemMessage: Self.extractDefaultSystemMessage(template))
    }

    /// Reads `tokenizer.chat_template`; throws `TokenizerError` if it is missing or not recognised.
    public init(gguf: GGUFFile) throws {
        let key = "tokenizer.chat_template"
        guard let v = gguf[key] else {
            throw TokenizerError(file: gguf.path, field: key, reason: "missing (use --raw to send the prompt as is)")
        }
        guard let text = v.stringValue else {
            throw TokenizerError(file: gguf.path, field: key, reason: "expected string, found \(v.type)")
        }
        try self.init(template: text, file: gguf.path, field: key)
    }

    /// The prompt text for `messages`. As SmolLM2's template: when the first message is not a
    /// system message, the default system message (if any) comes first.
    public func render(messages: [ChatMessage], addGenerationPrompt: Bool = true) -> String {
        var out = ""
        switch format {
        case .chatML:
            if let first = messages.first, first.role != "system", let sys = defaultSystemMessage {
                out += "<|im_start|>system\n\(sys)<|im_end|>\n"
            }
            for m in messages {
                out += "<|im_start|>\(m.role)\n\(m.content)<|im_end|>\n"
            }
            if addGenerationPrompt { out += "<|im_start|>assistant\n" }
        }
        return out
    }

    /// The text of a string literal `'<|im_start|>system\n…<|im_end|>` in the template, if one is
    /// a constant (not built from `messages[0]['content']`). The newline may be written as a real
    /// newline or as the escape `\n`.
    static func extractDefaultSystemMessage(_ template: String) -> String? {
        let t = Array(template.unicodeScalars)
        let marker = Array("<|im_start|>system".unicodeScalars)
        let end = Array("<|im_end|>".unicodeScalars)
        func matches(_ pat: [Unicode.Scalar], at i: Int) -> Bool {
            i + pat.count <= t.count && Array(t[i..<(i + pat.count)]) == pat
        }
        var i = 0
        while i + marker.count <= t.count {
            defer { i += 1 }
            guard matches(marker, at: i) else { continue }
            // the quote that opens the literal this marker is in
            var q = i - 1
            while q >= 0 && t[q] != "'" && t[q] != "\"" && t[q] != "\n" { q -= 1 }
            guard q >= 0, t[q] != "\n" else { continue }
            let quote = t[q]
            var j = i + marker.count
            if j < t.count && t[j] == "\n" {
                j += 1
            } else if j + 1 < t.count && t[j] == "\\" && t[j + 1] == "n" {
                j += 2
            } else {
                continue
            }
            var text = String.UnicodeScalarView()
            var ok = false
            while j < t.count {
                if matches(end, at: j) { ok = true; break }
                let c = t[j]
                if c == quote { break }  // the literal ends: the message is computed, not constant
                if c == "\\" && j + 1 < t.count {
                    let e = t[j + 1]
                    switch e {
                    case "n": text.append("\n")
                    case "t": text.append("\t")
                    case "r": text.append("\r")
                    default: text.append(e)
                    }
                    j += 2
                    continue
                }
                text.append(c)
                j += 1
            }
            if ok && !text.isEmpty { return String(text) }
        }
        return nil
    }
}
