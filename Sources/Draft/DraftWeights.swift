import Foundation
import Kernels
import Llama
import Sampling
import SafeTensors

/// The draft's float weights, named as in docs/draft-design.md. Matrices are `[out, in]`
/// row-major (PyTorch's `nn.Linear.weight`).
public struct DraftWeights: Sendable {
    public var config: DraftConfig
    /// `fc.weight` [d, 2d]: input fusion of [e ; f]; EAGLE-3: [d, aux·d], fusion of the aux
    /// layers' states.
    public var fc: [Float]
    /// EAGLE-3 only (`midlayer.input_layernorm.weight`, `midlayer.hidden_norm.weight`, [d]): the
    /// norms of the embedding and hidden halves of the attention input.
    public var inputNorm: [Float]?
    public var hiddenNorm: [Float]?
    public var qProj: [Float], kProj: [Float], vProj: [Float], oProj: [Float]
    /// `layers.0.post_attention_layernorm.weight` [d]: the FFN norm.
    public var postAttentionNorm: [Float]
    public var gateProj: [Float], upProj: [Float], downProj: [Float]
    /// `norm.weight` [d]: copy of the target's output_norm.
    public var norm: [Float]
    /// `lm_head.weight` [V, d]; nil when the head is tied to the target's output matrix.
    public var lmHead: [Float]?
    /// `d2t` [V]: draft row → target token id; nil when V = target vocabulary (identity).
    public var d2t: [Int32]?
    /// ViSpec adapter (`adapter.*`) and `img_fc.weight` [d, 2d]; nil when num_q = 0.
    public var adapter: AdapterWeights?
    public var imgFc: [Float]?
    /// Other `__metadata__` entries (target_sha256, step, seed, ...), kept on load and written on save.
    public var metadata: [String: String] = [:]

    public struct AdapterWeights: Sendable, Equatable {
        /// `adapter.queries` [K, d].
        public var queries: [Float]
        public var qProj: [Float], kProj: [Float], vProj: [Float], oProj: [Float]
        public init(queries: [Float], qProj: [Float], kProj: [Float], vProj: [Float], oProj: [Float]) {
            self.queries = queries; self.qProj = qProj; self.kProj = kProj; self.vProj = vProj; self.oProj = oProj
        }
    }

    public enum Name {
        public static let fc = "fc.weight"
        public static let q = "layers.0.self_attn.q_proj.weight"
        public static let k = "layers.0.self_attn.k_proj.weight"
        public static let v = "layers.0.self_attn.v_proj.weight"
        public static let o = "layers.0.self_attn.o_proj.weight"
        public static let postNorm = "layers.0.post_attention_layernorm.weight"
        public static let gate = "layers.0.mlp.gate_proj.weight"
        public static let up = "layers.0.mlp.up_proj.weight"
        public static let down = "layers.0.mlp.down_proj.weight"
        public static let norm = "norm.weight"
        public static let lmHead = "lm_head.weight"
        public static let d2t = "d2t"
        public static let queries = "adapter.queries"
        public static let aq = "adapter.q_proj.weight"
        public static let ak = "adapter.k_proj.weight"
        public static let av = "adapter.v_proj.weight"
        public static let ao = "adapter.o_proj.weight"
        public static let imgFc = "img_fc.weight"
        public static let inputNorm = "midlayer.input_layernorm.weight"
        public static let hiddenNorm = "midlayer.hidden_norm.weight"

        /// The checkpoint name of a layer tensor for `c`: EAGLE-3 drafts use the reference
        /// code's (and vLLM's) `midlayer.` prefix, the others `layers.0.`.
        public static func of(_ name: String, _ c: DraftConfig) -> String {
            c.isEagle3 && name.hasPrefix("layers.0.") ? "midlayer." + name.dropFirst("layers.0.".count) : name
        }
    }

    /// Every float tensor this config has, with its shape (`DraftConfig.tensors`, the one table).
    public static func shapes(_ c: DraftConfig) -> [(name: String, shape: [Int])] { c.tensors.map { ($0.name, $0.shape) } }

