import Foundation
import Generation
import Hummingbird
import NIOCore
import Sampling
import Vision

/// The routes: OpenAI's chat and text completions, the model list, health and metrics.
struct API: Sendable {
    let engine: Engine
    let config: ServerConfiguration
    let metrics: ServeMetrics
    let hasTower: Bool
    let hasTemplate: Bool
    let created = Int(Date().timeIntervalSince1970)

    func register(on router: Router<ServeContext>) {
        router.get("/health") { _, _ in jsonResponse(["status": "ok"]) }
        router.get("/v1/models") { _, _ in
            jsonResponse(ModelList(data: [.init(id: config.modelID, created: created)]))
        }
        router.get("/metrics") { _, _ in
            Response(status: .ok, headers: [.contentType: "text/plain; version=0.0.4"],
                     body: .init(byteBuffer: ByteBuffer(bytes: metrics.text())))
        }
        router.post("/v1/chat/completions") { request, context in
            let (body, fields): (ChatCompletionRequest, GenerationFields) = try await decodeBody(request)
            return try await respond(to: try chatRequest(body, fields), fields: fields, context: context, chat: true)
        }
        router.post("/v1/completions") { request, context in
            let (body, fields): (CompletionRequest, GenerationFields) = try await decodeBody(request)
            guard !body.prompt.isEmpty else { throw APIError.invalid("prompt is empty", param: "prompt") }
            let gen = GenerationRequest(prompt: .raw(body.prompt), params: try sampling(fields),
                                        maxTokens: try maxTokens(fields, default: 16), stops: fields.stop?.values ?? [],
                                        ignoreEOS: fields.ignore_eos ?? false)
            return try await respond(to: gen, fields: fields, context: context, chat: false)
        }
    }

    /// The endpoint's own fields and the shared generation fields, from one JSON body.
    private func decodeBody<T: Decodable>(_ request: Request) async throws -> (T, GenerationFields) {
        let buffer = try await request.body.collect(upTo: config.maxBodyBytes)
        guard buffer.readableBytes > 0 else { throw APIError.invalid("the request has no body: send a JSON object") }
        let data = Data(buffer.readableBytesView)
        do {
            return (try JSONDecoder().decode(T.self, from: data), try JSONDecoder().decode(GenerationFields.self, from: data))
        } catch let e as DecodingError {
            throw APIError.invalid(describe(e))
        }
    }

    // MARK: request → generation

    private func sampling(_ f: GenerationFields) throws -> SamplingParameters {
        if let n = f.n, n != 1 { throw APIError.invalid("n = \(n): only one choice per request is supported", param: "n") }
        var p = SamplingParameters()
        // OpenAI's defaults: temperature 1, top_p 1, no top-k or min-p filter.
        let t = f.temperature ?? 1
        guard t.isFinite, t >= 0, t <= 2 else { throw APIError.invalid("temperature must be in [0, 2], got \(t)", param: "temperature") }
        let topP = f.top_p ?? 1
        guard topP > 0, topP <= 1 else { throw APIError.invalid("top_p must be in (0, 1], got \(topP)", param: "top_p") }
        let topK = f.top_k ?? 0
        guard topK >= 0 else { throw APIError.invalid("top_k must be ≥ 0, got \(topK)", param: "top_k") }
        let minP = f.min_p ?? 0
        guard minP >= 0, minP < 1 else { throw APIError.invalid("min_p must be in [0, 1), got \(minP)", param: "min_p") }
        p.temperature = Float(t)
        p.topP = Float(topP)
        p.topK = topK
        p.minP = Float(minP)
        p.seed = f.seed.map { UInt64(bitPattern: $0) } ?? UInt64.random(in: 0...UInt64(UInt32.max))
        if let stops = f.stop?.values, stops.count > 4 { throw APIError.invalid("stop: at most 4 sequences", param: "stop") }
        return p
    }

