import Foundation
import Kernels
import Llama
import SafeTensors
import VisualAdapter

/// The EAGLE-2 / ViSpec draft at inference (docs/draft-design.md): one LLaMA decoder layer over
/// `fc([e_{t+1} ; f_t])`, the target's output norm, a (reduced-vocabulary or tied) head.
/// EAGLE-3 drafts run here too (`config.isEagle3`): the entry's state is `g = fc(aux layers' states)`
/// (a tree node's: its parent's pre-norm output), attention reads `[norm(e) ; norm(g)]` with `g`
/// as the residual, and the state passed on is the layer output before the final norm.
///
/// It keeps its own key/value cache: accepted entries first (at their target positions, which
/// skip dropped image entries), then the current round's tree nodes, which the next `accept` or
/// `reset` discards. Every matrix product goes through `PackedMatrix.multiply` (batch
/// invariant) and attention visits cache slots in ascending order, so a tree expanded in one
/// batch gives every node exactly what feeding its root path one node at a time gives.
public final class EagleDraft: Drafter {
    public let config: DraftConfig
    public let target: LlamaModel
    /// Element type the draft's matrices were packed into at load time.
    public let matrixType: QuantType
    public var threads: Int
    /// In the f32 precision mode, accepts of at least this many entries (a prompt) run their
    /// matrix products through OpenBLAS sgemm, faster than the float32 kernels but not
    /// batch-invariant (results differ from smaller batches in the last bits; drafting
    /// tolerates that, the verifier checks every token). `Int.max` keeps every product on the
    /// batch-invariant kernels. In the q8 mode the int8 kernels are faster at every size (the
    /// sgemm path dequantizes each matrix per call: a 44-entry prompt took 6.9 ms through sgemm
    /// and 3.0 ms on the int8 kernels, 603 entries 61-85 ms and 38-50 ms; AMD EPYC Zen 5, one
    /// thread), as for the target's prefill. Tree expansion never uses sgemm.
    public var blasMinimumBatch = 32

    /// Whether an accept of `m` entries goes through sgemm.
    private func usesBLAS(_ m: Int) -> Bool { activations == .none && m >= blasMinimumBatch }

    /// On the first accept (the prompt), keep only the text entries of the last `promptWindow`
    /// positions (every image entry stays): nil reads them all. The prompt read is a fixed cost
    /// of each generation, which a short answer cannot repay: 11 ms for a 51-token image prompt
    /// on a Zen 1, 8% of a 15-token answer's plain decoding. Entries keep their positions, so
    /// the kept ones see each other as in the full read. Decoding sets `defaultPromptWindow`.
    public var promptWindow: Int?
    /// Measured on the evaluation set (AMD EPYC Zen 1, shipped ViSpec draft, chain of 4, 48
    /// tokens): held-out τ 1.17 / 0.48 (image / text) reading the whole prompt, 1.20 / 0.52
    /// with the last 16 positions, and the prompt read 11 → 4 ms (at 12 positions).
    public static let defaultPromptWindow = 16

    public private(set) var acceptedPositions = 0
    /// Target position of each accepted entry, in cache order (image entries dropped by the
    /// adapter have none).
    public private(set) var entryPositions: [Int] = []
    /// The latest image's global feature once its span is accepted (adapter only).
    public private(set) var globalFeature: [Float]?
    public var hasAdapter: Bool { adapter != nil }
    /// Text entries after an image get the image's global feature (ViSpec, unless ablated).
    var injectGlobal: Bool { adapter != nil && config.usesGlobalFeature }
    public var featureLayers: [Int] { config.captureLayers }
    /// The draft's matrix products use the target's activation mode (`--precision`): the int8
    /// kernels by default (Q8_0 matrices, interleaved at load), float32 in the exact mode. The
    /// draft only proposes, so its rounding never changes what the target emits.
    var activations: ActivationQuant { target.activationQuant }

    private let fc, wq, wk, wv, wo, gate, up, down: OwnedPackedMatrix
    private let imgFc: OwnedPackedMatrix?
    private let ownHead: OwnedPackedMatrix?
    private let head: PackedMatrix
    private let d2t: [Int32]?
    private let postNorm: [Float], outNorm: [Float]
    /// EAGLE-3's norms of the embedding and state halves of the attention input.
    private let inputNorm: [Float]?, hiddenNorm: [Float]?
    /// The visual adapter, through its seam (ViSpec's cross-attention one when the checkpoint has it).
    private let adapter: (any VisualAdapter)?

