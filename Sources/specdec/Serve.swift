import ArgumentParser
import Dispatch
import Foundation
import Generation
import GGUF
import Llama
import Serve
import Tokenizer
import Vision

struct ServeCommand: ParsableCommand {
    static let configuration = CommandConfiguration(
        commandName: "serve",
        abstract: "Serve the model over an OpenAI-compatible HTTP API (speculative decoding of image prompts included).",
        discussion: """
        Endpoints: POST /v1/chat/completions (messages whose content is a string or a list of \
        text and image_url parts; images as base64 data: URLs), POST /v1/completions (raw text), \
        GET /v1/models, GET /health, GET /metrics (Prometheus). stream: true sends server-sent \
        events ending with data: [DONE]. Responses carry usage and a "specdec" object (mode, tau, \
        tokens per step, draft acceptance).

        Scheduling: up to --parallel requests run at once; further ones wait in a queue of \
        --queue and beyond that get 429 with Retry-After. A request that starts while nothing \
        else runs is decoded speculatively with --draft; requests that overlap are decoded \
        plainly and share one batched forward per step. Every path is batch-invariant, so a \
        greedy request (temperature 0) answers exactly what `specdec decode` prints for the same \
        messages, whatever else runs.

        Limits, checked before any work: request body --max-body-mb, images at most 4096 per \
        side and 4 Mpixel (12 MB), max_tokens at most --max-tokens and the context. Listens on \
        loopback unless --host says otherwise; SIGTERM/SIGINT stop accepting, finish running \
        requests and exit 0.

        Example:
          specdec serve --mmproj checkpoints/demo-tower.gguf --draft checkpoints/vispec-draft.safetensors
          curl -s localhost:8080/v1/chat/completions -H 'Content-Type: application/json' \\
            -d '{"messages":[{"role":"user","content":"Hello"}],"temperature":0,"max_tokens":32}'
        """
    )

    @OptionGroup var modelOption: ModelOption
    @OptionGroup var precisionOption: PrecisionOption

    @Option(help: ArgumentHelp("Vision tower (llama.cpp mmproj GGUF): accept image_url parts.", valueName: "TOWER.gguf"))
    var mmproj: String?

    @OptionGroup var draftOptions: DraftOptions

    @Option(help: "Address to listen on (default: loopback only).")
    var host = "127.0.0.1"

    @Option(help: "Port to listen on (0: any free port; the line printed at start says which).")
    var port = 8080

    @Option(help: "Requests decoded at once (they share batched forwards).")
    var parallel = 4

    @Option(help: "Requests that may wait for a slot; more get 429.")
    var queue = 64

    @Option(name: .customLong("api-key"), help: "Require 'Authorization: Bearer KEY' (default: $SPECDEC_API_KEY, else no key).")
    var apiKey: String?

    @Option(name: [.short, .customLong("threads")], help: "Worker threads (default: all cores).")
    var threads: Int = defaultThreadCount

    @Option(help: "Context size per request in tokens (default: the model's, at most 4096; as decode).")
    var ctx: Int?

    @Option(name: .customLong("max-tokens"), help: "Largest max_tokens a request may ask for.")
    var maxTokens = 4096

    @Option(name: .customLong("max-body-mb"), help: "Largest request body in MiB.")
    var maxBodyMB = 16

    func validate() throws {
        guard (0...65535).contains(port) else { throw ValidationError("--port must be in 0...65535") }
        guard parallel >= 1 else { throw ValidationError("--parallel must be ≥ 1") }
        guard queue >= 0 else { throw ValidationError("--queue must be ≥ 0") }
        guard threads >= 1 else { throw ValidationError("--threads must be ≥ 1") }
        guard maxTokens >= 1 else { throw ValidationError("--max-tokens must be ≥ 1") }
        guard maxBodyMB >= 1 else { throw ValidationError("--max-body-mb must be ≥ 1") }
        if let c = ctx, c < 2 { throw ValidationError("--ctx must be ≥ 2") }
    }

    func run() throws {
        let (path, gguf, model, tokenizer) = try modelOption.load(threads: threads, precision: precisionOption)
        let tower = try mmproj.map { try VisionTower(path: $0) }
        let processor = try UserInputProcessor(model: model, tokenizer: tokenizer, gguf: gguf, tower: tower)
        let contextSize = min(ctx ?? min(model.config.contextLength, 4096), model.config.contextLength)

        var engine = EngineConfiguration(contextSize: contextSize, maxParallel: parallel, maxQueue: queue)
        var draftKind = "none"
        if let draftPath = draftOptions.draft {
            let loaded = try LoadedDraft.load(path: draftPath, target: model, targetPath: path, contextSize: contextSize, threads: threads)
            let shape = try draftOptions.shape()
            engine.drafter = loaded.drafter
            engine.shape = shape
            // The budget is chosen again for every speculative request; say it once, not per request.
            let said = LockedBox(false)
            engine.budget = try draftOptions.budgetChooser(model: model, modelPath: path, metadata: loaded.metadata, shape: shape) { line in
                if !said.value { said.value = true; printErr(line + " (first request; chosen per request)") }
            }
            engine.fallback = draftOptions.tree.fallback
            draftKind = loaded.kind
        }
        var config = ServerConfiguration(modelID: ((path as NSString).lastPathComponent as NSString).deletingPathExtension, engine: engine)
        config.host = host
        config.port = port
        config.apiKey = apiKey ?? ProcessInfo.processInfo.environment["SPECDEC_API_KEY"].flatMap { $0.isEmpty ? nil : $0 }
        config.maxTokensLimit = maxTokens
        config.maxBodyBytes = maxBodyMB << 20

        let summary = "model \(config.modelID), tower \(mmproj ?? "none"), draft \(draftKind), context \(contextSize), parallel \(parallel), queue \(queue), \(threads) threads"
        let done = DispatchSemaphore(value: 0)
        let failure = LockedBox<Error?>(nil)
        Task {
            do {
                try await SpecdecServer.run(model: model, tokenizer: tokenizer, processor: processor, configuration: config) { url in
                    // The one line a user (and the tests) read: where the server listens.
                    print("specdec serve: listening on \(url) (\(summary))")
                    fflush(stdout)
                }
            } catch { failure.value = error }
            done.signal()
        }
        done.wait()
        if let e = failure.value { throw CLIError("serve: \(e)") }
        printErr("specdec serve: stopped")
    }
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
