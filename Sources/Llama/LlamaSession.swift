#if canImport(Glibc)
import Glibc
#elseif canImport(Darwin)
import Darwin
#endif
import Kernels

/// What one forward pass returns. Row-major float arrays.
public struct ForwardOutput {
    /// `logitRowIndices.count` × vocab logits.
    public var logits: [Float]
    /// Batch positions the logits rows belong to.
    public var logitRowIndices: [Int]
    /// n × width: the final-norm hidden state of every position (what a draft model reads).
    public var hidden: [Float]
    /// For each requested layer l: n × width residual stream after layer l.
    public var layerStates: [Int: [Float]]

    /// What a draft reads at batch positions `rows`: the final-norm state (`layers` empty) or
    /// the captured layers' states side by side (rows × layers·width). Nil when a layer was not
    /// captured.
    public func features(rows: [Int], layers: [Int], width d: Int) -> [Float]? {
        var out: [Float] = []
        out.reserveCapacity(rows.count * d * max(layers.count, 1))
        if layers.isEmpty {
            for i in rows { out += hidden[i * d ..< (i + 1) * d] }
            return out
        }
        let states = layers.map { layerStates[$0] }
        guard states.allSatisfy({ $0 != nil }) else { return nil }
        for i in rows { for s in states { out += s![i * d ..< (i + 1) * d] } }
        return out
    }

    /// Logits row of batch position `i` (which must have been requested).
    public func logits(at i: Int, vocab: Int) -> ArraySlice<Float> {
        let r = logitRowIndices.firstIndex(of: i)!
        return logits[r * vocab ..< (r + 1) * vocab]
    }
}

/// Which entries of a batch each entry attends to, besides the whole cache before the batch.
public enum BatchMask: Sendable, Equatable {
    /// Entry i sees entries 0...i (prefill, plain decoding).
    case causal
    /// A draft tree: `parents[i]` is the batch index of entry i's parent (−1 = the cached prefix);
    /// entry i sees its ancestors and itself and sits at position start + its depth. Parents must
    /// come before children.
    case tree(parents: [Int])

    /// For each entry, the batch entries it sees (ascending) and its depth below the prefix.
    func resolve(count n: Int) throws -> (visible: [[Int]], depth: [Int])? {
        guard case .tree(let parents) = self else { return nil }
        guard parents.count == n else { throw LlamaError.badMask("\(parents.count) parents for \(n) tokens") }
        var visible: [[Int]] = [], depth: [Int] = []
        for (i, p) in parents.enumerated() {
            guard p >= -1, p < i else { throw LlamaError.badMask("entry \(i) has parent \(p); parents must come before children") }
            visible.append((p < 0 ? [] : visible[p]) + [i])
            depth.append(p < 0 ? 0 : depth[p] + 1)
        }
        return (visible, depth)
    }
}

/// One sequence being decoded: a preallocated KV cache over `contextSize` positions plus the
/// forward pass (llama2.c style: embed, per layer RMSNorm → attention → RMSNorm → SwiGLU, final
/// norm, head). Not thread-safe; create one per sequence.
public final class LlamaSession {
    public let model: LlamaModel
    public let contextSize: Int
    /// Positions filled in the cache.
    public private(set) var length = 0

    private let c: LlamaConfig
    /// Every layer's keys and values: contextSize slots.
    private let cache: KVCache
    /// RoPE angles of every position of the context.
    private let ropeTable: RoPETable

    init(model: LlamaModel, contextSize: Int) {
        self.model = model
        self.c = model.config
        self.contextSize = max(1, contextSize)
        cache = KVCache(layers: c.layerCount, width: c.kvWidth, capacity: self.contextSize)
        retainedWorkspace = Workspace(config: c, rows: 1)
        ropeTable = RoPETable(RoPE(headDim: c.headDim, ropeDim: c.ropeDim, base: c.ropeBase, scale: c.ropeScale),
                              positions: self.contextSize)
    }

    /// Batches at least this large use OpenBLAS when batch invariance is not required.
    public static let blasMinimumBatch = 16
    /// This session's forward buffers, kept for batches up to `retainedWorkspaceRows`.
    private var retainedWorkspace: Workspace

