import Foundation
import GGUF
import Kernels
import Llama
import SafeTensors

/// EAGLE-3 drafts in the formats other engines load: llama.cpp's `eagle3` GGUF architecture and
/// the Hugging Face folder of the EAGLE-3 reference code and vLLM (`config.json` +
/// `model.safetensors`). Names, keys and conventions are those of llama.cpp 0c1e570
/// (`src/models/eagle3.cpp`, `src/llama-arch.cpp`) and vLLM's `llama_eagle3.py`; see
/// docs/eagle3-export.md.
///
/// Two conventions differ between them and are converted here, never in the draft:
/// - RoPE: specdec (like llama.cpp, whose converter permutes q/k rows) rotates adjacent pairs;
///   the HF reference rotates the two halves of each head. HF q/k rows are the GGUF rows
///   un-permuted: HF row j = GGUF row 2j, HF row j + hd/2 = GGUF row 2j + 1 (per head).
/// - d2t: absolute target ids in specdec and in llama.cpp's GGUF (I64); offsets
///   (`target = i + d2t[i]`, I64) plus a `t2d` mask (BOOL) in the HF folder.
public enum Eagle3Formats {
    /// GGUF tensor names of the draft's weights, keyed by specdec's checkpoint names.
    public static let ggufNames: [(specdec: String, gguf: String)] = [
        ("fc.weight", "fc.weight"),
        ("midlayer.input_layernorm.weight", "blk.0.attn_norm.weight"),
        ("midlayer.hidden_norm.weight", "blk.0.attn_norm_2.weight"),
        ("midlayer.self_attn.q_proj.weight", "blk.0.attn_q.weight"),
        ("midlayer.self_attn.k_proj.weight", "blk.0.attn_k.weight"),
        ("midlayer.self_attn.v_proj.weight", "blk.0.attn_v.weight"),
        ("midlayer.self_attn.o_proj.weight", "blk.0.attn_output.weight"),
        ("midlayer.post_attention_layernorm.weight", "blk.0.ffn_norm.weight"),
        ("midlayer.mlp.gate_proj.weight", "blk.0.ffn_gate.weight"),
        ("midlayer.mlp.up_proj.weight", "blk.0.ffn_up.weight"),
        ("midlayer.mlp.down_proj.weight", "blk.0.ffn_down.weight"),
        ("norm.weight", "output_norm.weight"),
        ("lm_head.weight", "output.weight"),
    ]

    /// Metadata keys under which a GGUF written here keeps specdec's own config and metadata
    /// (llama.cpp ignores them), so that a round trip loses nothing.
    public static let configKey = "specdec.draft.config"
    public static let metadataPrefix = "specdec.draft.meta."

    static func check(_ w: DraftWeights, _ what: String) throws {
        let c = w.config
        guard c.isEagle3 else {
            throw DraftError(file: "<draft>", field: "config.arch", reason: "\(what) needs an eagle3 draft (this one is \(c.arch))")
        }
    }

    // MARK: - llama.cpp GGUF