    /// The float tensors by name (those this config has).
    public var tensors: [String: [Float]] {
        let c = config
        var t: [String: [Float]] = [
            Name.fc: fc, Name.of(Name.q, c): qProj, Name.of(Name.k, c): kProj, Name.of(Name.v, c): vProj,
            Name.of(Name.o, c): oProj, Name.of(Name.postNorm, c): postAttentionNorm, Name.of(Name.gate, c): gateProj,
            Name.of(Name.up, c): upProj, Name.of(Name.down, c): downProj, Name.norm: norm,
        ]
        if let n = inputNorm { t[Name.inputNorm] = n }
        if let n = hiddenNorm { t[Name.hiddenNorm] = n }
        if let h = lmHead { t[Name.lmHead] = h }
        if let a = adapter {
            t[Name.queries] = a.queries; t[Name.aq] = a.qProj; t[Name.ak] = a.kProj; t[Name.av] = a.vProj; t[Name.ao] = a.oProj
        }
        if let i = imgFc { t[Name.imgFc] = i }
        return t
    }

    // MARK: - Load

    /// Reads a checkpoint (F32, F16 or BF16 tensors) and checks every tensor against its config and
    /// the target's: a checkpoint for another model, a missing or misshapen tensor, a bad `d2t`
    /// entry or a non-finite weight is a `DraftError` (or `SafeTensorsError`) naming file and tensor.
    public static func load(path: String, target: LlamaConfig) throws -> DraftWeights {
        let f = try SafeTensorsFile(path: path)
        return try load(f, target: target)
    }

    public static func load(_ f: SafeTensorsFile, target: LlamaConfig) throws -> DraftWeights {
        let ck = try DraftCheckpoint(f, target: target)
        let c = ck.config, t = ck.tensors, d2t = ck.d2t
        func layer(_ n: String) -> [Float] { t[Name.of(n, c)]! }
        var w = DraftWeights(config: c, fc: t[Name.fc]!, qProj: layer(Name.q), kProj: layer(Name.k), vProj: layer(Name.v),
                             oProj: layer(Name.o), postAttentionNorm: layer(Name.postNorm), gateProj: layer(Name.gate),
                             upProj: layer(Name.up), downProj: layer(Name.down), norm: t[Name.norm]!, lmHead: t[Name.lmHead],
                             d2t: d2t, adapter: nil, imgFc: t[Name.imgFc])
        w.inputNorm = t[Name.inputNorm]
        w.hiddenNorm = t[Name.hiddenNorm]
        if c.numQ > 0 {
            w.adapter = AdapterWeights(queries: t[Name.queries]!, qProj: t[Name.aq]!, kProj: t[Name.ak]!,
                                       vProj: t[Name.av]!, oProj: t[Name.ao]!)
        }
        w.metadata = f.metadata.filter { !["format", "version", "config"].contains($0.key) }
        return w
    }

    // MARK: - Save

    /// Writes a checkpoint (atomically: temporary file, then rename). `dtype` F32, F16 or BF16 for
    /// the float tensors; `extraTensors` (e.g. optimizer state) are written as F32.
    public func save(to path: String, dtype: SafeTensorsDType = .F32, extraTensors: [String: (shape: [Int], values: [Float])] = [:]) throws {
        try writer(dtype: dtype, extraTensors: extraTensors).write(to: path)
    }

    public func writer(dtype: SafeTensorsDType = .F32, extraTensors: [String: (shape: [Int], values: [Float])] = [:]) throws -> SafeTensorsWriter {
        var meta = metadata
        meta.merge(DraftCheckpoint.header(config)) { $1 }
        var w = SafeTensorsWriter(metadata: meta)
        let t = tensors
        for (name, shape) in Self.shapes(config) {
            guard let v = t[name] else { throw DraftError(file: "<draft>", field: name, reason: "missing from the weights") }
            guard v.count == shape.reduce(1, *) else {
                throw DraftError(file: "<draft>", field: name, reason: "\(v.count) values for shape \(shape)")
            }
            try w.add(name, floats: v, shape: shape, as: dtype)
        }
        if let m = d2t { try w.add(Name.d2t, int32s: m, shape: [m.count]) }
        for (name, e) in extraTensors { try w.add(name, floats: e.values, shape: e.shape, as: .F32) }
        return w
    }

    // MARK: - Random init