    // Keys and values (one layer; grows): accepted slots 0..<entryPositions.count, then the
    // round's nodes.
    private let cache: KVCache
    /// The draft's RoPE (its config's, checked against the target's: the draft's keys and
    /// queries sit at the target's positions).
    private let rope: RoPE

    /// State passed on by the last accepted entry (the tree's root: f̂, or EAGLE-3's pre-norm
    /// output) and its position.
    private var rootFhat: [Float]?
    private var rootPosition = -1
    private struct Node { var position: Int; var ancestors: [Int]; var fhat: [Float] }
    private var nodes: [Node] = []

    /// Packs `weights` for `target`. `matrixType` f32, f16 or q8_0 (Q8_0 only where rows are whole
    /// blocks; otherwise F16). `contextSize` only pre-sizes the cache (it grows on demand).
    public init(weights w: DraftWeights, target: LlamaModel, matrixType: QuantType = EagleDraft.defaultMatrixType,
                contextSize: Int = 512, file: String = "<draft>") throws {
        let c = w.config
        try c.validate(target: target.config, file: file)
        guard [.f32, .f16, .q8_0, .q4_0].contains(matrixType) else {
            throw DraftError(file: file, field: "matrixType", reason: "\(matrixType) is not one of F32, F16, Q8_0, Q4_0")
        }
        self.config = c
        self.target = target
        rope = c.rope
        self.matrixType = matrixType
        self.threads = target.threads
        let d = c.width
        func pack(_ name: String, _ v: [Float], rows: Int, cols: Int, type: QuantType? = nil) throws -> OwnedPackedMatrix {
            guard v.count == rows * cols else {
                throw DraftError(file: file, field: name, reason: "\(v.count) values, needs \(rows) × \(cols)")
            }
            var t = type ?? matrixType
            if t.rowBytes(cols) == nil { t = .f16 }
            return try OwnedPackedMatrix(type: t, rows: rows, cols: cols, floats: v)
        }
        typealias N = DraftWeights.Name
        let attIn = c.isEagle3 ? 2 * d : d
        fc = try pack(N.fc, w.fc, rows: d, cols: c.isEagle3 ? c.featureWidth : 2 * d)
        wq = try pack(N.of(N.q, c), w.qProj, rows: c.qWidth, cols: attIn)
        wk = try pack(N.of(N.k, c), w.kProj, rows: c.kvWidth, cols: attIn)
        wv = try pack(N.of(N.v, c), w.vProj, rows: c.kvWidth, cols: attIn)
        wo = try pack(N.o, w.oProj, rows: d, cols: c.qWidth)
        gate = try pack(N.gate, w.gateProj, rows: c.ffn, cols: d)
        up = try pack(N.up, w.upProj, rows: c.ffn, cols: d)
        down = try pack(N.down, w.downProj, rows: d, cols: c.ffn)
        guard w.postAttentionNorm.count == d, w.norm.count == d else {
            throw DraftError(file: file, field: N.norm, reason: "norm weights must have \(d) values")
        }
        postNorm = w.postAttentionNorm
        outNorm = w.norm
        if c.isEagle3 {
            guard let a = w.inputNorm, let b = w.hiddenNorm, a.count == d, b.count == d else {
                throw DraftError(file: file, field: N.inputNorm, reason: "an eagle3 draft needs input and hidden norms of \(d) values")
            }
            inputNorm = a; hiddenNorm = b
        } else {
            inputNorm = nil; hiddenNorm = nil
        }
        if c.headTied {
            let out = target.weights.output
            guard out.rows == c.targetVocab, out.cols == d else {
                throw DraftError(file: file, field: "head_tied", reason: "the target's output matrix is \(out.rows) × \(out.cols)")
            }
            ownHead = nil
            head = out
        } else {
            guard let h = w.lmHead else { throw DraftError(file: file, field: N.lmHead, reason: "missing (head_tied is false)") }
            let o = try pack(N.lmHead, h, rows: c.vocab, cols: d)
            ownHead = o
            head = o.matrix
        }
        if c.vocab != c.targetVocab {
            guard let m = w.d2t, m.count == c.vocab, m.allSatisfy({ $0 >= 0 && Int($0) < c.targetVocab }) else {
                throw DraftError(file: file, field: N.d2t, reason: "needs \(c.vocab) target ids in 0..<\(c.targetVocab)")
            }
            d2t = m
        } else {
            d2t = nil
        }
        if c.numQ > 0 {
            guard let a = w.adapter, let i = w.imgFc else {
                throw DraftError(file: file, field: N.queries, reason: "num_q = \(c.numQ) but the adapter weights are missing")
            }
            adapter = try CrossAttentionAdapter(width: d, heads: c.heads, queries: a.queries, qProj: a.qProj, kProj: a.kProj,
                                                vProj: a.vProj, oProj: a.oProj, threads: target.threads)
            // F16 at most: [I ; 0] must stay exact (Q8_0 would scale the identity by a rounded 1/127).
            imgFc = try pack(N.imgFc, i, rows: d, cols: 2 * d, type: matrixType == .f32 ? .f32 : .f16)
        } else {
            adapter = nil
            imgFc = nil
        }
        cache = KVCache(layers: 1, width: c.kvWidth, capacity: max(16, contextSize))
    }

