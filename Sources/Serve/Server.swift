import Foundation
import Generation
import Hummingbird
import Llama
import Logging
import NIOCore
import Sampling
import ServiceLifecycle
import Tokenizer
import Vision

/// `specdec serve`'s settings. Limits are checked before any work starts.
public struct ServerConfiguration: @unchecked Sendable {  // immutable once serving
    public var host = "127.0.0.1"
    public var port = 8080
    /// Required as `Authorization: Bearer KEY` on every route but `/health` when set.
    public var apiKey: String?
    /// The name `/v1/models` lists (requests may name any model: there is one).
    public var modelID: String
    /// Request bodies larger than this are refused (413) before they are read further.
    public var maxBodyBytes = 16 << 20
    /// Pictures larger than this are refused (400) from their header, before decoding.
    public var imageLimits = ImageLimits(maxSide: 4096, maxPixels: 1 << 22, maxFileBytes: 12 << 20)
    /// Upper bound on `max_tokens` (the context bounds it too).
    public var maxTokensLimit = 4096
    public var engine: EngineConfiguration

    public init(modelID: String, engine: EngineConfiguration) {
        self.modelID = modelID; self.engine = engine
    }
}

/// The request context: the connection, so that a request whose client goes away is cancelled.
struct ServeContext: RequestContext {
    var coreContext: CoreRequestContextStorage
    let channel: any Channel
    init(source: ApplicationRequestContextSource) {
        coreContext = .init(source: source)
        channel = source.channel
    }
}

/// The OpenAI-compatible HTTP server (Hummingbird 2) in front of one generation `Engine`.
public enum SpecdecServer {
    /// Serves until SIGTERM/SIGINT, then stops accepting, lets running requests finish, and
    /// returns. `onListening` receives the address actually bound (port 0 picks a free one).
    public static func run(model: LlamaModel, tokenizer: BPETokenizer, processor: UserInputProcessor,
                           configuration: ServerConfiguration, onListening: @escaping @Sendable (String) -> Void) async throws {
        let metrics = ServeMetrics()
        let engine = Engine(model: model, tokenizer: tokenizer, processor: processor, config: configuration.engine, metrics: metrics)
        let api = API(engine: engine, config: configuration, metrics: metrics, hasTower: processor.tower != nil,
                      hasTemplate: processor.template != nil)
        let router = Router(context: ServeContext.self)
        router.add(middleware: ErrorMiddleware(metrics: metrics))
        if let key = configuration.apiKey { router.add(middleware: APIKeyMiddleware(key: key)) }
        api.register(on: router)
        let host = configuration.host
        let app = Application(
            router: router,
            server: .http1(configuration: .init(additionalChannelHandlers: [ClientGoneHandler()])),
            configuration: .init(address: .hostname(host, port: configuration.port), serverName: "specdec"),
            services: [EngineService(engine: engine)],
            onServerRunning: { channel in
                let port = channel.localAddress?.port ?? configuration.port
                onListening("http://\(host):\(port)")
            },
            logger: { var l = Logger(label: "specdec.serve"); l.logLevel = .warning; return l }()
        )
        try await app.runService()
    }
}

/// Closes a connection whose client has closed its side. An HTTP/1.1 client waiting for an
/// answer does not half-close, so this is a client that gave up; closing the connection fires
/// the close callback that cancels its generation (otherwise a non-streaming request would only
/// notice when its answer is written).
final class ClientGoneHandler: ChannelInboundHandler, RemovableChannelHandler {
    typealias InboundIn = NIOAny

    func userInboundEventTriggered(context: ChannelHandlerContext, event: Any) {
        if let e = event as? ChannelEvent, e == .inputClosed { context.close(promise: nil) }
        context.fireUserInboundEventTriggered(event)
    }
}

/// Runs the engine's thread for as long as the application runs; on shutdown it is stopped
/// last (after the HTTP server has drained), so running requests finish.
struct EngineService: Service {
    let engine: Engine
    func run() async throws {
        engine.start()
        try? await gracefulShutdown()
        await engine.shutdown()
    }
}

/// Every error leaves as OpenAI-style JSON with its status; nothing becomes an empty 500.
struct ErrorMiddleware: RouterMiddleware {
    typealias Context = ServeContext
    let metrics: ServeMetrics

    func handle(_ request: Request, context: Context, next: (Request, Context) async throws -> Response) async throws -> Response {
        do {
            return try await next(request, context)
        } catch let e as APIError {
            metrics.errors.increment()
            return jsonError(e)
        } catch let e as HTTPError {
            metrics.errors.increment()
            let api: APIError
            switch e.status {
            case .notFound:
                api = APIError(status: 404, message: "no route \(request.method) \(request.uri.path) (see GET /v1/models, POST /v1/chat/completions, POST /v1/completions, GET /health, GET /metrics)",
                               code: "not_found")
            case .contentTooLarge:
                api = APIError(status: 413, message: "the request body is larger than the server's limit", code: "request_too_large")
            default:
                api = APIError(status: Int(e.status.code), message: e.body ?? e.status.reasonPhrase)
            }
            return jsonError(api)
        } catch is NIOTooManyBytesError {
            metrics.errors.increment()
            return jsonError(APIError(status: 413, message: "the request body is larger than the server's limit (serve --max-body-mb)", code: "request_too_large"))
        } catch {
            metrics.errors.increment()
            return jsonError(APIError(status: 500, message: "\(error)", type: "server_error"))
        }
    }
}

/// `--api-key`: every route but `/health` needs `Authorization: Bearer KEY`.
struct APIKeyMiddleware: RouterMiddleware {
    typealias Context = ServeContext
    let key: String

    func handle(_ request: Request, context: Context, next: (Request, Context) async throws -> Response) async throws -> Response {
        if request.uri.path == "/health" { return try await next(request, context) }
        guard let auth = request.headers[.authorization] else {
            throw APIError(status: 401, message: "missing API key: send the header 'Authorization: Bearer KEY'", code: "invalid_api_key")
        }
        guard auth == "Bearer \(key)" else {
            throw APIError(status: 401, message: "incorrect API key", code: "invalid_api_key")
        }
        return try await next(request, context)
    }
}

func jsonResponse<T: Encodable>(_ value: T, status: HTTPResponse.Status = .ok) -> Response {
    let enc = JSONEncoder()
    enc.outputFormatting = [.withoutEscapingSlashes]
    let data = (try? enc.encode(value)) ?? Data("{}".utf8)
    return Response(status: status, headers: [.contentType: "application/json"], body: .init(byteBuffer: ByteBuffer(bytes: data)))
}

func jsonError(_ e: APIError) -> Response {
    var r = jsonResponse(e.body, status: HTTPResponse.Status(code: e.status))
    if let s = e.retryAfter { r.headers[.retryAfter] = String(s) }
    return r
}
