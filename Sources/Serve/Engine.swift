import Draft
import Foundation
import Generation
import Llama
import Sampling
import Tokenizer
import Verify
import Vision

/// What a request asks the engine to generate, checked and decoded by the HTTP layer.
struct GenerationRequest: Sendable {
    enum Prompt: Sendable {
        case chat([UserMessage])
        case raw(String)
    }
    var prompt: Prompt
    var params: SamplingParameters
    /// nil: until the context is full.
    var maxTokens: Int?
    var stops: [String]
    /// Generate past end-of-generation tokens (`ignore_eos`).
    var ignoreEOS = false
}

/// What the engine tells a request's handler, in order: `started` or `failed`, then `text`
/// pieces, then `finished`.
enum EngineEvent: Sendable {
    case started(promptTokens: Int, speculative: Bool)
    case text(String)
    case finished(Completion)
    case failed(APIError)
}

struct Completion: Sendable {
    var finishReason: String
    var promptTokens: Int
    var completionTokens: Int
    var report: DecodingReport
}

/// A request in the engine. The handler may cancel it at any time (client gone); the engine
/// then drops it at its next step, freeing its KV cache.
final class Job: @unchecked Sendable {
    let request: GenerationRequest
    let events: AsyncStream<EngineEvent>.Continuation
    private let lock = NSLock()
    private var _cancelled = false

    // Engine thread only.
    var iterator: TokenIterator?
    var promptTokens = 0
    var text: StopMatcher
    var streamDecoder: StreamingDecoder?

    init(request: GenerationRequest, events: AsyncStream<EngineEvent>.Continuation) {
        self.request = request
        self.events = events
        text = StopMatcher(stops: request.stops)
    }

    var cancelled: Bool { lock.lock(); defer { lock.unlock() }; return _cancelled }
    func cancel() { lock.lock(); _cancelled = true; lock.unlock() }
}

/// Holds back text that may be the start of a stop string, and cuts at the first one.
struct StopMatcher {
    let stops: [String]
    private(set) var all = ""
    private var sent = 0  // characters of `all` already released
    private(set) var hit = false

    init(stops: [String]) { self.stops = stops.filter { !$0.isEmpty } }

    /// Adds generated text; returns what can be shown now.
    mutating func push(_ piece: String) -> String {
        guard !hit else { return "" }
        all += piece
        if stops.isEmpty { return release(upTo: all.count) }
        if let cut = stops.compactMap({ all.range(of: $0) }).min(by: { $0.lowerBound < $1.lowerBound }) {
            hit = true
            all = String(all[..<cut.lowerBound])
            return release(upTo: all.count)
        }
        // Keep the longest tail that is a prefix of some stop string.
        var keep = 0
        for s in stops {
            for k in stride(from: min(s.count, all.count), to: keep, by: -1) where all.hasSuffix(String(s.prefix(k))) {
                keep = k; break
            }
        }
        return release(upTo: all.count - keep)
    }

    /// The end of the generation: whatever was held back.
    mutating func flush() -> String { release(upTo: all.count) }

    private mutating func release(upTo end: Int) -> String {
        guard end > sent else { return "" }
        let a = all.index(all.startIndex, offsetBy: sent), b = all.index(all.startIndex, offsetBy: end)
        sent = end
        return String(all[a..<b])
    }
}

/// How the engine decodes; set by `specdec serve`'s options.
public struct EngineConfiguration {
    public var contextSize: Int
    public var maxParallel: Int
    public var maxQueue: Int
    /// Speculative decoding of a request that runs alone (nil: always plain).
    public var drafter: Drafter?
    public var shape: TreeShape?
    public var auto: AutoTree?
    public var fallback: FallbackPolicy?
    /// `--draft-p-min`: one threshold state for every speculative request (the bandit learns
    /// across them; only the engine thread touches it).
    public var pMin: PMinBandit?

    public init(contextSize: Int, maxParallel: Int, maxQueue: Int, drafter: Drafter? = nil, shape: TreeShape? = nil,
                auto: AutoTree? = nil, fallback: FallbackPolicy? = nil) {
        self.contextSize = contextSize; self.maxParallel = maxParallel; self.maxQueue = maxQueue
        self.drafter = drafter; self.shape = shape; self.auto = auto; self.fallback = fallback
    }
}