    /// Loads and packs a checkpoint.
    public convenience init(path: String, target: LlamaModel, matrixType: QuantType = EagleDraft.defaultMatrixType,
                            contextSize: Int = 512) throws {
        let w = try DraftWeights.load(path: path, target: target.config)
        try self.init(weights: w, target: target, matrixType: matrixType, contextSize: contextSize, file: path)
    }

    /// Chosen by measurement (see the commit that set it): the draft step is bound by reading
    /// its weights, so the smallest exact-enough format wins.
    /// `SPECDEC_DRAFT_TYPE=q4_0|q8_0|f16|f32` overrides it (for measuring).
    public static let defaultMatrixType: QuantType = {
        switch getenv("SPECDEC_DRAFT_TYPE").map({ String(cString: $0).lowercased() }) {
        case "q4_0": return .q4_0
        case "f16": return .f16
        case "f32": return .f32
        default: return .q8_0
        }
    }()

    public func reset() {
        acceptedPositions = 0
        entryPositions = []
        globalFeature = nil
        rootFhat = nil
        rootPosition = -1
        nodes = []
    }

    private func err(_ field: String, _ reason: String) -> DraftError { DraftError(file: "<draft>", field: field, reason: reason) }

    private func ensureCapacity(_ slots: Int) { cache.grow(toHold: slots) }

    private func embed(_ token: Int32, into dst: UnsafeMutablePointer<Float>) {
        target.weights.tokenEmbedding.dequantize(row: Int(token), into: dst)
    }

    // MARK: - Drafter

