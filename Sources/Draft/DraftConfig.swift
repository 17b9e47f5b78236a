import Diagnostics
import Foundation
import Kernels
import Llama

/// A fault in a draft checkpoint or in a request to the draft; `file` is the checkpoint path (or
/// `<draft>` for requests), `field` the tensor, metadata key or argument at fault.
public enum DraftFault {}
public typealias DraftError = FieldError<DraftFault>

/// The draft architectures specdec runs and trains (docs/draft-design.md).
public enum DraftArch: String, Codable, Sendable, CaseIterable, CustomStringConvertible {
    /// EAGLE-2: fc([e ; f]) into one decoder layer, then the head.
    case eagle2
    /// ViSpec: EAGLE-2 plus the visual adapter and `img_fc` (num_q > 0).
    case vispec
    /// EAGLE-3: fc over several target layers' states; attention over [norm(e) ; norm(g)].
    case eagle3

    public var description: String { rawValue }

    public init(from decoder: Decoder) throws {
        let name = try decoder.singleValueContainer().decode(String.self)
        guard let arch = DraftArch(rawValue: name) else {
            throw DecodingError.dataCorrupted(.init(codingPath: decoder.codingPath,
                                                    debugDescription: "unknown arch \"\(name)\" (eagle2, vispec, eagle3)"))
        }
        self = arch
    }
}

/// The draft's hyper-parameters: the `config` JSON of a checkpoint's metadata
/// (docs/draft-design.md). Same keys and initializer as the trainer's copy, so either can read
/// the other's checkpoints.
public struct DraftConfig: Codable, Equatable, Sendable {
    public var width: Int
    public var heads: Int
    public var kvHeads: Int
    public var headDim: Int
    public var ffn: Int
    public var rmsEps: Float
    /// RoPE of the draft's queries and keys (`rope`): the base, the rotated dimensions of each
    /// head and the linear position scale. The draft's keys sit at the target's positions, so a
    /// draft has its target's.
    public var ropeBase: Double
    public var ropeDim: Int
    public var ropeScale: Double
    /// Draft head rows V (= targetVocab for the full vocabulary).
    public var vocab: Int
    public var targetVocab: Int
    /// The head is the target's own output matrix (only with V = targetVocab).
    public var headTied: Bool
    /// Adapter queries K (0 = no adapter).
    public var numQ: Int
    /// ViSpec only: false = the adapter's global feature is not injected into the text entries
    /// (the ablation; only the compressed tokens reach the draft). Nil = injected, and absent from
    /// the JSON, so older checkpoints read and write unchanged.
    public var globalFeature: Bool? = nil
    public var arch: DraftArch
    /// EAGLE-3 only: the target layers whose *input* residual streams feed `fc`, in order
    /// (vLLM's and EAGLE-3's `aux_hidden_state_layers`; layer i's input is the output of layer
    /// i − 1, so every id is at least 1). Nil for the other archs.
    public var auxLayers: [Int]?

    /// RoPE over whole heads, unscaled (`init(target:)` takes the target's).
    public init(width: Int, heads: Int, kvHeads: Int, headDim: Int, ffn: Int, rmsEps: Float, ropeBase: Double,
                vocab: Int, targetVocab: Int, headTied: Bool, numQ: Int) {
        self.width = width; self.heads = heads; self.kvHeads = kvHeads; self.headDim = headDim; self.ffn = ffn
        self.rmsEps = rmsEps; self.ropeBase = ropeBase; ropeDim = headDim; ropeScale = 1
        self.vocab = vocab; self.targetVocab = targetVocab
        self.headTied = headTied; self.numQ = numQ; arch = numQ > 0 ? .vispec : .eagle2
    }

    /// An EAGLE-3 draft for `target`: one layer of the target's geometry reading the residual
    /// streams entering `auxLayers` (default EAGLE-3's low, middle and high: 2, L/2, L − 3).
    public static func eagle3(target t: LlamaConfig, vocab: Int? = nil, auxLayers: [Int]? = nil) -> DraftConfig {
        var c = DraftConfig(target: t, vocab: vocab)
        c.arch = .eagle3
        c.auxLayers = auxLayers ?? defaultAuxLayers(layerCount: t.layerCount)
        return c
    }

