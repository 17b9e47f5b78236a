import Foundation

// The OpenAI API's request and response shapes, as the `openai` Python client sends and reads
// them (https://platform.openai.com/docs/api-reference/chat). Unknown request fields are
// ignored, as OpenAI-compatible servers do; fields given with the wrong type are refused.

/// An error answered as OpenAI does: `{"error": {"message", "type", "param", "code"}}`.
public struct APIError: Error, CustomStringConvertible, Sendable {
    public var status: Int
    public var message: String
    public var type: String
    public var code: String?
    public var param: String?
    /// Seconds for a `Retry-After` header (429 and 503).
    public var retryAfter: Int?

    public init(status: Int, message: String, type: String = "invalid_request_error", code: String? = nil,
                param: String? = nil, retryAfter: Int? = nil) {
        self.status = status; self.message = message; self.type = type; self.code = code
        self.param = param; self.retryAfter = retryAfter
    }

    public var description: String { "\(status) \(message)" }

    static func invalid(_ message: String, param: String? = nil, code: String? = nil) -> APIError {
        APIError(status: 400, message: message, code: code, param: param)
    }

    struct Body: Encodable {
        struct Inner: Encodable { var message: String; var type: String; var param: String?; var code: String? }
        var error: Inner
    }
    var body: Body { Body(error: .init(message: message, type: type, param: param, code: code)) }
}

/// `"stop"`: one string or a list of them.
struct StopField: Decodable {
    var values: [String]
    init(from decoder: Decoder) throws {
        let c = try decoder.singleValueContainer()
        if c.decodeNil() { values = [] } else if let s = try? c.decode(String.self) { values = [s] } else {
            values = try c.decode([String].self)
        }
    }
}

/// A message's `content`: a string, or a list of `text` and `image_url` parts.
enum MessageContent: Decodable {
    case text(String)
    case parts([ContentPart])

    init(from decoder: Decoder) throws {
        let c = try decoder.singleValueContainer()
        if let s = try? c.decode(String.self) { self = .text(s); return }
        self = .parts(try c.decode([ContentPart].self))
    }
}

struct ContentPart: Decodable {
    struct ImageURL: Decodable { var url: String; var detail: String? }
    var type: String
    var text: String?
    var image_url: ImageURL?
}

struct ChatMessageIn: Decodable {
    var role: String
    var content: MessageContent?
}

/// `stream_options`: `include_usage` adds a last chunk with the token counts.
struct StreamOptions: Decodable { var include_usage: Bool? }

/// The sampling and length fields both endpoints share, decoded from the same body as the
/// endpoint's own fields.
struct GenerationFields: Decodable {
    var temperature, top_p, min_p: Double?
    var top_k, n, max_tokens: Int?
    var seed: Int64?
    var stop: StopField?
    var stream: Bool?
    var stream_options: StreamOptions?
    /// The chat endpoint's newer name for `max_tokens`.
    var max_completion_tokens: Int?
    /// vLLM's and llama-server's extension: generate past end-of-generation tokens (benchmarks,
    /// fixed-length answers); `max_tokens` or the context still ends the request.
    var ignore_eos: Bool?
    var requestedMaxTokens: Int? { max_completion_tokens ?? max_tokens }
}

struct ChatCompletionRequest: Decodable {
    var model: String?
    var messages: [ChatMessageIn]
}

struct CompletionRequest: Decodable {
    var model: String?
    var prompt: String
}

struct Usage: Encodable {
    var prompt_tokens: Int
    var completion_tokens: Int
    var total_tokens: Int
}

/// specdec's extension object on every response: how the answer was decoded.
struct DecodingReport: Encodable {
    /// "speculative" or "plain" (batched with other requests).
    var mode: String
    var decode_tokens_per_s: Double
    var prefill_seconds: Double
    var steps: Int?
    /// Accepted draft tokens per target forward (the target's own token not counted).
    var tau: Double?
    var tokens_per_step: Double?
    /// Accepted draft tokens over the nodes the draft proposed.
    var draft_acceptance: Double?
    /// Context-matched tokens (`--draft …ngram`) accepted per target forward, apart from τ.
    var context_tokens_per_step: Double?
    var acceptance_by_depth: [Double]?
}

/// A choice of one of the three answer shapes; `object` names the shape.
protocol CompletionChoice: Encodable { static var object: String { get } }

/// The envelope OpenAI's chat answers, chat stream chunks and text completions (whole or
/// streamed) share.
struct CompletionBody<Choice: CompletionChoice>: Encodable {
    var id: String
    var object = Choice.object
    var created: Int
    var model: String
    var choices: [Choice]
    var usage: Usage?
    var specdec: DecodingReport?
}

struct ChatChoice: CompletionChoice {
    static let object = "chat.completion"
    struct Message: Encodable { var role = "assistant"; var content: String }
    var index = 0
    var message: Message
    var finish_reason: String
}

struct ChatChunkChoice: CompletionChoice {
    static let object = "chat.completion.chunk"
    struct Delta: Encodable { var role: String?; var content: String? }
    var index = 0
    var delta: Delta
    var finish_reason: String?
}

struct TextChoice: CompletionChoice {
    static let object = "text_completion"
    var text: String
    var index = 0
    var logprobs: String? = nil
    var finish_reason: String?
}

typealias ChatCompletionResponse = CompletionBody<ChatChoice>
typealias ChatCompletionChunk = CompletionBody<ChatChunkChoice>
typealias CompletionResponse = CompletionBody<TextChoice>

struct ModelList: Encodable {
    struct Model: Encodable { var id: String; var object = "model"; var created: Int; var owned_by = "specdec" }
    var object = "list"
    var data: [Model]
}

/// A readable sentence for a request body that did not decode.
func describe(_ error: DecodingError) -> String {
    func path(_ p: [CodingKey]) -> String {
        let s = p.map { $0.intValue.map { "[\($0)]" } ?? ".\($0.stringValue)" }.joined()
        return s.hasPrefix(".") ? String(s.dropFirst()) : (s.isEmpty ? "the body" : s)
    }
    switch error {
    case .typeMismatch(let t, let ctx): return "\(path(ctx.codingPath)): expected \(jsonTypeName(t))"
    case .valueNotFound(let t, let ctx): return "\(path(ctx.codingPath)): expected \(jsonTypeName(t)), got null"
    case .keyNotFound(let k, let ctx): return "\(path(ctx.codingPath + [k])): missing required field"
    case .dataCorrupted(let ctx):
        if ctx.codingPath.isEmpty { return "the body is not valid JSON" }
        return "\(path(ctx.codingPath)): \(ctx.debugDescription)"
    @unknown default: return "the body could not be decoded"
    }
}

private func jsonTypeName(_ t: Any.Type) -> String {
    switch t {
    case is String.Type: return "a string"
    case is Bool.Type: return "a boolean"
    case is Int.Type, is Int64.Type: return "an integer"
    case is Double.Type: return "a number"
    default:
        let name = "\(t)"
        if name.hasPrefix("Array") { return "an array" }
        if name.contains("MessageContent") { return "a string or a list of content parts" }
        return "an object"
    }
}