    public func accept(features: [Float], nextTokens: [Int32], images: [DraftImageSpan], topK: Int) throws -> [DraftCandidate] {
        let d = config.width, n = nextTokens.count, p0 = acceptedPositions, fw = config.featureWidth
        guard n >= 1 else { throw err("nextTokens", "accept needs at least one position") }
        guard features.count == n * fw else {
            throw err("features", "\(features.count) values for \(n) positions of width \(fw)")
        }
        // The round's tree nodes are no longer needed.
        nodes = []
        // Spans must lie among the new positions' next inputs (p0+1 ... p0+n−1) and not overlap;
        // on the first accept a span may start at position 0 (an image first in the sequence),
        // whose first row is nobody's next input but still part of the compressed image.
        let spans = images.sorted { $0.start < $1.start }
        var prevEnd = p0 == 0 ? 0 : p0 + 1
        for (i, s) in spans.enumerated() {
            guard s.rows >= 1, s.start >= prevEnd, s.start + s.rows <= p0 + n else {
                throw err("images[\(i)]", "span \(s.start)..<\(s.start + s.rows) is not inside the accepted next positions \(p0 + 1)...\(p0 + n - 1) or overlaps another")
            }
            guard s.embeddings.count == s.rows * d else {
                throw err("images[\(i)].embeddings", "\(s.embeddings.count) values for \(s.rows) rows of width \(d)")
            }
            prevEnd = s.start + s.rows
        }
        var compressed: [(tokens: [Float], global: [Float])] = []
        if let a = adapter {
            for s in spans {
                compressed.append(try s.embeddings.withUnsafeBufferPointer { try a.compress(imageEmbeddings: $0, rows: s.rows) })
            }
        }
        // Which entries exist and what their inputs are.
        var rows: [(t: Int, e: (kind: Int, a: Int, b: Int), g: [Float]?)] = []   // kind 0 token(a), 1 image row (span a, row b), 2 compressed (span a, row b)
        let layout = spans.map { (start: $0.start, rows: $0.rows) }
        for i in 0..<n {
            let t = p0 + i, next = t + 1
            var global = globalFeature
            if adapter != nil, let g = DraftEntryLayout.globalSpan(next: next, spans: layout) { global = compressed[g].global }
            switch DraftEntryLayout.input(next: next, spans: layout, numQ: adapter != nil ? config.numQ : 0) {
            case .dropped: continue
            case .compressed(let span, let row): rows.append((t, (2, span, row), injectGlobal ? global : nil))
            case .imageRow(let span, let row): rows.append((t, (1, span, row), nil))
            case .token:
                let tok = nextTokens[i]
                guard tok >= 0, Int(tok) < config.targetVocab else {
                    throw err("nextTokens[\(i)]", "\(tok) is not a token id (0..<\(config.targetVocab))")
                }
                // The prompt window (`promptWindow`): a fresh draft reads only the prompt's last text
                // positions; image entries are kept above.
                if p0 == 0, let w = promptWindow, t < n - max(1, w) { continue }
                rows.append((t, (0, Int(tok), 0), injectGlobal ? global : nil))
            }
        }
        let m = rows.count
        // EAGLE-3: the entries' states g = fc(aux states), which take f's place below.
        var fused: [Float] = []
        if config.isEagle3 {
            var aux = [Float](repeating: 0, count: m * fw)
            for (r, row) in rows.enumerated() {
                aux.replaceSubrange((r * fw)..<((r + 1) * fw), with: features[((row.t - p0) * fw)..<((row.t - p0 + 1) * fw)])
            }
            fused = [Float](repeating: 0, count: m * d)
            aux.withUnsafeBufferPointer { ab in
                fused.withUnsafeMutableBufferPointer { fb in
                    if usesBLAS(m) {
                        let scratch = UnsafeMutablePointer<Float>.allocate(capacity: max(fc.matrix.blasScratchCount, 1))
                        defer { scratch.deallocate() }
                        fc.matrix.multiplyBLAS(ab.baseAddress!, n: m, into: fb.baseAddress!, threads: threads, scratch: scratch)
                    } else {
                        fc.matrix.multiply(ab.baseAddress!, n: m, into: fb.baseAddress!, threads: threads, activations: activations)
                    }
                }
            }
        }
        // [e ; f] per kept entry.
        var x0 = [Float](repeating: 0, count: m * 2 * d)
        var imgRows: [Int] = []
        x0.withUnsafeMutableBufferPointer { xb in
            let x = xb.baseAddress!
            for (r, row) in rows.enumerated() {
                let e = x + r * 2 * d
                switch row.e.kind {
                case 0: embed(Int32(row.e.a), into: e)
                case 1: spans[row.e.a].embeddings.withUnsafeBufferPointer { e.update(from: $0.baseAddress! + row.e.b * d, count: d) }
                default: compressed[row.e.a].tokens.withUnsafeBufferPointer { e.update(from: $0.baseAddress! + row.e.b * d, count: d) }
                }
                if config.isEagle3 {
                    fused.withUnsafeBufferPointer { (e + d).update(from: $0.baseAddress! + r * d, count: d) }
                } else {
                    features.withUnsafeBufferPointer { (e + d).update(from: $0.baseAddress! + (row.t - p0) * d, count: d) }
                }
                if row.g != nil { imgRows.append(r) }
            }
        }
        if !imgRows.isEmpty {
            try applyImageFusion(&x0, rows: imgRows, globals: imgRows.map { rows[$0].g! })
        }
        let a0 = entryPositions.count
        ensureCapacity(a0 + m)
        let out = forward(x0: x0, n: m, positions: rows.map(\.t), slots: Array(a0..<(a0 + m)), blas: usesBLAS(m)) { i in
            Array(0...(a0 + i))
        }
        entryPositions += rows.map(\.t)
        acceptedPositions = p0 + n
        if adapter != nil, let g = DraftEntryLayout.globalSpan(next: p0 + n, spans: layout) { globalFeature = compressed[g].global }
        rootFhat = Array(out.state[((m - 1) * d)...])
        rootPosition = p0 + n - 1
        return topCandidates(fhat: Array(out.normed[((m - 1) * d)...]), n: 1, topK: topK)[0]
    }