    /// EAGLE-3's choice (vLLM `get_eagle3_aux_hidden_state_layers`): 2, L/2, L − 3.
    public static func defaultAuxLayers(layerCount l: Int) -> [Int] { [2, l / 2, l - 3] }

    public var isEagle3: Bool { arch == .eagle3 }
    /// Width of the target features one entry reads: d (EAGLE-2/ViSpec: the final-norm state)
    /// or aux layers × d (EAGLE-3).
    public var featureWidth: Int { (auxLayers?.count ?? 1) * width }
    /// The target layers whose outputs `LlamaSession.forward(captureLayers:)` must return, in
    /// `auxLayers` order; empty for the final-norm state.
    public var captureLayers: [Int] { (auxLayers ?? []).map { $0 - 1 } }

    /// The shape a draft for `target` has: one layer of the target's own geometry.
    /// `vocab` nil = the full vocabulary.
    public init(target t: LlamaConfig, vocab: Int? = nil, headTied: Bool = false, numQ: Int = 0) {
        self.init(width: t.width, heads: t.headCount, kvHeads: t.kvHeadCount, headDim: t.headDim, ffn: t.ffnWidth,
                  rmsEps: t.rmsEpsilon, ropeBase: t.ropeBase, vocab: vocab ?? t.vocabSize, targetVocab: t.vocabSize,
                  headTied: headTied, numQ: numQ)
        ropeDim = t.ropeDim; ropeScale = t.ropeScale
    }

    enum CodingKeys: String, CodingKey {
        case width, heads, kvHeads = "kv_heads", headDim = "head_dim", ffn, rmsEps = "rms_eps"
        case ropeBase = "rope_base", ropeDim = "rope_dim", ropeScale = "rope_scale"
        case vocab, targetVocab = "target_vocab", headTied = "head_tied", numQ = "num_q", arch, auxLayers = "aux_layers"
        case globalFeature = "global_feature"
    }

    /// The key under which a reader passes the target (`LlamaConfig`) to the decoder: a config
    /// written before `rope_dim` and `rope_scale` were recorded ran with the target's.
    static let legacyTarget = CodingUserInfoKey(rawValue: "specdec.draft.target")!

    /// The synthesized reader, except that `rope_dim` and `rope_scale` may be absent (`legacyTarget`).
    public init(from decoder: Decoder) throws {
        let k = try decoder.container(keyedBy: CodingKeys.self)
        width = try k.decode(Int.self, forKey: .width)
        heads = try k.decode(Int.self, forKey: .heads)
        kvHeads = try k.decode(Int.self, forKey: .kvHeads)
        headDim = try k.decode(Int.self, forKey: .headDim)
        ffn = try k.decode(Int.self, forKey: .ffn)
        rmsEps = try k.decode(Float.self, forKey: .rmsEps)
        ropeBase = try k.decode(Double.self, forKey: .ropeBase)
        // Without a target (training reads checkpoints before it loads one), the RoPE the
        // trainer has always run: whole heads, unscaled.
        let target = decoder.userInfo[Self.legacyTarget] as? LlamaConfig
        ropeDim = try k.decodeIfPresent(Int.self, forKey: .ropeDim) ?? target?.ropeDim ?? headDim
        ropeScale = try k.decodeIfPresent(Double.self, forKey: .ropeScale) ?? target?.ropeScale ?? 1
        vocab = try k.decode(Int.self, forKey: .vocab)
        targetVocab = try k.decode(Int.self, forKey: .targetVocab)
        headTied = try k.decode(Bool.self, forKey: .headTied)
        numQ = try k.decode(Int.self, forKey: .numQ)
        globalFeature = try k.decodeIfPresent(Bool.self, forKey: .globalFeature)
        arch = try k.decode(DraftArch.self, forKey: .arch)
        auxLayers = try k.decodeIfPresent([Int].self, forKey: .auxLayers)
    }

    /// The rotation of the draft's queries and keys.
    public var rope: RoPE { RoPE(headDim: headDim, ropeDim: ropeDim, base: ropeBase, scale: ropeScale) }

    /// Whether text entries after an image get img_fc([f ; global feature]).
    public var usesGlobalFeature: Bool { numQ > 0 && globalFeature != false }

    public var qWidth: Int { heads * headDim }
    public var kvWidth: Int { kvHeads * headDim }

