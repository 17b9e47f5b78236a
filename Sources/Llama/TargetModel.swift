/// The seam between speculative decoding and the model it makes faster. The verifier, the
/// speculative decoder, the GGUF language-model drafter, the token iterator and the data
/// synthesizer see the target only through these two protocols, so another model family (or a
/// test's fake) plugs in by conforming; `LlamaModel` and `LlamaSession` are the GGUF LLaMA ones.
///
/// Losslessness rests on one promise every conforming model keeps: with `batchInvariant`, a row's
/// outputs are bit for bit those of the same tokens fed one at a time, whatever the batch.
public protocol TargetModel: AnyObject {
    /// Its file or name, for messages.
    var name: String { get }
    var vocabSize: Int { get }
    /// Hidden width: of token embeddings, hidden states and captured layer states.
    var width: Int { get }
    var layerCount: Int { get }
    /// Worker threads of its matrix work.
    var threads: Int { get }

    /// Writes the input embedding of `token` (in 0..<vocabSize) into `row` (width floats).
    func embed(token: Int32, into row: UnsafeMutablePointer<Float>)

    /// The LM head on `rows` contiguous final-norm hidden states (`ForwardOutput.hidden` rows):
    /// bit for bit the logits a forward returns for them.
    func logits(hidden: UnsafePointer<Float>, rows: Int, into out: UnsafeMutablePointer<Float>)

    /// A new sequence with a cache of `contextSize` positions (capped at the model's context).
    func makeTargetSession(contextSize: Int) -> any TargetSession

    /// Appends one token to each of `sessions` (distinct sessions of this model) in one batched
    /// forward, each row bit for bit its own single-token forward; `logits[i]`: whether session
    /// i's row gets logits.
    func step(_ sessions: [any TargetSession], tokens: [Int32], logits: [Bool], captureLayers: [Int]) throws -> [ForwardOutput]
}

/// One sequence being decoded by a `TargetModel`: a KV cache and the forward pass over it.
public protocol TargetSession: AnyObject {
    var target: any TargetModel { get }
    var contextSize: Int { get }
    /// Positions filled in the cache.
    var length: Int { get }

    /// Appends `tokens` in one batched forward. `mask` `.tree` lays a draft tree over the batch
    /// (entries take positions from their depth); `captureLayers` returns the residual stream
    /// entering those layers; `batchInvariant` false allows batch-dependent (faster) arithmetic.
    func forward(tokens: [Int32], logits: LogitRows, mask: BatchMask, captureLayers: [Int], batchInvariant: Bool) throws -> ForwardOutput

    /// The same over input vectors (n × width: token embeddings mixed with image rows).
    func forward(embeddings: [Float], logits: LogitRows, mask: BatchMask, captureLayers: [Int], batchInvariant: Bool) throws -> ForwardOutput

    /// Forgets every position from `newLength` on.
    func truncate(to newLength: Int)

    /// Keeps the batch entries `kept` of the last forward (an accepted tree path) in consecutive
    /// slots after `batchStart`.
    func compact(batchStart: Int, keeping kept: [Int])
}

extension TargetModel {
    public func logits(hidden: UnsafePointer<Float>, into out: UnsafeMutablePointer<Float>) {
        logits(hidden: hidden, rows: 1, into: out)
    }

    public func step(_ sessions: [any TargetSession], tokens: [Int32], logits: [Bool]) throws -> [ForwardOutput] {
        try step(sessions, tokens: tokens, logits: logits, captureLayers: [])
    }

    /// The input rows of `tokens` (count × width), refusing ids outside the vocabulary.
    public func embeddings(of tokens: [Int32]) throws -> [Float] {
        let d = width
        var x = [Float](repeating: 0, count: tokens.count * d)
        try x.withUnsafeMutableBufferPointer { xb in
            for (i, t) in tokens.enumerated() {
                guard t >= 0, Int(t) < vocabSize else { throw LlamaError.tokenOutOfRange(t, vocabSize: vocabSize) }
                embed(token: t, into: xb.baseAddress! + i * d)
            }
        }
        return x
    }
}

extension TargetSession {
    // The defaults every caller relies on: last row's logits, causal, nothing captured, batch-invariant.
    public func forward(tokens: [Int32], logits: LogitRows = .last, mask: BatchMask = .causal,
                        captureLayers: [Int] = [], batchInvariant: Bool = true) throws -> ForwardOutput {
        try forward(tokens: tokens, logits: logits, mask: mask, captureLayers: captureLayers, batchInvariant: batchInvariant)
    }

    public func forward(embeddings: [Float], logits: LogitRows = .last, mask: BatchMask = .causal,
                        captureLayers: [Int] = [], batchInvariant: Bool = true) throws -> ForwardOutput {
        try forward(embeddings: embeddings, logits: logits, mask: mask, captureLayers: captureLayers, batchInvariant: batchInvariant)
    }
}

extension LlamaModel: TargetModel {
    public var name: String { file.path }
    public var vocabSize: Int { config.vocabSize }
    public var width: Int { config.width }
    public var layerCount: Int { config.layerCount }

    public func embed(token: Int32, into row: UnsafeMutablePointer<Float>) {
        weights.tokenEmbedding.dequantize(row: Int(token), into: row)
    }

    public func makeTargetSession(contextSize: Int) -> any TargetSession { makeSession(contextSize: contextSize) }

    public func step(_ sessions: [any TargetSession], tokens: [Int32], logits: [Bool], captureLayers: [Int]) throws -> [ForwardOutput] {
        let own = sessions.compactMap { $0 as? LlamaSession }
        guard own.count == sessions.count else { throw LlamaError.badMask("a batched step needs distinct sessions of one model") }
        return try LlamaSession.step(own, tokens: tokens, logits: logits, captureLayers: captureLayers)
    }
}

extension LlamaSession: TargetSession {
    public var target: any TargetModel { model }
}
