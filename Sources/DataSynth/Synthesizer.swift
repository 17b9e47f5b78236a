#if canImport(Glibc)
import Glibc
#elseif canImport(Darwin)
import Darwin
#endif
import Foundation
import GGUF
import Kernels
import Llama
import Sampling
import Tokenizer
import Vision
import Shards

/// The vision tower that turns a sample's images into the target's input embeddings.
public struct SynthVision {
    public var tower: any VisionEncoder
    public var markers: ImageMarkers
    /// Store each image's bytes in its record (generated images are always stored).
    public var embedImages: Bool
    public var limits: ImageLimits
    public init(tower: any VisionEncoder, markers: ImageMarkers, embedImages: Bool = false, limits: ImageLimits = .default) {
        self.tower = tower; self.markers = markers; self.embedImages = embedImages; self.limits = limits
    }
}

/// The target answering prompts: each sample's token ids, loss mask and final-norm hidden states.
public final class Synthesizer {
    public let model: any TargetModel
    public let tokenizer: BPETokenizer
    public let template: ChatTemplate
    public let settings: GenerationSettings
    public let hiddenEncoding: HiddenEncoding
    public let vision: SynthVision?
    /// Target layers whose input residual streams each record also stores (EAGLE-3's auxiliary
    /// states, `--hidden-layers`); empty: none (format version 1).
    public let auxLayers: [Int]
    /// The layers whose outputs a forward captures for them: the stream entering layer j is
    /// layer j − 1's output.
    let captureLayers: [Int]
    /// Sessions of finished samples, reused by the next ones.
    private var freeSessions: [any TargetSession] = []

    public init(model: any TargetModel, tokenizer: BPETokenizer, template: ChatTemplate, settings: GenerationSettings,
                hidden: HiddenEncoding, vision: SynthVision? = nil, auxLayers: [Int] = []) throws {
        self.model = model; self.tokenizer = tokenizer; self.template = template
        self.settings = settings; self.hiddenEncoding = hidden; self.vision = vision; self.auxLayers = auxLayers
        captureLayers = auxLayers.map { $0 - 1 }
        if !auxLayers.isEmpty {
            guard hidden != .none else {
                throw DataError(file: "--hidden-layers", field: "hidden", reason: "auxiliary layer states need --hidden fp16 or int8, not none")
            }
            if let bad = auxLayers.first(where: { $0 < 1 || $0 >= model.layerCount }) {
                throw DataError(file: "--hidden-layers", field: "aux_layers",
                                reason: "layer \(bad) is not the input of one of the model's layers 1..<\(model.layerCount) (id j = the output of layer j − 1)")
            }
        }
        if let v = vision {
            guard v.tower.outputWidth == model.width else {
                throw DataError(file: v.tower.path, field: "projector output",
                                reason: "image embeddings of width \(v.tower.outputWidth) do not fit the model's width \(model.width)")
            }
        }
        guard settings.maxNew >= 0 else { throw DataError(file: "--max-new", field: "generation", reason: "must be ≥ 0") }
        guard settings.contextSize >= 2 else { throw DataError(file: "--ctx", field: "generation", reason: "must be ≥ 2") }
        _ = try Sampler(samplingParameters(seed: 0))   // validates the sampling settings
    }

    func samplingParameters(seed: UInt64) -> SamplingParameters {
        var p = SamplingParameters()
        p.temperature = settings.temperature
        p.topK = settings.topK; p.topP = settings.topP; p.minP = settings.minP
        p.seed = seed
        return p
    }

    /// The user text the target sees: the turn with the long-answer instruction appended.
    public func userText(_ turn: String) -> String {
        guard let l = settings.longAnswer, !l.isEmpty else { return turn }
        return turn + "\n" + l
    }