    private func maxTokens(_ f: GenerationFields, default d: Int?) throws -> Int? {
        guard let m = f.requestedMaxTokens ?? d else { return nil }
        guard m >= 1, m <= config.maxTokensLimit else {
            throw APIError.invalid("max_tokens must be in 1...\(config.maxTokensLimit), got \(m)", param: "max_tokens")
        }
        return m
    }

    private func chatRequest(_ body: ChatCompletionRequest, _ fields: GenerationFields) throws -> GenerationRequest {
        guard !body.messages.isEmpty else { throw APIError.invalid("messages is empty: send at least one message", param: "messages") }
        guard hasTemplate else { throw APIError.invalid("the model has no chat template: use /v1/completions", param: "messages") }
        var messages: [UserMessage] = []
        for (i, m) in body.messages.enumerated() {
            guard ["system", "user", "assistant", "developer"].contains(m.role) else {
                throw APIError.invalid("messages[\(i)].role: '\(m.role)' is not one of system, user, assistant", param: "messages")
            }
            let role = m.role == "developer" ? "system" : m.role
            switch m.content {
            case nil: messages.append(UserMessage(role: role, parts: [.text("")]))
            case .text(let s): messages.append(UserMessage(role: role, parts: [.text(s)]))
            case .parts(let parts):
                var out: [UserMessage.Part] = []
                for (j, part) in parts.enumerated() {
                    let where_ = "messages[\(i)].content[\(j)]"
                    switch part.type {
                    case "text":
                        guard let t = part.text else { throw APIError.invalid("\(where_).text: missing for a text part", param: "messages") }
                        out.append(.text(t))
                    case "image_url":
                        guard let url = part.image_url?.url else { throw APIError.invalid("\(where_).image_url.url: missing for an image part", param: "messages") }
                        guard hasTower else {
                            throw APIError.invalid("\(where_): an image was sent but the server has no vision tower (start it with --mmproj)", param: "messages")
                        }
                        out.append(.image(try decodeImage(url, where: where_)))
                    default:
                        throw APIError.invalid("\(where_).type: '\(part.type)' is not supported (text, image_url)", param: "messages")
                    }
                }
                messages.append(UserMessage(role: role, parts: out))
            }
        }
        return GenerationRequest(prompt: .chat(messages), params: try sampling(fields), maxTokens: try maxTokens(fields, default: nil),
                                 stops: fields.stop?.values ?? [], ignoreEOS: fields.ignore_eos ?? false)
    }

    /// A `data:` URL with a base64 PNG/JPEG/PPM; remote URLs are not fetched.
    private func decodeImage(_ url: String, where w: String) throws -> RGBImage {
        if url.hasPrefix("http://") || url.hasPrefix("https://") {
            throw APIError.invalid("\(w): remote image URLs are not fetched; send the image inline as a data: URL (data:image/png;base64,...)", param: "messages")
        }
        guard url.hasPrefix("data:"), let comma = url.firstIndex(of: ",") else {
            throw APIError.invalid("\(w): the image URL must be a data: URL (data:image/png;base64,...)", param: "messages")
        }
        let header = url[url.index(url.startIndex, offsetBy: 5)..<comma]
        guard header.hasSuffix(";base64") else { throw APIError.invalid("\(w): the data: URL must be base64 (;base64,)", param: "messages") }
        guard let data = Data(base64Encoded: String(url[url.index(after: comma)...]), options: .ignoreUnknownCharacters), !data.isEmpty else {
            throw APIError.invalid("\(w): the image's base64 does not decode", param: "messages")
        }
        do {
            return try ImageDecoder.decode(Array(data), name: w, limits: config.imageLimits)
        } catch let e as ImageError {
            throw APIError.invalid("\(e.description)", param: "messages", code: e.kind == .tooLarge ? "image_too_large" : "invalid_image")
        }
    }

    // MARK: generation → response