    /// The draft as llama.cpp's `eagle3` GGUF: the hyper-parameter keys llama.cpp reads, the
    /// target's tokenizer (llama.cpp requires one in the draft file), matrices as `matrixType`
    /// (F16 or F32), norms F32, `d2t` I64 absolute ids. No `token_embd`: llama.cpp then uses the
    /// target's, as specdec does.
    public static func ggufWriter(_ w: DraftWeights, targetFile: GGUFFile, target t: LlamaConfig,
                                  matrixType: QuantType = .f16) throws -> GGUFWriter {
        try check(w, "the llama.cpp eagle3 format")
        let c = w.config
        guard let aux = c.auxLayers, aux.count == 3 else {
            throw DraftError(file: "<draft>", field: "config.aux_layers",
                             reason: "llama.cpp's eagle3 reads exactly 3 target layers, this draft reads \(c.auxLayers?.count ?? 0)")
        }
        guard matrixType == .f16 || matrixType == .f32 else {
            throw DraftError(file: "<draft>", field: "matrixType", reason: "\(matrixType) is not F16 or F32")
        }
        var g = GGUFWriter()
        let a = "eagle3"
        g.set("general.architecture", .string(a))
        g.set("general.name", .string("specdec EAGLE-3 draft"))
        g.set("general.file_type", .uint32(matrixType == .f16 ? 1 : 0))
        g.set("\(a).context_length", .uint32(UInt32(t.contextLength)))
        g.set("\(a).embedding_length", .uint32(UInt32(c.width)))
        g.set("\(a).block_count", .uint32(1))
        g.set("\(a).feed_forward_length", .uint32(UInt32(c.ffn)))
        g.set("\(a).attention.head_count", .uint32(UInt32(c.heads)))
        g.set("\(a).attention.head_count_kv", .uint32(UInt32(c.kvHeads)))
        g.set("\(a).attention.key_length", .uint32(UInt32(c.headDim)))
        g.set("\(a).attention.value_length", .uint32(UInt32(c.headDim)))
        g.set("\(a).attention.layer_norm_rms_epsilon", .float32(c.rmsEps))
        g.set("\(a).rope.freq_base", .float32(Float(c.ropeBase)))
        g.set("\(a).rope.dimension_count", .uint32(UInt32(c.ropeDim)))
        g.set("\(a).target_layers", .array(elementType: .int32, aux.map { .int32(Int32($0)) }))
        g.set("\(a).target_hidden_size", .uint32(UInt32(t.width)))
        g.set("\(a).vocab_size", .uint32(UInt32(c.targetVocab)))
        for (k, v) in targetFile.metadata where k.hasPrefix("tokenizer.") { g.set(k, v) }
        g.set(configKey, .string(c.json()))
        for (k, v) in w.metadata.sorted(by: { $0.key < $1.key }) { g.set(metadataPrefix + k, .string(v)) }

        let tensors = w.tensors
        let shapes = Dictionary(uniqueKeysWithValues: DraftWeights.shapes(c).map { ($0.name, $0.shape) })
        for (name, ggufName) in ggufNames {
            guard let v = tensors[name], let shape = shapes[name] else {
                throw DraftError(file: "<draft>", field: name, reason: "missing from the weights")
            }
            let ggmlShape = Array(shape.reversed())
            if shape.count == 1 || matrixType == .f32 {
                g.addTensor(ggufName, shape: ggmlShape, floats: v)
            } else {
                var b = [UInt8](repeating: 0, count: v.count * 2)
                b.withUnsafeMutableBytes { p in
                    for (i, x) in v.enumerated() { p.storeBytes(of: floatToHalf(x).littleEndian, toByteOffset: 2 * i, as: UInt16.self) }
                }
                g.addTensor(ggufName, shape: ggmlShape, typeID: QuantType.f16.rawValue, bytes: b)
            }
        }
        if let m = w.d2t {
            var b = [UInt8](repeating: 0, count: m.count * 8)
            b.withUnsafeMutableBytes { p in
                for (i, x) in m.enumerated() { p.storeBytes(of: Int64(x).littleEndian, toByteOffset: 8 * i, as: Int64.self) }
            }
            g.addTensor("d2t", shape: [m.count], typeID: 27, bytes: b)   // GGML_TYPE_I64
        }
        return g
    }

    public static func writeGGUF(_ w: DraftWeights, targetFile: GGUFFile, target: LlamaConfig, to path: String,
                                 matrixType: QuantType = .f16) throws {
        try ggufWriter(w, targetFile: targetFile, target: target, matrixType: matrixType).write(to: path)
    }

    /// Whether a GGUF holds an EAGLE-3 draft (rather than a language model).
    public static func isEagle3(_ f: GGUFFile) -> Bool { f["general.architecture"]?.stringValue == "eagle3" }