    /// Answers `count` prompts (`prompt(k)` gives the k-th and its sample index), up to `batch` at
    /// a time: each sample's prompt is prefilled on its own, then the decoding steps of all
    /// unfinished samples share one forward pass, so the weights are read once per step for the
    /// whole batch. Each record is bit for bit what it would be alone (batch-invariant kernels, a
    /// sampler seeded by its index), so the batch size never changes a dataset. `done` gets the
    /// records in order, each as soon as it and every one before it are finished.
    public func generate(count: Int, batch: Int, prompt: (Int) throws -> (SynthPrompt, Int),
                         done: (SampleRecord) throws -> Void) throws {
        let width = max(1, batch)
        var finished: [Int: SampleRecord] = [:]   // by k
        var emitted = 0
        var active: [(slot: Int, run: SampleRun)] = []
        var next = 0
        while next < count || !active.isEmpty {
            // Fill the batch; a new sample's prefill runs at once on its own session.
            while active.count < width, next < count {
                let (p, index) = try prompt(next)
                let session = freeSessions.popLast() ?? model.makeTargetSession(contextSize: settings.contextSize)
                let run = try SampleRun(synthesizer: self, prompt: p, index: index, session: session)
                try run.start()
                active.append((next, run))
                next += 1
            }
            // One batched step for every sample that waits on a token.
            var stepping: [SampleRun] = [], tokens: [Int32] = [], wantLogits: [Bool] = []
            for a in active {
                if case .step(let t, let l) = a.run.need { stepping.append(a.run); tokens.append(t); wantLogits.append(l) }
            }
            if !stepping.isEmpty {
                let outs = try model.step(stepping.map(\.session), tokens: tokens, logits: wantLogits,
                                      captureLayers: captureLayers)
                for (run, o) in zip(stepping, outs) { try run.received(o) }
            }
            // Finished samples leave the batch; records go out in order.
            for a in active where a.run.isDone {
                finished[a.slot] = try a.run.record()
                freeSessions.append(a.run.session)
            }
            active.removeAll { $0.run.isDone }
            while let r = finished.removeValue(forKey: emitted) { emitted += 1; try done(r) }
        }
    }

    /// The prompt's images through the tower, and how the record refers to them.
    func loadImages(_ prompt: SynthPrompt) throws -> ([ImageEmbedding], [ImageRef]) {
        guard !prompt.imagePaths.isEmpty else { return ([], []) }
        guard let v = vision else {
            throw DataError(file: prompt.id, field: "image", reason: "image samples need a vision tower (--mmproj TOWER.gguf); \(prompt.imagePaths.count) image(s) here, first \(prompt.imagePaths[0])")
        }
        var embeddings: [ImageEmbedding] = [], refs: [ImageRef] = []
        for (k, path) in prompt.imagePaths.enumerated() {
            let bytes: [UInt8]
            let generated = k < prompt.imageBytes.count
            if generated {
                bytes = prompt.imageBytes[k]
            } else {
                bytes = try readImageFile(path, limit: v.limits.maxFileBytes)
            }
            let image: RGBImage
            do { image = try ImageDecoder.decode(bytes, name: path, limits: v.limits) } catch {
                throw DataError(file: path, field: "image", reason: "\(error) (sample \(prompt.id))")
            }
            embeddings.append(v.tower.encode(image))
            refs.append(ImageRef(path: path, sha256: SHA256.hex(bytes), embedded: generated || v.embedImages ? bytes : nil))
        }
        return (embeddings, refs)
    }
}

/// One sample being generated: the turn loop of `Synthesizer.generate` as a state machine, so
/// that many samples can share each decoding step. `need` says what it waits for.
final class SampleRun {
    enum Need {
        /// One token to append (with logits unless it is the last token of the sample).
        case step(Int32, logits: Bool)
        case done
    }

    let synth: Synthesizer
    let prompt: SynthPrompt
    let index: Int
    let session: any TargetSession
    private(set) var need: Need = .done