/// The one thread that runs the model. Requests wait in a bounded queue; up to `maxParallel`
/// run at once. Scheduling policy (README "Serving"): a request that starts while nothing else
/// runs is decoded speculatively (when a draft is loaded); requests that start while others run
/// are decoded plainly, and all plain requests advance together in one batched forward
/// (`TokenIterator.stepPlain`). On this 2-core CPU a batched plain step of 8 rows costs about
/// 2.6 single steps, while speculation gains at most ~1.2× per stream, so under load batching
/// gives more tokens/s; the speculative stream keeps its own steps. Every path is batch-invariant,
/// so a greedy answer is the same in any mix.
final class Engine: @unchecked Sendable {
    let model: any TargetModel
    let tokenizer: BPETokenizer
    let processor: UserInputProcessor
    let config: EngineConfiguration
    let eog: Set<Int32>
    let metrics: ServeMetrics

    private let cond = NSCondition()
    private var queue: [Job] = []
    private var active: [Job] = []   // engine thread only (count read under `cond`)
    private var activeCount = 0
    /// Requests accepted and not yet ended (running or waiting): at most maxParallel + maxQueue.
    private var inFlight = 0
    private var stopping = false
    private var thread: Thread?
    private var finishedSignal: (() -> Void)?

    init(model: any TargetModel, tokenizer: BPETokenizer, processor: UserInputProcessor, config: EngineConfiguration,
         metrics: ServeMetrics) {
        self.model = model; self.tokenizer = tokenizer; self.processor = processor; self.config = config
        self.metrics = metrics
        eog = tokenizer.endOfGenerationTokens
    }

    func start() {
        let t = Thread { [self] in loop() }
        t.name = "specdec-engine"
        t.stackSize = 8 << 20
        thread = t
        t.start()
    }

    /// Queues `request`; throws 429 when the queue is full, 503 while shutting down.
    func submit(_ request: GenerationRequest) throws -> (Job, AsyncStream<EngineEvent>) {
        let (stream, continuation) = AsyncStream<EngineEvent>.makeStream()
        let job = Job(request: request, events: continuation)
        cond.lock(); defer { cond.unlock() }
        guard !stopping else {
            throw APIError(status: 503, message: "the server is shutting down", type: "server_error", code: "shutting_down", retryAfter: 5)
        }
        guard inFlight < config.maxParallel + config.maxQueue else {
            metrics.rejected.increment()
            throw APIError(status: 429, message: "the server is busy: \(activeCount) requests running and \(queue.count) waiting (--queue \(config.maxQueue)); retry later",
                           type: "rate_limit_exceeded", code: "queue_full", retryAfter: 1)
        }
        queue.append(job)
        inFlight += 1
        metrics.queueDepth.set(Double(queue.count))
        cond.signal()
        return (job, stream)
    }

    /// Stops taking requests, cancels those still waiting, and returns once the running ones
    /// are finished.
    func shutdown() async {
        await withCheckedContinuation { (c: CheckedContinuation<Void, Never>) in
            cond.lock()
            stopping = true
            inFlight -= queue.count
            for j in queue { j.events.yield(.failed(APIError(status: 503, message: "the server is shutting down", type: "server_error", code: "shutting_down"))); j.events.finish() }
            queue.removeAll()
            if thread == nil { cond.unlock(); c.resume(); return }
            finishedSignal = { c.resume() }
            cond.signal()
            cond.unlock()
        }
    }

    private func loop() {
        while true {
            cond.lock()
            while queue.isEmpty && active.isEmpty && !stopping { cond.wait() }
            if stopping && active.isEmpty && queue.isEmpty {
                let done = finishedSignal
                cond.unlock()
                done?()
                return
            }
            var admitted: [Job] = []
            while !queue.isEmpty && active.count + admitted.count < config.maxParallel { admitted.append(queue.removeFirst()) }
            metrics.queueDepth.set(Double(queue.count))
            // Speculative only for a request that starts alone.
            let alone = active.isEmpty && admitted.count == 1 && queue.isEmpty
            cond.unlock()

            for job in admitted { admit(job, speculative: alone && config.drafter != nil) }
            setActiveCount()
            guard !active.isEmpty else { continue }

            for job in active where job.cancelled { finish(job, reason: nil) }
            active.removeAll { $0.iterator == nil }
            if let spec = active.first(where: { $0.iterator!.isSpeculative }) {
                do { deliver(try spec.iterator!.step(), to: spec) } catch { fail(spec, error) }
            }
            // (The speculative step may have finished its job.)
            let plain = active.filter { $0.iterator.map { !$0.isSpeculative } ?? false }
            if !plain.isEmpty {
                do {
                    let outs = try TokenIterator.stepPlain(plain.map { $0.iterator! })
                    for (job, toks) in zip(plain, outs) { deliver(toks, to: job) }
                } catch { for job in plain { fail(job, error) } }
            }
            active.removeAll { $0.iterator == nil }
            setActiveCount()
        }
    }