    public func expand(tokens: [Int32], parents: [Int], topK: Int) throws -> [[DraftCandidate]] {
        let d = config.width, n = tokens.count
        guard let root = rootFhat else { throw err("expand", "no accepted position yet: call accept first") }
        guard parents.count == n else { throw err("parents", "\(parents.count) parents for \(n) tokens") }
        guard n > 0 else { return [] }
        let base = nodes.count
        var newNodes: [Node] = []
        // Wave of each new node: 0 when its parent already has its f̂ (root or an earlier call's
        // node), else one more than its parent's. A wave is one batched forward; the verifier
        // adds one tree level per call, which is always a single wave.
        var wave: [Int] = []
        for i in 0..<n {
            let p = parents[i]
            guard p >= -1, p < base + i else {
                throw err("parents[\(i)]", "\(p) is not −1 or an earlier node of this round (0..<\(base + i))")
            }
            guard tokens[i] >= 0, Int(tokens[i]) < config.targetVocab else {
                throw err("tokens[\(i)]", "\(tokens[i]) is not a token id (0..<\(config.targetVocab))")
            }
            let parent: Node? = p < 0 ? nil : (p < base ? nodes[p] : newNodes[p - base])
            var anc = parent?.ancestors ?? []
            anc.append(base + i)
            newNodes.append(Node(position: (parent?.position ?? rootPosition) + 1, ancestors: anc, fhat: []))
            wave.append(p < base ? 0 : wave[p - base] + 1)
        }
        let a0 = entryPositions.count
        ensureCapacity(a0 + base + n)
        var normedAll = [Float](repeating: 0, count: n * d)
        for w in 0...(wave.max() ?? 0) {
            let members = (0..<n).filter { wave[$0] == w }
            var x0 = [Float](repeating: 0, count: members.count * 2 * d)
            x0.withUnsafeMutableBufferPointer { xb in
                for (r, i) in members.enumerated() {
                    let p = parents[i]
                    embed(tokens[i], into: xb.baseAddress! + r * 2 * d)
                    let pf = p < 0 ? root : (p < base ? nodes[p].fhat : newNodes[p - base].fhat)
                    pf.withUnsafeBufferPointer { (xb.baseAddress! + r * 2 * d + d).update(from: $0.baseAddress!, count: d) }
                }
            }
            if let g = globalFeature, injectGlobal {
                try applyImageFusion(&x0, rows: Array(0..<members.count), globals: Array(repeating: g, count: members.count))
            }
            let out = forward(x0: x0, n: members.count, positions: members.map { newNodes[$0].position },
                              slots: members.map { a0 + base + $0 }) { r in
                Array(0..<a0) + newNodes[members[r]].ancestors.map { a0 + $0 }
            }
            for (r, i) in members.enumerated() {
                newNodes[i].fhat = Array(out.state[(r * d)..<((r + 1) * d)])
                normedAll.replaceSubrange((i * d)..<((i + 1) * d), with: out.normed[(r * d)..<((r + 1) * d)])
            }
        }
        nodes += newNodes
        return topCandidates(fhat: normedAll, n: n, topK: topK)
    }

    // MARK: - Forward

    /// Replaces the f half of the given rows of `x0` (n × 2d, rows of [e ; f]) by img_fc([f ; g])
    /// with each row's global feature; does nothing without an adapter. Public for tests.
    public func applyImageFusion(_ x0: inout [Float], rows: [Int], globals: [[Float]]) throws {
        guard let m = imgFc?.matrix else { return }
        let d = config.width
        var inp = [Float](repeating: 0, count: rows.count * 2 * d)
        var out = [Float](repeating: 0, count: rows.count * d)
        for (j, r) in rows.enumerated() {
            for c in 0..<d { inp[j * 2 * d + c] = x0[r * 2 * d + d + c] }
            guard globals[j].count == d else { throw err("global", "global feature has \(globals[j].count) values") }
            for c in 0..<d { inp[j * 2 * d + d + c] = globals[j][c] }
        }
        inp.withUnsafeBufferPointer { ib in
            out.withUnsafeMutableBufferPointer { m.multiply(ib.baseAddress!, n: rows.count, into: $0.baseAddress!, threads: threads, activations: activations) }
        }
        for (j, r) in rows.enumerated() {
            for c in 0..<d { x0[r * 2 * d + d + c] = out[j * d + c] }
        }
    }