    /// Reads an `eagle3` GGUF (written here or by llama.cpp's converter) for `target`: every key
    /// and tensor is checked, and anything specdec does not run (another layer count, its own
    /// token embedding, the norm_before_* variants) is a `DraftError` naming the file and field.
    public static func readGGUF(_ f: GGUFFile, target t: LlamaConfig) throws -> DraftWeights {
        let file = f.path
        func err(_ field: String, _ r: String) -> DraftError { DraftError(file: file, field: field, reason: r) }
        guard isEagle3(f) else {
            throw err("general.architecture", "is \(f["general.architecture"]?.stringValue ?? "missing"), not eagle3")
        }
        func int(_ k: String) throws -> Int {
            guard let v = f["eagle3." + k] else { throw err("eagle3." + k, "missing") }
            guard let i = v.intValue, i >= 0 else { throw err("eagle3." + k, "is not a non-negative integer") }
            return i
        }
        guard try int("block_count") == 1 else { throw err("eagle3.block_count", "is \(try int("block_count")), an eagle3 draft has 1 layer") }
        let d = try int("embedding_length"), heads = try int("attention.head_count")
        let kvHeads = f["eagle3.attention.head_count_kv"] == nil ? heads : try int("attention.head_count_kv")
        guard heads > 0, d > 0, heads <= d else { throw err("eagle3.attention.head_count", "\(heads) heads for width \(d)") }
        let headDim = f["eagle3.attention.key_length"] == nil ? d / heads : try int("attention.key_length")
        guard let epsV = f["eagle3.attention.layer_norm_rms_epsilon"]?.doubleValue else {
            throw err("eagle3.attention.layer_norm_rms_epsilon", "missing")
        }
        let ropeBase = f["eagle3.rope.freq_base"]?.doubleValue ?? 10000
        guard let layersV = f["eagle3.target_layers"]?.arrayValue else { throw err("eagle3.target_layers", "missing") }
        let aux = layersV.compactMap(\.intValue)
        guard aux.count == layersV.count, !aux.isEmpty else { throw err("eagle3.target_layers", "is not a list of integers") }
        let targetHidden = try int("target_hidden_size")
        guard targetHidden == t.width else {
            throw err("eagle3.target_hidden_size", "is \(targetHidden), the target model's width is \(t.width): the draft was made for another model")
        }
        for k in ["norm_before_residual", "norm_before_fc"] {
            if case .bool(true)? = f["eagle3." + k] { throw err("eagle3." + k, "this EAGLE-3 variant is not supported") }
        }
        if f.tensorInfo("token_embd.weight") != nil {
            throw err("token_embd.weight", "drafts with their own token embedding are not supported (specdec uses the target's)")
        }
        guard let outInfo = f.tensorInfo("output.weight") else {
            throw err("output.weight", "missing (drafts that borrow the target's head are not supported)")
        }
        let vocab = outInfo.shape.count == 2 ? outInfo.shape[1] : -1
        var c = DraftConfig.eagle3(target: t, vocab: vocab, auxLayers: aux)
        c.width = d; c.heads = heads; c.kvHeads = kvHeads; c.headDim = headDim; c.ffn = try int("feed_forward_length")
        c.rmsEps = Float(epsV)
        // The file stores f32; the target's base came through f32 too.
        c.ropeBase = Float(ropeBase) == Float(t.ropeBase) ? t.ropeBase : ropeBase
        try c.validate(target: t, file: file)

        let shapes = Dictionary(uniqueKeysWithValues: DraftWeights.shapes(c).map { ($0.name, $0.shape) })
        var tensors: [String: [Float]] = [:]
        for (name, ggufName) in ggufNames {
            guard let info = f.tensorInfo(ggufName) else { throw err(ggufName, "tensor missing") }
            let shape = shapes[name]!
            guard info.shape == Array(shape.reversed()) else {
                throw err(ggufName, "shape \(info.shape), expected \(Array(shape.reversed()))")
            }
            guard let q = info.type.quantType else { throw err(ggufName, "tensor type \(info.type.name) is not supported") }
            var v = [Float](repeating: 0, count: info.elementCount)
            let rows = info.rowCount, cols = info.rowLength
            guard let rowBytes = q.rowBytes(cols), rowBytes * rows == info.byteCount else {
                throw err(ggufName, "\(info.byteCount) bytes do not hold \(rows) rows of \(cols) \(info.type.name) values")
            }
            v.withUnsafeMutableBufferPointer { vb in
                for r in 0..<rows { dequantizeRow(q, f.data(of: info) + r * rowBytes, count: cols, into: vb.baseAddress! + r * cols) }
            }
            if let bad = v.firstIndex(where: { !$0.isFinite }) { throw err(ggufName, "element \(bad) is \(v[bad])") }
            tensors[name] = v
        }
        var d2t: [Int32]? = nil
        if let info = f.tensorInfo("d2t") {
            guard info.type.id == 27, info.shape == [vocab] else {
                throw err("d2t", "is \(info.type.name) \(info.shape), llama.cpp needs I64 [\(vocab)]")
            }
            let p = f.data(of: info)
            var m = [Int32](repeating: 0, count: vocab)
            for i in 0..<vocab {
                let x = Int64(littleEndian: p.loadUnaligned(fromByteOffset: 8 * i, as: Int64.self))
                guard x >= 0, x < Int64(t.vocabSize) else { throw err("d2t", "entry \(i) = \(x) is not a target token id (0..<\(t.vocabSize))") }
                m[i] = Int32(x)
            }
            d2t = m
        } else if vocab != t.vocabSize {
            throw err("d2t", "missing although the head has \(vocab) rows and the target \(t.vocabSize) tokens")
        }
        if vocab == t.vocabSize, let m = d2t {
            guard m.enumerated().allSatisfy({ Int($1) == $0 }) else { throw err("d2t", "a full-vocabulary head must map ids to themselves") }
            d2t = nil
        }
        func get(_ n: String) -> [Float] { tensors[n]! }
        typealias N = DraftWeights.Name
        var w = DraftWeights(config: c, fc: get(N.fc), qProj: get(N.of(N.q, c)), kProj: get(N.of(N.k, c)), vProj: get(N.of(N.v, c)),
                             oProj: get(N.of(N.o, c)), postAttentionNorm: get(N.of(N.postNorm, c)), gateProj: get(N.of(N.gate, c)),
                             upProj: get(N.of(N.up, c)), downProj: get(N.of(N.down, c)), norm: get(N.norm), lmHead: get(N.lmHead),
                             d2t: d2t, adapter: nil, imgFc: nil)
        w.inputNorm = get(N.inputNorm)
        w.hiddenNorm = get(N.hiddenNorm)
        for (k, v) in f.metadata where k.hasPrefix(metadataPrefix) {
            if let s = v.stringValue { w.metadata[String(k.dropFirst(metadataPrefix.count))] = s }
        }
        return w
    }