    private var sampler: Sampler
    private let images: [ImageEmbedding]
    private let refs: [ImageRef]
    private var chat: [ChatMessage] = []
    private var tokens: [Int32] = [], loss: [UInt8] = [], imageMask: [UInt8] = [], hidden: [Float] = []
    private var aux: [[Float]]
    private var history: [Int32] = []        // text tokens only, for the sampler's repetition window
    private var stops: [String] = []
    private var pending: Int32? = nil        // the last sampled token, not yet forwarded
    private var lastStoppedAtEOG = false
    private var turn = 0
    private var answer: [Int32] = []
    private var logits: [Float] = []
    private var finishing = false
    private static let sentinel = "\u{E000}specdec-answer\u{E001}"

    init(synthesizer: Synthesizer, prompt: SynthPrompt, index: Int, session: any TargetSession) throws {
        guard !prompt.userTurns.isEmpty else { throw DataError(file: prompt.id, field: "turns", reason: "the prompt has no user turn") }
        synth = synthesizer; self.prompt = prompt; self.index = index; self.session = session
        (images, refs) = try synthesizer.loadImages(prompt)
        sampler = try Sampler(synthesizer.samplingParameters(seed: mixSeed(synthesizer.settings.seed, UInt64(index), salt: 0x7361_6d70)))
        aux = [[Float]](repeating: [], count: synthesizer.auxLayers.count)
        session.truncate(to: 0)
        if let s = synthesizer.settings.system { chat.append(.system(s)) }
    }

    private var capture: [Int] { synth.captureLayers }

    private func keep(_ o: ForwardOutput) {
        hidden += o.hidden
        for (k, l) in capture.enumerated() { aux[k] += o.layerStates[l]! }
    }

    /// Prefills the first turn and runs until the sample waits on a one-token step or is done
    /// (the prefills of later turns also run inside, alone).
    func start() throws {
        _ = try startTurn()   // the first turn always fits or throws
        try sampleOrEndTurn()
    }

    var isDone: Bool { if case .done = need { return true } else { return false } }

    /// The output of the step `need` asked for.
    func received(_ o: ForwardOutput) throws {
        keep(o)
        pending = nil
        if finishing { need = .done; return }
        logits = o.logits
        try sampleOrEndTurn()
    }

    /// Samples the next token of the current answer, or ends the turn (and starts the next).
    private func sampleOrEndTurn() throws {
        let s = synth.settings, eog = synth.tokenizer.endOfGenerationTokens
        var stop = "length"
        while answer.count < s.maxNew {
            if session.length >= session.contextSize { stop = "context"; break }
            let next = logits.withUnsafeBufferPointer { sampler.sample($0, history: history) }
            answer.append(next); tokens.append(next); loss.append(1); imageMask.append(0); history.append(next)
            pending = next
            if eog.contains(next) { stop = "eos"; break }
            if answer.count == s.maxNew { break }
            need = .step(next, logits: true)
            return
        }
        lastStoppedAtEOG = stop == "eos"
        stops.append(stop)
        let text = answer.last.map { eog.contains($0) } == true ? Array(answer.dropLast()) : answer
        chat.append(.assistant(synth.tokenizer.decodeString(text)))
        answer = []
        turn += 1
        if turn < prompt.userTurns.count, try startTurn() {
            try sampleOrEndTurn()
        } else {
            finish()
        }
    }

    /// The last sampled token still needs its hidden state.
    private func finish() {
        if let p = pending { finishing = true; need = .step(p, logits: false) } else { need = .done }
    }