    /// Decode, verify and batched steps stay under this; a prompt's larger batch gets a workspace
    /// for the call only, so a long prefill does not pin megabytes in every session.
    static let retainedWorkspaceRows = 64

    /// A workspace of at least `n` rows.
    private func workspace(rows n: Int) -> Workspace {
        if n <= retainedWorkspace.rows { return retainedWorkspace }
        let w = Workspace(config: c, rows: n)
        if n <= Self.retainedWorkspaceRows { retainedWorkspace = w }
        return w
    }

    private var scratch: UnsafeMutablePointer<Float>?
    private var scratchCount = 0

    private func blasScratch(_ count: Int) -> UnsafeMutablePointer<Float> {
        if let s = scratch, scratchCount >= count { return s }
        scratch?.deallocate()
        scratch = .allocate(capacity: count)
        scratchCount = count
        return scratch!
    }

    deinit {
        scratch?.deallocate()
    }

    /// Forgets every position from `length` on.
    public func truncate(to newLength: Int) {
        length = min(max(0, newLength), length)
    }

    /// Appends `tokens` to the sequence in one batched forward.
    public func forward(tokens: [Int32], logits: LogitRows = .last, mask: BatchMask = .causal,
                        captureLayers: [Int] = [], batchInvariant: Bool = true) throws -> ForwardOutput {
        guard !tokens.isEmpty else { throw LlamaError.emptyInput }
        return try forward(embeddings: model.embeddings(of: tokens), logits: logits, mask: mask,
                           captureLayers: captureLayers, batchInvariant: batchInvariant)
    }

    /// Appends `embeddings` (n × width input vectors, e.g. token embeddings mixed with projected
    /// image patches) to the sequence in one batched forward. With a tree mask the entries occupy
    /// cache slots length..<length+n but take positions from their depth; keep the accepted ones
    /// with `compact(keeping:)`.
    ///
    /// `batchInvariant` (the default) computes every token exactly as a single-token forward would,
    /// bit for bit, whatever the batch: what verification needs. `false` lets large batches use
    /// OpenBLAS sgemm, much faster for a prompt but with batch-dependent rounding.
    public func forward(embeddings: [Float], logits: LogitRows = .last, mask: BatchMask = .causal,
                        captureLayers: [Int] = [], batchInvariant: Bool = true) throws -> ForwardOutput {
        let d = c.width
        let n = embeddings.count / d
        guard n > 0, embeddings.count == n * d else { throw LlamaError.emptyInput }
        guard length + n <= contextSize else { throw LlamaError.contextFull(needed: length + n, capacity: contextSize) }
        let tree = try mask.resolve(count: n)
        let seg = Segment(session: self, rows: 0..<n, start: length, tree: tree, logits: logits)
        return Self.forward(model: model, segments: [seg], x: embeddings, captureLayers: captureLayers, batchInvariant: batchInvariant)[0]
    }

    /// Appends one token to each of `sessions` (distinct sessions of one model) in one batched
    /// forward, so that the weights are read once for all of them: what generating many samples
    /// at once needs. `logits[i]`: whether session i's row gets logits. Each session's output is
    /// bit for bit that of its own `forward(tokens: [tokens[i]])` (the batch-invariant kernels).
    public static func step(_ sessions: [LlamaSession], tokens: [Int32], logits: [Bool],
                            captureLayers: [Int] = []) throws -> [ForwardOutput] {
        guard let first = sessions.first, tokens.count == sessions.count, logits.count == sessions.count else { throw LlamaError.emptyInput }
        let model = first.model
        guard Set(sessions.map(ObjectIdentifier.init)).count == sessions.count, sessions.allSatisfy({ $0.model === model }) else {
            throw LlamaError.badMask("a batched step needs distinct sessions of one model")
        }
        let x = try model.embeddings(of: tokens)
        var segments: [Segment] = []
        for (i, s) in sessions.enumerated() {
            guard s.length < s.contextSize else { throw LlamaError.contextFull(needed: s.length + 1, capacity: s.contextSize) }
            segments.append(Segment(session: s, rows: i..<(i + 1), start: s.length, tree: nil, logits: logits[i] ? .last : .none))
        }
        return forward(model: model, segments: segments, x: x, captureLayers: captureLayers, batchInvariant: true)
    }

