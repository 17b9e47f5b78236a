import GGUF

/// Projectors from the vision tower's patch features into the language model's embedding space.
public enum ProjectorType: String, Sendable, CaseIterable {
    /// LLaVA: linear, GELU, linear, one output row per patch.
    case mlp
    /// Idefics3 / SmolVLM: pixel shuffle by the scale factor, then one linear map.
    case idefics3

    public static var supportedList: String { allCases.map(\.rawValue).joined(separator: ", ") }
}

/// The activation of the ViT blocks' MLP, as llama.cpp picks it (`clip.use_gelu`, `clip.use_silu`).
public enum VisionActivation: String, Sendable {
    /// tanh approximation (ggml_gelu).
    case gelu
    /// x·sigmoid(1.702x), CLIP's default.
    case geluQuick = "gelu_quick"
    case silu
}

/// How an image becomes the tower's square input (llama.cpp's preprocessing per projector).
public enum ResizeAlgorithm: String, Sendable {
    case bilinear, bicubic
}

/// Hyper-parameters of a llama.cpp `mmproj` vision tower (`clip.*` metadata).
public struct VisionConfig: Sendable, Equatable {
    public var projector: ProjectorType
    public var imageSize: Int
    public var patchSize: Int
    /// n_embd of the ViT.
    public var width: Int
    public var ffnWidth: Int
    public var blockCount: Int
    public var headCount: Int
    public var layerNormEpsilon: Float
    public var imageMean: [Float]
    public var imageStd: [Float]
    public var activation: VisionActivation
    /// Idefics3 pixel-shuffle factor (1 for mlp).
    public var scaleFactor: Int
    /// `clip.vision.feature_layer` of an `mlp` tower: the hidden states (0 = the blocks' input,
    /// L = after L blocks) whose features are concatenated for the projector; empty = llama.cpp's
    /// default, the second-to-last block's output.
    public var featureLayers: [Int] = []

    public var patchesPerSide: Int { imageSize / patchSize }
    public var patchCount: Int { patchesPerSide * patchesPerSide }
    public var headDim: Int { width / headCount }

    /// Blocks the forward runs. As llama.cpp: a LLaVA (`mlp`) tower runs up to its deepest
    /// feature layer, by default the second-to-last block.
    public var blocksRun: Int { projector == .mlp ? (featureLayers.max() ?? blockCount - 1) : blockCount }

    /// Width of the projector's input rows.
    public var featureWidth: Int { width * max(1, featureLayers.count) }

    /// Output rows per image.
    public var tokensPerImage: Int {
        switch projector {
        case .mlp: return patchCount
        case .idefics3:
            let side = (patchesPerSide + scaleFactor - 1) / scaleFactor
            return side * side
        }
    }

    /// llama.cpp: LLaVA pads to a square with the mean colour and resizes bilinearly; Idefics3's
    /// overview image is stretched to the square bilinearly.
    public var padsToSquare: Bool { projector == .mlp }

    /// LLaVA's padding colour (122, 116, 104), the dataset mean.
    public static let llavaPadColor: (Float, Float, Float) = (122 / 255, 116 / 255, 104 / 255)

    public init(projector: ProjectorType, imageSize: Int, patchSize: Int, width: Int, ffnWidth: Int,
                blockCount: Int, headCount: Int, layerNormEpsilon: Float, imageMean: [Float], imageStd: [Float],
                activation: VisionActivation, scaleFactor: Int) {
        self.projector = projector; self.imageSize = imageSize; self.patchSize = patchSize; self.width = width
        self.ffnWidth = ffnWidth; self.blockCount = blockCount; self.headCount = headCount
        self.layerNormEpsilon = layerNormEpsilon; self.imageMean = imageMean; self.imageStd = imageStd
        self.activation = activation; self.scaleFactor = scaleFactor
    }