    /// A request has ended (finished, failed or cancelled).
    private func release() {
        cond.lock(); inFlight -= 1; cond.unlock()
    }

    private func setActiveCount() {
        cond.lock(); activeCount = active.count; cond.unlock()
        metrics.active.set(Double(active.count))
    }

    /// Prepares the prompt and prefills it; a request that cannot run is answered here.
    private func admit(_ job: Job, speculative: Bool) {
        guard !job.cancelled else { job.events.finish(); release(); metrics.cancelled.increment(); return }
        do {
            let input: LMInput
            switch job.request.prompt {
            case .chat(let messages): input = try processor.prepare(messages: messages)
            case .raw(let text): input = try processor.prepare(raw: text)
            }
            let room = config.contextSize - input.count
            guard room > 0 else {
                throw APIError(status: 400, message: "the prompt has \(input.count) tokens but the context holds \(config.contextSize) (serve --ctx)",
                               code: "context_length_exceeded", param: "messages")
            }
            if let m = job.request.maxTokens, input.count + m > config.contextSize {
                throw APIError(status: 400, message: "the prompt has \(input.count) tokens and max_tokens asks for \(m), more than the context's \(config.contextSize) (at most \(room) here)",
                               code: "context_length_exceeded", param: "max_tokens")
            }
            let maxTokens = job.request.maxTokens ?? room
            let spec: (drafter: Drafter, shape: TreeShape)? = speculative ? (config.drafter!, config.shape!) : nil
            job.iterator = try TokenIterator(model: model, prompt: input, contextSize: config.contextSize, params: job.request.params,
                                             maxTokens: maxTokens, eog: job.request.ignoreEOS ? [] : eog, speculative: spec, auto: config.auto,
                                             fallback: config.fallback, pMin: config.pMin)
            job.promptTokens = input.count
            job.streamDecoder = StreamingDecoder(tokenizer: tokenizer)
            job.events.yield(.started(promptTokens: input.count, speculative: spec != nil))
            active.append(job)
            // The first token comes from the prefill's logits: emit it now (time to first token).
            deliver(try job.iterator!.step(), to: job)
        } catch {
            fail(job, error)
        }
    }

    private func deliver(_ tokens: [Int32], to job: Job) {
        guard let it = job.iterator else { return }
        var piece = ""
        for t in tokens { piece += job.streamDecoder!.push(t) }
        let shown = job.text.push(piece)
        if !shown.isEmpty { job.events.yield(.text(shown)) }
        if job.text.hit { finish(job, reason: "stop") } else if let stop = it.stop {
            finish(job, reason: stop == .eos ? "stop" : "length")
        }
    }

    /// Ends a job: `reason` nil means it was cancelled.
    private func finish(_ job: Job, reason: String?) {
        guard let it = job.iterator else { return }
        job.iterator = nil
        release()
        guard let reason else { job.events.finish(); metrics.cancelled.increment(); return }
        if !job.text.hit {
            let tail = job.text.push(job.streamDecoder!.flush()) + job.text.flush()
            if !tail.isEmpty { job.events.yield(.text(tail)) }
        }
        let r = it.result
        var report = DecodingReport(mode: it.isSpeculative ? "speculative" : "plain", decode_tokens_per_s: r.tokensPerSecond,
                                    prefill_seconds: r.prefillSeconds)
        if let s = r.speculative {
            report.steps = s.steps
            report.tau = s.tau
            report.tokens_per_step = s.tokensPerStep
            report.draft_acceptance = s.draftNodes > 0 ? Double(s.acceptedDraftTokens) / Double(s.draftNodes) : 0
            if s.contextNodes > 0 { report.context_tokens_per_step = s.contextTokensPerStep }
            report.acceptance_by_depth = s.acceptanceByDepth
            metrics.tau.set(s.tau)
        }
        let completion = Completion(finishReason: reason, promptTokens: job.promptTokens, completionTokens: r.tokens.count, report: report)
        metrics.record(completion)
        job.events.yield(.finished(completion))
        job.events.finish()
    }

    private func fail(_ job: Job, _ error: Error) {
        job.iterator = nil
        release()
        let api: APIError
        switch error {
        case let e as APIError: api = e
        case let e as UserInputError: api = .invalid(e.description, param: "messages")
        case let e as VisionPromptError: api = .invalid(e.description, param: "messages")
        case let e as ImageError: api = .invalid(e.description, param: "messages")
        default: api = APIError(status: 500, message: "\(error)", type: "server_error")
        }
        job.events.yield(.failed(api))
        job.events.finish()
    }
}
