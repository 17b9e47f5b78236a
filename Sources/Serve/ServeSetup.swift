import Dispatch
import Foundation
import Generation
import Llama
import Vision

/// `serve`'s settings as plain values, and the server they make.
public struct ServeRequest {
    public var host = "127.0.0.1"
    public var port = 8080
    public var parallel = 4
    public var queue = 64
    /// nil: $SPECDEC_API_KEY, else no key.
    public var apiKey: String?
    /// Context per request (nil: the model's, at most 4096).
    public var ctx: Int?
    public var maxTokens = 4096
    public var maxBodyMB = 16
    public var towerPath: String?
    /// Speculative decoding of a request that runs alone, with this draft and tree.
    public var draft: String?
    public var tree = TreeRequest()
    public var threads = defaultThreadCount

    public init() {}

    /// Loads the tower and the draft for `target` and serves until SIGTERM/SIGINT, blocking the
    /// calling thread. `onListening` gets the line that says where the server listens and what
    /// it serves; `log`, the auto tree budget's choice.
    public func run(target: LoadedTarget, log: @escaping (String) -> Void, onListening: @escaping @Sendable (String) -> Void) throws {
        let model = target.model, tokenizer = target.tokenizer
        let tower = try towerPath.map { try VisionTower(path: $0) }
        let processor = try UserInputProcessor(model: model, tokenizer: tokenizer, gguf: target.gguf, tower: tower)
        let contextSize = model.config.contextSize(requested: ctx)

        var engine = EngineConfiguration(contextSize: contextSize, maxParallel: parallel, maxQueue: queue)
        var draftKind = "none"
        if let draft {
            let loaded = try LoadedDraft.load(path: draft, target: model, targetPath: target.path, contextSize: contextSize, threads: threads)
            let shape = try tree.shape()
            engine.drafter = loaded.drafter
            engine.shape = shape
            engine.auto = try tree.autoTree(model: model, modelPath: target.path, draft: loaded, shape: shape, log: log)
            engine.fallback = tree.fallback
            engine.pMin = tree.pMinBandit()
            draftKind = loaded.kind
        }
        var config = ServerConfiguration(modelID: ((target.path as NSString).lastPathComponent as NSString).deletingPathExtension, engine: engine)
        config.host = host
        config.port = port
        config.apiKey = apiKey ?? ProcessInfo.processInfo.environment["SPECDEC_API_KEY"].flatMap { $0.isEmpty ? nil : $0 }
        config.maxTokensLimit = maxTokens
        config.maxBodyBytes = maxBodyMB << 20

        let summary = "model \(config.modelID), tower \(towerPath ?? "none"), draft \(draftKind), context \(contextSize), parallel \(parallel), queue \(queue), \(threads) threads"
        let done = DispatchSemaphore(value: 0)
        let failure = LockedBox<Error?>(nil)
        Task { [config] in
            do {
                try await SpecdecServer.run(model: model, tokenizer: tokenizer, processor: processor, configuration: config) { url in
                    onListening("specdec serve: listening on \(url) (\(summary))")
                }
            } catch { failure.value = error }
            done.signal()
        }
        done.wait()
        if let e = failure.value { throw ServeError("serve: \(e)") }
    }
}

/// Why serving stopped with an error; `description` is meant for the user as is.
public struct ServeError: Error, CustomStringConvertible {
    public var description: String
    public init(_ description: String) { self.description = description }
}

/// A value shared between the serving task and the main thread.
final class LockedBox<T>: @unchecked Sendable {
    private let lock = NSLock()
    private var _value: T
    init(_ v: T) { _value = v }
    var value: T {
        get { lock.lock(); defer { lock.unlock() }; return _value }
        set { lock.lock(); _value = newValue; lock.unlock() }
    }
}