    /// One session's rows of a batched forward.
    struct Segment {
        let session: LlamaSession
        /// Its rows of the batch.
        let rows: Range<Int>
        /// The cache slot its first row goes to (the session's length before the forward).
        let start: Int
        let tree: (visible: [[Int]], depth: [Int])?
        let logits: LogitRows
    }

    /// The forward pass over the rows of one or more sessions: the matrix products run over all
    /// rows together; RoPE, the cache writes and attention per session. One output per segment.
    static func forward(model: LlamaModel, segments: [Segment], x embeddings: [Float],
                        captureLayers: [Int], batchInvariant: Bool) -> [ForwardOutput] {
        let c = model.config
        let d = c.width, kvw = c.kvWidth, ff = c.ffnWidth
        let n = embeddings.count / d
        let threads = model.threads
        let act = model.activationQuant
        let scratchOwner = segments[0].session
        /// y = x · Wᵀ for `count` activation rows, by the path this forward allows.
        func mul(_ w: PackedMatrix, _ x: UnsafePointer<Float>, _ count: Int, _ y: UnsafeMutablePointer<Float>) {
            if act == .none && !batchInvariant && count >= blasMinimumBatch {
                w.multiplyBLAS(x, n: count, into: y, threads: threads, scratch: scratchOwner.blasScratch(w.blasScratchCount))
            } else {
                w.multiply(x, n: count, into: y, threads: threads, activations: act)
            }
        }
        /// Several matrices over the same activations, in one parallel region when batch-invariant.
        func mul(_ parts: [(matrix: PackedMatrix, output: UnsafeMutablePointer<Float>)], _ x: UnsafePointer<Float>, _ count: Int) {
            if act == .none && !batchInvariant && count >= blasMinimumBatch {
                for p in parts { mul(p.matrix, x, count, p.output) }
            } else {
                PackedMatrix.multiply(parts, x: x, n: count, threads: threads, activations: act)
            }
        }
        // Each row's session, cache slot and RoPE position.
        var owner = [Int](repeating: 0, count: n), slot = owner, position = owner
        for (k, s) in segments.enumerated() {
            for (j, i) in s.rows.enumerated() {
                owner[i] = k; slot[i] = s.start + j; position[i] = s.start + (s.tree?.depth[j] ?? j)
            }
        }

        let ws = scratchOwner.workspace(rows: n)
        let x = ws.x, h = ws.h, q = ws.q, k = ws.k, v = ws.v, attn = ws.attn, proj = ws.proj, g = ws.gate, u = ws.up
        x.update(from: embeddings, count: n * d)
        var states: [Int: [Float]] = [:]

        for (l, w) in model.weights.layers.enumerated() {
            Kernels.rmsNorm(x, weight: w.attnNorm, n: n, d: d, eps: c.rmsEpsilon, into: h)
            mul([(w.wq, q), (w.wk, k), (w.wv, v)], h, n)
            for i in 0..<n {
                let s = segments[owner[i]].session
                s.rope(q + i * d, heads: c.headCount, position: position[i])
                s.rope(k + i * kvw, heads: c.kvHeadCount, position: position[i])
                (s.cache.keys(l) + slot[i] * kvw).update(from: k + i * kvw, count: kvw)
                (s.cache.values(l) + slot[i] * kvw).update(from: v + i * kvw, count: kvw)
            }
            for s in segments {
                s.session.attention(layer: l, q: q + s.rows.lowerBound * d, n: s.rows.count, start: s.start,
                                    visible: s.tree?.visible, into: attn + s.rows.lowerBound * d)
            }
            mul(w.wo, attn, n, proj)
            addInPlace(x, proj, count: n * d)

            Kernels.rmsNorm(x, weight: w.ffnNorm, n: n, d: d, eps: c.rmsEpsilon, into: h)
            mul([(w.gate, g), (w.up, u)], h, n)
            swiGLU(gate: g, up: u, count: n * ff)
            mul(w.down, g, n, proj)
            addInPlace(x, proj, count: n * d)
            if captureLayers.contains(l) { states[l] = Array(UnsafeBufferPointer(start: x, count: n * d)) }
        }
        for s in segments { s.session.length = s.start + s.rows.count }

        Kernels.rmsNorm(x, weight: model.weights.outputNorm, n: n, d: d, eps: c.rmsEpsilon, into: h)
        let hidden = Array(UnsafeBufferPointer(start: h, count: n * d))
        // The head over every segment's requested rows at once.
        var rows: [Int] = []
        for s in segments {
            switch s.logits {
            case .none: break
            case .last: rows.append(s.rows.upperBound - 1)
            case .all: rows += Array(s.rows)
            }
        }
        var out = [Float](repeating: 0, count: rows.count * c.vocabSize)
        if !rows.isEmpty {
            // The head's input: every row as it is, or the requested rows gathered (into `proj`, free now).
            let selected: UnsafeMutablePointer<Float>
            if rows.count == n { selected = h } else {
                selected = proj
                for (j, i) in rows.enumerated() { (proj + j * d).update(from: h + i * d, count: d) }
            }
            out.withUnsafeMutableBufferPointer { mul(model.weights.output, selected, rows.count, $0.baseAddress!) }
        }
        var r = 0
        return segments.map { s in
            let lo = s.rows.lowerBound, hi = s.rows.upperBound
            let mine = rows[r...].prefix { $0 < hi }
            let logits = Array(out[(r * c.vocabSize)..<((r + mine.count) * c.vocabSize)])
            r += mine.count
            let wholeBatch = segments.count == 1
            return ForwardOutput(logits: logits, logitRowIndices: mine.map { $0 - lo },
                                 hidden: wholeBatch ? hidden : Array(hidden[(lo * d)..<(hi * d)]),
                                 layerStates: wholeBatch ? states : states.mapValues { Array($0[(lo * d)..<(hi * d)]) })
        }
    }