    /// The metadata string (keys sorted, so the same config gives the same bytes).
    public func json() -> String {
        let enc = JSONEncoder()
        enc.outputFormatting = [.sortedKeys]
        return String(decoding: (try? enc.encode(self)) ?? Data("{}".utf8), as: UTF8.self)
    }

    /// Checks the config on its own and against the target it is to run with.
    public func validate(target t: LlamaConfig, file: String) throws {
        func err(_ f: String, _ r: String) -> DraftError { DraftError(file: file, field: "config.\(f)", reason: r) }
        try validate(file: file)
        if isEagle3 {
            for id in auxLayers! where id >= t.layerCount {
                throw err("aux_layers", "layer \(id) is not an input of target layers 1..<\(t.layerCount)")
            }
        }
        let pairs: [(String, Int, Int)] = [("width", width, t.width), ("heads", heads, t.headCount),
                                           ("kv_heads", kvHeads, t.kvHeadCount), ("head_dim", headDim, t.headDim),
                                           ("ffn", ffn, t.ffnWidth), ("target_vocab", targetVocab, t.vocabSize)]
        for (name, mine, theirs) in pairs where mine != theirs {
            throw err(name, "the draft has \(mine), the target model has \(theirs): the checkpoint was made for another model")
        }
        guard ropeBase == t.ropeBase else { throw err("rope_base", "the draft has \(ropeBase), the target model has \(t.ropeBase)") }
        guard ropeDim == t.ropeDim else { throw err("rope_dim", "the draft has \(ropeDim), the target model has \(t.ropeDim)") }
        guard ropeScale == t.ropeScale else { throw err("rope_scale", "the draft has \(ropeScale), the target model has \(t.ropeScale)") }
    }

    /// Checks the config on its own (sizes, arch against num_q, aux layers, the adapter's shape):
    /// what a checkpoint must satisfy before any target is known (training's `--init`, `--resume`).
    public func validate(file: String) throws {
        func err(_ f: String, _ r: String) -> DraftError { DraftError(file: file, field: "config.\(f)", reason: r) }
        for (name, v) in [("width", width), ("heads", heads), ("kv_heads", kvHeads), ("head_dim", headDim),
                          ("ffn", ffn), ("vocab", vocab), ("target_vocab", targetVocab)] where v <= 0 {
            throw err(name, "must be positive, found \(v)")
        }
        guard numQ >= 0 else { throw err("num_q", "must not be negative, found \(numQ)") }
        guard heads % kvHeads == 0 else { throw err("kv_heads", "\(kvHeads) does not divide heads \(heads)") }
        guard rmsEps > 0, rmsEps.isFinite else { throw err("rms_eps", "must be positive, found \(rmsEps)") }
        guard ropeBase > 0, ropeBase.isFinite else { throw err("rope_base", "must be positive, found \(ropeBase)") }
        guard ropeDim > 0, ropeDim <= headDim, ropeDim % 2 == 0 else {
            throw err("rope_dim", "must be even and at most head_dim \(headDim), found \(ropeDim)")
        }
        guard ropeScale > 0, ropeScale.isFinite else { throw err("rope_scale", "must be positive, found \(ropeScale)") }
        guard vocab <= targetVocab else { throw err("vocab", "\(vocab) is larger than target_vocab \(targetVocab)") }
        guard !headTied || vocab == targetVocab else { throw err("head_tied", "a tied head needs vocab = target_vocab (\(vocab) ≠ \(targetVocab))") }
        guard (arch == .vispec) == (numQ > 0) else { throw err("arch", "\"\(arch)\" does not match num_q = \(numQ)") }
        guard globalFeature == nil || arch == .vispec else { throw err("global_feature", "only a vispec draft (num_q > 0) has a global feature") }
        if isEagle3 {
            guard let ids = auxLayers, !ids.isEmpty else { throw err("aux_layers", "eagle3 needs the target layers it reads") }
            for id in ids where id < 1 {
                throw err("aux_layers", "layer \(id) is not the input of a target layer (ids start at 1)")
            }
            guard !headTied else { throw err("head_tied", "an eagle3 draft has its own head") }
        } else if auxLayers != nil {
            throw err("aux_layers", "only eagle3 drafts read aux layers (arch is \"\(arch)\")")
        }
        guard numQ == 0 || heads * headDim == width else {
            throw err("num_q", "the adapter needs heads × head_dim = width (\(heads) × \(headDim) ≠ \(width))")
        }
    }
}