    // MARK: - Hugging Face / vLLM folder

    /// `config.json` of the HF folder, as vLLM's `Eagle3LlamaForCausalLM` and the EAGLE-3
    /// reference read it (`draft_vocab_size` and `num_hidden_layers = 1` also let llama.cpp's
    /// converter recognise it).
    public static func hfConfig(_ c: DraftConfig, target t: LlamaConfig, dtype: String) -> [String: Any] {
        [
            "architectures": ["LlamaForCausalLMEagle3"],
            "model_type": "llama",
            "hidden_size": c.width,
            "intermediate_size": c.ffn,
            "num_attention_heads": c.heads,
            "num_key_value_heads": c.kvHeads,
            "head_dim": c.headDim,
            "num_hidden_layers": 1,
            "rms_norm_eps": Double(c.rmsEps),
            "rope_theta": c.ropeBase,
            "max_position_embeddings": t.contextLength,
            "vocab_size": c.targetVocab,
            "draft_vocab_size": c.vocab,
            "target_hidden_size": t.width,
            "eagle_aux_hidden_state_layer_ids": c.auxLayers ?? [],
            "eagle_config": ["use_aux_hidden_state": true, "eagle_aux_hidden_state_layer_ids": c.auxLayers ?? []],
            "tie_word_embeddings": false,
            "hidden_act": "silu",
            "attention_bias": false,
            "torch_dtype": dtype,
        ]
    }