    public init(gguf f: GGUFFile) throws {
        func err(_ field: String, _ reason: String) -> GGUFError { GGUFError(file: f.path, field: field, reason: reason) }
        if let v = f["clip.has_vision_encoder"], case .bool(false) = v {
            throw err("clip.has_vision_encoder", "the file has no vision encoder")
        }
        let typeName = f["clip.projector_type"]?.stringValue ?? f["clip.vision.projector_type"]?.stringValue ?? "mlp"
        guard let p = ProjectorType(rawValue: typeName) else {
            throw err("clip.projector_type", "projector type '\(typeName)' is not supported (specdec runs: \(ProjectorType.supportedList))")
        }
        projector = p
        func positive(_ key: String) throws -> Int {
            let v = try f.int(key)
            guard v > 0 else { throw err(key, "must be positive, found \(v)") }
            return v
        }
        imageSize = try positive("clip.vision.image_size")
        patchSize = try positive("clip.vision.patch_size")
        width = try positive("clip.vision.embedding_length")
        ffnWidth = try positive("clip.vision.feed_forward_length")
        blockCount = try positive("clip.vision.block_count")
        headCount = try positive("clip.vision.attention.head_count")
        layerNormEpsilon = Float(try f.double("clip.vision.attention.layer_norm_epsilon"))
        guard layerNormEpsilon >= 0 else { throw err("clip.vision.attention.layer_norm_epsilon", "must not be negative") }
        guard imageSize % patchSize == 0 else {
            throw err("clip.vision.patch_size", "\(patchSize) does not divide the image size \(imageSize)")
        }
        guard imageSize <= 4096 else { throw err("clip.vision.image_size", "\(imageSize) is larger than 4096") }
        guard width % headCount == 0 else {
            throw err("clip.vision.attention.head_count", "\(headCount) does not divide the width \(width)")
        }
        func triple(_ key: String) throws -> [Float] {
            guard let v = f[key] else { throw f.missing(key) }
            guard let a = v.arrayValue, a.count == 3, a.allSatisfy({ $0.doubleValue != nil }) else {
                throw err(key, "expected 3 numbers")
            }
            return a.map { Float($0.doubleValue!) }
        }
        imageMean = try triple("clip.vision.image_mean")
        imageStd = try triple("clip.vision.image_std")
        guard imageStd.allSatisfy({ $0 > 0 }) else { throw err("clip.vision.image_std", "must be positive") }

        let useGelu = f["clip.use_gelu"].map { $0 == .bool(true) } ?? false
        let useSilu = f["clip.use_silu"].map { $0 == .bool(true) } ?? false
        guard !(useGelu && useSilu) else { throw err("clip.use_gelu", "clip.use_gelu and clip.use_silu are both true") }
        activation = useGelu ? .gelu : useSilu ? .silu : .geluQuick

        switch p {
        case .mlp:
            scaleFactor = 1
            if f["clip.vision.feature_layer"] != nil {
                let layers = try f.intArray("clip.vision.feature_layer")
                guard !layers.isEmpty, layers.allSatisfy({ (0...blockCount).contains($0) }) else {
                    throw err("clip.vision.feature_layer", "\(layers) must be layers between 0 and the block count \(blockCount)")
                }
                featureLayers = Array(Set(layers)).sorted()
            } else {
                guard blockCount >= 2 else {
                    throw err("clip.vision.block_count", "an mlp (LLaVA) tower runs block_count - 1 blocks, so it needs at least 2")
                }
            }
        case .idefics3:
            scaleFactor = try positive("clip.vision.projector.scale_factor")
        }
        // Variants this implementation does not run: refuse rather than compute something else.
        if f["clip.vision.image_grid_pinpoints"] != nil {
            throw err("clip.vision.image_grid_pinpoints", "is set: any-resolution tiling (LLaVA 1.6) is not supported")
        }
        if let m = f["clip.vision.mm_patch_merge_type"]?.stringValue, m != "flat" {
            throw err("clip.vision.mm_patch_merge_type", "'\(m)' is not supported (flat is)")
        }
    }
}