    private func respond(to gen: GenerationRequest, fields: GenerationFields, context: ServeContext, chat: Bool) async throws -> Response {
        metrics.requests.increment()
        let (job, events) = try engine.submit(gen)
        context.channel.closeFuture.whenComplete { _ in job.cancel() }
        var iterator = events.makeAsyncIterator()
        // Wait for the prefill, so that a prompt that cannot run is still answered with a 4xx.
        let promptTokens: Int
        switch await iterator.next() {
        case .started(let n, _): promptTokens = n
        case .failed(let e): throw e
        default: throw APIError(status: 503, message: "the request was cancelled", type: "server_error")
        }
        let id = (chat ? "chatcmpl-" : "cmpl-") + UUID().uuidString.replacingOccurrences(of: "-", with: "").lowercased().prefix(24)
        let created = Int(Date().timeIntervalSince1970)
        let model = config.modelID

        if fields.stream != true {
            var text = ""
            while let ev = await iterator.next() {
                switch ev {
                case .text(let s): text += s
                case .finished(let c):
                    let usage = Usage(prompt_tokens: promptTokens, completion_tokens: c.completionTokens, total_tokens: promptTokens + c.completionTokens)
                    if chat {
                        return jsonResponse(ChatCompletionResponse(id: id, created: created, model: model,
                                                                   choices: [.init(message: .init(content: text), finish_reason: c.finishReason)],
                                                                   usage: usage, specdec: c.report))
                    }
                    return jsonResponse(CompletionResponse(id: id, created: created, model: model,
                                                           choices: [.init(text: text, finish_reason: c.finishReason)], usage: usage, specdec: c.report))
                case .failed(let e): throw e
                case .started: break
                }
            }
            throw APIError(status: 503, message: "the request was cancelled", type: "server_error")
        }

        // Server-sent events in OpenAI's chunk format, ending with `data: [DONE]`.
        let includeUsage = fields.stream_options?.include_usage == true
        let stream = SendableIterator(iterator)
        return Response(status: .ok, headers: [.contentType: "text/event-stream", .cacheControl: "no-cache"],
                        body: ResponseBody { writer in
            func send<T: Encodable>(_ value: T) async throws {
                let enc = JSONEncoder()
                enc.outputFormatting = [.withoutEscapingSlashes]
                var buf = ByteBuffer(string: "data: ")
                buf.writeBytes(try enc.encode(value))
                buf.writeString("\n\n")
                try await writer.write(buf)
            }
            func chunk(_ content: String?, role: String? = nil, finish: String? = nil) async throws {
                if chat {
                    try await send(ChatCompletionChunk(id: id, created: created, model: model,
                                                       choices: [.init(delta: .init(role: role, content: content), finish_reason: finish)]))
                } else {
                    try await send(CompletionResponse(id: id, created: created, model: model,
                                                      choices: [.init(text: content ?? "", finish_reason: finish)]))
                }
            }
            do {
                if chat { try await chunk("", role: "assistant") }
                while let ev = await stream.next() {
                    switch ev {
                    case .text(let s): try await chunk(s)
                    case .finished(let c):
                        try await chunk(chat ? nil : "", finish: c.finishReason)
                        if includeUsage {
                            let usage = Usage(prompt_tokens: promptTokens, completion_tokens: c.completionTokens,
                                              total_tokens: promptTokens + c.completionTokens)
                            if chat {
                                try await send(ChatCompletionChunk(id: id, created: created, model: model, choices: [], usage: usage, specdec: c.report))
                            } else {
                                try await send(CompletionResponse(id: id, created: created, model: model, choices: [], usage: usage, specdec: c.report))
                            }
                        }
                    case .failed(let e):
                        try await send(e.body)
                    case .started: break
                    }
                }
                try await writer.write(ByteBuffer(string: "data: [DONE]\n\n"))
                try await writer.finish(nil)
            } catch {
                // The client went away: stop generating for it.
                job.cancel()
                throw error
            }
        })
    }
}

/// The event iterator moved into the response body's writer task (only that task uses it).
final class SendableIterator: @unchecked Sendable {
    private var base: AsyncStream<EngineEvent>.Iterator
    init(_ base: AsyncStream<EngineEvent>.Iterator) { self.base = base }
    func next() async -> EngineEvent? { await base.next() }
}