    /// Rotates adjacent pairs (llama.cpp "normal" RoPE) of the first ropeDim dims of each head.
    @inline(__always)
    private func rope(_ v: UnsafeMutablePointer<Float>, heads: Int, position: Int) {
        ropeTable.rotate(v, heads: heads, position: position)
    }

    /// Grouped-query attention of the n new queries over the cached prefix (slots 0..<start) and
    /// the batch entries each may see (causal: 0...i; tree: `visible[i]`), one `attendHeads`
    /// call per (query, key/value head): slots in ascending order, so an entry's result equals
    /// that of the same tokens decoded one by one.
    private func attention(layer l: Int, q: UnsafePointer<Float>, n: Int, start: Int, visible: [[Int]]?, into out: UnsafeMutablePointer<Float>) {
        groupedQueryAttention(q: q, qStride: c.width, n: n, heads: c.headCount, kvHeads: c.kvHeadCount,
                              headDim: c.headDim, keys: cache.keys(l), values: cache.values(l), maxSlots: start + n,
                              threads: model.threads, out: out) { i, rows in
            var count = 0
            for j in 0..<start { rows[count] = j; count += 1 }
            if let vis = visible?[i] {
                for j in vis { rows[count] = start + j; count += 1 }
            } else {
                for j in 0...i { rows[count] = start + j; count += 1 }
            }
            return count
        }
    }

    /// Keeps only the batch entries `kept` (indices into the last forward's batch, in order, e.g.
    /// the accepted path of a draft tree) and moves their cached keys and values to consecutive
    /// slots right after the prefix `batchStart`. Their RoPE positions are already right when each
    /// kept entry's depth equals its index in `kept`, as on a tree path.
    public func compact(batchStart: Int, keeping kept: [Int]) {
        cache.compact(batchStart: batchStart, keeping: kept, filled: length)
        length = batchStart + kept.count
    }
}