    /// One decoder layer over n rows of [e ; f] at `positions`, writing their keys and values to
    /// cache `slots`; row i attends to the cache slots `visible(i)`
    /// (ascending, ending with its own slot). Returns the output after the final norm (the
    /// head's input) and the state a child reads: the same f̂ for EAGLE-2, the pre-norm output
    /// for EAGLE-3 (whose `f` is already the fused state g).
    private func forward(x0: [Float], n: Int, positions: [Int], slots: [Int], blas: Bool = false,
                         visible: (Int) -> [Int]) -> (normed: [Float], state: [Float]) {
        let c = config, d = c.width, qw = c.qWidth, kvw = c.kvWidth, ff = c.ffn
        let th = threads
        // sgemm on dequantized row tiles for large batches; scratch sized for the largest matrix.
        let scratchCount = blas ? [fc, wq, wk, wv, wo, gate, up, down].map { $0.matrix.blasScratchCount }.max()! : 0
        let scratch = UnsafeMutablePointer<Float>.allocate(capacity: max(scratchCount, 1))
        defer { scratch.deallocate() }
        func mul(_ parts: [(matrix: PackedMatrix, output: UnsafeMutablePointer<Float>)], _ x: UnsafePointer<Float>) {
            if blas {
                for p in parts { p.matrix.multiplyBLAS(x, n: n, into: p.output, threads: th, scratch: scratch) }
            } else {
                PackedMatrix.multiply(parts, x: x, n: n, threads: th, activations: activations)
            }
        }
        var x = [Float](repeating: 0, count: n * d)
        var q = [Float](repeating: 0, count: n * qw)
        var att = [Float](repeating: 0, count: n * qw)
        var proj = [Float](repeating: 0, count: n * d)
        var h = [Float](repeating: 0, count: n * d)
        var g = [Float](repeating: 0, count: n * ff)
        var u = [Float](repeating: 0, count: n * ff)
        // Keys and values of the batch, rotated, then stored in their cache slots.
        var kNew = [Float](repeating: 0, count: n * kvw), vNew = kNew
        // Attention input: fc([e ; f]) without a norm (EAGLE-2, also the residual), or EAGLE-3's
        // [norm(e) ; norm(g)] with g the residual.
        var attIn = x
        if let inN = inputNorm, let hidN = hiddenNorm {
            var e = [Float](repeating: 0, count: n * d), gs = e, en = e, gn = e
            for r in 0..<n {
                for i in 0..<d { e[r * d + i] = x0[r * 2 * d + i]; gs[r * d + i] = x0[r * 2 * d + d + i] }
            }
            rmsNorm(e, inN, into: &en, n: n)
            rmsNorm(gs, hidN, into: &gn, n: n)
            x = gs
            attIn = [Float](repeating: 0, count: n * 2 * d)
            for r in 0..<n {
                for i in 0..<d { attIn[r * 2 * d + i] = en[r * d + i]; attIn[r * 2 * d + d + i] = gn[r * d + i] }
            }
        } else {
            x0.withUnsafeBufferPointer { xb in
                x.withUnsafeMutableBufferPointer { mul([(fc.matrix, $0.baseAddress!)], xb.baseAddress!) }
            }
            attIn = x
        }
        attIn.withUnsafeBufferPointer { xb in
            q.withUnsafeMutableBufferPointer { qb in
                kNew.withUnsafeMutableBufferPointer { kb in
                    vNew.withUnsafeMutableBufferPointer { vb in
                        mul([(wq.matrix, qb.baseAddress!), (wk.matrix, kb.baseAddress!), (wv.matrix, vb.baseAddress!)], xb.baseAddress!)
                    }
                }
            }
        }
        q.withUnsafeMutableBufferPointer { qb in
            kNew.withUnsafeMutableBufferPointer { kb in
                rope.apply(qb.baseAddress!, n: n, heads: c.heads, positions: positions)
                rope.apply(kb.baseAddress!, n: n, heads: c.kvHeads, positions: positions)
                for i in 0..<n { (cache.keys(0) + slots[i] * kvw).update(from: kb.baseAddress! + i * kvw, count: kvw) }
            }
        }
        vNew.withUnsafeBufferPointer { vb in
            for i in 0..<n { (cache.values(0) + slots[i] * kvw).update(from: vb.baseAddress! + i * kvw, count: kvw) }
        }
        let vis = (0..<n).map(visible)
        attention(q: q, n: n, visible: vis, into: &att)
        att.withUnsafeBufferPointer { ab in
            proj.withUnsafeMutableBufferPointer { mul([(wo.matrix, $0.baseAddress!)], ab.baseAddress!) }
        }
        addInPlace(&x, proj, count: n * d)
        rmsNorm(x, postNorm, into: &h, n: n)
        h.withUnsafeBufferPointer { hb in
            g.withUnsafeMutableBufferPointer { gb in
                u.withUnsafeMutableBufferPointer { ub in
                    mul([(gate.matrix, gb.baseAddress!), (up.matrix, ub.baseAddress!)], hb.baseAddress!)
                }
            }
        }
        swiGLU(gate: &g, up: u, count: n * ff)
        g.withUnsafeBufferPointer { gb in
            proj.withUnsafeMutableBufferPointer { mul([(down.matrix, $0.baseAddress!)], gb.baseAddress!) }
        }
        addInPlace(&x, proj, count: n * d)
        rmsNorm(x, outNorm, into: &h, n: n)
        return (h, inputNorm != nil ? x : h)
    }

