import ArgumentParser
import Foundation
import Serve

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

    @OptionGroup var threadsOption: ThreadsOption

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
        guard maxTokens >= 1 else { throw ValidationError("--max-tokens must be ≥ 1") }
        guard maxBodyMB >= 1 else { throw ValidationError("--max-body-mb must be ≥ 1") }
        if let c = ctx, c < 2 { throw ValidationError("--ctx must be ≥ 2") }
    }

    func run() throws {
        var r = ServeRequest()
        r.host = host; r.port = port; r.parallel = parallel; r.queue = queue; r.apiKey = apiKey; r.ctx = ctx
        r.maxTokens = maxTokens; r.maxBodyMB = maxBodyMB; r.towerPath = mmproj
        r.draft = draftOptions.draft; r.tree = draftOptions.tree.request(); r.threads = threadsOption.threads
        try r.run(target: try modelOption.load(threads: r.threads, precision: precisionOption), log: printErr) { line in
            // The one line a user (and the tests) read: where the server listens.
            print(line)
            fflush(stdout)
        }
        printErr("specdec serve: stopped")
    }
}
