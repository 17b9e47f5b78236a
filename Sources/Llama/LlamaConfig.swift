import GGUF

/// Hyper-parameters of a LLaMA-family model, read from GGUF metadata (`{arch}.*` keys).
public struct LlamaConfig: Sendable, Equatable {
    public var architecture: String
    public var layerCount: Int
    public var width: Int           // d, the residual stream
    public var headCount: Int
    public var kvHeadCount: Int
    public var headDim: Int
    public var ffnWidth: Int
    public var vocabSize: Int
    public var contextLength: Int
    public var rmsEpsilon: Float
    public var ropeBase: Double
    /// Leading dimensions of each head that RoPE rotates (the rest pass through).
    public var ropeDim: Int
    /// Linear RoPE scaling: positions are divided by this.
    public var ropeScale: Double

    public var kvWidth: Int { kvHeadCount * headDim }

    /// Architectures whose GGUF layout and forward pass are llama's.
    public static let supportedArchitectures: Set<String> = ["llama"]

    public init(gguf f: GGUFFile) throws {
        let arch = try f.string("general.architecture")
        guard Self.supportedArchitectures.contains(arch) else {
            throw GGUFError(file: f.path, field: "general.architecture",
                            reason: "unsupported architecture '\(arch)' (specdec runs: \(Self.supportedArchitectures.sorted().joined(separator: ", ")))")
        }
        architecture = arch
        func int(_ k: String) throws -> Int {
            let v = try f.int("\(arch).\(k)")
            guard v > 0 else { throw GGUFError(file: f.path, field: "\(arch).\(k)", reason: "must be positive, found \(v)") }
            return v
        }
        layerCount = try int("block_count")
        width = try int("embedding_length")
        headCount = try int("attention.head_count")
        kvHeadCount = f["\(arch).attention.head_count_kv"] == nil ? headCount : try int("attention.head_count_kv")
        ffnWidth = try int("feed_forward_length")
        contextLength = try int("context_length")
        guard width % headCount == 0 else {
            throw GGUFError(file: f.path, field: "\(arch).attention.head_count", reason: "\(headCount) does not divide the width \(width)")
        }
        guard headCount % kvHeadCount == 0 else {
            throw GGUFError(file: f.path, field: "\(arch).attention.head_count_kv", reason: "\(kvHeadCount) does not divide the head count \(headCount)")
        }
        headDim = width / headCount
        rmsEpsilon = Float(try f.double("\(arch).attention.layer_norm_rms_epsilon"))
        ropeBase = f["\(arch).rope.freq_base"] == nil ? 10_000 : try f.double("\(arch).rope.freq_base")
        ropeDim = f["\(arch).rope.dimension_count"] == nil ? headDim : try int("rope.dimension_count")
        guard ropeDim <= headDim, ropeDim % 2 == 0 else {
            throw GGUFError(file: f.path, field: "\(arch).rope.dimension_count", reason: "\(ropeDim) must be even and at most the head size \(headDim)")
        }
        ropeScale = 1
        if let t = f["\(arch).rope.scaling.type"]?.stringValue, t != "none" {
            guard t == "linear" else {
                throw GGUFError(file: f.path, field: "\(arch).rope.scaling.type", reason: "RoPE scaling '\(t)' is not supported (none, linear are)")
            }
            let factor = try f.double("\(arch).rope.scaling.factor")
            guard factor > 0 else { throw GGUFError(file: f.path, field: "\(arch).rope.scaling.factor", reason: "must be positive") }
            ropeScale = factor
        }
        // The vocabulary size is the embedding matrix's row count; metadata may omit it.
        guard let emb = f.tensorInfo("token_embd.weight"), emb.shape.count == 2 else {
            throw GGUFError(file: f.path, field: "token_embd.weight", reason: "missing or not a matrix")
        }
        vocabSize = emb.shape[1]
    }
}