    /// Rows of a q or k matrix (`heads` heads of `headDim` rows, `cols` columns) moved between
    /// the adjacent-pair RoPE layout (specdec, GGUF) and the half-split layout (HF): pair row 2j
    /// is half row j, pair row 2j + 1 is half row j + hd/2, per head.
    public static func pairsToHalves(_ m: [Float], heads: Int, headDim hd: Int, cols: Int) -> [Float] {
        moveRoPERows(m, heads: heads, headDim: hd, cols: cols, toHalves: true)
    }

    public static func halvesToPairs(_ m: [Float], heads: Int, headDim hd: Int, cols: Int) -> [Float] {
        moveRoPERows(m, heads: heads, headDim: hd, cols: cols, toHalves: false)
    }

    static func moveRoPERows(_ m: [Float], heads: Int, headDim hd: Int, cols: Int, toHalves: Bool) -> [Float] {
        var out = m
        for h in 0..<heads {
            for j in 0..<(hd / 2) {
                let base = h * hd
                for (half, pair) in [(base + j, base + 2 * j), (base + j + hd / 2, base + 2 * j + 1)] {
                    let (dst, src) = toHalves ? (half, pair) : (pair, half)
                    out.replaceSubrange((dst * cols)..<((dst + 1) * cols), with: m[(src * cols)..<((src + 1) * cols)])
                }
            }
        }
        return out
    }

    /// The tensors of `model.safetensors`: the reference names, q/k in the half-split layout,
    /// `d2t` as I64 offsets and `t2d` as a BOOL mask over the target vocabulary.
    public static func hfWriter(_ w: DraftWeights, dtype: SafeTensorsDType = .BF16) throws -> SafeTensorsWriter {
        try check(w, "the hf-eagle3 format")
        let c = w.config
        guard c.ropeBase > 0, c.headDim % 2 == 0 else {
            throw DraftError(file: "<draft>", field: "config.head_dim", reason: "RoPE needs an even head size")
        }
        var s = SafeTensorsWriter(metadata: ["format": "pt"])
        var t = w.tensors
        typealias N = DraftWeights.Name
        let q = N.of(N.q, c), k = N.of(N.k, c)
        t[q] = pairsToHalves(t[q]!, heads: c.heads, headDim: c.headDim, cols: 2 * c.width)
        t[k] = pairsToHalves(t[k]!, heads: c.kvHeads, headDim: c.headDim, cols: 2 * c.width)
        for (name, shape) in DraftWeights.shapes(c) { try s.add(name, floats: t[name]!, shape: shape, as: dtype) }
        if let m = w.d2t {
            try s.add("d2t", int64s: m.enumerated().map { Int64($1) - Int64($0) }, shape: [m.count])
            var mask = [UInt8](repeating: 0, count: c.targetVocab)
            for id in m { mask[Int(id)] = 1 }
            try s.add("t2d", dtype: .BOOL, shape: [c.targetVocab], bytes: mask)
        }
        return s
    }

    /// Writes `folder/config.json` and `folder/model.safetensors` (each through a temporary
    /// file and a rename).
    public static func writeHF(_ w: DraftWeights, target: LlamaConfig, folder: String, dtype: SafeTensorsDType = .BF16) throws {
        let st = try hfWriter(w, dtype: dtype)
        try FileManager.default.createDirectory(atPath: folder, withIntermediateDirectories: true)
        let cfg = hfConfig(w.config, target: target, dtype: dtype == .BF16 ? "bfloat16" : dtype == .F16 ? "float16" : "float32")
        let json = try JSONSerialization.data(withJSONObject: cfg, options: [.prettyPrinted, .sortedKeys])
        try writeAtomically(Array(json) + [0x0A], to: folder + "/config.json")
        try st.write(to: folder + "/model.safetensors")
    }
}