    /// Prefills user turn `turn` (with the pending token in front); false when the context has no
    /// room for it and an answer.
    private func startTurn() throws -> Bool {
        let t = turn, model = synth.model, tokenizer = synth.tokenizer, ctx = session.contextSize
        var user = synth.userText(prompt.userTurns[t])
        var input: [Int32] = pending.map { [$0] } ?? []
        var multimodal: MultimodalSequence? = nil
        if t == 0 {
            if !images.isEmpty {
                do { user = try VisionPrompt.placeImages(in: user, count: images.count, markers: synth.vision!.markers) } catch {
                    throw DataError(file: prompt.id, field: "image", reason: "\(error)")
                }
            }
            chat.append(.user(user))
            let rendered = synth.template.render(messages: chat, addGenerationPrompt: true)
            if images.isEmpty {
                input += tokenizer.encode(rendered)
            } else {
                do {
                    multimodal = try VisionPrompt.build(rendered: rendered, images: images, markers: synth.vision!.markers,
                                                        tokenizer: tokenizer, target: model)
                } catch { throw DataError(file: prompt.id, field: "image", reason: "\(error)") }
                input = multimodal!.tokens
            }
        } else {
            guard VisionPrompt.markerCount(prompt.userTurns[t]) == 0 else {
                throw DataError(file: prompt.id, field: "turns[\(t)]", reason: "images are supported in the first user turn only")
            }
            // The template's text between the previous answer and the new generation prompt.
            var probe = chat
            probe[probe.count - 1] = .assistant(Self.sentinel)
            probe.append(.user(user))
            let rendered = synth.template.render(messages: probe, addGenerationPrompt: true)
            guard let r = rendered.range(of: Self.sentinel) else {
                throw DataError(file: prompt.id, field: "template", reason: "cannot continue a conversation with this chat template")
            }
            var suffix = String(rendered[r.upperBound...])
            if lastStoppedAtEOG, let last = tokens.last {
                let eogText = tokenizer.decodeString([last])
                if !eogText.isEmpty, suffix.hasPrefix(eogText) { suffix.removeFirst(eogText.count) }
            }
            let more = tokenizer.encode(suffix, addBos: false)
            guard session.length + input.count + more.count < ctx else { return false }   // no room for this turn and an answer
            chat.append(.user(user))
            input += more
        }
        guard session.length + input.count < ctx else {
            throw DataError(file: prompt.id, field: "prompt", reason: "the prompt needs \(input.count) tokens but the context holds \(ctx) (raise --ctx)")
        }
        let out = try multimodal.map { try session.forward(embeddings: $0.embeddings, logits: .last, captureLayers: capture) }
            ?? session.forward(tokens: input, logits: .last, captureLayers: capture)
        keep(out)
        let fresh = pending == nil ? input[...] : input[1...]
        tokens += fresh
        loss += repeatElement(0, count: fresh.count)
        imageMask += multimodal.map { $0.imageMask.map { $0 ? 1 : 0 } } ?? [UInt8](repeating: 0, count: fresh.count)
        history += fresh.filter { $0 >= 0 }
        pending = nil
        logits = out.logits
        return true
    }

    func record() throws -> SampleRecord {
        let width = synth.model.width, enc = synth.hiddenEncoding
        precondition(hidden.count == tokens.count * width, "hidden states out of step with tokens")
        let n = tokens.count
        return SampleRecord(index: index, id: prompt.id, messages: chat.map { Message(role: $0.role, content: $0.content) },
                            stopReasons: stops, tokens: tokens, lossMask: loss, imageMask: imageMask, images: refs,
                            hidden: HiddenStates.encode(hidden, rows: n, width: width, as: enc),
                            auxHidden: aux.map { HiddenStates.encode($0, rows: n, width: width, as: enc) })
    }
}

/// The bytes of an image file, refusing files over `limit` before reading them.
func readImageFile(_ path: String, limit: Int) throws -> [UInt8] {
    var st = stat()
    guard stat(path, &st) == 0 else {
        throw DataError(file: path, field: "image", reason: "cannot open: \(String(cString: strerror(errno)))")
    }
    guard Int(st.st_size) <= limit else {
        throw DataError(file: path, field: "image", reason: "\(st.st_size) bytes is more than the \(limit) allowed for an image file")
    }
    guard let data = FileManager.default.contents(atPath: path) else {
        throw DataError(file: path, field: "image", reason: "cannot read the file")
    }
    return [UInt8](data)
}