    private func rmsNorm(_ x: [Float], _ weight: [Float], into out: inout [Float], n: Int) {
        Kernels.rmsNorm(x, weight: weight, n: n, d: config.width, eps: config.rmsEps, into: &out)
    }

    /// Grouped-query attention of n queries over their visible cache slots, in ascending order.
    private func attention(q: [Float], n: Int, visible: [[Int]], into out: inout [Float]) {
        let c = config
        q.withUnsafeBufferPointer { qb in
            out.withUnsafeMutableBufferPointer { ob in
                groupedQueryAttention(q: qb.baseAddress!, qStride: c.qWidth, n: n, heads: c.heads, kvHeads: c.kvHeads, headDim: c.headDim,
                                      keys: cache.keys(0), values: cache.values(0), maxSlots: visible.map(\.count).max() ?? 0, threads: threads,
                                      out: ob.baseAddress!) { i, rows in
                    for (k, j) in visible[i].enumerated() { rows[k] = j }
                    return visible[i].count
                }
            }
        }
    }

    // MARK: - Head

    /// Top-k of a log-softmax over the draft vocabulary for each of n rows of f̂, in target ids.
    private func topCandidates(fhat: [Float], n: Int, topK: Int) -> [[DraftCandidate]] {
        let v = head.rows
        let k = min(max(topK, 0), v)
        var logits = [Float](repeating: 0, count: n * v)
        fhat.withUnsafeBufferPointer { fb in
            logits.withUnsafeMutableBufferPointer { head.multiply(fb.baseAddress!, n: n, into: $0.baseAddress!, threads: threads, activations: activations) }
        }
        return logits.withUnsafeBufferPointer { lb in
            (0..<n).map { r in
                let l = lb.baseAddress! + r * v
                var mx = -Float.infinity
                for i in 0..<v { mx = max(mx, l[i]) }
                var sum: Double = 0
                for i in 0..<v { sum += Double(expf(l[i] - mx)) }
                let lse = mx + Float(Foundation.log(sum))
                // Insertion into a small sorted list: k is a handful, so this is one pass.
                var best: [(Float, Int)] = []
                best.reserveCapacity(k + 1)
                if k > 0 {
                    for i in 0..<v {
                        let x = l[i]
                        if best.count == k, !(x > best[k - 1].0) { continue }
                        var j = best.count
                        while j > 0, x > best[j - 1].0 { j -= 1 }
                        best.insert((x, i), at: j)
                        if best.count > k { best.removeLast() }
                    }
                }
                return best.map { DraftCandidate(token: d2t?[$0.1] ?? Int32($0.1), logProb: $0.0 - lse) }
            }
        }
    }
}