    /// A seeded random draft for `target`. Layer matrices are N(0, 0.02²) (as HF's initializer
    /// range), `fc` is small random on the embedding half and identity plus small random on the
    /// feature half (so a fresh draft passes the target's feature through: its head already
    /// predicts something related to the context rather than noise), norms are ones, `norm.weight`
    /// is the target's output_norm, `lm_head` rows are the target's output rows for `d2t` (or
    /// the head is tied), adapter weights are small random and `img_fc` = [I ; 0], so an untrained
    /// adapter leaves the draft the plain EAGLE draft.
    public static func random(config c: DraftConfig, seed: UInt64, outputNorm: [Float]? = nil,
                              targetOutput: PackedMatrix? = nil, d2t: [Int32]? = nil) throws -> DraftWeights {
        let d = c.width
        var rng = NormalStream(seed: seed)
        func normal(_ n: Int, _ std: Float) -> [Float] { (0..<n).map { _ in rng.normal() * std } }
        // EAGLE-3 fuses several layers, none of which is the state to pass through: plain random.
        var fc = normal(d * (c.isEagle3 ? c.featureWidth : 2 * d), 0.02)
        if !c.isEagle3 { for i in 0..<d { fc[i * 2 * d + d + i] += 1 } }
        let attIn = c.isEagle3 ? 2 * d : d
        var map = d2t
        if c.vocab != c.targetVocab {
            let m = map ?? (0..<c.vocab).map { Int32($0) }
            guard m.count == c.vocab, m.allSatisfy({ $0 >= 0 && Int($0) < c.targetVocab }) else {
                throw DraftError(file: "<draft>", field: Name.d2t, reason: "needs \(c.vocab) target ids in 0..<\(c.targetVocab)")
            }
            map = m
        } else {
            map = nil
        }
        var head: [Float]? = nil
        if !c.headTied {
            if let out = targetOutput, out.cols == d, out.rows == c.targetVocab {
                var h = [Float](repeating: 0, count: c.vocab * d)
                h.withUnsafeMutableBufferPointer { hp in
                    for r in 0..<c.vocab { out.dequantize(row: Int(map?[r] ?? Int32(r)), into: hp.baseAddress! + r * d) }
                }
                head = h
            } else {
                head = normal(c.vocab * d, 0.02)
            }
        }
        if let n = outputNorm, n.count != d {
            throw DraftError(file: "<draft>", field: Name.norm, reason: "output norm has \(n.count) values, width is \(d)")
        }
        var w = DraftWeights(config: c, fc: fc, qProj: normal(c.qWidth * attIn, 0.02), kProj: normal(c.kvWidth * attIn, 0.02),
                             vProj: normal(c.kvWidth * attIn, 0.02), oProj: normal(d * c.qWidth, 0.02),
                             postAttentionNorm: [Float](repeating: 1, count: d), gateProj: normal(c.ffn * d, 0.02),
                             upProj: normal(c.ffn * d, 0.02), downProj: normal(d * c.ffn, 0.02),
                             norm: outputNorm ?? [Float](repeating: 1, count: d), lmHead: head, d2t: map,
                             adapter: nil, imgFc: nil)
        if c.isEagle3 {
            w.inputNorm = [Float](repeating: 1, count: d)
            w.hiddenNorm = [Float](repeating: 1, count: d)
        }
        if c.numQ > 0 {
            w.adapter = AdapterWeights(queries: normal(c.numQ * d, 0.02), qProj: normal(d * d, 0.02), kProj: normal(d * d, 0.02),
                                       vProj: normal(d * d, 0.02), oProj: normal(d * d, 0.02))
            w.imgFc = identityImgFc(width: d)
        }
        w.metadata["seed"] = String(seed)
        return w
    }

    /// A seeded random draft for a loaded target (its output norm and output rows).
    public static func random(for model: LlamaModel, vocab: Int? = nil, d2t: [Int32]? = nil, headTied: Bool = false,
                              numQ: Int = 0, seed: UInt64) throws -> DraftWeights {
        let c = DraftConfig(target: model.config, vocab: vocab, headTied: headTied, numQ: numQ)
        return try random(config: c, seed: seed, outputNorm: model.weights.outputNorm,
                          targetOutput: model.weights.output, d2t: d2t)
    }

    /// `img_fc` = [I ; 0]: img_fc([f ; g]) = f.
    public static func identityImgFc(width d: Int) -> [Float] {
        var m = [Float](repeating: 0, count: d * 2 * d)
        for i in 0..<d { m[i * 2 * d + i] = 1 }
        return m
    }
}

/// Box–Muller normals (pairs, the second kept for the next call) from SplitMix64: seeded and
/// the same on every platform.
struct NormalStream {
    var uniform: SplitMix64
    var spare: Float?
    init(seed: UInt64) { uniform = SplitMix64(seed: seed) }
    mutating func normal() -> Float {
        if let s = spare { spare = nil; return s }
        let u1 = uniform.nextOpenUnitDouble(), u2 = uniform.nextOpenUnitDouble()
        let r = (-2 * Foundation.log(u1)).squareRoot()
        spare = Float(r * Foundation.sin(2 * Double.pi * u2))
        return Float(r * Foundation.cos(2 * Double.pi * u2))
    }
}
